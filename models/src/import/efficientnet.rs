//! EfficientNet-Lite0: legacy PyTorch `.pth` -> ONNX, by a set-up-time Python step.
//!
//! The runtime stays Rust; this importer runs `tools/efficientnet_pth_to_onnx.py`
//! (embedded in the binary) with numpy and onnx from a private virtual environment
//! under the data directory, created with pip on first use (versions pinned).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{ModelError, Result};

pub const SCRIPT: &str = include_str!("../../tools/efficientnet_pth_to_onnx.py");
/// Pinned so that an import is reproducible.
pub const PYTHON_REQUIREMENTS: &[&str] = &["numpy==2.4.6", "onnx==1.23.2"];

fn err(path: &Path, message: impl Into<String>) -> ModelError {
    ModelError::Import {
        importer: "efficientnet-pth-to-onnx".into(),
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// A Python interpreter with numpy and onnx, in `venv_dir` (created if needed).
pub fn ensure_python(venv_dir: &Path) -> Result<PathBuf> {
    ensure_venv(venv_dir, PYTHON_REQUIREMENTS, "numpy, onnx")
}

/// A Python virtual environment in `venv_dir` where `imports` (a Python import list)
/// work, created and filled with pip from `requirements` if needed. Set-up-time
/// tooling (importers, benchmark peers); the runtime never needs Python.
pub fn ensure_venv(venv_dir: &Path, requirements: &[&str], imports: &str) -> Result<PathBuf> {
    let python = venv_dir.join("bin/python");
    let probe = |py: &Path| {
        Command::new(py)
            .args(["-c", &format!("import {imports}")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    if python.exists() && probe(&python) {
        return Ok(python);
    }
    let base = std::env::var("AISLE_PYTHON").unwrap_or_else(|_| "python3".into());
    let venv_err = |e: ModelError| match e {
        ModelError::Import { path, message, .. } => ModelError::Import {
            importer: "python-venv".into(),
            path,
            message,
        },
        other => other,
    };
    run(
        Command::new(&base).arg("-m").arg("venv").arg(venv_dir),
        venv_dir,
        "python3 -m venv",
    )
    .map_err(venv_err)?;
    let mut pip = Command::new(&python);
    pip.args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
    ])
    .args(requirements);
    run(
        &mut pip,
        venv_dir,
        &format!("pip install {}", requirements.join(" ")),
    )
    .map_err(venv_err)?;
    if !probe(&python) {
        return Err(venv_err(err(
            venv_dir,
            format!("`import {imports}` still fails after pip install"),
        )));
    }
    Ok(python)
}

fn run(cmd: &mut Command, path: &Path, what: &str) -> Result<()> {
    let out = cmd
        .output()
        .map_err(|e| err(path, format!("cannot run {what}: {e}")))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: String = stderr
            .lines()
            .rev()
            .take(8)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n");
        return Err(err(
            path,
            format!("{what} failed ({}):\n{tail}", out.status),
        ));
    }
    Ok(())
}

/// Converts `pth` to `out` (ONNX) with the interpreter `python`.
pub fn convert_pth_to_onnx(python: &Path, pth: &Path, out: &Path, work_dir: &Path) -> Result<()> {
    let script = work_dir.join("efficientnet_pth_to_onnx.py");
    std::fs::write(&script, SCRIPT).map_err(ModelError::io(&script))?;
    let mut cmd = Command::new(python);
    cmd.arg(&script).arg(pth).arg(out);
    run(&mut cmd, pth, "efficientnet_pth_to_onnx.py")
}
