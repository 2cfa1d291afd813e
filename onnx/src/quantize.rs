//! INT8 models: a float graph rewritten in ONNX's QDQ form, the form ONNX
//! Runtime fuses into integer kernels (QLinearConv, QGemm, int8 MaxPool and
//! Resize).
//!
//! - Weights of every Conv and Gemm: symmetric int8 per output channel
//!   (scale = max|w|/qmax, zero point 0; qmax from [`WeightRange`]) behind
//!   a DequantizeLinear; biases int32 at scale input_scale·weight_scale, as
//!   the integer kernels add them.
//! - Activations: int8, asymmetric. The image is exact at scale 1/255 (IDX
//!   pixels are k/255), so the graph input must span [0, 1]: its
//!   calibrated range is checked, and a graph whose input goes outside it
//!   is refused rather than clipped; a Relu output spans [0, calibrated max] with zero
//!   point −128, so the Relu folds into the quantization; the Conv before
//!   the Sigmoid spans its calibrated [min, max], the Sigmoid [0, 1] at
//!   1/255 (the input's own grid); MaxPool, Resize and Flatten only move
//!   values and keep their input's scale.
//! - What the consumer sees stays float32 under the same names: the graph
//!   input and every graph output (a quantized one is dequantized under
//!   its name). Every Conv and every Gemm — the classifier's head too —
//!   reads int8 activations and int8 weights; the head's output (the
//!   logits) is not quantized, so the logits and the Softmax's
//!   probabilities stay float, not rounded to a grid.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::schema::{
    AttributeProto, GraphProto, ModelProto, NodeProto, StringStringEntryProto, TensorProto, ValueInfoProto,
};

/// Opset and IR version of the int8 graphs: DequantizeLinear-19 is the
/// oldest one the ONNX reference evaluator implements (the float graphs
/// stay at opset 17); none of our other operators changed in 18 or 19
/// in ways the graph uses.
pub const OPSET: i64 = 19;
pub const IR_VERSION: i64 = 9;

/// The float graph's input range, [0, 1]: 256 exact levels.
const IMAGE_SCALE: f32 = 1.0 / 255.0;
/// An int8 activation spanning [0, max] puts 0 at the type's minimum.
const RELU_ZERO_POINT: i8 = -128;

/// How the range of an activation is taken from its calibration values.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[derive(strum::Display, strum::EnumString, strum::IntoStaticStr, strum::VariantArray, strum::EnumMessage)]
#[strum(serialize_all = "kebab-case")]
pub enum CalibrationMethod {
    /// The extremes seen (nothing clipped).
    MinMax,
    /// The 99.999th percentile at each end (outliers clipped, finer steps)
    // The default: on the quick models it lost less than min-max
    // (classifier validation accuracy 0.99400 vs 0.99392 against float's
    // 0.99417; autoencoder test MSE 0.0022529 vs 0.0022550; bench/LOG.md).
    #[default]
    Percentile,
}

/// How many of int8's levels the weights use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[derive(strum::Display, strum::EnumString, strum::IntoStaticStr, strum::VariantArray, strum::EnumMessage)]
#[strum(serialize_all = "kebab-case")]
pub enum WeightRange {
    /// ±64 (7 bits): no int16 saturation on any x86 CPU
    // Without VNNI, ONNX Runtime multiplies u8 activations by s8 weights
    // with AVX2's vpmaddubsw, which adds pairs of products into int16:
    // 2·255·64 = 32640 fits, 2·255·127 saturates (measured: classifier
    // accuracy 0.994 → 0.963; bench/LOG.md).
    #[default]
    Reduced,
    /// ±127 (8 bits): only for CPUs with VNNI (or ARM dot products)
    Full,
}

impl WeightRange {
    pub fn qmax(self) -> f32 {
        match self {
            WeightRange::Reduced => 64.0,
            WeightRange::Full => 127.0,
        }
    }
}

/// Ops that only move values: their output keeps the input's scale, so
/// ONNX Runtime runs them on int8 directly.
fn moves_values(op: &str) -> bool {
    matches!(op, "MaxPool" | "Resize" | "Flatten")
}

