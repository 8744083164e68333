//! Overlay layout, pure: from detections (product, box, confidence) and product
//! facts to overlay elements placed on the frame.
//!
//! Each product gets one card (name and price; a stock badge, a promotion ribbon
//! and the aisle direction inside it). A card goes beside its product (right,
//! left, above, below, then the corners), inside the frame, covering no product
//! box and no other card; text is never smaller than the profile's readable
//! minimum. What does not fit is counted, not squeezed in.
//!
//! Stability across frames ([`Stabilizer`]): boxes are smoothed, a card keeps its
//! side while that side stays free (hysteresis on placement), and a product
//! appears above one confidence and disappears only below a lower one or after
//! a few frames unseen (hysteresis on visibility), so labels neither jitter nor
//! flicker.

use serde::{Deserialize, Serialize};

/// An axis-aligned rectangle in frame pixels.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Rect {
    pub x: f32,
    pub y: f32,
    pub w: f32,
    pub h: f32,
}

impl Rect {
    pub fn new(x: f32, y: f32, w: f32, h: f32) -> Self {
        Rect { x, y, w, h }
    }

    pub fn right(&self) -> f32 {
        self.x + self.w
    }

    pub fn bottom(&self) -> f32 {
        self.y + self.h
    }

    pub fn centre(&self) -> (f32, f32) {
        (self.x + self.w / 2.0, self.y + self.h / 2.0)
    }

    /// Area shared with `o`.
    pub fn overlap(&self, o: &Rect) -> f32 {
        let w = (self.right().min(o.right()) - self.x.max(o.x)).max(0.0);
        let h = (self.bottom().min(o.bottom()) - self.y.max(o.y)).max(0.0);
        w * h
    }

    pub fn intersects(&self, o: &Rect) -> bool {
        self.overlap(o) > 0.0
    }

    pub fn inside(&self, frame: &Rect) -> bool {
        self.x >= frame.x
            && self.y >= frame.y
            && self.right() <= frame.right()
            && self.bottom() <= frame.bottom()
    }

    /// Finite, non-negative size.
    fn is_valid(&self) -> bool {
        [self.x, self.y, self.w, self.h]
            .iter()
            .all(|v| v.is_finite())
            && self.w >= 0.0
            && self.h >= 0.0
    }
}

/// A product found in the frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    pub sku: String,
    pub bbox: Rect,
    pub confidence: f32,
}

/// Stock as the shopper should read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case", tag = "level", content = "count")]
pub enum Stock {
    InStock(i64),
    Low(i64),
    Out,
}

/// What a card says about a product, already formatted (prices in the store's
/// currency, aisle names): the layout never looks anything up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ProductFacts {
    pub sku: String,
    pub name: String,
    pub price: String,
    pub stock: Stock,
    pub promotion: Option<String>,
    pub aisle: Option<String>,
}

/// Screen class: the readable text size differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Profile {
    /// A kiosk screen read from about a metre.
    Kiosk,
    /// A tablet held at arm's length.
    ArTablet,
}

/// Layout tunables.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LayoutParams {
    /// Smallest text, pixels (readability floor).
    pub min_text_px: f32,
    /// Text height as a share of the frame height, before the floor and cap.
    pub text_share: f32,
    pub max_text_px: f32,
    /// Gap between a product and its card, and around cards.
    pub gap_px: f32,
    /// Longest product name on a card, characters (longer names are cut with "…").
    pub max_name_chars: usize,
}

impl LayoutParams {
    pub fn for_profile(p: Profile) -> Self {
        match p {
            Profile::Kiosk => LayoutParams {
                min_text_px: 20.0,
                text_share: 0.03,
                max_text_px: 40.0,
                gap_px: 8.0,
                max_name_chars: 28,
            },
            Profile::ArTablet => LayoutParams {
                min_text_px: 16.0,
                text_share: 0.028,
                max_text_px: 32.0,
                gap_px: 6.0,
                max_name_chars: 24,
            },
        }
    }

