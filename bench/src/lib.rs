//! `aisle bench ...`: benchmarks that print a table comparing aisle with a named peer
//! measured in the same run, on the same machine, with the same inputs. A crate of its
//! own (with the Python peers' scripts beside the code that runs them), so the kiosk
//! runtime carries none of it; the `aisle` binary calls [`assistant::run`] and the
//! others.

/// `println!` that returns an error instead of panicking when stdout is closed.
macro_rules! outln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout(), $($t)*)?
    }};
}

pub mod ar;
pub mod assistant;
pub mod browser;
pub mod llm;
pub mod service;
pub mod speech;
pub mod sync;
pub mod tts;
pub mod ui;
pub mod vision;

use std::sync::Arc;

use aisle_firmware_config::DeviceConfig;
use aisle_runtime::scan::VisionModels;
use aisle_vision::{Engine, OnnxOptions};

/// The configuration a benchmark measures with: the same models, but the store data
/// it builds or changes (the demo catalog, its caches) lives in `<data dir>/bench/`.
/// A benchmark never touches the store's own catalog: once, `aisle bench vision` on a
/// store's data dir imported the 49,689 demo products into it.
pub fn isolated(cfg: &DeviceConfig) -> DeviceConfig {
    let mut c = cfg.clone();
    c.data_dir = cfg.data_dir.join("bench");
    c
}

/// The share of the machine's CPU time (0 to 1) spent on anything but idling over
/// `window`, from `/proc/stat` (None where there is none).
pub fn cpu_busy(window: std::time::Duration) -> Option<f64> {
    fn sample() -> Option<(u64, u64)> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let v: Vec<u64> = stat
            .lines()
            .next()?
            .split_whitespace()
            .skip(1)
            .filter_map(|x| x.parse().ok())
            .collect();
        let idle = v.get(3)? + v.get(4)?; // idle + iowait
        Some((idle, v.iter().sum()))
    }
    let (idle0, total0) = sample()?;
    std::thread::sleep(window);
    let (idle1, total1) = sample()?;
    let total = total1.checked_sub(total0).filter(|t| *t > 0)?;
    let idle = idle1.checked_sub(idle0)?;
    Some(1.0 - (idle as f64 / total as f64).min(1.0))
}

/// Warns when other work holds the CPU as a benchmark starts: its timings and the
/// peer's, taken at different moments, would then not be comparable. (On 2 cores,
/// whisper.cpp's spin-waiting pool runs about 30x slower while another process holds
/// a core; an EfficientNet embed once read 1.54x the peer's this way, and 1.03x on a
/// quiet machine.)
pub fn warn_if_busy() {
    if let Some(busy) = cpu_busy(std::time::Duration::from_millis(500))
        && busy > 0.15
    {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        tracing::warn!(
            "the machine is busy before the benchmark: {:.0}% of {cores} cores in use by other work; \
             timings taken now are not comparable with a quiet machine's",
            busy * 100.0
        );
    }
}

/// A `--threads` value: 1 to 256, as `inference.threads` (whisper.cpp aborts the
/// process on absurd counts).
pub fn parse_threads(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n @ 1..=256) => Ok(n),
        Ok(n) => Err(format!("{n} threads: give 1 to 256")),
        Err(e) => Err(format!("{s:?} is not a thread count: {e}")),
    }
}

/// Options shared by the benchmarks that run a model against a peer.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Timed runs (median reported), after one warm-up.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    #[arg(long, default_value_t = 2, value_parser = parse_threads)]
    pub threads: usize,
    /// Skip the peer (no Python needed).
    #[arg(long)]
    pub no_peer: bool,
}

fn onnx_options(cfg: &DeviceConfig, engine: Engine) -> anyhow::Result<OnnxOptions> {
    let store = aisle_runtime::kiosk::open_store(cfg)?;
    Ok(aisle_runtime::kiosk::onnx_options(cfg, &store, engine)?)
}

fn load_models(cfg: &DeviceConfig, engine: Option<Engine>) -> anyhow::Result<Arc<VisionModels>> {
    let store = aisle_runtime::kiosk::open_store(cfg)?;
    Ok(Arc::new(aisle_runtime::kiosk::vision_models(
        cfg, &store, engine,
    )?))
}

fn load_detector(
    cfg: &DeviceConfig,
    engine: Option<Engine>,
) -> anyhow::Result<aisle_vision::detect::ObjectDetector> {
    let store = aisle_runtime::kiosk::open_store(cfg)?;
    Ok(aisle_runtime::kiosk::detector(cfg, &store, engine)?)
}

fn load_transcriber(
    cfg: &DeviceConfig,
    threads: Option<usize>,
) -> anyhow::Result<aisle_speech::Transcriber> {
    let store = aisle_runtime::kiosk::open_store(cfg)?;
    Ok(aisle_runtime::kiosk::transcriber(cfg, &store, threads)?)
}

/// Runs a peer script (its text written to `dir`) with `python` and `args`; its
/// standard output is one JSON document.
pub fn run_peer(
    python: &std::path::Path,
    dir: &std::path::Path,
    name: &str,
    script: &str,
    args: &[std::ffi::OsString],
) -> anyhow::Result<serde_json::Value> {
    use anyhow::Context as _;
    let path = dir.join(name);
    std::fs::write(&path, script)?;
    let out = std::process::Command::new(python)
        .arg(&path)
        .args(args)
        .output()?;
    if !out.status.success() {
        anyhow::bail!(
            "peer {name} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    serde_json::from_slice(&out.stdout).with_context(|| format!("output of peer {name}"))
}
