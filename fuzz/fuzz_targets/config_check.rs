//! The config parser and checker: any text gives a config or located problems.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let _ = aisle_firmware_config::check_str(
        text,
        std::path::Path::new("fuzz.toml"),
        std::path::Path::new("/nonexistent"),
    );
});
