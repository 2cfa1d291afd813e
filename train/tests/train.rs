//! The `train` crate's tests: models, training behaviour, resume,
//! determinism, the experiment workflow, ONNX export parity and graph
//! snapshots, and the CLI's errors. One test binary so libtorch links once.
//! Training tests hold a lock: libtorch's thread pool is process-wide, and
//! determinism needs one training at a time.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use tch::{nn::VarStore, Device, Kind, Tensor};

use infer::idx::{self, Images};
use infer::session::{Device as OrtDevice, ModelSession, SessionOptions};
use train::export::onnx::{self as export_onnx, Graph, Weights};
use train::fit::Objective;
use train::model::{Autoencoder, AutoencoderConfig, Classifier, ClassifierConfig, InputShape};
use train::optim::OptimizerKind;
use train::pipeline::{self, AutoencoderJob, ClassifierJob, Common, DeviceChoice};
use train::run::{RunDir, TrainSettings};

static TORCH: Mutex<()> = Mutex::new(());

fn lock() -> std::sync::MutexGuard<'static, ()> {
    TORCH.lock().unwrap_or_else(|p| p.into_inner())
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace").to_path_buf()
}

fn mnist(name: &str) -> PathBuf {
    let p = root().join("data/mnist").join(name);
    assert!(p.exists(), "{} missing: run `make data` first", p.display());
    p
}

fn settings(epochs: usize, batch: usize) -> TrainSettings {
    TrainSettings {
        epochs,
        frozen_epochs: 0,
        batch_size: batch,
        optimizer: OptimizerKind::Adam,
        lr: 2e-3,
        finetune_lr: None,
        cosine: false,
        seed: 7,
        val_split: 0.2,
        limit: Some(1200),
        threads: Some(2),
        loss: None,
    }
}

fn common(out: &Path) -> Common {
    Common { out: out.into(), device: DeviceChoice::Cpu, quiet: true, resume: false, force: true, table: None }
}

fn ae_job(out: &Path, epochs: usize) -> AutoencoderJob {
    AutoencoderJob {
        images: mnist("train-images-idx3-ubyte"),
        layers: 2,
        filter_size: 3,
        filters: 4,
        settings: settings(epochs, 32),
        common: common(out),
    }
}

fn history_losses(run: &Path) -> Vec<(f64, f64)> {
    RunDir { path: run.into() }.read_history().unwrap().iter().map(|r| (r.loss, r.val_loss)).collect()
}

// ---------------------------------------------------------------- models

#[test]
fn every_filter_size_keeps_the_image_size() {
    let _g = lock();
    for k in 2..=7 {
        for layers in [1, 2, 3] {
            let cfg = AutoencoderConfig { layers, filter_size: k, filters: 2, input: InputShape { height: 28, width: 20 } };
            cfg.validate().unwrap();
            let vs = VarStore::new(Device::Cpu);
            let ae = Autoencoder::new(&vs.root(), &cfg);
            let x = Tensor::rand([3, 1, 28, 20], (Kind::Float, Device::Cpu));
            let y = ae.forward(&x, false);
            assert_eq!(y.size(), vec![3, 1, 28, 20], "K={k} L={layers}");
            let e = ae.encoder.forward(&x, false);
            let [c, h, w] = cfg.embedding_shape();
            assert_eq!(e.size(), vec![3, c as i64, h as i64, w as i64]);
        }
    }
}

#[test]
fn bad_geometry_and_hyperparameters_are_refused() {
    let cfg = |layers, k, f, h| AutoencoderConfig { layers, filter_size: k, filters: f, input: InputShape { height: h, width: 28 } };
    assert_eq!(cfg(0, 3, 4, 28).validate().unwrap_err().to_string(), "--layers must be between 1 and 8, got 0");
    assert_eq!(cfg(2, 0, 4, 28).validate().unwrap_err().to_string(), "--filter-size must be between 2 and 7, got 0");
    assert_eq!(
        cfg(2, 3, 4, 30).validate().unwrap_err().to_string(),
        "images of 30×28 cannot go through 2 2×2 poolings: height and width must be divisible by 4"
    );
    // One layer pools once: an even size suffices.
    cfg(1, 3, 4, 30).validate().unwrap();
}

