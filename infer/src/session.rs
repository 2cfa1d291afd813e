//! An ONNX model opened in ONNX Runtime, with its input/output contract and
//! metadata as ONNX Runtime reads them, and the execution provider that
//! actually runs it.
//!
//! The image input's contract is read, not assumed: which input (one, or
//! `--input`), its layout (channels first or last, from the shape, or
//! `--layout`), its element type (float32, float16 or uint8) and a fixed
//! batch (a batch of 1, as the ONNX Model Zoo's models have). Callers
//! always hand over `[N, C, H, W]` float32 in [0, 1]; [`ModelSession::run`]
//! normalises, transposes, converts and splits them into what the model
//! takes, and hands back float32 outputs with the batch first.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ndarray::{ArrayD, ArrayView2, ArrayView4};
use ort::ep::{self, ExecutionProvider};
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::{TensorElementType, TensorRef, ValueType};

pub use crate::device::Device;
use ae_onnx::{Dim, OnnxError};

#[derive(Debug, Clone, Default)]
pub struct SessionOptions {
    pub device: Device,
    /// Intra-op threads; `None`: the physical core count.
    pub threads: Option<usize>,
    /// Which input takes the images, and how, where the model leaves it open.
    pub contract: ContractOptions,
}

/// What the user says of a model's image input (`--input`, `--layout`,
/// `--normalize`); `None`: read from the model.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContractOptions {
    pub input: Option<String>,
    pub layout: Option<Layout>,
    pub normalize: Normalize,
}

/// Where an image's channels are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[derive(strum::Display, strum::EnumString, strum::IntoStaticStr, strum::VariantArray, strum::EnumMessage)]
#[strum(serialize_all = "lowercase")]
pub enum Layout {
    /// [batch, channels, height, width]: PyTorch's, and this toolchain's.
    Nchw,
    /// [batch, height, width, channels]: Keras's and TensorFlow's.
    Nhwc,
}

/// The element type of the image input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Element {
    F32,
    F16,
    /// Pixels 0–255, as the picture has them.
    U8,
}

impl Element {
    /// The protocol's (and Triton's) name for it.
    pub fn name(self) -> &'static str {
        match self {
            Element::F32 => "float32",
            Element::F16 => "float16",
            Element::U8 => "uint8",
        }
    }

    /// The Open Inference Protocol's datatype for it.
    pub fn datatype(self) -> &'static str {
        match self {
            Element::F32 => "FP32",
            Element::F16 => "FP16",
            Element::U8 => "UINT8",
        }
    }

    /// Bytes per value in a binary payload.
    pub fn size(self) -> usize {
        match self {
            Element::F32 => 4,
            Element::F16 => 2,
            Element::U8 => 1,
        }
    }

    /// Little-endian values of this type as float32 (exact for each).
    pub fn decode(self, bytes: &[u8]) -> Vec<f32> {
        match self {
            Element::F32 => bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
            Element::F16 => bytes.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
            Element::U8 => bytes.iter().map(|&b| f32::from(b)).collect(),
        }
    }
}

/// Per-channel normalisation of [0, 1] pixels before the model, for models
/// trained on other data (this toolchain's models normalise inside their
/// graph and take [0, 1]).
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Normalize {
    #[default]
    None,
    /// `(x - mean[c]) / std[c]`; one value each applies to every channel.
    Channels { mean: Vec<f32>, std: Vec<f32> },
}

impl Normalize {
    /// torchvision's ImageNet statistics.
    pub fn imagenet() -> Normalize {
        Normalize::Channels { mean: vec![0.485, 0.456, 0.406], std: vec![0.229, 0.224, 0.225] }
    }

