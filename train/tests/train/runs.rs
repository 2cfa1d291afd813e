//! Whole training runs: what a run holds, reproducibility, samples, image folders, early stopping,
//! TensorBoard, and fresh starts.

use std::path::{Path, PathBuf};
use std::process::Command;

use ae_core::idx;
use infer::session::{Device as OrtDevice, ModelSession, SessionOptions};
use tch::nn::ModuleT;
use tch::{Device, Kind, Tensor};
use train::checkpoint::Checkpoint;
use train::config::{ClassifierTraining, Loss};
use train::pipeline::{self, ClassifierJob};
use train::run_dir::{Reuse, RunDir};

use crate::common::*;

#[test]
fn autoencoder_loss_falls_and_run_is_complete() {
    let _g = lock();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ae");
    let o = pipeline::train_autoencoder(&ae_job(&out, 3)).unwrap();
    let h = history_losses(&out);
    assert_eq!(h.len(), 3);
    assert!(h[2].0 < h[0].0 * 0.8, "training loss should fall: {h:?}");
    assert!(h[2].1 < h[0].1, "validation loss should fall: {h:?}");
    assert_eq!(o.last.epoch, 3);
    for f in ["config.json", "weights.safetensors", "history.csv", "loss.png", "reconstructions.png"] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let png = image::open(out.join("loss.png")).unwrap().to_luma8();
    assert!(png.pixels().any(|p| p.0[0] < 128), "the chart has ink");
}

#[test]
fn classifier_beats_chance_and_reports_on_test_set() {
    let _g = lock();
    let dir = tempfile::tempdir().unwrap();
    let ae = dir.path().join("ae");
    pipeline::train_autoencoder(&ae_job(&ae, 1)).unwrap();
    // A 300-image test set made with the IDX writer.
    let mut test = idx::read_images(mnist("t10k-images-idx3-ubyte")).unwrap();
    test.truncate(300);
    let labels = &idx::read_labels(mnist("t10k-labels-idx1-ubyte")).unwrap()[..300];
    let (ti, tl) = (dir.path().join("ti"), dir.path().join("tl.gz"));
    idx::write_images(&ti, &test, false).unwrap();
    idx::write_labels(&tl, labels, true).unwrap();
    let mut s = settings(2, 32);
    s.frozen_epochs = 1;
    let out = dir.path().join("clf");
    let job = ClassifierJob {
        autoencoder: ae.clone(),
        images: mnist("train-images-idx3-ubyte"),
        labels: Some(mnist("train-labels-idx1-ubyte")),
        test: Some((ti.clone(), Some(tl.clone()))),
        class_names: Some(DIGITS.iter().map(|d| d.to_string()).collect()),
        training: ClassifierTraining { fc_units: 16, dropout: 0.0, loss: Loss::CrossEntropy, settings: s },
        common: common(&out),
    };
    // A name count that does not match the labels is refused before training.
    let three = ClassifierJob { class_names: Some(vec!["a".into(), "b".into(), "c".into()]), ..job.clone() };
    let err = pipeline::train_classifier(&three).unwrap_err().to_string();
    assert!(
        err.starts_with("--class-names gives 3 names, but the labels in ") && err.ends_with("have 10 classes (0–9)"),
        "{err}"
    );
    let o = pipeline::train_classifier(&job).unwrap();
    assert!(o.last.val_accuracy.unwrap() > 0.6, "{:?}", o.last);
    assert!(o.test_accuracy.unwrap() > 0.6, "{:?}", o.test_accuracy);
    let report = std::fs::read_to_string(out.join("test_report.txt")).unwrap();
    assert!(report.contains("weighted avg") && report.contains("confusion matrix"), "{report}");
    assert!(report.contains("       seven "), "the report names the classes: {report}");
    for f in ["accuracy.png", "correct.png", "incorrect.png", "test_metrics.json"] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    // The encoder really came from the autoencoder: stage 1 froze it.
    let ae_w = Checkpoint::read(&ae.join("weights.safetensors"), Device::Cpu).unwrap();
    let clf_w = Checkpoint::read(&out.join("weights.safetensors"), Device::Cpu).unwrap();
    let k = "encoder.0.conv.weight";
    assert_eq!(ae_w.tensors[k].size(), clf_w.tensors[k].size());
    // Stage 2 fine-tuned it, so it moved a little but not far.
    let d = (&ae_w.tensors[k] - &clf_w.tensors[k]).abs().max().double_value(&[]);
    assert!(d > 0.0 && d < 1.0, "fine-tuning moved the encoder by {d}");

    // The report names the test set it measured, and so does the exported figure.
    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("test_metrics.json")).unwrap()).unwrap();
    let test_sha = train::run_dir::sha256_file(&ti).unwrap();
    assert_eq!(metrics["test_set"]["images_sha256"], test_sha.as_str(), "{metrics}");
    assert_eq!(metrics["test_set"]["count"], 300);
    // Exported, the classifier predicts in ONNX Runtime what the run predicted.
    let models = dir.path().join("models");
    let (code, _, err) =
        run(&["export", "--run", out.to_str().unwrap(), "--out", models.to_str().unwrap(), "-q"], None);
    assert_eq!(code, 0, "{err}");
    let m = ModelSession::open(models.join("classifier.onnx"), &SessionOptions::default()).unwrap().metadata;
    assert!(m.contains_key("test_accuracy"), "{m:?}");
    let named = (m["test_images_sha256"].as_str(), m["test_count"].as_str(), m["test_images"].as_str());
    assert_eq!(named, (test_sha.as_str(), "300", ti.file_name().unwrap().to_str().unwrap()));
    let preds = dir.path().join("p.csv");
    let clf_onnx = models.join("classifier.onnx");
    let r = run_to_end(
        Command::new(infer_bin())
            .args(["classify", "-q", "--model"])
            .arg(&clf_onnx)
            .args(["--images".as_ref(), ti.as_os_str(), "--labels".as_ref(), tl.as_os_str()])
            .args(["--predictions".as_ref(), preds.as_os_str()]),
        None,
    );
    assert_eq!(r.code, 0, "{}", r.err);
    let predicted = |p: &Path| -> Vec<String> {
        let mut r = csv::Reader::from_path(p).unwrap();
        let col = r.headers().unwrap().iter().position(|h| h == "predicted").unwrap();
        r.records().map(|row| row.unwrap()[col].to_string()).collect()
    };
    assert_eq!(predicted(&out.join("test_predictions.csv")), predicted(&preds));

    // Its metadata names the weights it came from: each run's best epoch.
    let meta = |model: &Path| -> serde_json::Value {
        let r = run_to_end(Command::new(infer_bin()).args(["info", "--format", "json", "--model"]).arg(model), None);
        serde_json::from_str::<serde_json::Value>(&r.out).unwrap()["metadata"].clone()
    };
    let sha = |p: PathBuf| train::run_dir::sha256_file(&p).unwrap();
    let m = meta(&clf_onnx);
    assert_eq!(m["weights_sha256"], sha(out.join("best.safetensors")).as_str());
    assert_eq!(m["autoencoder_sha256"], sha(ae.join("best.safetensors")).as_str());
    let m = meta(&models.join("encoder.onnx"));
    assert_eq!(m["weights_sha256"], sha(ae.join("best.safetensors")).as_str());
    assert!(m["encoder_weights"].as_str().unwrap().contains("not fine-tuned"), "{m}");
    // The fine-tuned encoder on request, checked against the classifier's.
    let tuned = dir.path().join("tuned");
    let (code, _, err) = run(
        &["export", "--run", out.to_str().unwrap(), "--out", tuned.to_str().unwrap(), "--encoder", "fine-tuned", "-q"],
        None,
    );
    assert_eq!(code, 0, "{err}");
    let m = meta(&tuned.join("encoder.onnx"));
    assert_eq!(m["weights_sha256"], sha(out.join("best.safetensors")).as_str());
    assert!(m["encoder_weights"].as_str().unwrap().contains("(fine-tuned"), "{m}");

    // Retraining the autoencoder under the classifier: export and resume refuse.
    let before = sha(ae.join("best.safetensors"));
    let mut again = ae_job(&ae, 1);
    again.training.settings.seed = 8;
    pipeline::train_autoencoder(&again).unwrap();
    let after = sha(ae.join("best.safetensors"));
    let (code, _, err) = run(&["export", "--run", out.to_str().unwrap(), "--out", models.to_str().unwrap()], None);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains(&before) && err.contains(&after), "names both hashes: {err}");
    let mut resume = job.clone();
    resume.common.reuse = Reuse::Resume;
    let e = pipeline::train_classifier(&resume).unwrap_err();
    assert_eq!(e.exit_code(), 2);
    assert!(e.to_string().contains("changed since the run began") && e.to_string().contains(&after), "{e}");
}

