//! `aisle ar render` end to end: real detector, real scanner, the test catalog, bevy
//! rendering off-screen (Mesa's software Vulkan here and in CI).

use crate::scan::{cli_data_dir, photo};

/// The cup and the cat (where given) on a 1280x720 grey "shelf".
fn scene(cup: (i64, i64), cat: Option<(i64, i64)>) -> image::RgbImage {
    // Decoded once per test binary; store blobs have no file extension: by content.
    static PHOTOS: std::sync::OnceLock<[image::RgbImage; 2]> = std::sync::OnceLock::new();
    let [coffee, chelsea] = PHOTOS.get_or_init(|| {
        ["coffee.png", "chelsea.png"].map(|n| {
            aisle_vision::load_image(&photo(n), &aisle_vision::ImageLimits::default())
                .expect("photo")
        })
    });
    let mut canvas = image::RgbImage::from_pixel(1280, 720, image::Rgb([128, 128, 128]));
    image::imageops::overlay(&mut canvas, coffee, cup.0, cup.1);
    if let Some((x, y)) = cat {
        image::imageops::overlay(&mut canvas, chelsea, x, y);
    }
    canvas
}

/// The cup and the cat side by side.
pub(crate) fn shelf(path: &std::path::Path) {
    scene((40, 180), Some((760, 210)))
        .save(path)
        .expect("write shelf");
}

/// Between identifications the live view moves each card with the detector alone:
/// real detector, real scanner, both products moving, then one leaving.
#[test]
fn cards_follow_their_products_between_identifications() {
    use aisle_runtime::ar::{self, Follower};
    let dir = tempfile::tempdir().expect("tmp");
    let cat = crate::scan::catalog(dir.path());
    let scanner = aisle_runtime::scan::Scanner::build(
        crate::scan::models(),
        &cat,
        &dir.path().join("cache"),
        &mut |_, _| {},
    )
    .expect("index");
    let store = aisle_models::Store::open(&crate::data_dir().join("models")).expect("store");
    let detector = aisle_runtime::kiosk::detector(
        &crate::scan::config("[inference]\nthreads = 2\n"),
        &store,
        None,
    )
    .expect("detector");
    let at = |f: &Follower, sku: &str| {
        f.detections()
            .into_iter()
            .find(|d| d.sku == sku)
            .map(|d| (d.bbox.x, d.bbox.y))
    };

    let (objects, _) =
        ar::locate(&detector, &scanner, &scene((40, 180), Some((760, 210)))).expect("locate");
    let mut follower = Follower::default();
    follower.reset(&objects);
    let cup0 = at(&follower, "COF-1").expect("the cup identified");
    let cat0 = at(&follower, "CAT-1").expect("the cat food identified");

    // The cup moves right and down, the cat left, 4 frames of 25 and 20 px.
    let (mut cup, mut can) = ((40, 180), (760, 210));
    for _ in 0..4 {
        cup = (cup.0 + 25, cup.1 + 8);
        can.0 -= 20;
        let detected = ar::detect_products(&detector, &scene(cup, Some(can))).expect("detect");
        follower.follow(&detected);
    }
    let moved = |now: (f32, f32), then: (f32, f32), want: (f32, f32)| {
        (now.0 - then.0 - want.0).abs() < 10.0 && (now.1 - then.1 - want.1).abs() < 10.0
    };
    let cup1 = at(&follower, "COF-1").expect("the cup followed");
    assert!(moved(cup1, cup0, (100.0, 32.0)), "{cup0:?} -> {cup1:?}");
    let cat1 = at(&follower, "CAT-1").expect("the cat food followed");
    assert!(moved(cat1, cat0, (-80.0, 0.0)), "{cat0:?} -> {cat1:?}");

    // The cat food leaves the view: its card goes after a few frames, the cup's stays.
    for pass in 0..=Follower::MAX_MISSED {
        let detected = ar::detect_products(&detector, &scene(cup, None)).expect("detect");
        follower.follow(&detected);
        assert_eq!(
            at(&follower, "CAT-1").is_some(),
            pass < Follower::MAX_MISSED,
            "pass {pass}"
        );
    }
    let cup2 = at(&follower, "COF-1").expect("the cup still followed");
    assert!(moved(cup2, cup1, (0.0, 0.0)), "{cup1:?} -> {cup2:?}");
}

