//! The `infer` commands: classify, reconstruct, embed, info. Each checks
//! the model's contract and every input and output path before running,
//! streams images batch by batch, and writes its files atomically.

use std::fmt::Write as _;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::json;

use crate::error::{check_writable, InferError};
use crate::figure::{self, Tile};
use crate::idx::{self, normalize_into};
use crate::input::{ImageSource, Preprocess};
use crate::onnx::Dim;
use crate::report;
use crate::session::{Device, ModelSession, SessionOptions};

/// Output format of reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    #[default]
    Text,
    Json,
}

/// Options every running command shares.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub model: PathBuf,
    pub images: PathBuf,
    pub session: SessionOptions,
    pub batch_size: usize,
    pub pre: Preprocess,
    pub quiet: bool,
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
fn timing_line(n: usize, seconds: f64, session: &ModelSession, batch: usize) -> String {
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

fn open(opts: &RunOptions, output: &str, what: &str) -> Result<(ModelSession, ImageSource), InferError> {
    if opts.batch_size == 0 {
        return Err(InferError::Usage("--batch-size must be at least 1".into()));
    }
    let session = ModelSession::open(&opts.model, &opts.session)?;
    if session.output(output).is_none() {
        let have =
            session.outputs.iter().map(|o| format!("{} [{}]", o.name, o.dims_string())).collect::<Vec<_>>().join(", ");
        return Err(InferError::Input {
            path: opts.model.clone(),
            msg: format!("model has outputs {have}, expected {what} with output `{output}`"),
        });
    }
    let source = ImageSource::open(&opts.images, session.height, session.width, opts.pre)?;
    Ok((session, source))
}

/// Runs every batch through the model, handing each output to `each`
/// with the batch's u8 pixels.
fn stream(
    session: &mut ModelSession,
    source: &mut ImageSource,
    batch: usize,
    mut each: impl FnMut(&[u8], &[crate::session::Output]) -> Result<(), InferError>,
) -> Result<f64, InferError> {
    let t0 = Instant::now();
    let mut x = Vec::new();
    while let Some(pixels) = source.next_batch(batch)? {
        let n = pixels.len() / (session.height * session.width);
        normalize_into(&pixels, &mut x); // [n, 1, H, W] in [0, 1]
        let outputs = session.run(&x, n)?;
        each(&pixels, &outputs)?;
    }
    Ok(t0.elapsed().as_secs_f64())
}

fn class_names(session: &ModelSession, classes: usize) -> Vec<String> {
    session
        .metadata
        .get("class_names")
        .and_then(|v| serde_json::from_str::<Vec<String>>(v).ok())
        .filter(|n| n.len() == classes)
        .unwrap_or_else(|| (0..classes).map(|c| c.to_string()).collect())
}

#[derive(Debug, Clone, Default)]
pub struct ClassifyOptions {
    pub labels: Option<PathBuf>,
    pub format: Format,
    pub digits: usize,
    pub predictions: Option<PathBuf>,
    pub confusion: Option<PathBuf>,
    pub samples: Option<PathBuf>,
    /// Every image's class probabilities as a `[N, classes]` .npy.
    pub probabilities: Option<PathBuf>,
}

/// Figures kept while streaming: the first few right and wrong images.
const SAMPLES: usize = 24;

pub fn classify(opts: &RunOptions, c: &ClassifyOptions, out: &mut dyn Write) -> Result<(), InferError> {
    let (mut session, mut source) = open(opts, "probabilities", "a classifier")?;
    let classes = match session.output("probabilities").map(|o| o.dims.as_slice()) {
        Some([_, Dim::Fixed(k)]) if *k >= 1 => *k as usize,
        _ => {
            return Err(InferError::Input {
                path: opts.model.clone(),
                msg: "output `probabilities` is not [batch, classes]".into(),
            })
        }
    };
    let labels = match &c.labels {
        Some(p) => {
            let l = idx::read_labels(p)?;
            if l.len() != source.count() {
                return Err(InferError::Input {
                    path: p.clone(),
                    msg: format!("{} labels, but {} has {} images", l.len(), source.path().display(), source.count()),
                });
            }
            if let Some(i) = l.iter().position(|&v| v as usize >= classes) {
                return Err(InferError::Input {
                    path: p.clone(),
                    msg: format!("label {} at index {i} is not below the model's {classes} classes", l[i]),
                });
            }
            Some(l)
        }
        None => None,
    };
    for p in [&c.predictions, &c.confusion, &c.probabilities].into_iter().flatten() {
        check_writable(p)?;
    }
    let mut probs_npy = match &c.probabilities {
        Some(p) => {
            Some(crate::npy::NpyWriter::create(p, &[source.count(), classes]).map_err(|e| InferError::output(p, e))?)
        }
        None => None,
    };
    if c.confusion.is_some() && labels.is_none() {
        return Err(InferError::Usage("--confusion needs --labels".into()));
    }
    if let Some(d) = &c.samples {
        if !d.is_dir() {
            std::fs::create_dir_all(d).map_err(|e| InferError::output(d, e))?;
        }
        check_writable(&d.join("correct.png"))?;
    }
    let names = class_names(&session, classes);
    let (h, w) = (session.height, session.width);
    // Capacity from the header is capped: a lying header must not allocate.
    let mut preds: Vec<usize> = Vec::with_capacity(source.count().min(1 << 20));
    let mut confs: Vec<f32> = Vec::with_capacity(source.count().min(1 << 20));
    let mut samples: [Vec<Tile>; 2] = [Vec::new(), Vec::new()];
    let seconds = stream(&mut session, &mut source, opts.batch_size, |pixels, outputs| {
        let probs = outputs.iter().find(|o| o.name == "probabilities").expect("checked");
        if let (Some(w), Some(p)) = (probs_npy.as_mut(), &c.probabilities) {
            w.write_rows(&probs.data).map_err(|e| InferError::output(p, e))?;
        }
        for (i, row) in probs.data.chunks_exact(classes).enumerate() {
            let (best, p) =
                row.iter().enumerate().fold((0, f32::NEG_INFINITY), |a, (k, &v)| if v > a.1 { (k, v) } else { a });
            let index = preds.len();
            preds.push(best);
            confs.push(p);
            if c.samples.is_some() {
                let truth = labels.as_ref().map(|l| l[index] as usize);
                let right = truth.is_none_or(|t| t == best);
                let slot = &mut samples[usize::from(!right)];
                if slot.len() < SAMPLES {
                    let caption = match truth {
                        Some(t) => format!("predicted {}, true {} ({:.0}%)", names[best], names[t], p * 100.0),
                        None => format!("predicted {} ({:.0}%)", names[best], p * 100.0),
                    };
                    slot.push(Tile {
                        pixels: pixels[i * h * w..(i + 1) * h * w].to_vec(),
                        height: h,
                        width: w,
                        caption: Some(caption),
                        alert: !right,
                    });
                }
            }
        }
        Ok(())
    })?;
    if let (Some(w), Some(p)) = (probs_npy, &c.probabilities) {
        w.finish().map_err(|e| InferError::output(p, e))?;
    }
    let n = preds.len();
    let rate = n as f64 / seconds.max(1e-9);
    let provider = session.provider;
    if !opts.quiet {
        eprintln!("{}", timing_line(n, seconds, &session, opts.batch_size));
    }
    let mut text = String::new();
    let mut doc = json!({
        "model": opts.model.display().to_string(),
        "images": opts.images.display().to_string(),
        "count": n,
        "execution_provider": provider,
        "batch_size": opts.batch_size,
        "seconds": seconds,
        "images_per_second": rate,
        "peak_rss_mib": peak_rss_mib(),
    });
    if let Some(l) = &labels {
        let truth: Vec<usize> = l.iter().map(|&v| v as usize).collect();
        let rep = report::classification_report(&truth, &preds, classes, Some(&names));
        text += &rep.to_text(c.digits);
        text += "\n";
        text += &rep.confusion_text();
        doc["report"] = rep.to_json();
        if let Some(p) = &c.confusion {
            figure::confusion_heatmap(p, &rep.confusion, &names).map_err(|e| InferError::output(p, e))?;
        }
    } else {
        let mut hist = vec![0usize; classes];
        for &p in &preds {
            hist[p] += 1;
        }
        let _ = writeln!(text, "predicted class histogram ({n} images)");
        let width = names.iter().map(|s| s.len()).max().unwrap_or(1);
        let top = hist.iter().copied().max().unwrap_or(1).max(1);
        for (k, &count) in hist.iter().enumerate() {
            let bar = "#".repeat((count * 40).div_ceil(top).min(40));
            let _ = writeln!(text, "{:>width$} {count:>8} {bar}", names[k]);
        }
        doc["histogram"] =
            json!(names.iter().cloned().zip(hist.iter().map(|&c| json!(c))).collect::<serde_json::Map<_, _>>());
    }
    if let Some(p) = &c.predictions {
        let mut csv = String::from(if labels.is_some() {
            "index,predicted,confidence,true\n"
        } else {
            "index,predicted,confidence\n"
        });
        for (i, (&pr, &cf)) in preds.iter().zip(&confs).enumerate() {
            match &labels {
                Some(l) => writeln!(csv, "{i},{},{cf:.6},{}", names[pr], names[l[i] as usize]),
                None => writeln!(csv, "{i},{},{cf:.6}", names[pr]),
            }
            .expect("string write");
        }
        crate::atomic::write_bytes(p, csv.as_bytes()).map_err(|e| InferError::output(p, e))?;
    }
    if let Some(d) = &c.samples {
        // Without labels nothing is known to be right or wrong: one grid.
        let grids = match labels {
            Some(_) => vec![
                (&samples[0], "correct.png", "correctly predicted"),
                (&samples[1], "incorrect.png", "incorrectly predicted"),
            ],
            None => vec![(&samples[0], "predicted.png", "predictions")],
        };
        for (tiles, name, title) in grids {
            let p = d.join(name);
            figure::image_grid(&p, Some(title), tiles, 6, 3).map_err(|e| InferError::output(&p, e))?;
        }
    }
    let io = |e: std::io::Error| InferError::Runtime(format!("stdout: {e}"));
    match c.format {
        Format::Text => write!(out, "{text}").map_err(io)?,
        Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&doc).expect("json")).map_err(io)?,
    }
    Ok(())
}

