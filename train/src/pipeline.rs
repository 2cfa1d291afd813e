//! `train autoencoder` and `train classifier`: from validated options to a
//! finished run directory with checkpoint, history, figures and report.

use std::path::{Path, PathBuf};
use std::time::Instant;

use tch::{nn::VarStore, Device, Kind, Tensor};

use infer::figure::{self, Series, Tile};
use infer::report;

use crate::data::{self, Data};
use crate::error::TrainError;
use crate::fit::{self, Objective, Stage};
use crate::model::{Autoencoder, AutoencoderConfig, Classifier, ClassifierConfig, InputShape};
use crate::optim::Optimizer;
use crate::run::{DatasetInfo, EpochRecord, ModelConfig, RunConfig, RunDir, TrainSettings};
use crate::table;

pub const PRODUCER: &str = concat!("train ", env!("CARGO_PKG_VERSION"));

/// Where to run: `auto` picks CUDA when libtorch sees a GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum DeviceChoice {
    #[default]
    Auto,
    Cpu,
    Cuda,
}

impl DeviceChoice {
    pub fn resolve(self) -> Result<Device, TrainError> {
        match self {
            DeviceChoice::Cpu => Ok(Device::Cpu),
            DeviceChoice::Auto => Ok(Device::cuda_if_available()),
            DeviceChoice::Cuda if tch::Cuda::is_available() => Ok(Device::Cuda(0)),
            DeviceChoice::Cuda => Err(TrainError::Invalid(
                "--device cuda: libtorch sees no CUDA device (use --device cpu or auto)".into(),
            )),
        }
    }
}

