//! Model control: Triton's model repository extension. Which models are
//! served, and changing them while the server runs.
//!
//! - `--model-control-mode none`: every model of the folder is loaded at
//!   start and stays; load and unload are refused.
//! - `explicit`: `--load-model NAME` (or `*`) at start; then the
//!   repository's load and unload calls (REST and gRPC).
//! - `poll`: every model at start; then every `--repository-poll-secs` the
//!   folder is looked at, and a model whose files changed is reloaded once
//!   two looks in a row agree (a model being copied in is never loaded half
//!   way), a new model is loaded and a removed one unloaded.
//!
//! A load opens and warms up every version on a blocking thread while the
//! old versions keep serving; only then are the new ones swapped in
//! (one atomic swap of [`Models`]). A request keeps the version it
//! resolved, so requests in flight finish on the old one, and the old
//! queue closes once its last request is answered. A load that fails
//! leaves the old versions serving, and the index says why. Unloading
//! stops new requests and answers the queued ones before it returns.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use tokio::sync::{watch, Mutex};

use super::api_error::ApiError;
use super::load::{chain, load_model, LoadError, LoadSettings};
use super::metrics::Metrics;
use super::model::{Models, ServedModel};
use super::model_config;
use super::repository::{self, RepositoryError};

/// `--model-control-mode`, in Triton's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[derive(strum::Display, strum::EnumString, strum::IntoStaticStr, strum::VariantArray, strum::EnumMessage)]
#[strum(serialize_all = "lowercase")]
pub enum ControlMode {
    /// Every model of the folder, loaded at start; load and unload are refused.
    None,
    /// The --load-model models at start; then the repository API's load and unload.
    Explicit,
    /// Every model at start; then the folder is watched and changed models reloaded.
    Poll,
}

impl ControlMode {
    pub fn name(self) -> &'static str {
        self.into()
    }
}

/// How the served models are chosen and changed.
#[derive(Debug, Clone)]
pub struct ControlOptions {
    pub mode: ControlMode,
    /// Explicit mode: the models loaded at start (`*`: all).
    pub load: Vec<String>,
    /// Poll mode: how often the folder is looked at.
    pub poll_every: Duration,
    /// Whether a model that fails to load at start stops the server
    /// (Triton's `--exit-on-error`); when not, it is listed UNAVAILABLE with
    /// its reason and the others serve.
    pub exit_on_error: bool,
}

/// What the repository index says of one model version.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct IndexEntry {
    pub name: String,
    /// Empty for a model with no version loaded.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub version: String,
    /// `READY` or `UNAVAILABLE`, as Triton says.
    pub state: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

/// A file listing of one model (`repository::files`), for poll mode.
type Files = Option<Vec<(PathBuf, u64, SystemTime)>>;

/// The served models and the means to change them.
#[derive(Debug)]
pub struct Registry {
    live: ArcSwap<Models>,
    /// One change at a time; what poll mode last saw of each model.
    changes: Mutex<BTreeMap<String, Files>>,
    root: PathBuf,
    options: ControlOptions,
    settings: LoadSettings,
    metrics: Metrics,
    /// How long an unload waits for the requests of the versions it takes.
    drain: Duration,
}

