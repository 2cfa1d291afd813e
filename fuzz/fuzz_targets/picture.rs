//! The PNG/JPEG loader on arbitrary bytes, with and without resizing.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let p = std::path::Path::new("fuzz.png");
    if let Ok(px) = infer::input::decode_picture(p, data, 28, 28, true) {
        assert_eq!(px.len(), 28 * 28);
    }
    let _ = infer::input::decode_picture(p, data, 28, 28, false);
});
