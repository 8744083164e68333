//! Image decoding and model preprocessing.
//!
//! Decoding: JPEG, PNG and WebP, recognised by content (not by extension), with
//! hard limits on file size, dimensions and decoder memory so a decompression
//! bomb is refused before any pixel is allocated; EXIF orientation applied;
//! grey, alpha (composited over white, as product photos are shot), 16-bit and
//! CMYK images all become 8-bit RGB.
//!
//! Preprocessing: the centred square of the image is resampled to the model's
//! input size with a separable bilinear (triangle) convolution, the filter that
//! PIL's `Image.resize(..., BILINEAR, box=...)` applies, by `fast_image_resize`
//! (SIMD), then normalised as the model was trained: `(x / 255 - mean) / std`,
//! NCHW. `reference` holds a plain implementation the tests compare against.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use fast_image_resize as fr;
use image::{DynamicImage, ImageDecoder, ImageReader, Limits, RgbImage};
use ndarray::Array4;

/// Refuse inputs larger than these (a camera frame or a catalogue photo is far below).
#[derive(Debug, Clone, Copy)]
pub struct ImageLimits {
    pub max_file_bytes: u64,
    pub max_width: u32,
    pub max_height: u32,
    /// Bytes the decoder may allocate.
    pub max_alloc: u64,
}

impl Default for ImageLimits {
    fn default() -> Self {
        ImageLimits {
            max_file_bytes: 64 << 20,
            max_width: 12_000,
            max_height: 12_000,
            max_alloc: 512 << 20,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{path}: cannot read: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: empty file (0 bytes), not an image")]
    Empty { path: PathBuf },
    #[error("{path}: file is {size} bytes, more than the {max}-byte limit for an image")]
    TooLarge { path: PathBuf, size: u64, max: u64 },
    #[error("{path}: not a JPEG, PNG or WebP image (unrecognised content)")]
    UnknownFormat { path: PathBuf },
    #[error(
        "{path}: image claims {width}x{height} pixels, above the {max_w}x{max_h} limit (refused before decoding)"
    )]
    Dimensions {
        path: PathBuf,
        width: u32,
        height: u32,
        max_w: u32,
        max_h: u32,
    },
    #[error("{path}: cannot decode {format} image: {message}")]
    Decode {
        path: PathBuf,
        format: String,
        message: String,
    },
}

