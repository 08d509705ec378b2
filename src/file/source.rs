//! Where a session's bytes come from: a file on disk (its MD5 read first), a tree's stream read
//! from its files (`tree_stream`), or a URL being downloaded into a spool file while it is sent (a
//! cached copy, if still current, is a file).
//!
//! Receivers take the announced MD5 and SHA-256 as the file's once every block matched its digest
//! (PROTOCOL.md 9), and block digests are computed from the bytes read for the blocks: so a file
//! must not change between its digests and its blocks. Its size and modification time are noted
//! before the digests are read (through the same descriptor as the blocks), and every block read checks them:
//! a change aborts the session before a block of the new bytes goes out.

use super::digest::read_digests;
use super::digest_cache::{DigestCache, Key};
use super::tree_stream::Stream;
use super::view;
use crate::error::Error;
use crate::http::cache::{Cache, Entry};
use crate::http::fetch::{self, Fetched, Progress};
use crate::rt::random_u64;
use edm_cast_proto::wire::FileDigests;
use edm_cast_proto::{FileInfo, Sender, SenderConfig};
use std::fs::{File, Metadata};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime};
use tokio::sync::watch;

pub struct Source {
    pub name: String,
    /// `None`: a download without Content-Length, until it ends.
    pub size: Option<u64>,
    /// `None`: a download, until it ends.
    pub digests: Option<FileDigests>,
    body: Body,
    pub path: PathBuf,
    /// A download's progress; `None` for a complete file.
    pub feed: Option<watch::Receiver<Progress>>,
    /// Where it came from, for the operator: "cache", "download", "file".
    pub origin: &'static str,
    /// A tree's files (`send FOLDER`), for the teacher's screen.
    pub files: Option<usize>,
    /// A complete file: what it was when its digests were read (None: a download, which grows).
    stamp: Option<Stamp>,
    _spool: Option<TempFile>,
}

/// Where a source's bytes are read from.
enum Body {
    /// A file, or a download's spool.
    File(File),
    /// A tree's stream, from its files where they lie.
    Tree(Stream),
}

/// What changes when a file is written to: its size and modification time (ns). Not the change
/// time, which a rename, a link or an unlink changes too (the cache removing a copy being sent
/// must not abort its session); a writer that sets the modification time back (`touch -d`,
/// `cp -p`) goes unseen.
/// Also kept with a download in the cache (`cache::Cache`), whose digests were computed as it
/// arrived: a cached copy changed since is not sent with them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    len: u64,
    mtime: (i64, i64),
}

impl Stamp {
    pub fn of(meta: &Metadata) -> Self {
        Stamp {
            len: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
        }
    }

    /// The file's size then.
    pub fn size(&self) -> u64 {
        self.len
    }

    /// After a read of `file` (at `path`), whether it is still what it was when its `digest` (the
    /// one the receivers are given for it) was computed; checked after the read, as a write that
    /// began before it has set the new times.
    pub fn check(&self, file: &File, path: &Path, digest: &str) -> Result<(), Error> {
        let meta = file.metadata().map_err(|source| Error::Read {
            path: path.to_owned(),
            source,
        })?;
        if Stamp::of(&meta) != *self {
            return Err(Error::Other(format!(
                "{} changed while it was sent (its size or modification time is not what it was \
                 when its {digest} was computed): the session is aborted; send it again once \
                 nothing writes to it",
                path.display()
            )));
        }
        Ok(())
    }
}

impl std::fmt::Display for Stamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Stamp { len, mtime } = self;
        write!(f, "{len} {}.{:09}", mtime.0, mtime.1)
    }
}

impl Source {
    /// The protocol's sender for this source: of a whole file, or of a download still arriving.
    pub fn sender(&self, cfg: SenderConfig) -> Result<Sender, Error> {
        let info = FileInfo {
            name: self.name.clone(),
            size: self.size,
            digests: self.digests,
        };
        let now = Instant::now();
        match self.feed {
            Some(_) => Sender::growing(cfg, info, now),
            None => Sender::new(cfg, info, now),
        }
        .map_err(|e| Error::Usage(e.to_string()))
    }

    /// Reads a block's bytes at `offset`; fails if the file changed since its digests were read
    /// (the blocks would not be the file the announced MD5 and SHA-256 describe).
    pub fn read_block(&self, buf: &mut [u8], offset: u64) -> Result<(), Error> {
        let file = match &self.body {
            // Each of its files is checked the same way.
            Body::Tree(stream) => return stream.read_exact_at(buf, offset),
            Body::File(file) => file,
        };
        let read_err = |source| Error::Read {
            path: self.path.clone(),
            source,
        };
        file.read_exact_at(buf, offset).map_err(read_err)?;
        match self.stamp {
            Some(stamp) => stamp.check(file, &self.path, "MD5"),
            None => Ok(()),
        }
    }
}

