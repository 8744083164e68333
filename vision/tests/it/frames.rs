//! Frames from a real video file (H.264 in MP4, encoded here by ffmpeg from the two
//! photos on a shelf), decoded through ffmpeg: size, count, content, and the object
//! detector finding the same products in a decoded frame as in the original; broken
//! and missing inputs give errors that name them.

use std::io::Write;
use std::process::{Command, Stdio};

use aisle_vision::{Engine, FrameInput, FrameOptions, FrameReader, FramesError};

use crate::detect::{detector, shelf};

/// Encodes `frames` copies of `img` (shifted a little each frame, as a hand-held
/// camera would) as H.264 in MP4 at 10 fps.
fn encode(img: &image::RgbImage, frames: u32, out: &std::path::Path) {
    let mut child = Command::new("ffmpeg")
        .args(["-nostdin", "-hide_banner", "-loglevel", "error", "-y"])
        .args(["-f", "rawvideo", "-pix_fmt", "rgb24"])
        .args(["-s", &format!("{}x{}", img.width(), img.height())])
        .args(["-r", "10", "-i", "-"])
        .args(["-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", "18"])
        .arg(out)
        .stdin(Stdio::piped())
        .spawn()
        .expect("ffmpeg is installed by the test command");
    {
        let mut stdin = child.stdin.take().expect("stdin");
        for i in 0..frames {
            let shifted = image::RgbImage::from_fn(img.width(), img.height(), |x, y| {
                *img.get_pixel(x.saturating_sub(i * 4), y)
            });
            stdin.write_all(shifted.as_raw()).expect("write frame");
        }
    }
    assert!(child.wait().expect("ffmpeg").success());
}

fn mean_abs_diff(a: &image::RgbImage, b: &image::RgbImage) -> f64 {
    let sum: u64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| x.abs_diff(*y) as u64)
        .sum();
    sum as f64 / a.as_raw().len() as f64
}

#[test]
fn video_frames_decode_and_products_are_found_in_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let video = dir.path().join("shelf.mp4");
    let original = shelf();
    encode(&original, 6, &video);

    let input = FrameInput::Video(video.clone());
    let reader = FrameReader::open(&input, &FrameOptions::default()).expect("open the video");
    assert_eq!(reader.size(), (1280, 720));
    let frames: Vec<_> = reader.collect::<Result<_, _>>().expect("decode");
    assert_eq!(frames.len(), 6, "every frame comes out once");
    let diff = mean_abs_diff(&frames[0], &original);
    assert!(
        diff < 4.0,
        "first frame is the picture (H.264 at crf 18): {diff:.2}"
    );

    // The detector finds the cup and the cat in a decoded frame where it finds them
    // in the original (frame 0 is not shifted).
    let det = detector(Engine::OnnxRuntime);
    let want = det.detect(&original).expect("detect original");
    let got = det.detect(&frames[0]).expect("detect decoded");
    for label in ["Coffee cup", "Cat"] {
        let a = want.iter().find(|o| o.label == label);
        let b = got.iter().find(|o| o.label == label);
        let (a, b) = (
            a.expect(label),
            b.unwrap_or_else(|| panic!("{label} in the video: {got:?}")),
        );
        let dx = (a.bbox[0] - b.bbox[0])
            .abs()
            .max((a.bbox[1] - b.bbox[1]).abs());
        assert!(dx < 12.0, "{label} at the same place: {a:?} vs {b:?}");
    }

    // Larger than the limits: scaled down, aspect kept.
    let small = FrameOptions {
        max_width: 640,
        max_height: 640,
        ..FrameOptions::default()
    };
    let mut reader = FrameReader::open(&input, &small).expect("open scaled");
    assert_eq!(reader.size(), (640, 360));
    let f = reader.next_frame().expect("frame").expect("one frame");
    assert_eq!(f.dimensions(), (640, 360));

    // Looping: more frames than the file holds.
    let looping = FrameOptions {
        looping: true,
        ..FrameOptions::default()
    };
    let n = FrameReader::open(&input, &looping)
        .expect("open looping")
        .take(9)
        .filter(|f| f.is_ok())
        .count();
    assert_eq!(n, 9);
}

#[test]
fn broken_and_missing_inputs_name_themselves() {
    let dir = tempfile::tempdir().expect("tempdir");
    let video = dir.path().join("clip.mp4");
    encode(&shelf(), 3, &video);
    let bytes = std::fs::read(&video).expect("read");
    let opts = FrameOptions::default();
    let open = |p: &std::path::Path| FrameReader::open(&FrameInput::Video(p.to_path_buf()), &opts);

    // Cut in half: MP4 keeps its index at the end, so the file cannot be read.
    let cut = dir.path().join("cut.mp4");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).expect("write");
    let e = open(&cut).expect_err("truncated");
    assert!(e.to_string().contains("cut.mp4"), "{e}");

    let empty = dir.path().join("empty.mp4");
    std::fs::write(&empty, b"").expect("write");
    let e = open(&empty).expect_err("empty");
    assert!(
        e.to_string().contains("empty.mp4") && e.to_string().contains("empty"),
        "{e}"
    );

    let text = dir.path().join("notes.mp4");
    std::fs::write(&text, b"not a video at all\n").expect("write");
    let e = open(&text).expect_err("not a video");
    assert!(matches!(e, FramesError::Unreadable { .. }), "{e}");
    assert!(e.to_string().contains("notes.mp4"), "{e}");

    let e = open(&dir.path().join("missing.mp4")).expect_err("missing");
    assert!(e.to_string().contains("missing.mp4"), "{e}");

    // A camera that is not there.
    let e = FrameReader::open(&FrameInput::Camera("/dev/video97".into()), &opts)
        .expect_err("no such camera");
    assert!(e.to_string().contains("camera /dev/video97"), "{e}");

    // No ffmpeg: says which package to install.
    let none = FrameOptions {
        ffprobe: "/nonexistent/ffprobe".into(),
        ..FrameOptions::default()
    };
    let e = FrameReader::open(&FrameInput::Video(video), &none).expect_err("no decoder");
    assert!(matches!(e, FramesError::NoDecoder { .. }), "{e}");
    assert!(e.to_string().contains("ffmpeg package"), "{e}");
}
