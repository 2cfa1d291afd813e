//! Image inputs for inference: one IDX file (plain or gzip), streamed batch
//! by batch so memory does not grow with the number of images; or picture
//! files (PNG/JPEG) and directories of them, decoded up front in parallel —
//! so every unreadable picture is named before anything runs — and held at
//! the model's size (784 bytes per 28×28 picture).

use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::error::InferError;
use crate::idx::ImageStream;
pub use crate::preprocess::{Fit, Invert, Picture, Preprocess};

enum Kind {
    Idx(ImageStream),
    /// Decoded pictures, `[files.len(), C, H, W]`.
    Files {
        files: Vec<PathBuf>,
        pixels: Vec<u8>,
    },
}

/// A picture that could not be used, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadPicture {
    pub path: PathBuf,
    pub reason: String,
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
    skipped: Vec<BadPicture>,
    /// For an image folder (`DIR/<class>/*.png`): each kept picture's class folder.
    classes: Option<Vec<String>>,
}

impl std::fmt::Debug for ImageSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageSource").field("path", &self.path).field("count", &self.count).finish()
    }
}

/// Whether `dir` holds pictures itself (rather than class folders).
fn has_pictures(dir: &Path) -> Result<bool, InferError> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| InferError::Input { path: dir.to_path_buf(), msg: e.to_string() })?;
    Ok(entries.filter_map(|e| e.ok()).any(|e| e.path().is_file() && is_picture(&e.path())))
}

/// Whether `dir` has sub-directories (class folders).
fn has_subdirectories(dir: &Path) -> Result<bool, InferError> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| InferError::Input { path: dir.to_path_buf(), msg: e.to_string() })?;
    Ok(entries.filter_map(|e| e.ok()).any(|e| e.path().is_dir()))
}

fn is_picture(p: &Path) -> bool {
    matches!(
        p.extension().and_then(|e| e.to_str()).map(|e| e.to_ascii_lowercase()).as_deref(),
        Some("png" | "jpg" | "jpeg")
    )
}