/// Removed when dropped (a download spooled in the cache's folder, until it is moved into the
/// cache).
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A complete file: its MD5 is computed first (with a progress bar on a terminal).
pub fn file(path: &Path, name: Option<String>) -> Result<Source, Error> {
    let read_err = |source| Error::Read {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(read_err)?;
    opened(file, path, name, DigestCache::open())
}

/// A complete file already open (from byte 0); `path` names it in messages. Its digests come
/// from `cache` if it holds them for this very file.
fn opened(
    file: File,
    path: &Path,
    name: Option<String>,
    cache: Option<DigestCache>,
) -> Result<Source, Error> {
    let read_err = |source| Error::Read {
        path: path.to_owned(),
        source,
    };
    let meta = file.metadata().map_err(read_err)?;
    if !meta.is_file() {
        return Err(Error::Usage(format!(
            "{} is not a regular file",
            path.display()
        )));
    }
    let size = meta.len();
    let key = Key::of(&meta);
    let digests = match cache.as_ref().and_then(|c| c.lookup(&key)) {
        Some(d) => {
            eprintln!(
                "edm-cast: {}: MD5 and SHA-256 from the digest cache (the file is unchanged since \
                 they were computed)",
                path.display()
            );
            d
        }
        None => {
            let bar = view::byte_bar(Some(size), "digests");
            // Through the descriptor the blocks are read from: a file renamed over `path`
            // meanwhile is not the one digested.
            let d = read_digests(&file, |n| bar.set_position(n)).map_err(read_err)?;
            bar.finish_and_clear();
            // Recorded only if the file did not change while it was read, nor just before.
            let after = Key::of(&file.metadata().map_err(read_err)?);
            if let Some(c) = &cache
                && after == key
                && key.settled(SystemTime::now())
            {
                c.insert(&key, &d);
            }
            d
        }
    };
    Ok(Source {
        name: name.unwrap_or_else(|| {
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "file".into())
        }),
        size: Some(size),
        digests: Some(digests),
        body: Body::File(file),
        path: path.to_owned(),
        feed: None,
        origin: "file",
        files: None,
        stamp: Some(Stamp::of(&meta)),
        _spool: None,
    })
}

/// A tree's stream (`send FOLDER`, several sources) of `files` files, read where they lie, sent
/// as `name`; `path` names it in messages. Its MD5 and SHA-256 are computed first.
pub fn tree(stream: Stream, path: &Path, name: String, files: usize) -> Result<Source, Error> {
    let bar = view::byte_bar(Some(stream.size()), "digests");
    let digests = stream.digests(|n| bar.set_position(n))?;
    bar.finish_and_clear();
    Ok(Source {
        name,
        size: Some(stream.size()),
        digests: Some(digests),
        body: Body::Tree(stream),
        path: path.to_owned(),
        feed: None,
        origin: "file",
        files: Some(files),
        stamp: None,
        _spool: None,
    })
}

/// A spool file for this process alone, unlinked at once: its descriptor keeps it while it is
/// read, and a sender that is killed (or crashes) leaves nothing in the temporary folder.
pub fn anonymous_spool(prefix: &str) -> Result<(File, PathBuf), Error> {
    let path = std::env::temp_dir().join(format!("{prefix}-{:016x}.part", random_u64()));
    let file = crate::http::spool::create(&path)?;
    let _ = std::fs::remove_file(&path);
    Ok((file, path))
}

/// A URL: the cached copy if the server says it is current (or cannot be asked), otherwise a
/// download that has started (into the cache, with `cache`) within `limits`.
pub fn url(
    agent: &ureq::Agent,
    url: &str,
    cache: Option<&Arc<Cache>>,
    limits: &fetch::Limits,
) -> Result<Source, Error> {
    let cached = cache.and_then(|c| c.lookup(url));
    let (file, path, temp) = match cache {
        Some(c) => {
            let (f, p) = c.spool(url)?;
            (f, p.clone(), Some(TempFile(p)))
        }
        None => {
            let (f, p) = anonymous_spool("edm-cast")?;
            (f, p, None)
        }
    };
    let reader = file.try_clone().map_err(|source| Error::Read {
        path: path.clone(),
        source,
    })?;
    // With a cache, the finished download becomes the cached copy of `url`.
    let keep = cache.cloned().map(|c| {
        let (url, spooled) = (url.to_owned(), path.clone());
        move |done: fetch::Finished<'_>| {
            let entry = Entry {
                path: spooled.clone(),
                name: done.name.to_owned(),
                size: done.size,
                digests: done.digests,
                validators: done.validators.clone(),
            };
            if let Err(e) = c.insert(&url, &spooled, &entry) {
                tracing::warn!("{url}: not cached: {e}");
            }
        }
    });
    let started = fetch::start(
        agent,
        url,
        file,
        path.clone(),
        cached.as_ref().map(|e| &e.validators),
        limits,
        move |done| {
            if let Some(keep) = keep {
                keep(done)
            }
        },
    );
    // What the cache saved: a URL sent from it is a hit, one downloaded a miss.
    let count = |hit| {
        if let Some(c) = cache {
            c.count(hit)
        }
    };
    match (started, cached) {
        (Ok(Fetched::Started(d)), _) => {
            count(false);
            Ok(Source {
                name: d.name,
                size: d.size,
                digests: None,
                body: Body::File(reader),
                path,
                feed: Some(d.progress),
                origin: "download",
                files: None,
                stamp: None,
                // The finished download is moved into the cache; the guard then finds nothing.
                _spool: temp,
            })
        }
        (Ok(Fetched::NotModified), Some(entry)) => {
            count(true);
            cached_source(entry)
        }
        (Ok(Fetched::NotModified), None) => Err(Error::Fetch {
            url: url.into(),
            why: "304 Not Modified to an unconditional request".into(),
            told: fetch::Told::Failed,
        }),
        (Err(e), Some(entry)) => {
            eprintln!("edm-cast: {e}; sending the cached copy");
            count(true);
            cached_source(entry)
        }
        (Err(e), None) => Err(e),
    }
}

fn cached_source(e: Entry) -> Result<Source, Error> {
    let read_err = |source| Error::Read {
        path: e.path.clone(),
        source,
    };
    let file = File::open(&e.path).map_err(read_err)?;
    let meta = file.metadata().map_err(read_err)?;
    Ok(Source {
        name: e.name,
        size: Some(e.size),
        digests: Some(e.digests),
        body: Body::File(file),
        path: e.path,
        feed: None,
        origin: "cache",
        files: None,
        stamp: Some(Stamp::of(&meta)),
        _spool: None,
    })
}
