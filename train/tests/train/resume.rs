//! Resuming and faults: Ctrl-C, kills at random moments and inside checkpoint writes, NaN losses,
//! libtorch failures; every resume bit for bit.

use std::path::Path;
use std::process::Stdio;

use ae_core::idx;
use infer::session::{ModelSession, SessionOptions};
use tch::{nn::VarStore, Device};
use train::checkpoint::Checkpoint;
use train::pipeline;
use train::run_dir::{Reuse, RunDir};

use crate::common::*;

/// `--resume` refuses images that are not the ones the run began on.
#[test]
fn resume_refuses_changed_images() {
    let _g = lock();
    let dir = tempfile::tempdir().unwrap();
    let (file, mut images) = mnist_subset(dir.path(), 400);
    let mut job = ae_job(&dir.path().join("ae"), 1);
    job.images = file.clone();
    pipeline::train_autoencoder(&job).unwrap();
    images.pixels[0] ^= 1;
    idx::write_images(&file, &images, false).unwrap();
    job.common.reuse = Reuse::Resume;
    let e = pipeline::train_autoencoder(&job).unwrap_err();
    assert_eq!(e.exit_code(), 2);
    assert!(e.to_string().contains("the images") && e.to_string().contains("changed since the run began"), "{e}");
}

#[test]
fn resume_reproduces_an_uninterrupted_run() {
    let _g = lock();
    let dir = tempfile::tempdir().unwrap();
    let (full, cut) = (dir.path().join("full"), dir.path().join("cut"));
    // Interrupt after epoch 2's checkpoint, as Ctrl-C would.
    let watch = cut.join("history.csv");
    let watcher = std::thread::spawn(move || loop {
        if std::fs::read_to_string(&watch).map(|t| t.lines().count() >= 3).unwrap_or(false) {
            ae_core::interrupt::set_requested(true);
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    });
    let mut job = ae_job(&cut, 3);
    job.training.settings.batch_size = 8; // many batches: the flag lands mid-epoch
    let mut full_job = ae_job(&full, 3);
    full_job.training.settings.batch_size = 8;
    pipeline::train_autoencoder(&full_job).unwrap();
    let r = pipeline::train_autoencoder(&job);
    watcher.join().unwrap();
    ae_core::interrupt::set_requested(false);
    match r {
        Err(e) => {
            assert_eq!(e.exit_code(), 130);
            assert!(e.to_string().contains("--resume"), "{e}");
        }
        Ok(_) => panic!("the run should have been interrupted"),
    }
    assert_eq!(history_losses(&cut).len(), 2);
    job.common.reuse = Reuse::Resume;
    pipeline::train_autoencoder(&job).unwrap();
    assert_eq!(history_losses(&cut), history_losses(&full));
    let a = Checkpoint::read(&full.join("weights.safetensors"), Device::Cpu).unwrap();
    let b = Checkpoint::read(&cut.join("weights.safetensors"), Device::Cpu).unwrap();
    for (k, t) in &a.tensors {
        assert!(t.equal(&b.tensors[k]), "{k} differs after resume");
    }
}

#[test]
fn sigint_saves_the_last_epoch_and_says_how_to_resume() {
    let _g = lock();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let images = mnist("train-images-idx3-ubyte");
    let mut child = train_bin()
        .args(SIG_ARGS)
        .args(["--epochs", "50", "--images", images.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(|| history_rows(&out) >= 1, 60.0);
    std::thread::sleep(std::time::Duration::from_millis(150)); // mid-epoch
    signal(child.id(), "-INT");
    let status = child.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(130), "{err}");
    assert!(err.contains("--resume") && err.contains("is the last one saved"), "{err}");
    let ckpt = Checkpoint::read(&out.join("weights.safetensors"), Device::Cpu).unwrap();
    assert!(ckpt.epoch >= 1);
    assert_eq!(history_rows(&out), ckpt.epoch);
}

#[test]
fn sigkill_at_random_moments_never_loses_the_run() {
    let _g = lock();
    let dir = tempfile::tempdir().unwrap();
    let (cut, full) = (dir.path().join("cut"), dir.path().join("full"));
    let images = mnist("train-images-idx3-ubyte");
    let epochs = "6";
    let args = |out: &Path, resume: bool| {
        let mut c = train_bin();
        c.args(SIG_ARGS).args([
            "--epochs",
            epochs,
            "--images",
            images.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        // batch_loss points every 5 steps: most kills land after some of
        // an unfinished epoch's points, which a resume must cut.
        c.args(["--tensorboard-every", "5"]);
        c.arg(if resume { "--resume" } else { "--force" });
        c.stdout(Stdio::null()).stderr(Stdio::null());
        c
    };
    let r = run_to_end(&mut args(&full, false), None);
    assert_eq!(r.code, 0, "{}", r.err);
    // Kill at pseudo-random moments (some inside checkpoint writes), resume, repeat.
    let mut rng = train::data::Rng::new(99);
    let mut kills = 0;
    for round in 0..12 {
        let mut child = args(&cut, round > 0).spawn().unwrap();
        // Start-up (reading and hashing MNIST) takes about 0.6 s, an epoch
        // about 0.35 s: most kills land inside the epochs.
        std::thread::sleep(std::time::Duration::from_millis(500 + rng.next_u64() % 1500));
        let done = child.try_wait().unwrap().is_some();
        if !done {
            signal(child.id(), "-KILL");
            kills += 1;
        }
        let status = child.wait().unwrap();
        let w = cut.join("weights.safetensors");
        if w.exists() {
            let ckpt = Checkpoint::read(&w, Device::Cpu).expect("a loadable checkpoint after every kill");
            let rows = history_rows(&cut);
            assert!(
                rows == ckpt.epoch || rows + 1 == ckpt.epoch,
                "history {rows} rows vs checkpoint epoch {}",
                ckpt.epoch
            );
            if status.success() && ckpt.epoch == 6 {
                break;
            }
        }
    }
    assert!(kills >= 2, "the test killed too rarely ({kills})");
    // Finish, then compare with the uninterrupted run.
    let r = run_to_end(&mut args(&cut, true), None);
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(history_losses(&cut), history_losses(&full));
    tensors_equal(&full.join("weights.safetensors"), &cut.join("weights.safetensors"), "after kills and resumes");
    tensors_equal(&full.join("best.safetensors"), &cut.join("best.safetensors"), "best, after kills and resumes");
    assert_eq!(tensorboard_log(&cut), tensorboard_log(&full), "the event files after kills and resumes");
}

/// A kill landing inside a checkpoint write, at each of its two points
/// (`train::fault`): the run resumes to exactly the uninterrupted weights,
/// and the dead process's temporary file is cleaned up.
#[test]
fn kill_during_checkpoint_write_is_survived() {
    let _g = lock();
    let dir = tempfile::tempdir().unwrap();
    let images = mnist("train-images-idx3-ubyte");
    let args = |out: &Path, extra: &[&str]| {
        let mut c = train_bin();
        c.args(SIG_ARGS).args(["--epochs", "2", "--images", images.to_str().unwrap(), "--out", out.to_str().unwrap()]);
        c.args(extra).stdout(Stdio::null()).stderr(Stdio::null());
        c
    };
    let full = dir.path().join("full");
    let r = run_to_end(&mut args(&full, &["--force"]), None);
    assert_eq!(r.code, 0, "{}", r.err);
    let stale = |d: &Path| {
        std::fs::read_dir(d)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(ae_core::atomic::PARTIAL_SUFFIX))
            .count()
    };
    for (point, saved) in [("checkpoint-before-rename", 1), ("checkpoint-before-history", 2)] {
        let cut = dir.path().join(point);
        let r = run_to_end(args(&cut, &["--force"]).env("TRAIN_FAULT", format!("{point}@2")), None);
        assert_ne!(r.code, 0, "{point}: the fault must kill the process");
        let ckpt = Checkpoint::read(&cut.join("weights.safetensors"), Device::Cpu).unwrap();
        assert_eq!((ckpt.epoch, history_rows(&cut)), (saved, 1), "{point}: checkpoint epoch, history rows");
        if point == "checkpoint-before-rename" {
            assert_eq!(stale(&cut), 1, "the killed write left its temporary file");
        }
        let r = run_to_end(&mut args(&cut, &["--resume"]), None);
        assert_eq!(r.code, 0, "{point}: resume: {}", r.err);
        assert_eq!(stale(&cut), 0, "{point}: stale temporary files are removed");
        assert_eq!(history_losses(&cut), history_losses(&full), "{point}");
        let (a, b) = (
            Checkpoint::read(&full.join("weights.safetensors"), Device::Cpu).unwrap(),
            Checkpoint::read(&cut.join("weights.safetensors"), Device::Cpu).unwrap(),
        );
        for (k, t) in &a.tensors {
            assert!(t.equal(&b.tensors[k]), "{point}: {k} differs after resume");
        }
    }
}

#[test]
fn nan_loss_stops_training_with_the_epoch_named() {
    let _g = lock();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("nan");
    let images = mnist("train-images-idx3-ubyte");
    let (code, _, err) = run(
        &[
            "autoencoder",
            "--images",
            images.to_str().unwrap(),
            "--limit",
            "500",
            "--epochs",
            "3",
            "--lr",
            "1e30",
            "--optimizer",
            "rmsprop",
            "--layers",
            "2",
            "--filters",
            "4",
            "--out",
            out.to_str().unwrap(),
            "--quiet",
        ],
        None,
    );
    assert_eq!(code, 1, "{err}");
    assert_eq!(err.trim_end(), "error: training diverged: the loss became NaN in epoch 1");
    assert!(!out.join("weights.safetensors").exists(), "a diverged epoch is not checkpointed");
}

/// `--dropout` draws from libtorch's generator, which is not checkpointed:
/// each epoch reseeds it from the run's seed and the epoch, so a run
/// resumed after a fine-tuning epoch drops the same units as one that
/// never stopped.
#[test]
fn dropout_resumes_bit_for_bit() {
    let _g = lock();
    let dir = tempfile::tempdir().unwrap();
    let images = mnist("train-images-idx3-ubyte");
    let ae = dir.path().join("ae");
    assert_eq!(train_small(&images, &ae, &["--epochs", "1"], None).0, 0);
    let args = ["--frozen-epochs", "0", "--epochs", "3", "--dropout", "0.5", "--test-images", "none", "--limit", "600"];
    let full = dir.path().join("full");
    let (code, err) = classifier_small(&ae, &full, &args, None);
    assert_eq!(code, 0, "{err}");
    let cut = dir.path().join("cut");
    let (code, _) = classifier_small(&ae, &cut, &args, Some("checkpoint-before-history@2"));
    assert_ne!(code, 0);
    let (code, err) = classifier_small(&ae, &cut, &[&args[..], &["--resume"]].concat(), None);
    assert_eq!(code, 0, "{err}");
    assert_eq!(history_losses(&cut), history_losses(&full));
    tensors_equal(&full.join("weights.safetensors"), &cut.join("weights.safetensors"), "dropout resumed");
}

/// Exit codes: a full disk at a checkpoint, and a libtorch allocation
/// failure (the path a CUDA out-of-memory takes), fail during the work:
/// exit 1, one line, the resume hint, no panic; `--resume` then finishes.
#[test]
fn failures_during_training_exit_1_with_the_resume_hint() {
    let _g = lock();
    let dir = tempfile::tempdir().unwrap();
    let images = mnist("train-images-idx3-ubyte");
    let args = ["--epochs", "2"];
    for (fault, says) in [
        ("disk-full@2", "No space left on device"),
        ("libtorch@2", "libtorch: "),
        // A libtorch error at a read that waits for the device, outside the step.
        ("libtorch-sync@2", "libtorch: "),
    ] {
        let out = dir.path().join(fault);
        let (code, err) = train_small(&images, &out, &args, Some(fault));
        assert_eq!(code, 1, "{fault}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{fault}: one line: {err}");
        assert!(err.contains("epoch 2 failed; epoch 1 is the last one saved") && err.contains("--resume"), "{err}");
        assert!(err.contains(says) && !err.contains("panicked") && !err.contains("backtrace"), "{err}");
        assert_eq!(Checkpoint::read(&out.join("weights.safetensors"), Device::Cpu).unwrap().epoch, 1);
        let (code, err) = train_small(&images, &out, &["--epochs", "2", "--resume"], None);
        assert_eq!(code, 0, "{fault}: {err}");
        assert_eq!(history_rows(&out), 2);
    }
    // A full disk as config.json is written, or as a resumed run rewrites
    // history.csv: a failure during the work (1), not bad input (2, whose
    // help says nothing was written).
    let out = dir.path().join("config");
    let (code, err) = train_small(&images, &out, &args, Some("disk-full@config.json"));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("config.json: cannot write: No space left on device"), "{err}");
    let out = dir.path().join("history");
    assert_eq!(train_small(&images, &out, &["--epochs", "1"], None).0, 0);
    let (code, err) = train_small(&images, &out, &["--epochs", "1", "--resume"], Some("disk-full@history.csv"));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("history.csv: cannot write: No space left on device"), "{err}");
}

/// Killed with the best epoch's checkpoint written but not yet its
/// best.safetensors, with neither written, and at the stopping epoch
/// (checkpoint written, history not): `--resume` ends with the
/// uninterrupted run's history, checkpoint, best epoch and TensorBoard log,
/// value for value. The best file is never ahead of the checkpoint; one
/// that disagrees with the checkpoint's history is refused by export and
/// resume alike.
#[test]
fn resume_after_a_kill_keeps_the_best_epoch_bit_identical() {
    let _g = lock();
    let dir = tempfile::tempdir().unwrap();
    let images = mnist("train-images-idx3-ubyte");
    let full = dir.path().join("full");
    let args = plateau_args(&["--force"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_eq!(train_small(&images, &full, &args, None).0, 0);
    let h = history_of(&full);
    let (stop, best) = (h.len(), h.last().unwrap().best_epoch);
    let resume = plateau_args(&["--resume"]);
    let resume: Vec<&str> = resume.iter().map(String::as_str).collect();
    let export = |run: &Path, out: &Path| {
        run_cmd(&["export", "--run", run.to_str().unwrap(), "--out", out.to_str().unwrap(), "-q"])
    };
    for fault in [
        format!("checkpoint-before-best@{best}"),
        format!("checkpoint-before-rename@{best}"),
        format!("checkpoint-before-history@{stop}"),
    ] {
        let cut = dir.path().join(&fault);
        let (code, _) = train_small(&images, &cut, &args, Some(&fault));
        assert_ne!(code, 0, "{fault}: the fault must kill the process");
        let kept = Checkpoint::read_header(&cut.join("best.safetensors")).unwrap();
        let saved = Checkpoint::read_header(&cut.join("weights.safetensors")).unwrap();
        assert!(
            kept.epoch <= saved.epoch,
            "{fault}: best epoch {} ahead of the checkpoint's {}",
            kept.epoch,
            saved.epoch
        );
        if fault.starts_with("checkpoint-before-best") {
            assert_eq!((kept.epoch < best, saved.epoch), (true, best), "{fault}: the best is the checkpoint's epoch");
            // Exported before the run is resumed, the best epoch comes from the checkpoint.
            let out = dir.path().join("early-export");
            let (code, err) = export(&cut, &out);
            assert_eq!(code, 0, "{err}");
            let m = ModelSession::open(out.join("autoencoder.onnx"), &SessionOptions::default()).unwrap().metadata;
            assert_eq!((m["epoch"].as_str(), m["weights_file"].as_str()), (&*best.to_string(), "weights.safetensors"));
            assert_eq!(m["epoch_selected"], "best (the checkpoint's own epoch)");
        }
        let (code, err) = train_small(&images, &cut, &resume, None);
        assert_eq!(code, 0, "{fault}: {err}");
        assert_eq!(history_losses(&cut), history_losses(&full), "{fault}");
        assert_eq!(
            history_of(&cut).iter().map(|r| r.best_epoch).collect::<Vec<_>>(),
            h.iter().map(|r| r.best_epoch).collect::<Vec<_>>()
        );
        tensors_equal(&full.join("weights.safetensors"), &cut.join("weights.safetensors"), &fault);
        tensors_equal(&full.join("best.safetensors"), &cut.join("best.safetensors"), &fault);
        assert_eq!(tensorboard_log(&cut), tensorboard_log(&full), "{fault}: the event files");
    }
    // A best file of another epoch than the checkpoint's history names (as
    // a nondeterministic redo could have made under the old write order):
    // export and resume refuse it, saying what to do, and write nothing.
    let forged = dir.path().join("forged");
    copy_dir(&full, &forged);
    let cfg = RunDir { path: full.clone() }.read_config().unwrap();
    let vs = VarStore::new(Device::Cpu);
    let _ = cfg.model.autoencoder().init(&vs.root());
    Checkpoint::save_best(&forged.join("best.safetensors"), &cfg.fingerprint(), &vs, &h[..best - 1]).unwrap();
    let out = dir.path().join("forged-export");
    let (code, err) = export(&forged, &out);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&format!("holds epoch {}, but the run's checkpoint names epoch {best} as its best", best - 1)),
        "{err}"
    );
    assert!(err.contains("--resume") && !out.join("autoencoder.onnx").exists(), "{err}");
    let (code, err) = train_small(&images, &forged, &resume, None);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains(&format!("but epoch {best} is the run's best so far")), "{err}");
}
