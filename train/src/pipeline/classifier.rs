use std::path::Path;

use tch::nn::VarStore;

use crate::data;
use crate::dataset::DatasetInfo;
use crate::error::TrainError;
use crate::fallible::torch;
use crate::figures;
use crate::fit::{EpochFigure, Objective, Stage, Trainer};
use crate::model::ClassifierConfig;
use crate::run_dir::{sha256_file, ModelConfig, RunConfig, RunDir};
use crate::table;
use crate::test_report;
use ae_core::folder::{FolderError, FolderOptions};
use ae_core::idx::Images;

use ae_core::interrupt;

use super::job::{after_training, best_and_stop, set_threads, stop_if_interrupted, ClassifierJob, Outcome, PRODUCER};

pub fn train_classifier(job: &ClassifierJob) -> Result<Outcome, TrainError> {
    let _checked = interrupt::Checked::begin();
    let t = &job.training;
    t.validate()?;
    let ae_run = RunDir::open(&job.autoencoder)?;
    let ae_cfg = ae_run.read_config()?;
    let ae_cfg_fingerprint = ae_cfg.fingerprint();
    let ModelConfig::Autoencoder { model: encoder } = ae_cfg.model else {
        return Err(TrainError::Invalid(format!(
            "{}: is a {} run, expected an autoencoder run (--autoencoder)",
            job.autoencoder.display(),
            ae_cfg.model.kind()
        )));
    };
    // The encoder's input decides how pictures are read.
    let input = encoder.input;
    let folder = FolderOptions {
        channels: Some(job.common.folder.channels.unwrap_or(input.channels)),
        size: Some(job.common.folder.size.unwrap_or((input.height, input.width))),
    };
    let set = data::load(&job.images, job.labels.as_deref(), folder, data::Sample::of(&t.settings).into(), true)?;
    let images = &set.images;
    if (images.channels, images.rows, images.cols) != (input.channels, input.height, input.width) {
        return Err(TrainError::Invalid(format!(
            "{}: images are {}×{}×{}, but the encoder in {} takes {}×{}×{} (channels × height × width)",
            job.images.display(),
            images.channels,
            images.rows,
            images.cols,
            job.autoencoder.display(),
            input.channels,
            input.height,
            input.width
        )));
    }
    let labels = set.labels.clone().expect("a classifier's data set has labels");
    let classes = match &set.classes {
        Some(c) => c.len(),
        None => labels.iter().copied().max().map(|m| m as usize + 1).unwrap_or(0),
    };
    let test = job.test.as_ref().map(|(ti, tl)| test_set(ti, tl.as_deref(), folder, &set, classes)).transpose()?;
    let model = ClassifierConfig { encoder, fc_units: t.fc_units, classes, dropout: t.dropout };
    model.validate()?;
    let class_names = class_names(job, &set, classes)?;
    // The encoder starts from the autoencoder's best epoch, the weights
    // `train export` exports for it.
    let ae_weights = ae_run.best_file();
    let cfg = RunConfig {
        model: ModelConfig::Classifier {
            model: model.clone(),
            class_names: class_names.clone(),
            autoencoder_run: std::fs::canonicalize(&ae_run.path)
                .map_err(TrainError::io(&ae_run.path, "cannot resolve"))?,
            autoencoder_sha256: sha256_file(&ae_run.file(ae_weights))?,
            autoencoder_weights: Some(ae_weights.to_string()),
        },
        train: t.settings.clone(),
        dataset: set.info.clone(),
        producer: PRODUCER.into(),
    };
    let (run, resuming) = RunDir::prepare(&job.common.out, &cfg, job.common.reuse)?;
    let s = &t.settings;
    set_threads(s);
    tch::manual_seed(s.seed as i64);
    let device = job.common.device;
    let data = data::split(images, Some(&labels), s.val_split, s.seed, device)?;
    let mut vs = VarStore::new(device);
    let clf = model.init(&vs.root());
    // The encoder starts from the autoencoder's trained weights.
    ae_run.weights(ae_weights, &ae_cfg_fingerprint, device)?.copy_into(&mut vs, "encoder.")?;

    if !job.common.quiet {
        println!("{}", clf.summary(s.frozen_epochs > 0).render());
        println!("{}", s.precision.describe());
    }
    let objective = Objective::classifier(t.loss, s.label_smoothing);
    let mut trainer = Trainer::new(vs, &run, &cfg, &data, objective, job.common.quiet);
    if resuming {
        trainer.resume()?;
    } else {
        run.write_config(&cfg)?;
        crate::fault::point("config-written", 1);
    }
    trainer.log_to_tensorboard(job.common.tensorboard, &cfg, EpochFigure::Confusion(class_names.clone()))?;
    trainer.show_augmentation()?;
    let frozen = s.frozen_epochs;
    let stages = [
        Stage { name: "(encoder frozen)", epochs: frozen, lr: s.lr, frozen: Some("encoder.") },
        Stage { name: "(fine-tuning)", epochs: s.epochs, lr: s.finetune_lr(), frozen: None },
    ];
    trainer.run(&stages, &clf)?;
    let (last, best, train_seconds) = trainer.outcome()?;
    // What follows (test report, export) is about the kept weights.
    trainer.restore_best()?;
    // Stage 2's first epoch (early stopping may have ended stage 1 sooner).
    let fine_tuning_from = if frozen > 0 { trainer.stage_starts.get(1).copied() } else { None };
    let finish = || -> Result<Option<f64>, TrainError> {
        stop_if_interrupted(&run, &last)?;
        figures::plot_history(&run, &trainer.history, true, fine_tuning_from)?;
        let test_accuracy = match &test {
            Some((timg, tlab, tinfo)) => {
                // Predicting reads the model's output back: a libtorch sync point.
                let measured = test_report::Measured { epoch: best.epoch, config_sha256: cfg.fingerprint() };
                let test = test_report::TestSet { images: timg, labels: &tlab[..], info: tinfo };
                Some(torch(|| {
                    test_report::write(&run, &clf, test, &class_names, &measured, device, job.common.quiet)
                })??)
            }
            None => None,
        };
        stop_if_interrupted(&run, &last)?;
        if let Some(path) = &job.common.table {
            table::append_classifier(path, &model, s, train_seconds, &best)?;
        }
        Ok(test_accuracy)
    };
    let test_accuracy = finish().map_err(after_training(&run, &last))?;
    trainer.finish_log().map_err(after_training(&run, &last))?;
    let stopped_early = trainer.stopped_early;
    if !job.common.quiet {
        println!(
            "classifier {} FC{}: val_accuracy {:.4}{} after {} epochs{}, {:.1}s training; run in {}",
            model.encoder.tag(),
            model.fc_units,
            last.val_accuracy.unwrap_or(0.0),
            test_accuracy.map(|a| format!(", test accuracy {a:.4}")).unwrap_or_default(),
            last.epoch,
            best_and_stop(&best, &last, stopped_early),
            train_seconds,
            run.path.display()
        );
    }
    Ok(Outcome { run: run.path.clone(), last, best, stopped_early, train_seconds, test_accuracy })
}

