//! Unpacking files from package archives, with generated fixtures.

use std::io::Write;

use aisle_models::ModelError;
use aisle_models::registry::extract;

fn wheel(path: &std::path::Path, members: &[(&str, &[u8])]) {
    let file = std::fs::File::create(path).expect("create");
    let mut zip = zip::ZipWriter::new(file);
    for (name, data) in members {
        zip.start_file(*name, zip::write::SimpleFileOptions::default())
            .expect("member");
        zip.write_all(data).expect("write");
    }
    zip.finish().expect("finish");
}

fn tgz(path: &std::path::Path, members: &[(&str, &[u8])]) {
    let file = std::fs::File::create(path).expect("create");
    let gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    for (name, data) in members {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, name, *data).expect("append");
    }
    tar.into_inner().expect("tar").finish().expect("gz");
}

#[test]
fn extracts_named_members_from_wheels_and_tarballs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = tempfile::tempdir().expect("tempdir");
    let whl = dir.path().join("pkg-1.0-py3-none-any.whl");
    wheel(
        &whl,
        &[
            ("pkg/a.bin", b"alpha"),
            ("pkg/b.bin", b"beta"),
            ("pkg/c.bin", b"gamma"),
        ],
    );
    let got = extract(&whl, &["pkg/c.bin", "pkg/a.bin"], out.path()).expect("extract");
    assert_eq!(std::fs::read(&got["pkg/a.bin"]).expect("read"), b"alpha");
    assert_eq!(std::fs::read(&got["pkg/c.bin"]).expect("read"), b"gamma");
    assert_eq!(got.len(), 2);

    let sdist = dir.path().join("pkg-1.0.tar.gz");
    tgz(
        &sdist,
        &[("pkg-1.0/assets/x.npz", b"xx"), ("pkg-1.0/setup.py", b"")],
    );
    let got = extract(&sdist, &["pkg-1.0/assets/x.npz"], out.path()).expect("extract");
    assert_eq!(
        std::fs::read(&got["pkg-1.0/assets/x.npz"]).expect("read"),
        b"xx"
    );
}

#[test]
fn missing_members_and_broken_archives_name_the_archive() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = tempfile::tempdir().expect("tempdir");
    let whl = dir.path().join("pkg.whl");
    wheel(&whl, &[("pkg/a.bin", b"alpha")]);
    let cases = [
        (whl.clone(), "pkg/missing.bin"),
        (dir.path().join("garbage.whl"), "pkg/a.bin"),
        (dir.path().join("empty.tar.gz"), "pkg/a.bin"),
        (dir.path().join("weird.rar"), "pkg/a.bin"),
    ];
    std::fs::write(
        dir.path().join("garbage.whl"),
        b"PK\x03\x04 but not really a zip",
    )
    .expect("write");
    std::fs::write(dir.path().join("empty.tar.gz"), b"").expect("write");
    std::fs::write(dir.path().join("weird.rar"), b"rar").expect("write");
    for (archive, member) in cases {
        let err = extract(&archive, &[member], out.path()).expect_err("must fail");
        assert!(matches!(err, ModelError::Unpack { .. }), "{err:?}");
        let name = archive.file_name().and_then(|n| n.to_str()).expect("name");
        assert!(err.to_string().contains(name), "{err}");
    }
}
