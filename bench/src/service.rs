//! `aisle bench service`: the service under load from a generator of our own, on
//! loopback only, every loop bounded in count and time. Grammar asks, LLM-fallback
//! asks and scans at 1, 4 and 16 concurrent clients, voice runs at real-time pace;
//! p50/p95/p99, throughput, errors and 503s; resident memory after 100 and after
//! 10,000 requests. Side by side: the same work as one `aisle` CLI call per request
//! (what loading once gains).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aisle_firmware_config::DeviceConfig;
use aisle_runtime::service::{self, Service};
use anyhow::{Context, Result};
use serde_json::json;

/// The demo store's questions the grammar answers.
const GRAMMAR: &[&str] = &[
    "how much is the banana",
    "where can I find the greek yogurt",
    "do you have basmati rice in stock",
    "is the orange juice on sale",
    "how much is the whole milk",
    "where is the soy sauce",
];

/// Questions the grammar does not recognise: the LLM reads the product.
const LLM: &[&str] = &[
    "what's the damage on the sharp cheddar",
    "gimme the lowdown on the sparkling water price",
];

/// No run longer than this, whatever the count.
const RUN_LIMIT: Duration = Duration::from_secs(60);

#[derive(Debug, Default, Clone)]
pub(crate) struct Load {
    pub latencies_ms: Vec<f64>,
    errors: usize,
    busy: usize,
    wall_s: f64,
}

impl Load {
    pub fn pct(&self, p: f64) -> f64 {
        let mut v = self.latencies_ms.clone();
        if v.is_empty() {
            return f64::NAN;
        }
        v.sort_by(f64::total_cmp);
        v[((v.len() - 1) as f64 * p).round() as usize]
    }
    fn rate(&self) -> f64 {
        self.latencies_ms.len() as f64 / self.wall_s.max(1e-9)
    }
    fn json(&self) -> serde_json::Value {
        json!({
            "requests": self.latencies_ms.len(), "p50_ms": self.pct(0.5), "p95_ms": self.pct(0.95),
            "p99_ms": self.pct(0.99), "per_s": self.rate(), "errors": self.errors, "busy_503": self.busy,
        })
    }
}

/// One HTTP request the generator sends.
#[derive(Clone)]
enum Req {
    Ask(String),
    Scan(Arc<Vec<u8>>),
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into()
}

