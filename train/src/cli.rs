//! Command-line arguments (clap derive) and their conversion into the
//! library's validated jobs and plans: each starts from the preset's
//! configuration (`train::config`) and overwrites the fields a flag sets.

use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};

use ae_core::cli_values::{choice, names};

use ae_core::folder::FolderOptions;
use ae_onnx::quantize::{CalibrationMethod, WeightRange};
use infer::device::Device;
use train::config::{Augment, EarlyStopping, Loss, Network, Normalize, Preset, TrainSettings};
use train::explorer::{Base, Files, Param, Plan};
use train::export::int8::{self, Int8Options};
use train::export::{EncoderSource, Epoch, ExportJob, Layout, VERIFY_IMAGES};
use train::optim::OptimizerKind;
use train::pipeline::{self, AutoencoderJob, ClassifierJob, Common};
use train::precision::{self, CpuBf16, PrecisionChoice};
use train::run_dir::Reuse;
use train::sweep::SweepPlan;
use train::tensorboard::run_log::TensorBoard;
use train::{data, device, table, TrainError};

/// Overwrites `field` when the flag was given.
fn set<T>(field: &mut T, flag: Option<T>) {
    if let Some(v) = flag {
        *field = v;
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "train",
    version,
    about = "Train a convolutional autoencoder and a classifier on its encoder (libtorch), export them to ONNX",
    after_help = ae_core::exit::EXIT_CODES
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
    /// Write an IDX set (images and labels) out as an image folder OUT/<class>/<index>.png.
    Convert(ConvertArgs),
    /// Print a run's network: layers, output shapes, parameters (trainable and frozen).
    Summary(SummaryArgs),
}

#[derive(Debug, Args)]
pub struct SummaryArgs {
    /// A run directory (autoencoder or classifier).
    #[arg(long)]
    pub run: PathBuf,
}

#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// IDX images (plain or .gz).
    #[arg(long)]
    pub images: PathBuf,
    /// IDX labels that go with them.
    #[arg(long)]
    pub labels: PathBuf,
    /// Class folder names, label 0 first: a file with one per line, or a,b,c (default: the labels, 00, 01, …).
    #[arg(long)]
    pub class_names: Option<String>,
    /// Write N images: a sample drawn with --seed, stratified by class (each class keeps its share).
    #[arg(long)]
    pub limit: Option<usize>,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// The folder to create (must not exist, or be empty).
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, short)]
    pub quiet: bool,
}

impl ConvertArgs {
    pub fn job(&self) -> Result<train::convert::ConvertJob, TrainError> {
        Ok(train::convert::ConvertJob {
            images: self.images.clone(),
            labels: self.labels.clone(),
            class_names: self.class_names.as_deref().map(train::pipeline::parse_class_names).transpose()?,
            sample: self.limit.map(|n| train::data::Sample { n, seed: self.seed }),
            out: self.out.clone(),
        })
    }
}

