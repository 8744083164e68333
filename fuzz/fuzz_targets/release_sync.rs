//! A kiosk's sync (TUF's client workflow through our transport, then
//! `rollout.json`, `release.json`, the catalog and its delta) against a bucket in
//! which one object is replaced by the fuzzer's bytes: a signed release published
//! once per process, with a second root, a rollout and a delta. Any bytes give a
//! sync state or an error; the kiosk never activates what the keys did not sign.
#![no_main]
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::OnceLock;

use aisle_release::publish::{self, Plan};
use aisle_release::{HealthCheck, HealthQuestion, Keys, Paths, Remote, Staged};
use libfuzzer_sys::fuzz_target;

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    store: aisle_models::Store,
    objects: BTreeMap<String, Vec<u8>>,
    rt: tokio::runtime::Runtime,
}

struct Pass;
impl HealthCheck for Pass {
    fn check(&self, _: &Staged, _: &aisle_models::Store) -> Result<String, String> {
        Ok("ok".into())
    }
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let dir = tempfile::tempdir().expect("tmp");
        let bucket = dir.path().join("bucket");
        let remote = Remote::open(&format!("file://{}", bucket.display())).expect("remote");
        let keys = rt
            .block_on(Keys::init(&dir.path().join("keys")))
            .expect("keys");
        let store = aisle_models::Store::open(&dir.path().join("models")).expect("store");
        let mut rows = String::from("sku,name,price,stock,aisle\n");
        for i in 0..200 {
            rows.push_str(&format!(
                "S-{i},Product {i},{}.99,5,aisle {}\n",
                i % 9,
                i % 7
            ));
        }
        for v in 0..2 {
            let csv = dir.path().join(format!("p{v}.csv"));
            std::fs::write(
                &csv,
                rows.replace("S-7,Product 7,7.99", &format!("S-7,Product 7,{v}.49")),
            )
            .expect("csv");
            let plan = Plan {
                channel: "stable".into(),
                catalog: Some(csv),
                health: vec![HealthQuestion {
                    ask: "how much is product 7".into(),
                    expect: vec!["$".into()],
                    photo: None,
                }],
                ..Default::default()
            };
            rt.block_on(publish::publish(&keys, &remote, &store, &plan))
                .expect("publish");
            if v == 0 {
                rt.block_on(keys.rotate_timestamp_key(&["root-1", "root-2"]))
                    .expect("rotate");
            }
        }
        rt.block_on(aisle_release::rollout::start(
            &keys,
            &remote,
            2,
            vec![100],
            0.9,
            0.2,
        ))
        .expect("rollout");
        let mut objects = BTreeMap::new();
        let mut stack = vec![bucket.clone()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).expect("dir") {
                let p = e.expect("entry").path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    let key = p
                        .strip_prefix(&bucket)
                        .expect("under")
                        .display()
                        .to_string();
                    objects.insert(key, std::fs::read(&p).expect("read"));
                }
            }
        }
        Fixture {
            root: keys.dir.join("1.root.json"),
            _dir: dir,
            store,
            objects,
            rt,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let Some((&which, bytes)) = data.split_first() else {
        return;
    };
    let keys: Vec<&String> = f.objects.keys().collect();
    let replaced = keys[usize::from(which) % keys.len()];
    let remote = Remote::in_memory();
    f.rt.block_on(async {
        for (k, v) in &f.objects {
            let v = if k == replaced {
                bytes.to_vec()
            } else {
                v.clone()
            };
            remote.put(k, v).await.expect("put");
        }
    });
    let kiosk = tempfile::tempdir().expect("tmp");
    let paths = Paths::new(kiosk.path());
    let st = f.rt.block_on(aisle_release::sync::sync_once(
        &paths,
        &remote,
        &f.root,
        &f.store,
        &Pass,
        "kiosk-fuzz",
    ));
    if let Ok(st) = st
        && let Some(v) = st.active
    {
        // Only a version staff signed (1 or 2) can ever be active.
        assert!(v == 1 || v == 2, "activated {v}: {st:?}");
    }
});