#[derive(Debug, Clone, Default)]
pub struct ReconstructOptions {
    pub grid: Option<PathBuf>,
    pub count: usize,
    pub per_image: Option<PathBuf>,
    /// Every reconstruction as a `[N, 1, H, W]` .npy.
    pub npy: Option<PathBuf>,
    pub format: Format,
}

pub fn reconstruct(opts: &RunOptions, r: &ReconstructOptions, out: &mut dyn Write) -> Result<(), InferError> {
    let (mut session, mut source) = open(opts, "reconstruction", "an autoencoder")?;
    for p in [&r.grid, &r.per_image, &r.npy].into_iter().flatten() {
        check_writable(p)?;
    }
    let (h, w) = (session.height, session.width);
    let mut npy = match &r.npy {
        Some(p) => {
            Some(crate::npy::NpyWriter::create(p, &[source.count(), 1, h, w]).map_err(|e| InferError::output(p, e))?)
        }
        None => None,
    };
    let px = h * w;
    let mut mse: Vec<f64> = Vec::with_capacity(source.count().min(1 << 20));
    let (mut originals, mut recons) = (Vec::new(), Vec::new());
    let seconds = stream(&mut session, &mut source, opts.batch_size, |pixels, outputs| {
        let rec = outputs.iter().find(|o| o.name == "reconstruction").expect("checked");
        if let (Some(wr), Some(p)) = (npy.as_mut(), &r.npy) {
            wr.write_rows(&rec.data).map_err(|e| InferError::output(p, e))?;
        }
        for (i, y) in rec.data.chunks_exact(px).enumerate() {
            let x = &pixels[i * px..(i + 1) * px];
            let e = x.iter().zip(y).map(|(&a, &b)| (a as f64 / 255.0 - b as f64).powi(2)).sum::<f64>() / px as f64;
            if originals.len() < r.count {
                originals.push(Tile { pixels: x.to_vec(), height: h, width: w, caption: None, alert: false });
                let y8 = y.iter().map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8).collect();
                recons.push(Tile {
                    pixels: y8,
                    height: h,
                    width: w,
                    caption: Some(format!("MSE {e:.5}")),
                    alert: false,
                });
            }
            mse.push(e);
        }
        Ok(())
    })?;
    if let (Some(wr), Some(p)) = (npy, &r.npy) {
        wr.finish().map_err(|e| InferError::output(p, e))?;
    }
    let n = mse.len();
    let mean = mse.iter().sum::<f64>() / n.max(1) as f64;
    let mut sorted = mse.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted.get(n / 2).copied().unwrap_or(0.0);
    if !opts.quiet {
        eprintln!("{}", timing_line(n, seconds, &session, opts.batch_size));
    }
    if let Some(p) = &r.per_image {
        let mut csv = String::from("index,mse\n");
        for (i, e) in mse.iter().enumerate() {
            let _ = writeln!(csv, "{i},{e}");
        }
        crate::atomic::write_bytes(p, csv.as_bytes()).map_err(|e| InferError::output(p, e))?;
    }
    if let Some(p) = &r.grid {
        let cols = originals.len();
        let mut tiles = originals;
        tiles.extend(recons);
        figure::image_grid(p, Some("originals (top) and reconstructions (bottom)"), &tiles, cols.max(1), 3)
            .map_err(|e| InferError::output(p, e))?;
    }
    let io = |e: std::io::Error| InferError::Runtime(format!("stdout: {e}"));
    match r.format {
        Format::Text => {
            writeln!(out, "images {n}").map_err(io)?;
            writeln!(out, "mean MSE {mean:.6}").map_err(io)?;
            writeln!(
                out,
                "min {:.6} median {median:.6} max {:.6}",
                sorted.first().copied().unwrap_or(0.0),
                sorted.last().copied().unwrap_or(0.0)
            )
            .map_err(io)?;
            for (i, e) in mse.iter().enumerate().take(r.count) {
                writeln!(out, "image {i}: MSE {e:.6}").map_err(io)?;
            }
        }
        Format::Json => {
            let doc = json!({
                "model": opts.model.display().to_string(),
                "images": n,
                "mean_mse": mean,
                "median_mse": median,
                "per_image_mse": mse,
                "execution_provider": session.provider,
                "seconds": seconds,
            });
            writeln!(out, "{}", serde_json::to_string_pretty(&doc).expect("json")).map_err(io)?;
        }
    }
    Ok(())
}