// ---------------------------------------------------------------- training

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
        labels: mnist("train-labels-idx1-ubyte"),
        test_images: Some(ti),
        test_labels: Some(tl),
        fc_units: 16,
        objective: Objective::CrossEntropy,
        settings: s,
        common: common(&out),
    };
    let o = pipeline::train_classifier(&job).unwrap();
    assert!(o.last.val_accuracy.unwrap() > 0.6, "{:?}", o.last);
    assert!(o.test_accuracy.unwrap() > 0.6, "{:?}", o.test_accuracy);
    let report = std::fs::read_to_string(out.join("test_report.txt")).unwrap();
    assert!(report.contains("weighted avg") && report.contains("confusion matrix"), "{report}");
    for f in ["accuracy.png", "correct.png", "incorrect.png", "test_metrics.json"] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    // The encoder really came from the autoencoder: stage 1 froze it.
    let ae_w = train::run::Checkpoint::read(&ae.join("weights.safetensors"), Device::Cpu).unwrap();
    let clf_w = train::run::Checkpoint::read(&out.join("weights.safetensors"), Device::Cpu).unwrap();
    let k = "encoder.0.conv.weight";
    assert_eq!(ae_w.tensors[k].size(), clf_w.tensors[k].size());
    // Stage 2 fine-tuned it, so it moved a little but not far.
    let d = (&ae_w.tensors[k] - &clf_w.tensors[k]).abs().max().double_value(&[]);
    assert!(d > 0.0 && d < 1.0, "fine-tuning moved the encoder by {d}");
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

