//! Triton's model configuration (`config.pbtxt`): read from a model
//! repository, made for a model that has none (a flat folder of `.onnx`, or
//! `train export --layout triton`), checked against what ONNX Runtime reads
//! from the model, written as protobuf text, and served as JSON
//! (`GET /v2/models/{m}/config`) and protobuf (gRPC `ModelConfig`).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor};

use super::proto::{
    model_config::SchedulingChoice, model_instance_group::Kind, DataType, ModelConfig, ModelDynamicBatching,
    ModelInput, ModelInstanceGroup, ModelOutput, ModelQueuePolicy,
};
use ae_onnx::Dim;
use infer::session::{Element, Misfit, ModelSession, Normalize, TensorSpec};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: cannot read: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{}: not a Triton model configuration this server reads: {msg}", path.display())]
    Parse { path: PathBuf, msg: String },
    #[error("{}: {msg}", path.display())]
    Mismatch { path: PathBuf, msg: String },
}

/// The most images one batch may hold (`--max-batch`, a config's
/// `max_batch_size`): warm-up runs a batch this large.
pub const MAX_BATCH: usize = 4096;

/// The most requests one model's queue may hold (`--max-queue`, a config's
/// `max_queue_size`): the queue's slots are allocated up front.
pub const MAX_QUEUE: usize = 65_536;

/// The most sessions one model may run (`--instances`, the sum of a
/// config's `instance_group` counts): each is a thread and a session.
pub const MAX_INSTANCES: usize = 64;

pub use infer::triton::Batching;

fn descriptor() -> MessageDescriptor {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| DescriptorPool::decode(super::proto::DESCRIPTOR_SET).expect("build.rs wrote a descriptor set"))
        .get_message_by_name("inference.ModelConfig")
        .expect("model_config.proto defines inference.ModelConfig")
}

/// Reads `path` (protobuf text format, Triton's `config.pbtxt`).
pub fn read(path: &Path) -> Result<ModelConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
    parse(path, &text)
}

/// Parses protobuf text (`path` names it in messages).
pub fn parse(path: &Path, text: &str) -> Result<ModelConfig, ConfigError> {
    let parse_err = |msg: String| ConfigError::Parse { path: path.into(), msg };
    let text = colon_before_lists(text);
    let message = DynamicMessage::parse_text_format(descriptor(), &text).map_err(|e| parse_err(e.to_string()))?;
    message.transcode_to::<ModelConfig>().map_err(|e| parse_err(e.to_string()))
}

/// Parses a configuration in JSON, as Triton's HTTP API shows it and as a
/// repository load request's `config` parameter carries it (`origin`
/// names it in messages).
pub fn from_json(origin: &Path, text: &str) -> Result<ModelConfig, ConfigError> {
    let parse_err = |msg: String| ConfigError::Parse { path: origin.into(), msg };
    let mut de = serde_json::Deserializer::from_str(text);
    let message = DynamicMessage::deserialize(descriptor(), &mut de).map_err(|e| parse_err(e.to_string()))?;
    de.end().map_err(|e| parse_err(e.to_string()))?;
    message.transcode_to::<ModelConfig>().map_err(|e| parse_err(e.to_string()))
}

/// Protobuf's text format lets a list of messages follow its field name
/// without a colon (`input [ { … } ]`), and Triton's configs are written
/// that way; prost-reflect's parser wants the colon (`input: [ … ]`). Adds
/// it, outside strings and comments; nothing else changes.
fn colon_before_lists(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    let mut quote: Option<char> = None;
    let mut escaped = false;
    let mut comment = false;
    for c in text.chars() {
        match (quote, comment) {
            (Some(q), _) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
            }
            (None, true) => comment = c != '\n',
            (None, false) => match c {
                '"' | '\'' => quote = Some(c),
                '#' => comment = true,
                '[' if out.trim_end().ends_with(|p: char| p.is_ascii_alphanumeric() || p == '_') => out.push(':'),
                _ => {}
            },
        }
        out.push(c);
    }
    out
}

