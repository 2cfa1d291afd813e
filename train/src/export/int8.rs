//! `train export --int8`: each float graph calibrated on the run's own
//! training images, rewritten in QDQ form ([`ae_onnx::quantize`]), and held
//! to an accuracy gate on the run's validation images before it is written.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use ae_core::interrupt;
use ae_onnx::ModelProto;
use infer::session::{ModelSession, SessionOptions};

use crate::data::{self, Rng};
use crate::error::TrainError;
use crate::run_dir::{sha256_bytes, RunConfig};

use super::onnx::Graph;
use ae_onnx::quantize::{self, CalibrationMethod, RangeObserver, WeightRange};

/// Calibration images by default.
pub const CALIBRATION_IMAGES: usize = 1024;
/// The classifier's int8 model may turn at most this share of the
/// validation images from right (float) to wrong (int8)…
pub const MAX_REGRESSIONS: f64 = 0.002;
/// …and the autoencoder's int8 validation MSE may be at most this much
/// higher (relative). Each must be shown, not merely not disproved: the
/// gate passes when a one-sided test at [`ALPHA`] on the validation images
/// rejects "the int8 model is worse than the limit" — exactly, with the
/// binomial distribution, for the classifier's few changed answers; with
/// Student's t over the per-image MSE differences for the autoencoder. A
/// set too small to show it is refused with the size that would.
pub const MAX_MSE_RISE: f64 = 0.03;
/// The gate's significance level (one-sided).
pub const ALPHA: f64 = 0.05;
/// Images per ONNX Runtime call while calibrating and gating.
const BATCH: usize = 256;

/// How `train export --int8` quantizes.
#[derive(Debug, Clone, PartialEq)]
pub struct Int8Options {
    pub calibration_images: usize,
    pub method: CalibrationMethod,
    pub weights: WeightRange,
    /// `false`: write the int8 models even when they miss the gate.
    pub gate: bool,
}

impl Default for Int8Options {
    fn default() -> Self {
        Int8Options {
            calibration_images: CALIBRATION_IMAGES,
            method: CalibrationMethod::default(),
            weights: WeightRange::default(),
            gate: true,
        }
    }
}

/// A run's images, split as its training split them: calibration images
/// from the training part, the gate's images from the validation part.
pub struct RunImages {
    calibration: Vec<f32>,
    calibration_count: usize,
    val: Vec<f32>,
    val_count: usize,
    val_labels: Option<Vec<i64>>,
    pixels: usize,
}

impl RunImages {
    /// Loads the run's dataset (refused if it changed since training).
    pub fn of(cfg: &RunConfig, calibration_images: usize) -> Result<RunImages, TrainError> {
        let d = &cfg.dataset;
        let (images, labels) = data::load_run_dataset(d, cfg.model.autoencoder().input.channels, None)?;
        let s = &cfg.train;
        // The training run's split, on the host: calibration images are a
        // seeded draw from its training part, the gate's its validation part.
        let (train, val) = data::split_indices(images.count, s.val_split, s.seed)?;
        let count = calibration_images.clamp(1, train.len());
        let draw = Rng::new(s.seed ^ 0xCA11_B8A7).permutation(train.len());
        let calibration: Vec<usize> = draw[..count].iter().map(|&j| train[j]).collect();
        let floats = |ix: &[usize]| -> Vec<f32> {
            ix.iter().flat_map(|&i| images.image(i).iter().map(|&p| p as f32 / 255.0)).collect()
        };
        Ok(RunImages {
            calibration: floats(&calibration),
            calibration_count: count,
            val_count: val.len(),
            val: floats(&val),
            val_labels: labels.map(|l| val.iter().map(|&i| l[i] as i64).collect()),
            pixels: images.pixels_per_image(),
        })
    }

    fn batches<'a>(&'a self, x: &'a [f32]) -> impl Iterator<Item = (&'a [f32], usize)> + 'a {
        x.chunks(BATCH * self.pixels).map(|c| (c, c.len() / self.pixels))
    }
}

