//! The best epoch and early stopping, as Keras's `EarlyStopping(monitor=
//! "val_loss", min_delta, patience, restore_best_weights=True)`: an epoch
//! improves when its val_loss is below the best so far by more than
//! `min_delta`; a stage stops once `patience` epochs in a row have not
//! improved. Both are pure functions of the history, so a resumed run
//! decides exactly as an uninterrupted one would.

use serde::{Deserialize, Serialize};

use crate::history::EpochRecord;

/// `--early-stopping PATIENCE [--min-delta D]`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EarlyStopping {
    /// Epochs without improvement after which a stage stops.
    pub patience: usize,
    /// How much val_loss must fall to count as an improvement.
    #[serde(default)]
    pub min_delta: f64,
}

/// The epoch whose weights a run keeps as its best (`best.safetensors`):
/// the last epoch that improved on every earlier one by more than
/// `min_delta` (the first epoch always does).
pub fn best_epoch(history: &[EpochRecord], min_delta: f64) -> Option<&EpochRecord> {
    let mut best: Option<&EpochRecord> = None;
    for r in history {
        if best.is_none_or(|b| r.val_loss < b.val_loss - min_delta) {
            best = Some(r);
        }
    }
    best
}

impl EarlyStopping {
    /// Whether the stage that began at epoch `first` stops after the last
    /// epoch of `history`: `patience` of its epochs have passed since the
    /// best one (or since it began, when the best is older). Each stage
    /// gets at least `patience` epochs.
    pub fn stops(&self, history: &[EpochRecord], first: usize) -> bool {
        let (Some(last), Some(best)) = (history.last(), best_epoch(history, self.min_delta)) else {
            return false;
        };
        last.epoch >= first && last.epoch - best.epoch.max(first - 1) >= self.patience
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
    use crate::early_stopping::{best_epoch, EarlyStopping};
    use crate::history::EpochRecord;

    fn history(val: &[f64]) -> Vec<EpochRecord> {
        val.iter()
            .enumerate()
            .map(|(i, &v)| EpochRecord {
                epoch: i + 1,
                loss: v,
                val_loss: v,
                accuracy: None,
                val_accuracy: None,
                seconds: 1.0,
                lr: 1e-3,
                best_epoch: 0,
            })
            .collect()
    }

    #[test]
    fn best_needs_more_than_min_delta() {
        let h = history(&[1.0, 0.5, 0.49, 0.3, 0.31]);
        assert_eq!(best_epoch(&h, 0.0).map(|r| r.epoch), Some(4));
        assert_eq!(best_epoch(&h[..3], 0.0).map(|r| r.epoch), Some(3));
        assert_eq!(best_epoch(&h[..3], 0.05).map(|r| r.epoch), Some(2));
        assert_eq!(best_epoch(&[], 0.0).map(|r| r.epoch), None);
    }

    #[test]
    fn a_stage_stops_after_patience_epochs_without_improvement() {
        let es = EarlyStopping { patience: 2, min_delta: 0.0 };
        let h = history(&[1.0, 0.5, 0.6, 0.7, 0.4]);
        assert!(!es.stops(&h[..3], 1));
        assert!(es.stops(&h[..4], 1), "epochs 3 and 4 did not improve on 2");
        // A stage that began at epoch 4 has had one epoch only.
        assert!(!es.stops(&h[..4], 4));
        assert!(!es.stops(&h, 1), "epoch 5 improved");
        // NaN never improves.
        let h = history(&[1.0, f64::NAN, f64::NAN]);
        assert!(es.stops(&h, 1));
    }
}
