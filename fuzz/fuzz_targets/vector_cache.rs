//! The vector cache's reader (`AISLEVEC` files): any bytes give a matrix or an
//! error; a matrix read back encodes to the same bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = aisle_vision::vectors::parse(data) {
        let again = aisle_vision::vectors::encode(&v.keys, &v.vectors).expect("re-encode");
        let back = aisle_vision::vectors::parse(&again).expect("re-parse");
        assert_eq!(back.keys, v.keys);
        assert_eq!(back.vectors.len(), v.vectors.len());
    }
});
