//! A run directory: `config.json` (what was trained, on what), the
//! checkpoint (`weights.safetensors`, see [`crate::checkpoint`]),
//! `history.csv` and the figures, every file written atomically; and the
//! policy for starting, overwriting or resuming a run there.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use infer::atomic;

use crate::checkpoint::{Checkpoint, WEIGHTS};
use crate::config::TrainSettings;
use crate::error::TrainError;
use crate::model::{AutoencoderConfig, ClassifierConfig};
use infer::folder::{FolderOptions, ImageFolder};

pub const CONFIG: &str = "config.json";
pub const HISTORY: &str = "history.csv";

/// Every file a run writes in its directory. `--force` removes them all,
/// the checkpoint first and the config last, before the new run writes
/// anything: a kill at any point leaves no old file beside a new one.
pub const ARTIFACTS: [&str; 11] = [
    WEIGHTS,
    HISTORY,
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

/// The dataset a run was trained on: canonical paths and content hashes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetInfo {
    pub images: PathBuf,
    pub images_sha256: String,
    pub labels: Option<PathBuf>,
    #[serde(default)]
    pub labels_sha256: Option<String>,
    /// Images used (after `--limit`).
    pub count: usize,
    /// `--limit`'s seeded, class-stratified sample (`None`: every image, or
    /// for a run made before samples were recorded, the first `count`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample: Option<crate::data::Sample>,
    /// An image folder's reading: classes, channels and size (IDX: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub folder: Option<FolderRecord>,
}

/// How an image folder was read, so export and calibration read it the same.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FolderRecord {
    pub classes: Vec<String>,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
}

impl FolderRecord {
    pub fn options(&self) -> FolderOptions {
        FolderOptions { channels: Some(self.channels), size: Some((self.height, self.width)) }
    }
}

impl DatasetInfo {
    /// `images` (and `labels`) as they are now: canonical paths, hashes (an
    /// image folder's over every picture's relative path and bytes).
    pub fn of(images: &Path, labels: Option<&Path>, count: usize) -> Result<DatasetInfo, TrainError> {
        let canonical = |p: &Path| std::fs::canonicalize(p).map_err(TrainError::io(p, "cannot resolve"));
        Ok(DatasetInfo {
            images: canonical(images)?,
            images_sha256: sha256_file(images)?,
            labels: labels.map(canonical).transpose()?,
            labels_sha256: labels.map(sha256_file).transpose()?,
            count,
            sample: None,
            folder: None,
        })
    }

    /// An image folder as read for training (after `--limit`), `sha256`
    /// its [`ImageFolder::sha256`].
    pub fn of_folder(folder: &ImageFolder, sha256: String) -> Result<DatasetInfo, TrainError> {
        let canonical = std::fs::canonicalize(&folder.root).map_err(TrainError::io(&folder.root, "cannot resolve"))?;
        Ok(DatasetInfo {
            images: canonical,
            images_sha256: sha256,
            labels: None,
            labels_sha256: None,
            count: folder.files.len(),
            sample: None,
            folder: Some(FolderRecord {
                classes: folder.classes.clone(),
                channels: folder.channels,
                height: folder.height,
                width: folder.width,
            }),
        })
    }

    /// The images' hash as they are now (to refuse a data set that changed).
    pub fn images_sha256_now(&self) -> Result<String, TrainError> {
        match &self.folder {
            None => sha256_file(&self.images),
            Some(rec) => {
                let mut f = ImageFolder::scan(&self.images, rec.options())?;
                match self.sample {
                    Some(s) => f.retain(&s.indices(f.files.len(), Some(&f.labels)).map_err(TrainError::Invalid)?),
                    None => f.truncate(self.count),
                }
                Ok(f.sha256()?)
            }
        }
    }
}

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
        /// (canonical), and the SHA-256 of its checkpoint then.
        autoencoder_run: PathBuf,
        autoencoder_sha256: String,
    },
}

impl ModelConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            ModelConfig::Autoencoder { .. } => "autoencoder",
            ModelConfig::Classifier { .. } => "classifier",
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

/// SHA-256 of a file, hex.
pub fn sha256_file(path: &Path) -> Result<String, TrainError> {
    use sha2::{Digest, Sha256};
    let mut f = std::fs::File::open(path).map_err(TrainError::io(path, "cannot read"))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).map_err(TrainError::io(path, "cannot read"))?;
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// SHA-256 of bytes in memory, as hex.
pub fn sha256_bytes(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// One row of `history.csv`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    pub loss: f64,
    pub val_loss: f64,
    pub accuracy: Option<f64>,
    pub val_accuracy: Option<f64>,
    pub seconds: f64,
    pub lr: f64,
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
    /// training options. Returns the directory and whether to resume.
    pub fn prepare(path: &Path, cfg: &RunConfig, reuse: Reuse) -> Result<(RunDir, bool), TrainError> {
        let run = RunDir::create(path)?;
        let has_run = run.file(WEIGHTS).exists();
        match reuse {
            Reuse::Resume if has_run => {
                let old = run.read_config()?;
                old.same_sources(cfg, &run.path)?;
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
            Reuse::Overwrite => {
                run.clear()?;
                Ok((run, false))
            }
            _ => Ok((run, false)),
        }
    }

    /// Removes every file of an earlier run ([`ARTIFACTS`]), checkpoint
    /// first, config last, so that no old file is ever left beside a new
    /// one. Files that are not a run's stay.
    pub fn clear(&self) -> Result<(), TrainError> {
        for name in ARTIFACTS {
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
        let ckpt = Checkpoint::read(&self.file(WEIGHTS), device)?;
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
        atomic::write_bytes(&p, format!("{json}\n").as_bytes()).map_err(TrainError::io(&p, "cannot write"))
    }

    pub fn read_config(&self) -> Result<RunConfig, TrainError> {
        let p = self.file(CONFIG);
        let text = std::fs::read_to_string(&p).map_err(TrainError::io(&p, "cannot read"))?;
        serde_json::from_str(&text).map_err(|source| TrainError::BadConfig { path: p, source })
    }

    pub fn write_history(&self, rows: &[EpochRecord]) -> Result<(), TrainError> {
        let p = self.file(HISTORY);
        atomic::write_csv(&p, rows).map_err(TrainError::io(&p, "cannot write"))
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
