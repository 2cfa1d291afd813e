//! The `ae_core` crate's tests: IDX files, pictures and their
//! preprocessing. One test binary.

use std::path::{Path, PathBuf};

use ae_core::idx::{self, DType, IdxArray, IdxData, IdxError, Images};
use ae_core::picture::fit_image;
use ae_core::preprocess::{Fit, Invert, Preprocess};
use ae_onnx::fixture::noise as bytes;

fn golden_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/preprocess/golden.json")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
}

/// Seeded xorshift in [0, 1).
fn noise(seed: u64) -> impl FnMut() -> f64 {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// RGBA pictures of the kinds users bring: a dark stroke on uneven paper,
/// a drawing on a transparent background, a light digit on dark, a colour
/// photo-like patch, a tiny icon to enlarge, and a blank page.
fn cases() -> Vec<(&'static str, u32, u32, Vec<u8>)> {
    let mut out = Vec::new();
    let make = |w: u32, h: u32, f: &mut dyn FnMut(u32, u32) -> [u8; 4]| {
        let mut v = Vec::with_capacity((w * h * 4) as usize);
        for y in 0..h {
            for x in 0..w {
                v.extend(f(x, y));
            }
        }
        v
    };
    let mut n = noise(1);
    let stroke = |x: f64, y: f64, w: f64| ((x - 0.5) * 1.6 - (y - 0.5)).abs() < w || (y - 0.2).abs() < w;
    out.push((
        "paper_7",
        60,
        45,
        make(60, 45, &mut |x, y| {
            let (u, v) = (x as f64 / 60.0, y as f64 / 45.0);
            let paper = 225.0 - 40.0 * u + 20.0 * n() - 10.0;
            let l = if stroke(u, v, 0.06) && v > 0.15 && v < 0.85 && u > 0.25 && u < 0.75 {
                40.0 + 20.0 * n()
            } else {
                paper
            };
            let l = l.clamp(0.0, 255.0) as u8;
            [l, l.saturating_sub(6), l.saturating_sub(12), 255]
        }),
    ));
    out.push((
        "transparent_3",
        40,
        40,
        make(40, 40, &mut |x, y| {
            let (dx, dy) = (x as f64 - 20.0, y as f64 - 20.0);
            let r = (dx * dx + dy * dy).sqrt();
            let a = if (r - 12.0).abs() < 3.0 && dx > -6.0 {
                255.0
            } else if (r - 12.0).abs() < 4.5 && dx > -6.0 {
                120.0
            } else {
                0.0
            };
            [0, 0, 0, a as u8]
        }),
    ));
    out.push((
        "light_on_dark_1",
        30,
        50,
        make(30, 50, &mut |x, y| {
            let on = (x as i32 - 15).abs() <= 2 && (8..42).contains(&y);
            let l = if on { 240 } else { 20 + (x + y) as u8 % 7 };
            [l, l, l, 255]
        }),
    ));
    let mut n = noise(2);
    out.push((
        "colour_patch",
        40,
        36,
        make(40, 36, &mut |x, y| {
            let inside = (x as f64 - 20.0).powi(2) / 144.0 + (y as f64 - 18.0).powi(2) / 100.0 < 1.0;
            let j = (16.0 * n()) as u8;
            if inside {
                [200 + j / 2, 40 + j, 60, 255]
            } else {
                [30 + j, 90 + (x as u8) * 2, 150 + (y as u8), 255]
            }
        }),
    ));
    out.push((
        "tiny_icon",
        14,
        20,
        make(14, 20, &mut |x, y| {
            let l = if (x + 2 * y) % 5 == 0 { 0 } else { 255 };
            [l, l, l, 255]
        }),
    ));
    out.push(("blank", 32, 32, make(32, 32, &mut |_, _| [250, 250, 250, 255])));
    out
}

/// (case, model input [C, H, W], preprocessing) checked for each picture.
fn recipes() -> Vec<(&'static str, [usize; 3], Fit, Invert)> {
    vec![
        ("paper_7", [1, 28, 28], Fit::Mnist, Invert::Auto),
        ("transparent_3", [1, 28, 28], Fit::Mnist, Invert::Auto),
        ("light_on_dark_1", [1, 28, 28], Fit::Mnist, Invert::Auto),
        ("blank", [1, 28, 28], Fit::Mnist, Invert::Auto),
        ("paper_7", [1, 28, 28], Fit::Resize, Invert::Never),
        ("colour_patch", [3, 28, 28], Fit::Resize, Invert::Never),
        ("colour_patch", [1, 28, 28], Fit::Resize, Invert::Never),
        ("tiny_icon", [1, 28, 28], Fit::Resize, Invert::Always),
        ("transparent_3", [3, 32, 32], Fit::Resize, Invert::Never),
    ]
}

/// The preprocessing contract shared with the browser: each committed RGBA
/// picture, fitted to a model's input by each recipe, gives exactly the
/// committed bytes (web/test/preprocess.test.mjs checks preprocess.js
/// against the same file). `GOLDEN_WRITE=1` writes the file anew.
#[test]
fn preprocessing_matches_the_golden_files() {
    let cases = cases();
    let mut entries = Vec::new();
    for (name, [c, h, w], fit, invert) in recipes() {
        let (_, pw, ph, rgba) = cases.iter().find(|k| k.0 == name).expect("case");
        let img = image::DynamicImage::ImageRgba8(image::RgbaImage::from_raw(*pw, *ph, rgba.clone()).expect("size"));
        let got = fit_image(img, [c, h, w], &Preprocess { fit, invert }).expect("fits");
        entries.push(serde_json::json!({
            "case": name, "width": pw, "height": ph, "rgba": hex(rgba),
            "channels": c, "out_height": h, "out_width": w,
            "fit": fit.to_string(), "invert": invert.to_string(), "expected": hex(&got),
        }));
    }
    let path = golden_file();
    if std::env::var_os("GOLDEN_WRITE").is_some() {
        std::fs::write(&path, serde_json::to_string_pretty(&entries).unwrap() + "\n").unwrap();
    }
    let golden: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("golden file")).expect("golden json");
    assert_eq!(golden.len(), entries.len(), "recipes in {}", path.display());
    for (want, got) in golden.iter().zip(&entries) {
        let label = format!(
            "{} → {} {} {}×{}",
            want["case"], want["fit"], want["channels"], want["out_height"], want["out_width"]
        );
        assert_eq!(want["rgba"], got["rgba"], "{label}: the input picture changed");
        let (a, b) = (unhex(want["expected"].as_str().unwrap()), unhex(got["expected"].as_str().unwrap()));
        let differ = a.iter().zip(&b).filter(|(x, y)| x != y).count();
        assert_eq!(differ, 0, "{label}: {differ} of {} bytes differ from the golden file", a.len());
    }
}

