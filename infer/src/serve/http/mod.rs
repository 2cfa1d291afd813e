//! The REST face of the Open Inference Protocol, and the picture endpoint,
//! on axum; connections are driven by hyper directly so that headers have
//! a read timeout, connections a limit, and shutdown a graceful drain.

mod handlers;
mod picture;
pub mod types;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
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

use super::api_error::{ApiError, Kind};
use super::auth::ApiKey;
use super::metrics::Metrics;
use super::model::Models;

/// What every HTTP handler shares.
#[derive(Debug, Clone)]
pub struct AppState {
    pub models: Arc<Models>,
    pub metrics: Metrics,
    pub key: Option<ApiKey>,
    pub limits: Limits,
    /// Set when draining: readiness answers 503, new infers too.
    pub draining: Arc<AtomicBool>,
}

/// Limits on what a client may send, and how slowly.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_body: usize,
    /// For a request's headers, and again for its body.
    pub read_timeout: Duration,
    pub max_connections: usize,
}

/// An error as the protocol's REST face answers it: `{"error": "…"}`.
impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.http_status()).expect("a valid status");
        let mut response = (status, axum::Json(serde_json::json!({ "error": self.message }))).into_response();
        if self.kind == Kind::Unauthorized {
            response.headers_mut().insert("www-authenticate", HeaderValue::from_static("Bearer"));
        }
        response
    }
}

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
    state.metrics.in_flight.inc();
    let response = match &state.key {
        Some(key) if path != "/v2/health/live" && !key.accepts(request.headers().get("authorization")) => {
            ApiError::new(Kind::Unauthorized, "missing or wrong API key: send Authorization: Bearer <key>")
                .into_response()
        }
        _ => next.run(request).await,
    };
    state.metrics.in_flight.dec();
    let status = response.status().as_u16();
    // Only served models label metrics: a client must not be able to mint series.
    let model = Some(model_of(&path)).filter(|m| state.models.by_name.contains_key(*m)).unwrap_or("");
    state.metrics.requests.with_label_values(&[model, "http", &status.to_string()]).inc();
    tracing::info!(target: "access", "{method} {path} {status} {:.3} ms", start.elapsed().as_secs_f64() * 1e3);
    response
}

/// The model a path names, for metric labels ("" for none).
fn model_of(path: &str) -> &str {
    let mut parts = path.trim_start_matches('/').split('/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("v2"), Some("models"), Some(m)) | (Some("classify"), Some(m), _) => m,
        _ => "",
    }
}

/// Reads a request body within `--max-body` and `--read-timeout`.
pub async fn read_body(limits: &Limits, body: Body) -> Result<bytes::Bytes, ApiError> {
    use http_body_util::{BodyExt, LengthLimitError, Limited};
    let too_large =
        || ApiError::new(Kind::TooLarge, format!("request body over --max-body ({} bytes)", limits.max_body));
    let collected = tokio::time::timeout(limits.read_timeout, Limited::new(body, limits.max_body).collect()).await;
    match collected {
        Err(_) => Err(ApiError::new(
            Kind::Timeout,
            format!("request body not received within --read-timeout ({} s)", limits.read_timeout.as_secs_f64()),
        )),
        Ok(Ok(c)) => Ok(c.to_bytes()),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Ok(Err(e)) => Err(ApiError::bad(format!("request body cut short: {e}"))),
    }
}

/// Serves HTTP on `listener` until `stop` turns true, then stops
/// accepting and lets every open connection finish its request, for at
/// most `drain`. Returns whether every connection finished in time.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
    drain: Duration,
) -> bool {
    let graceful = GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        let (stream, _peer) = tokio::select! {
            _ = stopped(&mut stop) => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                // Out of file descriptors and the like: wait, then go on.
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            // Over the connection limit: a plain 503, then close.
            tokio::spawn(refuse(stream, limits.max_connections));
            continue;
        };
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.read_timeout)
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(router.clone()));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            let _ = connection.await;
            drop(permit);
        });
    }
    drop(listener);
    tokio::time::timeout(drain, graceful.shutdown()).await.is_ok()
}

/// Resolves once `stop` turns true (or its sender is gone).
pub async fn stopped(stop: &mut watch::Receiver<bool>) {
    while !*stop.borrow_and_update() {
        if stop.changed().await.is_err() {
            return;
        }
    }
}

async fn refuse(mut stream: tokio::net::TcpStream, limit: usize) {
    let body = format!("{{\"error\":\"too many connections (--max-connections {limit}); retry later\"}}");
    let reply = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(reply.as_bytes())).await;
}

pub fn is_draining(state: &AppState) -> bool {
    state.draining.load(Ordering::Relaxed)
}
