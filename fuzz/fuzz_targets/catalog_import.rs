//! Catalog CSV and JSON Lines parsing: any bytes give records or named problems.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for name in ["fuzz.csv", "fuzz.jsonl"] {
        let _ = aisle_catalog::import::parse_bytes(data, std::path::Path::new(name), "USD");
    }
});