pub fn embed(opts: &RunOptions, npy: &Path, out: &mut dyn Write) -> Result<(), InferError> {
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
    let mut writer =
        crate::npy::NpyWriter::create(npy, &[source.count(), width]).map_err(|e| InferError::output(npy, e))?;
    let seconds = stream(&mut session, &mut source, opts.batch_size, |_, outputs| {
        let e = outputs.iter().find(|o| o.name == "embedding").expect("checked");
        writer.write_rows(&e.data).map_err(|err| InferError::output(npy, err))
    })?;
    writer.finish().map_err(|e| InferError::output(npy, e))?;
    let n = source.count();
    if !opts.quiet {
        eprintln!("{}", timing_line(n, seconds, &session, opts.batch_size));
    }
    writeln!(
        out,
        "wrote {} embeddings of {width} floats ([{}]) to {}",
        n,
        dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", "),
        npy.display()
    )
    .map_err(|e| InferError::Runtime(format!("stdout: {e}")))?;
    Ok(())
}

/// `infer info`: the model's contract and metadata, read from the file
/// without starting ONNX Runtime.
pub fn info(model: &Path, format: Format, out: &mut dyn Write) -> Result<(), InferError> {
    let m = crate::onnx::read_model(model)?;
    let g = m.graph.as_ref().expect("read_model checks");
    let inits: std::collections::HashSet<&str> = g.initializer.iter().map(|t| t.name.as_str()).collect();
    let shape = |v: &crate::onnx::ValueInfoProto| v.dims().iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ");
    let inputs: Vec<_> = g.input.iter().filter(|i| !inits.contains(i.name.as_str())).collect();
    let params: usize = g.initializer.iter().map(|t| t.dims.iter().product::<i64>().max(0) as usize).sum();
    let io = |e: std::io::Error| InferError::Runtime(format!("stdout: {e}"));
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
                let _ = writeln!(s, "input: {} float32 [{}]", i.name, shape(i));
            }
            for o in &g.output {
                let _ = writeln!(s, "output: {} float32 [{}]", o.name, shape(o));
            }
            let _ = writeln!(s, "nodes: {}  parameters: {params}", g.node.len());
            let _ = writeln!(s, "metadata:");
            for (k, v) in m.metadata() {
                let _ = writeln!(s, "  {k}: {v}");
            }
            write!(out, "{s}").map_err(io)
        }
        Format::Json => {
            let doc = json!({
                "model": model.display().to_string(),
                "producer": format!("{} {}", m.producer_name, m.producer_version),
                "ir_version": m.ir_version,
                "opset": m.opset(),
                "doc": m.doc_string,
                "inputs": inputs.iter().map(|i| json!({"name": i.name, "shape": shape(i)})).collect::<Vec<_>>(),
                "outputs": g.output.iter().map(|o| json!({"name": o.name, "shape": shape(o)})).collect::<Vec<_>>(),
                "nodes": g.node.len(),
                "parameters": params,
                "metadata": m.metadata(),
            });
            writeln!(out, "{}", serde_json::to_string_pretty(&doc).expect("json")).map_err(io)
        }
    }
}

/// Device option re-exported for the CLI.
pub type DeviceArg = Device;
