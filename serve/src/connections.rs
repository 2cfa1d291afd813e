//! What both faces do with their connections: accept until told to stop;
//! watch each one ([`Activity`], [`drive`]) so that no client can hold a
//! connection, its slot under `--max-connections` or the bytes its answers
//! reserved for longer than a limit says; keep a request in flight until
//! its answer's body is sent ([`Holding`]); and, once draining, wait until
//! no request has been in flight for a moment (connections without one are
//! then cut rather than waited for: one that never sends a request would
//! hold the drain).

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper_util::server::graceful::GracefulConnection;

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
/// dropped with its connection, and tells its connection's [`Activity`]
/// each time a frame of it moves (a client that takes none stalls).
pub struct Holding<B, T> {
    body: B,
    answer: Answering,
    _held: T,
}

impl<B, T> Holding<B, T> {
    pub fn new(body: B, held: T, activity: Option<&Arc<Activity>>) -> Holding<B, T> {
        Holding { body, answer: Answering::start(activity), _held: held }
    }
}

impl<B: http_body::Body + Unpin, T: Unpin> http_body::Body for Holding<B, T> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let poll = Pin::new(&mut self.body).poll_frame(cx);
        if poll.is_ready() {
            self.answer.moved();
        }
        poll
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// What one connection is doing, as its requests and answers tell it;
/// [`drive`] reads it to decide when the connection has had enough.
#[derive(Debug)]
pub struct Activity {
    opened: Instant,
    /// Whether a request on it carried the API key (always, without one).
    authenticated: AtomicBool,
    /// Requests and calls begun and not yet answered in full.
    open: AtomicUsize,
    /// Answers produced and not yet sent in full.
    answering: AtomicUsize,
    /// Milliseconds since `opened`: the last request begun or ended.
    last_request: AtomicU64,
    /// Milliseconds since `opened`: the last time an answer's frame moved
    /// (or the first answer began after none).
    last_sent: AtomicU64,
}

impl Activity {
    pub fn new(key_required: bool) -> Arc<Activity> {
        Arc::new(Activity {
            opened: Instant::now(),
            authenticated: AtomicBool::new(!key_required),
            open: AtomicUsize::new(0),
            answering: AtomicUsize::new(0),
            last_request: AtomicU64::new(0),
            last_sent: AtomicU64::new(0),
        })
    }

    fn now(&self) -> u64 {
        self.opened.elapsed().as_millis() as u64
    }

    /// A request carried the key.
    pub fn authenticate(&self) {
        self.authenticated.store(true, Ordering::Relaxed);
    }

    /// A request begins; it counts until the guard is dropped.
    pub fn begin(self: &Arc<Self>) -> Request {
        self.open.fetch_add(1, Ordering::Relaxed);
        self.last_request.store(self.now(), Ordering::Relaxed);
        Request(self.clone())
    }

    /// Why the connection should go now, if it should: see [`Rules`].
    fn verdict(&self, rules: &Rules, draining: bool) -> Option<Verdict> {
        let now = self.now();
        let since = |at: &AtomicU64| Duration::from_millis(now.saturating_sub(at.load(Ordering::Relaxed)));
        let stall = if draining { rules.stall.min(rules.drain_stall) } else { rules.stall };
        if self.answering.load(Ordering::Relaxed) > 0 && since(&self.last_sent) >= stall {
            return Some(Verdict::Stalled);
        }
        if !self.authenticated.load(Ordering::Relaxed) && self.opened.elapsed() >= rules.unauthenticated {
            return Some(Verdict::Unauthenticated);
        }
        if self.open.load(Ordering::Relaxed) == 0 && since(&self.last_request) >= rules.idle {
            return Some(Verdict::Idle);
        }
        None
    }
}

/// A request in its connection's [`Activity`] until dropped.
#[derive(Debug)]
pub struct Request(Arc<Activity>);

impl Drop for Request {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
        self.0.last_request.store(self.0.now(), Ordering::Relaxed);
    }
}

