//! Command-line arguments (clap derive) and their mapping onto the
//! library's options.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use ae_core::cli_values::choice;

use ae_core::preprocess::{Fit, Invert, Preprocess};
use infer::commands::{self, ClassifyOptions, Format, ReconstructOptions, RunOptions};
use infer::contract::{OutputOptions, Scores};
use infer::error::InferError;
use infer::input::FolderLabels;
use infer::session::{ContractOptions, Device, Layout, Normalize, SessionOptions};

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
    /// Serve a folder of models over the Open Inference Protocol (REST and gRPC), batching across requests.
    ///
    /// Runs the server's own binary, infer-serve, found beside this one (`cargo build --release -p
    /// serve`); `train` and the other commands build without it.
    #[command(disable_help_flag = true)]
    Serve {
        /// infer-serve's flags (`infer serve --help` lists them).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
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
    /// The image input, for a model with several inputs.
    #[arg(long)]
    pub input: Option<String>,
    /// Where the input's channels are (default: read from its shape, a channel axis of 1 or 3 next to
    /// the height and width).
    #[arg(long, value_parser = choice::<Layout>())]
    pub layout: Option<Layout>,
    /// Per-channel normalisation after the picture is fitted, for models trained on other data:
    /// none, imagenet, MEAN,STD (every channel) or C means then C stds. This toolchain's models
    /// normalise inside their graph and take none.
    #[arg(long, default_value = "none", value_parser = parse_normalize)]
    pub normalize: Normalize,
    /// The output to read (default: this toolchain's name for it, or the model's one output of the
    /// right shape).
    #[arg(long)]
    pub output: Option<String>,
    /// No timing line on stderr.
    #[arg(long, short)]
    pub quiet: bool,
}

fn parse_normalize(s: &str) -> Result<Normalize, String> {
    Normalize::parse(s)
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
            session: SessionOptions {
                device: self.device,
                threads: self.threads,
                contract: ContractOptions {
                    input: self.input.clone(),
                    layout: self.layout,
                    normalize: self.normalize.clone(),
                },
            },
            batch_size: self.batch_size,
            pre: self.preprocess(),
            skip_bad: self.skip_bad,
            folder_labels: self.folder_labels,
            quiet: self.quiet,
            outputs: OutputOptions { output: self.output.clone(), ..OutputOptions::default() },
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
    /// The K most probable classes per image, with their probabilities (softmax of logits for a
    /// model that gives logits), in --predictions (column `top`) and the JSON's files.
    #[arg(long, value_name = "K", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub top: u16,
    /// What the output holds (default: this toolchain's metadata, else a final Softmax node means
    /// probabilities, else logits, to which softmax is applied).
    #[arg(long, value_parser = choice::<Scores>())]
    pub scores: Option<Scores>,
    /// Class names: a file with one per line, or a comma-separated list (default: the model's
    /// metadata, else the indices).
    #[arg(long)]
    pub class_names: Option<String>,
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
    /// The running options, with what the flags say of the model's scores.
    pub fn run_options(&self) -> Result<RunOptions, InferError> {
        let mut run = self.run.options();
        run.outputs.scores = self.scores;
        run.outputs.class_names = self
            .class_names
            .as_deref()
            .map(infer::contract::parse_class_names)
            .transpose()
            .map_err(InferError::Usage)?;
        Ok(run)
    }

    pub fn options(&self) -> ClassifyOptions {
        ClassifyOptions {
            labels: self.labels.clone(),
            format: self.format,
            digits: self.digits,
            predictions: self.predictions.clone(),
            top: self.top as usize,
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
