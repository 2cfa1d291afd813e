//! `train export`: writes autoencoder.onnx, encoder.onnx and (for a
//! classifier run) classifier.onnx, each verified in ONNX Runtime against
//! the tch model before it is put in place. Every graph's metadata names
//! the checkpoint (SHA-256) and the data it came from; a classifier run
//! whose autoencoder checkpoint changed since it was trained is refused.

pub mod figures;
pub mod int8;
pub mod onnx;
mod staging;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use tch::{nn::ModuleT, nn::VarStore, Device, Kind, Tensor};

use ae_core::interrupt;
use infer::session::{Device as OrtDevice, ModelSession, SessionOptions};

use crate::checkpoint::to_vec;
use crate::checkpoint::Checkpoint;
use crate::data;
use crate::early_stopping::best_epoch;
use crate::error::TrainError;
use crate::model::AutoencoderConfig;
use crate::run_dir::{sha256_file, ModelConfig, RunConfig, RunDir, BEST, WEIGHTS};
use crate::test_report::Measured;

use self::figures::without_figures;
use self::int8::{Gate, Int8Options, RunImages};
use self::onnx::{Graph, Weights};
use self::staging::Staging;

/// Largest allowed |ONNX − tch| on any output element.
pub const TOLERANCE: f32 = 1e-4;

/// Images `train export` checks every graph on.
pub const VERIFY_IMAGES: usize = 64;

/// Which weights `encoder.onnx` of a classifier run holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[derive(strum::Display, strum::EnumString, strum::IntoStaticStr, strum::VariantArray, strum::EnumMessage)]
#[strum(serialize_all = "kebab-case")]
pub enum EncoderSource {
    /// The autoencoder run's encoder, as the autoencoder trained it.
    #[default]
    Autoencoder,
    /// The classifier run's encoder after fine-tuning (classifier runs only).
    FineTuned,
}

impl EncoderSource {
    /// What the metadata says.
    fn describe(self) -> &'static str {
        match self {
            EncoderSource::Autoencoder => "the autoencoder run's encoder (not fine-tuned)",
            EncoderSource::FineTuned => "the classifier run's encoder (fine-tuned with the classifier)",
        }
    }
}

/// Which epoch of a run `train export` exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[derive(strum::Display, strum::EnumString, strum::IntoStaticStr, strum::VariantArray, strum::EnumMessage)]
#[strum(serialize_all = "lowercase")]
pub enum Epoch {
    /// The best epoch (lowest val_loss; best.safetensors), as the classifier and the test report use it.
    #[default]
    Best,
    /// The last epoch trained (the checkpoint, weights.safetensors).
    Last,
}

#[derive(Debug, Clone)]
pub struct ExportJob {
    pub run: PathBuf,
    pub out: PathBuf,
    pub quiet: bool,
    /// Images to verify on; default: the run's own dataset.
    pub images: Option<PathBuf>,
    /// How many images the parity check runs.
    pub verify_count: usize,
    pub encoder: EncoderSource,
    /// The run's best epoch or its last.
    pub epoch: Epoch,
    /// Also write `*.int8.onnx` beside each float model.
    pub int8: Option<Int8Options>,
    /// Flat `.onnx` files, or a Triton model repository.
    pub layout: Layout,
}

/// How the exported models are laid out in the output folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[derive(strum::Display, strum::EnumString, strum::IntoStaticStr, strum::VariantArray, strum::EnumMessage)]
#[strum(serialize_all = "lowercase")]
pub enum Layout {
    /// OUT/<model>.onnx (and OUT/<model>.int8.onnx).
    #[default]
    Flat,
    /// A Triton model repository: OUT/<model>/config.pbtxt and OUT/<model>/1/model.onnx, float and
    /// int8 as separate models; `infer serve`, Triton and KServe serve it unchanged.
    Triton,
}

/// Images per batch a Triton repository's configs allow (`max_batch_size`).
pub const TRITON_MAX_BATCH: usize = 64;

