//! The gRPC face's connections, driven here rather than by tonic's
//! `Server`, so that its limits hold before a request costs anything:
//!
//! - the connection counts against `--max-connections` (shared with REST);
//!   one more is closed at once;
//! - the HTTP/2 preface must arrive within `--read-timeout`, and a
//!   connection that has not sent it is dropped the moment the drain starts
//!   (an idle socket used to hold SIGTERM for the whole `--drain-timeout`);
//! - at most `--max-streams` calls at once per connection (HTTP/2's
//!   SETTINGS_MAX_CONCURRENT_STREAMS), keep-alive pings drop dead peers;
//! - each connection is watched (`connections::drive`): an answer whose
//!   client takes none of it for `--idle-timeout` (a flow-control window
//!   of 0, a socket never read) closes the connection and frees what its
//!   calls held; no call for `--idle-timeout` gets GOAWAY; with
//!   `--api-key`, a connection that has not sent the key within
//!   `--read-timeout` gets GOAWAY, whatever liveness calls it makes;
//! - the API key is checked on the call's headers, before its message is
//!   read or decoded;
//! - a call's message is read here, within `--read-timeout` and a size
//!   its call sets (4 KiB for health and metadata calls, which carry none
//!   in Triton's clients; for ModelInfer what the named model's largest
//!   batch needs), each frame reserved in the server's budget as it
//!   arrives (`budget.rs`); a compressed one is inflated here too, off the
//!   I/O threads and reserved as it grows (`inflate.rs`), so tonic only
//!   ever sees one plain message;
//! - a call has `6 × --read-timeout` to finish, reading included.
//!
//! The drain sends GOAWAY to every connection and ends when they have
//! closed, or as soon as no call has been in flight for a moment: idle
//! clients that do not answer GOAWAY are then cut, having nothing to lose.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::http;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tonic::body::Body;

use super::api_error::{ApiError, Kind};
use super::auth::ApiKey;
use super::budget::{collect, Budget, Collect, Reserved};
use super::connections::{accept, drained, drive, stopped, Activity, Holding, Rules};
use super::control::Registry;
use super::grpc::GrpcService;
use super::inflate::{inflate, Encoding, Inflate};
use super::metrics::{InFlight, Metrics};
use super::model::ServedModel;
use super::proto::grpc_inference_service_server::GrpcInferenceServiceServer;
use super::stall::StallLimited;

/// What HTTP/2 begins with (RFC 9113, section 3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The most a call that carries no tensors may send: health, metadata,
/// index and unload requests hold a name and a version at most.
pub const SMALL_MESSAGE: usize = 4 << 10;

/// The most a load request may send: its `config` parameter, a model
/// configuration in JSON.
pub const LOAD_MESSAGE: usize = 1 << 20;

/// A gRPC message's frame header: a compressed flag and a 4-byte length.
const FRAME_HEADER: usize = 5;

/// The limits of the gRPC face.
#[derive(Debug, Clone, Copy)]
pub struct GrpcLimits {
    /// `--max-body`: no message is larger, whatever its model.
    pub max_message: usize,
    /// For the preface and a call's message; a call gets six times this.
    pub read_timeout: Duration,
    pub max_streams: u32,
}

/// Everything a call passes through before tonic decodes it.
#[derive(Debug)]
struct Gate {
    key: Option<ApiKey>,
    metrics: Metrics,
    models: Arc<Registry>,
    limits: GrpcLimits,
    call_timeout: Duration,
    budget: Budget,
}

