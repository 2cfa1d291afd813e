//! `train export`: refusals, the data checks, the int8 calibration and its gate on evidence, the
//! quantizer's refusals.

use std::collections::{BTreeMap, HashMap};

use ae_core::idx;
use ae_onnx::quantize::{CalibrationMethod, WeightRange};
use tch::{nn::VarStore, Device};
use train::export::int8::Int8Options;
use train::export::onnx::{self as export_onnx, Graph};
use train::model::{Autoencoder, AutoencoderConfig, InputShape};
use train::pipeline;
use train::run_dir::RunDir;

use crate::common::*;

/// `export --int8`: QDQ models beside the float ones, calibrated and
/// compared on the run's own split, recorded in the metadata; a model
/// quantized with ranges far too narrow fails the gate.
#[test]
fn int8_export_calibrates_gates_and_records() {
    let _g = lock();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ae");
    pipeline::train_autoencoder(&ae_job(&out, 2)).unwrap();
    let models = dir.path().join("models");
    let job = |gate| train::export::ExportJob {
        run: out.clone(),
        out: models.clone(),
        quiet: true,
        images: None,
        verify_count: 16,
        encoder: train::export::EncoderSource::Autoencoder,
        epoch: train::export::Epoch::Best,
        layout: Default::default(),
        int8: Some(Int8Options { calibration_images: 128, gate, ..Int8Options::default() }),
    };
    let done = train::export::export(&job(false)).unwrap();
    let names: Vec<String> = done.iter().map(|e| e.path.file_name().unwrap().to_string_lossy().into_owned()).collect();
    assert_eq!(names, ["autoencoder.onnx", "encoder.onnx", "autoencoder.int8.onnx", "encoder.int8.onnx"]);
    let gate = done[2].gate.as_ref().unwrap();
    assert_eq!((gate.metric, gate.images), ("val_mse", 240));
    assert!(gate.int8 > 0.0 && gate.int8 < gate.float * 1.2, "{gate:?}");
    let m = ae_onnx::read_model(models.join("autoencoder.int8.onnx")).unwrap();
    let meta = m.metadata();
    assert_eq!(meta["calibration_images"], "128");
    assert_eq!(meta["calibration_method"], "percentile");
    assert_eq!(meta["int8_val_mse"].parse::<f64>().unwrap(), gate.int8);
    assert_eq!(meta["int8_gate_passed"], gate.passed.to_string());
    let float_bytes = std::fs::read(models.join("autoencoder.onnx")).unwrap();
    assert_eq!(meta["float_model_sha256"], train::run_dir::sha256_bytes(&float_bytes));
    assert_eq!(meta["weights_sha256"], train::run_dir::sha256_file(&out.join("best.safetensors")).unwrap());
    insta::assert_snapshot!("autoencoder_int8_graph", ae_onnx::summary(&m));

    // Ranges 1000× too narrow clip every activation: the gate must fail.
    let float = ae_onnx::read_model(models.join("autoencoder.onnx")).unwrap();
    let cfg = train::run_dir::RunDir::open(&out).unwrap().read_config().unwrap();
    let images = train::export::int8::RunImages::of(&cfg, 64).unwrap();
    let narrow: HashMap<String, (f32, f32)> =
        train::export::int8::calibrate(&float, &out, &images, CalibrationMethod::MinMax)
            .unwrap()
            .into_iter()
            .map(|(k, (lo, hi))| (k, (lo / 1000.0, hi / 1000.0)))
            .collect();
    let broken = ae_onnx::quantize::quantize(&float, &narrow, WeightRange::Reduced, &BTreeMap::new()).unwrap();
    let g = train::export::int8::compare(Graph::Autoencoder, &float, &broken, &out, &images).unwrap();
    assert!(!g.passed && g.int8 > g.float * 1.5, "{g:?}");
}

#[test]
fn export_refuses_incomplete_runs_and_unwritable_outputs() {
    let _g = lock();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ae = d.join("ae");
    pipeline::train_autoencoder(&ae_job(&ae, 1)).unwrap();
    // Incomplete: no weights.
    let partial = d.join("partial");
    std::fs::create_dir(&partial).unwrap();
    std::fs::copy(ae.join("config.json"), partial.join("config.json")).unwrap();
    let (code, _, err) =
        run(&["export", "--run", partial.to_str().unwrap(), "--out", d.join("m1").to_str().unwrap()], None);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("has no weights.safetensors"), "{err}");
    // Unwritable: the output "directory" is a file.
    let file = d.join("file");
    std::fs::write(&file, b"x").unwrap();
    let (code, _, err) =
        run(&["export", "--run", ae.to_str().unwrap(), "--out", file.join("m").to_str().unwrap()], None);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cannot create the output directory"), "{err}");
    // And a good export writes both graphs and prints the parity figure.
    let m = d.join("m2");
    let (code, out, err) = run(&["export", "--run", ae.to_str().unwrap(), "--out", m.to_str().unwrap()], None);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("ONNX Runtime matches tch"), "{out}");
    assert!(m.join("autoencoder.onnx").is_file() && m.join("encoder.onnx").is_file());
    assert_eq!(std::fs::read_dir(&m).unwrap().count(), 2, "no temporary files left");
}

