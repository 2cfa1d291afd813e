//! Command-line arguments (clap derive) and their conversion into validated
//! jobs. Every hyperparameter left unset comes from the preset.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::error::TrainError;
use crate::fit::Objective;
use crate::optim::OptimizerKind;
use crate::pipeline::{AutoencoderJob, ClassifierJob, Common, DeviceChoice};
use crate::run::TrainSettings;

#[derive(Debug, Parser)]
#[command(
    name = "train",
    version,
    about = "Train a convolutional autoencoder and a classifier on its encoder (libtorch), export them to ONNX"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train the convolutional autoencoder.
    Autoencoder(AutoencoderArgs),
    /// Train the classifier (trained encoder + fully connected layer) in two stages.
    Classifier(ClassifierArgs),
    /// Export a run's models to ONNX, verified in ONNX Runtime.
    Export(ExportArgs),
    /// Vary one hyperparameter at a time around a base configuration; tabulate and plot.
    Sweep(SweepArgs),
    /// The reference project's interactive menu (reads answers from stdin).
    Explore(ExploreArgs),
}

/// Named sets of defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Preset {
    /// At most 10 minutes for both networks on 2 CPU cores, ≥ 99.2 % test accuracy.
    #[default]
    Quick,
    /// The reference's best: autoencoder L4 FS3 FL32 E100 B40, classifier FC32 E100 B64 (GPU-sized).
    Paper,
}

/// The values a preset fills in.
#[derive(Debug, Clone, Copy)]
pub struct PresetValues {
    pub layers: usize,
    pub filter_size: usize,
    pub filters: usize,
    pub ae_epochs: usize,
    pub ae_batch: usize,
    pub ae_lr: f64,
    pub ae_optimizer: OptimizerKind,
    pub ae_cosine: bool,
    pub fc_units: usize,
    pub frozen_epochs: usize,
    pub clf_epochs: usize,
    pub clf_batch: usize,
    pub clf_lr: f64,
    pub finetune_lr: f64,
    pub clf_optimizer: OptimizerKind,
    pub clf_cosine: bool,
    /// Classifier data augmentation: random shifts of up to N pixels.
    pub clf_augment: usize,
}

