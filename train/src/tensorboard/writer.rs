//! One TensorBoard event file, written as training goes: scalars, PNG
//! images, session restarts and the hparams plugin's session records, each
//! an `Event` in its own TFRecord, flushed at once so `tensorboard
//! --logdir` shows it while the run trains.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use prost::Message;

pub use ae_core::figure::Png;

use crate::tensorboard::proto::{
    Event, HParamsData, HParamsPluginData, Image, PluginData, Summary, SummaryMetadata, TensorProto, Value, ValueKind,
    What,
};
use crate::tensorboard::record;

/// What TensorBoard looks for in an event file's name.
pub const PREFIX: &str = "events.out.tfevents.";

/// The hparams plugin's tags and name.
pub const HPARAMS_PLUGIN: &str = "hparams";
pub const SESSION_START_TAG: &str = "_hparams_/session_start_info";
pub const SESSION_END_TAG: &str = "_hparams_/session_end_info";

pub fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// An event file open for appending.
#[derive(Debug)]
pub struct EventWriter {
    pub path: PathBuf,
    file: File,
}

impl EventWriter {
    /// A new event file in `dir`, named as TensorFlow's writers name
    /// theirs (`events.out.tfevents.<time>.<host>.<pid>.<n>.v2`, `n`
    /// counting this process's files), holding the file-version record.
    pub fn create(dir: &Path) -> io::Result<EventWriter> {
        static FILES: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "{PREFIX}{:.0}.{}.{}.{}.v2",
            now().floor(),
            ae_core::machine::host_name(),
            std::process::id(),
            FILES.fetch_add(1, Ordering::Relaxed)
        );
        let path = dir.join(name);
        let mut bytes = Vec::new();
        let version = Event { wall_time: now(), step: 0, what: Some(What::FileVersion("brain.Event:2".into())) };
        record::frame(&version.encode_to_vec(), &mut bytes);
        ae_core::atomic::write_bytes(&path, &bytes)?;
        EventWriter::append(path)
    }

    /// An existing event file, appended to.
    pub fn append(path: PathBuf) -> io::Result<EventWriter> {
        let file = std::fs::OpenOptions::new().append(true).open(&path)?;
        Ok(EventWriter { path, file })
    }

    fn write(&mut self, step: i64, what: What) -> io::Result<()> {
        let mut bytes = Vec::new();
        record::frame(&Event { wall_time: now(), step, what: Some(what) }.encode_to_vec(), &mut bytes);
        self.file.write_all(&bytes)
    }

    fn summary(&mut self, step: i64, value: Value) -> io::Result<()> {
        self.write(step, What::Summary(Summary { value: vec![value] }))
    }

    pub fn scalar(&mut self, tag: &str, step: i64, v: f64) -> io::Result<()> {
        self.summary(step, Value { tag: tag.into(), metadata: None, value: Some(ValueKind::SimpleValue(v as f32)) })
    }

    /// An RGB PNG.
    pub fn image(&mut self, tag: &str, step: i64, png: &Png) -> io::Result<()> {
        let image = Image {
            height: png.height as i32,
            width: png.width as i32,
            colorspace: 3,
            encoded_image_string: png.bytes.clone(),
        };
        self.summary(step, Value { tag: tag.into(), metadata: None, value: Some(ValueKind::Image(image)) })
    }

    /// One of the hparams plugin's records (start or end of a session).
    pub fn hparams(&mut self, data: HParamsData) -> io::Result<()> {
        let tag = match data {
            HParamsData::SessionStartInfo(_) => SESSION_START_TAG,
            HParamsData::SessionEndInfo(_) => SESSION_END_TAG,
        };
        let content = HParamsPluginData { version: 0, data: Some(data) }.encode_to_vec();
        let metadata = SummaryMetadata {
            plugin_data: Some(PluginData { plugin_name: HPARAMS_PLUGIN.into(), content }),
            ..Default::default()
        };
        let value =
            Value { tag: tag.into(), metadata: Some(metadata), value: Some(ValueKind::Tensor(TensorProto::null())) };
        self.summary(0, value)
    }
}

/// The events of every event file in `dir`, in file-name order (the order
/// TensorBoard reads them), each file up to its first damaged record.
pub fn read_dir(dir: &Path) -> io::Result<(Vec<Event>, Vec<PathBuf>)> {
    let mut files = event_files(dir)?;
    files.sort();
    let mut events = Vec::new();
    for f in &files {
        let bytes = std::fs::read(f)?;
        for data in record::records(&bytes).0 {
            match Event::decode(data) {
                Ok(e) => events.push(e),
                Err(_) => break,
            }
        }
    }
    Ok((events, files))
}

/// Cuts the event files of `dir` (in file-name order, the order TensorBoard
/// reads them) before the first event `keep` refuses, or a damaged record:
/// that file is truncated there (one `ftruncate`, which a kill cannot leave
/// half-done) and every later file removed. A log is written in time
/// order, so what a resumed run keeps is a prefix. Returns the last file
/// left, to append to.
pub fn trim(dir: &Path, keep: impl Fn(&Event) -> bool) -> io::Result<Option<PathBuf>> {
    let mut files = event_files(dir)?;
    files.sort();
    let mut cut = false;
    let mut last = None;
    for f in files {
        if cut {
            std::fs::remove_file(&f)?;
            continue;
        }
        let bytes = std::fs::read(&f)?;
        let (spans, whole) = record::spans(&bytes);
        let mut end = 0usize;
        for span in spans {
            if !Event::decode(&bytes[span.data]).is_ok_and(|e| keep(&e)) {
                cut = true;
                break;
            }
            end = span.end;
        }
        cut |= !whole;
        if end < bytes.len() {
            std::fs::OpenOptions::new().write(true).open(&f)?.set_len(end as u64)?;
        }
        last = Some(f);
    }
    Ok(last)
}

/// The event files directly in `dir` (none if it does not exist).
pub fn event_files(dir: &Path) -> io::Result<Vec<PathBuf>> {
    match std::fs::read_dir(dir) {
        Ok(entries) => Ok(entries
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.is_file() && p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(PREFIX)))
            .collect()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}