#[test]
fn the_machine_reports_cores_and_memory() {
    let allowed = std::thread::available_parallelism().unwrap().get();
    let cores = ae_core::machine::physical_cores();
    assert!((1..=allowed).contains(&cores), "{cores} physical cores of {allowed} allowed");
    let free = ae_core::machine::available_memory().expect("free memory is known on Linux");
    assert!(free > 64 << 20, "{free} bytes free");
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace").to_path_buf()
}

// ---------------------------------------------------------------- IDX

#[test]
fn idx_round_trips_every_type_plain_and_gzip() {
    let dir = tmp();
    let arrays = [
        IdxArray { dims: vec![2, 3, 4], data: IdxData::U8(bytes(24, 1)) },
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
    let imgs = Images { count: 3, channels: 1, rows: 4, cols: 5, pixels: bytes(60, 7) };
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

/// Colour IDX files are `[N, H, W, 3]`, interleaved as pictures are; in
/// memory images are planar `[N, C, H, W]`, the models' layout. Both
/// readers convert, and writing converts back.
#[test]
fn colour_idx_images_are_read_planar() {
    let dir = tmp();
    let p = dir.path().join("rgb");
    // Two 1×2 images: pixel (r, g, b) = (10i + 1, 10i + 2, 10i + 3) for pixel i.
    let interleaved = vec![1, 2, 3, 11, 12, 13, 21, 22, 23, 31, 32, 33];
    idx::write(&p, &IdxArray { dims: vec![2, 1, 2, 3], data: IdxData::U8(interleaved.clone()) }, false).unwrap();
    let imgs = idx::read_images(&p).unwrap();
    assert_eq!((imgs.count, imgs.channels, imgs.rows, imgs.cols), (2, 3, 1, 2));
    assert_eq!(imgs.pixels, vec![1, 11, 2, 12, 3, 13, 21, 31, 22, 32, 23, 33]);
    let mut s = idx::ImageStream::open(&p).unwrap();
    assert_eq!(s.next_batch(5).unwrap().unwrap(), imgs.pixels);
    idx::write_images(dir.path().join("back"), &imgs, false).unwrap();
    assert_eq!(std::fs::read(dir.path().join("back")).unwrap(), std::fs::read(&p).unwrap());
}

#[test]
fn normalisation_maps_to_unit_interval() {
    assert_eq!(idx::normalize(&[0, 255, 51]), vec![0.0, 1.0, 0.2]);
}

#[test]
fn image_stream_yields_batches_then_none() {
    let dir = tmp();
    let imgs = Images { count: 10, channels: 1, rows: 2, cols: 3, pixels: bytes(60, 3) };
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
        (
            "gz-corrupt",
            {
                let mut g = gzip(&good);
                let n = g.len();
                g[n / 2] ^= 0xFF;
                g[n / 2 + 1] ^= 0xFF;
                g
            },
            "",
        ),
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
    assert!(e.contains("1×2×2 of f32") && e.contains("expected images ([N, H, W] or [N, H, W, 3] u8)"), "{e}");
    assert_eq!(DType::from_code(0x0D), Some(DType::F32));
}

#[test]
fn mnist_training_images_load_whole() {
    // How fast is measured by `make bench` (BENCHMARKS.md, data loading).
    let p = root().join("data/mnist/train-images-idx3-ubyte");
    assert!(p.exists(), "{} missing: run `make data` first", p.display());
    let imgs = idx::read_images(&p).unwrap();
    let x = imgs.to_f32();
    assert_eq!((imgs.count, imgs.rows, imgs.cols), (60000, 28, 28));
    assert_eq!(x.len(), 60000 * 784);
    assert!(x.iter().all(|v| (0.0..=1.0).contains(v)));
    assert!(x.contains(&1.0), "MNIST has saturated pixels");
}
