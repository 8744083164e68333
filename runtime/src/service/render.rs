//! `POST /v1/overlay` as a picture: one thread owns the bevy renderer (started on the
//! first picture asked for, kept for the next) and draws one frame at a time.

use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};

use aisle_ar::Overlay;
use aisle_ar::render::Renderer;
use axum::http::StatusCode;
use image::RgbImage;

use super::ApiError;

type Job = (RgbImage, Overlay, mpsc::Sender<Result<Vec<u8>, String>>);

fn renderer() -> &'static Mutex<mpsc::Sender<Job>> {
    static TX: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();
    TX.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::spawn(move || {
            let mut r: Option<Renderer> = None;
            for (frame, overlay, reply) in rx {
                let out = draw(&mut r, &frame, &overlay);
                let _ = reply.send(out);
            }
        });
        Mutex::new(tx)
    })
}

fn draw(r: &mut Option<Renderer>, frame: &RgbImage, overlay: &Overlay) -> Result<Vec<u8>, String> {
    if r.is_none() {
        *r = Some(Renderer::headless().map_err(|e| e.to_string())?);
    }
    let Some(renderer) = r.as_mut() else {
        return Err("no renderer".into());
    };
    let picture = renderer.render(frame, overlay).map_err(|e| e.to_string())?;
    let mut png = Vec::new();
    image::DynamicImage::ImageRgba8(picture)
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| e.to_string())?;
    Ok(png)
}

/// The frame with its overlay drawn, as PNG bytes (blocks until drawn).
pub fn png(frame: &RgbImage, overlay: &Overlay) -> Result<Vec<u8>, ApiError> {
    let (tx, rx) = mpsc::channel();
    let fail = |m: String| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "render", m);
    renderer()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .send((frame.clone(), overlay.clone(), tx))
        .map_err(|_| fail("the renderer thread has stopped".into()))?;
    rx.recv()
        .map_err(|_| fail("the renderer thread has stopped".into()))?
        .map_err(|e| fail(format!("cannot draw the overlay: {e}")))
}