/// A run made with relative paths exports from any working directory: the
/// config records canonical paths.
#[test]
fn runs_record_canonical_paths() {
    let _g = lock();
    let dir = tempfile::tempdir().unwrap();
    let mut images = idx::read_images(mnist("train-images-idx3-ubyte")).unwrap();
    images.truncate(300);
    idx::write_images(dir.path().join("imgs"), &images, false).unwrap();
    let r = run_to_end(
        train_bin()
            .current_dir(dir.path())
            .args(SIG_ARGS)
            .args(["--epochs", "1", "--images", "imgs", "--out", "run", "--force"]),
        None,
    );
    assert_eq!(r.code, 0, "{}", r.err);
    let cfg = RunDir { path: dir.path().join("run") }.read_config().unwrap();
    assert!(cfg.dataset.images.is_absolute(), "{}", cfg.dataset.images.display());
    let run_dir = dir.path().join("run");
    let models = dir.path().join("models");
    let r = run_to_end(
        train_bin().current_dir("/").args([
            "export",
            "-q",
            "--run",
            run_dir.to_str().unwrap(),
            "--out",
            models.to_str().unwrap(),
        ]),
        None,
    );
    assert_eq!(r.code, 0, "{}", r.err);
}

#[test]
fn same_seed_gives_identical_history() {
    let _g = lock();
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    pipeline::train_autoencoder(&ae_job(&a, 2)).unwrap();
    pipeline::train_autoencoder(&ae_job(&b, 2)).unwrap();
    assert_eq!(history_losses(&a), history_losses(&b));
}

