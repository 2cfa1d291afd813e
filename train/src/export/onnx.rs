//! Writes the trained networks as ONNX graphs, from their weights.
//!
//! libtorch has no ONNX exporter, so the graph is built here op by op with
//! standard opset-17 operators only. Each Conv → BatchNorm pair is folded
//! into one Conv (exact in eval mode), so no training-only op remains.
//! Initializer names are the checkpoint keys of the conv/linear they come
//! from (`encoder.0.conv.weight`, …).

use std::collections::{BTreeMap, HashMap};

use tch::Tensor;

use ae_onnx::{
    AttributeProto, Dim, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto, TensorProto,
    ValueInfoProto,
};

use crate::model::{same_pads, AutoencoderConfig, ClassifierConfig};

pub const OPSET: i64 = 17;
/// IR version 8 (ONNX 1.10+): accepted by ONNX Runtime 1.31 and every
/// current runtime.
pub const IR_VERSION: i64 = 8;
/// BatchNorm's epsilon in tch (libtorch's default).
pub const BN_EPS: f64 = 1e-5;

/// The three exportable graphs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Graph {
    Autoencoder,
    Encoder,
    Classifier,
}

impl Graph {
    /// The file stem: `classifier` → classifier.onnx, classifier.int8.onnx.
    pub fn name(self) -> &'static str {
        match self {
            Graph::Autoencoder => "autoencoder",
            Graph::Encoder => "encoder",
            Graph::Classifier => "classifier",
        }
    }
}

/// A conv with its BatchNorm folded in: (shape, weight, bias).
type FoldedConv = (Vec<i64>, Vec<f32>, Vec<f32>);

/// Named weights on the host.
pub struct Weights {
    tensors: HashMap<String, (Vec<i64>, Vec<f32>)>,
}

impl Weights {
    pub fn from_tensors(named: &HashMap<String, Tensor>) -> Weights {
        let tensors = named
            .iter()
            // The model's own tensors: not the optimizer's state, nor (with
            // --ema) the training weights kept beside the average.
            .filter(|(k, _)| !k.starts_with("optimizer.") && !k.starts_with(crate::ema::PREFIX))
            .map(|(k, t)| (k.clone(), (t.size(), crate::checkpoint::to_vec(t))))
            .collect();
        Weights { tensors }
    }

    fn get(&self, name: &str) -> Result<&(Vec<i64>, Vec<f32>), String> {
        self.tensors.get(name).ok_or_else(|| format!("checkpoint has no tensor {name}"))
    }

    /// Conv weight with the following BatchNorm folded in:
    /// W' = W·γ/√(σ²+ε) per output channel, b' = β − μ·γ/√(σ²+ε).
    fn folded_conv(&self, prefix: &str) -> Result<FoldedConv, String> {
        let (shape, w) = self.get(&format!("{prefix}.conv.weight"))?;
        let (_, gamma) = self.get(&format!("{prefix}.bn.weight"))?;
        let (_, beta) = self.get(&format!("{prefix}.bn.bias"))?;
        let (_, mean) = self.get(&format!("{prefix}.bn.running_mean"))?;
        let (_, var) = self.get(&format!("{prefix}.bn.running_var"))?;
        let c_out = shape[0] as usize;
        let per = w.len() / c_out;
        let mut wf = w.clone();
        let mut bias = vec![0f32; c_out];
        for c in 0..c_out {
            let scale = gamma[c] as f64 / (var[c] as f64 + BN_EPS).sqrt();
            for v in &mut wf[c * per..(c + 1) * per] {
                *v = (*v as f64 * scale) as f32;
            }
            bias[c] = (beta[c] as f64 - mean[c] as f64 * scale) as f32;
        }
        Ok((shape.clone(), wf, bias))
    }
}

/// Builds a graph node by node, naming intermediate values.
struct Builder {
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
    last: String,
}

impl Builder {
    fn new(input: &str) -> Builder {
        Builder { nodes: Vec::new(), inits: Vec::new(), last: input.into() }
    }

    fn node(&mut self, op: &str, name: &str, extra_inputs: &[&str], attrs: Vec<AttributeProto>, output: Option<&str>) {
        let out = output.map(String::from).unwrap_or_else(|| format!("{name}.out"));
        let mut inputs = vec![self.last.clone()];
        inputs.extend(extra_inputs.iter().map(|s| s.to_string()));
        self.nodes.push(NodeProto {
            input: inputs,
            output: vec![out.clone()],
            name: name.into(),
            op_type: op.into(),
            attribute: attrs,
            ..Default::default()
        });
        self.last = out;
    }

