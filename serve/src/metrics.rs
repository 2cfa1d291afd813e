//! What `/metrics` shows, in Prometheus text format: requests by model,
//! version, protocol and status; histograms of request latency, queue time and
//! batch size, by model and version; requests in flight; queue depth;
//! requests dropped because their client left; model loads and whether
//! they failed. Each figure is recorded where its event happens (the front
//! ends, the queue's sessions, model control).

use prometheus::{
    exponential_buckets, Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// The series a model's queue records into.
#[derive(Debug, Clone)]
pub struct QueueMetrics {
    pub batch_size: Histogram,
    pub queue_time: Histogram,
    pub queue_depth: IntGauge,
    pub dropped: IntCounter,
}

#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub latency: HistogramVec,
    pub queue_time: HistogramVec,
    pub batch_size: HistogramVec,
    pub in_flight: IntGauge,
    pub queue_depth: IntGaugeVec,
    pub dropped: IntCounterVec,
    pub loads: IntCounterVec,
}

impl Metrics {
    pub fn new(max_batch: usize) -> Metrics {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("infer_requests_total", "Requests answered, by model, version, protocol and status code"),
            &["model", "version", "protocol", "status"],
        )
        .expect("metric");
        // 50 µs … ~3.3 s.
        let seconds = exponential_buckets(50e-6, 2.0, 17).expect("buckets");
        let latency = HistogramVec::new(
            HistogramOpts::new("infer_request_duration_seconds", "Time from a request's body read to its answer")
                .buckets(seconds.clone()),
            &["model", "version"],
        )
        .expect("metric");
        let queue_time = HistogramVec::new(
            HistogramOpts::new("infer_queue_duration_seconds", "Time a request waited in its model's queue")
                .buckets(seconds),
            &["model", "version"],
        )
        .expect("metric");
        let sizes = (0..).map(|p| (1u64 << p) as f64).take_while(|&s| s <= (max_batch.max(1) * 2) as f64).collect();
        let batch_size = HistogramVec::new(
            HistogramOpts::new("infer_batch_size", "Images in each ONNX Runtime run").buckets(sizes),
            &["model", "version"],
        )
        .expect("metric");
        let in_flight =
            IntGauge::new("infer_requests_in_flight", "Requests and gRPC calls being answered").expect("metric");
        let queue_depth = IntGaugeVec::new(
            Opts::new("infer_queue_depth", "Requests waiting in a model's queue"),
            &["model", "version"],
        )
        .expect("metric");
        let dropped = IntCounterVec::new(
            Opts::new("infer_requests_dropped_total", "Queued requests skipped because their client left"),
            &["model", "version"],
        )
        .expect("metric");
        let loads = IntCounterVec::new(
            Opts::new("infer_model_loads_total", "Model loads and reloads, by model and result (ok, failed)"),
            &["model", "result"],
        )
        .expect("metric");
        for m in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(latency.clone()),
            Box::new(queue_time.clone()),
            Box::new(batch_size.clone()),
            Box::new(in_flight.clone()),
            Box::new(queue_depth.clone()),
            Box::new(dropped.clone()),
            Box::new(loads.clone()),
        ] {
            registry.register(m).expect("metric names are unique");
        }
        Metrics { registry, requests, latency, queue_time, batch_size, in_flight, queue_depth, dropped, loads }
    }

    /// One model version's series of the queue's metrics, looked up once
    /// rather than on every batch.
    pub fn queue(&self, model: &str, version: &str) -> QueueMetrics {
        let labels = [model, version];
        QueueMetrics {
            batch_size: self.batch_size.with_label_values(&labels),
            queue_time: self.queue_time.with_label_values(&labels),
            queue_depth: self.queue_depth.with_label_values(&labels),
            dropped: self.dropped.with_label_values(&labels),
        }
    }

    /// An unloaded version's queue depth leaves `/metrics` (its counters
    /// and histograms stay: they are totals).
    pub fn retire(&self, model: &str, version: &str) {
        let _ = self.queue_depth.remove_label_values(&[model, version]);
    }

    /// Everything, in Prometheus' text exposition format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out).expect("text encoding");
        String::from_utf8(out).expect("utf-8")
    }
}

/// One request in the in-flight gauge, for as long as it lives: also when
/// its client leaves and the server drops the request's future.
#[derive(Debug)]
pub struct InFlight(IntGauge);

impl InFlight {
    pub fn enter(gauge: &IntGauge) -> InFlight {
        gauge.inc();
        InFlight(gauge.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}
