//! Decoding bad and unusual images, and preprocessing against a plain reference.

use std::io::Write;
use std::path::{Path, PathBuf};

use aisle_vision::preprocess::{Filter, reference};
use aisle_vision::{ImageError, ImageLimits, Preprocess, decode_image, load_image};
use image::{ImageEncoder, Rgb, RgbImage};
use proptest::prelude::*;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::File::create(&p)
        .and_then(|mut f| f.write_all(bytes))
        .expect("write");
    p
}

fn png_bytes(img: &image::DynamicImage) -> Vec<u8> {
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .expect("encode");
    out
}

fn jpeg_bytes(img: &RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
        .write_image(
            img.as_raw(),
            img.width(),
            img.height(),
            image::ExtendedColorType::Rgb8,
        )
        .expect("encode");
    out
}

fn gradient(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        Rgb([(x * 255 / w) as u8, (y * 255 / h) as u8, 128])
    })
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

#[test]
fn bad_files_get_clear_errors_naming_the_file() {
    let dir = tempfile::tempdir().expect("tmp");
    let limits = ImageLimits::default();

    let empty = write(dir.path(), "empty.jpg", b"");
    let e = load_image(&empty, &limits)
        .map(|_| ())
        .expect_err("0 bytes");
    assert!(matches!(e, ImageError::Empty { .. }), "{e}");
    assert!(
        e.to_string().contains("empty.jpg") && e.to_string().contains("0 bytes"),
        "{e}"
    );

    let jpeg = jpeg_bytes(&gradient(320, 240));
    let truncated = write(dir.path(), "truncated.jpg", &jpeg[..jpeg.len() / 2]);
    let e = load_image(&truncated, &limits)
        .map(|_| ())
        .expect_err("truncated");
    assert!(matches!(e, ImageError::Decode { .. }), "{e}");
    assert!(e.to_string().contains("truncated.jpg"), "{e}");

    let text = write(dir.path(), "notes.png", b"shopping list: milk, eggs\n");
    let e = load_image(&text, &limits).map(|_| ()).expect_err("text");
    assert!(matches!(e, ImageError::UnknownFormat { .. }), "{e}");
    assert!(e.to_string().contains("notes.png"), "{e}");

    let missing = dir.path().join("missing.jpg");
    let e = load_image(&missing, &limits)
        .map(|_| ())
        .expect_err("missing");
    assert!(e.to_string().contains("missing.jpg"), "{e}");
}

/// A PNG whose header claims 20000x20000 (1.2 GB of RGB) but holds a few bytes:
/// refused from the header, without allocating the pixels.
#[test]
fn decompression_bomb_is_refused_before_decoding() {
    let dir = tempfile::tempdir().expect("tmp");
    let small = png_bytes(&image::DynamicImage::ImageRgb8(gradient(16, 16)));
    let mut bomb = small.clone();
    bomb[16..20].copy_from_slice(&20_000u32.to_be_bytes());
    bomb[20..24].copy_from_slice(&20_000u32.to_be_bytes());
    // Fix the IHDR CRC so the header itself is valid.
    let crc = crc32(&bomb[12..29]);
    bomb[29..33].copy_from_slice(&crc.to_be_bytes());
    let path = write(dir.path(), "bomb.png", &bomb);
    let before = peak_rss_kib();
    let e = load_image(&path, &ImageLimits::default())
        .map(|_| ())
        .expect_err("bomb");
    let grown_mib = (peak_rss_kib().saturating_sub(before)) / 1024;
    assert!(
        matches!(
            e,
            ImageError::Dimensions {
                width: 20000,
                height: 20000,
                ..
            }
        ),
        "{e}"
    );
    assert!(
        e.to_string().contains("bomb.png") && e.to_string().contains("20000x20000"),
        "{e}"
    );
    assert!(grown_mib < 64, "peak memory grew by {grown_mib} MiB");

    // Over the allocation budget but within the dimension limits: also refused.
    let tight = ImageLimits {
        max_alloc: 1 << 20,
        ..ImageLimits::default()
    };
    let big = png_bytes(&image::DynamicImage::ImageRgb8(gradient(1000, 1000)));
    let e = decode_image(&big, Path::new("big.png"), &tight)
        .map(|_| ())
        .expect_err("alloc");
    assert!(e.to_string().contains("big.png"), "{e}");
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut c = 0xffff_ffffu32;
    for &b in bytes {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xedb8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
    }
    !c
}

