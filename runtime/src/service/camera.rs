//! `POST /v1/camera/{stream}`: a screen's live camera, one frame per request. Each
//! stream keeps its own [`Tracker`] (identification now and then, the detector in
//! between, steadied cards), so cards hold still across frames as in `aisle ar`.
//! `DELETE /v1/camera/{stream}` ends one; a stream idle for the session timeout is
//! erased by the sweeper, and at most [`MAX_STREAMS`] live at once (the longest idle
//! one makes room).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::{ApiError, MAX_IMAGE_BYTES, Service, read_body, run_blocking};
use crate::kiosk::{Pass, Tracker, profile};

/// Camera streams live at once.
pub const MAX_STREAMS: usize = 16;

#[derive(Default)]
pub(crate) struct Streams {
    map: Mutex<HashMap<String, Stream>>,
}

struct Stream {
    tracker: Arc<Mutex<Tracker>>,
    last_used: Instant,
}

impl Streams {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Stream>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get_or_new(&self, id: &str, new: impl FnOnce() -> Tracker) -> Arc<Mutex<Tracker>> {
        let mut m = self.lock();
        if !m.contains_key(id) && m.len() >= MAX_STREAMS {
            let oldest = m
                .iter()
                .min_by_key(|(_, s)| s.last_used)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                m.remove(&k);
            }
        }
        let s = m.entry(id.to_string()).or_insert_with(|| Stream {
            tracker: Arc::new(Mutex::new(new())),
            last_used: Instant::now(),
        });
        s.last_used = Instant::now();
        s.tracker.clone()
    }

    fn remove(&self, id: &str) -> bool {
        self.lock().remove(id).is_some()
    }

    /// Erases streams idle longer than `idle`; how many went.
    pub(crate) fn expire(&self, idle: Duration) -> usize {
        let mut m = self.lock();
        let before = m.len();
        m.retain(|_, s| s.last_used.elapsed() <= idle);
        before - m.len()
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}

/// A stream id: 8-64 letters, digits or `-` (a UUID from the page).
fn check_id(id: &str) -> Result<(), ApiError> {
    if (8..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "the stream id must be 8-64 letters, digits or '-'",
        ))
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct CameraQuery {
    /// The width the screen shows the frame at (CSS pixels); cards are laid out there.
    w: Option<f64>,
    h: Option<f64>,
}

/// One camera frame's cards.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct CameraFrame {
    /// The frame's own size, pixels.
    pub frame_width: u32,
    pub frame_height: u32,
    /// Which pass made these cards: `identified` or `followed`.
    pub pass: Pass,
    /// The cards, laid out in the display space asked for (else the frame's).
    pub overlay: aisle_ar::Overlay,
    /// Milliseconds the service spent on the frame.
    pub processing_ms: f64,
}

pub(crate) async fn frame(
    State(s): State<Arc<Service>>,
    Path(id): Path<String>,
    q: Result<Query<CameraQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
    b: axum::body::Body,
) -> Result<Response, ApiError> {
    let k = s.ready()?;
    // The body first: answering before it is read would break the client's pipe.
    let b = read_body(&headers, b, MAX_IMAGE_BYTES, "camera frame").await?;
    check_id(&id)?;
    let q = super::query(q)?;
    // Checked before narrowing (16384.000000000004 is not 16384).
    let side = |v: Option<f64>, name: &str| match v {
        Some(v) if !(v.is_finite() && (1.0..=16384.0).contains(&v)) => Err(ApiError::bad_request(
            format!("{name} must be between 1 and 16384 (CSS pixels)"),
        )),
        v => Ok(v.map(|v| v as f32)),
    };
    let (w, h) = (side(q.w, "w")?, side(q.h, "h")?);
    let tracker = s
        .cameras
        .get_or_new(&id, || Tracker::new(profile(k.config()), None));
    let out = run_blocking(&s.queues.vision, move || {
        let t = Instant::now();
        let img = k.decode_image(&b, "camera frame")?;
        // One side alone keeps the frame's shape.
        let aspect = img.height() as f32 / img.width().max(1) as f32;
        let display = match (w, h) {
            (Some(w), Some(h)) => Some((w, h)),
            (Some(w), None) => Some((w, w * aspect)),
            (None, Some(h)) => Some((h / aspect.max(f32::MIN_POSITIVE), h)),
            (None, None) => None,
        };
        let mut tr = tracker.lock().unwrap_or_else(|p| p.into_inner());
        let (overlay, pass) = tr.frame(&k, &img, display)?;
        Ok(CameraFrame {
            frame_width: img.width(),
            frame_height: img.height(),
            pass,
            overlay,
            processing_ms: t.elapsed().as_secs_f64() * 1e3,
        })
    })
    .await?;
    s.metrics.stage("camera", out.processing_ms / 1e3);
    Ok(Json(out).into_response())
}

pub(crate) async fn end(
    State(s): State<Arc<Service>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    check_id(&id)?;
    if s.cameras.remove(&id) {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_stream",
            "no such camera stream (it may have expired)",
        ))
    }
}
