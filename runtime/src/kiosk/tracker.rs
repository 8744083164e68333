//! A live camera view's cards, frame after frame: the same rules for `aisle ar`'s
//! window and the kiosk screen's camera (`POST /v1/overlay?stream=ID`).

use std::time::{Duration, Instant};

use aisle_ar::{LayoutParams, Overlay, ProductFacts, Profile, Stability, Stabilizer};
use image::RgbImage;
use serde::Serialize;

use super::{Kiosk, KioskError, Result};
use crate::ar;

/// Locates and identifies the products in a frame, then, until the next
/// identification, keeps their cards on them with the detector alone (see
/// [`ar::Follower`]), and steadies the cards across frames ([`Stabilizer`]).
/// Identification takes at most half of the caller's time: the next one starts no
/// sooner than twice the last one's duration (and `min_period`) after it began.
#[derive(Debug)]
pub struct Tracker {
    stabilizer: Stabilizer,
    params: LayoutParams,
    follower: ar::Follower,
    facts: Vec<ProductFacts>,
    next_identification: Option<Instant>,
    min_period: Duration,
    /// Objects seen at the last identification that no product matched.
    unrecognised: usize,
}

/// What [`Tracker::frame`] did with one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Pass {
    /// Located and identified the products (the slow pass).
    Identified,
    /// Moved the identified products' cards with the detector alone.
    Followed,
}

impl Tracker {
    pub fn new(profile: Profile, min_period: Option<Duration>) -> Self {
        Self {
            stabilizer: Stabilizer::new(Stability::default()),
            params: LayoutParams::for_profile(profile),
            follower: ar::Follower::default(),
            facts: Vec::new(),
            next_identification: None,
            min_period: min_period.unwrap_or_default(),
            unrecognised: 0,
        }
    }

    /// One frame: its steadied overlay, and which pass made it. The cards are laid
    /// out in the frame's pixels, or, given `display` (width, height), in that space:
    /// a screen shows the frame scaled to its own size, and the text floor and touch
    /// sizes hold there.
    pub fn frame(
        &mut self,
        kiosk: &Kiosk,
        img: &RgbImage,
        display: Option<(f32, f32)>,
    ) -> Result<(Overlay, Pass)> {
        let detector = kiosk.detector()?;
        let now = Instant::now();
        let pass = if self.next_identification.is_none_or(|next| now >= next) {
            // The newest catalog: an import while the camera runs shows.
            let snap = kiosk.snapshot()?;
            let scanner = snap
                .scanner
                .as_ref()
                .ok_or(KioskError::NotLoaded("the vision models"))?;
            let (objects, _) = ar::locate(detector, scanner, img)?;
            self.follower.reset(&objects);
            self.facts.clear();
            let today = kiosk.clock().today();
            for d in self.follower.detections() {
                if !self.facts.iter().any(|f| f.sku == d.sku) {
                    self.facts.extend(ar::facts(snap.view(), &d.sku, &today));
                }
            }
            self.unrecognised = objects.iter().filter(|o| o.sku.is_none()).count();
            let took = now.elapsed();
            self.next_identification = Some((now + 2 * took).max(now + self.min_period));
            Pass::Identified
        } else {
            self.follower.follow(&ar::detect_products(detector, img)?);
            Pass::Followed
        };
        let (fw, fh) = (img.width() as f32, img.height() as f32);
        let (w, h) = display
            .filter(|(w, h)| w.is_finite() && h.is_finite() && *w >= 1.0 && *h >= 1.0)
            .unwrap_or((fw, fh));
        let (sx, sy) = (w / fw, h / fh);
        let detections: Vec<_> = self
            .follower
            .detections()
            .into_iter()
            .map(|mut d| {
                d.bbox =
                    aisle_ar::Rect::new(d.bbox.x * sx, d.bbox.y * sy, d.bbox.w * sx, d.bbox.h * sy);
                d
            })
            .collect();
        let mut overlay = self
            .stabilizer
            .frame(w, h, &detections, &self.facts, &self.params);
        if overlay.cards.is_empty() && overlay.message.is_none() && self.unrecognised > 0 {
            overlay.message = Some(format!(
                "{} item(s) in view not recognised: hold the label to the camera",
                self.unrecognised
            ));
        }
        Ok((overlay, pass))
    }
}
