//! The batching queue: requests for one model wait in a bounded channel and
//! run as one ONNX Runtime batch on session threads of their own, never on
//! the async runtime's.
//!
//! - A front end submits an [`Entry`] (its images and a oneshot sender) and
//!   awaits the answer; a full queue refuses at once ([`Refused::Full`],
//!   503), so memory stays bounded; a queue whose session threads are gone
//!   says so ([`Refused::Stopped`]) and the model is no longer ready.
//! - A batch that fails — an error from ONNX Runtime, or a panic on the
//!   session thread — answers every request it held with the failure (500);
//!   the thread goes on with the next batch, so one failure never wedges
//!   the model.
//! - Each session thread takes the next entry, then everything else queued,
//!   up to `max_batch` images: when a session is free whatever is waiting
//!   runs at once, so a lone client waits for nobody. `max_queue_delay`
//!   may hold the first entry back for more.
//! - An entry whose receiver is gone (its client left) is skipped before it
//!   runs; so is one whose deadline (the request's `timeout`) has passed,
//!   answered [`Failure::Expired`].
//! - Rows go back to their own request, in order.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::thread::JoinHandle;
use std::time::Instant;

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TrySendError};
use tokio::sync::oneshot;

use super::metrics::QueueMetrics;
use super::model_config::Batching;
use infer::session::ModelSession;

/// One output's rows for one request: `[n, …]` row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputRows {
    pub name: String,
    pub shape: Vec<i64>,
    pub data: Vec<f32>,
}

/// What a request gets back: every output of the model, in its order.
pub type Reply = Result<Vec<OutputRows>, Failure>;

/// Why a request got no rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Its deadline (the request's `timeout`) passed while it was queued.
    Expired,
    /// Its batch failed: ONNX Runtime's error, or a panic.
    Failed(String),
}

/// A request waiting for a batch.
#[derive(Debug)]
pub struct Entry {
    /// `n` images as the model's own input values (its layout; its
    /// element's values, exact as float32).
    pub images: Vec<f32>,
    pub n: usize,
    pub reply: oneshot::Sender<Reply>,
    pub enqueued: Instant,
    /// Dropped, answered [`Failure::Expired`], if still queued then.
    pub deadline: Option<Instant>,
}

/// Why a request was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// `max_queue` requests are waiting.
    Full,
    /// No session thread takes requests any more (the queue was closed, or
    /// its threads ended).
    Stopped,
}

/// The sending side of one model's queue; cloned by every front end.
#[derive(Debug)]
pub struct Queue {
    tx: Option<Sender<Entry>>,
    threads: Vec<JoinHandle<()>>,
    metrics: QueueMetrics,
}

impl Queue {
    /// Starts one thread per session; each runs batches until the queue is
    /// closed and drained.
    pub fn start(model: &str, sessions: Vec<ModelSession>, batching: &Batching, metrics: &QueueMetrics) -> Queue {
        let (tx, rx) = bounded::<Entry>(batching.max_queue.max(1));
        let threads = sessions
            .into_iter()
            .enumerate()
            .map(|(i, session)| {
                let worker = Worker {
                    session,
                    rx: rx.clone(),
                    batching: batching.clone(),
                    metrics: metrics.clone(),
                    carried: None,
                };
                std::thread::Builder::new()
                    .name(format!("session-{model}-{i}"))
                    .spawn(move || worker.run())
                    .expect("spawn a session thread")
            })
            .collect();
        Queue { tx: Some(tx), threads, metrics: metrics.clone() }
    }

    /// Queues `n` images; the receiver gets their rows.
    pub fn submit(&self, images: Vec<f32>, n: usize) -> Result<oneshot::Receiver<Reply>, Refused> {
        self.submit_until(images, n, None)
    }

    /// Queues `n` images that must start running before `deadline`, if
    /// one is given (Triton's `timeout`); the receiver gets their rows.
    pub fn submit_until(
        &self,
        images: Vec<f32>,
        n: usize,
        deadline: Option<Instant>,
    ) -> Result<oneshot::Receiver<Reply>, Refused> {
        let (reply, rx) = oneshot::channel();
        let entry = Entry { images, n, reply, enqueued: Instant::now(), deadline };
        let tx = self.tx.as_ref().ok_or(Refused::Stopped)?;
        match tx.try_send(entry) {
            Ok(()) => {
                self.metrics.queue_depth.set(tx.len() as i64);
                Ok(rx)
            }
            Err(TrySendError::Full(_)) => Err(Refused::Full),
            Err(TrySendError::Disconnected(_)) => Err(Refused::Stopped),
        }
    }

    /// Whether a session thread still takes requests: what readiness reports.
    pub fn serving(&self) -> bool {
        self.tx.is_some() && self.threads.iter().any(|t| !t.is_finished())
    }

    /// Stops taking requests, lets the sessions answer every queued one,
    /// and waits for their threads.
    pub fn close(&mut self) {
        self.tx.take();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        self.close();
    }
}