#[test]
fn resume_reproduces_an_uninterrupted_run() {
    let _g = lock();
    let dir = tempfile::tempdir().unwrap();
    let (full, cut) = (dir.path().join("full"), dir.path().join("cut"));
    // Interrupt after epoch 2's checkpoint, as Ctrl-C would.
    let watch = cut.join("history.csv");
    let watcher = std::thread::spawn(move || loop {
        if std::fs::read_to_string(&watch).map(|t| t.lines().count() >= 3).unwrap_or(false) {
            train::fit::INTERRUPTED.store(true, std::sync::atomic::Ordering::SeqCst);
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    });
    let mut job = ae_job(&cut, 3);
    job.settings.batch_size = 8; // many batches: the flag lands mid-epoch
    let mut full_job = ae_job(&full, 3);
    full_job.settings.batch_size = 8;
    pipeline::train_autoencoder(&full_job).unwrap();
    let r = pipeline::train_autoencoder(&job);
    watcher.join().unwrap();
    train::fit::INTERRUPTED.store(false, std::sync::atomic::Ordering::SeqCst);
    match r {
        Err(e) => {
            assert_eq!(e.exit_code(), 130);
            assert!(e.to_string().contains("--resume"), "{e}");
        }
        Ok(_) => panic!("the run should have been interrupted"),
    }
    assert_eq!(history_losses(&cut).len(), 2);
    job.common.resume = true;
    job.common.force = false;
    pipeline::train_autoencoder(&job).unwrap();
    assert_eq!(history_losses(&cut), history_losses(&full));
    let a = train::run::Checkpoint::read(&full.join("weights.safetensors"), Device::Cpu).unwrap();
    let b = train::run::Checkpoint::read(&cut.join("weights.safetensors"), Device::Cpu).unwrap();
    for (k, t) in &a.tensors {
        assert!(t.equal(&b.tensors[k]), "{k} differs after resume");
    }
}

// ---------------------------------------------------------------- export

/// A model with every BatchNorm's statistics and affine parameters random,
/// so the folding is really exercised.
fn randomise(vs: &VarStore) {
    tch::no_grad(|| {
        for (name, mut t) in vs.variables() {
            let r = Tensor::rand(t.size(), (Kind::Float, Device::Cpu));
            if name.ends_with("running_var") {
                t.copy_(&(r * 2.0 + 0.1));
            } else if name.contains(".bn.") {
                t.copy_(&(r - 0.5));
            }
        }
    });
}

fn weights(vs: &VarStore) -> Weights {
    let named: HashMap<String, Tensor> = vs.variables();
    Weights::from_tensors(&named)
}

fn parity(model: &infer::onnx::ModelProto, reference: &dyn Fn(&Tensor) -> Vec<Tensor>, h: i64, w: i64) -> f32 {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m.onnx");
    std::fs::write(&p, model.to_bytes()).unwrap();
    let mut s = ModelSession::open(&p, &SessionOptions { device: OrtDevice::Cpu, threads: Some(2) }).unwrap();
    [1, 7, 256]
        .iter()
        .map(|&b| {
            let x = Tensor::rand([b, 1, h, w], (Kind::Float, Device::Cpu));
            train::export::max_abs_diff(&mut s, reference, &x).unwrap()
        })
        .fold(0.0, f32::max)
}

#[test]
fn onnx_matches_tch_for_all_graphs_and_architectures() {
    let _g = lock();
    tch::manual_seed(3);
    let meta = BTreeMap::new();
    for (layers, k) in [(1, 2), (2, 3), (4, 5), (4, 3), (2, 2)] {
        let cfg = AutoencoderConfig { layers, filter_size: k, filters: 3, input: InputShape { height: 28, width: 28 } };
        let vs = VarStore::new(Device::Cpu);
        let ae = Autoencoder::new(&vs.root(), &cfg);
        randomise(&vs);
        let w = weights(&vs);
        let m = export_onnx::autoencoder_model(&w, &cfg, Graph::Autoencoder, &meta).unwrap();
        let d = parity(&m, &|x| vec![ae.forward(x, false)], 28, 28);
        assert!(d <= 1e-4, "autoencoder L{layers} K{k}: {d}");
        let m = export_onnx::autoencoder_model(&w, &cfg, Graph::Encoder, &meta).unwrap();
        let d = parity(&m, &|x| vec![ae.encoder.forward(x, false)], 28, 28);
        assert!(d <= 1e-4, "encoder L{layers} K{k}: {d}");

        let ccfg = ClassifierConfig { encoder: cfg, fc_units: 9, classes: 10 };
        let cvs = VarStore::new(Device::Cpu);
        let clf = Classifier::new(&cvs.root(), &ccfg);
        randomise(&cvs);
        let m = export_onnx::classifier_model(&weights(&cvs), &ccfg, &meta).unwrap();
        let d = parity(
            &m,
            &|x| {
                let l = clf.forward(x, false, false);
                vec![l.softmax(-1, Kind::Float), l]
            },
            28,
            28,
        );
        assert!(d <= 1e-4, "classifier L{layers} K{k}: {d}");
    }
}

#[test]
fn exported_graph_summaries() {
    let _g = lock();
    tch::manual_seed(1);
    let cfg = AutoencoderConfig { layers: 2, filter_size: 3, filters: 4, input: InputShape { height: 28, width: 28 } };
    let vs = VarStore::new(Device::Cpu);
    let _ae = Autoencoder::new(&vs.root(), &cfg);
    let meta = BTreeMap::from([("val_loss".to_string(), "0.01".to_string()), ("producer".to_string(), "test".to_string())]);
    let w = weights(&vs);
    let ae = export_onnx::autoencoder_model(&w, &cfg, Graph::Autoencoder, &meta).unwrap();
    insta::assert_snapshot!("autoencoder_graph", export_onnx::summary(&ae));
    let enc = export_onnx::autoencoder_model(&w, &cfg, Graph::Encoder, &meta).unwrap();
    insta::assert_snapshot!("encoder_graph", export_onnx::summary(&enc));
    let ccfg = ClassifierConfig { encoder: cfg, fc_units: 8, classes: 10 };
    let cvs = VarStore::new(Device::Cpu);
    let _clf = Classifier::new(&cvs.root(), &ccfg);
    let clf = export_onnx::classifier_model(&weights(&cvs), &ccfg, &meta).unwrap();
    insta::assert_snapshot!("classifier_graph", export_onnx::summary(&clf));
}

// ---------------------------------------------------------------- CLI

fn train_bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_train"));
    c.current_dir(root());
    c
}

