//! Loading IDX data onto the device once, the seeded train/validation split
//! and the per-epoch shuffled batches.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use infer::folder::{FolderOptions, ImageFolder};
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
    pub info: crate::run_dir::DatasetInfo,
}

/// Bytes training holds per decoded pixel value: the u8 pixels, the f32
/// tensor of all images and the f32 split into training and validation.
const BYTES_PER_VALUE: u64 = 1 + 4 + 4;

/// Memory the system can give now (`MemAvailable`), where /proc says.
fn available_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
}

/// `--limit N`: a seeded sample of N images, stratified by class wherever
/// the classes are known (an image folder's sub-folders, an IDX labels
/// file), so a limit never drops a class — whatever order the files are
/// in. Each class keeps its share of N (largest remainders first, at least
/// one image each); without labels (an autoencoder's IDX file) the sample is
/// uniform. The kept images stay in file order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    pub n: usize,
    pub seed: u64,
}

impl Sample {
    /// The sample `settings` ask for (`None`: every image).
    pub fn of(settings: &crate::config::TrainSettings) -> Option<Sample> {
        settings.limit.map(|n| Sample { n, seed: settings.seed })
    }

    /// Ascending indices of the kept images among `total` (`labels`: one
    /// class per image, for stratification). Fails when N is below the
    /// number of classes: some class would be dropped.
    pub fn indices(&self, total: usize, labels: Option<&[u8]>) -> Result<Vec<usize>, String> {
        if self.n >= total {
            return Ok((0..total).collect());
        }
        let mut rng = Rng::new(self.seed ^ 0x5A3D_1E5E);
        let Some(labels) = labels else {
            let mut keep = rng.permutation(total)[..self.n].to_vec();
            keep.sort_unstable();
            return Ok(keep);
        };
        let mut members: Vec<Vec<usize>> = Vec::new();
        for (i, &l) in labels.iter().enumerate() {
            if members.len() <= l as usize {
                members.resize(l as usize + 1, Vec::new());
            }
            members[l as usize].push(i);
        }
        let present: Vec<usize> = (0..members.len()).filter(|&k| !members[k].is_empty()).collect();
        if self.n < present.len() {
            return Err(format!(
                "--limit {} is below the {} classes: a sample that small would drop classes",
                self.n,
                present.len()
            ));
        }
        // Quotas proportional to class sizes, largest remainders first,
        // then at least one image for every class (taken from the largest).
        let mut quota = vec![0usize; members.len()];
        let mut rest: Vec<(usize, usize)> = Vec::new();
        for &k in &present {
            let exact = self.n * members[k].len();
            quota[k] = exact / total;
            rest.push((exact % total, k));
        }
        rest.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let short = self.n - quota.iter().sum::<usize>();
        for &(_, k) in rest.iter().take(short) {
            quota[k] += 1;
        }
        for &k in &present {
            if quota[k] == 0 {
                let big = (0..quota.len()).max_by_key(|&j| (quota[j], std::cmp::Reverse(j))).expect("classes");
                quota[big] -= 1;
                quota[k] = 1;
            }
        }
        let mut keep = Vec::with_capacity(self.n);
        for &k in &present {
            let perm = rng.permutation(members[k].len());
            keep.extend(perm[..quota[k]].iter().map(|&j| members[k][j]));
        }
        keep.sort_unstable();
        Ok(keep)
    }
}

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
    /// Ascending indices among `total` images.
    fn indices(self, total: usize, labels: Option<&[u8]>, path: &Path) -> Result<Option<Vec<usize>>, TrainError> {
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
        if let Some(have) = available_memory().filter(|&have| need > have) {
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
        let mut info = crate::run_dir::DatasetInfo::of_folder(&f, sha256)?;
        info.sample = sample_of(take);
        return Ok(Dataset { images: pictures, labels: Some(f.labels.clone()), classes: Some(f.classes), info });
    }
    if classifier && labels.is_none() {
        return Err(TrainError::Invalid(format!("{}: an IDX image file needs --labels", images.display())));
    }
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
    let mut info = crate::run_dir::DatasetInfo::of(images, labels, imgs.count)?;
    info.sample = sample_of(take);
    Ok(Dataset { images: imgs, labels: label_values, classes: None, info })
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
        return Err(infer::folder::FolderError::Channels(channels).into());
    }
    if images.channels == channels {
        return Ok(images);
    }
    let (h, w) = (images.rows, images.cols);
    let mut pixels = Vec::with_capacity(images.count * channels * h * w);
    for i in 0..images.count {
        let p = infer::preprocess::Picture::from_planar(images.image(i), images.channels, h, w).with_channels(channels);
        pixels.extend(p.into_planar());
    }
    Ok(Images { count: images.count, channels, rows: h, cols: w, pixels })
}

/// The run's own data set again, read exactly as for training — the same
/// `--limit` sample, converted to the model's `channels` — for export
/// checks and int8 calibration; `first`: only that many of them.
pub fn load_run_dataset(
    d: &crate::run_dir::DatasetInfo,
    channels: usize,
    first: Option<usize>,
) -> Result<(Images, Option<Vec<u8>>), TrainError> {
    let folder = FolderOptions { channels: Some(channels), size: d.folder.as_ref().map(|f| (f.height, f.width)) };
    let take = match d.sample {
        Some(s) => Take::Sample(s),
        // A run from before samples were recorded: its first `count` images.
        None => Take::First(d.count),
    };
    // Only an image folder's selection is cut before decoding: IDX files
    // are read whole anyway.
    let set = match (&d.folder, first) {
        (Some(rec), Some(n)) => {
            let mut f = ImageFolder::scan(&d.images, rec.options())?;
            if let Some(keep) = take.indices(f.files.len(), Some(&f.labels), &d.images)? {
                f.retain(&keep);
            }
            f.truncate(n);
            let labels = f.labels.clone();
            return Ok((f.load()?.0, Some(labels)));
        }
        _ => load(&d.images, d.labels.as_deref(), folder, take, false)?,
    };
    let (mut images, mut labels) = (set.images, set.labels);
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
        channels: images.channels,
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
