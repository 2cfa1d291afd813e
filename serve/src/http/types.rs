//! The protocol's REST bodies: the infer request (JSON tensors, flat or
//! nested, and the binary tensor data extension) and the infer response
//! (JSON `data`, or raw little-endian bytes after the JSON header when an
//! output asks for `binary_data`).

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::api_error::ApiError;
use crate::classification::{self, Classes};
use crate::http::state::{BodyLimit, Limits};
use crate::model::{check_parameters, scheduling_value, shape_string, InputTensor, ServedModel, SCHEDULING_PARAMETERS};
use crate::queue::OutputRows;

/// The header that splits a binary request or response: the JSON part's
/// length in bytes; the tensors' bytes follow it.
pub const HEADER_LENGTH: &str = "inference-header-content-length";

#[derive(Debug, Deserialize)]
struct RequestJson<'a> {
    #[serde(default)]
    id: Option<Value>,
    #[serde(default)]
    parameters: Map<String, Value>,
    #[serde(borrow)]
    inputs: Vec<InputJson<'a>>,
    #[serde(default)]
    outputs: Option<Vec<OutputJson>>,
}

#[derive(Debug, Deserialize)]
struct InputJson<'a> {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: Map<String, Value>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
}

#[derive(Debug, Deserialize)]
struct OutputJson {
    name: String,
    #[serde(default)]
    parameters: Map<String, Value>,
}

/// A parsed infer request: validated inputs, and which outputs to answer
/// and how.
#[derive(Debug)]
pub struct InferRequest {
    pub id: Option<String>,
    /// How long it may wait in the queue (Triton's `timeout`).
    pub timeout: Option<std::time::Duration>,
    pub inputs: Vec<InputTensor>,
    /// Empty: every output, binary as `binary_default`.
    pub outputs: Vec<RequestedOutput>,
    pub binary_default: bool,
}

/// An output a request names, and how it wants it.
#[derive(Debug)]
pub struct RequestedOutput {
    pub name: String,
    pub binary: bool,
    /// `classification: N`: its top N classes instead of its values.
    pub classes: Option<usize>,
}

/// The parameters the server reads, by where they may appear; any other is
/// refused by name rather than ignored.
const REQUEST_PARAMETERS: &[&str] = &["binary_data_output", "priority", "timeout"];
const INPUT_PARAMETERS: &[&str] = &["binary_data_size"];
const OUTPUT_PARAMETERS: &[&str] = &["binary_data", classification::PARAMETER];

fn binary_size(parameters: &Map<String, Value>) -> Result<Option<usize>, String> {
    match parameters.get("binary_data_size") {
        None => Ok(None),
        Some(v) => {
            v.as_u64().map(|v| Some(v as usize)).ok_or_else(|| format!("binary_data_size is {v}, not a byte count"))
        }
    }
}

fn flag(parameters: &Map<String, Value>, key: &str) -> Result<Option<bool>, ApiError> {
    match parameters.get(key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(v) => Err(ApiError::bad(format!("parameter {key} is {v}, not true or false"))),
    }
}

#[cfg(test)]
mod tests {
    use crate::http::types::{numbers, Numbers};

    #[test]
    fn json_numbers_parse_to_the_nearest_f32() {
        let mut out = Vec::new();
        numbers("[[0.26274511218070984, 1, -2.5e-3], [ 0 ,\n1e39 ]]", &mut out, 5).unwrap();
        assert_eq!(out, [0.2627451f32, 1.0, -0.0025, 0.0, f32::INFINITY]);
        for bad in ["[1, \"a\"]", "[{}]", "[true]", "[null]"] {
            assert!(matches!(numbers(bad, &mut Vec::new(), 9), Err(Numbers::Bad(_))), "{bad}");
        }
        // One past the declared count stops the parse, whatever follows.
        let mut out = Vec::new();
        assert!(matches!(numbers("[1, 2, 3, \"x\"", &mut out, 2), Err(Numbers::TooMany)));
        assert_eq!(out, [1.0, 2.0]);
    }
}

