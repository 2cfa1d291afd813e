//! What every REST handler shares: the models, metrics, key and limits;
//! reading a body within the limits; errors as `{"error": …}` replies.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::serve::api_error::{ApiError, Kind};
use crate::serve::auth::ApiKey;
use crate::serve::budget::{Budget, Reserved};
use crate::serve::control::Registry;
use crate::serve::metrics::Metrics;
use crate::serve::model::ServedModel;

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
                let [c, h, w] = m.image;
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
/// tritonclient's `request_compression_algorithm` sends it: on a blocking
/// thread, and within `limit` again once inflated.
///
/// Its bytes are reserved in the server's budget (`budget.rs`) before they
/// are read, and stay reserved while the returned [`Reserved`] lives.
pub async fn read_body(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
    limit: BodyLimit<'_>,
) -> Result<(bytes::Bytes, Reserved), ApiError> {
    let limits = &state.limits;
    let encoding = match headers.get(header::CONTENT_ENCODING).map(|v| v.to_str().map(str::trim)) {
        None | Some(Ok("" | "identity")) => None,
        Some(Ok(e)) if e.eq_ignore_ascii_case("gzip") || e.eq_ignore_ascii_case("x-gzip") => Some(Encoding::Gzip),
        Some(Ok(e)) if e.eq_ignore_ascii_case("deflate") => Some(Encoding::Deflate),
        Some(v) => {
            let shown = v.map_or_else(|_| "(not text)".to_string(), |v| format!("{v:?}"));
            return Err(ApiError::new(
                Kind::UnsupportedEncoding,
                format!("Content-Encoding {shown} is not supported: send gzip, deflate or identity"),
            ));
        }
    };
    // Without a length (chunked), the most it may be.
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.trim().parse::<usize>().ok())
        .unwrap_or(limit.bytes);
    if declared > limit.bytes {
        return Err(limit.too_large(""));
    }
    let mut reserved = state.budget.reserve(declared)?;
    let raw = read_raw(limits, body, limit).await?;
    let Some(encoding) = encoding else { return Ok((raw, reserved)) };
    let max = limit.bytes;
    let inflated = tokio::task::spawn_blocking(move || inflate(&raw, encoding, max))
        .await
        .map_err(|e| ApiError::new(Kind::Internal, format!("inflating the body failed: {e}")))??;
    if inflated.len() > max {
        return Err(limit.too_large(" once inflated"));
    }
    reserved.add(state.budget.reserve(inflated.len())?);
    Ok((inflated, reserved))
}

#[derive(Debug, Clone, Copy)]
enum Encoding {
    Gzip,
    Deflate,
}

impl Encoding {
    fn name(self) -> &'static str {
        match self {
            Encoding::Gzip => "gzip",
            Encoding::Deflate => "deflate",
        }
    }
}

/// The inflated body, inflated no further than one byte past `max`.
fn inflate(raw: &[u8], encoding: Encoding, max: usize) -> Result<bytes::Bytes, ApiError> {
    use std::io::Read;
    let reader: Box<dyn Read> = match encoding {
        Encoding::Gzip => Box::new(flate2::read::MultiGzDecoder::new(raw)),
        Encoding::Deflate => Box::new(flate2::read::ZlibDecoder::new(raw)),
    };
    let mut out = Vec::new();
    reader
        .take(max as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| ApiError::bad(format!("the {} body does not inflate: {e}", encoding.name())))?;
    Ok(out.into())
}

/// Reads a request body as sent, within `limit` and `--read-timeout`.
async fn read_raw(limits: &Limits, body: Body, limit: BodyLimit<'_>) -> Result<bytes::Bytes, ApiError> {
    use http_body_util::{BodyExt, LengthLimitError, Limited};
    let too_large = || limit.too_large("");
    let collected = tokio::time::timeout(limits.read_timeout, Limited::new(body, limit.bytes).collect()).await;
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
