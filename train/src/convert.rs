//! `train convert`: an IDX set (images and labels) written out as an image
//! folder, `OUT/<class>/<index>.png` — the layout `train` and `infer` read
//! as class folders, and torchvision's `ImageFolder` and Keras'
//! `image_dataset_from_directory` too. The folder is built beside OUT under
//! a temporary name and renamed into place when complete, so an error or
//! Ctrl-C leaves no half-written folder.

use std::path::{Path, PathBuf};

use ae_core::{atomic, idx, interrupt};

use crate::data::{self, Sample, Take};
use crate::error::TrainError;

#[derive(Debug, Clone)]
pub struct ConvertJob {
    pub images: PathBuf,
    pub labels: PathBuf,
    /// Folder names, label 0 first (default: the label, zero-padded).
    pub class_names: Option<Vec<String>>,
    /// `--limit`'s seeded, class-stratified sample.
    pub sample: Option<Sample>,
    pub out: PathBuf,
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Converted {
    pub images: usize,
    pub classes: Vec<String>,
}

/// A class name as a folder name: a path separator in it ("T-shirt/top") becomes "-".
fn folder_name(name: &str) -> String {
    name.replace(['/', '\\'], "-")
}

pub fn convert(job: &ConvertJob) -> Result<Converted, TrainError> {
    let _checked = interrupt::Checked::begin();
    let out = &job.out;
    if std::fs::read_dir(out).is_ok_and(|mut d| d.next().is_some()) || out.is_file() {
        return Err(TrainError::Invalid(format!("{}: already exists; choose a new --out", out.display())));
    }
    let (images, labels) = data::read_idx(&job.images, Some(&job.labels), Default::default(), Take::All)?;
    let labels = labels.expect("labels were given");
    // Files keep their IDX index as their name, sampled or not.
    let keep = Take::from(job.sample)
        .indices(images.count, Some(&labels), &job.images)?
        .unwrap_or_else(|| (0..images.count).collect());
    let count = labels.iter().copied().max().map_or(0, |m| m as usize + 1);
    let classes: Vec<String> = match &job.class_names {
        Some(n) if n.len() != count => {
            return Err(TrainError::Invalid(format!(
                "--class-names gives {} names, but the labels in {} have {count} classes",
                n.len(),
                job.labels.display()
            )))
        }
        Some(n) => n.iter().map(|n| folder_name(n)).collect(),
        None => (0..count).map(|k| format!("{k:0w$}", w = (count - 1).to_string().len().max(2))).collect(),
    };
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(TrainError::io(&parent, "cannot create"))?;
    let name = out.file_name().ok_or_else(|| TrainError::Invalid(format!("{}: not a folder name", out.display())))?;
    let staging = parent.join(format!(".{}.{}{}", name.to_string_lossy(), std::process::id(), atomic::PARTIAL_SUFFIX));
    let result = write_pictures(&staging, &images, &labels, &keep, &classes);
    let result = result.and_then(|()| match interrupt::requested() {
        true => Err(TrainError::Cancelled),
        false => {
            if out.is_dir() {
                // An empty folder the user made: replaced by the complete one.
                std::fs::remove_dir(out).map_err(TrainError::io(out, "cannot replace"))?;
            }
            std::fs::rename(&staging, out).map_err(TrainError::io(out, "cannot write"))
        }
    });
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    result.map(|()| Converted { images: keep.len(), classes })
}

/// The images at `keep` as `dir/<class>/<index>.png` (the IDX index,
/// zero-padded so files sort in the IDX order), stopping at Ctrl-C.
fn write_pictures(
    dir: &Path,
    images: &idx::Images,
    labels: &[u8],
    keep: &[usize],
    classes: &[String],
) -> Result<(), TrainError> {
    for c in classes {
        let d = dir.join(c);
        std::fs::create_dir_all(&d).map_err(TrainError::io(&d, "cannot create"))?;
    }
    let digits = images.count.to_string().len();
    let (c, h, w) = (images.channels, images.rows, images.cols);
    let color = if c == 1 { image::ColorType::L8 } else { image::ColorType::Rgb8 };
    for &i in keep {
        if interrupt::requested() {
            return Err(TrainError::Cancelled);
        }
        let p = dir.join(&classes[labels[i] as usize]).join(format!("{i:0digits$}.png"));
        let px = idx::interleaved(images.image(i), c, h * w); // PNG stores [H, W, C]
        image::save_buffer(&p, &px, w as u32, h as u32, color)
            .map_err(|e| TrainError::Invalid(format!("{}: cannot write: {e}", p.display())))?;
    }
    Ok(())
}
