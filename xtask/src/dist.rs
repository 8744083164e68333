//! `cargo xtask dist`: a Debian package of the kiosk service. The binary and the LLM
//! engine library beside it under `/usr/lib/aisle` (`/usr/bin/aisle` links there), a
//! hardened systemd unit running `aisle serve` as the unprivileged `aisle` user,
//! state in `/var/lib/aisle`, config in `/etc/aisle/aisle.toml`.
//!
//! `check` unpacks a package into a temporary root and runs `aisle serve` from there:
//! it must find its LLM library beside itself (never the build tree), load, answer,
//! and stop cleanly on SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

const UNIT: &str = "[Unit]
Description=aisle kiosk runtime (HTTP + WebSocket API on loopback)
After=network.target

[Service]
Type=simple
User=aisle
Group=aisle
Environment=AISLE_DATA_DIR=/var/lib/aisle
# Two malloc arenas: with glibc's default (8 per core) each worker thread keeps what
# it freed, and resident memory crept up by ~140 MiB over 10,000 mixed requests in
# `aisle bench service` (~30 MiB with two).
Environment=MALLOC_ARENA_MAX=2
ExecStart=/usr/bin/aisle --config /etc/aisle/aisle.toml serve
Restart=on-failure
RestartSec=2
# SIGTERM drains requests in flight, then aisle exits 0.
KillSignal=SIGTERM
TimeoutStopSec=30
StateDirectory=aisle
StateDirectoryMode=0750
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
SystemCallArchitectures=native
CapabilityBoundingSet=
UMask=0027

[Install]
WantedBy=multi-user.target
";

const CONFIG: &str = "# aisle kiosk configuration: state only what differs from the defaults
# (`aisle config show` prints them all, `aisle config schema` documents each key).
[device]
name = \"kiosk\"

[paths]
data_dir = \"/var/lib/aisle\"

[service]
bind = \"127.0.0.1:8480\"
";