/// Ranges [lo, hi] of the activations of `model` that calibration decides
/// ([`quantize::calibrated_tensors`]), measured on the calibration images.
pub fn calibrate(
    model: &ModelProto,
    name: &Path,
    images: &RunImages,
    method: CalibrationMethod,
) -> Result<HashMap<String, (f32, f32)>, TrainError> {
    let names = quantize::calibrated_tensors(model);
    let bytes = quantize::instrumented(model, &names).to_bytes();
    let mut session = ModelSession::from_bytes(&bytes, name, &SessionOptions::default())?;
    let mut observers: HashMap<String, RangeObserver> =
        names.iter().map(|n| (n.clone(), RangeObserver::new())).collect();
    let passes = if method == CalibrationMethod::Percentile { 2 } else { 1 };
    for pass in 0..passes {
        for (x, n) in images.batches(&images.calibration) {
            if interrupt::requested() {
                return Err(TrainError::Cancelled);
            }
            for out in session.run(x, n)? {
                if let Some(o) = observers.get_mut(&out.name) {
                    let values = out.values.iter().copied();
                    if pass == 0 {
                        o.observe_extremes(values);
                    } else {
                        o.observe_histogram(values);
                    }
                }
            }
        }
    }
    let mut ranges: HashMap<String, (f32, f32)> = observers.into_iter().map(|(k, o)| (k, o.range(method))).collect();
    if crate::fault::active("int8-narrow-ranges") {
        // The gate test's broken quantizer: ranges 1000× too narrow.
        ranges.values_mut().for_each(|r| *r = (r.0 / 1000.0, r.1 / 1000.0));
    }
    // The graph input's whole range (no percentile: the quantizer refuses
    // an input that leaves [0, 1] instead of clipping it).
    let (lo, hi) =
        images.calibration.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &v| (l.min(v), h.max(v)));
    for input in model.graph.iter().flat_map(|g| &g.input) {
        ranges.insert(input.name.clone(), (lo, hi));
    }
    Ok(ranges)
}

/// The float and int8 models' figure on the validation images.
#[derive(Debug, Clone, PartialEq)]
pub struct Gate {
    /// "val_accuracy", "val_mse" or "embedding_relative_error".
    pub metric: &'static str,
    pub float: f64,
    pub int8: f64,
    pub images: usize,
    /// The limit, in words; `None`: reported, not gated.
    pub limit: Option<String>,
    pub passed: bool,
}

impl Gate {
    pub fn summary(&self) -> String {
        format!(
            "{} {:.6} float, {:.6} int8 on {} validation images{}",
            self.metric,
            self.float,
            self.int8,
            self.images,
            self.limit.as_ref().map(|l| format!(" ({l})")).unwrap_or_default()
        )
    }
}

