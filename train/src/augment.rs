//! Data augmentation as Keras's preprocessing layers do it
//! (`RandomRotation`, `RandomTranslation`, `RandomZoom`, `RandomFlip`): each
//! part holds its factor, its parameters are drawn per image from the run's
//! seeded generator, and the whole batch is transformed at once on the
//! training device — one affine resample (`affine_grid` + `grid_sample`).
//! What comes into the frame is `fill=`: zeros (`constant`, the default:
//! MNIST's black background), the edge pixels repeated (`nearest`), or the
//! picture mirrored at its edge (`reflect`, Keras's layers' default, for
//! photos whose background is not black). Only training batches are
//! augmented, never validation or test images.
//!
//! `--augment N` (whole-pixel shifts of up to N pixels, the classifier's
//! original augmentation) is one case of it: an integer translation,
//! resampled by nearest neighbour so every pixel is copied exactly.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::model::architecture::is_zero;
use crate::rng::Rng;

/// `--augment`: which transforms, and how strong.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Augment {
    /// Rotation by an angle uniform in ±`rotate` degrees.
    pub rotate: f64,
    /// Translation uniform in ±`shift` of the width (x) and of the height (y).
    pub shift: f64,
    /// Scaling by a factor uniform in [1 − `zoom`, 1 + `zoom`] (> 1: larger).
    pub zoom: f64,
    /// Translation by a whole number of pixels, uniform in ±`pixels` per axis.
    pub pixels: usize,
    /// Mirrored left to right with probability ½ (wrong for digits: off
    /// unless asked for).
    pub flip: bool,
    /// What fills the pixels a transform brings into the frame.
    pub fill: Fill,
}

/// What fills the pixels a transform brings into the frame (Keras's
/// `fill_mode`, as `grid_sample`'s padding modes give it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[derive(strum::Display, strum::EnumString, Serialize, Deserialize)]
#[strum(serialize_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum Fill {
    /// Zeros: black, MNIST's background.
    #[default]
    Constant,
    /// The nearest edge pixel, repeated (`d d d | a b c d | d d d`, as Keras's `nearest`).
    Nearest,
    /// The picture mirrored about its edge (`d c b a | a b c d | d c b a`, Keras's `reflect`).
    Reflect,
}

impl Fill {
    /// `grid_sample`'s padding mode.
    fn padding_mode(self) -> i64 {
        match self {
            Fill::Constant => 0,
            Fill::Nearest => 1,
            Fill::Reflect => 2,
        }
    }

    fn is_constant(&self) -> bool {
        *self == Fill::Constant
    }
}

impl Augment {
    pub fn is_none(&self) -> bool {
        *self == Augment::default()
    }

    /// Only whole-pixel shifts: resampled by nearest neighbour, exactly.
    fn shifts_only(&self) -> bool {
        self.rotate == 0.0 && self.shift == 0.0 && self.zoom == 0.0 && !self.flip
    }

    /// Whole-pixel shifts filled with zeros: written as a bare N.
    fn whole_pixels(&self) -> bool {
        self.shifts_only() && self.fill.is_constant()
    }

    pub fn validate(&self) -> Result<(), String> {
        let bad = |what: &str, v: f64, range: &str| Err(format!("--augment {what}={v}: expected {range}"));
        if !(0.0..=180.0).contains(&self.rotate) {
            return bad("rotate", self.rotate, "degrees in [0, 180]");
        }
        if !(0.0..1.0).contains(&self.shift) {
            return bad("shift", self.shift, "a fraction of the image in [0, 1)");
        }
        if !(0.0..1.0).contains(&self.zoom) {
            return bad("zoom", self.zoom, "a fraction in [0, 1)");
        }
        Ok(())
    }

    /// The batch `x` ([B, C, H, W], pixels in [0, 1]) transformed, each
    /// image by its own draw from `rng`: [B, C, H, W].
    pub fn apply(&self, x: &Tensor, rng: &mut Rng) -> Tensor {
        if self.is_none() {
            return x.shallow_clone();
        }
        let size = x.size();
        let (h, w) = (size[2] as f64, size[3] as f64);
        let transforms: Vec<Transform> = (0..size[0]).map(|_| self.draw(rng, h, w)).collect();
        resample(x, &transforms, self.shifts_only(), self.fill)
    }

    /// One image's transform, for an image of `h` × `w` pixels. The draws
    /// come in a fixed order (rotation, zoom, shift x then y, whole pixels
    /// y then x, flip), each only when its part is on.
    pub fn draw(&self, rng: &mut Rng, h: f64, w: f64) -> Transform {
        let mut uniform = |range: f64| if range > 0.0 { (rng.next_f64() * 2.0 - 1.0) * range } else { 0.0 };
        let angle = uniform(self.rotate).to_radians();
        let scale = 1.0 + uniform(self.zoom);
        let (mut tx, mut ty) = (uniform(self.shift) * w, uniform(self.shift) * h);
        if self.pixels > 0 {
            // As the original shift drew them: an image reads the input
            // d − N pixels further on (d in 0..=2N), so moves by N − d.
            let span = 2 * self.pixels as u64 + 1;
            ty += self.pixels as f64 - (rng.next_u64() % span) as f64;
            tx += self.pixels as f64 - (rng.next_u64() % span) as f64;
        }
        let flip = self.flip && rng.next_u64() & 1 == 1;
        Transform { angle, scale, tx, ty, flip }
    }
}

