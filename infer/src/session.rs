//! An ONNX model opened in ONNX Runtime, with its input/output contract and
//! metadata as ONNX Runtime reads them, and the execution provider that
//! actually runs it.

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
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Onnx(#[from] OnnxError),
    #[error("{}: ONNX Runtime cannot load the model: {msg}", path.display())]
    Load { path: PathBuf, msg: String },
    #[error("{}: the CUDA execution provider is not available ({msg}); use --device cpu or auto, or link onnxruntime-gpu's library", path.display())]
    NoCuda { path: PathBuf, msg: String },
    #[error("{}: model has {inputs} inputs, expected 1 image input", path.display())]
    Inputs { path: PathBuf, inputs: usize },
    #[error("{}: model input {name} has shape [{shape}], expected [batch, C, H, W] float32 with C = 1 or 3", path.display())]
    InputShape { path: PathBuf, name: String, shape: String },
    #[error("{}: model {role} {name} is {ty}, expected a float32 tensor", path.display())]
    ElementType { path: PathBuf, role: &'static str, name: String, ty: String },
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

/// A tensor outlet's name and dimensions (symbolic ones by name); it must
/// hold float32.
fn spec(path: &Path, outlet: &ort::value::Outlet, role: &'static str) -> Result<TensorSpec, SessionError> {
    let name = outlet.name().to_string();
    match outlet.dtype() {
        ValueType::Tensor { ty: TensorElementType::Float32, shape, dimension_symbols } => {
            let dims = shape
                .iter()
                .enumerate()
                .map(|(i, &d)| match dimension_symbols.get(i).filter(|s| !s.is_empty()) {
                    _ if d >= 0 => Dim::Fixed(d),
                    Some(sym) => Dim::Symbolic(sym.clone()),
                    None => Dim::Symbolic("?".into()),
                })
                .collect();
            Ok(TensorSpec { name, dims })
        }
        ValueType::Tensor { ty, .. } => {
            Err(SessionError::ElementType { path: path.into(), role, name, ty: format!("{ty:?}").to_lowercase() })
        }
        other => Err(SessionError::ElementType { path: path.into(), role, name, ty: other.to_string() }),
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
        // The contract as ONNX Runtime reads it: one float32 image input,
        // float32 outputs.
        if session.inputs().len() != 1 {
            return Err(SessionError::Inputs { path, inputs: session.inputs().len() });
        }
        let input = spec(&path, &session.inputs()[0], "input")?;
        let (channels, height, width) = match input.dims.as_slice() {
            [_, Dim::Fixed(c @ (1 | 3)), Dim::Fixed(h), Dim::Fixed(w)] if *h > 0 && *w > 0 => {
                (*c as usize, *h as usize, *w as usize)
            }
            _ => return Err(SessionError::InputShape { path, name: input.name.clone(), shape: input.dims_string() }),
        };
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
        Ok(ModelSession { session, path, provider, input, outputs, metadata, producer, doc, channels, height, width })
    }

    /// The class names in the model's metadata, if it has them.
    pub fn metadata_class_names(&self) -> Option<Vec<String>> {
        self.metadata.get("class_names").and_then(|v| serde_json::from_str::<Vec<String>>(v).ok())
    }

    /// A name for each of `classes` classes: the metadata's when it has
    /// that many, else the indices.
    pub fn class_names(&self, classes: usize) -> Vec<String> {
        self.metadata_class_names()
            .filter(|n| n.len() == classes)
            .unwrap_or_else(|| (0..classes).map(|c| c.to_string()).collect())
    }

    pub fn output(&self, name: &str) -> Option<&TensorSpec> {
        self.outputs.iter().find(|o| o.name == name)
    }

    /// Runs one batch of `[batch, C, H, W]` images in [0, 1]; returns every
    /// output, in the model's order.
    pub fn run(&mut self, images: &[f32], batch: usize) -> Result<Vec<Output>, SessionError> {
        let run_err =
            |path: &Path, e: &dyn std::fmt::Display| SessionError::Run { path: path.to_path_buf(), msg: e.to_string() };
        let x = ArrayView4::from_shape((batch, self.channels, self.height, self.width), images)
            .map_err(|e| run_err(&self.path, &e))?;
        let tensor = TensorRef::from_array_view(x).map_err(|e| run_err(&self.path, &e))?;
        // Disjoint field borrows: the session runs while the specs are read.
        let (path, specs) = (&self.path, &self.outputs);
        let outputs =
            self.session.run(ort::inputs![self.input.name.as_str() => tensor]).map_err(|e| run_err(path, &e))?;
        specs
            .iter()
            .map(|spec| {
                let values = outputs[spec.name.as_str()].try_extract_array::<f32>().map_err(|e| run_err(path, &e))?;
                Ok(Output { name: spec.name.clone(), values: values.to_owned() })
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
