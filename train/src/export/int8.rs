//! `train export --int8`: each float graph calibrated on the run's own
//! training images, rewritten in QDQ form ([`ae_onnx::quantize`]), and held
//! to an accuracy gate before it is written: first on the run's validation
//! images; when they are too few to decide (the accurate preset holds out
//! 3,000), again with the training images the calibration did not draw.

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
/// gate passes when a one-sided test rejects "the int8 model is worse than
/// the limit" — exactly, with the binomial distribution, for the
/// classifier's few changed answers; with Student's t over the per-image
/// differences qᵢ − (1 + 3 %)·fᵢ for the autoencoder (paired: float's MSE
/// is measured on the same images, not known).
///
/// Two looks, each at [`ALPHA`] / 2 (Bonferroni: together at most
/// [`ALPHA`]): the validation images; then, only if they cannot decide
/// (not shown, yet within the limit), the validation images with the
/// training images the calibration did not draw. The network learned from
/// those, so its answers there are surer and flip less often: the second
/// look is the weaker evidence, which is why it comes second, and the gate
/// says which look decided. A set too small to show it either way is
/// refused with the size from which every set would.
pub const MAX_MSE_RISE: f64 = 0.03;
/// The gate's significance level (one-sided), over both looks.
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
/// from the training part, the gate's images from the validation part, and
/// the rest of the training part for the gate's second look.
pub struct RunImages {
    calibration: Vec<f32>,
    calibration_count: usize,
    val: Vec<f32>,
    val_count: usize,
    val_labels: Option<Vec<i64>>,
    /// The training images the calibration did not draw, as pixels (0–255:
    /// a quarter of the memory; made [0, 1] a batch at a time).
    rest: Vec<u8>,
    rest_count: usize,
    rest_labels: Option<Vec<i64>>,
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
        let mut rest: Vec<usize> = draw[count..].iter().map(|&j| train[j]).collect();
        rest.sort_unstable();
        let floats = |ix: &[usize]| -> Vec<f32> {
            ix.iter().flat_map(|&i| images.image(i).iter().map(|&p| p as f32 / 255.0)).collect()
        };
        let labels_of = |ix: &[usize]| labels.as_ref().map(|l| ix.iter().map(|&i| l[i] as i64).collect());
        Ok(RunImages {
            calibration: floats(&calibration),
            calibration_count: count,
            val_count: val.len(),
            val: floats(&val),
            val_labels: labels_of(&val),
            rest_count: rest.len(),
            rest: rest.iter().flat_map(|&i| images.image(i).iter().copied()).collect(),
            rest_labels: labels_of(&rest),
            pixels: images.pixels_per_image(),
        })
    }

    fn batches<'a>(&'a self, x: &'a [f32]) -> impl Iterator<Item = (&'a [f32], usize)> + 'a {
        x.chunks(BATCH * self.pixels).map(|c| (c, c.len() / self.pixels))
    }

    /// The rest of the training images, a batch at a time in [0, 1]:
    /// (images, count, index of the first).
    fn rest_batches(&self) -> impl Iterator<Item = (Vec<f32>, usize, usize)> + '_ {
        self.rest
            .chunks(BATCH * self.pixels)
            .enumerate()
            .map(|(b, c)| (c.iter().map(|&p| p as f32 / 255.0).collect(), c.len() / self.pixels, b * BATCH))
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

/// What a set of images shows of the float and int8 models, summed image
/// by image (paired: both models see the same images).
#[derive(Debug, Clone, Default)]
struct Tally {
    seen: usize,
    /// Correct answers (classifier), or per-image MSEs (autoencoder).
    f_sum: f64,
    q_sum: f64,
    /// Images only float gets right, only int8 gets right.
    only_float: usize,
    only_int8: usize,
    /// The autoencoder's dᵢ = qᵢ − (1 + MAX_MSE_RISE)·fᵢ of per-image MSEs:
    /// their sum and sum of squares.
    d_sum: f64,
    d_sq: f64,
    /// The encoder's squared embedding norm.
    norm: f64,
}

