//! The epoch loop shared by both networks: shuffled batches, progress bar,
//! Keras-style summary line, validation, checkpoint after every epoch,
//! NaN detection, clean interruption (checked between batches) and
//! resumption.

use std::time::Instant;

use ae_core::interrupt;
use indicatif::{ProgressBar, ProgressStyle};
use tch::{nn::ModuleT, nn::VarStore, Kind, Tensor};

use ae_core::figure::{self, Png};

/// TensorBoard's tag for the augmented training images.
pub const AUGMENTED_TAG: &str = "augmented";

use crate::checkpoint::{Checkpoint, TrainState};
use crate::config::{EarlyStopping, Loss, TrainSettings};
use crate::data::{epoch_batches, Data, Rng};
use crate::early_stopping::{best_epoch, Monitor};
use crate::ema::Ema;
use crate::error::TrainError;
use crate::fallible::torch;
use crate::figures;
use crate::history::EpochRecord;
use crate::loss_scale::LossScale;
use crate::optim::Optimizer;
use crate::precision::{autocast, Precision};
use crate::run_dir::{RunConfig, RunDir, AUGMENTED, BEST, WEIGHTS};
use crate::tensorboard::run_log::{Resumed, RunLog, TensorBoard};

/// What the loss compares the model's output with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Objective {
    /// Autoencoder: MSE between reconstruction and the (clean) input.
    Reconstruction,
    /// Classifier: cross-entropy on logits, the targets smoothed by
    /// `smoothing` (`--label-smoothing`: (1 − ε)·one-hot + ε / classes).
    CrossEntropy { smoothing: f64 },
    /// Classifier as the reference: MSE between softmax and one-hot.
    OneHotMse,
}

impl Objective {
    /// The classifier's objective for `loss` (`smoothing` applies to
    /// cross-entropy).
    pub fn classifier(loss: Loss, smoothing: f64) -> Objective {
        match loss {
            Loss::CrossEntropy => Objective::CrossEntropy { smoothing },
            Loss::Mse => Objective::OneHotMse,
        }
    }

    /// The loss in float32, whatever precision `out` was computed in
    /// (autocast's bfloat16 or float16): the loss and its reduction never
    /// run in reduced precision.
    pub fn loss(self, out: &Tensor, x: &Tensor, y: Option<&Tensor>) -> Tensor {
        let out = &out.to_kind(Kind::Float);
        match self {
            Objective::Reconstruction => out.mse_loss(x, tch::Reduction::Mean),
            Objective::CrossEntropy { smoothing } => {
                out.cross_entropy_loss::<Tensor>(y.expect("labels"), None, tch::Reduction::Mean, -100, smoothing)
            }
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

/// One training stage: up to `epochs` epochs with one optimizer, right
/// after the epochs of the stage before it (early stopping may end a stage
/// sooner; the next one then starts sooner).
#[derive(Debug, Clone, Copy)]
pub struct Stage<'a> {
    /// Shown on the progress bar, e.g. "(fine-tuning)".
    pub name: &'a str,
    pub epochs: usize,
    pub lr: f64,
    /// Parameters whose names start with this prefix are frozen: no
    /// gradients, and the model runs in eval mode (BatchNorm statistics
    /// kept), which only the frozen part may depend on.
    pub frozen: Option<&'a str>,
}

impl Stage<'_> {
    /// All epochs of `settings` in one stage (the autoencoder's).
    pub fn whole(settings: &TrainSettings) -> Stage<'static> {
        Stage { name: "", epochs: settings.epochs, lr: settings.lr, frozen: None }
    }

    /// The rate at a step of this stage: a linear warm-up from lr/25 over
    /// the first `warmup` fraction of the steps, then constant or a cosine
    /// decay to 0 over the rest (warm-up + cosine is the one-cycle policy).
    pub fn lr_at(&self, s: &TrainSettings, step_in_stage: usize, steps_in_stage: usize) -> f64 {
        let warm = (s.warmup * steps_in_stage as f64).round() as usize;
        if step_in_stage < warm {
            let t = step_in_stage as f64 / warm as f64;
            return self.lr * (1.0 / 25.0 + (1.0 - 1.0 / 25.0) * t);
        }
        if !s.cosine || steps_in_stage <= warm {
            return self.lr;
        }
        let t = (step_in_stage - warm) as f64 / (steps_in_stage - warm) as f64;
        self.lr * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
    }
}

/// A model's loss over a data set, and for a classifier its accuracy and
/// confusion matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub loss: f64,
    pub accuracy: Option<f64>,
    /// `confusion[t][p]`: images of class `t` predicted as `p`.
    pub confusion: Option<Vec<Vec<u64>>>,
}