impl Preset {
    pub fn values(self) -> PresetValues {
        match self {
            Preset::Quick => PresetValues {
                layers: 4,
                filter_size: 3,
                filters: 16,
                ae_epochs: 2,
                ae_batch: 64,
                ae_lr: 2e-3,
                ae_optimizer: OptimizerKind::Adam,
                ae_cosine: true,
                fc_units: 64,
                frozen_epochs: 1,
                clf_epochs: 8,
                clf_batch: 64,
                clf_lr: 1e-3,
                finetune_lr: 1e-3,
                clf_optimizer: OptimizerKind::Adam,
                clf_cosine: true,
                clf_augment: 2,
            },
            Preset::Paper => PresetValues {
                layers: 4,
                filter_size: 3,
                filters: 32,
                ae_epochs: 100,
                ae_batch: 40,
                ae_lr: 1e-3,
                ae_optimizer: OptimizerKind::Rmsprop,
                ae_cosine: false,
                fc_units: 32,
                frozen_epochs: 20,
                clf_epochs: 80,
                clf_batch: 64,
                clf_lr: 1e-3,
                finetune_lr: 1e-4,
                clf_optimizer: OptimizerKind::Rmsprop,
                clf_cosine: false,
                clf_augment: 0,
            },
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// Hyperparameter defaults.
    #[arg(long, value_enum, default_value_t = Preset::Quick)]
    pub preset: Preset,
    /// Epochs (fine-tuning epochs for the classifier).
    #[arg(long)]
    pub epochs: Option<usize>,
    #[arg(long)]
    pub batch_size: Option<usize>,
    #[arg(long, value_enum)]
    pub optimizer: Option<OptimizerKind>,
    /// Learning rate.
    #[arg(long)]
    pub lr: Option<f64>,
    /// Cosine learning-rate decay over each stage (default: the preset's).
    #[arg(long)]
    pub cosine: Option<bool>,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Fraction of the images held out for validation.
    #[arg(long, default_value_t = 0.2)]
    pub val_split: f64,
    /// Train on the first N images only.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Shift training images randomly by up to N pixels (default: the preset's).
    #[arg(long)]
    pub augment: Option<usize>,
    /// CPU threads for libtorch (default: libtorch's choice).
    #[arg(long)]
    pub threads: Option<usize>,
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
    /// Run directory (default: runs/<model>-<hyperparameters>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue an interrupted run from its last saved epoch.
    #[arg(long)]
    pub resume: bool,
    /// Overwrite an existing run.
    #[arg(long, conflicts_with = "resume")]
    pub force: bool,
    /// Results table to add this run to (default: next to the run directory).
    #[arg(long)]
    pub table: Option<PathBuf>,
    /// No progress bar or per-epoch lines.
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Debug, Clone, Args)]
pub struct AutoencoderArgs {
    /// IDX images ([N, H, W] u8, plain or gzip).
    #[arg(long, default_value = "data/mnist/train-images-idx3-ubyte")]
    pub images: PathBuf,
    /// Encoder layers (1–8); the decoder mirrors them.
    #[arg(long)]
    pub layers: Option<usize>,
    /// Convolution kernel size K (2–7).
    #[arg(long)]
    pub filter_size: Option<usize>,
    /// Filters of the first layer (doubling each layer).
    #[arg(long)]
    pub filters: Option<usize>,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// The classifier's loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LossArg {
    /// Cross-entropy on the logits.
    CrossEntropy,
    /// MSE between softmax and one-hot labels (the reference's).
    Mse,
}

#[derive(Debug, Clone, Args)]
pub struct ClassifierArgs {
    /// The autoencoder run whose encoder is reused.
    #[arg(long)]
    pub autoencoder: PathBuf,
    #[arg(long, default_value = "data/mnist/train-images-idx3-ubyte")]
    pub images: PathBuf,
    #[arg(long, default_value = "data/mnist/train-labels-idx1-ubyte")]
    pub labels: PathBuf,
    /// Test images for the final report (default: the t10k file beside --images, if any; "none" to skip).
    #[arg(long)]
    pub test_images: Option<PathBuf>,
    /// Test labels (default: the t10k file beside --labels, if any).
    #[arg(long)]
    pub test_labels: Option<PathBuf>,
    /// Units of the fully connected layer.
    #[arg(long)]
    pub fc_units: Option<usize>,
    /// Stage 1: epochs with the encoder frozen.
    #[arg(long)]
    pub frozen_epochs: Option<usize>,
    /// Stage 2 learning rate (default: the preset's).
    #[arg(long)]
    pub finetune_lr: Option<f64>,
    #[arg(long, value_enum, default_value_t = LossArg::CrossEntropy)]
    pub loss: LossArg,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    /// A run directory (autoencoder or classifier).
    #[arg(long)]
    pub run: PathBuf,
    #[arg(long, default_value = "models")]
    pub out: PathBuf,
    /// Images for the parity check (default: the run's dataset).
    #[arg(long)]
    pub images: Option<PathBuf>,
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Network {
    Autoencoder,
    Classifier,
}

#[derive(Debug, Clone, Args)]
pub struct SweepArgs {
    #[arg(value_enum)]
    pub network: Network,
    /// Values of --layers to try (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub layers: Vec<usize>,
    #[arg(long, value_delimiter = ',')]
    pub filter_size: Vec<usize>,
    #[arg(long, value_delimiter = ',')]
    pub filters: Vec<usize>,
    #[arg(long, value_delimiter = ',')]
    pub fc_units: Vec<usize>,
    #[arg(long = "epochs-values", value_delimiter = ',')]
    pub epochs_values: Vec<usize>,
    #[arg(long = "batch-sizes", value_delimiter = ',')]
    pub batch_sizes: Vec<usize>,
    /// Classifier sweeps: the autoencoder run to build on.
    #[arg(long)]
    pub autoencoder: Option<PathBuf>,
    #[arg(long, default_value = "data/mnist/train-images-idx3-ubyte")]
    pub images: PathBuf,
    #[arg(long, default_value = "data/mnist/train-labels-idx1-ubyte")]
    pub labels: PathBuf,
    /// Where runs, tables and graphs go.
    #[arg(long, default_value = "runs/sweep")]
    pub dir: PathBuf,
    /// Base configuration.
    #[command(flatten)]
    pub base: SweepBase,
}

#[derive(Debug, Clone, Args)]
pub struct SweepBase {
    #[arg(long)]
    pub base_layers: Option<usize>,
    #[arg(long)]
    pub base_filter_size: Option<usize>,
    #[arg(long)]
    pub base_filters: Option<usize>,
    #[arg(long)]
    pub base_fc_units: Option<usize>,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Debug, Clone, Args)]
pub struct ExploreArgs {
    #[arg(value_enum)]
    pub network: Network,
    /// Classifier: the autoencoder run to build on.
    #[arg(long)]
    pub autoencoder: Option<PathBuf>,
    #[arg(long, default_value = "data/mnist/train-images-idx3-ubyte")]
    pub images: PathBuf,
    #[arg(long, default_value = "data/mnist/train-labels-idx1-ubyte")]
    pub labels: PathBuf,
    /// Test images for "predict the test data" (default: the t10k file beside --images).
    #[arg(long)]
    pub test_images: Option<PathBuf>,
    #[arg(long)]
    pub test_labels: Option<PathBuf>,
    /// Where runs, tables and graphs go.
    #[arg(long, default_value = "runs/explore")]
    pub dir: PathBuf,
    #[command(flatten)]
    pub base: SweepBase,
}

/// The test set that goes with a training file: `train-images…` →
/// `t10k-images…` beside it (MNIST's and Fashion-MNIST's naming, plain or
/// .gz), if that file exists.
pub fn companion_test_file(train: &std::path::Path) -> Option<PathBuf> {
    let name = train.file_name()?.to_str()?;
    let test = name.replacen("train-", "t10k-", 1);
    let p = train.with_file_name(test);
    (name.starts_with("train-") && p.is_file()).then_some(p)
}

/// The test pair to report on: explicit paths ("none" skips), else the
/// companions of the training files.
pub fn test_pair(
    images: &std::path::Path,
    labels: &std::path::Path,
    test_images: &Option<PathBuf>,
    test_labels: &Option<PathBuf>,
) -> (Option<PathBuf>, Option<PathBuf>) {
    let none = |p: &Option<PathBuf>| p.as_ref().is_some_and(|p| p.as_os_str() == "none");
    if none(test_images) || none(test_labels) {
        return (None, None);
    }
    match (test_images, test_labels) {
        (None, None) => match (companion_test_file(images), companion_test_file(labels)) {
            (Some(i), Some(l)) => (Some(i), Some(l)),
            _ => (None, None),
        },
        (i, l) => (i.clone(), l.clone()),
    }
}

impl CommonArgs {
    #[allow(clippy::too_many_arguments)]
    fn settings(
        &self,
        epochs: usize,
        frozen: usize,
        batch: usize,
        opt: OptimizerKind,
        lr: f64,
        finetune: Option<f64>,
        cosine: bool,
    ) -> TrainSettings {
        TrainSettings {
            epochs: self.epochs.unwrap_or(epochs),
            frozen_epochs: frozen,
            batch_size: self.batch_size.unwrap_or(batch),
            optimizer: self.optimizer.unwrap_or(opt),
            lr: self.lr.unwrap_or(lr),
            finetune_lr: finetune,
            cosine: self.cosine.unwrap_or(cosine),
            seed: self.seed,
            val_split: self.val_split,
            limit: self.limit,
            threads: self.threads,
            loss: None,
            augment: 0,
        }
    }

