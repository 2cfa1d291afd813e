//! The PNG/JPEG loader on arbitrary bytes, through a plain resize and
//! through MNIST-style preprocessing.
#![no_main]

use infer::preprocess::{Fit, Preprocess};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let p = std::path::Path::new("fuzz.png");
    for fit in [Fit::Resize, Fit::Mnist] {
        if let Ok(px) = infer::input::decode_picture(p, data, 28, 28, &Preprocess::new(fit)) {
            assert_eq!(px.len(), 28 * 28);
        }
    }
});