/// The whole toolchain on colour pictures in folders: both networks train
/// on `DIR/<class>/*.png` (3 channels, normalised), export, and `infer`
/// classifies a test folder well above what a colour-blind pipeline gets.
#[test]
fn image_folders_train_export_and_classify_in_colour() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    coloured_shapes(&d.join("train"), 120, 1);
    coloured_shapes(&d.join("test"), 30, 2);
    let p = |s: &str| d.join(s).display().to_string();
    let small = ["--batch-size", "32", "--threads", "2", "--quiet", "--force"];
    let (ae, train_dir) = (p("ae"), p("train"));
    let mut args = vec!["autoencoder", "--images", &train_dir[..], "--epochs", "3", "--out", &ae[..]];
    args.extend(["--layers", "2", "--filters", "8"]);
    args.extend(small);
    let (code, _, err) = run(&args, None);
    assert_eq!(code, 0, "{err}");
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("ae/config.json")).unwrap()).unwrap();
    let input = &cfg["model"]["input"];
    assert_eq!((input["channels"].as_u64(), input["height"].as_u64()), (Some(3), Some(32)), "{input}");
    assert!(input["normalize"]["std"][0].as_f64().unwrap() > 0.05, "normalised from the data: {input}");
    assert_eq!(cfg["dataset"]["folder"]["classes"], serde_json::json!(["blue", "green", "red"]));
    let clf = p("clf");
    let (test, train) = (p("test"), p("train"));
    let mut args = vec![
        "classifier",
        "--autoencoder",
        &ae[..],
        "--images",
        &train[..],
        "--test-images",
        &test[..],
        "--frozen-epochs",
        "1",
        "--epochs",
        "4",
        "--val-split",
        "0.2",
        "--out",
        &clf[..],
    ];
    args.extend(small);
    let (code, _, err) = run(&args, None);
    assert_eq!(code, 0, "{err}");
    let models = p("models");
    // 72 validation images cannot show that int8 loses at most 0.2 % of
    // them: the classifier's gate refuses, naming the size that would.
    let (code, _, err) = run(&["export", "--run", &clf, "--out", &models, "--quiet", "--int8"], None);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("classifier.int8.onnx: the int8 model misses the accuracy gate"), "{err}");
    assert!(err.contains("on 72 validation images") && err.contains("every set of 1843 or more would"), "{err}");
    assert!(!d.join("models/classifier.onnx").exists(), "a refused export writes nothing");
    let (code, _, err) = run(&["export", "--run", &clf, "--out", &models, "--quiet", "--int8", "--int8-ungated"], None);
    assert_eq!(code, 0, "{err}");
    // infer on the test folder: labels from the folders' names.
    let accuracy = |model: &str| {
        let r = run_to_end(
            Command::new(infer_bin()).args([
                "classify",
                "--model",
                &p(model),
                "--images",
                &test,
                "--format",
                "json",
                "-q",
            ]),
            None,
        );
        assert_eq!(r.code, 0, "{}", r.err);
        let doc: serde_json::Value = serde_json::from_str(&r.out).unwrap();
        assert_eq!(doc["count"], 90);
        doc["report"]["accuracy"].as_f64().unwrap()
    };
    let (acc, acc8) = (accuracy("models/classifier.onnx"), accuracy("models/classifier.int8.onnx"));
    eprintln!("coloured shapes: infer test accuracy {acc:.3} (int8 {acc8:.3}) on 90 pictures");
    assert!(acc >= 0.8, "a colour pipeline separates hues of equal luma: accuracy {acc}");
    assert!((acc - acc8).abs() <= 0.05, "int8 {acc8} vs float {acc}");
    // The exported graph takes RGB and carries the normalisation.
    let m = ae_onnx::read_model(p("models/classifier.onnx")).unwrap();
    let summary = ae_onnx::summary(&m);
    assert!(summary.contains("image [batch, 3, 32, 32]") && summary.contains("Sub input.center"), "{summary}");
    // The autoencoder reconstructs three channels.
    let r = run_to_end(
        Command::new(infer_bin()).args([
            "reconstruct",
            "--model",
            &p("models/autoencoder.onnx"),
            "--images",
            &test,
            "--out",
            &p("r.png"),
            "-q",
        ]),
        None,
    );
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(image::open(d.join("r.png")).unwrap().color(), image::ColorType::Rgb8);
}

