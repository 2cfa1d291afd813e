//! The models being served: each version's contract (input, outputs,
//! class names), its configuration and batching, and its queue. Both front
//! ends resolve a model here and validate requests against it, so the HTTP
//! and gRPC faces accept and refuse exactly the same things.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::api_error::{ApiError, Kind};
use super::model_config::Batching;
use super::proto::ModelConfig;
use super::queue::{Failure, OutputRows, Queue, Refused};
use infer::session::{Element, InputForm, TensorSpec};

/// One version of one model, loaded, warmed up and queued.
#[derive(Debug)]
pub struct ServedModel {
    pub name: String,
    pub version: u64,
    pub config: ModelConfig,
    pub batching: Batching,
    pub input: TensorSpec,
    pub outputs: Vec<TensorSpec>,
    /// How pictures (`/classify`) become the input's values; its `image`
    /// is `[C, H, W]` of one image.
    pub form: InputForm,
    /// A name per class of the classifier's scores output (the metadata's,
    /// or the indices), as `infer classify` names them; empty without one.
    pub class_names: Vec<String>,
    /// The classifier contract `infer classify` reads (`contract.rs`):
    /// which output, probabilities or logits; `None` for other models.
    pub classifier: Option<infer::contract::Classifier>,
    pub queue: Queue,
    /// This version's series of request latency.
    pub latency: prometheus::Histogram,
}

/// An input tensor as a front end decoded it: its values (of the model's
/// datatype, each exact as float32), row-major.
#[derive(Debug)]
pub struct InputTensor {
    pub name: String,
    pub datatype: String,
    pub shape: Vec<i64>,
    pub data: Vec<f32>,
}

/// Shapes whose element count passes this are refused before anything is
/// allocated for them.
const MAX_ELEMENTS: u64 = 1 << 31;

/// Refuses a request parameter the server does not read, by name (a
/// parameter ignored in silence answers something else than was asked):
/// `keys` are those given at `place` (named only when refusing), `known`
/// those the server reads there.
pub fn check_parameters<'a>(
    keys: impl IntoIterator<Item = &'a String>,
    known: &[&str],
    place: impl FnOnce() -> String,
) -> Result<(), ApiError> {
    match keys.into_iter().find(|k| !known.contains(&k.as_str())) {
        None => Ok(()),
        Some(k) => {
            let supported = if known.is_empty() { "none".to_string() } else { known.join(", ") };
            Err(ApiError::bad(format!(
                "parameter {k:?} of {} is not supported (supported there: {supported})",
                place()
            )))
        }
    }
}

/// The request parameters both faces read besides their own: Triton's
/// `priority` (accepted; every request here has the same one) and
/// `timeout` (microseconds a request may wait in the queue before it is
/// dropped and answered UNAVAILABLE).
pub const SCHEDULING_PARAMETERS: &[&str] = &["priority", "timeout"];

/// A `priority` or `timeout` parameter's value, as the protocol's
/// unsigned integer: `None` for anything else.
pub fn scheduling_value(name: &str, value: Option<u64>, given: impl std::fmt::Display) -> Result<u64, ApiError> {
    value.ok_or_else(|| ApiError::bad(format!("parameter {name} is {given}, not a whole number ≥ 0")))
}

/// The protocol's name for a shape: `[a, b]`.
pub fn shape_string(shape: &[i64]) -> String {
    format!("[{}]", shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(","))
}

