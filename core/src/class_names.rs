//! Class names as a user gives them (`--class-names` of both tools): a
//! file with one name per line (blank lines skipped), or a comma-separated
//! list; each name once, none empty, at least two.

use std::path::{Path, PathBuf};

/// Names, and where they came from (the file, or `--class-names`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassNames {
    pub names: Vec<String>,
    pub source: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ClassNamesError {
    #[error("{}: cannot read the class names: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Invalid(String),
}

pub fn parse(spec: &str) -> Result<ClassNames, ClassNamesError> {
    let path = Path::new(spec);
    let (names, source): (Vec<String>, String) = if path.is_file() {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ClassNamesError::Read { path: path.to_path_buf(), source })?;
        (text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect(), path.display().to_string())
    } else {
        (spec.split(',').map(|n| n.trim().to_string()).collect(), "--class-names".to_string())
    };
    let invalid = |msg: String| Err(ClassNamesError::Invalid(msg));
    if let Some(i) = names.iter().position(String::is_empty) {
        return invalid(format!("{source}: class name {} is empty", i + 1));
    }
    for (i, n) in names.iter().enumerate() {
        if names[..i].contains(n) {
            return invalid(format!("{source}: class name {n:?} appears twice"));
        }
    }
    if names.len() < 2 {
        return invalid(format!("{source}: {} class name(s), expected one per class (at least 2)", names.len()));
    }
    Ok(ClassNames { names, source })
}