/// Reads and decodes the image file at `path` into 8-bit RGB, upright.
pub fn load_image(path: &Path, limits: &ImageLimits) -> Result<RgbImage, ImageError> {
    let meta = std::fs::metadata(path).map_err(|source| ImageError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if meta.len() > limits.max_file_bytes {
        return Err(ImageError::TooLarge {
            path: path.to_path_buf(),
            size: meta.len(),
            max: limits.max_file_bytes,
        });
    }
    let bytes =
        aisle_firmware_config::read_bounded(path, limits.max_file_bytes).map_err(|source| {
            ImageError::Io {
                path: path.to_path_buf(),
                source,
            }
        })?;
    decode_image(&bytes, path, limits)
}

/// Decodes an encoded image held in memory (a camera frame, an upload); `name`
/// is used in errors.
pub fn decode_image(
    bytes: &[u8],
    name: &Path,
    limits: &ImageLimits,
) -> Result<RgbImage, ImageError> {
    let path = || name.to_path_buf();
    if bytes.is_empty() {
        return Err(ImageError::Empty { path: path() });
    }
    if bytes.len() as u64 > limits.max_file_bytes {
        return Err(ImageError::TooLarge {
            path: path(),
            size: bytes.len() as u64,
            max: limits.max_file_bytes,
        });
    }
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|source| ImageError::Io {
            path: path(),
            source,
        })?;
    let Some(format) = reader.format() else {
        return Err(ImageError::UnknownFormat { path: path() });
    };
    let fmt_name = format!("{format:?}").to_uppercase();
    let decode_err = |e: image::ImageError| {
        let message = match &e {
            image::ImageError::Limits(_) => {
                format!("{e} (the decoder would need more than the memory limit)")
            }
            _ => e.to_string(),
        };
        ImageError::Decode {
            path: path(),
            format: fmt_name.clone(),
            message,
        }
    };
    if !matches!(
        format,
        image::ImageFormat::Jpeg | image::ImageFormat::Png | image::ImageFormat::WebP
    ) {
        return Err(ImageError::UnknownFormat { path: path() });
    }
    // A JPEG cut short still decodes (the missing rows come out grey): refuse it
    // unless its end-of-image marker is there (trailing bytes after it are fine).
    if format == image::ImageFormat::Jpeg {
        let tail = &bytes[bytes.len().saturating_sub(64 << 10)..];
        if !tail.windows(2).any(|w| w == [0xFF, 0xD9]) {
            return Err(ImageError::Decode {
                path: path(),
                format: fmt_name,
                message: "truncated: the file ends before the JPEG end-of-image marker".into(),
            });
        }
    }
    let mut l = Limits::default();
    l.max_image_width = Some(limits.max_width);
    l.max_image_height = Some(limits.max_height);
    l.max_alloc = Some(limits.max_alloc);
    reader.limits(l);
    let mut decoder = reader.into_decoder().map_err(|e| match e {
        image::ImageError::Limits(_) => {
            dimension_error(bytes, name, limits).unwrap_or_else(|| decode_err(e))
        }
        e => decode_err(e),
    })?;
    let (width, height) = decoder.dimensions();
    if width > limits.max_width || height > limits.max_height {
        return Err(ImageError::Dimensions {
            path: path(),
            width,
            height,
            max_w: limits.max_width,
            max_h: limits.max_height,
        });
    }
    if decoder.total_bytes() > limits.max_alloc {
        return Err(ImageError::Decode {
            path: path(),
            format: fmt_name,
            message: format!(
                "{width}x{height} image needs {} MiB decoded, above the {} MiB limit",
                decoder.total_bytes() >> 20,
                limits.max_alloc >> 20
            ),
        });
    }
    if width == 0 || height == 0 {
        return Err(ImageError::Decode {
            path: path(),
            format: fmt_name,
            message: format!("{width}x{height} image has no pixels"),
        });
    }
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(decoder).map_err(decode_err)?;
    img.apply_orientation(orientation);
    Ok(to_rgb(img))
}

/// A PNG whose header is over the limits makes `into_decoder` fail with a generic
/// limits error; read the header ourselves to say what it claimed.
fn dimension_error(bytes: &[u8], name: &Path, limits: &ImageLimits) -> Option<ImageError> {
    if bytes.len() >= 24 && bytes.starts_with(b"\x89PNG\r\n\x1a\n") && &bytes[12..16] == b"IHDR" {
        let width = u32::from_be_bytes([bytes[16], bytes[17], bytes[18], bytes[19]]);
        let height = u32::from_be_bytes([bytes[20], bytes[21], bytes[22], bytes[23]]);
        return Some(ImageError::Dimensions {
            path: name.to_path_buf(),
            width,
            height,
            max_w: limits.max_width,
            max_h: limits.max_height,
        });
    }
    None
}

/// 8-bit RGB; transparency is composited over white.
fn to_rgb(img: DynamicImage) -> RgbImage {
    if !img.color().has_alpha() {
        return img.into_rgb8();
    }
    let rgba = img.into_rgba8();
    let (w, h) = rgba.dimensions();
    let mut out = RgbImage::new(w, h);
    for (o, p) in out.pixels_mut().zip(rgba.pixels()) {
        let a = u32::from(p[3]);
        for c in 0..3 {
            let v = u32::from(p[c]) * a + 255 * (255 - a);
            o[c] = ((v + 127) / 255) as u8;
        }
    }
    out
}

/// Resampling filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// PIL's BILINEAR (triangle), as the ImageNet models here were fed.
    Bilinear,
    /// PIL's BICUBIC (Catmull-Rom, a = -0.5), as CLIP was fed.
    Bicubic,
}

/// How a model wants its input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Preprocess {
    /// Square input side, pixels.
    pub size: u32,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    pub filter: Filter,
}

impl Preprocess {
    /// ImageNet statistics, as EfficientNet-Lite0 here was trained.
    pub fn imagenet(size: u32) -> Self {
        Preprocess {
            size,
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
            filter: Filter::Bilinear,
        }
    }

