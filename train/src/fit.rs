//! The epoch loop shared by both networks: shuffled batches, progress bar,
//! Keras-style summary line, validation, checkpoint after every epoch,
//! NaN detection and clean interruption.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use tch::{nn::VarStore, Device, Kind, Tensor};

use crate::data::{epoch_batches, Data};
use crate::error::TrainError;
use crate::optim::Optimizer;
use crate::run::{EpochRecord, RunDir};

/// Set by the Ctrl-C handler; the loop stops between batches.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Installs the Ctrl-C handler (once per process).
pub fn install_interrupt_handler() {
    let _ = ctrlc::set_handler(|| INTERRUPTED.store(true, Ordering::SeqCst));
}

/// What the loss compares the model's output with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Objective {
    /// Autoencoder: MSE between reconstruction and input.
    Reconstruction,
    /// Classifier: cross-entropy on logits.
    CrossEntropy,
    /// Classifier as the reference: MSE between softmax and one-hot.
    OneHotMse,
}

impl Objective {
    pub fn loss(self, out: &Tensor, x: &Tensor, y: Option<&Tensor>) -> Tensor {
        match self {
            Objective::Reconstruction => out.mse_loss(x, tch::Reduction::Mean),
            Objective::CrossEntropy => out.cross_entropy_for_logits(y.expect("labels")),
            Objective::OneHotMse => {
                let classes = out.size()[1];
                let onehot = y.expect("labels").onehot(classes).to_kind(Kind::Float);
                out.softmax(-1, Kind::Float).mse_loss(&onehot, tch::Reduction::Mean)
            }
        }
    }

    fn classifies(self) -> bool {
        self != Objective::Reconstruction
    }
}

/// One training stage: a contiguous range of epochs with one optimizer.
#[derive(Debug)]
pub struct Stage<'a> {
    pub name: &'a str,
    /// Global epoch numbers (1-based) this stage runs: first..=last.
    pub first: usize,
    pub last: usize,
    /// Epochs of the whole run, for "epoch 3/10".
    pub total: usize,
    pub batch_size: usize,
    pub lr: f64,
    /// Cosine decay of the learning rate over this stage's steps.
    pub cosine: bool,
    pub seed: u64,
    pub quiet: bool,
    /// Random shifts of up to this many pixels (0: none).
    pub augment: usize,
}

impl Stage<'_> {
    fn lr_at(&self, step_in_stage: usize, steps_in_stage: usize) -> f64 {
        if !self.cosine || steps_in_stage == 0 {
            return self.lr;
        }
        let t = step_in_stage as f64 / steps_in_stage as f64;
        self.lr * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
    }
}

/// Mean loss and accuracy of the model over `x` (eval mode, no grad).
pub fn evaluate(
    forward: &dyn Fn(&Tensor, bool) -> Tensor,
    objective: Objective,
    x: &Tensor,
    y: Option<&Tensor>,
) -> (f64, Option<f64>) {
    let n = x.size()[0];
    let chunk = 1000;
    let (mut loss, mut correct) = (0.0, 0i64);
    tch::no_grad(|| {
        let mut start = 0;
        while start < n {
            let len = chunk.min(n - start);
            let xb = x.narrow(0, start, len);
            let yb = y.map(|y| y.narrow(0, start, len));
            let out = forward(&xb, false);
            loss += objective.loss(&out, &xb, yb.as_ref()).double_value(&[]) * len as f64;
            if let Some(yb) = &yb {
                correct += out.argmax(-1, false).eq_tensor(yb).sum(Kind::Int64).int64_value(&[]);
            }
            start += len;
        }
    });
    (loss / n as f64, objective.classifies().then(|| correct as f64 / n as f64))
}