#[test]
fn ar_render_locates_identifies_and_draws_cards() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = cli_data_dir(dir.path(), &["ssd-mobilenetv2-oidv4"]);
    let d = data.to_string_lossy().into_owned();
    // `aisle [--json] ar render IMAGE --out PNG` on the test data directory.
    let render = |image: &std::path::Path, out: &std::path::Path, json: bool| {
        let (image, out) = (image.to_string_lossy(), out.to_string_lossy());
        let mut args = vec!["--data-dir", &d];
        if json {
            args.push("--json");
        }
        args.extend(["ar", "render", &image, "--out", &out]);
        crate::aisle(&args)
    };

    // Bad frames fail at once, naming the file.
    let cut = dir.path().join("cut.png");
    let bytes = std::fs::read(photo("coffee.png")).expect("read");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).expect("write");
    let png = dir.path().join("out.png");
    let out = render(&cut, &png, false);
    crate::assert_fails_with(&out, "cut.png");
    assert!(!png.exists());

    let frame = dir.path().join("shelf.png");
    shelf(&frame);
    let out = render(&frame, &png, true);
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
    let out = render(&blank, &png, false);
    assert!(out.status.success(), "{}", crate::text(&out.stderr));
    let stdout = crate::text(&out.stdout);
    assert!(
        stdout.contains("0 card(s)") && stdout.contains("No product in view"),
        "{stdout}"
    );
    // The output cannot be written: the error names the path.
    let nowhere = dir.path().join("no/such/dir/out.png");
    let out = render(&blank, &nowhere, false);
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
    // A folder of unreadable frames, a broken video, a camera that is not there: named,
    // before any window opens.
    let broken = dir.path().join("broken.mp4");
    std::fs::write(&broken, b"\x00\x00\x00\x18ftypmp42 not really a video").expect("write");
    let unreadable = dir.path().join("unreadable");
    std::fs::create_dir(&unreadable).expect("mkdir");
    std::fs::copy(&cut, unreadable.join("cut.png")).expect("copy");
    for (flag, input, says) in [
        (
            "--frames",
            unreadable.to_string_lossy().to_string(),
            "no readable frame",
        ),
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
    // Without flags the config's `camera` section says where frames come from.
    for (camera, says) in [
        (
            format!("source = \"folder\"\npath = {:?}", unreadable),
            "no readable frame".to_string(),
        ),
        (
            format!(
                "source = \"image\"\npath = {:?}",
                unreadable.join("cut.png")
            ),
            "no readable frame".to_string(),
        ),
        (
            "source = \"device\"\ndevice = \"/dev/video96\"".to_string(),
            "camera /dev/video96".to_string(),
        ),
        ("source = \"none\"".to_string(), "camera is off".to_string()),
    ] {
        let config = dir.path().join("camera.toml");
        std::fs::write(&config, format!("[camera]\n{camera}\n")).expect("config");
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_aisle"))
            .args([
                "--data-dir",
                &d,
                "--config",
                &config.to_string_lossy(),
                "ar",
            ])
            .env("DISPLAY", ":12345")
            .output()
            .expect("run aisle");
        crate::assert_fails_with(&out, &says);
    }
}

/// Kills a child process when dropped (the test's display server and `aisle ar`).
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Log text without terminal colours.
fn plain(log: &str) -> String {
    let mut out = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `name=value` from a log line.
fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let at = line.find(&format!(" {name}="))? + name.len() + 2;
    line[at..].split_whitespace().next()
}