    /// Text height for a frame `height` pixels high.
    pub fn text_px(&self, height: f32) -> f32 {
        (height * self.text_share).clamp(self.min_text_px, self.max_text_px)
    }
}

/// Where a card sits relative to its product.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Side {
    Right,
    Left,
    Above,
    Below,
    AboveRight,
    AboveLeft,
    BelowRight,
    BelowLeft,
}

impl Side {
    pub const ALL: [Side; 8] = [
        Side::Right,
        Side::Left,
        Side::Above,
        Side::Below,
        Side::AboveRight,
        Side::AboveLeft,
        Side::BelowRight,
        Side::BelowLeft,
    ];
}

/// One line of text on a card.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TextLine {
    pub text: String,
    /// Top-left of the line's box.
    pub x: f32,
    pub y: f32,
    pub px: f32,
    pub role: LineRole,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum LineRole {
    Name,
    Price,
    Stock,
    Promotion,
    Aisle,
}

/// A placed product card: everything drawn for one product.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Card {
    pub sku: String,
    pub rect: Rect,
    pub side: Side,
    /// The product's box the card belongs to (smoothed).
    pub product: Rect,
    /// Leader line from the card's edge to the product's box.
    pub leader: [(f32, f32); 2],
    pub lines: Vec<TextLine>,
    /// The stock badge (top-right of the card) and its level.
    pub badge: Rect,
    pub stock: Stock,
    /// The promotion ribbon across the card's top, when there is an offer.
    pub ribbon: Option<Rect>,
    /// Only the price fitted (a crowded shelf); tapping it shows the rest.
    pub compact: bool,
}

/// The overlay for one frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema, Default)]
pub struct Overlay {
    pub width: f32,
    pub height: f32,
    pub cards: Vec<Card>,
    /// Products seen but without room for a card (least confident first to go).
    pub not_placed: Vec<String>,
    /// Detections ignored: unknown product (no facts) or an unusable box.
    pub ignored: Vec<String>,
    /// A line for the shopper when there is nothing to show.
    pub message: Option<String>,
}

/// Widest average advance of a character, as a share of the font size, for the
/// renderer's fonts (DejaVu Sans: up to 0.59 regular, 0.67 bold on product text),
/// so that text never runs past its card.
const CHAR_ADVANCE: f32 = 0.6;
const BOLD_ADVANCE: f32 = 0.68;
/// The stock badge's diameter, and the room the name line leaves for it, as shares
/// of the text size.
const BADGE: f32 = 0.7;
const BADGE_ROOM: f32 = 1.1;
const LINE_SPACING: f32 = 1.25;

