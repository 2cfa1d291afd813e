//! Image inputs for inference: one IDX file (plain or gzip), streamed batch
//! by batch so memory does not grow with the number of images; or picture
//! files (PNG/JPEG) and directories of them, decoded up front in parallel —
//! so every unreadable picture is named before anything runs — and held at
//! the model's size (784 bytes per 28×28 picture).

use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::error::InferError;
use ae_core::idx::ImageStream;
pub use ae_core::preprocess::{Fit, Invert, Picture, Preprocess};

enum Kind {
    Idx(ImageStream),
    /// Decoded pictures, `[files.len(), C, H, W]`.
    Files {
        files: Vec<PathBuf>,
        pixels: Vec<u8>,
    },
}

/// A sequence of images of the model's channels and size.
pub struct ImageSource {
    kind: Kind,
    path: PathBuf,
    count: usize,
    next: usize,
    channels: usize,
    height: usize,
    width: usize,
    pre: Preprocess,
    skipped: Vec<PictureError>,
    /// For an image folder (`DIR/<class>/*.png`): each kept picture's class folder.
    classes: Option<Vec<String>>,
    listing: Listing,
}

impl std::fmt::Debug for ImageSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageSource").field("path", &self.path).field("count", &self.count).finish()
    }
}

use ae_core::picture::{is_picture, load_picture, PictureError};

/// Whether a directory's sub-folders name its pictures' classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[derive(strum::Display, strum::EnumString, strum::IntoStaticStr, strum::VariantArray, strum::EnumMessage)]
#[strum(serialize_all = "lowercase")]
pub enum FolderLabels {
    /// Labelled when every sub-folder is one of the model's classes (and no
    /// picture lies beside them); otherwise unlabelled pictures, read
    /// recursively.
    #[default]
    Auto,
    /// Every sub-folder must be one of the model's classes.
    Always,
    /// Unlabelled pictures, read recursively, whatever the folders are called.
    Never,
}

/// How pictures are read and fitted.
#[derive(Debug, Clone, Default)]
pub struct InputOptions {
    pub pre: Preprocess,
    /// Leave out unreadable pictures (listed) instead of failing.
    pub skip_bad: bool,
    pub folder_labels: FolderLabels,
    /// The model's class names ([`FolderLabels::Auto`] compares sub-folders with them).
    pub classes: Vec<String>,
}

/// How the pictures of the inputs were found, for the report's first line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    /// Files as given; directories' own pictures by name.
    Flat,
    /// Some directory had sub-folders that are not all class names: every
    /// picture below it, by path.
    Recursive,
    /// One directory of class folders: each picture labelled by its folder.
    Labelled,
}

/// A directory's pictures and sub-folders, each sorted by name.
fn entries(dir: &Path) -> Result<(Vec<PathBuf>, Vec<PathBuf>), InferError> {
    let io = |e: std::io::Error| InferError::Input { path: dir.to_path_buf(), msg: e.to_string() };
    let mut pictures = Vec::new();
    let mut folders = Vec::new();
    for e in std::fs::read_dir(dir).map_err(io)? {
        let p = e.map_err(io)?.path();
        if p.is_dir() {
            folders.push(p);
        } else if p.is_file() && is_picture(&p) {
            pictures.push(p);
        }
    }
    pictures.sort();
    folders.sort();
    Ok((pictures, folders))
}

/// Every picture below `dir`, sorted by path (depth first).
fn pictures_below(dir: &Path) -> Result<Vec<PathBuf>, InferError> {
    let mut found = Vec::new();
    for e in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let e = e.map_err(|e| InferError::Input {
            path: e.path().unwrap_or(dir).to_path_buf(),
            msg: e.io_error().map_or_else(|| e.to_string(), |io| io.to_string()),
        })?;
        if e.file_type().is_file() && is_picture(e.path()) {
            found.push(e.into_path());
        }
    }
    Ok(found)
}

