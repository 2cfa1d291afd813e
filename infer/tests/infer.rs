//! The `infer` crate's tests: IDX I/O, reports, .npy, and the `infer`
//! binary end to end on the committed models. One test binary, so the
//! ONNX Runtime library loads once.

use std::path::{Path, PathBuf};
use std::process::Command;

use ae_core::idx::{self, Images};
use infer::npy::read_f32;

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace").to_path_buf()
}

// ---------------------------------------------------------------- .npy

#[test]
fn npy_rows_read_back_with_their_shape() {
    let dir = tmp();
    let p = dir.path().join("e.npy");
    let mut w = infer::npy::NpyWriter::create(&p, &[2, 1, 3]).unwrap();
    w.write_rows(ndarray::aview2(&[[1.0f32, 2.0, 3.0]])).unwrap();
    w.write_rows(ndarray::aview2(&[[4.0f32, 5.0, 6.0]])).unwrap();
    w.finish().unwrap();
    assert_eq!(read_f32(&p).unwrap(), (vec![2, 1, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]));
}

#[test]
fn npy_writer_refuses_short_output() {
    let dir = tmp();
    let p = dir.path().join("e.npy");
    let mut w = infer::npy::NpyWriter::create(&p, &[2, 3]).unwrap();
    w.write_rows(ndarray::aview2(&[[1.0f32, 2.0, 3.0]])).unwrap();
    assert!(w.finish().is_err());
    assert!(!p.exists(), "no partial file");
}

// ---------------------------------------------------------------- reports

#[test]
fn report_matches_hand_computed_values() {
    // 3 classes; class 2 never predicted.
    let y_true = [0, 0, 1, 1, 2, 2];
    let y_pred = [0, 1, 1, 1, 0, 1];
    let r = infer::report::classification_report(&y_true, &y_pred, 3, None);
    let p = |c: usize| r.per_class[c];
    assert_eq!((p(0).precision, p(0).recall), (0.5, 0.5));
    assert_eq!((p(1).precision, p(1).recall), (0.5, 1.0));
    assert!((p(1).f1 - 2.0 / 3.0).abs() < 1e-15);
    assert_eq!((p(2).precision, p(2).recall, p(2).f1), (0.0, 0.0, 0.0));
    assert!((r.accuracy - 0.5).abs() < 1e-15);
    assert!((r.macro_avg.f1 - (0.5 + 2.0 / 3.0) / 3.0).abs() < 1e-15);
    insta::assert_snapshot!("report_small", format!("{}\n{}", r.to_text(2), r.confusion_text()));
}

// ---------------------------------------------------------------- the binary

use ae_onnx::fixture::{fixture_model, node, noise};
use ae_onnx::{AttributeProto, TensorProto};