/// Evaluates the model over `x` (eval mode, no grad), its forward pass in
/// `precision` (as Lightning validates: under the training's autocast).
pub fn evaluate(
    model: &dyn ModuleT,
    objective: Objective,
    precision: Precision,
    x: &Tensor,
    y: Option<&Tensor>,
) -> Result<Evaluation, tch::TchError> {
    let n = x.size()[0];
    let chunk = 1000;
    let mut loss = 0.0;
    let mut counts: Option<Tensor> = None; // [K·K], true class major
    let mut classes = 0;
    tch::no_grad(|| -> Result<(), tch::TchError> {
        let mut start = 0;
        while start < n {
            let len = chunk.min(n - start);
            let xb = x.narrow(0, start, len);
            let yb = y.map(|y| y.narrow(0, start, len));
            let out = autocast(precision, x.device(), || model.forward_t(&xb, false))?;
            loss += objective.loss(&out, &xb, yb.as_ref()).double_value(&[]) * len as f64;
            if let (Some(yb), true) = (&yb, objective.classifies()) {
                classes = out.size()[1];
                let cell = yb * classes + out.argmax(-1, false); // [B]
                let c = cell.bincount::<Tensor>(None, classes * classes);
                counts = Some(match counts.take() {
                    Some(sum) => sum + c,
                    None => c,
                });
            }
            start += len;
        }
        Ok(())
    })?;
    let confusion = counts.map(|c| {
        // Inside `torch`, which turns a libtorch panic into an error.
        let flat =
            Vec::<i64>::try_from(c.to_device(tch::Device::Cpu).to_kind(Kind::Int64)).expect("[K·K] int64 counts");
        flat.chunks(classes as usize).map(|row| row.iter().map(|&v| v as u64).collect()).collect::<Vec<Vec<u64>>>()
    });
    let accuracy = confusion.as_ref().map(|m| {
        let correct: u64 = (0..m.len()).map(|i| m[i][i]).sum();
        correct as f64 / n as f64
    });
    Ok(Evaluation { loss: loss / n as f64, accuracy, confusion })
}

/// Gives every 4-D variable (convolution weights) channels-last strides,
/// values unchanged: libtorch then picks its channels-last convolution
/// kernels, and activations stay channels-last through BatchNorm, ReLU,
/// pooling and upsampling. Frozen weights too, so stage 1 runs the same
/// kernels.
fn channels_last(vs: &VarStore) {
    for (_, mut t) in vs.variables() {
        if t.dim() == 4 {
            let cl = t.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2]); // [O, I, kh, kw], NHWC strides
            t.set_data(&cl);
        }
    }
}

/// What a trainer draws of the validation set after each epoch, for
/// TensorBoard.
pub enum EpochFigure<'a> {
    /// The autoencoder's reconstruction grid (tag `reconstructions`).
    Reconstructions(Box<dyn Fn() -> std::io::Result<Png> + 'a>),
    /// The classifier's confusion matrix (tag `confusion_matrix`), with
    /// the class names.
    Confusion(Vec<String>),
}

impl std::fmt::Debug for EpochFigure<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EpochFigure::Reconstructions(_) => "Reconstructions",
            EpochFigure::Confusion(_) => "Confusion",
        })
    }
}

/// An epoch's running figures: the loss and correct-count sums, kept on
/// the device and read only when the bar refreshes and at the epoch's end,
/// the images seen, and the progress bar, which clears itself however the
/// epoch ends (the meter dropped).
struct EpochMeter {
    started: Instant,
    loss_sum: Tensor,
    correct: Tensor,
    seen: usize,
    bar: ProgressBar,
}

impl EpochMeter {
    fn new(prefix: String, batches: usize, quiet: bool, device: tch::Device) -> EpochMeter {
        let bar = if quiet { ProgressBar::hidden() } else { ProgressBar::new(batches as u64) };
        bar.set_style(
            ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} ETA {eta}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_prefix(prefix);
        EpochMeter {
            started: Instant::now(),
            loss_sum: Tensor::zeros([], (Kind::Double, device)),
            correct: Tensor::zeros([], (Kind::Int64, device)),
            seen: 0,
            bar,
        }
    }

    /// The mean loss so far and the rate on the bar; a NaN loss ends the run.
    fn show(&self, epoch: usize) -> Result<(), TrainError> {
        let mean = torch(|| self.loss_sum.double_value(&[]) / self.seen as f64)?;
        if mean.is_nan() {
            return Err(TrainError::NanLoss { epoch });
        }
        let rate = self.seen as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
        self.bar.set_message(format!("loss {mean:.4} {rate:.0} img/s"));
        Ok(())
    }

