//! The overlay layout's promises: cards beside their products, inside the frame,
//! over no product and no other card, readable; steady across frames.

use aisle_ar::layout::{
    Detection, LayoutParams, Overlay, ProductFacts, Profile, Rect, Stability, Stabilizer, Stock,
    layout,
};
use proptest::prelude::*;

fn facts(n: usize) -> Vec<ProductFacts> {
    (0..n)
        .map(|i| ProductFacts {
            sku: format!("P{i}"),
            name: format!("Organic Peanut Butter {i}"),
            price: format!("${}.99", 2 + i % 7),
            stock: match i % 3 {
                0 => Stock::InStock(12),
                1 => Stock::Low(2),
                _ => Stock::Out,
            },
            promotion: (i % 2 == 0).then(|| "2 for $5".to_string()),
            aisle: Some(format!("Aisle {}: spreads", 10 + i)),
        })
        .collect()
}

fn det(i: usize, x: f32, y: f32, w: f32, h: f32, c: f32) -> Detection {
    Detection {
        sku: format!("P{i}"),
        bbox: Rect::new(x, y, w, h),
        confidence: c,
    }
}

/// Every promise of one overlay.
fn check(o: &Overlay, dets: &[Detection], params: &LayoutParams) {
    let frame = Rect::new(0.0, 0.0, o.width, o.height);
    for (i, c) in o.cards.iter().enumerate() {
        assert!(
            c.rect.inside(&frame),
            "{} outside the frame: {:?}",
            c.sku,
            c.rect
        );
        for d in dets {
            let clipped = Rect::new(
                d.bbox.x.max(0.0),
                d.bbox.y.max(0.0),
                (d.bbox.right().min(o.width) - d.bbox.x.max(0.0)).max(0.0),
                (d.bbox.bottom().min(o.height) - d.bbox.y.max(0.0)).max(0.0),
            );
            assert!(
                !c.rect.intersects(&clipped),
                "{} covers product {}",
                c.sku,
                d.sku
            );
        }
        for other in &o.cards[i + 1..] {
            assert!(
                !c.rect.intersects(&other.rect),
                "{} covers {}",
                c.sku,
                other.sku
            );
        }
        for l in &c.lines {
            assert!(
                l.px >= params.min_text_px - 1e-3,
                "{} text {} px",
                c.sku,
                l.px
            );
            assert!(
                l.y + l.px <= c.rect.bottom() + 1e-3,
                "line outside its card"
            );
        }
        assert!(c.badge.inside(&c.rect));
    }
}

#[test]
fn one_product_gets_a_full_card_beside_it() {
    let params = LayoutParams::for_profile(Profile::Kiosk);
    let d = [det(0, 500.0, 200.0, 240.0, 320.0, 0.9)];
    let o = layout(1280.0, 720.0, &d, &facts(1), &params, &|_| None);
    check(&o, &d, &params);
    assert_eq!(o.cards.len(), 1);
    let c = &o.cards[0];
    let text: Vec<&str> = c.lines.iter().map(|l| l.text.as_str()).collect();
    assert_eq!(
        text,
        [
            "Organic Peanut Butter 0",
            "$2.99",
            "In stock: 12",
            "2 for $5",
            "→ Aisle 10: spreads"
        ]
    );
    assert!(c.ribbon.is_some());
    assert_eq!(
        c.side,
        aisle_ar::Side::Right,
        "right of the product when there is room"
    );
    assert!(c.leader[1].0 >= 500.0 && c.leader[1].0 <= 740.0);
}

#[test]
fn text_is_readable_at_kiosk_and_tablet_sizes() {
    for (profile, w, h) in [
        (Profile::Kiosk, 1920.0, 1080.0),
        (Profile::ArTablet, 1280.0, 800.0),
    ] {
        let params = LayoutParams::for_profile(profile);
        let d = [det(1, 200.0, 200.0, 200.0, 300.0, 0.8)];
        let o = layout(w, h, &d, &facts(2), &params, &|_| None);
        check(&o, &d, &params);
        let name = &o.cards[0].lines[0];
        assert!(
            name.px >= params.min_text_px && name.px >= h * 0.025,
            "{profile:?}: {}",
            name.px
        );
    }
}

