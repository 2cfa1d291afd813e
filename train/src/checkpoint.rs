//! `weights.safetensors`: the model's variables, the optimizer state, the
//! epoch it was saved after and the history up to it. The checkpoint is
//! the run's single source of truth: `history.csv` is rewritten from it
//! right after, so a kill at any moment leaves a loadable checkpoint whose
//! history `history.csv` holds or lags by one epoch, and `--resume`
//! restores both.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use std::io::Write;

use tch::{nn::VarStore, Device, Kind, Tensor};

use ae_core::atomic::AtomicFile;

use crate::error::TrainError;
use crate::fault;
use crate::history::EpochRecord;
use crate::loss_scale::LossScale;

/// A decoded `weights.safetensors`.
#[derive(Debug)]
pub struct Checkpoint {
    pub path: PathBuf,
    pub epoch: usize,
    /// Optimizer steps taken (Adam's bias correction needs them).
    pub steps: i64,
    /// The history up to `epoch`.
    pub history: Vec<EpochRecord>,
    /// [`crate::run_dir::RunConfig::fingerprint`] of the configuration the
    /// weights were trained with (`None`: an older checkpoint).
    pub config_sha256: Option<String>,
    /// The training loop's own state beside the tensors ([`TrainState`]).
    pub state: TrainState,
    pub tensors: HashMap<String, Tensor>,
}

/// What a checkpoint holds of the training loop besides the weights and
/// the optimizer, so a resumed run continues as an uninterrupted one would.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct TrainState {
    /// TensorBoard's batch_loss window: the losses summed since its last
    /// point, and how many steps they are.
    pub batch_loss_sum: f64,
    pub batch_loss_steps: usize,
    /// `--precision 16-mixed`: the dynamic loss scale (`None`: no scaling).
    pub loss_scale: Option<LossScale>,
}

/// A weights file's metadata, read without its tensors.
#[derive(Debug, Clone)]
pub struct Header {
    pub epoch: usize,
    pub history: Vec<EpochRecord>,
    pub config_sha256: Option<String>,
}

impl Header {
    /// Whether the file holds epoch `epoch` of `history`, saved from that
    /// very history (a best epoch's weights, checked against the
    /// checkpoint's history).
    pub fn holds(&self, epoch: usize, history: &[EpochRecord]) -> bool {
        self.epoch == epoch && history.get(..epoch) == Some(&self.history[..])
    }

    /// What the file holds, said against the wanted `epoch`: "epoch 4", or
    /// "epoch 4 of another history" when it is that epoch of another run.
    pub fn describe(&self, epoch: usize) -> String {
        match self.epoch == epoch {
            true => format!("epoch {} of another history", self.epoch),
            false => format!("epoch {}", self.epoch),
        }
    }
}

impl Checkpoint {
    /// The file's metadata part.
    pub fn header(&self) -> Header {
        Header { epoch: self.epoch, history: self.history.clone(), config_sha256: self.config_sha256.clone() }
    }

    /// Saves the model's variables, the optimizer state, the history and
    /// the configuration's fingerprint to `p`, atomically.
    pub fn save(
        p: &Path,
        config_sha256: &str,
        vs: &VarStore,
        optimizer: &[(String, Tensor)],
        steps: i64,
        history: &[EpochRecord],
        state: TrainState,
    ) -> Result<(), TrainError> {
        let epoch = history.last().map(|r| r.epoch).unwrap_or(0);
        let bytes = encode(p, config_sha256, vs, optimizer, steps, history, state)?;
        let mut file = AtomicFile::create(p).map_err(TrainError::io(p, "cannot write"))?;
        fault::disk_full(epoch).and_then(|()| file.write_all(&bytes)).map_err(TrainError::io(p, "cannot write"))?;
        fault::point("checkpoint-before-rename", epoch);
        file.commit().map_err(TrainError::io(p, "cannot write"))
    }

    /// Saves the best epoch's weights (`best.safetensors`): the model's
    /// variables, no optimizer state, and the history up to that epoch,
    /// atomically. Reads back with [`Checkpoint::read`].
    pub fn save_best(p: &Path, config_sha256: &str, vs: &VarStore, history: &[EpochRecord]) -> Result<(), TrainError> {
        let bytes = encode(p, config_sha256, vs, &[], 0, history, TrainState::default())?;
        ae_core::atomic::write_bytes(p, &bytes).map_err(TrainError::io(p, "cannot write"))
    }

