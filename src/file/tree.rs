//! Folders and many files in one session (`PROTOCOL.md` section 4a). The sender walks the tree
//! (sorted, symlinks not followed unless asked, special files skipped with a line, `--exclude`)
//! and makes a tree stream, a manifest and the files' bytes read where they lie (`tree_stream`),
//! which is then sent as one file. A session whose announced name ends in `/` carries one: the
//! receiver verifies the whole stream as for any file, and meanwhile, as the verified start of the
//! stream grows (`Feed`: blocks whose signed digests matched), checks the whole manifest before it
//! writes anything and rebuilds the tree in a staging folder of its own inside `--out` (each file
//! checked against its SHA-256); once the whole stream is verified, it moves the tree into place
//! under the sent folder's name at once. The staging folder is locked while it is built: Ctrl-C
//! stops the build and removes it, and one left by a receiver killed outright is removed by the
//! next (`tidy_stages`).

use super::output::{self, Folder};
use super::source::Stamp;
use super::tree_stream::{self, Part};
use crate::error::Error;
use edm_cast_proto::file::tree::{self, Entry, HEADER_LEN, Kind, MAX_DEPTH, Manifest};
use edm_cast_proto::wire::{FileDigests, FileHasher};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// The folder's name a session carries a tree for: its announced name less the final `/`.
pub fn root(announced: &str) -> Option<&str> {
    announced.strip_suffix('/')
}

/// The announced name of a tree whose folder is `name`.
pub fn announced(name: &str) -> String {
    format!("{}/", name.trim_end_matches('/'))
}

/// What a walk found, and what the stream holds.
#[derive(Debug, Default)]
pub struct Walked {
    pub files: usize,
    pub folders: usize,
    pub bytes: u64,
    pub skipped: usize,
}

/// The sender's walk: `--exclude`, `--follow-symlinks`.
pub struct Walk<'a> {
    pub excludes: &'a [glob::Pattern],
    pub follow: bool,
}