#[test]
fn a_product_at_the_edge_gets_its_card_on_the_free_side() {
    let params = LayoutParams::for_profile(Profile::ArTablet);
    // Hard against the right edge: the card goes left.
    let d = [det(0, 1000.0, 300.0, 280.0, 300.0, 0.9)];
    let o = layout(1280.0, 720.0, &d, &facts(1), &params, &|_| None);
    check(&o, &d, &params);
    assert_eq!(o.cards[0].side, aisle_ar::Side::Left);
    // A product box bigger than the frame (held close): clipped, no card fits
    // beside it, and it is reported rather than drawn over the product.
    let d = [det(0, -50.0, -50.0, 1400.0, 900.0, 0.9)];
    let o = layout(1280.0, 720.0, &d, &facts(1), &params, &|_| None);
    check(&o, &d, &params);
    assert!(o.cards.is_empty());
    assert_eq!(o.not_placed, ["P0"]);
}

#[test]
fn zero_unknown_and_broken_detections() {
    let params = LayoutParams::for_profile(Profile::Kiosk);
    let o = layout(1280.0, 720.0, &[], &facts(1), &params, &|_| None);
    assert!(o.cards.is_empty());
    assert!(
        o.message
            .as_deref()
            .is_some_and(|m| m.contains("No product"))
    );
    let d = [
        det(9, 10.0, 10.0, 50.0, 50.0, 0.9),           // no facts
        det(0, f32::NAN, 10.0, 50.0, 50.0, 0.9),       // broken box
        det(1, 10.0, 10.0, -5.0, 50.0, 0.9),           // negative size
        det(2, 10.0, 10.0, 50.0, 50.0, f32::INFINITY), // broken confidence
    ];
    let o = layout(1280.0, 720.0, &d, &facts(3), &params, &|_| None);
    assert!(o.cards.is_empty());
    assert_eq!(o.ignored.len(), 4);
    assert!(
        o.message
            .as_deref()
            .is_some_and(|m| m.contains("not recognised"))
    );
    // A zero-sized frame: nothing fits, nothing panics.
    let d = [det(0, 0.0, 0.0, 10.0, 10.0, 0.9)];
    let o = layout(0.0, 0.0, &d, &facts(1), &params, &|_| None);
    assert!(o.cards.is_empty());
}

#[test]
fn fifty_products_in_one_frame() {
    let params = LayoutParams::for_profile(Profile::ArTablet);
    // A shelf: 5 rows of 10 products.
    let d: Vec<Detection> = (0..50)
        .map(|i| {
            let (r, c) = (i / 10, i % 10);
            det(
                i,
                20.0 + c as f32 * 125.0,
                20.0 + r as f32 * 140.0,
                60.0,
                70.0,
                0.5 + (i % 10) as f32 / 20.0,
            )
        })
        .collect();
    let o = layout(1280.0, 720.0, &d, &facts(50), &params, &|_| None);
    check(&o, &d, &params);
    let compact = o.cards.iter().filter(|c| c.compact).count();
    println!(
        "{} full cards, {compact} price tags, {} not placed: {:?}",
        o.cards.len() - compact,
        o.not_placed.len(),
        o.message
    );
    assert!(compact > 0, "price tags fit between the products");
    assert!(
        o.cards
            .iter()
            .filter(|c| c.compact)
            .all(|c| c.lines.len() == 1 && c.lines[0].text.starts_with('$'))
    );
    assert_eq!(
        o.cards.len() + o.not_placed.len(),
        50,
        "every product accounted for"
    );
    if !o.not_placed.is_empty() {
        assert!(
            o.message
                .as_deref()
                .is_some_and(|m| m.contains("move closer"))
        );
    }
    // The most confident are placed first: the first of them gets its tag.
    let best = d
        .iter()
        .max_by(|a, b| a.confidence.total_cmp(&b.confidence))
        .map(|x| x.sku.clone());
    assert!(
        o.cards.iter().any(|c| Some(&c.sku) == best.as_ref()),
        "{best:?}"
    );
}