/// Export: a run whose data changed is refused for float models too; a
/// failing int8 gate writes nothing; an IDX run trained with `--channels 3`
/// calibrates on converted images; and a published model names no
/// directory of the machine that built it.
#[test]
fn export_checks_data_gates_and_publishes_no_builder_paths() {
    let _g = lock();
    let dir = tempfile::tempdir().unwrap();
    let (file, mut images) = mnist_subset(dir.path(), 400);
    let run_dir = dir.path().join("rgb");
    let (code, err) = train_small(&file, &run_dir, &["--epochs", "1", "--channels", "3"], None);
    assert_eq!(code, 0, "{err}");
    // `train summary` reads the run: a 3-channel input, the totals line.
    let (code, out, err) = run(&["summary", "--run", run_dir.to_str().unwrap()], None);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("autoencoder: input [B, 3, 28, 28]") && out.contains(" total, "), "{out}");
    let (code, _, err) = run(&["summary", "--run", dir.path().join("nowhere").to_str().unwrap()], None);
    assert_eq!((code, err.trim().lines().count()), (2, 1), "{err}");
    let models = dir.path().join("models");
    let export = |extra: &[&str], fault: Option<&str>| {
        let mut c = train_bin();
        c.args(["export", "-q", "--run", run_dir.to_str().unwrap(), "--out", models.to_str().unwrap()]).args(extra);
        if let Some(f) = fault {
            c.env("TRAIN_FAULT", f);
        }
        let r = run_to_end(&mut c, None);
        (r.code, r.err)
    };
    // A broken quantizer misses the gate: exit 1 and no file at all.
    let (code, err) = export(&["--int8"], Some("int8-narrow-ranges"));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("misses the accuracy gate"), "{err}");
    let left: Vec<_> =
        std::fs::read_dir(&models).map(|d| d.flatten().map(|e| e.file_name()).collect()).unwrap_or_default();
    assert!(left.is_empty(), "a failing gate wrote {left:?}");
    // As a Triton repository too: the folders made for it are removed again.
    let (code, err) = export(&["--int8", "--layout", "triton"], Some("int8-narrow-ranges"));
    assert_eq!(code, 1, "{err}");
    let left: Vec<_> =
        std::fs::read_dir(&models).map(|d| d.flatten().map(|e| e.file_name()).collect()).unwrap_or_default();
    assert!(left.is_empty(), "a failing gate left {left:?} of a Triton layout");
    let (code, err) = export(&["--int8", "--layout", "triton", "--calibration-images", "64"], None);
    assert_eq!(code, 0, "{err}");
    for m in ["autoencoder", "encoder", "autoencoder.int8", "encoder.int8"] {
        assert!(models.join(m).join("1/model.onnx").is_file(), "{m}");
        // The server reads these back (serve's model_config tests hold the
        // writer to its parser; tests/triton_client.py serves an export).
        let text = std::fs::read_to_string(models.join(m).join("config.pbtxt")).unwrap();
        for line in [format!("name: \"{m}\""), "max_batch_size: 64".into(), "backend: \"onnxruntime\"".into()] {
            assert!(text.lines().any(|l| l == line), "{m}: no {line:?} in\n{text}");
        }
        // Dims without the batch; the model's batch dimension is symbolic.
        let session =
            infer::session::ModelSession::open(models.join(m).join("1/model.onnx"), &Default::default()).unwrap();
        assert_eq!(session.input.sizes(), [-1, 3, 28, 28], "{m}");
        assert!(text.contains("  name: \"image\"\n  data_type: TYPE_FP32\n  dims: [3, 28, 28]\n"), "{m}:\n{text}");
    }
    std::fs::remove_dir_all(&models).unwrap();
    // Converted (3-channel) IDX images calibrate and gate like training read them.
    let (code, err) = export(&["--int8", "--calibration-images", "64"], None);
    assert_eq!(code, 0, "{err}");
    for f in ["autoencoder.onnx", "encoder.onnx", "autoencoder.int8.onnx", "encoder.int8.onnx"] {
        let m = ae_onnx::read_model(models.join(f)).unwrap();
        for (k, v) in m.metadata() {
            let builder = dir.path().to_str().unwrap();
            assert!(!v.contains(builder), "{f}: metadata {k} names the builder's directory: {v}");
        }
        assert_eq!(m.metadata()["dataset"], "images", "{f}");
    }
    // Float export refuses images changed since training.
    images.pixels[0] ^= 1;
    idx::write_images(&file, &images, false).unwrap();
    let (code, err) = export(&[], None);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("changed since the run was trained") && err.contains("then,"), "{err}");
}