/// Runs both sessions on `n` images `x` and adds what they show to `t`.
fn tally(
    graph: Graph,
    sessions: (&mut ModelSession, &mut ModelSession),
    x: &[f32],
    n: usize,
    labels: Option<&[i64]>,
    px: usize,
    t: &mut Tally,
) -> Result<(), TrainError> {
    let (fo, qo) = (sessions.0.run(x, n)?, sessions.1.run(x, n)?);
    match graph {
        Graph::Classifier => {
            let labels = labels.ok_or_else(|| TrainError::Runtime("no labels".into()))?;
            let correct = |outs: &[infer::session::Output]| -> Vec<bool> {
                let p = outs.iter().find(|o| o.name == "probabilities").expect("classifier output");
                p.rows()
                    .outer_iter()
                    .zip(labels)
                    .map(|(row, &y)| infer::report::argmax(row.iter()).0 as i64 == y)
                    .collect()
            };
            for (f, q) in correct(&fo).into_iter().zip(correct(&qo)) {
                t.f_sum += f as u8 as f64;
                t.q_sum += q as u8 as f64;
                t.only_float += (f && !q) as usize;
                t.only_int8 += (q && !f) as usize;
            }
        }
        Graph::Autoencoder => {
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
                // Every image has as many pixels: the mean of the images'
                // MSEs is the MSE of them all.
                t.f_sum += f;
                t.q_sum += q;
                let d = q - (1.0 + MAX_MSE_RISE) * f;
                t.d_sum += d;
                t.d_sq += d * d;
            }
        }
        Graph::Encoder => {
            for (a, b) in fo[0].values.iter().zip(qo[0].values.iter()) {
                t.q_sum += ((a - b) as f64).powi(2);
                t.norm += (*a as f64).powi(2);
            }
        }
    }
    t.seen += n;
    Ok(())
}

impl Tally {
    /// The gate's test of this set, at `alpha`.
    fn test(&self, graph: Graph, alpha: f64) -> Shown {
        match graph {
            Graph::Autoencoder => mse_rise_test(self.d_sum, self.d_sq, self.seen, alpha),
            _ => regression_test(self.only_float, self.seen, alpha),
        }
    }

    /// What it showed, in words.
    fn counts(&self, graph: Graph) -> String {
        match graph {
            Graph::Autoencoder => format!(
                "MSE {:.6} float, {:.6} int8 on {} images",
                self.f_sum / self.seen.max(1) as f64,
                self.q_sum / self.seen.max(1) as f64,
                self.seen
            ),
            _ => format!(
                "{} of {} images only float got right, {} only int8",
                self.only_float, self.seen, self.only_int8
            ),
        }
    }
}

