//! `infer embed`: the encoder's embeddings as a `.npy` matrix.

use std::io::Write;
use std::path::Path;

use crate::error::{check_writable, InferError};
use crate::npy::NpyWriter;
use ae_onnx::Dim;

use super::run::{open_images, open_model, print, stream, timing_line, RunOptions};
use crate::contract;

pub fn embed(opts: &RunOptions, npy: &Path, out: &mut dyn Write) -> Result<(), InferError> {
    let _checked = ae_core::interrupt::Checked::begin();
    let mut session = open_model(opts)?;
    // This toolchain's `embedding`, `--output`, or the one [batch, D]
    // output that is not a classifier's scores.
    let scores = |name: &str| matches!(name, "probabilities" | "logits");
    let fits = |o: &crate::session::TensorSpec| o.dims.len() == 2 && !scores(&o.name);
    let output = contract::choose(&session, opts.outputs.output.as_deref(), "embedding", "an encoder", fits)?;
    let (name, dims) = (output.name.clone(), output.dims.clone());
    let classes = session.metadata_class_names().unwrap_or_default();
    let mut source = open_images(opts, &session, classes)?;
    let width: usize = dims[1..]
        .iter()
        .map(|d| match d {
            Dim::Fixed(v) if *v > 0 => Ok(*v as usize),
            _ => Err(InferError::Input {
                path: opts.model.clone(),
                msg: format!("output `{name}` has a non-fixed shape"),
            }),
        })
        .product::<Result<usize, _>>()?;
    check_writable(npy)?;
    // Picture inputs: which row is which file, beside the matrix.
    let index = source.files().map(|_| npy.with_extension("paths.csv"));
    if let Some(p) = &index {
        check_writable(p)?;
    }
    let mut writer = NpyWriter::create(npy, &[source.count(), width]).map_err(InferError::write(npy))?;
    let seconds = stream(&mut session, &mut source, opts.batch_size, |_, outputs| {
        let e = outputs.iter().find(|o| o.name == name).expect("checked");
        writer.write_rows(e.rows()).map_err(InferError::write(npy))
    })?;
    writer.finish().map_err(InferError::write(npy))?;
    if let (Some(p), Some(files)) = (&index, source.files()) {
        #[derive(serde::Serialize)]
        struct Row {
            index: usize,
            path: String,
        }
        let rows = files.iter().enumerate().map(|(index, f)| Row { index, path: f.display().to_string() });
        ae_core::atomic::write_csv(p, rows).map_err(InferError::write(p))?;
    }
    let n = source.count();
    if !opts.quiet {
        eprintln!("{}", timing_line(n, seconds, &session, opts.batch_size));
    }
    print(
        out,
        &format!(
            "wrote {} embeddings of {width} floats ([{}]) to {}{}\n",
            n,
            dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", "),
            npy.display(),
            index.map(|p| format!(" (rows' files: {})", p.display())).unwrap_or_default()
        ),
    )
}