/// Serves gRPC on `listener` until `stop` turns true, then drains (see the
/// module's comment). Returns when the drain has finished; the caller
/// bounds it with `--drain-timeout`.
#[allow(clippy::too_many_arguments)]
pub async fn serve(
    listener: TcpListener,
    service: GrpcService,
    limits: GrpcLimits,
    rules: Rules,
    connections: Arc<Semaphore>,
    key: Option<ApiKey>,
    budget: Budget,
    mut stop: watch::Receiver<bool>,
) {
    let (metrics, models) = (service.metrics.clone(), service.models.clone());
    // Messages reach tonic plain (inflated by the gate), and within the
    // limits the gate checked; --max-body stays as a backstop.
    let inner = GrpcInferenceServiceServer::new(service)
        .max_decoding_message_size(limits.max_message)
        .max_encoding_message_size(limits.max_message);
    let key_required = key.is_some();
    let call_timeout = limits.read_timeout.max(Duration::from_secs(1)) * 6;
    let gate = Arc::new(Gate { key, metrics, models, limits, call_timeout, budget });
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_streams)
        .keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(20))
        .max_header_list_size(64 * 1024);
    let live = Arc::new(());
    while let Some(stream) = accept(&listener, &mut stop, "gRPC").await {
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            tracing::warn!("gRPC connection refused: over --max-connections");
            continue; // dropped: closed
        };
        let (builder, gate, inner, live) = (builder.clone(), gate.clone(), inner.clone(), live.clone());
        let (mut stop, read_timeout) = (stop.clone(), limits.read_timeout);
        tokio::spawn(async move {
            let _held = (permit, live);
            // Not a byte of HTTP/2 is parsed, nor a connection watched for
            // the drain, before the preface is in.
            tokio::select! {
                _ = stopped(&mut stop) => return,
                arrived = preface(&stream, read_timeout) => if !arrived { return },
            }
            let activity = Activity::new(key_required);
            let service = TowerToHyperService::new(Gated { inner, gate, activity: activity.clone() });
            let io = TokioIo::new(StallLimited::new(stream, rules.stall));
            drive(builder.serve_connection(io, service), activity, rules, stop).await;
        });
    }
    drop(listener);
    drained(&live, &gate.metrics.in_flight).await;
}