impl Walk<'_> {
    /// Walks `sources` and makes their tree stream, read in place (`tree_stream`): each file's
    /// SHA-256 is computed here, for the manifest. One folder is sent as its contents (the
    /// receiver names the tree after it); several sources each become an entry.
    pub fn stream(&self, sources: &[PathBuf]) -> Result<(tree_stream::Stream, Walked), Error> {
        let mut found: Vec<(Entry, PathBuf)> = Vec::new();
        let mut walked = Walked::default();
        match sources {
            [dir] if dir.is_dir() => self.walk_dir(dir, "", 1, &mut found, &mut walked)?,
            _ => {
                for src in sources {
                    let name = src.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
                        Error::Usage(format!("{}: no usable name", src.display()))
                    })?;
                    if found.iter().any(|(e, _)| e.path == name) {
                        return Err(Error::Usage(format!(
                            "{name} is given twice (each source is sent under its own name)"
                        )));
                    }
                    self.add(src, name.to_owned(), 1, &mut found, &mut walked)?;
                }
            }
        }
        let mut manifest = Manifest {
            entries: found.iter().map(|(e, _)| e.clone()).collect(),
        };
        // The manifest's length does not depend on the digests that go into it.
        let mut at = manifest.encode().len() as u64;
        let mut parts = Vec::new();
        let mut buf = vec![0u8; 1 << 20];
        for (entry, (_, path)) in manifest.entries.iter_mut().zip(&found) {
            if entry.kind != Kind::File {
                continue;
            }
            let read = |source| Error::Read {
                path: path.clone(),
                source,
            };
            let mut f = File::open(path).map_err(read)?;
            let stamp = Stamp::of(&f.metadata().map_err(read)?);
            let mut hasher = Sha256::new();
            let mut left = entry.size;
            while left > 0 {
                let n = f
                    .read(&mut buf[..left.min(1 << 20) as usize])
                    .map_err(read)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                left -= n as u64;
            }
            // Its size when walked, when opened, and all of it read; and nothing written since
            // it was opened.
            if left > 0
                || stamp.size() != entry.size
                || f.read(&mut buf[..1]).map_err(read)? != 0
                || Stamp::of(&f.metadata().map_err(read)?) != stamp
            {
                return Err(Error::Other(format!(
                    "{}: changed while being read; send again once it is written",
                    path.display()
                )));
            }
            entry.sha256 = hasher.finalize().into();
            if entry.size > 0 {
                parts.push(Part {
                    at,
                    path: path.clone(),
                    stamp,
                });
                at += entry.size;
            }
        }
        let head = manifest.encode();
        // What receivers will check, checked here first: a path too long or too deep is one line
        // now, not a refusal on every PC after the transfer.
        Manifest::parse(
            manifest.entries.len() as u32,
            &head[HEADER_LEN..],
            manifest.stream_len(),
        )
        .map_err(|e| Error::Usage(format!("cannot be sent as a tree: {e}")))?;
        Ok((tree_stream::Stream::new(head, parts), walked))
    }

    /// The sorted contents of `dir`, as entries under `prefix`.
    fn walk_dir(
        &self,
        dir: &Path,
        prefix: &str,
        depth: usize,
        found: &mut Vec<(Entry, PathBuf)>,
        walked: &mut Walked,
    ) -> Result<(), Error> {
        let read = |source| Error::Read {
            path: dir.to_owned(),
            source,
        };
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .map_err(read)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(read)?;
        names.sort();
        for name in names {
            let path = dir.join(&name);
            // Receivers refuse such names (PROTOCOL.md 4a): one file is left out, not the tree.
            let Some(name) = name.to_str().filter(|n| !n.chars().any(char::is_control)) else {
                eprintln!(
                    "edm-cast: skipped {:?}: its name is not UTF-8 or has a control character",
                    path
                );
                walked.skipped += 1;
                continue;
            };
            let rel = if prefix.is_empty() {
                name.to_owned()
            } else {
                format!("{prefix}/{name}")
            };
            self.add(&path, rel, depth, found, walked)?;
        }
        Ok(())
    }

    /// One path and, for a folder, what is in it.
    fn add(
        &self,
        path: &Path,
        rel: String,
        depth: usize,
        found: &mut Vec<(Entry, PathBuf)>,
        walked: &mut Walked,
    ) -> Result<(), Error> {
        let name = rel.rsplit('/').next().unwrap_or(&rel);
        if self
            .excludes
            .iter()
            .any(|p| p.matches(name) || p.matches(&rel))
        {
            return Ok(());
        }
        let read = |source| Error::Read {
            path: path.to_owned(),
            source,
        };
        let mut meta = std::fs::symlink_metadata(path).map_err(read)?;
        if meta.file_type().is_symlink() {
            if !self.follow {
                eprintln!(
                    "edm-cast: skipped {}: a symlink (--follow-symlinks sends what it points to)",
                    path.display()
                );
                walked.skipped += 1;
                return Ok(());
            }
            meta = std::fs::metadata(path).map_err(read)?;
        }
        let kind = if meta.is_dir() {
            Kind::Folder
        } else if meta.is_file() {
            Kind::File
        } else {
            eprintln!(
                "edm-cast: skipped {}: not a regular file or folder",
                path.display()
            );
            walked.skipped += 1;
            return Ok(());
        };
        if depth > MAX_DEPTH {
            return Err(Error::Usage(format!(
                "{}: nested deeper than {MAX_DEPTH} folders (a symlink loop?)",
                path.display()
            )));
        }
        let size = if kind == Kind::File { meta.len() } else { 0 };
        found.push((
            Entry {
                kind,
                path: rel.clone(),
                mode: (meta.permissions().mode() & 0o777) as u16,
                mtime: (meta.mtime(), meta.mtime_nsec().clamp(0, 999_999_999) as u32),
                size,
                sha256: [0; 32],
            },
            path.to_owned(),
        ));
        if found.len() > tree::MAX_ENTRIES as usize {
            return Err(Error::Usage(format!(
                "more than {} files and folders: send them in parts",
                tree::MAX_ENTRIES
            )));
        }
        match kind {
            Kind::File => {
                walked.files += 1;
                walked.bytes += size;
            }
            Kind::Folder => {
                walked.folders += 1;
                self.walk_dir(path, &rel, depth + 1, found, walked)?;
            }
        }
        Ok(())
    }
}

/// What a receiver put in place.
#[derive(Debug, Clone)]
pub struct Unpacked {
    pub path: PathBuf,
    pub files: usize,
    pub folders: usize,
    pub bytes: u64,
    /// Every file, in the manifest's order (`file_done` lines and `--exec` runs, one each).
    pub placed: Vec<Placed>,
}