impl ServedModel {
    /// Checks what a request declares of its one input before its data is
    /// read: name, datatype, shape (every dimension after the batch the
    /// model's, a batch within `max_batch`). Returns the element count.
    pub fn check_declared(&self, name: &str, datatype: &str, shape: &[i64]) -> Result<usize, ApiError> {
        if name != self.input.name {
            return Err(ApiError::bad(format!(
                "unknown input {name:?} for model {:?}: its input is {:?}",
                self.name, self.input.name
            )));
        }
        let element = self.input.element;
        if datatype != element.datatype() {
            return Err(ApiError::bad(format!(
                "input {name:?} has datatype {datatype:?}; the model takes {}",
                element.datatype()
            )));
        }
        let dims = self.form.dims();
        let want = format!("[-1,{},{},{}]", dims[0], dims[1], dims[2]);
        if shape.len() != 4 {
            return Err(ApiError::bad(format!(
                "input {name:?} has shape {}; the model takes {want}",
                shape_string(shape)
            )));
        }
        if let Some(d) = shape.iter().find(|&&d| d < 0) {
            return Err(ApiError::bad(format!(
                "input {name:?} has a negative dimension ({d}) in shape {}",
                shape_string(shape)
            )));
        }
        let count = shape.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d as u64)).filter(|&c| c <= MAX_ELEMENTS);
        let Some(count) = count else {
            return Err(ApiError::bad(format!("input {name:?} has shape {}: too many elements", shape_string(shape))));
        };
        if shape[1..].iter().zip(dims).any(|(&d, want)| d != want as i64) {
            return Err(ApiError::bad(format!(
                "input {name:?} has shape {}; the model takes {want}",
                shape_string(shape)
            )));
        }
        let n = shape[0] as usize;
        if n == 0 || n > self.batching.max_batch {
            return Err(ApiError::bad(format!(
                "input {name:?} holds {n} images; model {:?} takes 1 to {} per request (max_batch_size)",
                self.name, self.batching.max_batch
            )));
        }
        Ok(count as usize)
    }

    /// Validates a decoded input: its declaration, its element count, and
    /// every value finite. Returns the images and their count.
    pub fn validate(&self, inputs: Vec<InputTensor>) -> Result<(Vec<f32>, usize), ApiError> {
        let mut inputs = inputs;
        if inputs.len() != 1 {
            return Err(ApiError::bad(format!(
                "model {:?} takes 1 input ({:?}); the request has {}",
                self.name,
                self.input.name,
                inputs.len()
            )));
        }
        let input = inputs.pop().expect("one");
        let count = self.check_declared(&input.name, &input.datatype, &input.shape)?;
        if input.data.len() != count {
            return Err(ApiError::bad(format!(
                "input {:?} has shape {} ({count} values) but {} values",
                input.name,
                shape_string(&input.shape),
                input.data.len()
            )));
        }
        let mut data = input.data;
        // JSON numbers arrive as float32: a float16 input takes each at
        // float16's precision, as the model would round it.
        if self.input.element == Element::F16 {
            data.iter_mut().for_each(|v| *v = half::f16::from_f32(*v).to_f32());
        }
        if let Some(i) = data.iter().position(|v| !v.is_finite()) {
            return Err(ApiError::bad(format!(
                "input {:?} holds a non-finite value ({}) at index {i}{}",
                input.name,
                data[i],
                if self.input.element == Element::F16 { " as float16" } else { "" }
            )));
        }
        if self.input.element == Element::U8 {
            if let Some(i) = data.iter().position(|&v| !(0.0..=255.0).contains(&v) || v.fract() != 0.0) {
                return Err(ApiError::bad(format!(
                    "input {:?} holds {} at index {i}; UINT8 takes whole numbers 0 to 255",
                    input.name, data[i]
                )));
            }
        }
        Ok((data, input.shape[0] as usize))
    }

    /// Checks requested output names; none requested means all.
    pub fn check_outputs<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> Result<(), ApiError> {
        for name in names {
            if !self.outputs.iter().any(|o| o.name == name) {
                let have = self.outputs.iter().map(|o| o.name.as_str()).collect::<Vec<_>>().join(", ");
                return Err(ApiError::bad(format!("unknown output {name:?} for model {:?}: it has {have}", self.name)));
            }
        }
        Ok(())
    }

    /// Runs `n` images through the queue; they must start running within
    /// `timeout` when one is given.
    pub async fn infer(
        &self,
        images: Vec<f32>,
        n: usize,
        timeout: Option<Duration>,
    ) -> Result<Vec<OutputRows>, ApiError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let rx = self.queue.submit_until(images, n, deadline).map_err(|refused| match refused {
            Refused::Full => ApiError::new(
                Kind::Unavailable,
                format!(
                    "model {:?}: queue full ({} requests waiting); retry later",
                    self.name, self.batching.max_queue
                ),
            ),
            Refused::Stopped => ApiError::new(
                Kind::Unavailable,
                format!("model {:?} is not serving: its session threads have stopped", self.name),
            ),
        })?;
        match rx.await {
            Ok(Ok(rows)) => Ok(rows),
            Ok(Err(Failure::Failed(msg))) => {
                Err(ApiError::new(Kind::Internal, format!("model {:?}: {msg}", self.name)))
            }
            // Triton answers an expired request UNAVAILABLE too.
            Ok(Err(Failure::Expired)) => Err(ApiError::new(
                Kind::Unavailable,
                format!(
                    "model {:?}: the request's timeout ({} µs) passed while it was queued",
                    self.name,
                    timeout.unwrap_or_default().as_micros()
                ),
            )),
            Err(_) => {
                Err(ApiError::new(Kind::Unavailable, format!("model {:?}: the server is shutting down", self.name)))
            }
        }
    }
}

/// The models being served at one moment, by name then version: what a
/// request resolves its model in. Model control (`control.rs`) swaps in a
/// new one whole; a request keeps the version it resolved until answered.
#[derive(Debug, Default, Clone)]
pub struct Models {
    pub by_name: BTreeMap<String, BTreeMap<u64, Arc<ServedModel>>>,
    /// Models known but not served, and why (unloaded, or a load failed).
    pub unavailable: BTreeMap<String, String>,
}

impl Models {
    /// `version` empty: the highest served version.
    pub fn get(&self, name: &str, version: &str) -> Result<&Arc<ServedModel>, ApiError> {
        let versions = self.by_name.get(name).ok_or_else(|| match self.unavailable.get(name) {
            Some(why) => ApiError::not_found(format!("model {name:?} is not loaded: {why}")),
            None => {
                let names = self.by_name.keys().cloned().collect::<Vec<_>>().join(", ");
                ApiError::not_found(format!("unknown model {name:?}; this server has {names}"))
            }
        })?;
        if version.is_empty() {
            return Ok(versions.values().next_back().expect("a model has a version"));
        }
        let have = || versions.keys().map(|v| v.to_string()).collect::<Vec<_>>().join(", ");
        version.parse::<u64>().ok().and_then(|v| versions.get(&v)).ok_or_else(|| {
            ApiError::not_found(format!("unknown version {version:?} of model {name:?}; it has {}", have()))
        })
    }

    pub fn versions(&self, name: &str) -> Vec<String> {
        self.by_name.get(name).map(|v| v.keys().map(|k| k.to_string()).collect()).unwrap_or_default()
    }
}
