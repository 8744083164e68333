//! `aisle release ...` (staff) and `aisle sync` (kiosk).

use std::path::Path;
use std::process::ExitCode;

use aisle_firmware_config::DeviceConfig;
use aisle_release::publish::{self, HealthQuestion, Plan};
use aisle_release::{Keys, Remote};
use anyhow::{Context, Result, bail};

use crate::cli::ReleaseCmd;

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

fn location(cfg: &DeviceConfig, to: Option<&str>) -> Result<Remote> {
    aisle_runtime::sync::remote(cfg, to).map_err(|e| match e {
        aisle_runtime::sync::SyncError::NotConfigured => {
            anyhow::anyhow!("no release location: pass --to s3://bucket/prefix or file:///path, or set sync.endpoint")
        }
        e => e.into(),
    })
}

pub fn release(cfg: &DeviceConfig, cmd: &ReleaseCmd, json: bool) -> Result<ExitCode> {
    let rt = runtime()?;
    match cmd {
        ReleaseCmd::Init { keys } => {
            let k = rt.block_on(Keys::init(keys))?;
            if json {
                outln!(
                    "{}",
                    serde_json::json!({ "keys": k.dir, "root": k.root_json() })
                );
            } else {
                outln!("Signing keys in {}", k.dir.display());
                outln!("  root-1/2/3.pk8 sign root.json (2 of 3 needed): keep them offline");
                outln!("  targets.pk8, snapshot.pk8 and timestamp.pk8 sign each release");
                outln!(
                    "Trusted root: {}  (give it to each kiosk as sync.trust_root)",
                    k.root_json().display()
                );
            }
        }
        ReleaseCmd::Publish {
            keys,
            to,
            catalog,
            models,
            channel,
            health,
            overrides,
            no_references,
            staged,
        } => {
            let remote = location(cfg, to.as_deref())?;
            let store = aisle_models::Store::open(&cfg.model_dir)
                .with_context(|| format!("model store {}", cfg.model_dir.display()))?;
            let models = if models.is_empty() {
                store.installed()?
            } else {
                models.clone()
            };
            let catalog = catalog.clone().or_else(|| cfg.file.paths.catalog.clone());
            let health = match health {
                Some(p) => read_health(p)?,
                None => match &catalog {
                    Some(c) => default_health(cfg, c)?,
                    None => Vec::new(),
                },
            };
            if let Some(o) = overrides {
                let text = aisle_firmware_config::read_bounded_text(o, 1 << 20)
                    .with_context(|| format!("{}", o.display()))?;
                aisle_firmware_config::with_overrides(cfg, &text, o)?;
            }
            let tmp = tempfile::tempdir()?;
            let references = if *no_references {
                None
            } else {
                let db = aisle_runtime::kiosk::catalog_path(cfg);
                match db.is_file() {
                    true => {
                        let db = aisle_runtime::catalog::CatalogDb::open(&db)?;
                        let lines = aisle_runtime::sync::export_references(&db)?;
                        (!lines.is_empty())
                            .then(|| {
                                let p = tmp.path().join("embeddings.jsonl");
                                std::fs::write(&p, lines).map(|()| p)
                            })
                            .transpose()?
                    }
                    false => None,
                }
            };
            let plan = Plan {
                channel: channel.clone(),
                catalog,
                models,
                health,
                references,
                config: overrides.clone(),
                timestamp_expires: None,
                staged: *staged,
            };
            let keys = Keys::new(keys);
            let p = rt.block_on(publish::publish(&keys, &remote, &store, &plan))?;
            if json {
                outln!("{}", serde_json::to_string(&p)?);
            } else {
                outln!(
                    "Published release {} to {}: {} targets, {} uploaded ({:.1} MB), {} already there",
                    p.version,
                    p.location,
                    p.targets,
                    p.uploaded,
                    p.uploaded_bytes as f64 / 1e6,
                    p.skipped
                );
                if *staged {
                    outln!(
                        "Held for a staged rollout: start it with `aisle release rollout --version {}`",
                        p.version
                    );
                }
            }
        }
        ReleaseCmd::RotateKey { keys, signers } => {
            for s in signers {
                if !["root-1", "root-2", "root-3"].contains(&s.as_str()) {
                    bail!("--signers {s}: one of root-1, root-2, root-3");
                }
            }
            let signers: Vec<&str> = signers.iter().map(String::as_str).collect();
            let v = rt.block_on(Keys::new(keys).rotate_timestamp_key(&signers))?;
            if json {
                outln!("{}", serde_json::json!({ "root_version": v }));
            } else {
                outln!(
                    "Root {v} names a new timestamp key; publish a release to hand it to the kiosks"
                );
            }
        }
        ReleaseCmd::Rollout {
            keys,
            to,
            version,
            groups,
            success,
            max_errors,
        } => {
            let remote = location(cfg, to.as_deref())?;
            let keys = Keys::new(keys);
            use aisle_release::rollout;
            let (r, group) = match version {
                Some(v) => (
                    rt.block_on(rollout::start(
                        &keys,
                        &remote,
                        *v,
                        groups.clone(),
                        *success,
                        *max_errors,
                    ))?,
                    None,
                ),
                None => {
                    let s = rt.block_on(rollout::step(&keys, &remote))?;
                    (s.rollout.clone(), Some(s))
                }
            };
            if json {
                outln!(
                    "{}",
                    serde_json::json!({ "rollout": r, "group": group.map(|g| serde_json::json!({
                        "percent": g.group_percent, "size": g.group_size, "on_version": g.on_version, "failed": g.failed })) })
                );
            } else {
                if let Some(g) = &group {
                    outln!(
                        "Group looked at ({}%): {} kiosks, {} run release {}, {} failed it",
                        g.group_percent,
                        g.group_size,
                        g.on_version,
                        r.version,
                        g.failed
                    );
                }
                outln!(
                    "Release {}: {} ({}% of the fleet open; groups {:?}) - {}",
                    r.version,
                    if r.halted { "HALTED" } else { "rolling out" },
                    r.open_percent(),
                    r.groups,
                    r.note
                );
            }
            if r.halted {
                return Ok(ExitCode::FAILURE);
            }
        }
        ReleaseCmd::List { keys, to } => {
            let remote = location(cfg, to.as_deref())?;
            let root = Keys::new(keys).root_json();
            let root = std::fs::read(&root).with_context(|| format!("{}", root.display()))?;
            let l = rt.block_on(publish::list(&remote, &root))?;
            if json {
                outln!("{}", serde_json::to_string(&l)?);
            } else if l.is_empty() {
                outln!("No release is published at {}", remote.location());
            } else {
                outln!(
                    "{:>7}  {:<8}  {:<25}  {:<7}  models",
                    "version",
                    "channel",
                    "expires",
                    "catalog"
                );
                for r in &l {
                    outln!(
                        "{:>7}  {:<8}  {:<25}  {:<7}  {}{}",
                        r.version,
                        r.channel,
                        r.expires,
                        if r.catalog { "yes" } else { "no" },
                        r.models.join(" "),
                        if r.current { "  (current)" } else { "" }
                    );
                }
            }
        }
        ReleaseCmd::Refresh { keys, to, days } => {
            let remote = location(cfg, to.as_deref())?;
            if *days == 0 || *days > 365 {
                bail!("--days {days}: between 1 and 365");
            }
            let expires =
                jiff::Timestamp::now() + jiff::SignedDuration::from_hours(i64::from(*days) * 24);
            let v = rt.block_on(publish::refresh_timestamp(
                &Keys::new(keys),
                &remote,
                expires,
            ))?;
            if json {
                outln!(
                    "{}",
                    serde_json::json!({ "timestamp_version": v, "expires": expires.to_string() })
                );
            } else {
                outln!("Timestamp {v} signed, valid until {expires}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Health questions from a JSON file; a question's `photo` is a path relative to
/// the file (checked here, so a missing photo names itself before anything is
/// uploaded).
fn read_health(p: &Path) -> Result<Vec<HealthQuestion>> {
    let text = aisle_firmware_config::read_bounded_text(p, 1 << 20)
        .with_context(|| format!("{}", p.display()))?;
    let mut qs: Vec<HealthQuestion> = serde_json::from_str(&text).with_context(|| {
        format!(
            "{}: health questions are [{{\"ask\": \"...\", \"expect\": [\"...\"], \"photo\": \"optional.jpg\"}}]",
            p.display()
        )
    })?;
    let base = p.parent().unwrap_or(Path::new("."));
    for (i, q) in qs.iter_mut().enumerate() {
        if let Some(photo) = &q.photo {
            let full = base.join(photo);
            if !full.is_file() {
                bail!(
                    "{}: question {} ({:?}): photo {} is not a file",
                    p.display(),
                    i + 1,
                    q.ask,
                    full.display()
                );
            }
            q.photo = Some(full.display().to_string());
        }
    }
    Ok(qs)
}

/// The price of the catalog's first three products, as the kiosk shows prices.
fn default_health(cfg: &DeviceConfig, catalog: &Path) -> Result<Vec<HealthQuestion>> {
    use aisle_runtime::catalog::{self, CatalogDb, ImportOptions};
    let dir = tempfile::tempdir()?;
    let mut db = CatalogDb::open(&dir.path().join("check.sqlite"))?;
    let opts = ImportOptions {
        default_currency: cfg.file.device.currency.clone(),
        ..Default::default()
    };
    catalog::import_file(&mut db, catalog, &opts)
        .with_context(|| format!("the catalog {}", catalog.display()))?;
    let view = catalog::CatalogView::load(&db)?;
    Ok(view
        .products()
        .iter()
        .take(3)
        .map(|p| HealthQuestion {
            ask: format!("how much is the {}", p.name),
            expect: vec![catalog::format_price(p.price_cents, &p.currency)],
            ..Default::default()
        })
        .collect())
}

pub fn fleet_status(cfg: &DeviceConfig, to: Option<&str>, json: bool) -> Result<ExitCode> {
    let remote = location(cfg, to)?;
    let rt = runtime()?;
    let reports = rt.block_on(aisle_release::sync::fleet(&remote))?;
    if json {
        outln!("{}", serde_json::to_string(&reports)?);
        return Ok(ExitCode::SUCCESS);
    }
    if reports.is_empty() {
        outln!("No kiosk has reported to {} yet.", remote.location());
        return Ok(ExitCode::SUCCESS);
    }
    let v = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
    outln!(
        "{:<20}  {:>7}  {:>7}  {:<14}  {:<20}  problem",
        "kiosk",
        "release",
        "offered",
        "state",
        "last sync"
    );
    for r in &reports {
        outln!(
            "{:<20}  {:>7}  {:>7}  {:<14}  {:<20}  {}",
            r.kiosk,
            v(r.active),
            v(r.offered),
            r.state,
            r.last_sync.get(..19).unwrap_or(&r.last_sync),
            r.error.as_deref().unwrap_or("")
        );
    }
    let on_offer = reports
        .iter()
        .filter(|r| r.active.is_some() && r.active == r.offered)
        .count();
    outln!(
        "{} kiosks, {} on the newest release, {} with a problem (waiting for a rollout group is not one)",
        reports.len(),
        on_offer,
        reports
            .iter()
            .filter(|r| r.error.is_some() && r.state != "waiting")
            .count()
    );
    Ok(ExitCode::SUCCESS)
}

pub fn sync(
    cfg: &DeviceConfig,
    once: bool,
    rollback: bool,
    status: bool,
    runs: aisle_runtime::kiosk::Parts,
    json: bool,
) -> Result<ExitCode> {
    let paths = aisle_runtime::sync::paths(cfg);
    if status {
        let s = aisle_release::sync::last_state(&paths);
        if json {
            outln!("{}", serde_json::to_string(&s)?);
        } else {
            match s {
                Some(s) => print_state(&s)?,
                None => outln!("This kiosk has not synced yet."),
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    if rollback {
        let store = aisle_models::Store::open(&cfg.model_dir)?;
        let a = aisle_release::sync::rollback(&paths, &store)?;
        if json {
            outln!("{}", serde_json::to_string(&a)?);
        } else {
            outln!("Rolled back to release {}", a.version);
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !once {
        bail!(
            "`aisle sync --once` syncs now; `aisle serve` syncs every sync.interval_s ({} s)",
            cfg.file.sync.interval_s
        );
    }
    let rt = runtime()?;
    let s = rt.block_on(aisle_runtime::sync::sync_once(
        cfg,
        runs,
        serde_json::Value::Null,
    ))?;
    if json {
        outln!("{}", serde_json::to_string(&s)?);
    } else {
        print_state(&s)?;
    }
    // Success: the kiosk is on a working release (nothing new, a new one, or a
    // bad one held back); a refused or unreachable repository is a failure.
    Ok(match s.state.as_str() {
        "current" | "activated" | "held-back" | "health-failed" if s.active.is_some() => {
            ExitCode::SUCCESS
        }
        "current" | "activated" => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    })
}

fn print_state(s: &aisle_release::SyncState) -> Result<()> {
    let v = |v: Option<u64>| v.map_or("none".to_string(), |v| v.to_string());
    outln!(
        "{}: active release {}, previous {}, offered {} ({:.0} ms, {} files, {:.1} kB downloaded, {:.1} kB of signed metadata)",
        s.state,
        v(s.active),
        v(s.previous),
        v(s.offered),
        s.ms,
        s.downloaded_files,
        s.downloaded_bytes as f64 / 1e3,
        s.metadata_bytes as f64 / 1e3
    );
    if let Some(h) = &s.health {
        outln!("health: {h}");
    }
    if let Some(e) = &s.error {
        outln!("problem: {e}");
    }
    Ok(())
}