/// Fixture files in a temp dir: the three models, 60 synthetic 8×8 images
/// with labels, and assorted broken inputs.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tmp();
        let d = dir.path();
        for kind in ["classifier", "autoencoder", "encoder"] {
            std::fs::write(d.join(format!("{kind}.onnx")), fixture_model(kind, 8, 8).to_bytes()).unwrap();
        }
        std::fs::write(d.join("big.onnx"), fixture_model("classifier", 12, 12).to_bytes()).unwrap();
        // Classifiers taking float16 (taken) and int32 (refused) images: a Cast in front.
        for (file, elem_type) in [("f16.onnx", 10), ("i32.onnx", 6)] {
            let mut m = fixture_model("classifier", 8, 8);
            let g = m.graph.as_mut().unwrap();
            g.input[0].r#type.as_mut().unwrap().tensor_type.as_mut().unwrap().elem_type = elem_type;
            g.node[0].input[0] = "image32".into();
            g.node.insert(0, node("Cast", &["image"], "image32", vec![AttributeProto::int("to", 1)]));
            std::fs::write(d.join(file), m.to_bytes()).unwrap();
        }
        // A classifier whose logits are NaN (times a NaN constant).
        let mut m = fixture_model("classifier", 8, 8);
        let g = m.graph.as_mut().unwrap();
        g.initializer.push(TensorProto::f32("nan", &[1], &[f32::NAN]));
        let softmax = g.node.len() - 1;
        g.node[softmax].input[0] = "nan_logits".into();
        g.node.insert(softmax, node("Mul", &["logits", "nan"], "nan_logits", vec![]));
        std::fs::write(d.join("nan.onnx"), m.to_bytes()).unwrap();
        // An "autoencoder" whose reconstruction has 2 channels.
        let mut m = fixture_model("encoder", 8, 8);
        let g = m.graph.as_mut().unwrap();
        g.node.last_mut().unwrap().output[0] = "reconstruction".into();
        g.output[0].name = "reconstruction".into();
        std::fs::write(d.join("two-channel.onnx"), m.to_bytes()).unwrap();
        let imgs = Images { count: 60, channels: 1, rows: 8, cols: 8, pixels: noise(60 * 64, 11) };
        idx::write_images(d.join("images"), &imgs, false).unwrap();
        idx::write_images(d.join("images.gz"), &imgs, true).unwrap();
        let labels: Vec<u8> = noise(60, 12).iter().map(|b| b % 10).collect();
        idx::write_labels(d.join("labels"), &labels, false).unwrap();
        idx::write_labels(d.join("labels-short"), &labels[..59], false).unwrap();
        let mut bad = labels.clone();
        bad[5] = 12;
        idx::write_labels(d.join("labels-12"), &bad, false).unwrap();
        std::fs::write(d.join("random.onnx"), noise(300, 5)).unwrap();
        std::fs::write(d.join("empty.onnx"), b"").unwrap();
        let whole = std::fs::read(d.join("classifier.onnx")).unwrap();
        std::fs::write(d.join("truncated.onnx"), &whole[..whole.len() / 2]).unwrap();
        std::fs::create_dir(d.join("no-images")).unwrap();
        std::fs::write(d.join("no-images/readme.txt"), b"x").unwrap();
        std::fs::write(d.join("fake.png"), b"not a png at all").unwrap();
        let png_dir = d.join("pngs");
        std::fs::create_dir(&png_dir).unwrap();
        for i in 0..3 {
            image::GrayImage::from_raw(8, 8, imgs.image(i).to_vec())
                .unwrap()
                .save(png_dir.join(format!("{i}.png")))
                .unwrap();
        }
        image::GrayImage::from_raw(16, 16, vec![128; 256]).unwrap().save(d.join("16x16.png")).unwrap();
        Fixture { dir }
    }

    fn p(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

/// A command line as owned strings (for tables of cases).
fn args(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

/// Runs `infer` and returns (exit code, stdout, stderr).
fn infer_cmd(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_infer")).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn redact_json(text: &str) -> String {
    let mut v: serde_json::Value = serde_json::from_str(text).unwrap();
    for k in ["seconds", "images_per_second", "model", "images", "peak_rss_mib"] {
        if v.get(k).is_some() {
            v[k] = serde_json::json!("[redacted]");
        }
    }
    if v.pointer("/input/images").is_some() {
        v["input"]["images"] = serde_json::json!("[redacted]");
    }
    serde_json::to_string_pretty(&v).unwrap()
}

#[test]
fn classify_reports_snapshots() {
    let f = Fixture::new();
    let (code, text, err) = infer_cmd(&[
        "classify",
        "--model",
        &f.p("classifier.onnx"),
        "--images",
        &f.p("images"),
        "--labels",
        &f.p("labels"),
        "--device",
        "cpu",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("images/s") && err.contains("CPUExecutionProvider"), "{err}");
    insta::assert_snapshot!("classify_text", text);
    let (code, json, _) = infer_cmd(&[
        "classify",
        "--model",
        &f.p("classifier.onnx"),
        "--images",
        &f.p("images.gz"),
        "--labels",
        &f.p("labels"),
        "--format",
        "json",
        "-q",
    ]);
    assert_eq!(code, 0);
    insta::assert_snapshot!("classify_json", redact_json(&json));
    let (code, hist, _) =
        infer_cmd(&["classify", "--model", &f.p("classifier.onnx"), "--images", &f.p("images"), "-q"]);
    assert_eq!(code, 0);
    insta::assert_snapshot!("classify_histogram", hist);
}

#[test]
fn classify_writes_its_files() {
    let f = Fixture::new();
    let out = f.dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let (code, _, err) = infer_cmd(&[
        "classify",
        "--model",
        &f.p("classifier.onnx"),
        "--images",
        &f.p("images"),
        "--labels",
        &f.p("labels"),
        "-q",
        "--predictions",
        &f.p("out/pred.csv"),
        "--confusion",
        &f.p("out/confusion.png"),
        "--samples",
        &f.p("out/samples"),
        "--probabilities",
        &f.p("out/probs.npy"),
        "--inputs",
        &f.p("out/inputs.npy"),
    ]);
    assert_eq!(code, 0, "{err}");
    // What the model was given: the images / 255, [N, 1, H, W].
    let (shape, x) = read_f32(&out.join("inputs.npy")).unwrap();
    assert_eq!(shape, vec![60, 1, 8, 8]);
    let want: Vec<f32> = noise(60 * 64, 11).iter().map(|&v| v as f32 / 255.0).collect();
    assert_eq!(x, want);
    let csv = std::fs::read_to_string(out.join("pred.csv")).unwrap();
    assert_eq!(csv.lines().count(), 61);
    assert!(csv.starts_with("index,predicted,confidence,true\n"));
    for png in ["confusion.png", "samples/correct.png", "samples/incorrect.png"] {
        image::open(out.join(png)).unwrap_or_else(|e| panic!("{png}: {e}"));
    }
    let (shape, probs) = read_f32(&out.join("probs.npy")).unwrap();
    assert_eq!(shape, vec![60, 10]);
    for row in probs.chunks(10) {
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-4, "each row is a distribution: {row:?}");
    }
    // --top 3: the three most probable classes, most probable first, the
    // first the predicted one, with the probabilities of probs.npy.
    let (code, _, err) = infer_cmd(&[
        "classify",
        "--model",
        &f.p("classifier.onnx"),
        "--images",
        &f.p("images"),
        "-q",
        "--top",
        "3",
        "--predictions",
        &f.p("out/top.csv"),
    ]);
    assert_eq!(code, 0, "{err}");
    let names = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"];
    let mut r = csv::Reader::from_path(out.join("top.csv")).unwrap();
    assert_eq!(r.headers().unwrap().iter().collect::<Vec<_>>(), ["index", "predicted", "confidence", "top"]);
    for (i, rec) in r.records().enumerate() {
        let rec = rec.unwrap();
        let top: Vec<(usize, f32)> = rec[3]
            .split(';')
            .map(|e| {
                let (k, p) = e.split_once(':').unwrap();
                (names.iter().position(|n| *n == k).unwrap(), p.parse().unwrap())
            })
            .collect();
        let row = &probs[i * 10..(i + 1) * 10];
        let mut order: Vec<usize> = (0..10).collect();
        order.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
        assert_eq!(top.iter().map(|t| t.0).collect::<Vec<_>>(), order[..3], "image {i}: {rec:?}");
        assert_eq!(names[top[0].0], &rec[1]);
        for &(k, p) in &top {
            assert!((p - row[k]).abs() < 1e-6, "image {i}: class {k}: {p} vs {}", row[k]);
        }
    }
    let (code, _, err) =
        infer_cmd(&["classify", "--model", &f.p("classifier.onnx"), "--images", &f.p("images"), "--top", "11"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.trim().ends_with("classifier.onnx has 10 classes") && err.contains("--top 11"), "{err}");
}

#[test]
fn pictures_and_directories_are_inputs() {
    let f = Fixture::new();
    let (code, out, err) = infer_cmd(&["classify", "--model", &f.p("classifier.onnx"), "--images", &f.p("pngs"), "-q"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("(3 images)"), "{out}");
    // Each file is named with its class, in sorted order, on screen, in
    // the JSON and in the CSV; the classes are those of the same images
    // read from the IDX file.
    let csv_rows = |p: &str| -> Vec<Vec<String>> {
        let mut r = csv::Reader::from_path(p).unwrap();
        let head: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
        std::iter::once(head).chain(r.records().map(|x| x.unwrap().iter().map(String::from).collect())).collect()
    };
    let (code, _, err) = infer_cmd(&[
        "classify",
        "--model",
        &f.p("classifier.onnx"),
        "--images",
        &f.p("images"),
        "-q",
        "--predictions",
        &f.p("idx.csv"),
    ]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = infer_cmd(&[
        "classify",
        "--model",
        &f.p("classifier.onnx"),
        "--images",
        &f.p("pngs"),
        "-q",
        "--predictions",
        &f.p("png.csv"),
    ]);
    assert_eq!(code, 0, "{err}");
    let (idx_rows, png_rows) = (csv_rows(&f.p("idx.csv")), csv_rows(&f.p("png.csv")));
    assert_eq!(png_rows[0], ["index", "path", "predicted", "confidence"]);
    for i in 0..3 {
        let path = f.p(&format!("pngs/{i}.png"));
        assert_eq!(png_rows[i + 1][1], path);
        assert_eq!(png_rows[i + 1][2], idx_rows[i + 1][1], "image {i}");
        let line = out.lines().nth(i + 1).unwrap();
        assert!(line.starts_with(&path) && line.contains(&format!("  {}  ", png_rows[i + 1][2])), "{out}");
    }
    let (code, out, _) = infer_cmd(&[
        "classify",
        "--model",
        &f.p("classifier.onnx"),
        "--images",
        &f.p("pngs"),
        "-q",
        "--format",
        "json",
    ]);
    assert_eq!(code, 0);
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["files"][2]["path"], f.p("pngs/2.png").as_str());
    assert_eq!(doc["files"][2]["predicted"], png_rows[3][2].as_str());
    // reconstruct --per-image and embed name the files too.
    let (code, _, err) = infer_cmd(&[
        "reconstruct",
        "--model",
        &f.p("autoencoder.onnx"),
        "--images",
        &f.p("pngs"),
        "-q",
        "--per-image",
        &f.p("r.csv"),
    ]);
    assert_eq!(code, 0, "{err}");
    let rows = csv_rows(&f.p("r.csv"));
    assert_eq!((rows[0][1].as_str(), rows[3][1].as_str()), ("path", f.p("pngs/2.png").as_str()));
    let (code, out, err) =
        infer_cmd(&["embed", "--model", &f.p("encoder.onnx"), "--images", &f.p("pngs"), "-q", "--out", &f.p("e.npy")]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("(rows' files: {})", f.p("e.paths.csv"))), "{out}");
    let rows = csv_rows(&f.p("e.paths.csv"));
    assert_eq!(
        rows,
        [["index", "path"], ["0", &f.p("pngs/0.png")], ["1", &f.p("pngs/1.png")], ["2", &f.p("pngs/2.png")]]
    );
    // IDX inputs keep the index only: no path column, no index file.
    let (code, _, _) = infer_cmd(&[
        "embed",
        "--model",
        &f.p("encoder.onnx"),
        "--images",
        &f.p("images"),
        "-q",
        "--out",
        &f.p("i.npy"),
    ]);
    assert_eq!(code, 0);
    assert!(!Path::new(&f.p("i.paths.csv")).exists());
    let (code, _, err) =
        infer_cmd(&["classify", "--model", &f.p("classifier.onnx"), "--images", &f.p("16x16.png"), "-q"]);
    assert_eq!(code, 2);
    assert!(err.contains("image is 16×16, the model takes 8×8 (pass --preprocess resize"), "{err}");
    let (code, _, err) =
        infer_cmd(&["classify", "--model", &f.p("classifier.onnx"), "--images", &f.p("16x16.png"), "--resize", "-q"]);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn per_file_report_and_bad_pictures() {
    let f = Fixture::new();
    let bad_dir = f.dir.path().join("mixed");
    std::fs::create_dir(&bad_dir).unwrap();
    for i in 0..3 {
        std::fs::copy(f.p(&format!("pngs/{i}.png")), bad_dir.join(format!("{i}.png"))).unwrap();
    }
    std::fs::write(bad_dir.join("1b.png"), b"\x89PNG but cut short").unwrap();
    std::fs::write(bad_dir.join("z.jpg"), b"").unwrap();
    let whole = std::fs::read(f.p("16x16.png")).unwrap();
    std::fs::write(bad_dir.join("cut.png"), &whole[..whole.len() - 20]).unwrap();
    let pred = f.p("mixed.csv");
    let model = f.p("classifier.onnx");
    let run = |extra: &[&str]| {
        let mut args = vec!["classify", "--model", &model, "-q"];
        args.extend_from_slice(extra);
        let (code, out, err) = infer_cmd(&args);
        (code, out.replace(&f.p(""), "<tmp>/"), err.replace(&f.p(""), "<tmp>/"))
    };
    // Every bad picture named, one line each; exit 2; nothing written.
    let (code, out, err) = run(&["--images", &f.p("mixed"), "--predictions", &pred]);
    assert_eq!(code, 2, "{err}");
    assert!(out.is_empty());
    assert!(!Path::new(&pred).exists(), "nothing written");
    insta::assert_snapshot!("bad_pictures_error", err);
    // --skip-bad: the rest is classified, the skipped files listed and counted.
    let (code, out, err) = run(&["--images", &f.p("mixed"), "--predictions", &pred, "--skip-bad"]);
    assert_eq!(code, 0, "{err}");
    insta::assert_snapshot!("bad_pictures_skipped_stderr", err);
    insta::assert_snapshot!("per_file_report", out);
    let csv = std::fs::read_to_string(&pred).unwrap();
    assert_eq!(csv.lines().count(), 4, "{csv}");
    // The CSV holds real paths (only the report above is redacted).
    assert!(csv.lines().nth(1).unwrap().contains(&f.p("mixed/0.png")), "{csv}");
    // Several paths, in the order given; a file and a directory mixed.
    let (code, out, err) = run(&["--images", &f.p("pngs/2.png"), &f.p("pngs"), "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    let paths: Vec<&str> = doc["files"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["<tmp>/pngs/2.png", "<tmp>/pngs/0.png", "<tmp>/pngs/1.png", "<tmp>/pngs/2.png"]);
    assert_eq!(doc["files"][0]["predicted"], doc["files"][3]["predicted"]);
    // An IDX file cannot be mixed with pictures.
    let (code, _, err) = run(&["--images", &f.p("images"), &f.p("pngs")]);
    assert_eq!(code, 2);
    assert_eq!(
        err.trim_end(),
        "error: <tmp>/images: not a PNG/JPEG picture or a directory; an IDX file must be the only --images input"
    );
}

/// Ctrl-C in the middle of a run: exit 130, and none of the outputs (nor
/// a temporary file) is left.
#[test]
fn ctrl_c_stops_and_leaves_nothing() {
    let dir = tmp();
    let out = dir.path();
    let model = root().join("models/classifier.onnx");
    let images = root().join("data/mnist/t10k-images-idx3-ubyte");
    // Batch 1 over 10 000 images: seconds of work, checked between batches.
    let child = Command::new(env!("CARGO_BIN_EXE_infer"))
        .args(["classify", "-q", "--batch-size", "1", "--threads", "1", "--model"])
        .arg(&model)
        .arg("--images")
        .arg(&images)
        .arg("--predictions")
        .arg(out.join("p.csv"))
        .arg("--probabilities")
        .arg(out.join("p.npy"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(700));
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
    let t0 = std::time::Instant::now();
    let result = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&result.stderr);
    assert_eq!(result.status.code(), Some(130), "{err}");
    assert!(err.contains("error: interrupted: nothing was written"), "stopped at a check, not killed: {err}");
    assert!(t0.elapsed().as_secs_f64() < 1.0, "prompt: {:?}", t0.elapsed());
    let left: Vec<_> = std::fs::read_dir(out).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.is_empty(), "nothing written: {left:?}");
}

#[test]
fn median_is_numpys() {
    use infer::commands::median;
    assert_eq!(median(&[1.0, 2.0, 3.0]), 2.0);
    assert_eq!(median(&[1.0, 2.0, 3.0, 4.0]), 2.5, "even count: mean of the two middle values");
    assert_eq!(median(&[]), 0.0);
}

#[test]
fn reconstruct_mean_is_mean_of_per_image() {
    let f = Fixture::new();
    let (code, out, err) = infer_cmd(&[
        "reconstruct",
        "--model",
        &f.p("autoencoder.onnx"),
        "--images",
        &f.p("images"),
        "--format",
        "json",
        "-q",
        "--out",
        &f.p("grid.png"),
        "--npy",
        &f.p("rec.npy"),
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let per: Vec<f64> = v["per_image_mse"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
    assert_eq!(per.len(), 60);
    let mean = per.iter().sum::<f64>() / 60.0;
    assert!((mean - v["mean_mse"].as_f64().unwrap()).abs() < 1e-12);
    image::open(f.p("grid.png")).unwrap();
    assert!(std::fs::metadata(f.p("rec.npy")).unwrap().len() >= 60 * 64 * 4);
}

#[test]
fn embed_writes_one_row_per_image() {
    let f = Fixture::new();
    let (code, out, err) = infer_cmd(&[
        "embed",
        "--model",
        &f.p("encoder.onnx"),
        "--images",
        &f.p("images"),
        "--out",
        &f.p("e.npy"),
        "-q",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("wrote 60 embeddings of 128 floats"), "{out}");
    let (shape, values) = read_f32(Path::new(&f.p("e.npy"))).unwrap();
    assert_eq!((shape, values.len()), (vec![60, 128], 60 * 128));
}

#[test]
fn info_snapshot() {
    let f = Fixture::new();
    let (code, out, _) = infer_cmd(&["info", "--model", &f.p("classifier.onnx")]);
    assert_eq!(code, 0);
    insta::assert_snapshot!("info_text", out.replace(&f.p(""), "<tmp>/"));
    // The element type is the model's, not assumed.
    let (code, out, _) = infer_cmd(&["info", "--model", &f.p("f16.onnx")]);
    assert_eq!(code, 0);
    assert!(out.contains("input: image float16 [batch, 1, 8, 8]"), "{out}");
    // A QDQ model says so, counted from its nodes; and it runs.
    let mut m = fixture_model("classifier", 8, 8);
    let g = m.graph.as_mut().unwrap();
    g.initializer.push(TensorProto::f32("s", &[], &[1.0 / 255.0]));
    g.initializer.push(TensorProto::i8("z", &[], &[-128]));
    g.node[0].input[0] = "image.dq".into();
    g.node.insert(0, node("DequantizeLinear", &["image.q", "s", "z"], "image.dq", vec![]));
    g.node.insert(0, node("QuantizeLinear", &["image", "s", "z"], "image.q", vec![]));
    std::fs::write(f.p("int8.onnx"), m.to_bytes()).unwrap();
    let (code, out, _) = infer_cmd(&["info", "--model", &f.p("int8.onnx")]);
    assert_eq!(code, 0);
    assert!(out.contains("precision: int8 (QDQ: 1 QuantizeLinear, 1 DequantizeLinear)"), "{out}");
    let (code, out, err) = infer_cmd(&["classify", "--model", &f.p("int8.onnx"), "--images", &f.p("images")]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("predicted class histogram"), "{out}");
}

#[test]
fn bad_inputs_fail_with_one_line_and_exit_2() {
    let f = Fixture::new();
    let m = f.p("classifier.onnx");
    let imgs = f.p("images");
    let cases: Vec<(&str, Vec<String>)> = vec![
        ("classify_on_autoencoder", args(&["classify", "--model", &f.p("autoencoder.onnx"), "--images", &imgs])),
        ("int32_input", args(&["classify", "--model", &f.p("i32.onnx"), "--images", &imgs])),
        ("nan_probabilities", args(&["classify", "--model", &f.p("nan.onnx"), "--images", &imgs])),
        ("reconstruction_shape", args(&["reconstruct", "--model", &f.p("two-channel.onnx"), "--images", &imgs])),
        ("wrong_size", args(&["classify", "--model", &f.p("big.onnx"), "--images", &imgs])),
        ("labels_count", args(&["classify", "--model", &m, "--images", &imgs, "--labels", &f.p("labels-short")])),
        ("label_range", args(&["classify", "--model", &m, "--images", &imgs, "--labels", &f.p("labels-12")])),
        ("random_onnx", args(&["classify", "--model", &f.p("random.onnx"), "--images", &imgs])),
        ("empty_onnx", args(&["info", "--model", &f.p("empty.onnx")])),
        ("truncated_onnx", args(&["classify", "--model", &f.p("truncated.onnx"), "--images", &imgs])),
        ("missing_model", args(&["classify", "--model", &f.p("nope.onnx"), "--images", &imgs])),
        ("missing_images", args(&["classify", "--model", &m, "--images", &f.p("nope")])),
        ("labels_as_images", args(&["classify", "--model", &m, "--images", &f.p("labels")])),
        ("no_images_dir", args(&["classify", "--model", &m, "--images", &f.p("no-images")])),
        ("fake_png", args(&["classify", "--model", &m, "--images", &f.p("fake.png")])),
        (
            "output_dir_missing",
            args(&["classify", "--model", &m, "--images", &imgs, "--predictions", &f.p("nodir/p.csv")]),
        ),
        ("embed_on_classifier", args(&["embed", "--model", &m, "--images", &imgs, "--out", &f.p("x.npy")])),
        ("cuda_required", args(&["classify", "--model", &m, "--images", &imgs, "--device", "cuda"])),
        ("batch_size_0", args(&["classify", "--model", &m, "--images", &imgs, "--batch-size", "0"])),
        ("bad_flag", args(&["classify", "--model", &m, "--imagez", &imgs])),
    ];
    let mut snap = String::new();
    for (name, args) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let t0 = std::time::Instant::now();
        let (code, out, err) = infer_cmd(&args);
        assert!(t0.elapsed().as_secs_f64() < 5.0, "{name} took too long");
        assert_eq!(code, 2, "{name}: {err}");
        assert!(out.is_empty(), "{name}: nothing on stdout: {out}");
        assert!(!err.contains("panicked"), "{name}: {err}");
        let first = err.lines().next().unwrap_or("").replace(&f.p(""), "<tmp>/");
        if *name != "bad_flag" {
            assert_eq!(err.trim_end().lines().count(), 1, "{name}: one line: {err}");
        }
        // Long runtime messages (protobuf, ONNX Runtime) are cut for the snapshot.
        let first: String = first.chars().take(160).collect();
        snap += &format!("{name}: {first}\n");
    }
    assert!(!f.dir.path().join("x.npy").exists(), "no partial output");
    insta::assert_snapshot!("infer_errors", snap);
}

#[test]
fn help_snapshots() {
    let (code, out, _) = infer_cmd(&["--help"]);
    assert_eq!(code, 0);
    assert!(out.contains("Exit codes:") && out.contains("2    bad input"), "{out}");
    insta::assert_snapshot!("infer_help", out);
    for sub in ["classify", "reconstruct", "embed", "info"] {
        let (code, out, _) = infer_cmd(&[sub, "--help"]);
        assert_eq!(code, 0);
        insta::assert_snapshot!(format!("infer_help_{sub}"), out);
    }
}

#[test]
fn committed_classifier_reaches_its_accuracy_on_mnist() {
    let (code, out, err) = infer_cmd(&[
        "classify",
        "--model",
        &root().join("models/classifier.onnx").display().to_string(),
        "--images",
        &root().join("data/mnist/t10k-images-idx3-ubyte").display().to_string(),
        "--labels",
        &root().join("data/mnist/t10k-labels-idx1-ubyte").display().to_string(),
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("images/s"), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let acc = v["report"]["accuracy"].as_f64().unwrap();
    assert!(acc >= 0.992, "committed classifier: test accuracy {acc}");
    assert_eq!(v["count"], 10000);
    let provider = v["execution_provider"].as_str().unwrap();
    assert!(provider == "CPUExecutionProvider" || provider == "CUDAExecutionProvider", "{provider}");
}

/// Digits a font draws on a larger canvas, as a user's photos and scans
/// come: six faces (DejaVu Sans ExtraLight, Book, Bold and Oblique for
/// stroke widths and slant, Serif, Sans Mono Bold), glyphs
/// 24–150 px high at seeded positions, dark ink on light paper and light
/// on dark, with seeded noise. Written in label order as PNGs; returns the
/// labels in the files' sorted order.
fn font_digits(dir: &Path) -> Vec<u8> {
    use ab_glyph::{Font, FontRef, PxScale, ScaleFont};
    let fonts = [
        dejavu::sans::extra_light(),
        dejavu::sans::regular(),
        dejavu::sans::bold(),
        dejavu::sans::oblique(),
        dejavu::serif::regular(),
        dejavu::sans_mono::bold(),
    ]
    .map(|b| FontRef::try_from_slice(b).expect("DejaVu parses"));
    let mut rng = noise(4096, 77).into_iter().cycle();
    let mut labels = Vec::new();
    let (cw, ch) = (240u32, 180u32);
    for digit in 0..10u8 {
        for (fi, font) in fonts.iter().enumerate() {
            for size in [24.0f32, 60.0, 150.0] {
                for dark_ink in [true, false] {
                    let (paper, ink) = if dark_ink { (225.0, 25.0) } else { (20.0, 235.0) };
                    let scaled = font.as_scaled(PxScale::from(size));
                    let glyph = scaled.scaled_glyph(char::from(b'0' + digit));
                    let outline = font.outline_glyph(glyph).expect("digits have outlines");
                    let b = outline.px_bounds();
                    // A seeded place where the whole glyph fits.
                    let room_x = (cw as f32 - b.width()).max(1.0) as u32;
                    let room_y = (ch as f32 - b.height()).max(1.0) as u32;
                    let ox = rng.next().unwrap() as u32 * room_x / 256;
                    let oy = rng.next().unwrap() as u32 * room_y / 256;
                    let mut coverage = vec![0f32; (cw * ch) as usize];
                    outline.draw(|x, y, c| {
                        let (px, py) = (x + ox, y + oy);
                        if px < cw && py < ch {
                            coverage[(py * cw + px) as usize] = c;
                        }
                    });
                    let img = image::GrayImage::from_fn(cw, ch, |x, y| {
                        let c = coverage[(y * cw + x) as usize];
                        let n = rng.next().unwrap() as f32 / 255.0 * 16.0 - 8.0;
                        image::Luma([(paper + (ink - paper) * c + n).clamp(0.0, 255.0) as u8])
                    });
                    let name = format!("{digit}-w{fi}-{size}-{}.png", if dark_ink { "paper" } else { "dark" });
                    img.save(dir.join(name)).unwrap();
                    labels.push(digit);
                }
            }
        }
    }
    labels
}

/// MNIST-style preprocessing on pictures unlike MNIST's: the committed
/// classifier reads font digits of every size, place, weight and polarity
/// far better with it than with a plain resize. Prints both accuracies.
#[test]
fn mnist_preprocessing_reads_font_digits() {
    let dir = tmp();
    let pics = dir.path().join("digits");
    std::fs::create_dir(&pics).unwrap();
    let labels = font_digits(&pics);
    idx::write_labels(dir.path().join("labels"), &labels, false).unwrap();
    let accuracy = |extra: &[&str]| {
        let model = root().join("models/classifier.onnx").display().to_string();
        let (pics, labels) = (pics.display().to_string(), dir.path().join("labels").display().to_string());
        let mut args =
            vec!["classify", "--model", &model, "--images", &pics, "--labels", &labels, "-q", "--format", "json"];
        args.extend_from_slice(extra);
        let (code, out, err) = infer_cmd(&args);
        assert_eq!(code, 0, "{err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v["report"]["accuracy"].as_f64().unwrap()
    };
    let plain = accuracy(&["--resize", "--invert", "auto"]);
    let mnist = accuracy(&["--preprocess", "mnist"]);
    let forced = accuracy(&["--preprocess", "mnist", "--invert", "never"]);
    eprintln!(
        "{} font digits: --resize --invert auto {plain:.3}, --preprocess mnist {mnist:.3}, with --invert never {forced:.3}",
        labels.len()
    );
    assert!(mnist >= 0.95, "MNIST-style preprocessing: accuracy {mnist}");
    assert!(mnist >= plain + 0.3, "MNIST-style {mnist} vs plain resize {plain}");
    // Half the pictures are dark ink on paper: without inversion they fail.
    assert!(forced <= mnist - 0.3, "--invert never {forced} vs auto {mnist}");
}

/// Memory must not grow with the number of images (beyond the few bytes of
/// each prediction kept): 20 000 vs 200 000 images.
#[test]
fn classify_streams_in_bounded_memory() {
    let f = Fixture::new();
    let peak = |n: usize| {
        let p = f.dir.path().join(format!("many-{n}"));
        let imgs = Images { count: n, channels: 1, rows: 8, cols: 8, pixels: noise(n * 64, n as u64) };
        idx::write_images(&p, &imgs, false).unwrap();
        let (code, _, err) = infer_cmd(&[
            "classify",
            "--model",
            &f.p("classifier.onnx"),
            "--images",
            p.to_str().unwrap(),
            "--device",
            "cpu",
        ]);
        assert_eq!(code, 0, "{err}");
        let mib: f64 = err
            .split("peak RSS ")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .expect("peak RSS reported");
        eprintln!("{n} images: peak RSS {mib} MiB");
        mib
    };
    let (small, large) = (peak(20_000), peak(200_000));
    // 200 000 images are 12.8 MB of pixels and 51 MB as f32: streaming keeps
    // the growth to the per-image predictions (12 bytes each, 2.2 MB more).
    assert!(large - small < 12.0, "peak RSS grew from {small} to {large} MiB");
}

#[test]
fn tick_labels_are_plain_decimals() {
    let p = ae_core::figure::plain;
    let got: Vec<String> = [0.99, 0.0025, 0.00044, 12.5, 1.0, 1000.0, 0.0].into_iter().map(p).collect();
    assert_eq!(got, ["0.99", "0.0025", "0.00044", "12.5", "1", "1000", "0"]);
}

/// MNIST test pictures as PNG files: `dir/<sub>/<i>.png` for each
/// (sub-folder, first index, count); returns the labels in file order.
fn mnist_pngs(dir: &Path, layout: &[(&str, usize, usize)]) -> Vec<u8> {
    let images = idx::read_images(root().join("data/mnist/t10k-images-idx3-ubyte")).unwrap();
    let labels = idx::read_labels(root().join("data/mnist/t10k-labels-idx1-ubyte")).unwrap();
    let mut out = Vec::new();
    for &(sub, first, n) in layout {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
        for (i, &label) in labels.iter().enumerate().skip(first).take(n) {
            let img = image::GrayImage::from_raw(28, 28, images.image(i).to_vec()).unwrap();
            img.save(dir.join(sub).join(format!("{i:05}.png"))).unwrap();
            out.push(label);
        }
    }
    out
}

/// A folder whose sub-folders are not class names (`photos/2024/…`) is
/// unlabelled pictures, read recursively; one whose sub-folders all are is
/// labelled by them, and its bad pictures are each named, or skipped.
#[test]
fn picture_folders_labelled_only_by_class_names() {
    let dir = tmp();
    let model = root().join("models/classifier.onnx").display().to_string();
    let photos = dir.path().join("photos");
    mnist_pngs(&photos, &[("2024", 0, 3), ("2024/june", 3, 2), ("misc", 5, 2)]);
    let p = photos.display().to_string();
    let (code, out, err) = infer_cmd(&["classify", "--model", &model, "--images", &p, "-q", "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    let files: Vec<String> = doc["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap().replace(&format!("{p}/"), ""))
        .collect();
    assert_eq!(
        files,
        [
            "2024/00000.png",
            "2024/00001.png",
            "2024/00002.png",
            "2024/june/00003.png",
            "2024/june/00004.png",
            "misc/00005.png",
            "misc/00006.png"
        ]
    );
    assert!(doc.get("report").is_none_or(|r| r.is_null()), "no labels, no report: {out}");
    let (_, text, _) = infer_cmd(&["classify", "--model", &model, "--images", &p, "-q"]);
    assert!(text.starts_with("7 pictures (directories read recursively"), "{text}");
    // --folder-labels always insists on class names.
    let (code, _, err) = infer_cmd(&["classify", "--model", &model, "--images", &p, "--folder-labels", "always", "-q"]);
    assert_eq!(code, 2);
    assert!(err.contains("class folder \"2024\" is not one of the model's classes"), "{err}");

    // Class folders: labels from the folder names, every bad picture named.
    let digits = dir.path().join("digits");
    let labels = mnist_pngs(&digits, &[("7", 0, 1), ("2", 1, 1), ("1", 2, 1)]);
    assert_eq!(labels, [7, 2, 1]);
    std::fs::write(digits.join("7/bad.png"), b"not a png").unwrap();
    std::fs::write(digits.join("1/cut.jpg"), b"").unwrap();
    let d = digits.display().to_string();
    let (code, _, err) = infer_cmd(&["classify", "--model", &model, "--images", &d, "-q"]);
    assert_eq!(code, 2);
    assert!(err.contains("7/bad.png") && err.contains("1/cut.jpg"), "both bad pictures named: {err}");
    let (code, out, err) =
        infer_cmd(&["classify", "--model", &model, "--images", &d, "--skip-bad", "-q", "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["count"], 3);
    assert_eq!(doc["report"]["accuracy"], 1.0, "labelled by their folders: {out}");
    assert_eq!(doc["input"]["skipped"].as_array().unwrap().len(), 2);
    // --folder-labels never: the same folder as unlabelled pictures.
    let (code, out, _) = infer_cmd(&[
        "classify",
        "--model",
        &model,
        "--images",
        &d,
        "--skip-bad",
        "--folder-labels",
        "never",
        "-q",
        "--format",
        "json",
    ]);
    assert_eq!(code, 0);
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(doc.get("report").is_none_or(|r| r.is_null()), "{out}");
}

/// The temporary-file sweeper leaves other programs' files alone.
#[test]
fn outputs_never_remove_files_that_are_not_ours() {
    let dir = tmp();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let theirs = out.join(".notes.3999999.tmp");
    std::fs::write(&theirs, b"someone's notes").unwrap();
    let pred = out.join("p.csv").display().to_string();
    let (code, _, err) = infer_cmd(&[
        "classify",
        "--model",
        &root().join("models/classifier.onnx").display().to_string(),
        "--images",
        &root().join("data/mnist/t10k-images-idx3-ubyte").display().to_string(),
        "--predictions",
        &pred,
        "-q",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(theirs.exists(), "another program's file was removed");
}

/// `infer serve ARGS` runs `infer-serve ARGS` from beside `infer`, in the
/// same process (its exit code is the server's), and says how to build it
/// when it is not there.
#[test]
fn serve_runs_the_server_binary_beside_infer() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tmp();
    let infer = dir.path().join("infer");
    std::fs::copy(env!("CARGO_BIN_EXE_infer"), &infer).unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(&infer).args(args).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, _, err) = run(&["serve", "--models", "m"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.starts_with("error: infer serve runs the server's binary, infer-serve, and there is none beside"),
        "{err}"
    );
    assert!(err.contains("cargo build --release -p serve"), "{err}");
    // A stand-in server: prints its arguments, exits 7.
    let server = dir.path().join("infer-serve");
    std::fs::write(&server, "#!/bin/sh\necho \"args: $*\"\nexit 7\n").unwrap();
    std::fs::set_permissions(&server, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (code, out, err) = run(&["serve", "--models", "m", "--help", "-x"]);
    assert_eq!((code, out.as_str()), (Some(7), "args: --models m --help -x\n"), "{err}");
}
