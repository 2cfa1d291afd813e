//! `infer serve`'s REST request parser on arbitrary bytes: the JSON body,
//! or a JSON header and binary tensors split by
//! Inference-Header-Content-Length, against a classifier's contract (one
//! `image` input of [-1, 1, 28, 28], two outputs of 10). What it accepts
//! is validated and answered as the server would; nothing may panic.
#![no_main]

use std::sync::OnceLock;

use ae_onnx::Dim;
use serve::http::types::{parse_request, response_body};
use serve::metrics::Metrics;
use serve::model::ServedModel;
use serve::model_config::Batching;
use serve::proto::ModelConfig;
use serve::queue::{OutputRows, Queue};
use infer::session::{Element, InputForm, Layout, Normalize, TensorSpec};
use libfuzzer_sys::fuzz_target;

/// A served classifier without sessions: the parser and the response
/// need its contract only.
fn model() -> &'static ServedModel {
    static MODEL: OnceLock<ServedModel> = OnceLock::new();
    MODEL.get_or_init(|| {
        let metrics = Metrics::new(8);
        let batching = Batching {
            max_batch: 8,
            across_requests: true,
            max_queue_delay: std::time::Duration::ZERO,
            max_queue: 1,
            instances: 0,
        };
        let spec = |name: &str, dims: &[i64]| TensorSpec {
            name: name.into(),
            element: Element::F32,
            dims: std::iter::once(Dim::Symbolic("batch".into())).chain(dims.iter().map(|&d| Dim::Fixed(d))).collect(),
        };
        ServedModel {
            name: "classifier".into(),
            version: 1,
            config: ModelConfig::default(),
            input: spec("image", &[1, 28, 28]),
            outputs: vec![spec("probabilities", &[10]), spec("logits", &[10])],
            form: InputForm {
                element: Element::F32,
                layout: Layout::Nchw,
                image: [1, 28, 28],
                normalize: Normalize::None,
            },
            classifier: None,
            class_names: (0..10).map(|c| c.to_string()).collect(),
            queue: Queue::start("classifier", Vec::new(), &batching, &metrics.queue("classifier", "1")),
            latency: metrics.latency.with_label_values(&["classifier", "1"]),
            batching,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    // The first two bytes: the header length (0xFFFF: none, a JSON body).
    let Some((head, body)) = data.split_first_chunk::<2>() else { return };
    let header_length = match u16::from_le_bytes(*head) {
        0xFFFF => None,
        n => Some(n as usize),
    };
    let model = model();
    let Ok(mut request) = parse_request(body, header_length, model) else { return };
    let Ok((images, n)) = model.validate(std::mem::take(&mut request.inputs)) else { return };
    assert_eq!(images.len(), n * 784);
    assert!(images.iter().all(|v| v.is_finite()));
    // Answered with rows of the right shape, as a session would give them.
    let rows: Vec<OutputRows> = model
        .outputs
        .iter()
        .map(|o| OutputRows {
            name: o.name.clone(),
            shape: vec![n as i64, 10],
            data: (0..n * 10).map(|i| (i % 10) as f32 / 10.0).collect(),
        })
        .collect();
    let (bytes, json_length) = response_body(model, &request, &rows);
    let json = &bytes[..json_length.unwrap_or(bytes.len())];
    serde_json::from_slice::<serde_json::Value>(json).expect("the response's JSON parses");
});
