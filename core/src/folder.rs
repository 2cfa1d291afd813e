//! Image-folder data sets: `DIR/<class>/*.png|jpg|jpeg`, the layout
//! torchvision's `ImageFolder` and Keras' `image_dataset_from_directory`
//! read. Sorted class names are the classes; pictures are read in sorted
//! order. [`ImageFolder::scan`] reads every picture's header (in parallel)
//! and settles channels and size before a pixel is decoded, so a bad set
//! is refused up front; [`ImageFolder::load`] decodes in parallel straight
//! into one u8 buffer `[N, C, H, W]`.

use std::path::{Path, PathBuf};

use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::idx::Images;
use crate::picture::is_picture;
use crate::preprocess::{Fit, Invert, Preprocess};

/// Why an image folder cannot be used; each names the path and the problem.
#[derive(Debug, thiserror::Error)]
pub enum FolderError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: no class folders (expected DIR/<class>/*.png|jpg|jpeg)", path.display())]
    NoClasses { path: PathBuf },
    #[error("{}: class folder has no PNG or JPEG pictures", path.display())]
    EmptyClass { path: PathBuf },
    #[error("{}: {n} class folder{}, a classifier needs at least two", path.display(), if *n == 1 { "" } else { "s" })]
    TooFewClasses { path: PathBuf, n: usize },
    #[error("{}: {msg}", path.display())]
    Picture { path: PathBuf, msg: String },
    /// Several unreadable pictures, each named on its own line.
    #[error("{}: {} pictures cannot be read:{}", path.display(), bad.len(), bad.iter().map(|b| format!("\n  {b}")).collect::<String>())]
    Pictures { path: PathBuf, bad: Vec<FolderError> },
    #[error("{}: pictures have different sizes ({a} is {ah}×{aw}, {b} is {bh}×{bw}); pass --size HxW to resize them", path.display())]
    MixedSizes { path: PathBuf, a: String, ah: u32, aw: u32, b: String, bh: u32, bw: u32 },
    #[error("--channels must be 1 or 3, got {0}")]
    Channels(usize),
    #[error("{}: classes {ours:?} differ from the training set's {theirs:?}", path.display())]
    ClassesDiffer { path: PathBuf, ours: Vec<String>, theirs: Vec<String> },
}

/// What the caller asks of the pictures (`None`: from the data).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FolderOptions {
    /// 1 or 3; by default 1 when every picture is grayscale, else 3.
    pub channels: Option<usize>,
    /// `(height, width)`; by default the pictures' common size.
    pub size: Option<(usize, usize)>,
}

/// A scanned image folder: files, labels, classes, and the settled shape.
#[derive(Debug, Clone)]
pub struct ImageFolder {
    pub root: PathBuf,
    pub classes: Vec<String>,
    /// Every picture, class by class, each class's sorted by name.
    pub files: Vec<PathBuf>,
    /// The class index of each file.
    pub labels: Vec<u8>,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    /// Whether pictures are resized (sizes differ from `height × width`).
    pub resized: bool,
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, FolderError> {
    let io = |source| FolderError::Io { path: dir.to_path_buf(), source };
    let mut v: Vec<PathBuf> =
        std::fs::read_dir(dir).map_err(io)?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>().map_err(io)?;
    v.sort();
    Ok(v)
}

impl ImageFolder {
    /// Lists `root`'s classes and pictures and reads every header: the
    /// channels (grayscale or colour) and sizes. Fails on an empty class,
    /// an unreadable picture, or mixed sizes without `size`.
    pub fn scan(root: &Path, opts: FolderOptions) -> Result<ImageFolder, FolderError> {
        if let Some(c) = opts.channels.filter(|c| !matches!(c, 1 | 3)) {
            return Err(FolderError::Channels(c));
        }
        let class_dirs: Vec<PathBuf> = sorted_entries(root)?.into_iter().filter(|p| p.is_dir()).collect();
        if class_dirs.is_empty() {
            return Err(FolderError::NoClasses { path: root.to_path_buf() });
        }
        if class_dirs.len() > 256 {
            return Err(FolderError::Picture {
                path: root.to_path_buf(),
                msg: format!("{} class folders, at most 256 are supported (u8 labels)", class_dirs.len()),
            });
        }
        let mut classes = Vec::new();
        let mut files = Vec::new();
        let mut labels = Vec::new();
        for (k, dir) in class_dirs.iter().enumerate() {
            let pictures: Vec<PathBuf> =
                sorted_entries(dir)?.into_iter().filter(|p| p.is_file() && is_picture(p)).collect();
            if pictures.is_empty() {
                return Err(FolderError::EmptyClass { path: dir.clone() });
            }
            classes.push(dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
            labels.extend(std::iter::repeat_n(k as u8, pictures.len()));
            files.extend(pictures);
        }
        // Headers only: size and colour of every picture, in parallel.
        let headers: Vec<Result<(u32, u32, bool), FolderError>> = files.par_iter().map(|f| header(f)).collect();
        let mut first: Option<(usize, u32, u32)> = None;
        let mut colour = false;
        let mut mixed = None;
        let mut bad: Vec<FolderError> = Vec::new();
        let mut good = Vec::with_capacity(headers.len());
        for (i, h) in headers.into_iter().enumerate() {
            match h {
                Ok(h) => good.push((i, h)),
                Err(e) => bad.push(e),
            }
        }
        match bad.len() {
            0 => {}
            1 => return Err(bad.remove(0)),
            _ => return Err(FolderError::Pictures { path: root.to_path_buf(), bad }),
        }
        for (i, (w, h, c)) in good {
            colour |= c;
            match first {
                None => first = Some((i, w, h)),
                Some((j, fw, fh)) if (fw, fh) != (w, h) && mixed.is_none() => mixed = Some((j, fw, fh, i, w, h)),
                _ => {}
            }
        }
        let (_, fw, fh) = first.expect("at least one picture");
        let (height, width, resized) = match (opts.size, mixed) {
            (Some((h, w)), m) => (h, w, m.is_some() || (h, w) != (fh as usize, fw as usize)),
            (None, None) => (fh as usize, fw as usize, false),
            (None, Some((j, aw, ah, i, bw, bh))) => {
                let name = |k: usize| files[k].strip_prefix(root).unwrap_or(&files[k]).display().to_string();
                return Err(FolderError::MixedSizes {
                    path: root.to_path_buf(),
                    a: name(j),
                    ah,
                    aw,
                    b: name(i),
                    bh,
                    bw,
                });
            }
        };
        let channels = opts.channels.unwrap_or(if colour { 3 } else { 1 });
        Ok(ImageFolder { root: root.to_path_buf(), classes, files, labels, channels, height, width, resized })
    }

    /// Refuses a classifier's data set of fewer than two classes.
    pub fn require_classes(&self) -> Result<(), FolderError> {
        if self.classes.len() < 2 {
            return Err(FolderError::TooFewClasses { path: self.root.clone(), n: self.classes.len() });
        }
        Ok(())
    }

    /// Bytes the decoded pictures take: `N·C·H·W`.
    pub fn decoded_bytes(&self) -> u64 {
        self.files.len() as u64 * (self.channels * self.height * self.width) as u64
    }

    /// Keeps the first `n` pictures (in the sorted order).
    pub fn truncate(&mut self, n: usize) {
        self.files.truncate(n);
        self.labels.truncate(n);
    }

    /// Keeps the pictures at `indices` (ascending), with their labels.
    pub fn retain(&mut self, indices: &[usize]) {
        self.files = indices.iter().map(|&i| self.files[i].clone()).collect();
        self.labels = indices.iter().map(|&i| self.labels[i]).collect();
    }

    /// Decodes every picture (in parallel) into `[N, C, H, W]` u8 at the
    /// settled size (a triangle-filter resize where sizes differ), colour
    /// converted to the settled channels, transparency laid on white; and
    /// hashes the same bytes (see [`ImageFolder::sha256`]), so each file is
    /// read once.
    pub fn load(&self) -> Result<(Images, String), FolderError> {
        let (c, h, w) = (self.channels, self.height, self.width);
        let per = c * h * w;
        let mut pixels = vec![0u8; self.files.len() * per];
        let mut digests = vec![[0u8; 32]; self.files.len()];
        let fit = Preprocess { fit: Fit::Resize, invert: Invert::Never };
        pixels.par_chunks_mut(per).zip(digests.par_iter_mut()).zip(self.files.par_iter()).try_for_each(
            |((out, digest), f)| {
                let bytes = read(f)?;
                *digest = Sha256::digest(&bytes).into();
                let px = crate::picture::decode_picture(f, &bytes, [c, h, w], &fit)
                    .map_err(|e| FolderError::Picture { path: e.path, msg: e.msg })?;
                out.copy_from_slice(&px);
                Ok::<(), FolderError>(())
            },
        )?;
        let images = Images { count: self.files.len(), channels: c, rows: h, cols: w, pixels };
        Ok((images, self.combine(&digests)))
    }

    /// SHA-256 over every picture's path (relative to the root) and bytes, in
    /// order: the data set's identity for provenance.
    pub fn sha256(&self) -> Result<String, FolderError> {
        let digests: Vec<[u8; 32]> =
            self.files.par_iter().map(|f| Ok(Sha256::digest(read(f)?).into())).collect::<Result<_, FolderError>>()?;
        Ok(self.combine(&digests))
    }

    /// One digest from each file's relative path and content digest.
    fn combine(&self, digests: &[[u8; 32]]) -> String {
        let mut all = Sha256::new();
        for (f, d) in self.files.iter().zip(digests) {
            all.update(f.strip_prefix(&self.root).unwrap_or(f).to_string_lossy().as_bytes());
            all.update([0]);
            all.update(d);
        }
        format!("{:x}", all.finalize())
    }
}

fn read(f: &Path) -> Result<Vec<u8>, FolderError> {
    std::fs::read(f).map_err(|source| FolderError::Io { path: f.to_path_buf(), source })
}

/// A picture's width, height and whether it has colour, from its header.
fn header(path: &Path) -> Result<(u32, u32, bool), FolderError> {
    use image::ImageDecoder;
    use std::io::BufRead;
    let bad = |msg: String| FolderError::Picture { path: path.to_path_buf(), msg };
    let file = std::fs::File::open(path).map_err(|source| FolderError::Io { path: path.to_path_buf(), source })?;
    let mut r = std::io::BufReader::new(file);
    // The format from the first bytes, left in the buffer for the decoder.
    let head = r.fill_buf().map_err(|source| FolderError::Io { path: path.to_path_buf(), source })?;
    let (dims, colour) = match image::guess_format(head) {
        Ok(image::ImageFormat::Png) => {
            let d =
                image::codecs::png::PngDecoder::new(r).map_err(|e| bad(format!("not a readable PNG image: {e}")))?;
            (d.dimensions(), has_colour(d.color_type()))
        }
        Ok(image::ImageFormat::Jpeg) => {
            let d =
                image::codecs::jpeg::JpegDecoder::new(r).map_err(|e| bad(format!("not a readable JPEG image: {e}")))?;
            (d.dimensions(), has_colour(d.color_type()))
        }
        _ => return Err(bad("not a PNG or JPEG image: its bytes match neither format".into())),
    };
    if dims.0 as u64 * dims.1 as u64 > crate::picture::MAX_PICTURE_PIXELS {
        return Err(bad(format!("image claims {}×{} pixels, more than this tool accepts", dims.0, dims.1)));
    }
    Ok((dims.0, dims.1, colour))
}

fn has_colour(c: image::ColorType) -> bool {
    !matches!(c, image::ColorType::L8 | image::ColorType::La8 | image::ColorType::L16 | image::ColorType::La16)
}