    /// `none`, `imagenet`, `MEAN,STD` (every channel) or `M1,…,Mc,S1,…,Sc`
    /// (C means, then C standard deviations, as torchvision's
    /// `Normalize(mean, std)` takes them).
    pub fn parse(spec: &str) -> Result<Normalize, String> {
        match spec.trim() {
            "none" => return Ok(Normalize::None),
            "imagenet" => return Ok(Normalize::imagenet()),
            _ => {}
        }
        let values = spec
            .split(',')
            .map(|v| v.trim().parse::<f32>().map_err(|_| format!("{v:?} is not a number")))
            .collect::<Result<Vec<f32>, String>>()
            .map_err(|e| {
                format!("--normalize {spec:?}: {e}; expected none, imagenet, MEAN,STD or C means then C stds")
            })?;
        if values.len() % 2 != 0 || values.is_empty() {
            return Err(format!(
                "--normalize {spec:?}: {} values; expected MEAN,STD or C means then C stds (an even count)",
                values.len()
            ));
        }
        let (mean, std) = values.split_at(values.len() / 2);
        if let Some(s) = std.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            return Err(format!("--normalize {spec:?}: a standard deviation of {s} (each must be above 0)"));
        }
        Ok(Normalize::Channels { mean: mean.to_vec(), std: std.to_vec() })
    }

    /// Why this normalisation cannot apply to an input of `element` with
    /// `channels` channels, if it cannot.
    pub fn misfit(&self, element: Element, channels: usize) -> Option<Misfit> {
        let Normalize::Channels { mean, .. } = self else { return None };
        if element == Element::U8 {
            return Some(Misfit::Uint8);
        }
        (mean.len() != 1 && mean.len() != channels).then_some(Misfit::Channels { given: mean.len() })
    }

    /// The mean and std of channel `c`.
    fn channel(&self, c: usize) -> Option<(f32, f32)> {
        match self {
            Normalize::None => None,
            Normalize::Channels { mean, std } => {
                let at = |v: &[f32]| if v.len() == 1 { v[0] } else { v[c] };
                Some((at(mean), at(std)))
            }
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Normalize::None => "none (pixels in [0, 1])".into(),
            Normalize::Channels { mean, std } => format!("(x - {mean:?}) / {std:?} per channel"),
        }
    }
}

/// Why a normalisation does not fit an input ([`Normalize::misfit`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Misfit {
    /// The input takes uint8 pixels, which the model normalises itself.
    Uint8,
    /// Statistics for `given` channels, neither 1 nor the input's.
    Channels { given: usize },
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Onnx(#[from] OnnxError),
    #[error("{}: ONNX Runtime cannot load the model: {msg}", path.display())]
    Load { path: PathBuf, msg: String },
    #[error("{}: the CUDA execution provider is not available ({msg}); use --device cpu or auto, or link onnxruntime-gpu's library", path.display())]
    NoCuda { path: PathBuf, msg: String },
    #[error("{}: model has {} inputs ({}); choose the image input with --input", path.display(), names.len(), names.join(", "))]
    Inputs { path: PathBuf, names: Vec<String> },
    #[error("{}: --input {name:?} is not an input of the model (it has {})", path.display(), names.join(", "))]
    NoInput { path: PathBuf, name: String, names: Vec<String> },
    #[error("{}: model input {name} has shape [{shape}], expected [batch, C, H, W] or [batch, H, W, C] with C = 1 or 3 and a fixed height and width{}", path.display(), if *layout_given { " in the --layout given" } else { "" })]
    InputShape { path: PathBuf, name: String, shape: String, layout_given: bool },
    #[error("{}: model {role} {name} is {ty}, expected {}", path.display(), expected_element(role))]
    ElementType { path: PathBuf, role: &'static str, name: String, ty: String },
    #[error("{}: --normalize applies to float inputs; input {name} takes uint8 pixels (0–255) and normalises them itself", path.display())]
    NormalizeUint8 { path: PathBuf, name: String },
    #[error("{}: --normalize has {given} values per statistic for a model of {channels} channels (give 1 or {channels})", path.display())]
    NormalizeChannels { path: PathBuf, given: usize, channels: usize },
    #[error("{}: inference failed: {msg}", path.display())]
    Run { path: PathBuf, msg: String },
}

impl SessionError {
    /// Runtime faults exit 1; bad inputs exit 2.
    pub fn is_runtime(&self) -> bool {
        matches!(self, SessionError::Run { .. })
    }
}

/// A named tensor of the model's contract.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorSpec {
    pub name: String,
    pub dims: Vec<Dim>,
    pub element: Element,
}

