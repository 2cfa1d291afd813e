//! Triton's model configuration as a model's session describes it: what
//! `train export --layout triton` writes beside each model, and what
//! `infer serve` serves a model with when its folder has no config.pbtxt.
//! Plain data and its protobuf text, with no server underneath: the server
//! (`serve/src/model_config.rs`) turns it into its protobuf message, reads
//! configs, checks them against the model, and holds this writer to its
//! parser (a written config reads back as the same message).

use std::fmt::Write as _;
use std::time::Duration;

use crate::session::{Element, ModelSession, TensorSpec};

/// How requests for one model are batched; the server's flags, or a
/// config.pbtxt's `max_batch_size`, `dynamic_batching` and
/// `instance_group`.
#[derive(Debug, Clone, PartialEq)]
pub struct Batching {
    /// Images in one ONNX Runtime run, at most (1: batching off).
    pub max_batch: usize,
    /// Whether queued requests are merged into one run (Triton's
    /// `dynamic_batching`); when not, each request runs on its own.
    pub across_requests: bool,
    /// How long the first queued request may wait for more (zero: none;
    /// whatever is queued when a session is free runs at once).
    pub max_queue_delay: Duration,
    /// Requests waiting, at most; one more is refused with 503.
    pub max_queue: usize,
    /// Sessions (one thread each) running this model's batches.
    pub instances: usize,
}

/// One input or output as the configuration lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub name: String,
    pub element: Element,
    /// After the batch, or the whole shape when the batch is fixed
    /// (`max_batch_size: 0`); -1 for a size the model leaves open.
    pub dims: Vec<i64>,
}

/// Triton's `dynamic_batching` block.
#[derive(Debug, Clone, PartialEq)]
pub struct DynamicBatching {
    pub max_queue_delay_microseconds: u64,
    pub max_queue_size: usize,
}

/// The fields of a `config.pbtxt` this toolchain writes (Triton's
/// `ModelConfig`, backend onnxruntime, CPU instances).
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    pub name: String,
    /// 0: the model's batch is fixed, and `dims` include it.
    pub max_batch_size: usize,
    pub inputs: Vec<Tensor>,
    pub outputs: Vec<Tensor>,
    pub instances: usize,
    pub dynamic_batching: Option<DynamicBatching>,
}

/// Triton's name for an element type.
pub fn data_type(element: Element) -> &'static str {
    match element {
        Element::F32 => "TYPE_FP32",
        Element::F16 => "TYPE_FP16",
        Element::U8 => "TYPE_UINT8",
    }
}

impl ModelConfig {
    /// A model's configuration when it has none: every dimension after the
    /// batch as ONNX Runtime reads it, batching as `batching` says; outputs
    /// are answered as FP32 whatever the model's.
    pub fn for_model(name: &str, session: &ModelSession, batching: &Batching) -> ModelConfig {
        // A model whose batch is fixed has no batch dimension to Triton:
        // max_batch_size 0, and dims that include the fixed first one.
        let fixed = session.fixed_batch.is_some();
        let dims = |t: &TensorSpec| if fixed { t.sizes() } else { t.sizes()[1..].to_vec() };
        ModelConfig {
            name: name.to_string(),
            max_batch_size: if fixed { 0 } else { batching.max_batch },
            inputs: vec![Tensor {
                name: session.input.name.clone(),
                element: session.input.element,
                dims: dims(&session.input),
            }],
            outputs: session
                .outputs
                .iter()
                .map(|o| Tensor { name: o.name.clone(), element: Element::F32, dims: dims(o) })
                .collect(),
            instances: batching.instances,
            dynamic_batching: (batching.across_requests && !fixed).then_some(DynamicBatching {
                max_queue_delay_microseconds: batching.max_queue_delay.as_micros() as u64,
                max_queue_size: batching.max_queue,
            }),
        }
    }

    /// The configuration as protobuf text, as Triton's `config.pbtxt`:
    /// fields in the order of their numbers in model_config.proto, zero
    /// values left out (as protobuf's own printer does), except
    /// `max_batch_size: 0`, which says the batch is fixed.
    pub fn to_pbtxt(&self) -> String {
        let tensors = |list: &[Tensor]| {
            list.iter()
                .map(|t| {
                    let dims = t.dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ");
                    format!(
                        "{{\n  name: {}\n  data_type: {}\n  dims: [{dims}]\n}}",
                        quoted(&t.name),
                        data_type(t.element)
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = writeln!(out, "name: {}", quoted(&self.name));
        let _ = writeln!(out, "max_batch_size: {}", self.max_batch_size);
        let _ = writeln!(out, "input: [{}]", tensors(&self.inputs));
        let _ = writeln!(out, "output: [{}]", tensors(&self.outputs));
        let _ = writeln!(out, "instance_group: [{{\n  count: {}\n  kind: KIND_CPU\n}}]", self.instances);
        if let Some(d) = &self.dynamic_batching {
            out.push_str("dynamic_batching {\n");
            if d.max_queue_delay_microseconds > 0 {
                let _ = writeln!(out, "  max_queue_delay_microseconds: {}", d.max_queue_delay_microseconds);
            }
            let _ = writeln!(out, "  default_queue_policy {{\n    max_queue_size: {}\n  }}\n}}", d.max_queue_size);
        }
        out.push_str("backend: \"onnxruntime\"\n");
        out
    }
}

/// A protobuf text string: quotes and backslashes escaped, control
/// characters as octal escapes; everything else (UTF-8) as it is.
fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() && (c as u32) < 0x80 => {
                let _ = write!(out, "\\{:03o}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