/// Bytes one value may take in a JSON body: a float written out in full
/// (`-1.2345678901234567e-38`), its comma, and pretty-printing's line and
/// indentation, with room to spare.
const JSON_BYTES_PER_VALUE: usize = 64;

/// The most an infer request for `model` can need: its largest batch
/// (`max_batch_size`) as JSON numbers, plus 64 KiB for the rest of the
/// JSON; never over `--max-body`. A longer body cannot be a valid request,
/// so no more of it is read or inflated.
pub fn body_limit<'a>(model: &'a ServedModel, limits: &Limits) -> BodyLimit<'a> {
    let [c, h, w] = model.form.image;
    let derived = (model.batching.max_batch * c * h * w).saturating_mul(JSON_BYTES_PER_VALUE).saturating_add(64 << 10);
    if derived >= limits.max_body {
        return BodyLimit::flag(limits);
    }
    BodyLimit { bytes: derived, model: Some(model) }
}

/// Parses a request body: `header_length` (the
/// Inference-Header-Content-Length header) splits JSON from the binary
/// tensors that follow it.
pub fn parse_request(body: &[u8], header_length: Option<usize>, model: &ServedModel) -> Result<InferRequest, ApiError> {
    let (json, mut binary) = match header_length {
        None => (body, &body[body.len()..]),
        Some(0) => return raw_request(body, model),
        Some(n) if n <= body.len() => body.split_at(n),
        Some(n) => {
            return Err(ApiError::bad(format!(
                "Inference-Header-Content-Length is {n} but the body holds {} bytes",
                body.len()
            )))
        }
    };
    let request: RequestJson<'_> =
        serde_json::from_slice(json).map_err(|e| ApiError::bad(format!("invalid JSON in the request: {e}")))?;
    check_parameters(request.parameters.keys(), REQUEST_PARAMETERS, || "the request".into())?;
    let id = match request.id {
        None => None,
        Some(Value::String(id)) => Some(id),
        Some(other) => return Err(ApiError::bad(format!("the request's id is {other}, not a string"))),
    };
    let mut timeout = None;
    for name in SCHEDULING_PARAMETERS {
        if let Some(v) = request.parameters.get(*name) {
            let value = scheduling_value(name, v.as_u64(), v)?;
            if *name == "timeout" && value > 0 {
                timeout = Some(std::time::Duration::from_micros(value));
            }
        }
    }
    let mut inputs = Vec::with_capacity(request.inputs.len());
    for input in request.inputs {
        check_parameters(input.parameters.keys(), INPUT_PARAMETERS, || format!("input {:?}", input.name))?;
        let count = model.check_declared(&input.name, &input.datatype, &input.shape)?;
        let size = binary_size(&input.parameters).map_err(|e| ApiError::bad(format!("input {:?}: {e}", input.name)))?;
        let data = match (size, input.data) {
            (Some(_), Some(_)) => {
                return Err(ApiError::bad(format!("input {:?} has both data and binary_data_size", input.name)))
            }
            (Some(size), None) => {
                let element = model.input.element;
                if size != count * element.size() {
                    return Err(ApiError::bad(format!(
                        "input {:?}: binary_data_size is {size} bytes but shape {} of {} needs {}",
                        input.name,
                        shape_string(&input.shape),
                        element.datatype(),
                        count * element.size()
                    )));
                }
                if size > binary.len() {
                    return Err(ApiError::bad(format!(
                        "input {:?}: binary_data_size is {size} bytes but only {} follow the JSON header",
                        input.name,
                        binary.len()
                    )));
                }
                let (bytes, rest) = binary.split_at(size);
                binary = rest;
                element.decode(bytes)
            }
            (None, Some(raw)) => {
                let mut data = Vec::with_capacity(count);
                numbers(raw.get(), &mut data, count).map_err(|e| match e {
                    Numbers::TooMany => ApiError::bad(format!(
                        "input {:?}: data holds more than the {count} values shape {} declares",
                        input.name,
                        shape_string(&input.shape)
                    )),
                    Numbers::Bad(e) => {
                        ApiError::bad(format!("input {:?}: data is not an array of numbers ({e})", input.name))
                    }
                })?;
                data
            }
            (None, None) => {
                return Err(ApiError::bad(format!("input {:?} has neither data nor binary_data_size", input.name)))
            }
        };
        inputs.push(InputTensor { name: input.name, datatype: input.datatype, shape: input.shape, data });
    }
    if !binary.is_empty() {
        return Err(ApiError::bad(format!(
            "{} bytes follow the JSON header that no input's binary_data_size accounts for",
            binary.len()
        )));
    }
    let binary_default = flag(&request.parameters, "binary_data_output")?.unwrap_or(false);
    let mut outputs = Vec::new();
    for o in request.outputs.unwrap_or_default() {
        check_parameters(o.parameters.keys(), OUTPUT_PARAMETERS, || format!("output {:?}", o.name))?;
        let binary = flag(&o.parameters, "binary_data")?.unwrap_or(binary_default);
        let classes = match o.parameters.get(classification::PARAMETER) {
            None => None,
            Some(v) => Some(classification::count(&o.name, v.as_i64())?),
        };
        outputs.push(RequestedOutput { name: o.name, binary, classes });
    }
    model.check_outputs(outputs.iter().map(|o| o.name.as_str()))?;
    Ok(InferRequest { id, timeout, inputs, outputs, binary_default })
}

