//! A run's figures: loss (and accuracy) per epoch, and reconstructions.

use std::path::Path;

use tch::{nn::ModuleT, Tensor};

use ae_core::figure::{self, Png, Series, Tile};

use crate::augment::Augment;
use crate::checkpoint::to_vec;
use crate::data::Data;
use crate::error::TrainError;
use crate::model::Autoencoder;
use crate::run_dir::{EpochRecord, RunDir};

/// A curve's name and how to read its value from a history row.
type Curve = (&'static str, fn(&EpochRecord) -> Option<f64>);

/// `loss.png`, and `accuracy.png` for a classifier; `fine_tuning_from`:
/// the first epoch of the classifier's stage 2, marked on both.
pub fn plot_history(
    run: &RunDir,
    history: &[EpochRecord],
    classifier: bool,
    fine_tuning_from: Option<usize>,
) -> Result<(), TrainError> {
    let x_axis = figure::XAxis {
        integers: true,
        marker: fine_tuning_from.map(|e| (e as f64 - 0.5, "fine-tuning starts".to_string())),
    };
    let pts = |f: fn(&EpochRecord) -> Option<f64>| {
        history.iter().filter_map(|r| f(r).map(|v| (r.epoch as f64, v))).collect::<Vec<_>>()
    };
    let chart = |name: &str, title: &str, y: &str, series: [Curve; 2], log| {
        let p = run.file(name);
        let series = series.map(|(name, f)| Series { name: name.into(), points: pts(f) });
        figure::line_chart(&p, title, "epoch", y, &series, log, &x_axis).map_err(TrainError::io(&p, "cannot write"))
    };
    chart(
        "loss.png",
        "loss per epoch",
        "loss",
        [("loss", |r| Some(r.loss)), ("val_loss", |r| Some(r.val_loss))],
        true,
    )?;
    if classifier {
        chart(
            "accuracy.png",
            "accuracy per epoch",
            "accuracy",
            [("accuracy", |r| r.accuracy), ("val_accuracy", |r| r.val_accuracy)],
            false,
        )?;
    }
    Ok(())
}

/// Pixels in [0, 1] → u8.
fn to_u8(t: &Tensor) -> Vec<u8> {
    to_vec(t).iter().map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8).collect()
}

/// The first `n` validation images (top row) above their reconstructions
/// (bottom row), as `reconstructions.png`.
pub fn reconstructions(path: &Path, ae: &Autoencoder, data: &Data, n: usize) -> Result<(), TrainError> {
    reconstruction_grid(ae, data, n).and_then(|png| png.save(path)).map_err(TrainError::io(path, "cannot write"))
}

/// [`reconstructions`], in memory (TensorBoard's image after each epoch).
pub fn reconstruction_grid(ae: &Autoencoder, data: &Data, n: usize) -> std::io::Result<Png> {
    let n = n.min(data.val_x.size()[0] as usize) as i64;
    let x = data.val_x.narrow(0, 0, n);
    let y = tch::no_grad(|| ae.forward_t(&x, false));
    two_rows(data, (&x, "original"), (&y, "reconstruction"), "originals (top) and reconstructions (bottom)")
}

/// Images `top` above images `bottom` (the same count, [n, C, H, W] in
/// [0, 1], each row's first tile captioned), one column per image.
fn two_rows(data: &Data, top: (&Tensor, &str), bottom: (&Tensor, &str), title: &str) -> std::io::Result<Png> {
    let n = top.0.size()[0];
    let tile = |t: &Tensor, i: i64, cap: &str| Tile {
        pixels: to_u8(&t.get(i)),
        channels: data.channels,
        height: data.height,
        width: data.width,
        caption: (i == 0).then(|| cap.to_string()),
        alert: false,
    };
    let mut tiles: Vec<Tile> = (0..n).map(|i| tile(top.0, i, top.1)).collect();
    tiles.extend((0..n).map(|i| tile(bottom.0, i, bottom.1)));
    figure::image_grid_png(Some(title), &tiles, n as usize, 3)
}

/// The first training images as the network sees them after `--augment`
/// (and `--noise`): the originals (top row) above their transformed copies
/// (bottom row), as `augmented.png` and TensorBoard's `augmented` image.
pub fn augmentation_grid(data: &Data, augment: &Augment, noise: f64, seed: u64, n: usize) -> std::io::Result<Png> {
    let n = n.min(data.train_x.size()[0] as usize) as i64;
    let x = data.train_x.narrow(0, 0, n);
    let mut rng = crate::rng::Rng::new(seed ^ 0xA06_3E17);
    let y = crate::augment::noisy(&augment.apply(&x, &mut rng), noise, &mut rng);
    let title = format!(
        "training images (top) as the network sees them (bottom): --augment {augment}{}",
        if noise > 0.0 { format!(" --noise {noise}") } else { String::new() }
    );
    two_rows(data, (&x, "original"), (&y, "augmented"), &title)
}
