//! The IDX reader on arbitrary bytes, plain and (when they look like it)
//! gzip: it must return Ok or an error, never panic, hang or over-allocate.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(array) = ae_core::idx::read_bytes("fuzz", data.to_vec()) {
        // A successful read agrees with its header.
        assert_eq!(array.dims.iter().product::<usize>(), array.data.len());
    }
    // The same bytes gzip-compressed exercise the streaming path.
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut enc, data).unwrap();
    let gz = enc.finish().unwrap();
    let _ = ae_core::idx::read_bytes("fuzz.gz", gz);
    // And the batch streamer on the plain bytes.
    if let Ok(reader) = ae_core::idx::IdxReader::from_bytes("fuzz", data.to_vec()) {
        if let Ok(mut r) = reader.expect(ae_core::idx::Role::Images) {
            while let Ok(Some(_)) = r.read_bytes(4096).map(|b| (!b.is_empty()).then_some(b)) {}
        }
    }
});
