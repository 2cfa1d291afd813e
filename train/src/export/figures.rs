//! Which figures a model's metadata may carry: only those measured on its
//! own weights.

use std::collections::BTreeMap;

/// The metadata keys of a model's own figures, measured on its weights
/// (`loss`, `val_loss`, `val_accuracy`, `test_accuracy`).
const FIGURES: [&str; 4] = ["loss", "val_loss", "val_accuracy", "test_accuracy"];

/// Leaves the figures measured on another model out of a graph's
/// metadata — an encoder's come from the network it was trained in, an
/// int8 model's from its float original — and says so.
pub fn without_figures(meta: &mut BTreeMap<String, String>, why: &str) {
    for key in FIGURES {
        meta.remove(key);
    }
    meta.insert("figures".into(), why.into());
}
