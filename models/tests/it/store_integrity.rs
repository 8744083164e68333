//! A damaged store is reported precisely, and nothing unverified ever lands in it.

use std::path::Path;

use aisle_models::{ModelError, Store};

use crate::real_store;

/// A fresh store holding copies of a few small real models.
pub fn small_store(dir: &Path) -> Store {
    let store = Store::open(dir).expect("open");
    for name in ["imagenet-labels", "whisper-assets", "silero-vad"] {
        store
            .copy_model_from(real_store(), name)
            .expect("copy model");
    }
    store
}

fn make_writable(p: &Path) {
    let mut perms = std::fs::metadata(p).expect("meta").permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(p, perms).expect("chmod");
}

#[test]
fn flipped_byte_is_a_checksum_mismatch_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = small_store(dir.path());
    let ok = store.verify("silero-vad", &mut |_| {}).expect("intact");
    let blob = ok.path("silero_vad.onnx").expect("file").to_path_buf();
    make_writable(&blob);
    let mut bytes = std::fs::read(&blob).expect("read");
    bytes[1000] ^= 0x01;
    std::fs::write(&blob, &bytes).expect("write");
    match store.verify("silero-vad", &mut |_| {}) {
        Err(ModelError::ChecksumMismatch {
            path,
            expected,
            actual,
        }) => {
            assert_eq!(path, blob);
            assert_eq!(
                expected,
                "1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3"
            );
            assert_ne!(actual, expected);
        }
        other => panic!("expected a checksum mismatch, got {other:?}"),
    }
    // The other models are unaffected.
    assert!(store.verify("imagenet-labels", &mut |_| {}).is_ok());
}

#[test]
fn truncated_missing_and_unreadable_files_are_typed_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = small_store(dir.path());
    let labels = store
        .verify("imagenet-labels", &mut |_| {})
        .expect("intact");
    let blob = labels
        .path("imagenet_labels.txt")
        .expect("file")
        .to_path_buf();
    make_writable(&blob);
    let bytes = std::fs::read(&blob).expect("read");
    std::fs::write(&blob, &bytes[..100]).expect("truncate");
    assert!(matches!(
        store.verify("imagenet-labels", &mut |_| {}),
        Err(ModelError::SizeMismatch {
            expected: 21674,
            actual: 100,
            ..
        })
    ));
    std::fs::remove_file(&blob).expect("remove");
    let err = store
        .verify("imagenet-labels", &mut |_| {})
        .expect_err("missing");
    assert!(
        matches!(err, ModelError::MissingFile { ref file, .. } if file == "imagenet_labels.txt"),
        "{err:?}"
    );

    assert!(matches!(
        store.verify("nope", &mut |_| {}),
        Err(ModelError::NotInstalled { .. })
    ));

    let manifest = dir.path().join("manifests/whisper-assets.json");
    std::fs::write(&manifest, "{ not json").expect("write");
    let err = store
        .verify("whisper-assets", &mut |_| {})
        .expect_err("bad manifest");
    assert!(matches!(err, ModelError::Manifest { .. }), "{err:?}");
    assert!(err.to_string().contains("whisper-assets.json"), "{err}");
}

#[test]
fn a_file_with_the_wrong_hash_never_lands_in_the_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let want = "0".repeat(64);
    let err = store
        .add_blob(
            &mut &b"some bytes"[..],
            Some((&want, 10)),
            Path::new("pkg.whl!/model.bin"),
            &mut |_| {},
        )
        .expect_err("hash differs");
    assert!(
        matches!(err, ModelError::ChecksumMismatch { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("pkg.whl!/model.bin"), "{err}");
    let err = store
        .add_blob(
            &mut &b"short"[..],
            Some((&want, 10)),
            Path::new("x"),
            &mut |_| {},
        )
        .expect_err("size differs");
    assert!(
        matches!(
            err,
            ModelError::SizeMismatch {
                expected: 10,
                actual: 5,
                ..
            }
        ),
        "{err:?}"
    );
    let count = |sub: &str| {
        std::fs::read_dir(dir.path().join(sub))
            .expect("dir")
            .count()
    };
    assert_eq!(
        (count("blobs/sha256"), count("tmp")),
        (0, 0),
        "nothing left behind"
    );
    // A manifest cannot name a file that is not in the store.
    let mut manifest = real_store().manifest("imagenet-labels").expect("manifest");
    manifest.name = "orphan".into();
    assert!(matches!(
        store.write_manifest(&manifest),
        Err(ModelError::MissingFile { .. })
    ));
}
