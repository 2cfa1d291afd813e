//! What both trainings share: the jobs (validated configurations with
//! their paths), what a finished run reports back, and the steps around the
//! epochs (threads, interruption and failures after training).

use std::path::PathBuf;

use crate::config::{AutoencoderTraining, ClassifierTraining, Normalize, TrainSettings};
use ae_core::folder::FolderOptions;
use ae_core::interrupt;

use crate::error::TrainError;
use crate::run_dir::{EpochRecord, Reuse, RunDir};
use crate::tensorboard::run_log::TensorBoard;

pub const PRODUCER: &str = concat!("train ", env!("CARGO_PKG_VERSION"));

/// What every training job shares.
#[derive(Debug, Clone)]
pub struct Common {
    pub out: PathBuf,
    pub device: tch::Device,
    pub quiet: bool,
    pub reuse: Reuse,
    /// The results table to add the run to (`None`: none).
    pub table: Option<PathBuf>,
    /// How image folders are read (channels, size); IDX files convert
    /// channels and must match a size.
    pub folder: FolderOptions,
    /// TensorBoard event files in `RUN/tensorboard` (`None`: none).
    pub tensorboard: Option<TensorBoard>,
}

#[derive(Debug, Clone)]
pub struct AutoencoderJob {
    /// An IDX file or an image folder.
    pub images: PathBuf,
    pub normalize: Normalize,
    pub training: AutoencoderTraining,
    pub common: Common,
}

#[derive(Debug, Clone)]
pub struct ClassifierJob {
    /// The autoencoder run whose encoder is reused.
    pub autoencoder: PathBuf,
    /// An IDX file (with `labels`) or an image folder (labels from its folders).
    pub images: PathBuf,
    pub labels: Option<PathBuf>,
    /// Test images and labels (`None` for an image folder) for the final report.
    pub test: Option<(PathBuf, Option<PathBuf>)>,
    /// One name per class (label 0 first); `None`: the labels' numbers.
    pub class_names: Option<Vec<String>>,
    pub training: ClassifierTraining,
    pub common: Common,
}

/// What a finished run reports back (sweeps tabulate it).
#[derive(Debug, Clone)]
pub struct Outcome {
    pub run: PathBuf,
    pub last: EpochRecord,
    /// The epoch whose weights the run keeps (`best.safetensors`).
    pub best: EpochRecord,
    /// The epoch at which early stopping ended training, if it did.
    pub stopped_early: Option<usize>,
    pub train_seconds: f64,
    pub test_accuracy: Option<f64>,
}

/// Stops between the steps after training (figures, report, table) when
/// Ctrl-C was pressed: the checkpoint is complete, `--resume` redoes them.
pub(super) fn stop_if_interrupted(run: &RunDir, last: &EpochRecord) -> Result<(), TrainError> {
    match interrupt::requested() {
        true => Err(TrainError::Interrupted { run: run.path.clone(), epoch: last.epoch }),
        false => Ok(()),
    }
}

/// A failure after training finished (figures, report, results table): the
/// checkpoint is complete, `--resume` redoes what is missing (exit 1).
pub(super) fn after_training(run: &RunDir, last: &EpochRecord) -> impl FnOnce(TrainError) -> TrainError {
    let (run, saved) = (run.path.clone(), last.epoch);
    move |e| match e {
        e @ (TrainError::Interrupted { .. } | TrainError::Failed { .. }) => e,
        e => TrainError::Failed { run, during: "writing the figures and reports".into(), saved, source: Box::new(e) },
    }
}

pub(super) fn set_threads(settings: &TrainSettings) {
    if let Some(t) = settings.threads {
        tch::set_num_threads(t as i32);
    }
}

/// `; best epoch 7 (val_loss 0.00123), stopped early` for the closing line.
pub(super) fn best_and_stop(best: &EpochRecord, last: &EpochRecord, stopped_early: Option<usize>) -> String {
    let mut s = String::new();
    if best.epoch != last.epoch {
        s += &format!("; best epoch {} (val_loss {:.6}", best.epoch, best.val_loss);
        if let Some(a) = best.val_accuracy {
            s += &format!(", val_accuracy {a:.4}");
        }
        s += ")";
    } else {
        s += "; the last epoch is the best";
    }
    if stopped_early.is_some() {
        s += ", stopped early";
    }
    s
}
