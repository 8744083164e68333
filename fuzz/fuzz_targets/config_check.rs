//! The config parser and checker: any text gives a config or located problems.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: {
        // `check_str` catches a panic inside toml_edit (0.23.10 panics on some
        // malformed dotted keys) and reports a syntax error; libfuzzer-sys's hook would
        // abort on the caught panic too. A panic that escapes `check_str` still ends
        // the run: the target's own wrapper aborts on it.
        std::panic::set_hook(Box::new(|_| {}));
    },
    |text: &str| {
        let _ = aisle_firmware_config::check_str(
            text,
            std::path::Path::new("fuzz.toml"),
            std::path::Path::new("/nonexistent"),
        );
    }
);
