//! The durable dead-letter store: one JSON line per entry, fsync'd before `append`
//! returns, file mode 0600; replays that survive a crash.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, Write};
use std::num::NonZeroU64;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use piko_obs_notify::{DeadLetter, DeadLetterBatch, DeadLetterStore};

/// The most bytes a [`FileDeadLetterStore`] file holds by default: 256 MiB.
pub const DEFAULT_MAX_BYTES: u64 = 256 << 20;

/// Where the dead-letter file goes by default: `$XDG_STATE_HOME/piko-obs/`, else
/// `$HOME/.local/state/piko-obs/`; the file is `notifications.dead-letter.jsonl`. Never
/// under `/tmp`, which is cleared, and never in the working directory: `None` when
/// neither variable holds an absolute path (a path must then be given).
pub fn default_dead_letter_path() -> Option<PathBuf> {
    default_path_in(std::env::var_os("XDG_STATE_HOME"), std::env::var_os("HOME"))
}

/// [`default_dead_letter_path`] for the given `XDG_STATE_HOME` and `HOME`. A relative
/// value is ignored, as the XDG specification asks: it would name the working directory.
fn default_path_in(xdg_state_home: Option<OsString>, home: Option<OsString>) -> Option<PathBuf> {
    const FILE: &str = "notifications.dead-letter.jsonl";
    let absolute = |v: Option<OsString>| v.map(PathBuf::from).filter(|p| p.is_absolute());
    absolute(xdg_state_home)
        .or_else(|| absolute(home).map(|h| h.join(".local/state")))
        .map(|base| base.join("piko-obs").join(FILE))
}

/// A JSON-lines dead-letter file.
///
/// A replay ([`DeadLetterStore::begin_replay`]) renames the file to a sibling
/// `<name>.replaying.<id>` (then syncs the folder) and starts a fresh file for new
/// entries; the renamed file is removed only when the replay ends complete, and a later
/// replay also reads every such file a crash left behind. One store per file: another
/// store open on the same path notices the rename and reopens the path at its next
/// append.
///
/// The file holds at most [`DEFAULT_MAX_BYTES`] (256 MiB; see
/// [`with_max_bytes`](Self::with_max_bytes)): a group of entries that would take it
/// past its cap is refused with [`io::ErrorKind::StorageFull`], so a platform down for
/// days cannot fill the disk. A replay reads at most the cap's worth of set-aside files
/// (oldest first, line by line), so its memory is bounded too; the files past it wait
/// for the next replay, and a set-aside file larger than the cap (left by a store with
/// a larger one) is left in place and named on stderr.
///
/// The path must name a regular file or nothing: a symbolic link (or a FIFO, a
/// device) is refused. An existing file that other users may read or write (mode wider
/// than 0600) is set to 0600, with a note on stderr; if that fails, it is refused.
/// The dispatcher counts refused entries (`dead_letter_errors`) and prints them to
/// stderr. Files set aside by replays are not counted against the cap.
#[derive(Debug)]
pub struct FileDeadLetterStore {
    path: PathBuf,
    max_bytes: u64,
    file: Mutex<File>,
    /// Replays under way: their files, which another replay must not take.
    replays: Mutex<HashMap<u64, Vec<PathBuf>>>,
    next_replay: AtomicU64,
}

impl FileDeadLetterStore {
    /// Opens (creating it and its folders) the file at `path` for appending. A file or
    /// folder it creates is made durable by syncing its parent folder.
    pub fn open(path: impl AsRef<Path>) -> io::Result<FileDeadLetterStore> {
        let path = path.as_ref().to_path_buf();
        create_folders(&folder(&path))?;
        let file = open_file(&path)?;
        Ok(FileDeadLetterStore {
            path,
            max_bytes: DEFAULT_MAX_BYTES,
            file: Mutex::new(file),
            replays: Mutex::new(HashMap::new()),
            next_replay: AtomicU64::new(1),
        })
    }