/// The configuration as Triton's HTTP API shows it: proto field names,
/// numbers as numbers, every field present.
pub fn to_json(config: &ModelConfig) -> serde_json::Value {
    let mut message = DynamicMessage::new(descriptor());
    message.transcode_from(config).expect("a ModelConfig transcodes to its own descriptor");
    let options = prost_reflect::SerializeOptions::new()
        .use_proto_field_name(true)
        .stringify_64_bit_integers(false)
        .skip_default_fields(false);
    message.serialize_with_options(serde_json::value::Serializer, &options).expect("a config serializes to JSON")
}

/// Triton's type for an element type (`infer::triton` names them).
fn data_type(element: Element) -> DataType {
    DataType::from_str_name(infer::triton::data_type(element)).expect("infer::triton names Triton's types")
}

/// A model's configuration when it has none (`infer::triton`'s, as the
/// protobuf message the server answers with): what a flat folder's models
/// are served with, and what `train export --layout triton` writes.
pub fn for_model(name: &str, session: &ModelSession, batching: &Batching) -> ModelConfig {
    ModelConfig::from(&infer::triton::ModelConfig::for_model(name, session, batching))
}

impl From<&infer::triton::ModelConfig> for ModelConfig {
    fn from(c: &infer::triton::ModelConfig) -> ModelConfig {
        let input = |t: &infer::triton::Tensor| ModelInput {
            name: t.name.clone(),
            data_type: data_type(t.element) as i32,
            dims: t.dims.clone(),
            ..Default::default()
        };
        let output = |t: &infer::triton::Tensor| ModelOutput {
            name: t.name.clone(),
            data_type: data_type(t.element) as i32,
            dims: t.dims.clone(),
            ..Default::default()
        };
        ModelConfig {
            name: c.name.clone(),
            backend: "onnxruntime".into(),
            max_batch_size: c.max_batch_size as i32,
            input: c.inputs.iter().map(input).collect(),
            output: c.outputs.iter().map(output).collect(),
            scheduling_choice: c.dynamic_batching.as_ref().map(|d| {
                SchedulingChoice::DynamicBatching(ModelDynamicBatching {
                    max_queue_delay_microseconds: d.max_queue_delay_microseconds,
                    default_queue_policy: Some(ModelQueuePolicy {
                        max_queue_size: d.max_queue_size as u32,
                        ..Default::default()
                    }),
                    ..Default::default()
                })
            }),
            instance_group: vec![ModelInstanceGroup {
                kind: Kind::Cpu as i32,
                count: c.instances as i32,
                ..Default::default()
            }],
            ..Default::default()
        }
    }
}

/// The normalisation `/classify` applies to a picture before the model,
/// from the config's `parameters { key: "normalize" value: { string_value:
/// "…" } }` in `infer classify --normalize`'s words (none, imagenet,
/// MEAN,STD, or C means then C stds); `None` when the config has none.
/// Protocol requests carry the model's own values, so it is theirs to
/// normalise, as with Triton.
pub fn normalize(path: &Path, config: &ModelConfig, session: &ModelSession) -> Result<Option<Normalize>, ConfigError> {
    let mismatch = |msg: String| ConfigError::Mismatch { path: path.into(), msg };
    let Some(p) = config.parameters.get("normalize") else { return Ok(None) };
    // parse's words name the flag; here the config's parameter is meant.
    let n =
        Normalize::parse(&p.string_value).map_err(|e| mismatch(e.replacen("--normalize", "parameter normalize", 1)))?;
    let channels = session.channels;
    match n.misfit(session.input.element, channels) {
        None => Ok(Some(n)),
        Some(Misfit::Uint8) => Err(mismatch(format!(
            "parameter normalize applies to float inputs; input {} takes uint8 pixels",
            session.input.name
        ))),
        Some(Misfit::Channels { given }) => Err(mismatch(format!(
            "parameter normalize has {given} values per statistic for a model of {channels} channels (give 1 or \
             {channels})"
        ))),
    }
}

/// The batching of a model whose first dimension is fixed at `n`
/// (Triton's `max_batch_size: 0`): a request holds at most `n` images (a
/// run is padded to `n`), and requests are never merged.
pub fn fixed(n: usize, defaults: &Batching) -> Batching {
    Batching { max_batch: n, across_requests: false, max_queue_delay: Duration::ZERO, ..defaults.clone() }
}

