//! The networks: geometry, schedules, class names, summaries, and each graph's ONNX export against
//! tch.

use std::collections::BTreeMap;

use tch::nn::ModuleT;
use tch::{nn::VarStore, Device, Kind, Tensor};
use train::config::{Loss, TrainSettings};
use train::export::onnx::{self as export_onnx, Graph};
use train::model::{Autoencoder, AutoencoderConfig, Classifier, ClassifierConfig, InputShape};
use train::pipeline;

use crate::common::*;

#[test]
fn every_filter_size_keeps_the_image_size() {
    let _g = lock();
    for k in 2..=7 {
        for layers in [1, 2, 3] {
            let cfg = AutoencoderConfig { layers, filter_size: k, filters: 2, input: InputShape::gray(28, 20) };
            cfg.validate().unwrap();
            let vs = VarStore::new(Device::Cpu);
            let ae = Autoencoder::new(&vs.root(), &cfg);
            let x = Tensor::rand([3, 1, 28, 20], (Kind::Float, Device::Cpu));
            let y = ae.forward_t(&x, false);
            assert_eq!(y.size(), vec![3, 1, 28, 20], "K={k} L={layers}");
            let e = ae.encode(&x, false);
            let [c, h, w] = cfg.embedding_shape();
            assert_eq!(e.size(), vec![3, c as i64, h as i64, w as i64]);
        }
    }
}

#[test]
fn bad_geometry_and_hyperparameters_are_refused() {
    let cfg =
        |layers, k, f, h| AutoencoderConfig { layers, filter_size: k, filters: f, input: InputShape::gray(h, 28) };
    assert_eq!(cfg(0, 3, 4, 28).validate().unwrap_err().to_string(), "--layers must be between 1 and 8, got 0");
    assert_eq!(cfg(2, 0, 4, 28).validate().unwrap_err().to_string(), "--filter-size must be between 2 and 7, got 0");
    assert_eq!(
        cfg(2, 3, 4, 30).validate().unwrap_err().to_string(),
        "images of 30×28 cannot go through 2 2×2 poolings: height and width must be divisible by 4"
    );
    // One layer pools once: an even size suffices.
    cfg(1, 3, 4, 30).validate().unwrap();
    // Label smoothing has no target to smooth under the reference's MSE loss.
    let mut clf = train::config::Preset::Quick.classifier().with_loss(Loss::Mse);
    clf.settings.label_smoothing = 0.1;
    assert_eq!(
        clf.validate().unwrap_err().to_string(),
        "--label-smoothing smooths the cross-entropy's targets; --loss mse has none"
    );
}

/// `--class-names`: a file (one per line) or a list; empty, repeated or
/// single names are refused with the source named.
#[test]
fn class_names_parse_from_a_file_or_a_list() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("names.txt");
    std::fs::write(&f, "T-shirt/top\nTrouser\n\n  Pullover \n").unwrap();
    assert_eq!(pipeline::parse_class_names(f.to_str().unwrap()).unwrap(), ["T-shirt/top", "Trouser", "Pullover"]);
    assert_eq!(pipeline::parse_class_names("cat, dog").unwrap(), ["cat", "dog"]);
    let err = |spec: &str| pipeline::parse_class_names(spec).unwrap_err().to_string();
    assert_eq!(err("cat,,dog"), "--class-names: class name 2 is empty");
    assert_eq!(err("cat,dog,cat"), "--class-names: class name \"cat\" appears twice");
    assert_eq!(err("cat"), "--class-names: 1 class name(s), expected one per class (at least 2)");
}

/// Warm-up climbs linearly from lr/25 to lr, then cosine decays to 0
/// (one-cycle); without warm-up the old cosine schedule is unchanged.
#[test]
fn one_cycle_schedule_warms_up_then_decays() {
    let stage = train::fit::Stage { name: "", epochs: 1, lr: 5e-3, frozen: None };
    let mut s = settings(1, 64);
    s.cosine = true;
    s.warmup = 0.25;
    let at = |s: &TrainSettings, step| stage.lr_at(s, step, 100);
    assert!((at(&s, 0) - 5e-3 / 25.0).abs() < 1e-12);
    assert!(at(&s, 10) < at(&s, 20) && at(&s, 20) < 5e-3);
    assert!((at(&s, 25) - 5e-3).abs() < 1e-12, "peak at the end of warm-up");
    assert!(at(&s, 60) < at(&s, 40) && at(&s, 99) < 1e-5);
    s.warmup = 0.0;
    assert!((at(&s, 0) - 5e-3).abs() < 1e-12 && (at(&s, 50) - 2.5e-3).abs() < 1e-12);
    s.warmup = 1.0;
    assert_eq!(s.validate().unwrap_err().to_string(), "--warmup must be a fraction in [0, 1), got 1");
}