/// The gate passes on evidence that the int8 model is within the limit, not
/// on an absence of evidence against it: an exact binomial test on the
/// images int8 turns wrong, and the size from which every set would show
/// it; for the autoencoder, the paired test of qᵢ − 1.03·fᵢ.
#[test]
fn int8_gate_needs_evidence() {
    use train::export::int8::{mse_rise_test, regression_test, ALPHA, MAX_MSE_RISE, MAX_REGRESSIONS};
    let test = |b, n| regression_test(b, n, ALPHA);
    // Two lost of 64 (3.1 %), or none: 64 images cannot show 0.2 %.
    for b in [0, 1, 2] {
        let t = test(b, 64);
        assert!(!t.shown, "{b} of 64: {t:?}");
    }
    assert_eq!(test(2, 64).needed, None, "3.1 % is past the limit: no size would show it");
    // None lost: (1 - 0.002)^n <= 0.05 from n = 1497 on.
    assert_eq!(test(0, 64).needed, Some(1497));
    assert!(test(0, 1497).shown && !test(0, 1496).shown);
    // 1 % of 300 is past the limit.
    assert!(!test(3, 300).shown);
    // On 12 000 images: P(B <= 15 | 12 000, 0.002) = 0.034, P(B <= 16) = 0.056.
    assert!(test(15, 12_000).shown);
    assert!(!test(16, 12_000).shown);
    assert!((test(14, 12_000).p - 0.0197).abs() < 0.0005, "{:?}", test(14, 12_000));
    // The size named is the one from which every larger set at the rate
    // measured shows it (the p-value jumps up each time one more
    // regression is due, so the first passing size is not it: at 1 in
    // 1 000, 3 875 passes and 4 000 fails again).
    assert!(test(3, 3_875).shown && !test(4, 4_000).shown, "the p-value is not monotone in the size");
    for (b, n) in [(1, 1_000), (20, 12_000), (2, 3_000)] {
        let needed = test(b, n).needed.unwrap_or_else(|| panic!("{b} of {n} is within the limit"));
        let at = |m: usize| test(b * m / n, m);
        assert!(!at(needed - 1).shown, "{b} of {n}: {needed} is not the first size from which it holds");
        if let Some(m) = (needed..needed * 3).find(|&m| !at(m).shown) {
            panic!("{b} of {n}: {needed} named, but {m} images at that rate fail: {:?}", at(m));
        }
    }
    const { assert!(MAX_REGRESSIONS == 0.002 && MAX_MSE_RISE == 0.03) };

    // The autoencoder: per-image MSEs f and q, tested on dᵢ = qᵢ − 1.03·fᵢ.
    let mse = |f: &[f64], q: &[f64], alpha| {
        let d: Vec<f64> = f.iter().zip(q).map(|(f, q)| q - (1.0 + MAX_MSE_RISE) * f).collect();
        mse_rise_test(d.iter().sum(), d.iter().map(|d| d * d).sum(), d.len(), alpha)
    };
    let spread = |n: usize, sd: f64| (0..n).map(move |i| 0.001 + sd * ((i % 7) as f64 - 3.0) / 2.0);
    // A 1 % rise with a small spread is shown below 3 % on 1 000 images; a
    // 5 % rise never is.
    let f: Vec<f64> = spread(1000, 0.0001).collect();
    let q: Vec<f64> = f.iter().enumerate().map(|(i, f)| f * 1.01 + 1e-6 * ((i % 3) as f64 - 1.0)).collect();
    assert!(mse(&f, &q, ALPHA).shown);
    let q5: Vec<f64> = f.iter().enumerate().map(|(i, f)| f * 1.05 + 1e-6 * ((i % 3) as f64 - 1.0)).collect();
    let worse = mse(&f, &q5, ALPHA);
    assert!(!worse.shown && worse.needed.is_none(), "{worse:?}");
    // Float's MSE is measured, not known: images whose float MSE differs
    // widely (0.0001 and 0.0199, mean 0.01) each rising by the same 0.0002
    // (2 %) are not enough, on 20 images, to show "at most 3 %": the test
    // of the rise against 0.03·f̄ taken as known called it certain (its
    // differences have no spread).
    let f: Vec<f64> = (0..20).map(|i| if i % 2 == 0 { 0.0001 } else { 0.0199 }).collect();
    let q: Vec<f64> = f.iter().map(|f| f + 0.0002).collect();
    let paired = mse(&f, &q, ALPHA / 2.0);
    assert!(!paired.shown && paired.needed.is_some_and(|n| n > 20), "{paired:?}");
}

