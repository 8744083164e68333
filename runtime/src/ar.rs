//! AR overlays, store side: where each product is in a camera frame (the object
//! detector finds objects, the scanner identifies each one against the catalog),
//! and the facts its card shows, straight from the catalog and inventory.

use std::time::Instant;

use aisle_ar::{Detection, ProductFacts, Rect, Stock};
use aisle_vision::detect::{DetectedObject, ObjectDetector};
use aisle_vision::{Decision, DetectError};
use image::RgbImage;
use serde::Serialize;

use crate::catalog::{Catalog, CatalogError, format_price};
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

/// Finds the objects in `img` and identifies each against the catalog.
pub fn locate(
    detector: &ObjectDetector,
    scanner: &Scanner<'_>,
    img: &RgbImage,
) -> Result<(Vec<LocatedObject>, LocateTimings), ArError> {
    let t0 = Instant::now();
    let objects: Vec<DetectedObject> = detector
        .detect(img)?
        .into_iter()
        .filter(|o| !NOT_PRODUCTS.contains(&o.label.as_str()))
        .collect();
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

/// What a product's card shows, from the catalog: name, price (the promotional one
/// when an offer runs `today`), stock and aisle.
pub fn facts(cat: &Catalog, sku: &str, today: &str) -> Result<Option<ProductFacts>, ArError> {
    let Some(p) = cat.product(sku)? else {
        return Ok(None);
    };
    let promo = cat
        .promotions(sku)?
        .into_iter()
        .find(|x| x.active_on(today));
    let base = format_price(p.price_cents, &p.currency);
    let (price, promotion) = match &promo {
        Some(pr) => (
            format_price(pr.price_for(p.price_cents), &p.currency),
            Some(format!("{} (was {base})", pr.description)),
        ),
        None => (base, None),
    };
    let n = cat.total_stock(sku)?;
    let stock = match n {
        n if n <= 0 => Stock::Out,
        n if n <= LOW_STOCK => Stock::Low(n),
        n => Stock::InStock(n),
    };
    Ok(Some(ProductFacts {
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
    }))
}
