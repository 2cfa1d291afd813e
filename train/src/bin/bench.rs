//! Measurement tool driven by `bench/run.py` (`make bench`): each call
//! measures one thing and prints one JSON line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use tch::Device;

use infer::session::{Device as OrtDevice, ModelSession, SessionOptions};
use train::bench;
use train::cli::Network;
use train::model::{AutoencoderConfig, InputShape};
use train::optim::OptimizerKind;

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
    /// Steady-state training throughput of a tch model.
    Train(ModelArgs),
    /// tch forward (eval) throughput over the images.
    TchInfer(ModelArgs),
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
    #[arg(long, value_enum)]
    network: Network,
    #[arg(long, default_value_t = 4)]
    layers: usize,
    #[arg(long, default_value_t = 3)]
    filter_size: usize,
    #[arg(long, default_value_t = 16)]
    filters: usize,
    #[arg(long, default_value_t = 64)]
    fc_units: usize,
    #[arg(long, default_value_t = 64)]
    batch: usize,
    #[arg(long, default_value_t = 5)]
    warmup: usize,
    #[arg(long, default_value_t = 40)]
    steps: usize,
    #[arg(long, value_enum, default_value_t = OptimizerKind::Adam)]
    optimizer: OptimizerKind,
    #[arg(long)]
    images: PathBuf,
    #[arg(long)]
    labels: Option<PathBuf>,
}

fn run(cli: Cli) -> Result<serde_json::Value, String> {
    tch::set_num_threads(cli.threads as i32);
    let load = |a: &ModelArgs| -> Result<(AutoencoderConfig, tch::Tensor, tch::Tensor), String> {
        let images = infer::idx::read_images(&a.images).map_err(|e| e.to_string())?;
        let labels = match &a.labels {
            Some(l) => infer::idx::read_labels(l).map_err(|e| e.to_string())?,
            None => vec![0; images.count],
        };
        let cfg = AutoencoderConfig {
            layers: a.layers,
            filter_size: a.filter_size,
            filters: a.filters,
            input: InputShape { height: images.rows, width: images.cols },
        };
        cfg.validate().map_err(|e| e.to_string())?;
        Ok((cfg, train::data::images_tensor(&images, Device::Cpu), train::data::labels_tensor(&labels, Device::Cpu)))
    };
    let head = |a: &ModelArgs| (a.network == Network::Classifier).then_some((a.fc_units, 10));
    Ok(match &cli.command {
        Command::Train(a) => {
            let (cfg, x, y) = load(a)?;
            let t = bench::train_throughput(head(a), &cfg, a.optimizer, &x, &y, a.batch, a.warmup, a.steps);
            serde_json::to_value(t).expect("json")
        }
        Command::TchInfer(a) => {
            let (cfg, x, _) = load(a)?;
            serde_json::to_value(bench::tch_inference_throughput(head(a), &cfg, &x, a.batch)).expect("json")
        }
        Command::OrtInfer { model, images, batch } => {
            let mut s =
                ModelSession::open(model, &SessionOptions { device: OrtDevice::Cpu, threads: Some(cli.threads) })
                    .map_err(|e| e.to_string())?;
            let imgs = infer::idx::read_images(images).map_err(|e| e.to_string())?;
            let x = imgs.to_f32();
            let px = imgs.rows * imgs.cols;
            let warm = (*batch).min(imgs.count);
            s.run(&x[..warm * px], warm).map_err(|e| e.to_string())?;
            let t0 = std::time::Instant::now();
            let mut i = 0;
            while i < imgs.count {
                let n = (*batch).min(imgs.count - i);
                s.run(&x[i * px..(i + n) * px], n).map_err(|e| e.to_string())?;
                i += n;
            }
            let secs = t0.elapsed().as_secs_f64();
            serde_json::json!({"images_per_second": imgs.count as f64 / secs, "seconds": secs, "images": imgs.count})
        }
        Command::IdxLoad { images } => {
            let t0 = std::time::Instant::now();
            let imgs = infer::idx::read_images(images).map_err(|e| e.to_string())?;
            let x = imgs.to_f32();
            let secs = t0.elapsed().as_secs_f64();
            let bytes = std::fs::metadata(images).map_err(|e| e.to_string())?.len();
            serde_json::json!({"seconds": secs, "images": imgs.count, "values": x.len(), "bytes": bytes})
        }
        Command::Matmul { n, reps } => {
            let torch = bench::matmul_ceiling(*n, *reps);
            let ort = ort_matmul(*n, *reps, cli.threads)?;
            serde_json::json!({"gflops_per_second": torch.max(ort), "libtorch": torch, "onnxruntime": ort, "n": n})
        }
    })
}

/// GFLOP/s of ONNX Runtime's MatMul: an n×n input times an n×n initializer.
fn ort_matmul(n: i64, reps: usize, threads: usize) -> Result<f64, String> {
    use infer::onnx::*;
    let b: Vec<f32> = (0..n * n).map(|i| ((i % 97) as f32) / 97.0).collect();
    let dims = [Dim::Fixed(1), Dim::Fixed(1), Dim::Fixed(n), Dim::Fixed(n)];
    let model = ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 17 }],
        graph: Some(GraphProto {
            node: vec![NodeProto {
                input: vec!["image".into(), "b".into()],
                output: vec!["y".into()],
                name: "mm".into(),
                op_type: "MatMul".into(),
                ..Default::default()
            }],
            name: "matmul".into(),
            initializer: vec![TensorProto::f32("b", &[n, n], &b)],
            input: vec![ValueInfoProto::tensor_f32("image", &dims)],
            output: vec![ValueInfoProto::tensor_f32("y", &dims)],
            ..Default::default()
        }),
        ..Default::default()
    };
    let dir = std::env::temp_dir().join(format!("bench-matmul-{}.onnx", std::process::id()));
    std::fs::write(&dir, model.to_bytes()).map_err(|e| e.to_string())?;
    let mut s = ModelSession::open(&dir, &SessionOptions { device: OrtDevice::Cpu, threads: Some(threads) })
        .map_err(|e| e.to_string());
    let _ = std::fs::remove_file(&dir);
    let s = s.as_mut().map_err(|e| e.clone())?;
    let a: Vec<f32> = (0..n * n).map(|i| ((i % 89) as f32) / 89.0).collect();
    s.run(&a, 1).map_err(|e| e.to_string())?;
    let t0 = std::time::Instant::now();
    for _ in 0..reps {
        s.run(&a, 1).map_err(|e| e.to_string())?;
    }
    Ok(2.0 * (n * n * n) as f64 * reps as f64 / t0.elapsed().as_secs_f64() / 1e9)
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(v) => {
            println!("{v}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
