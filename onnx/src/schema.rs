//! The subset of the ONNX protobuf schema (`onnx/onnx.proto`, IR version 8+)
//! that this project writes and reads, as prost messages. Field numbers are
//! the schema's; messages and fields not listed are skipped when decoding.
//! Declared by hand so no `protoc` runs at build time.

use std::collections::BTreeMap;
use std::path::Path;

use prost::Message;

#[derive(Clone, PartialEq, Message)]
pub struct ModelProto {
    #[prost(int64, tag = "1")]
    pub ir_version: i64,
    #[prost(message, repeated, tag = "8")]
    pub opset_import: Vec<OperatorSetIdProto>,
    #[prost(string, tag = "2")]
    pub producer_name: String,
    #[prost(string, tag = "3")]
    pub producer_version: String,
    #[prost(string, tag = "4")]
    pub domain: String,
    #[prost(int64, tag = "5")]
    pub model_version: i64,
    #[prost(string, tag = "6")]
    pub doc_string: String,
    #[prost(message, optional, tag = "7")]
    pub graph: Option<GraphProto>,
    #[prost(message, repeated, tag = "14")]
    pub metadata_props: Vec<StringStringEntryProto>,
}

#[derive(Clone, PartialEq, Message)]
pub struct OperatorSetIdProto {
    #[prost(string, tag = "1")]
    pub domain: String,
    #[prost(int64, tag = "2")]
    pub version: i64,
}

#[derive(Clone, PartialEq, Message)]
pub struct StringStringEntryProto {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct GraphProto {
    #[prost(message, repeated, tag = "1")]
    pub node: Vec<NodeProto>,
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(message, repeated, tag = "5")]
    pub initializer: Vec<TensorProto>,
    #[prost(string, tag = "10")]
    pub doc_string: String,
    #[prost(message, repeated, tag = "11")]
    pub input: Vec<ValueInfoProto>,
    #[prost(message, repeated, tag = "12")]
    pub output: Vec<ValueInfoProto>,
    #[prost(message, repeated, tag = "13")]
    pub value_info: Vec<ValueInfoProto>,
}

#[derive(Clone, PartialEq, Message)]
pub struct NodeProto {
    #[prost(string, repeated, tag = "1")]
    pub input: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    pub output: Vec<String>,
    #[prost(string, tag = "3")]
    pub name: String,
    #[prost(string, tag = "4")]
    pub op_type: String,
    #[prost(message, repeated, tag = "5")]
    pub attribute: Vec<AttributeProto>,
    #[prost(string, tag = "6")]
    pub doc_string: String,
    #[prost(string, tag = "7")]
    pub domain: String,
}

/// `AttributeProto.AttributeType` values used here.
pub mod attribute_type {
    pub const FLOAT: i32 = 1;
    pub const INT: i32 = 2;
    pub const STRING: i32 = 3;
    pub const TENSOR: i32 = 4;
    pub const FLOATS: i32 = 6;
    pub const INTS: i32 = 7;
}

#[derive(Clone, PartialEq, Message)]
pub struct AttributeProto {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(float, tag = "2")]
    pub f: f32,
    #[prost(int64, tag = "3")]
    pub i: i64,
    #[prost(bytes = "vec", tag = "4")]
    pub s: Vec<u8>,
    #[prost(message, optional, tag = "5")]
    pub t: Option<TensorProto>,
    #[prost(float, repeated, tag = "7")]
    pub floats: Vec<f32>,
    #[prost(int64, repeated, tag = "8")]
    pub ints: Vec<i64>,
    #[prost(int32, tag = "20")]
    pub r#type: i32,
}