/// The tablet mode in a real window on a virtual X display: a video of the shelf
/// plays through ffmpeg, the cup and the cat get their cards, the drawing rate is
/// logged, and a click on the cup's card asks the assistant about COF-1.
#[test]
fn ar_window_plays_a_video_and_a_click_asks_about_the_card() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    let dir = tempfile::tempdir().expect("tmp");
    let data = cli_data_dir(dir.path(), &["ssd-mobilenetv2-oidv4"]);
    let frame = dir.path().join("shelf.png");
    shelf(&frame);
    let video = dir.path().join("shelf.mp4");
    let status = Command::new("ffmpeg")
        .args([
            "-nostdin",
            "-loglevel",
            "error",
            "-y",
            "-loop",
            "1",
            "-framerate",
            "10",
        ])
        .arg("-i")
        .arg(&frame)
        .args(["-t", "3", "-c:v", "libx264", "-pix_fmt", "yuv420p"])
        .arg(&video)
        .status()
        .expect("ffmpeg is installed by the test command");
    assert!(status.success());

    // A virtual display; Xvfb picks a free number and prints it.
    let mut xvfb = KillOnDrop(
        Command::new("Xvfb")
            .args([
                "-displayfd",
                "1",
                "-screen",
                "0",
                "1600x1000x24",
                "-nolisten",
                "tcp",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("Xvfb is installed by the test command"),
    );
    let mut number = String::new();
    BufReader::new(xvfb.0.stdout.take().expect("stdout"))
        .read_line(&mut number)
        .expect("display number");
    let display = format!(":{}", number.trim());

    let log = dir.path().join("ar.log");
    let _aisle = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_aisle"))
            .arg("--data-dir")
            .arg(&data)
            .args(["ar", "--video"])
            .arg(&video)
            .env("DISPLAY", &display)
            .env("AISLE_LOG", "info,aisle::ar_cmd=debug")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("run aisle ar"),
    );
    let read_log = || plain(&std::fs::read_to_string(&log).unwrap_or_default());
    let xdotool = |args: &[&str]| {
        Command::new("xdotool")
            .args(args)
            .env("DISPLAY", &display)
            .output()
            .expect("xdotool is installed by the test command")
    };

    // Wait for the cup's card, then click its middle until the tap is answered.
    let start = Instant::now();
    let mut tapped = false;
    let mut rates: Option<String> = None;
    while start.elapsed() < Duration::from_secs(150) && !(tapped && rates.is_some()) {
        std::thread::sleep(Duration::from_millis(700));
        let text = read_log();
        tapped = text
            .lines()
            .any(|l| l.contains("card tapped") && field(l, "sku") == Some("COF-1"));
        rates = text
            .lines()
            .filter(|l| l.contains("AR window"))
            .find(|l| field(l, "overlays_per_s").is_some_and(|v| v != "\"0.0\""))
            .map(str::to_string);
        let card = text
            .lines()
            .rev()
            .find(|l| l.contains("card shown") && field(l, "sku") == Some("COF-1"));
        if let (false, Some(card)) = (tapped, card) {
            let num = |n: &str| {
                field(card, n)
                    .and_then(|v| v.parse::<f32>().ok())
                    .unwrap_or(-1.0)
            };
            let (x, y) = (num("x") + num("w") / 2.0, num("y") + num("h") / 2.0);
            let search = xdotool(&["search", "--name", "aisle AR"]);
            let window = crate::text(&search.stdout);
            if let Some(w) = window.lines().next() {
                let (x, y) = (format!("{x:.0}"), format!("{y:.0}"));
                xdotool(&["mousemove", "--window", w, &x, &y]);
                xdotool(&["mousedown", "1"]);
                xdotool(&["mouseup", "1"]);
            }
        }
    }
    let text = read_log();
    assert!(
        tapped,
        "no tap on the cup's card was answered; log:\n{text}"
    );
    let rates = rates.unwrap_or_else(|| panic!("no rates with overlays logged:\n{text}"));
    let rate = |n: &str| {
        field(&rates, n)
            .map(|v| v.trim_matches('"'))
            .and_then(|v| v.parse::<f32>().ok())
            .unwrap_or(0.0)
    };
    assert!(
        rate("drawn_fps") > 1.0 && rate("camera_fps") > 1.0,
        "{rates}"
    );
    assert!(
        text.lines()
            .any(|l| l.contains("card shown") && field(l, "sku") == Some("CAT-1")),
        "the cat's card too:\n{text}"
    );
    assert!(!text.contains("stopped"), "{text}");
}