/// The config.pbtxt of an exported model: batching across requests with no
/// added delay, one CPU instance; the header says how to run it on a GPU.
fn triton_config(name: &str, session: &ModelSession) -> String {
    let batching = infer::triton::Batching {
        max_batch: TRITON_MAX_BATCH,
        across_requests: true,
        max_queue_delay: std::time::Duration::ZERO,
        max_queue: 1024,
        instances: 1,
    };
    let config = infer::triton::ModelConfig::for_model(name, session, &batching);
    format!(
        "# Written by `train export --layout triton`; served unchanged by `infer serve --models DIR`,\n\
         # Triton (tritonserver --model-repository DIR) and KServe.\n\
         # On a GPU under Triton, make the instance group: instance_group [{{ kind: KIND_GPU, count: 1 }}]\n{}",
        config.to_pbtxt()
    )
}

#[derive(Debug, Clone)]
pub struct Exported {
    pub path: PathBuf,
    pub bytes: usize,
    /// Float models: the parity check's max |ONNX − tch|.
    pub max_diff: Option<f32>,
    /// Int8 models: float and int8 on the validation images.
    pub gate: Option<Gate>,
}

/// The tch model's outputs for a batch, in the ONNX graph's output order.
type Reference = Box<dyn Fn(&Tensor) -> Vec<Tensor>>;

/// A graph ready to write, with the tch reference to check it against.
struct Pending {
    graph: Graph,
    model: ae_onnx::ModelProto,
    reference: Reference,
    /// The run whose data the weights were trained on (int8 calibration).
    source: Rc<RunConfig>,
}

/// The last component of a path: a published model names the files and
/// directories it came from, never where they were on the builder's disk
/// (the SHA-256 beside each name identifies them).
fn base_name(p: &Path) -> String {
    let p = std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    p.file_name().map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().into_owned())
}

/// How a picture should be fitted to the model's input, for consumers that
/// take photos and drawings (`infer --preprocess`, the web page): MNIST's
/// own recipe (white digit centred in a 20-pixel box) for a 1×28×28 model
/// trained on IDX images whose classes, if it has any, are the ten digits;
/// a plain resize for everything else (Fashion-MNIST, colour, image folders).
fn intended_preprocess(cfg: &RunConfig) -> &'static str {
    let input = cfg.model.autoencoder().input;
    let digits = match &cfg.model {
        ModelConfig::Classifier { class_names, .. } => {
            class_names.len() == 10 && class_names.iter().enumerate().all(|(i, n)| *n == i.to_string())
        }
        ModelConfig::Autoencoder { .. } => true,
    };
    match (input.channels, input.height, input.width, cfg.dataset.folder.is_none(), digits) {
        (1, 28, 28, true, true) => "mnist",
        _ => "resize",
    }
}

/// The weights a graph is made of: a weights file of a run, the epoch it
/// holds and why that one.
struct Source {
    file: &'static str,
    sha256: String,
    ckpt: Checkpoint,
    /// What the metadata's `epoch_selected` says.
    selected: String,
}

impl Source {
    fn read(run: &RunDir, cfg: &RunConfig, file: &'static str, selected: String) -> Result<Source, TrainError> {
        let sha256 = sha256_file(&run.file(file))?;
        // The weights must be the ones config.json describes, and the data
        // what they were trained on: the metadata says both.
        let ckpt = run.weights(file, &cfg.fingerprint(), Device::Cpu)?;
        cfg.check_data_unchanged(&run.path)?;
        Ok(Source { file, sha256, ckpt, selected })
    }

