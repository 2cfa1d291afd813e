//! A run directory: `config.json` (what was trained, on what), the
//! checkpoint (`weights.safetensors`, see [`crate::checkpoint`]),
//! `history.csv` and the figures, every file written atomically; and the
//! policy for starting, overwriting or resuming a run there.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use ae_core::atomic;

use crate::checkpoint::Checkpoint;
use crate::config::TrainSettings;
pub use crate::dataset::{DatasetInfo, FolderRecord};
pub use crate::digest::{sha256_bytes, sha256_file};
use crate::error::TrainError;
pub use crate::history::EpochRecord;
use crate::model::{AutoencoderConfig, ClassifierConfig};

pub const CONFIG: &str = "config.json";
/// The checkpoint ([`crate::checkpoint`]).
pub const WEIGHTS: &str = "weights.safetensors";
pub const HISTORY: &str = "history.csv";
/// The best epoch's weights ([`crate::checkpoint::Checkpoint::save_best`]).
pub const BEST: &str = "best.safetensors";
/// What `--augment` and `--noise` make of the first training images.
pub const AUGMENTED: &str = "augmented.png";

/// Every file a run writes in its directory (and its TensorBoard log).
/// `--force` removes them all, the checkpoint first and the config last,
/// before the new run writes anything: a kill at any point leaves no old
/// file beside a new one.
pub const ARTIFACTS: [&str; 13] = [
    WEIGHTS,
    BEST,
    HISTORY,
    AUGMENTED,
    "loss.png",
    "accuracy.png",
    "reconstructions.png",
    "test_report.txt",
    "test_metrics.json",
    "test_predictions.csv",
    "correct.png",
    "incorrect.png",
    CONFIG,
];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ModelConfig {
    Autoencoder {
        model: AutoencoderConfig,
    },
    Classifier {
        model: ClassifierConfig,
        class_names: Vec<String>,
        /// The autoencoder run whose encoder the classifier started from
        /// (canonical), and the SHA-256 of its weights file then.
        autoencoder_run: PathBuf,
        autoencoder_sha256: String,
        /// That file in the run: `best.safetensors` (its best epoch); absent
        /// in runs from before best epochs were kept, which started from
        /// the checkpoint (`weights.safetensors`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        autoencoder_weights: Option<String>,
    },
}

impl ModelConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            ModelConfig::Autoencoder { .. } => "autoencoder",
            ModelConfig::Classifier { .. } => "classifier",
        }
    }

    /// The file of the autoencoder run a classifier's encoder came from.
    pub fn autoencoder_weights(&self) -> &str {
        match self {
            ModelConfig::Classifier { autoencoder_weights: Some(f), .. } => f,
            _ => WEIGHTS,
        }
    }

    pub fn autoencoder(&self) -> &AutoencoderConfig {
        match self {
            ModelConfig::Autoencoder { model } => model,
            ModelConfig::Classifier { model, .. } => &model.encoder,
        }
    }
}

/// `config.json`: everything needed to rebuild and continue a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    #[serde(flatten)]
    pub model: ModelConfig,
    pub train: TrainSettings,
    pub dataset: DatasetInfo,
    pub producer: String,
}

impl RunConfig {
    /// SHA-256 of what the weights depend on: the model, the training
    /// settings and the data's identity (hashes, count, folder reading; not
    /// where the files are, so a moved run still matches). The checkpoint
    /// records it; resume and export refuse a checkpoint whose fingerprint
    /// differs from `config.json`'s.
    pub fn fingerprint(&self) -> String {
        let mut model = serde_json::to_value(&self.model).expect("config serialises");
        if let Some(m) = model.as_object_mut() {
            m.remove("autoencoder_run");
        }
        let d = &self.dataset;
        let doc = serde_json::json!({
            "model": model,
            "train": self.train,
            "images_sha256": d.images_sha256,
            "labels_sha256": d.labels_sha256,
            "count": d.count,
            "sample": d.sample,
            "folder": d.folder,
        });
        sha256_bytes(doc.to_string().as_bytes())
    }

