//! `aisle bench sync`: signed releases over S3 (SeaweedFS's `weed mini` on
//! 127.0.0.1, started for the run): bytes and time of a first sync of a bare kiosk,
//! a sync with nothing new, a price change and a new 60 MB model; a swap inside a
//! running service under load; a simulated fleet rolling a release out through
//! three groups. The peer is boto3 (PyPI) copying the same objects from the same
//! server with no verification: what verifying costs.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use aisle_firmware_config::DeviceConfig;
use aisle_release::publish::{self, Plan};
use aisle_release::sync::{self, sync_once};
use aisle_release::{HealthQuestion, Keys, Paths, Remote, SyncState};
use aisle_runtime::kiosk::Parts;
use aisle_runtime::service::{self, Service};
use anyhow::{Context, Result, bail};
use serde_json::json;

const PEER_SCRIPT: &str = include_str!("peer_boto3.py");
const PEER_REQUIREMENTS: &[&str] = &["boto3==1.44.8"];
const KEY_ID: &str = "aisle-bench";
const SECRET: &str = "aisle-bench-secret";

/// SeaweedFS for the run, stopped when dropped.
struct Weed {
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Drop for Weed {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn weed_binary(cfg: &DeviceConfig) -> PathBuf {
    std::env::var_os("AISLE_WEED")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let p = cfg.data_dir.join("tools/seaweedfs/bin/weed");
            if p.exists() { p } else { PathBuf::from("weed") }
        })
}

