//! `infer reconstruct`: the autoencoder's reconstructions and their MSE.

use std::fmt::Write as _;
use std::io::Write;
use std::path::PathBuf;

use serde_json::json;

use crate::error::{check_writable, InferError};
use crate::npy::NpyWriter;
use ae_core::figure::{self, Tile};
use ae_onnx::Dim;

use super::run::{inputs_json, open_images, open_model, print, print_json, stream, timing_line, Format, RunOptions};
use crate::contract;

#[derive(Debug, Clone, Default)]
pub struct ReconstructOptions {
    pub grid: Option<PathBuf>,
    pub count: usize,
    pub per_image: Option<PathBuf>,
    /// Every reconstruction as a `[N, C, H, W]` .npy.
    pub npy: Option<PathBuf>,
    pub format: Format,
}

pub fn reconstruct(opts: &RunOptions, r: &ReconstructOptions, out: &mut dyn Write) -> Result<(), InferError> {
    let _checked = ae_core::interrupt::Checked::begin();
    let mut session = open_model(opts)?;
    let fits = |o: &crate::session::TensorSpec| o.dims.len() == 4;
    let output = contract::choose(&session, opts.outputs.output.as_deref(), "reconstruction", "an autoencoder", fits)?
        .name
        .clone();
    let classes = session.metadata_class_names().unwrap_or_default();
    let mut source = open_images(opts, &session, classes)?;
    let (c, h, w) = (session.channels, session.height, session.width);
    match session.output(&output).map(|o| o.dims.as_slice()) {
        Some([_, Dim::Fixed(oc), Dim::Fixed(oh), Dim::Fixed(ow)])
            if (*oc, *oh, *ow) == (c as i64, h as i64, w as i64) => {}
        _ => {
            return Err(InferError::Input {
                path: opts.model.clone(),
                msg: format!(
                    "output `{output}` is [{}], expected [batch, {c}, {h}, {w}] like the input",
                    session.output(&output).map(|o| o.dims_string()).unwrap_or_default()
                ),
            })
        }
    }
    for p in [&r.grid, &r.per_image, &r.npy].into_iter().flatten() {
        check_writable(p)?;
    }
    let mut npy = match &r.npy {
        Some(p) => Some(NpyWriter::create(p, &[source.count(), c, h, w]).map_err(InferError::write(p))?),
        None => None,
    };
    let px = c * h * w;
    let mut mse: Vec<f64> = Vec::with_capacity(source.count().min(1 << 20));
    let (mut originals, mut recons) = (Vec::new(), Vec::new());
    let seconds = stream(&mut session, &mut source, opts.batch_size, |pixels, outputs| {
        let rec = outputs.iter().find(|o| o.name == output).expect("checked");
        if let (Some(wr), Some(p)) = (npy.as_mut(), &r.npy) {
            wr.write_rows(rec.rows()).map_err(InferError::write(p))?;
        }
        for (i, y) in rec.rows().outer_iter().enumerate() {
            let x = &pixels[i * px..(i + 1) * px];
            let e = x.iter().zip(y).map(|(&a, &b)| (a as f64 / 255.0 - b as f64).powi(2)).sum::<f64>() / px as f64;
            if originals.len() < r.count {
                originals.push(Tile {
                    pixels: x.to_vec(),
                    channels: c,
                    height: h,
                    width: w,
                    caption: None,
                    alert: false,
                });
                let y8 = y.iter().map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8).collect();
                recons.push(Tile {
                    pixels: y8,
                    channels: c,
                    height: h,
                    width: w,
                    caption: Some(format!("MSE {e:.5}")),
                    alert: false,
                });
            }
            mse.push(e);
        }
        Ok(())
    })?;
    if let (Some(wr), Some(p)) = (npy, &r.npy) {
        wr.finish().map_err(InferError::write(p))?;
    }
    let n = mse.len();
    let mean = mse.iter().sum::<f64>() / n.max(1) as f64;
    let mut sorted = mse.clone();
    sorted.sort_by(f64::total_cmp);
    let median = median(&sorted);
    if !opts.quiet {
        eprintln!("{}", timing_line(n, seconds, &session, opts.batch_size));
    }
    if let Some(p) = &r.per_image {
        #[derive(serde::Serialize)]
        struct Row {
            index: usize,
            /// The picture file, for picture inputs.
            #[serde(skip_serializing_if = "Option::is_none")]
            path: Option<String>,
            mse: f64,
        }
        let files = source.files();
        let rows = mse.iter().enumerate().map(|(index, &mse)| Row {
            index,
            path: files.map(|f| f[index].display().to_string()),
            mse,
        });
        ae_core::atomic::write_csv(p, rows).map_err(InferError::write(p))?;
    }
    if let Some(p) = &r.grid {
        let cols = originals.len();
        let mut tiles = originals;
        tiles.extend(recons);
        figure::image_grid(p, Some("originals (top) and reconstructions (bottom)"), &tiles, cols.max(1), 3)
            .map_err(InferError::write(p))?;
    }
    match r.format {
        Format::Text => {
            let mut s = format!("images {n}\nmean MSE {mean:.6}\n");
            let (min, max) = (sorted.first().copied().unwrap_or(0.0), sorted.last().copied().unwrap_or(0.0));
            let _ = writeln!(s, "min {min:.6} median {median:.6} max {max:.6}");
            let files = source.files();
            for (i, e) in mse.iter().enumerate().take(r.count) {
                match files {
                    Some(f) => writeln!(s, "{}: MSE {e:.6}", f[i].display()),
                    None => writeln!(s, "image {i}: MSE {e:.6}"),
                }
                .expect("a String takes any write");
            }
            print(out, &s)
        }
        Format::Json => print_json(
            out,
            &json!({
                "model": opts.model.display().to_string(),
                "images": n,
                "input": inputs_json(opts, &source),
                "mean_mse": mean,
                "median_mse": median,
                "per_image_mse": mse,
                "execution_provider": session.provider,
                "seconds": seconds,
            }),
        ),
    }
}

/// numpy's median of sorted values: the middle one, or the mean of the
/// two middle ones for an even count (0 for none).
pub fn median(sorted: &[f64]) -> f64 {
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}