/// The batching a config asks for; `defaults` (the server's flags) fill
/// what it leaves open. `fixed_batch`: the model's first dimension, when
/// fixed (then the config must say `max_batch_size: 0`, as Triton's does).
pub fn batching(
    path: &Path,
    config: &ModelConfig,
    defaults: &Batching,
    fixed_batch: Option<usize>,
) -> Result<Batching, ConfigError> {
    let mismatch = |msg: String| ConfigError::Mismatch { path: path.into(), msg };
    match (config.max_batch_size, fixed_batch) {
        (0, Some(n)) => return Ok(fixed(n, defaults)),
        (0, None) => {
            return Err(mismatch(
                "max_batch_size is 0 but the model's batch is dynamic; infer serve batches such models \
                 (max_batch_size ≥ 1, dims without the batch)"
                    .into(),
            ))
        }
        (m, _) if m < 0 => return Err(mismatch(format!("max_batch_size is {m}; it must be 0 or more"))),
        _ => {}
    }
    // A load request's config is a client's input: every count it sets
    // is held to the command line's caps before anything is allocated.
    if config.max_batch_size as usize > MAX_BATCH {
        return Err(mismatch(format!(
            "max_batch_size is {}; this server takes at most {MAX_BATCH} (as --max-batch)",
            config.max_batch_size
        )));
    }
    let instances = match config.instance_group.as_slice() {
        [] => defaults.instances,
        groups => groups.iter().map(|g| g.count.max(1) as usize).sum(),
    };
    if instances > MAX_INSTANCES {
        return Err(mismatch(format!(
            "instance_group asks for {instances} instances; this server runs at most {MAX_INSTANCES} per model \
             (as --instances)"
        )));
    }
    let (across_requests, max_queue_delay, max_queue) = match &config.scheduling_choice {
        Some(SchedulingChoice::DynamicBatching(d)) => {
            let queue = d.default_queue_policy.as_ref().map(|q| q.max_queue_size as usize).filter(|&q| q > 0);
            if let Some(q) = queue.filter(|&q| q > MAX_QUEUE) {
                return Err(mismatch(format!(
                    "max_queue_size is {q}; this server queues at most {MAX_QUEUE} requests per model (as --max-queue)"
                )));
            }
            // Longer than a minute holds every request for it: a typo, not a batching choice.
            if d.max_queue_delay_microseconds > 60_000_000 {
                return Err(mismatch(format!(
                    "max_queue_delay_microseconds is {}; at most 60000000 (a minute)",
                    d.max_queue_delay_microseconds
                )));
            }
            (true, Duration::from_micros(d.max_queue_delay_microseconds), queue.unwrap_or(defaults.max_queue))
        }
        None => (false, Duration::ZERO, defaults.max_queue),
    };
    Ok(Batching { max_batch: config.max_batch_size as usize, across_requests, max_queue_delay, max_queue, instances })
}