/// Ops that read quantized inputs (ONNX Runtime fuses DQ → op → Q into
/// QLinearConv, QGemm, QLinearSigmoid or an int8 MaxPool/Resize).
fn reads_quantized(op: &str) -> bool {
    matches!(op, "Conv" | "Gemm" | "Sigmoid") || moves_values(op)
}

/// (scale, zero point) of an int8 activation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Params {
    pub scale: f32,
    pub zero_point: i8,
}

impl Params {
    /// Asymmetric int8 over [lo, hi] widened to hold 0 exactly (zero
    /// padding and Relu's floor must be representable).
    fn spanning(lo: f32, hi: f32) -> Params {
        let (lo, hi) = (lo.min(0.0), hi.max(0.0));
        let scale = (hi - lo) / 255.0;
        let zero_point = (-128.0 - lo / scale).round().clamp(-128.0, 127.0) as i8;
        Params { scale, zero_point }
    }
}

/// The activations whose range calibration must measure: the Relu outputs
/// a quantized op reads or the graph returns, and the Conv/Gemm outputs a Sigmoid reads (its
/// input; the Sigmoid's own output has the fixed range [0, 1]).
pub fn calibrated_tensors(m: &ModelProto) -> Vec<String> {
    let g = m.graph.as_ref().expect("graph");
    let read_by = |op: &dyn Fn(&str) -> bool| -> HashSet<&str> {
        g.node.iter().filter(|n| op(&n.op_type)).flat_map(|n| n.input.first().map(String::as_str)).collect()
    };
    let mut quantized = read_by(&reads_quantized);
    quantized.extend(g.output.iter().map(|o| o.name.as_str()));
    let sigmoid = read_by(&|op| op == "Sigmoid");
    g.node
        .iter()
        .filter(|n| {
            let out = n.output[0].as_str();
            (n.op_type == "Relu" && quantized.contains(out))
                || (matches!(n.op_type.as_str(), "Conv" | "Gemm") && sigmoid.contains(out))
        })
        .map(|n| n.output[0].clone())
        .collect()
}

/// The float model with `names` added as outputs, for calibration.
pub fn instrumented(m: &ModelProto, names: &[String]) -> ModelProto {
    let mut m = m.clone();
    let g = m.graph.as_mut().expect("graph");
    g.output.extend(names.iter().map(|n| ValueInfoProto::tensor_f32_any_shape(n)));
    m
}

/// The range of one activation from its calibration values.
#[derive(Debug, Clone)]
pub struct RangeObserver {
    min: f32,
    max: f32,
    /// Counts of values in [min, max] (of the first pass) in `BINS` bins.
    histogram: Vec<u64>,
    count: u64,
}

const BINS: usize = 4096;
/// Percentile calibration keeps this share of the values inside the range
/// (ONNX Runtime's default for its percentile method).
const PERCENTILE: f64 = 99.999;

impl RangeObserver {
    pub fn new() -> RangeObserver {
        RangeObserver { min: 0.0, max: 0.0, histogram: Vec::new(), count: 0 }
    }

    /// First pass: the extremes.
    pub fn observe_extremes(&mut self, values: impl Iterator<Item = f32>) {
        for v in values {
            self.min = self.min.min(v);
            self.max = self.max.max(v);
        }
    }

    /// Second pass (percentile only): the histogram over [min, max].
    pub fn observe_histogram(&mut self, values: impl Iterator<Item = f32>) {
        if self.histogram.is_empty() {
            self.histogram = vec![0; BINS];
        }
        let per = BINS as f32 / (self.max - self.min).max(f32::MIN_POSITIVE);
        for v in values {
            let b = (((v - self.min).max(0.0) * per) as usize).min(BINS - 1);
            self.histogram[b] += 1;
            self.count += 1;
        }
    }

    /// The value below which a fraction `q` of the histogram lies.
    fn quantile(&self, q: f64) -> f32 {
        let target = (self.count as f64 * q).ceil() as u64;
        let mut seen = 0;
        let width = (self.max - self.min) / BINS as f32;
        for (b, &c) in self.histogram.iter().enumerate() {
            seen += c;
            if seen >= target {
                return self.min + width * (b + 1) as f32;
            }
        }
        self.max
    }

