//! The durable dead-letter store: one JSON line per entry, fsync'd before `append`
//! returns, file mode 0600.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use piko_obs_notify::{DeadLetter, DeadLetterBatch, DeadLetterStore};

/// Where the dead-letter file goes by default: `$XDG_STATE_HOME/piko-obs/`, else
/// `$HOME/.local/state/piko-obs/`, else the working directory; the file is
/// `notifications.dead-letter.jsonl`. Never under `/tmp`, which is cleared.
pub fn default_dead_letter_path() -> PathBuf {
    const FILE: &str = "notifications.dead-letter.jsonl";
    let base = std::env::var_os("XDG_STATE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".local/state"))
        });
    match base {
        Some(b) => b.join("piko-obs").join(FILE),
        None => PathBuf::from(FILE),
    }
}

/// A JSON-lines dead-letter file.
#[derive(Debug)]
pub struct FileDeadLetterStore {
    path: PathBuf,
    file: Mutex<File>,
}

impl FileDeadLetterStore {
    /// Opens (creating it and its folders) the file at `path` for appending.
    pub fn open(path: impl AsRef<Path>) -> io::Result<FileDeadLetterStore> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("dead-letter folder {}: {e}", dir.display()),
                )
            })?;
        }
        let mut options = OpenOptions::new();
        options.create(true).append(true).read(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let file = options.open(&path).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("dead-letter file {}: {e}", path.display()),
            )
        })?;
        Ok(FileDeadLetterStore {
            path,
            file: Mutex::new(file),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads every entry without removing any; unreadable lines are counted.
    pub fn read_all(&self) -> io::Result<DeadLetterBatch> {
        let file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        read(&file)
    }
}

fn read(file: &File) -> io::Result<DeadLetterBatch> {
    let mut reader = BufReader::new(file.try_clone()?);
    reader.seek(io::SeekFrom::Start(0))?;
    let mut batch = DeadLetterBatch::default();
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        let text = String::from_utf8_lossy(&line);
        if text.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<DeadLetter>(text.trim()) {
            Ok(entry) => batch.entries.push(entry),
            Err(_) => batch.skipped += 1,
        }
    }
    Ok(batch)
}

/// The line break to write before new lines: none when the file is empty or ends with
/// one, else one. Fuzzing found that an entry appended after a partial last line (left by
/// a crash or a failed write mid-line) joined that line and was lost with it at replay.
fn line_start(mut file: &File) -> io::Result<&'static [u8]> {
    if file.metadata()?.len() == 0 {
        return Ok(b"");
    }
    let mut last = [0u8; 1];
    file.seek(io::SeekFrom::End(-1))?;
    file.read_exact(&mut last)?;
    Ok(if last[0] == b'\n' { b"" } else { b"\n" })
}

impl DeadLetterStore for FileDeadLetterStore {
    fn append(&self, entry: &DeadLetter) -> io::Result<()> {
        let mut line = serde_json::to_vec(entry)?;
        line.push(b'\n');
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        line.splice(0..0, line_start(&file)?.iter().copied());
        file.write_all(&line)?;
        file.sync_data()
    }

    fn append_all(&self, entries: &[DeadLetter]) -> io::Result<()> {
        let mut lines = Vec::new();
        for e in entries {
            serde_json::to_writer(&mut lines, e)?;
            lines.push(b'\n');
        }
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        lines.splice(0..0, line_start(&file)?.iter().copied());
        file.write_all(&lines)?;
        file.sync_data()
    }

    fn take_all(&self) -> io::Result<DeadLetterBatch> {
        let file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let batch = read(&file)?;
        file.set_len(0)?;
        file.sync_data()?;
        Ok(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use piko_obs_notify::Notification;

    #[test]
    fn entries_survive_a_reopen_and_bad_lines_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/dlq.jsonl");
        let store = FileDeadLetterStore::open(&path).unwrap();
        let entry = DeadLetter::new(
            Notification::new("t", "m"),
            vec!["slack".into()],
            3,
            std::time::SystemTime::now(),
            "slack returned status 500".into(),
        );
        store.append(&entry).unwrap();
        drop(store);
        // A crash mid-write leaves a truncated line; garbage may follow.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"id\":\"x\",\"notif\n\x00\xff garbage\n")
            .unwrap();
        drop(f);
        let store = FileDeadLetterStore::open(&path).unwrap();
        store.append(&entry).unwrap();
        let batch = store.read_all().unwrap();
        assert_eq!(batch.entries.len(), 2);
        assert_eq!(batch.skipped, 2);
        assert_eq!(batch.entries[0], entry);
        let taken = store.take_all().unwrap();
        assert_eq!(taken.entries.len(), 2);
        assert_eq!(store.read_all().unwrap().entries.len(), 0);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn the_default_path_is_not_under_tmp() {
        let p = default_dead_letter_path();
        assert!(!p.starts_with("/tmp"), "{}", p.display());
        assert!(p.ends_with("notifications.dead-letter.jsonl"));
    }
}