impl Registry {
    /// Loads what `options` says to load at start, blocking; any failure
    /// stops the start.
    pub fn start(
        root: &Path,
        options: ControlOptions,
        settings: LoadSettings,
        metrics: &Metrics,
        drain: Duration,
    ) -> Result<Registry, StartError> {
        if options.mode != ControlMode::Explicit && !options.load.is_empty() {
            return Err(StartError::LoadWithoutExplicit(options.mode.name()));
        }
        let names = repository::names(root)?;
        let chosen: Vec<String> = match options.mode {
            ControlMode::None if names.is_empty() => {
                return Err(RepositoryError::Empty { path: root.into() }.into());
            }
            ControlMode::None | ControlMode::Poll => names.clone(),
            ControlMode::Explicit if options.load.iter().any(|n| n == "*") => names.clone(),
            ControlMode::Explicit => {
                let mut chosen = options.load.clone();
                chosen.sort();
                chosen.dedup();
                chosen
            }
        };
        let mut models = Models::default();
        let mut seen = BTreeMap::new();
        for name in &names {
            if !chosen.contains(name) {
                models.unavailable.insert(name.clone(), "unloaded".into());
            }
        }
        for name in chosen {
            // Listed before loading: a change while it loads is seen later.
            seen.insert(name.clone(), repository::files(root, &name));
            match load_model(root, &name, None, &settings, metrics) {
                Ok(versions) => {
                    metrics.loads.with_label_values(&[name.as_str(), "ok"]).inc();
                    models.by_name.insert(name, versions);
                }
                Err(e) if options.exit_on_error => return Err(e.into()),
                Err(e) => {
                    let why = chain(&e);
                    tracing::warn!("model {}: not served: {why}", name.escape_debug());
                    metrics.loads.with_label_values(&[name.as_str(), "failed"]).inc();
                    models.unavailable.insert(name, format!("load failed: {why}"));
                }
            }
        }
        Ok(Registry {
            live: ArcSwap::from_pointee(models),
            changes: Mutex::new(seen),
            root: root.into(),
            options,
            settings,
            metrics: metrics.clone(),
            drain,
        })
    }

    pub fn mode(&self) -> ControlMode {
        self.options.mode
    }

    /// The models served now.
    pub fn snapshot(&self) -> Arc<Models> {
        self.live.load_full()
    }

    /// The model a request names (`version` empty: the highest served).
    pub fn get(&self, name: &str, version: &str) -> Result<Arc<ServedModel>, ApiError> {
        self.live.load().get(name, version).cloned()
    }

    /// Whether `name` is served: only served models label metrics.
    pub fn contains(&self, name: &str) -> bool {
        self.live.load().by_name.contains_key(name)
    }

    /// The metric labels of a request for `name` at `version` (empty: the
    /// highest served): the model and the version it is served at, or two
    /// empty labels for anything not served (a client must not be able to
    /// mint series).
    pub fn labels(&self, name: &str, version: &str) -> [String; 2] {
        match self.live.load().get(name, version) {
            Ok(m) => [m.name.clone(), m.version.to_string()],
            Err(_) => [String::new(), String::new()],
        }
    }

    pub fn versions(&self, name: &str) -> Vec<String> {
        self.live.load().versions(name)
    }

    /// Every model the folder holds or the server serves, each served
    /// version READY, the others UNAVAILABLE with the reason; `ready_only`:
    /// the READY ones.
    pub fn index(&self, ready_only: bool) -> Result<Vec<IndexEntry>, ApiError> {
        let live = self.live.load();
        let mut names =
            repository::names(&self.root).map_err(|e| ApiError::new(super::api_error::Kind::Internal, chain(&e)))?;
        names.extend(live.by_name.keys().cloned());
        names.sort();
        names.dedup();
        let mut entries = Vec::new();
        for name in names {
            let reason = live.unavailable.get(&name).cloned().unwrap_or_default();
            match live.by_name.get(&name) {
                Some(versions) => entries.extend(versions.keys().map(|v| IndexEntry {
                    name: name.clone(),
                    version: v.to_string(),
                    state: "READY".into(),
                    reason: reason.clone(),
                })),
                None if ready_only => {}
                None => entries.push(IndexEntry {
                    name: name.clone(),
                    version: String::new(),
                    state: "UNAVAILABLE".into(),
                    reason: if reason.is_empty() { "unloaded".into() } else { reason },
                }),
            }
        }
        Ok(entries)
    }

    /// Refuses a repository other than this server's one (Triton's calls
    /// may name one; its clients send none).
    pub fn check_repository(name: &str) -> Result<(), ApiError> {
        if name.is_empty() {
            return Ok(());
        }
        Err(ApiError::bad(format!(
            "unknown repository {name:?}: this server has one model repository (--models); leave the name empty"
        )))
    }

