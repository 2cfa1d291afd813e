//! Command-line arguments (clap derive) and their mapping onto the
//! library's options.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use ae_core::cli_values::choice;

use ae_core::preprocess::{Fit, Invert, Preprocess};
use infer::commands::{self, ClassifyOptions, Format, ReconstructOptions, RunOptions};
use infer::input::FolderLabels;
use infer::session::{Device, SessionOptions};

#[derive(Debug, Parser)]
#[command(
    name = "infer",
    version,
    about = "Batch inference with the exported ONNX models on ONNX Runtime (no libtorch)",
    after_help = ae_core::exit::EXIT_CODES
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Predict classes; with labels, print the classification report and confusion matrix.
    Classify(ClassifyArgs),
    /// Reconstruct images with the autoencoder; report the reconstruction MSE.
    Reconstruct(ReconstructArgs),
    /// Write the encoder's embeddings as a NumPy .npy matrix (one row per image).
    Embed(EmbedArgs),
    /// Show a model's inputs, outputs, opset and metadata.
    Info(InfoArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The ONNX model.
    #[arg(long)]
    pub model: PathBuf,
    /// Images: an IDX file (plain or .gz), or PNG/JPEG files and directories of them (sorted by name;
    /// a directory with sub-folders that are not all class names is read recursively).
    #[arg(long, num_args = 1.., required = true)]
    pub images: Vec<PathBuf>,
    /// Images per ONNX Runtime call.
    #[arg(long, default_value_t = commands::DEFAULT_BATCH)]
    pub batch_size: usize,
    /// auto: CUDA when available, else CPU; cuda: fail without CUDA.
    #[arg(long, value_parser = choice::<Device>(), default_value_t = Device::Auto)]
    pub device: Device,
    /// Intra-op threads (default: the physical cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// How pictures of another size are fitted to the model's.
    #[arg(long, value_parser = choice::<Fit>(), default_value_t = Fit::Exact)]
    pub preprocess: Fit,
    /// Short for --preprocess resize.
    #[arg(long, conflicts_with = "preprocess")]
    pub resize: bool,
    /// Invert gray levels; bare --invert means always (default: auto with --preprocess mnist, else never).
    #[arg(long, value_parser = choice::<Invert>(), num_args = 0..=1, default_missing_value = "always")]
    pub invert: Option<Invert>,
    /// Leave out pictures that cannot be read (listed and counted) instead of failing.
    #[arg(long)]
    pub skip_bad: bool,
    /// Whether a directory's sub-folders label its pictures. auto: when every sub-folder is one of
    /// the model's class names; always: they must be; never: unlabelled pictures, read recursively.
    #[arg(long, value_parser = choice::<FolderLabels>(), default_value_t = FolderLabels::Auto)]
    pub folder_labels: FolderLabels,
    /// No timing line on stderr.
    #[arg(long, short)]
    pub quiet: bool,
}

impl RunArgs {
    fn preprocess(&self) -> Preprocess {
        let fit = if self.resize { Fit::Resize } else { self.preprocess };
        let natural = Preprocess::new(fit);
        Preprocess { invert: self.invert.unwrap_or(natural.invert), ..natural }
    }

    pub fn options(&self) -> RunOptions {
        RunOptions {
            model: self.model.clone(),
            images: self.images.clone(),
            session: SessionOptions { device: self.device, threads: self.threads },
            batch_size: self.batch_size,
            pre: self.preprocess(),
            skip_bad: self.skip_bad,
            folder_labels: self.folder_labels,
            quiet: self.quiet,
        }
    }
}

#[derive(Debug, Args)]
pub struct ClassifyArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// IDX labels: adds the classification report and confusion matrix.
    #[arg(long)]
    pub labels: Option<PathBuf>,
    #[arg(long, value_parser = choice::<Format>(), default_value_t = Format::Text)]
    pub format: Format,
    /// Decimal digits in the text report.
    #[arg(long, default_value_t = 2)]
    pub digits: usize,
    /// Write per-image predictions as CSV.
    #[arg(long)]
    pub predictions: Option<PathBuf>,
    /// Write the confusion matrix as a PNG heatmap (needs --labels).
    #[arg(long)]
    pub confusion: Option<PathBuf>,
    /// Write grids of correctly and incorrectly predicted images into this directory.
    #[arg(long)]
    pub samples: Option<PathBuf>,
    /// Write every image's class probabilities as a [N, classes] NumPy .npy.
    #[arg(long)]
    pub probabilities: Option<PathBuf>,
    /// Write what the model was given (each image after preprocessing) as a [N, 1, H, W] NumPy .npy.
    #[arg(long)]
    pub inputs: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ReconstructArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// PNG of originals above reconstructions.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Images shown in the PNG and listed on stdout.
    #[arg(long, default_value_t = 16)]
    pub count: usize,
    /// Write every image's MSE as CSV.
    #[arg(long)]
    pub per_image: Option<PathBuf>,
    /// Write the reconstructions as a [N, 1, H, W] NumPy .npy.
    #[arg(long)]
    pub npy: Option<PathBuf>,
    #[arg(long, value_parser = choice::<Format>(), default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct EmbedArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// The .npy file to write.
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct InfoArgs {
    #[arg(long)]
    pub model: PathBuf,
    #[arg(long, value_parser = choice::<Format>(), default_value_t = Format::Text)]
    pub format: Format,
}

impl ClassifyArgs {
    pub fn options(&self) -> ClassifyOptions {
        ClassifyOptions {
            labels: self.labels.clone(),
            format: self.format,
            digits: self.digits,
            predictions: self.predictions.clone(),
            confusion: self.confusion.clone(),
            samples: self.samples.clone(),
            probabilities: self.probabilities.clone(),
            inputs: self.inputs.clone(),
        }
    }
}

impl ReconstructArgs {
    pub fn options(&self) -> ReconstructOptions {
        ReconstructOptions {
            grid: self.out.clone(),
            count: self.count,
            per_image: self.per_image.clone(),
            npy: self.npy.clone(),
            format: self.format,
        }
    }
}
