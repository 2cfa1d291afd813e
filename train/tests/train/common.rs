//! What the tests share: the data, small jobs and runs, and running the
//! binaries.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use ae_core::idx::{self, Images};
use infer::session::{Device as OrtDevice, ModelSession, SessionOptions};
use tch::{nn::VarStore, Device, Kind, Tensor};
use train::checkpoint::Checkpoint;
use train::config::{Architecture, AutoencoderTraining, TrainSettings};
use train::export::onnx::Weights;
use train::model::{Autoencoder, Classifier};
use train::optim::OptimizerKind;
use train::pipeline::{AutoencoderJob, Common};
use train::run_dir::{Reuse, RunDir};

pub static TORCH: Mutex<()> = Mutex::new(());

pub fn lock() -> std::sync::MutexGuard<'static, ()> {
    TORCH.lock().unwrap_or_else(|p| p.into_inner())
}

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace").to_path_buf()
}

pub fn mnist(name: &str) -> PathBuf {
    let p = root().join("data/mnist").join(name);
    assert!(p.exists(), "{} missing: run `make data` first", p.display());
    p
}

pub fn settings(epochs: usize, batch: usize) -> TrainSettings {
    TrainSettings {
        epochs,
        frozen_epochs: 0,
        batch_size: batch,
        optimizer: OptimizerKind::Adam,
        lr: 2e-3,
        finetune_lr: None,
        cosine: false,
        warmup: 0.0,
        seed: 7,
        val_split: 0.2,
        limit: Some(1200),
        threads: Some(2),
        loss: None,
        augment: train::config::Augment::default(),
        early_stopping: None,
        ema: None,
        ema_warmup: Default::default(),
        label_smoothing: 0.0,
        noise: 0.0,
        precision: train::config::Precision::Full,
    }
}

pub fn common(out: &Path) -> Common {
    Common {
        out: out.into(),
        device: Device::Cpu,
        quiet: true,
        reuse: Reuse::Overwrite,
        table: None,
        folder: Default::default(),
        tensorboard: None,
    }
}

pub fn ae_job(out: &Path, epochs: usize) -> AutoencoderJob {
    AutoencoderJob {
        normalize: Default::default(),
        images: mnist("train-images-idx3-ubyte"),
        training: AutoencoderTraining {
            architecture: Architecture { layers: 2, filter_size: 3, filters: 4 },
            settings: settings(epochs, 32),
        },
        common: common(out),
    }
}

pub fn history_losses(run: &Path) -> Vec<(f64, f64)> {
    RunDir { path: run.into() }.read_history().unwrap().iter().map(|r| (r.loss, r.val_loss)).collect()
}

pub const DIGITS: [&str; 10] = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"];

/// Bilinear sampling of image `img` (H × W, row-major) at continuous pixel
/// coordinates (x, y) (pixel centres at k + 0.5), zero outside: the
/// reference `grid_sample` is held to.
pub fn bilinear(img: &[f32], h: usize, w: usize, x: f64, y: f64) -> f64 {
    let (fx, fy) = (x - 0.5, y - 0.5);
    let (x0, y0) = (fx.floor(), fy.floor());
    let mut v = 0.0;
    for (dy, wy) in [(0.0, 1.0 - (fy - y0)), (1.0, fy - y0)] {
        for (dx, wx) in [(0.0, 1.0 - (fx - x0)), (1.0, fx - x0)] {
            let (xi, yi) = (x0 + dx, y0 + dy);
            if xi >= 0.0 && yi >= 0.0 && (xi as usize) < w && (yi as usize) < h {
                v += wx * wy * img[yi as usize * w + xi as usize] as f64;
            }
        }
    }
    v
}

/// The first `n` MNIST training images as the IDX file `dir/images`.
pub fn mnist_subset(dir: &Path, n: usize) -> (PathBuf, Images) {
    let mut images = idx::read_images(mnist("train-images-idx3-ubyte")).unwrap();
    images.truncate(n);
    let file = dir.join("images");
    idx::write_images(&file, &images, false).unwrap();
    (file, images)
}