/// Bad image folders: one line naming the path and the problem, exit 2,
/// no run directory.
#[test]
fn bad_image_folders_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    coloured_shapes(&d.join("ok"), 4, 3);
    let copy = |to: &str| {
        for c in ["blue", "green", "red"] {
            std::fs::create_dir_all(d.join(to).join(c)).unwrap();
            for f in std::fs::read_dir(d.join("ok").join(c)).unwrap() {
                let f = f.unwrap().path();
                std::fs::copy(&f, d.join(to).join(c).join(f.file_name().unwrap())).unwrap();
            }
        }
    };
    copy("corrupt");
    std::fs::write(d.join("corrupt/green/001.png"), b"\x89PNG\r\n\x1a\n cut").unwrap();
    copy("empty-class");
    std::fs::create_dir(d.join("empty-class/yellow")).unwrap();
    copy("mixed");
    image::RgbImage::new(40, 30).save(d.join("mixed/red/big.png")).unwrap();
    std::fs::create_dir_all(d.join("one-class/only")).unwrap();
    image::RgbImage::new(32, 32).save(d.join("one-class/only/a.png")).unwrap();
    image::RgbImage::new(30, 30).save(d.join("mixed-30.png")).unwrap();
    copy("renamed");
    std::fs::rename(d.join("renamed/red"), d.join("renamed/crimson")).unwrap();
    copy("odd");
    for c in ["blue", "green", "red"] {
        for f in std::fs::read_dir(d.join("odd").join(c)).unwrap() {
            image::RgbImage::new(30, 30).save(f.unwrap().path()).unwrap();
        }
    }
    let p = |s: &str| d.join(s).display().to_string();
    let ok_labels = p("labels");
    idx::write_labels(&ok_labels, &[0; 12], false).unwrap();
    let cases: Vec<(&str, Vec<String>)> = vec![
        ("corrupt", vec!["autoencoder".into(), "--images".into(), p("corrupt")]),
        ("empty_class", vec!["autoencoder".into(), "--images".into(), p("empty-class")]),
        ("mixed_sizes", vec!["autoencoder".into(), "--images".into(), p("mixed")]),
        ("odd_size", vec!["autoencoder".into(), "--images".into(), p("odd")]),
        ("channels", vec!["autoencoder".into(), "--images".into(), p("ok"), "--channels".into(), "2".into()]),
        ("bad_size_flag", vec!["autoencoder".into(), "--images".into(), p("ok"), "--size".into(), "32".into()]),
        ("one_class", vec!["classifier".into(), "--autoencoder".into(), p("ae"), "--images".into(), p("one-class")]),
        (
            "labels_refused",
            vec![
                "classifier".into(),
                "--autoencoder".into(),
                p("ae"),
                "--images".into(),
                p("ok"),
                "--labels".into(),
                ok_labels.clone(),
            ],
        ),
        (
            "test_classes_differ",
            vec![
                "classifier".into(),
                "--autoencoder".into(),
                p("ae"),
                "--images".into(),
                p("ok"),
                "--test-images".into(),
                p("renamed"),
            ],
        ),
    ];
    // An autoencoder run on the good folder, for the classifier cases.
    let (code, _, err) = run(
        &[
            "autoencoder",
            "--images",
            &p("ok"),
            "--layers",
            "1",
            "--filters",
            "2",
            "--epochs",
            "1",
            "--out",
            &p("ae"),
            "--quiet",
            "--val-split",
            "0.25",
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    let mut snap = String::new();
    for (name, args) in &cases {
        let out = p(&format!("run-{name}"));
        let mut a: Vec<&str> = args.iter().map(String::as_str).collect();
        a.extend(["--out", &out, "--quiet"]);
        let (code, _, err) = run(&a, None);
        assert_eq!(code, 2, "{name}: {err}");
        assert!(!Path::new(&out).exists(), "{name}: nothing written");
        let err = err.trim_end().replace(&p(""), "<tmp>/");
        // clap's own usage errors add a hint line; ours are one line.
        if *name != "bad_size_flag" {
            assert_eq!(err.lines().count(), 1, "{name}: one line: {err}");
        }
        snap += &format!("{name}: {}\n", err.lines().next().unwrap_or(""));
    }
    insta::assert_snapshot!("bad_image_folders", snap);
    // Too large for this machine's memory: refused before decoding, with the
    // size it needs (12 pictures at 3×16384×16384 need 81 GiB for training).
    let out = p("run-huge");
    let (code, _, err) =
        run(&["autoencoder", "--images", &p("ok"), "--size", "16384x16384", "--out", &out, "--quiet"], None);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("need 81.0 GiB for training") && err.contains("available"), "{err}");
    assert!(!Path::new(&out).exists());
}