fn text_width(s: &str, px: f32, role: LineRole) -> f32 {
    let advance = match role {
        LineRole::Name | LineRole::Price | LineRole::Promotion => BOLD_ADVANCE,
        LineRole::Stock | LineRole::Aisle => CHAR_ADVANCE,
    };
    s.chars().count() as f32 * px * advance
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// The card's lines (before placement) and its size. A compact card is the
/// price tag alone, for crowded shelves.
fn card_content(
    f: &ProductFacts,
    px: f32,
    p: &LayoutParams,
    compact: bool,
) -> (Vec<(String, f32, LineRole)>, f32, f32) {
    let small = (px * 0.8).max(p.min_text_px);
    let pad = px * 0.5;
    if compact {
        let price = (f.price.clone(), px, LineRole::Price);
        let w = text_width(&price.0, px, LineRole::Price) + px * BADGE_ROOM + 2.0 * pad;
        let h = px * LINE_SPACING + 2.0 * pad;
        return (vec![price], w, h);
    }
    let mut lines = vec![
        (shorten(&f.name, p.max_name_chars), px, LineRole::Name),
        (f.price.clone(), px * 1.2, LineRole::Price),
        (
            match f.stock {
                Stock::InStock(n) => format!("In stock: {n}"),
                Stock::Low(n) => format!("Only {n} left"),
                Stock::Out => "Out of stock".to_string(),
            },
            small,
            LineRole::Stock,
        ),
    ];
    if let Some(promo) = &f.promotion {
        lines.push((
            shorten(promo, p.max_name_chars + 4),
            small,
            LineRole::Promotion,
        ));
    }
    if let Some(aisle) = &f.aisle {
        lines.push((
            format!("→ {}", shorten(aisle, p.max_name_chars)),
            small,
            LineRole::Aisle,
        ));
    }
    let w = lines
        .iter()
        .map(|(t, s, role)| {
            // The name line leaves room for the stock badge at its right.
            let badge = if *role == LineRole::Name {
                px * BADGE_ROOM
            } else {
                0.0
            };
            text_width(t, *s, *role) + badge
        })
        .fold(0.0, f32::max)
        + 2.0 * pad;
    let h = lines.iter().map(|(_, s, _)| s * LINE_SPACING).sum::<f32>() + 2.0 * pad;
    (lines, w, h)
}

/// The card rectangle for `side` of `product`.
fn place(side: Side, product: &Rect, w: f32, h: f32, gap: f32) -> Rect {
    let (cx, cy) = product.centre();
    let (x, y) = match side {
        Side::Right => (product.right() + gap, cy - h / 2.0),
        Side::Left => (product.x - gap - w, cy - h / 2.0),
        Side::Above => (cx - w / 2.0, product.y - gap - h),
        Side::Below => (cx - w / 2.0, product.bottom() + gap),
        Side::AboveRight => (product.right() + gap, product.y - gap - h),
        Side::AboveLeft => (product.x - gap - w, product.y - gap - h),
        Side::BelowRight => (product.right() + gap, product.bottom() + gap),
        Side::BelowLeft => (product.x - gap - w, product.bottom() + gap),
    };
    Rect::new(x, y, w, h)
}

/// Slides a card that sticks out of the frame back in along the side's free
/// axis (a card to the right may move up or down, not left over its product).
fn clamp_along(side: Side, r: Rect, frame: &Rect) -> Rect {
    let mut r = r;
    let vertical_free = matches!(side, Side::Right | Side::Left);
    let horizontal_free = matches!(side, Side::Above | Side::Below);
    if vertical_free {
        r.y = r.y.clamp(frame.y, (frame.bottom() - r.h).max(frame.y));
    }
    if horizontal_free {
        r.x = r.x.clamp(frame.x, (frame.right() - r.w).max(frame.x));
    }
    r
}

fn leader(card: &Rect, product: &Rect) -> [(f32, f32); 2] {
    let (pcx, pcy) = product.centre();
    let from = (
        pcx.clamp(card.x, card.right()),
        pcy.clamp(card.y, card.bottom()),
    );
    let to = (
        from.0.clamp(product.x, product.right()),
        from.1.clamp(product.y, product.bottom()),
    );
    [from, to]
}

/// Lays out one frame. `facts` are looked up by sku; `preferred` gives a side
/// to try first per sku (the stabiliser's memory).
pub fn layout(
    width: f32,
    height: f32,
    detections: &[Detection],
    facts: &[ProductFacts],
    params: &LayoutParams,
    preferred: &dyn Fn(&str) -> Option<Side>,
) -> Overlay {
    let frame = Rect::new(0.0, 0.0, width.max(0.0), height.max(0.0));
    let mut overlay = Overlay {
        width: frame.w,
        height: frame.h,
        ..Default::default()
    };
    // Usable detections, most confident first; one card per product.
    let mut dets: Vec<&Detection> = Vec::new();
    for d in detections {
        let known = facts.iter().any(|f| f.sku == d.sku);
        let usable =
            d.bbox.is_valid() && d.bbox.w > 0.0 && d.bbox.h > 0.0 && d.confidence.is_finite();
        if !known || !usable {
            overlay.ignored.push(d.sku.clone());
        } else if !dets.iter().any(|x| x.sku == d.sku) {
            dets.push(d);
        }
    }
    dets.sort_by(|a, b| {
        b.confidence
            .total_cmp(&a.confidence)
            .then(a.sku.cmp(&b.sku))
    });
    if dets.is_empty() {
        overlay.message = Some(if detections.is_empty() {
            "No product in view: hold it up to the camera".to_string()
        } else {
            "Product not recognised: ask staff or scan the barcode".to_string()
        });
        return overlay;
    }
    // Product boxes, clipped to the frame: cards cover none of them.
    let products: Vec<Rect> = dets
        .iter()
        .map(|d| {
            let x0 = d.bbox.x.clamp(0.0, frame.w);
            let y0 = d.bbox.y.clamp(0.0, frame.h);
            Rect::new(
                x0,
                y0,
                d.bbox.right().clamp(x0, frame.w) - x0,
                d.bbox.bottom().clamp(y0, frame.h) - y0,
            )
        })
        .collect();
    let base_px = params.text_px(frame.h);
    let mut placed: Vec<Rect> = Vec::new();
    for (i, d) in dets.iter().enumerate() {
        let Some(f) = facts.iter().find(|f| f.sku == d.sku) else {
            continue;
        };
        let product = products[i];
        let mut sides: Vec<Side> = Side::ALL.to_vec();
        if let Some(p) = preferred(&d.sku) {
            sides.retain(|s| *s != p);
            sides.insert(0, p);
        }
        // Full size first, then smaller text down to the readable floor, then
        // the price tag alone at the floor.
        let mut sizes = vec![(base_px, false)];
        let mut s = base_px * 0.85;
        while s > params.min_text_px {
            sizes.push((s, false));
            s *= 0.85;
        }
        if base_px > params.min_text_px {
            sizes.push((params.min_text_px, false));
        }
        sizes.push((params.min_text_px, true));
        let mut found = None;
        'search: for (px, compact) in sizes {
            let (content, w, h) = card_content(f, px, params, compact);
            for side in &sides {
                let r = clamp_along(*side, place(*side, &product, w, h, params.gap_px), &frame);
                let pad = Rect::new(
                    r.x - params.gap_px / 2.0,
                    r.y - params.gap_px / 2.0,
                    r.w + params.gap_px,
                    r.h + params.gap_px,
                );
                if r.inside(&frame)
                    && !products.iter().any(|p| p.intersects(&r))
                    && !placed.iter().any(|c| c.intersects(&pad))
                {
                    found = Some((r, *side, content, px, compact));
                    break 'search;
                }
            }
        }
        let Some((rect, side, content, px, compact)) = found else {
            overlay.not_placed.push(d.sku.clone());
            continue;
        };
        placed.push(rect);
        let pad = px * 0.5;
        let mut y = rect.y + pad;
        let mut lines = Vec::with_capacity(content.len());
        for (text, size, role) in content {
            lines.push(TextLine {
                text,
                x: rect.x + pad,
                y,
                px: size,
                role,
            });
            y += size * LINE_SPACING;
        }
        let badge_h = px * BADGE;
        // Beside the name (first line), vertically centred on it.
        let badge = Rect::new(
            rect.right() - pad - badge_h,
            rect.y + pad + (px * LINE_SPACING - badge_h) / 2.0,
            badge_h,
            badge_h,
        );
        let ribbon = f
            .promotion
            .as_ref()
            .filter(|_| !compact)
            .map(|_| Rect::new(rect.x, rect.y, rect.w, (px * 0.25).max(3.0)));
        overlay.cards.push(Card {
            sku: d.sku.clone(),
            rect,
            side,
            product,
            leader: leader(&rect, &product),
            lines,
            badge,
            stock: f.stock.clone(),
            ribbon,
            compact,
        });
    }
    if !overlay.not_placed.is_empty() {
        overlay.message = Some(format!(
            "{} more product(s) in view: move closer to see them",
            overlay.not_placed.len()
        ));
    }
    overlay
}