    fn conv(&mut self, name: &str, shape: &[i64], w: &[f32], b: &[f32]) {
        let k = shape[2];
        let (before, after) = same_pads(k);
        let (wn, bn) = (format!("{name}.weight"), format!("{name}.bias"));
        self.inits.push(TensorProto::f32(&wn, shape, w));
        self.inits.push(TensorProto::f32(&bn, &[shape[0]], b));
        self.node(
            "Conv",
            name,
            &[&wn, &bn],
            vec![
                AttributeProto::ints("kernel_shape", &[k, shape[3]]),
                // [top, left, bottom, right]: the extra row/column of an
                // even kernel goes after, as in training.
                AttributeProto::ints("pads", &[before, before, after, after]),
                AttributeProto::ints("strides", &[1, 1]),
            ],
            None,
        );
    }

    fn relu(&mut self, name: &str) {
        self.node("Relu", name, &[], vec![], None);
    }

    fn encoder(&mut self, w: &Weights, cfg: &AutoencoderConfig, output: Option<&str>) -> Result<(), String> {
        if let Some(n) = cfg.input.normalize {
            // The training split's statistics, as the model applied them:
            // consumers keep feeding pixels / 255.
            let c = cfg.input.channels;
            self.inits.push(TensorProto::f32("input.mean", &[1, c as i64, 1, 1], &n.mean[..c]));
            self.inits.push(TensorProto::f32("input.std", &[1, c as i64, 1, 1], &n.std[..c]));
            self.node("Sub", "input.center", &["input.mean"], vec![], None);
            self.node("Div", "input.scale", &["input.std"], vec![], None);
        }
        for i in 0..cfg.layers {
            let p = format!("encoder.{i}");
            let (shape, wf, b) = w.folded_conv(&p)?;
            self.conv(&format!("{p}.conv"), &shape, &wf, &b);
            let pooled = i < cfg.pools();
            let last = i + 1 == cfg.layers;
            self.node("Relu", &format!("{p}.relu"), &[], vec![], if last && !pooled { output } else { None });
            if pooled {
                self.node(
                    "MaxPool",
                    &format!("{p}.pool"),
                    &[],
                    vec![AttributeProto::ints("kernel_shape", &[2, 2]), AttributeProto::ints("strides", &[2, 2])],
                    if last { output } else { None },
                );
            }
        }
        Ok(())
    }
}

fn metadata_props(meta: &BTreeMap<String, String>) -> Vec<StringStringEntryProto> {
    meta.iter().map(|(k, v)| StringStringEntryProto { key: k.clone(), value: v.clone() }).collect()
}

fn image_input(c: usize, h: usize, w: usize) -> ValueInfoProto {
    ValueInfoProto::tensor_f32(
        "image",
        &[Dim::Symbolic("batch".into()), Dim::Fixed(c as i64), Dim::Fixed(h as i64), Dim::Fixed(w as i64)],
    )
}

fn model(graph: GraphProto, doc: &str, meta: &BTreeMap<String, String>) -> ModelProto {
    ModelProto {
        ir_version: IR_VERSION,
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: OPSET }],
        producer_name: "train".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        domain: String::new(),
        model_version: 1,
        doc_string: doc.into(),
        graph: Some(graph),
        metadata_props: metadata_props(meta),
    }
}

