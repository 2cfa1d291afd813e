//! The `infer` crate's tests: IDX I/O, reports, .npy, and the `infer`
//! binary end to end on the committed models. One test binary, so the
//! ONNX Runtime library loads once.

use std::path::{Path, PathBuf};
use std::process::Command;

use infer::idx::{self, DType, IdxArray, IdxData, IdxError, Images};

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace").to_path_buf()
}

/// Deterministic pseudo-random bytes.
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (s >> 56) as u8
        })
        .collect()
}

// ---------------------------------------------------------------- IDX

#[test]
fn idx_round_trips_every_type_plain_and_gzip() {
    let dir = tmp();
    let arrays = [
        IdxArray { dims: vec![2, 3, 4], data: IdxData::U8(noise(24, 1)) },
        IdxArray { dims: vec![5], data: IdxData::I8(vec![-128, -1, 0, 1, 127]) },
        IdxArray { dims: vec![2, 2], data: IdxData::I16(vec![-32768, -2, 3, 32767]) },
        IdxArray { dims: vec![3], data: IdxData::I32(vec![i32::MIN, 0, i32::MAX]) },
        IdxArray { dims: vec![1, 2, 2], data: IdxData::F32(vec![0.5, -1.25, f32::MAX, 1e-30]) },
        IdxArray { dims: vec![2], data: IdxData::F64(vec![std::f64::consts::PI, -0.0]) },
    ];
    for (i, a) in arrays.iter().enumerate() {
        for gz in [false, true] {
            let p = dir.path().join(format!("a{i}{}", if gz { ".gz" } else { "" }));
            idx::write(&p, a, gz).unwrap();
            let back = idx::read(&p).unwrap();
            assert_eq!(&back, a, "type {:?} gzip {gz}", a.data.dtype());
        }
    }
}

#[test]
fn idx_header_layout_is_big_endian() {
    let dir = tmp();
    let p = dir.path().join("x");
    idx::write(&p, &IdxArray { dims: vec![1, 2], data: IdxData::I16(vec![1, -2]) }, false).unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), vec![0, 0, 0x0B, 2, 0, 0, 0, 1, 0, 0, 0, 2, 0, 1, 0xFF, 0xFE]);
}

#[test]
fn images_and_labels_read_with_their_roles() {
    let dir = tmp();
    let imgs = Images { count: 3, rows: 4, cols: 5, pixels: noise(60, 7) };
    idx::write_images(dir.path().join("i"), &imgs, false).unwrap();
    idx::write_labels(dir.path().join("l.gz"), &[1, 2, 3], true).unwrap();
    assert_eq!(idx::read_images(dir.path().join("i")).unwrap(), imgs);
    assert_eq!(idx::read_labels(dir.path().join("l.gz")).unwrap(), vec![1, 2, 3]);
    // Swapped roles are refused with both shapes named.
    let e = idx::read_labels(dir.path().join("i")).unwrap_err().to_string();
    assert!(e.contains("3×4×5") && e.contains("expected labels"), "{e}");
    let e = idx::read_images(dir.path().join("l.gz")).unwrap_err().to_string();
    assert!(e.contains("expected images"), "{e}");
}

#[test]
fn normalisation_maps_to_unit_interval() {
    assert_eq!(idx::normalize(&[0, 255, 51]), vec![0.0, 1.0, 0.2]);
}

#[test]
fn image_stream_yields_batches_then_none() {
    let dir = tmp();
    let imgs = Images { count: 10, rows: 2, cols: 3, pixels: noise(60, 3) };
    for gz in [false, true] {
        let p = dir.path().join(format!("s{gz}"));
        idx::write_images(&p, &imgs, gz).unwrap();
        let mut s = idx::ImageStream::open(&p).unwrap();
        let mut all = Vec::new();
        let mut sizes = Vec::new();
        while let Some(b) = s.next_batch(4).unwrap() {
            sizes.push(b.len() / 6);
            all.extend(b);
        }
        assert_eq!(sizes, vec![4, 4, 2]);
        assert_eq!(all, imgs.pixels);
    }
}

