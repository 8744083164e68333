//! `aisle ar render` end to end: real detector, real scanner, the test catalog, bevy
//! rendering off-screen (Mesa's software Vulkan here and in CI).

use crate::scan::{cli_data_dir, photo};

/// The cup and the cat side by side on a 1280x720 grey "shelf".
fn shelf(path: &std::path::Path) {
    // Store blobs have no file extension: decoded by content.
    let load = |n: &str| {
        aisle_vision::load_image(&photo(n), &aisle_vision::ImageLimits::default()).expect("photo")
    };
    let mut canvas = image::RgbImage::from_pixel(1280, 720, image::Rgb([128, 128, 128]));
    image::imageops::overlay(&mut canvas, &load("coffee.png"), 40, 180);
    image::imageops::overlay(&mut canvas, &load("chelsea.png"), 760, 210);
    canvas.save(path).expect("write shelf");
}

#[test]
fn ar_render_locates_identifies_and_draws_cards() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = cli_data_dir(dir.path(), &["ssd-mobilenetv2-oidv4"]);
    let d = data.to_string_lossy().into_owned();

    // Bad frames fail at once, naming the file.
    let cut = dir.path().join("cut.png");
    let bytes = std::fs::read(photo("coffee.png")).expect("read");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).expect("write");
    let png = dir.path().join("out.png");
    let out = crate::aisle(&[
        "--data-dir",
        &d,
        "ar",
        "render",
        &cut.to_string_lossy(),
        "--out",
        &png.to_string_lossy(),
    ]);
    crate::assert_fails_with(&out, "cut.png");
    assert!(!png.exists());

    let frame = dir.path().join("shelf.png");
    shelf(&frame);
    let out = crate::aisle(&[
        "--data-dir",
        &d,
        "--json",
        "ar",
        "render",
        &frame.to_string_lossy(),
        "--out",
        &png.to_string_lossy(),
    ]);
    assert!(out.status.success(), "{}", crate::text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let cards = v["overlay"]["cards"].as_array().expect("cards");
    let sku = |c: &serde_json::Value| c["sku"].as_str().unwrap_or("").to_string();
    let mut skus: Vec<String> = cards.iter().map(sku).collect();
    skus.sort();
    assert_eq!(skus, ["CAT-1", "COF-1"], "{v}");
    // Each card belongs to the object over its own photo, with the catalog's facts.
    for c in cards {
        let x = c["product"]["x"].as_f64().unwrap_or(-1.0)
            + c["product"]["w"].as_f64().unwrap_or(0.0) / 2.0;
        let lines: Vec<&str> = c["lines"]
            .as_array()
            .expect("lines")
            .iter()
            .filter_map(|l| l["text"].as_str())
            .collect();
        match sku(c).as_str() {
            "COF-1" => {
                assert!((40.0..491.0).contains(&x), "{c}");
                assert!(
                    lines.contains(&"$8.99") && lines.contains(&"In stock: 12"),
                    "{lines:?}"
                );
            }
            _ => {
                assert!((760.0..1211.0).contains(&x), "{c}");
                assert!(
                    lines.contains(&"$1.29") && lines.iter().any(|l| l.contains("cat food care")),
                    "{lines:?}"
                );
            }
        }
    }
    let objects = v["objects"].as_array().expect("objects");
    assert!(
        objects
            .iter()
            .any(|o| o["label"] == "Coffee cup" && o["decision"] == "identified"),
        "{v}"
    );
    let picture = image::open(&png).expect("the overlay PNG").to_rgb8();
    assert_eq!(picture.dimensions(), (1280, 720));
    // The card panels are drawn: dark where the layout put them.
    for c in cards {
        let (x, y) = (
            c["rect"]["x"].as_f64().unwrap_or(0.0) + 6.0,
            c["rect"]["y"].as_f64().unwrap_or(0.0) + 6.0,
        );
        let p = picture.get_pixel(x as u32, y as u32);
        assert!(p.0.iter().all(|&v| v < 90), "card panel at {x},{y}: {p:?}");
    }

    // Nothing in view: a message, no card, still a picture and exit 0.
    let blank = dir.path().join("blank.png");
    image::RgbImage::from_pixel(640, 480, image::Rgb([200, 200, 200]))
        .save(&blank)
        .expect("blank");
    let out = crate::aisle(&[
        "--data-dir",
        &d,
        "ar",
        "render",
        &blank.to_string_lossy(),
        "--out",
        &png.to_string_lossy(),
    ]);
    assert!(out.status.success(), "{}", crate::text(&out.stderr));
    let stdout = crate::text(&out.stdout);
    assert!(
        stdout.contains("0 card(s)") && stdout.contains("No product in view"),
        "{stdout}"
    );
    // The output cannot be written: the error names the path.
    let nowhere = dir.path().join("no/such/dir/out.png");
    let out = crate::aisle(&[
        "--data-dir",
        &d,
        "ar",
        "render",
        &blank.to_string_lossy(),
        "--out",
        &nowhere.to_string_lossy(),
    ]);
    crate::assert_fails_with(&out, "no/such/dir/out.png");
    // No display: the window mode says so instead of crashing.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_aisle"))
        .args([
            "--data-dir",
            &d,
            "ar",
            "--frames",
            &dir.path().to_string_lossy(),
        ])
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .output()
        .expect("run aisle");
    crate::assert_fails_with(&out, "no display");
    // A broken video, a camera that is not there: named, before any window opens.
    let broken = dir.path().join("broken.mp4");
    std::fs::write(&broken, b"\x00\x00\x00\x18ftypmp42 not really a video").expect("write");
    for (flag, input, says) in [
        (
            "--video",
            broken.to_string_lossy().to_string(),
            "broken.mp4",
        ),
        (
            "--camera",
            "/dev/video97".to_string(),
            "camera /dev/video97",
        ),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_aisle"))
            .args(["--data-dir", &d, "ar", flag, &input])
            .env("DISPLAY", ":12345")
            .output()
            .expect("run aisle");
        crate::assert_fails_with(&out, says);
    }
}
