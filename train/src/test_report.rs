//! A classifier run's report on its test set: `test_report.txt`
//! (scikit-learn's layout), `test_metrics.json`, `test_predictions.csv`, and
//! the grids of correctly and incorrectly predicted images.

use std::time::Instant;

use tch::{Device, Kind};

use ae_core::figure::{self, Tile};
use ae_core::idx::Images;
use infer::report;

use crate::checkpoint::to_vec;
use crate::data;
use crate::dataset::DatasetInfo;
use crate::error::TrainError;
use crate::model::Classifier;
use crate::run_dir::RunDir;

/// Images per forward pass.
const CHUNK: i64 = 1000;
/// Images shown per grid.
const GRID: usize = 24;

/// Every test image's prediction, in `infer classify --predictions`' layout.
pub const PREDICTIONS: &str = "test_predictions.csv";

/// Which weights a report was measured on: the epoch of the run whose
/// configuration has this fingerprint. `test_metrics.json` records it, and
/// `train export` copies the test accuracy only into a model of those
/// weights.
#[derive(Debug, Clone, PartialEq)]
pub struct Measured {
    pub epoch: usize,
    pub config_sha256: String,
}

impl Measured {
    /// Where `test_metrics.json` (`json`) was measured, if it says.
    pub fn of(json: &serde_json::Value) -> Option<Measured> {
        Some(Measured {
            epoch: json["epoch"].as_u64()? as usize,
            config_sha256: json["config_sha256"].as_str()?.to_string(),
        })
    }
}

/// A test set: its images and labels, and where they were read.
pub struct TestSet<'a> {
    pub images: &'a Images,
    pub labels: &'a [u8],
    pub info: &'a DatasetInfo,
}

/// Predicts the test set and writes the report, which names the set
/// (paths, hashes, count): a resumed run may be tested on another one, and
/// the figure travels into the export; returns the accuracy.
pub fn write(
    run: &RunDir,
    clf: &Classifier,
    TestSet { images, labels, info: set }: TestSet<'_>,
    names: &[String],
    measured: &Measured,
    device: Device,
    quiet: bool,
) -> Result<f64, TrainError> {
    let t0 = Instant::now();
    let x = data::images_tensor(images, device);
    let (pred, conf) = tch::no_grad(|| {
        let mut preds = Vec::with_capacity(images.count);
        let mut confs = Vec::with_capacity(images.count);
        let n = images.count as i64;
        let mut start = 0;
        while start < n {
            let len = CHUNK.min(n - start);
            let p = clf.logits(&x.narrow(0, start, len)).softmax(-1, Kind::Float); // [len, classes]
            let (c, i) = p.max_dim(-1, false);
            let idx = Vec::<i64>::try_from(i.to_device(Device::Cpu)).expect("argmax indices are i64");
            preds.extend(idx.into_iter().map(|v| v as usize));
            confs.extend(to_vec(&c));
            start += len;
        }
        (preds, confs)
    });
    let truth: Vec<usize> = labels.iter().map(|&l| l as usize).collect();
    let rep = report::classification_report(&truth, &pred, names.len(), Some(names));
    let text = rep.to_text(4);
    let write = |name: &str, bytes: &[u8]| {
        let p = run.file(name);
        ae_core::atomic::write_bytes(&p, bytes).map_err(TrainError::io(&p, "cannot write"))
    };
    write("test_report.txt", format!("{text}\n{}", rep.confusion_text()).as_bytes())?;
    let mut json = rep.to_json();
    json["seconds"] = serde_json::json!(t0.elapsed().as_secs_f64());
    json["epoch"] = serde_json::json!(measured.epoch);
    json["config_sha256"] = serde_json::json!(measured.config_sha256);
    json["test_set"] = serde_json::json!({
        "images": set.images,
        "images_sha256": set.images_sha256,
        "labels": set.labels,
        "labels_sha256": set.labels_sha256,
        "count": images.count,
    });
    write("test_metrics.json", format!("{}\n", serde_json::to_string_pretty(&json).expect("json")).as_bytes())?;
    let p = run.file(PREDICTIONS);
    report::write_predictions(&p, &pred, &conf, Some(&truth), names, None, None)
        .map_err(TrainError::io(&p, "cannot write"))?;
    let (h, w) = (images.rows, images.cols);
    let grid = |name: &str, title: &str, correct: bool| {
        let tiles: Vec<Tile> = (0..images.count)
            .filter(|&i| (pred[i] == truth[i]) == correct)
            .take(GRID)
            .map(|i| Tile {
                pixels: images.image(i).to_vec(),
                channels: images.channels,
                height: h,
                width: w,
                caption: Some(format!(
                    "predicted {}, true {} ({:.0}%)",
                    names[pred[i]],
                    names[truth[i]],
                    conf[i] * 100.0
                )),
                alert: !correct,
            })
            .collect();
        let p = run.file(name);
        figure::image_grid(&p, Some(title), &tiles, 6, 3).map_err(TrainError::io(&p, "cannot write"))
    };
    grid("correct.png", "correctly predicted test images", true)?;
    grid("incorrect.png", "incorrectly predicted test images", false)?;
    if !quiet {
        println!("test set ({} images):\n{text}", images.count);
    }
    Ok(rep.accuracy)
}
