//! Small deterministic ONNX models for tests (feature `fixtures`): a
//! classifier, an encoder and an autoencoder of one convolution each, with
//! seeded weights and the class names the toolchain's own models carry.
//! The `infer` and `serve` tests build their model folders from them.

use crate::{
    AttributeProto, Dim, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto, TensorProto,
    ValueInfoProto,
};

/// Deterministic pseudo-random bytes.
pub fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (s >> 56) as u8
        })
        .collect()
}

/// One node whose name is its output's.
pub fn node(op: &str, inputs: &[&str], output: &str, attrs: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        name: output.into(),
        op_type: op.into(),
        attribute: attrs,
        ..Default::default()
    }
}

/// Deterministic floats, uniform in ±scale/2.
pub fn floats(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    noise(n, seed).iter().map(|&b| (b as f32 / 255.0 - 0.5) * scale).collect()
}

/// A small fixed classifier: Conv(1→2, 3×3) → Relu → MaxPool → Flatten →
/// Gemm(392→10) → Softmax, with deterministic weights, plus an
/// "autoencoder" (Conv → Sigmoid) and an "encoder" (Conv → Relu).
pub fn fixture_model(kind: &str, h: i64, w: i64) -> ModelProto {
    let batch = || Dim::Symbolic("batch".into());
    let mut inits = vec![
        TensorProto::f32("conv.w", &[2, 1, 3, 3], &floats(18, 1, 2.0)),
        TensorProto::f32("conv.b", &[2], &[0.1, -0.1]),
    ];
    let conv = node("Conv", &["image", "conv.w", "conv.b"], "conv", vec![AttributeProto::ints("pads", &[1, 1, 1, 1])]);
    let (nodes, outputs) = match kind {
        "classifier" => {
            let feat = 2 * (h / 2) * (w / 2);
            inits.push(TensorProto::f32("fc.w", &[10, feat], &floats(10 * feat as usize, 2, 0.2)));
            inits.push(TensorProto::f32("fc.b", &[10], &floats(10, 3, 0.2)));
            (
                vec![
                    conv,
                    node("Relu", &["conv"], "relu", vec![]),
                    node(
                        "MaxPool",
                        &["relu"],
                        "pool",
                        vec![AttributeProto::ints("kernel_shape", &[2, 2]), AttributeProto::ints("strides", &[2, 2])],
                    ),
                    node("Flatten", &["pool"], "flat", vec![AttributeProto::int("axis", 1)]),
                    node("Gemm", &["flat", "fc.w", "fc.b"], "logits", vec![AttributeProto::int("transB", 1)]),
                    node("Softmax", &["logits"], "probabilities", vec![AttributeProto::int("axis", -1)]),
                ],
                vec![ValueInfoProto::tensor_f32("probabilities", &[batch(), Dim::Fixed(10)])],
            )
        }
        "autoencoder" => {
            inits[0] = TensorProto::f32("conv.w", &[1, 1, 3, 3], &floats(9, 1, 2.0));
            inits[1] = TensorProto::f32("conv.b", &[1], &[0.0]);
            (
                vec![conv, node("Sigmoid", &["conv"], "reconstruction", vec![])],
                vec![ValueInfoProto::tensor_f32(
                    "reconstruction",
                    &[batch(), Dim::Fixed(1), Dim::Fixed(h), Dim::Fixed(w)],
                )],
            )
        }
        _ => (
            vec![conv, node("Relu", &["conv"], "embedding", vec![])],
            vec![ValueInfoProto::tensor_f32("embedding", &[batch(), Dim::Fixed(2), Dim::Fixed(h), Dim::Fixed(w)])],
        ),
    };
    ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 17 }],
        producer_name: "fixture".into(),
        producer_version: "1".into(),
        doc_string: format!("fixture {kind}"),
        graph: Some(GraphProto {
            node: nodes,
            name: kind.into(),
            initializer: inits,
            input: vec![ValueInfoProto::tensor_f32("image", &[batch(), Dim::Fixed(1), Dim::Fixed(h), Dim::Fixed(w)])],
            output: outputs,
            ..Default::default()
        }),
        metadata_props: vec![StringStringEntryProto {
            key: "class_names".into(),
            value: "[\"zero\",\"one\",\"two\",\"three\",\"four\",\"five\",\"six\",\"seven\",\"eight\",\"nine\"]".into(),
        }],
        ..Default::default()
    }
}