#[test]
fn labels_hold_still_on_a_jittery_detector() {
    let params = LayoutParams::for_profile(Profile::ArTablet);
    let mut s = Stabilizer::new(Stability::default());
    let f = facts(2);
    let mut state = 7u64;
    let mut noise = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % 1000) as f32 / 1000.0 - 0.5
    };
    let mut positions = Vec::new();
    let mut sides = std::collections::BTreeSet::new();
    for _ in 0..60 {
        // +-6 px of box jitter per frame, two products side by side.
        let d = [
            det(
                0,
                300.0 + 12.0 * noise(),
                200.0 + 12.0 * noise(),
                200.0,
                260.0,
                0.85,
            ),
            det(
                1,
                760.0 + 12.0 * noise(),
                220.0 + 12.0 * noise(),
                180.0,
                240.0,
                0.8,
            ),
        ];
        let o = s.frame(1280.0, 720.0, &d, &f, &params);
        check(&o, &d, &params);
        assert_eq!(o.cards.len(), 2);
        let c = o.cards.iter().find(|c| c.sku == "P0").expect("card");
        positions.push((c.rect.x, c.rect.y));
        sides.insert(format!("{:?}", c.side));
    }
    assert_eq!(sides.len(), 1, "the card never changes side: {sides:?}");
    let steps: Vec<f32> = positions
        .windows(2)
        .map(|w| ((w[1].0 - w[0].0).powi(2) + (w[1].1 - w[0].1).powi(2)).sqrt())
        .collect();
    let mean = steps.iter().sum::<f32>() / steps.len() as f32;
    println!("mean card step {mean:.2} px for 12 px of box jitter");
    assert!(mean < 4.0, "cards move {mean:.1} px per frame");
}

#[test]
fn labels_do_not_flicker() {
    let params = LayoutParams::for_profile(Profile::Kiosk);
    let mut s = Stabilizer::new(Stability::default());
    let f = facts(1);
    let mut visible = Vec::new();
    for i in 0..40 {
        // Confidence wobbles around 0.5 and the detector misses every 4th frame.
        let c = if i % 2 == 0 { 0.65 } else { 0.45 };
        let d: Vec<Detection> = if i % 4 == 3 {
            Vec::new()
        } else {
            vec![det(0, 400.0, 200.0, 200.0, 250.0, c)]
        };
        let o = s.frame(1280.0, 720.0, &d, &f, &params);
        visible.push(!o.cards.is_empty());
    }
    let toggles = visible.windows(2).filter(|w| w[0] != w[1]).count();
    assert!(visible[5..].iter().all(|v| *v), "{visible:?}");
    assert!(toggles <= 1, "appears once and stays: {visible:?}");
    // Gone for longer than the grace period: the card goes.
    for _ in 0..Stability::default().keep_frames + 1 {
        s.frame(1280.0, 720.0, &[], &f, &params);
    }
    assert!(s.frame(1280.0, 720.0, &[], &f, &params).cards.is_empty());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Any boxes, any frame: the promises hold and nothing panics.
    #[test]
    fn layout_promises_hold(
        w in 1.0f32..2000.0,
        h in 1.0f32..1200.0,
        boxes in prop::collection::vec((-100.0f32..2000.0, -100.0f32..1200.0, 1.0f32..600.0, 1.0f32..600.0, 0.0f32..1.0), 0..20),
    ) {
        let params = LayoutParams::for_profile(Profile::ArTablet);
        let d: Vec<Detection> = boxes.iter().enumerate().map(|(i, b)| det(i, b.0, b.1, b.2, b.3, b.4)).collect();
        let o = layout(w, h, &d, &facts(20), &params, &|_| None);
        check(&o, &d, &params);
        prop_assert_eq!(o.cards.len() + o.not_placed.len() + o.ignored.len(), d.len());
    }
}