/// What every training command shares.
#[derive(Debug, Clone)]
pub struct Common {
    pub out: PathBuf,
    pub device: DeviceChoice,
    pub quiet: bool,
    pub resume: bool,
    pub force: bool,
    /// The results table to append to (`None`: none).
    pub table: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct AutoencoderJob {
    pub images: PathBuf,
    pub layers: usize,
    pub filter_size: usize,
    pub filters: usize,
    pub settings: TrainSettings,
    pub common: Common,
}

#[derive(Debug, Clone)]
pub struct ClassifierJob {
    pub autoencoder: PathBuf,
    pub images: PathBuf,
    pub labels: PathBuf,
    pub test_images: Option<PathBuf>,
    pub test_labels: Option<PathBuf>,
    pub fc_units: usize,
    pub objective: Objective,
    pub settings: TrainSettings,
    pub common: Common,
}

/// What a finished run reports back (sweeps tabulate it).
#[derive(Debug, Clone)]
pub struct Outcome {
    pub run: PathBuf,
    pub last: EpochRecord,
    pub train_seconds: f64,
    pub test_accuracy: Option<f64>,
}

fn check_settings(s: &TrainSettings) -> Result<(), TrainError> {
    if s.batch_size == 0 {
        return Err(TrainError::Invalid("--batch-size must be at least 1, got 0".into()));
    }
    if s.epochs == 0 && s.frozen_epochs == 0 {
        return Err(TrainError::Invalid("--epochs must be at least 1, got 0".into()));
    }
    if !(s.val_split > 0.0 && s.val_split < 1.0) {
        return Err(TrainError::Invalid(format!("--val-split must be strictly between 0 and 1, got {}", s.val_split)));
    }
    if !(s.lr > 0.0 && s.lr.is_finite()) {
        return Err(TrainError::Invalid(format!("--lr must be positive, got {}", s.lr)));
    }
    if s.limit == Some(0) {
        return Err(TrainError::Invalid("--limit must be at least 1, got 0".into()));
    }
    Ok(())
}

fn set_threads(settings: &TrainSettings) {
    if let Some(t) = settings.threads {
        tch::set_num_threads(t as i32);
    }
}

/// Prepares the run directory: a fresh run refuses to overwrite another
/// one unless --force; --resume requires the same configuration.
fn prepare_run(common: &Common, cfg: &RunConfig) -> Result<(RunDir, bool), TrainError> {
    let run = RunDir::create(&common.out)?;
    let has_run = run.file(crate::run::WEIGHTS).exists();
    if common.resume {
        if !has_run {
            return Ok((run, false));
        }
        let old = run.read_config()?;
        if old.model != cfg.model || old.train != cfg.train {
            return Err(TrainError::Invalid(format!(
                "{}: --resume needs the same model and training options as the interrupted run",
                run.path.display()
            )));
        }
        return Ok((run, true));
    }
    if has_run && !common.force {
        return Err(TrainError::Invalid(format!(
            "{}: already holds a run; pass --resume to continue it or --force to start over",
            run.path.display()
        )));
    }
    Ok((run, false))
}

fn named_trainable(vs: &VarStore, prefix: &str) -> Vec<(String, Tensor)> {
    vs.variables().into_iter().filter(|(k, t)| t.requires_grad() && k.starts_with(prefix)).collect()
}

/// Restores a checkpoint for --resume; returns the next epoch to run and
/// the checkpoint's history (rewritten to history.csv, which may lag).
fn restore(
    run: &RunDir,
    vs: &mut VarStore,
) -> Result<(usize, i64, Vec<EpochRecord>, crate::run::Checkpoint), TrainError> {
    let ckpt = run.load_checkpoint(vs)?;
    let history = ckpt.history.clone();
    run.write_history(&history)?;
    Ok((ckpt.epoch + 1, ckpt.steps, history, ckpt))
}

pub fn train_autoencoder(job: &AutoencoderJob) -> Result<Outcome, TrainError> {
    check_settings(&job.settings)?;
    let mut model = AutoencoderConfig {
        layers: job.layers,
        filter_size: job.filter_size,
        filters: job.filters,
        input: InputShape { height: 0, width: 0 },
    };
    model.validate_hyperparameters()?;
    let images = data::load_images(&job.images, job.settings.limit)?;
    model.input = InputShape { height: images.rows, width: images.cols };
    model.validate().map_err(|e| TrainError::Invalid(format!("{}: {e}", job.images.display())))?;
    let device = job.common.device.resolve()?;
    let cfg = RunConfig {
        model: ModelConfig::Autoencoder { model },
        train: job.settings.clone(),
        dataset: DatasetInfo {
            images: job.images.clone(),
            images_sha256: data::sha256_file(&job.images)?,
            labels: None,
            count: images.count,
        },
        producer: PRODUCER.into(),
    };
    let (run, resuming) = prepare_run(&job.common, &cfg)?;
    set_threads(&job.settings);
    tch::manual_seed(job.settings.seed as i64);
    let data = data::split(&images, None, job.settings.val_split, job.settings.seed, device)?;
    let mut vs = VarStore::new(device);
    let ae = Autoencoder::new(&vs.root(), &model);
    let mut opt = Optimizer::new(job.settings.optimizer, named_trainable(&vs, ""));
    let (mut start, mut history) = (1, Vec::new());
    if resuming {
        let (next, steps, h, ckpt) = restore(&run, &mut vs)?;
        opt.load_state(steps, |k| ckpt.tensors.get(k).map(|t| t.shallow_clone()))
            .map_err(|msg| TrainError::BadRun { path: ckpt.path.clone(), msg })?;
        (start, history) = (next, h);
    } else {
        run.write_config(&cfg)?;
    }
    let stage = Stage {
        name: "",
        first: 1,
        last: job.settings.epochs,
        total: job.settings.epochs,
        batch_size: job.settings.batch_size,
        lr: job.settings.lr,
        cosine: job.settings.cosine,
        seed: job.settings.seed,
        quiet: job.common.quiet,
        augment: job.settings.augment,
    };
    let forward = |x: &Tensor, train: bool| ae.forward(x, train);
    fit::run_stage(&stage, start, &forward, Objective::Reconstruction, &data, &vs, &mut opt, &run, &mut history)?;
    let last = history.last().cloned().ok_or_else(|| TrainError::Runtime("no epoch was trained".into()))?;
    let train_seconds: f64 = history.iter().map(|r| r.seconds).sum();
    plot_history(&run, &history, false)?;
    reconstruction_figure(&run.file("reconstructions.png"), &ae, &data, 10)?;
    if let Some(t) = &job.common.table {
        table::append_autoencoder(t, &model, &job.settings, train_seconds, &last)?;
    }
    if !job.common.quiet {
        println!(
            "autoencoder {}: val_loss {:.6} after {} epochs, {:.1}s training; run in {}",
            model.tag(),
            last.val_loss,
            last.epoch,
            train_seconds,
            run.path.display()
        );
    }
    Ok(Outcome { run: run.path.clone(), last, train_seconds, test_accuracy: None })
}

/// The loss (and accuracy) curves of a run.
pub fn plot_history(run: &RunDir, history: &[EpochRecord], classifier: bool) -> Result<(), TrainError> {
    let io = |p: PathBuf| {
        move |e: std::io::Error| TrainError::Io { path: p.clone(), what: "cannot write".into(), msg: e.to_string() }
    };
    let pts = |f: fn(&EpochRecord) -> Option<f64>| {
        history.iter().filter_map(|r| f(r).map(|v| (r.epoch as f64, v))).collect::<Vec<_>>()
    };
    let p = run.file("loss.png");
    figure::line_chart(
        &p,
        "loss per epoch",
        "epoch",
        "loss",
        &[
            Series { name: "loss".into(), points: pts(|r| Some(r.loss)) },
            Series { name: "val_loss".into(), points: pts(|r| Some(r.val_loss)) },
        ],
        true,
    )
    .map_err(io(p.clone()))?;
    if classifier {
        let p = run.file("accuracy.png");
        figure::line_chart(
            &p,
            "accuracy per epoch",
            "epoch",
            "accuracy",
            &[
                Series { name: "accuracy".into(), points: pts(|r| r.accuracy) },
                Series { name: "val_accuracy".into(), points: pts(|r| r.val_accuracy) },
            ],
            false,
        )
        .map_err(io(p.clone()))?;
    }
    Ok(())
}

fn to_u8(t: &Tensor) -> Vec<u8> {
    crate::run::to_vec(t).iter().map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8).collect()
}