fn start_weed(cfg: &DeviceConfig) -> Result<Weed> {
    if std::net::TcpStream::connect(("127.0.0.1", 8333)).is_ok() {
        bail!("something already listens on 127.0.0.1:8333; stop it first");
    }
    let dir = tempfile::tempdir()?;
    let bin = weed_binary(cfg);
    let child = Command::new(&bin)
        .args(["mini", "-ip", "127.0.0.1", "-ip.bind", "127.0.0.1", "-dir"])
        .arg(dir.path())
        .env("AWS_ACCESS_KEY_ID", KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| {
            format!(
                "SeaweedFS ({}): `cargo xtask test` installs it, or set AISLE_WEED",
                bin.display()
            )
        })?;
    let w = Weed { child, _dir: dir };
    let t = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", 8333)).is_err()
        || std::net::TcpStream::connect(("127.0.0.1", 8888)).is_err()
    {
        if t.elapsed() > Duration::from_secs(60) {
            bail!("SeaweedFS did not start in 60 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // Open ports are not writable volumes yet: wait until a small file is taken.
    while let Err(e) = ureq::put("http://127.0.0.1:8888/aisle-probe/ready.txt").send("ready") {
        if t.elapsed() > Duration::from_secs(60) {
            bail!("SeaweedFS takes no writes after 60 s: {e}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    ureq::post("http://127.0.0.1:8888/buckets/bench/")
        .send_empty()
        .context("making the bucket")?;
    Ok(w)
}

fn remote() -> Result<Remote> {
    remote_at("s3://bench/fleet")
}

fn remote_at(location: &str) -> Result<Remote> {
    Ok(Remote::open_with(
        location,
        &[
            ("aws_endpoint", "http://127.0.0.1:8333"),
            ("aws_allow_http", "true"),
            ("aws_region", "us-east-1"),
            ("aws_access_key_id", KEY_ID),
            ("aws_secret_access_key", SECRET),
        ],
    )?)
}

fn peak_rss_mib() -> f64 {
    crate::speech::peak_rss_mib().unwrap_or(f64::NAN)
}

/// The demo store's catalog as the CSV staff would export (49,689 products).
fn demo_csv(cfg: &DeviceConfig, out: &Path, change: i64) -> Result<usize> {
    let (cat, _) = aisle_runtime::kiosk::demo_catalog(cfg)?;
    let view = aisle_runtime::catalog::CatalogView::load(&cat)?;
    let mut w = String::from("sku,name,price,stock,aisle\n");
    for (i, p) in view.products().iter().enumerate() {
        let cents = p.price_cents + if i == 0 { change } else { 0 };
        let name = p.name.replace('"', "'");
        w.push_str(&format!(
            "{},\"{}\",{}.{:02},10,\"{}\"\n",
            p.sku,
            name,
            cents / 100,
            cents % 100,
            p.aisle.replace('"', "'")
        ));
    }
    std::fs::write(out, w)?;
    Ok(view.products().len())
}

/// A kiosk of the bench: its own data dir, a model store, and the config its
/// health check loads with.
struct BenchKiosk {
    name: String,
    cfg: DeviceConfig,
    root: PathBuf,
    /// What it runs: the dialogue (and the voice once a release brought it).
    /// Its health check loads those of them a release changes.
    parts: aisle_runtime::kiosk::Parts,
}

impl BenchKiosk {
    fn new(base: &DeviceConfig, dir: &Path, name: &str, model_dir: &Path, root: &Path) -> Self {
        let mut cfg = base.clone();
        cfg.data_dir = dir.join(name);
        cfg.model_dir = model_dir.to_path_buf();
        cfg.file.paths.catalog = None;
        cfg.file.dialogue.llm_fallback = false;
        cfg.file.device.name = name.to_string();
        BenchKiosk {
            name: name.into(),
            cfg,
            root: root.to_path_buf(),
            parts: aisle_runtime::kiosk::Parts::dialogue(),
        }
    }

    fn sync(&self, rt: &tokio::runtime::Runtime, remote: &Remote) -> Result<SyncState> {
        let store = aisle_models::Store::open(&self.cfg.model_dir)?;
        let health = aisle_runtime::sync::KioskHealth {
            cfg: &self.cfg,
            parts: self.parts,
        };
        let st = rt.block_on(sync_once(
            &Paths::new(&self.cfg.data_dir),
            remote,
            &self.root,
            &store,
            &health,
            &self.name,
        ))?;
        let r = aisle_release::KioskReport::of(&self.name, &st, serde_json::Value::Null);
        rt.block_on(sync::report(remote, &r))?;
        Ok(st)
    }
}

struct Row {
    label: &'static str,
    runs: usize,
    ms: f64,
    fetch_ms: f64,
    health_ms: f64,
    bytes: u64,
    metadata: u64,
    peer_ms: Option<f64>,
    peer_bytes: Option<u64>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

impl Row {
    /// Medians over runs of (total ms, the sync's state); bytes from the last run
    /// (the same in each).
    fn of(label: &'static str, runs: &[(f64, SyncState)], peer: PeerRun) -> Row {
        let last = runs.last().map(|r| &r.1);
        Row {
            label,
            runs: runs.len(),
            ms: median(runs.iter().map(|r| r.0).collect()),
            fetch_ms: median(runs.iter().map(|r| r.1.fetch_ms).collect()),
            health_ms: median(runs.iter().map(|r| r.1.health_ms).collect()),
            bytes: last.map_or(0, |s| s.downloaded_bytes),
            metadata: last.map_or(0, |s| s.metadata_bytes),
            peer_ms: peer.map(|p| p.0),
            peer_bytes: peer.map(|p| p.1),
        }
    }
}

/// A peer copy: (ms, bytes, peak MiB); None when the peer is not run.
type PeerRun = Option<(f64, u64, f64)>;

/// The peer's median time over `runs` copies (bytes and memory of the last).
fn peer_median(
    peer: &dyn Fn(&[String]) -> Result<PeerRun>,
    objects: &[String],
    runs: usize,
) -> Result<PeerRun> {
    let mut all = Vec::new();
    for _ in 0..runs {
        match peer(objects)? {
            Some(p) => all.push(p),
            None => return Ok(None),
        }
    }
    let Some(last) = all.last().copied() else {
        return Ok(None);
    };
    Ok(Some((
        median(all.iter().map(|p| p.0).collect()),
        last.1,
        last.2,
    )))
}

pub fn run(cfg: &DeviceConfig, args: &crate::BenchArgs, json_out: bool) -> Result<ExitCode> {
    let runs = args.runs.max(1);
    let store_dir = cfg.data_dir.clone();
    let cfg = crate::isolated(cfg);
    let staff_store = aisle_runtime::kiosk::open_store(&cfg)?;
    for m in ["all-minilm-l6-v2", &cfg.file.models.tts] {
        staff_store
            .verify(m, &mut |_| {})
            .with_context(|| format!("the bench publishes {m}: run `aisle models fetch`"))?;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let dir = tempfile::tempdir()?;
    let _weed = start_weed(&cfg)?;
    let remote = remote()?;
    let keys = rt.block_on(Keys::init(&dir.path().join("keys")))?;
    let root = keys.dir.join("1.root.json");
    let csv = dir.path().join("products.csv");
    let products = demo_csv(&cfg, &csv, 0)?;
    let health = vec![HealthQuestion {
        ask: "how much is the whole milk".into(),
        expect: vec!["$".into()],
        ..Default::default()
    }];
    let plan = |models: Vec<String>| Plan {
        channel: "stable".into(),
        catalog: Some(csv.clone()),
        models,
        health: health.clone(),
        references: None,
        config: None,
        timestamp_expires: None,
        staged: false,
    };
    // Publishes the catalog as it is now with `models` to `to`.
    let publish_to = |to: &Remote, models: &[String]| -> Result<publish::Published> {
        Ok(rt.block_on(publish::publish(
            &keys,
            to,
            &staff_store,
            &plan(models.to_vec()),
        ))?)
    };
    let mut rows = Vec::new();

    // A bare kiosk's first sync: MiniLM (87 MB), ONNX Runtime (the voice runs
    // on it) and the catalog; each run a new bare kiosk.
    let first = vec![
        "all-minilm-l6-v2".to_string(),
        cfg.file.inference.onnxruntime_library.clone(),
    ];
    publish_to(&remote, &first)?;
    let mut firsts = Vec::new();
    let mut kiosk = None;
    for i in 0..runs {
        let kiosk_store = dir.path().join(format!("kiosk-models-{i}"));
        let k = BenchKiosk::new(
            &cfg,
            dir.path(),
            &format!("kiosk-bench-{i}"),
            &kiosk_store,
            &root,
        );
        let t = Instant::now();
        let st = k.sync(&rt, &remote)?;
        if st.state != "activated" {
            bail!("the first sync ended {}: {:?}", st.state, st.error);
        }
        firsts.push((t.elapsed().as_secs_f64() * 1000.0, st));
        kiosk = Some((k, kiosk_store));
    }
    let (mut kiosk, kiosk_store) = kiosk.context("no run")?;
    let st = firsts.last().map(|f| f.1.clone()).context("no run")?;
    let peer = |objects: &[String]| -> Result<PeerRun> {
        if args.no_peer {
            return Ok(None);
        }
        let python = aisle_models::ensure_venv(
            &store_dir.join("tools/bench-venv-sync"),
            PEER_REQUIREMENTS,
            "boto3",
        )?;
        let out = dir.path().join("peer-out");
        let _ = std::fs::remove_dir_all(&out);
        let list = dir.path().join("objects.json");
        std::fs::write(&list, serde_json::to_vec(objects)?)?;
        let a: Vec<std::ffi::OsString> = vec![
            "http://127.0.0.1:8333".into(),
            "bench".into(),
            list.into(),
            out.into(),
            KEY_ID.into(),
            SECRET.into(),
        ];
        let v = crate::run_peer(&python, dir.path(), "peer_boto3.py", PEER_SCRIPT, &a)?;
        Ok(Some((
            v["ms"].as_f64().unwrap_or(f64::NAN),
            v["bytes"].as_u64().unwrap_or(0),
            v["peak_rss_kib"].as_f64().unwrap_or(f64::NAN) / 1024.0,
        )))
    };
    // The peer copies the same objects: every target of the release and its metadata.
    let objects = |m: &aisle_release::ReleaseManifest, only_new: Option<&[String]>| {
        let mut v: Vec<String> = Vec::new();
        let mut add =
            |f: &publish::FileRef| v.push(format!("fleet/targets/{}.{}", f.sha256, f.target));
        for (name, mr) in &m.models {
            if only_new.is_some_and(|n| !n.contains(name)) {
                continue;
            }
            add(&mr.manifest);
            for b in &mr.blobs {
                add(b);
            }
        }
        if only_new.is_none()
            && let Some(c) = &m.catalog
        {
            add(c);
        }
        v
    };
    let current = |rt: &tokio::runtime::Runtime| -> Result<aisle_release::ReleaseManifest> {
        let root = std::fs::read(keys.root_json())?;
        let repo = rt
            .block_on(publish::current(&remote, &root))?
            .context("nothing published")?;
        Ok(rt.block_on(publish::read_release(&repo))?)
    };
    let m1 = current(&rt)?;
    let p = peer_median(&peer, &objects(&m1, None), runs)?;
    rows.push(Row::of(
        "first sync, bare kiosk (MiniLM + ONNX Runtime + catalog)",
        &firsts,
        p,
    ));
    let peer_rss = p.map(|p| p.2);

    // Nothing new.
    let mut times = Vec::new();
    let mut last = st.clone();
    for _ in 0..runs.max(3) {
        let t = Instant::now();
        last = kiosk.sync(&rt, &remote)?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    rows.push(Row {
        label: "nothing new",
        runs: times.len(),
        ms: median(times),
        fetch_ms: last.fetch_ms,
        health_ms: last.health_ms,
        bytes: last.downloaded_bytes,
        metadata: last.metadata_bytes,
        peer_ms: None,
        peer_bytes: None,
    });

    // A price change: one product, 1 cent more each run.
    let mut changes = Vec::new();
    for i in 1..=runs.max(3) {
        demo_csv(&cfg, &csv, i as i64)?;
        publish_to(&remote, &first)?;
        let t = Instant::now();
        let st = kiosk.sync(&rt, &remote)?;
        if st.state != "activated" {
            bail!("the price change ended {}: {:?}", st.state, st.error);
        }
        changes.push((t.elapsed().as_secs_f64() * 1000.0, st));
    }
    rows.push(Row::of(
        "a price change (one of 49,689 products: catalog delta)",
        &changes,
        None,
    ));

    // A new 60 MB model: the voice. Each run the kiosk goes back to a release
    // without it and forgets its files, then syncs the release with it.
    let voice = cfg.file.models.tts.clone();
    let mut with_voice = first.clone();
    with_voice.push(voice.clone());
    let voice_blobs: Vec<String> = staff_store
        .manifest(&voice)?
        .files
        .iter()
        .map(|f| f.sha256.clone())
        .collect();
    let kstore = aisle_models::Store::open(&kiosk_store)?;
    // A kiosk that speaks: a new voice is loaded and heard in the health check.
    kiosk.parts.voice = true;
    let mut news = Vec::new();
    for _ in 0..runs {
        publish_to(&remote, &first)?;
        kiosk.sync(&rt, &remote)?;
        for b in &voice_blobs {
            let _ = std::fs::remove_file(kstore.blob_path(b));
        }
        let _ = std::fs::remove_file(kiosk_store.join("manifests").join(format!("{voice}.json")));
        publish_to(&remote, &with_voice)?;
        let t = Instant::now();
        let st = kiosk.sync(&rt, &remote)?;
        if st.state != "activated" {
            bail!("the new model's sync ended {}: {:?}", st.state, st.error);
        }
        news.push((t.elapsed().as_secs_f64() * 1000.0, st));
    }
    let m3 = current(&rt)?;
    let p = peer_median(
        &peer,
        &objects(&m3, Some(std::slice::from_ref(&voice))),
        runs,
    )?;
    rows.push(Row::of("a new 60 MB model (the voice)", &news, p));
    let our_rss = peak_rss_mib();

    // A swap inside a running service, a client asking all along.
    let swap = swap_under_load(&cfg, &rt, &remote, &keys, &staff_store, dir.path(), &plan)?;

    // A simulated fleet: 12 kiosks (own data dirs, sharing the bench's model store)
    // rolling a price change out through 25%, 60%, 100%.
    let fleet: Vec<BenchKiosk> = (0..12)
        .map(|i| {
            BenchKiosk::new(
                &cfg,
                dir.path(),
                &format!("fleet-{i:02}"),
                staff_store.root(),
                &root,
            )
        })
        .collect();
    // Its own prefix: only these kiosks report there.
    let fleet_remote = remote_at("s3://bench/fleet-sim")?;
    publish_to(&fleet_remote, &first)?;
    for k in &fleet {
        k.sync(&rt, &fleet_remote)?;
    }
    demo_csv(&cfg, &csv, runs.max(3) as i64 + 1)?;
    let v = publish_to(&fleet_remote, &first)?.version;
    rt.block_on(aisle_release::rollout::start(
        &keys,
        &fleet_remote,
        v,
        vec![25, 60, 100],
        0.9,
        0.2,
    ))?;
    let mut groups = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let mut on = 0;
        for k in &fleet {
            if k.sync(&rt, &fleet_remote)?.active == Some(v) {
                on += 1;
            }
        }
        let s = rt.block_on(aisle_release::rollout::step(&keys, &fleet_remote))?;
        groups.push((
            s.group_percent,
            on,
            t.elapsed().as_secs_f64() * 1000.0,
            s.rollout.open_percent(),
        ));
    }

    if json_out {
        outln!(
            "{}",
            json!({
                "catalog_products": products,
                "rows": rows.iter().map(|r| json!({
                    "case": r.label, "runs": r.runs, "ms": r.ms, "fetch_ms": r.fetch_ms, "health_ms": r.health_ms,
                    "bytes": r.bytes, "metadata_bytes": r.metadata,
                    "peer_boto3_ms": r.peer_ms, "peer_boto3_bytes": r.peer_bytes,
                })).collect::<Vec<_>>(),
                "swap": swap,
                "fleet": groups.iter().map(|(p, on, ms, next)| json!({ "open_percent": p, "kiosks_on_release": on, "round_ms": ms, "opened_next": next })).collect::<Vec<_>>(),
                "memory_mib": { "aisle_peak": our_rss, "peer_boto3_peak": peer_rss },
            })
        );
        return Ok(ExitCode::SUCCESS);
    }
    outln!(
        "aisle bench sync: SeaweedFS on 127.0.0.1, {products}-product catalog; peer: boto3 copying the same objects, unverified"
    );
    outln!();
    outln!(
        "| case | runs | aisle verify + download + stage | health check | total | downloaded | signed metadata | boto3 copy | boto3 bytes | aisle fetch / boto3 |"
    );
    outln!("|---|---|---|---|---|---|---|---|---|---|");
    for r in &rows {
        let kb = |b: u64| format!("{:.1} kB", b as f64 / 1e3);
        outln!(
            "| {} | {} | {:.0} ms | {:.0} ms | {:.0} ms | {} | {} | {} | {} | {} |",
            r.label,
            r.runs,
            r.fetch_ms,
            r.health_ms,
            r.ms,
            kb(r.bytes),
            kb(r.metadata),
            r.peer_ms.map_or("-".into(), |m| format!("{m:.0} ms")),
            r.peer_bytes.map_or("-".into(), kb),
            r.peer_ms
                .map_or("-".into(), |m| format!("{:.2}x", r.fetch_ms / m)),
        );
    }
    outln!();
    outln!(
        "Medians over the runs. The health check builds the release's catalog database and loads a kiosk over it (the dialogue models; the voice when the release brings a new one, which then reads the question aloud) to answer its question."
    );
    outln!(
        "swap in a running service: {} requests during, {} failed, worst {:.0} ms, p50 {:.1} ms; sync + load + swap {:.0} ms",
        swap["requests"],
        swap["failed"],
        swap["worst_ms"].as_f64().unwrap_or(f64::NAN),
        swap["p50_ms"].as_f64().unwrap_or(f64::NAN),
        swap["swap_ms"].as_f64().unwrap_or(f64::NAN)
    );
    for (p, on, ms, next) in &groups {
        outln!(
            "fleet of {}: {p}% open, one round of syncs ({ms:.0} ms, health checks included): {on} kiosks on release {v}; the step then opened {next}%",
            fleet.len()
        );
    }
    outln!(
        "peak memory: aisle {our_rss:.0} MiB (this process, health checks included), boto3 {} MiB",
        peer_rss.map_or("-".into(), |m| format!("{m:.0}"))
    );
    Ok(ExitCode::SUCCESS)
}

/// A service over a kiosk synced to the newest release; a client asks all along
/// while a new release is published, synced and swapped in.
fn swap_under_load(
    cfg: &DeviceConfig,
    rt: &tokio::runtime::Runtime,
    remote: &Remote,
    keys: &Keys,
    staff_store: &aisle_models::Store,
    dir: &Path,
    plan: &dyn Fn(Vec<String>) -> Plan,
) -> Result<serde_json::Value> {
    let root = keys.dir.join("1.root.json");
    let mut k = BenchKiosk::new(cfg, dir, "kiosk-serve", staff_store.root(), &root);
    k.cfg.file.sync.trust_root = Some(root.clone());
    k.sync(rt, remote)?;
    let svc = Service::with_parts(
        k.cfg.clone(),
        None,
        Parts {
            dialogue_models: true,
            quiet: true,
            ..Parts::none()
        },
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let served = svc.clone();
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async move {
            if let Ok(l) = tokio::net::TcpListener::from_std(listener) {
                let _ = service::serve(l, served, std::future::pending()).await;
            }
        });
    });
    let t = Instant::now();
    while svc.kiosk().is_none() {
        if t.elapsed() > Duration::from_secs(300) {
            bail!("the service did not load");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let client = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let agent = ureq::Agent::new_with_config(
                ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .build(),
            );
            let mut seen = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let ok = agent
                    .post(&format!("http://{addr}/v1/ask"))
                    .header("Content-Type", "application/json")
                    .send(r#"{"text":"how much is the whole milk"}"#)
                    .map(|r| r.status().as_u16() == 200)
                    .unwrap_or(false);
                seen.push((ok, t.elapsed().as_secs_f64() * 1000.0));
            }
            seen
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    rt.block_on(publish::publish(
        keys,
        remote,
        staff_store,
        &plan(vec!["all-minilm-l6-v2".to_string()]),
    ))?;
    let t = Instant::now();
    let st = svc.sync_and_swap_from(remote)?;
    let swap_ms = t.elapsed().as_secs_f64() * 1000.0;
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let seen = client
        .join()
        .map_err(|_| anyhow::anyhow!("client thread"))?;
    let lat: Vec<f64> = seen.iter().map(|(_, ms)| *ms).collect();
    Ok(json!({
        "state": st.state,
        "requests": seen.len(),
        "failed": seen.iter().filter(|(ok, _)| !ok).count(),
        "worst_ms": lat.iter().copied().fold(0.0, f64::max),
        "p50_ms": median(lat),
        "swap_ms": swap_ms,
    }))
}
