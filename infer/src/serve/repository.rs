//! Which models a folder holds, in either layout `infer serve --models`
//! takes:
//! - a flat folder of `*.onnx` (like `models/`): one model per file, named
//!   for its stem (`classifier`, `classifier.int8`), version 1;
//! - a Triton model repository: `DIR/<name>/config.pbtxt` and
//!   `DIR/<name>/<version>/model.onnx` (or the config's
//!   `default_model_filename`), the versions its `version_policy` names
//!   (the highest one by default).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::model_config::{self, ConfigError};
use super::proto::{model_version_policy::PolicyChoice, ModelConfig};

#[derive(Debug, thiserror::Error)]
pub enum RepositoryError {
    #[error("{}: cannot read the model folder: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{}: no models: expected *.onnx files or a Triton model repository (<name>/config.pbtxt, <name>/<version>/model.onnx)", path.display())]
    Empty { path: PathBuf },
    #[error("{}: no version folder holds {file} (versions are numbered folders: {}/1/{file})", path.display(), path.display())]
    NoVersion { path: PathBuf, file: String },
    #[error("{}: version {version} is named by the config's version_policy but {} does not exist", path.display(), path.join(version.to_string()).display())]
    MissingVersion { path: PathBuf, version: u64 },
    #[error("{}: the config names model {named:?}; Triton requires the folder's name", path.display())]
    Name { path: PathBuf, named: String },
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// One version of one model, and where it comes from.
#[derive(Debug, Clone)]
pub struct ModelSource {
    pub name: String,
    pub version: u64,
    pub path: PathBuf,
    /// The repository's config.pbtxt; `None` for a flat folder's models.
    pub config: Option<ModelConfig>,
    /// The file the config was read from, for messages.
    pub config_path: Option<PathBuf>,
}

/// Every model version `dir` holds, sorted by name then version.
pub fn scan(dir: &Path) -> Result<Vec<ModelSource>, RepositoryError> {
    let read_err = |source| RepositoryError::Read { path: dir.into(), source };
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(read_err)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(read_err)?;
    entries.sort();
    let triton: Vec<&PathBuf> = entries.iter().filter(|p| p.join("config.pbtxt").is_file()).collect();
    let models = if triton.is_empty() {
        entries
            .iter()
            .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "onnx"))
            .map(|p| ModelSource {
                name: p.file_stem().unwrap_or_default().to_string_lossy().into_owned(),
                version: 1,
                path: p.clone(),
                config: None,
                config_path: None,
            })
            .collect()
    } else {
        let mut models = Vec::new();
        for model_dir in triton {
            models.extend(triton_model(model_dir)?);
        }
        models
    };
    if models.is_empty() {
        return Err(RepositoryError::Empty { path: dir.into() });
    }
    Ok(models)
}

fn triton_model(dir: &Path) -> Result<Vec<ModelSource>, RepositoryError> {
    let config_path = dir.join("config.pbtxt");
    let config = model_config::read(&config_path)?;
    let name = dir.file_name().unwrap_or_default().to_string_lossy().into_owned();
    if !config.name.is_empty() && config.name != name {
        return Err(RepositoryError::Name { path: config_path, named: config.name.clone() });
    }
    let file = if config.default_model_filename.is_empty() { "model.onnx" } else { &config.default_model_filename };
    let read_err = |source| RepositoryError::Read { path: dir.into(), source };
    // Numbered folders holding the model file, as Triton reads them.
    let mut versions = BTreeMap::new();
    for entry in std::fs::read_dir(dir).map_err(read_err)? {
        let path = entry.map_err(read_err)?.path();
        let number = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.parse::<u64>().ok());
        if let Some(v) = number.filter(|_| path.join(file).is_file()) {
            versions.insert(v, path.join(file));
        }
    }
    let chosen: Vec<u64> = match config.version_policy.as_ref().and_then(|p| p.policy_choice.as_ref()) {
        None => versions.keys().rev().take(1).copied().collect(),
        Some(PolicyChoice::Latest(l)) => versions.keys().rev().take(l.num_versions.max(1) as usize).copied().collect(),
        Some(PolicyChoice::All(_)) => versions.keys().copied().collect(),
        Some(PolicyChoice::Specific(s)) => {
            let mut chosen = Vec::new();
            for &v in &s.versions {
                let v = v as u64;
                if !versions.contains_key(&v) {
                    return Err(RepositoryError::MissingVersion { path: config_path, version: v });
                }
                chosen.push(v);
            }
            chosen
        }
    };
    if chosen.is_empty() {
        return Err(RepositoryError::NoVersion { path: dir.into(), file: file.to_string() });
    }
    let mut chosen = chosen;
    chosen.sort_unstable();
    chosen.dedup();
    Ok(chosen
        .into_iter()
        .map(|v| ModelSource {
            name: name.clone(),
            version: v,
            path: versions[&v].clone(),
            config: Some(config.clone()),
            config_path: Some(config_path.clone()),
        })
        .collect())
}
