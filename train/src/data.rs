//! Loading IDX data onto the device once, the seeded train/validation split
//! and the per-epoch shuffled batches.

use std::path::{Path, PathBuf};

use tch::{Device, Kind, Tensor};

use ae_core::folder::{FolderOptions, ImageFolder};
use ae_core::idx::{self, Images};

use crate::dataset::DatasetInfo;
use crate::error::TrainError;
pub use crate::rng::Rng;
pub use crate::sample::Sample;

/// Images (and labels) on the device, split.
#[derive(Debug)]
pub struct Data {
    pub train_x: Tensor,         // [N_train, C, H, W] f32 in [0, 1]
    pub train_y: Option<Tensor>, // [N_train] i64
    pub val_x: Tensor,
    pub val_y: Option<Tensor>,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
}

impl Data {
    pub fn train_len(&self) -> usize {
        self.train_x.size()[0] as usize
    }
}

/// Converts u8 images to a [N, C, H, W] f32 tensor in [0, 1] on `device`.
pub fn images_tensor(images: &Images, device: Device) -> Tensor {
    Tensor::from_slice(&images.pixels).to_device(device).to_kind(Kind::Float).g_div_scalar(255.0).reshape([
        images.count as i64,
        images.channels as i64,
        images.rows as i64,
        images.cols as i64,
    ])
}

/// A training set as read: images, and for a classifier its labels and (an
/// image folder's) class names.
#[derive(Debug)]
pub struct Dataset {
    pub images: Images,
    pub labels: Option<Vec<u8>>,
    /// An image folder's classes (its sub-folders, sorted).
    pub classes: Option<Vec<String>>,
    pub info: DatasetInfo,
}

/// Bytes training holds per decoded pixel value: the u8 pixels, the f32
/// tensor of all images and the f32 split into training and validation.
const BYTES_PER_VALUE: u64 = 1 + 4 + 4;

/// Which images of a set to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    All,
    /// The first N in file order (export's parity check on `--images`).
    First(usize),
    /// `--limit`'s sample.
    Sample(Sample),
}

impl From<Option<Sample>> for Take {
    fn from(s: Option<Sample>) -> Take {
        s.map_or(Take::All, Take::Sample)
    }
}

impl Take {
    /// Ascending indices among `total` images (`None`: all of them); a
    /// sample that would drop a class is an error naming `path`.
    pub fn indices(self, total: usize, labels: Option<&[u8]>, path: &Path) -> Result<Option<Vec<usize>>, TrainError> {
        match self {
            Take::All => Ok(None),
            Take::First(n) => Ok(Some((0..n.min(total)).collect())),
            Take::Sample(s) => s
                .indices(total, labels)
                .map(Some)
                .map_err(|msg| TrainError::Invalid(format!("{}: {msg}", path.display()))),
        }
    }
}

/// Reads a training set: an IDX file (with `labels` for a classifier), or an
/// image folder `DIR/<class>/*.png|jpg` (labels from the folders; a labels
/// file is refused). `folder` settles channels and size (IDX: channels are
/// converted; the size must match). `take` selects images (`--limit`'s
/// sample) after the class check. `classifier` requires labels.
pub fn load(
    images: &Path,
    labels: Option<&Path>,
    folder: FolderOptions,
    take: Take,
    classifier: bool,
) -> Result<Dataset, TrainError> {
    if images.is_dir() {
        if let Some(l) = labels {
            return Err(TrainError::Invalid(format!(
                "{}: an image folder's labels are its class folders; {} is not needed (drop --labels)",
                images.display(),
                l.display()
            )));
        }
        let mut f = ImageFolder::scan(images, folder)?;
        if classifier {
            f.require_classes()?;
        }
        if let Some(keep) = take.indices(f.files.len(), Some(&f.labels), images)? {
            f.retain(&keep);
        }
        let need = f.decoded_bytes() * BYTES_PER_VALUE;
        if let Some(have) = ae_core::machine::available_memory().filter(|&have| need > have) {
            let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
            return Err(TrainError::Invalid(format!(
                "{}: {} pictures of {}×{}×{} need {:.1} GiB for training (u8 pixels and float32 copies), {:.1} GiB is available; use --limit or a smaller --size",
                images.display(),
                f.files.len(),
                f.channels,
                f.height,
                f.width,
                gib(need),
                gib(have)
            )));
        }
        let (pictures, sha256) = f.load()?;
        let mut info = DatasetInfo::of_folder(&f, sha256)?;
        info.sample = sample_of(take);
        return Ok(Dataset { images: pictures, labels: Some(f.labels.clone()), classes: Some(f.classes), info });
    }
    if classifier && labels.is_none() {
        return Err(TrainError::Invalid(format!("{}: an IDX image file needs --labels", images.display())));
    }
    let (imgs, label_values) = read_idx(images, labels, folder, take)?;
    let mut info = DatasetInfo::of(images, labels, imgs.count)?;
    info.sample = sample_of(take);
    Ok(Dataset { images: imgs, labels: label_values, classes: None, info })
}