/// `x` ([B, C, H, W]) with image i moved by `transforms[i]`, in one batched
/// affine resample: bilinear, or nearest neighbour (exact for whole-pixel
/// moves); `fill` where an output pixel reads outside the frame.
pub fn resample(x: &Tensor, transforms: &[Transform], nearest: bool, fill: Fill) -> Tensor {
    let size = x.size();
    let (n, h, w) = (size[0], size[2] as f64, size[3] as f64);
    let theta: Vec<f32> = transforms.iter().flat_map(|t| t.theta(h, w)).collect();
    let theta = Tensor::from_slice(&theta).view([n, 6]).to_device(x.device()); // [B, 6]

    // affine_grid's grid, computed elementwise: its own batched matrix
    // product runs through BLAS, whose last bits can follow the buffers'
    // alignment, and a run must repeat bit for bit. Pixel centres in [−1, 1]
    // (align_corners = false): (2k + 1) / size − 1.
    let opts = (tch::Kind::Float, x.device());
    let xs = (Tensor::arange(size[3], opts) * 2.0 + 1.0) / w - 1.0; // [W]
    let ys = (Tensor::arange(size[2], opts) * 2.0 + 1.0) / h - 1.0; // [H]
    let (xs, ys) = (xs.view([1, 1, -1]), ys.view([1, -1, 1])); // [1, 1, W], [1, H, 1]
    let col = |k: i64| theta.narrow(1, k, 1).view([n, 1, 1]); // [B, 1, 1]
    let gx = col(0) * &xs + col(1) * &ys + col(2); // [B, H, W]
    let gy = col(3) * &xs + col(4) * &ys + col(5);
    let grid = Tensor::stack(&[gx, gy], 3); // [B, H, W, 2]

    // Interpolation 0: bilinear, 1: nearest.
    x.grid_sampler(&grid, if nearest { 1 } else { 0 }, fill.padding_mode(), false)
}

/// One image's draw: its content rotated by `angle` (radians) and scaled
/// by `scale` about the centre, then moved by (`tx`, `ty`) pixels, and
/// mirrored left to right if `flip`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Transform {
    pub angle: f64,
    pub scale: f64,
    pub tx: f64,
    pub ty: f64,
    pub flip: bool,
}

impl Transform {
    /// `affine_grid`'s matrix [2, 3], row-major: where each output pixel
    /// samples the input, in coordinates normalised to [−1, 1] per axis
    /// (`align_corners = false`). With p the position from the centre in
    /// pixels, the content moves as p_out = s·R(a)·p_in + t, so a pixel of
    /// the output reads p_in = R(−a)·(p_out − t) / s; normalising by
    /// D = diag(W/2, H/2) keeps the rotation round on a non-square image.
    pub fn theta(&self, h: f64, w: f64) -> [f32; 6] {
        let (sin, cos) = self.angle.sin_cos();
        let s = self.scale;
        let (hw, hh) = (w / 2.0, h / 2.0);
        // D⁻¹ R(−a) D / s
        let mut a = [[cos / s, sin * hh / hw / s], [-sin * hw / hh / s, cos / s]];
        // −D⁻¹ R(−a) t / s
        let t = [-(cos * self.tx + sin * self.ty) / hw / s, -(-sin * self.tx + cos * self.ty) / hh / s];
        if self.flip {
            // The output's x mirrored: u_out → −u_out.
            a[0][0] = -a[0][0];
            a[1][0] = -a[1][0];
        }
        [a[0][0], a[0][1], t[0], a[1][0], a[1][1], t[1]].map(|v| v as f32)
    }
}

impl fmt::Display for Augment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_none() {
            return f.write_str("none");
        }
        if self.whole_pixels() {
            return write!(f, "{}", self.pixels);
        }
        let mut parts = Vec::new();
        for (name, v) in [("rotate", self.rotate), ("shift", self.shift), ("zoom", self.zoom)] {
            if v > 0.0 {
                parts.push(format!("{name}={v}"));
            }
        }
        if self.pixels > 0 {
            parts.push(format!("pixels={}", self.pixels));
        }
        if self.flip {
            parts.push("flip".into());
        }
        if !self.fill.is_constant() {
            parts.push(format!("fill={}", self.fill));
        }
        f.write_str(&parts.join(","))
    }
}

impl FromStr for Augment {
    type Err = String;