#[test]
fn onnx_matches_tch_for_all_graphs_and_architectures() {
    let _g = lock();
    tch::manual_seed(3);
    let meta = BTreeMap::new();
    for (layers, k) in [(1, 2), (2, 3), (4, 5), (4, 3), (2, 2)] {
        let cfg = AutoencoderConfig { layers, filter_size: k, filters: 3, input: InputShape::gray(28, 28) };
        let vs = VarStore::new(Device::Cpu);
        let ae = Autoencoder::new(&vs.root(), &cfg);
        randomise(&vs);
        let w = weights(&vs);
        let m = export_onnx::autoencoder_model(&w, &cfg, Graph::Autoencoder, &meta).unwrap();
        let d = parity(&m, &|x| vec![ae.forward_t(x, false)], 28, 28);
        assert!(d <= 1e-4, "autoencoder L{layers} K{k}: {d}");
        let m = export_onnx::autoencoder_model(&w, &cfg, Graph::Encoder, &meta).unwrap();
        let d = parity(&m, &|x| vec![ae.encode(x, false)], 28, 28);
        assert!(d <= 1e-4, "encoder L{layers} K{k}: {d}");

        let ccfg = ClassifierConfig { encoder: cfg, fc_units: 9, classes: 10, dropout: 0.0 };
        let cvs = VarStore::new(Device::Cpu);
        let clf = Classifier::new(&cvs.root(), &ccfg);
        randomise(&cvs);
        let m = export_onnx::classifier_model(&weights(&cvs), &ccfg, &meta).unwrap();
        let d = parity(
            &m,
            &|x| {
                let l = clf.logits(x);
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
    let cfg = AutoencoderConfig { layers: 2, filter_size: 3, filters: 4, input: InputShape::gray(28, 28) };
    let vs = VarStore::new(Device::Cpu);
    let _ae = Autoencoder::new(&vs.root(), &cfg);
    let meta =
        BTreeMap::from([("val_loss".to_string(), "0.01".to_string()), ("producer".to_string(), "test".to_string())]);
    let w = weights(&vs);
    let ae = export_onnx::autoencoder_model(&w, &cfg, Graph::Autoencoder, &meta).unwrap();
    insta::assert_snapshot!("autoencoder_graph", ae_onnx::summary(&ae));
    let enc = export_onnx::autoencoder_model(&w, &cfg, Graph::Encoder, &meta).unwrap();
    insta::assert_snapshot!("encoder_graph", ae_onnx::summary(&enc));
    let ccfg = ClassifierConfig { encoder: cfg, fc_units: 8, classes: 10, dropout: 0.0 };
    let cvs = VarStore::new(Device::Cpu);
    let _clf = Classifier::new(&cvs.root(), &ccfg);
    let clf = export_onnx::classifier_model(&weights(&cvs), &ccfg, &meta).unwrap();
    insta::assert_snapshot!("classifier_graph", ae_onnx::summary(&clf));
}

/// `model.summary()`: the quick preset's autoencoder and classifier, layer
/// by layer; the totals are the parameter counts `make bench` checks
/// against PyTorch (342,241 and 499,514); stage 1 shows the encoder frozen.
#[test]
fn summaries_of_the_quick_preset() {
    use train::config::Preset;
    use train::model::{ClassifierConfig, InputShape};
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let ae_cfg = Preset::Quick.autoencoder().architecture.with_input(InputShape::gray(28, 28));
    let ae = ae_cfg.init(&(vs.root() / "ae")).summary();
    assert_eq!((ae.total(), ae.trainable(), ae.frozen()), (342_241, 342_241, 0));
    let clf_cfg =
        ClassifierConfig { encoder: ae_cfg, fc_units: Preset::Quick.classifier().fc_units, classes: 10, dropout: 0.0 };
    let clf = clf_cfg.init(&(vs.root() / "clf"));
    let (stage1, stage2) = (clf.summary(true), clf.summary(false));
    assert_eq!((stage2.total(), stage2.frozen()), (499_514, 0));
    let encoder: usize = stage1.layers.iter().filter(|l| l.name.starts_with("encoder.")).map(|l| l.params).sum();
    assert_eq!((stage1.total(), stage1.frozen(), stage1.trainable()), (499_514, encoder, 499_514 - encoder));
    // Every parameter of the variable store is in a row.
    let stored: usize = vs
        .variables()
        .iter()
        .filter(|(k, v)| v.requires_grad() && !k.contains("running_"))
        .map(|(_, v)| v.numel())
        .sum();
    assert_eq!(stored, ae.total() + stage2.total());
    insta::assert_snapshot!("summary_quick", format!("{}\n{}\n{}", ae.render(), stage1.render(), stage2.render()));
}

/// `--dropout`: the head drops units only while the whole network trains;
/// evaluation (and so the export) sees the same network as without it.
#[test]
fn dropout_acts_only_in_training() {
    let _g = lock();
    let ae = AutoencoderConfig { layers: 2, filter_size: 3, filters: 4, input: InputShape::gray(28, 28) };
    let x = Tensor::rand([8, 1, 28, 28], (Kind::Float, Device::Cpu));
    let outputs = |dropout: f64| {
        tch::manual_seed(3);
        let vs = VarStore::new(Device::Cpu);
        let c = ClassifierConfig { encoder: ae, fc_units: 32, classes: 10, dropout }.init(&vs.root());
        tch::manual_seed(4);
        (c.forward_t(&x, true), c.forward_t(&x, false), c.logits(&x))
    };
    let (train0, eval0, logits0) = outputs(0.0);
    let (train5, eval5, logits5) = outputs(0.5);
    assert!(eval0.equal(&eval5) && logits0.equal(&logits5) && eval5.equal(&logits5), "dropout at evaluation");
    assert!((&train0 - &train5).abs().max().double_value(&[]) > 1e-3, "no dropout while training");
    let bad = ClassifierConfig { encoder: ae, fc_units: 32, classes: 10, dropout: 1.0 }.validate();
    assert_eq!(bad.unwrap_err().to_string(), "--dropout must be a probability in [0, 1), got 1");
}
