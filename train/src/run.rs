//! A run directory: `config.json`, `weights.safetensors` (model + optimizer
//! state + the epoch it was saved after + the history up to it),
//! `history.csv` and the figures. Every file is written atomically. The
//! checkpoint is the single source of truth: `history.csv` is rewritten
//! from it right after, so a kill at any moment leaves a loadable
//! checkpoint whose history `history.csv` holds or lags by one epoch, and
//! `--resume` restores both.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::{nn::VarStore, Device, Kind, Tensor};

use infer::atomic;

use crate::error::TrainError;
use crate::model::{AutoencoderConfig, ClassifierConfig};
use crate::optim::OptimizerKind;

pub const CONFIG: &str = "config.json";
pub const WEIGHTS: &str = "weights.safetensors";
pub const HISTORY: &str = "history.csv";

/// How a run was trained: everything needed to rebuild and continue it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainSettings {
    pub epochs: usize,
    /// Classifier only: epochs with the encoder frozen, before `epochs`.
    #[serde(default)]
    pub frozen_epochs: usize,
    pub batch_size: usize,
    pub optimizer: OptimizerKind,
    pub lr: f64,
    /// Classifier fine-tuning learning rate (stage 2).
    #[serde(default)]
    pub finetune_lr: Option<f64>,
    pub cosine: bool,
    pub seed: u64,
    pub val_split: f64,
    pub limit: Option<usize>,
    pub threads: Option<usize>,
    #[serde(default)]
    pub loss: Option<String>,
    /// Random translation of training images by up to this many pixels
    /// (data augmentation; 0 = none).
    #[serde(default)]
    pub augment: usize,
}

/// The dataset a run was trained on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetInfo {
    pub images: PathBuf,
    pub images_sha256: String,
    pub labels: Option<PathBuf>,
    pub count: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ModelConfig {
    Autoencoder { model: AutoencoderConfig },
    Classifier { model: ClassifierConfig, class_names: Vec<String>, autoencoder_run: PathBuf },
}

impl ModelConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            ModelConfig::Autoencoder { .. } => "autoencoder",
            ModelConfig::Classifier { .. } => "classifier",
        }
    }

    pub fn autoencoder(&self) -> &AutoencoderConfig {
        match self {
            ModelConfig::Autoencoder { model } => model,
            ModelConfig::Classifier { model, .. } => &model.encoder,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    #[serde(flatten)]
    pub model: ModelConfig,
    pub train: TrainSettings,
    pub dataset: DatasetInfo,
    pub producer: String,
}

/// One row of `history.csv`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    pub loss: f64,
    pub val_loss: f64,
    pub accuracy: Option<f64>,
    pub val_accuracy: Option<f64>,
    pub seconds: f64,
    pub lr: f64,
}

#[derive(Debug, Clone)]
pub struct RunDir {
    pub path: PathBuf,
}

fn io_err(path: &Path, what: &str) -> impl Fn(std::io::Error) -> TrainError {
    let path = path.to_path_buf();
    let what = what.to_string();
    move |e| TrainError::Io { path: path.clone(), what: what.clone(), msg: e.to_string() }
}

impl RunDir {
    /// Creates (or reuses) the directory and checks that it is writable now,
    /// before any training time is spent.
    pub fn create(path: impl AsRef<Path>) -> Result<RunDir, TrainError> {
        let path = path.as_ref().to_path_buf();
        std::fs::create_dir_all(&path).map_err(io_err(&path, "cannot create the run directory"))?;
        let probe = path.join(".write-test");
        std::fs::write(&probe, b"ok").map_err(io_err(&path, "run directory is not writable"))?;
        let _ = std::fs::remove_file(probe);
        Ok(RunDir { path })
    }

