//! The command line: bad inputs before any work, the exploration menu, sweeps, help snapshots, and
//! the hostile-input corpus through both binaries.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use ae_core::idx::{self, Images};
use train::pipeline;
use train::run_dir::RunDir;

use crate::common::*;

#[test]
fn bad_inputs_fail_before_training_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let odd = d.join("odd-images");
    idx::write_images(&odd, &Images { count: 10, channels: 1, rows: 30, cols: 30, pixels: vec![0; 9000] }, false)
        .unwrap();
    let five_labels = d.join("five-labels");
    idx::write_labels(&five_labels, &[0, 1, 2, 3, 4], false).unwrap();
    let out = d.join("run");
    let o = out.to_str().unwrap();
    let cases: Vec<(&str, Vec<String>)> = vec![
        ("layers_0", vec!["autoencoder", "--layers", "0", "--out", o].into_iter().map(String::from).collect()),
        (
            "filter_size_0",
            vec!["autoencoder", "--filter-size", "0", "--out", o].into_iter().map(String::from).collect(),
        ),
        ("batch_size_0", vec!["autoencoder", "--batch-size", "0", "--out", o].into_iter().map(String::from).collect()),
        ("val_split_1", vec!["autoencoder", "--val-split", "1", "--out", o].into_iter().map(String::from).collect()),
        ("ema_negative", vec!["autoencoder", "--ema=-0.5", "--out", o].into_iter().map(String::from).collect()),
        (
            "odd_size",
            vec!["autoencoder".into(), "--images".into(), odd.display().to_string(), "--out".into(), o.into()],
        ),
        (
            "missing_images",
            vec![
                "autoencoder".into(),
                "--images".into(),
                d.join("nope").display().to_string(),
                "--out".into(),
                o.into(),
            ],
        ),
        (
            "not_a_run",
            vec![
                "classifier".into(),
                "--autoencoder".into(),
                d.join("nope").display().to_string(),
                "--out".into(),
                o.into(),
            ],
        ),
        (
            "export_missing_run",
            vec![
                "export".into(),
                "--run".into(),
                d.join("nope").display().to_string(),
                "--out".into(),
                d.join("m").display().to_string(),
            ],
        ),
        ("unknown_flag", vec!["autoencoder".into(), "--layerz".into(), "3".into()]),
        (
            "dropout_1",
            vec!["classifier", "--autoencoder", "nope", "--dropout", "1", "--out", o]
                .into_iter()
                .map(String::from)
                .collect(),
        ),
        (
            "precision_half_on_cpu",
            vec!["autoencoder", "--precision", "16-mixed", "--out", o].into_iter().map(String::from).collect(),
        ),
        // The reference's loss under the default preset gets as far as its
        // run (it used to be refused for the preset's label smoothing)...
        (
            "loss_mse_reaches_the_run",
            vec!["classifier", "--autoencoder", "nope", "--loss", "mse", "--out", o]
                .into_iter()
                .map(String::from)
                .collect(),
        ),
        // ...and smoothing the user asks for beside it is refused by name.
        (
            "loss_mse_with_smoothing",
            vec!["classifier", "--autoencoder", "nope", "--loss", "mse", "--label-smoothing", "0.1", "--out", o]
                .into_iter()
                .map(String::from)
                .collect(),
        ),
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
        &[
            "classifier",
            "--autoencoder",
            ae.to_str().unwrap(),
            "--labels",
            five_labels.to_str().unwrap(),
            "--limit",
            "100",
            "--out",
            o,
        ],
        None,
    );
    assert_eq!(code, 2);
    assert!(err.contains("5 labels, but") && err.contains("has 60000 images"), "{err}");
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
            "explore",
            "autoencoder",
            "--images",
            images.to_str().unwrap(),
            "--dir",
            d.to_str().unwrap(),
            "--limit",
            "400",
            "--epochs",
            "1",
            "--base-layers",
            "1",
            "--base-filters",
            "2",
            "--quiet",
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

