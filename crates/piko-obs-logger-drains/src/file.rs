//! A log file with size-based rotation, retention by count and by age, and optional gzip.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

/// Rotation and retention settings. The defaults are Piko's facade defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RotationOptions {
    /// Rotate before a write would take the file past this many bytes (default 10 MiB).
    pub max_size_bytes: u64,
    /// Keep at most this many rotated files; 0 keeps all (default 3).
    pub max_backups: usize,
    /// Delete rotated files older than this; `None` keeps them whatever their age
    /// (default 7 days).
    pub max_age: Option<Duration>,
    /// Gzip rotated files (default on).
    pub compress: bool,
}

impl Default for RotationOptions {
    fn default() -> Self {
        RotationOptions {
            max_size_bytes: 10 * 1024 * 1024,
            max_backups: 3,
            max_age: Some(Duration::from_secs(7 * 24 * 3600)),
            compress: true,
        }
    }
}

/// A log file could not be opened.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot open log file {path:?}: {source}; check that its directory exists and is writable, or choose another path"
)]
pub struct OpenFileError {
    /// The path given.
    pub path: PathBuf,
    /// The I/O error.
    pub source: io::Error,
}

/// A file that rotates itself: before a write that would take it past `max_size_bytes`
/// (unless it is empty), it is renamed to `<stem>-<YYYYMMDDTHHMMSS.mmm><ext>` (UTC; a
/// `-N` suffix is added rather than overwriting when two rotations share a millisecond)
/// and a new file is started. A background thread gzips backups and removes those past
/// the count and age limits. Files, backups and compressed backups alike, are created
/// with mode 0640 (less what the umask removes).
///
/// A failed rotation loses only the lines of that write: when the new file cannot be
/// created (no file descriptor left, a full disk, an unwritable folder), the next
/// write opens the live path again, so the output recovers as soon as the fault clears.
#[derive(Debug)]
pub struct RotatingFile {
    path: PathBuf,
    file: Option<File>,
    size: u64,
    options: RotationOptions,
    cleanup: Option<(mpsc::Sender<()>, JoinHandle<()>)>,
}

impl RotatingFile {
    /// Opens (appending) or creates `path`. Fails at once on an unwritable path.
    pub fn open(path: impl AsRef<Path>, options: RotationOptions) -> Result<Self, OpenFileError> {
        let path = path.as_ref().to_path_buf();
        let err = |source| OpenFileError {
            path: path.clone(),
            source,
        };
        if path.file_name().is_none() {
            return Err(err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the path names no file",
            )));
        }
        let file = open_append(&path).map_err(err)?;
        let size = file.metadata().map_err(err)?.len();
        let (tx, rx) = mpsc::channel::<()>();
        let cleanup_path = path.clone();
        let handle = std::thread::Builder::new()
            .name("piko-log-rotate".into())
            .spawn(move || {
                while rx.recv().is_ok() {
                    cleanup(&cleanup_path, &options);
                }
            })
            .map_err(err)?;
        let mut f = RotatingFile {
            path: path.clone(),
            file: Some(file),
            size,
            options,
            cleanup: Some((tx, handle)),
        };
        if f.size >= options.max_size_bytes && f.size > 0 {
            f.rotate().map_err(err)?;
        }
        Ok(f)
    }

    /// The path of the live file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn rotate(&mut self) -> io::Result<()> {
        if let Some(f) = &self.file {
            let _ = f.sync_all();
        }
        let backup = backup_name(&self.path, SystemTime::now());
        if self.path.exists() {
            // On failure the file stays in place and open: the next write tries again.
            fs::rename(&self.path, &backup)?;
        }
        if let Some((tx, _)) = &self.cleanup {
            let _ = tx.send(());
        }
        // The path is free now: should it not be created again, the next write does it.
        self.file = None;
        self.size = 0;
        self.live()?;
        Ok(())
    }

    /// The live file, opened again at its path when an earlier rotation could not.
    fn live(&mut self) -> io::Result<&mut File> {
        if self.file.is_none() {
            let file = open_append(&self.path)?;
            self.size = file.metadata()?.len();
            self.file = Some(file);
        }
        self.file
            .as_mut()
            .ok_or_else(|| io::Error::new(io::ErrorKind::BrokenPipe, "log file is closed"))
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    let mut o = OpenOptions::new();
    o.create(true).append(true);
    with_log_mode(&mut o).open(path)
}

/// Gives files created through `o` the mode of log files, 0640.
fn with_log_mode(o: &mut OpenOptions) -> &mut OpenOptions {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o640);
    }
    o
}

fn stem_ext(path: &Path) -> (String, String) {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match name.rfind('.') {
        Some(i) if i > 0 => (name[..i].to_string(), name[i..].to_string()),
        _ => (name, String::new()),
    }
}