/// Originals (top row) above their reconstructions (bottom row).
fn reconstruction_figure(path: &Path, ae: &Autoencoder, data: &Data, n: usize) -> Result<(), TrainError> {
    let n = n.min(data.val_x.size()[0] as usize) as i64;
    let x = data.val_x.narrow(0, 0, n);
    let y = tch::no_grad(|| ae.forward(&x, false));
    let (h, w) = (data.height, data.width);
    let tile = |t: &Tensor, i: i64, cap: &str| Tile {
        pixels: to_u8(&t.get(i)),
        height: h,
        width: w,
        caption: (i == 0).then(|| cap.to_string()),
        alert: false,
    };
    let mut tiles: Vec<Tile> = (0..n).map(|i| tile(&x, i, "original")).collect();
    tiles.extend((0..n).map(|i| tile(&y, i, "reconstruction")));
    figure::image_grid(path, Some("originals (top) and reconstructions (bottom)"), &tiles, n as usize, 3)
        .map_err(|e| TrainError::Io { path: path.to_path_buf(), what: "cannot write".into(), msg: e.to_string() })
}

pub fn train_classifier(job: &ClassifierJob) -> Result<Outcome, TrainError> {
    check_settings(&job.settings)?;
    if !(1..=65536).contains(&job.fc_units) {
        return Err(crate::model::autoencoder::ConfigError::FcUnits(job.fc_units).into());
    }
    let ae_run = RunDir::open(&job.autoencoder)?;
    let ae_cfg = ae_run.read_config()?;
    let ModelConfig::Autoencoder { model: encoder } = ae_cfg.model else {
        return Err(TrainError::Invalid(format!(
            "{}: is a {} run, expected an autoencoder run (--autoencoder)",
            job.autoencoder.display(),
            ae_cfg.model.kind()
        )));
    };
    let images = data::load_images(&job.images, job.settings.limit)?;
    if (images.rows, images.cols) != (encoder.input.height, encoder.input.width) {
        return Err(TrainError::Invalid(format!(
            "{}: images are {}×{}, but the encoder in {} takes {}×{}",
            job.images.display(),
            images.rows,
            images.cols,
            job.autoencoder.display(),
            encoder.input.height,
            encoder.input.width
        )));
    }
    let labels = data::load_labels(&job.labels, &job.images, images.count, job.settings.limit)?;
    let classes = labels.iter().copied().max().map(|m| m as usize + 1).unwrap_or(0);
    let test = match (&job.test_images, &job.test_labels) {
        (Some(ti), Some(tl)) => {
            let timg = data::load_images(ti, None)?;
            if (timg.rows, timg.cols) != (images.rows, images.cols) {
                return Err(TrainError::Invalid(format!(
                    "{}: test images are {}×{}, expected {}×{} like the training images",
                    ti.display(),
                    timg.rows,
                    timg.cols,
                    images.rows,
                    images.cols
                )));
            }
            let tlab = data::load_labels(tl, ti, timg.count, None)?;
            if let Some(&bad) = tlab.iter().find(|&&l| l as usize >= classes) {
                return Err(TrainError::Invalid(format!(
                    "{}: label {bad} is not one of the {classes} classes of the training labels",
                    tl.display()
                )));
            }
            Some((timg, tlab))
        }
        (None, None) => None,
        _ => return Err(TrainError::Invalid("--test-images and --test-labels go together".into())),
    };
    let model = ClassifierConfig { encoder, fc_units: job.fc_units, classes };
    model.validate()?;
    let device = job.common.device.resolve()?;
    let class_names: Vec<String> = (0..classes).map(|c| c.to_string()).collect();
    let cfg = RunConfig {
        model: ModelConfig::Classifier {
            model: model.clone(),
            class_names: class_names.clone(),
            autoencoder_run: job.autoencoder.clone(),
        },
        train: job.settings.clone(),
        dataset: DatasetInfo {
            images: job.images.clone(),
            images_sha256: data::sha256_file(&job.images)?,
            labels: Some(job.labels.clone()),
            count: images.count,
        },
        producer: PRODUCER.into(),
    };
    let (run, resuming) = prepare_run(&job.common, &cfg)?;
    set_threads(&job.settings);
    tch::manual_seed(job.settings.seed as i64);
    let data = data::split(&images, Some(&labels), job.settings.val_split, job.settings.seed, device)?;
    let mut vs = VarStore::new(device);
    let clf = Classifier::new(&vs.root(), &model);
    // The encoder starts from the autoencoder's trained weights.
    crate::run::Checkpoint::read(&ae_run.file(crate::run::WEIGHTS), device)?.copy_into(&mut vs, "encoder.")?;

    let s = &job.settings;
    let total = s.frozen_epochs + s.epochs;
    let (mut start, mut history, mut resume_state) = (1, Vec::new(), None);
    if resuming {
        let (next, steps, h, ckpt) = restore(&run, &mut vs)?;
        (start, history) = (next, h);
        resume_state = Some((steps, ckpt));
    } else {
        run.write_config(&cfg)?;
    }
    let mut base = Stage {
        name: "",
        first: 1,
        last: 0,
        total,
        batch_size: s.batch_size,
        lr: s.lr,
        cosine: s.cosine,
        seed: s.seed,
        quiet: job.common.quiet,
        augment: s.augment,
    };
    // Stage 1: encoder frozen (no gradients, BatchNorm in eval mode).
    if s.frozen_epochs > 0 && start <= s.frozen_epochs {
        let frozen: Vec<Tensor> = vs
            .variables()
            .into_iter()
            .filter(|(k, t)| k.starts_with("encoder.") && t.requires_grad())
            .map(|(_, t)| t)
            .collect();
        for t in &frozen {
            let _ = t.set_requires_grad(false);
        }
        let mut opt = Optimizer::new(s.optimizer, named_trainable(&vs, ""));
        if let Some((steps, ckpt)) = resume_state.take() {
            opt.load_state(steps, |k| ckpt.tensors.get(k).map(|t| t.shallow_clone()))
                .map_err(|msg| TrainError::BadRun { path: ckpt.path.clone(), msg })?;
        }
        let stage = Stage { name: "(encoder frozen)", first: 1, last: s.frozen_epochs, ..base };
        let forward = |x: &Tensor, train: bool| clf.forward(x, train, false);
        fit::run_stage(&stage, start, &forward, job.objective, &data, &vs, &mut opt, &run, &mut history)?;
        for t in &frozen {
            let _ = t.set_requires_grad(true);
        }
        start = s.frozen_epochs + 1;
    }
    // Stage 2: everything fine-tuned, at the fine-tuning learning rate.
    if s.epochs > 0 {
        let mut opt = Optimizer::new(s.optimizer, named_trainable(&vs, ""));
        if let Some((steps, ckpt)) = resume_state.take() {
            // Resumed inside stage 2: its optimizer state is the checkpoint's.
            if ckpt.epoch > s.frozen_epochs {
                opt.load_state(steps, |k| ckpt.tensors.get(k).map(|t| t.shallow_clone()))
                    .map_err(|msg| TrainError::BadRun { path: ckpt.path.clone(), msg })?;
            }
        }
        base.lr = s.finetune_lr.unwrap_or(s.lr);
        let stage = Stage { name: "(fine-tuning)", first: s.frozen_epochs + 1, last: total, ..base };
        let forward = |x: &Tensor, train: bool| clf.forward(x, train, true);
        fit::run_stage(&stage, start, &forward, job.objective, &data, &vs, &mut opt, &run, &mut history)?;
    }
    let last = history.last().cloned().ok_or_else(|| TrainError::Runtime("no epoch was trained".into()))?;
    let train_seconds: f64 = history.iter().map(|r| r.seconds).sum();
    plot_history(&run, &history, true)?;
    let mut test_accuracy = None;
    if let Some((timg, tlab)) = &test {
        let acc = test_report(&run, &clf, timg, tlab, &class_names, device, job.common.quiet)?;
        test_accuracy = Some(acc);
    }
    if let Some(t) = &job.common.table {
        table::append_classifier(t, &model, s, train_seconds, &last)?;
    }
    if !job.common.quiet {
        println!(
            "classifier {} FC{}: val_accuracy {:.4}{} after {} epochs, {:.1}s training; run in {}",
            model.encoder.tag(),
            model.fc_units,
            last.val_accuracy.unwrap_or(0.0),
            test_accuracy.map(|a| format!(", test accuracy {a:.4}")).unwrap_or_default(),
            last.epoch,
            train_seconds,
            run.path.display()
        );
    }
    Ok(Outcome { run: run.path.clone(), last, train_seconds, test_accuracy })
}