/// Runs both models (`name` in messages) on the validation images and
/// compares what each graph is for: the classifier's accuracy, the
/// autoencoder's MSE, the encoder's embedding (reported, not gated). When
/// the validation images cannot decide, a second look adds the training
/// images the calibration did not draw (see [`MAX_MSE_RISE`]).
pub fn compare(
    graph: Graph,
    float: &ModelProto,
    int8: &ModelProto,
    name: &Path,
    images: &RunImages,
) -> Result<Gate, TrainError> {
    let mut float = ModelSession::from_bytes(&float.to_bytes(), name, &SessionOptions::default())?;
    let mut int8 = ModelSession::from_bytes(&int8.to_bytes(), name, &SessionOptions::default())?;
    let px = images.pixels;
    let mut val = Tally::default();
    for (x, n) in images.batches(&images.val) {
        if interrupt::requested() {
            return Err(TrainError::Cancelled);
        }
        let labels = images.val_labels.as_ref().map(|l| &l[val.seen..val.seen + n]);
        tally(graph, (&mut float, &mut int8), x, n, labels, px, &mut val)?;
    }
    let images_n = images.val_count;
    let claim = match graph {
        Graph::Classifier => {
            format!("int8 turns at most {} % of the images from right to wrong", MAX_REGRESSIONS * 100.0)
        }
        Graph::Autoencoder => format!("its MSE is at most {} % above float's", MAX_MSE_RISE * 100.0),
        Graph::Encoder => {
            return Ok(Gate {
                metric: "embedding_relative_error",
                float: 0.0,
                int8: (val.q_sum / val.norm.max(f64::MIN_POSITIVE)).sqrt(),
                images: images_n,
                limit: None,
                passed: true,
            })
        }
    };
    let first = val.test(graph, ALPHA / 2.0);
    let again = !first.shown && first.needed.is_some() && images.rest_count > 0;
    let mut limit = format!("validation: {}: {}", val.counts(graph), first.verdict(&claim, !again));
    let mut passed = first.shown;
    if again {
        // Too few to decide, yet within the limit: the second look.
        let mut all = val.clone();
        for (x, n, at) in images.rest_batches() {
            if interrupt::requested() {
                return Err(TrainError::Cancelled);
            }
            let labels = images.rest_labels.as_ref().map(|l| &l[at..at + n]);
            tally(graph, (&mut float, &mut int8), &x, n, labels, px, &mut all)?;
        }
        let second = all.test(graph, ALPHA / 2.0);
        limit = format!(
            "{limit}; with the {} training images the calibration did not draw: {}: {}",
            images.rest_count,
            all.counts(graph),
            second.verdict(&claim, true)
        );
        passed = second.shown;
    }
    let per = val.seen.max(1) as f64;
    Ok(Gate {
        metric: if graph == Graph::Autoencoder { "val_mse" } else { "val_accuracy" },
        float: val.f_sum / per,
        int8: val.q_sum / per,
        images: images_n,
        limit: Some(limit),
        passed,
    })
}

/// Whether a set of images shows an int8 model within a limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shown {
    /// The test's p-value for "the int8 model is worse than the limit".
    pub p: f64,
    /// The level it was held to.
    pub alpha: f64,
    pub shown: bool,
    /// Not shown: the size from which every larger set would show it at
    /// the rate measured (`None`: none would, the measured rate is past
    /// the limit).
    pub needed: Option<usize>,
}

impl Shown {
    /// The test's outcome; `advise`: with what would decide when it
    /// could not.
    fn verdict(&self, claim: &str, advise: bool) -> String {
        let tail = match (self.shown, self.needed) {
            (true, _) => String::new(),
            _ if !advise => String::new(),
            (false, Some(n)) => format!(
                "; too few images to show it: at the rate measured, every set of {n} or more would (a larger \
                 --val-split or data set), or --int8-ungated"
            ),
            (false, None) => "; the measured rate is past the limit, so no set would show it".into(),
        };
        let p = if self.p < 1e-3 { format!("{:.1e}", self.p) } else { format!("{:.3}", self.p) };
        format!(
            "{} that {claim} (one-sided p = {p}, needs ≤ {}){tail}",
            if self.shown { "shown" } else { "not shown" },
            self.alpha
        )
    }
}

/// The exact test, at `alpha`, of "int8 turns more than
/// [`MAX_REGRESSIONS`] of the images from right to wrong" from
/// `regressions` such images among `n`: the binomial probability of so few
/// under that limit.
pub fn regression_test(regressions: usize, n: usize, alpha: f64) -> Shown {
    let p_here = binomial_cdf(regressions, n, MAX_REGRESSIONS);
    let shown = p_here <= alpha;
    let within = (regressions as f64) < MAX_REGRESSIONS * n as f64;
    let needed = (!shown && within).then(|| regressions_needed(regressions, n.max(1), alpha)).flatten();
    Shown { p: p_here, alpha, shown, needed }
}

