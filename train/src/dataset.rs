//! The data set a run was trained on, as `config.json` records it: where
//! the images (and labels) were, their SHA-256, how many were used (and
//! `--limit`'s sample), and how an image folder was read — enough to read
//! exactly the same images again for export and calibration, and to refuse
//! them when they changed.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use ae_core::folder::{FolderOptions, ImageFolder};

use crate::digest::sha256_file;
use crate::error::TrainError;
use crate::sample::Sample;

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
    pub sample: Option<Sample>,
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