fn folder_name(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

impl ImageSource {
    /// Opens `paths` for a model taking `[channels, height, width]` images
    /// (pictures are converted to its channels): one IDX file, or any mix of
    /// picture files and directories. A directory's pictures come in
    /// file-name order; one whose sub-folders are all class names of the
    /// model labels its pictures by them (see [`FolderLabels`]); any other
    /// directory with sub-folders is read recursively, by path. An
    /// unreadable picture is an error naming every one of them, unless
    /// `skip_bad` is set; then they are left out and listed by
    /// [`ImageSource::skipped`].
    pub fn open(
        paths: &[PathBuf],
        [channels, height, width]: [usize; 3],
        opts: &InputOptions,
    ) -> Result<ImageSource, InferError> {
        let pre = opts.pre;
        let first = paths.first().ok_or_else(|| InferError::Usage("no --images given".into()))?;
        if paths.len() == 1 && !first.is_dir() && !is_picture(first) {
            return ImageSource::open_idx(first, [channels, height, width], pre);
        }
        let mut files = Vec::new();
        let mut classes: Option<Vec<String>> = None;
        let mut listing = Listing::Flat;
        for path in paths {
            let input = |msg: String| InferError::Input { path: path.to_path_buf(), msg };
            if path.is_dir() {
                let before = files.len();
                let (pictures, folders) = entries(path)?;
                let all_classes = !folders.is_empty()
                    && pictures.is_empty()
                    && folders.iter().all(|f| opts.classes.contains(&folder_name(f)));
                let labelled = paths.len() == 1
                    && !folders.is_empty()
                    && match opts.folder_labels {
                        FolderLabels::Auto => all_classes,
                        FolderLabels::Always => true,
                        FolderLabels::Never => false,
                    };
                if labelled {
                    // DIR/<class>/*.png: each picture's class from its folder.
                    if let Some(bad) = folders.iter().find(|f| !opts.classes.contains(&folder_name(f))) {
                        return Err(input(format!(
                            "class folder {:?} is not one of the model's classes {:?} (--folder-labels always)",
                            folder_name(bad),
                            opts.classes
                        )));
                    }
                    let mut names = Vec::new();
                    for f in &folders {
                        let (found, _) = entries(f)?;
                        names.extend(std::iter::repeat_n(folder_name(f), found.len()));
                        files.extend(found);
                    }
                    classes = Some(names);
                    listing = Listing::Labelled;
                } else if folders.is_empty() {
                    files.extend(pictures);
                } else {
                    files.extend(pictures_below(path)?);
                    listing = Listing::Recursive;
                }
                if files.len() == before {
                    return Err(input("directory has no PNG or JPEG images, nor folders of them".into()));
                }
            } else if is_picture(path) {
                if !path.exists() {
                    return Err(input("no such file".into()));
                }
                files.push(path.clone());
            } else {
                return Err(input(
                    "not a PNG/JPEG picture or a directory; an IDX file must be the only --images input".into(),
                ));
            }
        }
        let decoded: Vec<Result<Vec<u8>, PictureError>> =
            files.par_iter().map(|f| load_picture(f, [channels, height, width], &pre)).collect();
        let mut kept = Vec::with_capacity(files.len());
        let mut pixels = Vec::with_capacity(files.len() * channels * height * width);
        let mut bad = Vec::new();
        let mut kept_classes = Vec::new();
        for (i, (path, result)) in files.into_iter().zip(decoded).enumerate() {
            let result = result.map_err(|e| PictureError { path: path.clone(), msg: e.msg });
            match result {
                Ok(px) => {
                    pixels.extend(px);
                    kept.push(path);
                    if let Some(c) = &classes {
                        kept_classes.push(c[i].clone());
                    }
                }
                Err(e) => bad.push(e),
            }
        }
        if bad.len() == 1 && kept.is_empty() {
            return Err(bad.remove(0).into());
        }
        if !bad.is_empty() && (!opts.skip_bad || kept.is_empty()) {
            return Err(InferError::BadPictures { total: kept.len() + bad.len(), bad });
        }
        let count = kept.len();
        Ok(ImageSource {
            kind: Kind::Files { files: kept, pixels },
            path: first.clone(),
            count,
            next: 0,
            channels,
            height,
            width,
            pre,
            skipped: bad,
            classes: classes.map(|_| kept_classes),
            listing,
        })
    }

    fn open_idx(
        path: &Path,
        [channels, height, width]: [usize; 3],
        pre: Preprocess,
    ) -> Result<ImageSource, InferError> {
        let stream = ImageStream::open(path)?;
        if (stream.rows, stream.cols) != (height, width) && pre.fit == Fit::Exact {
            return Err(InferError::Input {
                path: path.to_path_buf(),
                msg: format!(
                    "images are {}×{}, the model takes {height}×{width} (pass --preprocess resize or --preprocess mnist)",
                    stream.rows, stream.cols
                ),
            });
        }
        let count = stream.count;
        Ok(ImageSource {
            kind: Kind::Idx(stream),
            path: path.into(),
            count,
            next: 0,
            channels,
            height,
            width,
            pre,
            skipped: Vec::new(),
            classes: None,
            listing: Listing::Flat,
        })
    }

    pub fn count(&self) -> usize {
        self.count
    }

    /// The first input path (the IDX file, or the first picture or directory).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The picture files, in the order their images come (a directory's
    /// sorted by path); `None` for an IDX file, whose images are indexed.
    pub fn files(&self) -> Option<&[PathBuf]> {
        match &self.kind {
            Kind::Files { files, .. } => Some(files),
            Kind::Idx(_) => None,
        }
    }

    /// For an image folder: each picture's class (its folder's name).
    pub fn classes(&self) -> Option<&[String]> {
        self.classes.as_deref()
    }

    /// How the pictures were found.
    pub fn listing(&self) -> Listing {
        self.listing
    }

    /// Pictures left out under `skip_bad`, in input order.
    pub fn skipped(&self) -> &[PictureError] {
        &self.skipped
    }

    /// The next up to `n` images as planar u8 pixels `[n, C, H, W]`, `None` at the end.
    pub fn next_batch(&mut self, n: usize) -> Result<Option<Vec<u8>>, InferError> {
        if self.next >= self.count {
            return Ok(None);
        }
        let (c, h, w) = (self.channels, self.height, self.width);
        let pixels = match &mut self.kind {
            Kind::Idx(stream) => {
                let (sc, sh, sw) = (stream.channels, stream.rows, stream.cols);
                let untouched =
                    (sc, sh, sw) == (c, h, w) && self.pre.invert == Invert::Never && self.pre.fit != Fit::Mnist;
                if untouched {
                    // Straight to the model's planar layout, converted once.
                    stream.next_batch(n)?.unwrap_or_default()
                } else {
                    // As stored ([H, W, C], the `image` crate's layout) → fitted → planar.
                    let raw = stream.next_batch_as_stored(n)?.unwrap_or_default();
                    let mut out = Vec::with_capacity(raw.len() / (sc * sh * sw) * c * h * w);
                    for img in raw.chunks_exact(sc * sh * sw) {
                        let picture = Picture::from_interleaved(img, sc, sh, sw).with_channels(c);
                        out.extend(
                            self.pre
                                .apply_picture(picture, h, w)
                                .map_err(|msg| InferError::Input { path: self.path.clone(), msg })?,
                        );
                    }
                    out
                }
            }
            Kind::Files { pixels, .. } => {
                let end = (self.next + n).min(self.count);
                pixels[self.next * c * h * w..end * c * h * w].to_vec()
            }
        };
        self.next += pixels.len() / (c * h * w);
        Ok(Some(pixels))
    }
}