/// Runs both models (`name` in messages) on the validation images and
/// compares what each graph is for: the classifier's accuracy, the
/// autoencoder's MSE, the encoder's embedding (reported, not gated).
pub fn compare(
    graph: Graph,
    float: &ModelProto,
    int8: &ModelProto,
    name: &Path,
    images: &RunImages,
) -> Result<Gate, TrainError> {
    let mut float = ModelSession::from_bytes(&float.to_bytes(), name, &SessionOptions::default())?;
    let mut int8 = ModelSession::from_bytes(&int8.to_bytes(), name, &SessionOptions::default())?;
    let (mut f_sum, mut q_sum, mut norm) = (0f64, 0f64, 0f64);
    // Paired: images only float gets right, only int8 gets right; and the
    // per-image MSE differences' sum of squares.
    let (mut only_float, mut only_int8, mut diff_sq) = (0usize, 0usize, 0f64);
    let mut seen = 0usize;
    for (x, n) in images.batches(&images.val) {
        if interrupt::requested() {
            return Err(TrainError::Cancelled);
        }
        let (fo, qo) = (float.run(x, n)?, int8.run(x, n)?);
        match graph {
            Graph::Classifier => {
                let labels = images.val_labels.as_ref().ok_or_else(|| TrainError::Runtime("no labels".into()))?;
                let correct = |outs: &[infer::session::Output]| -> Vec<bool> {
                    let p = outs.iter().find(|o| o.name == "probabilities").expect("classifier output");
                    p.rows()
                        .outer_iter()
                        .zip(&labels[seen..seen + n])
                        .map(|(row, &y)| infer::report::argmax(row.iter()).0 as i64 == y)
                        .collect()
                };
                for (f, q) in correct(&fo).into_iter().zip(correct(&qo)) {
                    f_sum += f as u8 as f64;
                    q_sum += q as u8 as f64;
                    only_float += (f && !q) as usize;
                    only_int8 += (q && !f) as usize;
                }
            }
            Graph::Autoencoder => {
                let px = images.pixels;
                let per_image = |outs: &[infer::session::Output]| -> Vec<f64> {
                    outs[0]
                        .values
                        .as_slice()
                        .expect("a contiguous output")
                        .chunks(px)
                        .zip(x.chunks(px))
                        .map(|(r, p)| r.iter().zip(p).map(|(r, p)| ((r - p) as f64).powi(2)).sum::<f64>() / px as f64)
                        .collect()
                };
                for (f, q) in per_image(&fo).into_iter().zip(per_image(&qo)) {
                    f_sum += f * px as f64;
                    q_sum += q * px as f64;
                    diff_sq += (q - f).powi(2);
                }
            }
            Graph::Encoder => {
                for (a, b) in fo[0].values.iter().zip(qo[0].values.iter()) {
                    q_sum += ((a - b) as f64).powi(2);
                    norm += (*a as f64).powi(2);
                }
            }
        }
        seen += n;
    }
    let images_n = images.val_count;
    Ok(match graph {
        Graph::Classifier => {
            let (f, q) = (f_sum / seen as f64, q_sum / seen as f64);
            let test = regression_test(only_float, seen);
            Gate {
                metric: "val_accuracy",
                float: f,
                int8: q,
                images: images_n,
                limit: Some(format!(
                    "{only_float} images only float got right, {only_int8} only int8: {}",
                    test.verdict(&format!(
                        "int8 turns at most {} % of the images from right to wrong",
                        MAX_REGRESSIONS * 100.0
                    ))
                )),
                passed: test.shown,
            }
        }
        Graph::Autoencoder => {
            let per = (seen * images.pixels) as f64;
            let (f, q) = (f_sum / per, q_sum / per);
            let test = mse_rise_test(f, q, diff_sq, seen);
            Gate {
                metric: "val_mse",
                float: f,
                int8: q,
                images: images_n,
                limit: Some(test.verdict(&format!("its MSE is at most {} % above float's", MAX_MSE_RISE * 100.0))),
                passed: test.shown,
            }
        }
        Graph::Encoder => Gate {
            metric: "embedding_relative_error",
            float: 0.0,
            int8: (q_sum / norm.max(f64::MIN_POSITIVE)).sqrt(),
            images: images_n,
            limit: None,
            passed: true,
        },
    })
}

/// Whether the validation images show an int8 model within a limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shown {
    /// The test's p-value for "the int8 model is worse than the limit".
    pub p: f64,
    pub shown: bool,
    /// Not shown: the smallest validation set that would show it at the
    /// rate measured (`None`: none would, the measured rate is past the
    /// limit).
    pub needed: Option<usize>,
}

impl Shown {
    fn verdict(&self, claim: &str) -> String {
        let tail = match (self.shown, self.needed) {
            (true, _) => String::new(),
            (false, Some(n)) => format!(
                "; too few validation images to show it: at the rate measured, at least {n} would (a larger \
                 --val-split or data set), or --int8-ungated"
            ),
            (false, None) => "; the measured rate is past the limit, so no validation set would show it".into(),
        };
        let p = if self.p < 1e-3 { format!("{:.1e}", self.p) } else { format!("{:.3}", self.p) };
        format!(
            "{} that {claim} (one-sided p = {p}, needs ≤ {ALPHA}){tail}",
            if self.shown { "shown" } else { "not shown" }
        )
    }
}

/// The exact test of "int8 turns more than [`MAX_REGRESSIONS`] of the
/// images from right to wrong" from `regressions` such images among `n`: the
/// binomial probability of so few under that limit.
pub fn regression_test(regressions: usize, n: usize) -> Shown {
    let p = |b: usize, n: usize| binomial_cdf(b, n, MAX_REGRESSIONS);
    let p_here = p(regressions, n);
    let shown = p_here <= ALPHA;
    let rate = regressions as f64 / n.max(1) as f64;
    let needed = (!shown && rate < MAX_REGRESSIONS)
        .then(|| smallest(n.max(1), |m| p((rate * m as f64).floor() as usize, m) <= ALPHA))
        .flatten();
    Shown { p: p_here, shown, needed }
}