/// A model with every BatchNorm's statistics and affine parameters random,
/// so the folding is really exercised.
pub fn randomise(vs: &VarStore) {
    tch::no_grad(|| {
        for (name, mut t) in vs.variables() {
            let r = Tensor::rand(t.size(), (Kind::Float, Device::Cpu));
            if name.ends_with("running_var") {
                t.copy_(&(r * 2.0 + 0.1));
            } else if name.contains(".bn.") {
                t.copy_(&(r - 0.5));
            }
        }
    });
}

pub fn weights(vs: &VarStore) -> Weights {
    let named: HashMap<String, Tensor> = vs.variables();
    Weights::from_tensors(&named)
}

pub fn parity(model: &ae_onnx::ModelProto, reference: &dyn Fn(&Tensor) -> Vec<Tensor>, h: i64, w: i64) -> f32 {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m.onnx");
    std::fs::write(&p, model.to_bytes()).unwrap();
    let mut s =
        ModelSession::open(&p, &SessionOptions { device: OrtDevice::Cpu, threads: Some(2), ..Default::default() })
            .unwrap();
    [1, 7, 256]
        .iter()
        .map(|&b| {
            let x = Tensor::rand([b, 1, h, w], (Kind::Float, Device::Cpu));
            train::export::max_abs_diff(&mut s, reference, &x).unwrap()
        })
        .fold(0.0, f32::max)
}

pub fn train_bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_train"));
    c.current_dir(root());
    c
}

/// What a process that ran to its end left: its exit code (-1: ended by
/// a signal), stdout, stderr, and how long it took.
#[derive(Debug)]
pub struct Ran {
    pub code: i32,
    pub out: String,
    pub err: String,
    pub seconds: f64,
}

impl Ran {
    /// stdout then stderr.
    pub fn text(&self) -> String {
        format!("{}{}", self.out, self.err)
    }
}

/// The one way the tests run a process to its end: `c` with `stdin` (or
/// stdin closed), its output captured. (Only the kill tests spawn a
/// process they signal while it runs.)
pub fn run_to_end(c: &mut Command, stdin: Option<&str>) -> Ran {
    let t0 = std::time::Instant::now();
    c.stdout(Stdio::piped()).stderr(Stdio::piped()).stdin(Stdio::piped());
    let mut child = c.spawn().unwrap();
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    }
    drop(child.stdin.take());
    let o = child.wait_with_output().unwrap();
    Ran {
        code: o.status.code().unwrap_or(-1),
        out: String::from_utf8_lossy(&o.stdout).into_owned(),
        err: String::from_utf8_lossy(&o.stderr).into_owned(),
        seconds: t0.elapsed().as_secs_f64(),
    }
}

/// Runs `train ARGS` and returns (exit code, stdout, stderr).
pub fn run(args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    let mut c = train_bin();
    c.args(args);
    let r = run_to_end(&mut c, stdin);
    (r.code, r.out, r.err)
}

pub fn infer_bin() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_train")).with_file_name("infer")
}

pub fn idx_header(code: u8, dims: &[u32]) -> Vec<u8> {
    let mut h = vec![0, 0, code, dims.len() as u8];
    for d in dims {
        h.extend(d.to_be_bytes());
    }
    h
}

pub fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

pub fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill").args([sig, &pid.to_string()]).status().unwrap().success();
    assert!(ok, "kill {sig} {pid}");
}

pub fn history_rows(run: &Path) -> usize {
    std::fs::read_to_string(run.join("history.csv")).map(|t| t.lines().count().saturating_sub(1)).unwrap_or(0)
}