impl TensorSpec {
    /// The dimensions as sizes, -1 for a symbolic one (the batch): the
    /// Open Inference Protocol's and Triton's form.
    pub fn sizes(&self) -> Vec<i64> {
        self.dims
            .iter()
            .map(|d| match d {
                Dim::Fixed(v) => *v,
                Dim::Symbolic(_) => -1,
            })
            .collect()
    }

    pub fn dims_string(&self) -> String {
        self.dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")
    }
}

/// An output of one batch: its name and values.
#[derive(Debug, Clone)]
pub struct Output {
    pub name: String,
    pub values: ArrayD<f32>,
}

impl Output {
    /// The values as one row per image: [batch, everything else].
    pub fn rows(&self) -> ArrayView2<'_, f32> {
        let n = self.values.shape().first().copied().unwrap_or(0);
        let per = self.values.len() / n.max(1);
        self.values.view().into_shape_with_order((n, per)).expect("standard layout")
    }
}

pub struct ModelSession {
    session: Session,
    pub path: PathBuf,
    /// "CUDAExecutionProvider" or "CPUExecutionProvider": what ran.
    pub provider: &'static str,
    pub input: TensorSpec,
    pub outputs: Vec<TensorSpec>,
    pub metadata: BTreeMap<String, String>,
    pub producer: String,
    pub doc: String,
    /// Image height and width the model takes.
    /// Input channels: 1 (grayscale) or 3 (RGB).
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    /// Where the input's channels are, and whether the shape said so.
    pub layout: Layout,
    pub layout_given: bool,
    /// The images a run must hold exactly (the input's fixed first
    /// dimension); `None`: any number.
    pub fixed_batch: Option<usize>,
    pub normalize: Normalize,
}

impl std::fmt::Debug for ModelSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelSession")
            .field("path", &self.path)
            .field("provider", &self.provider)
            .field("input", &self.input)
            .field("outputs", &self.outputs)
            .finish()
    }
}

/// The element types a model's `role` (input, output) may hold.
fn expected_element(role: &str) -> &'static str {
    if role == "input" {
        "float32, float16 or uint8 images"
    } else {
        "a float32 or float16 tensor"
    }
}

/// A tensor outlet's name and dimensions (symbolic ones by name); an
/// output must hold float32 or float16, the image input may hold uint8 too.
fn spec(path: &Path, outlet: &ort::value::Outlet, role: &'static str) -> Result<TensorSpec, SessionError> {
    let name = outlet.name().to_string();
    let wrong = |ty: String| SessionError::ElementType { path: path.into(), role, name: name.clone(), ty };
    match outlet.dtype() {
        ValueType::Tensor { ty, shape, dimension_symbols } => {
            let element = match ty {
                TensorElementType::Float32 => Element::F32,
                TensorElementType::Float16 => Element::F16,
                TensorElementType::Uint8 if role == "input" => Element::U8,
                other => return Err(wrong(format!("{other:?}").to_lowercase())),
            };
            let dims = shape
                .iter()
                .enumerate()
                .map(|(i, &d)| match dimension_symbols.get(i).filter(|s| !s.is_empty()) {
                    _ if d >= 0 => Dim::Fixed(d),
                    Some(sym) => Dim::Symbolic(sym.clone()),
                    None => Dim::Symbolic("?".into()),
                })
                .collect();
            Ok(TensorSpec { name, dims, element })
        }
        other => Err(wrong(other.to_string())),
    }
}