/// An IDX set's selected images (converted to `folder.channels`) and
/// labels, without recording where they came from (no hashing).
pub fn read_idx(
    images: &Path,
    labels: Option<&Path>,
    folder: FolderOptions,
    take: Take,
) -> Result<(Images, Option<Vec<u8>>), TrainError> {
    let mut imgs = idx::read_images(images)?;
    let mut label_values = labels.map(|l| load_labels(l, images, imgs.count)).transpose()?;
    if let Some(keep) = take.indices(imgs.count, label_values.as_deref(), images)? {
        imgs = imgs.select(&keep);
        label_values = label_values.map(|l| keep.iter().map(|&i| l[i]).collect());
    }
    if let Some(c) = folder.channels {
        imgs = with_channels(imgs, c)?;
    }
    if let Some((h, w)) = folder.size.filter(|&s| s != (imgs.rows, imgs.cols)) {
        return Err(TrainError::Invalid(format!(
            "{}: IDX images are {}×{}; --size {h}x{w} resizes the pictures of image folders only",
            images.display(),
            imgs.rows,
            imgs.cols
        )));
    }
    Ok((imgs, label_values))
}

fn sample_of(take: Take) -> Option<Sample> {
    match take {
        Take::Sample(s) => Some(s),
        _ => None,
    }
}

/// The images in `channels` (1: `image`'s luma; 3: gray repeated).
pub fn with_channels(images: Images, channels: usize) -> Result<Images, TrainError> {
    if !matches!(channels, 1 | 3) {
        return Err(ae_core::folder::FolderError::Channels(channels).into());
    }
    if images.channels == channels {
        return Ok(images);
    }
    let (h, w) = (images.rows, images.cols);
    let mut pixels = Vec::with_capacity(images.count * channels * h * w);
    for i in 0..images.count {
        let p =
            ae_core::preprocess::Picture::from_planar(images.image(i), images.channels, h, w).with_channels(channels);
        pixels.extend(p.into_planar());
    }
    Ok(Images { count: images.count, channels, rows: h, cols: w, pixels })
}

/// The run's own data set again, read exactly as for training — the same
/// `--limit` sample, converted to the model's `channels` — for export
/// checks and int8 calibration; `first`: only that many of them.
pub fn load_run_dataset(
    d: &DatasetInfo,
    channels: usize,
    first: Option<usize>,
) -> Result<(Images, Option<Vec<u8>>), TrainError> {
    let folder = FolderOptions { channels: Some(channels), size: d.folder.as_ref().map(|f| (f.height, f.width)) };
    let take = match d.sample {
        Some(s) => Take::Sample(s),
        // A run from before samples were recorded: its first `count` images.
        None => Take::First(d.count),
    };
    // Nothing is hashed again here (the caller has checked the data): an
    // image folder's selection is cut before decoding; IDX files are read
    // whole anyway.
    let (mut images, mut labels) = match &d.folder {
        Some(rec) => {
            let mut f = ImageFolder::scan(&d.images, rec.options())?;
            if let Some(keep) = take.indices(f.files.len(), Some(&f.labels), &d.images)? {
                f.retain(&keep);
            }
            f.truncate(first.unwrap_or(usize::MAX));
            (f.load()?.0, Some(f.labels))
        }
        None => read_idx(&d.images, d.labels.as_deref(), folder, take)?,
    };
    if let Some(n) = first {
        images.truncate(n);
        if let Some(l) = labels.as_mut() {
            l.truncate(n);
        }
    }
    if images.count != d.count.min(first.unwrap_or(usize::MAX)) {
        return Err(TrainError::Invalid(format!(
            "{}: holds {} images now, the run trained on {}",
            d.images.display(),
            images.count,
            d.count
        )));
    }
    Ok((images, labels))
}

pub fn labels_tensor(labels: &[u8], device: Device) -> Tensor {
    Tensor::from_slice(labels).to_kind(Kind::Int64).to_device(device)
}

/// Loads labels and checks they pair with `count` images.
pub fn load_labels(path: &Path, images_path: &Path, count: usize) -> Result<Vec<u8>, TrainError> {
    let labels = idx::read_labels(path)?;
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
    let (train_idx, val_idx) = &split_indices(images.count, val_split, seed)?;
    let all = images_tensor(images, device);
    let index = |ix: &[usize]| Tensor::from_slice(&ix.iter().map(|&i| i as i64).collect::<Vec<_>>()).to_device(device);
    let (ti, vi) = (index(train_idx), index(val_idx));
    let labels = labels.map(|l| labels_tensor(l, device));
    Ok(Data {
        train_x: all.index_select(0, &ti),
        train_y: labels.as_ref().map(|l| l.index_select(0, &ti)),
        val_x: all.index_select(0, &vi),
        val_y: labels.as_ref().map(|l| l.index_select(0, &vi)),
        channels: images.channels,
        height: images.rows,
        width: images.cols,
    })
}

/// The seeded split as indices, (training, validation): what [`split`]
/// puts on the device, and what int8 calibration draws from on the host.
pub fn split_indices(n: usize, val_split: f64, seed: u64) -> Result<(Vec<usize>, Vec<usize>), TrainError> {
    if !(val_split > 0.0 && val_split < 1.0) {
        return Err(TrainError::Invalid(format!("--val-split must be strictly between 0 and 1, got {val_split}")));
    }
    let n_val = ((n as f64) * val_split).round() as usize;
    if n_val == 0 || n_val >= n {
        return Err(TrainError::Invalid(format!(
            "{n} images cannot be split {val_split} for validation: both parts need at least one image"
        )));
    }
    let mut perm = Rng::new(seed).permutation(n);
    let train = perm.split_off(n_val);
    Ok((train, perm))
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