/// Runs `train` and returns (exit code, stdout, stderr).
fn run(args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    let mut c = train_bin();
    c.args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).stdin(Stdio::piped());
    let mut child = c.spawn().unwrap();
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    } else {
        drop(child.stdin.take());
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_inputs_fail_before_training_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let odd = d.join("odd-images");
    idx::write_images(&odd, &Images { count: 10, rows: 30, cols: 30, pixels: vec![0; 9000] }, false).unwrap();
    let five_labels = d.join("five-labels");
    idx::write_labels(&five_labels, &[0, 1, 2, 3, 4], false).unwrap();
    let out = d.join("run");
    let o = out.to_str().unwrap();
    let cases: Vec<(&str, Vec<String>)> = vec![
        ("layers_0", vec!["autoencoder", "--layers", "0", "--out", o].into_iter().map(String::from).collect()),
        ("filter_size_0", vec!["autoencoder", "--filter-size", "0", "--out", o].into_iter().map(String::from).collect()),
        ("batch_size_0", vec!["autoencoder", "--batch-size", "0", "--out", o].into_iter().map(String::from).collect()),
        ("val_split_1", vec!["autoencoder", "--val-split", "1", "--out", o].into_iter().map(String::from).collect()),
        ("odd_size", vec!["autoencoder".into(), "--images".into(), odd.display().to_string(), "--out".into(), o.into()]),
        ("missing_images", vec!["autoencoder".into(), "--images".into(), d.join("nope").display().to_string(), "--out".into(), o.into()]),
        ("not_a_run", vec!["classifier".into(), "--autoencoder".into(), d.join("nope").display().to_string(), "--out".into(), o.into()]),
        ("export_missing_run", vec!["export".into(), "--run".into(), d.join("nope").display().to_string(), "--out".into(), d.join("m").display().to_string()]),
        ("unknown_flag", vec!["autoencoder".into(), "--layerz".into(), "3".into()]),
    ];
    let mut snapshot = String::new();
    for (name, args) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, _, err) = run(&args, None);
        assert_eq!(code, 2, "{name}: {err}");
        assert!(!err.contains("panicked"), "{name}: {err}");
        let first = err.lines().next().unwrap_or("").replace(&d.display().to_string(), "<tmp>");
        snapshot += &format!("{name}: {first}\n");
    }
    assert!(!d.join("m").exists(), "a failed export writes nothing");
    insta::assert_snapshot!("train_errors", snapshot);

    // A classifier pointed at a classifier run, and labels that do not pair.
    let _g = lock();
    let ae = d.join("ae");
    pipeline::train_autoencoder(&ae_job(&ae, 1)).unwrap();
    let (code, _, err) = run(
        &["classifier", "--autoencoder", ae.to_str().unwrap(), "--labels", five_labels.to_str().unwrap(), "--limit", "100", "--out", o],
        None,
    );
    assert_eq!(code, 2);
    assert!(err.contains("5 labels, but") && err.contains("has 100 images"), "{err}");
}

