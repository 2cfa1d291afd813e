//! `train autoencoder` and `train classifier`: from a validated job to a
//! finished run directory with checkpoint, history, figures and report.

mod autoencoder;
mod classifier;

use std::path::PathBuf;

pub use autoencoder::train_autoencoder;
pub use classifier::{parse_class_names, train_classifier};

use crate::config::{AutoencoderTraining, ClassifierTraining, Normalize, TrainSettings};
use infer::folder::FolderOptions;
use infer::interrupt;

use crate::error::TrainError;
use crate::run_dir::{EpochRecord, Reuse, RunDir};

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
    pub train_seconds: f64,
    pub test_accuracy: Option<f64>,
}

/// Stops between the steps after training (figures, report, table) when
/// Ctrl-C was pressed: the checkpoint is complete, `--resume` redoes them.
fn stop_if_interrupted(run: &RunDir, last: &EpochRecord) -> Result<(), TrainError> {
    match interrupt::requested() {
        true => Err(TrainError::Interrupted { run: run.path.clone(), epoch: last.epoch }),
        false => Ok(()),
    }
}

/// A failure after training finished (figures, report, results table): the
/// checkpoint is complete, `--resume` redoes what is missing (exit 1).
fn after_training(run: &RunDir, last: &EpochRecord) -> impl FnOnce(TrainError) -> TrainError {
    let (run, saved) = (run.path.clone(), last.epoch);
    move |e| match e {
        e @ (TrainError::Interrupted { .. } | TrainError::Failed { .. }) => e,
        e => TrainError::Failed { run, during: "writing the figures and reports".into(), saved, source: Box::new(e) },
    }
}

fn set_threads(settings: &TrainSettings) {
    if let Some(t) = settings.threads {
        tch::set_num_threads(t as i32);
    }
}