    /// `--epoch`'s choice in `run`. The best epoch is the one the
    /// checkpoint's history names (its last stage's best): taken from
    /// `best.safetensors` when that file holds it, saved from that very
    /// history; from the checkpoint when the best is the checkpoint's own
    /// epoch (a run stopped between the two writes). Anything else is
    /// refused rather than exported under the wrong epoch.
    fn chosen(run: &RunDir, cfg: &RunConfig, epoch: Epoch) -> Result<Source, TrainError> {
        // The checkpoint's history, not history.csv's (which may lag by one).
        let trained = Checkpoint::read_header(&run.file(WEIGHTS))?;
        let best = best_epoch(&trained.history, cfg.train.monitor()).map_or(trained.epoch, |r| r.epoch);
        match (epoch, run.file(BEST).is_file()) {
            (Epoch::Best, true) => {
                let held = Checkpoint::read_header(&run.file(BEST))?;
                if held.holds(best, &trained.history) {
                    Source::read(run, cfg, BEST, "best".into())
                } else if best == trained.epoch {
                    Source::read(run, cfg, WEIGHTS, "best (the checkpoint's own epoch)".into())
                } else {
                    Err(TrainError::BadRun {
                        path: run.file(BEST),
                        msg: format!(
                            "holds {}, but the run's checkpoint names epoch {best} as its best: continue the run \
                             with --resume, or export its last epoch with --epoch last",
                            held.describe(best)
                        ),
                    })
                }
            }
            (Epoch::Best, false) => {
                Source::read(run, cfg, WEIGHTS, "last (the run keeps no best epoch: trained by an older train)".into())
            }
            (Epoch::Last, _) => Source::read(run, cfg, WEIGHTS, "last".into()),
        }
    }

    /// The stage the weights were trained in (1 in older runs).
    fn stage(&self) -> usize {
        self.ckpt.history.last().map_or(1, |r| r.stage)
    }
}