    /// An existing run; fails unless it has a config and weights.
    pub fn open(path: impl AsRef<Path>) -> Result<RunDir, TrainError> {
        let path = path.as_ref().to_path_buf();
        if !path.is_dir() {
            return Err(TrainError::NotARun { path, why: "no such directory".into() });
        }
        for f in [CONFIG, WEIGHTS] {
            if !path.join(f).is_file() {
                return Err(TrainError::NotARun {
                    path: path.clone(),
                    why: format!("it has no {f} (incomplete run?)"),
                });
            }
        }
        Ok(RunDir { path })
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    pub fn write_config(&self, cfg: &RunConfig) -> Result<(), TrainError> {
        let p = self.file(CONFIG);
        let json = serde_json::to_string_pretty(cfg).expect("config serialises");
        atomic::write_bytes(&p, format!("{json}\n").as_bytes()).map_err(io_err(&p, "cannot write"))
    }

    pub fn read_config(&self) -> Result<RunConfig, TrainError> {
        let p = self.file(CONFIG);
        let text = std::fs::read_to_string(&p).map_err(io_err(&p, "cannot read"))?;
        serde_json::from_str(&text).map_err(|e| TrainError::BadRun { path: p, msg: e.to_string() })
    }

    /// Saves the model's variables, the optimizer state and the epoch.
    pub fn save_checkpoint(
        &self,
        vs: &VarStore,
        optimizer: &[(String, Tensor)],
        steps: i64,
        history: &[EpochRecord],
    ) -> Result<(), TrainError> {
        let epoch = history.last().map(|r| r.epoch).unwrap_or(0);
        let p = self.file(WEIGHTS);
        let mut named: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        named.extend(optimizer.iter().map(|(k, t)| (k.clone(), t.shallow_clone())));
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let meta = HashMap::from([
            ("epoch".to_string(), epoch.to_string()),
            ("steps".to_string(), steps.to_string()),
            ("history".to_string(), serde_json::to_string(history).expect("history serialises")),
        ]);
        let bytes = encode_safetensors(&named, meta).map_err(|msg| TrainError::Io {
            path: p.clone(),
            what: "cannot encode".into(),
            msg,
        })?;
        atomic::write_bytes(&p, &bytes).map_err(io_err(&p, "cannot write"))
    }

    /// Loads the checkpoint into `vs` (every variable must be present with
    /// its shape). Returns (epoch, optimizer steps, all tensors by name).
    pub fn load_checkpoint(&self, vs: &mut VarStore) -> Result<Checkpoint, TrainError> {
        let ckpt = Checkpoint::read(&self.file(WEIGHTS), vs.device())?;
        ckpt.copy_into(vs, "")?;
        Ok(ckpt)
    }

    pub fn write_history(&self, rows: &[EpochRecord]) -> Result<(), TrainError> {
        let p = self.file(HISTORY);
        let mut out = String::from("epoch,loss,val_loss,accuracy,val_accuracy,seconds,lr\n");
        let opt = |v: Option<f64>| v.map(|x| format!("{x}")).unwrap_or_default();
        for r in rows {
            let _ = writeln!(
                out,
                "{},{},{},{},{},{:.3},{}",
                r.epoch,
                r.loss,
                r.val_loss,
                opt(r.accuracy),
                opt(r.val_accuracy),
                r.seconds,
                r.lr
            );
        }
        atomic::write_bytes(&p, out.as_bytes()).map_err(io_err(&p, "cannot write"))
    }

    pub fn read_history(&self) -> Result<Vec<EpochRecord>, TrainError> {
        let p = self.file(HISTORY);
        if !p.exists() {
            return Ok(Vec::new());
        }
        let text = std::fs::read_to_string(&p).map_err(io_err(&p, "cannot read"))?;
        let bad =
            |line: usize| TrainError::BadRun { path: p.clone(), msg: format!("line {line} is not a history row") };
        text.lines()
            .enumerate()
            .skip(1)
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, line)| {
                let f: Vec<&str> = line.split(',').collect();
                if f.len() != 7 {
                    return Err(bad(i + 1));
                }
                let num = |s: &str| s.parse::<f64>().map_err(|_| bad(i + 1));
                let opt = |s: &str| if s.is_empty() { Ok(None) } else { num(s).map(Some) };
                Ok(EpochRecord {
                    epoch: f[0].parse().map_err(|_| bad(i + 1))?,
                    loss: num(f[1])?,
                    val_loss: num(f[2])?,
                    accuracy: opt(f[3])?,
                    val_accuracy: opt(f[4])?,
                    seconds: num(f[5])?,
                    lr: num(f[6])?,
                })
            })
            .collect()
    }
}