#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// Hyperparameter defaults.
    #[arg(long, value_parser = choice::<Preset>(), default_value_t = Preset::Quick)]
    pub preset: Preset,
    /// Epochs (fine-tuning epochs for the classifier).
    #[arg(long)]
    pub epochs: Option<usize>,
    #[arg(long)]
    pub batch_size: Option<usize>,
    #[arg(long, value_parser = choice::<OptimizerKind>())]
    pub optimizer: Option<OptimizerKind>,
    /// Learning rate (the classifier's stage 1; stage 2 uses --finetune-lr).
    #[arg(long)]
    pub lr: Option<f64>,
    /// Cosine learning-rate decay over each stage (default: the preset's).
    #[arg(long)]
    pub cosine: Option<bool>,
    /// Fraction of each stage spent warming the learning rate up from lr/25
    /// (with --cosine true: one-cycle) (default: the preset's).
    #[arg(long)]
    pub warmup: Option<f64>,
    #[arg(long, default_value_t = Preset::Quick.autoencoder().settings.seed)]
    pub seed: u64,
    /// Fraction of the images held out for validation (default: the preset's, 0.2; accurate: 0.05).
    #[arg(long)]
    pub val_split: Option<f64>,
    /// Train on N images: a sample drawn with --seed, stratified by class
    /// where classes are known (image-folder classes, IDX labels): each class
    /// keeps its share, at least one image, so no class is ever dropped.
    /// Without labels the sample is uniform. Images stay in file order.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Augment the training images (never validation or test), per batch on the device: `none`,
    /// `N` (random shifts of up to N whole pixels), or parts such as `rotate=15,shift=0.1,zoom=0.15`
    /// (degrees; fractions of the image) with `pixels=N`, `flip` (mirroring: off unless asked)
    /// and `fill=constant|nearest|reflect` (what comes into the frame: zeros by default, MNIST's
    /// background; `reflect` for pictures on other backgrounds) (default: the preset's).
    #[arg(long, value_name = "SPEC")]
    pub augment: Option<Augment>,
    /// Keep an exponential moving average of the weights with this decay (e.g. 0.999):
    /// validation, the best epoch, the test report and the export use the averaged weights
    /// (0: none; default: the preset's).
    #[arg(long, value_name = "DECAY")]
    pub ema: Option<f64>,
    /// How the average's decay grows over a stage's first steps (default: the preset's).
    #[arg(long, value_parser = choice::<train::config::Warmup>())]
    pub ema_warmup: Option<train::config::Warmup>,
    /// Early stopping: end a stage once val_loss has not improved for PATIENCE epochs
    /// (Keras's EarlyStopping, one per stage). Every run keeps each stage's best epoch either way;
    /// the classifier's fine-tuning starts from its frozen stage's best.
    #[arg(long, value_name = "PATIENCE")]
    pub early_stopping: Option<usize>,
    /// With --early-stopping: how much val_loss must fall to count as an improvement.
    #[arg(long, requires = "early_stopping")]
    pub min_delta: Option<f64>,
    /// With --early-stopping: the first N epochs of each stage (a warm-up) are not monitored:
    /// they neither count towards the patience nor become the best (Keras's start_from_epoch).
    #[arg(long, value_name = "N", requires = "early_stopping")]
    pub start_from_epoch: Option<usize>,
    /// TensorBoard event files in RUN/tensorboard (`tensorboard --logdir runs/`).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub tensorboard: bool,
    /// Optimizer steps between two batch_loss points in TensorBoard.
    #[arg(long, value_name = "STEPS", default_value_t = TensorBoard::default().batch_every as u64,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub tensorboard_every: u64,
    /// CPU threads for libtorch, pinned (default: follow the cores other processes leave free, read
    /// every second: all physical cores when idle, one fewer per core another process keeps busy).
    #[arg(long)]
    pub threads: Option<usize>,
    #[arg(long, value_parser = names::<Device>(), default_value_t = Device::Auto)]
    pub device: Device,
    /// Training precision (Lightning's names): `bf16-mixed` runs convolutions and matrix products
    /// in bfloat16 under libtorch's autocast, keeping weights, optimizer state, BatchNorm statistics
    /// and the loss in float32; the export stays float32.
    /// The last one given wins (`make train` passes `--precision $(PRECISION)`).
    #[arg(long, value_parser = choice::<PrecisionChoice>(), default_value_t = PrecisionChoice::Full,
          overrides_with = "precision")]
    pub precision: PrecisionChoice,
    /// Run --precision bf16-mixed on a CPU without native bfloat16 (slow reference kernels).
    #[arg(long)]
    pub force_precision: bool,
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
    /// Image channels: 1 or 3 (default: from the data: grayscale stays 1, colour becomes 3).
    #[arg(long)]
    pub channels: Option<usize>,
    /// Picture size HxW, e.g. 32x32 (default: the pictures' own if they all share it; they are resized to it).
    #[arg(long, value_parser = parse_size)]
    pub size: Option<(usize, usize)>,
}

/// `--size HxW`.
fn parse_size(s: &str) -> Result<(usize, usize), String> {
    let (h, w) = s.split_once(['x', 'X', '×']).ok_or_else(|| format!("expected HxW (e.g. 32x32), got {s:?}"))?;
    let n = |v: &str| {
        v.trim()
            .parse::<usize>()
            .ok()
            .filter(|&v| v > 0)
            .ok_or_else(|| format!("expected HxW with positive integers, got {s:?}"))
    };
    Ok((n(h)?, n(w)?))
}

