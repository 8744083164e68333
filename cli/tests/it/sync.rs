//! Signed releases on a running kiosk: staff publish (real TUF signing), `aisle
//! serve`'s sync health-checks each release with the real dialogue models and
//! swaps it in while a client keeps asking; no request fails, and every answer
//! comes from one release or the next, never a mix.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use aisle_release::publish::{self, Plan};
use aisle_release::{HealthQuestion, Keys, Remote};
use aisle_runtime::kiosk::Parts;
use aisle_runtime::service::{self, Service};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn catalog(dir: &Path, banana: &str) -> PathBuf {
    let p = dir.join(format!("products-{banana}.csv"));
    std::fs::write(
        &p,
        format!("sku,name,price,stock,aisle\nBAN-1,Organic Bananas,{banana},100,fresh fruits\nMLK-1,Whole Milk,3.49,20,milk\n"),
    )
    .expect("csv");
    p
}

fn publish(keys: &Keys, remote: &Remote, dir: &Path, banana: &str, expect: &str) -> u64 {
    let store = aisle_models::Store::open(&crate::data_dir().join("models")).expect("store");
    let plan = Plan {
        channel: "stable".into(),
        catalog: Some(catalog(dir, banana)),
        models: vec!["all-minilm-l6-v2".into()],
        health: vec![HealthQuestion {
            ask: "how much are the bananas".into(),
            expect: vec![expect.into()],
            ..Default::default()
        }],
        references: None,
        config: None,
        timestamp_expires: None,
        staged: false,
    };
    rt().block_on(publish::publish(keys, remote, &store, &plan))
        .expect("publish")
        .version
}

/// A text-only kiosk served on loopback (its own data dir, the shared model store
/// that already holds MiniLM, `products-0.79.csv` until a release comes, the
/// staff's first root), syncing every `interval_s` (0: never by itself).
fn serve_kiosk(
    dir: &Path,
    keys: &Keys,
    url: &str,
    interval_s: u32,
) -> (Arc<Service>, std::net::SocketAddr, Stop) {
    let config = dir.join("aisle.toml");
    std::fs::write(
        &config,
        format!(
            "[device]\nname = \"kiosk-7\"\n\n[paths]\ndata_dir = {:?}\nmodel_dir = {:?}\ncatalog = {:?}\n\n[dialogue]\nllm_fallback = false\n\n[service]\nstaff_token_file = \"staff.token\"\n\n[sync]\nendpoint = {url:?}\ntrust_root = {:?}\ninterval_s = {interval_s}\njitter_s = 0\n",
            dir.join("data"),
            crate::data_dir().join("models"),
            catalog(dir, "0.79"),
            keys.dir.join("1.root.json"),
        ),
    )
    .expect("config");
    std::fs::write(dir.join("staff.token"), STAFF_TOKEN).expect("token");
    let cfg = aisle_firmware_config::load(Some(&config), &Default::default()).expect("config");
    let parts = Parts {
        dialogue_models: true,
        quiet: true,
        ..Parts::none()
    };
    let svc = Service::with_parts(cfg, None, parts);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let addr = listener.local_addr().expect("addr");
    let served = svc.clone();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let l = tokio::net::TcpListener::from_std(listener).expect("listener");
            service::serve(l, served, async {
                let _ = rx.await;
            })
            .await
            .expect("serve");
        });
    });
    let t = Instant::now();
    while svc.kiosk().is_none() {
        assert!(t.elapsed() < Duration::from_secs(300), "never loaded");
        std::thread::sleep(Duration::from_millis(50));
    }
    (svc, addr, Stop(Some(tx)))
}

const STAFF_TOKEN: &str = "sync-test-staff-token-0123456789";

/// The staff feed (`/v1/staff/events`) read line by line into a channel.
fn staff_feed(addr: std::net::SocketAddr) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        let r = ureq::get(&format!("http://{addr}/v1/staff/events"))
            .header("Authorization", &format!("Bearer {STAFF_TOKEN}"))
            .call()
            .expect("events");
        let mut reader = std::io::BufReader::new(r.into_body().into_reader());
        let mut line = String::new();
        while std::io::BufRead::read_line(&mut reader, &mut line).is_ok_and(|n| n > 0) {
            if tx.send(line.trim_end().to_string()).is_err() {
                return;
            }
            line.clear();
        }
        let _ = tx.send("<feed ended>".into());
    });
    rx
}