    /// A line above the bar (on stderr when the bar draws nothing: not a
    /// terminal, where its own println would not show either).
    fn say(&self, line: String) {
        match self.bar.is_hidden() {
            true => eprintln!("{line}"),
            false => self.bar.println(line),
        }
    }

    /// The epoch's mean loss, and its accuracy when the model classifies
    /// (reads the device).
    fn totals(&self, classifies: bool) -> (f64, Option<f64>) {
        let loss = self.loss_sum.double_value(&[]) / self.seen as f64;
        (loss, classifies.then(|| self.correct.int64_value(&[]) as f64 / self.seen as f64))
    }

    fn clear(&self) {
        if !self.bar.is_finished() {
            self.bar.finish_and_clear();
        }
    }
}

impl Drop for EpochMeter {
    fn drop(&mut self) {
        self.clear();
    }
}

/// TensorBoard's batch_loss window: the losses summed on the device since
/// its last point, and how many steps they are.
#[derive(Debug)]
struct BatchLossWindow {
    sum: Tensor,
    steps: usize,
}

impl BatchLossWindow {
    /// The window's mean, read from the device; then it starts again.
    fn take_mean(&mut self) -> Result<f64, TrainError> {
        let mean = torch(|| self.sum.double_value(&[]) / self.steps as f64)?;
        let _ = self.sum.zero_();
        self.steps = 0;
        Ok(mean)
    }
}

/// Trains a model held in `vs` stage by stage, checkpointing into `run`
/// after every epoch and keeping the best epoch's weights.
#[derive(Debug)]
pub struct Trainer<'a> {
    pub vs: VarStore,
    run: &'a RunDir,
    data: &'a Data,
    settings: &'a TrainSettings,
    objective: Objective,
    quiet: bool,
    /// Epochs of the whole run at most, for "epoch 3/10".
    total: usize,
    pub history: Vec<EpochRecord>,
    /// The run configuration's fingerprint, recorded in every checkpoint.
    fingerprint: String,
    /// The checkpoint resumed from, until the stage it was saved in has
    /// taken its optimizer state.
    resumed: Option<Checkpoint>,
    /// The TensorBoard log (`None`: `--tensorboard false`).
    log: Option<RunLog>,
    figure: Option<EpochFigure<'a>>,
    /// The first epoch of each stage that has started.
    pub stage_starts: Vec<usize>,
    /// The epoch at which early stopping ended the last stage, if it did.
    pub stopped_early: Option<usize>,
    /// TensorBoard's batch_loss window (checkpointed, so a resumed run's
    /// points are an uninterrupted one's).
    window: BatchLossWindow,
    /// `--ema`: the averaged weights, swapped in for validation and saving.
    ema: Option<Ema>,
    /// `--precision 16-mixed`: the dynamic loss scale (checkpointed).
    loss_scale: Option<LossScale>,
    /// `--threads` unset: libtorch's threads follow the free cores.
    follower: Option<crate::cores::Follower>,
}

