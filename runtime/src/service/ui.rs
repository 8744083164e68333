//! The kiosk screen at `/`: plain HTML, CSS and JavaScript embedded in the binary
//! (no build step, no CDN, nothing fetched at run time), served with a content
//! security policy that lets the page reach only this service.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

/// `(path, media type, body)` of every asset.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "/",
        "text/html; charset=utf-8",
        include_str!("../../ui/index.html"),
    ),
    (
        "/ui/app.css",
        "text/css; charset=utf-8",
        include_str!("../../ui/app.css"),
    ),
    (
        "/ui/app.js",
        "text/javascript; charset=utf-8",
        include_str!("../../ui/app.js"),
    ),
    (
        "/ui/pcm-worklet.js",
        "text/javascript; charset=utf-8",
        include_str!("../../ui/pcm-worklet.js"),
    ),
];

/// Only this origin: scripts, styles, fetches and the voice socket.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
    img-src 'self' data: blob:; media-src 'self' blob: mediastream:; connect-src 'self'; \
    worker-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The page and its assets as routes.
pub(crate) fn routes<S: Clone + Send + Sync + 'static>(mut r: axum::Router<S>) -> axum::Router<S> {
    for &(path, ty, body) in ASSETS {
        r = r.route(
            path,
            axum::routing::get(move || async move { asset(ty, body) }),
        );
    }
    r
}

fn asset(ty: &'static str, body: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ty));
    // The page changes with the binary; revalidation is cheap on loopback.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        "permissions-policy",
        HeaderValue::from_static("camera=(self), microphone=(self), geolocation=()"),
    );
    r
}
