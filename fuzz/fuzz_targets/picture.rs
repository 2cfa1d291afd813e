//! The PNG/JPEG loader on arbitrary bytes, through a plain resize and
//! through MNIST-style preprocessing.
#![no_main]

use ae_core::preprocess::{Fit, Preprocess};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let p = std::path::Path::new("fuzz.png");
    for fit in [Fit::Resize, Fit::Mnist] {
        if let Ok(px) = ae_core::picture::decode_picture(p, data, [1, 28, 28], &Preprocess::new(fit)) {
            assert_eq!(px.len(), 28 * 28);
        }
    }
});
