//! The worker's event log: typed [`Event`]s written as JSON lines (the protocol crate's
//! [`Envelope`]), one per event, flushed per line, with a sequence number that keeps increasing
//! across resumes and attempts (the controller ingests by it).
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, Write};
use std::path::{Path, PathBuf};

use stuffed_protocol::{Envelope, Event};

use crate::{Error, Result};

pub struct EventLog {
    path: PathBuf,
    file: File,
    seq: u64,
}

impl EventLog {
    /// Opens (or creates) an event file for appending. A last line cut short by a crash is
    /// dropped so the file stays valid JSON lines.
    pub fn open(path: &Path) -> Result<EventLog> {
        Self::open_after(path, 0)
    }

    /// Like [`EventLog::open`], numbering new events above `floor` as well as above the
    /// file's own last sequence number: the controller passes the last number it ingested, so a
    /// run directory that lost its event file (deleted, wiped) never restarts below it.
    pub fn open_after(path: &Path, floor: u64) -> Result<EventLog> {
        #[derive(serde::Deserialize)]
        struct Seq {
            #[serde(default)]
            seq: u64,
        }
        let mut seq = floor;
        let mut valid_len = 0u64;
        if path.exists() {
            let f = File::open(path).map_err(|e| Error::io(path, e))?;
            let mut reader = BufReader::new(f);
            let mut line = String::new();
            loop {
                line.clear();
                let n = reader.read_line(&mut line).map_err(|e| Error::io(path, e))?;
                if n == 0 || !line.ends_with('\n') {
                    break;
                }
                match serde_json::from_str::<Seq>(&line) {
                    Ok(v) => {
                        seq = seq.max(v.seq);
                        valid_len += n as u64;
                    }
                    Err(_) => break,
                }
            }
        }
        let file = OpenOptions::new().create(true).read(true).write(true).truncate(false).open(path).map_err(|e| Error::io(path, e))?;
        file.set_len(valid_len).map_err(|e| Error::io(path, e))?;
        let mut file = file;
        file.seek(std::io::SeekFrom::End(0)).map_err(|e| Error::io(path, e))?;
        Ok(EventLog { path: path.to_path_buf(), file, seq })
    }

    /// Appends one event (`{"seq": n, "kind": ..., fields, "time": now, "format": 2}`) and
    /// flushes it; returns its sequence number.
    pub fn emit(&mut self, event: Event) -> Result<u64> {
        self.seq += 1;
        let line = Envelope::new(self.seq, event, now_rfc3339()).to_line();
        self.file.write_all(line.as_bytes()).map_err(|e| Error::io(&self.path, e))?;
        self.file.flush().map_err(|e| Error::io(&self.path, e))?;
        Ok(self.seq)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// UTC time as RFC 3339 with seconds (`2026-11-28T10:00:00Z`), without a date library.
pub fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rem) = ((secs / 86400) as i64, secs % 86400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, (rem % 3600) / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_continues_and_torn_line_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("events.jsonl");
        let mut log = EventLog::open(&p).unwrap();
        let val = |step| Event::Val { step, loss: 1.0, tokens: 8 };
        log.emit(val(1)).unwrap();
        log.emit(val(2)).unwrap();
        drop(log);
        // A crash mid-write leaves half a line.
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"{\"seq\": 3, \"ki").unwrap();
        drop(f);
        let mut log = EventLog::open(&p).unwrap();
        assert_eq!(log.emit(val(3)).unwrap(), 3);
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(text.lines().count(), 3);
        for l in text.lines() {
            Envelope::parse(l.as_bytes()).unwrap();
        }
    }

    #[test]
    fn a_lost_event_file_continues_above_the_ingested_sequence() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("events.jsonl");
        let mut log = EventLog::open_after(&p, 41).unwrap();
        assert_eq!(log.emit(Event::Val { step: 1, loss: 1.0, tokens: 8 }).unwrap(), 42);
    }

    #[test]
    fn time_format() {
        let t = now_rfc3339();
        assert_eq!(t.len(), 20);
        assert!(t.starts_with("20") && t.ends_with('Z'));
    }
}
