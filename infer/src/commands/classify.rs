//! `infer classify`: predictions, the classification report, the confusion
//! matrix, probabilities and sample grids.

use std::fmt::Write as _;
use std::io::Write;
use std::path::PathBuf;

use serde_json::json;

use crate::error::{check_writable, InferError};
use crate::input::{ImageSource, Listing};
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

/// Reads (the model, its contract, the images and their labels, and the
/// files it will write, all checked before anything runs), runs (every
/// batch, streamed), then reports (text or JSON, and the files asked for).
pub fn classify(opts: &RunOptions, c: &ClassifyOptions, out: &mut dyn Write) -> Result<(), InferError> {
    let _checked = ae_core::interrupt::Checked::begin();
    let mut job = Job::read(opts, c)?;
    let run = job.run(opts, c)?;
    let (text, doc, rep) = report(opts, c, &job, &run);
    write_files(c, &job, &run, rep.as_ref())?;
    match c.format {
        Format::Text => print(out, &text),
        Format::Json => print_json(out, &doc),
    }
}

/// What classify reads before it runs anything.
struct Job {
    session: ModelSession,
    contract: Classifier,
    source: ImageSource,
    /// Each image's true class, from `--labels` or the class folders;
    /// `None` without.
    truth: Option<Vec<usize>>,
    /// `--probabilities` and `--inputs`, their headers written.
    probabilities: Option<NpyWriter>,
    inputs: Option<NpyWriter>,
}

/// What the run gave, per image in input order.
struct Predictions {
    classes: Vec<usize>,
    confidences: Vec<f32>,
    /// `--top K` > 1: the K most probable classes, most probable first.
    tops: Vec<Vec<(usize, f32)>>,
    /// `--samples`: the first right and the first wrong images.
    samples: [Vec<Tile>; 2],
    seconds: f64,
}

impl Job {
    fn read(opts: &RunOptions, c: &ClassifyOptions) -> Result<Job, InferError> {
        // Usage errors first: no model is loaded for a command that cannot run.
        if c.confusion.is_some() && c.labels.is_none() && !opts.images.iter().any(|p| p.is_dir()) {
            return Err(InferError::Usage("--confusion needs --labels (or an image folder DIR/<class>/…)".into()));
        }
        let session = open_model(opts)?;
        let contract = contract::classifier(&session, &opts.outputs)?;
        if !opts.quiet && contract.output != "probabilities" {
            // A model this toolchain did not make: say what was read, and from where.
            eprintln!("{}", assumed(&session, &contract));
        }
        let classes = contract.classes;
        if c.top > classes {
            return Err(InferError::Usage(format!("--top {}: {} has {classes} classes", c.top, opts.model.display())));
        }
        let source = open_images(opts, &session, contract.names.clone())?;
        let truth = labels(c, &source, &contract.names)?.map(|l| l.into_iter().map(usize::from).collect::<Vec<_>>());
        if c.confusion.is_some() && truth.is_none() {
            return Err(InferError::Usage("--confusion needs --labels (or an image folder DIR/<class>/…)".into()));
        }
        for p in [&c.predictions, &c.confusion, &c.probabilities, &c.inputs].into_iter().flatten() {
            check_writable(p)?;
        }
        let npy = |path: &Option<PathBuf>, shape: &[usize]| match path {
            Some(p) => NpyWriter::create(p, shape).map(Some).map_err(InferError::write(p)),
            None => Ok(None),
        };
        let probabilities = npy(&c.probabilities, &[source.count(), classes])?;
        let inputs = npy(&c.inputs, &[source.count(), session.channels, session.height, session.width])?;
        if let Some(d) = &c.samples {
            if !d.is_dir() {
                std::fs::create_dir_all(d).map_err(InferError::write(d))?;
            }
            check_writable(&d.join("correct.png"))?;
        }
        Ok(Job { session, contract, source, truth, probabilities, inputs })
    }