impl ImageSource {
    /// Opens `paths` for a model taking `[channels, height, width]` images
    /// (pictures are converted to its channels): one IDX
    /// file, or any mix of picture files and directories (each directory's
    /// pictures in file-name order, not recursive). An unreadable picture
    /// is an error naming every one of them, unless `skip_bad` is set; then
    /// they are left out and listed by [`ImageSource::skipped`].
    pub fn open(
        paths: &[PathBuf],
        [channels, height, width]: [usize; 3],
        pre: Preprocess,
        skip_bad: bool,
    ) -> Result<ImageSource, InferError> {
        let first = paths.first().ok_or_else(|| InferError::Usage("no --images given".into()))?;
        if paths.len() == 1 && !first.is_dir() && !is_picture(first) {
            return ImageSource::open_idx(first, [channels, height, width], pre);
        }
        let mut files = Vec::new();
        let mut classes: Option<Vec<String>> = None;
        for path in paths {
            let input = |msg: String| InferError::Input { path: path.to_path_buf(), msg };
            if path.is_dir() && paths.len() == 1 && !has_pictures(path)? && has_subdirectories(path)? {
                // An image folder: DIR/<class>/*.png, its classes from the folders.
                let opts = crate::folder::FolderOptions { channels: Some(channels), size: Some((height, width)) };
                let f = crate::folder::ImageFolder::scan(path, opts)?;
                classes = Some(f.labels.iter().map(|&k| f.classes[k as usize].clone()).collect());
                files.extend(f.files);
            } else if path.is_dir() {
                let mut found: Vec<PathBuf> = std::fs::read_dir(path)
                    .map_err(|e| input(e.to_string()))?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.is_file() && is_picture(p))
                    .collect();
                found.sort();
                if found.is_empty() {
                    return Err(input("directory has no PNG or JPEG images, nor class folders of them".into()));
                }
                files.extend(found);
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
        let decoded: Vec<Result<Vec<u8>, String>> = files
            .par_iter()
            .map(|f| {
                load_picture(f, [channels, height, width], &pre).map_err(|e| match e {
                    InferError::Input { msg, .. } => msg,
                    e => e.to_string(),
                })
            })
            .collect();
        let mut kept = Vec::with_capacity(files.len());
        let mut pixels = Vec::with_capacity(files.len() * channels * height * width);
        let mut bad = Vec::new();
        let mut kept_classes = Vec::new();
        for (i, (path, result)) in files.into_iter().zip(decoded).enumerate() {
            match result {
                Ok(px) => {
                    pixels.extend(px);
                    kept.push(path);
                    if let Some(c) = &classes {
                        kept_classes.push(c[i].clone());
                    }
                }
                Err(reason) => bad.push(BadPicture { path, reason }),
            }
        }
        if bad.len() == 1 && kept.is_empty() {
            let b = bad.remove(0);
            return Err(InferError::Input { path: b.path, msg: b.reason });
        }
        if !bad.is_empty() && (!skip_bad || kept.is_empty()) {
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

    /// Pictures left out under `skip_bad`, in input order.
    pub fn skipped(&self) -> &[BadPicture] {
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
                let raw = stream.next_batch(n)?.unwrap_or_default();
                let untouched =
                    (sc, sh, sw) == (c, h, w) && self.pre.invert == Invert::Never && self.pre.fit != Fit::Mnist;
                if untouched {
                    raw
                } else {
                    let mut out = Vec::with_capacity(raw.len() / (sc * sh * sw) * c * h * w);
                    for img in raw.chunks_exact(sc * sh * sw) {
                        let picture = Picture::from_planar(img, sc, sh, sw).with_channels(c);
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

/// A PNG/JPEG file as the model's planar `[C, H, W]` pixels.
fn load_picture(path: &Path, shape: [usize; 3], pre: &Preprocess) -> Result<Vec<u8>, InferError> {
    let bytes = std::fs::read(path).map_err(|e| InferError::Input { path: path.to_path_buf(), msg: e.to_string() })?;
    decode_picture(path, &bytes, shape, pre)
}

/// Largest picture accepted, in pixels: decoding allocates width × height,
/// so a lying header must not be able to ask for gigabytes.
pub const MAX_PICTURE_PIXELS: u64 = 64 << 20;

/// Decodes PNG/JPEG bytes to the model's planar `[C, H, W]` pixels through
/// `pre` (`path` names it in messages).
pub fn decode_picture(
    path: &Path,
    bytes: &[u8],
    [c, h, w]: [usize; 3],
    pre: &Preprocess,
) -> Result<Vec<u8>, InferError> {
    let img = decode_image(path, bytes)?;
    pre.apply_picture(on_white(img, c), h, w).map_err(|msg| InferError::Input { path: path.to_path_buf(), msg })
}

/// Decodes PNG/JPEG bytes, refusing other formats and oversized headers.
pub fn decode_image(path: &Path, bytes: &[u8]) -> Result<image::DynamicImage, InferError> {
    let input = |msg: String| InferError::Input { path: path.to_path_buf(), msg };
    let reader = image::io::Reader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| input(format!("not a readable PNG/JPEG image: {e}")))?;
    match reader.format() {
        Some(image::ImageFormat::Png | image::ImageFormat::Jpeg) => {}
        _ => return Err(input("not a PNG or JPEG image: its bytes match neither format".into())),
    }
    let (iw, ih) = reader.into_dimensions().map_err(|e| input(format!("not a readable PNG/JPEG image: {e}")))?;
    if iw as u64 * ih as u64 > MAX_PICTURE_PIXELS {
        return Err(input(format!("image claims {iw}×{ih} pixels, more than this tool accepts")));
    }
    let mut reader =
        image::io::Reader::new(std::io::Cursor::new(bytes)).with_guessed_format().map_err(|e| input(e.to_string()))?;
    let mut limits = image::io::Limits::default();
    limits.max_alloc = Some(MAX_PICTURE_PIXELS * 8);
    reader.limits(limits);
    reader.decode().map_err(|e| input(format!("not a readable PNG/JPEG image: {e}")))
}

/// The picture in `channels` (1: gray, 3: RGB), transparency composited
/// onto white paper.
pub fn on_white(img: image::DynamicImage, channels: usize) -> Picture {
    if channels == 1 {
        return Picture::Gray(luma_on_white(img));
    }
    if !img.color().has_alpha() {
        return Picture::Rgb(img.to_rgb8());
    }
    let rgba = img.to_rgba8();
    Picture::Rgb(image::RgbImage::from_fn(rgba.width(), rgba.height(), |x, y| {
        let [r, g, b, a] = rgba.get_pixel(x, y).0;
        let over = |v: u8| ((v as u32 * a as u32 + 255 * (255 - a as u32)) / 255) as u8;
        image::Rgb([over(r), over(g), over(b)])
    }))
}

/// Grayscale, with any transparency composited onto white paper — how a
/// viewer shows a drawing saved with a transparent background.
fn luma_on_white(img: image::DynamicImage) -> image::GrayImage {
    if !img.color().has_alpha() {
        return img.to_luma8();
    }
    let la = img.to_luma_alpha8();
    image::GrayImage::from_fn(la.width(), la.height(), |x, y| {
        let [l, a] = la.get_pixel(x, y).0;
        image::Luma([((l as u32 * a as u32 + 255 * (255 - a as u32)) / 255) as u8])
    })
}
