//! `infer embed`: the encoder's embeddings as a `.npy` matrix.

use std::io::Write;
use std::path::Path;

use crate::error::{check_writable, InferError};
use crate::npy::NpyWriter;
use ae_onnx::Dim;

use super::run::{open, print, stream, timing_line, RunOptions};

pub fn embed(opts: &RunOptions, npy: &Path, out: &mut dyn Write) -> Result<(), InferError> {
    let _checked = ae_core::interrupt::Checked::begin();
    let (mut session, mut source) = open(opts, "embedding", "an encoder")?;
    let dims = session.output("embedding").expect("checked").dims.clone();
    let width: usize = dims[1..]
        .iter()
        .map(|d| match d {
            Dim::Fixed(v) if *v > 0 => Ok(*v as usize),
            _ => Err(InferError::Input {
                path: opts.model.clone(),
                msg: "output `embedding` has a non-fixed shape".into(),
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
        let e = outputs.iter().find(|o| o.name == "embedding").expect("checked");
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