    /// The range [lo, hi] under `method`.
    pub fn range(&self, method: CalibrationMethod) -> (f32, f32) {
        match method {
            CalibrationMethod::MinMax => (self.min, self.max),
            CalibrationMethod::Percentile => {
                let tail = 1.0 - PERCENTILE / 100.0;
                let lo = if self.min < 0.0 { self.quantile(tail).min(0.0) } else { self.min };
                (lo, self.quantile(1.0 - tail))
            }
        }
    }
}

impl Default for RangeObserver {
    fn default() -> Self {
        RangeObserver::new()
    }
}

/// Weights quantized symmetric per output channel (axis 0).
struct ChannelQuantized {
    values: Vec<i8>,
    scales: Vec<f32>,
}

fn quantize_per_channel(w: &[f32], channels: usize, qmax: f32) -> ChannelQuantized {
    let per = w.len() / channels;
    let mut values = Vec::with_capacity(w.len());
    let mut scales = Vec::with_capacity(channels);
    for c in w.chunks(per) {
        let max = c.iter().fold(0f32, |m, v| m.max(v.abs()));
        // An all-zero channel still needs a valid (positive) scale.
        let scale = if max > 0.0 { max / qmax } else { 1.0 };
        values.extend(c.iter().map(|v| (v / scale).round_ties_even().clamp(-qmax, qmax) as i8));
        scales.push(scale);
    }
    ChannelQuantized { values, scales }
}

/// What the quantized graph is made of, built up node by node.
struct Rewrite {
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
}

impl Rewrite {
    fn node(&mut self, op: &str, name: String, inputs: Vec<String>, output: String, attrs: Vec<AttributeProto>) {
        self.nodes.push(NodeProto {
            input: inputs,
            output: vec![output],
            name,
            op_type: op.into(),
            attribute: attrs,
            ..Default::default()
        });
    }

    /// `x` → QuantizeLinear → DequantizeLinear → `x.dq`, for the ops that
    /// read `x` quantized.
    fn quantize_activation(&mut self, x: &str, p: Params) -> String {
        let dq = format!("{x}.dq");
        self.quantize_activation_as(x, p, &dq);
        dq
    }

    /// `x` → QuantizeLinear → DequantizeLinear → `dq`.
    fn quantize_activation_as(&mut self, x: &str, p: Params, dq: &str) {
        let (scale, zp) = (format!("{x}.scale"), format!("{x}.zero_point"));
        self.inits.push(TensorProto::f32(&scale, &[], &[p.scale]));
        self.inits.push(TensorProto::i8(&zp, &[], &[p.zero_point]));
        let q = format!("{x}.q");
        let inputs = vec![x.into(), scale.clone(), zp.clone()];
        self.node("QuantizeLinear", format!("{x}.quantize"), inputs, q.clone(), vec![]);
        self.node("DequantizeLinear", format!("{x}.dequantize"), vec![q, scale, zp], dq.into(), vec![]);
    }

    /// A weight as int8 per output channel + DequantizeLinear; returns the
    /// dequantized name and the channel scales.
    fn quantize_weight(&mut self, w: &TensorProto, range: WeightRange) -> Result<(String, Vec<f32>), String> {
        let values = w.f32_values().ok_or_else(|| format!("initializer {} is not float32", w.name))?;
        let channels = *w.dims.first().ok_or_else(|| format!("initializer {} has no dimensions", w.name))? as usize;
        if values.is_empty() {
            return Err(format!("initializer {} is empty (dims {:?}): nothing to quantize", w.name, w.dims));
        }
        if channels == 0 || values.len() % channels != 0 {
            return Err(format!("initializer {} has {} values for {channels} output channels", w.name, values.len()));
        }
        let q = quantize_per_channel(&values, channels, range.qmax());
        let (name, scale, zp, dq) = (
            format!("{}.int8", w.name),
            format!("{}.scale", w.name),
            format!("{}.zero_point", w.name),
            format!("{}.dq", w.name),
        );
        self.inits.push(TensorProto::i8(&name, &w.dims, &q.values));
        self.inits.push(TensorProto::f32(&scale, &[channels as i64], &q.scales));
        self.inits.push(TensorProto::i8(&zp, &[channels as i64], &vec![0; channels]));
        self.node(
            "DequantizeLinear",
            format!("{}.dequantize", w.name),
            vec![name, scale, zp],
            dq.clone(),
            vec![AttributeProto::int("axis", 0)],
        );
        Ok((dq, q.scales))
    }