#[derive(Debug, Clone, Args)]
pub struct AutoencoderArgs {
    /// IDX images ([N, H, W] or [N, H, W, 3] u8, plain or gzip), or an image folder DIR/<class>/*.png|jpg.
    #[arg(long, default_value = "data/mnist/train-images-idx3-ubyte")]
    pub images: PathBuf,
    /// Per-channel input normalisation, part of the model.
    #[arg(long, value_parser = choice::<Normalize>(), default_value_t = Normalize::Auto)]
    pub normalize: Normalize,
    /// Encoder layers (1–8); the decoder mirrors them.
    #[arg(long)]
    pub layers: Option<usize>,
    /// Convolution kernel size K (2–7).
    #[arg(long)]
    pub filter_size: Option<usize>,
    /// Filters of the first layer (doubling each layer).
    #[arg(long)]
    pub filters: Option<usize>,
    /// A denoising autoencoder: Gaussian noise of this standard deviation added to the input
    /// (pixels in [0, 1], clipped), the clean image the target.
    #[arg(long, value_name = "STD")]
    pub noise: Option<f64>,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Debug, Clone, Args)]
pub struct ClassifierArgs {
    /// The autoencoder run whose encoder is reused.
    #[arg(long)]
    pub autoencoder: PathBuf,
    /// IDX images, or an image folder DIR/<class>/*.png|jpg (its sorted folder names are the classes).
    #[arg(long, default_value = "data/mnist/train-images-idx3-ubyte")]
    pub images: PathBuf,
    /// IDX labels for IDX images (default: data/mnist/train-labels-idx1-ubyte); refused for an image folder.
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Test images for the final report: IDX, or an image folder with the same classes (default: the t10k file beside --images, if any; "none" to skip).
    #[arg(long)]
    pub test_images: Option<PathBuf>,
    /// Test labels for IDX test images (default: the t10k file beside --labels, if any).
    #[arg(long)]
    pub test_labels: Option<PathBuf>,
    /// Units of the fully connected layer.
    #[arg(long)]
    pub fc_units: Option<usize>,
    /// Dropout on the fully connected layer's output while fine-tuning (stage 2), e.g. 0.3
    /// (default: the preset's; none at inference).
    #[arg(long, value_name = "P")]
    pub dropout: Option<f64>,
    /// Stage 1: epochs with the encoder frozen.
    #[arg(long)]
    pub frozen_epochs: Option<usize>,
    /// Stage 2 learning rate (default: the preset's).
    #[arg(long)]
    pub finetune_lr: Option<f64>,
    #[arg(long, value_parser = choice::<Loss>(), default_value_t = Loss::CrossEntropy)]
    pub loss: Loss,
    /// Label smoothing of the cross-entropy: the target puts EPS / classes on every class.
    #[arg(long, value_name = "EPS")]
    pub label_smoothing: Option<f64>,
    /// Class names, label 0 first: a file with one per line, or a comma-separated list (default: the label numbers).
    #[arg(long)]
    pub class_names: Option<String>,
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
    /// Classifier runs: which encoder encoder.onnx holds.
    #[arg(long, value_parser = choice::<EncoderSource>(), default_value_t = EncoderSource::Autoencoder)]
    pub encoder: EncoderSource,
    /// Which epoch to export: the best (lowest val_loss) or the last trained.
    #[arg(long, value_parser = choice::<Epoch>(), default_value_t = Epoch::Best)]
    pub epoch: Epoch,
    /// Also write int8 (QDQ) models, *.int8.onnx, calibrated on training images and gated on validation images.
    #[arg(long)]
    pub int8: bool,
    /// Training images to calibrate the int8 activations on (seeded draw).
    #[arg(long, default_value_t = int8::CALIBRATION_IMAGES, requires = "int8")]
    pub calibration_images: usize,
    /// How each activation's range is taken from the calibration values.
    #[arg(long, value_parser = choice::<CalibrationMethod>(), default_value_t = CalibrationMethod::default(), requires = "int8")]
    pub calibration: CalibrationMethod,
    /// The int8 weights' range (reduced: right on every x86 CPU; full: VNNI only).
    #[arg(long, value_parser = choice::<WeightRange>(), default_value_t = WeightRange::default(), requires = "int8")]
    pub int8_weights: WeightRange,
    /// Write the int8 models even if they miss the accuracy gate (classifier accuracy within 0.1 point, autoencoder MSE within 3 %).
    #[arg(long, requires = "int8")]
    pub int8_ungated: bool,
    /// flat: OUT/<model>.onnx; triton: a Triton model repository (OUT/<model>/config.pbtxt,
    /// OUT/<model>/1/model.onnx) that `infer serve --models OUT`, Triton and KServe serve unchanged.
    #[arg(long, value_parser = choice::<Layout>(), default_value_t = Layout::Flat)]
    pub layout: Layout,
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Debug, Clone, Args)]
pub struct SweepArgs {
    #[arg(value_parser = choice::<Network>())]
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
    #[arg(value_parser = choice::<Network>())]
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

impl CommonArgs {
    /// Overwrites what the flags set; `--precision` is resolved for the
    /// device and this CPU (refused where it would crawl).
    fn apply(&self, s: &mut TrainSettings) -> Result<(), TrainError> {
        set(&mut s.epochs, self.epochs);
        set(&mut s.batch_size, self.batch_size);
        set(&mut s.optimizer, self.optimizer);
        set(&mut s.lr, self.lr);
        set(&mut s.cosine, self.cosine);
        set(&mut s.warmup, self.warmup);
        set(&mut s.augment, self.augment);
        set(&mut s.ema, self.ema.map(|decay| (decay != 0.0).then_some(decay)));
        set(&mut s.ema_warmup, self.ema_warmup);
        s.seed = self.seed;
        set(&mut s.val_split, self.val_split);
        s.limit = self.limit;
        s.threads = self.threads;
        if let Some(patience) = self.early_stopping {
            s.early_stopping = Some(EarlyStopping {
                patience,
                min_delta: self.min_delta.unwrap_or(0.0),
                start_from_epoch: self.start_from_epoch.unwrap_or(0),
            });
        }
        let device = device::resolve(self.device)?;
        s.precision = precision::resolve(self.precision, device, &CpuBf16::detect(), self.force_precision)?;
        Ok(())
    }

