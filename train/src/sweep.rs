//! The reference's hyperparameter exploration: around a base configuration,
//! change one hyperparameter at a time, train, tabulate, and draw one graph
//! per varied hyperparameter (final losses — and accuracies — against its
//! values), named like the reference's (`L4_FS3_FLx_E100_B64.png`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use infer::figure::{self, Series};

use crate::cli::{Network, SweepArgs, SweepBase};
use crate::error::TrainError;
use crate::fit::Objective;
use crate::pipeline::{self, AutoencoderJob, ClassifierJob, Common, Outcome};

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

/// One configuration: every hyperparameter's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Point {
    pub layers: usize,
    pub filter_size: usize,
    pub filters: usize,
    pub fc_units: usize,
    pub epochs: usize,
    pub batch_size: usize,
}

impl Point {
    pub fn get(&self, p: Param) -> usize {
        match p {
            Param::Layers => self.layers,
            Param::FilterSize => self.filter_size,
            Param::Filters => self.filters,
            Param::FcUnits => self.fc_units,
            Param::Epochs => self.epochs,
            Param::BatchSize => self.batch_size,
        }
    }

    pub fn with(mut self, p: Param, v: usize) -> Point {
        match p {
            Param::Layers => self.layers = v,
            Param::FilterSize => self.filter_size = v,
            Param::Filters => self.filters = v,
            Param::FcUnits => self.fc_units = v,
            Param::Epochs => self.epochs = v,
            Param::BatchSize => self.batch_size = v,
        }
        self
    }

    /// The reference's name, with `x` for the varied hyperparameter.
    pub fn name(&self, network: Network, varied: Option<Param>) -> String {
        let f = |p: Param| if varied == Some(p) { "x".to_string() } else { self.get(p).to_string() };
        match network {
            Network::Autoencoder => format!(
                "L{}_FS{}_FL{}_E{}_B{}",
                f(Param::Layers),
                f(Param::FilterSize),
                f(Param::Filters),
                f(Param::Epochs),
                f(Param::BatchSize)
            ),
            Network::Classifier => {
                format!("L{}_FC{}_E{}_B{}", self.layers, f(Param::FcUnits), f(Param::Epochs), f(Param::BatchSize))
            }
        }
    }
}

/// The files an exploration reads.
#[derive(Debug, Clone)]
pub struct Files {
    pub images: PathBuf,
    pub labels: PathBuf,
    pub test_images: Option<PathBuf>,
    pub test_labels: Option<PathBuf>,
    pub autoencoder: Option<PathBuf>,
}

/// Trains configurations for one network and keeps what they gave.
pub struct Explorer {
    pub network: Network,
    pub base: Point,
    pub args: SweepBase,
    pub dir: PathBuf,
    pub images: PathBuf,
    pub labels: PathBuf,
    pub test: Option<(PathBuf, PathBuf)>,
    pub autoencoder: Option<PathBuf>,
    /// Results by varied parameter: (value, outcome).
    pub results: BTreeMap<Param, Vec<(usize, Outcome)>>,
    pub last: Option<Outcome>,
}