impl<'a> Trainer<'a> {
    pub fn new(
        vs: VarStore,
        run: &'a RunDir,
        cfg: &'a RunConfig,
        data: &'a Data,
        objective: Objective,
        quiet: bool,
    ) -> Trainer<'a> {
        let settings = &cfg.train;
        let total = settings.frozen_epochs + settings.epochs;
        channels_last(&vs);
        let ema = settings.ema.map(|decay| Ema::new(&vs, decay, settings.ema_warmup));
        let fingerprint = cfg.fingerprint();
        let vs_device = vs.device();
        Trainer {
            vs,
            run,
            data,
            settings,
            objective,
            quiet,
            total,
            history: Vec::new(),
            fingerprint,
            resumed: None,
            log: None,
            figure: None,
            stage_starts: Vec::new(),
            stopped_early: None,
            window: BatchLossWindow { sum: Tensor::zeros([], (Kind::Double, vs_device)), steps: 0 },
            ema,
            loss_scale: settings.precision.scales_loss().then(LossScale::default),
            // CUDA runs its kernels on the device; the host's threads only feed it.
            follower: if vs_device.is_cuda() { None } else { crate::cores::Follower::new(settings.threads) },
        }
    }

    fn batches_per_epoch(&self) -> usize {
        self.data.train_len().div_ceil(self.settings.batch_size)
    }

    fn early(&self) -> Option<EarlyStopping> {
        self.settings.early_stopping
    }

    fn monitor(&self) -> Monitor {
        self.settings.monitor()
    }

    /// Continues the run from its checkpoint: the weights, the history
    /// (rewritten to `history.csv`, which may lag by an epoch), the best
    /// epoch's weights, the loop's state and, once its stage starts, the
    /// optimizer state.
    pub fn resume(&mut self) -> Result<(), TrainError> {
        let ckpt = self.run.checkpoint(&self.fingerprint, self.vs.device())?;
        ckpt.copy_into(&mut self.vs, "")?;
        if let Some(ema) = self.ema.as_mut() {
            // The checkpoint's model is the average; training goes on
            // from its own weights.
            ema.load_state(|k| ckpt.tensors.get(k).map(|t| t.shallow_clone()))
                .map_err(|msg| TrainError::BadRun { path: ckpt.path.clone(), msg })?;
            ema.swap();
        }
        self.history = ckpt.history.clone();
        let TrainState { batch_loss_sum, batch_loss_steps, loss_scale } = ckpt.state;
        if self.loss_scale.is_some() {
            self.loss_scale = Some(loss_scale.ok_or_else(|| TrainError::BadRun {
                path: ckpt.path.clone(),
                msg: "a 16-mixed checkpoint without its loss_scale".into(),
            })?);
        }
        self.window = BatchLossWindow {
            sum: Tensor::from(batch_loss_sum).to_kind(Kind::Double).to_device(self.vs.device()),
            steps: batch_loss_steps,
        };
        self.run.write_history(&self.history)?;
        self.check_best(ckpt.epoch)?;
        self.resumed = Some(ckpt);
        Ok(())
    }

    /// `best.safetensors` must hold the checkpoint history's best epoch,
    /// saved from that very history. It is written only after the
    /// checkpoint of its epoch, so it is never ahead of the checkpoint,
    /// whatever the device or its nondeterminism; a kill between the two
    /// writes leaves it one best behind, and then the best is the
    /// checkpoint's own epoch, whose weights are at hand: saved again.
    fn check_best(&mut self, saved: usize) -> Result<(), TrainError> {
        let Some(best) = best_epoch(&self.history, self.monitor()) else { return Ok(()) };
        let path = self.run.file(BEST);
        let held =
            Checkpoint::read_header(&path).ok().filter(|h| h.config_sha256.as_deref() == Some(&self.fingerprint));
        match held {
            Some(h) if h.holds(best.epoch, &self.history) => Ok(()),
            _ if best.epoch == saved => {
                // The checkpoint's model (the average, if any) is the best.
                self.swap_ema();
                let saved = Checkpoint::save_best(&path, &self.fingerprint, &self.vs, &self.history);
                self.swap_ema();
                saved
            }
            held => Err(TrainError::BadRun {
                path,
                msg: format!(
                    "holds {}, but epoch {} is the run's best so far: its weights are lost, so --resume cannot keep \
                     the best epoch (start again with --force)",
                    held.map(|h| h.describe(best.epoch)).unwrap_or_else(|| "no weights of this run".into()),
                    best.epoch
                ),
            }),
        }
    }

    /// Starts the TensorBoard log (after [`Trainer::resume`], if resuming):
    /// a fresh run starts it over; a resumed one keeps what was logged up
    /// to its checkpoint.
    pub fn log_to_tensorboard(
        &mut self,
        opts: Option<TensorBoard>,
        cfg: &RunConfig,
        figure: EpochFigure<'a>,
    ) -> Result<(), TrainError> {
        let done = self.done();
        let resumed = (done > 0).then(|| Resumed { epoch: done, steps: (done * self.batches_per_epoch()) as i64 });
        let Some(opts) = opts else {
            // Not logging now, but what was logged stays true to the run.
            return resumed.map_or(Ok(()), |r| crate::tensorboard::run_log::trim(&self.run.path, r));
        };
        self.log = Some(RunLog::open(&self.run.path, opts, &cfg.hparams(), resumed)?);
        self.figure = Some(figure);
        Ok(())
    }

    /// Shows what the network is trained on when `--augment` or `--noise`
    /// changes it: `augmented.png` in the run, and (on a fresh start) the
    /// same picture as TensorBoard's `augmented` image at step 0.
    pub fn show_augmentation(&mut self) -> Result<(), TrainError> {
        let s = self.settings;
        if s.augment.is_none() && s.noise == 0.0 {
            return Ok(());
        }
        let png = torch(|| figures::augmentation_grid(self.data, &s.augment, s.noise, s.seed, 10))?
            .map_err(TrainError::io(&self.run.path, "cannot draw the augmented images"))?;
        let path = self.run.file(AUGMENTED);
        png.save(&path).map_err(TrainError::io(&path, "cannot write"))?;
        match self.log.as_mut() {
            Some(log) if self.history.is_empty() => log.train_image(AUGMENTED_TAG, 0, &png),
            _ => Ok(()),
        }
    }

    /// The last epoch that is done.
    fn done(&self) -> usize {
        self.history.last().map(|r| r.epoch).unwrap_or(0)
    }

    /// Runs the stages one after the other, each starting right after the
    /// epoch the one before it ended at, skipping what the history shows
    /// is done. A stage after the first starts from the best weights of the
    /// stage before it (two Keras `fit` calls with `restore_best_weights`).
    /// Stages are numbered by their place in `stages` (an empty one keeps
    /// its number).
    pub fn run(&mut self, stages: &[Stage], model: &dyn ModuleT) -> Result<(), TrainError> {
        let mut first = 1;
        self.stage_starts.clear();
        for (number, stage) in stages.iter().enumerate().filter(|(_, s)| s.epochs > 0) {
            let last = first + stage.epochs - 1;
            self.stage_starts.push(first);
            self.stopped_early = None;
            let end = match self.ended(first, last) {
                Some(end) => end,
                None => {
                    if self.done() + 1 == first && self.done() > 0 {
                        // Nothing of this stage is done: it starts from the
                        // best weights of the stage before (and a new average).
                        self.restore_best()?;
                    }
                    self.run_stage(stage, number + 1, first, last, model)?;
                    self.done()
                }
            };
            first = end + 1;
        }
        Ok(())
    }

    /// The epoch at which the stage `first..=last` ended, if the history
    /// shows that it has: its last epoch, or one where early stopping
    /// ended it.
    fn ended(&mut self, first: usize, last: usize) -> Option<usize> {
        for r in self.history.iter().filter(|r| (first..=last).contains(&r.epoch)) {
            if r.epoch == last {
                return Some(r.epoch);
            }
            if self.early().is_some_and(|es| es.stops(&self.history[..r.epoch])) {
                // Stopped before its last epoch.
                self.stopped_early = Some(r.epoch);
                return Some(r.epoch);
            }
        }
        None
    }

    /// Runs the stage's epochs `first..=last` that are not done yet.
    fn run_stage(
        &mut self,
        stage: &Stage,
        number: usize,
        first: usize,
        last: usize,
        model: &dyn ModuleT,
    ) -> Result<(), TrainError> {
        let frozen: Vec<Tensor> = match stage.frozen {
            Some(prefix) => self
                .vs
                .variables()
                .into_iter()
                .filter(|(k, t)| k.starts_with(prefix) && t.requires_grad())
                .map(|(_, t)| t)
                .collect(),
            None => Vec::new(),
        };
        for t in &frozen {
            let _ = t.set_requires_grad(false);
        }
        let result = self.epochs(stage, number, first, last, model);
        for t in &frozen {
            let _ = t.set_requires_grad(true);
        }
        result
    }

    /// The stage's epochs that are not done yet: for each, its batches
    /// (`step`), then `end_epoch`; early stopping may end the stage sooner.
    fn epochs(
        &mut self,
        stage: &Stage,
        number: usize,
        first: usize,
        last: usize,
        model: &dyn ModuleT,
    ) -> Result<(), TrainError> {
        let trainable = self.vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
        let mut opt = Optimizer::new(self.settings.optimizer, trainable);
        // A checkpoint saved inside this stage carries its optimizer state.
        if let Some(ckpt) = self.resumed.take_if(|c| c.epoch >= first) {
            opt.load_state(ckpt.steps, |k| ckpt.tensors.get(k).map(|t| t.shallow_clone()))
                .map_err(|msg| TrainError::BadRun { path: ckpt.path.clone(), msg })?;
        }
        let s = self.settings;
        let train_mode = stage.frozen.is_none();
        let batches_per_epoch = self.batches_per_epoch();
        let steps_in_stage = batches_per_epoch * (last + 1 - first);
        for epoch in (self.done() + 1).max(first)..=last {
            // Dropout draws from libtorch's global generator, whose state no
            // checkpoint holds: seeded anew from the run's seed and the epoch,
            // a resumed run (it starts at an epoch) draws what an
            // uninterrupted one does.
            tch::manual_seed((s.seed ^ ((epoch as u64) << 40)) as i64);
            let batches = epoch_batches(self.data.train_len(), s.batch_size, s.seed, epoch, self.vs.device());
            let prefix = format!("epoch {epoch}/{} {}", self.total, stage.name);
            let mut meter = EpochMeter::new(prefix, batches.len(), self.quiet, self.vs.device());
            let mut lr = stage.lr;
            for (b, idx) in batches.iter().enumerate() {
                if interrupt::requested() {
                    return Err(TrainError::Interrupted { run: self.run.path.clone(), epoch: epoch - 1 });
                }
                // The step in this stage (the schedule's and the average's clock).
                let step = (epoch - first) * batches_per_epoch + b;
                lr = stage.lr_at(s, step, steps_in_stage);
                self.step(&mut opt, model, train_mode, idx, (epoch, b, step), lr, &mut meter)
                    .map_err(|e| self.failed(epoch, e))?;
                if let Some(change) = self.follower.as_mut().and_then(|f| f.tick()) {
                    if !self.quiet {
                        meter.say(format!(
                            "libtorch threads {} → {}: other processes keep {:.1} cores busy",
                            change.from, change.to, change.others
                        ));
                    }
                }
                // Optimizer steps of the whole run so far: TensorBoard's step.
                let global = ((epoch - 1) * batches_per_epoch + b + 1) as i64;
                if self.log.as_ref().is_some_and(|l| global.rem_euclid(l.batch_every as i64) == 0) {
                    let point = self
                        .window
                        .take_mean()
                        .and_then(|mean| self.log.as_mut().expect("logging").batch_loss(global, mean));
                    point.map_err(|e| self.failed(epoch, e))?;
                }
                if b % 10 == 0 || b + 1 == batches.len() {
                    meter.show(epoch).map_err(|e| match e {
                        nan @ TrainError::NanLoss { .. } => nan,
                        e => self.failed(epoch, e),
                    })?;
                }
                meter.bar.inc(1);
            }
            if self.end_epoch(meter, &opt, (epoch, number, last), lr, model)? {
                break;
            }
        }
        Ok(())
    }

    /// One optimizer step on the training images `idx`: augmented, the
    /// forward pass under autocast, the loss (float32) and its backward
    /// outside it, as PyTorch's AMP recipe has it (scaled under 16-mixed),
    /// the step, the average; the loss and the correct count summed on the
    /// device. libtorch's errors (out of memory, above all) come back as
    /// errors, never a panic. `at`: the epoch, the batch in it, and the step
    /// in the stage.
    #[allow(clippy::too_many_arguments)]
    fn step(
        &mut self,
        opt: &mut Optimizer,
        model: &dyn ModuleT,
        train_mode: bool,
        idx: &Tensor,
        (epoch, b, step): (usize, usize, usize),
        lr: f64,
        meter: &mut EpochMeter,
    ) -> Result<(), TrainError> {
        let s = self.settings;
        let device = self.vs.device();
        let len = idx.size()[0] as usize;
        let done = torch(|| -> Result<(), tch::TchError> {
            crate::fault::libtorch_failure(epoch, b);
            let xb = self.data.train_x.f_index_select(0, idx)?; // [B, C, H, W]
            let mut rng = Rng::new(s.seed ^ ((epoch as u64) << 32) ^ b as u64);
            let xb = s.augment.apply(&xb, &mut rng);
            let input = crate::augment::noisy(&xb, s.noise, &mut rng);
            let yb = self.data.train_y.as_ref().map(|y| y.f_index_select(0, idx)).transpose()?;
            opt.zero_grad();
            let out = autocast(s.precision, device, || model.forward_t(&input, train_mode))?;
            let loss = self.objective.loss(&out, &xb, yb.as_ref());
            match self.loss_scale.as_mut() {
                Some(scale) => {
                    (&loss * scale.scale).f_backward()?;
                    let finite = opt.step_scaled(lr, scale.scale)?;
                    scale.update(finite);
                }
                None => {
                    loss.f_backward()?;
                    opt.step(lr);
                }
            }
            if let Some(ema) = self.ema.as_mut() {
                ema.update(step as i64);
            }
            tch::no_grad(|| -> Result<(), tch::TchError> {
                let l = loss.detach().f_to_kind(Kind::Double)?;
                meter.loss_sum += &l * len as f64;
                // The batch_loss window grows only when TensorBoard logs
                // (one add per step otherwise saved).
                if self.log.is_some() {
                    self.window.sum += l;
                }
                if let Some(yb) = &yb {
                    meter.correct += out.f_argmax(-1, false)?.f_eq_tensor(yb)?.f_sum(Kind::Int64)?;
                }
                Ok(())
            })
        });
        done.and_then(|r| r.map_err(TrainError::from))?;
        meter.seen += len;
        self.window.steps += 1;
        Ok(())
    }

    /// After an epoch's last batch: validation (on the averaged weights,
    /// if any), the history row and its line, then the writes in their one
    /// order — the TensorBoard log, the checkpoint (it carries the
    /// history), the best weights, `history.csv`. The best file is never
    /// ahead of the checkpoint: a kill between the two leaves it one best
    /// behind, with the best epoch's weights in the checkpoint, which a
    /// resume saves again; nothing relies on a redone epoch coming out the
    /// same. Returns whether early stopping ends the stage here.
    fn end_epoch(
        &mut self,
        meter: EpochMeter,
        opt: &Optimizer,
        (epoch, number, last): (usize, usize, usize),
        lr: f64,
        model: &dyn ModuleT,
    ) -> Result<bool, TrainError> {
        meter.clear();
        let s = self.settings;
        // Validation, the best epoch and the checkpoint's model see the
        // averaged weights, if any (an error ends the run: no swap back).
        self.swap_ema();
        let eval = torch(|| evaluate(model, self.objective, s.precision, &self.data.val_x, self.data.val_y.as_ref()))
            .and_then(|r| r.map_err(TrainError::from))
            .map_err(|e| self.failed(epoch, e))?;
        if eval.loss.is_nan() {
            return Err(TrainError::NanLoss { epoch });
        }
        // The epoch's sums and the batch_loss window, read from the
        // device (a sync point: where asynchronous errors surface).
        let classifies = self.objective.classifies();
        let (loss, accuracy, state) = torch(|| {
            crate::fault::libtorch_sync_failure(epoch);
            let (loss, accuracy) = meter.totals(classifies);
            let state = TrainState {
                batch_loss_sum: self.window.sum.double_value(&[]),
                batch_loss_steps: self.window.steps,
                loss_scale: self.loss_scale,
            };
            (loss, accuracy, state)
        })
        .map_err(|e| self.failed(epoch, e))?;
        self.history.push(EpochRecord {
            epoch,
            loss,
            val_loss: eval.loss,
            accuracy,
            val_accuracy: eval.accuracy,
            // Milliseconds: what history.csv shows is what the checkpoint holds.
            seconds: (meter.started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
            lr,
            best_epoch: 0, // set below: the rule needs this epoch in the history
            stage: number,
        });
        drop(meter);
        let best = best_epoch(&self.history, self.monitor()).map_or(epoch, |r| r.epoch);
        let record = {
            let last = self.history.last_mut().expect("pushed");
            last.best_epoch = best;
            last.clone()
        };
        let improved = record.best_epoch == epoch;
        let n = self.data.train_len();
        if !self.quiet {
            println!("{}{}", summary_line(&record, self.total, n, s.precision), if improved { " (best)" } else { "" });
        }
        let saved = self.log_epoch(&record, &eval, n).and_then(|()| {
            // The optimizer's state, and the training weights beside the average.
            let mut extra = opt.state();
            extra.extend(self.ema.iter().flat_map(Ema::state));
            Checkpoint::save(
                &self.run.file(WEIGHTS),
                &self.fingerprint,
                &self.vs,
                &extra,
                opt.steps,
                &self.history,
                state,
            )
        });
        if saved.is_err() {
            self.history.pop();
        }
        let saved = saved
            .and_then(|()| {
                crate::fault::point("checkpoint-before-best", epoch);
                match improved {
                    true => Checkpoint::save_best(&self.run.file(BEST), &self.fingerprint, &self.vs, &self.history),
                    false => Ok(()),
                }
            })
            .and_then(|()| {
                crate::fault::point("checkpoint-before-history", epoch);
                self.run.write_history(&self.history)
            });
        saved.map_err(|e| self.failed(epoch, e))?;
        self.swap_ema();
        let Some(es) = self.early().filter(|es| epoch < last && es.stops(&self.history)) else { return Ok(false) };
        self.stopped_early = Some(epoch);
        if !self.quiet {
            let best = best_epoch(&self.history, self.monitor()).expect("a history");
            let waited = epoch - best.epoch;
            println!(
                "early stopping after epoch {epoch}: val_loss has not improved on epoch {}'s {:.5}{} for {waited} epoch{}",
                best.epoch,
                best.val_loss,
                if es.min_delta > 0.0 { format!(" by more than {}", es.min_delta) } else { String::new() },
                if waited == 1 { "" } else { "s" }
            );
        }
        Ok(true)
    }

    /// The epoch's scalars and validation picture, if TensorBoard logs.
    fn log_epoch(&mut self, record: &EpochRecord, eval: &Evaluation, train_images: usize) -> Result<(), TrainError> {
        let Some(log) = self.log.as_mut() else { return Ok(()) };
        log.epoch(record, train_images)?;
        let png = match (&self.figure, &eval.confusion) {
            // Drawing reads the model's output back: a libtorch sync point.
            (Some(EpochFigure::Reconstructions(draw)), _) => Some(("reconstructions", torch(draw)?)),
            (Some(EpochFigure::Confusion(names)), Some(m)) => {
                Some(("confusion_matrix", figure::confusion_heatmap_png(m, names)))
            }
            _ => None,
        };
        if let Some((tag, png)) = png {
            let png = png.map_err(TrainError::io(&self.run.path, "cannot draw the TensorBoard image"))?;
            log.validation_image(tag, record.epoch, &png)?;
        }
        Ok(())
    }

    /// Puts the kept weights of the last stage trained in the model, as
    /// validation saw them (Keras's `restore_best_weights`): the best
    /// epoch's from `best.safetensors` when it is not the last epoch, else
    /// the last epoch's average, if any. The next stage starts from them
    /// (with the average restarted there), and the figures, the test report
    /// and the export describe the same weights.
    pub fn restore_best(&mut self) -> Result<(), TrainError> {
        let Some(best) = best_epoch(&self.history, self.monitor()).cloned() else { return Ok(()) };
        if self.history.last().is_some_and(|l| l.epoch == best.epoch) {
            if let Some(ema) = self.ema.as_mut() {
                ema.swap();
                ema.reset();
            }
            return Ok(());
        }
        let ckpt = self.run.weights(BEST, &self.fingerprint, self.vs.device())?;
        let held = ckpt.header();
        if !held.holds(best.epoch, &self.history) {
            return Err(TrainError::BadRun {
                path: ckpt.path.clone(),
                msg: format!("holds {}, expected the best epoch {}", held.describe(best.epoch), best.epoch),
            });
        }
        if !self.quiet {
            println!(
                "restoring the weights of epoch {}, the best of stage {} (val_loss {:.5})",
                best.epoch, best.stage, best.val_loss
            );
        }
        ckpt.copy_into(&mut self.vs, "")?;
        if let Some(ema) = self.ema.as_mut() {
            ema.reset();
        }
        Ok(())
    }

    /// Exchanges the model's weights with their average (`--ema`); a no-op
    /// without one.
    fn swap_ema(&mut self) {
        if let Some(ema) = self.ema.as_mut() {
            ema.swap();
        }
    }

    /// Ends the TensorBoard log's session: the run is complete.
    pub fn finish_log(&mut self) -> Result<(), TrainError> {
        match self.log.as_mut() {
            Some(log) => log.finished(),
            None => Ok(()),
        }
    }

    /// `e` in `epoch`, after training started: the run keeps the last
    /// epoch it saved, and says how to resume (exit 1).
    fn failed(&self, epoch: usize, e: TrainError) -> TrainError {
        TrainError::Failed {
            run: self.run.path.clone(),
            during: format!("epoch {epoch}"),
            saved: self.done(),
            source: Box::new(e),
        }
    }

    /// The last epoch's record, the best epoch's, and the training time
    /// of all epochs.
    pub fn outcome(&self) -> Result<(EpochRecord, EpochRecord, f64), TrainError> {
        let last = self.history.last().cloned().ok_or_else(|| TrainError::Runtime("no epoch was trained".into()))?;
        let best = best_epoch(&self.history, self.monitor()).cloned().unwrap_or_else(|| last.clone());
        Ok((last, best, self.history.iter().map(|r| r.seconds).sum()))
    }
}

/// `epoch 3/10 loss 0.0012 val_loss 0.0013 [acc …] 41.2s (1165 img/s)`
pub fn summary_line(r: &EpochRecord, total: usize, images: usize, precision: Precision) -> String {
    let mut s = format!("epoch {}/{} loss {:.5} val_loss {:.5}", r.epoch, total, r.loss, r.val_loss);
    if let (Some(a), Some(va)) = (r.accuracy, r.val_accuracy) {
        s += &format!(" acc {a:.4} val_acc {va:.4}");
    }
    s += &format!(" {:.1}s ({:.0} img/s, precision {precision})", r.seconds, images as f64 / r.seconds.max(1e-9));
    s
}