    /// `none`, `N` (whole-pixel shifts), or named parts:
    /// `rotate=DEG,shift=FRACTION,zoom=FRACTION,pixels=N,flip,fill=MODE`.
    fn from_str(s: &str) -> Result<Augment, String> {
        let s = s.trim();
        if s == "none" {
            return Ok(Augment::default());
        }
        if let Ok(pixels) = s.parse::<usize>() {
            return Ok(Augment { pixels, ..Augment::default() });
        }
        let mut a = Augment::default();
        for part in s.split(',').map(str::trim) {
            let (name, value) = part.split_once('=').unwrap_or((part, ""));
            let number = || {
                value
                    .parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite())
                    .ok_or_else(|| format!("--augment {part}: {name} takes a number, e.g. {name}=0.1"))
            };
            match name {
                "rotate" => a.rotate = number()?,
                "shift" => a.shift = number()?,
                "zoom" => a.zoom = number()?,
                "pixels" => {
                    a.pixels = value.parse().map_err(|_| format!("--augment {part}: pixels takes a whole number"))?
                }
                "flip" if value.is_empty() || value == "true" => a.flip = true,
                "flip" if value == "false" => a.flip = false,
                "fill" => {
                    a.fill = value
                        .parse()
                        .map_err(|_| format!("--augment {part}: fill is constant (zeros), nearest or reflect"))?
                }
                _ => {
                    return Err(format!(
                        "--augment {part}: expected none, N (pixels), or parts rotate=DEG, shift=F, zoom=F, \
                         pixels=N, flip, fill=constant|nearest|reflect, e.g. rotate=15,shift=0.1,zoom=0.15"
                    ))
                }
            }
        }
        a.validate()?;
        Ok(a)
    }
}

/// How `config.json` holds it: a number for whole-pixel shifts alone (as
/// runs before the affine parts wrote it, so their fingerprints hold), the
/// parts otherwise.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Stored {
    Pixels(usize),
    Parts {
        #[serde(default, skip_serializing_if = "is_zero")]
        rotate: f64,
        #[serde(default, skip_serializing_if = "is_zero")]
        shift: f64,
        #[serde(default, skip_serializing_if = "is_zero")]
        zoom: f64,
        #[serde(default, skip_serializing_if = "is_zero_usize")]
        pixels: usize,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        flip: bool,
        #[serde(default, skip_serializing_if = "Fill::is_constant")]
        fill: Fill,
    },
}

fn is_zero_usize(v: &usize) -> bool {
    *v == 0
}

impl Serialize for Augment {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let a = *self;
        match a.whole_pixels() {
            true => Stored::Pixels(a.pixels),
            false => Stored::Parts {
                rotate: a.rotate,
                shift: a.shift,
                zoom: a.zoom,
                pixels: a.pixels,
                flip: a.flip,
                fill: a.fill,
            },
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Augment {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Augment, D::Error> {
        Ok(match Stored::deserialize(d)? {
            Stored::Pixels(pixels) => Augment { pixels, ..Augment::default() },
            Stored::Parts { rotate, shift, zoom, pixels, flip, fill } => {
                Augment { rotate, shift, zoom, pixels, flip, fill }
            }
        })
    }
}

/// `x` with Gaussian noise of standard deviation `std` added, clipped to
/// [0, 1] (`--noise`: a denoising autoencoder's input); `x` itself when
/// `std` is 0. The noise is drawn on the host from the run's generator, so
/// a resumed run draws the same.
pub fn noisy(x: &Tensor, std: f64, rng: &mut Rng) -> Tensor {
    if std <= 0.0 {
        return x.shallow_clone();
    }
    let noise: Vec<f32> = (0..x.numel()).map(|_| (rng.next_normal() * std) as f32).collect();
    let noise = Tensor::from_slice(&noise).view(x.size().as_slice()).to_device(x.device());
    (x + noise).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use crate::augment::{Augment, Fill};

    #[test]
    fn parses_none_pixels_and_parts_and_stores_pixels_as_before() {
        assert!("none".parse::<Augment>().unwrap().is_none());
        let two: Augment = "2".parse().unwrap();
        assert_eq!(two, Augment { pixels: 2, ..Augment::default() });
        assert_eq!(serde_json::to_string(&two).unwrap(), "2", "a bare N is stored as before");
        let a: Augment = "rotate=15,shift=0.1,zoom=0.15".parse().unwrap();
        assert_eq!((a.rotate, a.shift, a.zoom, a.pixels, a.flip, a.fill), (15.0, 0.1, 0.15, 0, false, Fill::Constant));
        assert_eq!(a.to_string(), "rotate=15,shift=0.1,zoom=0.15");
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(json, r#"{"rotate":15.0,"shift":0.1,"zoom":0.15}"#);
        assert_eq!(serde_json::from_str::<Augment>(&json).unwrap(), a);
        assert_eq!(serde_json::from_str::<Augment>("0").unwrap(), Augment::default());
        let r: Augment = "pixels=2,fill=reflect".parse().unwrap();
        assert_eq!((r.pixels, r.fill), (2, Fill::Reflect));
        assert_eq!(r.to_string(), "pixels=2,fill=reflect", "a fill is not a bare N");
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(json, r#"{"pixels":2,"fill":"reflect"}"#);
        assert_eq!(serde_json::from_str::<Augment>(&json).unwrap(), r);
        for bad in ["rotate", "rotate=x", "shift=1.5", "spin=3", "zoom=-0.1", "fill=wrap"] {
            let e = bad.parse::<Augment>().unwrap_err();
            assert!(e.starts_with("--augment "), "{bad}: {e}");
        }
    }
}