    /// The hyperparameters TensorBoard's hparams plugin compares runs by:
    /// the network, its architecture and every training setting, leaving
    /// out what does not change the model (threads).
    pub fn hparams(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut doc = serde_json::Map::new();
        doc.insert("network".into(), self.model.kind().into());
        let ae = self.model.autoencoder();
        doc.insert("layers".into(), ae.layers.into());
        doc.insert("filter_size".into(), ae.filter_size.into());
        doc.insert("filters".into(), ae.filters.into());
        if let ModelConfig::Classifier { model, .. } = &self.model {
            doc.insert("fc_units".into(), model.fc_units.into());
        }
        if let Ok(serde_json::Value::Object(train)) = serde_json::to_value(&self.train) {
            doc.extend(train.into_iter().filter(|(k, _)| k != "threads"));
        }
        doc
    }

    /// Refuses to continue (or export) a run whose inputs changed since it
    /// was made: the images, the labels, the autoencoder checkpoint.
    pub fn same_sources(&self, now: &RunConfig, run: &Path) -> Result<(), TrainError> {
        let changed = |what: &str, path: &Path, then: &str, now: &str| {
            Err(TrainError::Invalid(format!(
                "{}: {what} {} changed since the run began: sha256 {then} then, {now} now",
                run.display(),
                path.display()
            )))
        };
        let (a, b) = (&self.dataset, &now.dataset);
        if a.images_sha256 != b.images_sha256 {
            return changed("the images", &b.images, &a.images_sha256, &b.images_sha256);
        }
        if let (Some(x), Some(y), Some(p)) = (&a.labels_sha256, &b.labels_sha256, &b.labels) {
            if x != y {
                return changed("the labels", p, x, y);
            }
        }
        if let (
            ModelConfig::Classifier { autoencoder_sha256: x, .. },
            ModelConfig::Classifier { autoencoder_sha256: y, autoencoder_run, .. },
        ) = (&self.model, &now.model)
        {
            if x != y {
                return changed("the autoencoder checkpoint in", autoencoder_run, x, y);
            }
        }
        Ok(())
    }
}

impl RunConfig {
    /// Refuses a run whose images or labels changed since it was trained
    /// (exit 2, naming the file and both hashes): what it exports or
    /// calibrates on must be what it learnt from.
    pub fn check_data_unchanged(&self, run: &Path) -> Result<(), TrainError> {
        let d = &self.dataset;
        let changed = |path: &Path, then: &str, now: &str| {
            Err(TrainError::Invalid(format!(
                "{}: {} changed since the run was trained: sha256 {then} then, {now} now",
                run.display(),
                path.display()
            )))
        };
        let now = d.images_sha256_now()?;
        if now != d.images_sha256 {
            return changed(&d.images, &d.images_sha256, &now);
        }
        if let (Some(path), Some(then)) = (&d.labels, &d.labels_sha256) {
            let now = sha256_file(path)?;
            if &now != then {
                return changed(path, then, &now);
            }
        }
        Ok(())
    }
}

/// What to do with a directory that may already hold a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Reuse {
    /// Refuse to touch an existing run.
    #[default]
    Refuse,
    /// Start over, replacing it.
    Overwrite,
    /// Continue it from its last checkpoint (a fresh start when there is none).
    Resume,
}

#[derive(Debug, Clone)]
pub struct RunDir {
    pub path: PathBuf,
}

impl RunDir {
    /// Creates (or reuses) the directory and checks that it is writable now,
    /// before any training time is spent.
    pub fn create(path: impl AsRef<Path>) -> Result<RunDir, TrainError> {
        let path = path.as_ref().to_path_buf();
        std::fs::create_dir_all(&path).map_err(TrainError::io(&path, "cannot create the run directory"))?;
        atomic::check_writable_dir(&path).map_err(TrainError::io(&path, "run directory is not writable"))?;
        Ok(RunDir { path })
    }

