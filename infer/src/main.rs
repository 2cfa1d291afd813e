use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use infer::app::{self, ClassifyOptions, Format, ReconstructOptions, RunOptions};
use infer::error::InferError;
use infer::input::Preprocess;
use infer::session::{Device, SessionOptions};

#[derive(Debug, Parser)]
#[command(
    name = "infer",
    version,
    about = "Batch inference with the exported ONNX models on ONNX Runtime (no libtorch)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
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
struct RunArgs {
    /// The ONNX model.
    #[arg(long)]
    model: PathBuf,
    /// Images: an IDX file (plain or .gz), a PNG/JPEG file, or a directory of them.
    #[arg(long)]
    images: PathBuf,
    /// Images per ONNX Runtime call.
    #[arg(long, default_value_t = app::DEFAULT_BATCH)]
    batch_size: usize,
    /// auto: CUDA when available, else CPU; cuda: fail without CUDA.
    #[arg(long, value_enum, default_value_t = Device::Auto)]
    device: Device,
    /// Intra-op threads (default: the physical cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Scale images of another size to the model's.
    #[arg(long)]
    resize: bool,
    /// Invert gray levels (for dark digits on light paper).
    #[arg(long)]
    invert: bool,
    /// No timing line on stderr.
    #[arg(long, short)]
    quiet: bool,
}

impl RunArgs {
    fn options(&self) -> RunOptions {
        RunOptions {
            model: self.model.clone(),
            images: self.images.clone(),
            session: SessionOptions { device: self.device, threads: self.threads },
            batch_size: self.batch_size,
            pre: Preprocess { resize: self.resize, invert: self.invert },
            quiet: self.quiet,
        }
    }
}

#[derive(Debug, Args)]
struct ClassifyArgs {
    #[command(flatten)]
    run: RunArgs,
    /// IDX labels: adds the classification report and confusion matrix.
    #[arg(long)]
    labels: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Decimal digits in the text report.
    #[arg(long, default_value_t = 2)]
    digits: usize,
    /// Write per-image predictions as CSV.
    #[arg(long)]
    predictions: Option<PathBuf>,
    /// Write the confusion matrix as a PNG heatmap (needs --labels).
    #[arg(long)]
    confusion: Option<PathBuf>,
    /// Write grids of correctly and incorrectly predicted images into this directory.
    #[arg(long)]
    samples: Option<PathBuf>,
    /// Write every image's class probabilities as a [N, classes] NumPy .npy.
    #[arg(long)]
    probabilities: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct ReconstructArgs {
    #[command(flatten)]
    run: RunArgs,
    /// PNG of originals above reconstructions.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Images shown in the PNG and listed on stdout.
    #[arg(long, default_value_t = 16)]
    count: usize,
    /// Write every image's MSE as CSV.
    #[arg(long)]
    per_image: Option<PathBuf>,
    /// Write the reconstructions as a [N, 1, H, W] NumPy .npy.
    #[arg(long)]
    npy: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

#[derive(Debug, Args)]
struct EmbedArgs {
    #[command(flatten)]
    run: RunArgs,
    /// The .npy file to write.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Debug, Args)]
struct InfoArgs {
    #[arg(long)]
    model: PathBuf,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

fn run(cli: Cli) -> Result<(), InferError> {
    let mut out = std::io::stdout().lock();
    match cli.command {
        Command::Classify(a) => app::classify(
            &a.run.options(),
            &ClassifyOptions {
                labels: a.labels,
                format: a.format,
                digits: a.digits,
                predictions: a.predictions,
                confusion: a.confusion,
                samples: a.samples,
                probabilities: a.probabilities,
            },
            &mut out,
        ),
        Command::Reconstruct(a) => app::reconstruct(
            &a.run.options(),
            &ReconstructOptions { grid: a.out, count: a.count, per_image: a.per_image, npy: a.npy, format: a.format },
            &mut out,
        ),
        Command::Embed(a) => app::embed(&a.run.options(), &a.out, &mut out),
        Command::Info(a) => app::info(&a.model, a.format, &mut out),
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
