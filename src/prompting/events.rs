//! The validator's step record: the types of one step ([`StepEvent`], [`ResponseEvent`]),
//! the writer ([`EventLog`]: one JSON object per line in `events.jsonl`, rotated by
//! size into `events.1.jsonl`, `events.2.jsonl`, ..., oldest dropped past `keep`) and
//! the reader ([`event_files`], [`EventReader`]) that `neuron replay` reads them back
//! with. A line torn by a crash mid-write is dropped when the log is reopened.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::score::Component;

/// Name of the live events file in a validator state directory.
pub const LIVE_FILE: &str = "events.jsonl";

/// Errors writing or reading the step record.
#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    /// An events file or directory could not be read or written.
    #[error("event log {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A line is not a validator step event.
    #[error("{path}:{line}: not a validator step event: {source}")]
    Malformed {
        /// The events file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What failed to parse.
        source: serde_json::Error,
    },
    /// A directory without `events.jsonl` or rotated `events.N.jsonl` files.
    #[error("{0} holds no events.jsonl or events.N.jsonl files")]
    NoEventFiles(PathBuf),
}

/// One miner's answer in a step, as logged.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResponseEvent {
    /// Queried uid.
    pub uid: u16,
    /// Its hotkey at query time.
    pub hotkey: String,
    /// The completion (empty on failure).
    pub completion: String,
    /// Final status code (200 success; 408 timeout; 503 unreachable; ...).
    pub status_code: u16,
    /// Status message.
    pub status_message: String,
    /// Seconds from sending to answer.
    pub latency_s: f64,
    /// The tokens with their top alternatives the miner sent (a verified-inference
    /// step; absent otherwise).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logprobs: Vec<crate::llm::TokenLogprob>,
    /// Final reward. A non-finite reward (a task's `reward` hook may return one) is
    /// written as the string `"NaN"`, `"inf"` or `"-inf"`, which JSON numbers cannot
    /// hold, and read back as that value (see [`non_finite`]).
    #[serde(with = "non_finite")]
    pub reward: f64,
    /// Each reward and penalty component behind `reward`.
    pub components: Vec<Component>,
}

/// Serde for an `f64` field of the step record that may be NaN or infinite. serde_json
/// writes those as `null`, which does not read back as a number, so a log holding one
/// would not replay: they are written as the strings `"NaN"`, `"inf"` and `"-inf"`
/// instead, and read back bit-for-bit as NaN or the infinity (finite values stay JSON
/// numbers). `null`, which logs written before held for any of them, reads as NaN.
pub mod non_finite {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes `value`: a number when finite, else its name.
    pub fn serialize<S: Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
        if value.is_finite() {
            serializer.serialize_f64(*value)
        } else if value.is_nan() {
            serializer.serialize_str("NaN")
        } else if *value > 0.0 {
            serializer.serialize_str("inf")
        } else {
            serializer.serialize_str("-inf")
        }
    }

    /// Reads a number, one of the names [`serialize`] writes, or `null` (NaN).
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Number(f64),
            Name(String),
            Null(()),
        }
        match Written::deserialize(deserializer)? {
            Written::Number(x) => Ok(x),
            Written::Null(()) => Ok(f64::NAN),
            Written::Name(name) => match name.as_str() {
                "NaN" => Ok(f64::NAN),
                "inf" => Ok(f64::INFINITY),
                "-inf" => Ok(f64::NEG_INFINITY),
                other => Err(serde::de::Error::custom(format!(
                    "`{other}` is not a number (nor NaN, inf, -inf)"
                ))),
            },
        }
    }
}