/// The gate's two looks: the validation images first; when they cannot
/// decide, again with the training images the calibration did not draw,
/// each look at half the level, and the verdict says which decided.
#[test]
fn int8_gate_looks_again_with_the_training_images_the_calibration_left() {
    let _g = lock();
    let dir = tempfile::tempdir().unwrap();
    let ae = dir.path().join("ae");
    assert_eq!(train_small(&mnist("train-images-idx3-ubyte"), &ae, &["--epochs", "1"], None).0, 0);
    let clf = dir.path().join("clf");
    let args = ["--frozen-epochs", "1", "--epochs", "0", "--limit", "3000", "--test-images", "none"];
    let (code, out) = classifier_small(&ae, &clf, &args, None);
    assert_eq!(code, 0, "{out}");
    let models = dir.path().join("models");
    let (code, _, err) =
        run(&["export", "-q", "--run", clf.to_str().unwrap(), "--out", models.to_str().unwrap()], None);
    assert_eq!(code, 0, "{err}");
    let float = ae_onnx::read_model(models.join("classifier.onnx")).unwrap();
    let cfg = RunDir::open(&clf).unwrap().read_config().unwrap();
    let images = train::export::int8::RunImages::of(&cfg, 64).unwrap();
    // The float model against itself: no image changes. 600 validation
    // images cannot show 0.2 % at 0.025 (0.998^600 = 0.30); with the 2 336
    // training images the calibration left, 2 936 can (0.998^2936 = 0.003).
    let g = train::export::int8::compare(Graph::Classifier, &float, &float, &clf, &images).unwrap();
    let limit = g.limit.clone().unwrap();
    assert!(g.passed && g.images == 600, "{g:?}");
    assert!(limit.starts_with("validation: 0 of 600 images only float got right, 0 only int8: not shown that int8 turns at most 0.2 % of the images from right to wrong (one-sided p = 0.301, needs ≤ 0.025); with"), "{limit}");
    assert!(
        limit.contains("; with the 2336 training images the calibration did not draw: 0 of 2936 images"),
        "{limit}"
    );
    assert!(limit.ends_with("shown that int8 turns at most 0.2 % of the images from right to wrong (one-sided p = 0.003, needs ≤ 0.025)"), "{limit}");
}

/// The quantizer refuses what it cannot represent instead of clipping or
/// panicking: a graph input outside [0, 1], an empty weight.
#[test]
fn quantizer_refuses_inputs_outside_its_grid_and_empty_weights() {
    let model = {
        let vs = VarStore::new(Device::Cpu);
        let cfg = AutoencoderConfig { layers: 1, filter_size: 3, filters: 4, input: InputShape::gray(28, 28) };
        let _ = Autoencoder::new(&vs.root(), &cfg);
        export_onnx::autoencoder_model(&weights(&vs), &cfg, Graph::Encoder, &BTreeMap::new()).unwrap()
    };
    let input = model.graph.as_ref().unwrap().input[0].name.clone();
    let mut ranges: HashMap<String, (f32, f32)> =
        ae_onnx::quantize::calibrated_tensors(&model).into_iter().map(|n| (n, (0.0, 1.0))).collect();
    ranges.insert(input.clone(), (0.0, 1.0));
    assert!(ae_onnx::quantize::quantize(&model, &ranges, WeightRange::Reduced, &BTreeMap::new()).is_ok());
    ranges.insert(input.clone(), (-1.0, 1.0));
    let e = ae_onnx::quantize::quantize(&model, &ranges, WeightRange::Reduced, &BTreeMap::new()).unwrap_err();
    assert!(e.contains("spans [-1, 1]") && e.contains("clipped"), "{e}");
    ranges.insert(input, (0.0, 1.0));
    let mut empty = model.clone();
    let g = empty.graph.as_mut().unwrap();
    let w = g.initializer.iter_mut().find(|t| t.dims.len() == 4).unwrap();
    w.dims[1] = 0;
    w.raw_data.clear();
    w.float_data.clear();
    let e = ae_onnx::quantize::quantize(&empty, &ranges, WeightRange::Reduced, &BTreeMap::new()).unwrap_err();
    assert!(e.contains("is empty"), "{e}");
}