/// The size m (above `n`) from which every set showing the rate `b`/`n`
/// (⌊b·m/n⌋ regressions) passes [`regression_test`] at `alpha`. The p-value
/// is not monotone in m: it falls while the count stays, and jumps up each
/// time one more regression is due, so the answer is found between those
/// jumps, not by bisection. `None` past 10⁹ images.
fn regressions_needed(b: usize, n: usize, alpha: f64) -> Option<usize> {
    const HORIZON: u128 = 1_000_000_000;
    let p = |k: usize, m: usize| binomial_cdf(k, m, MAX_REGRESSIONS);
    let count = |m: usize| (b as u128 * m as u128 / n as u128) as usize;
    // The first size holding k regressions at the rate.
    let first_with = |k: usize| -> u128 { (k as u128 * n as u128).div_ceil(b.max(1) as u128) };
    // The first size in [lo, hi) at which k regressions pass (p falls in m
    // while k stays): bisection is right within one count.
    let first_passing = |k: usize, lo: usize, hi: usize| -> Option<usize> {
        if p(k, hi - 1) > alpha {
            return None;
        }
        let (mut lo, mut hi) = (lo, hi - 1);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if p(k, mid) <= alpha {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        Some(lo)
    };
    if b == 0 {
        // No jumps: p(0, m) = (1 − limit)^m falls with m.
        let mut hi = n + 1;
        while p(0, hi) > alpha {
            hi = hi.checked_mul(2).filter(|&h| h as u128 <= HORIZON)?;
        }
        return first_passing(0, n + 1, hi + 1);
    }
    // Past the last count whose first size fails, the jumps stay below
    // alpha (each jump's p falls as the count grows below the limit);
    // 64 more counts confirm it.
    let mut k = count(n + 1);
    let mut last_failing = None;
    let mut passing_run = 0;
    while passing_run < 64 {
        let m = first_with(k).max(n as u128 + 1);
        if m > HORIZON {
            return None;
        }
        if p(k, m as usize) > alpha {
            last_failing = Some(k);
            passing_run = 0;
        } else {
            passing_run += 1;
        }
        k += 1;
    }
    match last_failing {
        // Every size above n passes from its first count on.
        None => Some(n + 1),
        Some(k) => {
            let lo = first_with(k).max(n as u128 + 1) as usize;
            let hi = first_with(k + 1) as usize;
            Some(first_passing(k, lo, hi).unwrap_or(hi))
        }
    }
}

/// P(B ≤ b) for B ~ Binomial(n, prob).
fn binomial_cdf(b: usize, n: usize, prob: f64) -> f64 {
    use statrs::distribution::{Binomial, DiscreteCDF};
    if n == 0 {
        return 1.0;
    }
    Binomial::new(prob, n as u64).map_or(1.0, |d| d.cdf(b as u64))
}

/// The paired one-sided t-test, at `alpha`, of "int8's MSE is more than
/// [`MAX_MSE_RISE`] above float's" on `n` images whose per-image
/// dᵢ = qᵢ − (1 + MAX_MSE_RISE)·fᵢ sum to `d_sum` with squares `d_sq`:
/// shown when their mean is below 0 beyond doubt.
pub fn mse_rise_test(d_sum: f64, d_sq: f64, n: usize, alpha: f64) -> Shown {
    use statrs::distribution::{ContinuousCDF, StudentsT};
    let nf = n.max(2) as f64;
    let mean = d_sum / nf;
    let sd = ((d_sq - nf * mean * mean) / (nf - 1.0)).max(0.0).sqrt();
    let p_of = |m: usize| {
        let m = m.max(2) as f64;
        if sd == 0.0 {
            return if mean < 0.0 { 0.0 } else { 1.0 };
        }
        StudentsT::new(0.0, 1.0, m - 1.0).map_or(1.0, |t| t.cdf(mean / (sd / m.sqrt())))
    };
    let p = p_of(n);
    let shown = p <= alpha;
    // With the mean and spread fixed, p falls with m: bisection is right.
    let needed = (!shown && mean < 0.0)
        .then(|| {
            let mut hi = n.max(2);
            while p_of(hi) > alpha {
                hi = hi.checked_mul(2).filter(|&h| h <= 1_000_000_000)?;
            }
            let mut lo = hi / 2;
            while hi - lo > 1 {
                let mid = lo + (hi - lo) / 2;
                if p_of(mid) <= alpha {
                    hi = mid;
                } else {
                    lo = mid;
                }
            }
            Some(hi)
        })
        .flatten();
    Shown { p, alpha, shown, needed }
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