/// Everything about one step: one line of `events.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepEvent {
    /// Step number.
    pub step: u64,
    /// Block at the start of the step.
    pub block: u64,
    /// Seed of the step's RNG (replays the task generation).
    pub seed: u64,
    /// Task name.
    pub task: String,
    /// The persona map.
    pub persona: serde_json::Value,
    /// The task's query.
    pub query: String,
    /// The challenge sent to miners.
    pub challenge: String,
    /// The reference answer.
    pub reference: String,
    /// Everything else the task generated (context, topic, ...).
    pub task_fields: serde_json::Value,
    /// One entry per queried miner.
    pub responses: Vec<ResponseEvent>,
    /// Seconds spent generating the task and challenge.
    pub generate_s: f64,
    /// Seconds spent in the dendrite query.
    pub query_s: f64,
    /// Seconds spent scoring.
    pub score_s: f64,
    /// Block at which weights were set after this step, if they were.
    pub weights_set_at: Option<u64>,
}

impl StepEvent {
    /// The queried uids, in response order.
    pub fn uids(&self) -> Vec<u16> {
        self.responses.iter().map(|r| r.uid).collect()
    }

    /// The recorded rewards, in response order.
    pub fn rewards(&self) -> Vec<f64> {
        self.responses.iter().map(|r| r.reward).collect()
    }
}

/// The file name of rotation `index` (0 is the live file, `events.jsonl`).
fn rotation_name(index: u64) -> String {
    if index == 0 {
        LIVE_FILE.to_string()
    } else {
        format!("events.{index}.jsonl")
    }
}

/// The rotation index a file name stands for (0 for the live file), if it is an
/// events file at all.
fn rotation_index(name: &str) -> Option<u64> {
    if name == LIVE_FILE {
        return Some(0);
    }
    let index: u64 = name
        .strip_prefix("events.")?
        .strip_suffix(".jsonl")?
        .parse()
        .ok()?;
    (index > 0).then_some(index)
}

/// An append-only JSON-lines log with size-based rotation.
#[derive(Debug)]
pub struct EventLog {
    path: PathBuf,
    file: File,
    written: u64,
    max_bytes: u64,
    keep: u64,
}

impl EventLog {
    /// Opens (or creates) `dir/events.jsonl`; rotates once it exceeds `max_bytes`,
    /// keeping `keep` rotated files.
    pub fn open(dir: &Path, max_bytes: u64, keep: u64) -> Result<Self, EventsError> {
        let path = dir.join(LIVE_FILE);
        let err = |source| EventsError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(err)?;
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(err)?;
        let written = drop_torn_tail(&mut file).map_err(err)?;
        Ok(Self {
            path,
            file,
            written,
            max_bytes,
            keep,
        })
    }

    /// Path of the live log file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one event as a JSON line, rotating first if the file is full.
    pub fn append<E: Serialize>(&mut self, event: &E) -> Result<(), EventsError> {
        let mut line = serde_json::to_vec(event).expect("events serialise");
        line.push(b'\n');
        if self.written > 0 && self.written + line.len() as u64 > self.max_bytes {
            self.rotate().map_err(|source| self.error(source))?;
        }
        self.file
            .write_all(&line)
            .map_err(|source| self.error(source))?;
        self.written += line.len() as u64;
        Ok(())
    }

    fn rotated(&self, index: u64) -> PathBuf {
        self.path.with_file_name(rotation_name(index))
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        if self.keep == 0 {
            self.file.set_len(0)?;
        } else {
            let _ = std::fs::remove_file(self.rotated(self.keep));
            for index in (1..self.keep).rev() {
                let from = self.rotated(index);
                if from.exists() {
                    std::fs::rename(&from, self.rotated(index + 1))?;
                }
            }
            std::fs::rename(&self.path, self.rotated(1))?;
            self.file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
        }
        self.written = 0;
        Ok(())
    }

    fn error(&self, source: std::io::Error) -> EventsError {
        EventsError::Io {
            path: self.path.clone(),
            source,
        }
    }
}

/// Truncates `file` after its last newline (a line without one was cut short by a
/// crash); returns the resulting length.
fn drop_torn_tail(file: &mut File) -> std::io::Result<u64> {
    const CHUNK: u64 = 64 * 1024;
    let len = file.metadata()?.len();
    let mut end = len;
    let mut buf = vec![0u8; CHUNK as usize];
    while end > 0 {
        let start = end.saturating_sub(CHUNK);
        let chunk = &mut buf[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(chunk)?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            end = start + i as u64 + 1;
            break;
        }
        end = start;
    }
    if end < len {
        tracing::warn!(
            dropped_bytes = len - end,
            "event log ends with a torn line (crash mid-write); dropping it"
        );
        file.set_len(end)?;
    }
    Ok(end)
}