/// Early stopping over the classifier's two stages, as two Keras `fit`
/// calls with `EarlyStopping(restore_best_weights=True)`: each stage has
/// its own best (a `--min-delta` no epoch can beat makes it the stage's
/// first monitored epoch), fine-tuning starts from the frozen stage's best
/// weights, what is kept and exported is a fine-tuned epoch, and a kill on
/// either side of the boundary resumes to the uninterrupted run.
#[test]
fn early_stopping_across_the_classifiers_two_stages() {
    let _g = lock();
    let dir = tempfile::tempdir().unwrap();
    let images = mnist("train-images-idx3-ubyte");
    let ae = dir.path().join("ae");
    assert_eq!(train_small(&images, &ae, &["--epochs", "1"], None).0, 0);
    // Stage 1: epochs 1-3 (best: 1); stage 2: epochs 4-5 (best: 4), at a
    // rate too small to move the weights, so what it starts from shows.
    // Without a weight average (the checkpoints below are the trained
    // weights) or a warm-up (whose length follows the stage's).
    let plain = ["--cosine", "false", "--warmup", "0", "--ema", "0"];
    let two = [&["--frozen-epochs", "3", "--epochs", "2", "--finetune-lr", "1e-12"][..], &plain].concat();
    let es = ["--early-stopping", "5", "--min-delta", "10"];
    let full = dir.path().join("full");
    let (code, out) = classifier_small(&ae, &full, &[&two[..], &es].concat(), None);
    assert_eq!(code, 0, "{out}");
    let h = history_of(&full);
    let settings = RunDir { path: full.clone() }.read_config().unwrap().train;
    assert_eq!((settings.ema, settings.warmup), (None, 0.0), "--ema 0 is none");
    let stages: Vec<(usize, usize, usize)> = h.iter().map(|r| (r.epoch, r.stage, r.best_epoch)).collect();
    assert_eq!(stages, [(1, 1, 1), (2, 1, 1), (3, 1, 1), (4, 2, 4), (5, 2, 4)], "epoch, stage, best epoch");
    assert!(out.contains("restoring the weights of epoch 1, the best of stage 1"), "{out}");
    assert_eq!(Checkpoint::read_header(&full.join("best.safetensors")).unwrap().epoch, 4, "a fine-tuned epoch is kept");
    // The same frozen epoch alone: fine-tuning started from its weights
    // (the head moved by at most 1e-12 a step since), not from epoch 3's.
    let one = dir.path().join("one");
    let (code, out) =
        classifier_small(&ae, &one, &[&["--frozen-epochs", "1", "--epochs", "0"][..], &plain].concat(), None);
    assert_eq!(code, 0, "{out}");
    let (kept, first, last) = (
        Checkpoint::read(&full.join("best.safetensors"), Device::Cpu).unwrap(),
        Checkpoint::read(&one.join("weights.safetensors"), Device::Cpu).unwrap(),
        Checkpoint::read(&full.join("weights.safetensors"), Device::Cpu).unwrap(),
    );
    let head_diff = |a: &Checkpoint, b: &Checkpoint| {
        a.tensors
            .iter()
            .filter(|(k, _)| !k.starts_with("encoder.") && !k.starts_with("optimizer"))
            .map(|(k, t)| (t - &b.tensors[k]).abs().max().double_value(&[]))
            .fold(0.0, f64::max)
    };
    assert!(head_diff(&kept, &first) < 1e-6, "stage 2 did not start from epoch 1: {}", head_diff(&kept, &first));
    let stage1_end = dir.path().join("stage1-end");
    let (code, _) = classifier_small(&ae, &stage1_end, &[&two[..], &es].concat(), Some("checkpoint-before-history@3"));
    assert_ne!(code, 0);
    let epoch3 = Checkpoint::read(&stage1_end.join("weights.safetensors"), Device::Cpu).unwrap();
    assert!(head_diff(&epoch3, &first) > 1e-3, "epochs 1 and 3 should differ");
    assert!(head_diff(&last, &epoch3) > 1e-3, "fine-tuning continued from epoch 3");
    // --encoder fine-tuned refuses a stage-1 epoch: its encoder was never fine-tuned.
    let out_dir = dir.path().join("refused");
    let (code, err) = run_cmd(&[
        "export",
        "--run",
        stage1_end.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
        "--epoch",
        "last",
        "--encoder",
        "fine-tuned",
        "-q",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("epoch 3 is of the stage with the encoder frozen"), "{err}");
    // Resumed across the boundary: after stage 1's last epoch, and in
    // stage 2's first before its checkpoint.
    let resume = [&two[..], &es, &["--resume"]].concat();
    for (cut, fault) in
        [(stage1_end.clone(), None), (dir.path().join("stage2-start"), Some("checkpoint-before-rename@4"))]
    {
        if let Some(f) = fault {
            let (code, _) = classifier_small(&ae, &cut, &[&two[..], &es].concat(), Some(f));
            assert_ne!(code, 0);
        }
        let (code, out) = classifier_small(&ae, &cut, &resume, None);
        assert_eq!(code, 0, "{out}");
        assert_eq!(history_losses(&cut), history_losses(&full), "{fault:?}");
        assert_eq!(history_of(&cut).iter().map(|r| r.best_epoch).collect::<Vec<_>>(), vec![1, 1, 1, 4, 4]);
        tensors_equal(&full.join("weights.safetensors"), &cut.join("weights.safetensors"), "resumed");
        tensors_equal(&full.join("best.safetensors"), &cut.join("best.safetensors"), "resumed best");
    }
    // The test accuracy belongs to the kept epoch 4: exported with it, left
    // out (and said why) with --epoch last.
    for (epoch, flag) in [(4, "best"), (5, "last")] {
        let models = dir.path().join(format!("models-{flag}"));
        let (code, err) = run_cmd(&[
            "export",
            "--run",
            full.to_str().unwrap(),
            "--out",
            models.to_str().unwrap(),
            "--epoch",
            flag,
            "-q",
        ]);
        assert_eq!(code, 0, "{err}");
        let m = ModelSession::open(models.join("classifier.onnx"), &SessionOptions::default()).unwrap().metadata;
        assert_eq!(m["epoch"], epoch.to_string());
        assert_eq!(m.contains_key("test_accuracy"), epoch == 4, "{flag}: {m:?}");
        if epoch == 5 {
            assert!(m["test_accuracy_omitted"].contains("measured on epoch 4, not on these weights (epoch 5)"));
        }
        let e = ModelSession::open(models.join("encoder.onnx"), &SessionOptions::default()).unwrap().metadata;
        assert!(!e.contains_key("val_loss") && e["figures"].contains("none of its own"), "{e:?}");
    }
}

/// `--force` over a run never leaves the old run's files beside the new
/// one: killed after any file it removes, or after the new config, the
/// directory holds one run's files only, `--resume` starts the new run, and
/// a checkpoint from another configuration is refused by resume and export.
#[test]
fn force_never_mixes_two_runs() {
    let _g = lock();
    let dir = tempfile::tempdir().unwrap();
    let images = mnist("train-images-idx3-ubyte");
    let old = dir.path().join("old");
    let (code, err) = train_small(&images, &old, &["--epochs", "1"], None);
    assert_eq!(code, 0, "{err}");
    let new_args = ["--epochs", "1", "--filter-size", "5", "--force"];
    let filters = |run: &Path| RunDir { path: run.into() }.read_config().unwrap().model.autoencoder().filter_size;
    let old_files = ["history.csv", "loss.png", "reconstructions.png"];
    for fault in ["force-clearing@1", "force-clearing@3", "config-written@1"] {
        let cut = dir.path().join(fault);
        copy_dir(&old, &cut);
        let (code, _) = train_small(&images, &cut, &new_args, Some(fault));
        assert_ne!(code, 0, "{fault}: the fault must kill the process");
        assert!(!cut.join("weights.safetensors").exists(), "{fault}: the old checkpoint is gone first");
        if cut.join("config.json").exists() && filters(&cut) == 5 {
            for f in old_files {
                assert!(!cut.join(f).exists(), "{fault}: the old {f} beside the new config.json");
            }
        }
        // The same command with --resume runs the new configuration from scratch.
        let resume = ["--epochs", "1", "--filter-size", "5", "--resume"];
        let (code, err) = train_small(&images, &cut, &resume, None);
        assert_eq!(code, 0, "{fault}: {err}");
        assert_eq!(filters(&cut), 5);
        assert_eq!(history_rows(&cut), 1, "{fault}: one run's history");
    }
    // A classifier run killed while --force clears it leaves its test
    // report, best epoch and event files; whatever starts fresh next — a
    // plain run, a --resume that finds no checkpoint — removes them first,
    // even when it writes no log and no report of its own, so export
    // copies no old test accuracy.
    let ae = dir.path().join("ae");
    assert_eq!(train_small(&images, &ae, &["--epochs", "1"], None).0, 0);
    let old_clf = dir.path().join("old-clf");
    let (code, err) = classifier_small(&ae, &old_clf, &["--frozen-epochs", "1", "--epochs", "1"], None);
    assert_eq!(code, 0, "{err}");
    assert!(old_clf.join("test_metrics.json").exists() && old_clf.join("tensorboard").exists());
    for start in ["--quiet", "--resume"] {
        let cut = dir.path().join(format!("clf{start}"));
        copy_dir(&old_clf, &cut);
        let new = ["--frozen-epochs", "0", "--epochs", "1", "--test-images", "none", "--tensorboard", "false"];
        let (code, _) = classifier_small(&ae, &cut, &[&new[..], &["--force"]].concat(), Some("force-clearing@1"));
        assert_ne!(code, 0, "the fault must kill the process");
        assert!(cut.join("test_metrics.json").exists(), "the kill left the old run's report");
        let (code, err) = classifier_small(&ae, &cut, &[&new[..], &[start]].concat(), None);
        assert_eq!(code, 0, "{start}: {err}");
        for f in ["test_metrics.json", "test_report.txt", "test_predictions.csv", "tensorboard"] {
            assert!(!cut.join(f).exists(), "{start}: the old run's {f} is left beside the new run");
        }
        assert_eq!(history_rows(&cut), 1, "{start}: one run's history");
        let out = dir.path().join(format!("models{start}"));
        let (code, err) = run_cmd(&["export", "--run", cut.to_str().unwrap(), "--out", out.to_str().unwrap(), "-q"]);
        assert_eq!(code, 0, "{err}");
        let m = ModelSession::open(out.join("classifier.onnx"), &SessionOptions::default()).unwrap().metadata;
        assert!(!m.contains_key("test_accuracy"), "{start}: the old run's test accuracy in the new model");
    }

    // A checkpoint of another configuration (same architecture, another
    // seed) put beside a run's config is refused by --resume and export.
    let other = dir.path().join("other");
    let (code, err) = train_small(&images, &other, &["--epochs", "1", "--seed", "8"], None);
    assert_eq!(code, 0, "{err}");
    for f in ["weights.safetensors", "best.safetensors"] {
        std::fs::copy(other.join(f), old.join(f)).unwrap();
    }
    let (code, err) = train_small(&images, &old, &["--epochs", "1", "--resume"], None);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("was trained with configuration sha256") && err.contains("describes sha256"), "{err}");
    let (code, _, err) =
        run(&["export", "--run", old.to_str().unwrap(), "--out", dir.path().join("m").to_str().unwrap()], None);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("the checkpoint belongs to another run"), "{err}");
    assert!(!dir.path().join("m").join("autoencoder.onnx").exists());
}

