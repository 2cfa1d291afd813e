//! What a model's outputs mean, read from the model rather than assumed:
//! which output a command reads (`--output`, this toolchain's name for it,
//! or the one output of the right shape), whether a classifier's scores are
//! probabilities or logits (this toolchain's name, a final Softmax node,
//! else logits; `--scores` overrides), and what its classes are called
//! (`--class-names`, the model's metadata, else the indices).

use std::path::Path;

use ae_onnx::Dim;

use crate::session::{ModelSession, TensorSpec};

/// A model whose outputs do not fit what was asked, or a flag that does
/// not fit the model (`infer`'s edge reports it as a bad input, exit 2).
#[derive(Debug, thiserror::Error)]
#[error("{}: {msg}", path.display())]
pub struct ContractError {
    pub path: std::path::PathBuf,
    pub msg: String,
}

/// What a classifier's output holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[derive(strum::Display, strum::EnumString, strum::IntoStaticStr, strum::VariantArray, strum::EnumMessage)]
#[strum(serialize_all = "lowercase")]
pub enum Scores {
    /// Each row sums to 1 (a final Softmax).
    Probabilities,
    /// Raw scores; softmax gives the probabilities.
    Logits,
}

/// What the user says of a model's outputs; `None`: read from the model.
#[derive(Debug, Clone, Default)]
pub struct OutputOptions {
    /// `--output`: the output to read.
    pub output: Option<String>,
    /// `--scores`.
    pub scores: Option<Scores>,
    /// `--class-names`: the names, and where they came from.
    pub class_names: Option<(Vec<String>, String)>,
}

/// A classifier's contract: the output, its class count, what its values
/// are and the classes' names, each with where it was read.
#[derive(Debug, Clone)]
pub struct Classifier {
    pub output: String,
    pub classes: usize,
    pub scores: Scores,
    pub scores_from: &'static str,
    pub names: Vec<String>,
    pub names_from: String,
}

/// The output a command reads: `--output`, else `ours` (this toolchain's
/// name for it) when the model has it, else the model's one output that
/// `fits`. Refusals name every output and how to choose.
pub fn choose<'a>(
    session: &'a ModelSession,
    given: Option<&str>,
    ours: &str,
    what: &str,
    fits: impl Fn(&TensorSpec) -> bool,
) -> Result<&'a TensorSpec, ContractError> {
    let have =
        || session.outputs.iter().map(|o| format!("{} [{}]", o.name, o.dims_string())).collect::<Vec<_>>().join(", ");
    let refuse = |msg: String| ContractError { path: session.path.clone(), msg };
    if let Some(name) = given {
        return session
            .output(name)
            .ok_or_else(|| refuse(format!("--output {name:?} is not an output of the model (it has {})", have())));
    }
    if let Some(o) = session.output(ours) {
        return Ok(o);
    }
    let fitting: Vec<&TensorSpec> = session.outputs.iter().filter(|o| fits(o)).collect();
    match fitting.as_slice() {
        [one] => Ok(one),
        [] => Err(refuse(format!("model has outputs {}, expected {what} with output `{ours}`", have()))),
        _ => Err(refuse(format!(
            "model has outputs {}, several of which could be {what}: choose one with --output",
            have()
        ))),
    }
}

/// `[batch, K]`, or `[K]` for a model whose batch is fixed at 1: K.
fn row_width(spec: &TensorSpec, fixed_batch: Option<usize>) -> Option<usize> {
    match spec.dims.as_slice() {
        [_, Dim::Fixed(k)] if *k >= 1 => Some(*k as usize),
        [Dim::Fixed(k)] if *k >= 1 && fixed_batch == Some(1) => Some(*k as usize),
        _ => None,
    }
}