    /// The most bytes the file holds (default [`DEFAULT_MAX_BYTES`]).
    pub fn with_max_bytes(mut self, max: NonZeroU64) -> FileDeadLetterStore {
        self.max_bytes = max.get();
        self
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads every entry of the file without removing any; unreadable lines are
    /// counted. Files set aside by replays are not read.
    pub fn read_all(&self) -> io::Result<DeadLetterBatch> {
        let file = self.current()?;
        read(&file)
    }

    /// The files set aside by replays (under way, or left by a crash), oldest first.
    pub fn replaying_files(&self) -> io::Result<Vec<PathBuf>> {
        let dir = folder(&self.path);
        let mut prefix = self.path.file_name().unwrap_or_default().to_os_string();
        prefix.push(".replaying.");
        let mut found = Vec::new();
        for e in std::fs::read_dir(&dir)? {
            let e = e?;
            if starts_with(&e.file_name(), &prefix) && e.file_type()?.is_file() {
                let modified = e.metadata()?.modified().ok();
                found.push((modified, e.path()));
            }
        }
        found.sort();
        Ok(found.into_iter().map(|(_, p)| p).collect())
    }

    /// The open file, reopened first when the path no longer names it (another store
    /// on the same path set it aside for a replay).
    fn current(&self) -> io::Result<std::sync::MutexGuard<'_, File>> {
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt as _;
            let open = file.metadata()?;
            let same = std::fs::metadata(&self.path)
                .is_ok_and(|on_disk| on_disk.ino() == open.ino() && on_disk.dev() == open.dev());
            if !same {
                *file = open_file(&self.path)?;
            }
        }
        Ok(file)
    }
}

/// Creates `dir` and the folders above it that are missing, and makes each one durable
/// by syncing the folder it was created in, outermost first. Returns the folders
/// synced.
fn create_folders(dir: &Path) -> io::Result<Vec<PathBuf>> {
    // The missing folders, innermost first, up to the first one that exists.
    let missing: Vec<&Path> = dir
        .ancestors()
        .filter(|d| !d.as_os_str().is_empty())
        .take_while(|d| !d.exists())
        .collect();
    if missing.is_empty() {
        return Ok(Vec::new());
    }
    std::fs::create_dir_all(dir).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("dead-letter folder {}: {e}", dir.display()),
        )
    })?;
    let mut synced = Vec::with_capacity(missing.len());
    for created in missing.iter().rev() {
        let parent = folder(created);
        sync_dir(&parent)?;
        synced.push(parent);
    }
    Ok(synced)
}

/// The folder of `path` (`.` for a bare file name).
fn folder(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn starts_with(name: &std::ffi::OsStr, prefix: &OsString) -> bool {
    name.as_encoded_bytes()
        .starts_with(prefix.as_encoded_bytes())
}

/// Opens `path` for appending, creating it with mode 0600; a new file is made durable
/// by syncing its folder. Refuses a path that names a symbolic link or anything but a
/// regular file, and narrows a file open to other users to 0600.
fn open_file(path: &Path) -> io::Result<File> {
    let refuse = |what: &str| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "dead-letter file {} is {what}, which is refused: point the setting at a \
                 regular file in a folder of the service's own",
                path.display()
            ),
        )
    };
    let on_disk = match std::fs::symlink_metadata(path) {
        Ok(m) => Some(m),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => {
            return Err(io::Error::new(
                e.kind(),
                format!("dead-letter file {}: {e}", path.display()),
            ));
        }
    };
    match &on_disk {
        Some(m) if m.file_type().is_symlink() => return Err(refuse("a symbolic link")),
        Some(m) if !m.is_file() => return Err(refuse("not a regular file")),
        _ => {}
    }
    let existed = on_disk.is_some();
    let mut options = OpenOptions::new();
    options.create(true).append(true).read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let file = options.open(path).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("dead-letter file {}: {e}", path.display()),
        )
    })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
        // The path may have changed between the check and the open: what was opened
        // must be what the path names, not the target of a link put there meanwhile.
        let opened = file.metadata()?;
        let named = std::fs::symlink_metadata(path)?;
        if named.file_type().is_symlink() || named.ino() != opened.ino() {
            return Err(refuse("a symbolic link"));
        }
        let mode = opened.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            file.set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!(
                            "dead-letter file {} has mode {mode:o}, open to other users, and \
                             cannot be set to 600 ({e}): run `chmod 600` on it, or choose \
                             another path",
                            path.display()
                        ),
                    )
                })?;
            let _ = writeln!(
                io::stderr(),
                "piko-obs: dead-letter file {} had mode {mode:o}, open to other users; set \
                 to 600",
                path.display()
            );
        }
    }
    if !existed {
        sync_dir(&folder(path))?;
    }
    Ok(file)
}