/// Triton's raw binary request (`Inference-Header-Content-Length: 0`):
/// the whole body is the model's one input, little-endian values of its
/// datatype, as many images as it holds; every output answers as JSON.
fn raw_request(body: &[u8], model: &ServedModel) -> Result<InferRequest, ApiError> {
    let [a, b, c] = model.form.dims();
    let element = model.input.element;
    let image = a * b * c * element.size();
    if body.is_empty() || !body.len().is_multiple_of(image) {
        return Err(ApiError::bad(format!(
            "a raw binary request (Inference-Header-Content-Length 0) is the input {:?} alone: a whole number of \
             {a}×{b}×{c} {} images ({image} bytes each), but the body holds {} bytes",
            model.input.name,
            element.datatype(),
            body.len()
        )));
    }
    let n = body.len() / image;
    let input = InputTensor {
        name: model.input.name.clone(),
        datatype: element.datatype().into(),
        shape: vec![n as i64, a as i64, b as i64, c as i64],
        data: element.decode(body),
    };
    Ok(InferRequest { id: None, timeout: None, inputs: vec![input], outputs: Vec::new(), binary_default: false })
}

/// Appends every number of a (nested) JSON array to `out`, row-major,
/// each parsed straight to the nearest f32 (a JSON array of f32 values
/// reads back bit for bit) without a JSON tree. `raw` is valid JSON
/// (serde_json checked it as a `RawValue`), so anything that is not a
/// bracket, comma, blank or number is a string, object, bool or null:
/// refused by name. Parsing stops at the first number past `limit` (the
/// count the shape declares): a body cannot make the server parse, or
/// hold, more than its shape says.
fn numbers(raw: &str, out: &mut Vec<f32>, limit: usize) -> Result<(), Numbers> {
    let bytes = raw.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'[' | b']' | b',' | b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b'-' | b'0'..=b'9' => {
                let end = bytes[i..]
                    .iter()
                    .position(|b| matches!(b, b',' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
                    .map_or(bytes.len(), |n| i + n);
                if out.len() == limit {
                    return Err(Numbers::TooMany);
                }
                let token = &raw[i..end];
                out.push(
                    fast_float2::parse::<f32, _>(token)
                        .map_err(|_| Numbers::Bad(format!("{token:?} is not a number")))?,
                );
                i = end;
            }
            b'"' => return Err(Numbers::Bad("it holds a string".into())),
            b'{' => return Err(Numbers::Bad("it holds an object".into())),
            _ => return Err(Numbers::Bad("it holds true, false or null".into())),
        }
    }
    Ok(())
}