    /// Prepares `path` for a run of `cfg`: a fresh run refuses to overwrite
    /// another one unless told to; a resumed one needs the same model and
    /// training options. Every fresh start — `--force`, a folder whose
    /// earlier run left no checkpoint (killed while it started, or while
    /// `--force` cleared it), a `--resume` that finds none — first removes
    /// whatever an earlier run left, so nothing of it (its test report, its
    /// event files, its best epoch) passes for the new run's. Returns the
    /// directory and whether to resume.
    pub fn prepare(path: &Path, cfg: &RunConfig, reuse: Reuse) -> Result<(RunDir, bool), TrainError> {
        let run = RunDir::create(path)?;
        let has_run = run.file(WEIGHTS).exists();
        match reuse {
            Reuse::Resume if has_run => {
                let old = run.read_config()?;
                old.same_sources(cfg, &run.path)?;
                // Weights and optimizer state are float32 either way, but
                // a run continued in another precision is not the run its
                // history and fingerprint describe.
                if old.train.precision != cfg.train.precision {
                    return Err(TrainError::Invalid(format!(
                        "{}: --resume: the run was trained with --precision {}, not {} (continue it with --precision {})",
                        run.path.display(),
                        old.train.precision,
                        cfg.train.precision,
                        old.train.precision
                    )));
                }
                if old.model != cfg.model || old.train != cfg.train {
                    return Err(TrainError::Invalid(format!(
                        "{}: --resume needs the same model and training options as the interrupted run",
                        run.path.display()
                    )));
                }
                Ok((run, true))
            }
            Reuse::Refuse if has_run => Err(TrainError::Invalid(format!(
                "{}: already holds a run; pass --resume to continue it or --force to start over",
                run.path.display()
            ))),
            _ => {
                run.check_ours()?;
                run.clear()?;
                Ok((run, false))
            }
        }
    }

    /// Refuses to clear a folder whose run files were not written by a run
    /// of this toolchain: the names in [`ARTIFACTS`] are common (`--out .`
    /// in a folder of one's own would lose its `history.csv`, `loss.png`…).
    /// A run's files come with its `config.json`, written first and removed
    /// last, so a folder whose config.json is one is ours to clear.
    fn check_ours(&self) -> Result<(), TrainError> {
        let present: Vec<&str> = ARTIFACTS.iter().copied().filter(|n| *n != CONFIG && self.file(n).exists()).collect();
        let config = self.file(CONFIG);
        let ours = std::fs::read_to_string(&config)
            .ok()
            .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
            .is_some_and(|v| v.get("model").is_some() && v.get("train").is_some());
        if ours || (present.is_empty() && !config.exists()) {
            return Ok(());
        }
        let mut named = present;
        if config.exists() {
            named.push(CONFIG);
        }
        Err(TrainError::Invalid(format!(
            "{}: holds {} but no config.json of a run of this toolchain, so they were not written by one and are \
             not cleared; move them, or choose another --out",
            self.path.display(),
            named.join(", ")
        )))
    }

    /// Removes every file of an earlier run ([`ARTIFACTS`] and its
    /// TensorBoard log), checkpoint first, config last, so that a kill
    /// midway leaves no checkpoint and the next start clears the rest.
    /// Files that are not a run's stay.
    pub fn clear(&self) -> Result<(), TrainError> {
        for name in ARTIFACTS {
            if name == CONFIG {
                crate::tensorboard::run_log::clear(&self.path)?;
            }
            let p = self.file(name);
            match std::fs::remove_file(&p) {
                Ok(()) => crate::fault::point("force-clearing", 1),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(TrainError::io(&p, "cannot remove the earlier run's file")(e)),
            }
        }
        Ok(())
    }

