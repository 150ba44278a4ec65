//! The IDX parser (raw and gzip) must return a value or an error for any bytes, never panic
//! or allocate what a header claims without the data to back it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = candle_mtl::data::parse_idx(data, std::path::Path::new("fuzz.idx"));
});