fn backup_name(path: &Path, now: SystemTime) -> PathBuf {
    let (stem, ext) = stem_ext(path);
    let mut ts = Vec::new();
    piko_obs_logger::json::write_rfc3339(&mut ts, now, 0, 3);
    // 2026-11-25T16:45:50.123Z -> 20261125T164550.123
    let ts: String = String::from_utf8_lossy(&ts)
        .trim_end_matches('Z')
        .chars()
        .filter(|c| *c != '-' && *c != ':')
        .collect();
    let dir = path.parent().unwrap_or(Path::new(""));
    let mut candidate = dir.join(format!("{stem}-{ts}{ext}"));
    let mut n = 1;
    while candidate.exists() || gz(&candidate).exists() {
        candidate = dir.join(format!("{stem}-{ts}-{n}{ext}"));
        n += 1;
    }
    candidate
}

fn gz(p: &Path) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(".gz");
    PathBuf::from(s)
}

/// Rotated files of `path`, newest first.
pub fn backups(path: &Path) -> Vec<PathBuf> {
    let (stem, ext) = stem_ext(path);
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let prefix = format!("{stem}-");
    let mut found: Vec<(String, PathBuf)> = fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let core = name.strip_suffix(".gz").unwrap_or(&name);
            let middle = core.strip_prefix(&prefix)?.strip_suffix(ext.as_str())?;
            // A timestamp such as 20261125T164550.123, maybe with -N.
            let ok = middle.len() >= 15
                && middle.as_bytes()[8] == b'T'
                && middle[..8].bytes().all(|b| b.is_ascii_digit());
            ok.then(|| (middle.to_string(), e.path()))
        })
        .collect();
    found.sort_by(|a, b| b.0.cmp(&a.0));
    found.into_iter().map(|(_, p)| p).collect()
}

fn cleanup(path: &Path, options: &RotationOptions) {
    if options.compress {
        for b in backups(path) {
            if b.extension().is_some_and(|e| e == "gz") {
                continue;
            }
            if let Err(e) = compress(&b) {
                let _ = writeln!(
                    std::io::stderr(),
                    "piko-obs: failed to compress rotated log {b:?}: {e}"
                );
            }
        }
    }
    let now = SystemTime::now();
    for (i, b) in backups(path).into_iter().enumerate() {
        let too_many = options.max_backups > 0 && i >= options.max_backups;
        let too_old = options.max_age.is_some_and(|age| {
            fs::metadata(&b)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|m| now.duration_since(m).ok())
                .is_some_and(|d| d > age)
        });
        if (too_many || too_old)
            && let Err(e) = fs::remove_file(&b)
        {
            let _ = writeln!(
                std::io::stderr(),
                "piko-obs: failed to remove rotated log {b:?}: {e}"
            );
        }
    }
}

fn compress(p: &Path) -> io::Result<()> {
    let target = gz(p);
    let mut tmp = target.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    {
        let mut input = File::open(p)?;
        let out =
            with_log_mode(OpenOptions::new().write(true).create(true).truncate(true)).open(&tmp)?;
        let mut enc = flate2::write::GzEncoder::new(out, flate2::Compression::best());
        io::copy(&mut input, &mut enc)?;
        enc.finish()?.sync_all()?;
    }
    // Keep the original's time, so age-based retention sees when it was written.
    if let Ok(m) = fs::metadata(p).and_then(|m| m.modified()) {
        let _ = File::options()
            .write(true)
            .open(&tmp)
            .and_then(|f| f.set_modified(m));
    }
    fs::rename(&tmp, &target)?;
    fs::remove_file(p)
}

