//! Rendering with bevy off-screen (Mesa's software Vulkan here and in CI): the camera
//! frame comes through unchanged where nothing is drawn, cards, outlines and text land
//! where the layout put them, and the whole picture matches a golden image within a
//! tolerance. One renderer (one bevy app) for the whole file, so one test.

use aisle_ar::layout::{
    Detection, LayoutParams, Overlay, ProductFacts, Profile, Rect, Stock, layout,
};
use aisle_ar_render::render::{RenderError, Renderer};
use image::{Rgb, RgbImage, RgbaImage};

/// A deterministic "camera frame": a soft gradient with two product-like blocks.
fn frame(w: u32, h: u32) -> RgbImage {
    let mut img = RgbImage::from_fn(w, h, |x, y| {
        Rgb([
            (60 + x * 120 / w.max(1)) as u8,
            (80 + y * 100 / h.max(1)) as u8,
            150,
        ])
    });
    for (x0, y0, bw, bh, c) in [
        (120u32, 100u32, 110u32, 170u32, [210u8, 60, 50]),
        (420, 140, 90, 150, [240, 230, 220]),
    ] {
        for y in y0..(y0 + bh).min(h) {
            for x in x0..(x0 + bw).min(w) {
                img.put_pixel(x, y, Rgb(c));
            }
        }
    }
    img
}

fn facts() -> Vec<ProductFacts> {
    vec![
        ProductFacts {
            sku: "SOUP-1".into(),
            name: "Tomato Soup".into(),
            price: "$1.99".into(),
            stock: Stock::Low(3),
            promotion: Some("2 for $3".into()),
            aisle: Some("Aisle 4".into()),
        },
        ProductFacts {
            sku: "MILK-1".into(),
            name: "Whole Milk".into(),
            price: "$3.49".into(),
            stock: Stock::InStock(24),
            promotion: None,
            aisle: Some("Aisle 1".into()),
        },
    ]
}

fn two_products(w: u32, h: u32) -> Overlay {
    let dets = vec![
        Detection {
            sku: "SOUP-1".into(),
            bbox: Rect::new(120.0, 100.0, 110.0, 170.0),
            confidence: 0.9,
        },
        Detection {
            sku: "MILK-1".into(),
            bbox: Rect::new(420.0, 140.0, 90.0, 150.0),
            confidence: 0.8,
        },
    ];
    layout(
        w as f32,
        h as f32,
        &dets,
        &facts(),
        &LayoutParams::for_profile(Profile::ArTablet),
        &|_| None,
    )
}

fn px(img: &RgbaImage, x: f32, y: f32) -> [u8; 3] {
    let p = img.get_pixel(x as u32, y as u32);
    [p[0], p[1], p[2]]
}

fn close(a: [u8; 3], b: [u8; 3], tol: i32) -> bool {
    a.iter()
        .zip(b)
        .all(|(x, y)| (i32::from(*x) - i32::from(y)).abs() <= tol)
}

/// Mean absolute difference per channel and the share of pixels off by more than 48.
fn difference(a: &RgbaImage, b: &RgbaImage) -> (f64, f64) {
    assert_eq!(a.dimensions(), b.dimensions());
    let (mut sum, mut far) = (0u64, 0u64);
    for (p, q) in a.pixels().zip(b.pixels()) {
        let d: Vec<i32> = (0..3)
            .map(|c| (i32::from(p[c]) - i32::from(q[c])).abs())
            .collect();
        sum += d.iter().sum::<i32>() as u64;
        far += u64::from(d.iter().any(|&v| v > 48));
    }
    let n = u64::from(a.width()) * u64::from(a.height());
    (sum as f64 / (3 * n) as f64, far as f64 / n as f64)
}

fn golden(name: &str, got: &RgbaImage) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        got.save(&path).expect("write golden");
        return;
    }
    let want = image::open(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_EXPECT=1 writes it)", path.display()))
        .to_rgba8();
    let (mean, far) = difference(got, &want);
    if mean > 1.5 || far > 0.005 {
        let out = std::env::temp_dir().join(format!("aisle-render-{name}"));
        let _ = got.save(&out);
        panic!(
            "{name}: mean difference {mean:.2} levels, {:.2}% of pixels far off; got {}",
            far * 100.0,
            out.display()
        );
    }
}

