//! Running both front ends until SIGTERM or Ctrl-C, then draining: readiness
//! turns false, both listeners close, and every request already accepted
//! is answered (its connection closed after it) within `--drain-timeout`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::wrappers::TcpListenerStream;

use super::auth::ApiKey;
use super::grpc::GrpcService;
use super::metrics::Metrics;
use super::model::Models;
use super::proto::grpc_inference_service_server::GrpcInferenceServiceServer;
use super::{http, http_state, ServeOptions};

/// Resolves on the first SIGTERM or SIGINT.
async fn signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("install a SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("install a SIGINT handler");
    tokio::select! {
        _ = term.recv() => tracing::warn!("SIGTERM: draining"),
        _ = int.recv() => tracing::warn!("SIGINT: draining"),
    }
}

/// Serves until a signal, then drains. Returns whether the drain finished
/// within the timeout.
pub async fn run(
    opts: &ServeOptions,
    models: Arc<Models>,
    metrics: Metrics,
    key: Option<ApiKey>,
    http_listener: TcpListener,
    grpc_listener: TcpListener,
) -> bool {
    let draining = Arc::new(AtomicBool::new(false));
    let (stop_tx, stop_rx) = watch::channel(false);
    let state = http_state(opts, models.clone(), metrics.clone(), key.clone(), draining.clone());
    let limits = state.limits;
    let http =
        tokio::spawn(http::serve(http_listener, http::router(state), limits, stop_rx.clone(), opts.drain_timeout));

    let service = GrpcService { models, metrics, key, draining: draining.clone() };
    let max = opts.max_body;
    let grpc_server =
        GrpcInferenceServiceServer::new(service).max_decoding_message_size(max).max_encoding_message_size(max);
    let mut grpc_stop = stop_rx.clone();
    let incoming = TcpListenerStream::new(grpc_listener);
    let grpc = tokio::spawn(
        tonic::transport::Server::builder()
            .timeout(opts.read_timeout.max(std::time::Duration::from_secs(1)) * 6)
            .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
            .concurrency_limit_per_connection(256)
            .add_service(grpc_server)
            .serve_with_incoming_shutdown(incoming, async move {
                http::stopped(&mut grpc_stop).await;
            }),
    );

    signal().await;
    draining.store(true, Ordering::Relaxed);
    let _ = stop_tx.send(true);
    // Both faces drain at once, within one deadline.
    let both = async { tokio::join!(http, grpc) };
    match tokio::time::timeout(opts.drain_timeout, both).await {
        Ok((http, grpc)) => matches!(http, Ok(true)) && matches!(grpc, Ok(Ok(()))),
        Err(_) => false,
    }
}
