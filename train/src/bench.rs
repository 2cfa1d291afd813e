//! Measurements for `make bench`: steady-state training throughput of the
//! tch models, tch and ONNX Runtime inference throughput, the machine's
//! float32 matrix-multiply ceiling, and FLOPs counted from the architecture.

use std::path::Path;
use std::time::Instant;

use tch::{nn::ModuleT, nn::VarStore, Device, Kind, Tensor};

use infer::session::{ModelSession, SessionOptions};

use crate::config::Architecture;
use crate::data;
use crate::error::TrainError;
use crate::fit::Objective;
use crate::model::{AutoencoderConfig, ClassifierConfig, InputShape};
use crate::optim::{Optimizer, OptimizerKind};

/// A model's forward pass, boxed so both networks fit one measurement loop.
type Forward = Box<dyn Fn(&Tensor) -> Tensor>;

/// Multiply-accumulates of one conv over an h×w output map.
fn conv_macs(h: usize, w: usize, c_in: usize, c_out: usize, k: usize) -> u64 {
    (h * w * c_in * c_out * k * k) as u64
}

/// Forward FLOPs (2 per multiply-accumulate) of the encoder for one image;
/// the embedding's spatial size is returned too.
fn encoder_flops(cfg: &AutoencoderConfig) -> (u64, usize, usize) {
    let (mut h, mut w) = (cfg.input.height, cfg.input.width);
    let (mut c, mut macs) = (1usize, 0u64);
    for i in 0..cfg.layers {
        let c_out = cfg.channels(i) as usize;
        macs += conv_macs(h, w, c, c_out, cfg.filter_size);
        c = c_out;
        if i < cfg.pools() {
            h /= 2;
            w /= 2;
        }
    }
    (2 * macs, h, w)
}

/// Forward FLOPs per image of the autoencoder.
pub fn autoencoder_flops(cfg: &AutoencoderConfig) -> u64 {
    let (enc, mut h, mut w) = encoder_flops(cfg);
    let mut c = cfg.channels(cfg.layers - 1) as usize;
    let mut macs = 0u64;
    for j in 0..cfg.layers {
        let c_out = cfg.channels(cfg.layers - 1 - j) as usize;
        macs += conv_macs(h, w, c, c_out, cfg.filter_size);
        c = c_out;
        if j + cfg.pools() >= cfg.layers {
            h *= 2;
            w *= 2;
        }
    }
    macs += conv_macs(h, w, c, 1, 3);
    enc + 2 * macs
}

/// Forward FLOPs per image of the classifier.
pub fn classifier_flops(cfg: &ClassifierConfig) -> u64 {
    let (enc, _, _) = encoder_flops(&cfg.encoder);
    enc + 2 * (cfg.embedding_len() * cfg.fc_units + cfg.fc_units * cfg.classes) as u64
}

/// A training step costs about three forward passes (forward, gradients of
/// inputs, gradients of weights).
pub const TRAIN_FLOPS_FACTOR: u64 = 3;

#[derive(Debug, Clone, serde::Serialize)]
pub struct Throughput {
    pub images_per_second: f64,
    pub seconds: f64,
    pub images: usize,
    pub parameters: i64,
    pub flops_per_image: u64,
    pub gflops_per_second: f64,
}

fn parameters(vs: &VarStore) -> i64 {
    vs.trainable_variables().iter().map(|t| t.numel() as i64).sum()
}

/// Training steps per second at steady state: `warmup` steps, then `steps`
/// timed ones, on `data` already in memory.
#[allow(clippy::too_many_arguments)]
pub fn train_throughput(
    classifier: Option<(usize, usize)>,
    ae: &AutoencoderConfig,
    optimizer: OptimizerKind,
    data: &Tensor,
    labels: &Tensor,
    batch: usize,
    warmup: usize,
    steps: usize,
) -> Throughput {
    let vs = VarStore::new(Device::Cpu);
    let n = data.size()[0];
    let (forward, objective, flops): (Forward, Objective, u64) = match classifier {
        None => {
            let m = ae.init(&vs.root());
            (Box::new(move |x| m.forward_t(x, true)), Objective::Reconstruction, autoencoder_flops(ae))
        }
        Some((fc_units, classes)) => {
            let cfg = ClassifierConfig { encoder: *ae, fc_units, classes };
            let m = cfg.init(&vs.root());
            (Box::new(move |x| m.forward_t(x, true)), Objective::CrossEntropy, classifier_flops(&cfg))
        }
    };
    let params: Vec<(String, Tensor)> = vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
    let mut opt = Optimizer::new(optimizer, params);
    let mut rng = crate::data::Rng::new(1);
    let mut step = |opt: &mut Optimizer| {
        let idx: Vec<i64> = (0..batch).map(|_| (rng.next_u64() % n as u64) as i64).collect();
        let idx = Tensor::from_slice(&idx);
        let x = data.index_select(0, &idx);
        let y = labels.index_select(0, &idx);
        opt.zero_grad();
        let loss = objective.loss(&forward(&x), &x, Some(&y));
        loss.backward();
        opt.step(1e-3);
    };
    for _ in 0..warmup {
        step(&mut opt);
    }
    let t0 = Instant::now();
    for _ in 0..steps {
        step(&mut opt);
    }
    let seconds = t0.elapsed().as_secs_f64();
    let images = steps * batch;
    let ips = images as f64 / seconds;
    let train_flops = TRAIN_FLOPS_FACTOR * flops;
    Throughput {
        images_per_second: ips,
        seconds,
        images,
        parameters: parameters(&vs),
        flops_per_image: train_flops,
        gflops_per_second: ips * train_flops as f64 / 1e9,
    }
}