    /// A weights file's epoch, history and configuration hash, from its
    /// metadata alone (no tensors are made).
    pub fn read_header(path: &Path) -> Result<Header, TrainError> {
        let bytes = std::fs::read(path).map_err(TrainError::io(path, "cannot read"))?;
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| TrainError::BadRun {
            path: path.to_path_buf(),
            msg: format!("not a safetensors checkpoint: {e}"),
        })?;
        let meta = meta.metadata().clone().unwrap_or_default();
        Ok(parse_header(path, &meta)?.0)
    }

    pub fn read(path: &Path, device: Device) -> Result<Checkpoint, TrainError> {
        let bad = |msg: String| TrainError::BadRun { path: path.to_path_buf(), msg };
        let bytes = std::fs::read(path).map_err(TrainError::io(path, "cannot read"))?;
        let st = safetensors::SafeTensors::deserialize(&bytes)
            .map_err(|e| bad(format!("not a safetensors checkpoint: {e}")))?;
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| bad(e.to_string()))?;
        let meta = meta.metadata().clone().unwrap_or_default();
        let (Header { epoch, history, config_sha256 }, state) = parse_header(path, &meta)?;
        let steps = meta.get("steps").and_then(|e| e.parse().ok()).unwrap_or(0);
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
        Ok(Checkpoint { path: path.to_path_buf(), epoch, steps, history, config_sha256, state, tensors })
    }

    /// Copies the checkpoint's tensors into every variable of `vs` whose
    /// name starts with `only` (all when empty); each must be present with
    /// its shape.
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

/// The epoch, history, configuration hash and loop state in a weights
/// file's metadata.
fn parse_header(path: &Path, meta: &HashMap<String, String>) -> Result<(Header, TrainState), TrainError> {
    let bad = |msg: String| TrainError::BadRun { path: path.to_path_buf(), msg };
    let epoch = meta.get("epoch").and_then(|e| e.parse().ok()).ok_or_else(|| bad("no epoch in its metadata".into()))?;
    let history: Vec<EpochRecord> = match meta.get("history") {
        Some(h) => serde_json::from_str(h).map_err(|e| bad(format!("unreadable history in its metadata: {e}")))?,
        None => Vec::new(),
    };
    if history.len() != epoch {
        return Err(bad(format!("its metadata has {} history rows for epoch {epoch}", history.len())));
    }
    let state = match meta.get("batch_loss_window") {
        None => TrainState::default(), // an older checkpoint
        Some(w) => w
            .split_once(',')
            .and_then(|(sum, steps)| {
                Some(TrainState {
                    batch_loss_sum: sum.parse().ok()?,
                    batch_loss_steps: steps.parse().ok()?,
                    loss_scale: None,
                })
            })
            .ok_or_else(|| bad(format!("unreadable batch_loss_window {w:?} in its metadata")))?,
    };
    let state = match meta.get("loss_scale") {
        None => state,
        Some(v) => TrainState {
            loss_scale: Some(
                LossScale::decode(v).ok_or_else(|| bad(format!("unreadable loss_scale {v:?} in its metadata")))?,
            ),
            ..state
        },
    };
    Ok((Header { epoch, history, config_sha256: meta.get("config_sha256").cloned() }, state))
}

fn encode(
    p: &Path,
    config_sha256: &str,
    vs: &VarStore,
    optimizer: &[(String, Tensor)],
    steps: i64,
    history: &[EpochRecord],
    state: TrainState,
) -> Result<Vec<u8>, TrainError> {
    let epoch = history.last().map(|r| r.epoch).unwrap_or(0);
    let mut named: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    named.extend(optimizer.iter().map(|(k, t)| (k.clone(), t.shallow_clone())));
    named.sort_by(|a, b| a.0.cmp(&b.0));
    let mut meta = HashMap::from([
        ("epoch".to_string(), epoch.to_string()),
        ("steps".to_string(), steps.to_string()),
        ("history".to_string(), serde_json::to_string(history).expect("history serialises")),
        ("config_sha256".to_string(), config_sha256.to_string()),
        // Rust prints the shortest text that reads back to the same f64.
        ("batch_loss_window".to_string(), format!("{},{}", state.batch_loss_sum, state.batch_loss_steps)),
    ]);
    if let Some(scale) = state.loss_scale {
        meta.insert("loss_scale".to_string(), scale.encode());
    }
    // Reading the tensors waits for the device: where an asynchronous
    // (CUDA) error surfaces.
    crate::fallible::torch(|| encode_safetensors(&named, meta))?
        .map_err(|e| TrainError::BadRun { path: p.to_path_buf(), msg: format!("cannot encode: {e}") })
}

/// Tensors → safetensors bytes (f32, little-endian).
pub fn encode_safetensors(
    named: &[(String, Tensor)],
    meta: HashMap<String, String>,
) -> Result<Vec<u8>, safetensors::SafeTensorError> {
    let host: Vec<(String, Vec<usize>, Vec<u8>)> = named
        .iter()
        .map(|(k, t)| {
            let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
            (k.clone(), shape, to_vec(t).iter().flat_map(|x| x.to_le_bytes()).collect())
        })
        .collect();
    let views = host
        .iter()
        .map(|(k, shape, bytes)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes).map(|v| (k.clone(), v))
        })
        .collect::<Result<Vec<_>, _>>()?;
    safetensors::serialize(views, Some(meta))
}

/// Tensor → Vec<f32> on the host.
pub fn to_vec(t: &Tensor) -> Vec<f32> {
    let t = t.to_device(Device::Cpu).to_kind(Kind::Float).contiguous();
    let n = t.numel();
    let mut v = vec![0f32; n];
    t.copy_data(&mut v, n);
    v
}