/// The autoencoder or its encoder alone.
pub fn autoencoder_model(
    w: &Weights,
    cfg: &AutoencoderConfig,
    which: Graph,
    meta: &BTreeMap<String, String>,
) -> Result<ModelProto, String> {
    let (ch, h, wd) = (cfg.input.channels, cfg.input.height, cfg.input.width);
    let mut b = Builder::new("image");
    let batch = || Dim::Symbolic("batch".into());
    let (outputs, doc, name) = if which == Graph::Encoder {
        b.encoder(w, cfg, Some("embedding"))?;
        let [c, eh, ew] = cfg.embedding_shape();
        (
            vec![ValueInfoProto::tensor_f32(
                "embedding",
                &[batch(), Dim::Fixed(c as i64), Dim::Fixed(eh as i64), Dim::Fixed(ew as i64)],
            )],
            format!(
                "Convolutional encoder {}: a [batch, {ch}, {h}, {wd}] image in [0, 1] to its [batch, {c}, {eh}, {ew}] embedding.",
                cfg.tag()
            ),
            "encoder",
        )
    } else {
        b.encoder(w, cfg, None)?;
        let scales = "decoder.upsample.scales";
        b.inits.push(TensorProto::f32(scales, &[4], &[1.0, 1.0, 2.0, 2.0]));
        for j in 0..cfg.layers {
            let p = format!("decoder.{j}");
            let (shape, wf, bias) = w.folded_conv(&p)?;
            b.conv(&format!("{p}.conv"), &shape, &wf, &bias);
            b.relu(&format!("{p}.relu"));
            if j + cfg.pools() >= cfg.layers {
                // Asymmetric + floor is exactly libtorch's nearest upsampling.
                b.node(
                    "Resize",
                    &format!("{p}.upsample"),
                    &["", scales],
                    vec![
                        AttributeProto::string("mode", "nearest"),
                        AttributeProto::string("coordinate_transformation_mode", "asymmetric"),
                        AttributeProto::string("nearest_mode", "floor"),
                    ],
                    None,
                );
            }
        }
        let (shape, wt) = w.get("decoder.out.weight")?;
        let (_, bias) = w.get("decoder.out.bias")?;
        let (shape, wt, bias) = (shape.clone(), wt.clone(), bias.clone());
        b.conv("decoder.out", &shape, &wt, &bias);
        b.node("Sigmoid", "decoder.sigmoid", &[], vec![], Some("reconstruction"));
        (
            vec![ValueInfoProto::tensor_f32(
                "reconstruction",
                &[batch(), Dim::Fixed(ch as i64), Dim::Fixed(h as i64), Dim::Fixed(wd as i64)],
            )],
            format!(
                "Convolutional autoencoder {}: a [batch, {ch}, {h}, {wd}] image in [0, 1] to its reconstruction.",
                cfg.tag()
            ),
            "autoencoder",
        )
    };
    let graph = GraphProto {
        node: b.nodes,
        name: name.into(),
        initializer: b.inits,
        input: vec![image_input(ch, h, wd)],
        output: outputs,
        ..Default::default()
    };
    Ok(model(graph, &doc, meta))
}

/// The classifier: encoder → Flatten → Gemm → Relu → Gemm (`logits`) →
/// Softmax (`probabilities`).
pub fn classifier_model(
    w: &Weights,
    cfg: &ClassifierConfig,
    meta: &BTreeMap<String, String>,
) -> Result<ModelProto, String> {
    let (ch, h, wd) = (cfg.encoder.input.channels, cfg.encoder.input.height, cfg.encoder.input.width);
    let mut b = Builder::new("image");
    b.encoder(w, &cfg.encoder, None)?;
    b.node("Flatten", "flatten", &[], vec![AttributeProto::int("axis", 1)], None); // [B, C·h·w]
    for (layer, relu) in [("fc", true), ("head", false)] {
        let (ws, wv) = w.get(&format!("{layer}.weight"))?;
        let (bs, bv) = w.get(&format!("{layer}.bias"))?;
        let (wn, bn) = (format!("{layer}.weight"), format!("{layer}.bias"));
        b.inits.push(TensorProto::f32(&wn, ws, wv));
        b.inits.push(TensorProto::f32(&bn, bs, bv));
        b.node(
            "Gemm",
            layer,
            &[&wn, &bn],
            vec![AttributeProto::int("transB", 1)],
            if relu { None } else { Some("logits") },
        );
        if relu {
            b.relu(&format!("{layer}.relu"));
        }
    }
    b.node("Softmax", "softmax", &[], vec![AttributeProto::int("axis", -1)], Some("probabilities"));
    let batch = || Dim::Symbolic("batch".into());
    let k = cfg.classes as i64;
    let graph = GraphProto {
        node: b.nodes,
        name: "classifier".into(),
        initializer: b.inits,
        input: vec![image_input(ch, h, wd)],
        output: vec![
            ValueInfoProto::tensor_f32("probabilities", &[batch(), Dim::Fixed(k)]),
            ValueInfoProto::tensor_f32("logits", &[batch(), Dim::Fixed(k)]),
        ],
        ..Default::default()
    };
    let doc = format!(
        "Image classifier: encoder {} + FC{} + softmax over {} classes. Input: a [batch, {ch}, {h}, {wd}] image in [0, 1].",
        cfg.encoder.tag(),
        cfg.fc_units,
        cfg.classes
    );
    Ok(model(graph, &doc, meta))
}
