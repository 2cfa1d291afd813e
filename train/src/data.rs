//! Loading IDX data onto the device once, the seeded train/validation split
//! and the per-epoch shuffled batches.

use std::path::{Path, PathBuf};

use tch::{Device, Kind, Tensor};

use infer::idx::{self, Images};

use crate::error::TrainError;

/// A small deterministic generator (SplitMix64): the split and the shuffles
/// depend only on the seed, not on libtorch's generator state, which makes
/// `--resume` reproduce an uninterrupted run.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniformly shuffled 0..n (Fisher–Yates).
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut v: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            let j = (self.next_u64() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
        v
    }
}

/// Images (and labels) on the device, split.
#[derive(Debug)]
pub struct Data {
    pub train_x: Tensor,         // [N_train, 1, H, W] f32 in [0, 1]
    pub train_y: Option<Tensor>, // [N_train] i64
    pub val_x: Tensor,
    pub val_y: Option<Tensor>,
    pub height: usize,
    pub width: usize,
}

impl Data {
    pub fn train_len(&self) -> usize {
        self.train_x.size()[0] as usize
    }
}

/// Converts u8 images to a [N, 1, H, W] f32 tensor in [0, 1] on `device`.
pub fn images_tensor(images: &Images, device: Device) -> Tensor {
    Tensor::from_slice(&images.pixels).to_device(device).to_kind(Kind::Float).g_div_scalar(255.0).reshape([
        images.count as i64,
        1,
        images.rows as i64,
        images.cols as i64,
    ])
}

pub fn labels_tensor(labels: &[u8], device: Device) -> Tensor {
    Tensor::from_slice(labels).to_kind(Kind::Int64).to_device(device)
}

/// Loads images, keeping the first `limit`.
pub fn load_images(path: &Path, limit: Option<usize>) -> Result<Images, TrainError> {
    let mut images = idx::read_images(path)?;
    if let Some(n) = limit {
        images.truncate(n);
    }
    Ok(images)
}

/// Loads labels and checks they pair with `count` images.
pub fn load_labels(path: &Path, images_path: &Path, count: usize, limit: Option<usize>) -> Result<Vec<u8>, TrainError> {
    let mut labels = idx::read_labels(path)?;
    if let Some(n) = limit {
        labels.truncate(n);
    }
    if labels.len() != count {
        return Err(TrainError::Invalid(format!(
            "{}: {} labels, but {} has {} images",
            path.display(),
            labels.len(),
            images_path.display(),
            count
        )));
    }
    Ok(labels)
}

/// Splits seeded: a fraction `val_split` of the images goes to validation.
pub fn split(
    images: &Images,
    labels: Option<&[u8]>,
    val_split: f64,
    seed: u64,
    device: Device,
) -> Result<Data, TrainError> {
    if !(val_split > 0.0 && val_split < 1.0) {
        return Err(TrainError::Invalid(format!("--val-split must be strictly between 0 and 1, got {val_split}")));
    }
    let n = images.count;
    let n_val = ((n as f64) * val_split).round() as usize;
    if n_val == 0 || n_val >= n {
        return Err(TrainError::Invalid(format!(
            "{n} images cannot be split {val_split} for validation: both parts need at least one image"
        )));
    }
    let perm = Rng::new(seed).permutation(n);
    let (val_idx, train_idx) = perm.split_at(n_val);
    let all = images_tensor(images, device);
    let index = |ix: &[usize]| Tensor::from_slice(&ix.iter().map(|&i| i as i64).collect::<Vec<_>>()).to_device(device);
    let (ti, vi) = (index(train_idx), index(val_idx));
    let labels = labels.map(|l| labels_tensor(l, device));
    Ok(Data {
        train_x: all.index_select(0, &ti),
        train_y: labels.as_ref().map(|l| l.index_select(0, &ti)),
        val_x: all.index_select(0, &vi),
        val_y: labels.as_ref().map(|l| l.index_select(0, &vi)),
        height: images.rows,
        width: images.cols,
    })
}

/// The batches of one epoch: index tensors of a shuffle seeded by
/// (seed, epoch).
pub fn epoch_batches(n: usize, batch_size: usize, seed: u64, epoch: usize, device: Device) -> Vec<Tensor> {
    let perm = Rng::new(seed.wrapping_mul(1_000_003).wrapping_add(epoch as u64)).permutation(n);
    perm.chunks(batch_size)
        .map(|c| Tensor::from_slice(&c.iter().map(|&i| i as i64).collect::<Vec<_>>()).to_device(device))
        .collect()
}

/// The test set that goes with a training file: `train-images…` →
/// `t10k-images…` beside it (MNIST's and Fashion-MNIST's naming, plain or
/// .gz), if that file exists.
pub fn companion_test_file(train: &Path) -> Option<PathBuf> {
    let name = train.file_name()?.to_str()?;
    let test = name.replacen("train-", "t10k-", 1);
    let p = train.with_file_name(test);
    (name.starts_with("train-") && p.is_file()).then_some(p)
}

/// The test pair to report on: explicit paths (either one "none" skips),
/// else the companions of the training files, if both exist.
pub fn test_pair(
    images: &Path,
    labels: &Path,
    test_images: Option<&Path>,
    test_labels: Option<&Path>,
) -> Result<Option<(PathBuf, PathBuf)>, TrainError> {
    let none = |p: Option<&Path>| p.is_some_and(|p| p.as_os_str() == "none");
    if none(test_images) || none(test_labels) {
        return Ok(None);
    }
    match (test_images, test_labels) {
        (None, None) => Ok(companion_test_file(images).zip(companion_test_file(labels))),
        (Some(i), Some(l)) => Ok(Some((i.to_path_buf(), l.to_path_buf()))),
        _ => Err(TrainError::Invalid("--test-images and --test-labels go together".into())),
    }
}