    fn tensorboard(&self) -> Option<TensorBoard> {
        self.tensorboard.then_some(TensorBoard { batch_every: self.tensorboard_every as usize })
    }

    fn reuse(&self) -> Reuse {
        match (self.resume, self.force) {
            (true, _) => Reuse::Resume,
            (false, true) => Reuse::Overwrite,
            (false, false) => Reuse::Refuse,
        }
    }

    fn common(&self, default_name: &str, table_name: &str) -> Result<Common, TrainError> {
        let out = self.out.clone().unwrap_or_else(|| Path::new("runs").join(default_name));
        let table = self.table.clone().unwrap_or_else(|| out.parent().unwrap_or(Path::new(".")).join(table_name));
        let device = device::resolve(self.device)?;
        let folder = FolderOptions { channels: self.channels, size: self.size };
        Ok(Common {
            out,
            device,
            quiet: self.quiet,
            reuse: self.reuse(),
            table: Some(table),
            folder,
            tensorboard: self.tensorboard(),
        })
    }
}

impl AutoencoderArgs {
    pub fn job(&self) -> Result<AutoencoderJob, TrainError> {
        let mut training = self.common.preset.autoencoder();
        let a = &mut training.architecture;
        set(&mut a.layers, self.layers);
        set(&mut a.filter_size, self.filter_size);
        set(&mut a.filters, self.filters);
        self.common.apply(&mut training.settings)?;
        set(&mut training.settings.noise, self.noise);
        training.validate()?;
        let common = self.common.common(&training.run_name(), table::AE_TABLE)?;
        Ok(AutoencoderJob { images: self.images.clone(), normalize: self.normalize, training, common })
    }
}

impl ClassifierArgs {
    pub fn job(&self) -> Result<ClassifierJob, TrainError> {
        let mut training = self.common.preset.classifier().with_loss(self.loss);
        set(&mut training.fc_units, self.fc_units);
        set(&mut training.dropout, self.dropout);
        let s = &mut training.settings;
        set(&mut s.frozen_epochs, self.frozen_epochs);
        set(&mut s.finetune_lr, self.finetune_lr.map(Some));
        self.common.apply(s)?;
        // The preset's smoothing belongs to its cross-entropy: --loss mse
        // (the reference's) drops it; only a --label-smoothing the user
        // gives beside --loss mse is refused.
        if self.loss == Loss::Mse && self.label_smoothing.is_none() {
            s.label_smoothing = 0.0;
        }
        set(&mut s.label_smoothing, self.label_smoothing);
        training.validate()?;
        // IDX images pair with a labels file; an image folder carries its own.
        let (labels, test) = if self.images.is_dir() {
            let test = match self.test_images.as_deref() {
                Some(p) if p.as_os_str() == "none" => None,
                Some(p) => Some((p.to_path_buf(), self.test_labels.clone())),
                None => None,
            };
            (self.labels.clone(), test)
        } else {
            let labels = self.labels.clone().unwrap_or_else(|| PathBuf::from("data/mnist/train-labels-idx1-ubyte"));
            let test =
                data::test_pair(&self.images, &labels, self.test_images.as_deref(), self.test_labels.as_deref())?;
            (Some(labels), test.map(|(i, l)| (i, Some(l))))
        };
        let common = self.common.common(&training.run_name(), table::CLF_TABLE)?;
        Ok(ClassifierJob {
            autoencoder: self.autoencoder.clone(),
            images: self.images.clone(),
            labels,
            test,
            class_names: self.class_names.as_deref().map(pipeline::parse_class_names).transpose()?,
            training,
            common,
        })
    }
}

impl ExportArgs {
    pub fn job(&self) -> ExportJob {
        ExportJob {
            run: self.run.clone(),
            out: self.out.clone(),
            quiet: self.quiet,
            images: self.images.clone(),
            verify_count: VERIFY_IMAGES,
            encoder: self.encoder,
            epoch: self.epoch,
            int8: self.int8.then_some(Int8Options {
                calibration_images: self.calibration_images,
                method: self.calibration,
                weights: self.int8_weights,
                gate: !self.int8_ungated,
            }),
            layout: self.layout,
        }
    }
}

impl SweepBase {
    /// The base configuration of an exploration of `network`.
    fn plan(&self, network: Network, files: Files, dir: &Path) -> Result<Plan, TrainError> {
        let c = &self.common;
        let base = match network {
            Network::Autoencoder => {
                let mut t = c.preset.autoencoder();
                set(&mut t.architecture.layers, self.base_layers);
                set(&mut t.architecture.filter_size, self.base_filter_size);
                set(&mut t.architecture.filters, self.base_filters);
                c.apply(&mut t.settings)?;
                Base::Autoencoder(t)
            }
            Network::Classifier => {
                let mut t = c.preset.classifier();
                set(&mut t.fc_units, self.base_fc_units);
                c.apply(&mut t.settings)?;
                Base::Classifier(t)
            }
        };
        Ok(Plan {
            base,
            files,
            dir: dir.to_path_buf(),
            device: device::resolve(c.device)?,
            quiet: c.quiet,
            tensorboard: c.tensorboard(),
        })
    }
}

/// Classifiers report on a test set; autoencoders have none.
fn test_files(
    network: Network,
    images: &Path,
    labels: &Path,
    ti: Option<&Path>,
    tl: Option<&Path>,
) -> Result<Option<(PathBuf, PathBuf)>, TrainError> {
    match network {
        Network::Classifier => data::test_pair(images, labels, ti, tl),
        Network::Autoencoder => Ok(None),
    }
}

impl SweepArgs {
    pub fn plan(&self) -> Result<SweepPlan, TrainError> {
        let files = Files {
            images: self.images.clone(),
            labels: self.labels.clone(),
            test: test_files(self.network, &self.images, &self.labels, None, None)?,
            autoencoder: self.autoencoder.clone(),
        };
        let varied = vec![
            (Param::Layers, self.layers.clone()),
            (Param::FilterSize, self.filter_size.clone()),
            (Param::Filters, self.filters.clone()),
            (Param::FcUnits, self.fc_units.clone()),
            (Param::Epochs, self.epochs_values.clone()),
            (Param::BatchSize, self.batch_sizes.clone()),
        ];
        Ok(SweepPlan { explore: self.base.plan(self.network, files, &self.dir)?, varied })
    }
}

impl ExploreArgs {
    pub fn plan(&self) -> Result<Plan, TrainError> {
        let test = test_files(
            self.network,
            &self.images,
            &self.labels,
            self.test_images.as_deref(),
            self.test_labels.as_deref(),
        )?;
        let files = Files {
            images: self.images.clone(),
            labels: self.labels.clone(),
            test,
            autoencoder: self.autoencoder.clone(),
        };
        self.base.plan(self.network, files, &self.dir)
    }
}