impl AttributeProto {
    pub fn int(name: &str, i: i64) -> Self {
        AttributeProto { name: name.into(), i, r#type: attribute_type::INT, ..Default::default() }
    }
    pub fn ints(name: &str, ints: &[i64]) -> Self {
        AttributeProto { name: name.into(), ints: ints.to_vec(), r#type: attribute_type::INTS, ..Default::default() }
    }
    pub fn float(name: &str, f: f32) -> Self {
        AttributeProto { name: name.into(), f, r#type: attribute_type::FLOAT, ..Default::default() }
    }
    pub fn string(name: &str, s: &str) -> Self {
        AttributeProto {
            name: name.into(),
            s: s.as_bytes().to_vec(),
            r#type: attribute_type::STRING,
            ..Default::default()
        }
    }
}

/// `TensorProto.DataType` values used here.
pub mod data_type {
    pub const FLOAT: i32 = 1;
    pub const INT8: i32 = 3;
    pub const INT32: i32 = 6;
    pub const INT64: i32 = 7;

    /// ONNX's name of a `TensorProto.DataType`.
    pub fn name(code: i32) -> &'static str {
        match code {
            1 => "float32",
            2 => "uint8",
            3 => "int8",
            4 => "uint16",
            5 => "int16",
            6 => "int32",
            7 => "int64",
            8 => "string",
            9 => "bool",
            10 => "float16",
            11 => "float64",
            12 => "uint32",
            13 => "uint64",
            16 => "bfloat16",
            _ => "another type",
        }
    }
}

#[derive(Clone, PartialEq, Message)]
pub struct TensorProto {
    #[prost(int64, repeated, tag = "1")]
    pub dims: Vec<i64>,
    #[prost(int32, tag = "2")]
    pub data_type: i32,
    #[prost(float, repeated, tag = "4")]
    pub float_data: Vec<f32>,
    #[prost(int64, repeated, tag = "7")]
    pub int64_data: Vec<i64>,
    #[prost(string, tag = "8")]
    pub name: String,
    #[prost(bytes = "vec", tag = "9")]
    pub raw_data: Vec<u8>,
    #[prost(string, tag = "12")]
    pub doc_string: String,
}

impl TensorProto {
    /// An initializer of `data_type` with its values little-endian in
    /// `raw_data`, as the schema prescribes.
    fn raw(name: &str, dims: &[i64], data_type: i32, raw_data: Vec<u8>) -> Self {
        TensorProto { dims: dims.to_vec(), data_type, name: name.into(), raw_data, ..Default::default() }
    }

    pub fn f32(name: &str, dims: &[i64], values: &[f32]) -> Self {
        Self::raw(name, dims, data_type::FLOAT, values.iter().flat_map(|v| v.to_le_bytes()).collect())
    }

    /// Quantized weights, zero points.
    pub fn i8(name: &str, dims: &[i64], values: &[i8]) -> Self {
        Self::raw(name, dims, data_type::INT8, values.iter().map(|&v| v as u8).collect())
    }

    /// Quantized biases.
    pub fn i32(name: &str, dims: &[i64], values: &[i32]) -> Self {
        Self::raw(name, dims, data_type::INT32, values.iter().flat_map(|v| v.to_le_bytes()).collect())
    }

    pub fn i64(name: &str, dims: &[i64], values: &[i64]) -> Self {
        Self::raw(name, dims, data_type::INT64, values.iter().flat_map(|v| v.to_le_bytes()).collect())
    }

    /// The values of a float32 initializer (raw or `float_data`).
    pub fn f32_values(&self) -> Option<Vec<f32>> {
        if self.data_type != data_type::FLOAT {
            return None;
        }
        if !self.float_data.is_empty() {
            return Some(self.float_data.clone());
        }
        let chunks = self.raw_data.chunks_exact(4);
        if !chunks.remainder().is_empty() {
            return None;
        }
        Some(chunks.map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
    }
}

#[derive(Clone, PartialEq, Message)]
pub struct ValueInfoProto {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub r#type: Option<TypeProto>,
    #[prost(string, tag = "3")]
    pub doc_string: String,
}

/// `TypeProto` with only its `tensor_type` member of the `value` oneof.
#[derive(Clone, PartialEq, Message)]
pub struct TypeProto {
    #[prost(message, optional, tag = "1")]
    pub tensor_type: Option<TensorTypeProto>,
}

#[derive(Clone, PartialEq, Message)]
pub struct TensorTypeProto {
    #[prost(int32, tag = "1")]
    pub elem_type: i32,
    #[prost(message, optional, tag = "2")]
    pub shape: Option<TensorShapeProto>,
}

#[derive(Clone, PartialEq, Message)]
pub struct TensorShapeProto {
    #[prost(message, repeated, tag = "1")]
    pub dim: Vec<Dimension>,
}

/// One dimension: a fixed size or a symbolic name (the schema's oneof).
#[derive(Clone, PartialEq, Message)]
pub struct Dimension {
    #[prost(int64, optional, tag = "1")]
    pub dim_value: Option<i64>,
    #[prost(string, optional, tag = "2")]
    pub dim_param: Option<String>,
}

/// A tensor dimension as users see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dim {
    Fixed(i64),
    Symbolic(String),
}

impl std::fmt::Display for Dim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dim::Fixed(v) => write!(f, "{v}"),
            Dim::Symbolic(s) => f.write_str(s),
        }
    }
}

