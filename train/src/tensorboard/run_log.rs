//! A training run's TensorBoard log, laid out as Keras's `TensorBoard`
//! callback lays it out, so `tensorboard --logdir runs/` overlays training
//! and validation curves: `RUN/tensorboard/train` (epoch_loss,
//! epoch_accuracy, epoch_learning_rate, epoch_images_per_second at each
//! epoch; batch_loss every N steps), `RUN/tensorboard/validation`
//! (epoch_loss, epoch_accuracy, and the reconstruction grid or the
//! confusion matrix as an image) and `RUN/tensorboard` itself (the run's
//! hyperparameters as one hparams-plugin session, so a sweep's runs compare
//! side by side). Epoch tags are at step = epoch; batch tags at step =
//! optimizer steps taken.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::TrainError;
use crate::history::EpochRecord;
use crate::tensorboard::proto::{
    Event, HParamsData, HParamsStatus, Kind, ProtoValue, SessionEndInfo, SessionStartInfo, What,
};
use crate::tensorboard::writer::{self, EventWriter, Png, SESSION_END_TAG};

/// The log's directory in a run.
pub const DIR: &str = "tensorboard";
/// Its sub-directories, one TensorBoard run each.
pub const TRAIN: &str = "train";
pub const VALIDATION: &str = "validation";

/// `--tensorboard true` (the default) and its options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TensorBoard {
    /// Optimizer steps between two `batch_loss` points (their mean loss).
    pub batch_every: usize,
}

impl Default for TensorBoard {
    fn default() -> TensorBoard {
        TensorBoard { batch_every: 50 }
    }
}

/// Where a log resumes: what the checkpoint holds.
#[derive(Debug, Clone, Copy)]
pub struct Resumed {
    pub epoch: usize,
    pub steps: i64,
}

#[derive(Debug)]
pub struct RunLog {
    root: EventWriter,
    train: EventWriter,
    validation: EventWriter,
    pub batch_every: usize,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |e| TrainError::io(path, "cannot write the TensorBoard log")(e)
}

/// Whether an event logged before a restart belongs to the run up to
/// `r`: the file version, epoch tags up to its epoch, batch tags up to its
/// steps, the session's start (its end is logged again when the run ends).
fn kept(e: &Event, r: Resumed) -> bool {
    match &e.what {
        Some(What::FileVersion(_)) => true,
        Some(What::Summary(s)) => s.value.iter().all(|v| match v.tag.as_str() {
            SESSION_END_TAG => false,
            t if t.starts_with("_hparams_/") => true,
            t if t.starts_with("batch_") => e.step <= r.steps,
            _ => e.step <= r.epoch as i64,
        }),
        _ => false,
    }
}

/// The log's three directories in `run`.
fn dirs(run: &Path) -> [PathBuf; 3] {
    let dir = run.join(DIR);
    [dir.clone(), dir.join(TRAIN), dir.join(VALIDATION)]
}

/// Cuts a resumed run's log back to its checkpoint `r` (also when the
/// resumed run does not log): what an uninterrupted run would hold then.
pub fn trim(run: &Path, r: Resumed) -> Result<(), TrainError> {
    for d in dirs(run) {
        writer::trim(&d, |e| kept(e, r)).map_err(io(&d))?;
    }
    Ok(())
}

