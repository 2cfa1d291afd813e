//! `infer classify`: predictions, the classification report, the confusion
//! matrix, probabilities and sample grids.

use std::fmt::Write as _;
use std::io::Write;
use std::path::PathBuf;

use serde_json::json;

use crate::error::{check_writable, InferError};
use crate::input::Listing;
use crate::npy::NpyWriter;
use crate::report;
use ae_core::figure::{self, Tile};
use ae_core::idx;

use super::run::{
    inputs_json, open_images, open_model, peak_rss_mib, print, print_json, stream, timing_line, Format, RunOptions,
};
use crate::contract::{self, Classifier, Scores};
use crate::session::ModelSession;

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
    /// What the model was given: every image after preprocessing, as the
    /// `[N, 1, H, W]` float32 .npy it was fed.
    pub inputs: Option<PathBuf>,
    /// The most probable classes per image to write (`--top`; 1: the
    /// predicted class alone).
    pub top: usize,
}

/// Figures kept while streaming: the first few right and wrong images.
const SAMPLES: usize = 24;

/// Picture inputs: how many per-file lines the text report shows.
const PER_FILE_LINES: usize = 20;

pub fn classify(opts: &RunOptions, c: &ClassifyOptions, out: &mut dyn Write) -> Result<(), InferError> {
    let _checked = ae_core::interrupt::Checked::begin();
    // Usage errors first: no model is loaded for a command that cannot run.
    if c.confusion.is_some() && c.labels.is_none() && !opts.images.iter().any(|p| p.is_dir()) {
        return Err(InferError::Usage("--confusion needs --labels (or an image folder DIR/<class>/…)".into()));
    }
    let mut session = open_model(opts)?;
    let contract = contract::classifier(&session, &opts.outputs)?;
    if !opts.quiet && contract.output != "probabilities" {
        // A model this toolchain did not make: say what was read, and from where.
        eprintln!("{}", assumed(&session, &contract));
    }
    let classes = contract.classes;
    if c.top > classes {
        return Err(InferError::Usage(format!("--top {}: {} has {classes} classes", c.top, opts.model.display())));
    }
    let mut source = open_images(opts, &session, contract.names.clone())?;
    let names = contract.names.clone();
    let labels = match (&c.labels, source.classes()) {
        (Some(p), _) => {
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
        // An image folder labels its pictures by their folders' names,
        // which must be the model's class names.
        (None, Some(folder_classes)) => {
            let mut l = Vec::with_capacity(folder_classes.len());
            for name in folder_classes {
                match names.iter().position(|n| n == name) {
                    Some(k) => l.push(k as u8),
                    None => {
                        return Err(InferError::Input {
                            path: source.path().to_path_buf(),
                            msg: format!("class folder {name:?} is not one of the model's classes {names:?}"),
                        })
                    }
                }
            }
            Some(l)
        }
        (None, None) => None,
    };
    if c.confusion.is_some() && labels.is_none() {
        return Err(InferError::Usage("--confusion needs --labels (or an image folder DIR/<class>/…)".into()));
    }
    let truth: Option<Vec<usize>> = labels.as_ref().map(|l| l.iter().map(|&v| v as usize).collect());
    for p in [&c.predictions, &c.confusion, &c.probabilities, &c.inputs].into_iter().flatten() {
        check_writable(p)?;
    }
    let mut probs_npy = match &c.probabilities {
        Some(p) => Some(NpyWriter::create(p, &[source.count(), classes]).map_err(InferError::write(p))?),
        None => None,
    };
    let (ch, h, w) = (session.channels, session.height, session.width);
    let px = ch * h * w;
    let mut inputs_npy = match &c.inputs {
        Some(p) => Some(NpyWriter::create(p, &[source.count(), ch, h, w]).map_err(InferError::write(p))?),
        None => None,
    };
    if let Some(d) = &c.samples {
        if !d.is_dir() {
            std::fs::create_dir_all(d).map_err(InferError::write(d))?;
        }
        check_writable(&d.join("correct.png"))?;
    }
    // Capacity from the header is capped: a lying header must not allocate.
    let mut preds: Vec<usize> = Vec::with_capacity(source.count().min(1 << 20));
    let mut confs: Vec<f32> = Vec::with_capacity(source.count().min(1 << 20));
    // --top K > 1: each image's K most probable classes, most probable first.
    let mut tops: Vec<Vec<(usize, f32)>> = Vec::new();
    let mut samples: [Vec<Tile>; 2] = [Vec::new(), Vec::new()];
    let seconds = stream(&mut session, &mut source, opts.batch_size, |pixels, outputs| {
        let scores = outputs.iter().find(|o| o.name == contract.output).expect("checked");
        // Reports, confidences and --probabilities are probabilities
        // whatever the model gives; a copy only for logits.
        let probs = match contract.scores {
            Scores::Probabilities => ndarray::CowArray::from(scores.rows()),
            Scores::Logits => {
                let mut p = scores.rows().to_owned();
                for mut row in p.rows_mut() {
                    contract::softmax(row.as_slice_mut().expect("a standard-layout row"));
                }
                ndarray::CowArray::from(p)
            }
        };
        if let (Some(w), Some(p)) = (probs_npy.as_mut(), &c.probabilities) {
            w.write_rows(probs.view()).map_err(InferError::write(p))?;
        }
        if let (Some(npy), Some(p)) = (inputs_npy.as_mut(), &c.inputs) {
            let mut x = Vec::new();
            idx::normalize_into(pixels, &mut x);
            let rows = ndarray::ArrayView2::from_shape((pixels.len() / px, px), &x).expect("whole images");
            npy.write_rows(rows).map_err(InferError::write(p))?;
        }
        for (i, row) in probs.outer_iter().enumerate() {
            if row.iter().any(|p| p.is_nan()) {
                return Err(InferError::Input {
                    path: opts.model.clone(),
                    msg: format!("image {} got NaN probabilities: the model's weights are broken", preds.len()),
                });
            }
            let (best, p) = report::argmax(row.iter());
            let index = preds.len();
            preds.push(best);
            confs.push(p);
            if c.top > 1 {
                tops.push(report::top(row.iter(), c.top));
            }
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
                        pixels: pixels[i * px..(i + 1) * px].to_vec(),
                        channels: ch,
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
        w.finish().map_err(InferError::write(p))?;
    }
    if let (Some(w), Some(p)) = (inputs_npy, &c.inputs) {
        w.finish().map_err(InferError::write(p))?;
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
        "input": inputs_json(opts, &source),
        "count": n,
        "execution_provider": provider,
        "batch_size": opts.batch_size,
        "seconds": seconds,
        "images_per_second": rate,
        "peak_rss_mib": peak_rss_mib(),
    });
    // Picture inputs: which file got which class (the first few on screen,
    // all of them in the JSON and the predictions CSV).
    if let Some(files) = source.files() {
        let _ = writeln!(
            text,
            "{} pictures ({}; preprocess {}, invert {}){}",
            files.len(),
            match source.listing() {
                Listing::Labelled => "labelled by their class folders, in file-name order",
                Listing::Recursive => "directories read recursively, sub-folders included, by path",
                Listing::Flat if opts.images.iter().any(|p| p.is_dir()) => "directories in file-name order",
                Listing::Flat => "in the order given",
            },
            opts.pre.fit,
            opts.pre.invert,
            match source.skipped().len() {
                0 => String::new(),
                k => format!(", {k} unreadable skipped (named on stderr)"),
            }
        );
        let width =
            files.iter().take(PER_FILE_LINES).map(|f| f.display().to_string().chars().count()).max().unwrap_or(0);
        let nw = names.iter().map(|n| n.chars().count()).max().unwrap_or(0);
        for (i, f) in files.iter().enumerate().take(PER_FILE_LINES) {
            let _ = writeln!(text, "{:<width$}  {:<nw$}  {:5.1}%", f.display(), names[preds[i]], confs[i] * 100.0);
        }
        if files.len() > PER_FILE_LINES {
            let _ = writeln!(
                text,
                "… {} more; every file's class is in --predictions FILE.csv and --format json",
                files.len() - PER_FILE_LINES
            );
        }
        text += "\n";
        doc["files"] = json!(files
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let mut file =
                    json!({"path": f.display().to_string(), "predicted": names[preds[i]], "confidence": confs[i]});
                if let Some(top) = tops.get(i) {
                    file["top"] = top
                        .iter()
                        .map(|&(k, p)| json!({"class": names[k], "probability": p}))
                        .collect::<Vec<_>>()
                        .into();
                }
                file
            })
            .collect::<Vec<_>>());
    }
    if let Some(t) = &truth {
        let rep = report::classification_report(t, &preds, classes, Some(&names));
        text += &rep.to_text(c.digits);
        text += "\n";
        text += &rep.confusion_text();
        // The line a user reads last: the accuracy to four digits, and the count behind it.
        let right = t.iter().zip(&preds).filter(|(t, p)| t == p).count();
        let _ = writeln!(
            text,
            "\naccuracy {:.4}: {} of {} correct",
            rep.accuracy,
            ae_core::numbers::thousands(right),
            ae_core::numbers::thousands(n)
        );
        doc["report"] = rep.to_json();
        if let Some(p) = &c.confusion {
            figure::confusion_heatmap(p, &rep.confusion, &names).map_err(InferError::write(p))?;
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
        report::write_predictions(
            p,
            &preds,
            &confs,
            truth.as_deref(),
            &names,
            source.files(),
            (!tops.is_empty()).then_some(&tops[..]),
        )
        .map_err(InferError::write(p))?;
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
            figure::image_grid(&p, Some(title), tiles, 6, 3).map_err(InferError::write(&p))?;
        }
    }
    match c.format {
        Format::Text => print(out, &text),
        Format::Json => print_json(out, &doc),
    }
}

/// What `infer classify` read of a model it did not make, on one line:
/// the input, the scores output and what they hold, the class names.
fn assumed(session: &ModelSession, c: &Classifier) -> String {
    format!(
        "{}: {}; output `{}`: {} classes, {} ({}); class names: {}",
        session.path.display(),
        session.describe_input(),
        c.output,
        c.classes,
        c.scores,
        c.scores_from,
        c.names_from
    )
}