    /// The centred square crop of a `w`x`h` image: (left, top, side).
    pub fn crop_box(w: u32, h: u32) -> (f64, f64, f64) {
        let side = w.min(h) as f64;
        ((w as f64 - side) / 2.0, (h as f64 - side) / 2.0, side)
    }

    /// The model-sized RGB image (the centred square, resampled).
    pub fn resize(&self, img: &RgbImage) -> RgbImage {
        let (w, h) = img.dimensions();
        let s = self.size;
        if (w, h) == (s, s) {
            return img.clone();
        }
        let (left, top, side) = Self::crop_box(w, h);
        let mut dst = fr::images::Image::new(s, s, fr::PixelType::U8x3);
        let resized = fr::images::ImageRef::new(w, h, img.as_raw(), fr::PixelType::U8x3)
            .map_err(|e| e.to_string())
            .and_then(|src| {
                let filter = match self.filter {
                    Filter::Bilinear => fr::FilterType::Bilinear,
                    Filter::Bicubic => fr::FilterType::CatmullRom,
                };
                let opts = fr::ResizeOptions::new()
                    .resize_alg(fr::ResizeAlg::Convolution(filter))
                    .crop(left, top, side, side);
                fr::Resizer::new()
                    .resize(&src, &mut dst, &opts)
                    .map_err(|e| e.to_string())
            });
        match resized {
            Ok(()) => RgbImage::from_raw(s, s, dst.into_vec())
                .unwrap_or_else(|| reference::resize_bilinear(img, s)),
            // Unreachable for a well-formed RgbImage; the plain path gives the same pixels.
            Err(_) => reference::resize_bilinear(img, s),
        }
    }

    /// NCHW float tensor of an image already at model size.
    pub fn normalise(&self, img: &RgbImage) -> Array4<f32> {
        let (w, h) = img.dimensions();
        let (w, h) = (w as usize, h as usize);
        let mut out = Array4::<f32>::zeros((1, 3, h, w));
        let scale: [f32; 3] = std::array::from_fn(|c| 1.0 / (255.0 * self.std[c]));
        let shift: [f32; 3] = std::array::from_fn(|c| self.mean[c] / self.std[c]);
        if let Some(flat) = out.as_slice_mut() {
            let plane = w * h;
            for (i, p) in img.as_raw().chunks_exact(3).enumerate() {
                for c in 0..3 {
                    flat[c * plane + i] = f32::from(p[c]) * scale[c] - shift[c];
                }
            }
        }
        out
    }

    /// Resize then normalise.
    pub fn tensor(&self, img: &RgbImage) -> Array4<f32> {
        self.normalise(&self.resize(img))
    }
}

/// Resamples the region `(left, top, width, height)` of `img` (source pixels,
/// fractional allowed) to `out_w` x `out_h` with the same bilinear convolution.
pub fn resize_region(
    img: &RgbImage,
    region: (f64, f64, f64, f64),
    out_w: u32,
    out_h: u32,
) -> RgbImage {
    let (w, h) = img.dimensions();
    let (left, top, rw, rh) = region;
    let mut dst = fr::images::Image::new(out_w.max(1), out_h.max(1), fr::PixelType::U8x3);
    let resized = fr::images::ImageRef::new(w, h, img.as_raw(), fr::PixelType::U8x3)
        .map_err(|e| e.to_string())
        .and_then(|src| {
            let opts = fr::ResizeOptions::new()
                .resize_alg(fr::ResizeAlg::Convolution(fr::FilterType::Bilinear))
                .crop(left, top, rw, rh);
            fr::Resizer::new()
                .resize(&src, &mut dst, &opts)
                .map_err(|e| e.to_string())
        });
    let fallback = || {
        let sub = image::imageops::crop_imm(
            img,
            left.max(0.0) as u32,
            top.max(0.0) as u32,
            (rw.max(1.0) as u32).min(w),
            (rh.max(1.0) as u32).min(h),
        )
        .to_image();
        image::imageops::resize(&sub, out_w.max(1), out_h.max(1), image::imageops::Triangle)
    };
    match resized {
        Ok(()) => {
            RgbImage::from_raw(out_w.max(1), out_h.max(1), dst.into_vec()).unwrap_or_else(fallback)
        }
        // Unreachable for a well-formed image and an in-bounds region.
        Err(_) => fallback(),
    }
}

