//! Classification metrics: scikit-learn's `classification_report` (same
//! numbers, same text layout, same `output_dict` keys) and the confusion
//! matrix.

use serde_json::{json, Map, Value};

/// Precision, recall, f1 and support of one class or one average.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scores {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: u64,
}

/// Everything `classification_report` computes, plus the confusion matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Class indices shown as rows: those present in the true or the
    /// predicted labels, ascending (as scikit-learn's `unique_labels`).
    pub labels: Vec<usize>,
    /// Display name of each row.
    pub names: Vec<String>,
    pub per_class: Vec<Scores>,
    pub accuracy: f64,
    pub macro_avg: Scores,
    pub weighted_avg: Scores,
    /// `confusion[t][p]`: images of true class `t` predicted as `p`, over
    /// all `num_classes` classes.
    pub confusion: Vec<Vec<u64>>,
    pub total: u64,
}

/// The top class and its probability (the first of equal maxima).
pub fn argmax<'a>(row: impl IntoIterator<Item = &'a f32>) -> (usize, f32) {
    row.into_iter().enumerate().fold((0, f32::NEG_INFINITY), |a, (k, &v)| if v > a.1 { (k, v) } else { a })
}

/// Builds the report. `class_names[i]` names class `i` (falls back to the
/// index). Labels must be `< num_classes`; the caller validates that.
pub fn classification_report(
    y_true: &[usize],
    y_pred: &[usize],
    num_classes: usize,
    class_names: Option<&[String]>,
) -> Report {
    assert_eq!(y_true.len(), y_pred.len(), "true and predicted label counts differ");
    let mut confusion = vec![vec![0u64; num_classes]; num_classes];
    for (&t, &p) in y_true.iter().zip(y_pred) {
        confusion[t][p] += 1;
    }
    let support: Vec<u64> = confusion.iter().map(|row| row.iter().sum()).collect();
    let predicted: Vec<u64> = (0..num_classes).map(|p| confusion.iter().map(|row| row[p]).sum()).collect();
    let labels: Vec<usize> = (0..num_classes).filter(|&c| support[c] > 0 || predicted[c] > 0).collect();
    let ratio = |num: u64, den: u64| if den == 0 { 0.0 } else { num as f64 / den as f64 };
    let per_class: Vec<Scores> = labels
        .iter()
        .map(|&c| {
            let tp = confusion[c][c];
            let precision = ratio(tp, predicted[c]);
            let recall = ratio(tp, support[c]);
            let f1 = if precision + recall == 0.0 { 0.0 } else { 2.0 * precision * recall / (precision + recall) };
            Scores { precision, recall, f1, support: support[c] }
        })
        .collect();
    let total: u64 = support.iter().sum();
    let correct: u64 = (0..num_classes).map(|c| confusion[c][c]).sum();
    let n = per_class.len().max(1) as f64;
    let macro_avg = Scores {
        precision: per_class.iter().map(|s| s.precision).sum::<f64>() / n,
        recall: per_class.iter().map(|s| s.recall).sum::<f64>() / n,
        f1: per_class.iter().map(|s| s.f1).sum::<f64>() / n,
        support: total,
    };
    let weighted = |f: fn(&Scores) -> f64| {
        if total == 0 {
            0.0
        } else {
            per_class.iter().map(|s| f(s) * s.support as f64).sum::<f64>() / total as f64
        }
    };
    let weighted_avg = Scores {
        precision: weighted(|s| s.precision),
        recall: weighted(|s| s.recall),
        f1: weighted(|s| s.f1),
        support: total,
    };
    let names =
        labels.iter().map(|&c| class_names.and_then(|n| n.get(c)).cloned().unwrap_or_else(|| c.to_string())).collect();
    Report { labels, names, per_class, accuracy: ratio(correct, total), macro_avg, weighted_avg, confusion, total }
}

impl Report {
    /// The text of scikit-learn's `classification_report(..., digits)`.
    pub fn to_text(&self, digits: usize) -> String {
        const LAST: &str = "weighted avg";
        let width = self.names.iter().map(|n| n.chars().count()).max().unwrap_or(0).max(LAST.len()).max(digits);
        let mut out = format!("{:>width$} ", "");
        for h in ["precision", "recall", "f1-score", "support"] {
            out += &format!(" {h:>9}");
        }
        out += "\n\n";
        let row = |name: &str, s: &Scores| {
            format!(
                "{name:>width$}  {:>9.digits$} {:>9.digits$} {:>9.digits$} {:>9}\n",
                s.precision, s.recall, s.f1, s.support
            )
        };
        for (name, s) in self.names.iter().zip(&self.per_class) {
            out += &row(name, s);
        }
        out += "\n";
        out += &format!("{:>width$}  {:>9} {:>9} {:>9.digits$} {:>9}\n", "accuracy", "", "", self.accuracy, self.total);
        out += &row("macro avg", &self.macro_avg);
        out += &row(LAST, &self.weighted_avg);
        out
    }

