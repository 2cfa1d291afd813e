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
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use super::state::{AppState, Limits};
use super::{handlers, picture};
use crate::api_error::{ApiError, Kind};
use crate::connections::{accept, drained, drive, Activity, Holding, Rules};
use crate::metrics::InFlight;
use crate::stall::StallLimited;

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
    let activity = request.extensions().get::<Arc<Activity>>().cloned();
    let open = activity.as_ref().map(|a| a.begin());
    let authorized = match &state.key {
        None => true,
        Some(key) => key.accepts(request.headers().get("authorization").and_then(|v| v.to_str().ok())),
    };
    if authorized {
        if let Some(a) = &activity {
            a.authenticate();
        }
    }
    let response = if authorized || path == "/v2/health/live" {
        next.run(request).await
    } else {
        ApiError::new(Kind::Unauthorized, "missing or wrong API key: send Authorization: Bearer <key>").into_response()
    };
    let status = response.status().as_u16();
    let (model, version) = model_of(&path);
    let [model, version] = state.models.labels(model, version);
    state.metrics.requests.with_label_values(&[&model, &version, "http", &status.to_string()]).inc();
    tracing::info!(target: "access", "{method} {path} {status} {:.3} ms", start.elapsed().as_secs_f64() * 1e3);
    // In flight until its body has been sent: the drain waits for it.
    response.map(|body| axum::body::Body::new(Holding::new(body, (in_flight, open), activity.as_ref())))
}

/// The model and version a path names, for metric labels ("" for none).
fn model_of(path: &str) -> (&str, &str) {
    let mut parts = path.trim_start_matches('/').split('/');
    match (parts.next(), parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("v2"), Some("models"), Some(m), Some("versions"), Some(v)) => (m, v),
        (Some("v2"), Some("models"), Some(m), _, _) | (Some("classify"), Some(m), _, _, _) => (m, ""),
        _ => ("", ""),
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
/// gRPC) while it is open, and is watched by [`drive`] (`rules`).
#[allow(clippy::too_many_arguments)]
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    rules: Rules,
    key_required: bool,
    permits: Arc<Semaphore>,
    in_flight: prometheus::IntGauge,
    mut stop: watch::Receiver<bool>,
    drain: Duration,
) -> bool {
    let live = Arc::new(());
    while let Some(stream) = accept(&listener, &mut stop, "HTTP").await {
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            // Over the connection limit: a plain 503, then close.
            tokio::spawn(refuse(stream, limits.max_connections));
            continue;
        };
        let activity = Activity::new(key_required);
        let (router, tagged) = (router.clone(), activity.clone());
        // Every request carries its connection's activity to the guard.
        let service = tower::service_fn(move |mut request: Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(tagged.clone());
            tower::ServiceExt::oneshot(router.clone(), request)
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.read_timeout)
            .serve_connection(
                TokioIo::new(StallLimited::new(stream, limits.idle_timeout)),
                TowerToHyperService::new(service),
            );
        let (stop, live) = (stop.clone(), live.clone());
        tokio::spawn(async move {
            drive(connection, activity, rules, stop).await;
            drop((permit, live));
        });
    }
    drop(listener);
    tokio::time::timeout(drain, drained(&live, &in_flight)).await.is_ok()
}

async fn refuse(mut stream: tokio::net::TcpStream, limit: usize) {
    let body = format!("{{\"error\":\"too many connections (--max-connections {limit}); retry later\"}}");
    let reply = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(reply.as_bytes())).await;
}
