//! Measurements for `make bench` that need the libraries: ONNX Runtime
//! inference throughput through `infer`'s session, the machine's float32
//! matrix-multiply ceiling, IDX loading, and FLOPs and parameters counted
//! from the architecture. Training is measured on the real `train` commands
//! (bench/drivers/run.py).

use std::path::Path;
use std::time::Instant;

use tch::{nn::VarStore, Device, Kind, Tensor};

use ae_onnx::{Dim, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto, ValueInfoProto};
use infer::session::{ModelSession, SessionOptions};
use train::data;
use train::model::{AutoencoderConfig, ClassifierConfig};
use train::TrainError;

/// Multiply-accumulates of one conv over an h×w output map.
fn conv_macs(h: usize, w: usize, c_in: usize, c_out: usize, k: usize) -> u64 {
    (h * w * c_in * c_out * k * k) as u64
}

/// Forward FLOPs (2 per multiply-accumulate) of the encoder for one image;
/// the embedding's spatial size is returned too.
fn encoder_flops(cfg: &AutoencoderConfig) -> (u64, usize, usize) {
    let (mut h, mut w) = (cfg.input.height, cfg.input.width);
    let (mut c, mut macs) = (cfg.input.channels, 0u64);
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
    macs += conv_macs(h, w, c, cfg.input.channels, 3); // back to the input's channels
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

/// Forward FLOPs per image and parameter count of a network, from its
/// architecture (`classifier`: fc units and classes).
pub fn model_size(ae: &AutoencoderConfig, classifier: Option<(usize, usize)>) -> serde_json::Value {
    let vs = VarStore::new(Device::Cpu);
    let flops = match classifier {
        None => {
            let _m = ae.init(&vs.root());
            autoencoder_flops(ae)
        }
        Some((fc_units, classes)) => {
            let cfg = ClassifierConfig { encoder: *ae, fc_units, classes, dropout: 0.0 };
            let _m = cfg.init(&vs.root());
            classifier_flops(&cfg)
        }
    };
    let parameters: i64 = vs.trainable_variables().iter().map(|t| t.numel() as i64).sum();
    serde_json::json!({
        "forward_flops_per_image": flops,
        "train_flops_per_image": TRAIN_FLOPS_FACTOR * flops,
        "parameters": parameters,
    })
}

/// `y = image · b` for an n×n `image` and an n×n initializer `b`: the
/// graph ONNX Runtime's matrix-multiply ceiling is measured on.
fn matmul_model(n: i64) -> ModelProto {
    let values: Vec<f32> = (0..n * n).map(|i| ((i % 97) as f32) / 97.0).collect();
    let dims = [Dim::Fixed(1), Dim::Fixed(1), Dim::Fixed(n), Dim::Fixed(n)];
    let graph = GraphProto {
        node: vec![NodeProto {
            input: vec!["image".into(), "b".into()],
            output: vec!["y".into()],
            name: "mm".into(),
            op_type: "MatMul".into(),
            ..Default::default()
        }],
        name: "matmul".into(),
        initializer: vec![TensorProto::f32("b", &[n, n], &values)],
        input: vec![ValueInfoProto::tensor_f32("image", &dims)],
        output: vec![ValueInfoProto::tensor_f32("y", &dims)],
        ..Default::default()
    };
    ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 17 }],
        producer_name: "bench".into(),
        graph: Some(graph),
        ..Default::default()
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

/// GFLOP/s of ONNX Runtime's MatMul on n×n matrices.
pub fn ort_matmul_ceiling(n: i64, reps: usize, threads: usize) -> Result<f64, TrainError> {
    let path = std::env::temp_dir().join(format!("bench-matmul-{}.onnx", std::process::id()));
    std::fs::write(&path, matmul_model(n).to_bytes()).map_err(TrainError::io(&path, "cannot write"))?;
    let session = ModelSession::open(
        &path,
        &SessionOptions { device: infer::device::Device::Cpu, threads: Some(threads), ..Default::default() },
    );
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
    let opts = SessionOptions { device: infer::device::Device::Cpu, threads: Some(threads), ..Default::default() };
    let mut s = ModelSession::open(model, &opts)?;
    let imgs = ae_core::idx::read_images(images)?;
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
    let imgs = ae_core::idx::read_images(images)?;
    let x = imgs.to_f32();
    let secs = t0.elapsed().as_secs_f64();
    let bytes = std::fs::metadata(images).map_err(TrainError::io(images, "cannot read"))?.len();
    Ok(serde_json::json!({"seconds": secs, "images": imgs.count, "values": x.len(), "bytes": bytes}))
}