impl ValueInfoProto {
    /// The element type's ONNX name ("float32", …).
    pub fn elem_type_name(&self) -> &'static str {
        data_type::name(self.r#type.as_ref().and_then(|t| t.tensor_type.as_ref()).map_or(0, |t| t.elem_type))
    }

    /// A float32 tensor value with the given dimensions.
    pub fn tensor_f32(name: &str, dims: &[Dim]) -> Self {
        let dim = dims
            .iter()
            .map(|d| match d {
                Dim::Fixed(v) => Dimension { dim_value: Some(*v), dim_param: None },
                Dim::Symbolic(s) => Dimension { dim_value: None, dim_param: Some(s.clone()) },
            })
            .collect();
        ValueInfoProto {
            name: name.into(),
            r#type: Some(TypeProto {
                tensor_type: Some(TensorTypeProto {
                    elem_type: data_type::FLOAT,
                    shape: Some(TensorShapeProto { dim }),
                }),
            }),
            doc_string: String::new(),
        }
    }

    /// A float32 tensor value whose shape is left to the runtime to infer
    /// (an intermediate value exposed as an output).
    pub fn tensor_f32_any_shape(name: &str) -> Self {
        ValueInfoProto {
            name: name.into(),
            r#type: Some(TypeProto { tensor_type: Some(TensorTypeProto { elem_type: data_type::FLOAT, shape: None }) }),
            doc_string: String::new(),
        }
    }

    pub fn dims(&self) -> Vec<Dim> {
        self.r#type
            .as_ref()
            .and_then(|t| t.tensor_type.as_ref())
            .and_then(|t| t.shape.as_ref())
            .map(|s| {
                s.dim
                    .iter()
                    .map(|d| match (&d.dim_value, &d.dim_param) {
                        (Some(v), _) => Dim::Fixed(*v),
                        (None, Some(p)) => Dim::Symbolic(p.clone()),
                        (None, None) => Dim::Symbolic("?".into()),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl ModelProto {
    pub fn metadata(&self) -> BTreeMap<String, String> {
        self.metadata_props.iter().map(|e| (e.key.clone(), e.value.clone())).collect()
    }

    /// The default-domain opset version.
    pub fn opset(&self) -> Option<i64> {
        self.opset_import.iter().find(|o| o.domain.is_empty() || o.domain == "ai.onnx").map(|o| o.version)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        self.encode_to_vec()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    #[error("{}", path.display())]
    Io { path: std::path::PathBuf, source: std::io::Error },
    #[error("{}: not an ONNX model ({error})", path.display())]
    Decode { path: std::path::PathBuf, error: prost::DecodeError },
    #[error("{}: not an ONNX model (no graph)", path.display())]
    NoGraph { path: std::path::PathBuf },
    #[error("{}: empty file, expected an ONNX model", path.display())]
    Empty { path: std::path::PathBuf },
}

/// Reads and decodes an ONNX model file.
pub fn read_model(path: impl AsRef<Path>) -> Result<ModelProto, OnnxError> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|source| OnnxError::Io { path: path.into(), source })?;
    if bytes.is_empty() {
        return Err(OnnxError::Empty { path: path.into() });
    }
    let model = ModelProto::decode(bytes.as_slice()).map_err(|error| OnnxError::Decode { path: path.into(), error })?;
    if model.graph.is_none() || model.ir_version == 0 {
        return Err(OnnxError::NoGraph { path: path.into() });
    }
    Ok(model)
}

/// A one-screen description of a graph for snapshots: op types in order,
/// tensor shapes, initializers and metadata keys.
pub fn summary(m: &ModelProto) -> String {
    let g = m.graph.as_ref().expect("graph");
    let mut s = format!("ir_version {} opset {:?} producer {}\n", m.ir_version, m.opset(), m.producer_name);
    let io = |v: &ValueInfoProto| {
        format!("{} [{}]", v.name, v.dims().iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", "))
    };
    s += &format!("inputs: {}\n", g.input.iter().map(io).collect::<Vec<_>>().join("; "));
    s += &format!("outputs: {}\n", g.output.iter().map(io).collect::<Vec<_>>().join("; "));
    s += "nodes:\n";
    for n in &g.node {
        s += &format!("  {} {} ({}) -> {}\n", n.op_type, n.name, n.input.join(", "), n.output.join(", "));
    }
    s += "initializers:\n";
    for t in &g.initializer {
        s += &format!("  {} {:?}\n", t.name, t.dims);
    }
    s += &format!("metadata: {}\n", m.metadata_props.iter().map(|e| e.key.as_str()).collect::<Vec<_>>().join(", "));
    s
}
