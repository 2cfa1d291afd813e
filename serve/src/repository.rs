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
    #[error("{}: holds no model {name:?}", path.display())]
    NoModel { path: PathBuf, name: String },
    #[error("{}: default_model_filename {file:?} is not a plain file name (a name inside each version folder, without / or ..)", path.display())]
    FileName { path: PathBuf, file: String },
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

/// How a repository lays out its models.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// `*.onnx` files, one model each.
    Flat,
    /// `<name>/config.pbtxt` folders.
    Triton,
}

/// The folder's entries, sorted, and its layout: Triton's when any folder
/// in it holds a config.pbtxt.
fn entries(dir: &Path) -> Result<(Vec<PathBuf>, Layout), RepositoryError> {
    let read_err = |source| RepositoryError::Read { path: dir.into(), source };
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(read_err)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(read_err)?;
    entries.sort();
    let layout = if entries.iter().any(|p| p.join("config.pbtxt").is_file()) { Layout::Triton } else { Layout::Flat };
    Ok((entries, layout))
}

fn file_name(p: &Path, stem: bool) -> String {
    let name = if stem { p.file_stem() } else { p.file_name() };
    name.unwrap_or_default().to_string_lossy().into_owned()
}

/// The names of the models `dir` holds, sorted (none is not an error
/// here: a server in explicit control mode may start with none loaded).
pub fn names(dir: &Path) -> Result<Vec<String>, RepositoryError> {
    let (entries, layout) = entries(dir)?;
    Ok(match layout {
        Layout::Flat => entries
            .iter()
            .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "onnx"))
            .map(|p| file_name(p, true))
            .collect(),
        Layout::Triton => {
            entries.iter().filter(|p| p.join("config.pbtxt").is_file()).map(|p| file_name(p, false)).collect()
        }
    })
}

/// The versions of model `name` that `dir` holds, to serve. `config`, when
/// given (a load request's), replaces the model's config.pbtxt; `origin`
/// names it in messages.
pub fn sources(
    dir: &Path,
    name: &str,
    config: Option<(ModelConfig, PathBuf)>,
) -> Result<Vec<ModelSource>, RepositoryError> {
    let (_, layout) = entries(dir)?;
    // A name is one path component, never a way out of the folder.
    let plain = !name.is_empty() && !name.starts_with('.') && !name.contains(['/', '\\']);
    match layout {
        Layout::Flat => {
            let path = dir.join(format!("{name}.onnx"));
            if !plain || !path.is_file() {
                return Err(RepositoryError::NoModel { path: dir.into(), name: name.into() });
            }
            let (config, config_path) = config.map_or((None, None), |(c, p)| (Some(c), Some(p)));
            Ok(vec![ModelSource { name: name.into(), version: 1, path, config, config_path }])
        }
        Layout::Triton => {
            let model_dir = dir.join(name);
            let config_path = model_dir.join("config.pbtxt");
            if !plain || !config_path.is_file() {
                return Err(RepositoryError::NoModel { path: dir.into(), name: name.into() });
            }
            let config = match config {
                Some(given) => given,
                None => (model_config::read(&config_path)?, config_path),
            };
            triton_model(&model_dir, config)
        }
    }
}

/// What model `name`'s files look like now: each file's resolved path,
/// length and modification time. Poll mode reloads a model whose files changed, once
/// two looks in a row agree. `None`: the repository no longer holds it.
pub fn files(dir: &Path, name: &str) -> Option<Vec<(PathBuf, u64, std::time::SystemTime)>> {
    let (_, layout) = entries(dir).ok()?;
    let root = match layout {
        Layout::Flat => dir.join(format!("{name}.onnx")),
        Layout::Triton => dir.join(name),
    };
    if !root.exists() {
        return None;
    }
    // Links followed, and each file named by where it resolves: a
    // Kubernetes volume swaps its `..data` link to a new folder, and only
    // the resolved paths change.
    let mut files: Vec<_> = walkdir::WalkDir::new(&root)
        .follow_links(true)
        .sort_by_file_name()
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .filter_map(|e| {
            let meta = e.metadata().ok()?;
            let path = std::fs::canonicalize(e.path()).unwrap_or_else(|_| e.path().to_path_buf());
            Some((path, meta.len(), meta.modified().ok()?))
        })
        .collect();
    files.sort();
    files.dedup();
    Some(files)
}

/// One path component that names a file in its folder: not empty, not
/// `.` or `..`, no separator, no NUL.
fn plain_file_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\', '\0'])
}

fn triton_model(
    dir: &Path,
    (config, config_path): (ModelConfig, PathBuf),
) -> Result<Vec<ModelSource>, RepositoryError> {
    let name = file_name(dir, false);
    if !config.name.is_empty() && config.name != name {
        return Err(RepositoryError::Name { path: config_path, named: config.name.clone() });
    }
    let file = if config.default_model_filename.is_empty() { "model.onnx" } else { &config.default_model_filename };
    // Joined onto each version folder: a path would reach outside the
    // repository (Triton's CVE-2023-31036 was this), so only a plain name
    // is taken, and refused without a look at the disk.
    if !plain_file_name(file) {
        return Err(RepositoryError::FileName { path: config_path, file: file.to_string() });
    }
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