/// Ctrl-C at the menu's prompt (nothing checks there) exits 130 at once.
#[test]
fn ctrl_c_at_the_explore_prompt_exits_at_once() {
    use std::io::Read;
    let _g = lock();
    let dir = tempfile::tempdir().unwrap();
    let images = mnist("train-images-idx3-ubyte");
    let mut child = train_bin()
        .args(["explore", "autoencoder", "--limit", "300", "--epochs", "1", "--base-layers", "1", "--quiet"])
        .args(["--base-filters", "2", "--threads", "2", "--images", images.to_str().unwrap()])
        .args(["--dir", dir.path().join("e").to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 256];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
            if String::from_utf8_lossy(&seen).contains("choice: ") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(std::time::Duration::from_secs(60)).expect("the menu's prompt");
    signal(child.id(), "-INT");
    let t0 = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if t0.elapsed().as_secs() >= 5 {
            let _ = child.kill();
            panic!("still running 5 s after Ctrl-C");
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    assert_eq!(status.code(), Some(130));
    assert!(t0.elapsed().as_secs_f64() < 1.0, "{:?}", t0.elapsed());
}

#[test]
fn sweep_writes_table_rows_and_graphs() {
    let _g = lock();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("sweep");
    let images = mnist("train-images-idx3-ubyte");
    let (code, out, err) = run(
        &[
            "sweep",
            "autoencoder",
            "--filters",
            "2,4",
            "--batch-sizes",
            "32,64",
            "--images",
            images.to_str().unwrap(),
            "--dir",
            d.to_str().unwrap(),
            "--limit",
            "300",
            "--epochs",
            "1",
            "--base-layers",
            "1",
            "--quiet",
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
    // Every sweep run logs for TensorBoard, hparams included, as a single run does.
    let runs: Vec<PathBuf> = std::fs::read_dir(&d).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect();
    assert_eq!(runs.len(), 4, "{runs:?}");
    for r in &runs {
        for sub in ["tensorboard", "tensorboard/train", "tensorboard/validation"] {
            let events = std::fs::read_dir(r.join(sub))
                .unwrap()
                .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("events.out.tfevents."))
                .count();
            assert_eq!(events, 1, "{}/{sub}", r.display());
        }
    }
}

/// `--lr` is stage 1's rate and `--finetune-lr` stage 2's, in `train
/// classifier` and `sweep` alike (once, `--lr` also moved stage 2 in one
/// and not the other).
#[test]
fn lr_means_the_same_in_classifier_and_sweep() {
    let _g = lock();
    let dir = tempfile::tempdir().unwrap();
    let ae = dir.path().join("ae");
    pipeline::train_autoencoder(&ae_job(&ae, 1)).unwrap();
    let (images, labels) = (mnist("train-images-idx3-ubyte"), mnist("train-labels-idx1-ubyte"));
    let common = [
        "--autoencoder",
        ae.to_str().unwrap(),
        "--images",
        images.to_str().unwrap(),
        "--labels",
        labels.to_str().unwrap(),
        "--lr",
        "0.005",
        "--limit",
        "200",
        "--epochs",
        "1",
        "--threads",
        "2",
        "--quiet",
    ];
    let clf = dir.path().join("clf");
    let mut args = vec!["classifier", "--test-images", "none", "--out", clf.to_str().unwrap()];
    args.extend(common);
    let (code, _, err) = run(&args, None);
    assert_eq!(code, 0, "{err}");
    let sweep = dir.path().join("sweep");
    let mut args = vec!["sweep", "classifier", "--fc-units", "8", "--dir", sweep.to_str().unwrap()];
    args.extend(common);
    let (code, _, err) = run(&args, None);
    assert_eq!(code, 0, "{err}");
    let settings = |run: &Path| RunDir { path: run.into() }.read_config().unwrap().train;
    let preset = train::config::Preset::Quick.classifier().settings;
    let (a, b) = (settings(&clf), settings(&sweep.join(format!("classifier-L2_FC8_E1_B{}", preset.batch_size))));
    assert_eq!((a.lr, a.finetune_lr), (0.005, preset.finetune_lr), "--lr sets stage 1; stage 2 keeps the preset's");
    assert_ne!(preset.finetune_lr, Some(0.005), "the test needs a flag that differs from the preset");
    assert_eq!((b.lr, b.finetune_lr), (a.lr, a.finetune_lr));
}

#[test]
fn cli_help_snapshots() {
    // The top level states the exit codes.
    let (code, out, _) = run(&["--help"], None);
    assert_eq!(code, 0);
    assert!(out.contains("Exit codes:") && out.contains("130  interrupted"), "{out}");
    insta::assert_snapshot!("train_help", out);
    for sub in ["autoencoder", "classifier", "export", "sweep", "explore", "convert", "summary"] {
        let (code, out, _) = run(&[sub, "--help"], None);
        assert_eq!(code, 0);
        insta::assert_snapshot!(format!("train_help_{sub}"), out);
    }
}

/// The hostile-input corpus: every broken file through both binaries.
#[test]
fn hostile_inputs_corpus() {
    let _g = lock();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Good companions: 100 MNIST images, their labels, a tiny autoencoder run.
    let mut good = idx::read_images(mnist("t10k-images-idx3-ubyte")).unwrap();
    good.truncate(100);
    let labels = idx::read_labels(mnist("t10k-labels-idx1-ubyte")).unwrap()[..100].to_vec();
    let good_images = d.join("good-images");
    idx::write_images(&good_images, &good, false).unwrap();
    let good_labels = d.join("good-labels");
    idx::write_labels(&good_labels, &labels, false).unwrap();
    let ae = d.join("ae");
    let mut job = ae_job(&ae, 1);
    job.training.settings.limit = Some(200);
    pipeline::train_autoencoder(&job).unwrap();
    let model = root().join("models/classifier.onnx");

    let plain = {
        let mut v = idx_header(0x08, &[100, 28, 28]);
        v.extend(&good.pixels);
        v
    };
    let f32_images = {
        let mut v = idx_header(0x0D, &[2, 28, 28]);
        v.extend(std::iter::repeat_n(0u8, 2 * 784 * 4));
        v
    };
    let mut corrupt_gz = gz(&plain);
    let mid = corrupt_gz.len() / 2;
    for b in &mut corrupt_gz[mid..mid + 8] {
        *b ^= 0x5A;
    }
    let images: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("header-3-bytes", vec![0, 0, 8]),
        ("magic-nonzero", [vec![0x12, 0x34], plain[2..].to_vec()].concat()),
        ("type-code-unknown", [vec![0, 0, 0x42], plain[3..].to_vec()].concat()),
        ("float-images", f32_images),
        ("truncated-1-byte", plain[..plain.len() - 1].to_vec()),
        ("truncated-half", plain[..plain.len() / 2].to_vec()),
        ("trailing-garbage", [plain.clone(), b"garbage".to_vec()].concat()),
        ("dims-0", vec![0, 0, 8, 0]),
        ("dims-2", [idx_header(0x08, &[100, 784]), good.pixels.clone()].concat()),
        ("dims-4", [idx_header(0x08, &[100, 1, 28, 28]), good.pixels.clone()].concat()),
        ("claims-4g-images", [idx_header(0x08, &[u32::MAX, 28, 28]), good.pixels.clone()].concat()),
        ("claims-65535x65535", [idx_header(0x08, &[1, 65535, 65535]), good.pixels.clone()].concat()),
        ("zero-images", idx_header(0x08, &[0, 28, 28])),
        ("gzip-truncated", gz(&plain)[..200].to_vec()),
        ("gzip-corrupt", corrupt_gz),
        ("gzip-claims-4g", gz(&idx_header(0x08, &[u32::MAX, 28, 28]))),
        ("random-bytes", (0..5000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect()),
    ];
    let mut snap = String::new();
    let mut cases = 0;
    let mut check = |name: &str, what: &str, mut c: Command, file: &Path, snap: &mut String| {
        let Ran { code, err, seconds: secs, .. } = run_to_end(&mut c, None);
        assert!(code == 2 || code == 1, "{name} ({what}): exit {code}: {err}");
        assert!(!err.contains("panicked"), "{name} ({what}): {err}");
        assert!(secs < 5.0, "{name} ({what}): took {secs:.1}s");
        let line = err.trim_end();
        assert_eq!(line.lines().count(), 1, "{name} ({what}): one line: {err}");
        assert!(line.contains(&file.display().to_string()), "{name} ({what}): names the file: {line}");
        *snap += &format!("{name} [{what}] exit {code}: {}\n", line.replace(&d.display().to_string(), "<tmp>"));
        cases += 1;
    };
    for (name, bytes) in &images {
        let p = d.join(name);
        std::fs::write(&p, bytes).unwrap();
        let mut c = Command::new(infer_bin());
        c.args(["classify", "--model"]).arg(&model).arg("--images").arg(&p);
        check(name, "infer classify", c, &p, &mut snap);
        let out = d.join(format!("run-{name}"));
        let mut c = train_bin();
        c.args(["autoencoder", "--images"]).arg(&p).arg("--out").arg(&out);
        check(name, "train autoencoder", c, &p, &mut snap);
        assert!(!out.exists(), "{name}: no run directory for bad input");
    }
    // Labels: one short, out of range, not labels.
    let short = d.join("labels-one-short");
    idx::write_labels(&short, &labels[..99], false).unwrap();
    let mut big = labels.clone();
    big[3] = 200;
    let range = d.join("labels-out-of-range");
    idx::write_labels(&range, &big, false).unwrap();
    for (name, p) in
        [("labels-one-short", &short), ("labels-out-of-range", &range), ("labels-are-images", &good_images)]
    {
        let mut c = Command::new(infer_bin());
        c.args(["classify", "--model"]).arg(&model).arg("--images").arg(&good_images).arg("--labels").arg(p);
        check(name, "infer classify", c, p, &mut snap);
        if name != "labels-out-of-range" {
            let mut c = train_bin();
            c.args(["classifier", "--autoencoder"]).arg(&ae).arg("--images").arg(&good_images).arg("--labels").arg(p);
            c.arg("--out").arg(d.join("clf-run"));
            check(name, "train classifier", c, p, &mut snap);
        }
    }
    // Models: random bytes, empty, truncated, another input size.
    let whole = std::fs::read(&model).unwrap();
    let models: Vec<(&str, Vec<u8>)> = vec![
        ("random.onnx", (0..4000u32).map(|i| (i.wrapping_mul(40503) >> 7) as u8).collect()),
        ("empty.onnx", vec![]),
        ("truncated.onnx", whole[..whole.len() / 3].to_vec()),
    ];
    for (name, bytes) in &models {
        let p = d.join(name);
        std::fs::write(&p, bytes).unwrap();
        let mut c = Command::new(infer_bin());
        c.args(["classify", "--model"]).arg(&p).arg("--images").arg(&good_images);
        check(name, "infer classify", c, &p, &mut snap);
        let mut c = Command::new(infer_bin());
        c.args(["info", "--model"]).arg(&p);
        check(name, "infer info", c, &p, &mut snap);
    }
    // An ONNX model taking 32×32 images, exported from a real run.
    let odd = d.join("odd32");
    idx::write_images(&odd, &Images { count: 40, channels: 1, rows: 32, cols: 32, pixels: vec![7; 40 * 1024] }, false)
        .unwrap();
    let mut j = ae_job(&d.join("ae32"), 1);
    j.images = odd.clone();
    j.training.settings.limit = None;
    pipeline::train_autoencoder(&j).unwrap();
    let (code, _, err) = run(
        &["export", "--run", d.join("ae32").to_str().unwrap(), "--out", d.join("m32").to_str().unwrap(), "-q"],
        None,
    );
    assert_eq!(code, 0, "{err}");
    let m32 = d.join("m32/autoencoder.onnx");
    let mut c = Command::new(infer_bin());
    c.args(["reconstruct", "--model"]).arg(&m32).arg("--images").arg(&good_images);
    check("model-32x32", "infer reconstruct", c, &good_images, &mut snap);
    // Pictures, directories, paths.
    let fake = d.join("fake.png");
    std::fs::write(&fake, b"\x89PNX not really").unwrap();
    let empty_dir = d.join("empty-dir");
    std::fs::create_dir(&empty_dir).unwrap();
    let missing = d.join("does-not-exist");
    for (name, p) in [("png-not-png", &fake), ("dir-without-images", &empty_dir), ("missing-path", &missing)] {
        let mut c = Command::new(infer_bin());
        c.args(["classify", "--model"]).arg(&model).arg("--images").arg(p);
        check(name, "infer classify", c, p, &mut snap);
    }
    let mut c = train_bin();
    c.args(["autoencoder", "--images"]).arg(&missing).arg("--out").arg(d.join("r"));
    check("missing-path", "train autoencoder", c, &missing, &mut snap);
    // Outputs where they cannot be written.
    let nodir = d.join("no-such-dir/pred.csv");
    let mut c = Command::new(infer_bin());
    c.args(["classify", "--model"]).arg(&model).arg("--images").arg(&good_images).arg("--predictions").arg(&nodir);
    check("output-dir-missing", "infer classify", c, &nodir, &mut snap);
    let blocker = d.join("a-file");
    std::fs::write(&blocker, b"x").unwrap();
    let under_file = blocker.join("embeddings.npy");
    let mut c = Command::new(infer_bin());
    c.args(["embed", "--model"])
        .arg(root().join("models/encoder.onnx"))
        .arg("--images")
        .arg(&good_images)
        .arg("--out")
        .arg(&under_file);
    check("output-under-a-file", "infer embed", c, &under_file, &mut snap);
    let run_under_file = blocker.join("run");
    let mut c = train_bin();
    c.args(["autoencoder", "--images"]).arg(&good_images).arg("--out").arg(&run_under_file);
    check("run-dir-under-a-file", "train autoencoder", c, &run_under_file, &mut snap);
    assert!(cases >= 25, "corpus has {cases} cases");
    insta::assert_snapshot!("hostile_inputs", snap);
}