/// The events files `path` names, oldest first: the file itself, or for a directory its
/// rotated logs (`events.3.jsonl`, `events.2.jsonl`, `events.1.jsonl`) then
/// `events.jsonl`.
pub fn event_files(path: &Path) -> Result<Vec<PathBuf>, EventsError> {
    let io = |source| EventsError::Io {
        path: path.to_path_buf(),
        source,
    };
    if !std::fs::metadata(path).map_err(io)?.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    // Sort key: rotation index, the live file (index 0) last.
    let mut found: Vec<(std::cmp::Reverse<u64>, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(path).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name();
        if let Some(index) = name.to_str().and_then(rotation_index) {
            found.push((std::cmp::Reverse(index), entry.path()));
        }
    }
    if found.is_empty() {
        return Err(EventsError::NoEventFiles(path.to_path_buf()));
    }
    found.sort();
    Ok(found.into_iter().map(|(_, p)| p).collect())
}

/// The step events of one events file, in order: each non-blank line as
/// `(line number, event)`, or [`EventsError::Malformed`] for a line that is not a step
/// event (reading goes on after it), or [`EventsError::Io`] (reading stops).
pub struct EventReader {
    path: PathBuf,
    reader: BufReader<File>,
    line: usize,
    buf: Vec<u8>,
    failed: bool,
}

impl EventReader {
    /// Opens `path` for reading.
    pub fn open(path: &Path) -> Result<Self, EventsError> {
        let file = File::open(path).map_err(|source| EventsError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Self {
            path: path.to_path_buf(),
            reader: BufReader::new(file),
            line: 0,
            buf: Vec::new(),
            failed: false,
        })
    }
}