/// Stops the test's service (and its periodic sync) when the test ends.
struct Stop(Option<tokio::sync::oneshot::Sender<()>>);

impl Drop for Stop {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

#[test]
fn a_release_swaps_in_under_load_without_a_failed_request() {
    let dir = tempfile::tempdir().expect("tmp");
    let keys = rt()
        .block_on(Keys::init(&dir.path().join("keys")))
        .expect("keys");
    let bucket = dir.path().join("bucket");
    let url = format!("file://{}", bucket.display());
    let remote = Remote::open(&url).expect("remote");

    let (svc, addr, _stop) = serve_kiosk(dir.path(), &keys, &url, 0);
    // A staff tablet listening from before the swaps to after them.
    let feed = staff_feed(addr);

    // A client asking all along, from before the first release to after the second.
    let stop = Arc::new(AtomicBool::new(false));
    let client = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let agent = ureq::Agent::new_with_config(
                ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .timeout_global(Some(Duration::from_secs(30)))
                    .build(),
            );
            let mut seen: Vec<(u16, String, f64)> = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let r = agent
                    .post(&format!("http://{addr}/v1/ask"))
                    .header("Content-Type", "application/json")
                    .send(r#"{"text":"how much are the bananas"}"#);
                let ms = t.elapsed().as_secs_f64() * 1000.0;
                match r {
                    Ok(mut r) => {
                        let status = r.status().as_u16();
                        let body = r.body_mut().read_to_string().unwrap_or_default();
                        seen.push((status, body, ms));
                    }
                    Err(e) => seen.push((0, e.to_string(), ms)),
                }
            }
            seen
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(publish(&keys, &remote, dir.path(), "0.69", "$0.69"), 1);
    let st = svc.sync_and_swap().expect("sync");
    assert_eq!(st.state, "activated", "{st:?}");
    assert!(
        st.health
            .as_deref()
            .unwrap_or("")
            .contains("1 questions answered"),
        "{st:?}"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(publish(&keys, &remote, dir.path(), "0.59", "$0.59"), 2);
    let st = svc.sync_and_swap().expect("sync");
    assert_eq!(
        (st.state.as_str(), st.active, st.previous),
        ("activated", Some(2), Some(1))
    );
    // The price change moved a few kB: the model was already on the kiosk.
    assert!(st.downloaded_bytes < 20_000, "{st:?}");
    std::thread::sleep(Duration::from_millis(300));
    // A release whose health check fails is never swapped in.
    assert_eq!(publish(&keys, &remote, dir.path(), "0.49", "$0.99"), 3);
    let st = svc.sync_and_swap().expect("sync");
    assert_eq!(
        (st.state.as_str(), st.active),
        ("health-failed", Some(2)),
        "{st:?}"
    );
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let seen = client.join().expect("client");

    // The staff feed opened before the swaps still hears the kiosk after them.
    let r = ureq::post(&format!("http://{addr}/v1/call-staff"))
        .header("Content-Type", "application/json")
        .send("{}");
    assert!(r.is_ok(), "{r:?}");
    let mut lines = Vec::new();
    let t = Instant::now();
    while !lines
        .iter()
        .any(|l: &String| l.contains("staff-call") || l == "<feed ended>")
        && t.elapsed() < Duration::from_secs(20)
    {
        if let Ok(l) = feed.recv_timeout(Duration::from_millis(500)) {
            lines.push(l);
        }
    }
    assert!(
        lines.iter().any(|l| l == "event: staff-call"),
        "the staff feed after two swaps: {lines:?}"
    );

    let failed: Vec<_> = seen.iter().filter(|(s, _, _)| *s != 200).collect();
    assert!(
        failed.is_empty(),
        "failed requests during the swaps: {failed:?}"
    );
    // Prices in order: the file's, then release 1's, then release 2's; never 0.49.
    let prices: Vec<&str> = seen
        .iter()
        .map(|(_, b, _)| {
            ["$0.79", "$0.69", "$0.59", "$0.49"]
                .into_iter()
                .find(|p| b.contains(p))
                .unwrap_or("?")
        })
        .collect();
    let mut order = prices.clone();
    order.dedup();
    assert_eq!(order, ["$0.79", "$0.69", "$0.59"], "{prices:?}");
    let worst = seen.iter().map(|(_, _, ms)| *ms).fold(0.0, f64::max);
    eprintln!(
        "swap under load: {} requests, 0 failed, worst latency {worst:.0} ms",
        seen.len()
    );
}

/// `kill -9` at every step of an apply (the process aborts there, as a kill
/// would leave it): after it, the kiosk answers from the old release or the new
/// one, its models verify, and the next sync completes the new one.
#[test]
fn a_sync_killed_at_any_step_leaves_a_working_kiosk() {
    let dir = tempfile::tempdir().expect("tmp");
    let keys = rt()
        .block_on(Keys::init(&dir.path().join("keys")))
        .expect("keys");
    let url = format!("file://{}", dir.path().join("bucket").display());
    let remote = Remote::open(&url).expect("remote");
    let staff_store = aisle_models::Store::open(&crate::data_dir().join("models")).expect("store");
    let release = |price: &str, models: &[&str]| {
        let plan = Plan {
            channel: "stable".into(),
            catalog: Some(catalog(dir.path(), price)),
            models: models.iter().map(|m| m.to_string()).collect(),
            health: vec![HealthQuestion {
                ask: "how much are the bananas".into(),
                expect: vec![format!("${price}")],
                ..Default::default()
            }],
            references: None,
            config: None,
            timestamp_expires: None,
            staged: false,
        };
        rt().block_on(publish::publish(&keys, &remote, &staff_store, &plan))
            .expect("publish")
            .version
    };
    // A bare kiosk: its own data dir and model store.
    let config = dir.path().join("kiosk.toml");
    std::fs::write(
        &config,
        format!(
            "[device]\nname = \"kiosk-9\"\n\n[paths]\ndata_dir = {:?}\n\n[dialogue]\nllm_fallback = false\n\n[sync]\nendpoint = {url:?}\ntrust_root = {:?}\n",
            dir.path().join("kiosk"),
            keys.dir.join("1.root.json"),
        ),
    )
    .expect("config");
    let run = |args: &[&str], fault: Option<&str>| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_aisle"));
        c.arg("--config").arg(&config).args(args);
        if args.first() == Some(&"sync") && args.contains(&"--once") {
            // A text-only kiosk: its releases carry small models of other parts
            // (a VAD, OCR) that it does not run.
            c.arg("--runs=dialogue");
        }
        if let Some(f) = fault {
            c.env("AISLE_FAULT_ABORT_AT", f);
        }
        c.output().expect("aisle")
    };
    let price_now = || {
        let out = run(&["ask", "how much are the bananas"], None);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        text.split('$')
            .nth(1)
            .map(|p| p.chars().take(4).collect::<String>())
            .unwrap_or(text)
    };

    release("0.90", &["silero-vad"]);
    let out = run(&["sync", "--once"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(price_now(), "0.90");

    let steps = [
        ("downloading", "0.81", &["silero-vad", "ppocr-v4-det"][..]),
        ("staged", "0.72", &["silero-vad"][..]),
        ("checked", "0.63", &["silero-vad"][..]),
        (
            "models-installed",
            "0.54",
            &["silero-vad", "ppocr-mobile-v2-cls"][..],
        ),
        ("activated", "0.45", &["silero-vad"][..]),
    ];
    let mut before = "0.90".to_string();
    for (step, price, models) in steps {
        release(price, models);
        let out = run(&["sync", "--once"], Some(step));
        assert!(
            out.status.code().is_none(),
            "{step}: the sync was to abort there: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Killed: the kiosk answers from one release or the other, and its store
        // holds only whole, verified models.
        let now = price_now();
        assert!(now == before || now == price, "{step}: answered ${now}");
        let store =
            aisle_models::Store::open(&dir.path().join("kiosk/models")).expect("kiosk store");
        for r in store.verify_all(&mut |_| {}).expect("verify") {
            assert!(r.result.is_ok(), "{step}: {} does not verify", r.name);
        }
        // Restarted: the sync completes.
        let out = run(&["sync", "--once", "--json"], None);
        assert!(
            out.status.success(),
            "{step}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let st: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        assert!(
            matches!(st["state"].as_str(), Some("activated" | "current")),
            "{step}: {st}"
        );
        assert_eq!(price_now(), price, "{step}");
        before = price.to_string();
    }
}

/// A release carries config overrides (thresholds) and enrolled reference
/// embeddings; the kiosk runs with the overrides, has the embeddings, keeps the
/// ones it enrolled itself across releases, and refuses overrides that do not
/// check (the health check fails, nothing changes).
#[test]
fn overrides_and_reference_embeddings_travel_with_a_release() {
    use aisle_runtime::catalog::{CatalogDb, ReferencePhoto};
    let dir = tempfile::tempdir().expect("tmp");
    let keys = rt()
        .block_on(Keys::init(&dir.path().join("keys")))
        .expect("keys");
    let url = format!("file://{}", dir.path().join("bucket").display());
    let remote = Remote::open(&url).expect("remote");
    let store = aisle_models::Store::open(&crate::data_dir().join("models")).expect("store");
    // The staff machine's catalog, with one enrolled embedding.
    let staff_db = dir.path().join("staff.sqlite");
    let mut db = CatalogDb::open(&staff_db).expect("db");
    aisle_runtime::catalog::import_file(&mut db, &catalog(dir.path(), "0.69"), &Default::default())
        .expect("import");
    let photo = |sku: &str, h: &str, x: f32| ReferencePhoto {
        sku: sku.into(),
        photo_sha256: h.into(),
        embedding: vec![x, 0.5, -0.25],
    };
    db.add_reference_photos("efficientnet-test", &[photo("BAN-1", "aa", 1.0)])
        .expect("enrol");
    let refs = dir.path().join("refs.jsonl");
    std::fs::write(
        &refs,
        aisle_runtime::sync::export_references(&db).expect("export"),
    )
    .expect("refs");
    let overrides = dir.path().join("overrides.toml");
    std::fs::write(&overrides, "[thresholds]\nmatch_confidence = 0.77\n").expect("toml");
    let publish_with = |price: &str, config: &Path| {
        let plan = Plan {
            channel: "stable".into(),
            catalog: Some(catalog(dir.path(), price)),
            models: vec![],
            health: vec![],
            references: Some(refs.clone()),
            config: Some(config.to_path_buf()),
            timestamp_expires: None,
            staged: false,
        };
        rt().block_on(publish::publish(&keys, &remote, &store, &plan))
            .expect("publish")
            .version
    };
    publish_with("0.69", &overrides);

    let config = dir.path().join("kiosk.toml");
    std::fs::write(
        &config,
        format!(
            "[device]\nname = \"kiosk-5\"\n\n[paths]\ndata_dir = {:?}\nmodel_dir = {:?}\n\n[dialogue]\nllm_fallback = false\n\n[thresholds]\nmatch_confidence = 0.5\n\n[sync]\nendpoint = {url:?}\ntrust_root = {:?}\n",
            dir.path().join("kiosk"),
            crate::data_dir().join("models"),
            keys.dir.join("1.root.json"),
        ),
    )
    .expect("config");
    let cfg = aisle_firmware_config::load(Some(&config), &Default::default()).expect("config");
    let st = rt()
        .block_on(aisle_runtime::sync::sync_once(
            &cfg,
            Parts::dialogue(),
            serde_json::Value::Null,
        ))
        .expect("sync");
    assert_eq!(st.state, "activated", "{st:?}");
    assert!(
        st.health
            .as_deref()
            .unwrap_or("")
            .contains("1 reference embeddings"),
        "{st:?}"
    );
    let eff = aisle_runtime::sync::effective(&cfg);
    assert_eq!(eff.file.thresholds.match_confidence, 0.77);
    assert_eq!(
        cfg.file.thresholds.match_confidence, 0.5,
        "the file is untouched"
    );
    let active = CatalogDb::open(&aisle_runtime::kiosk::catalog_path(&cfg)).expect("db");
    assert_eq!(
        active
            .reference_photos("efficientnet-test")
            .expect("refs")
            .len(),
        1
    );
    // Enrolled on the kiosk itself, then a new release: both embeddings stay.
    let mut active = active;
    active
        .add_reference_photos("efficientnet-test", &[photo("MLK-1", "bb", 2.0)])
        .expect("enrol");
    drop(active);
    publish_with("0.59", &overrides);
    let st = rt()
        .block_on(aisle_runtime::sync::sync_once(
            &cfg,
            Parts::dialogue(),
            serde_json::Value::Null,
        ))
        .expect("sync");
    assert_eq!(
        (st.state.as_str(), st.active),
        ("activated", Some(2)),
        "{st:?}"
    );
    let active = CatalogDb::open(&aisle_runtime::kiosk::catalog_path(&cfg)).expect("db");
    assert_eq!(
        active
            .reference_photos("efficientnet-test")
            .expect("refs")
            .len(),
        2
    );
    drop(active);

    // Overrides that do not check: refused by the health check, nothing changes.
    for (bad, why) in [
        ("[thresholds]\nmatch_confidence = 7.0\n", "match_confidence"),
        (
            "[paths]\ndata_dir = \"/tmp/elsewhere\"\n",
            "only thresholds and dialogue",
        ),
    ] {
        let f = dir.path().join("bad.toml");
        std::fs::write(&f, bad).expect("toml");
        publish_with("0.49", &f);
        let st = rt()
            .block_on(aisle_runtime::sync::sync_once(
                &cfg,
                Parts::dialogue(),
                serde_json::Value::Null,
            ))
            .expect("sync");
        assert_eq!(
            (st.state.as_str(), st.active),
            ("health-failed", Some(2)),
            "{st:?}"
        );
        assert!(st.error.as_deref().unwrap_or("").contains(why), "{st:?}");
        assert_eq!(
            aisle_runtime::sync::effective(&cfg)
                .file
                .thresholds
                .match_confidence,
            0.77
        );
    }
}

/// The health check loads what a release changes and looks at its photos: a
/// kiosk that runs vision, speech and a voice gets its first voice and ear from a
/// release (both loaded and checked: the voice reads a question, whisper hears
/// it back) and answers a photo question by looking; the next release changes
/// no model (only dialogue and vision load) and its photo question expects the
/// wrong product: refused. A text-only kiosk skips photo questions.
#[test]
fn the_health_check_loads_what_changed_and_looks_at_photos() {
    let dir = tempfile::tempdir().expect("tmp");
    let keys = rt()
        .block_on(Keys::init(&dir.path().join("keys")))
        .expect("keys");
    let url = format!("file://{}", dir.path().join("bucket").display());
    let remote = Remote::open(&url).expect("remote");
    let shared = crate::data_dir().join("models");
    let store = aisle_models::Store::open(&shared).expect("store");
    // The kiosk's store: the shared blobs, the manifests of everything but its
    // voice and speech models (those come with the release).
    let own = dir.path().join("kiosk-models");
    std::fs::create_dir_all(own.join("manifests")).expect("dir");
    std::os::unix::fs::symlink(shared.join("blobs"), own.join("blobs")).expect("link");
    let voice_and_ear = [
        "piper-en-us-joe-medium",
        "whisper-tiny-en-ggml",
        "silero-vad",
    ];
    for e in std::fs::read_dir(shared.join("manifests")).expect("manifests") {
        let e = e.expect("entry");
        let name = e.file_name().to_string_lossy().into_owned();
        if !voice_and_ear.iter().any(|m| name == format!("{m}.json")) {
            std::fs::copy(e.path(), own.join("manifests").join(&name)).expect("copy");
        }
    }
    let csv = dir.path().join("products.csv");
    std::fs::write(&csv, crate::scan::CATALOG).expect("csv");
    let publish_with = |photo: &str, expect: &str| {
        let plan = Plan {
            channel: "stable".into(),
            catalog: Some(csv.clone()),
            models: voice_and_ear.iter().map(|m| m.to_string()).collect(),
            health: vec![
                HealthQuestion {
                    ask: "how much are the bananas".into(),
                    expect: vec!["$0.69".into()],
                    photo: None,
                },
                HealthQuestion {
                    ask: "how much is this".into(),
                    expect: vec![expect.into()],
                    photo: Some(crate::scan::photo(photo).display().to_string()),
                },
            ],
            references: None,
            config: None,
            timestamp_expires: None,
            staged: false,
        };
        rt().block_on(publish::publish(&keys, &remote, &store, &plan))
            .expect("publish")
            .version
    };
    assert_eq!(publish_with("coffee.png", "Espresso"), 1);
    let config = dir.path().join("kiosk.toml");
    std::fs::write(
        &config,
        format!(
            "[device]\nname = \"kiosk-9\"\n\n[paths]\ndata_dir = {:?}\nmodel_dir = {:?}\n\n[inference]\nthreads = 2\nocr = false\n\n[dialogue]\nllm_fallback = false\n\n[sync]\nendpoint = {url:?}\ntrust_root = {:?}\n",
            dir.path().join("kiosk"),
            own,
            keys.dir.join("1.root.json"),
        ),
    )
    .expect("config");
    let cfg = aisle_firmware_config::load(Some(&config), &Default::default()).expect("config");
    let runs = Parts {
        dialogue_models: true,
        vision: true,
        speech: true,
        voice: true,
        ..Parts::none()
    };
    let sync = |parts: Parts| {
        rt().block_on(aisle_runtime::sync::sync_once(
            &cfg,
            parts,
            serde_json::Value::Null,
        ))
        .expect("sync")
    };
    let st = sync(runs);
    let health = st.health.clone().unwrap_or_default();
    eprintln!("release 1: {health}");
    assert_eq!(
        (st.state.as_str(), st.active),
        ("activated", Some(1)),
        "{st:?}"
    );
    for part in [
        "loaded dialogue+vision+speech+voice",
        "2 questions answered (1 with a photo)",
        "speech recognition heard",
    ] {
        assert!(health.contains(part), "{part:?} in {health:?}");
    }
    assert!(own.join("manifests/piper-en-us-joe-medium.json").is_file());

    // No model changes; the photo of a cat food tin is not espresso.
    assert_eq!(publish_with("chelsea.png", "Espresso"), 2);
    let st = sync(runs);
    eprintln!("release 2: {st:?}");
    assert_eq!(
        (st.state.as_str(), st.active),
        ("health-failed", Some(1)),
        "{st:?}"
    );
    let problem = st.health.clone().unwrap_or_default();
    assert!(problem.contains("how much is this"), "{problem}");
    assert!(problem.contains("Cat Food"), "{problem}");

    // A text-only kiosk cannot be asked about a photo: it skips the question.
    assert_eq!(publish_with("chelsea.png", "Espresso"), 3);
    let st = sync(Parts::dialogue());
    assert_eq!(
        (st.state.as_str(), st.active),
        ("activated", Some(3)),
        "{st:?}"
    );
    let health = st.health.clone().unwrap_or_default();
    assert!(health.contains("loaded dialogue,"), "{health}");
    assert!(health.contains("1 photo questions skipped"), "{health}");
}

/// `aisle serve` syncs by itself every `sync.interval_s`: a published release is
/// running within a few intervals, and `/health` says which.
#[test]
fn the_service_syncs_by_itself() {
    let dir = tempfile::tempdir().expect("tmp");
    let keys = rt()
        .block_on(Keys::init(&dir.path().join("keys")))
        .expect("keys");
    let url = format!("file://{}", dir.path().join("bucket").display());
    let remote = Remote::open(&url).expect("remote");
    let (_svc, addr, _stop) = serve_kiosk(dir.path(), &keys, &url, 1);
    assert_eq!(publish(&keys, &remote, dir.path(), "0.69", "$0.69"), 1);
    let t = Instant::now();
    loop {
        let body = ureq::get(&format!("http://{addr}/health"))
            .call()
            .expect("health")
            .body_mut()
            .read_to_string()
            .expect("body");
        let v: serde_json::Value = serde_json::from_str(&body).expect("json");
        if v["release"] == 1 {
            assert_eq!(v["sync"]["state"], "activated", "{v}");
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(60), "never synced: {v}");
        std::thread::sleep(Duration::from_millis(200));
    }
}