    /// The repository's load call: (re)loads `name`, with `config` (a JSON
    /// model configuration) in place of its config.pbtxt when given.
    pub async fn load(&self, name: &str, config: Option<&str>) -> Result<(), ApiError> {
        self.check_explicit("load")?;
        let config = match config {
            None => None,
            Some(text) => {
                let origin = PathBuf::from(format!("the load request's config for {name:?}"));
                let parsed = model_config::from_json(&origin, text).map_err(|e| ApiError::bad(chain(&e)))?;
                Some((parsed, origin))
            }
        };
        let _one = self.changes.lock().await;
        self.reload(name, config).await.map_err(ApiError::bad)
    }

    /// The repository's unload call: `name` takes no new requests, and the
    /// call returns once every request it had taken is answered.
    pub async fn unload(&self, name: &str) -> Result<(), ApiError> {
        self.check_explicit("unload")?;
        let _one = self.changes.lock().await;
        // Unloading what is not loaded is no error, but a name that is
        // neither served nor in the folder is: clients must not grow the index.
        let known = self.live.load().by_name.contains_key(name)
            || repository::names(&self.root).is_ok_and(|names| names.iter().any(|n| n == name));
        if !known {
            return Err(ApiError::not_found(format!(
                "cannot unload model {name:?}: it is neither served nor in the repository"
            )));
        }
        self.take_out(name, "unloaded").await;
        Ok(())
    }

    fn check_explicit(&self, what: &str) -> Result<(), ApiError> {
        match self.options.mode {
            ControlMode::Explicit => Ok(()),
            mode => Err(ApiError::bad(format!(
                "cannot {what} models: the server runs with --model-control-mode {} (start it with \
                 --model-control-mode explicit to load and unload models through the API)",
                mode.name()
            ))),
        }
    }

    /// Loads every version of `name` off the async threads, then swaps
    /// them in; the versions they replace retire once their requests are
    /// answered. On failure the old versions keep serving, and the index
    /// and the error say why. The caller holds `changes`.
    async fn reload(&self, name: &str, config: Option<(super::proto::ModelConfig, PathBuf)>) -> Result<(), String> {
        let (root, settings, metrics) = (self.root.clone(), self.settings.clone(), self.metrics.clone());
        let owned = name.to_string();
        let loaded = tokio::task::spawn_blocking(move || load_model(&root, &owned, config, &settings, &metrics))
            .await
            .map_err(|e| (false, format!("loading model {name:?} failed: {e}")))
            .and_then(|r| {
                // A name the folder lacks leaves no trace: clients must not grow the index.
                r.map_err(|e| (matches!(e, LoadError::Repository(RepositoryError::NoModel { .. })), chain(&e)))
            });
        let versions = match loaded {
            Ok(versions) => versions,
            Err((true, why)) if !self.live.load().by_name.contains_key(name) => {
                return Err(format!("failed to load model {name:?}: {why}"));
            }
            Err((_, why)) => {
                self.metrics.loads.with_label_values(&[name, "failed"]).inc();
                let serving = self.live.load().by_name.contains_key(name);
                let reason = if serving {
                    format!("the last load failed, the versions loaded before serve on: {why}")
                } else {
                    format!("load failed: {why}")
                };
                tracing::warn!("model {}: {reason}", name.escape_debug());
                let mut next = Models::clone(&self.live.load());
                next.unavailable.insert(name.to_string(), reason);
                self.live.store(Arc::new(next));
                return Err(format!("failed to load model {name:?}: {why}"));
            }
        };
        self.metrics.loads.with_label_values(&[name, "ok"]).inc();
        let mut next = Models::clone(&self.live.load());
        next.unavailable.remove(name);
        let shown = versions.keys().map(|v| v.to_string()).collect::<Vec<_>>().join(", ");
        let old = next.by_name.insert(name.to_string(), versions).unwrap_or_default();
        self.live.store(Arc::new(next));
        tracing::warn!("model {}: version {shown} loaded and serving", name.escape_debug());
        // In the background: a reload answers as soon as the new versions serve.
        let (metrics, drain) = (self.metrics.clone(), self.drain);
        let kept: Vec<u64> =
            self.live.load().by_name.get(name).map(|v| v.keys().copied().collect()).unwrap_or_default();
        tokio::spawn(retire(old.into_values().collect(), kept, metrics, drain));
        Ok(())
    }