pub fn wait_for(cond: impl Fn() -> bool, secs: f64) {
    let t0 = std::time::Instant::now();
    while !cond() {
        assert!(t0.elapsed().as_secs_f64() < secs, "timed out");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

pub const SIG_ARGS: [&str; 12] = [
    "autoencoder",
    "--layers",
    "2",
    "--filters",
    "4",
    "--limit",
    "1500",
    "--batch-size",
    "16",
    "--threads",
    "2",
    "--quiet",
];

/// A run's TensorBoard log as comparable lines, value for value: each
/// event's directory, tag, step and value (a scalar's bits, an image's
/// SHA-256, the hparams record's kind); wall times, images per second and
/// the session's start time are the only things left out.
pub fn tensorboard_log(run: &Path) -> Vec<String> {
    use train::tensorboard::proto::{ValueKind, What};
    let mut lines = Vec::new();
    for sub in ["", "train", "validation"] {
        let (events, files) = train::tensorboard::writer::read_dir(&run.join("tensorboard").join(sub)).unwrap();
        assert_eq!(files.len(), 1, "{}: one event file per directory: {files:?}", run.display());
        for e in events {
            let line = match e.what {
                Some(What::FileVersion(v)) => format!("{sub} version {v}"),
                Some(What::Summary(s)) => {
                    let v = &s.value[0];
                    let value = match &v.value {
                        Some(ValueKind::SimpleValue(_)) if v.tag.ends_with("images_per_second") => "timing".into(),
                        Some(ValueKind::SimpleValue(x)) => format!("{:08x}", x.to_bits()),
                        Some(ValueKind::Image(i)) => train::run_dir::sha256_bytes(&i.encoded_image_string),
                        Some(ValueKind::Tensor(_)) | None => "hparams".into(),
                    };
                    format!("{sub} {} @{} {value}", v.tag, e.step)
                }
                None => format!("{sub} empty"),
            };
            lines.push(line);
        }
    }
    lines
}

/// A generated image-folder data set, `dir/<colour>/NNN.png`: 32×32 RGB
/// pictures of a filled circle, square or triangle at a random place and
/// size on a random gray background, with noise. The class is the shape's
/// hue only: every shape's luma (`image`'s weights) is drawn from the same
/// range in every class, so a pipeline that loses colour cannot beat
/// chance (1/3) by much.
pub fn coloured_shapes(dir: &Path, per_class: usize, seed: u64) {
    // Unit-luma colours: (r, g, b) / (0.2126 r + 0.7152 g + 0.0722 b).
    let hues: [(&str, [f64; 3]); 3] =
        [("blue", [0.3, 0.3, 1.0]), ("green", [0.25, 1.0, 0.25]), ("red", [1.0, 0.25, 0.25])];
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    for (name, rgb) in hues {
        let luma = 0.2126 * rgb[0] + 0.7152 * rgb[1] + 0.0722 * rgb[2];
        let class = dir.join(name);
        std::fs::create_dir_all(&class).unwrap();
        for i in 0..per_class {
            let l = 50.0 + 38.0 * next();
            let colour = rgb.map(|v| (v / luma * l).min(255.0));
            let bg = 30.0 + 190.0 * next();
            let (cx, cy, r) = (8.0 + 16.0 * next(), 8.0 + 16.0 * next(), 4.0 + 5.0 * next());
            let shape = (next() * 3.0) as u32;
            let inside = |x: f64, y: f64| match shape {
                0 => (x - cx).powi(2) + (y - cy).powi(2) <= r * r,
                1 => (x - cx).abs() <= r && (y - cy).abs() <= r,
                _ => y - cy <= r && y - cy >= -r && (x - cx).abs() <= (y - cy + r) / 2.0,
            };
            let img = image::RgbImage::from_fn(32, 32, |x, y| {
                let on = inside(x as f64 + 0.5, y as f64 + 0.5);
                image::Rgb(std::array::from_fn(|c| {
                    let v = if on { colour[c] } else { bg } + 16.0 * next() - 8.0;
                    v.clamp(0.0, 255.0) as u8
                }))
            });
            img.save(class.join(format!("{i:03}.png"))).unwrap();
        }
    }
}

/// `train` on `images` with SIG_ARGS into `out`, plus `extra`; (code, stderr).
pub fn train_small(images: &Path, out: &Path, extra: &[&str], fault: Option<&str>) -> (i32, String) {
    let mut c = train_bin();
    c.args(SIG_ARGS).args(["--images", images.to_str().unwrap(), "--out", out.to_str().unwrap()]).args(extra);
    if let Some(f) = fault {
        c.env("TRAIN_FAULT", f);
    }
    let r = run_to_end(&mut c, None);
    (r.code, r.err)
}

/// A small classifier on the encoder of the autoencoder run `ae`, tested
/// on the MNIST test set unless `extra` says otherwise.
///
/// On one thread unless `extra` says otherwise: the tests compare runs of
/// separate processes bit for bit, and on the 2-core AVX-512/AMX Xeon one
/// 2-thread classifier run in 10 to 100 ended in other last bits than the
/// rest (the dense layers' products; with MKL on one thread, 0 in 110),
/// which Adam's nearly sign-valued first steps grow to 1e-3 in the weights.
/// One thread gave the same bits in 160 runs of 160.
pub fn classifier_small(ae: &Path, out: &Path, extra: &[&str], fault: Option<&str>) -> (i32, String) {
    let mut c = train_bin();
    c.args(["classifier", "--autoencoder", ae.to_str().unwrap()])
        .args(["--images", mnist("train-images-idx3-ubyte").to_str().unwrap()])
        .args(["--labels", mnist("train-labels-idx1-ubyte").to_str().unwrap()])
        .args(["--fc-units", "16"])
        .args(["--tensorboard-every", "10", "--out", out.to_str().unwrap()])
        .args(extra);
    for (flag, default) in [("--batch-size", "32"), ("--limit", "1500"), ("--threads", "1")] {
        if !extra.contains(&flag) {
            c.args([flag, default]);
        }
    }
    if let Some(f) = fault {
        c.env("TRAIN_FAULT", f);
    }
    let r = run_to_end(&mut c, None);
    (r.code, r.text())
}

/// A classifier of the run `run` filled from one of its weights files
/// (`prefix`: the tensors' prefix in it, "" for the model's own).
pub fn classifier_from(run: &Path, file: &str, prefix: &str) -> Classifier {
    let cfg = RunDir { path: run.into() }.read_config().unwrap();
    let train::run_dir::ModelConfig::Classifier { model, .. } = cfg.model else { panic!("a classifier run") };
    // The module keeps its tensors alive after the store goes.
    let vs = VarStore::new(Device::Cpu);
    let clf = model.init(&vs.root());
    let ckpt = Checkpoint::read(&run.join(file), Device::Cpu).unwrap();
    for (name, mut var) in vs.variables() {
        tch::no_grad(|| var.copy_(&ckpt.tensors[&format!("{prefix}{name}")]));
    }
    clf
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.path().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// A run made to plateau: val_loss keeps falling, but after a few epochs
/// by less than `--min-delta` per epoch, so early stopping (patience 2)
/// ends it well before its 12 epochs, with the best epoch before the last.
pub const PLATEAU: [&str; 7] =
    ["--epochs", "12", "--early-stopping", "2", "--min-delta", "0.002", "--tensorboard-every"];

pub fn plateau_args(extra: &[&str]) -> Vec<String> {
    PLATEAU.iter().chain(["10"].iter()).chain(extra).map(|s| s.to_string()).collect()
}

pub fn tensors_equal(a: &Path, b: &Path, what: &str) {
    let (a, b) = (Checkpoint::read(a, Device::Cpu).unwrap(), Checkpoint::read(b, Device::Cpu).unwrap());
    assert_eq!(a.epoch, b.epoch, "{what}: epochs");
    assert_eq!(a.tensors.len(), b.tensors.len(), "{what}: tensor count");
    for (k, t) in &a.tensors {
        assert!(t.equal(&b.tensors[k]), "{what}: {k} differs");
    }
}

pub fn history_of(run: &Path) -> Vec<train::history::EpochRecord> {
    RunDir { path: run.into() }.read_history().unwrap()
}

/// The autoencoder of `run` filled from one of its weights files.
pub fn autoencoder_from(run: &Path, file: &str) -> Autoencoder {
    let cfg = RunDir { path: run.into() }.read_config().unwrap();
    let mut vs = VarStore::new(Device::Cpu);
    let ae = cfg.model.autoencoder().init(&vs.root());
    Checkpoint::read(&run.join(file), Device::Cpu).unwrap().copy_into(&mut vs, "").unwrap();
    ae
}

/// `run` for a command line of strings: exit code and stderr.
pub fn run_cmd(args: &[&str]) -> (i32, String) {
    let (code, _, err) = run(args, None);
    (code, err)
}

pub fn python() -> PathBuf {
    let p = std::env::var_os("PYTHON").map(PathBuf::from).unwrap_or_else(|| root().join(".venv/bin/python"));
    assert!(p.exists(), "{}: no Python venv (run `make setup`, or set PYTHON)", p.display());
    p
}

/// `train` with `args` and the environment `env`; (code, stdout + stderr).
pub fn train_env(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let mut c = train_bin();
    c.args(args).envs(env.iter().copied());
    let r = run_to_end(&mut c, None);
    (r.code, r.text())
}
