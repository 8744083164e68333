//! `aisle models ...`

use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::process::ExitCode;

use aisle_firmware_config::DeviceConfig;
use aisle_models::{Fetcher, ModelCatalog, ModelError, Outcome, Store};
use anyhow::{Context, Result};
use serde::Serialize;

use crate::cli::ModelsCmd;
use crate::progress::FetchProgress;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    Verified,
    NotInstalled,
    Damaged,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelStatus {
    pub name: String,
    pub version: String,
    pub task: String,
    pub format: String,
    pub size: u64,
    pub license: String,
    pub state: State,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

fn open_store(cfg: &DeviceConfig) -> Result<Store> {
    Store::open(&cfg.model_dir)
        .with_context(|| format!("cannot open model store {}", cfg.model_dir.display()))
}

/// Every catalog model and every installed model, each re-hashed.
pub fn status(cfg: &DeviceConfig) -> Result<Vec<ModelStatus>> {
    status_of(cfg, &[])
}

fn status_of(cfg: &DeviceConfig, only: &[String]) -> Result<Vec<ModelStatus>> {
    let store = open_store(cfg)?;
    let catalog = ModelCatalog::default_set()?;
    let mut names: BTreeSet<String> = catalog.names().into_iter().map(String::from).collect();
    names.extend(store.installed()?);
    if !only.is_empty() {
        for n in only {
            if !names.contains(n) {
                catalog.get(n)?;
            }
        }
        names.retain(|n| only.contains(n));
    }
    let progress = FetchProgress::new(!std::io::stderr().is_terminal());
    let mut out = Vec::new();
    for name in names {
        let entry = catalog.get(&name).ok();
        let result = store.verify(&name, &mut |n| {
            aisle_models::FetchObserver::bytes(&progress, n)
        });
        let (state, problem, manifest) = match result {
            Ok(a) => (State::Verified, None, Some(a.manifest)),
            Err(ModelError::NotInstalled { .. }) => (State::NotInstalled, None, None),
            Err(e) => (
                State::Damaged,
                Some(e.to_string()),
                store.manifest(&name).ok(),
            ),
        };
        let pick = |from_manifest: Option<&String>, from_entry: Option<&String>| {
            from_manifest.or(from_entry).cloned().unwrap_or_default()
        };
        out.push(ModelStatus {
            version: pick(
                manifest.as_ref().map(|m| &m.version),
                entry.map(|e| &e.version),
            ),
            task: pick(manifest.as_ref().map(|m| &m.task), entry.map(|e| &e.task)),
            format: pick(
                manifest.as_ref().map(|m| &m.format),
                entry.map(|e| &e.format),
            ),
            license: pick(
                manifest.as_ref().map(|m| &m.license),
                entry.map(|e| &e.license),
            ),
            size: manifest
                .as_ref()
                .map(|m| m.total_size())
                .unwrap_or_else(|| {
                    entry
                        .map(|e| e.files.iter().map(|f| f.size).sum())
                        .unwrap_or(0)
                }),
            name,
            state,
            problem,
        });
    }
    progress.finish();
    Ok(out)
}

pub fn print_table(rows: &[ModelStatus]) -> std::io::Result<()> {
    outln!(
        "  {:<24} {:<26} {:<26} {:<15} {:>10}  {:<13} {}",
        "NAME",
        "VERSION",
        "TASK",
        "FORMAT",
        "SIZE",
        "LICENSE",
        "STATE"
    );
    for r in rows {
        let state = match r.state {
            State::Verified => "verified",
            State::NotInstalled => "not installed",
            State::Damaged => "DAMAGED",
        };
        outln!(
            "  {:<24} {:<26} {:<26} {:<15} {:>10}  {:<13} {}",
            r.name,
            r.version,
            r.task,
            r.format,
            indicatif::HumanBytes(r.size).to_string(),
            r.license,
            state
        );
        if let Some(p) = &r.problem {
            outln!("      {p}");
        }
    }
    Ok(())
}

pub fn run(cmd: &ModelsCmd, cfg: &DeviceConfig, json: bool) -> Result<ExitCode> {
    match cmd {
        ModelsCmd::Fetch { names } => {
            let store = open_store(cfg)?;
            let catalog = ModelCatalog::default_set()?;
            let progress = FetchProgress::new(json || !std::io::stderr().is_terminal());
            let tools = cfg.data_dir.join("tools");
            let fetcher = Fetcher::new(&store, &catalog, &tools, &progress);
            let reports = fetcher.fetch(names);
            progress.finish();
            let reports = reports?;
            if json {
                let items: Vec<_> = reports
                    .iter()
                    .map(|r| {
                        serde_json::json!({
                            "name": r.name,
                            "outcome": match r.outcome { Outcome::UpToDate => "up-to-date", Outcome::Installed => "installed" },
                        })
                    })
                    .collect();
                outln!("{}", serde_json::to_string_pretty(&items)?);
            } else {
                let installed = reports
                    .iter()
                    .filter(|r| r.outcome == Outcome::Installed)
                    .count();
                outln!(
                    "{} model(s) in {}: {installed} installed, {} already up to date",
                    reports.len(),
                    cfg.model_dir.display(),
                    reports.len() - installed
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        ModelsCmd::List => {
            let rows = status(cfg)?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                print_table(&rows)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        ModelsCmd::Verify { names } => {
            let rows = status_of(cfg, names)?;
            let bad: Vec<&ModelStatus> =
                rows.iter().filter(|r| r.state != State::Verified).collect();
            if json {
                outln!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({ "ok": bad.is_empty(), "models": rows })
                    )?
                );
            } else {
                for r in &rows {
                    match (&r.state, &r.problem) {
                        (State::Verified, _) => outln!("ok       {}", r.name),
                        (State::NotInstalled, _) => outln!(
                            "MISSING  {}: not installed (run `aisle models fetch`)",
                            r.name
                        ),
                        (State::Damaged, p) => {
                            outln!("DAMAGED  {}: {}", r.name, p.as_deref().unwrap_or(""))
                        }
                    }
                }
            }
            if bad.is_empty() {
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!(
                    "{} of {} model(s) failed verification",
                    bad.len(),
                    rows.len()
                );
                Ok(ExitCode::FAILURE)
            }
        }
        ModelsCmd::Add {
            name,
            files,
            task,
            format,
            license,
            version,
            description,
        } => {
            // Before any file is stored: a bad name must leave nothing behind.
            aisle_models::check_model_name(name)?;
            let store = open_store(cfg)?;
            if ModelCatalog::default_set()?.get(name).is_ok() {
                anyhow::bail!("{name} is a catalog model; add local files under another name");
            }
            let mut entries = Vec::new();
            for f in files {
                let file_name = f
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .with_context(|| format!("{}: not a file path", f.display()))?;
                if entries
                    .iter()
                    .any(|e: &aisle_models::ManifestFile| e.name == file_name)
                {
                    anyhow::bail!("{}: two files named {file_name}", f.display());
                }
                let (sha256, size) = store.add_file(f, None, &mut |_| {})?;
                entries.push(aisle_models::ManifestFile {
                    name: file_name,
                    sha256,
                    size,
                });
            }
            let manifest = aisle_models::Manifest {
                schema: aisle_models::MANIFEST_SCHEMA,
                name: name.clone(),
                version: version.clone(),
                task: task.clone(),
                format: format.clone(),
                license: license.clone(),
                description: description.clone(),
                source: None,
                derived_from: None,
                files: entries,
                installed_at: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs()),
            };
            store.write_manifest(&manifest)?;
            let verified = store.verify(name, &mut |_| {})?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&verified.manifest)?);
            } else {
                outln!(
                    "added {name}: {} file(s), verified",
                    verified.manifest.files.len()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        ModelsCmd::Path { name, file } => {
            let store = open_store(cfg)?;
            let artifact = store.verify(name, &mut |_| {})?;
            match file {
                Some(f) => outln!("{}", artifact.path(f)?.display()),
                None => {
                    for (f, p) in artifact.files() {
                        outln!("{f}\t{}", p.display());
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