fn metadata(cfg: &RunConfig, run: &RunDir, weights: &Source) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    m.insert("weights_sha256".into(), weights.sha256.clone());
    m.insert("weights_file".into(), weights.file.into());
    m.insert("run".into(), base_name(&run.path));
    let input = cfg.model.autoencoder().input;
    let (c, h, w) = (input.channels, input.height, input.width);
    m.insert("producer".into(), cfg.producer.clone());
    m.insert("model_kind".into(), cfg.model.kind().into());
    let pixels = match (c, cfg.dataset.folder.is_some()) {
        (1, false) => "grayscale pixel / 255 in [0, 1], as IDX images store them (MNIST: white digit on black)",
        (1, true) => "grayscale pixel / 255 in [0, 1], as the training pictures were",
        _ => "RGB planes, pixel / 255 in [0, 1]",
    };
    m.insert("input".into(), format!("image: float32 [batch, {c}, {h}, {w}], {pixels}"));
    m.insert("input_shape".into(), format!("[{c}, {h}, {w}]"));
    m.insert("preprocess".into(), intended_preprocess(cfg).into());
    if let Some(n) = input.normalize {
        // Applied inside the graph (Sub, Div): recorded, not for the consumer to apply.
        m.insert(
            "normalization".into(),
            serde_json::json!({"mean": &n.mean[..c], "std": &n.std[..c], "applied": "in the graph, after the input"})
                .to_string(),
        );
    }
    if let Some(folder) = &cfg.dataset.folder {
        m.insert("dataset_layout".into(), format!("image folder, {} classes", folder.classes.len()));
    }
    let mut model = serde_json::to_value(&cfg.model).expect("json");
    if let Some(ae) = model.get_mut("autoencoder_run") {
        *ae = base_name(Path::new(ae.as_str().unwrap_or_default())).into();
    }
    m.insert("model_config".into(), model.to_string());
    m.insert("training".into(), serde_json::to_string(&cfg.train).expect("json"));
    // The graph is float32 whatever the training ran in.
    m.insert("training_precision".into(), cfg.train.precision.to_string());
    m.insert("dataset".into(), base_name(&cfg.dataset.images));
    m.insert("dataset_sha256".into(), cfg.dataset.images_sha256.clone());
    m.insert("dataset_images".into(), cfg.dataset.count.to_string());
    if let (Some(l), Some(h)) = (&cfg.dataset.labels, &cfg.dataset.labels_sha256) {
        m.insert("dataset_labels".into(), base_name(l));
        m.insert("dataset_labels_sha256".into(), h.clone());
    }
    // The exported epoch's figures; the run's length and time from its history.
    if let Some(epoch) = weights.ckpt.history.last() {
        m.insert("epoch".into(), epoch.epoch.to_string());
        m.insert("epoch_selected".into(), weights.selected.clone());
        m.insert("loss".into(), format!("{}", epoch.loss));
        m.insert("val_loss".into(), format!("{}", epoch.val_loss));
        if let Some(a) = epoch.val_accuracy {
            m.insert("val_accuracy".into(), format!("{a}"));
        }
    }
    if let Ok(history) = run.read_history() {
        if let Some(last) = history.last() {
            m.insert("epochs".into(), last.epoch.to_string());
            m.insert("train_seconds".into(), format!("{:.1}", history.iter().map(|r| r.seconds).sum::<f64>()));
        }
    }
    if let ModelConfig::Classifier { class_names, model, autoencoder_run, autoencoder_sha256, .. } = &cfg.model {
        m.insert("autoencoder_run".into(), base_name(autoencoder_run));
        m.insert("autoencoder_sha256".into(), autoencoder_sha256.clone());
        m.insert("autoencoder_weights_file".into(), cfg.model.autoencoder_weights().into());
        m.insert("classes".into(), model.classes.to_string());
        m.insert("class_names".into(), serde_json::to_string(class_names).expect("json"));
        // The test report's accuracy, only on the weights it was measured on.
        let json = std::fs::read_to_string(run.file("test_metrics.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok());
        if let Some(json) = json {
            let here = Measured { epoch: weights.ckpt.epoch, config_sha256: cfg.fingerprint() };
            match (Measured::of(&json), json["accuracy"].as_f64()) {
                (Some(measured), Some(acc)) if measured == here => {
                    m.insert("test_accuracy".into(), format!("{acc}"));
                    // The figure names the set it was measured on (a file's
                    // name, not the builder's directory).
                    let set = &json["test_set"];
                    if let Some(sha) = set["images_sha256"].as_str() {
                        m.insert("test_images_sha256".into(), sha.to_string());
                        if let Some(p) = set["images"].as_str() {
                            m.insert("test_images".into(), base_name(std::path::Path::new(p)));
                        }
                        if let Some(sha) = set["labels_sha256"].as_str() {
                            m.insert("test_labels_sha256".into(), sha.to_string());
                        }
                        if let Some(n) = set["count"].as_u64() {
                            m.insert("test_count".into(), n.to_string());
                        }
                    }
                }
                (measured, _) => {
                    let on = measured.map_or("weights it does not name (an older run)".to_string(), |t| {
                        format!(
                            "epoch {}{}",
                            t.epoch,
                            if t.config_sha256 == here.config_sha256 { "" } else { " of another configuration" }
                        )
                    });
                    m.insert(
                        "test_accuracy_omitted".into(),
                        format!(
                            "the run's test report was measured on {on}, not on these weights (epoch {})",
                            here.epoch
                        ),
                    );
                }
            }
        }
    }
    m
}

/// A model rebuilt from its config and filled from `weights`, with its
/// weights on the host for the graph.
fn load<M>(weights: &Source, build: impl FnOnce(&tch::nn::Path) -> M) -> Result<(Weights, M), TrainError> {
    let mut vs = VarStore::new(Device::Cpu);
    let model = build(&vs.root());
    weights.ckpt.copy_into(&mut vs, "")?;
    // The modules keep their tensors alive after the store goes.
    Ok((Weights::from_tensors(&weights.ckpt.tensors), model))
}

/// The graphs a run exports: an autoencoder run gives autoencoder + encoder
/// (of the epoch `epoch` picks); a classifier run adds its classifier (that
/// epoch) to its autoencoder run's two, made of the weights its encoder
/// started from (the encoder from `encoder`).
fn pending(
    run: &RunDir,
    encoder: EncoderSource,
    epoch: Epoch,
) -> Result<(Vec<Pending>, AutoencoderConfig, RunConfig), TrainError> {
    let cfg = run.read_config()?;
    let mut out = Vec::new();
    let mut fine_tuned = None;
    let (ae_run, ae_cfg_full, ae_weights) = match &cfg.model {
        ModelConfig::Autoencoder { .. } if encoder == EncoderSource::FineTuned => {
            return Err(TrainError::Invalid(format!(
                "{}: --encoder fine-tuned needs a classifier run, this is an autoencoder run",
                run.path.display()
            )))
        }
        ModelConfig::Autoencoder { .. } => (run.clone(), cfg.clone(), Source::chosen(run, &cfg, epoch)?),
        ModelConfig::Classifier { autoencoder_run, autoencoder_sha256, model, .. } => {
            let ae_run = RunDir::open(autoencoder_run)?;
            let ae_file = if cfg.model.autoencoder_weights() == BEST { BEST } else { WEIGHTS };
            let now = sha256_file(&ae_run.file(ae_file))?;
            if &now != autoencoder_sha256 {
                return Err(TrainError::Invalid(format!(
                    "{}: was trained on the encoder of {} with {ae_file} sha256 {autoencoder_sha256}, which now has \
                     sha256 {now}: retrain the classifier, or export the autoencoder run on its own",
                    run.path.display(),
                    ae_run.path.display()
                )));
            }
            let weights = Source::chosen(run, &cfg, epoch)?;
            let (w, clf) = load(&weights, |p| model.init(p))?;
            let clf = Rc::new(clf);
            let source = Rc::new(cfg.clone());
            let mut meta = metadata(&cfg, run, &weights);
            let m = onnx::classifier_model(&w, model, &meta)
                .map_err(|msg| TrainError::BadRun { path: run.file(weights.file), msg })?;
            let c = clf.clone();
            out.push(Pending {
                graph: Graph::Classifier,
                model: m,
                reference: Box::new(move |x| {
                    let logits = c.logits(x);
                    vec![logits.softmax(-1, Kind::Float), logits]
                }),
                source: source.clone(),
            });
            if encoder == EncoderSource::FineTuned {
                if cfg.train.frozen_epochs > 0 && weights.stage() == 1 {
                    return Err(TrainError::Invalid(format!(
                        "{}: --encoder fine-tuned: epoch {} is of the stage with the encoder frozen, so its encoder \
                         was never fine-tuned; export the autoencoder's encoder (the default), or finish the run \
                         with --resume",
                        run.path.display(),
                        weights.ckpt.epoch
                    )));
                }
                meta.insert("model_kind".into(), "encoder".into());
                meta.insert("encoder_weights".into(), encoder.describe().into());
                without_figures(
                    &mut meta,
                    "none of its own: the classifier's (loss, val_loss, val_accuracy, test_accuracy) are in \
                     classifier.onnx, measured with this encoder in it",
                );
                let m = onnx::autoencoder_model(&w, &model.encoder, Graph::Encoder, &meta)
                    .map_err(|msg| TrainError::BadRun { path: run.file(weights.file), msg })?;
                fine_tuned = Some(Pending {
                    graph: Graph::Encoder,
                    model: m,
                    reference: Box::new(move |x| vec![clf.encoder.forward_t(x, false)]),
                    source,
                });
            }
            let ae_cfg = ae_run.read_config()?;
            let selected = match ae_file {
                BEST => "best (the autoencoder run's best epoch, which the classifier's encoder started from)",
                _ => "last (the checkpoint the classifier's encoder started from)",
            };
            let ae_weights = Source::read(&ae_run, &ae_cfg, ae_file, selected.into())?;
            (ae_run, ae_cfg, ae_weights)
        }
    };
    let ModelConfig::Autoencoder { model: ae_cfg } = ae_cfg_full.model.clone() else {
        return Err(TrainError::Invalid(format!("{}: expected an autoencoder run", ae_run.path.display())));
    };
    let mut meta = metadata(&ae_cfg_full, &ae_run, &ae_weights);
    // One intent for every graph of an export: the classifier's classes decide it.
    meta.insert("preprocess".into(), intended_preprocess(&cfg).into());
    let (w, ae) = load(&ae_weights, |p| ae_cfg.init(p))?;
    let ae = Rc::new(ae);
    let bad = |msg| TrainError::BadRun { path: ae_run.file(ae_weights.file), msg };
    let m = onnx::autoencoder_model(&w, &ae_cfg, Graph::Autoencoder, &meta).map_err(bad)?;
    let a = ae.clone();
    let source = Rc::new(ae_cfg_full.clone());
    out.push(Pending {
        graph: Graph::Autoencoder,
        model: m,
        reference: Box::new(move |x| vec![a.forward_t(x, false)]),
        source: source.clone(),
    });
    match fine_tuned {
        Some(p) => out.push(p),
        None => {
            meta.insert("encoder_weights".into(), EncoderSource::Autoencoder.describe().into());
            without_figures(
                &mut meta,
                "none of its own: the autoencoder's (loss, val_loss) are in autoencoder.onnx, measured with this \
                 encoder in it",
            );
            let m = onnx::autoencoder_model(&w, &ae_cfg, Graph::Encoder, &meta).map_err(bad)?;
            out.push(Pending {
                graph: Graph::Encoder,
                model: m,
                reference: Box::new(move |x| vec![ae.encode(x, false)]),
                source,
            });
        }
    }
    Ok((out, ae_cfg, cfg))
}

/// Images to verify with: the first `n` of `--images` (IDX, or an image
/// folder read at the model's channels and size), or of the run's own data
/// set read as for training; in [0, 1].
fn verification_batch(
    images: Option<&Path>,
    dataset: &crate::run_dir::DatasetInfo,
    n: usize,
    input: &crate::model::InputShape,
) -> Result<Tensor, TrainError> {
    let (c, h, w) = (input.channels, input.height, input.width);
    let (images, path) = match images {
        Some(p) => {
            let folder = ae_core::folder::FolderOptions { channels: Some(c), size: Some((h, w)) };
            (data::load(p, None, folder, data::Take::First(n), false)?.images, p.to_path_buf())
        }
        None => (data::load_run_dataset(dataset, c, Some(n))?.0, dataset.images.clone()),
    };
    let images = data::with_channels(images, c)?;
    if (images.rows, images.cols) != (h, w) {
        return Err(TrainError::Invalid(format!(
            "{}: images are {}×{}, the model takes {h}×{w}",
            path.display(),
            images.rows,
            images.cols
        )));
    }
    Ok(data::images_tensor(&images, Device::Cpu))
}

/// Max |a − b| between ONNX Runtime's and tch's outputs.
pub fn max_abs_diff(
    session: &mut ModelSession,
    reference: &dyn Fn(&Tensor) -> Vec<Tensor>,
    x: &Tensor,
) -> Result<f32, TrainError> {
    let n = x.size()[0] as usize;
    let input = to_vec(x);
    let outputs = session.run(&input, n)?;
    let expected = tch::no_grad(|| reference(x));
    let mut diff = 0f32;
    for (o, e) in outputs.iter().zip(&expected) {
        let e = to_vec(e);
        if o.values.len() != e.len() {
            return Err(TrainError::Runtime(format!(
                "output {} has {} values, tch gives {}",
                o.name,
                o.values.len(),
                e.len()
            )));
        }
        diff = o.values.iter().zip(&e).fold(diff, |d, (a, b)| d.max((a - b).abs()));
    }
    Ok(diff)
}

pub fn export(job: &ExportJob) -> Result<Vec<Exported>, TrainError> {
    let _checked = interrupt::Checked::begin();
    let run = RunDir::open(&job.run)?;
    let (pending, ae_cfg, cfg) = pending(&run, job.encoder, job.epoch)?;
    std::fs::create_dir_all(&job.out).map_err(TrainError::io(&job.out, "cannot create the output directory"))?;
    ae_core::atomic::check_writable_dir(&job.out)
        .map_err(TrainError::io(&job.out, "output directory is not writable"))?;

    let x = verification_batch(job.images.as_deref(), &cfg.dataset, job.verify_count.max(1), &ae_cfg.input)?;
    // Every file is staged, checked from disk, and only then are they all
    // renamed into place; any error drops the staging, which removes them.
    let mut staging = Staging::new(&job.out);
    let model_path = |model: &str| match job.layout {
        Layout::Flat => job.out.join(format!("{model}.onnx")),
        Layout::Triton => job.out.join(model).join("1").join("model.onnx"),
    };
    // A Triton layout's config.pbtxt, from the model as ONNX Runtime reads it.
    let stage_config = |staging: &mut Staging, model: &str, session: &ModelSession| {
        if job.layout == Layout::Triton {
            staging.stage(job.out.join(model).join("config.pbtxt"), triton_config(model, session).as_bytes())?;
        }
        Ok::<_, TrainError>(())
    };
    for p in &pending {
        if interrupt::requested() {
            return Err(TrainError::Cancelled);
        }
        let name = p.graph.name();
        let staged = staging.stage(model_path(name), &p.model.to_bytes())?;
        let mut session = ModelSession::open(
            &staged,
            &SessionOptions { device: OrtDevice::Cpu, threads: None, ..Default::default() },
        )?;
        let diff = max_abs_diff(&mut session, &*p.reference, &x)?;
        let done = staging.last_mut();
        if diff > TOLERANCE {
            return Err(TrainError::Parity { path: done.path.clone(), diff, tol: TOLERANCE });
        }
        done.max_diff = Some(diff);
        stage_config(&mut staging, name, &session)?;
    }
    if let Some(opts) = &job.int8 {
        // One load per distinct run: the classifier's and the
        // autoencoder's runs usually share the images, not the split.
        let mut images: Vec<(Rc<RunConfig>, RunImages)> = Vec::new();
        for p in &pending {
            if !images.iter().any(|(c, _)| Rc::ptr_eq(c, &p.source)) {
                images.push((p.source.clone(), RunImages::of(&p.source, opts.calibration_images)?));
            }
            let (_, data) = images.iter().find(|(c, _)| Rc::ptr_eq(c, &p.source)).expect("loaded");
            let name = format!("{}.int8", p.graph.name());
            let target = model_path(&name);
            let q = int8::quantize_model(p.graph, &p.model, &target, data, opts)?;
            if opts.gate && !q.gate.passed {
                return Err(TrainError::Int8Gate { path: target, summary: q.gate.summary() });
            }
            let staged = staging.stage(target, &q.model.to_bytes())?;
            staging.last_mut().gate = Some(q.gate);
            if job.layout == Layout::Triton {
                let session = ModelSession::open(
                    &staged,
                    &SessionOptions { device: OrtDevice::Cpu, threads: Some(1), ..Default::default() },
                )?;
                stage_config(&mut staging, &name, &session)?;
            }
        }
    }
    if interrupt::requested() {
        return Err(TrainError::Cancelled);
    }
    let images = x.size()[0];
    staging.commit(|e| {
        if !job.quiet {
            let kb = e.bytes as f64 / 1000.0;
            match (&e.max_diff, &e.gate) {
                (Some(diff), _) => println!(
                    "exported {} ({kb:.1} kB): ONNX Runtime matches tch to {diff:.2e} (max |difference| on {images} images)",
                    e.path.display()
                ),
                (None, Some(g)) => println!("exported {} ({kb:.1} kB): {}", e.path.display(), g.summary()),
                (None, None) => println!("exported {} ({kb:.1} kB)", e.path.display()),
            }
        }
    })
}