#[test]
fn export_refuses_incomplete_runs_and_unwritable_outputs() {
    let _g = lock();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ae = d.join("ae");
    pipeline::train_autoencoder(&ae_job(&ae, 1)).unwrap();
    // Incomplete: no weights.
    let partial = d.join("partial");
    std::fs::create_dir(&partial).unwrap();
    std::fs::copy(ae.join("config.json"), partial.join("config.json")).unwrap();
    let (code, _, err) = run(&["export", "--run", partial.to_str().unwrap(), "--out", d.join("m1").to_str().unwrap()], None);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("has no weights.safetensors"), "{err}");
    // Unwritable: the output "directory" is a file.
    let file = d.join("file");
    std::fs::write(&file, b"x").unwrap();
    let (code, _, err) = run(&["export", "--run", ae.to_str().unwrap(), "--out", file.join("m").to_str().unwrap()], None);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cannot create the output directory"), "{err}");
    // And a good export writes both graphs and prints the parity figure.
    let m = d.join("m2");
    let (code, out, err) = run(&["export", "--run", ae.to_str().unwrap(), "--out", m.to_str().unwrap()], None);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("ONNX Runtime matches tch"), "{out}");
    assert!(m.join("autoencoder.onnx").is_file() && m.join("encoder.onnx").is_file());
    assert_eq!(std::fs::read_dir(&m).unwrap().count(), 2, "no temporary files left");
}

#[test]
fn explore_runs_from_piped_answers() {
    let _g = lock();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("explore");
    let images = mnist("train-images-idx3-ubyte");
    // base run; 1: change Filter_Size to 2; invalid answer; 2: graphs; 4: exit.
    let answers = "1\n2\n2\nseven\n2\n4\n";
    let (code, out, err) = run(
        &[
            "explore", "autoencoder", "--images", images.to_str().unwrap(), "--dir", d.to_str().unwrap(), "--limit", "400",
            "--epochs", "1", "--base-layers", "1", "--base-filters", "2", "--quiet",
        ],
        Some(answers),
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("invalid answer \"seven\""), "{out}");
    assert!(out.contains("Filter_Size = 2: loss"), "{out}");
    let graph = d.join("L1_FSx_FL2_E1_B64.png");
    assert!(out.contains("L1_FSx_FL2_E1_B64.png") && graph.is_file(), "{out}");
    let table = std::fs::read_to_string(d.join("loss_values.csv")).unwrap();
    assert_eq!(table.lines().count(), 3, "header + base + varied: {table}");
}

#[test]
fn sweep_writes_table_rows_and_graphs() {
    let _g = lock();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("sweep");
    let images = mnist("train-images-idx3-ubyte");
    let (code, out, err) = run(
        &[
            "sweep", "autoencoder", "--filters", "2,4", "--batch-sizes", "32,64", "--images", images.to_str().unwrap(),
            "--dir", d.to_str().unwrap(), "--limit", "300", "--epochs", "1", "--base-layers", "1", "--quiet",
        ],
        None,
    );
    assert_eq!(code, 0, "{out}\n{err}");
    let table = std::fs::read_to_string(d.join("loss_values.csv")).unwrap();
    let rows: Vec<&str> = table.lines().collect();
    assert_eq!(rows[0], "Layers,Filter_Size,Filters/Layer,Epochs,Batch_Size,Train_Time,Loss,Val_Loss");
    // filters 2 and 4 (batch 64), batch 32 (filters 16 is the base): the
    // base point (F16, B64) is not repeated.
    assert_eq!(rows.len(), 1 + 4, "{table}");
    let val: Vec<f64> = rows[1..].iter().map(|r| r.rsplit(',').next().unwrap().parse().unwrap()).collect();
    assert!(val.windows(2).all(|w| w[0] <= w[1]), "sorted by Val_Loss: {val:?}");
    for g in ["L1_FS3_FLx_E1_B64.png", "L1_FS3_FL16_E1_Bx.png"] {
        let img = image::open(d.join(g)).unwrap().to_luma8();
        assert!(img.pixels().filter(|p| p.0[0] < 200).count() > 500, "{g} is blank");
    }
}

#[test]
fn cli_help_snapshots() {
    for sub in ["autoencoder", "classifier", "export", "sweep", "explore"] {
        let (code, out, _) = run(&[sub, "--help"], None);
        assert_eq!(code, 0);
        insta::assert_snapshot!(format!("train_help_{sub}"), out);
    }
}
