//! The CIFAR-10 and CIFAR-100 record parsers must return a value or an error for any bytes.
#![no_main]

use candle_mtl::data::{parse_cifar, CifarKind};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for kind in [CifarKind::Cifar10, CifarKind::Cifar100] {
        if let Ok(r) = parse_cifar(data, kind, std::path::Path::new("fuzz.bin")) {
            assert_eq!(r.pixels.len(), r.labels.len() * 3072);
        }
    }
});