/// The layout a 4-D image input's shape says, with its C, H, W: channels
/// (1 or 3) next to two fixed spatial sizes. Channels first wins a tie.
fn layout_of(dims: &[Dim], given: Option<Layout>) -> Option<(Layout, [usize; 3])> {
    let fixed = |d: &Dim| match d {
        Dim::Fixed(v) if *v > 0 => Some(*v as usize),
        _ => None,
    };
    let [_, a, b, c] = dims else { return None };
    let nchw = match (fixed(a), fixed(b), fixed(c)) {
        (Some(ch @ (1 | 3)), Some(h), Some(w)) => Some((Layout::Nchw, [ch, h, w])),
        _ => None,
    };
    let nhwc = match (fixed(a), fixed(b), fixed(c)) {
        (Some(h), Some(w), Some(ch @ (1 | 3))) => Some((Layout::Nhwc, [ch, h, w])),
        _ => None,
    };
    match given {
        Some(Layout::Nchw) => nchw,
        Some(Layout::Nhwc) => nhwc,
        None => nchw.or(nhwc),
    }
}

/// How `[N, C, H, W]` pixels in [0, 1] become a model's own input values:
/// normalised per channel, in its layout, and for a uint8 input the
/// pixel values 0–255. Float16 inputs keep float32 values here; the run
/// rounds them.
#[derive(Debug, Clone, PartialEq)]
pub struct InputForm {
    pub element: Element,
    pub layout: Layout,
    /// `[C, H, W]` of one image.
    pub image: [usize; 3],
    pub normalize: Normalize,
}

impl InputForm {
    /// Whether pixels are the model's values already (float32 NCHW in
    /// [0, 1]): nothing to convert.
    pub fn takes_pixels(&self) -> bool {
        self.element == Element::F32 && self.layout == Layout::Nchw && self.normalize == Normalize::None
    }

    /// The dimensions of one image in the model's layout.
    pub fn dims(&self) -> [usize; 3] {
        let [c, h, w] = self.image;
        match self.layout {
            Layout::Nchw => [c, h, w],
            Layout::Nhwc => [h, w, c],
        }
    }

    /// `pixels` (`[n, C, H, W]` in [0, 1]) as the model's values.
    pub fn values(&self, pixels: &[f32]) -> Vec<f32> {
        let [c, h, w] = self.image;
        let hw = h * w;
        let mut out = vec![0f32; pixels.len()];
        for (image, target) in pixels.chunks_exact(c * hw).zip(out.chunks_exact_mut(c * hw)) {
            for ch in 0..c {
                let (mean, std) = self.normalize.channel(ch).unwrap_or((0.0, 1.0));
                for p in 0..hw {
                    let v = (image[ch * hw + p] - mean) / std;
                    let v = if self.element == Element::U8 { (v * 255.0).round().clamp(0.0, 255.0) } else { v };
                    match self.layout {
                        Layout::Nchw => target[ch * hw + p] = v,
                        Layout::Nhwc => target[p * c + ch] = v,
                    }
                }
            }
        }
        out
    }
}

impl ModelSession {
    pub fn open(path: impl AsRef<Path>, opts: &SessionOptions) -> Result<ModelSession, SessionError> {
        let path = path.as_ref().to_path_buf();
        // A missing or empty file gets the plain message; anything else
        // is ONNX Runtime's to judge.
        let len = std::fs::metadata(&path).map_err(|source| OnnxError::Io { path: path.clone(), source })?.len();
        if len == 0 {
            return Err(OnnxError::Empty { path }.into());
        }
        ModelSession::start(path.clone(), Source::File(&path), opts)
    }

    /// A model held in memory (e.g. one being built); `name` stands for
    /// it in messages.
    pub fn from_bytes(
        bytes: &[u8],
        name: impl AsRef<Path>,
        opts: &SessionOptions,
    ) -> Result<ModelSession, SessionError> {
        ModelSession::start(name.as_ref().to_path_buf(), Source::Memory(bytes), opts)
    }

