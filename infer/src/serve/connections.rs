//! What both faces do with their connections: accept until told to stop;
//! keep a request in flight until its answer's body is sent ([`Holding`]);
//! and, once draining, wait until no request has been in flight for a
//! moment (connections without one are then cut rather than waited for:
//! one that never sends a request would hold the drain).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use prometheus::IntGauge;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// How long no request may be in flight before the drain cuts the
/// connections left: time for the last answer's bytes to leave.
const QUIET: Duration = Duration::from_millis(200);

/// Resolves once `stop` turns true (or its sender is gone).
pub async fn stopped(stop: &mut watch::Receiver<bool>) {
    while !*stop.borrow_and_update() {
        if stop.changed().await.is_err() {
            return;
        }
    }
}

/// The next connection (no Nagle delay: answers are small), or `None` once
/// `stop` turns true. An accept that fails (out of file descriptors and the
/// like) is logged and retried after a pause.
pub async fn accept(listener: &TcpListener, stop: &mut watch::Receiver<bool>, face: &str) -> Option<TcpStream> {
    loop {
        tokio::select! {
            _ = stopped(stop) => return None,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    let _ = stream.set_nodelay(true);
                    return Some(stream);
                }
                Err(e) => {
                    tracing::warn!("{face} accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
}

/// Resolves once `in_flight` (every request and gRPC call until its answer
/// is sent) has stayed at zero for [`QUIET`].
pub async fn quiet(in_flight: &IntGauge) {
    let mut since: Option<Instant> = None;
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if in_flight.get() > 0 {
            since = None;
        } else if since.get_or_insert_with(Instant::now).elapsed() >= QUIET {
            return;
        }
    }
}

/// A response body that keeps `T` (the request's in-flight guard, and
/// whatever else the request holds) alive until the body has been sent or
/// dropped with its connection.
pub struct Holding<B, T> {
    body: B,
    _held: T,
}

impl<B, T> Holding<B, T> {
    pub fn new(body: B, held: T) -> Holding<B, T> {
        Holding { body, _held: held }
    }
}

impl<B: http_body::Body + Unpin, T: Unpin> http_body::Body for Holding<B, T> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
