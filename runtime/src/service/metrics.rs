//! Prometheus text for `/metrics`: requests per endpoint and status, latency
//! histograms per endpoint and per pipeline stage, queue depths, sessions, model
//! load times. Kept by hand (a few counters), no metrics library.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use super::Service;

/// Upper bounds of the latency buckets, seconds.
const BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    n: u64,
}

impl Histogram {
    fn observe(&mut self, secs: f64) {
        if self.counts.is_empty() {
            self.counts = vec![0; BUCKETS.len()];
        }
        for (c, b) in self.counts.iter_mut().zip(BUCKETS) {
            if secs <= *b {
                *c += 1;
            }
        }
        self.sum += secs;
        self.n += 1;
    }

    fn write(&self, out: &mut String, name: &str, labels: &str) {
        for (c, b) in self.counts.iter().zip(BUCKETS) {
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{b}\"}} {c}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", self.n);
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.n);
    }
}

#[derive(Debug, Default)]
struct Inner {
    requests: BTreeMap<(String, String, u16), u64>,
    latency: BTreeMap<String, Histogram>,
    stages: BTreeMap<&'static str, Histogram>,
}

#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Metrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn request(&self, method: &str, route: &str, status: u16, secs: f64) {
        let mut m = self.lock();
        *m.requests
            .entry((method.to_string(), route.to_string(), status))
            .or_default() += 1;
        m.latency
            .entry(route.to_string())
            .or_default()
            .observe(secs);
    }

    /// Time spent in one pipeline stage (`answer`, `scan`, `transcribe`, ...).
    pub fn stage(&self, stage: &'static str, secs: f64) {
        self.lock().stages.entry(stage).or_default().observe(secs);
    }

    pub fn render(&self, s: &Service) -> String {
        let mut out = String::new();
        let m = self.lock();
        out.push_str("# HELP aisle_requests_total HTTP requests by endpoint and status.\n# TYPE aisle_requests_total counter\n");
        for ((method, route, status), n) in &m.requests {
            let _ = writeln!(
                out,
                "aisle_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        out.push_str("# HELP aisle_request_seconds Request latency by endpoint.\n# TYPE aisle_request_seconds histogram\n");
        for (route, h) in &m.latency {
            h.write(
                &mut out,
                "aisle_request_seconds",
                &format!("route=\"{route}\""),
            );
        }
        out.push_str("# HELP aisle_stage_seconds Time in each pipeline stage.\n# TYPE aisle_stage_seconds histogram\n");
        for (stage, h) in &m.stages {
            h.write(
                &mut out,
                "aisle_stage_seconds",
                &format!("stage=\"{stage}\""),
            );
        }
        drop(m);
        out.push_str("# HELP aisle_queue_waiting Requests waiting for a worker.\n# TYPE aisle_queue_waiting gauge\n");
        for q in [&s.queues.dialogue, &s.queues.vision, &s.queues.speech] {
            let _ = writeln!(
                out,
                "aisle_queue_waiting{{queue=\"{}\"}} {}",
                q.name,
                q.depth()
            );
        }
        let ready = s.kiosk().is_some();
        let _ = writeln!(
            out,
            "# TYPE aisle_ready gauge\naisle_ready {}",
            u8::from(ready)
        );
        let _ = writeln!(
            out,
            "# TYPE aisle_camera_streams gauge\naisle_camera_streams {}",
            s.cameras.len()
        );
        let _ = writeln!(
            out,
            "# HELP aisle_answers_withheld_total Answers the grounding verifier did not let through.\n# TYPE aisle_answers_withheld_total counter\naisle_answers_withheld_total {}",
            crate::dialogue::withheld_count()
        );
        if let Some(v) = *super::lock(&s.release) {
            let _ = writeln!(
                out,
                "# HELP aisle_release The signed release the kiosk runs.\n# TYPE aisle_release gauge\naisle_release {v}"
            );
        }
        if let Some(st) = &*super::lock(&s.last_sync) {
            let _ = writeln!(
                out,
                "# HELP aisle_sync_ok Whether the last sync ended on a working release without a problem.\n# TYPE aisle_sync_ok gauge\naisle_sync_ok {}",
                u8::from(st.error.is_none())
            );
        }
        if let Some(k) = s.kiosk() {
            let _ = writeln!(
                out,
                "# TYPE aisle_sessions gauge\naisle_sessions {}",
                k.sessions().len()
            );
            out.push_str("# HELP aisle_model_load_seconds Time each part took to load.\n# TYPE aisle_model_load_seconds gauge\n");
            for (part, ms) in k.load_times() {
                let _ = writeln!(
                    out,
                    "aisle_model_load_seconds{{part=\"{part}\"}} {}",
                    ms / 1000.0
                );
            }
        }
        out
    }
}

/// Middleware: counts and times every request by its route pattern (never by the raw
/// path, which may hold an sku or a session id).
pub async fn track(State(s): State<Arc<Service>>, req: Request, next: Next) -> Response {
    let t = Instant::now();
    let method = req.method().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let resp = next.run(req).await;
    s.metrics.request(
        &method,
        &route,
        resp.status().as_u16(),
        t.elapsed().as_secs_f64(),
    );
    resp
}