/// Hysteresis and smoothing across frames.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Stability {
    /// A product not shown yet appears at this confidence.
    pub show_above: f32,
    /// A shown product disappears below this confidence.
    pub hide_below: f32,
    /// Frames a shown product stays after it was last seen.
    pub keep_frames: u32,
    /// Weight of the new box in the smoothed one (0..1; lower is steadier).
    pub smoothing: f32,
}

impl Default for Stability {
    fn default() -> Self {
        Stability {
            show_above: 0.6,
            hide_below: 0.4,
            keep_frames: 8,
            smoothing: 0.35,
        }
    }
}

#[derive(Debug, Clone)]
struct Track {
    bbox: Rect,
    confidence: f32,
    shown: bool,
    unseen: u32,
    side: Option<Side>,
}

/// Turns per-frame detections into steady overlays.
#[derive(Debug, Clone, Default)]
pub struct Stabilizer {
    pub params: Stability,
    tracks: std::collections::BTreeMap<String, Track>,
}

impl Stabilizer {
    pub fn new(params: Stability) -> Self {
        Stabilizer {
            params,
            tracks: Default::default(),
        }
    }

    /// One frame: update the tracks with `detections`, lay out what is shown.
    pub fn frame(
        &mut self,
        width: f32,
        height: f32,
        detections: &[Detection],
        facts: &[ProductFacts],
        layout_params: &LayoutParams,
    ) -> Overlay {
        let p = self.params;
        for t in self.tracks.values_mut() {
            t.unseen += 1;
        }
        for d in detections {
            if !d.bbox.is_valid() || !d.confidence.is_finite() {
                continue;
            }
            match self.tracks.get_mut(&d.sku) {
                Some(t) => {
                    let a = p.smoothing.clamp(0.0, 1.0);
                    let mix = |o: f32, n: f32| o + a * (n - o);
                    t.bbox = Rect::new(
                        mix(t.bbox.x, d.bbox.x),
                        mix(t.bbox.y, d.bbox.y),
                        mix(t.bbox.w, d.bbox.w),
                        mix(t.bbox.h, d.bbox.h),
                    );
                    t.confidence = mix(t.confidence, d.confidence);
                    t.unseen = 0;
                }
                None => {
                    self.tracks.insert(
                        d.sku.clone(),
                        Track {
                            bbox: d.bbox,
                            confidence: d.confidence,
                            shown: false,
                            unseen: 0,
                            side: None,
                        },
                    );
                }
            }
        }
        self.tracks.retain(|_, t| t.unseen <= p.keep_frames);
        for t in self.tracks.values_mut() {
            if t.shown {
                if t.confidence < p.hide_below {
                    t.shown = false;
                }
            } else if t.unseen == 0 && t.confidence >= p.show_above {
                t.shown = true;
            }
        }
        let shown: Vec<Detection> = self
            .tracks
            .iter()
            .filter(|(_, t)| t.shown)
            .map(|(sku, t)| Detection {
                sku: sku.clone(),
                bbox: t.bbox,
                confidence: t.confidence,
            })
            .collect();
        let sides: std::collections::BTreeMap<String, Side> = self
            .tracks
            .iter()
            .filter_map(|(k, t)| t.side.map(|s| (k.clone(), s)))
            .collect();
        let mut overlay = layout(width, height, &shown, facts, layout_params, &|sku| {
            sides.get(sku).copied()
        });
        for c in &overlay.cards {
            if let Some(t) = self.tracks.get_mut(&c.sku) {
                t.side = Some(c.side);
            }
        }
        if shown.is_empty() && !detections.is_empty() && overlay.message.is_some() {
            overlay.message = Some("Hold the product steady…".to_string());
        }
        overlay
    }
}