impl RunLog {
    /// Opens the log of the run in `run`. A fresh run (`resumed` = None)
    /// starts it over and records its hyperparameters; a resumed one cuts
    /// what was logged after its checkpoint (the epochs it redoes) from the
    /// files in place and appends to them, so they hold what an
    /// uninterrupted run's would, and no kill can leave an event twice.
    /// `hparams`: the run's hyperparameters (nested ones become `a.b`).
    pub fn open(
        run: &Path,
        opts: TensorBoard,
        hparams: &serde_json::Map<String, serde_json::Value>,
        resumed: Option<Resumed>,
    ) -> Result<RunLog, TrainError> {
        let open = |d: PathBuf| -> Result<EventWriter, TrainError> {
            std::fs::create_dir_all(&d).map_err(io(&d))?;
            let last = match resumed {
                Some(r) => writer::trim(&d, |e| kept(e, r)).map_err(io(&d))?,
                None => {
                    for f in writer::event_files(&d).map_err(io(&d))? {
                        std::fs::remove_file(&f).map_err(io(&f))?;
                    }
                    None
                }
            };
            match last {
                Some(f) => EventWriter::append(f),
                None => EventWriter::create(&d),
            }
            .map_err(io(&d))
        };
        let [root, train, validation] = dirs(run);
        let mut log = RunLog {
            root: open(root)?,
            train: open(train)?,
            validation: open(validation)?,
            batch_every: opts.batch_every.max(1),
        };
        if resumed.is_none() {
            let mut values = BTreeMap::new();
            flatten("", &serde_json::Value::Object(hparams.clone()), &mut values);
            let start = SessionStartInfo { hparams: values, group_name: String::new(), start_time_secs: writer::now() };
            log.root.hparams(HParamsData::SessionStartInfo(start)).map_err(io(&log.root.path))?;
        }
        Ok(log)
    }

    /// The mean loss of the steps up to `step` since the last point.
    pub fn batch_loss(&mut self, step: i64, loss: f64) -> Result<(), TrainError> {
        self.train.scalar("batch_loss", step, loss).map_err(io(&self.train.path))
    }

    /// An epoch's scalars, as history.csv has them.
    pub fn epoch(&mut self, r: &EpochRecord, train_images: usize) -> Result<(), TrainError> {
        let step = r.epoch as i64;
        let t = &mut self.train;
        t.scalar("epoch_loss", step, r.loss).map_err(io(&t.path))?;
        if let Some(a) = r.accuracy {
            t.scalar("epoch_accuracy", step, a).map_err(io(&t.path))?;
        }
        t.scalar("epoch_learning_rate", step, r.lr).map_err(io(&t.path))?;
        t.scalar("epoch_images_per_second", step, train_images as f64 / r.seconds.max(1e-9)).map_err(io(&t.path))?;
        let v = &mut self.validation;
        v.scalar("epoch_loss", step, r.val_loss).map_err(io(&v.path))?;
        if let Some(a) = r.val_accuracy {
            v.scalar("epoch_accuracy", step, a).map_err(io(&v.path))?;
        }
        Ok(())
    }

    /// A picture of the validation set after `epoch` (reconstructions, the
    /// confusion matrix).
    pub fn validation_image(&mut self, tag: &str, epoch: usize, png: &Png) -> Result<(), TrainError> {
        self.validation.image(tag, epoch as i64, png).map_err(io(&self.validation.path))
    }

    /// A picture of the training data (the augmented images), at `step`.
    pub fn train_image(&mut self, tag: &str, step: i64, png: &Png) -> Result<(), TrainError> {
        self.train.image(tag, step, png).map_err(io(&self.train.path))
    }

    /// Ends the hparams session: the run finished.
    pub fn finished(&mut self) -> Result<(), TrainError> {
        let end = SessionEndInfo { status: HParamsStatus::Success as i32, end_time_secs: writer::now() };
        self.root.hparams(HParamsData::SessionEndInfo(end)).map_err(io(&self.root.path))
    }
}

/// Removes a run's event files (`--force`), and the log's directories
/// when nothing else is in them.
pub fn clear(run: &Path) -> Result<(), TrainError> {
    let [root, train, validation] = dirs(run);
    for d in [train, validation, root] {
        for f in writer::event_files(&d).map_err(io(&d))? {
            std::fs::remove_file(&f).map_err(|e| TrainError::io(&f, "cannot remove the earlier run's file")(e))?;
        }
        let _ = std::fs::remove_dir(&d); // only if empty
    }
    Ok(())
}

fn flatten(prefix: &str, v: &serde_json::Value, out: &mut BTreeMap<String, ProtoValue>) {
    let kind = match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                flatten(&key, v, out);
            }
            return;
        }
        serde_json::Value::Null | serde_json::Value::Array(_) => return,
        serde_json::Value::Bool(b) => Kind::BoolValue(*b),
        serde_json::Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(f64::NAN)),
        serde_json::Value::String(s) => Kind::StringValue(s.clone()),
    };
    out.insert(prefix.to_string(), ProtoValue { kind: Some(kind) });
}