/// One file of a tree in place.
#[derive(Debug, Clone)]
pub struct Placed {
    /// Inside the tree's folder, `/`-separated.
    pub path: String,
    pub size: u64,
    /// The SHA-256 the manifest gave (and the file has), and the MD5 computed from the same
    /// bytes (the manifest carries none; the whole stream's MD5 was checked).
    pub digests: FileDigests,
}

/// How much of a tree stream is in its file and verified, for an unpacking that runs while the
/// stream arrives: the bytes of the blocks decoded (or kept and checked) without a gap from the
/// start, then the whole stream once its digests matched. The listener (`Feeder`) moves it on;
/// the unpacking waits on it before it reads a byte.
pub struct Feed {
    state: Mutex<Fed>,
    moved: Condvar,
    /// The stream's first bytes its running digests have read: copied out, they may go.
    hashed: Arc<AtomicU64>,
}

#[derive(Clone, Copy, PartialEq)]
enum Fed {
    /// The stream's first bytes, this many of them, are verified.
    Prefix(u64),
    /// The whole stream is, with its MD5 and SHA-256: the tree may be placed.
    Verified,
    /// The session ended without it: nothing is placed.
    Abandoned,
}

impl Default for Fed {
    fn default() -> Self {
        Fed::Prefix(0)
    }
}

/// The stream's bytes copied out are freed in steps of this many.
const PUNCH_STEP: u64 = 16 << 20;

/// How long an unpacking waiting for bytes sleeps between looks at its `cancel` flag.
const FEED_POLL: Duration = Duration::from_millis(100);

impl Feed {
    /// Waits until the stream's first `bytes` are verified (`u64::MAX`: the whole stream).
    fn wait(&self, bytes: u64, cancel: &AtomicBool) -> Result<(), Error> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            match *state {
                Fed::Verified => return Ok(()),
                Fed::Prefix(n) if n >= bytes => return Ok(()),
                Fed::Abandoned => {
                    return Err(Error::Other(
                        "the session ended before the folder was whole".into(),
                    ));
                }
                Fed::Prefix(_) if cancel.load(Ordering::Relaxed) => return Err(interrupted()),
                Fed::Prefix(_) => {
                    state = (self.moved.wait_timeout(state, FEED_POLL))
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
        }
    }

    /// Whether the stream's first `end` bytes are not read again by its digests (or the whole
    /// stream is verified), so those copied out may go (`punch_hole`).
    fn hashed(&self, end: u64) -> bool {
        self.hashed.load(Ordering::Acquire) >= end
            || *self.state.lock().unwrap_or_else(|e| e.into_inner()) == Fed::Verified
    }

    fn set(&self, to: Fed) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        // Verified and Abandoned are final; a prefix only grows.
        *state = match (*state, to) {
            (Fed::Prefix(old), Fed::Prefix(new)) => Fed::Prefix(old.max(new)),
            (Fed::Prefix(_), to) => to,
            (done, _) => done,
        };
        self.moved.notify_all();
    }
}

/// The listener's side of a `Feed`. Dropped before `verified` (the session failed, Ctrl-C, a copy
/// already here), the unpacking stops and its staging folder is removed.
pub struct Feeder(Arc<Feed>);

impl Feeder {
    /// A feed, and the side that moves it on; `hashed`: how much of the stream its running
    /// digests have read (`RunningDigests::hashed`).
    pub fn new(hashed: Arc<AtomicU64>) -> (Feeder, Arc<Feed>) {
        let feed = Arc::new(Feed {
            state: Mutex::default(),
            moved: Condvar::new(),
            hashed,
        });
        (Feeder(feed.clone()), feed)
    }

    /// The stream's first `bytes` are in its file and verified.
    pub fn prefix(&self, bytes: u64) {
        self.0.set(Fed::Prefix(bytes));
    }

    /// The whole stream is verified.
    pub fn verified(self) {
        self.0.set(Fed::Verified);
    }
}

impl Drop for Feeder {
    fn drop(&mut self) {
        self.0.set(Fed::Abandoned);
    }
}

fn interrupted() -> Error {
    Error::Other("the unpacking was interrupted".into())
}