    /// The run's checkpoint, refused unless it was trained with the
    /// configuration whose [`RunConfig::fingerprint`] is `expected` (that of
    /// `config.json`, for export; of the command line, for `--resume`).
    pub fn checkpoint(&self, expected: &str, device: tch::Device) -> Result<Checkpoint, TrainError> {
        self.weights(WEIGHTS, expected, device)
    }

    /// The weights the run hands on: the best epoch's (`best.safetensors`),
    /// or the checkpoint's in a run from before best epochs were kept.
    /// Returns them with the file's name.
    pub fn best(&self, expected: &str, device: tch::Device) -> Result<(Checkpoint, &'static str), TrainError> {
        let name = self.best_file();
        Ok((self.weights(name, expected, device)?, name))
    }

    /// `best.safetensors` if the run has one, else the checkpoint's name.
    pub fn best_file(&self) -> &'static str {
        if self.file(BEST).is_file() {
            BEST
        } else {
            WEIGHTS
        }
    }

    /// A weights file of the run (`name`), checked against `expected` as
    /// [`RunDir::checkpoint`] does.
    pub fn weights(&self, name: &str, expected: &str, device: tch::Device) -> Result<Checkpoint, TrainError> {
        let ckpt = Checkpoint::read(&self.file(name), device)?;
        match &ckpt.config_sha256 {
            Some(c) if *c == expected => Ok(ckpt),
            Some(c) => Err(TrainError::BadRun {
                path: ckpt.path.clone(),
                msg: format!(
                    "was trained with configuration sha256 {c}, but {} describes sha256 {expected}: \
                     the checkpoint belongs to another run (start it again with --force)",
                    self.file(CONFIG).display()
                ),
            }),
            None => Err(TrainError::BadRun {
                path: ckpt.path.clone(),
                msg: "records no configuration hash (written by an older train): retrain with --force".into(),
            }),
        }
    }

    /// An existing run; fails unless it has a config and weights.
    pub fn open(path: impl AsRef<Path>) -> Result<RunDir, TrainError> {
        let path = path.as_ref().to_path_buf();
        if !path.is_dir() {
            return Err(TrainError::NotARun { path, why: "no such directory".into() });
        }
        for f in [CONFIG, WEIGHTS] {
            if !path.join(f).is_file() {
                return Err(TrainError::NotARun {
                    path: path.clone(),
                    why: format!("it has no {f} (incomplete run?)"),
                });
            }
        }
        Ok(RunDir { path })
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    pub fn write_config(&self, cfg: &RunConfig) -> Result<(), TrainError> {
        let p = self.file(CONFIG);
        let json = serde_json::to_string_pretty(cfg).expect("config serialises");
        crate::fault::disk_full_file(CONFIG)
            .and_then(|()| atomic::write_bytes(&p, format!("{json}\n").as_bytes()))
            .map_err(TrainError::io(&p, "cannot write"))
    }

    pub fn read_config(&self) -> Result<RunConfig, TrainError> {
        let p = self.file(CONFIG);
        let text = std::fs::read_to_string(&p).map_err(TrainError::io(&p, "cannot read"))?;
        serde_json::from_str(&text).map_err(|source| TrainError::BadConfig { path: p, source })
    }

    pub fn write_history(&self, rows: &[EpochRecord]) -> Result<(), TrainError> {
        let p = self.file(HISTORY);
        crate::fault::disk_full_file(HISTORY)
            .and_then(|()| atomic::write_csv(&p, rows))
            .map_err(TrainError::io(&p, "cannot write"))
    }

    pub fn read_history(&self) -> Result<Vec<EpochRecord>, TrainError> {
        let p = self.file(HISTORY);
        if !p.exists() {
            return Ok(Vec::new());
        }
        let mut csv = csv::Reader::from_path(&p).map_err(|e| TrainError::io(&p, "cannot read")(e.into()))?;
        csv.deserialize()
            .enumerate()
            .map(|(i, row)| {
                row.map_err(|_| TrainError::BadRun {
                    path: p.clone(),
                    msg: format!("line {} is not a history row", i + 2),
                })
            })
            .collect()
    }
}
