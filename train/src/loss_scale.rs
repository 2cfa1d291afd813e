//! Dynamic loss scaling for `--precision 16-mixed` (torch.amp.GradScaler's
//! policy): the loss is multiplied by a scale before backward so that small
//! float16 gradients do not flush to zero; the optimizer sees the
//! gradients divided back. A step whose gradients hold an inf or NaN is
//! skipped and the scale halved; after `GROWTH_INTERVAL` clean steps in a
//! row it doubles. The state is checkpointed, so resume continues it.

/// GradScaler's defaults.
pub const INIT_SCALE: f64 = 65536.0;
pub const GROWTH_INTERVAL: u32 = 2000;
const GROWTH: f64 = 2.0;
const BACKOFF: f64 = 0.5;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossScale {
    pub scale: f64,
    /// Clean steps since the scale last changed.
    pub good_steps: u32,
}

impl Default for LossScale {
    fn default() -> Self {
        LossScale { scale: INIT_SCALE, good_steps: 0 }
    }
}

impl LossScale {
    /// After a step whose unscaled gradients were all finite (`true`) or
    /// not (`false`, the step skipped).
    pub fn update(&mut self, finite: bool) {
        if finite {
            self.good_steps += 1;
            if self.good_steps == GROWTH_INTERVAL {
                self.scale *= GROWTH;
                self.good_steps = 0;
            }
        } else {
            self.scale *= BACKOFF;
            self.good_steps = 0;
        }
    }

    /// `scale,good_steps`, as the checkpoint's metadata holds it (Rust
    /// prints the shortest text that reads back to the same f64).
    pub fn encode(&self) -> String {
        format!("{},{}", self.scale, self.good_steps)
    }

    pub fn decode(s: &str) -> Option<LossScale> {
        let (scale, good) = s.split_once(',')?;
        let scale: f64 = scale.parse().ok()?;
        (scale.is_finite() && scale > 0.0).then_some(LossScale { scale, good_steps: good.parse().ok()? })
    }
}

#[cfg(test)]
mod tests {
    use crate::loss_scale::{LossScale, GROWTH_INTERVAL, INIT_SCALE};

    #[test]
    fn halves_on_overflow_and_doubles_after_a_clean_interval() {
        let mut s = LossScale::default();
        s.update(false);
        assert_eq!(s, LossScale { scale: INIT_SCALE / 2.0, good_steps: 0 });
        for _ in 0..GROWTH_INTERVAL - 1 {
            s.update(true);
        }
        assert_eq!(s.scale, INIT_SCALE / 2.0);
        s.update(true);
        assert_eq!(s, LossScale { scale: INIT_SCALE, good_steps: 0 });
        assert_eq!(LossScale::decode(&s.encode()), Some(s));
        assert_eq!(LossScale::decode("0,1"), None);
    }
}