/// Rebuilds the tree the stream `stream` (of `size` bytes) holds as the folder `name` in
/// `folder`, as `feed` says its bytes are in and verified: files are written while the stream
/// still arrives, and the folder is placed only once the whole stream is verified. A manifest
/// that breaks a rule is refused before anything is written. `cancel` set (Ctrl-C) or the feed
/// abandoned stops the build within a MiB written, and the staging folder is removed.
pub fn unpack(
    folder: &Folder,
    name: &str,
    stream: &File,
    size: u64,
    feed: &Feed,
    cancel: &AtomicBool,
) -> Result<Unpacked, Error> {
    let refused = |why: String| {
        Error::Protocol(format!(
            "refused the folder {name:?} from the sender: {why}; nothing was written"
        ))
    };
    let read = |source| Error::Read {
        path: folder.path().join(name),
        source,
    };
    let mut header = [0u8; HEADER_LEN];
    if size < HEADER_LEN as u64 {
        return Err(refused("shorter than a tree header".into()));
    }
    feed.wait(HEADER_LEN as u64, cancel)?;
    stream.read_exact_at(&mut header, 0).map_err(read)?;
    let (count, len) = tree::parse_header(&header).map_err(|e| refused(e.to_string()))?;
    if HEADER_LEN as u64 + len as u64 > size {
        return Err(refused("the manifest is cut short".into()));
    }
    let mut body = vec![0u8; len as usize];
    feed.wait(HEADER_LEN as u64 + len as u64, cancel)?;
    stream
        .read_exact_at(&mut body, HEADER_LEN as u64)
        .map_err(read)?;
    let manifest = Manifest::parse(count, &body, size).map_err(|e| refused(e.to_string()))?;
    let (stage, dir) = folder.temp_dir().map_err(|source| Error::Write {
        path: folder.path().to_owned(),
        source,
    })?;
    // Held until the folder is in place or removed: `tidy_stages` leaves a locked one alone.
    // Best effort: a fresh stage is young, and left alone for that too.
    let _ = lock(&dir);
    let built = build(
        folder,
        &stage,
        &dir,
        Stream {
            file: stream,
            feed,
            cancel,
        },
        HEADER_LEN as u64 + len as u64,
        &manifest,
    )
    .and_then(|u| {
        let path = folder.commit_dir(&stage, name)?;
        Ok(Unpacked { path, ..u })
    });
    if built.is_err() {
        let _ = std::fs::remove_dir_all(folder.path().join(&stage));
    }
    built
}

/// A tree stream being read: its file, how much of it is in (`Feed`), and what stops the reading.
#[derive(Clone, Copy)]
struct Stream<'a> {
    file: &'a File,
    feed: &'a Feed,
    cancel: &'a AtomicBool,
}