impl Explorer {
    /// `files` are the training files, the explicit test files (else the
    /// `t10k-…` companions of the training files; classifiers only) and the
    /// autoencoder run a classifier builds on.
    pub fn new(network: Network, args: SweepBase, dir: PathBuf, files: Files) -> Result<Explorer, TrainError> {
        let Files { images, labels, test_images, test_labels, autoencoder } = files;
        let test = match crate::cli::test_pair(&images, &labels, &test_images, &test_labels) {
            (Some(i), Some(l)) if network == Network::Classifier => Some((i, l)),
            _ => None,
        };
        let p = args.common.preset.values();
        let mut base = Point {
            layers: args.base_layers.unwrap_or(p.layers),
            filter_size: args.base_filter_size.unwrap_or(p.filter_size),
            filters: args.base_filters.unwrap_or(p.filters),
            fc_units: args.base_fc_units.unwrap_or(p.fc_units),
            epochs: args.common.epochs.unwrap_or(if network == Network::Autoencoder {
                p.ae_epochs
            } else {
                p.clf_epochs
            }),
            batch_size: args.common.batch_size.unwrap_or(if network == Network::Autoencoder {
                p.ae_batch
            } else {
                p.clf_batch
            }),
        };
        if network == Network::Classifier {
            let ae = autoencoder
                .as_ref()
                .ok_or_else(|| TrainError::Invalid("a classifier needs --autoencoder RUN_DIR".into()))?;
            let cfg = crate::run::RunDir::open(ae)?.read_config()?;
            base.layers = cfg.model.autoencoder().layers;
        }
        Ok(Explorer {
            network,
            base,
            args,
            dir,
            images,
            labels,
            test,
            autoencoder,
            results: BTreeMap::new(),
            last: None,
        })
    }

    fn common(&self, point: &Point, table: &str) -> Common {
        Common {
            out: self.dir.join(format!("{}-{}", self.kind(), point.name(self.network, None))),
            device: self.args.common.device,
            quiet: self.args.common.quiet,
            resume: false,
            force: true,
            table: Some(self.dir.join(table)),
        }
    }

    fn kind(&self) -> &'static str {
        match self.network {
            Network::Autoencoder => "autoencoder",
            Network::Classifier => "classifier",
        }
    }

    /// Trains one configuration.
    pub fn train(&mut self, point: Point) -> Result<Outcome, TrainError> {
        let c = &self.args.common;
        let pv = c.preset.values();
        let outcome = match self.network {
            Network::Autoencoder => {
                let settings = crate::run::TrainSettings {
                    epochs: point.epochs,
                    frozen_epochs: 0,
                    batch_size: point.batch_size,
                    optimizer: c.optimizer.unwrap_or(pv.ae_optimizer),
                    lr: c.lr.unwrap_or(pv.ae_lr),
                    finetune_lr: None,
                    cosine: c.cosine.unwrap_or(pv.ae_cosine),
                    seed: c.seed,
                    val_split: c.val_split,
                    limit: c.limit,
                    threads: c.threads,
                    loss: None,
                    augment: c.augment.unwrap_or(0),
                };
                pipeline::train_autoencoder(&AutoencoderJob {
                    images: self.images.clone(),
                    layers: point.layers,
                    filter_size: point.filter_size,
                    filters: point.filters,
                    settings,
                    common: self.common(&point, "loss_values.csv"),
                })?
            }
            Network::Classifier => {
                let settings = crate::run::TrainSettings {
                    epochs: point.epochs,
                    frozen_epochs: pv.frozen_epochs.min(point.epochs),
                    batch_size: point.batch_size,
                    optimizer: c.optimizer.unwrap_or(pv.clf_optimizer),
                    lr: c.lr.unwrap_or(pv.clf_lr),
                    finetune_lr: Some(pv.finetune_lr),
                    cosine: c.cosine.unwrap_or(pv.clf_cosine),
                    seed: c.seed,
                    val_split: c.val_split,
                    limit: c.limit,
                    threads: c.threads,
                    loss: Some("crossentropy".into()),
                    augment: c.augment.unwrap_or(pv.clf_augment),
                };
                pipeline::train_classifier(&ClassifierJob {
                    autoencoder: self.autoencoder.clone().expect("checked in new"),
                    images: self.images.clone(),
                    labels: self.labels.clone(),
                    test_images: self.test.as_ref().map(|t| t.0.clone()),
                    test_labels: self.test.as_ref().map(|t| t.1.clone()),
                    fc_units: point.fc_units,
                    objective: Objective::CrossEntropy,
                    settings,
                    common: self.common(&point, "classification_loss_values.csv"),
                })?
            }
        };
        self.last = Some(outcome.clone());
        Ok(outcome)
    }

    /// Trains `base` with `param` set to `value` and records it.
    pub fn vary(&mut self, param: Param, value: usize) -> Result<Outcome, TrainError> {
        let outcome = self.train(self.base.with(param, value))?;
        let list = self.results.entry(param).or_default();
        list.retain(|(v, _)| *v != value);
        list.push((value, outcome.clone()));
        list.sort_by_key(|(v, _)| *v);
        Ok(outcome)
    }

    /// One graph per varied hyperparameter; returns the files written.
    pub fn graphs(&self) -> Result<Vec<PathBuf>, TrainError> {
        let mut files = Vec::new();
        std::fs::create_dir_all(&self.dir).map_err(|e| TrainError::Io {
            path: self.dir.clone(),
            what: "cannot create".into(),
            msg: e.to_string(),
        })?;
        for (param, list) in &self.results {
            let name = self.base.name(self.network, Some(*param));
            let times =
                list.iter().map(|(v, o)| format!("{v}: {:.0}s", o.train_seconds)).collect::<Vec<_>>().join(", ");
            let title = format!("{name} — training time {times}");
            let pts = |f: &dyn Fn(&Outcome) -> Option<f64>| {
                list.iter().filter_map(|(v, o)| f(o).map(|y| (*v as f64, y))).collect::<Vec<_>>()
            };
            let path = self.dir.join(format!("{name}.png"));
            let write_err = |p: &Path| {
                let p = p.to_path_buf();
                move |e: std::io::Error| TrainError::Io {
                    path: p.clone(),
                    what: "cannot write".into(),
                    msg: e.to_string(),
                }
            };
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
            )
            .map_err(write_err(&path))?;
            files.push(path);
            if self.network == Network::Classifier {
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
                )
                .map_err(write_err(&path))?;
                files.push(path);
            }
        }
        Ok(files)
    }
}

