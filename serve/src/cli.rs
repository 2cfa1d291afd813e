//! `infer serve`'s command line (clap derive) and its mapping onto the
//! server's options.

use std::path::PathBuf;

use clap::Parser;

use ae_core::cli_values::choice;
use infer::session::{Device, SessionOptions};
use serve::control::ControlMode;
use serve::model_config::{MAX_BATCH, MAX_INSTANCES, MAX_QUEUE};

/// `infer serve` (this binary, which `infer serve` runs): every flag maps
/// onto `serve::ServeOptions`.
#[derive(Debug, Parser)]
#[command(
    name = "infer serve",
    bin_name = "infer serve",
    about = "Serve a folder of models over the Open Inference Protocol (REST and gRPC), batching across requests",
    after_help = SERVE_HELP
)]
pub struct ServeArgs {
    /// A folder of *.onnx (each file a model named for its stem), or a Triton model repository
    /// (<name>/config.pbtxt, <name>/<version>/model.onnx), as `train export --layout triton` writes.
    #[arg(long)]
    pub models: PathBuf,
    /// Address to listen on (both ports).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: std::net::IpAddr,
    /// REST port (0: a free port; the first line on stdout names it).
    #[arg(long, default_value_t = 8000)]
    pub http_port: u16,
    /// gRPC port (0: a free port).
    #[arg(long, default_value_t = 8001)]
    pub grpc_port: u16,
    /// Images in one ONNX Runtime run, at most; requests queued for a model are merged up to this
    /// (1: batching off). A Triton repository's config.pbtxt sets its own (max_batch_size).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=MAX_BATCH as i64))]
    pub max_batch: u32,
    /// Microseconds the first queued request may wait for others (0: whatever is queued when a
    /// session is free runs at once, so a lone client never waits).
    #[arg(long, default_value_t = 0)]
    pub max_queue_delay: u64,
    /// Requests waiting per model, at most; beyond it the server answers 503 at once.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=MAX_QUEUE as i64))]
    pub max_queue: u32,
    /// Sessions per model, each on a thread of its own.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=MAX_INSTANCES as i64))]
    pub instances: u32,
    /// Intra-op threads per session: the server's parallelism comes from batches and instances, and
    /// one thread per session measured fastest on 2 cores (bench/results/serving.md).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Threads answering HTTP and gRPC (default: half the physical cores, at least 1).
    #[arg(long)]
    pub io_threads: Option<usize>,
    /// Pictures decoded at once for /classify, off the threads answering requests
    /// (default: half the physical cores, at least 1).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub decode_threads: Option<u32>,
    /// auto: CUDA when available, else CPU; cuda: fail without CUDA.
    #[arg(long, value_parser = choice::<Device>(), default_value_t = Device::Auto)]
    pub device: Device,
    /// Largest request body (bytes; K, M and G suffixes are 1024-based); larger ones get 413.
    #[arg(long, default_value = "64M", value_parser = parse_size)]
    pub max_body: usize,
    /// Request bytes held at once, HTTP and gRPC together, as they arrive and as they inflate (K, M, G
    /// suffixes; at least twice --max-body); a request beyond it gets 503 / UNAVAILABLE at once. At the
    /// default, 16 gzip bombs at once took the server about 200 MiB above a serving server's idle.
    #[arg(long, default_value = "192M", value_parser = parse_size)]
    pub max_inflight_bytes: usize,
    /// Seconds a client has to send a request's headers, and again its body (else 408 or closed); with
    /// --api-key, also how long a connection may stay without sending the key (liveness calls alone).
    #[arg(long, default_value_t = 10.0, value_parser = parse_seconds)]
    pub read_timeout: f64,
    /// Seconds a response may wait for its client to take any of it (a socket never read, an HTTP/2
    /// window of 0); then the connection is closed. Also how long a connection with no request open
    /// stays (then HTTP/2 GOAWAY, or a close between HTTP/1.1 requests).
    #[arg(long, default_value_t = 30.0, value_parser = parse_seconds)]
    pub idle_timeout: f64,
    /// Seconds to answer the requests already accepted after SIGTERM or Ctrl-C.
    #[arg(long, default_value_t = 30.0, value_parser = parse_seconds)]
    pub drain_timeout: f64,
    /// Open connections, HTTP and gRPC together, at most; one more gets 503 (gRPC: is closed).
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// gRPC calls at once on one connection (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_streams: u32,
    /// Which models are served, and whether they change while the server runs (Triton's modes).
    #[arg(long, value_parser = choice::<ControlMode>(), default_value_t = ControlMode::None)]
    pub model_control_mode: ControlMode,
    /// With --model-control-mode explicit: a model to load at start (repeatable; `*` for all).
    #[arg(long = "load-model", value_name = "NAME")]
    pub load_model: Vec<String>,
    /// With --model-control-mode poll: seconds between looks at the folder; a changed model is
    /// reloaded once two looks in a row see the same files.
    #[arg(long, default_value_t = 15.0, value_parser = parse_seconds)]
    pub repository_poll_secs: f64,
    /// Whether a model that fails to load at start stops the server, with exit 2 (Triton's flag);
    /// false: it is listed UNAVAILABLE with its reason in the repository index, and the others serve.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "true|false")]
    pub exit_on_error: bool,
    /// Require `Authorization: Bearer KEY` on every endpoint except liveness (401 without it).
    #[arg(long, conflicts_with = "api_key_file", env = "INFER_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Read the API key from this file (its first line).
    #[arg(long)]
    pub api_key_file: Option<PathBuf>,
    /// Log level on stderr: error, warn, info (one access-log line per request), debug.
    #[arg(long, default_value = "info", value_parser = ["error", "warn", "info", "debug"])]
    pub log: String,
}

