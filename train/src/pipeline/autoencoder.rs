use tch::nn::VarStore;

use crate::config::Normalize;
use crate::data;
use crate::error::TrainError;
use crate::fallible::torch;
use crate::figures;
use crate::fit::{EpochFigure, Objective, Stage, Trainer};
use crate::model::{InputShape, Normalization};
use crate::run_dir::{ModelConfig, RunConfig, RunDir};
use crate::table;

use ae_core::interrupt;

use super::job::{after_training, best_and_stop, set_threads, stop_if_interrupted, AutoencoderJob, Outcome, PRODUCER};

pub fn train_autoencoder(job: &AutoencoderJob) -> Result<Outcome, TrainError> {
    let _checked = interrupt::Checked::begin();
    let t = &job.training;
    t.validate()?;
    let set = data::load(&job.images, None, job.common.folder, data::Sample::of(&t.settings).into(), false)?;
    let images = &set.images;
    let shape = InputShape { channels: images.channels, height: images.rows, width: images.cols, normalize: None };
    t.architecture
        .with_input(shape)
        .validate()
        .map_err(|e| TrainError::Invalid(format!("{}: {e}", job.images.display())))?;
    let device = job.common.device;
    let data = data::split(images, None, t.settings.val_split, t.settings.seed, device)?;
    // The training split's statistics become part of the model.
    let normalize = match (job.normalize, set.info.folder.is_some()) {
        (Normalize::Dataset, _) | (Normalize::Auto, true) => Some(Normalization::of(&data.train_x)),
        (Normalize::None, _) | (Normalize::Auto, false) => None,
    };
    let model = t.architecture.with_input(InputShape { normalize, ..shape });
    let cfg = RunConfig {
        model: ModelConfig::Autoencoder { model },
        train: t.settings.clone(),
        dataset: set.info.clone(),
        producer: PRODUCER.into(),
    };
    let (run, resuming) = RunDir::prepare(&job.common.out, &cfg, job.common.reuse)?;
    set_threads(&t.settings);
    tch::manual_seed(t.settings.seed as i64);
    let vs = VarStore::new(device);
    let ae = model.init(&vs.root());
    if !job.common.quiet {
        println!("{}", ae.summary().render());
        println!("{}", t.settings.precision.describe());
    }
    let mut trainer = Trainer::new(vs, &run, &cfg, &data, Objective::Reconstruction, job.common.quiet);
    if resuming {
        trainer.resume()?;
    } else {
        run.write_config(&cfg)?;
        crate::fault::point("config-written", 1);
    }
    let figure = EpochFigure::Reconstructions(Box::new(|| figures::reconstruction_grid(&ae, &data, 10)));
    trainer.log_to_tensorboard(job.common.tensorboard, &cfg, figure)?;
    trainer.show_augmentation()?;
    trainer.run(&[Stage::whole(&t.settings)], &ae)?;
    let (last, best, train_seconds) = trainer.outcome()?;
    // What follows (reconstructions, the classifier, export) is about the kept weights.
    trainer.restore_best()?;
    let finish = || -> Result<(), TrainError> {
        stop_if_interrupted(&run, &last)?;
        figures::plot_history(&run, &trainer.history, false, None)?;
        // The grid reads the model's output back: a libtorch sync point.
        torch(|| figures::reconstructions(&run.file("reconstructions.png"), &ae, &data, 10))??;
        stop_if_interrupted(&run, &last)?;
        if let Some(path) = &job.common.table {
            table::append_autoencoder(path, &model, &t.settings, train_seconds, &best)?;
        }
        Ok(())
    };
    finish().map_err(after_training(&run, &last))?;
    trainer.finish_log().map_err(after_training(&run, &last))?;
    let stopped_early = trainer.stopped_early;
    if !job.common.quiet {
        println!(
            "autoencoder {}: val_loss {:.6} after {} epochs{}, {:.1}s training; run in {}",
            model.tag(),
            last.val_loss,
            last.epoch,
            best_and_stop(&best, &last, stopped_early),
            train_seconds,
            run.path.display()
        );
    }
    Ok(Outcome { run: run.path.clone(), last, best, stopped_early, train_seconds, test_accuracy: None })
}