    fn start(path: PathBuf, source: Source<'_>, opts: &SessionOptions) -> Result<ModelSession, SessionError> {
        let threads = opts.threads.unwrap_or_else(ae_core::machine::physical_cores).max(1);
        let (session, provider) = match opts.device {
            Device::Cpu => (build(&path, source, threads, false)?, "CPUExecutionProvider"),
            Device::Cuda => (build(&path, source, threads, true)?, "CUDAExecutionProvider"),
            // Any failure on the CUDA path (no provider, no driver, no
            // cuDNN) falls back to CPU; a broken model fails there too,
            // with the CPU path's message.
            Device::Auto => match build(&path, source, threads, true) {
                Ok(s) => (s, "CUDAExecutionProvider"),
                Err(_) => (build(&path, source, threads, false)?, "CPUExecutionProvider"),
            },
        };
        // The contract as ONNX Runtime reads it: one image input (or the
        // one --input names), float outputs.
        let contract = &opts.contract;
        let names: Vec<String> = session.inputs().iter().map(|i| i.name().to_string()).collect();
        let chosen = match (&contract.input, names.len()) {
            (Some(name), _) => names.iter().position(|n| n == name).ok_or_else(|| SessionError::NoInput {
                path: path.clone(),
                name: name.clone(),
                names: names.clone(),
            })?,
            (None, 1) => 0,
            (None, _) => return Err(SessionError::Inputs { path, names }),
        };
        let input = spec(&path, &session.inputs()[chosen], "input")?;
        let Some((layout, [channels, height, width])) = layout_of(&input.dims, contract.layout) else {
            return Err(SessionError::InputShape {
                path,
                name: input.name.clone(),
                shape: input.dims_string(),
                layout_given: contract.layout.is_some(),
            });
        };
        let fixed_batch = match input.dims.first() {
            Some(Dim::Fixed(n)) if *n > 0 => Some(*n as usize),
            _ => None,
        };
        let normalize = contract.normalize.clone();
        match normalize.misfit(input.element, channels) {
            None => {}
            Some(Misfit::Uint8) => return Err(SessionError::NormalizeUint8 { path, name: input.name.clone() }),
            Some(Misfit::Channels { given }) => return Err(SessionError::NormalizeChannels { path, given, channels }),
        }
        let outputs = session.outputs().iter().map(|o| spec(&path, o, "output")).collect::<Result<_, _>>()?;
        let meta = session.metadata().map_err(|e| SessionError::Load { path: path.clone(), msg: e.to_string() })?;
        let metadata = meta
            .custom_keys()
            .unwrap_or_default()
            .into_iter()
            .filter_map(|k| meta.custom(&k).map(|v| (k, v)))
            .collect();
        let producer = meta.producer().unwrap_or_default();
        let doc = meta.description().unwrap_or_default();
        drop(meta);
        Ok(ModelSession {
            session,
            path,
            provider,
            input,
            outputs,
            metadata,
            producer,
            doc,
            channels,
            height,
            width,
            layout,
            layout_given: contract.layout.is_some(),
            fixed_batch,
            normalize,
        })
    }

    /// The class names in the model's metadata, if it has them.
    pub fn metadata_class_names(&self) -> Option<Vec<String>> {
        self.metadata.get("class_names").and_then(|v| serde_json::from_str::<Vec<String>>(v).ok())
    }

    pub fn output(&self, name: &str) -> Option<&TensorSpec> {
        self.outputs.iter().find(|o| o.name == name)
    }

    /// The image input's contract in words: name, element type, layout,
    /// size, where the layout came from, the batch and the normalisation.
    pub fn describe_input(&self) -> String {
        let batch = match self.fixed_batch {
            Some(n) => format!("a fixed batch of {n}"),
            None => "any batch".into(),
        };
        let normalize = match self.input.element {
            Element::U8 => "none (uint8 pixels, 0–255)".to_string(),
            _ => self.normalize.describe(),
        };
        format!(
            "input {} {} {} {}×{}×{} ({}, {batch}; normalise: {normalize})",
            self.input.name,
            self.input.element.name(),
            self.layout.to_string().to_uppercase(),
            self.channels,
            self.height,
            self.width,
            if self.layout_given { "as --layout says" } else { "from its shape" },
        )
    }