    /// A bias as int32 at scale input_scale·weight_scale[c] + DequantizeLinear.
    fn quantize_bias(&mut self, b: &TensorProto, input_scale: f32, weight_scales: &[f32]) -> Result<String, String> {
        let values = b.f32_values().ok_or_else(|| format!("initializer {} is not float32", b.name))?;
        if values.len() != weight_scales.len() {
            return Err(format!("bias {} has {} values for {} channels", b.name, values.len(), weight_scales.len()));
        }
        let scales: Vec<f32> = weight_scales.iter().map(|s| s * input_scale).collect();
        let q: Vec<i32> = values
            .iter()
            .zip(&scales)
            .map(|(v, s)| (*v as f64 / *s as f64).round_ties_even().clamp(i32::MIN as f64, i32::MAX as f64) as i32)
            .collect();
        let n = values.len() as i64;
        let (name, scale, zp, dq) = (
            format!("{}.int32", b.name),
            format!("{}.scale", b.name),
            format!("{}.zero_point", b.name),
            format!("{}.dq", b.name),
        );
        self.inits.push(TensorProto::i32(&name, &[n], &q));
        self.inits.push(TensorProto::f32(&scale, &[n], &scales));
        self.inits.push(TensorProto::i32(&zp, &[n], &vec![0; n as usize]));
        self.node(
            "DequantizeLinear",
            format!("{}.dequantize", b.name),
            vec![name, scale, zp],
            dq.clone(),
            vec![AttributeProto::int("axis", 0)],
        );
        Ok(dq)
    }
}

