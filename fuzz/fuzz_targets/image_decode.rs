//! Image decoding and the scan's preprocessing: an image or an error, within limits.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = aisle_vision::ImageLimits::default();
    if let Ok(img) = aisle_vision::decode_image(data, std::path::Path::new("fuzz.img"), &limits) {
        let _ = aisle_vision::Preprocess::imagenet(224).tensor(&img);
    }
});