    /// Streams every batch through the model: the predictions, and the
    /// `.npy` files written as they come.
    fn run(&mut self, opts: &RunOptions, c: &ClassifyOptions) -> Result<Predictions, InferError> {
        let (contract, truth) = (&self.contract, &self.truth);
        let (ch, h, w) = (self.session.channels, self.session.height, self.session.width);
        let px = ch * h * w;
        // Capacity from the header is capped: a lying header must not allocate.
        let count = self.source.count().min(1 << 20);
        let mut p = Predictions {
            classes: Vec::with_capacity(count),
            confidences: Vec::with_capacity(count),
            tops: Vec::new(),
            samples: [Vec::new(), Vec::new()],
            seconds: 0.0,
        };
        let (probs_npy, inputs_npy) = (&mut self.probabilities, &mut self.inputs);
        p.seconds = stream(&mut self.session, &mut self.source, opts.batch_size, |pixels, outputs| {
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
            if let (Some(w), Some(path)) = (probs_npy.as_mut(), &c.probabilities) {
                w.write_rows(probs.view()).map_err(InferError::write(path))?;
            }
            if let (Some(npy), Some(path)) = (inputs_npy.as_mut(), &c.inputs) {
                let mut x = Vec::new();
                idx::normalize_into(pixels, &mut x);
                let rows = ndarray::ArrayView2::from_shape((pixels.len() / px, px), &x).expect("whole images");
                npy.write_rows(rows).map_err(InferError::write(path))?;
            }
            for (i, row) in probs.outer_iter().enumerate() {
                if row.iter().any(|p| p.is_nan()) {
                    return Err(InferError::Input {
                        path: opts.model.clone(),
                        msg: format!("image {} got NaN probabilities: the model's weights are broken", p.classes.len()),
                    });
                }
                let (best, confidence) = report::argmax(row.iter());
                let index = p.classes.len();
                p.classes.push(best);
                p.confidences.push(confidence);
                if c.top > 1 {
                    p.tops.push(report::top(row.iter(), c.top));
                }
                if c.samples.is_some() {
                    let truth = truth.as_ref().map(|t| t[index]);
                    let right = truth.is_none_or(|t| t == best);
                    let slot = &mut p.samples[usize::from(!right)];
                    if slot.len() < SAMPLES {
                        let names = &contract.names;
                        let caption = match truth {
                            Some(t) => {
                                format!("predicted {}, true {} ({:.0}%)", names[best], names[t], confidence * 100.0)
                            }
                            None => format!("predicted {} ({:.0}%)", names[best], confidence * 100.0),
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
        if let (Some(w), Some(path)) = (self.probabilities.take(), &c.probabilities) {
            w.finish().map_err(InferError::write(path))?;
        }
        if let (Some(w), Some(path)) = (self.inputs.take(), &c.inputs) {
            w.finish().map_err(InferError::write(path))?;
        }
        if !opts.quiet {
            eprintln!("{}", timing_line(p.classes.len(), p.seconds, &self.session, opts.batch_size));
        }
        Ok(p)
    }
}

/// The labels: `--labels` (as many as images, each below the class
/// count), or the class folders' names, which must be the model's class
/// names; `None` without either.
fn labels(c: &ClassifyOptions, source: &ImageSource, names: &[String]) -> Result<Option<Vec<u8>>, InferError> {
    let classes = names.len();
    match (&c.labels, source.classes()) {
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
            Ok(Some(l))
        }
        (None, Some(folder_classes)) => folder_classes
            .iter()
            .map(|name| match names.iter().position(|n| n == name) {
                Some(k) => Ok(k as u8),
                None => Err(InferError::Input {
                    path: source.path().to_path_buf(),
                    msg: format!("class folder {name:?} is not one of the model's classes {names:?}"),
                }),
            })
            .collect::<Result<Vec<u8>, _>>()
            .map(Some),
        (None, None) => Ok(None),
    }
}

/// The report as text and as JSON, and with labels the classification
/// report itself (for `--confusion`).
fn report(
    opts: &RunOptions,
    c: &ClassifyOptions,
    job: &Job,
    run: &Predictions,
) -> (String, serde_json::Value, Option<report::Report>) {
    let (names, preds, n) = (&job.contract.names, &run.classes, run.classes.len());
    let source = &job.source;
    let mut text = String::new();
    let mut doc = json!({
        "model": opts.model.display().to_string(),
        "input": inputs_json(opts, source),
        "count": n,
        "execution_provider": job.session.provider,
        "batch_size": opts.batch_size,
        "seconds": run.seconds,
        "images_per_second": n as f64 / run.seconds.max(1e-9),
        "peak_rss_mib": peak_rss_mib(),
    });
    // Picture inputs: which file got which class (the first few on screen,
    // all of them in the JSON and the predictions CSV).
    if let Some(files) = source.files() {
        text += &files_text(opts, source, files, names, run);
        doc["files"] = json!(files
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let mut file = json!({"path": f.display().to_string(), "predicted": names[preds[i]], "confidence": run.confidences[i]});
                if let Some(top) = run.tops.get(i) {
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
    let Some(truth) = &job.truth else {
        let mut hist = vec![0usize; job.contract.classes];
        for &p in preds {
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
        return (text, doc, None);
    };
    let rep = report::classification_report(truth, preds, job.contract.classes, Some(names));
    text += &rep.to_text(c.digits);
    text += "\n";
    text += &rep.confusion_text();
    // The line a user reads last: the accuracy to four digits, and the count behind it.
    let right = truth.iter().zip(preds).filter(|(t, p)| t == p).count();
    let _ = writeln!(
        text,
        "\naccuracy {:.4}: {} of {} correct",
        rep.accuracy,
        ae_core::numbers::thousands(right),
        ae_core::numbers::thousands(n)
    );
    doc["report"] = rep.to_json();
    (text, doc, Some(rep))
}

/// The first lines of a report on picture files: how they were found, and
/// the class of each of the first few.
fn files_text(
    opts: &RunOptions,
    source: &ImageSource,
    files: &[PathBuf],
    names: &[String],
    run: &Predictions,
) -> String {
    let mut text = String::new();
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
    let width = files.iter().take(PER_FILE_LINES).map(|f| f.display().to_string().chars().count()).max().unwrap_or(0);
    let nw = names.iter().map(|n| n.chars().count()).max().unwrap_or(0);
    for (i, f) in files.iter().enumerate().take(PER_FILE_LINES) {
        let _ = writeln!(
            text,
            "{:<width$}  {:<nw$}  {:5.1}%",
            f.display(),
            names[run.classes[i]],
            run.confidences[i] * 100.0
        );
    }
    if files.len() > PER_FILE_LINES {
        let _ = writeln!(
            text,
            "… {} more; every file's class is in --predictions FILE.csv and --format json",
            files.len() - PER_FILE_LINES
        );
    }
    text + "\n"
}

/// `--confusion`, `--predictions` and `--samples`.
fn write_files(
    c: &ClassifyOptions,
    job: &Job,
    run: &Predictions,
    rep: Option<&report::Report>,
) -> Result<(), InferError> {
    let names = &job.contract.names;
    if let (Some(p), Some(rep)) = (&c.confusion, rep) {
        figure::confusion_heatmap(p, &rep.confusion, names).map_err(InferError::write(p))?;
    }
    if let Some(p) = &c.predictions {
        report::write_predictions(
            p,
            &run.classes,
            &run.confidences,
            job.truth.as_deref(),
            names,
            job.source.files(),
            (!run.tops.is_empty()).then_some(&run.tops[..]),
        )
        .map_err(InferError::write(p))?;
    }
    if let Some(d) = &c.samples {
        // Without labels nothing is known to be right or wrong: one grid.
        let grids = match job.truth {
            Some(_) => vec![
                (&run.samples[0], "correct.png", "correctly predicted"),
                (&run.samples[1], "incorrect.png", "incorrectly predicted"),
            ],
            None => vec![(&run.samples[0], "predicted.png", "predictions")],
        };
        for (tiles, name, title) in grids {
            let p = d.join(name);
            figure::image_grid(&p, Some(title), tiles, 6, 3).map_err(InferError::write(&p))?;
        }
    }
    Ok(())
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
