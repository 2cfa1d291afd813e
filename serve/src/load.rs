//! Loading one model version: open its sessions, check its config against
//! the model, run one warm-up batch of `max_batch` images on each session,
//! and start its queue. At start-up and on every load or reload
//! (`control.rs`), so a version is served only once it has answered.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::metrics::Metrics;
use super::model::ServedModel;
use super::model_config::{self, Batching, ConfigError};
use super::proto::ModelConfig;
use super::queue;
use super::repository::{self, ModelSource, RepositoryError};
use infer::session::{ModelSession, SessionError, SessionOptions};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Repository(#[from] RepositoryError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("model {name} version {version} failed to load")]
    Open {
        name: String,
        version: u64,
        #[source]
        source: SessionError,
    },
    #[error(
        "model {name} version {version}: output {output:?} of a {batch}-image warm-up batch has shape {shape:?}; \
         the server splits outputs by their first dimension, so it must be the batch"
    )]
    NotBatchFirst { name: String, version: u64, output: String, shape: Vec<usize>, batch: usize },
    #[error("model {name} version {version}: a warm-up batch of {batch} images ({bytes} bytes) cannot be allocated; lower max_batch_size")]
    WarmUpMemory { name: String, version: u64, batch: usize, bytes: u128 },
    #[error("model {name} version {version} failed its warm-up batch")]
    WarmUp {
        name: String,
        version: u64,
        #[source]
        source: SessionError,
    },
}

/// How models are opened and batched when their config leaves it open.
#[derive(Debug, Clone)]
pub struct LoadSettings {
    pub session: SessionOptions,
    /// For models without a config.pbtxt (a flat folder), and the defaults
    /// a config leaves open.
    pub batching: Batching,
}

/// Every version of model `name` that `root` serves (`config`, when
/// given, in place of its config.pbtxt), loaded, by version number.
pub fn load_model(
    root: &Path,
    name: &str,
    config: Option<(ModelConfig, PathBuf)>,
    settings: &LoadSettings,
    metrics: &Metrics,
) -> Result<BTreeMap<u64, Arc<ServedModel>>, LoadError> {
    repository::sources(root, name, config)?
        .iter()
        .map(|s| load_version(s, settings, metrics).map(|m| (m.version, Arc::new(m))))
        .collect()
}

/// Opens `source`'s sessions (one per instance), warms each up and starts
/// the version's queue. Blocking: seconds for a large model.
pub fn load_version(
    source: &ModelSource,
    settings: &LoadSettings,
    metrics: &Metrics,
) -> Result<ServedModel, LoadError> {
    let open = || {
        ModelSession::open(&source.path, &settings.session).map_err(|e| LoadError::Open {
            name: source.name.clone(),
            version: source.version,
            source: e,
        })
    };
    let first = open()?;
    // The protocol's face is the model's own input as it is (its layout,
    // its datatype), whose batch may be fixed (served as Triton does,
    // max_batch_size 0).
    let mut form = first.form();
    let (config, batching) = match (&source.config, &source.config_path) {
        (Some(config), Some(path)) => {
            model_config::check(path, config, &first)?;
            if let Some(n) = model_config::normalize(path, config, &first)? {
                form.normalize = n;
            }
            let batching = model_config::batching(path, config, &settings.batching, first.fixed_batch)?;
            (complete(config.clone(), &source.name, &first, &batching), batching)
        }
        _ => {
            let batching = match first.fixed_batch {
                Some(n) => model_config::fixed(n, &settings.batching),
                None => settings.batching.clone(),
            };
            (model_config::for_model(&source.name, &first, &batching), batching)
        }
    };
    let mut sessions = vec![first];
    for _ in 1..batching.instances {
        sessions.push(open()?);
    }
    for s in &mut sessions {
        warm_up(source, s, batching.max_batch)?;
    }
    let s = &sessions[0];
    // A classifier's contract (ours, or one made elsewhere): its scores
    // output, whether they are logits, and its class names.
    let classifier = infer::contract::classifier(s, &infer::contract::OutputOptions::default()).ok();
    let class_names = classifier.as_ref().map_or_else(Vec::new, |c| c.names.clone());
    let version = source.version.to_string();
    Ok(ServedModel {
        name: source.name.clone(),
        version: source.version,
        config,
        input: s.input.clone(),
        outputs: s.outputs.clone(),
        form,
        class_names,
        classifier,
        queue: queue::Queue::start(&source.name, sessions, &batching, &metrics.queue(&source.name, &version)),
        latency: metrics.latency.with_label_values(&[source.name.as_str(), version.as_str()]),
        batching,
    })
}

/// One batch of `n` blank images: the session runs, and every output has
/// the batch as its first dimension.
fn warm_up(source: &ModelSource, s: &mut ModelSession, n: usize) -> Result<(), LoadError> {
    let per_image = s.channels * s.height * s.width;
    // The batch size can come from a client's load request: a failed
    // allocation is an error, never an abort.
    let count = n.checked_mul(per_image);
    let mut images: Vec<f32> = Vec::new();
    if count.is_none_or(|c| images.try_reserve_exact(c).is_err()) {
        return Err(LoadError::WarmUpMemory {
            name: source.name.clone(),
            version: source.version,
            batch: n,
            bytes: n as u128 * per_image as u128 * 4,
        });
    }
    images.resize(count.unwrap_or(0), 0.0);
    let outputs = s.run_values(&images, n).map_err(|e| LoadError::WarmUp {
        name: source.name.clone(),
        version: source.version,
        source: e,
    })?;
    // A batch's rows are handed back to their requests by the first
    // dimension; a model whose output is not batch-first would be split
    // wrongly (or not at all) under load.
    if let Some(o) = outputs.iter().find(|o| o.values.shape().first() != Some(&n)) {
        return Err(LoadError::NotBatchFirst {
            name: source.name.clone(),
            version: source.version,
            output: o.name.clone(),
            shape: o.values.shape().to_vec(),
            batch: n,
        });
    }
    Ok(())
}

/// A repository's config with what Triton would fill in itself: the name,
/// the backend, and inputs and outputs it leaves out.
fn complete(mut config: ModelConfig, name: &str, session: &ModelSession, batching: &Batching) -> ModelConfig {
    let full = model_config::for_model(name, session, batching);
    if config.name.is_empty() {
        config.name = name.to_string();
    }
    if config.backend.is_empty() && config.platform.is_empty() {
        config.backend = full.backend;
    }
    if config.input.is_empty() {
        config.input = full.input;
    }
    if config.output.is_empty() {
        config.output = full.output;
    }
    config
}

/// An error and its causes on one line, as the index, the log and a
/// failed load report them.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text = format!("{text}: {s_text}");
        }
        source = s.source();
    }
    // One line, whatever a client's config or name held (CR, LF, escapes):
    // it goes to the log and the index.
    text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}
