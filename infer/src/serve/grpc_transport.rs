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
//! - the API key is checked on the call's headers, before its message is
//!   read or decoded (tonic reserves the declared length as frames arrive);
//! - a call has `6 × --read-timeout` to finish, reading included;
//! - its message's bytes are reserved in the server's budget as they
//!   arrive (`budget.rs`), UNAVAILABLE when it is spent.
//!
//! The drain sends GOAWAY to every connection and ends when they have
//! closed, or as soon as no call has been in flight for a moment: idle
//! clients that do not answer GOAWAY are then cut, having nothing to lose.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::http;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tonic::body::Body;
use tonic::codec::CompressionEncoding;

use super::api_error::{ApiError, Kind};
use super::auth::ApiKey;
use super::budget::{Budget, Reserved};
use super::connections::{accept, quiet, stopped, Holding};
use super::grpc::GrpcService;
use super::metrics::{InFlight, Metrics};
use super::proto::grpc_inference_service_server::GrpcInferenceServiceServer;

/// What HTTP/2 begins with (RFC 9113, section 3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The limits of the gRPC face.
#[derive(Debug, Clone, Copy)]
pub struct GrpcLimits {
    pub max_message: usize,
    /// For the preface; a call gets six times this.
    pub read_timeout: Duration,
    pub max_streams: u32,
}

/// Everything a call passes through before tonic decodes it.
#[derive(Debug)]
struct Gate {
    key: Option<ApiKey>,
    metrics: Metrics,
    call_timeout: Duration,
    budget: Budget,
}

/// Serves gRPC on `listener` until `stop` turns true, then drains (see the
/// module's comment). Returns when the drain has finished; the caller
/// bounds it with `--drain-timeout`.
pub async fn serve(
    listener: TcpListener,
    service: GrpcService,
    limits: GrpcLimits,
    connections: Arc<Semaphore>,
    key: Option<ApiKey>,
    budget: Budget,
    mut stop: watch::Receiver<bool>,
) {
    let metrics = service.metrics.clone();
    // Compressed messages (tritonclient's compression_algorithm) are
    // inflated within the same message size.
    let inner = GrpcInferenceServiceServer::new(service)
        .accept_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Deflate)
        .max_decoding_message_size(limits.max_message)
        .max_encoding_message_size(limits.max_message);
    let gate =
        Arc::new(Gate { key, metrics, call_timeout: limits.read_timeout.max(Duration::from_secs(1)) * 6, budget });
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_streams)
        .keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(20))
        .max_header_list_size(64 * 1024);
    let graceful = GracefulShutdown::new();
    while let Some(stream) = accept(&listener, &mut stop, "gRPC").await {
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            tracing::warn!("gRPC connection refused: over --max-connections");
            continue; // dropped: closed
        };
        let (builder, graceful_watcher, gate, inner) =
            (builder.clone(), graceful.watcher(), gate.clone(), inner.clone());
        let (mut stop, read_timeout) = (stop.clone(), limits.read_timeout);
        tokio::spawn(async move {
            let _permit = permit;
            // Not a byte of HTTP/2 is parsed, nor a connection watched for
            // the drain, before the preface is in.
            tokio::select! {
                _ = stopped(&mut stop) => return,
                arrived = preface(&stream, read_timeout) => if !arrived { return },
            }
            let service = TowerToHyperService::new(Gated { inner, gate });
            let _ = graceful_watcher.watch(builder.serve_connection(TokioIo::new(stream), service)).await;
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = quiet(&gate.metrics.in_flight) => {}
    }
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

/// tonic's service behind the gate: the key, the call's deadline, the
/// in-flight gauge and the drain's count.
#[derive(Clone)]
struct Gated {
    inner: GrpcInferenceServiceServer<GrpcService>,
    gate: Arc<Gate>,
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
        let (mut inner, gate) = (self.inner.clone(), self.gate.clone());
        Box::pin(async move {
            let start = Instant::now();
            // `/inference.GRPCInferenceService/ModelInfer` → `ModelInfer`.
            let rpc = request.uri().path().rsplit('/').next().unwrap_or("").to_string();
            if let Some(key) = &gate.key {
                let header = request.headers().get("authorization").and_then(|v| v.to_str().ok());
                if rpc != "ServerLive" && !key.accepts(header) {
                    // The body is never read: dropping it resets the stream.
                    let status =
                        ApiError::new(Kind::Unauthorized, "missing or wrong API key: send authorization: Bearer <key>")
                            .grpc_status();
                    gate.metrics.requests.with_label_values(&["", "grpc", &format!("{:?}", status.code())]).inc();
                    tracing::info!(target: "access", "gRPC {rpc} - {:?} {:.3} ms", status.code(),
                        start.elapsed().as_secs_f64() * 1e3);
                    return Ok(status.into_http());
                }
            }
            let call = Call::enter(&gate);
            let budget = gate.budget.clone();
            let held = call.reserved.clone();
            let request = request.map(|body| Budgeted { body, budget, held });
            match tokio::time::timeout(gate.call_timeout, tower::Service::call(&mut inner, request)).await {
                // Counted until its body has been sent.
                Ok(Ok(response)) => Ok(response.map(|body| Body::new(Holding::new(body, call)))),
                Ok(Err(never)) => match never {},
                Err(_) => {
                    let status = tonic::Status::deadline_exceeded(format!(
                        "the call did not finish within {} s (6 × --read-timeout)",
                        gate.call_timeout.as_secs_f64()
                    ));
                    gate.metrics.requests.with_label_values(&["", "grpc", &format!("{:?}", status.code())]).inc();
                    Ok(status.into_http())
                }
            }
        })
    }
}

/// One call in flight: in the gauge (which the drain watches) until its
/// answer is sent, holding the bytes its message reserved.
struct Call {
    _in_flight: InFlight,
    reserved: Arc<Mutex<Reserved>>,
}

impl Call {
    fn enter(gate: &Gate) -> Call {
        Call { _in_flight: InFlight::enter(&gate.metrics.in_flight), reserved: Arc::default() }
    }
}

/// A call's request body, reserving each data frame's bytes in the budget
/// before tonic sees them.
struct Budgeted {
    body: Incoming,
    budget: Budget,
    held: Arc<Mutex<Reserved>>,
}

impl http_body::Body for Budgeted {
    type Data = bytes::Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let frame = match Pin::new(&mut self.body).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(Box::new(e)))),
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => return Poll::Pending,
        };
        if let Some(data) = frame.data_ref() {
            match self.budget.reserve(data.len()) {
                Ok(r) => self.held.lock().unwrap_or_else(|e| e.into_inner()).add(r),
                // tonic answers a body's Status as it is.
                Err(e) => return Poll::Ready(Some(Err(Box::new(e.grpc_status())))),
            }
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