impl Write for RotatingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.live()?;
        if self.size > 0 && self.size + buf.len() as u64 > self.options.max_size_bytes {
            self.rotate()?;
        }
        let n = self.live()?.write(buf)?;
        self.size += n as u64;
        Ok(n)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        // Rotate on line boundaries: split a batch so no file passes its size limit
        // by more than one line.
        let mut rest = buf;
        self.live()?;
        while !rest.is_empty() {
            let room = self.options.max_size_bytes.saturating_sub(self.size) as usize;
            let take = if rest.len() <= room {
                rest.len()
            } else {
                match rest[..room].iter().rposition(|b| *b == b'\n') {
                    Some(i) => i + 1,
                    None if self.size == 0 => rest
                        .iter()
                        .position(|b| *b == b'\n')
                        .map_or(rest.len(), |i| i + 1),
                    None => {
                        self.rotate()?;
                        continue;
                    }
                }
            };
            let (chunk, tail) = rest.split_at(take);
            self.live()?.write_all(chunk)?;
            self.size += chunk.len() as u64;
            rest = tail;
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for RotatingFile {
    fn drop(&mut self) {
        if let Some(f) = self.file.take() {
            let _ = f.sync_all();
        }
        if let Some((tx, handle)) = self.cleanup.take() {
            drop(tx);
            let _ = handle.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn opts(size: u64, backups: usize, compress: bool) -> RotationOptions {
        RotationOptions {
            max_size_bytes: size,
            max_backups: backups,
            max_age: None,
            compress,
        }
    }

    #[test]
    fn rotates_before_passing_the_size_and_keeps_the_newest_backups() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        let mut f = RotatingFile::open(&path, opts(100, 2, false)).unwrap();
        for i in 0..40 {
            f.write_all(format!("line {i:04} of the log\n").as_bytes())
                .unwrap();
        }
        drop(f);
        let live = fs::read_to_string(&path).unwrap();
        assert!(live.len() <= 100, "{}", live.len());
        let b = backups(&path);
        assert_eq!(b.len(), 2, "{b:?}");
        for p in &b {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            assert!(name.starts_with("app-") && name.ends_with(".log"), "{name}");
            assert!(fs::metadata(p).unwrap().len() <= 100);
        }
        // The newest lines survive, in order, across the newest backup and the live file.
        let newest = fs::read_to_string(&b[0]).unwrap();
        assert!(live.ends_with("line 0039 of the log\n"));
        assert!(newest.lines().all(|l| l.starts_with("line ")));
    }

    #[test]
    fn backups_are_gzipped_and_decompress_to_the_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("svc.json");
        let mut f = RotatingFile::open(&path, opts(64, 0, true)).unwrap();
        for i in 0..10 {
            f.write_all(format!("{{\"n\":{i},\"pad\":\"xxxxxxxxxxxxxxxxxxxx\"}}\n").as_bytes())
                .unwrap();
        }
        drop(f);
        let b = backups(&path);
        assert!(!b.is_empty());
        let mut total = fs::read_to_string(&path).unwrap().lines().count();
        for p in &b {
            assert!(p.to_string_lossy().ends_with(".json.gz"), "{p:?}");
            let mut s = String::new();
            flate2::read::GzDecoder::new(File::open(p).unwrap())
                .read_to_string(&mut s)
                .unwrap();
            total += s.lines().count();
        }
        assert_eq!(total, 10);
        assert!(
            !fs::read_dir(dir.path())
                .unwrap()
                .flatten()
                .any(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        );
    }

    #[cfg(unix)]
    #[test]
    fn rotated_and_compressed_backups_keep_the_mode_of_the_live_file() {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let dir = tempfile::tempdir().unwrap();
        for compress in [false, true] {
            let path = dir.path().join(format!("mode-{compress}.log"));
            let mut f = RotatingFile::open(&path, opts(32, 0, compress)).unwrap();
            for i in 0..6 {
                f.write_all(format!("line {i} of the log\n").as_bytes())
                    .unwrap();
            }
            drop(f);
            let live = mode(&path);
            assert_eq!(
                live & 0o027,
                0,
                "{live:o}: no group write, nothing for others"
            );
            let b = backups(&path);
            assert!(b.len() >= 2, "{b:?}");
            for p in &b {
                assert_eq!(p.extension().is_some_and(|e| e == "gz"), compress);
                assert_eq!(mode(p), live, "{p:?}: {:o}, live {live:o}", mode(p));
            }
        }
    }

    #[test]
    fn old_backups_are_removed_by_age() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.log");
        let old = dir.path().join("old-20200101T000000.000.log");
        fs::write(&old, "x\n").unwrap();
        File::options()
            .write(true)
            .open(&old)
            .unwrap()
            .set_modified(SystemTime::now() - Duration::from_secs(30 * 86400))
            .unwrap();
        let mut o = opts(10, 0, false);
        o.max_age = Some(Duration::from_secs(86400));
        let mut f = RotatingFile::open(&path, o).unwrap();
        f.write_all(b"0123456789\n").unwrap();
        f.write_all(b"0123456789\n").unwrap();
        drop(f);
        assert!(!old.exists());
        assert_eq!(backups(&path).len(), 1);
    }

    #[test]
    fn two_rotations_in_one_millisecond_do_not_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fast.log");
        let mut f = RotatingFile::open(&path, opts(4, 0, false)).unwrap();
        for _ in 0..20 {
            f.write_all(b"abc\n").unwrap();
        }
        drop(f);
        assert_eq!(backups(&path).len(), 19);
    }

    #[test]
    fn unwritable_path_is_a_clear_error() {
        let e = RotatingFile::open("/nonexistent-dir/x/app.log", RotationOptions::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent-dir/x/app.log"), "{e}");
        assert!(e.contains("directory exists and is writable"), "{e}");
    }
}