    pub fn common(&self, default_out: PathBuf, table_name: &str) -> Common {
        let out = self.out.clone().unwrap_or(default_out);
        let table =
            self.table.clone().or_else(|| Some(out.parent().unwrap_or(std::path::Path::new(".")).join(table_name)));
        Common { out, device: self.device, quiet: self.quiet, resume: self.resume, force: self.force, table }
    }
}

impl AutoencoderArgs {
    pub fn job(&self) -> AutoencoderJob {
        let p = self.common.preset.values();
        let mut settings = self.common.settings(p.ae_epochs, 0, p.ae_batch, p.ae_optimizer, p.ae_lr, None, p.ae_cosine);
        settings.augment = self.common.augment.unwrap_or(0);
        let (layers, filter_size, filters) = (
            self.layers.unwrap_or(p.layers),
            self.filter_size.unwrap_or(p.filter_size),
            self.filters.unwrap_or(p.filters),
        );
        let name = format!(
            "runs/autoencoder-L{layers}_FS{filter_size}_FL{filters}_E{}_B{}",
            settings.epochs, settings.batch_size
        );
        AutoencoderJob {
            images: self.images.clone(),
            layers,
            filter_size,
            filters,
            common: self.common.common(PathBuf::from(name), "loss_values.csv"),
            settings,
        }
    }
}

impl ClassifierArgs {
    pub fn job(&self) -> Result<ClassifierJob, TrainError> {
        let p = self.common.preset.values();
        let frozen = self.frozen_epochs.unwrap_or(p.frozen_epochs);
        let finetune = self.finetune_lr.or(if self.common.lr.is_some() { None } else { Some(p.finetune_lr) });
        let mut settings =
            self.common.settings(p.clf_epochs, frozen, p.clf_batch, p.clf_optimizer, p.clf_lr, finetune, p.clf_cosine);
        let fc_units = self.fc_units.unwrap_or(p.fc_units);
        let objective = match self.loss {
            LossArg::CrossEntropy => Objective::CrossEntropy,
            LossArg::Mse => Objective::OneHotMse,
        };
        settings.loss = Some(format!("{:?}", self.loss).to_lowercase());
        settings.augment = self.common.augment.unwrap_or(p.clf_augment);
        let name = format!("runs/classifier-FC{fc_units}_E{}+{}_B{}", frozen, settings.epochs, settings.batch_size);
        Ok(ClassifierJob {
            autoencoder: self.autoencoder.clone(),
            images: self.images.clone(),
            labels: self.labels.clone(),
            test_images: test_pair(&self.images, &self.labels, &self.test_images, &self.test_labels).0,
            test_labels: test_pair(&self.images, &self.labels, &self.test_images, &self.test_labels).1,
            fc_units,
            objective,
            common: self.common.common(PathBuf::from(name), "classification_loss_values.csv"),
            settings,
        })
    }
}
