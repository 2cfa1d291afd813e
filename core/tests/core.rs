//! The `ae_core` crate's tests. One test binary.

use std::path::{Path, PathBuf};

use ae_core::picture::fit_image;
use ae_core::preprocess::{Fit, Invert, Preprocess};

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
