//! The best epoch and early stopping, as Keras users know them from one
//! `fit` call per stage, each with `EarlyStopping(monitor="val_loss",
//! min_delta, patience, start_from_epoch, restore_best_weights=True)`:
//! within a stage, an epoch improves when its val_loss is below the best
//! so far by more than `min_delta`; the stage stops once `patience`
//! monitored epochs in a row have not improved; the first
//! `start_from_epoch` epochs of a stage (a warm-up) are not monitored. A
//! stage's best is its own: the classifier's fine-tuning keeps a
//! fine-tuned epoch even when a frozen one had a lower val_loss. Both are
//! pure functions of the history (each row names its stage), so a resumed
//! run decides exactly as an uninterrupted one would.

use serde::{Deserialize, Serialize};

use crate::history::EpochRecord;

/// `--early-stopping PATIENCE [--min-delta D] [--start-from-epoch N]`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EarlyStopping {
    /// Monitored epochs without improvement after which a stage stops.
    pub patience: usize,
    /// How much val_loss must fall to count as an improvement.
    #[serde(default)]
    pub min_delta: f64,
    /// Epochs at the start of each stage that are not monitored. Absent
    /// from older runs' config.json (0), so their fingerprints are unchanged.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start_from_epoch: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// What makes an epoch a stage's best: `min_delta` and `start_from_epoch`
/// of the early stopping, if any (without it: any fall, from the first
/// epoch on).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Monitor {
    pub min_delta: f64,
    pub start_from_epoch: usize,
}

impl From<Option<EarlyStopping>> for Monitor {
    fn from(es: Option<EarlyStopping>) -> Monitor {
        es.map_or_else(Monitor::default, |e| Monitor { min_delta: e.min_delta, start_from_epoch: e.start_from_epoch })
    }
}

/// The rows of the last row's stage.
fn last_stage(history: &[EpochRecord]) -> &[EpochRecord] {
    let Some(last) = history.last() else { return history };
    let from = history.iter().rposition(|r| r.stage != last.stage).map_or(0, |i| i + 1);
    &history[from..]
}

/// The epoch whose weights a run keeps (`best.safetensors`) after the last
/// row of `history`, among its stage's epochs: the last monitored epoch
/// that improved on every earlier monitored one by more than `min_delta`
/// (the first monitored epoch always does); while none is monitored yet,
/// the last epoch (Keras keeps the last weights when no epoch was
/// monitored).
pub fn best_epoch(history: &[EpochRecord], monitor: Monitor) -> Option<&EpochRecord> {
    let stage = last_stage(history);
    let first = stage.first()?.epoch;
    let mut best: Option<&EpochRecord> = None;
    for r in stage.iter().filter(|r| r.epoch - first >= monitor.start_from_epoch) {
        if best.is_none_or(|b| r.val_loss < b.val_loss - monitor.min_delta) {
            best = Some(r);
        }
    }
    best.or(stage.last())
}

impl EarlyStopping {
    /// Whether the stage of the last row of `history` stops after it:
    /// `patience` epochs have passed since its best monitored epoch.
    pub fn stops(&self, history: &[EpochRecord]) -> bool {
        // While no epoch is monitored, the best is the last epoch: no stop.
        let (Some(last), Some(best)) = (history.last(), best_epoch(history, Some(*self).into())) else { return false };
        last.epoch - best.epoch >= self.patience
    }

    pub fn validate(&self) -> Result<(), crate::model::ConfigError> {
        if self.patience == 0 {
            return Err(crate::model::ConfigError::Patience);
        }
        if !(self.min_delta >= 0.0 && self.min_delta.is_finite()) {
            return Err(crate::model::ConfigError::MinDelta(self.min_delta));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::early_stopping::{best_epoch, EarlyStopping, Monitor};
    use crate::history::EpochRecord;

    /// Rows of one stage per slice, numbered on.
    fn history(stages: &[&[f64]]) -> Vec<EpochRecord> {
        let mut rows = Vec::new();
        for (s, val) in stages.iter().enumerate() {
            for &v in val.iter() {
                rows.push(EpochRecord {
                    epoch: rows.len() + 1,
                    loss: v,
                    val_loss: v,
                    accuracy: None,
                    val_accuracy: None,
                    seconds: 1.0,
                    lr: 1e-3,
                    best_epoch: 0,
                    stage: s + 1,
                });
            }
        }
        rows
    }

    fn best(h: &[EpochRecord], min_delta: f64, start_from_epoch: usize) -> Option<usize> {
        best_epoch(h, Monitor { min_delta, start_from_epoch }).map(|r| r.epoch)
    }

    #[test]
    fn best_needs_more_than_min_delta() {
        let h = history(&[&[1.0, 0.5, 0.49, 0.3, 0.31]]);
        assert_eq!(best(&h, 0.0, 0), Some(4));
        assert_eq!(best(&h[..3], 0.0, 0), Some(3));
        assert_eq!(best(&h[..3], 0.05, 0), Some(2));
        assert_eq!(best(&[], 0.0, 0), None);
    }

    #[test]
    fn each_stage_has_its_own_best() {
        // Stage 1 reaches 0.2; fine-tuning never does, yet keeps its own best.
        let h = history(&[&[0.5, 0.2], &[0.4, 0.3, 0.35]]);
        assert_eq!(best(&h[..2], 0.0, 0), Some(2));
        assert_eq!(best(&h[..3], 0.0, 0), Some(3), "the first fine-tuned epoch is fine-tuning's best");
        assert_eq!(best(&h, 0.0, 0), Some(4));
    }

    #[test]
    fn warm_up_epochs_are_not_monitored() {
        let h = history(&[&[0.1, 0.5, 0.4, 0.45]]);
        assert_eq!(best(&h, 0.0, 0), Some(1));
        assert_eq!(best(&h[..1], 0.0, 1), Some(1), "nothing monitored yet: the last epoch");
        assert_eq!(best(&h, 0.0, 1), Some(3), "epoch 1 is warm-up");
        let es = EarlyStopping { patience: 1, min_delta: 0.0, start_from_epoch: 1 };
        assert!(!es.stops(&h[..1]), "warm-up epochs never stop a stage");
        assert!(!es.stops(&h[..2]), "the first monitored epoch is the best");
        assert!(!es.stops(&h[..3]));
        assert!(es.stops(&h), "epoch 4 did not improve on epoch 3");
        let plain = EarlyStopping { start_from_epoch: 0, ..es };
        assert!(plain.stops(&h[..2]), "without warm-up, epoch 2 fails to improve on epoch 1");
    }

    #[test]
    fn a_stage_stops_after_patience_epochs_without_improvement() {
        let es = EarlyStopping { patience: 2, min_delta: 0.0, start_from_epoch: 0 };
        let h = history(&[&[1.0, 0.5, 0.6, 0.7, 0.4]]);
        assert!(!es.stops(&h[..3]));
        assert!(es.stops(&h[..4]), "epochs 3 and 4 did not improve on 2");
        assert!(!es.stops(&h,), "epoch 5 improved");
        // A stage that began at epoch 4 has had one epoch only, whatever
        // the stage before it reached.
        let h = history(&[&[1.0, 0.5, 0.6], &[0.7]]);
        assert!(!es.stops(&h));
        // NaN never improves.
        let h = history(&[&[1.0, f64::NAN, f64::NAN]]);
        assert!(es.stops(&h));
    }
}