impl Iterator for EventReader {
    type Item = Result<(usize, StepEvent), EventsError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.failed {
            self.buf.clear();
            match self.reader.read_until(b'\n', &mut self.buf) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(source) => {
                    self.failed = true;
                    return Some(Err(EventsError::Io {
                        path: self.path.clone(),
                        source,
                    }));
                }
            }
            self.line += 1;
            if self.buf.trim_ascii().is_empty() {
                continue;
            }
            return Some(
                serde_json::from_slice::<StepEvent>(&self.buf)
                    .map(|event| (self.line, event))
                    .map_err(|source| EventsError::Malformed {
                        path: self.path.clone(),
                        line: self.line,
                        source,
                    }),
            );
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_lines_and_rotates_by_size() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = EventLog::open(dir.path(), 64, 2).unwrap();
        for step in 0..10 {
            log.append(&serde_json::json!({ "step": step, "pad": "xxxxxxxxxxxxxxxx" }))
                .unwrap();
        }
        let live = std::fs::read_to_string(log.path()).unwrap();
        assert!(live.len() <= 64, "live file stays under the limit");
        let last: serde_json::Value = serde_json::from_str(live.lines().last().unwrap()).unwrap();
        assert_eq!(last["step"], 9);
        assert!(dir.path().join("events.1.jsonl").exists());
        assert!(dir.path().join("events.2.jsonl").exists());
        assert!(!dir.path().join("events.3.jsonl").exists(), "keeps only 2");
    }

    #[test]
    fn reopening_continues_the_same_file() {
        let dir = tempfile::tempdir().unwrap();
        EventLog::open(dir.path(), 1 << 20, 1)
            .unwrap()
            .append(&1)
            .unwrap();
        EventLog::open(dir.path(), 1 << 20, 1)
            .unwrap()
            .append(&2)
            .unwrap();
        let text = std::fs::read_to_string(dir.path().join("events.jsonl")).unwrap();
        assert_eq!(text, "1\n2\n");
    }

    #[test]
    fn a_torn_last_line_is_dropped_on_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        std::fs::write(&path, "{\"step\":0}\n{\"step\":1}\n{\"st").unwrap();
        EventLog::open(dir.path(), 1 << 20, 1)
            .unwrap()
            .append(&serde_json::json!({ "step": 2 }))
            .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, "{\"step\":0}\n{\"step\":1}\n{\"step\":2}\n");
        std::fs::write(&path, "no newline at all").unwrap();
        EventLog::open(dir.path(), 1 << 20, 1).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "");
    }

    #[test]
    fn a_directory_lists_rotated_logs_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "events.jsonl",
            "events.1.jsonl",
            "events.10.jsonl",
            "events.2.jsonl",
            "events.x.jsonl",
            "events.0.jsonl",
            "state.json",
        ] {
            std::fs::write(dir.path().join(name), "").unwrap();
        }
        let names: Vec<String> = event_files(dir.path())
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "events.10.jsonl",
                "events.2.jsonl",
                "events.1.jsonl",
                "events.jsonl"
            ]
        );
    }

    #[test]
    fn a_file_is_read_alone_and_missing_paths_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("mine.jsonl");
        std::fs::write(&file, "").unwrap();
        assert_eq!(event_files(&file).unwrap(), vec![file]);
        assert!(matches!(
            event_files(&dir.path().join("absent")),
            Err(EventsError::Io { .. })
        ));
        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        let err = event_files(&empty).unwrap_err();
        assert!(err.to_string().contains("no events.jsonl"), "{err}");
    }

    #[test]
    fn the_reader_numbers_lines_skips_blanks_and_goes_on_after_a_bad_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let event = StepEvent {
            step: 3,
            block: 1,
            seed: 2,
            task: "t".into(),
            persona: serde_json::json!({}),
            query: "q".into(),
            challenge: "c".into(),
            reference: "r".into(),
            task_fields: serde_json::json!({}),
            responses: Vec::new(),
            generate_s: 0.0,
            query_s: 0.0,
            score_s: 0.0,
            weights_set_at: None,
        };
        let line = serde_json::to_string(&event).unwrap();
        std::fs::write(&path, format!("{line}\n\noops\n{line}\n")).unwrap();
        let read: Vec<Result<usize, usize>> = EventReader::open(&path)
            .unwrap()
            .map(|r| match r {
                Ok((line, event)) => {
                    assert_eq!(event.step, 3);
                    Ok(line)
                }
                Err(EventsError::Malformed { line, .. }) => Err(line),
                Err(other) => panic!("{other}"),
            })
            .collect();
        assert_eq!(read, vec![Ok(1), Err(3), Ok(4)]);
    }

    #[test]
    fn non_finite_rewards_are_written_by_name_and_read_back() {
        let response = |reward: f64| ResponseEvent {
            uid: 1,
            hotkey: "5H".into(),
            completion: "c".into(),
            status_code: 200,
            status_message: "OK".into(),
            latency_s: 0.5,
            logprobs: Vec::new(),
            reward,
            components: Vec::new(),
        };
        for (reward, written) in [
            (f64::NAN, "\"NaN\""),
            (f64::INFINITY, "\"inf\""),
            (f64::NEG_INFINITY, "\"-inf\""),
            (0.25, "0.25"),
        ] {
            let line = serde_json::to_string(&response(reward)).unwrap();
            assert!(line.contains(&format!("\"reward\":{written}")), "{line}");
            let back: ResponseEvent = serde_json::from_str(&line).unwrap();
            assert!(
                reward.total_cmp(&back.reward).is_eq() || reward.is_nan() && back.reward.is_nan()
            );
        }
        // Logs written before this representation held `null`.
        let old = serde_json::to_string(&response(0.0))
            .unwrap()
            .replace("\"reward\":0.0", "\"reward\":null");
        let back: ResponseEvent = serde_json::from_str(&old).unwrap();
        assert!(back.reward.is_nan());
        let bad = old.replace("null", "\"lots\"");
        assert!(serde_json::from_str::<ResponseEvent>(&bad).is_err());
    }
}