/// Whether the HTTP/2 preface arrives within `timeout` (looked at, not
/// consumed: hyper reads it again).
async fn preface(stream: &TcpStream, timeout: Duration) -> bool {
    let wait = async {
        let mut buf = [0u8; PREFACE.len()];
        loop {
            match stream.peek(&mut buf).await {
                Ok(0) | Err(_) => return false,
                Ok(n) if buf[..n] != PREFACE[..n] => return false,
                Ok(n) if n == PREFACE.len() => return true,
                // Part of it: wait for more to come.
                Ok(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    };
    tokio::time::timeout(timeout, wait).await.unwrap_or(false)
}

/// The most a ModelInfer message for `model` can need: its largest batch
/// as 4-byte values (raw contents or packed FP32, the widest it takes),
/// plus 64 KiB for the
/// rest of the message; never over `--max-body`.
pub fn infer_message_limit(model: &ServedModel, max_body: usize) -> usize {
    let [c, h, w] = model.form.image;
    (model.batching.max_batch * c * h * w).saturating_mul(4).saturating_add(64 << 10).min(max_body)
}

impl Gate {
    /// The most call `rpc` may send, before its message names a model.
    fn message_limit(&self, rpc: &str) -> usize {
        let limit = match rpc {
            "ModelInfer" => {
                let models = self.models.snapshot();
                let largest = models.by_name.values().flat_map(|v| v.values());
                largest.map(|m| infer_message_limit(m, self.limits.max_message)).max().unwrap_or(SMALL_MESSAGE)
            }
            "RepositoryModelLoad" => LOAD_MESSAGE,
            _ => SMALL_MESSAGE,
        };
        limit.min(self.limits.max_message)
    }

    /// The limit of the model a ModelInfer message names in its first
    /// field (Triton's clients write `model_name`, field 1, first).
    fn named_limit(&self, message: &[u8]) -> Option<usize> {
        let name = first_string_field(message)?;
        let model = self.models.get(name, "").ok()?;
        Some(infer_message_limit(&model, self.limits.max_message))
    }

    fn refuse(&self, rpc: &str, start: Instant, status: tonic::Status) -> http::Response<Body> {
        let code = format!("{:?}", status.code());
        self.metrics.requests.with_label_values(&["", "", "grpc", &code]).inc();
        tracing::info!(target: "access", "gRPC {} - {code} {:.3} ms", rpc.escape_debug(),
            start.elapsed().as_secs_f64() * 1e3);
        status.into_http()
    }
}

/// Field 1 of a protobuf message, when it comes first and is a string.
fn first_string_field(message: &[u8]) -> Option<&str> {
    let (&tag, rest) = message.split_first()?;
    if tag != 0x0a {
        return None;
    }
    let (mut len, mut shift, mut used) = (0usize, 0u32, 0usize);
    for &b in rest.iter().take(5) {
        len |= ((b & 0x7f) as usize) << shift;
        used += 1;
        if b & 0x80 == 0 {
            return std::str::from_utf8(rest.get(used..used + len)?).ok();
        }
        shift += 7;
    }
    None
}

/// tonic's service behind the gate: the key, the message's size, budget
/// and encoding, the call's deadline, the in-flight gauge and the
/// connection's activity.
#[derive(Clone)]
struct Gated {
    inner: GrpcInferenceServiceServer<GrpcService>,
    gate: Arc<Gate>,
    activity: Arc<Activity>,
}

impl tower::Service<http::Request<Incoming>> for Gated {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // tonic's generated server is always ready.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Incoming>) -> Self::Future {
        let (inner, gate, activity) = (self.inner.clone(), self.gate.clone(), self.activity.clone());
        Box::pin(async move {
            let start = Instant::now();
            let open = activity.begin();
            // `/inference.GRPCInferenceService/ModelInfer` → `ModelInfer`.
            let rpc = request.uri().path().rsplit('/').next().unwrap_or("").to_string();
            if let Some(key) = &gate.key {
                let header = request.headers().get("authorization").and_then(|v| v.to_str().ok());
                if key.accepts(header) {
                    activity.authenticate();
                } else if rpc != "ServerLive" {
                    // The body is never read: dropping it resets the stream.
                    let status =
                        ApiError::new(Kind::Unauthorized, "missing or wrong API key: send authorization: Bearer <key>")
                            .grpc_status();
                    return Ok(gate.refuse(&rpc, start, status));
                }
            }
            let in_flight = InFlight::enter(&gate.metrics.in_flight);
            let (request, reserved) = match plain_message(&gate, &rpc, request).await {
                Ok(r) => r,
                Err(status) => return Ok(gate.refuse(&rpc, start, status)),
            };
            let mut inner = inner;
            match tokio::time::timeout(gate.call_timeout, tower::Service::call(&mut inner, request)).await {
                // Counted, and its bytes held, until its body has been sent.
                Ok(Ok(response)) => {
                    Ok(response.map(|body| Body::new(Holding::new(body, (in_flight, open, reserved), Some(&activity)))))
                }
                Ok(Err(never)) => match never {},
                Err(_) => {
                    let status = tonic::Status::deadline_exceeded(format!(
                        "the call did not finish within {} s (6 × --read-timeout)",
                        gate.call_timeout.as_secs_f64()
                    ));
                    Ok(gate.refuse(&rpc, start, status))
                }
            }
        })
    }
}

/// Reads the call's message within its limits (see the module's comment)
/// and hands it on plain: inflated if it came compressed, its
/// `grpc-encoding` header gone. Returns the request for tonic and the
/// bytes reserved for it.
async fn plain_message(
    gate: &Gate,
    rpc: &str,
    request: http::Request<Incoming>,
) -> Result<(http::Request<Full<bytes::Bytes>>, Reserved), tonic::Status> {
    let (mut parts, body) = request.into_parts();
    let encoding = match parts.headers.remove("grpc-encoding") {
        None => None,
        Some(v) => v.to_str().ok().and_then(|v| Encoding::from_header(v).ok()).ok_or_else(|| {
            tonic::Status::unimplemented(format!(
                "grpc-encoding {v:?} is not supported: send gzip, deflate or identity"
            ))
        })?,
    };
    let limit = gate.message_limit(rpc);
    let too_large = |limit: usize| {
        tonic::Status::resource_exhausted(format!("the {rpc} message is over {limit} bytes, the most it may be here"))
    };
    let named = |bytes: &[u8]| {
        // Only a plain ModelInfer message names its model readably.
        (rpc == "ModelInfer" && bytes.len() > FRAME_HEADER && bytes[0] == 0)
            .then(|| gate.named_limit(&bytes[FRAME_HEADER..]))
            .flatten()
            .map(|l| l + FRAME_HEADER)
    };
    let read = collect(body, limit + FRAME_HEADER, &gate.budget, named);
    let (wire, reserved) = match tokio::time::timeout(gate.limits.read_timeout, read).await {
        Err(_) => {
            return Err(tonic::Status::deadline_exceeded(format!(
                "the {rpc} message did not arrive within --read-timeout ({} s)",
                gate.limits.read_timeout.as_secs_f64()
            )))
        }
        Ok(Ok(bytes)) => bytes,
        Ok(Err(Collect::TooLarge)) => return Err(too_large(limit)),
        Ok(Err(Collect::Spent(e))) => return Err(e.grpc_status()),
        Ok(Err(Collect::Cut(e))) => return Err(tonic::Status::cancelled(format!("the {rpc} message was cut: {e}"))),
    };
    let compressed = wire.first() == Some(&1);
    if !compressed {
        return Ok((http::Request::from_parts(parts, Full::new(wire)), reserved));
    }
    let Some(encoding) = encoding else {
        return Err(tonic::Status::internal("a compressed message without grpc-encoding"));
    };
    let declared = wire.get(1..FRAME_HEADER).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize);
    if declared != Some(wire.len() - FRAME_HEADER) {
        return Err(tonic::Status::invalid_argument(format!(
            "the {rpc} request holds other than one whole message ({} bytes)",
            wire.len()
        )));
    }
    let (message, kept) = match inflate(wire.slice(FRAME_HEADER..), encoding, limit, &gate.budget).await {
        Ok(m) => m,
        Err(Inflate::TooLarge) => return Err(too_large(limit)),
        Err(Inflate::Spent(e)) => return Err(e.grpc_status()),
        Err(Inflate::Corrupt(e)) => {
            return Err(tonic::Status::invalid_argument(format!(
                "the {rpc} message does not inflate as {}: {e}",
                encoding.name()
            )))
        }
    };
    if rpc == "ModelInfer" {
        if let Some(l) = gate.named_limit(&message).filter(|&l| message.len() > l) {
            return Err(too_large(l));
        }
    }
    // The compressed bytes are gone: only the plain message stays reserved.
    drop((wire, reserved));
    let mut plain = bytes::BytesMut::with_capacity(FRAME_HEADER + message.len());
    plain.extend_from_slice(&[0]);
    plain.extend_from_slice(&(message.len() as u32).to_be_bytes());
    plain.extend_from_slice(&message);
    Ok((http::Request::from_parts(parts, Full::new(plain.freeze())), kept))
}

#[cfg(test)]
mod tests {
    use crate::grpc_transport::first_string_field;

    #[test]
    fn the_model_name_is_read_from_the_first_field() {
        assert_eq!(first_string_field(b"\x0a\x0aclassifier\x12\x01x"), Some("classifier"));
        assert_eq!(first_string_field(b"\x12\x01x\x0a\x01y"), None, "not first");
        assert_eq!(first_string_field(b"\x0a\x0aclass"), None, "cut short");
        let long = [&[0x0a, 0x80, 0x01][..], &[b'a'; 128][..]].concat();
        assert_eq!(first_string_field(&long).map(str::len), Some(128));
    }
}
