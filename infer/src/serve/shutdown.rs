//! Running both front ends until SIGTERM or Ctrl-C, then draining: readiness
//! turns false, both listeners close, and every request already accepted
//! is answered (its connection closed after it) within `--drain-timeout`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::wrappers::TcpListenerStream;

use super::grpc::GrpcService;
use super::http;
use super::proto::grpc_inference_service_server::GrpcInferenceServiceServer;

/// Both front ends, bound and ready to serve.
pub struct Faces {
    pub http: http::AppState,
    pub http_listener: TcpListener,
    pub grpc: GrpcService,
    pub grpc_listener: TcpListener,
    /// Set here on the first signal; both faces read it.
    pub draining: Arc<AtomicBool>,
}

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
/// within `drain_timeout`.
pub async fn run(faces: Faces, drain_timeout: Duration, read_timeout: Duration, max_body: usize) -> bool {
    let Faces { http: state, http_listener, grpc: service, grpc_listener, draining } = faces;
    let (stop_tx, stop_rx) = watch::channel(false);
    let limits = state.limits;
    let http = tokio::spawn(http::serve(http_listener, http::router(state), limits, stop_rx.clone(), drain_timeout));

    let grpc_server = GrpcInferenceServiceServer::new(service)
        .max_decoding_message_size(max_body)
        .max_encoding_message_size(max_body);
    let mut grpc_stop = stop_rx.clone();
    let incoming = TcpListenerStream::new(grpc_listener);
    let grpc = tokio::spawn(
        tonic::transport::Server::builder()
            // A call's whole time, reading included: a slow client cannot hold it.
            .timeout(read_timeout.max(Duration::from_secs(1)) * 6)
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
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
    match tokio::time::timeout(drain_timeout, both).await {
        Ok((http, grpc)) => matches!(http, Ok(true)) && matches!(grpc, Ok(Ok(()))),
        Err(_) => false,
    }
}
