//! Running both front ends until SIGTERM or Ctrl-C, then draining: readiness
//! turns false, both listeners close, and every request already accepted
//! is answered (its connection closed after it) within `--drain-timeout`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use super::auth::ApiKey;
use super::connections::Rules;
use super::grpc::GrpcService;
use super::grpc_transport::{self, GrpcLimits};
use super::http;

/// Both front ends, bound and ready to serve.
pub struct Faces {
    pub http: http::AppState,
    pub http_listener: TcpListener,
    pub grpc: GrpcService,
    pub grpc_listener: TcpListener,
    pub grpc_limits: GrpcLimits,
    pub key: Option<ApiKey>,
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
pub async fn run(faces: Faces, drain_timeout: Duration) -> bool {
    let Faces { http: state, http_listener, grpc: service, grpc_listener, grpc_limits, key, draining } = faces;
    let (stop_tx, stop_rx) = watch::channel(false);
    let (limits, budget, in_flight) = (state.limits, state.budget.clone(), state.metrics.in_flight.clone());
    // One count of open connections for both faces.
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let rules = Rules {
        stall: limits.idle_timeout,
        drain_stall: drain_timeout / 3,
        idle: limits.idle_timeout,
        unauthenticated: limits.read_timeout,
    };
    let http = tokio::spawn(http::serve(
        http_listener,
        http::router(state),
        limits,
        rules,
        key.is_some(),
        connections.clone(),
        in_flight,
        stop_rx.clone(),
        drain_timeout,
    ));
    // Poll mode's look at the folder (returns at once in the other modes).
    tokio::spawn(service.models.clone().poll(stop_rx.clone()));
    let grpc = tokio::spawn(grpc_transport::serve(
        grpc_listener,
        service,
        grpc_limits,
        rules,
        connections,
        key,
        budget,
        stop_rx,
    ));

    signal().await;
    draining.store(true, Ordering::Relaxed);
    let _ = stop_tx.send(true);
    // Both faces drain at once, within one deadline.
    let both = async { tokio::join!(http, grpc) };
    match tokio::time::timeout(drain_timeout, both).await {
        Ok((http, grpc)) => matches!(http, Ok(true)) && grpc.is_ok(),
        Err(_) => false,
    }
}
