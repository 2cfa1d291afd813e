//! Measurement tool driven by `bench/drivers/run.py` (`make bench`): each call
//! measures one thing and prints one JSON line. The measurements live in
//! `measure.rs`; this maps arguments onto them. A crate of its own, never
//! installed beside `train` and `infer`.

mod measure;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use measure as bench;
use train::config::{Architecture, Network};
use train::model::{AutoencoderConfig, InputShape};
use train::TrainError;

#[derive(Debug, Parser)]
#[command(name = "bench", about = "One measurement per call, printed as a JSON line (used by make bench)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// CPU threads (libtorch and ONNX Runtime intra-op).
    #[arg(long, global = true, default_value_t = 2)]
    threads: usize,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Forward and training FLOPs per image and the parameter count of a network.
    Flops(ModelArgs),
    /// ONNX Runtime (through the infer library) throughput over the images.
    OrtInfer {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        images: PathBuf,
        #[arg(long, default_value_t = 256)]
        batch: usize,
    },
    /// Reading an IDX file and normalising it to f32 (the data loader).
    IdxLoad {
        #[arg(long)]
        images: PathBuf,
    },
    /// Loading a training set as `train` does (IDX, or an image folder: scan, hash, decode).
    DatasetLoad {
        #[arg(long)]
        images: PathBuf,
    },
    /// The augmentation alone: seconds to transform an epoch's batches as the training loop does
    /// (gather, draw, one affine resample per batch), median of --reps epochs.
    AugmentTime {
        #[arg(long)]
        images: PathBuf,
        /// Training images of the epoch (the first N of the file).
        #[arg(long, default_value_t = 9600)]
        limit: usize,
        #[arg(long, default_value_t = 64)]
        batch: usize,
        /// An --augment SPEC.
        #[arg(long)]
        spec: train::config::Augment,
        #[arg(long, default_value_t = 5)]
        reps: usize,
    },
    /// Writes IDX images and labels as an image folder DIR/<class>/<index>.png
    /// (grayscale or RGB PNGs; class folders named by --class-names or the label numbers).
    /// Validation loss against cumulative training time, from history.csv files, as a PNG.
    Curve {
        /// LABEL=PATH of a history.csv (repeatable).
        #[arg(long = "history", value_parser = labelled, required = true)]
        histories: Vec<(String, PathBuf)>,
        /// The horizontal line (the reference's autoencoder val MSE).
        #[arg(long, default_value_t = 0.00044)]
        target: f64,
        #[arg(long)]
        out: PathBuf,
    },
    /// float32 matrix-multiply GFLOP/s (the machine's ceiling), in libtorch
    /// and in ONNX Runtime's own GEMM; the larger is the ceiling.
    Matmul {
        #[arg(long, default_value_t = 1024)]
        n: i64,
        #[arg(long, default_value_t = 20)]
        reps: usize,
    },
}

#[derive(Debug, Args)]
struct ModelArgs {
    #[arg(long)]
    network: Network,
    #[arg(long, default_value_t = 4)]
    layers: usize,
    #[arg(long, default_value_t = 3)]
    filter_size: usize,
    #[arg(long, default_value_t = 16)]
    filters: usize,
    #[arg(long, default_value_t = 64)]
    fc_units: usize,
    #[arg(long, default_value_t = 10)]
    classes: usize,
    #[arg(long, default_value_t = 28)]
    height: usize,
    #[arg(long, default_value_t = 28)]
    width: usize,
}

impl ModelArgs {
    fn model(&self) -> Result<AutoencoderConfig, TrainError> {
        let arch = Architecture { layers: self.layers, filter_size: self.filter_size, filters: self.filters };
        let cfg = arch.with_input(InputShape::gray(self.height, self.width));
        cfg.validate()?;
        Ok(cfg)
    }

    /// The classifier's head: (fc units, classes).
    fn head(&self) -> Option<(usize, usize)> {
        (self.network == Network::Classifier).then_some((self.fc_units, self.classes))
    }
}

fn labelled(s: &str) -> Result<(String, PathBuf), String> {
    let (label, path) = s.split_once('=').ok_or("expected LABEL=PATH")?;
    Ok((label.to_string(), PathBuf::from(path)))
}

fn run(cli: Cli) -> Result<serde_json::Value, TrainError> {
    tch::set_num_threads(cli.threads as i32);
    Ok(match &cli.command {
        Command::Flops(a) => bench::model_size(&a.model()?, a.head()),
        Command::OrtInfer { model, images, batch } => {
            bench::ort_inference_throughput(model, images, *batch, cli.threads)?
        }
        Command::IdxLoad { images } => bench::idx_load(images)?,
        Command::DatasetLoad { images } => bench::dataset_load(images)?,
        Command::AugmentTime { images, limit, batch, spec, reps } => {
            bench::augment_time(images, *limit, *batch, spec, *reps)?
        }
        Command::Curve { histories, target, out } => bench::val_loss_curves(histories, *target, out)?,
        Command::Matmul { n, reps } => {
            let torch = bench::matmul_ceiling(*n, *reps);
            let ort = bench::ort_matmul_ceiling(*n, *reps, cli.threads)?;
            serde_json::json!({"gflops_per_second": torch.max(ort), "libtorch": torch, "onnxruntime": ort, "n": n})
        }
    })
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(v) => {
            println!("{v}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {}", ae_core::exit::chain(&e));
            ExitCode::from(2)
        }
    }
}