pub fn run(args: &SweepArgs) -> Result<(), TrainError> {
    let mut varied: Vec<(Param, &Vec<usize>)> = vec![
        (Param::Layers, &args.layers),
        (Param::FilterSize, &args.filter_size),
        (Param::Filters, &args.filters),
        (Param::FcUnits, &args.fc_units),
        (Param::Epochs, &args.epochs_values),
        (Param::BatchSize, &args.batch_sizes),
    ];
    varied.retain(|(p, v)| !v.is_empty() && Param::of(args.network).contains(p));
    let given: Vec<Param> = [
        (Param::Layers, &args.layers),
        (Param::FilterSize, &args.filter_size),
        (Param::Filters, &args.filters),
        (Param::FcUnits, &args.fc_units),
    ]
    .iter()
    .filter(|(p, v)| !v.is_empty() && !Param::of(args.network).contains(p))
    .map(|(p, _)| *p)
    .collect();
    if let Some(p) = given.first() {
        return Err(TrainError::Invalid(
            format!("a {:?} sweep cannot vary {}", args.network, p.label()).to_lowercase(),
        ));
    }
    if varied.is_empty() {
        return Err(TrainError::Invalid(
            "nothing to sweep: give at least one list of values, e.g. --layers 3,4,5".into(),
        ));
    }
    let files = Files {
        images: args.images.clone(),
        labels: args.labels.clone(),
        test_images: None,
        test_labels: None,
        autoencoder: args.autoencoder.clone(),
    };
    let mut ex = Explorer::new(args.network, args.base.clone(), args.dir.clone(), files)?;
    for (param, values) in varied {
        for &v in values {
            if !args.base.common.quiet {
                println!("== {} = {v}", param.label());
            }
            ex.vary(param, v)?;
        }
    }
    for f in ex.graphs()? {
        println!("graph {}", f.display());
    }
    let table = if args.network == Network::Autoencoder { "loss_values.csv" } else { "classification_loss_values.csv" };
    println!("table {}", args.dir.join(table).display());
    Ok(())
}