#[test]
fn unusual_but_valid_images_decode_correctly() {
    let dir = tempfile::tempdir().expect("tmp");
    let limits = ImageLimits::default();

    // Wrong extension: a PNG named .jpg is recognised by its content.
    let img = gradient(40, 30);
    let p = write(
        dir.path(),
        "photo.jpg",
        &png_bytes(&image::DynamicImage::ImageRgb8(img.clone())),
    );
    assert_eq!(load_image(&p, &limits).expect("png as .jpg"), img);

    // Grayscale becomes grey RGB.
    let grey = image::GrayImage::from_fn(20, 10, |x, _| image::Luma([(x * 12) as u8]));
    let p = write(
        dir.path(),
        "grey.png",
        &png_bytes(&image::DynamicImage::ImageLuma8(grey)),
    );
    let out = load_image(&p, &limits).expect("grey");
    assert_eq!(out.dimensions(), (20, 10));
    assert_eq!(out.get_pixel(5, 3), &Rgb([60, 60, 60]));

    // Alpha is composited over white: transparent -> white, half red -> pink.
    let rgba = image::RgbaImage::from_fn(4, 1, |x, _| match x {
        0 => image::Rgba([0, 0, 0, 0]),
        1 => image::Rgba([255, 0, 0, 128]),
        _ => image::Rgba([0, 0, 255, 255]),
    });
    let p = write(
        dir.path(),
        "alpha.png",
        &png_bytes(&image::DynamicImage::ImageRgba8(rgba)),
    );
    let out = load_image(&p, &limits).expect("alpha");
    assert_eq!(out.get_pixel(0, 0), &Rgb([255, 255, 255]));
    assert_eq!(out.get_pixel(1, 0), &Rgb([255, 127, 127]));
    assert_eq!(out.get_pixel(2, 0), &Rgb([0, 0, 255]));

    // 16-bit PNG.
    let deep = image::ImageBuffer::<image::Rgb<u16>, Vec<u16>>::from_pixel(
        3,
        3,
        image::Rgb([65535, 0, 32896]),
    );
    let p = write(
        dir.path(),
        "deep.png",
        &png_bytes(&image::DynamicImage::ImageRgb16(deep)),
    );
    assert_eq!(
        load_image(&p, &limits).expect("16-bit").get_pixel(1, 1),
        &Rgb([255, 0, 128])
    );

    // CMYK JPEG (Adobe): left red, right blue.
    let out = load_image(&fixture("cmyk.jpg"), &limits).expect("cmyk");
    assert_eq!(out.dimensions(), (48, 32));
    let near = |p: &Rgb<u8>, want: [u8; 3]| p.0.iter().zip(want).all(|(a, b)| a.abs_diff(b) <= 12);
    assert!(
        near(out.get_pixel(5, 16), [255, 0, 0]),
        "{:?}",
        out.get_pixel(5, 16)
    );
    assert!(
        near(out.get_pixel(42, 16), [0, 0, 255]),
        "{:?}",
        out.get_pixel(42, 16)
    );

    // EXIF orientation 6: stored 48x32 red-top, shown upright 32x48 red-right.
    let out = load_image(&fixture("exif_rotated.jpg"), &limits).expect("exif");
    assert_eq!(out.dimensions(), (32, 48));
    assert!(
        near(out.get_pixel(28, 5), [255, 0, 0]),
        "{:?}",
        out.get_pixel(28, 5)
    );
    assert!(
        near(out.get_pixel(3, 5), [0, 0, 255]),
        "{:?}",
        out.get_pixel(3, 5)
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// The SIMD resize (fast_image_resize) matches the plain f64 reference within
    /// one grey level, for any size (up- and down-sampling, odd crops).
    #[test]
    fn resize_matches_reference(w in 1u32..400, h in 1u32..400, seed in any::<u64>(), size in prop::sample::select(vec![7u32, 64, 224])) {
        let mut state = seed | 1;
        let img = RgbImage::from_fn(w, h, |_, _| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            Rgb([state as u8, (state >> 8) as u8, (state >> 16) as u8])
        });
        let pre = Preprocess::imagenet(size);
        let fast = pre.resize(&img);
        let slow = reference::resize_bilinear(&img, size);
        prop_assert_eq!(fast.dimensions(), (size, size));
        let worst = fast.as_raw().iter().zip(slow.as_raw()).map(|(a, b)| a.abs_diff(*b)).max().unwrap_or(0);
        prop_assert!(worst <= 1, "max difference {} at {}x{} -> {}", worst, w, h, size);
    }

    /// CLIP's bicubic resize (fast_image_resize's Catmull-Rom) against PIL's
    /// bicubic computed plainly (checked against Pillow 13: within 2 levels), on
    /// photo-like images (smooth shading plus sensor-like noise): within two grey
    /// levels for any size. On pure white noise the cubic's overshoot is clamped
    /// differently (up to 22 levels measured at 64 -> 224); photos have none.
    #[test]
    fn bicubic_resize_matches_reference(w in 1u32..400, h in 1u32..400, seed in any::<u64>(), size in prop::sample::select(vec![7u32, 32, 224])) {
        let mut state = seed | 1;
        let (fx, fy) = ((seed % 7 + 1) as f32, (seed % 5 + 1) as f32);
        let img = RgbImage::from_fn(w, h, |x, y| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let base = 127.0 + 60.0 * ((x as f32 / fx / 9.0).sin() + (y as f32 / fy / 7.0).cos());
            let n = |k: u64| base + ((state >> k) & 15) as f32 - 7.5;
            Rgb([n(0) as u8, n(8) as u8, n(16) as u8])
        });
        let pre = Preprocess { filter: Filter::Bicubic, ..Preprocess::imagenet(size) };
        let fast = pre.resize(&img);
        let slow = reference::resize(&img, size, Filter::Bicubic);
        prop_assert_eq!(fast.dimensions(), (size, size));
        let worst = fast.as_raw().iter().zip(slow.as_raw()).map(|(a, b)| a.abs_diff(*b)).max().unwrap_or(0);
        prop_assert!(worst <= 2, "max difference {} at {}x{} -> {}", worst, w, h, size);
    }

    #[test]
    fn normalise_matches_reference(w in 1u32..64, h in 1u32..64, v in any::<u8>()) {
        let img = RgbImage::from_fn(w, h, |x, y| Rgb([v, (x * 3) as u8, (y * 5) as u8]));
        let pre = Preprocess::imagenet(224);
        let fast = pre.normalise(&img);
        let slow = reference::normalise(&img, pre.mean, pre.std);
        prop_assert_eq!(fast.shape(), slow.shape());
        let worst = fast.iter().zip(slow.iter()).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        prop_assert!(worst < 1e-5, "max difference {}", worst);
    }
}