/// `--limit` keeps every class in its share, whatever the file order: an
/// IDX file sorted by class, and an image folder (class by class).
#[test]
fn limit_draws_a_class_stratified_sample() {
    use train::data::Sample;
    // 10 classes of 600, sorted by class like an image folder.
    let labels: Vec<u8> = (0..10u8).flat_map(|k| std::iter::repeat_n(k, 600)).collect();
    let keep = Sample { n: 600, seed: 7 }.indices(labels.len(), Some(&labels)).unwrap();
    assert_eq!(keep.len(), 600);
    let mut per = [0usize; 10];
    keep.iter().for_each(|&i| per[labels[i] as usize] += 1);
    assert_eq!(per, [60; 10], "each class keeps its share");
    assert!(keep.windows(2).all(|w| w[0] < w[1]), "file order kept");
    assert_eq!(keep, Sample { n: 600, seed: 7 }.indices(labels.len(), Some(&labels)).unwrap(), "seeded");
    assert_ne!(keep, Sample { n: 600, seed: 8 }.indices(labels.len(), Some(&labels)).unwrap());
    // Unequal classes: shares by size, at least one each.
    let skewed: Vec<u8> = std::iter::repeat_n(0u8, 990).chain([1; 5]).chain([2; 5]).collect();
    let keep = Sample { n: 10, seed: 1 }.indices(skewed.len(), Some(&skewed)).unwrap();
    let count = |k: u8| keep.iter().filter(|&&i| skewed[i] == k).count();
    assert_eq!((count(0), count(1), count(2)), (8, 1, 1));
    let e = Sample { n: 2, seed: 1 }.indices(skewed.len(), Some(&skewed)).unwrap_err();
    assert!(e.contains("below the 3 classes"), "{e}");
    // No labels: a uniform sample, not the first N.
    let keep = Sample { n: 100, seed: 1 }.indices(6000, None).unwrap();
    assert!(*keep.last().unwrap() > 1000, "spread over the file");

    // Through the loader, on an image folder: 6 of 3 classes is 2 each.
    let dir = tempfile::tempdir().unwrap();
    coloured_shapes(dir.path(), 10, 3);
    let take = train::data::Take::Sample(Sample { n: 6, seed: 7 });
    let set = train::data::load(dir.path(), None, Default::default(), take, true).unwrap();
    assert_eq!(set.labels.as_deref(), Some(&[0u8, 0, 1, 1, 2, 2][..]));
    assert_eq!(set.info.sample, Some(Sample { n: 6, seed: 7 }));
    let e = train::data::load(
        dir.path(),
        None,
        Default::default(),
        train::data::Take::Sample(Sample { n: 2, seed: 7 }),
        true,
    )
    .unwrap_err();
    assert_eq!(e.exit_code(), 2);
    assert!(e.to_string().contains("would drop classes"), "{e}");
}