const SERVE_HELP: &str = "\
Endpoints (REST, Open Inference Protocol v2): GET /v2/health/live, /v2/health/ready, /v2,
/v2/models/{m}[/versions/{v}], …/ready, …/config; POST …/infer (JSON or binary tensors).
Pictures: POST /classify/{m}?preprocess=exact|resize|mnist with a PNG/JPEG body or multipart form,
at most 16384 × the model's input pixels (12.25 Mi for 28×28), decoded off the I/O threads.
GET /metrics (Prometheus). gRPC: inference.GRPCInferenceService.
Model repository: POST /v2/repository/index, /v2/repository/models/{m}/load and …/unload (and
their gRPC calls) with --model-control-mode explicit; a reload serves on until the new version
has warmed up, and a failed load leaves the old one serving.
SIGTERM or Ctrl-C: stop accepting, answer what was accepted (--drain-timeout), exit 0.

Exit codes: 0 drained; 1 the drain timed out or the server failed while running;
2 it could not start (bad model folder, model, port or key).";

fn parse_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let (digits, shift) = match s.char_indices().last() {
        Some((i, 'K' | 'k')) => (&s[..i], 10),
        Some((i, 'M' | 'm')) => (&s[..i], 20),
        Some((i, 'G' | 'g')) => (&s[..i], 30),
        _ => (s, 0),
    };
    digits
        .parse::<usize>()
        .ok()
        .and_then(|v| v.checked_mul(1usize << shift))
        .filter(|&v| v > 0)
        .ok_or_else(|| format!("{s:?} is not a size in bytes (e.g. 1048576, 512K, 64M)"))
}

fn parse_seconds(s: &str) -> Result<f64, String> {
    s.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v > 0.0 && *v <= 86_400.0)
        .ok_or_else(|| format!("{s:?} is not a number of seconds between 0 and 86400"))
}

impl ServeArgs {
    pub fn options(&self) -> serve::ServeOptions {
        use serve::model_config::Batching;
        use std::time::Duration;
        let cores = ae_core::machine::physical_cores();
        serve::ServeOptions {
            models: self.models.clone(),
            host: self.host,
            http_port: self.http_port,
            grpc_port: self.grpc_port,
            batching: Batching {
                max_batch: self.max_batch as usize,
                across_requests: self.max_batch > 1,
                max_queue_delay: Duration::from_micros(self.max_queue_delay),
                max_queue: self.max_queue as usize,
                instances: self.instances as usize,
            },
            session: SessionOptions { device: self.device, threads: Some(self.threads.max(1)), ..Default::default() },
            control: serve::control::ControlOptions {
                mode: self.model_control_mode,
                load: self.load_model.clone(),
                poll_every: Duration::from_secs_f64(self.repository_poll_secs),
                exit_on_error: self.exit_on_error,
            },
            max_body: self.max_body,
            read_timeout: Duration::from_secs_f64(self.read_timeout),
            drain_timeout: Duration::from_secs_f64(self.drain_timeout),
            idle_timeout: Duration::from_secs_f64(self.idle_timeout),
            max_inflight_bytes: self.max_inflight_bytes,
            max_connections: self.max_connections as usize,
            max_streams: self.max_streams,
            api_key: match (&self.api_key, &self.api_key_file) {
                (Some(k), _) => Some(serve::KeySource::Inline(k.clone())),
                (None, Some(f)) => Some(serve::KeySource::File(f.clone())),
                (None, None) => None,
            },
            io_threads: self.io_threads.unwrap_or((cores / 2).max(1)),
            decode_threads: self.decode_threads.map_or((cores / 2).max(1), |n| n as usize),
            log: self.log.parse().expect("clap checked the level"),
        }
    }
}