fn write_raw(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn header(code: u8, dims: &[u32]) -> Vec<u8> {
    let mut h = vec![0, 0, code, dims.len() as u8];
    for d in dims {
        h.extend(d.to_be_bytes());
    }
    h
}

/// Every malformed case fails fast with its own message naming the file.
#[test]
fn malformed_idx_files_get_clear_errors() {
    let dir = tmp();
    let d = dir.path();
    let good = {
        let mut v = header(0x08, &[2, 2, 2]);
        v.extend([1u8; 8]);
        v
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", vec![], "empty file"),
        ("short", vec![0, 0, 8], "header cut short after 3 bytes"),
        ("magic", vec![1, 2, 8, 1, 0, 0, 0, 1, 5], "not an IDX file"),
        ("type", header(0x07, &[1]).into_iter().chain([0]).collect(), "unknown IDX type code 0x07"),
        ("nodims", vec![0, 0, 8, 0], "0 dimensions"),
        ("zerodim", header(0x08, &[3, 0, 2]), "dimension 1 is 0"),
        ("dims-cut", vec![0, 0, 8, 3, 0, 0, 0, 1], "header cut short after 8 bytes, expected 16"),
        ("truncated", good[..good.len() - 1].to_vec(), "truncated IDX payload"),
        ("half", good[..16 + 4].to_vec(), "header says 2×2×2 u8 (8 bytes), file has 4"),
        ("trailing", good.iter().copied().chain([9, 9]).collect(), "2 unexpected trailing bytes"),
        ("huge", header(0x08, &[u32::MAX, 28, 28]), "truncated IDX payload"),
        ("huge-f64", header(0x0E, &[u32::MAX, u32::MAX, u32::MAX]), "overflows"),
        ("gz-truncated", gzip(&good)[..20].to_vec(), ""),
        ("gz-corrupt", {
            let mut g = gzip(&good);
            let n = g.len();
            g[n / 2] ^= 0xFF;
            g[n / 2 + 1] ^= 0xFF;
            g
        }, ""),
        ("gz-huge", gzip(&header(0x08, &[u32::MAX, 28, 28])), "truncated IDX payload"),
    ];
    for (name, bytes, want) in cases {
        let p = write_raw(d, name, &bytes);
        let t0 = std::time::Instant::now();
        let e = idx::read(&p).expect_err(name);
        assert!(t0.elapsed().as_secs_f64() < 2.0, "{name} took too long");
        let msg = e.to_string();
        assert!(msg.starts_with(&p.display().to_string()), "{name}: {msg}");
        assert!(msg.contains(want), "{name}: {msg}");
        assert!(!msg.contains('\n'), "{name}: one line: {msg}");
    }
    assert!(matches!(idx::read(d.join("missing")).unwrap_err(), IdxError::Io { .. }));
}

#[test]
fn float_images_are_not_u8_images() {
    let dir = tmp();
    let p = dir.path().join("f");
    idx::write(&p, &IdxArray { dims: vec![1, 2, 2], data: IdxData::F32(vec![0.0; 4]) }, false).unwrap();
    let e = idx::read_images(&p).unwrap_err().to_string();
    assert!(e.contains("1×2×2 of f32") && e.contains("expected images ([N, H, W] u8)"), "{e}");
    assert_eq!(DType::from_code(0x0D), Some(DType::F32));
}

#[test]
fn mnist_training_images_load_fast() {
    let p = root().join("data/mnist/train-images-idx3-ubyte");
    if !p.exists() {
        panic!("{} missing: run `make data` first", p.display());
    }
    let t0 = std::time::Instant::now();
    let imgs = idx::read_images(&p).unwrap();
    let x = imgs.to_f32();
    let secs = t0.elapsed().as_secs_f64();
    assert_eq!((imgs.count, imgs.rows, imgs.cols), (60000, 28, 28));
    assert_eq!(x.len(), 60000 * 784);
    // Generous bound (CI machines vary); a per-byte boxed reader takes many seconds.
    assert!(secs < 1.0, "loading + normalising took {secs:.2}s");
}

// ---------------------------------------------------------------- .npy

#[test]
fn npy_header_is_aligned_and_numpy_shaped() {
    let h = infer::npy::header(&[10, 784]);
    assert_eq!(h.len() % 64, 0);
    assert!(h.starts_with(b"\x93NUMPY\x01\x00"));
    let text = String::from_utf8_lossy(&h[10..]);
    assert!(text.contains("'shape': (10, 784)") && text.ends_with('\n'), "{text}");
}

#[test]
fn npy_writer_refuses_short_output() {
    let dir = tmp();
    let p = dir.path().join("e.npy");
    let mut w = infer::npy::NpyWriter::create(&p, &[2, 3]).unwrap();
    w.write_rows(&[1.0, 2.0, 3.0]).unwrap();
    assert!(w.finish().is_err());
    assert!(!p.exists(), "no partial file");
}