/// `train convert`: an IDX pair as class folders of PNGs that read back as
/// the same pixels, a sample that keeps every class, named folders, and a
/// refusal to write over an existing folder.
#[test]
fn convert_writes_an_image_folder_that_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("digits");
    let names = "zero,one,two,three,four,five,six,seven,eight,nine";
    let args = |out: &Path| {
        vec![
            "convert".to_string(),
            "--images".into(),
            mnist("t10k-images-idx3-ubyte").display().to_string(),
            "--labels".into(),
            mnist("t10k-labels-idx1-ubyte").display().to_string(),
            "--class-names".into(),
            names.into(),
            "--limit".into(),
            "50".into(),
            "--out".into(),
            out.display().to_string(),
        ]
    };
    let a = args(&out);
    let (code, stdout, err) = run(&a.iter().map(String::as_str).collect::<Vec<_>>(), None);
    assert_eq!(code, 0, "{err}");
    assert!(stdout.contains("wrote 50 pictures in 10 class folders"), "{stdout}");
    // Read back as the training loader reads a folder: 50 pictures, every class, same pixels.
    let set = train::data::load(&out, None, Default::default(), train::data::Take::All, true).unwrap();
    assert_eq!(set.classes.as_ref().unwrap().len(), 10);
    assert_eq!(set.images.count, 50);
    let images = idx::read_images(mnist("t10k-images-idx3-ubyte")).unwrap();
    let labels = idx::read_labels(mnist("t10k-labels-idx1-ubyte")).unwrap();
    let sorted: Vec<&str> = {
        let mut n: Vec<&str> = names.split(',').collect();
        n.sort();
        n
    };
    for class in std::fs::read_dir(&out).unwrap() {
        let class = class.unwrap();
        let k = names.split(',').position(|n| n == class.file_name().to_str().unwrap()).unwrap();
        for f in std::fs::read_dir(class.path()).unwrap() {
            let f = f.unwrap().path();
            let i: usize = f.file_stem().unwrap().to_str().unwrap().parse().unwrap();
            assert_eq!(labels[i] as usize, k, "{} holds image {i}", class.file_name().to_string_lossy());
            let png = image::open(&f).unwrap().to_luma8().into_raw();
            assert_eq!(png, images.image(i), "{} reads back as IDX image {i}", f.display());
        }
    }
    assert_eq!(set.classes.as_deref().unwrap(), sorted, "folder names sort as the classes");
    // An existing folder is refused, and no temporary folder is left.
    let (code, _, err) = run(&a.iter().map(String::as_str).collect::<Vec<_>>(), None);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("already exists"), "{err}");
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, ["digits"], "only the complete folder");
}