/// The QDQ model of the float model `m`, with the Relu outputs' upper
/// ends `ranges` (from [`calibrated_tensors`]), weights in `weights`' range
/// and `meta` added to its
/// metadata. Inputs and outputs keep their names, types and shapes.
pub fn quantize(
    m: &ModelProto,
    ranges: &HashMap<String, (f32, f32)>,
    weights: WeightRange,
    meta: &BTreeMap<String, String>,
) -> Result<ModelProto, String> {
    let g = m.graph.as_ref().ok_or("model has no graph")?;
    let inits: HashMap<&str, &TensorProto> = g.initializer.iter().map(|t| (t.name.as_str(), t)).collect();

    // Which values are int8, and at what scale.
    let mut params: HashMap<String, Params> = HashMap::new();
    for input in &g.input {
        // The input's grid is fixed at 1/255 over [0, 1]: calibration must
        // show it stays there, or values would be clipped without a word.
        match ranges.get(&input.name) {
            Some(&(lo, hi)) if lo >= 0.0 && hi <= 1.0 => {}
            Some(&(lo, hi)) => {
                return Err(format!(
                    "graph input {} spans [{lo}, {hi}] on the calibration images; int8 represents it at 1/255 over \
                     [0, 1] only, so it would be clipped",
                    input.name
                ))
            }
            None => return Err(format!("graph input {} has no calibrated range", input.name)),
        }
        params.insert(input.name.clone(), Params { scale: IMAGE_SCALE, zero_point: RELU_ZERO_POINT });
    }
    for n in &g.node {
        let out = &n.output[0];
        let input = n.input.first().and_then(|i| params.get(i)).copied();
        if let Some(&(lo, hi)) = ranges.get(out) {
            if !(lo.is_finite() && hi.is_finite() && hi > lo.min(0.0)) {
                return Err(format!("activation {out} has calibrated range [{lo}, {hi}]: nothing to quantize"));
            }
            params.insert(out.clone(), Params::spanning(lo, hi));
        } else if n.op_type == "Sigmoid" && input.is_some() {
            params.insert(out.clone(), Params { scale: IMAGE_SCALE, zero_point: RELU_ZERO_POINT });
        } else if let (true, Some(p)) = (moves_values(&n.op_type), input) {
            params.insert(out.clone(), p);
        }
    }
    // A value is quantized where a quantized op reads it, and where it
    // leaves the graph from a quantized op (then the graph's output is the
    // dequantized value, under the same name).
    let graph_outputs: HashSet<&str> = g.output.iter().map(|o| o.name.as_str()).collect();
    let read_quantized: HashSet<&str> = g
        .node
        .iter()
        .filter(|n| reads_quantized(&n.op_type))
        .filter_map(|n| n.input.first().map(String::as_str))
        .chain(graph_outputs.iter().copied())
        .filter(|i| params.contains_key(*i))
        .collect();

    let mut rw = Rewrite { nodes: Vec::new(), inits: Vec::new() };
    let mut dequantized: HashMap<String, String> = HashMap::new();
    let quantize_if_read = |rw: &mut Rewrite, name: &str, dequantized: &mut HashMap<String, String>| {
        if read_quantized.contains(name) {
            let dq = rw.quantize_activation(name, params[name]);
            dequantized.insert(name.to_string(), dq);
        }
    };
    for input in &g.input {
        quantize_if_read(&mut rw, &input.name, &mut dequantized);
    }
    let mut kept_inits: HashSet<String> = HashSet::new();
    for n in &g.node {
        let mut node = n.clone();
        let x = n.input.first().cloned().unwrap_or_default();
        if reads_quantized(&n.op_type) {
            if let Some(dq) = dequantized.get(&x) {
                node.input[0] = dq.clone();
            }
        }
        let quantized_input = params.get(&x).filter(|_| dequantized.contains_key(&x));
        match (n.op_type.as_str(), quantized_input) {
            ("Conv" | "Gemm", Some(p)) => {
                if n.op_type == "Gemm" {
                    let trans_b = n.attribute.iter().find(|a| a.name == "transB").map_or(0, |a| a.i);
                    if trans_b != 1 {
                        return Err(format!("Gemm {} must have transB = 1 (weights [out, in])", n.name));
                    }
                }
                let w = n
                    .input
                    .get(1)
                    .and_then(|w| inits.get(w.as_str()))
                    .ok_or_else(|| format!("{} has no weight initializer", n.name))?;
                let (wdq, scales) = rw.quantize_weight(w, weights)?;
                node.input[1] = wdq;
                if let Some(b) = n.input.get(2).filter(|b| !b.is_empty()) {
                    let b = inits.get(b.as_str()).ok_or_else(|| format!("{} has no bias initializer", n.name))?;
                    node.input[2] = rw.quantize_bias(b, p.scale, &scales)?;
                }
            }
            _ => {
                kept_inits.extend(n.input.iter().skip(1).filter(|i| inits.contains_key(i.as_str())).cloned());
            }
        }
        let out = n.output[0].clone();
        if graph_outputs.contains(out.as_str()) && read_quantized.contains(out.as_str()) {
            // The op writes int8-ready values under an inner name; the
            // dequantized copy takes the output's name.
            let inner = format!("{out}.float");
            node.output[0] = inner.clone();
            rw.nodes.push(node);
            rw.quantize_activation_as(&inner, params[&out], &out);
        } else {
            rw.nodes.push(node);
            quantize_if_read(&mut rw, &out, &mut dequantized);
        }
    }
    let mut initializer: Vec<TensorProto> =
        g.initializer.iter().filter(|t| kept_inits.contains(&t.name)).cloned().collect();
    initializer.extend(rw.inits);
    let graph = GraphProto {
        node: rw.nodes,
        name: format!("{}_int8", g.name),
        initializer,
        input: g.input.clone(),
        output: g.output.clone(),
        ..Default::default()
    };
    let mut model = m.clone();
    model.graph = Some(graph);
    model.ir_version = IR_VERSION;
    for o in model.opset_import.iter_mut().filter(|o| o.domain.is_empty()) {
        o.version = OPSET;
    }
    model.doc_string = format!("{} Quantized to int8 (QDQ).", m.doc_string);
    let mut all = m.metadata();
    all.extend(meta.iter().map(|(k, v)| (k.clone(), v.clone())));
    model.metadata_props = all.into_iter().map(|(key, value)| StringStringEntryProto { key, value }).collect();
    Ok(model)
}
