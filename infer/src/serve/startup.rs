//! Start-up: read the repository, open and warm up every model, start its
//! queue, bind both ports and name them on stdout, then serve until a
//! signal (`shutdown.rs`).

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use super::model::{Models, ServedModel};
use super::model_config::{self, Batching, ConfigError};
use super::repository::{self, RepositoryError};
use super::{auth, budget, grpc, grpc_transport, http, metrics, proto, queue, shutdown};
use crate::session::{ModelSession, SessionError, SessionOptions};

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
    Repository(#[from] RepositoryError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("model {name} version {version} failed to load")]
    Load {
        name: String,
        version: u64,
        #[source]
        source: SessionError,
    },
    #[error(
        "model {name} version {version}: output {output:?} of a {batch}-image warm-up batch has shape {shape:?}; \
         the server splits outputs by their first dimension, so it must be the batch"
    )]
    NotBatchFirst { name: String, version: u64, output: String, shape: Vec<usize>, batch: usize },
    #[error("model {name} version {version} failed its warm-up batch")]
    WarmUp {
        name: String,
        version: u64,
        #[source]
        source: SessionError,
    },
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

/// Opens every model (its instances' sessions), runs one warm-up batch
/// of `max_batch` images on each session, and starts its queue.
fn load(opts: &ServeOptions, metrics: &metrics::Metrics) -> Result<Models, ServeError> {
    let sources = repository::scan(&opts.models)?;
    let mut models = Models::default();
    for source in sources {
        let load_err = |e| ServeError::Load { name: source.name.clone(), version: source.version, source: e };
        let first = ModelSession::open(&source.path, &opts.session).map_err(load_err)?;
        let (config, batching) = match (&source.config, &source.config_path) {
            (Some(config), Some(path)) => {
                model_config::check(path, config, &first)?;
                let batching = model_config::batching(path, config, &opts.batching)?;
                (complete(config.clone(), &source.name, &first, &batching), batching)
            }
            _ => (model_config::for_model(&source.name, &first, &opts.batching), opts.batching.clone()),
        };
        let mut sessions = vec![first];
        for _ in 1..batching.instances {
            sessions.push(ModelSession::open(&source.path, &opts.session).map_err(load_err)?);
        }
        for s in &mut sessions {
            let per_image = s.channels * s.height * s.width;
            let n = batching.max_batch;
            let outputs = s.run(&vec![0.0; n * per_image], n).map_err(|e| ServeError::WarmUp {
                name: source.name.clone(),
                version: source.version,
                source: e,
            })?;
            // A batch's rows are handed back to their requests by the first
            // dimension; a model whose output is not batch-first would be
            // split wrongly (or not at all) under load.
            if let Some(o) = outputs.iter().find(|o| o.values.shape().first() != Some(&n)) {
                return Err(ServeError::NotBatchFirst {
                    name: source.name.clone(),
                    version: source.version,
                    output: o.name.clone(),
                    shape: o.values.shape().to_vec(),
                    batch: n,
                });
            }
        }
        let s = &sessions[0];
        let classes = s.output("probabilities").and_then(|o| o.sizes().last().copied()).filter(|&c| c > 0);
        let class_names = classes.map_or_else(Vec::new, |c| s.class_names(c as usize));
        let served = ServedModel {
            name: source.name.clone(),
            version: source.version,
            config,
            input: s.input.clone(),
            outputs: s.outputs.clone(),
            image: [s.channels, s.height, s.width],
            class_names,
            queue: queue::Queue::start(&source.name, sessions, &batching, metrics),
            batching,
        };
        models.by_name.entry(source.name).or_insert_with(BTreeMap::new).insert(source.version, Arc::new(served));
    }
    Ok(models)
}

/// A repository's config with what Triton would fill in itself: the name,
/// the backend, and inputs and outputs it leaves out.
fn complete(
    mut config: proto::ModelConfig,
    name: &str,
    session: &ModelSession,
    batching: &Batching,
) -> proto::ModelConfig {
    let full = model_config::for_model(name, session, batching);
    if config.name.is_empty() {
        config.name = name.to_string();
    }
    if config.backend.is_empty() && config.platform.is_empty() {
        config.backend = full.backend;
    }
    if config.input.is_empty() {
        config.input = full.input;
    }
    if config.output.is_empty() {
        config.output = full.output;
    }
    config
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
    let models = Arc::new(load(opts, &metrics)?);
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
        let count: usize = models.by_name.values().map(|v| v.len()).sum();
        let names = models.by_name.keys().cloned().collect::<Vec<_>>().join(", ");
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