const POSTINST: &str = "#!/bin/sh
set -e
if [ \"$1\" = configure ]; then
    if ! getent passwd aisle >/dev/null; then
        adduser --system --group --home /var/lib/aisle --no-create-home aisle
    fi
    install -d -o aisle -g aisle -m 0750 /var/lib/aisle
    if [ -d /run/systemd/system ]; then
        systemctl daemon-reload || true
        systemctl enable aisle.service || true
    fi
fi
";

const PRERM: &str = "#!/bin/sh
set -e
if [ -d /run/systemd/system ] && [ \"$1\" = remove ]; then
    systemctl stop aisle.service || true
    systemctl disable aisle.service || true
fi
";

fn version() -> Result<String> {
    let toml = std::fs::read_to_string("Cargo.toml").context("reading Cargo.toml")?;
    toml.lines()
        .find_map(|l| l.strip_prefix("version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .map(str::to_string)
        .context("no workspace version in Cargo.toml")
}

fn write(path: &Path, text: &str, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// Builds the package from `target/<profile>`; returns its path.
pub fn build(target: &Path, profile: &str) -> Result<PathBuf> {
    let bin_dir = target.join(profile);
    let (bin, lib) = (bin_dir.join("aisle"), bin_dir.join("libaisle_llm.so"));
    for f in [&bin, &lib] {
        ensure!(f.is_file(), "{} is missing: build it first", f.display());
    }
    let version = version()?;
    let root = target.join("dist").join(format!("aisle_{version}_amd64"));
    if root.exists() {
        std::fs::remove_dir_all(&root)?;
    }
    let lib_dir = root.join("usr/lib/aisle");
    std::fs::create_dir_all(&lib_dir)?;
    std::fs::copy(&bin, lib_dir.join("aisle"))?;
    std::fs::copy(&lib, lib_dir.join("libaisle_llm.so"))?;
    std::fs::create_dir_all(root.join("usr/bin"))?;
    std::os::unix::fs::symlink("../lib/aisle/aisle", root.join("usr/bin/aisle"))?;
    write(&root.join("lib/systemd/system/aisle.service"), UNIT, 0o644)?;
    write(&root.join("etc/aisle/aisle.toml"), CONFIG, 0o644)?;
    write(
        &root.join("usr/share/doc/aisle/README.md"),
        &std::fs::read_to_string("README.md")?,
        0o644,
    )?;
    let size_kib: u64 = [lib_dir.join("aisle"), lib_dir.join("libaisle_llm.so")]
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len().div_ceil(1024))
        .sum();
    let control = format!(
        "Package: aisle
Version: {version}
Architecture: amd64
Maintainer: aisle developers <aisle@localhost>
Installed-Size: {size_kib}
Depends: libc6, libstdc++6, libgcc-s1, libgomp1, libasound2 | libasound2t64, adduser
Recommends: ffmpeg, libvulkan1, mesa-vulkan-drivers
Section: misc
Priority: optional
Description: on-device shopping assistant for retail kiosks and AR tablets
 The aisle kiosk runtime: speech, vision, catalog and dialogue on the device,
 served on loopback as an HTTP + WebSocket API by `aisle serve` (systemd unit
 aisle.service). Models are installed with `aisle models fetch`.
"
    );
    write(&root.join("DEBIAN/control"), &control, 0o644)?;
    write(
        &root.join("DEBIAN/conffiles"),
        "/etc/aisle/aisle.toml\n",
        0o644,
    )?;
    write(&root.join("DEBIAN/postinst"), POSTINST, 0o755)?;
    write(&root.join("DEBIAN/prerm"), PRERM, 0o755)?;
    let deb = target
        .join("dist")
        .join(format!("aisle_{version}_amd64.deb"));
    crate::run(
        Command::new("dpkg-deb")
            .args(["--build", "--root-owner-group", "-Zgzip"])
            .arg(&root)
            .arg(&deb),
    )?;
    Ok(deb)
}

const CATALOG: &str = "sku,name,price,stock,aisle
MLK-1,Whole Milk,3.49,20,milk
BAN-1,Organic Bananas,0.69,100,fresh fruits
";

/// One HTTP/1.1 request over a plain socket; (status, body).
fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> Result<(u16, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(120)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut out = String::new();
    s.take(1 << 20).read_to_string(&mut out)?;
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("no HTTP status")?;
    let body = out
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    Ok((status, body))
}

/// Unpacks `deb` into a temporary root and runs the service from there against a
/// small data directory whose models come from `model_dir`.
pub fn check(deb: &Path, model_dir: &Path) -> Result<()> {
    let tmp = std::env::temp_dir().join(format!("aisle-dist-check-{}", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)?;
    }
    let root = tmp.join("root");
    std::fs::create_dir_all(&root)?;
    crate::run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(&root))?;
    let unit = std::fs::read_to_string(root.join("lib/systemd/system/aisle.service"))?;
    for key in [
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "PrivateTmp=yes",
        "User=aisle",
    ] {
        ensure!(unit.contains(key), "the unit lacks {key}");
    }
    let packaged = std::fs::read_to_string(root.join("etc/aisle/aisle.toml"))?;
    ensure!(
        packaged.contains("/var/lib/aisle"),
        "the packaged config keeps no state in /var/lib/aisle"
    );
    std::fs::write(tmp.join("products.csv"), CATALOG)?;
    let config = tmp.join("aisle.toml");
    std::fs::write(
        &config,
        format!(
            "[device]\nname = \"dist-check\"\n\n[paths]\ndata_dir = {:?}\nmodel_dir = {:?}\ncatalog = \"products.csv\"\n\n[inference]\nthreads = 2\n",
            tmp.join("data"),
            model_dir
        ),
    )?;
    let bin = root.join("usr/bin/aisle");
    let mut child = Command::new(&bin)
        .arg("--config")
        .arg(&config)
        .args(["--json", "-v", "serve", "--bind", "127.0.0.1:0"])
        .current_dir(&tmp)
        .env_remove("AISLE_LLM_LIB")
        .env_remove("AISLE_DATA_DIR")
        .env_remove("AISLE_CONFIG")
        .env("AISLE_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {}", bin.display()))?;
    let result = (|| -> Result<()> {
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("stdout")?).read_line(&mut line)?;
        let addr: SocketAddr = line
            .split("\"address\":\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .with_context(|| format!("no address in {line:?}"))?
            .parse()?;
        let t = Instant::now();
        loop {
            let (status, body) = http(addr, "GET", "/health", "")?;
            if status == 200 {
                ensure!(
                    body.contains("\"llm\":true"),
                    "the LLM did not load: {body}"
                );
                break;
            }
            ensure!(body.contains("loading"), "/health: {status} {body}");
            ensure!(t.elapsed() < Duration::from_secs(600), "never ready");
            std::thread::sleep(Duration::from_millis(200));
        }
        let (status, body) = http(
            addr,
            "POST",
            "/v1/ask",
            r#"{"text":"how much is the whole milk?"}"#,
        )?;
        ensure!(
            status == 200 && body.contains("$3.49"),
            "/v1/ask: {status} {body}"
        );
        Ok(())
    })();
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let out = child.wait_with_output()?;
    let log = String::from_utf8_lossy(&out.stderr);
    result.with_context(|| format!("the packaged aisle serve:\n{log}"))?;
    ensure!(
        out.status.success(),
        "aisle serve exited with {} after SIGTERM:\n{log}",
        out.status
    );
    let beside = root.join("usr/lib/aisle/libaisle_llm.so");
    ensure!(
        log.contains(&beside.display().to_string()),
        "the LLM library was not taken from beside the binary ({}):\n{log}",
        beside.display()
    );
    std::fs::remove_dir_all(&tmp)?;
    eprintln!(
        "dist check: {} unpacked, served, answered and stopped cleanly",
        deb.display()
    );
    Ok(())
}

pub fn ensure_tools() -> Result<()> {
    if !crate::probe(&["dpkg-deb", "--version"]) {
        bail!("dpkg-deb is missing (Debian's dpkg package)");
    }
    Ok(())
}