    /// Whether the model takes exactly what callers hand over: float32
    /// `[N, C, H, W]` in [0, 1], any batch. Such a run copies nothing.
    pub fn takes_as_is(&self) -> bool {
        self.form().takes_pixels() && self.fixed_batch.is_none()
    }

    /// How pixels become this model's input values.
    pub fn form(&self) -> InputForm {
        InputForm {
            element: self.input.element,
            layout: self.layout,
            image: [self.channels, self.height, self.width],
            normalize: self.normalize.clone(),
        }
    }

    /// Runs one batch of `[batch, C, H, W]` images in [0, 1]; returns every
    /// output, in the model's order, batch first.
    pub fn run(&mut self, images: &[f32], batch: usize) -> Result<Vec<Output>, SessionError> {
        let form = self.form();
        if form.takes_pixels() {
            return self.run_values(images, batch);
        }
        self.run_values(&form.values(images), batch)
    }

    /// Runs one batch of the model's own input values (its layout, its
    /// element's values held as float32: what a client of the protocol
    /// sends); returns every output, in the model's order, batch first. A
    /// model with a fixed batch runs in pieces of that size (the last one
    /// padded with zeros, whose rows are dropped).
    pub fn run_values(&mut self, values: &[f32], batch: usize) -> Result<Vec<Output>, SessionError> {
        let per = self.channels * self.height * self.width;
        let piece = self.fixed_batch.unwrap_or(batch).max(1);
        let mut parts: Vec<Vec<Output>> = Vec::new();
        // `batch.max(1)`: a batch of no images still runs once, as an empty tensor.
        for start in (0..batch.max(1)).step_by(piece) {
            let n = piece.min(batch - start);
            let rows = self.fixed_batch.unwrap_or(n);
            let shape = match self.layout {
                Layout::Nchw => [rows, self.channels, self.height, self.width],
                Layout::Nhwc => [rows, self.height, self.width, self.channels],
            };
            let given = &values[start * per..(start + n) * per];
            // Only a short last piece of a fixed batch needs a copy (its
            // padding) in float32.
            let padded;
            let x: &[f32] = if rows == n {
                given
            } else {
                padded = [given, &vec![0.0; (rows - n) * per]].concat();
                &padded
            };
            let run_err = |e: &dyn std::fmt::Display| SessionError::Run { path: self.path.clone(), msg: e.to_string() };
            let outputs = match self.input.element {
                Element::F32 => {
                    let a = ArrayView4::from_shape(shape, x).map_err(|e| run_err(&e))?;
                    let tensor = TensorRef::from_array_view(a).map_err(|e| run_err(&e))?;
                    self.run_tensor(tensor, rows)?
                }
                Element::F16 => {
                    let a = ndarray::Array4::from_shape_vec(shape, x.iter().map(|&v| half::f16::from_f32(v)).collect())
                        .map_err(|e| run_err(&e))?;
                    let tensor = TensorRef::from_array_view(a.view()).map_err(|e| run_err(&e))?;
                    self.run_tensor(tensor, rows)?
                }
                Element::U8 => {
                    // Whole numbers 0–255 already (InputForm, or a request
                    // checked by the server): the cast is exact.
                    let a = ndarray::Array4::from_shape_vec(shape, x.iter().map(|&v| v as u8).collect())
                        .map_err(|e| run_err(&e))?;
                    let tensor = TensorRef::from_array_view(a.view()).map_err(|e| run_err(&e))?;
                    self.run_tensor(tensor, rows)?
                }
            };
            if rows == batch {
                return Ok(outputs);
            }
            // Padding's rows go.
            parts.push(
                outputs
                    .into_iter()
                    .map(|o| Output {
                        name: o.name,
                        values: o.values.slice_axis(ndarray::Axis(0), (0..n).into()).to_owned(),
                    })
                    .collect(),
            );
        }
        if parts.len() == 1 {
            return Ok(parts.pop().expect("one"));
        }
        let names: Vec<String> = parts[0].iter().map(|o| o.name.clone()).collect();
        names
            .into_iter()
            .enumerate()
            .map(|(i, name)| {
                let views: Vec<_> = parts.iter().map(|p| p[i].values.view()).collect();
                let values = ndarray::concatenate(ndarray::Axis(0), &views)
                    .map_err(|e| SessionError::Run { path: self.path.clone(), msg: e.to_string() })?;
                Ok(Output { name, values })
            })
            .collect()
    }

