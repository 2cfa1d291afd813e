//! Triton's classification extension, on both faces: an output requested
//! with the parameter `classification: N` (tritonclient's `class_count=N`)
//! comes back as its top N values per batch row, as BYTES strings
//! `"value:index:label"` (`"value:index"` when the output has no class
//! names), highest first, instead of its floats.

use super::api_error::ApiError;
use super::queue::OutputRows;

/// The parameter's name, in requests.
pub const PARAMETER: &str = "classification";

/// An output's top classes: `[batch, n]` strings.
#[derive(Debug, Clone, PartialEq)]
pub struct Classes {
    pub shape: Vec<i64>,
    pub strings: Vec<String>,
}

/// The requested N: a whole number of at least 1.
pub fn count(output: &str, value: Option<i64>) -> Result<usize, ApiError> {
    match value {
        Some(n) if n >= 1 => Ok(n as usize),
        _ => Err(ApiError::bad(format!("output {output:?}: classification must be a whole number of at least 1"))),
    }
}

/// The top `n` of each batch row of `rows` (all of a row when it holds
/// fewer, as Triton does). `labels` name the row's elements when there are
/// exactly as many of them as a row has values.
pub fn top(rows: &OutputRows, n: usize, labels: &[String]) -> Classes {
    let batch = rows.shape.first().copied().unwrap_or(1).max(1) as usize;
    let per_row = rows.data.len() / batch;
    let n = n.min(per_row);
    let labels = (labels.len() == per_row).then_some(labels);
    let mut strings = Vec::with_capacity(batch * n);
    for row in rows.data.chunks(per_row.max(1)).take(batch) {
        let mut order: Vec<usize> = (0..row.len()).collect();
        // Highest first; equal values in index order. NaN sorts last.
        order.sort_by(|&a, &b| row[b].partial_cmp(&row[a]).unwrap_or_else(|| row[a].is_nan().cmp(&row[b].is_nan())));
        for &i in order.iter().take(n) {
            strings.push(match labels {
                Some(l) => format!("{:.6}:{i}:{}", row[i], l[i]),
                None => format!("{:.6}:{i}", row[i]),
            });
        }
    }
    Classes { shape: vec![batch as i64, n as i64], strings }
}

/// BYTES elements as the binary tensor extension and gRPC's raw contents
/// carry them: each a 4-byte little-endian length, then its bytes.
pub fn serialize(strings: &[String]) -> Vec<u8> {
    let mut out = Vec::with_capacity(strings.iter().map(|s| s.len() + 4).sum());
    for s in strings {
        out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::classification::{count, serialize, top};
    use crate::queue::OutputRows;

    #[test]
    fn top_classes_per_row_with_and_without_labels() {
        let rows = OutputRows { name: "p".into(), shape: vec![2, 3], data: vec![0.1, 0.7, 0.2, 0.5, 0.0, 0.5] };
        let labels: Vec<String> = ["zero", "one", "two"].map(String::from).to_vec();
        let c = top(&rows, 2, &labels);
        assert_eq!(c.shape, [2, 2]);
        assert_eq!(c.strings, ["0.700000:1:one", "0.200000:2:two", "0.500000:0:zero", "0.500000:2:two"]);
        // Labels that do not fit the row are left out; N over the row is cut to it.
        let c = top(&rows, 5, &labels[..2]);
        assert_eq!(c.shape, [2, 3]);
        assert_eq!(c.strings[..3], ["0.700000:1", "0.200000:2", "0.100000:0"]);
        assert_eq!(serialize(&["ab".into(), "".into()]), [2, 0, 0, 0, b'a', b'b', 0, 0, 0, 0]);
        assert!(count("p", Some(0)).is_err() && count("p", None).is_err());
    }
}
