//! What every `infer` command shares: the options, opening the model and
//! the images with their contract checked, streaming batches through the
//! session, the timing line and printing reports.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use crate::contract::OutputOptions;
use crate::error::InferError;
use crate::input::{FolderLabels, ImageSource, InputOptions};
use crate::session::{ModelSession, Output, SessionOptions};
use ae_core::idx::normalize_into;
use ae_core::interrupt;
use ae_core::preprocess::Preprocess;

/// Output format of reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[derive(strum::Display, strum::EnumString, strum::IntoStaticStr, strum::VariantArray, strum::EnumMessage)]
#[strum(serialize_all = "lowercase")]
pub enum Format {
    #[default]
    Text,
    Json,
}

/// Options every running command shares.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub model: PathBuf,
    /// One IDX file, or picture files and directories.
    pub images: Vec<PathBuf>,
    pub session: SessionOptions,
    pub batch_size: usize,
    pub pre: Preprocess,
    /// Leave out unreadable pictures instead of failing.
    pub skip_bad: bool,
    /// Whether a directory's sub-folders label its pictures.
    pub folder_labels: FolderLabels,
    pub quiet: bool,
    /// Which output to read, what it holds, the class names (`--output`,
    /// `--scores`, `--class-names`).
    pub outputs: OutputOptions,
}

/// This process's peak resident memory (VmHWM) in MiB, where /proc has it.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// The line every command prints on stderr: count, time, rate, the
/// execution provider that ran, batch size, peak memory.
pub(crate) fn timing_line(n: usize, seconds: f64, session: &ModelSession, batch: usize) -> String {
    let rss = peak_rss_mib().map(|m| format!(", peak RSS {m:.0} MiB")).unwrap_or_default();
    format!(
        "{n} images in {seconds:.3}s ({:.0} images/s) on {}, batch {batch}{rss}",
        n as f64 / seconds.max(1e-9),
        session.provider
    )
}

/// Default batch size, measured: the whole `infer classify` on the 10 000
/// MNIST test images (2 cores, 5 interleaved runs, median wall time) took
/// 0.75 s at batch 64, 0.76 s at 128, 0.72 s at 256 and 0.71 s at 512;
/// `make bench`'s session-only rates differ by less than their noise. 256
/// is as fast as any and keeps a batch's memory small.
pub const DEFAULT_BATCH: usize = 256;

/// The model, its input's contract read (`session.rs`).
pub(crate) fn open_model(opts: &RunOptions) -> Result<ModelSession, InferError> {
    if opts.batch_size == 0 {
        return Err(InferError::Usage("--batch-size must be at least 1".into()));
    }
    Ok(ModelSession::open(&opts.model, &opts.session)?)
}

/// The images, fitted to the model's input; `classes` names the classes
/// an image folder's sub-folders may be.
pub(crate) fn open_images(
    opts: &RunOptions,
    session: &ModelSession,
    classes: Vec<String>,
) -> Result<ImageSource, InferError> {
    let input = InputOptions { pre: opts.pre, skip_bad: opts.skip_bad, folder_labels: opts.folder_labels, classes };
    let source = ImageSource::open(&opts.images, [session.channels, session.height, session.width], &input)?;
    let skipped = source.skipped();
    if !skipped.is_empty() {
        for b in skipped {
            eprintln!("skipped {}: {}", b.path.display(), b.msg);
        }
        eprintln!("skipped {} of {} pictures (--skip-bad)", skipped.len(), skipped.len() + source.count());
    }
    Ok(source)
}

/// Runs every batch through the model, handing each output to `each`
/// with the batch's u8 pixels.
pub(crate) fn stream(
    session: &mut ModelSession,
    source: &mut ImageSource,
    batch: usize,
    mut each: impl FnMut(&[u8], &[Output]) -> Result<(), InferError>,
) -> Result<f64, InferError> {
    let t0 = Instant::now();
    let mut x = Vec::new();
    while let Some(pixels) = source.next_batch(batch)? {
        if interrupt::requested() {
            return Err(InferError::Interrupted);
        }
        let n = pixels.len() / (session.channels * session.height * session.width);
        normalize_into(&pixels, &mut x); // [n, C, H, W] in [0, 1]
        let outputs = session.run(&x, n)?;
        each(&pixels, &outputs)?;
    }
    // The outputs are written after the last batch: a Ctrl-C by now stops
    // the command before the first of them.
    if interrupt::requested() {
        return Err(InferError::Interrupted);
    }
    Ok(t0.elapsed().as_secs_f64())
}

/// The inputs and what was done to them, for JSON reports.
pub(crate) fn inputs_json(opts: &RunOptions, source: &ImageSource) -> serde_json::Value {
    serde_json::json!({
        "images": opts.images.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        "preprocess": opts.pre.fit.to_string(),
        "invert": opts.pre.invert.to_string(),
        "skipped": source
            .skipped()
            .iter()
            .map(|b| serde_json::json!({"path": b.path.display().to_string(), "reason": b.msg}))
            .collect::<Vec<_>>(),
    })
}

/// Prints a report on stdout; a closed stdout is an error the edge treats
/// as the reader's choice.
pub(crate) fn print(out: &mut dyn Write, text: &str) -> Result<(), InferError> {
    out.write_all(text.as_bytes()).map_err(InferError::Stdout)
}

/// A JSON document, pretty, on one stdout write.
pub(crate) fn print_json(out: &mut dyn Write, doc: &serde_json::Value) -> Result<(), InferError> {
    print(out, &format!("{}\n", serde_json::to_string_pretty(doc).expect("json")))
}