/// A decoded `weights.safetensors`.
#[derive(Debug)]
pub struct Checkpoint {
    pub path: PathBuf,
    pub epoch: usize,
    pub steps: i64,
    /// The history up to `epoch`.
    pub history: Vec<EpochRecord>,
    pub tensors: HashMap<String, Tensor>,
}

impl Checkpoint {
    pub fn read(path: &Path, device: Device) -> Result<Checkpoint, TrainError> {
        let bad = |msg: String| TrainError::BadRun { path: path.to_path_buf(), msg };
        let bytes = std::fs::read(path).map_err(io_err(path, "cannot read"))?;
        let st = safetensors::SafeTensors::deserialize(&bytes)
            .map_err(|e| bad(format!("not a safetensors checkpoint: {e}")))?;
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| bad(e.to_string()))?;
        let meta = meta.metadata().clone().unwrap_or_default();
        let epoch =
            meta.get("epoch").and_then(|e| e.parse().ok()).ok_or_else(|| bad("no epoch in its metadata".into()))?;
        let steps = meta.get("steps").and_then(|e| e.parse().ok()).unwrap_or(0);
        let history: Vec<EpochRecord> = match meta.get("history") {
            Some(h) => serde_json::from_str(h).map_err(|e| bad(format!("unreadable history in its metadata: {e}")))?,
            None => Vec::new(),
        };
        if history.len() != epoch {
            return Err(bad(format!("its metadata has {} history rows for epoch {epoch}", history.len())));
        }
        let mut tensors = HashMap::new();
        for name in st.names() {
            let view = st.tensor(name).map_err(|e| bad(e.to_string()))?;
            if view.dtype() != safetensors::Dtype::F32 {
                return Err(bad(format!("tensor {name} is {:?}, expected F32", view.dtype())));
            }
            let values: Vec<f32> =
                view.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
            let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
            tensors.insert(name.to_string(), Tensor::from_slice(&values).reshape(&shape).to_device(device));
        }
        Ok(Checkpoint { path: path.to_path_buf(), epoch, steps, history, tensors })
    }

    /// Copies `prefix`-filtered tensors into every variable of `vs` whose
    /// name starts with `only` (all when empty).
    pub fn copy_into(&self, vs: &mut VarStore, only: &str) -> Result<(), TrainError> {
        let bad = |msg: String| TrainError::BadRun { path: self.path.clone(), msg };
        for (name, mut var) in vs.variables() {
            if !name.starts_with(only) {
                continue;
            }
            let src = self.tensors.get(&name).ok_or_else(|| bad(format!("checkpoint has no tensor {name}")))?;
            if src.size() != var.size() {
                return Err(bad(format!(
                    "tensor {name} has shape {:?}, the model expects {:?}",
                    src.size(),
                    var.size()
                )));
            }
            tch::no_grad(|| var.copy_(src));
        }
        Ok(())
    }
}

/// Tensors → safetensors bytes (f32, little-endian).
pub fn encode_safetensors(named: &[(String, Tensor)], meta: HashMap<String, String>) -> Result<Vec<u8>, String> {
    let host: Vec<(String, Vec<usize>, Vec<u8>)> = named
        .iter()
        .map(|(k, t)| {
            let t = t.to_device(Device::Cpu).to_kind(Kind::Float).contiguous();
            let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
            let n = t.numel();
            let mut v = vec![0f32; n];
            t.copy_data(&mut v, n);
            (k.clone(), shape, v.iter().flat_map(|x| x.to_le_bytes()).collect())
        })
        .collect();
    let views = host
        .iter()
        .map(|(k, shape, bytes)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes)
                .map(|v| (k.clone(), v))
                .map_err(|e| e.to_string())
        })
        .collect::<Result<Vec<_>, _>>()?;
    safetensors::serialize(views, Some(meta)).map_err(|e| e.to_string())
}

/// Tensor → Vec<f32> on the host.
pub fn to_vec(t: &Tensor) -> Vec<f32> {
    let t = t.to_device(Device::Cpu).to_kind(Kind::Float).contiguous();
    let n = t.numel();
    let mut v = vec![0f32; n];
    t.copy_data(&mut v, n);
    v
}