/// Class names from `--class-names`: a file with one name per line (blank
/// lines skipped), or a comma-separated list (`ae_core::class_names`).
pub fn parse_class_names(spec: &str) -> Result<Vec<String>, TrainError> {
    use ae_core::class_names::{parse, ClassNamesError};
    match parse(spec) {
        Ok(c) => Ok(c.names),
        Err(ClassNamesError::Read { path, source }) => {
            Err(TrainError::io(&path, "cannot read the class names")(source))
        }
        Err(ClassNamesError::Invalid(msg)) => Err(TrainError::Invalid(msg)),
    }
}

/// The test set (`--test-images`, `--test-labels`): of the training set's
/// kind (both folders with the same classes, or both IDX), its images the
/// training images' size, its labels among the training labels' classes.
fn test_set(
    ti: &Path,
    tl: Option<&Path>,
    folder: FolderOptions,
    set: &data::Dataset,
    classes: usize,
) -> Result<(Images, Vec<u8>, DatasetInfo), TrainError> {
    let tset = data::load(ti, tl, folder, data::Take::All, true)?;
    match (&set.classes, &tset.classes) {
        (Some(ours), Some(theirs)) if ours != theirs => {
            return Err(FolderError::ClassesDiffer {
                path: ti.to_path_buf(),
                ours: theirs.clone(),
                theirs: ours.clone(),
            }
            .into())
        }
        (Some(_), None) | (None, Some(_)) => {
            return Err(TrainError::Invalid(format!(
                "{}: the test set must be of the training set's kind (both image folders, or both IDX with labels)",
                ti.display()
            )))
        }
        _ => {}
    }
    let timg = tset.images;
    if (timg.channels, timg.rows, timg.cols) != (set.images.channels, set.images.rows, set.images.cols) {
        return Err(TrainError::Invalid(format!(
            "{}: test images are {}×{}×{}, expected {}×{}×{} like the training images",
            ti.display(),
            timg.channels,
            timg.rows,
            timg.cols,
            set.images.channels,
            set.images.rows,
            set.images.cols
        )));
    }
    let tlab = tset.labels.expect("labels checked");
    if let Some(&bad) = tlab.iter().find(|&&l| l as usize >= classes) {
        return Err(TrainError::Invalid(format!(
            "{}: label {bad} is not one of the {classes} classes of the training labels",
            tl.unwrap_or(ti).display()
        )));
    }
    Ok((timg, tlab, tset.info))
}

/// The class names: an image folder's sub-folders, else `--class-names`
/// (as many as the labels' classes), else the label values.
fn class_names(job: &ClassifierJob, set: &data::Dataset, classes: usize) -> Result<Vec<String>, TrainError> {
    match (&job.class_names, &set.classes) {
        (Some(_), Some(_)) => Err(TrainError::Invalid(format!(
            "{}: an image folder's classes are named by its folders; drop --class-names",
            job.images.display()
        ))),
        (None, Some(folders)) => Ok(folders.clone()),
        (Some(names), None) if names.len() != classes => Err(TrainError::Invalid(format!(
            "--class-names gives {} names, but the labels in {} have {classes} classes (0–{})",
            names.len(),
            job.labels.as_deref().unwrap_or(&job.images).display(),
            classes.saturating_sub(1)
        ))),
        (Some(names), None) => Ok(names.clone()),
        (None, None) => Ok((0..classes).map(|c| c.to_string()).collect()),
    }
}