/// One answer being sent, in its connection's [`Activity`] until dropped.
struct Answering(Option<Arc<Activity>>);

impl Answering {
    fn start(activity: Option<&Arc<Activity>>) -> Answering {
        if let Some(a) = activity {
            if a.answering.fetch_add(1, Ordering::Relaxed) == 0 {
                a.last_sent.store(a.now(), Ordering::Relaxed);
            }
        }
        Answering(activity.cloned())
    }

    fn moved(&self) {
        if let Some(a) = &self.0 {
            a.last_sent.store(a.now(), Ordering::Relaxed);
        }
    }
}

impl Drop for Answering {
    fn drop(&mut self) {
        if let Some(a) = &self.0 {
            a.last_sent.store(a.now(), Ordering::Relaxed);
            a.answering.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// How long a connection may go on doing what.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    /// An answer whose frames do not move for this long (its client reads
    /// nothing, or announced a flow-control window of 0) closes the
    /// connection, and what its requests held is given back: `--idle-timeout`.
    pub stall: Duration,
    /// The same once draining: the drain must end within `--drain-timeout`.
    pub drain_stall: Duration,
    /// With no request open for this long, the connection is told to go
    /// (GOAWAY, or a close between HTTP/1.1 requests): `--idle-timeout`.
    pub idle: Duration,
    /// With `--api-key`, a connection that has not sent the key in this
    /// long is told to go, whatever keyless calls (liveness) it makes:
    /// `--read-timeout`.
    pub unauthenticated: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Stalled,
    Unauthenticated,
    Idle,
}

/// After being told to go (GOAWAY, or a close once the request in hand is
/// answered), how long a connection with no request open has to close
/// itself before it is cut.
const GRACE: Duration = Duration::from_millis(500);

/// Runs one connection until it ends, is cut by [`Rules`], or the drain:
/// on `stop` (and on an idle or unauthenticated verdict) it is shut down
/// gracefully, its requests in hand answered; a stalled one is dropped at
/// once, which closes its socket and frees everything its requests held.
pub async fn drive<C: GracefulConnection>(
    connection: C,
    activity: Arc<Activity>,
    rules: Rules,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut connection = std::pin::pin!(connection);
    let tick = (rules.stall.min(rules.idle).min(rules.unauthenticated) / 8)
        .clamp(Duration::from_millis(20), Duration::from_millis(250));
    let mut ticks = tokio::time::interval(tick);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut draining = false;
    // When it was told to go, and why.
    let mut told: Option<(Instant, Option<Verdict>)> = None;
    loop {
        tokio::select! {
            _ = connection.as_mut() => return,
            _ = stopped(&mut stop), if !draining => {
                draining = true;
                if told.is_none() {
                    connection.as_mut().graceful_shutdown();
                    told = Some((Instant::now(), None));
                }
            }
            _ = ticks.tick() => {
                let verdict = activity.verdict(&rules, draining);
                if verdict == Some(Verdict::Stalled) {
                    tracing::warn!("connection closed: an answer's client took none of it for {:?}", rules.stall);
                    return;
                }
                if told.is_none() && verdict.is_some() {
                    connection.as_mut().graceful_shutdown();
                    told = Some((Instant::now(), verdict));
                }
                if let Some((at, why)) = told {
                    // Keyless calls (liveness) do not keep an unauthenticated connection open.
                    let done = activity.open.load(Ordering::Relaxed) == 0 || why == Some(Verdict::Unauthenticated);
                    if done && at.elapsed() >= GRACE {
                        return;
                    }
                }
            }
        }
    }
}

/// Resolves once every connection `live` counted has ended (each holds a
/// clone of it), or none has had a request in flight for a moment.
pub async fn drained(live: &Arc<()>, in_flight: &IntGauge) {
    let all_closed = async {
        while Arc::strong_count(live) > 1 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::select! {
        _ = all_closed => {}
        _ = quiet(in_flight) => {}
    }
}
