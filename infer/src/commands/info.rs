//! `infer info`: a model's contract and metadata.

use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;

use serde_json::json;

use crate::contract;
use crate::error::InferError;
use crate::session::{Device, ModelSession, SessionOptions};
use ae_core::exit::chain;

use super::run::{print, print_json, Format};

/// `infer info`: the model's contract and metadata, read from the file
/// without starting ONNX Runtime.
pub fn info(model: &Path, format: Format, out: &mut dyn Write) -> Result<(), InferError> {
    let m = ae_onnx::read_model(model)?;
    let g = m.graph.as_ref().expect("read_model checks");
    let inits: std::collections::HashSet<&str> = g.initializer.iter().map(|t| t.name.as_str()).collect();
    let shape = |v: &ae_onnx::ValueInfoProto| v.dims().iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ");
    let inputs: Vec<_> = g.input.iter().filter(|i| !inits.contains(i.name.as_str())).collect();
    let params: usize = g.initializer.iter().map(|t| t.dims.iter().product::<i64>().max(0) as usize).sum();
    let precision = precision(&m);
    let contract = read_contract(model);
    match format {
        Format::Text => {
            let mut s = String::new();
            let _ = writeln!(s, "model: {}", model.display());
            let _ = writeln!(s, "producer: {} {}", m.producer_name, m.producer_version);
            let _ = writeln!(
                s,
                "ir_version: {}  opset: {}",
                m.ir_version,
                m.opset().map(|o| o.to_string()).unwrap_or("?".into())
            );
            if !m.doc_string.is_empty() {
                let _ = writeln!(s, "doc: {}", m.doc_string);
            }
            for i in &inputs {
                let _ = writeln!(s, "input: {} {} [{}]", i.name, i.elem_type_name(), shape(i));
            }
            for o in &g.output {
                let _ = writeln!(s, "output: {} {} [{}]", o.name, o.elem_type_name(), shape(o));
            }
            let _ = writeln!(s, "nodes: {}  parameters: {params}", g.node.len());
            for line in &contract.lines {
                let _ = writeln!(s, "contract: {line}");
            }
            let _ = writeln!(s, "precision: {}", precision.describe());
            let _ = writeln!(s, "metadata:");
            for (k, v) in m.metadata() {
                let _ = writeln!(s, "  {k}: {v}");
            }
            print(out, &s)
        }
        Format::Json => {
            let doc = json!({
                "model": model.display().to_string(),
                "producer": format!("{} {}", m.producer_name, m.producer_version),
                "ir_version": m.ir_version,
                "opset": m.opset(),
                "doc": m.doc_string,
                "inputs": inputs.iter().map(|i| json!({"name": i.name, "type": i.elem_type_name(), "shape": shape(i)})).collect::<Vec<_>>(),
                "outputs": g.output.iter().map(|o| json!({"name": o.name, "type": o.elem_type_name(), "shape": shape(o)})).collect::<Vec<_>>(),
                "nodes": g.node.len(),
                "parameters": params,
                "precision": precision.name(),
                "quantized_tensors": precision.quantized_tensors(),
                "metadata": m.metadata(),
                "contract": contract.json,
            });
            print_json(out, &doc)
        }
    }
}

/// What `infer` reads of the model's contract when it runs it (its input's
/// layout, element type and batch; a classifier's scores and class names),
/// as lines and as JSON. A model infer cannot run says why instead.
struct Contract {
    lines: Vec<String>,
    json: serde_json::Value,
}

fn read_contract(model: &Path) -> Contract {
    let opts = SessionOptions { device: Device::Cpu, threads: Some(1), ..Default::default() };
    let session = match ModelSession::open(model, &opts) {
        Ok(s) => s,
        Err(e) => {
            let why = chain(&e);
            return Contract { lines: vec![format!("infer cannot run it: {why}")], json: json!({ "error": why }) };
        }
    };
    let input = session.describe_input();
    let mut lines = vec![input];
    let mut doc = json!({
        "input": session.input.name,
        "element": session.input.element.name(),
        "layout": session.layout.to_string(),
        "image": [session.channels, session.height, session.width],
        "fixed_batch": session.fixed_batch,
    });
    if let Ok(c) = contract::classifier(&session, &contract::OutputOptions::default()) {
        lines.push(format!(
            "classifier output `{}`: {} classes, {} ({}); class names: {}",
            c.output, c.classes, c.scores, c.scores_from, c.names_from
        ));
        doc["classifier"] = json!({
            "output": c.output,
            "classes": c.classes,
            "scores": c.scores.to_string(),
            "scores_from": c.scores_from,
            "class_names": c.names,
            "class_names_from": c.names_from,
        });
    }
    Contract { lines, json: doc }
}

/// What a graph computes in: float32, or int8 in QDQ form (counted from
/// its nodes, not taken from the metadata).
enum Precision {
    Float,
    Int8 { quantize: usize, dequantize: usize, how: Option<String> },
}

fn precision(m: &ae_onnx::ModelProto) -> Precision {
    let g = m.graph.as_ref().expect("read_model checks");
    let count = |op: &str| g.node.iter().filter(|n| n.op_type == op).count();
    let (quantize, dequantize) = (count("QuantizeLinear"), count("DequantizeLinear"));
    if quantize + dequantize == 0 {
        return Precision::Float;
    }
    let meta = m.metadata();
    let how = meta.get("quantization").map(|q| match meta.get("calibration_method") {
        Some(c) => format!(
            "{q}; {c} calibration on {} images{}",
            meta.get("calibration_images").map_or("?", String::as_str),
            meta.get("int8_gate").map(|g| format!("; gate: {g}")).unwrap_or_default()
        ),
        None => q.clone(),
    });
    Precision::Int8 { quantize, dequantize, how }
}

impl Precision {
    fn name(&self) -> &'static str {
        match self {
            Precision::Float => "float32",
            Precision::Int8 { .. } => "int8",
        }
    }

    fn quantized_tensors(&self) -> usize {
        match self {
            Precision::Float => 0,
            Precision::Int8 { quantize, .. } => *quantize,
        }
    }

    fn describe(&self) -> String {
        match self {
            Precision::Float => "float32".into(),
            Precision::Int8 { quantize, dequantize, how } => format!(
                "int8 (QDQ: {quantize} QuantizeLinear, {dequantize} DequantizeLinear){}",
                how.as_ref().map(|h| format!(" — {h}")).unwrap_or_default()
            ),
        }
    }
}