    /// Runs the input tensor of `rows` images; every output as float32,
    /// batch first (an output without a batch dimension, as a fixed-batch
    /// model of 1 may give, gets one).
    fn run_tensor<T: ort::value::PrimitiveTensorElementType + std::fmt::Debug>(
        &mut self,
        tensor: TensorRef<'_, T>,
        rows: usize,
    ) -> Result<Vec<Output>, SessionError> {
        let run_err =
            |path: &Path, e: &dyn std::fmt::Display| SessionError::Run { path: path.to_path_buf(), msg: e.to_string() };
        // Disjoint field borrows: the session runs while the specs are read.
        let (path, specs) = (&self.path, &self.outputs);
        let outputs =
            self.session.run(ort::inputs![self.input.name.as_str() => tensor]).map_err(|e| run_err(path, &e))?;
        specs
            .iter()
            .map(|spec| {
                let value = &outputs[spec.name.as_str()];
                let mut values = match spec.element {
                    Element::F16 => {
                        value.try_extract_array::<half::f16>().map_err(|e| run_err(path, &e))?.mapv(|v| v.to_f32())
                    }
                    _ => value.try_extract_array::<f32>().map_err(|e| run_err(path, &e))?.to_owned(),
                };
                if values.shape().first() != Some(&rows) && rows == 1 {
                    values.insert_axis_inplace(ndarray::Axis(0));
                }
                Ok(Output { name: spec.name.clone(), values })
            })
            .collect()
    }
}

/// ONNX Runtime allows one environment per process: made once, shared.
fn environment() -> Result<ort::environment::Environment, String> {
    static ENV: std::sync::Mutex<Option<ort::environment::Environment>> = std::sync::Mutex::new(None);
    let mut slot = ENV.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(env) = slot.as_ref() {
        return Ok(env.clone());
    }
    let env = ort::init().with_name("infer").build().map_err(|e| e.to_string())?;
    *slot = Some(env.clone());
    Ok(env)
}

/// Where a model's bytes come from.
#[derive(Clone, Copy)]
enum Source<'a> {
    File(&'a Path),
    Memory(&'a [u8]),
}

fn build(path: &Path, source: Source<'_>, threads: usize, cuda: bool) -> Result<Session, SessionError> {
    let load = |e: &dyn std::fmt::Display| SessionError::Load { path: path.to_path_buf(), msg: e.to_string() };
    let env = environment().map_err(|e| load(&e))?;
    let mut builder = Session::builder(&env)
        .map_err(|e| load(&e))?
        .with_optimization_level(GraphOptimizationLevel::All)
        .map_err(|e| load(&e))?
        .with_intra_threads(threads)
        .map_err(|e| load(&e))?
        .with_inter_threads(1)
        .map_err(|e| load(&e))?;
    if cuda {
        let no_cuda = |msg: String| SessionError::NoCuda { path: path.to_path_buf(), msg };
        match ep::CUDA::is_available() {
            Ok(true) => {}
            Ok(false) => return Err(no_cuda("this ONNX Runtime build has no CUDA provider".into())),
            Err(e) => return Err(no_cuda(e.to_string())),
        }
        ep::CUDA::default().register(&mut builder).map_err(|e| no_cuda(e.to_string()))?;
    }
    match source {
        Source::File(file) => builder.commit_from_file(file),
        Source::Memory(bytes) => builder.commit_from_memory(bytes),
    }
    .map_err(|e| load(&e))
}
