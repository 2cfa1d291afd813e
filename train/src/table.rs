//! The reference project's results tables, one row per trained
//! configuration: `loss_values.csv` (autoencoders, sorted by Val_Loss) and
//! `classification_loss_values.csv` (classifiers, sorted by Val_Accuracy,
//! best first). A configuration trained again replaces its row.

use std::path::Path;

use crate::config::{Network, TrainSettings};
use crate::error::TrainError;
use crate::model::{AutoencoderConfig, ClassifierConfig};
use crate::run_dir::EpochRecord;

/// The tables' file names, next to the runs they list.
pub const AE_TABLE: &str = "loss_values.csv";
pub const CLF_TABLE: &str = "classification_loss_values.csv";

/// The table a network's runs go to.
pub fn name(network: Network) -> &'static str {
    match network {
        Network::Autoencoder => AE_TABLE,
        Network::Classifier => CLF_TABLE,
    }
}

pub const AE_HEADER: &str = "Layers,Filter_Size,Filters/Layer,Epochs,Batch_Size,Train_Time,Loss,Val_Loss";
pub const CLF_HEADER: &str = "Layers,Fc_units,Epochs,Batch_Size,Train_Time,Loss,Val_Loss,Accuracy,Val_Accuracy";

/// A parsed table: header and rows of numbers.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub header: Vec<String>,
    pub rows: Vec<Vec<f64>>,
}

impl Table {
    pub fn read(path: &Path, header: &str) -> Result<Table, TrainError> {
        let head: Vec<String> = header.split(',').map(String::from).collect();
        if !path.exists() {
            return Ok(Table { header: head, rows: Vec::new() });
        }
        let text = std::fs::read_to_string(path).map_err(TrainError::io(path, "cannot read"))?;
        let mut lines = text.lines();
        if lines.next().map(str::trim) != Some(header) {
            return Err(TrainError::BadRun {
                path: path.into(),
                msg: format!("is not a results table: expected the header {header}"),
            });
        }
        let rows = lines
            .filter(|l| !l.trim().is_empty())
            .enumerate()
            .map(|(i, l)| {
                let row: Result<Vec<f64>, _> = l.split(',').map(|v| v.trim().parse::<f64>()).collect();
                match row {
                    Ok(r) if r.len() == head.len() => Ok(r),
                    _ => Err(TrainError::BadRun { path: path.into(), msg: format!("row {} is malformed", i + 2) }),
                }
            })
            .collect::<Result<_, _>>()?;
        Ok(Table { header: head, rows })
    }

    fn write(&self, path: &Path) -> Result<(), TrainError> {
        let mut out = self.header.join(",") + "\n";
        for r in &self.rows {
            out += &r.iter().map(|v| format!("{v}")).collect::<Vec<_>>().join(",");
            out += "\n";
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(TrainError::io(dir, "cannot create"))?;
        }
        ae_core::atomic::write_bytes(path, out.as_bytes()).map_err(TrainError::io(path, "cannot write"))
    }

    /// Replaces the row with the same first `key` values, or appends; then
    /// sorts by column `by` (ascending or descending).
    fn upsert(&mut self, row: Vec<f64>, key: usize, by: usize, descending: bool) {
        self.rows.retain(|r| r[..key] != row[..key]);
        self.rows.push(row);
        self.rows.sort_by(|a, b| {
            let o = a[by].total_cmp(&b[by]);
            if descending {
                o.reverse()
            } else {
                o
            }
        });
    }
}

pub fn append_autoencoder(
    path: &Path,
    m: &AutoencoderConfig,
    s: &TrainSettings,
    secs: f64,
    last: &EpochRecord,
) -> Result<(), TrainError> {
    let mut t = Table::read(path, AE_HEADER)?;
    let row = vec![
        m.layers as f64,
        m.filter_size as f64,
        m.filters as f64,
        s.epochs as f64,
        s.batch_size as f64,
        secs,
        last.loss,
        last.val_loss,
    ];
    t.upsert(row, 5, 7, false);
    t.write(path)
}

pub fn append_classifier(
    path: &Path,
    m: &ClassifierConfig,
    s: &TrainSettings,
    secs: f64,
    last: &EpochRecord,
) -> Result<(), TrainError> {
    let mut t = Table::read(path, CLF_HEADER)?;
    let row = vec![
        m.encoder.layers as f64,
        m.fc_units as f64,
        (s.frozen_epochs + s.epochs) as f64,
        s.batch_size as f64,
        secs,
        last.loss,
        last.val_loss,
        last.accuracy.unwrap_or(0.0),
        last.val_accuracy.unwrap_or(0.0),
    ];
    t.upsert(row, 4, 8, true);
    t.write(path)
}
