//! `/v1/staff/`: what store staff and their tools use. Every request needs the bearer
//! token from `service.staff_token_file`, loopback included; without that file the
//! endpoints are refused. Nothing here carries a shopper's words: staff calls say
//! which kiosk and when, demand signals count products per hour.

use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;

use super::{ApiError, Service, read_body, run_blocking};
use crate::kiosk::KioskEvent;

/// Largest catalog file accepted over the API.
pub const MAX_CATALOG_BYTES: usize = 64 << 20;
/// Longest token file read.
const MAX_TOKEN_BYTES: u64 = 4096;

/// The staff token from `service.staff_token_file`; `None` (endpoints refused) when
/// the config names no file or the file is unreadable or empty.
pub fn read_token(file: Option<&Path>) -> Option<String> {
    let file = file?;
    let read = std::fs::File::open(file).and_then(|f| {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::Read::take(f, MAX_TOKEN_BYTES), &mut s)?;
        Ok(s)
    });
    match read {
        Ok(t) if !t.trim().is_empty() => Some(t.trim().to_string()),
        Ok(_) => {
            tracing::error!(file = %file.display(), "the staff token file is empty: staff endpoints refused");
            None
        }
        Err(e) => {
            tracing::error!(file = %file.display(), error = %e, "cannot read the staff token file: staff endpoints refused");
            None
        }
    }
}

/// Compares in time independent of where the strings differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn authorise(s: &Service, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(token) = &s.staff_token else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "staff_disabled",
            "staff endpoints are off on this kiosk (service.staff_token_file is not set)",
        ));
    };
    let sent = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match sent {
        Some(t) if same(t.trim().as_bytes(), token.as_bytes()) => Ok(()),
        Some(_) => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the staff token does not match",
        )),
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "staff endpoints need `Authorization: Bearer TOKEN`",
        )),
    }
}

/// Server-sent events: `staff-call` (kiosk, time) and `demand` (kind, product, hour).
pub async fn events(
    State(s): State<Arc<Service>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorise(&s, &headers)?;
    let k = s.ready()?;
    let rx = k.subscribe();
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        loop {
            let (name, e) = match rx.recv().await {
                Ok(e @ KioskEvent::StaffCall { .. }) => ("staff-call", e),
                Ok(e @ KioskEvent::Demand(_)) => ("demand", e),
                Ok(KioskEvent::Answer { .. } | KioskEvent::Overlay { .. }) => continue,
                Err(RecvError::Lagged(n)) => {
                    let ev = Event::default().event("lagged").data(n.to_string());
                    return Some((Ok::<_, Infallible>(ev), rx));
                }
                Err(RecvError::Closed) => return None,
            };
            let ev = Event::default()
                .event(name)
                .data(serde_json::to_string(&e).unwrap_or_default());
            return Some((Ok(ev), rx));
        }
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// The demand signals so far, per hour and product.
pub async fn demand(
    State(s): State<Arc<Service>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorise(&s, &headers)?;
    let k = s.ready()?;
    Ok(Json(k.demand()).into_response())
}

#[derive(Debug, Deserialize)]
pub struct ImportQuery {
    #[serde(default)]
    skip_bad_rows: bool,
}

/// A catalog file (CSV or JSON Lines, as `aisle catalog import`) as the body; the
/// next answer uses it.
pub async fn import(
    State(s): State<Arc<Service>>,
    headers: HeaderMap,
    q: Result<Query<ImportQuery>, axum::extract::rejection::QueryRejection>,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    authorise(&s, &headers)?;
    let k = s.ready()?;
    let q = super::query(q)?;
    let b = read_body(&headers, body, MAX_CATALOG_BYTES, "catalog file").await?;
    let kind = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let label = if kind.contains("json") {
        "request body.jsonl"
    } else if kind.contains("csv") {
        "request body.csv"
    } else {
        "request body" // sniffed: a JSON object first means JSON Lines
    };
    let report = run_blocking(&s.queues.dialogue, move || {
        let r = k.import_catalog(&b, Path::new(label), q.skip_bad_rows)?;
        k.snapshot()?; // swapped in before the answer goes out
        Ok(r)
    })
    .await?;
    tracing::info!(
        products = report.products,
        added = report.added,
        updated = report.updated,
        "catalog imported by staff"
    );
    Ok(Json(report).into_response())
}

/// A reference photo of a product (the body: JPEG, PNG, WebP); only its embedding
/// is kept.
pub async fn enroll(
    State(s): State<Arc<Service>>,
    UrlPath(sku): UrlPath<String>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    authorise(&s, &headers)?;
    let k = s.ready()?;
    let b = read_body(&headers, body, super::MAX_IMAGE_BYTES, "photo").await?;
    let v = run_blocking(&s.queues.vision, move || {
        let img = k.decode_image(&b, "request body")?;
        let hash = aisle_models::hash::sha256_bytes(&b);
        let added = k.enroll(&sku, &[(hash, img)])?;
        let enrolled = k.enrolled_photos(&sku)?;
        Ok(serde_json::json!({ "sku": sku, "added": added, "enrolled": enrolled }))
    })
    .await?;
    Ok(Json(v).into_response())
}

/// Posts each staff call to `service.staff_webhook` (a thread of its own; a failed
/// post is logged, never retried into a pile-up).
pub fn start_webhook(url: String, mut rx: tokio::sync::broadcast::Receiver<KioskEvent>) {
    std::thread::spawn(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(std::time::Duration::from_secs(5)))
            .build()
            .into();
        loop {
            match rx.blocking_recv() {
                Ok(e @ KioskEvent::StaffCall { .. }) => {
                    let body = serde_json::to_string(&e).unwrap_or_default();
                    if let Err(err) = agent
                        .post(url.as_str())
                        .header("Content-Type", "application/json")
                        .send(body.as_bytes())
                    {
                        tracing::warn!(url = %url, error = %err, "the staff webhook did not take the call");
                    }
                }
                Ok(_) => {}
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "staff webhook fell behind")
                }
                Err(RecvError::Closed) => return,
            }
        }
    });
}