/// Refuses a config whose tensors are not the model's: names, FP32, and
/// every dimension after the batch (Triton checks the same on load).
pub fn check(path: &Path, config: &ModelConfig, session: &ModelSession) -> Result<(), ConfigError> {
    let mismatch = |msg: String| ConfigError::Mismatch { path: path.into(), msg };
    let tensors = |kind: &str, listed: Vec<(&str, i32, &[i64])>, model: Vec<&TensorSpec>| {
        if listed.is_empty() {
            return Ok(());
        }
        for (name, ty, dims) in &listed {
            let Some(spec) = model.iter().find(|s| s.name == *name) else {
                let names = model.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", ");
                return Err(mismatch(format!("{kind} {name} is not in the model (it has {names})")));
            };
            // Outputs are answered as FP32 whatever the model's.
            let want_ty = if kind == "input" { data_type(spec.element) } else { DataType::TypeFp32 };
            if *ty != want_ty as i32 {
                let ty = DataType::try_from(*ty).map(|t| t.as_str_name()).unwrap_or("an unknown type");
                return Err(mismatch(format!("{kind} {name} is {ty}; the model's is {}", want_ty.as_str_name())));
            }
            // max_batch_size 0: dims are the whole shape, the batch included.
            let sizes = spec.sizes();
            let want = if config.max_batch_size == 0 { &sizes[..] } else { &sizes[1..] };
            if config.max_batch_size > 0 && spec.dims.first().is_some_and(|d| matches!(d, Dim::Fixed(_))) {
                return Err(mismatch(format!(
                    "the model's {kind} {name} has a fixed first dimension; Triton's ONNX Runtime backend needs the \
                     batch symbolic, or max_batch_size: 0"
                )));
            }
            if *dims != want {
                return Err(mismatch(format!(
                    "{kind} {name} has dims {dims:?}; the model's are {want:?} (after the batch)"
                )));
            }
        }
        Ok(())
    };
    tensors(
        "input",
        config.input.iter().map(|i| (i.name.as_str(), i.data_type, i.dims.as_slice())).collect(),
        vec![&session.input],
    )?;
    tensors(
        "output",
        config.output.iter().map(|o| (o.name.as_str(), o.data_type, o.dims.as_slice())).collect(),
        session.outputs.iter().collect(),
    )?;
    if !config.backend.is_empty() && config.backend != "onnxruntime" {
        return Err(mismatch(format!(
            "backend is {:?}; infer serve runs ONNX models (backend \"onnxruntime\")",
            config.backend
        )));
    }
    if !config.platform.is_empty() && config.platform != "onnxruntime_onnx" {
        return Err(mismatch(format!(
            "platform is {:?}; infer serve runs ONNX models (platform \"onnxruntime_onnx\")",
            config.platform
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use infer::session::Element;
    use infer::triton::{DynamicBatching, ModelConfig, Tensor};

    use crate::model_config::{colon_before_lists, parse};

    #[test]
    fn lists_of_messages_parse_with_or_without_a_colon() {
        let text =
            "name: \"a [b\" # a [comment\ninput [ { name: \"x\" dims: [ 1, 2 ] } ]\noutput: [ { name: \"y\" } ]\n";
        let c = parse(Path::new("config.pbtxt"), text).unwrap();
        assert_eq!(
            (c.name.as_str(), c.input[0].dims.as_slice(), c.output[0].name.as_str()),
            ("a [b", &[1i64, 2][..], "y")
        );
        assert_eq!(colon_before_lists("x [\"[\"] # y [\n"), "x :[\"[\"] # y [\n");
    }

    /// `infer::triton` writes config.pbtxt without the protobuf library;
    /// what it writes must read back as the message it stands for.
    #[test]
    fn written_configs_read_back_as_their_message() {
        let tensor = |name: &str, element, dims: &[i64]| Tensor { name: name.into(), element, dims: dims.to_vec() };
        let batched = ModelConfig {
            name: "classifier".into(),
            max_batch_size: 64,
            inputs: vec![tensor("image", Element::F32, &[1, 28, 28])],
            outputs: vec![tensor("probabilities", Element::F32, &[10]), tensor("logits", Element::F32, &[10])],
            instances: 2,
            dynamic_batching: Some(DynamicBatching { max_queue_delay_microseconds: 500, max_queue_size: 1024 }),
        };
        let fixed = ModelConfig {
            name: "mnist \"12\" \\ é\n".into(),
            max_batch_size: 0,
            inputs: vec![tensor("Input3", Element::U8, &[1, 28, 28, 1])],
            outputs: vec![tensor("Plus214_Output_0", Element::F32, &[1, 10])],
            instances: 1,
            dynamic_batching: None,
        };
        let half = ModelConfig {
            inputs: vec![tensor("x", Element::F16, &[3, -1, -1])],
            dynamic_batching: Some(DynamicBatching { max_queue_delay_microseconds: 0, max_queue_size: 1 }),
            ..batched.clone()
        };
        for config in [batched, fixed, half] {
            let text = config.to_pbtxt();
            let read = parse(Path::new("config.pbtxt"), &text).unwrap_or_else(|e| panic!("{e}\n{text}"));
            assert_eq!(read, crate::proto::ModelConfig::from(&config), "{text}");
        }
    }
}