/// What the training loop spends on `--augment SPEC` in an epoch of
/// `limit` images: the same batches (`data::epoch_batches`), gathers and
/// per-batch generator as `fit.rs`, with the resample and nothing else;
/// the median of `reps` epochs after one warm-up.
pub fn augment_time(
    images: &Path,
    limit: usize,
    batch: usize,
    spec: &train::config::Augment,
    reps: usize,
) -> Result<serde_json::Value, TrainError> {
    let imgs = ae_core::idx::read_images(images)?;
    let x = data::images_tensor(&imgs, Device::Cpu);
    let x = x.narrow(0, 0, (limit as i64).min(x.size()[0]));
    let n = x.size()[0] as usize;
    let epoch = |e: usize| {
        let t0 = Instant::now();
        for (b, idx) in data::epoch_batches(n, batch, 42, e, Device::Cpu).iter().enumerate() {
            let xb = x.index_select(0, idx);
            let mut rng = train::rng::Rng::new(42 ^ ((e as u64) << 32) ^ b as u64);
            let out = spec.apply(&xb, &mut rng);
            std::hint::black_box(out.size());
        }
        t0.elapsed().as_secs_f64()
    };
    epoch(0);
    let mut secs: Vec<f64> = (1..=reps.max(1)).map(epoch).collect();
    secs.sort_by(f64::total_cmp);
    Ok(serde_json::json!({"seconds": secs[secs.len() / 2], "samples": secs, "images": n, "batch": batch,
                          "spec": serde_json::to_value(spec).ok()}))
}

/// Loading a training set the way `train` does (`data::load`): an IDX file
/// read and checked, or an image folder scanned (headers), hashed and
/// decoded in parallel; then normalised to f32 as training does.
pub fn dataset_load(images: &Path) -> Result<serde_json::Value, TrainError> {
    let t0 = Instant::now();
    let set = data::load(images, None, Default::default(), data::Take::All, false)?;
    let x = set.images.to_f32();
    let secs = t0.elapsed().as_secs_f64();
    Ok(serde_json::json!({
        "seconds": secs,
        "images": set.images.count,
        "images_per_second": set.images.count as f64 / secs,
        "values": x.len(),
        "folder": set.info.folder.is_some(),
    }))
}

/// Validation loss against cumulative training time (minutes) for each
/// `(label, history.csv)`, with `target` as a horizontal line, written to
/// `out`; returns, per history, the first epoch at or below `target` and
/// the minutes it took.
pub fn val_loss_curves(
    histories: &[(String, std::path::PathBuf)],
    target: f64,
    out: &Path,
) -> Result<serde_json::Value, TrainError> {
    use ae_core::figure::{line_chart, Series, XAxis};
    let mut series = Vec::new();
    let mut crossings = serde_json::Map::new();
    let mut end = 0f64;
    for (label, path) in histories {
        let mut csv = csv::Reader::from_path(path).map_err(|e| TrainError::io(path, "cannot read")(e.into()))?;
        let rows: Vec<train::run_dir::EpochRecord> = csv
            .deserialize()
            .collect::<Result<_, _>>()
            .map_err(|e| TrainError::BadRun { path: path.clone(), msg: format!("not a history.csv: {e}") })?;
        let mut minutes = 0.0;
        let mut points = Vec::new();
        let mut crossed = serde_json::Value::Null;
        for r in &rows {
            minutes += r.seconds / 60.0;
            points.push((minutes, r.val_loss));
            if crossed.is_null() && r.val_loss <= target {
                crossed = serde_json::json!({"epoch": r.epoch, "minutes": minutes, "val_loss": r.val_loss});
            }
        }
        end = end.max(minutes);
        let last = rows.last().map(|r| r.val_loss).unwrap_or(f64::NAN);
        crossings.insert(
            label.clone(),
            serde_json::json!({"crossed": crossed, "epochs": rows.len(), "minutes": minutes, "val_loss": last}),
        );
        series.push(Series { name: label.clone(), points });
    }
    series.push(Series { name: format!("target {target}"), points: vec![(0.0, target), (end, target)] });
    let title = "autoencoder validation MSE against training time";
    line_chart(out, title, "minutes", "val MSE", &series, true, &XAxis::default())
        .map_err(TrainError::io(out, "cannot write"))?;
    Ok(serde_json::Value::Object(crossings))
}