/// Predicts the test set: writes `test_report.txt` (scikit-learn's layout),
/// `test_metrics.json`, and the correct/incorrect digit grids.
fn test_report(
    run: &RunDir,
    clf: &Classifier,
    images: &infer::idx::Images,
    labels: &[u8],
    names: &[String],
    device: Device,
    quiet: bool,
) -> Result<f64, TrainError> {
    let t0 = Instant::now();
    let x = data::images_tensor(images, device);
    let (pred, conf) = tch::no_grad(|| {
        let mut preds = Vec::with_capacity(images.count);
        let mut confs = Vec::with_capacity(images.count);
        let n = images.count as i64;
        let mut start = 0;
        while start < n {
            let len = 1000.min(n - start);
            let p = clf.forward(&x.narrow(0, start, len), false, false).softmax(-1, Kind::Float);
            let (c, i) = p.max_dim(-1, false);
            let idx = Vec::<i64>::try_from(i.to_device(Device::Cpu)).expect("argmax indices are i64");
            preds.extend(idx.into_iter().map(|v| v as usize));
            confs.extend(crate::run::to_vec(&c));
            start += len;
        }
        (preds, confs)
    });
    let truth: Vec<usize> = labels.iter().map(|&l| l as usize).collect();
    let rep = report::classification_report(&truth, &pred, names.len(), Some(names));
    let text = rep.to_text(4);
    let write = |name: &str, bytes: &[u8]| {
        let p = run.file(name);
        infer::atomic::write_bytes(&p, bytes).map_err(|e| TrainError::Io {
            path: p,
            what: "cannot write".into(),
            msg: e.to_string(),
        })
    };
    write("test_report.txt", format!("{text}\n{}", rep.confusion_text()).as_bytes())?;
    let mut json = rep.to_json();
    json["seconds"] = serde_json::json!(t0.elapsed().as_secs_f64());
    write("test_metrics.json", format!("{}\n", serde_json::to_string_pretty(&json).expect("json")).as_bytes())?;
    let (h, w) = (images.rows, images.cols);
    let grid = |name: &str, title: &str, correct: bool| {
        let tiles: Vec<Tile> = (0..images.count)
            .filter(|&i| (pred[i] == truth[i]) == correct)
            .take(24)
            .map(|i| Tile {
                pixels: images.image(i).to_vec(),
                height: h,
                width: w,
                caption: Some(format!(
                    "predicted {}, true {} ({:.0}%)",
                    names[pred[i]],
                    names[truth[i]],
                    conf[i] * 100.0
                )),
                alert: !correct,
            })
            .collect();
        let p = run.file(name);
        figure::image_grid(&p, Some(title), &tiles, 6, 3).map_err(|e| TrainError::Io {
            path: p,
            what: "cannot write".into(),
            msg: e.to_string(),
        })
    };
    grid("correct.png", "correctly predicted test images", true)?;
    grid("incorrect.png", "incorrectly predicted test images", false)?;
    if !quiet {
        println!("test set ({} images):\n{text}", images.count);
    }
    Ok(rep.accuracy)
}