/// P(B ≤ b) for B ~ Binomial(n, prob).
fn binomial_cdf(b: usize, n: usize, prob: f64) -> f64 {
    use statrs::distribution::{Binomial, DiscreteCDF};
    if n == 0 {
        return 1.0;
    }
    Binomial::new(prob, n as u64).map_or(1.0, |d| d.cdf(b as u64))
}

/// The one-sided t-test of "int8's MSE `q` is more than [`MAX_MSE_RISE`]
/// above float's `f`" on `n` images whose per-image MSE differences have
/// the sum of squares `diff_sq`.
pub fn mse_rise_test(f: f64, q: f64, diff_sq: f64, n: usize) -> Shown {
    use statrs::distribution::{ContinuousCDF, StudentsT};
    let margin = MAX_MSE_RISE * f - (q - f); // how far below the limit the mean rise is
    let nf = n.max(2) as f64;
    let mean = q - f;
    let sd = ((diff_sq - nf * mean * mean) / (nf - 1.0)).max(0.0).sqrt();
    let p_of = |m: usize| {
        let m = m.max(2) as f64;
        if sd == 0.0 {
            return if margin > 0.0 { 0.0 } else { 1.0 };
        }
        StudentsT::new(0.0, 1.0, m - 1.0).map_or(1.0, |t| 1.0 - t.cdf(margin / (sd / m.sqrt())))
    };
    let p = p_of(n);
    let shown = p <= ALPHA;
    let needed = (!shown && margin > 0.0).then(|| smallest(n.max(2), |m| p_of(m) <= ALPHA)).flatten();
    Shown { p, shown, needed }
}

/// The smallest size above `from` for which `ok` holds, searched by
/// doubling then halving (up to 10⁹ images).
fn smallest(from: usize, ok: impl Fn(usize) -> bool) -> Option<usize> {
    let mut hi = from;
    while !ok(hi) {
        hi = hi.checked_mul(2).filter(|&h| h <= 1_000_000_000)?;
    }
    let mut lo = hi / 2;
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if ok(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Some(hi)
}

/// An int8 model ready to write, with its gate.
pub struct Quantized {
    pub model: ModelProto,
    pub gate: Gate,
}

/// The int8 model of the float `model` of `graph`, calibrated on and gated
/// against `images`; `target` names it in messages.
pub fn quantize_model(
    graph: Graph,
    model: &ModelProto,
    target: &Path,
    images: &RunImages,
    opts: &Int8Options,
) -> Result<Quantized, TrainError> {
    let bad = |msg: String| TrainError::Runtime(format!("{}: {msg}", target.display()));
    let ranges = calibrate(model, target, images, opts.method)?;
    let float_bytes = model.to_bytes();
    let mut meta = BTreeMap::new();
    meta.insert(
        "quantization".into(),
        format!(
            "int8 QDQ: weights symmetric int8 per output channel (range ±{}), biases int32; activations int8 \
             asymmetric (image at scale 1/255); inputs and outputs float32",
            opts.weights.qmax()
        ),
    );
    meta.insert("quantization_weight_range".into(), opts.weights.to_string());
    meta.insert("calibration_method".into(), opts.method.to_string());
    meta.insert("calibration_images".into(), images.calibration_count.to_string());
    meta.insert("calibration_source".into(), "the run's training split (seeded draw)".into());
    meta.insert("float_model_sha256".into(), sha256_bytes(&float_bytes));
    let mut int8 = quantize::quantize(model, &ranges, opts.weights, &meta).map_err(bad)?;
    let g = compare(graph, model, &int8, target, images)?;
    // The gate's figures join the metadata of the graph they were measured on.
    let gate_meta = [
        ("int8_gate".to_string(), g.summary()),
        (format!("float_{}", g.metric), format!("{}", g.float)),
        (format!("int8_{}", g.metric), format!("{}", g.int8)),
        ("int8_gate_passed".to_string(), g.passed.to_string()),
    ];
    // The float model's own figures are not this model's: its are the gate's.
    let mut inherited: BTreeMap<String, String> = int8.metadata_props.drain(..).map(|e| (e.key, e.value)).collect();
    super::figures::without_figures(
        &mut inherited,
        "int8_* below, measured on these weights; the float model's figures are in its own metadata",
    );
    int8.metadata_props = inherited
        .into_iter()
        .chain(gate_meta)
        .map(|(key, value)| ae_onnx::StringStringEntryProto { key, value })
        .collect();
    int8.metadata_props.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(Quantized { model: int8, gate: g })
}
