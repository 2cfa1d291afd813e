//! The REST server: routes, the guard around every request (key, metrics,
//! access log), and the connection loop — hyper driven directly, for
//! header read timeouts, a connection limit and a graceful drain.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use super::stall::StallLimited;
use super::state::{AppState, Limits};
use super::{handlers, picture};
use crate::serve::api_error::{ApiError, Kind};
use crate::serve::connections::{accept, quiet, Holding};
use crate::serve::metrics::InFlight;

pub fn router(state: AppState) -> Router {
    let v = "/v2/models/{model}/versions/{version}";
    Router::new()
        .route("/v2/health/live", get(handlers::live))
        .route("/v2/health/ready", get(handlers::ready))
        .route("/v2", get(handlers::server_metadata))
        .route("/v2/models/{model}", get(handlers::model_metadata))
        .route(v, get(handlers::model_metadata_version))
        .route("/v2/models/{model}/ready", get(handlers::model_ready))
        .route(&format!("{v}/ready"), get(handlers::model_ready_version))
        .route("/v2/models/{model}/config", get(handlers::model_config))
        .route(&format!("{v}/config"), get(handlers::model_config_version))
        .route("/v2/models/{model}/infer", post(handlers::infer))
        .route(&format!("{v}/infer"), post(handlers::infer_version))
        .route("/v2/repository/index", post(handlers::repository_index))
        .route("/v2/repository/models/{model}/load", post(handlers::repository_load))
        .route("/v2/repository/models/{model}/unload", post(handlers::repository_unload))
        .route("/classify/{model}", post(picture::classify))
        .route("/metrics", get(handlers::metrics))
        .fallback(handlers::no_route)
        .method_not_allowed_fallback(handlers::wrong_method)
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

/// Around every request: the API key (liveness excepted), the in-flight
/// gauge, the request counter and one access-log line.
async fn guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    // Decremented when dropped: also when the client leaves and hyper
    // drops this future before it ends.
    let in_flight = InFlight::enter(&state.metrics.in_flight);
    let response = match &state.key {
        Some(key)
            if path != "/v2/health/live"
                && !key.accepts(request.headers().get("authorization").and_then(|v| v.to_str().ok())) =>
        {
            ApiError::new(Kind::Unauthorized, "missing or wrong API key: send Authorization: Bearer <key>")
                .into_response()
        }
        _ => next.run(request).await,
    };
    let status = response.status().as_u16();
    // Only served models label metrics: a client must not be able to mint series.
    let model = Some(model_of(&path)).filter(|m| state.models.contains(m)).unwrap_or("");
    state.metrics.requests.with_label_values(&[model, "http", &status.to_string()]).inc();
    tracing::info!(target: "access", "{method} {path} {status} {:.3} ms", start.elapsed().as_secs_f64() * 1e3);
    // In flight until its body has been sent: the drain waits for it.
    response.map(|body| axum::body::Body::new(Holding::new(body, in_flight)))
}

/// The model a path names, for metric labels ("" for none).
fn model_of(path: &str) -> &str {
    let mut parts = path.trim_start_matches('/').split('/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("v2"), Some("models"), Some(m)) | (Some("classify"), Some(m), _) => m,
        _ => "",
    }
}

/// Serves HTTP on `listener` until `stop` turns true, then stops
/// accepting and lets every open connection finish its request, for at
/// most `drain`. Returns whether every connection finished in time.
/// Connections with no request in flight (`in_flight`, the gauge every
/// request is in until its answer is sent) are cut as soon as none has
/// been for a moment: one that never sent a request, or half of its
/// headers, would otherwise hold the drain for --read-timeout.
/// A connection holds one of `permits` (`--max-connections`, shared with
/// gRPC) while it is open.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    permits: Arc<Semaphore>,
    in_flight: prometheus::IntGauge,
    mut stop: watch::Receiver<bool>,
    drain: Duration,
) -> bool {
    let graceful = GracefulShutdown::new();
    while let Some(stream) = accept(&listener, &mut stop, "HTTP").await {
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            // Over the connection limit: a plain 503, then close.
            tokio::spawn(refuse(stream, limits.max_connections));
            continue;
        };
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.read_timeout)
            .serve_connection(
                TokioIo::new(StallLimited::new(stream, limits.idle_timeout)),
                TowerToHyperService::new(router.clone()),
            );
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            let _ = connection.await;
            drop(permit);
        });
    }
    drop(listener);
    let finished = async {
        tokio::select! {
            _ = graceful.shutdown() => {}
            _ = quiet(&in_flight) => {}
        }
    };
    tokio::time::timeout(drain, finished).await.is_ok()
}

async fn refuse(mut stream: tokio::net::TcpStream, limit: usize) {
    let body = format!("{{\"error\":\"too many connections (--max-connections {limit}); retry later\"}}");
    let reply = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(reply.as_bytes())).await;
}