/// The classifier contract of `session` (see the module's comment).
pub fn classifier(session: &ModelSession, opts: &OutputOptions) -> Result<Classifier, ContractError> {
    let fixed = session.fixed_batch;
    let spec =
        choose(session, opts.output.as_deref(), "probabilities", "a classifier", |o| row_width(o, fixed).is_some())?;
    let classes = row_width(spec, fixed).ok_or_else(|| ContractError {
        path: session.path.clone(),
        msg: format!("output `{}` is [{}], not [batch, classes]", spec.name, spec.dims_string()),
    })?;
    let (scores, scores_from) = match opts.scores {
        Some(s) => (s, "--scores"),
        // This toolchain's classifiers end in Softmax and name it so.
        None if spec.name == "probabilities" => (Scores::Probabilities, "its name, this toolchain's"),
        None => match final_op(&session.path, &spec.name).as_deref() {
            Some("Softmax") => (Scores::Probabilities, "a final Softmax node"),
            Some("LogSoftmax") => (Scores::Logits, "a final LogSoftmax node (softmax of it gives the probabilities)"),
            _ => (Scores::Logits, "no final Softmax node: taken as logits"),
        },
    };
    let (names, names_from) = match &opts.class_names {
        Some((names, from)) if names.len() == classes => (names.clone(), from.clone()),
        Some((names, from)) => {
            return Err(ContractError {
                path: session.path.clone(),
                msg: format!(
                    "{from} gives {} class names, but output `{}` has {classes} classes",
                    names.len(),
                    spec.name
                ),
            })
        }
        None => match metadata_names(session, classes) {
            Some((names, key)) => (names, format!("the model's metadata ({key})")),
            None => ((0..classes).map(|c| c.to_string()).collect(), "the indices".into()),
        },
    };
    Ok(Classifier { output: spec.name.clone(), classes, scores, scores_from, names, names_from })
}

/// Class names in a model's metadata: this toolchain's `class_names` (a
/// JSON list), or a Keras-style list under `classes`, `labels` or
/// `class_labels` (a JSON list, a JSON object from index to name, or
/// comma-separated); only a list of exactly `classes` names counts.
pub fn metadata_names(session: &ModelSession, classes: usize) -> Option<(Vec<String>, String)> {
    ["class_names", "classes", "labels", "class_labels"].iter().find_map(|key| {
        let text = session.metadata.get(*key)?;
        let names: Vec<String> = match serde_json::from_str::<serde_json::Value>(text) {
            Ok(serde_json::Value::Array(a)) => a.iter().map(|v| v.as_str().map(String::from)).collect::<Option<_>>()?,
            Ok(serde_json::Value::Object(o)) => (0..classes)
                .map(|i| o.get(&i.to_string()).and_then(|v| v.as_str()).map(String::from))
                .collect::<Option<_>>()?,
            _ => text.split(',').map(|n| n.trim().to_string()).collect(),
        };
        (names.len() == classes && names.iter().all(|n| !n.is_empty())).then(|| (names, key.to_string()))
    })
}

/// The operator that makes `output`, looking through shape-only ones
/// (Identity, Reshape, Flatten, Squeeze); `None` when the file cannot be
/// read as ONNX here.
fn final_op(model: &Path, output: &str) -> Option<String> {
    let m = ae_onnx::read_model(model).ok()?;
    let g = m.graph.as_ref()?;
    let mut name = output.to_string();
    for _ in 0..8 {
        let node = g.node.iter().find(|n| n.output.contains(&name))?;
        match node.op_type.as_str() {
            "Identity" | "Reshape" | "Flatten" | "Squeeze" | "Unsqueeze" | "Cast" => {
                name = node.input.first()?.clone();
            }
            op => return Some(op.to_string()),
        }
    }
    None
}

/// Softmax of one row of logits, in place (max-subtracted, in f64).
pub fn softmax(row: &mut [f32]) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f64> = row.iter().map(|&v| ((v - max) as f64).exp()).collect();
    let sum: f64 = exps.iter().sum();
    for (v, e) in row.iter_mut().zip(exps) {
        *v = (e / sum) as f32;
    }
}

/// Class names from `--class-names`: a file with one name per line (blank
/// lines skipped), or a comma-separated list; returns them and where they
/// came from.
pub fn parse_class_names(spec: &str) -> Result<(Vec<String>, String), String> {
    let names = ae_core::class_names::parse(spec).map_err(|e| e.to_string())?;
    Ok((names.names, names.source))
}

#[cfg(test)]
mod tests {
    use crate::contract::softmax;

    #[test]
    fn softmax_of_logits_sums_to_one_and_keeps_the_order() {
        let mut row = [1.0f32, 3.0, -2.0, 1000.0];
        softmax(&mut row);
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert_eq!(row[3], 1.0);
        let mut row = [0.0f32, (2.0f32).ln()];
        softmax(&mut row);
        assert!((row[1] - 2.0 / 3.0).abs() < 1e-6, "{row:?}");
    }
}