struct Worker {
    session: ModelSession,
    rx: Receiver<Entry>,
    batching: Batching,
    metrics: QueueMetrics,
    /// An entry taken that did not fit the last batch: the next one's first.
    carried: Option<Entry>,
}

impl Worker {
    fn run(mut self) {
        let mut images = Vec::new();
        while let Some(batch) = self.next_batch() {
            let n: usize = batch.iter().map(|e| e.n).sum();
            self.metrics.batch_size.observe(n as f64);
            self.metrics.queue_depth.set(self.rx.len() as i64);
            let now = Instant::now();
            for e in &batch {
                self.metrics.queue_time.observe((now - e.enqueued).as_secs_f64());
            }
            // A panic here (ours or a library's) must not take the thread,
            // and the requests it holds, with it.
            let rows = std::panic::catch_unwind(AssertUnwindSafe(|| self.rows(&batch, n, &mut images))).unwrap_or_else(
                |panic| {
                    let why = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "unknown".into());
                    Err(format!("the session thread failed on this batch (panic: {why})"))
                },
            );
            match rows {
                Ok(rows) => {
                    for (e, rows) in batch.into_iter().zip(rows) {
                        let _ = e.reply.send(Ok(rows));
                    }
                }
                Err(err) => {
                    for e in batch {
                        let _ = e.reply.send(Err(Failure::Failed(err.clone())));
                    }
                }
            }
        }
    }

    /// Runs the batch (`n` images in all) and cuts every output into each
    /// request's rows, in order.
    fn rows(&mut self, batch: &[Entry], n: usize, images: &mut Vec<f32>) -> Result<Vec<Vec<OutputRows>>, String> {
        fault_point();
        let per_image = self.session.channels * self.session.height * self.session.width;
        // One request: its own buffer; several: one buffer of n images.
        let result = if batch.len() == 1 {
            self.session.run_values(&batch[0].images, n)
        } else {
            images.clear();
            images.reserve(n * per_image);
            for e in batch {
                images.extend_from_slice(&e.images);
            }
            self.session.run_values(images, n)
        };
        let outputs = result.map_err(|e| e.to_string())?;
        let mut first = 0;
        Ok(batch
            .iter()
            .map(|e| {
                let rows = outputs
                    .iter()
                    .map(|o| {
                        let rows = o.rows();
                        let data = rows.slice(ndarray::s![first..first + e.n, ..]).iter().copied().collect();
                        let mut shape: Vec<i64> = o.values.shape().iter().map(|&d| d as i64).collect();
                        shape[0] = e.n as i64;
                        OutputRows { name: o.name.clone(), shape, data }
                    })
                    .collect();
                first += e.n;
                rows
            })
            .collect())
    }

    /// The next batch: the first live entry, then whatever else is queued
    /// (or arrives within `max_queue_delay`) up to `max_batch` images.
    /// `None` once the queue is closed and empty.
    fn next_batch(&mut self) -> Option<Vec<Entry>> {
        let first = loop {
            let e = match self.carried.take() {
                Some(e) => e,
                None => self.rx.recv().ok()?,
            };
            if let Some(e) = self.admit(e) {
                break e;
            }
        };
        let mut n = first.n;
        let deadline = first.enqueued + self.batching.max_queue_delay;
        let mut batch = vec![first];
        while self.batching.across_requests && n < self.batching.max_batch {
            let next = match self.rx.try_recv() {
                Ok(e) => e,
                Err(_) if Instant::now() < deadline => match self.rx.recv_deadline(deadline) {
                    Ok(e) => e,
                    Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                },
                Err(_) => break,
            };
            let Some(next) = self.admit(next) else { continue };
            if n + next.n > self.batching.max_batch {
                self.carried = Some(next);
                break;
            }
            n += next.n;
            batch.push(next);
        }
        Some(batch)
    }

    /// `e`, if anyone still waits for it and its deadline has not passed;
    /// counts the ones dropped, and tells an expired one why.
    fn admit(&self, e: Entry) -> Option<Entry> {
        if e.reply.is_closed() {
            self.metrics.dropped.inc();
            return None;
        }
        if e.deadline.is_some_and(|d| Instant::now() >= d) {
            self.metrics.dropped.inc();
            let _ = e.reply.send(Err(Failure::Expired));
            return None;
        }
        Some(e)
    }
}

/// `INFER_FAULT=session-panic@N`: the process's Nth batch (from 1) panics
/// on its session thread, for the test that a panic answers 500 and the
/// model keeps serving. Unset: nothing.
/// The variable is read once per process, not on every batch.
fn fault_point() {
    static AT: OnceLock<Option<usize>> = OnceLock::new();
    static BATCHES: AtomicUsize = AtomicUsize::new(0);
    let at = AT
        .get_or_init(|| std::env::var("INFER_FAULT").ok()?.strip_prefix("session-panic@").and_then(|n| n.parse().ok()));
    let Some(at) = *at else { return };
    let batch = BATCHES.fetch_add(1, Ordering::Relaxed) + 1;
    if batch == at {
        panic!("INFER_FAULT session-panic@{batch}");
    }
}