/// Writes every entry into the staging folder `dir`, from `stream` at `offset` on.
fn build(
    folder: &Folder,
    stage: &str,
    dir: &OwnedFd,
    stream: Stream,
    mut offset: u64,
    manifest: &Manifest,
) -> Result<Unpacked, Error> {
    let Stream {
        file: stream,
        feed,
        cancel,
    } = stream;
    let at = |path: &str| folder.path().join(stage).join(path);
    let umask = umask();
    let mut done = Unpacked {
        path: PathBuf::new(),
        files: 0,
        folders: 0,
        bytes: 0,
        placed: Vec::new(),
    };
    let mut buf = vec![0u8; 1 << 20];
    // The stream's bytes before this are copied out and freed.
    let mut punched = offset;
    for e in &manifest.entries {
        if cancel.load(Ordering::Relaxed) {
            return Err(interrupted());
        }
        let write = |source| Error::Write {
            path: at(&e.path),
            source,
        };
        match e.kind {
            // Writable by us until the end, when its own mode is set.
            Kind::Folder => {
                output::mkdir_at(dir, &e.path, 0o700).map_err(write)?;
                done.folders += 1;
            }
            Kind::File => {
                let file =
                    output::create_at_mode(dir, &e.path, (e.mode & 0o777).into()).map_err(write)?;
                let mut hasher = FileHasher::default();
                let mut left = e.size;
                while left > 0 {
                    if cancel.load(Ordering::Relaxed) {
                        return Err(interrupted());
                    }
                    let n = left.min(buf.len() as u64) as usize;
                    feed.wait(offset + n as u64, cancel)?;
                    stream.read_exact_at(&mut buf[..n], offset).map_err(write)?;
                    hasher.update(&buf[..n]);
                    file.write_all_at(&buf[..n], e.size - left).map_err(write)?;
                    offset += n as u64;
                    left -= n as u64;
                }
                let digests = hasher.finish();
                if digests.sha256 != e.sha256 {
                    return Err(Error::Protocol(format!(
                        "{:?}: its SHA-256 is not the one its manifest gives; the folder is not kept",
                        e.path
                    )));
                }
                output::set_times(&file, e.mtime).map_err(write)?;
                // The stream's copy is not needed any more once the stream's digests have read
                // it: so the tree takes about its own size on disk while it is built, not twice
                // that (best effort; what the digests have not reached yet stays). In steps of
                // `PUNCH_STEP`: each punch waits for the range's writeback, once per small file
                // that costs more than the copy.
                if offset - punched >= PUNCH_STEP && feed.hashed(offset) {
                    output::punch_hole(stream, punched, offset - punched);
                    punched = offset;
                }
                done.files += 1;
                done.bytes += e.size;
                done.placed.push(Placed {
                    path: e.path.clone(),
                    size: e.size,
                    digests,
                });
            }
        }
    }
    // Every file is checked against its SHA-256, and now the whole stream against its digests:
    // only then do the folders take their modes and the tree its place.
    feed.wait(u64::MAX, cancel)?;
    // Deepest first: a folder's time is set once nothing more is written in it.
    for e in manifest.entries.iter().rev() {
        if e.kind == Kind::Folder {
            let write = |source| Error::Write {
                path: at(&e.path),
                source,
            };
            let f = output::open_dir_at(dir, &e.path).map_err(write)?;
            f.set_permissions(std::fs::Permissions::from_mode(
                u32::from(e.mode) & 0o777 & !umask,
            ))
            .map_err(write)?;
            output::set_times(&f, e.mtime).map_err(write)?;
        }
    }
    let own = |source| Error::Write {
        path: folder.path().join(stage),
        source,
    };
    // The staging folder was private while it was built; now it is the sent folder.
    let me = File::from(dir.try_clone().map_err(own)?);
    me.set_permissions(std::fs::Permissions::from_mode(0o777 & !umask))
        .map_err(own)?;
    Ok(done)
}

/// Staging folders of ours (`.edm-cast-<16 hex>.tree`) older than this and not locked were left by
/// a receiver killed outright: a younger one may be one being made this very moment, not locked yet.
const STALE_STAGE: Duration = Duration::from_secs(2);

/// Removes the staging folders a receiver killed mid-unpack (SIGKILL, a crash, a power cut) left in
/// `folder`: only folders named as ours, not locked by a receiver unpacking into them, never
/// through a symlink (one named so is left alone, as is anything else).
pub fn tidy_stages(folder: &Folder) {
    let Ok(entries) = std::fs::read_dir(folder.path()) else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let ours = name
            .strip_prefix(".edm-cast-")
            .and_then(|n| n.strip_suffix(".tree"))
            .is_some_and(|k| k.len() == 16 && k.bytes().all(|c| c.is_ascii_hexdigit()));
        // The entry's own type: a symlink is not a directory here.
        if !ours || !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let path = entry.path();
        let Ok(dir) = std::fs::File::options()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
            .open(&path)
        else {
            continue;
        };
        let young = dir
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().unwrap_or_default() < STALE_STAGE);
        if young || !lock(&dir).unwrap_or(false) {
            continue;
        }
        // remove_dir_all never follows a symlink inside the folder: it removes the link.
        match std::fs::remove_dir_all(&path) {
            Ok(()) => eprintln!(
                "removed {}: a folder being unpacked when an earlier receiver was stopped",
                path.display()
            ),
            Err(e) => tracing::debug!("cannot remove {}: {e}", path.display()),
        }
    }
}

/// Takes the lock on a staging folder; false if another receiver holds it.
fn lock(dir: &impl AsRawFd) -> std::io::Result<bool> {
    // SAFETY: flock(2) on a valid fd; the lock goes with the folder's last close.
    if unsafe { libc::flock(dir.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(true);
    }
    match std::io::Error::last_os_error() {
        e if e.raw_os_error() == Some(libc::EWOULDBLOCK) => Ok(false),
        e => Err(e),
    }
}

/// This process's umask (read, not set: setting it would race the other threads).
fn umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Umask:"))
                .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        })
        .unwrap_or(0o022)
}