/// `clients` threads send `per_client` requests each (or until [`RUN_LIMIT`]).
fn load(addr: std::net::SocketAddr, clients: usize, per_client: usize, reqs: &[Req]) -> Load {
    let t0 = Instant::now();
    let results: Vec<Load> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                s.spawn(move || {
                    let a = agent();
                    let mut out = Load::default();
                    for i in 0..per_client {
                        if t0.elapsed() > RUN_LIMIT {
                            break;
                        }
                        let t = Instant::now();
                        let r = match &reqs[(c + i) % reqs.len()] {
                            Req::Ask(q) => a
                                .post(&format!("http://{addr}/v1/ask"))
                                .send(json!({ "text": q }).to_string().as_bytes()),
                            Req::Scan(img) => a
                                .post(&format!("http://{addr}/v1/scan"))
                                .send(img.as_slice()),
                        };
                        match r {
                            Ok(mut resp) => {
                                let _ = resp.body_mut().read_to_vec();
                                match resp.status().as_u16() {
                                    200 => out.latencies_ms.push(t.elapsed().as_secs_f64() * 1e3),
                                    503 => out.busy += 1,
                                    _ => out.errors += 1,
                                }
                            }
                            Err(_) => out.errors += 1,
                        }
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let mut all = Load {
        wall_s: t0.elapsed().as_secs_f64(),
        ..Default::default()
    };
    for r in results {
        all.latencies_ms.extend(r.latencies_ms);
        all.errors += r.errors;
        all.busy += r.busy;
    }
    all
}

/// Voice runs at real-time pace, one client: end of speech (the last voiced audio
/// sent) to `intent-end`, as the server measures it and as the client sees it.
pub(crate) fn voice_runs(
    addr: std::net::SocketAddr,
    pcm: &[u8],
    runs: usize,
) -> Result<(Load, Vec<f64>)> {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut out = Load::default();
    let mut client_side = Vec::new();
    let t0 = Instant::now();
    for _ in 0..runs {
        let (mut ws, _) = rt
            .block_on(tokio_tungstenite::connect_async(format!(
                "ws://{addr}/v1/voice"
            )))
            .context("voice connection")?;
        let r: Result<(f64, Option<f64>)> = rt.block_on(async {
            ws.send(Message::Text(
                json!({ "type": "start", "sample_rate": 16000 })
                    .to_string()
                    .into(),
            ))
            .await?;
            let (mut tx, mut rx) = ws.split();
            let chunks: Vec<Vec<u8>> = pcm.chunks(640).map(<[u8]>::to_vec).collect();
            let sender = tokio::spawn(async move {
                for c in chunks {
                    if tx.send(Message::Binary(c.into())).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                let _ = tx.send(Message::Text(r#"{"type":"end"}"#.into())).await;
            });
            let mut vad_end: Option<Instant> = None;
            let mut client_ms = f64::NAN;
            let mut server_ms = None;
            while let Some(Ok(m)) = rx.next().await {
                let Message::Text(t) = m else { continue };
                let v: serde_json::Value = serde_json::from_str(t.as_str())?;
                match v["type"].as_str() {
                    Some("vad-end") => vad_end = Some(Instant::now()),
                    Some("intent-end") => {
                        client_ms = vad_end.map_or(f64::NAN, |e| e.elapsed().as_secs_f64() * 1e3);
                    }
                    Some("run-end") => {
                        server_ms = v["timings_ms"]["end_of_speech_to_answer"].as_f64();
                        break;
                    }
                    Some("error") => anyhow::bail!("voice run failed: {v}"),
                    _ => {}
                }
            }
            sender.abort();
            Ok((client_ms, server_ms))
        });
        match r {
            Ok((_, Some(server))) => {
                out.latencies_ms.push(server);
            }
            Ok(_) | Err(_) => out.errors += 1,
        }
        if let Ok((c, _)) = &r {
            client_side.push(*c);
        }
    }
    out.wall_s = t0.elapsed().as_secs_f64();
    Ok((out, client_side))
}

pub(crate) fn rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Each request as its own `aisle` process (load everything, answer, exit).
fn cli_per_request(
    cfg_path: &std::path::Path,
    data_dir: &std::path::Path,
    args: &[&[&str]],
) -> Result<Load> {
    let exe = std::env::current_exe()?;
    let mut out = Load::default();
    let t0 = Instant::now();
    for a in args {
        let t = Instant::now();
        let status = std::process::Command::new(&exe)
            .arg("--config")
            .arg(cfg_path)
            .arg("--data-dir")
            .arg(data_dir)
            .args(*a)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()?;
        if status.success() {
            out.latencies_ms.push(t.elapsed().as_secs_f64() * 1e3);
        } else {
            out.errors += 1;
        }
    }
    out.wall_s = t0.elapsed().as_secs_f64();
    Ok(out)
}

/// llama-cpp-python's own OpenAI-compatible server on the same GGUF and threads: the
/// LLM part of a fallback ask (the product read: same prompt, same grammar, greedy,
/// 16 tokens) at 1, 4 and 16 clients. Installed into the venv `aisle bench llm` uses.
fn llama_server_peer(
    cfg: &DeviceConfig,
    model: &std::path::Path,
    threads: usize,
    runs: usize,
) -> Result<Vec<(usize, Load)>> {
    eprintln!(
        "peer: llama-cpp-python[server] (pip builds llama.cpp from source on first use, ~10 min)"
    );
    let python = aisle_models::ensure_venv(
        &cfg.data_dir.join("tools/bench-venv-llama-cpp"),
        &["llama-cpp-python[server]==0.3.36"],
        "llama_cpp.server",
    )?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut child = std::process::Command::new(&python)
        .args(["-m", "llama_cpp.server", "--host", "127.0.0.1", "--port"])
        .arg(port.to_string())
        .arg("--model")
        .arg(model)
        .args(["--n_threads", &threads.to_string(), "--n_ctx", "1024"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("starting llama_cpp.server")?;
    let result = (|| -> Result<Vec<(usize, Load)>> {
        let base = format!("http://127.0.0.1:{port}");
        let t = Instant::now();
        while agent()
            .get(&format!("{base}/v1/models"))
            .call()
            .map(|r| r.status().as_u16())
            .ok()
            != Some(200)
        {
            anyhow::ensure!(
                t.elapsed() < Duration::from_secs(120),
                "llama_cpp.server did not start"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        let bodies: Vec<String> = LLM
            .iter()
            .map(|q| {
                let clause = aisle_runtime::dialogue::intent::normalise(q);
                json!({
                    "prompt": aisle_runtime::dialogue::fallback::prompt(&clause),
                    "grammar": aisle_runtime::dialogue::fallback::span_grammar(&clause),
                    "max_tokens": 16, "temperature": 0.0, "stream": false,
                })
                .to_string()
            })
            .collect();
        let url = format!("{base}/v1/completions");
        let mut rows = Vec::new();
        for clients in [1usize, 4, 16] {
            let t0 = Instant::now();
            let parts: Vec<Load> = std::thread::scope(|s| {
                let hs: Vec<_> = (0..clients)
                    .map(|c| {
                        let (url, bodies) = (&url, &bodies);
                        s.spawn(move || {
                            let a = agent();
                            let mut out = Load::default();
                            for i in 0..2 * runs {
                                if t0.elapsed() > RUN_LIMIT {
                                    break;
                                }
                                let t = Instant::now();
                                match a
                                    .post(url.as_str())
                                    .header("Content-Type", "application/json")
                                    .send(bodies[(c + i) % bodies.len()].as_bytes())
                                {
                                    Ok(mut r) if r.status().as_u16() == 200 => {
                                        let _ = r.body_mut().read_to_vec();
                                        out.latencies_ms.push(t.elapsed().as_secs_f64() * 1e3);
                                    }
                                    _ => out.errors += 1,
                                }
                            }
                            out
                        })
                    })
                    .collect();
                hs.into_iter()
                    .map(|h| h.join().unwrap_or_default())
                    .collect()
            });
            let mut all = Load {
                wall_s: t0.elapsed().as_secs_f64(),
                ..Default::default()
            };
            for p in parts {
                all.latencies_ms.extend(p.latencies_ms);
                all.errors += p.errors;
            }
            rows.push((clients, all));
        }
        Ok(rows)
    })();
    let _ = child.kill();
    let _ = child.wait();
    result
}

/// The service over `cfg`, in this process on a loopback port, its models loaded
/// (the LLM required): its address and load time in seconds.
pub(crate) fn start(cfg: &DeviceConfig) -> Result<(std::net::SocketAddr, f64)> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let svc = Service::new(
        cfg.clone(),
        Some(Arc::new(aisle_ar_render::SharedRenderer::get())),
    );
    let t = Instant::now();
    svc.load();
    let load_s = t.elapsed().as_secs_f64();
    let kiosk = svc
        .kiosk()
        .context("the kiosk did not load (see the log)")?
        .clone();
    // The LLM rows mean nothing without the LLM (they would measure "I don't know").
    anyhow::ensure!(
        kiosk.has_llm(),
        "the LLM did not load (see the log): build libaisle_llm.so with `cargo build --release -p aisle-llm`"
    );
    let server = svc.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build();
        if let Ok(rt) = rt {
            rt.block_on(async move {
                if let Ok(l) = tokio::net::TcpListener::from_std(listener) {
                    let _ = service::serve(l, server, std::future::pending()).await;
                }
            });
        }
    });
    Ok((addr, load_s))
}

pub fn run(
    cfg: &DeviceConfig,
    args: &crate::BenchArgs,
    soak_total: usize,
    json_out: bool,
) -> Result<ExitCode> {
    let runs = args.runs.max(1);
    let store_cfg = cfg;
    let mut cfg = crate::isolated(cfg);
    cfg.file.inference.threads = args.threads.max(1) as _;
    // The configured catalog (`paths.catalog`), else the demo store (built on first
    // use), served from this process on loopback.
    if cfg.file.paths.catalog.is_none() {
        aisle_runtime::kiosk::demo_catalog(&cfg)?;
    }
    let store = aisle_runtime::kiosk::open_store(&cfg)?;
    let photo = std::fs::read(
        store
            .verify("sample-photos", &mut |_| {})?
            .path("coffee.png")?,
    )?;
    let (addr, load_s) = start(&cfg)?;
    let rss_loaded = rss_mib();

    let grammar: Vec<Req> = GRAMMAR.iter().map(|q| Req::Ask(q.to_string())).collect();
    let llm: Vec<Req> = LLM.iter().map(|q| Req::Ask(q.to_string())).collect();
    let scans = vec![Req::Scan(Arc::new(photo))];
    // Every request kind, mixed as a kiosk sees them: 18 grammar asks to one LLM ask
    // and one scan.
    let mixed: Vec<Req> = grammar
        .iter()
        .cycle()
        .take(18)
        .cloned()
        .chain(llm.iter().take(1).cloned())
        .chain(scans.iter().cloned())
        .collect();
    // Warm-up, then memory: 100 requests of every kind (the first LLM question embeds
    // the fallback's examples, the first scan touches every model).
    let warm = load(addr, 4, 25, &mixed);
    let rss_after_100 = rss_mib();
    // The LLM read the question (not only the grammar's "I don't know").
    let mut check = agent()
        .post(&format!("http://{addr}/v1/ask"))
        .send(json!({ "text": LLM[0] }).to_string().as_bytes())?;
    let v: serde_json::Value = check.body_mut().read_json()?;
    anyhow::ensure!(
        v["llm"]["stats"]["generated_tokens"].as_u64() > Some(0),
        "the LLM did not read the fallback question: {v}"
    );

    let mut rows: Vec<(String, usize, Load)> = Vec::new();
    for clients in [1, 4, 16] {
        let l = load(addr, clients, 100 * runs / clients.min(4), &grammar);
        rows.push(("grammar ask".into(), clients, l));
    }
    for clients in [1, 4, 16] {
        rows.push((
            "LLM-fallback ask".into(),
            clients,
            load(addr, clients, 2 * runs, &llm),
        ));
    }
    for clients in [1, 4, 16] {
        rows.push((
            "scan (coffee.png)".into(),
            clients,
            load(addr, clients, 2 * runs, &scans),
        ));
    }
    // `soak_total` requests in all (10,000 by default), mixed, then memory again.
    let sent: usize = std::iter::once(&warm)
        .chain(rows.iter().map(|(_, _, l)| l))
        .map(|l| l.latencies_ms.len() + l.errors + l.busy)
        .sum();
    // In chunks of at most 5,000 with the resident memory after each, so a plateau
    // tells itself apart from a leak (each chunk has its own RUN_LIMIT).
    let mut rest = soak_total.saturating_sub(sent);
    let mut soak = Load::default();
    let mut rss_series: Vec<(usize, Option<f64>)> = Vec::new();
    let mut soaked = sent;
    while rest > 0 {
        let n = rest.min(5_000);
        let l = load(addr, 4, n.div_ceil(4), &mixed);
        let done = l.latencies_ms.len() + l.errors + l.busy;
        soaked += done;
        rest = rest.saturating_sub(n);
        soak.latencies_ms.extend(l.latencies_ms);
        soak.errors += l.errors;
        soak.busy += l.busy;
        soak.wall_s += l.wall_s;
        rss_series.push((soaked, rss_mib()));
        if !json_out {
            eprintln!(
                "soak: {soaked} requests, resident {:.0} MiB",
                rss_mib().unwrap_or(f64::NAN)
            );
        }
    }
    let rss_after_soak = rss_mib();

    // A spoken question of about 3 s at real-time pace.
    let dir = tempfile::tempdir()?;
    let wav = dir.path().join("q.wav");
    let spoken = std::process::Command::new("espeak-ng")
        .args(["-v", "en-us", "-s", "150", "-w"])
        .arg(&wav)
        .arg("how much is the banana and where can I find it")
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    let voice = if spoken {
        let audio = aisle_speech::decode_wav(&wav)?;
        let pcm: Vec<u8> = audio
            .samples
            .iter()
            .chain(std::iter::repeat_n(&0.0f32, 16_000))
            .flat_map(|s| ((s * 32767.0) as i16).to_le_bytes())
            .collect();
        Some((audio.duration_s(), voice_runs(addr, &pcm, runs.max(3))?))
    } else {
        None
    };

    // The same work, one CLI call per request.
    let peer = if args.no_peer {
        None
    } else {
        let cfg_path = dir.path().join("aisle.toml");
        std::fs::write(&cfg_path, cfg.to_toml())?;
        let photo_path = store
            .verify("sample-photos", &mut |_| {})?
            .path("coffee.png")?
            .to_string_lossy()
            .into_owned();
        let asks: Vec<Vec<&str>> = GRAMMAR.iter().take(3).map(|q| vec!["ask", *q]).collect();
        let asks: Vec<&[&str]> = asks.iter().map(Vec::as_slice).collect();
        let scans_cli = [["scan", photo_path.as_str()]; 3];
        let scans_cli: Vec<&[&str]> = scans_cli.iter().map(|a| a.as_slice()).collect();
        Some((
            cli_per_request(&cfg_path, &cfg.data_dir, &asks)?,
            cli_per_request(&cfg_path, &cfg.data_dir, &scans_cli)?,
        ))
    };

    let llama_peer = if args.no_peer {
        None
    } else {
        let model = aisle_runtime::kiosk::llm_model_path(&cfg, &store)?;
        // The peer's venv is the store's (the one `aisle bench llm` uses).
        match llama_server_peer(store_cfg, &model, cfg.file.inference.threads as usize, runs) {
            Ok(rows) => Some(rows),
            Err(e) => {
                eprintln!("peer llama-cpp-python server: {e:#}");
                None
            }
        }
    };

    if json_out {
        outln!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "load_s": load_s,
                "rows": rows.iter().map(|(w, c, l)| json!({ "work": w, "clients": c, "aisle": l.json() })).collect::<Vec<_>>(),
                "soak": soak.json(),
                "voice": voice.as_ref().map(|(secs, (l, client))| json!({ "question_s": secs, "server": l.json(), "client_ms": client })),
                "cli_per_request": peer.as_ref().map(|(a, s)| json!({ "ask": a.json(), "scan": s.json() })),
                "llama_cpp_server_product_read": llama_peer.as_ref().map(|rows| rows.iter().map(|(c, l)| json!({ "clients": c, "peer": l.json() })).collect::<Vec<_>>()),
                "rss_mib": { "loaded": rss_loaded, "after_100": rss_after_100, "after_soak": rss_after_soak, "soak_requests": soaked,
                    "series": rss_series.iter().map(|(n, m)| json!({ "requests": n, "rss_mib": m })).collect::<Vec<_>>() },
            }))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    outln!(
        "service benchmark: demo store, {} threads per model, loopback, models loaded once in {load_s:.1} s",
        cfg.file.inference.threads
    );
    outln!(
        "  {:<20} {:>7} {:>8} {:>9} {:>9} {:>9} {:>8} {:>6} {:>5}",
        "work",
        "clients",
        "requests",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "req/s",
        "errors",
        "503"
    );
    let row = |w: &str, c: &str, l: &Load| -> Result<()> {
        outln!(
            "  {:<20} {:>7} {:>8} {:>9.1} {:>9.1} {:>9.1} {:>8.1} {:>6} {:>5}",
            w,
            c,
            l.latencies_ms.len(),
            l.pct(0.5),
            l.pct(0.95),
            l.pct(0.99),
            l.rate(),
            l.errors,
            l.busy
        );
        Ok(())
    };
    for (w, c, l) in &rows {
        row(w, &c.to_string(), l)?;
    }
    if !soak.latencies_ms.is_empty() {
        row("mixed (soak)", "4", &soak)?;
    }
    if let Some((secs, (l, client))) = &voice {
        row(&format!("voice run ({secs:.1} s)"), "1", l)?;
        let mut c = client.clone();
        c.sort_by(f64::total_cmp);
        outln!(
            "  voice: end of speech to intent-end, server-measured p50 {:.0} ms (goal under 600 ms); client vad-end to intent-end p50 {:.0} ms",
            l.pct(0.5),
            c.get(c.len() / 2).copied().unwrap_or(f64::NAN)
        );
    } else {
        outln!("  voice runs: skipped (espeak-ng is missing)");
    }
    match &peer {
        Some((a, s)) => {
            outln!("one `aisle` CLI call per request (loads everything each time), 1 client:");
            row("aisle ask (CLI)", "1", a)?;
            row("aisle scan (CLI)", "1", s)?;
            let grammar_1 = &rows[0].2;
            let scan_1 = &rows[6].2;
            outln!(
                "  load once gains: ask {:.0}x, scan {:.0}x (p50, 1 client)",
                a.pct(0.5) / grammar_1.pct(0.5),
                s.pct(0.5) / scan_1.pct(0.5)
            );
        }
        None => outln!("CLI per request: skipped (--no-peer)"),
    }
    let self_rows = &rows;
    if let Some(rows) = &llama_peer {
        outln!(
            "llama-cpp-python's server, the LLM part of a fallback ask alone (same GGUF, prompt, grammar, threads):"
        );
        for (c, l) in rows {
            row("product read (peer)", &c.to_string(), l)?;
        }
        for (c, peer) in rows {
            if let Some((_, _, ours)) = rows.iter().next().and(
                self_rows
                    .iter()
                    .find(|(w, oc, _)| w.starts_with("LLM") && oc == c),
            ) {
                outln!(
                    "  {c} client(s): a whole LLM-fallback ask p50 {:.0} ms vs the peer's product read alone {:.0} ms ({:.2}x)",
                    ours.pct(0.5),
                    peer.pct(0.5),
                    ours.pct(0.5) / peer.pct(0.5)
                );
            }
        }
    }
    let mib = |m: Option<f64>| m.map_or("?".to_string(), |m| format!("{m:.0}"));
    if rss_series.len() > 1 {
        let series: Vec<String> = rss_series
            .iter()
            .map(|(n, m)| format!("{n}: {}", mib(*m)))
            .collect();
        outln!(
            "resident memory through the soak (requests: MiB): {}",
            series.join(", ")
        );
    }
    outln!(
        "resident memory: {} MiB loaded, {} MiB after 100 mixed requests, {} MiB after {soaked} (goal: flat; MALLOC_ARENA_MAX={}, the packaged unit sets 2)",
        mib(rss_loaded),
        mib(rss_after_100),
        mib(rss_after_soak),
        std::env::var("MALLOC_ARENA_MAX").unwrap_or_else(|_| "unset".into())
    );
    Ok(ExitCode::SUCCESS)
}
