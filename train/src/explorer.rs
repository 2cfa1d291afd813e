//! The reference's hyperparameter exploration, shared by `sweep` and
//! `explore`: around a base configuration, change one hyperparameter at a
//! time, train, tabulate, and draw one graph per varied hyperparameter
//! (final losses — and accuracies — against its values), named like the
//! reference's (`L4_FS3_FLx_E100_B64.png`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use ae_core::figure::{self, Series};

use crate::config::{AutoencoderTraining, ClassifierTraining, Network, TrainSettings};
use crate::error::TrainError;
use crate::pipeline::{self, AutoencoderJob, ClassifierJob, Common, Outcome};
use crate::run_dir::{Reuse, RunDir};
use crate::table::{AE_TABLE, CLF_TABLE};
use crate::tensorboard::run_log::TensorBoard;

/// A hyperparameter that can be varied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Param {
    Layers,
    FilterSize,
    Filters,
    FcUnits,
    Epochs,
    BatchSize,
}

impl Param {
    pub fn label(self) -> &'static str {
        match self {
            Param::Layers => "Layers",
            Param::FilterSize => "Filter_Size",
            Param::Filters => "Filters/Layer",
            Param::FcUnits => "Fc_units",
            Param::Epochs => "Epochs",
            Param::BatchSize => "Batch_Size",
        }
    }

    /// The hyperparameters a network has, in menu order.
    pub fn of(network: Network) -> &'static [Param] {
        match network {
            Network::Autoencoder => {
                &[Param::Layers, Param::FilterSize, Param::Filters, Param::Epochs, Param::BatchSize]
            }
            Network::Classifier => &[Param::FcUnits, Param::Epochs, Param::BatchSize],
        }
    }
}

/// One configuration of the network being explored: the complete training.
#[derive(Debug, Clone, PartialEq)]
pub enum Point {
    Autoencoder(AutoencoderTraining),
    /// `layers`: the encoder's, read from the autoencoder run (for names).
    Classifier {
        layers: usize,
        training: ClassifierTraining,
    },
}

impl Point {
    pub fn network(&self) -> Network {
        match self {
            Point::Autoencoder(_) => Network::Autoencoder,
            Point::Classifier { .. } => Network::Classifier,
        }
    }

    fn settings(&self) -> &TrainSettings {
        match self {
            Point::Autoencoder(t) => &t.settings,
            Point::Classifier { training, .. } => &training.settings,
        }
    }

    pub fn get(&self, p: Param) -> usize {
        match (self, p) {
            (Point::Autoencoder(t), Param::Layers) => t.architecture.layers,
            (Point::Classifier { layers, .. }, Param::Layers) => *layers,
            (Point::Autoencoder(t), Param::FilterSize) => t.architecture.filter_size,
            (Point::Autoencoder(t), Param::Filters) => t.architecture.filters,
            (Point::Classifier { training, .. }, Param::FcUnits) => training.fc_units,
            (_, Param::Epochs) => self.settings().epochs,
            (_, Param::BatchSize) => self.settings().batch_size,
            (point, p) => unreachable!("a {} has no {}", point.network(), p.label()),
        }
    }

    /// The point with `p` set to `v` (`p` must be one of [`Param::of`] its network).
    pub fn with(mut self, p: Param, v: usize) -> Point {
        match (&mut self, p) {
            (Point::Autoencoder(t), Param::Layers) => t.architecture.layers = v,
            (Point::Autoencoder(t), Param::FilterSize) => t.architecture.filter_size = v,
            (Point::Autoencoder(t), Param::Filters) => t.architecture.filters = v,
            (Point::Autoencoder(t), Param::Epochs) => t.settings.epochs = v,
            (Point::Autoencoder(t), Param::BatchSize) => t.settings.batch_size = v,
            (Point::Classifier { training, .. }, Param::FcUnits) => training.fc_units = v,
            (Point::Classifier { training: t, .. }, Param::Epochs) => {
                // Fewer epochs than the frozen stage: the frozen stage shrinks.
                t.settings.epochs = v;
                t.settings.frozen_epochs = t.settings.frozen_epochs.min(v);
            }
            (Point::Classifier { training, .. }, Param::BatchSize) => training.settings.batch_size = v,
            (point, p) => unreachable!("a {} has no {}", point.network(), p.label()),
        }
        self
    }

    /// The reference's name, with `x` for the varied hyperparameter.
    pub fn name(&self, varied: Option<Param>) -> String {
        let f = |p: Param| if varied == Some(p) { "x".to_string() } else { self.get(p).to_string() };
        match self {
            Point::Autoencoder(_) => format!(
                "L{}_FS{}_FL{}_E{}_B{}",
                f(Param::Layers),
                f(Param::FilterSize),
                f(Param::Filters),
                f(Param::Epochs),
                f(Param::BatchSize)
            ),
            Point::Classifier { layers, .. } => {
                format!("L{layers}_FC{}_E{}_B{}", f(Param::FcUnits), f(Param::Epochs), f(Param::BatchSize))
            }
        }
    }
}

/// The files an exploration reads.
#[derive(Debug, Clone)]
pub struct Files {
    pub images: PathBuf,
    pub labels: PathBuf,
    /// Classifiers: the test set to report on.
    pub test: Option<(PathBuf, PathBuf)>,
    /// Classifiers: the autoencoder run to build on.
    pub autoencoder: Option<PathBuf>,
}

