//! `aisle serve`: the HTTP + WebSocket API on `service.bind` (loopback unless the
//! config allows otherwise) until SIGTERM or Ctrl-C, which drain requests in flight.

use std::net::SocketAddr;
use std::process::ExitCode;

use aisle_firmware_config::DeviceConfig;
use aisle_runtime::service::{self, Service};
use anyhow::{Context, Result, bail};

pub fn serve(cfg: &DeviceConfig, bind: Option<&str>, json: bool) -> Result<ExitCode> {
    let text = bind.unwrap_or(&cfg.file.service.bind);
    let addr: SocketAddr = text
        .parse()
        .with_context(|| format!("--bind {text:?}: not an address:port"))?;
    if !addr.ip().is_loopback() && !cfg.file.service.allow_non_loopback {
        bail!(
            "--bind {addr}: the API binds to loopback only unless service.allow_non_loopback = true"
        );
    }
    // Inference runs on the blocking pool behind bounded queues (a few workers): a
    // small pool keeps threads, and the memory each keeps, few.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(16)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let local = listener.local_addr()?;
        if json {
            outln!(
                "{}",
                serde_json::json!({ "event": "listening", "address": local.to_string(), "url": format!("http://{local}") })
            );
        } else {
            outln!("aisle serve: listening on http://{local} (models loading; /health turns 200 when ready)");
        }
        let painter = std::sync::Arc::new(aisle_ar_render::SharedRenderer::get());
        let service = Service::new(cfg.clone(), Some(painter));
        service::serve(listener, service, shutdown_signal()).await?;
        anyhow::Ok(())
    })?;
    eprintln!("aisle serve: stopped (requests in flight were answered)");
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            // No signal handling: serve until killed.
            std::future::pending::<()>().await;
        }
    }
    tracing::info!("shutting down: draining requests in flight");
}
