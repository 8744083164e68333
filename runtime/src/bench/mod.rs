//! `aisle bench ...`: benchmarks that print a table comparing aisle with a named peer
//! measured in the same run, on the same machine, with the same inputs.

pub mod ar;
pub mod assistant;
pub mod llm;
pub mod service;
pub mod speech;
pub mod vision;

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