/// The base training an exploration varies.
#[derive(Debug, Clone)]
pub enum Base {
    Autoencoder(AutoencoderTraining),
    Classifier(ClassifierTraining),
}

/// Everything an exploration (or a sweep) needs.
#[derive(Debug, Clone)]
pub struct Plan {
    pub base: Base,
    pub files: Files,
    /// Where runs, tables and graphs go.
    pub dir: PathBuf,
    pub device: tch::Device,
    pub quiet: bool,
    /// Each run's TensorBoard log (`None`: none).
    pub tensorboard: Option<TensorBoard>,
}

/// Trains configurations for one network and keeps what they gave.
#[derive(Debug)]
pub struct Explorer {
    pub base: Point,
    pub files: Files,
    pub dir: PathBuf,
    device: tch::Device,
    quiet: bool,
    tensorboard: Option<TensorBoard>,
    /// Results by varied parameter: (value, outcome).
    pub results: BTreeMap<Param, Vec<(usize, Outcome)>>,
    pub last: Option<Outcome>,
}

impl Explorer {
    pub fn new(plan: Plan) -> Result<Explorer, TrainError> {
        let Plan { base, files, dir, device, quiet, tensorboard } = plan;
        let base = match base {
            Base::Autoencoder(t) => Point::Autoencoder(t),
            Base::Classifier(training) => {
                let ae = files
                    .autoencoder
                    .as_ref()
                    .ok_or_else(|| TrainError::Invalid("a classifier needs --autoencoder RUN_DIR".into()))?;
                let layers = RunDir::open(ae)?.read_config()?.model.autoencoder().layers;
                Point::Classifier { layers, training }
            }
        };
        Ok(Explorer { base, files, dir, device, quiet, tensorboard, results: BTreeMap::new(), last: None })
    }

    pub fn network(&self) -> Network {
        self.base.network()
    }

    fn common(&self, point: &Point, table: &str) -> Common {
        Common {
            out: self.dir.join(format!("{}-{}", point.network(), point.name(None))),
            device: self.device,
            quiet: self.quiet,
            reuse: Reuse::Overwrite,
            table: Some(self.dir.join(table)),
            folder: Default::default(),
            tensorboard: self.tensorboard,
        }
    }

    /// Trains one configuration.
    pub fn train(&mut self, point: &Point) -> Result<Outcome, TrainError> {
        let outcome = match point {
            Point::Autoencoder(training) => pipeline::train_autoencoder(&AutoencoderJob {
                images: self.files.images.clone(),
                normalize: Default::default(),
                training: training.clone(),
                common: self.common(point, AE_TABLE),
            })?,
            Point::Classifier { training, .. } => pipeline::train_classifier(&ClassifierJob {
                autoencoder: self.files.autoencoder.clone().expect("checked in new"),
                images: self.files.images.clone(),
                labels: Some(self.files.labels.clone()),
                test: self.files.test.clone().map(|(i, l)| (i, Some(l))),
                class_names: None,
                training: training.clone(),
                common: self.common(point, CLF_TABLE),
            })?,
        };
        self.last = Some(outcome.clone());
        Ok(outcome)
    }

    /// Trains `base` with `param` set to `value` and records it.
    pub fn vary(&mut self, param: Param, value: usize) -> Result<Outcome, TrainError> {
        let outcome = self.train(&self.base.clone().with(param, value))?;
        let list = self.results.entry(param).or_default();
        list.retain(|(v, _)| *v != value);
        list.push((value, outcome.clone()));
        list.sort_by_key(|(v, _)| *v);
        Ok(outcome)
    }

    /// One graph per varied hyperparameter; returns the files written.
    pub fn graphs(&self) -> Result<Vec<PathBuf>, TrainError> {
        let mut files = Vec::new();
        std::fs::create_dir_all(&self.dir).map_err(TrainError::io(&self.dir, "cannot create"))?;
        for (param, list) in &self.results {
            let name = self.base.name(Some(*param));
            let times =
                list.iter().map(|(v, o)| format!("{v}: {:.0}s", o.train_seconds)).collect::<Vec<_>>().join(", ");
            let title = format!("{name} — training time {times}");
            let pts = |f: &dyn Fn(&Outcome) -> Option<f64>| {
                list.iter().filter_map(|(v, o)| f(o).map(|y| (*v as f64, y))).collect::<Vec<_>>()
            };
            let path = self.dir.join(format!("{name}.png"));
            figure::line_chart(
                &path,
                &title,
                param.label(),
                "loss",
                &[
                    Series { name: "loss".into(), points: pts(&|o| Some(o.last.loss)) },
                    Series { name: "val_loss".into(), points: pts(&|o| Some(o.last.val_loss)) },
                ],
                true,
                &figure::XAxis::default(),
            )
            .map_err(TrainError::io(&path, "cannot write"))?;
            files.push(path);
            if self.network() == Network::Classifier {
                let path = self.dir.join(format!("{name}_accuracy.png"));
                figure::line_chart(
                    &path,
                    &title,
                    param.label(),
                    "accuracy",
                    &[
                        Series { name: "accuracy".into(), points: pts(&|o| o.last.accuracy) },
                        Series { name: "val_accuracy".into(), points: pts(&|o| o.last.val_accuracy) },
                    ],
                    false,
                    &figure::XAxis::default(),
                )
                .map_err(TrainError::io(&path, "cannot write"))?;
                files.push(path);
            }
        }
        Ok(files)
    }
}
