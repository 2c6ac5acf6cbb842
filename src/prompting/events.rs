//! The validator's event log: one JSON object per line (`events.jsonl`), rotated by
//! size into `events.1.jsonl`, `events.2.jsonl`, ... (oldest dropped past `keep`).
//! A line torn by a crash mid-write is dropped when the log is reopened.

use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Errors writing the event log.
#[derive(Debug, thiserror::Error)]
#[error("event log {path}: {source}")]
pub struct EventLogError {
    path: PathBuf,
    source: std::io::Error,
}

/// An append-only JSON-lines log with size-based rotation.
#[derive(Debug)]
pub struct EventLog {
    path: PathBuf,
    file: File,
    written: u64,
    max_bytes: u64,
    keep: usize,
}

impl EventLog {
    /// Opens (or creates) `dir/events.jsonl`; rotates once it exceeds `max_bytes`,
    /// keeping `keep` rotated files.
    pub fn open(dir: &Path, max_bytes: u64, keep: usize) -> Result<Self, EventLogError> {
        let path = dir.join("events.jsonl");
        let err = |source| EventLogError {
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
    pub fn append<E: Serialize>(&mut self, event: &E) -> Result<(), EventLogError> {
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

    fn rotated(&self, index: usize) -> PathBuf {
        self.path.with_file_name(format!("events.{index}.jsonl"))
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

    fn error(&self, source: std::io::Error) -> EventLogError {
        EventLogError {
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
}