    /// The confusion matrix as text: rows are true classes, columns predicted.
    pub fn confusion_text(&self) -> String {
        let k = self.confusion.len();
        let cell = self
            .confusion
            .iter()
            .flatten()
            .map(|v| v.to_string().len())
            .max()
            .unwrap_or(1)
            .max(k.saturating_sub(1).to_string().len())
            + 1;
        // Rows carry the class names when there are any ("6 Shirt"); the
        // columns keep the indices, which stay narrow.
        let row_label = |t: usize| match self.names.get(t) {
            Some(name) if self.confusion.len() == self.names.len() && *name != t.to_string() => format!("{t} {name}"),
            _ => t.to_string(),
        };
        let lw = (0..k).map(|t| row_label(t).chars().count()).max().unwrap_or(1).max(5) + 1;
        let mut out = String::from("confusion matrix (rows: true, columns: predicted)\n");
        out += &format!("{:>lw$}", "");
        for p in 0..k {
            out += &format!("{p:>cell$}");
        }
        out += "\n";
        for (t, row) in self.confusion.iter().enumerate() {
            let label = row_label(t);
            if label == t.to_string() {
                out += &format!("{label:>lw$}");
            } else {
                out += &format!(" {label:<w$}", w = lw - 1);
            }
            for v in row {
                out += &format!("{v:>cell$}");
            }
            out += "\n";
        }
        out
    }

    /// scikit-learn's `output_dict=True` shape, plus `confusion_matrix`.
    pub fn to_json(&self) -> Value {
        let scores =
            |s: &Scores| json!({"precision": s.precision, "recall": s.recall, "f1-score": s.f1, "support": s.support});
        let mut m = Map::new();
        for (name, s) in self.names.iter().zip(&self.per_class) {
            m.insert(name.clone(), scores(s));
        }
        m.insert("accuracy".into(), json!(self.accuracy));
        m.insert("macro avg".into(), scores(&self.macro_avg));
        m.insert("weighted avg".into(), scores(&self.weighted_avg));
        m.insert("confusion_matrix".into(), json!(self.confusion));
        Value::Object(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_predictions_score_one() {
        let y = [0, 1, 2, 2, 1, 0];
        let r = classification_report(&y, &y, 3, None);
        assert_eq!(r.accuracy, 1.0);
        assert!(r.per_class.iter().all(|s| s.precision == 1.0 && s.recall == 1.0 && s.f1 == 1.0));
        assert_eq!(r.confusion, vec![vec![2, 0, 0], vec![0, 2, 0], vec![0, 0, 2]]);
    }

    #[test]
    fn class_never_predicted_has_zero_precision() {
        // Class 2 is never predicted: precision 0/0 → 0.0 (zero_division).
        let r = classification_report(&[0, 1, 2], &[0, 1, 1], 3, None);
        assert_eq!(r.per_class[2].precision, 0.0);
        assert_eq!(r.per_class[2].f1, 0.0);
        assert_eq!(r.per_class[1].precision, 0.5);
        assert!((r.accuracy - 2.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn absent_classes_are_not_rows() {
        let r = classification_report(&[0, 0, 3], &[0, 3, 3], 5, None);
        assert_eq!(r.labels, vec![0, 3]);
        assert_eq!(r.confusion.len(), 5);
    }
}

/// A row of a predictions CSV (`infer classify --predictions`, a classifier
/// run's `test_predictions.csv`).
#[derive(serde::Serialize)]
struct Prediction<'a> {
    index: usize,
    /// The picture file, for picture inputs.
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<String>,
    predicted: &'a str,
    /// Six decimals, as the report prints them.
    confidence: String,
    #[serde(rename = "true", skip_serializing_if = "Option::is_none")]
    truth: Option<&'a str>,
    /// `--top K`: the K most probable classes, `name:probability` joined by
    /// `;`, most probable first.
    #[serde(skip_serializing_if = "Option::is_none")]
    top: Option<String>,
}

/// The `k` highest of `scores` as (class, score), highest first (the lower
/// class first among equals, as [`argmax`] picks).
pub fn top<'a>(scores: impl IntoIterator<Item = &'a f32>, k: usize) -> Vec<(usize, f32)> {
    let mut all: Vec<(usize, f32)> = scores.into_iter().copied().enumerate().collect();
    all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    all.truncate(k);
    all
}

/// Writes one row per image (index, the picture file for picture inputs,
/// predicted class, confidence, the true class when known, and `--top`'s
/// classes when asked) to `path`, atomically.
pub fn write_predictions(
    path: &std::path::Path,
    predicted: &[usize],
    confidence: &[f32],
    truth: Option<&[usize]>,
    names: &[String],
    files: Option<&[std::path::PathBuf]>,
    top: Option<&[Vec<(usize, f32)>]>,
) -> std::io::Result<()> {
    let rows = predicted.iter().zip(confidence).enumerate().map(|(index, (&p, &c))| Prediction {
        index,
        path: files.map(|f| f[index].display().to_string()),
        predicted: &names[p],
        confidence: format!("{c:.6}"),
        truth: truth.map(|t| names[t[index]].as_str()),
        top: top.map(|t| t[index].iter().map(|&(k, p)| format!("{}:{p:.6}", names[k])).collect::<Vec<_>>().join(";")),
    });
    ae_core::atomic::write_csv(path, rows)
}
