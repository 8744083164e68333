//! AR overlays, store side: where each product is in a camera frame (the object
//! detector finds objects, the scanner identifies each one against the catalog),
//! and the facts its card shows, straight from the catalog and inventory.

use std::time::Instant;

use aisle_ar::{Detection, ProductFacts, Rect, Stock};
use aisle_vision::detect::{DetectedObject, ObjectDetector, iou};
use aisle_vision::{Decision, DetectError};
use image::RgbImage;
use serde::Serialize;

use crate::catalog::{CatalogError, CatalogView, format_price};
use crate::scan::{ScanError, Scanner};

#[derive(Debug, thiserror::Error)]
pub enum ArError {
    #[error(transparent)]
    Detect(#[from] DetectError),
    #[error(transparent)]
    Scan(#[from] ScanError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

/// Open Images classes that are never the product on offer (the shopper).
const NOT_PRODUCTS: &[&str] = &["Person"];

/// Stock at or below this is shown as "only N left".
pub const LOW_STOCK: i64 = 5;

/// One object found in the frame and what the scanner made of it.
#[derive(Debug, Clone, Serialize)]
pub struct LocatedObject {
    /// The detector's class ("Bottle", "Coffee cup", ...) and score.
    pub label: String,
    pub score: f32,
    /// `[x, y, width, height]` in frame pixels.
    pub bbox: [f32; 4],
    pub decision: Decision,
    /// The best catalog match, identified or not.
    pub sku: Option<String>,
    pub name: Option<String>,
    pub confidence: f32,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct LocateTimings {
    pub detect_us: u64,
    pub identify_us: u64,
}

/// The objects in `img` that may be products (the detector alone, people left out).
pub fn detect_products(
    detector: &ObjectDetector,
    img: &RgbImage,
) -> Result<Vec<DetectedObject>, ArError> {
    Ok(detector
        .detect(img)?
        .into_iter()
        .filter(|o| !NOT_PRODUCTS.contains(&o.label.as_str()))
        .collect())
}

/// Finds the objects in `img` and identifies each against the catalog.
pub fn locate(
    detector: &ObjectDetector,
    scanner: &Scanner,
    img: &RgbImage,
) -> Result<(Vec<LocatedObject>, LocateTimings), ArError> {
    let t0 = Instant::now();
    let objects = detect_products(detector, img)?;
    let t1 = Instant::now();
    let (w, h) = (img.width() as f32, img.height() as f32);
    let mut out = Vec::with_capacity(objects.len());
    for o in objects {
        let [x, y, bw, bh] = o.bbox;
        // A margin around the box: labels often reach its edge.
        let (mx, my) = (bw * 0.08, bh * 0.08);
        let (x0, y0) = ((x - mx).max(0.0), (y - my).max(0.0));
        let (x1, y1) = ((x + bw + mx).min(w), (y + bh + my).min(h));
        let (cw, ch) = ((x1 - x0).round() as u32, (y1 - y0).round() as u32);
        let mut located = LocatedObject {
            label: o.label,
            score: o.score,
            bbox: o.bbox,
            decision: Decision::Unknown,
            sku: None,
            name: None,
            confidence: 0.0,
        };
        if cw >= 16 && ch >= 16 {
            let crop = image::imageops::crop_imm(img, x0 as u32, y0 as u32, cw, ch).to_image();
            let report = scanner.scan_image(&crop, 1)?;
            if let Some(best) = report.matches.first() {
                located.sku = Some(best.sku.clone());
                located.name = Some(best.name.clone());
            }
            located.decision = report.decision;
            located.confidence = report.confidence;
        }
        out.push(located);
    }
    let timings = LocateTimings {
        detect_us: (t1 - t0).as_micros() as u64,
        identify_us: t1.elapsed().as_micros() as u64,
    };
    Ok((out, timings))
}

/// The layout's detections: identified objects only.
pub fn detections(objects: &[LocatedObject]) -> Vec<Detection> {
    objects
        .iter()
        .filter(|o| o.decision == Decision::Identified)
        .filter_map(|o| {
            Some(Detection {
                sku: o.sku.clone()?,
                bbox: Rect::new(o.bbox[0], o.bbox[1], o.bbox[2], o.bbox[3]),
                confidence: o.confidence,
            })
        })
        .collect()
}

/// Keeps identified products on their objects between identifications.
///
/// Identifying (a crop per object through the scanner) takes far longer than
/// detecting, so in the live view the detector alone runs on the frames in between,
/// and each identified product follows the detected box that overlaps its own most
/// (greedy by intersection over union, whatever the class: the detector may call the
/// same cup "Mug" in one frame and "Coffee cup" in the next). A product whose object
/// is not found for a few passes is dropped; the next identification starts afresh.
#[derive(Debug, Clone, Default)]
pub struct Follower {
    tracks: Vec<Followed>,
}

#[derive(Debug, Clone)]
struct Followed {
    sku: String,
    bbox: [f32; 4],
    confidence: f32,
    missed: u32,
}

impl Follower {
    /// Least overlap (intersection over union) for a box to be the same object.
    pub const MIN_IOU: f32 = 0.3;
    /// Detector passes a product may go without its object before it is dropped.
    pub const MAX_MISSED: u32 = 3;

    /// After an identification: the identified objects are what is followed.
    pub fn reset(&mut self, objects: &[LocatedObject]) {
        self.tracks = detections(objects)
            .into_iter()
            .map(|d| Followed {
                sku: d.sku,
                bbox: [d.bbox.x, d.bbox.y, d.bbox.w, d.bbox.h],
                confidence: d.confidence,
                missed: 0,
            })
            .collect();
    }

    /// One detector pass: each product moves to the box it overlaps most.
    pub fn follow(&mut self, detected: &[DetectedObject]) {
        let mut pairs: Vec<(f32, usize, usize)> = Vec::new();
        for (i, t) in self.tracks.iter().enumerate() {
            for (j, d) in detected.iter().enumerate() {
                let iou = iou(&t.bbox, &d.bbox);
                if iou >= Self::MIN_IOU {
                    pairs.push((iou, i, j));
                }
            }
        }
        pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut track_done = vec![false; self.tracks.len()];
        let mut det_done = vec![false; detected.len()];
        for (_, i, j) in pairs {
            if track_done[i] || det_done[j] {
                continue;
            }
            track_done[i] = true;
            det_done[j] = true;
            self.tracks[i].bbox = detected[j].bbox;
            self.tracks[i].missed = 0;
        }
        for (t, done) in self.tracks.iter_mut().zip(&track_done) {
            if !done {
                t.missed += 1;
            }
        }
        self.tracks.retain(|t| t.missed <= Self::MAX_MISSED);
    }

    /// The products followed, where they were last found, for the layout.
    pub fn detections(&self) -> Vec<Detection> {
        self.tracks
            .iter()
            .map(|t| Detection {
                sku: t.sku.clone(),
                bbox: Rect::new(t.bbox[0], t.bbox[1], t.bbox[2], t.bbox[3]),
                confidence: t.confidence,
            })
            .collect()
    }
}

/// What a product's card shows, from the catalog: name, price (the promotional one
/// when an offer runs `today`), stock and aisle.
pub fn facts(view: &CatalogView, sku: &str, today: &str) -> Option<ProductFacts> {
    let p = view.product(sku)?;
    let promo = view.active_promotion(sku, today);
    let base = format_price(p.price_cents, &p.currency);
    let (price, promotion) = match &promo {
        Some(pr) => (
            format_price(pr.price_for(p.price_cents), &p.currency),
            Some(format!("{} (was {base})", pr.description)),
        ),
        None => (base, None),
    };
    let n = view.total_stock(sku);
    let stock = match n {
        n if n <= 0 => Stock::Out,
        n if n <= LOW_STOCK => Stock::Low(n),
        n => Stock::InStock(n),
    };
    Some(ProductFacts {
        sku: p.sku.clone(),
        name: p.name.clone(),
        price,
        stock,
        promotion,
        aisle: (!p.aisle.is_empty()).then(|| {
            // "12" -> "Aisle 12"; "Aisle 3: Dairy" and "coffee" stay as they are.
            if p.aisle.starts_with(|c: char| c.is_ascii_digit()) {
                format!("Aisle {}", p.aisle)
            } else {
                p.aisle.clone()
            }
        }),
    })
}

/// One frame's products and the cards laid out for them.
#[derive(Debug, Serialize)]
pub struct FrameOverlay {
    pub objects: Vec<LocatedObject>,
    pub overlay: aisle_ar::Overlay,
    pub timings: FrameTimings,
}

#[derive(Debug, Default, Serialize)]
pub struct FrameTimings {
    #[serde(flatten)]
    pub locate: LocateTimings,
    pub layout_us: u64,
}

/// Locates and identifies the products in `img` and lays out their cards.
pub fn overlay_for(
    detector: &ObjectDetector,
    scanner: &Scanner,
    view: &CatalogView,
    img: &RgbImage,
    profile: aisle_ar::Profile,
    today: &str,
) -> Result<FrameOverlay, ArError> {
    let (objects, locate) = self::locate(detector, scanner, img)?;
    let t = Instant::now();
    let detections = self::detections(&objects);
    let mut facts: Vec<ProductFacts> = Vec::new();
    for d in &detections {
        if facts.iter().any(|f| f.sku == d.sku) {
            continue;
        }
        facts.extend(self::facts(view, &d.sku, today));
    }
    let mut overlay = aisle_ar::layout(
        img.width() as f32,
        img.height() as f32,
        &detections,
        &facts,
        &aisle_ar::LayoutParams::for_profile(profile),
        &|_| None,
    );
    if detections.is_empty() && !objects.is_empty() {
        overlay.message = Some(format!(
            "{} item(s) in view not recognised: hold the label to the camera",
            objects.len()
        ));
    }
    let timings = FrameTimings {
        locate,
        layout_us: t.elapsed().as_micros() as u64,
    };
    Ok(FrameOverlay {
        objects,
        overlay,
        timings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn located(sku: Option<&str>, bbox: [f32; 4], decision: Decision) -> LocatedObject {
        LocatedObject {
            label: "Bottle".into(),
            score: 0.8,
            bbox,
            decision,
            sku: sku.map(str::to_string),
            name: None,
            confidence: 0.9,
        }
    }

    fn detected(label: &str, bbox: [f32; 4]) -> DetectedObject {
        DetectedObject {
            label: label.into(),
            score: 0.7,
            bbox,
        }
    }

    fn boxes(f: &Follower) -> Vec<(String, [f32; 4])> {
        f.detections()
            .into_iter()
            .map(|d| (d.sku, [d.bbox.x, d.bbox.y, d.bbox.w, d.bbox.h]))
            .collect()
    }

    #[test]
    fn follows_the_most_overlapping_box_whatever_its_class() {
        let mut f = Follower::default();
        f.reset(&[
            located(Some("A"), [0.0, 0.0, 100.0, 100.0], Decision::Identified),
            located(Some("B"), [50.0, 0.0, 100.0, 100.0], Decision::Identified),
            // Not identified: no card, nothing to follow.
            located(Some("C"), [400.0, 0.0, 100.0, 100.0], Decision::Unknown),
        ]);
        assert_eq!(boxes(&f).len(), 2);
        // Both shift right by 10; given in the other order, with another class for A:
        // each keeps its own object, though B's old box overlaps A's new one too
        // (IoU 0.43).
        f.follow(&[
            detected("Box", [60.0, 0.0, 100.0, 100.0]),
            detected("Mug", [10.0, 0.0, 100.0, 100.0]),
        ]);
        assert_eq!(
            boxes(&f),
            [
                ("A".to_string(), [10.0, 0.0, 100.0, 100.0]),
                ("B".to_string(), [60.0, 0.0, 100.0, 100.0])
            ]
        );
    }

    #[test]
    fn a_product_not_found_stays_a_few_passes_then_goes() {
        let mut f = Follower::default();
        f.reset(&[located(
            Some("A"),
            [0.0, 0.0, 100.0, 100.0],
            Decision::Identified,
        )]);
        // A box too far away (IoU < 0.3) is another object.
        let far = [detected("Bottle", [80.0, 0.0, 100.0, 100.0])];
        for _ in 0..Follower::MAX_MISSED {
            f.follow(&far);
            assert_eq!(boxes(&f), [("A".to_string(), [0.0, 0.0, 100.0, 100.0])]);
        }
        f.follow(&[]);
        assert!(boxes(&f).is_empty());
        // Degenerate boxes never match.
        f.reset(&[located(
            Some("A"),
            [0.0, 0.0, 0.0, 0.0],
            Decision::Identified,
        )]);
        f.follow(&[detected("Bottle", [0.0, 0.0, 0.0, 0.0])]);
        assert_eq!(boxes(&f), [("A".to_string(), [0.0, 0.0, 0.0, 0.0])]);
    }
}