/// Plain, slow implementations the fast path is checked against.
pub mod reference {
    use image::RgbImage;

    /// PIL's bilinear resample of the centred square of `img` to `size`x`size`:
    /// triangle filter with support scaled by the reduction factor, normalised
    /// weights, computed in f64 throughout (PIL rounds its intermediate pass to
    /// 8 bits; the difference stays within the tolerance the tests allow).
    pub fn resize_bilinear(img: &RgbImage, size: u32) -> RgbImage {
        resize(img, size, super::Filter::Bilinear)
    }

    /// The same with `filter`; bicubic is PIL's (Keys' cubic, a = -0.5, support 2).
    pub fn resize(img: &RgbImage, size: u32, filter: super::Filter) -> RgbImage {
        let (w, h) = img.dimensions();
        let (left, top, side) = super::Preprocess::crop_box(w, h);
        let xs = weights(left, side, w, size, filter);
        let ys = weights(top, side, h, size, filter);
        // Horizontal pass into f64 rows, then vertical.
        let mut tmp = vec![0f64; (h as usize) * (size as usize) * 3];
        for y in 0..h as usize {
            for (ox, (start, ws)) in xs.iter().enumerate() {
                for c in 0..3 {
                    let mut acc = 0.0;
                    for (k, wt) in ws.iter().enumerate() {
                        acc += wt * f64::from(img.get_pixel((start + k) as u32, y as u32)[c]);
                    }
                    tmp[(y * size as usize + ox) * 3 + c] = acc;
                }
            }
        }
        let mut out = RgbImage::new(size, size);
        for (oy, (start, ws)) in ys.iter().enumerate() {
            for ox in 0..size as usize {
                let mut px = [0u8; 3];
                for (c, v) in px.iter_mut().enumerate() {
                    let mut acc = 0.0;
                    for (k, wt) in ws.iter().enumerate() {
                        acc += wt * tmp[((start + k) * size as usize + ox) * 3 + c];
                    }
                    *v = acc.round().clamp(0.0, 255.0) as u8;
                }
                out.put_pixel(ox as u32, oy as u32, image::Rgb(px));
            }
        }
        out
    }

    /// For each output pixel: first source index and normalised weights.
    fn weights(
        offset: f64,
        len: f64,
        src: u32,
        dst: u32,
        filter: super::Filter,
    ) -> Vec<(usize, Vec<f64>)> {
        let scale = len / f64::from(dst);
        let filter_scale = scale.max(1.0);
        let (radius, kernel): (f64, fn(f64) -> f64) = match filter {
            super::Filter::Bilinear => (1.0, |x| (1.0 - x.abs()).max(0.0)),
            super::Filter::Bicubic => (2.0, |x| {
                let (a, x) = (-0.5, x.abs());
                if x < 1.0 {
                    ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * a
                } else {
                    0.0
                }
            }),
        };
        let support = radius * filter_scale;
        (0..dst)
            .map(|i| {
                let center = offset + (f64::from(i) + 0.5) * scale;
                let lo = ((center - support).floor().max(0.0)) as usize;
                let hi = ((center + support).ceil() as usize).min(src as usize);
                let mut ws: Vec<f64> = (lo..hi)
                    .map(|j| kernel((j as f64 + 0.5 - center) / filter_scale))
                    .collect();
                let sum: f64 = ws.iter().sum();
                if sum > 0.0 {
                    ws.iter_mut().for_each(|w| *w /= sum);
                }
                (lo, ws)
            })
            .collect()
    }

    /// `(x / 255 - mean) / std`, NCHW, one pixel at a time.
    pub fn normalise(img: &RgbImage, mean: [f32; 3], std: [f32; 3]) -> ndarray::Array4<f32> {
        let (w, h) = img.dimensions();
        let mut out = ndarray::Array4::<f32>::zeros((1, 3, h as usize, w as usize));
        for (x, y, p) in img.enumerate_pixels() {
            for c in 0..3 {
                out[[0, c, y as usize, x as usize]] = (f32::from(p[c]) / 255.0 - mean[c]) / std[c];
            }
        }
        out
    }
}
