//! What every REST handler shares: the models, metrics, key and limits;
//! reading a body within the limits; errors as `{"error": …}` replies.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::api_error::{ApiError, Kind};
use crate::auth::ApiKey;
use crate::budget::{collect, Budget, Collect, Reserved};
use crate::control::Registry;
use crate::inflate::{inflate, Encoding, Inflate};
use crate::metrics::Metrics;
use crate::model::ServedModel;

/// What every HTTP handler shares.
#[derive(Debug, Clone)]
pub struct AppState {
    pub models: Arc<Registry>,
    pub metrics: Metrics,
    pub key: Option<ApiKey>,
    pub limits: Limits,
    /// Set when draining: readiness answers 503, new infers too.
    pub draining: Arc<AtomicBool>,
    /// Pictures being decoded (`--decode-threads`).
    pub decoders: Arc<tokio::sync::Semaphore>,
    /// Request bytes in flight, shared with gRPC (`--max-inflight-bytes`).
    pub budget: Budget,
}

/// Limits on what a client may send, and how slowly.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_body: usize,
    /// For a request's headers, and again for its body.
    pub read_timeout: Duration,
    /// How long a response may wait for the client to read it.
    pub idle_timeout: Duration,
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

/// The most a request body may hold: `--max-body`, or less for an infer
/// request (what its model's largest batch can need, `types::body_limit`).
/// Named in words only when a body is refused, not on every request.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit<'a> {
    pub bytes: usize,
    /// The model whose largest batch sets the limit; `None`: `--max-body`.
    pub model: Option<&'a ServedModel>,
}

impl BodyLimit<'_> {
    /// `--max-body`.
    pub fn flag(limits: &Limits) -> BodyLimit<'static> {
        BodyLimit { bytes: limits.max_body, model: None }
    }

    fn too_large(&self, suffix: &str) -> ApiError {
        let named = match self.model {
            None => format!("--max-body ({} bytes)", self.bytes),
            Some(m) => {
                let [c, h, w] = m.form.image;
                format!(
                    "{} bytes, the most model {:?} needs ({} images of {c}×{h}×{w} as JSON numbers, and 64 KiB)",
                    self.bytes, m.name, m.batching.max_batch
                )
            }
        };
        ApiError::new(Kind::TooLarge, format!("request body over {named}{suffix}"))
    }
}

/// Reads a request body within `limit` and `--read-timeout`, and
/// inflates it if its `Content-Encoding` is gzip or deflate (zlib), as
/// tritonclient's `request_compression_algorithm` sends it (`inflate.rs`:
/// on a blocking thread, within `limit` again once inflated).
///
/// Its bytes are reserved in the server's budget (`budget.rs`) as they
/// arrive, not as declared (a client that declares 64 MiB and sends
/// nothing holds nothing), and stay reserved while the returned
/// [`Reserved`] lives.
pub async fn read_body(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
    limit: BodyLimit<'_>,
) -> Result<(bytes::Bytes, Reserved), ApiError> {
    let limits = &state.limits;
    let encoding = match headers.get(header::CONTENT_ENCODING) {
        None => None,
        Some(v) => match v.to_str().map(Encoding::from_header) {
            Ok(Ok(e)) => e,
            _ => {
                let shown = v.to_str().map_or_else(|_| "(not text)".to_string(), |v| format!("{v:?}"));
                return Err(ApiError::new(
                    Kind::UnsupportedEncoding,
                    format!("Content-Encoding {shown} is not supported: send gzip, deflate or identity"),
                ));
            }
        },
    };
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.trim().parse::<usize>().ok());
    if declared.is_some_and(|d| d > limit.bytes) {
        return Err(limit.too_large(""));
    }
    let collected =
        tokio::time::timeout(limits.read_timeout, collect(body, limit.bytes, &state.budget, |_| None)).await;
    let (raw, reserved) = match collected {
        Err(_) => {
            return Err(ApiError::new(
                Kind::Timeout,
                format!("request body not received within --read-timeout ({} s)", limits.read_timeout.as_secs_f64()),
            ))
        }
        Ok(Ok(raw)) => raw,
        Ok(Err(Collect::TooLarge)) => return Err(limit.too_large("")),
        Ok(Err(Collect::Spent(e))) => return Err(e),
        Ok(Err(Collect::Cut(e))) => return Err(ApiError::bad(format!("request body cut short: {e}"))),
    };
    let Some(encoding) = encoding else { return Ok((raw, reserved)) };
    match inflate(raw, encoding, limit.bytes, &state.budget).await {
        // The compressed bytes are gone once inflated: only the inflated stay reserved.
        Ok((inflated, kept)) => Ok((inflated, kept)),
        Err(Inflate::TooLarge) => Err(limit.too_large(" once inflated")),
        Err(Inflate::Spent(e)) => Err(e),
        Err(Inflate::Corrupt(e)) => Err(ApiError::bad(format!("the {} body does not inflate: {e}", encoding.name()))),
    }
}

pub fn is_draining(state: &AppState) -> bool {
    state.draining.load(Ordering::Relaxed)
}

/// axum's `Path`, refusing a path that does not decode (bad percent
/// escapes, not UTF-8) with `{"error": …}` like every other refusal,
/// rather than axum's plain-text rejection.
#[derive(Debug)]
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Send> axum::extract::FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(t)) => Ok(Path(t)),
            Err(e) => Err(ApiError::bad(format!("the path {} does not decode: {}", parts.uri.path(), e.body_text()))),
        }
    }
}
