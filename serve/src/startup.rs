//! Start-up: read the repository, open and warm up every model, start its
//! queue, bind both ports and name them on stdout, then serve until a
//! signal (`shutdown.rs`).

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use super::control::{ControlOptions, Registry, StartError};
use super::load::LoadSettings;
use super::model_config::Batching;
use super::{auth, budget, grpc, grpc_transport, http, metrics, shutdown};
use infer::session::SessionOptions;

/// Where the API key comes from.
#[derive(Debug, Clone)]
pub enum KeySource {
    Inline(String),
    /// A file whose first line is the key.
    File(PathBuf),
}

/// Everything `infer serve` is told.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub models: PathBuf,
    pub host: IpAddr,
    /// 0: a free port.
    pub http_port: u16,
    pub grpc_port: u16,
    /// Batching for models without a config.pbtxt (a flat folder), and
    /// the defaults a config leaves open.
    pub batching: Batching,
    pub session: SessionOptions,
    /// Which models are loaded, and whether they may change while serving.
    pub control: ControlOptions,
    pub max_body: usize,
    pub read_timeout: Duration,
    pub drain_timeout: Duration,
    /// Request bytes held at once, both faces together.
    pub max_inflight_bytes: usize,
    /// A response the client does not read for this long closes its connection.
    pub idle_timeout: Duration,
    /// Open connections, HTTP and gRPC together.
    pub max_connections: usize,
    /// gRPC calls at once on one connection.
    pub max_streams: u32,
    pub api_key: Option<KeySource>,
    /// Tokio worker threads for both front ends.
    pub io_threads: usize,
    /// Pictures decoded at once (blocking threads, not the I/O threads).
    pub decode_threads: usize,
    /// Log level on stderr; `info` adds one access-log line per request.
    pub log: tracing::Level,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Start(#[from] StartError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("the API key is empty")]
    EmptyKey,
    #[error("{}: cannot read the API key: {source}", path.display())]
    KeyFile { path: PathBuf, source: std::io::Error },
    #[error("{}: the API key file is empty (expected the key on its first line)", path.display())]
    EmptyKeyFile { path: PathBuf },
    #[error("cannot start the server: {0}")]
    Runtime(std::io::Error),
    #[error("the drain did not finish within --drain-timeout ({0:?}); requests still open were cut off")]
    DrainTimeout(Duration),
}

impl ServeError {
    /// A server that ran and then failed to drain exits 1; one that could
    /// not start (bad repository, model, port, key) exits 2.
    pub fn exit_code(&self) -> u8 {
        match self {
            ServeError::DrainTimeout(_) | ServeError::Runtime(_) => 1,
            _ => 2,
        }
    }
}

/// Runs the server until SIGTERM or Ctrl-C, then drains. `out` gets the
/// first line: both bound addresses.
pub fn serve(opts: &ServeOptions, out: &mut dyn Write) -> Result<(), ServeError> {
    // Already installed (a test running several servers): keep it.
    let _ = tracing_subscriber::fmt()
        .with_max_level(opts.log)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false)
        .try_init();
    let key = match &opts.api_key {
        None => None,
        Some(KeySource::Inline(k)) => Some(auth::ApiKey::new(k).ok_or(ServeError::EmptyKey)?),
        Some(KeySource::File(path)) => {
            let text =
                std::fs::read_to_string(path).map_err(|source| ServeError::KeyFile { path: path.clone(), source })?;
            let line = text.lines().next().unwrap_or("");
            Some(auth::ApiKey::new(line).ok_or_else(|| ServeError::EmptyKeyFile { path: path.clone() })?)
        }
    };
    let metrics = metrics::Metrics::new(opts.batching.max_batch);
    let settings = LoadSettings { session: opts.session.clone(), batching: opts.batching.clone() };
    let models = Arc::new(Registry::start(&opts.models, opts.control.clone(), settings, &metrics, opts.drain_timeout)?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(opts.io_threads.max(1))
        .thread_name("serve-io")
        .enable_all()
        .build()
        .map_err(ServeError::Runtime)?;
    let drained = runtime.block_on(async {
        let http_addr = SocketAddr::new(opts.host, opts.http_port);
        let grpc_addr = SocketAddr::new(opts.host, opts.grpc_port);
        let bind =
            |addr| async move { TcpListener::bind(addr).await.map_err(|source| ServeError::Bind { addr, source }) };
        let http_listener = bind(http_addr).await?;
        let grpc_listener = bind(grpc_addr).await?;
        let local = |l: &TcpListener, addr| l.local_addr().map_err(|source| ServeError::Bind { addr, source });
        let (http_local, grpc_local) = (local(&http_listener, http_addr)?, local(&grpc_listener, grpc_addr)?);
        let served = models.snapshot();
        let count: usize = served.by_name.values().map(|v| v.len()).sum();
        let names = served.by_name.keys().cloned().collect::<Vec<_>>().join(", ");
        drop(served);
        // The first line: what a script reads to find the server.
        let _ = writeln!(out, "serving http://{http_local} grpc://{grpc_local} ({count} models: {names})");
        let _ = out.flush();
        tracing::warn!("ready: http://{http_local} grpc://{grpc_local}");
        let draining = Arc::new(AtomicBool::new(false));
        // At least one request of --max-body must fit, compressed and
        // inflated at once.
        let budget = budget::Budget::new(opts.max_inflight_bytes.max(opts.max_body.saturating_mul(2)));
        let state = http::AppState {
            models: models.clone(),
            metrics: metrics.clone(),
            key: key.clone(),
            limits: http::Limits {
                max_body: opts.max_body,
                read_timeout: opts.read_timeout,
                idle_timeout: opts.idle_timeout,
                max_connections: opts.max_connections,
            },
            draining: draining.clone(),
            decoders: Arc::new(tokio::sync::Semaphore::new(opts.decode_threads.max(1))),
            budget: budget.clone(),
        };
        let grpc = grpc::GrpcService { models: models.clone(), metrics: metrics.clone(), draining: draining.clone() };
        let grpc_limits = grpc_transport::GrpcLimits {
            max_message: opts.max_body,
            read_timeout: opts.read_timeout,
            max_streams: opts.max_streams,
        };
        let faces = shutdown::Faces { http: state, http_listener, grpc, grpc_listener, grpc_limits, key, draining };
        Ok::<_, ServeError>(shutdown::run(faces, opts.drain_timeout).await)
    })?;
    // Every front end is down: the queues close and their sessions finish
    // what is left.
    drop(models);
    runtime.shutdown_timeout(Duration::from_secs(1));
    if drained {
        tracing::warn!("drained: every accepted request answered; exiting");
        Ok(())
    } else {
        Err(ServeError::DrainTimeout(opts.drain_timeout))
    }
}