/// Runs a stage's epochs from `start` (a resumed run skips the ones done),
/// appending to `history` and checkpointing after each.
#[allow(clippy::too_many_arguments)]
pub fn run_stage(
    stage: &Stage,
    start: usize,
    forward: &dyn Fn(&Tensor, bool) -> Tensor,
    objective: Objective,
    data: &Data,
    vs: &VarStore,
    opt: &mut Optimizer,
    run: &RunDir,
    history: &mut Vec<EpochRecord>,
) -> Result<(), TrainError> {
    let device: Device = vs.device();
    let n = data.train_len();
    let batches_per_epoch = n.div_ceil(stage.batch_size);
    let steps_in_stage = batches_per_epoch * (stage.last + 1 - stage.first);
    for epoch in start.max(stage.first)..=stage.last {
        let t0 = Instant::now();
        let batches = epoch_batches(n, stage.batch_size, stage.seed, epoch, device);
        let bar = if stage.quiet { ProgressBar::hidden() } else { ProgressBar::new(batches.len() as u64) };
        bar.set_style(
            ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} ETA {eta}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_prefix(format!("epoch {epoch}/{} {}", stage.total, stage.name));
        let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0i64, 0usize);
        let mut lr = stage.lr;
        for (b, idx) in batches.iter().enumerate() {
            if INTERRUPTED.load(Ordering::SeqCst) {
                bar.finish_and_clear();
                return Err(TrainError::Interrupted { run: run.path.clone(), epoch: epoch - 1 });
            }
            let step = (epoch - stage.first) * batches_per_epoch + b;
            lr = stage.lr_at(step, steps_in_stage);
            let mut xb = data.train_x.index_select(0, idx); // [B, 1, H, W]
            if stage.augment > 0 {
                let mut rng = crate::data::Rng::new(stage.seed ^ ((epoch as u64) << 32) ^ b as u64);
                xb = random_shift(&xb, stage.augment as i64, &mut rng);
            }
            let yb = data.train_y.as_ref().map(|y| y.index_select(0, idx));
            opt.zero_grad();
            let out = forward(&xb, true);
            let loss = objective.loss(&out, &xb, yb.as_ref());
            loss.backward();
            opt.step(lr);
            let len = idx.size()[0] as usize;
            let l = loss.double_value(&[]);
            if l.is_nan() {
                bar.finish_and_clear();
                return Err(TrainError::NanLoss { epoch });
            }
            loss_sum += l * len as f64;
            if let Some(yb) = &yb {
                correct += tch::no_grad(|| out.argmax(-1, false).eq_tensor(yb).sum(Kind::Int64).int64_value(&[]));
            }
            seen += len;
            if b % 10 == 0 || b + 1 == batches.len() {
                let rate = seen as f64 / t0.elapsed().as_secs_f64().max(1e-9);
                bar.set_message(format!("loss {:.4} {:.0} img/s", loss_sum / seen as f64, rate));
            }
            bar.inc(1);
        }
        bar.finish_and_clear();
        let (val_loss, val_acc) = evaluate(forward, objective, &data.val_x, data.val_y.as_ref());
        if val_loss.is_nan() {
            return Err(TrainError::NanLoss { epoch });
        }
        let record = EpochRecord {
            epoch,
            loss: loss_sum / seen as f64,
            val_loss,
            accuracy: objective.classifies().then(|| correct as f64 / seen as f64),
            val_accuracy: val_acc,
            seconds: t0.elapsed().as_secs_f64(),
            lr,
        };
        if !stage.quiet {
            println!("{}", summary_line(&record, stage.total, n));
        }
        history.push(record);
        // Checkpoint first (it carries the history), then the CSV view.
        run.save_checkpoint(vs, &opt.state(), opt.steps, history)?;
        run.write_history(history)?;
    }
    Ok(())
}

/// Translates each image by a random (dx, dy) in [−max, max]², filling
/// with zeros (background): [B, 1, H, W] → [B, 1, H, W].
pub fn random_shift(x: &Tensor, max: i64, rng: &mut crate::data::Rng) -> Tensor {
    let size = x.size();
    let (n, h, w) = (size[0], size[2], size[3]);
    let padded = x.constant_pad_nd([max, max, max, max]); // [B, 1, H+2m, W+2m]
    let span = (2 * max + 1) as u64;
    let crops: Vec<Tensor> = (0..n)
        .map(|i| {
            let (dy, dx) = ((rng.next_u64() % span) as i64, (rng.next_u64() % span) as i64);
            padded.get(i).narrow(1, dy, h).narrow(2, dx, w)
        })
        .collect();
    Tensor::stack(&crops, 0)
}

/// `epoch 3/10 loss 0.0012 val_loss 0.0013 [acc …] 41.2s (1165 img/s)`
pub fn summary_line(r: &EpochRecord, total: usize, images: usize) -> String {
    let mut s = format!("epoch {}/{} loss {:.5} val_loss {:.5}", r.epoch, total, r.loss, r.val_loss);
    if let (Some(a), Some(va)) = (r.accuracy, r.val_accuracy) {
        s += &format!(" acc {a:.4} val_acc {va:.4}");
    }
    s += &format!(" {:.1}s ({:.0} img/s)", r.seconds, images as f64 / r.seconds.max(1e-9));
    s
}