/// Makes the entries of `dir` (a created, renamed or removed file) durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io::Error::new(e.kind(), format!("sync folder {}: {e}", dir.display())))
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

fn read(file: &File) -> io::Result<DeadLetterBatch> {
    read_at_most(file, u64::MAX)
}

/// Reads the entries in the first `limit` bytes of `file`, line by line.
fn read_at_most(file: &File, limit: u64) -> io::Result<DeadLetterBatch> {
    let mut file = file.try_clone()?;
    file.seek(io::SeekFrom::Start(0))?;
    let mut reader = BufReader::new(file.take(limit));
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
/// Also returns the file's length.
fn line_start(mut file: &File) -> io::Result<(u64, &'static [u8])> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok((0, b""));
    }
    let mut last = [0u8; 1];
    file.seek(io::SeekFrom::End(-1))?;
    file.read_exact(&mut last)?;
    Ok((len, if last[0] == b'\n' { b"" } else { b"\n" }))
}

impl DeadLetterStore for FileDeadLetterStore {
    fn append(&self, entry: &DeadLetter) -> io::Result<()> {
        self.append_all(std::slice::from_ref(entry))
    }

    fn append_all(&self, entries: &[DeadLetter]) -> io::Result<()> {
        let mut lines = Vec::new();
        for e in entries {
            serde_json::to_writer(&mut lines, e)?;
            lines.push(b'\n');
        }
        let mut file = self.current()?;
        let (len, start) = line_start(&file)?;
        lines.splice(0..0, start.iter().copied());
        if len.saturating_add(lines.len() as u64) > self.max_bytes {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                format!(
                    "dead-letter file {} is full: it holds {len} bytes and {} more would pass \
                     its cap of {} (FileDeadLetterStore::with_max_bytes); replay it or move it \
                     away",
                    self.path.display(),
                    lines.len(),
                    self.max_bytes
                ),
            ));
        }
        file.write_all(&lines)?;
        file.sync_data()
    }

    fn take_all(&self) -> io::Result<DeadLetterBatch> {
        let file = self.current()?;
        let batch = read(&file)?;
        file.set_len(0)?;
        file.sync_data()?;
        Ok(batch)
    }

    fn begin_replay(&self) -> io::Result<(DeadLetterBatch, u64)> {
        let mut file = self.current()?;
        let mut replays = self.replays.lock().unwrap_or_else(|p| p.into_inner());
        if file.metadata()?.len() > 0 {
            // Set the file aside in one atomic rename; new entries go to a new file.
            let mut name = self.path.file_name().unwrap_or_default().to_os_string();
            name.push(format!(".replaying.{}", piko_obs_notify::unique_id()));
            let aside = folder(&self.path).join(name);
            std::fs::rename(&self.path, &aside)?;
            sync_dir(&folder(&self.path))?;
            *file = open_file(&self.path)?;
        }
        drop(file);
        let busy: Vec<&PathBuf> = replays.values().flatten().collect();
        let mut batch = DeadLetterBatch::default();
        let mut files = Vec::new();
        // Oldest first, at most the cap's worth of files: the rest wait for the next replay.
        let mut budget = self.max_bytes;
        for f in self.replaying_files()? {
            if busy.contains(&&f) {
                continue;
            }
            let file = File::open(&f)?;
            let len = file.metadata()?.len();
            if len > self.max_bytes {
                let _ = writeln!(
                    io::stderr(),
                    "piko-obs: dead-letter file {} holds {len} bytes, more than the cap of {} \
                     a replay reads at once; left in place: replay it with a larger cap \
                     (with_max_bytes), or move it away",
                    f.display(),
                    self.max_bytes
                );
                continue;
            }
            if len > budget {
                break;
            }
            budget -= len;
            let b = read_at_most(&file, len)?;
            batch.entries.extend(b.entries);
            batch.skipped += b.skipped;
            files.push(f);
        }
        let token = self.next_replay.fetch_add(1, Ordering::Relaxed);
        replays.insert(token, files);
        Ok((batch, token))
    }

    fn end_replay(&self, token: u64, complete: bool) -> io::Result<()> {
        let files = self
            .replays
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&token)
            .unwrap_or_default();
        if !complete || files.is_empty() {
            return Ok(());
        }
        for f in &files {
            match std::fs::remove_file(f) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        sync_dir(&folder(&self.path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use piko_obs_notify::Notification;

    #[test]
    fn the_file_stops_at_its_cap_and_takes_entries_again_once_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dlq.jsonl");
        let cap = 4096;
        let store = FileDeadLetterStore::open(&path)
            .unwrap()
            .with_max_bytes(NonZeroU64::new(cap).unwrap());
        let entry = |i: usize| {
            DeadLetter::new(
                Notification::new(format!("n{i}"), "m".repeat(200)),
                vec!["slack".into()],
                1,
                std::time::SystemTime::now(),
                "slack returned status 500".into(),
            )
        };
        let mut written = 0;
        let refused = loop {
            match store.append(&entry(written)) {
                Ok(()) => written += 1,
                Err(e) => break e,
            }
            assert!(written < 100, "never refused");
        };
        assert!(written > 5, "{written}");
        assert_eq!(refused.kind(), io::ErrorKind::StorageFull);
        let msg = refused.to_string();
        assert!(msg.contains("FileDeadLetterStore::with_max_bytes"), "{msg}");
        assert!(msg.contains("dlq.jsonl"), "{msg}");
        assert!(std::fs::metadata(&path).unwrap().len() <= cap);
        // A group that does not fit is refused whole: nothing of it is written.
        let before = std::fs::metadata(&path).unwrap().len();
        assert!(store.append_all(&[entry(0), entry(1)]).is_err());
        assert_eq!(std::fs::metadata(&path).unwrap().len(), before);
        assert_eq!(store.read_all().unwrap().entries.len(), written);
        // A replay sets the file aside: new entries fit again.
        let (batch, token) = store.begin_replay().unwrap();
        assert_eq!(batch.entries.len(), written);
        store.append(&entry(0)).unwrap();
        store.end_replay(token, true).unwrap();
    }

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

    fn entry(title: &str) -> DeadLetter {
        DeadLetter::new(
            Notification::new(title, "m"),
            vec!["slack".into()],
            2,
            std::time::SystemTime::now(),
            "slack returned status 500".into(),
        )
    }

    fn titles(batch: &DeadLetterBatch) -> Vec<String> {
        batch
            .entries
            .iter()
            .map(|e| e.notification.content.title.clone())
            .collect()
    }

    #[test]
    fn a_replay_sets_the_file_aside_until_it_ends_and_a_crash_leaves_it_for_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dlq.jsonl");
        let store = FileDeadLetterStore::open(&path).unwrap();
        store.append_all(&[entry("a"), entry("b")]).unwrap();
        let (batch, _never_ended) = store.begin_replay().unwrap();
        assert_eq!(titles(&batch), ["a", "b"]);
        // The entries are on disk, aside; new ones go to a fresh file.
        assert_eq!(store.replaying_files().unwrap().len(), 1);
        assert!(store.read_all().unwrap().entries.is_empty());
        store.append(&entry("c")).unwrap();
        // A replay while the first is under way does not take the first one's file.
        let (batch, second) = store.begin_replay().unwrap();
        assert_eq!(titles(&batch), ["c"]);
        store.end_replay(second, true).unwrap();
        assert_eq!(store.replaying_files().unwrap().len(), 1);
        // A crash: the first replay never ends. The next process picks it up.
        drop(store);
        let store = FileDeadLetterStore::open(&path).unwrap();
        store.append(&entry("d")).unwrap();
        let (batch, third) = store.begin_replay().unwrap();
        let mut got = titles(&batch);
        got.sort();
        assert_eq!(
            got,
            ["a", "b", "d"],
            "each once: nothing lost, nothing doubled"
        );
        // Not complete (something was not settled): kept for the next replay.
        store.end_replay(third, false).unwrap();
        assert_eq!(store.replaying_files().unwrap().len(), 2);
        let (batch, fourth) = store.begin_replay().unwrap();
        assert_eq!(batch.entries.len(), 3);
        store.end_replay(fourth, true).unwrap();
        assert!(store.replaying_files().unwrap().is_empty());
        let (batch, last) = store.begin_replay().unwrap();
        assert!(batch.entries.is_empty() && batch.skipped == 0);
        store.end_replay(last, true).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "the fresh file too");
        }
    }

    #[test]
    fn a_second_store_on_the_same_path_follows_the_rename() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dlq.jsonl");
        let a = FileDeadLetterStore::open(&path).unwrap();
        let b = FileDeadLetterStore::open(&path).unwrap();
        a.append(&entry("before")).unwrap();
        let (batch, token) = a.begin_replay().unwrap();
        assert_eq!(titles(&batch), ["before"]);
        // `b` still holds the renamed file open: its next append must reach the path.
        b.append(&entry("after")).unwrap();
        assert_eq!(titles(&a.read_all().unwrap()), ["after"]);
        a.end_replay(token, true).unwrap();
        assert!(a.replaying_files().unwrap().is_empty());
        assert_eq!(titles(&b.read_all().unwrap()), ["after"]);
    }

    #[test]
    fn each_folder_created_is_synced_in_its_parent() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir(root.join("a")).unwrap();
        let path = root.join("a/b/c/d/dlq.jsonl");
        let synced = create_folders(&folder(&path)).unwrap();
        assert_eq!(
            synced,
            [root.join("a"), root.join("a/b"), root.join("a/b/c")],
            "the parent of each of b, c and d, outermost first; not above `a`"
        );
        assert!(root.join("a/b/c/d").is_dir());
        assert!(
            create_folders(&folder(&path)).unwrap().is_empty(),
            "all there"
        );
        // `open` goes through it, and the file is created in the new folders.
        let path = root.join("x/y/dlq.jsonl");
        FileDeadLetterStore::open(&path).unwrap();
        assert!(path.is_file());
        // A relative path: the outermost new folder is synced in `.`.
        assert_eq!(folder(Path::new("new/dlq.jsonl")), Path::new("new"));
        assert_eq!(folder(Path::new("new")), Path::new("."));
    }

    #[test]
    fn the_default_path_is_not_under_tmp_nor_in_the_working_directory() {
        if let Some(p) = default_dead_letter_path() {
            assert!(!p.starts_with("/tmp"), "{}", p.display());
            assert!(p.is_absolute(), "{}", p.display());
            assert!(p.ends_with("notifications.dead-letter.jsonl"));
        }
        let os = |s: &str| Some(OsString::from(s));
        assert_eq!(
            default_path_in(os("/state"), os("/home/app")),
            Some(PathBuf::from(
                "/state/piko-obs/notifications.dead-letter.jsonl"
            ))
        );
        assert_eq!(
            default_path_in(None, os("/home/app")),
            Some(PathBuf::from(
                "/home/app/.local/state/piko-obs/notifications.dead-letter.jsonl"
            ))
        );
        // No HOME (or an empty or relative one): no default, never the working directory.
        assert_eq!(default_path_in(None, None), None);
        assert_eq!(default_path_in(os(""), os("")), None);
        assert_eq!(default_path_in(os("state"), os("home")), None);
    }

    #[cfg(unix)]
    #[test]
    fn a_symbolic_link_or_a_fifo_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("elsewhere.jsonl");
        std::fs::write(&target, "").unwrap();
        let link = dir.path().join("dlq.jsonl");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let e = FileDeadLetterStore::open(&link).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        let msg = e.to_string();
        assert!(
            msg.contains("dlq.jsonl") && msg.contains("symbolic link"),
            "{msg}"
        );
        // A dangling link too: nothing is created at its target.
        let dangling = dir.path().join("dangling.jsonl");
        std::os::unix::fs::symlink(dir.path().join("nowhere"), &dangling).unwrap();
        assert!(FileDeadLetterStore::open(&dangling).is_err());
        assert!(!dir.path().join("nowhere").exists());
        // A folder is not a file either.
        let e = FileDeadLetterStore::open(dir.path()).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
    }

    #[cfg(unix)]
    #[test]
    fn a_file_open_to_other_users_is_narrowed_to_0600() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dlq.jsonl");
        std::fs::write(&path, "").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let store = FileDeadLetterStore::open(&path).unwrap();
        store.append(&entry("kept private")).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_replay_reads_at_most_the_caps_worth_of_set_aside_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dlq.jsonl");
        let cap = NonZeroU64::new(4096).unwrap();
        // Three files set aside by replays that never ended, each over half the cap.
        let store = FileDeadLetterStore::open(&path)
            .unwrap()
            .with_max_bytes(cap);
        let mut sizes = Vec::new();
        for f in 0..3 {
            let group: Vec<DeadLetter> = (0..10).map(|i| entry(&format!("{f}-{i}"))).collect();
            store.append_all(&group).unwrap();
            sizes.push(std::fs::metadata(&path).unwrap().len());
            let _never_ended = store.begin_replay().unwrap();
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(sizes.iter().all(|s| *s * 2 > cap.get()), "{sizes:?}");
        drop(store);
        // The next process: each replay takes what fits in the cap, oldest first.
        let store = FileDeadLetterStore::open(&path)
            .unwrap()
            .with_max_bytes(cap);
        let mut replays = Vec::new();
        loop {
            let (batch, token) = store.begin_replay().unwrap();
            store.end_replay(token, true).unwrap();
            if batch.entries.is_empty() {
                break;
            }
            replays.push(titles(&batch));
            assert!(replays.len() <= 3, "{replays:?}");
        }
        assert_eq!(replays.len(), 3, "one file per replay: {replays:?}");
        for (f, got) in replays.iter().enumerate() {
            let want: Vec<String> = (0..10).map(|i| format!("{f}-{i}")).collect();
            assert_eq!(*got, want);
        }
        // A file larger than the cap is left in place, not read.
        let big = FileDeadLetterStore::open(&path).unwrap();
        big.append_all(&(0..40).map(|i| entry(&format!("b{i}"))).collect::<Vec<_>>())
            .unwrap();
        let (batch, token) = big.begin_replay().unwrap();
        assert_eq!(batch.entries.len(), 40);
        drop((big, token));
        let small = FileDeadLetterStore::open(&path)
            .unwrap()
            .with_max_bytes(NonZeroU64::new(1024).unwrap());
        let (batch, token) = small.begin_replay().unwrap();
        assert!(batch.entries.is_empty());
        small.end_replay(token, true).unwrap();
        assert_eq!(small.replaying_files().unwrap().len(), 1);
    }

    #[test]
    fn memory_store_keeps_the_newest_entries_up_to_its_capacity_and_counts_the_others() {
        use crate::MemoryDeadLetterStore;
        let store = MemoryDeadLetterStore::new(std::num::NonZeroUsize::new(2).unwrap());
        assert!(store.is_empty());
        store.append(&entry("a")).unwrap();
        store
            .append_all(&[entry("b"), entry("c"), entry("d")])
            .unwrap();
        assert_eq!((store.len(), store.evicted()), (2, 2));
        assert_eq!(titles(&store.take_all().unwrap()), ["c", "d"]);
        assert!(store.is_empty());
        // A replay takes them the same way (the trait's default, not crash-safe).
        store.append(&entry("e")).unwrap();
        let (batch, _) = store.begin_replay().unwrap();
        assert_eq!(titles(&batch), ["e"]);
    }
}