/// Why a JSON `data` array was refused.
#[derive(Debug)]
enum Numbers {
    TooMany,
    Bad(String),
}

#[derive(Serialize)]
struct ResponseJson<'a> {
    model_name: &'a str,
    model_version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    outputs: Vec<OutputJsonOut<'a>>,
}

#[derive(Serialize)]
struct OutputJsonOut<'a> {
    name: &'a str,
    datatype: &'static str,
    shape: &'a [i64],
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<BinarySize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<Data<'a>>,
}

/// An output's values: FP32, or BYTES for the classification extension.
#[derive(Serialize)]
#[serde(untagged)]
enum Data<'a> {
    Floats(&'a [f32]),
    Strings(&'a [String]),
}

/// One output as answered: its values, or its top classes.
enum Answer<'a> {
    Values(&'a OutputRows),
    Classes(&'a str, Classes),
}

impl Answer<'_> {
    fn name(&self) -> &str {
        match self {
            Answer::Values(r) => &r.name,
            Answer::Classes(name, _) => name,
        }
    }
    fn binary_len(&self) -> usize {
        match self {
            Answer::Values(r) => r.data.len() * 4,
            Answer::Classes(_, c) => c.strings.iter().map(|s| s.len() + 4).sum(),
        }
    }
}

#[derive(Serialize)]
struct BinarySize {
    binary_data_size: usize,
}

/// An infer response body, and the JSON header's length when binary
/// tensors follow it.
pub fn response_body(model: &ServedModel, request: &InferRequest, rows: &[OutputRows]) -> (Vec<u8>, Option<usize>) {
    let chosen: Vec<(Answer<'_>, bool)> = if request.outputs.is_empty() {
        rows.iter().map(|r| (Answer::Values(r), request.binary_default)).collect()
    } else {
        request
            .outputs
            .iter()
            .filter_map(|o| {
                let r = rows.iter().find(|r| r.name == o.name)?;
                let answer = match o.classes {
                    None => Answer::Values(r),
                    Some(n) => Answer::Classes(&r.name, classification::top(r, n, &model.class_names)),
                };
                Some((answer, o.binary))
            })
            .collect()
    };
    let outputs = chosen
        .iter()
        .map(|(answer, binary)| {
            let (datatype, shape, data) = match answer {
                Answer::Values(r) => ("FP32", r.shape.as_slice(), Data::Floats(&r.data)),
                Answer::Classes(_, c) => ("BYTES", c.shape.as_slice(), Data::Strings(&c.strings)),
            };
            OutputJsonOut {
                name: answer.name(),
                datatype,
                shape,
                parameters: binary.then(|| BinarySize { binary_data_size: answer.binary_len() }),
                data: (!binary).then_some(data),
            }
        })
        .collect();
    let doc = ResponseJson {
        model_name: &model.name,
        model_version: model.version.to_string(),
        id: request.id.as_deref(),
        outputs,
    };
    let mut body = serde_json::to_vec(&doc).expect("a response serializes");
    if !chosen.iter().any(|(_, b)| *b) {
        return (body, None);
    }
    let header = body.len();
    for (answer, binary) in &chosen {
        if !*binary {
            continue;
        }
        match answer {
            Answer::Values(r) => {
                for v in &r.data {
                    body.extend_from_slice(&v.to_le_bytes());
                }
            }
            Answer::Classes(_, c) => body.extend_from_slice(&classification::serialize(&c.strings)),
        }
    }
    (body, Some(header))
}