/// tch eval-mode forward throughput over all of `data` in batches.
pub fn tch_inference_throughput(
    classifier: Option<(usize, usize)>,
    ae: &AutoencoderConfig,
    data: &Tensor,
    batch: usize,
) -> Throughput {
    let vs = VarStore::new(Device::Cpu);
    let (forward, flops): (Forward, u64) = match classifier {
        None => {
            let m = ae.init(&vs.root());
            (Box::new(move |x| m.forward_t(x, false)), autoencoder_flops(ae))
        }
        Some((fc_units, classes)) => {
            let cfg = ClassifierConfig { encoder: *ae, fc_units, classes };
            let m = cfg.init(&vs.root());
            (Box::new(move |x| m.logits(x).softmax(-1, Kind::Float)), classifier_flops(&cfg))
        }
    };
    let n = data.size()[0];
    let run = || {
        tch::no_grad(|| {
            let mut s = 0;
            while s < n {
                let len = (batch as i64).min(n - s);
                let _ = forward(&data.narrow(0, s, len)).sum(Kind::Float).double_value(&[]);
                s += len;
            }
        })
    };
    // One short warm-up pass over a slice.
    let _ = tch::no_grad(|| forward(&data.narrow(0, 0, (batch as i64).min(n))));
    let t0 = Instant::now();
    run();
    let seconds = t0.elapsed().as_secs_f64();
    let ips = n as f64 / seconds;
    Throughput {
        images_per_second: ips,
        seconds,
        images: n as usize,
        parameters: parameters(&vs),
        flops_per_image: flops,
        gflops_per_second: ips * flops as f64 / 1e9,
    }
}

/// The float32 matrix-multiply ceiling: GFLOP/s of repeated n×n products.
pub fn matmul_ceiling(n: i64, reps: usize) -> f64 {
    let a = Tensor::rand([n, n], (Kind::Float, Device::Cpu));
    let b = Tensor::rand([n, n], (Kind::Float, Device::Cpu));
    let _ = a.mm(&b);
    let t0 = Instant::now();
    for _ in 0..reps {
        let _ = a.mm(&b).sum(Kind::Float).double_value(&[]);
    }
    let secs = t0.elapsed().as_secs_f64();
    2.0 * (n * n * n) as f64 * reps as f64 / secs / 1e9
}

/// A benchmark's model and data: the architecture for the images' size,
/// the images as a [N, 1, H, W] tensor and the labels (zeros without a
/// labels file).
pub fn load(
    architecture: Architecture,
    images: &Path,
    labels: Option<&Path>,
) -> Result<(AutoencoderConfig, Tensor, Tensor), TrainError> {
    let imgs = data::load_images(images, None)?;
    let labels = match labels {
        Some(l) => data::load_labels(l, images, imgs.count, None)?,
        None => vec![0; imgs.count],
    };
    let cfg = architecture.with_input(InputShape { height: imgs.rows, width: imgs.cols });
    cfg.validate()?;
    Ok((cfg, data::images_tensor(&imgs, Device::Cpu), data::labels_tensor(&labels, Device::Cpu)))
}

/// GFLOP/s of ONNX Runtime's MatMul on n×n matrices.
pub fn ort_matmul_ceiling(n: i64, reps: usize, threads: usize) -> Result<f64, TrainError> {
    let path = std::env::temp_dir().join(format!("bench-matmul-{}.onnx", std::process::id()));
    std::fs::write(&path, crate::export::onnx::matmul_model(n).to_bytes())
        .map_err(TrainError::io(&path, "cannot write"))?;
    let session =
        ModelSession::open(&path, &SessionOptions { device: infer::device::Device::Cpu, threads: Some(threads) });
    let _ = std::fs::remove_file(&path);
    let mut s = session?;
    let a: Vec<f32> = (0..n * n).map(|i| ((i % 89) as f32) / 89.0).collect();
    s.run(&a, 1)?;
    let t0 = Instant::now();
    for _ in 0..reps {
        s.run(&a, 1)?;
    }
    Ok(2.0 * (n * n * n) as f64 * reps as f64 / t0.elapsed().as_secs_f64() / 1e9)
}

/// ONNX Runtime (through the infer library) throughput over all images of
/// `images`, batch by batch, after one warm-up batch.
pub fn ort_inference_throughput(
    model: &Path,
    images: &Path,
    batch: usize,
    threads: usize,
) -> Result<serde_json::Value, TrainError> {
    let opts = SessionOptions { device: infer::device::Device::Cpu, threads: Some(threads) };
    let mut s = ModelSession::open(model, &opts)?;
    let imgs = data::load_images(images, None)?;
    let x = imgs.to_f32();
    let px = imgs.rows * imgs.cols;
    let warm = batch.min(imgs.count);
    s.run(&x[..warm * px], warm)?;
    let t0 = Instant::now();
    let mut i = 0;
    while i < imgs.count {
        let n = batch.min(imgs.count - i);
        s.run(&x[i * px..(i + n) * px], n)?;
        i += n;
    }
    let secs = t0.elapsed().as_secs_f64();
    Ok(serde_json::json!({"images_per_second": imgs.count as f64 / secs, "seconds": secs, "images": imgs.count}))
}

/// Reading an IDX file and normalising it to f32 (the data loader).
pub fn idx_load(images: &Path) -> Result<serde_json::Value, TrainError> {
    let t0 = Instant::now();
    let imgs = data::load_images(images, None)?;
    let x = imgs.to_f32();
    let secs = t0.elapsed().as_secs_f64();
    let bytes = std::fs::metadata(images).map_err(TrainError::io(images, "cannot read"))?.len();
    Ok(serde_json::json!({"seconds": secs, "images": imgs.count, "values": x.len(), "bytes": bytes}))
}