#[test]
fn overlays_render_headless_where_the_layout_puts_them() {
    let mut r = match Renderer::headless() {
        Ok(r) => r,
        Err(e) => panic!("{e}"),
    };
    let (w, h) = (640, 400);
    let f = frame(w, h);
    let overlay = two_products(w, h);
    assert_eq!(overlay.cards.len(), 2, "{overlay:?}");
    let got = r.render(&f, &overlay).expect("render");
    assert_eq!(got.dimensions(), (w, h));

    // Where nothing is drawn, the camera frame comes through (sRGB in, sRGB out).
    let covered = |x: f32, y: f32| {
        overlay.cards.iter().any(|c| {
            let grow = |r: &Rect, m: f32| Rect::new(r.x - m, r.y - m, r.w + 2.0 * m, r.h + 2.0 * m);
            let (p, cr) = (grow(&c.product, 4.0), grow(&c.rect, 4.0));
            let inside = |r: &Rect| x >= r.x && x <= r.right() && y >= r.y && y <= r.bottom();
            let [(x0, y0), (x1, y1)] = c.leader;
            let lead = Rect::new(
                x0.min(x1) - 4.0,
                y0.min(y1) - 4.0,
                (x1 - x0).abs() + 8.0,
                (y1 - y0).abs() + 8.0,
            );
            inside(&p) || inside(&cr) || inside(&lead)
        })
    };
    let mut checked = 0;
    for y in (5..h - 5).step_by(23) {
        for x in (5..w - 5).step_by(29) {
            if covered(x as f32, y as f32) {
                continue;
            }
            let want = f.get_pixel(x, y).0;
            assert!(
                close(px(&got, x as f32, y as f32), want, 3),
                "frame pixel at {x},{y}: {:?} vs {want:?}",
                px(&got, x as f32, y as f32)
            );
            checked += 1;
        }
    }
    assert!(checked > 200, "{checked}");

    for c in &overlay.cards {
        // The card: dark panel, with light text on it.
        let r = c.rect;
        let inner = (r.y as u32 + 3..(r.bottom() as u32).saturating_sub(3)).flat_map(|y| {
            (r.x as u32 + 3..(r.right() as u32).saturating_sub(3)).map(move |x| (x, y))
        });
        let (mut dark, mut light, mut n) = (0, 0, 0);
        for (x, y) in inner {
            let p = px(&got, x as f32, y as f32);
            let luma = (u32::from(p[0]) + u32::from(p[1]) + u32::from(p[2])) / 3;
            n += 1;
            dark += u32::from(luma < 60);
            light += u32::from(luma > 170);
        }
        assert!(
            dark * 2 > n,
            "{}: the card panel is not drawn ({dark} dark of {n})",
            c.sku
        );
        assert!(
            light * 50 > n,
            "{}: no text on the card ({light} light of {n})",
            c.sku
        );
        // The product's outline in the accent colour, on its left edge's middle.
        let p = c.product;
        let edge = px(&got, p.x + 1.0, p.y + p.h / 2.0);
        assert!(
            edge[2] > 200 && edge[1] > 150 && edge[0] < 140,
            "{}: outline {edge:?}",
            c.sku
        );
        // The stock badge's colour.
        let b = c.badge;
        let badge = px(&got, b.x + b.w / 2.0, b.y + b.h / 2.0);
        let want = match c.stock {
            Stock::Low(_) => [243, 156, 18],
            Stock::InStock(_) => [46, 204, 113],
            Stock::Out => [231, 76, 60],
        };
        assert!(
            close(badge, want, 12),
            "{}: badge {badge:?}, want {want:?}",
            c.sku
        );
    }
    golden("two-cards-640x400.png", &got);

    // The same renderer again, another size: nothing in view gives the message.
    let empty = layout(
        1280.0,
        720.0,
        &[],
        &[],
        &LayoutParams::for_profile(Profile::Kiosk),
        &|_| None,
    );
    assert!(empty.message.is_some());
    let big = frame(1280, 720);
    let got = r.render(&big, &empty).expect("render an empty overlay");
    assert_eq!(got.dimensions(), (1280, 720));
    // A dark banner near the bottom (its top padding), white text inside it.
    let row = |y: f32| -> Vec<[u8; 3]> {
        (0..1280)
            .step_by(4)
            .map(|x| px(&got, x as f32, y))
            .collect()
    };
    let dark = row(636.0)
        .iter()
        .filter(|p| p.iter().all(|&v| v < 70))
        .count();
    let white: usize = (645..676)
        .step_by(3)
        .map(|y| {
            row(y as f32)
                .iter()
                .filter(|p| p.iter().all(|&v| v > 200))
                .count()
        })
        .sum();
    assert!(
        dark > 100 && white > 20,
        "no message banner: {dark} dark, {white} white"
    );
    golden("no-product-1280x720.png", &got);

    // Fifty products on a 1280x720 shelf: it renders, price tags and all.
    let dets: Vec<Detection> = (0..50)
        .map(|i| Detection {
            sku: format!("P{i}"),
            bbox: Rect::new(
                20.0 + (i % 10) as f32 * 126.0,
                30.0 + (i / 10) as f32 * 140.0,
                70.0,
                80.0,
            ),
            confidence: 0.9,
        })
        .collect();
    let many: Vec<ProductFacts> = (0..50)
        .map(|i| ProductFacts {
            sku: format!("P{i}"),
            name: format!("Product {i}"),
            price: format!("${}.49", i % 9 + 1),
            stock: Stock::InStock(10),
            promotion: None,
            aisle: None,
        })
        .collect();
    let crowded = layout(
        1280.0,
        720.0,
        &dets,
        &many,
        &LayoutParams::for_profile(Profile::Kiosk),
        &|_| None,
    );
    assert!(crowded.cards.len() >= 40, "{}", crowded.cards.len());
    r.render(&big, &crowded).expect("render fifty");

    // Odd sizes (rows the read-back pads to 256 bytes): the picture is the frame's
    // size and the frame comes through where nothing is drawn, at every row.
    for (w, h) in [(333u32, 211u32), (1u32, 1u32)] {
        let f = frame(w, h);
        let got = r
            .render(
                &f,
                &layout(
                    w as f32,
                    h as f32,
                    &[],
                    &[],
                    &LayoutParams::for_profile(Profile::ArTablet),
                    &|_| None,
                ),
            )
            .expect("render odd size");
        assert_eq!(got.dimensions(), (w, h));
        for (x, y) in [(0, 0), (w - 1, h / 3), (w / 2, h / 5), (w - 1, 0)] {
            let want = f.get_pixel(x, y).0;
            assert!(
                close(px(&got, x as f32, y as f32), want, 3),
                "{w}x{h} at {x},{y}"
            );
        }
    }

    // A frame that cannot be rendered is an error, not a crash.
    assert!(matches!(
        r.render(&RgbImage::new(0, 0), &empty),
        Err(RenderError::Size(0, 0))
    ));
}