#[test]
fn early_stopping_stops_on_a_plateau_and_exports_the_best_epoch() {
    let _g = lock();
    let dir = tempfile::tempdir().unwrap();
    let images = mnist("train-images-idx3-ubyte");
    let run = dir.path().join("run");
    let args = plateau_args(&[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, err) = train_small(&images, &run, &args, None);
    assert_eq!(code, 0, "{err}");
    let h = history_of(&run);
    let (stop, best) = (h.len(), h.last().unwrap().best_epoch);
    assert!(stop < 12, "early stopping never stopped the run: {h:?}");
    assert!(best < stop && stop - best == 2, "stopped at {stop}, best {best}: patience is 2");
    // Each row names the best epoch so far; no epoch after the best beat it by more than min_delta.
    assert!(h.windows(2).all(|w| w[0].best_epoch <= w[1].best_epoch && w[1].best_epoch <= w[1].epoch), "{h:?}");
    for r in &h[best..] {
        assert!(r.val_loss >= h[best - 1].val_loss - 0.002, "epoch {} improved on the best", r.epoch);
    }
    let kept = Checkpoint::read(&run.join("best.safetensors"), Device::Cpu).unwrap();
    assert_eq!(kept.epoch, best);
    assert_eq!(kept.history, h[..best]);
    // --resume of a finished run trains nothing more.
    let rerun = plateau_args(&["--resume"]);
    let rerun: Vec<&str> = rerun.iter().map(String::as_str).collect();
    let (code, err) = train_small(&images, &run, &rerun, None);
    assert_eq!(code, 0, "{err}");
    assert_eq!(history_of(&run), h, "a resumed finished run trained on");

    // train export: the best epoch by default, the last with --epoch last;
    // the metadata says which, and ONNX Runtime computes what tch computes
    // with that epoch's weights.
    let x = Tensor::rand([16, 1, 28, 28], (Kind::Float, Device::Cpu));
    for (flag, epoch, file) in [(None, best, "best.safetensors"), (Some("last"), stop, "weights.safetensors")] {
        let out = dir.path().join(format!("models-{}", flag.unwrap_or("default")));
        let mut c = train_bin();
        c.args(["export", "--run", run.to_str().unwrap(), "--out", out.to_str().unwrap(), "--quiet"]);
        if let Some(f) = flag {
            c.args(["--epoch", f]);
        }
        let r = run_to_end(&mut c, None);
        assert_eq!(r.code, 0, "{}", r.err);
        let opts = SessionOptions { device: OrtDevice::Cpu, threads: Some(2), ..Default::default() };
        let mut s = ModelSession::open(out.join("autoencoder.onnx"), &opts).unwrap();
        let m = &s.metadata;
        assert_eq!(m["epoch"], epoch.to_string(), "{flag:?}");
        assert_eq!(m["epoch_selected"], flag.unwrap_or("best"));
        assert_eq!(m["epochs"], stop.to_string());
        assert_eq!(m["weights_file"], file);
        assert_eq!(m["weights_sha256"], train::run_dir::sha256_file(&run.join(file)).unwrap());
        assert_eq!(m["val_loss"], format!("{}", h[epoch - 1].val_loss));
        let this = autoencoder_from(&run, file);
        let other = autoencoder_from(&run, if epoch == best { "weights.safetensors" } else { "best.safetensors" });
        let same = train::export::max_abs_diff(&mut s, &|x| vec![this.forward_t(x, false)], &x).unwrap();
        let differs = train::export::max_abs_diff(&mut s, &|x| vec![other.forward_t(x, false)], &x).unwrap();
        assert!(same < 1e-4, "{file}: ONNX differs from its epoch by {same}");
        assert!(differs > 1e-3, "the best and the last epoch should differ ({differs})");
    }
}

/// TensorBoard's own reader (tests/tensorboard_check.py) reads the event
/// files of an autoencoder run killed mid-way and resumed, and of a
/// classifier run: the scalars per epoch equal history.csv (each once),
/// and the images and hparams are there. A history.csv that disagrees is
/// caught; `--tensorboard false` writes no log.
#[test]
fn tensorboard_reads_the_logs_of_a_resumed_run() {
    let _g = lock();
    let dir = tempfile::tempdir().unwrap();
    let images = mnist("train-images-idx3-ubyte");
    let ae = dir.path().join("ae");
    let args = ["--epochs", "3", "--tensorboard-every", "10"];
    let (code, _) = train_small(&images, &ae, &args, Some("checkpoint-before-rename@2"));
    assert_ne!(code, 0);
    let (code, err) = train_small(&images, &ae, &[&args[..], &["--resume"]].concat(), None);
    assert_eq!(code, 0, "{err}");
    let clf = dir.path().join("clf");
    let r = run_to_end(
        train_bin()
            .args(["classifier", "--autoencoder", ae.to_str().unwrap(), "--images", images.to_str().unwrap()])
            .args(["--labels", mnist("train-labels-idx1-ubyte").to_str().unwrap(), "--test-images", "none"])
            .args(["--limit", "1500", "--fc-units", "16", "--frozen-epochs", "1", "--epochs", "1", "--threads", "2"])
            .args(["--tensorboard-every", "10", "--quiet", "--out", clf.to_str().unwrap()]),
        None,
    );
    assert_eq!(r.code, 0, "{}", r.err);
    let check = |runs: &[&Path]| {
        let r = run_to_end(Command::new(python()).arg(root().join("tests/tensorboard_check.py")).args(runs), None);
        (r.code == 0, r.text())
    };
    let (ok, out) = check(&[&ae, &clf]);
    assert!(ok, "{out}");
    // The check fails on a history.csv the log disagrees with.
    let bad = dir.path().join("bad");
    copy_dir(&ae, &bad);
    let mut rows = history_of(&bad);
    rows[1].val_loss *= 1.01;
    RunDir { path: bad.clone() }.write_history(&rows).unwrap();
    let (ok, out) = check(&[&bad]);
    assert!(!ok && out.contains("validation/epoch_loss at epoch 2"), "{out}");
    // Off: no log at all.
    let off = dir.path().join("off");
    let (code, err) = train_small(&images, &off, &["--epochs", "1", "--tensorboard", "false"], None);
    assert_eq!(code, 0, "{err}");
    assert!(!off.join("tensorboard").exists());
}

/// A fresh start clears only what a run of this toolchain wrote: in a
/// folder of one's own whose `history.csv` and `loss.png` came with no
/// run's `config.json`, `--force` refuses and names them, and they stay
/// (they used to be deleted by name); with a run's config.json beside
/// them, the old run is cleared as before.
#[test]
fn a_fresh_start_clears_only_a_runs_own_files() {
    let dir = tempfile::tempdir().unwrap();
    let (images, _) = mnist_subset(dir.path(), 200);
    let mine = dir.path().join("mine");
    std::fs::create_dir_all(&mine).unwrap();
    std::fs::write(mine.join("history.csv"), "my own notes\n").unwrap();
    std::fs::write(mine.join("loss.png"), b"my own figure").unwrap();
    let args = |out: &Path| {
        vec![
            "autoencoder".to_string(),
            "--images".into(),
            images.display().to_string(),
            "--layers".into(),
            "1".into(),
            "--epochs".into(),
            "1".into(),
            "--threads".into(),
            "1".into(),
            "--quiet".into(),
            "--force".into(),
            "--out".into(),
            out.display().to_string(),
        ]
    };
    let a = args(&mine);
    let (code, _, err) = run(&a.iter().map(String::as_str).collect::<Vec<_>>(), None);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("holds history.csv, loss.png but no config.json of a run of this toolchain"), "{err}");
    assert_eq!(std::fs::read_to_string(mine.join("history.csv")).unwrap(), "my own notes\n");
    assert!(mine.join("loss.png").exists());
    // A run's own folder is cleared and trained again.
    let ours = dir.path().join("ours");
    let a = args(&ours);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let (code, _, err) = run(&a, None);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = run(&a, None);
    assert_eq!(code, 0, "a second --force on a run's folder: {err}");
}
