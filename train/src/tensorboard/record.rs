//! TFRecord framing, the container of TensorBoard's event files: each
//! record is `length: u64 LE`, `masked_crc32c(length bytes): u32 LE`,
//! `data`, `masked_crc32c(data): u32 LE`.

/// CRC-32C (Castagnoli), rotated right by 15 bits plus a constant, as
/// TensorFlow stores it (a CRC of data holding CRCs stays informative).
pub fn masked_crc32c(bytes: &[u8]) -> u32 {
    let crc = crc32c::crc32c(bytes);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// Appends one framed record holding `data` to `out`.
pub fn frame(data: &[u8], out: &mut Vec<u8>) {
    let len = (data.len() as u64).to_le_bytes();
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc32c(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc32c(data).to_le_bytes());
}

/// The records of `bytes` in order, up to the first one that is cut short
/// or fails its checksum (a writer killed mid-record leaves such a tail;
/// TensorBoard's reader stops there too). The second value says whether
/// everything was read.
pub fn records(bytes: &[u8]) -> (Vec<&[u8]>, bool) {
    let (spans, whole) = spans(bytes);
    (spans.into_iter().map(|s| &bytes[s.data]).collect(), whole)
}

/// Where one record of a file lies.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    /// Its data.
    pub data: std::ops::Range<usize>,
    /// The offset just past it (after its data's checksum).
    pub end: usize,
}

/// [`records`], as where each lies in `bytes`.
pub fn spans(bytes: &[u8]) -> (Vec<Span>, bool) {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < bytes.len() {
        let Some(header) = bytes.get(at..at + 12) else { return (out, false) };
        let (len, len_crc) = header.split_at(8);
        if masked_crc32c(len) != u32::from_le_bytes(len_crc.try_into().expect("4 bytes")) {
            return (out, false);
        }
        let len = u64::from_le_bytes(len.try_into().expect("8 bytes"));
        let Some(end) = usize::try_from(len).ok().and_then(|l| (at + 12).checked_add(l)) else { return (out, false) };
        let (Some(data), Some(crc)) = (bytes.get(at + 12..end), bytes.get(end..end + 4)) else { return (out, false) };
        if masked_crc32c(data) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
            return (out, false);
        }
        out.push(Span { data: at + 12..end, end: end + 4 });
        at = end + 4;
    }
    (out, true)
}

#[cfg(test)]
mod tests {
    use crate::tensorboard::record::{frame, masked_crc32c, records};

    /// TensorFlow's own value: `masked_crc32c(b"")` as tf.io's writer frames an empty record.
    #[test]
    fn checksums_are_tensorflows() {
        // CRC-32C("123456789") = 0xE3069283 (the standard check value).
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(masked_crc32c(b""), 0xa282_ead8);
    }

    #[test]
    fn framed_records_read_back_and_a_cut_tail_is_dropped() {
        let mut file = Vec::new();
        frame(b"first", &mut file);
        frame(b"", &mut file);
        frame(b"third record", &mut file);
        assert_eq!(records(&file), (vec![&b"first"[..], b"", b"third record"], true));
        let cut = &file[..file.len() - 3];
        assert_eq!(records(cut), (vec![&b"first"[..], b""], false));
        let mut flipped = file.clone();
        flipped[14] ^= 1; // a byte of the first record's data
        assert_eq!(records(&flipped), (vec![], false));
    }
}