    /// Stops serving `name` (`why` in the index), then waits for its
    /// versions' requests. The caller holds `changes`.
    async fn take_out(&self, name: &str, why: &str) {
        let mut next = Models::clone(&self.live.load());
        let old = next.by_name.remove(name).unwrap_or_default();
        next.unavailable.insert(name.to_string(), why.to_string());
        self.live.store(Arc::new(next));
        if !old.is_empty() {
            tracing::warn!("model {}: {why}; answering its queued requests", name.escape_debug());
        }
        retire(old.into_values().collect(), Vec::new(), self.metrics.clone(), self.drain).await;
    }

    /// Poll mode: looks at the folder every `--repository-poll-secs` until
    /// `stop`, and loads, reloads or unloads what changed.
    pub async fn poll(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        if self.options.mode != ControlMode::Poll {
            return;
        }
        // What the previous look saw of a model whose files differ from
        // those it was loaded from.
        let mut pending: BTreeMap<String, Files> = BTreeMap::new();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.options.poll_every) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            let root = self.root.clone();
            let Ok(names) = tokio::task::spawn_blocking(move || repository::names(&root)).await else { continue };
            let names = match names {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!("poll: {}", chain(&e));
                    continue;
                }
            };
            let mut changes = self.changes.lock().await;
            let mut all: Vec<String> = names.iter().cloned().chain(changes.keys().cloned()).collect();
            all.sort();
            all.dedup();
            for name in all {
                let (root, n) = (self.root.clone(), name.clone());
                let Ok(now) = tokio::task::spawn_blocking(move || repository::files(&root, &n)).await else {
                    continue;
                };
                let loaded_from = changes.get(&name).cloned().unwrap_or(None);
                if now == loaded_from {
                    pending.remove(&name);
                    continue;
                }
                // Changed: wait until a second look sees the same files.
                if pending.get(&name) != Some(&now) {
                    pending.insert(name.clone(), now);
                    continue;
                }
                pending.remove(&name);
                changes.insert(name.clone(), now.clone());
                match now {
                    None => self.take_out(&name, "removed from the repository").await,
                    Some(_) => {
                        let _ = self.reload(&name, None).await;
                    }
                }
            }
        }
    }
}

/// Waits until the requests holding `old` versions are answered (at most
/// `drain`), then closes their queues off the async threads. The versions
/// in `kept` are served again under the same number: their metrics stay.
async fn retire(old: Vec<Arc<ServedModel>>, kept: Vec<u64>, metrics: Metrics, drain: Duration) {
    if old.is_empty() {
        return;
    }
    let deadline = tokio::time::Instant::now() + drain;
    // Ours is the last reference once no request holds one.
    while old.iter().any(|m| Arc::strong_count(m) > 1) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for m in &old {
        if !kept.contains(&m.version) {
            metrics.retire(&m.name, &m.version.to_string());
        }
    }
    // Closing a queue joins its session threads, after they have answered
    // what is queued.
    let _ = tokio::task::spawn_blocking(move || drop(old)).await;
}

/// Why the server could not load its models at start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Repository(#[from] RepositoryError),
    /// Boxed: a load's error is large, and the start's result is passed up.
    #[error(transparent)]
    Load(Box<LoadError>),
    #[error("--load-model needs --model-control-mode explicit (the mode is {0}, which loads every model)")]
    LoadWithoutExplicit(&'static str),
}

impl From<LoadError> for StartError {
    fn from(e: LoadError) -> StartError {
        StartError::Load(Box::new(e))
    }
}
