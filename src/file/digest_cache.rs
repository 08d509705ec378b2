//! The sender's record of the MD5 and SHA-256 it computed for files it sent: a teacher sends the
//! same 4 GB image to every class, and each `send` would read it all (2 s per GB here) before the
//! session could start. A file is known by its device, inode, size, and modification and change
//! times (ns): any write changes the change time, which no user tool can set back (`touch -d` and
//! `cp -p` set the modification time only), so a file written since is a miss and read again.
//!
//! One text line per file in `$XDG_CACHE_HOME/edm-cast/digests` (else `~/.cache/…`), the newest
//! last, at most `MAX_ENTRIES`; rewritten whole through a rename, so a reader never sees half of
//! it. The record is the teacher's own: a line that does not parse is skipped. Nothing here is
//! fatal: without a home, or with a read-only one, digests are computed as before.

use data_encoding::HEXLOWER;
use edm_cast_proto::wire::FileDigests;
use std::fs::Metadata;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Files remembered at most (a line is about 170 bytes).
const MAX_ENTRIES: usize = 256;

/// See `Key::settled`.
const SETTLE: Duration = Duration::from_secs(2);

/// What identifies a file's content without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Key {
    pub fn of(meta: &Metadata) -> Self {
        Key {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }

    /// Whether the file last changed long enough before `now` that a later write would show in
    /// its times: the kernel stamps them from a clock that ticks every few ms, so two writes in
    /// one tick look alike. A file changed in the last `SETTLE` is not recorded (git's "racy
    /// clean" entries, the same problem).
    pub fn settled(&self, now: SystemTime) -> bool {
        let changed = UNIX_EPOCH + Duration::new(self.ctime.0.max(0) as u64, self.ctime.1 as u32);
        now.duration_since(changed).is_ok_and(|d| d >= SETTLE)
    }

    fn text(&self) -> String {
        let Key {
            dev,
            ino,
            size,
            mtime,
            ctime,
        } = self;
        format!(
            "{dev} {ino} {size} {} {} {} {}",
            mtime.0, mtime.1, ctime.0, ctime.1
        )
    }
}

/// The record, where the user's cache folder is.
pub struct DigestCache {
    path: PathBuf,
}

impl DigestCache {
    /// The user's record, or None without `$XDG_CACHE_HOME` or `$HOME`.
    pub fn open() -> Option<Self> {
        let dir = std::env::var_os("XDG_CACHE_HOME")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
        Some(DigestCache {
            path: dir.join("edm-cast").join("digests"),
        })
    }

    /// The digests recorded for a file with this key.
    pub fn lookup(&self, key: &Key) -> Option<FileDigests> {
        let want = key.text();
        let text = std::fs::read_to_string(&self.path).ok()?;
        text.lines().rev().find_map(|l| {
            let (k, d) = l.rsplit_once(' ')?;
            let (k, md5) = k.rsplit_once(' ')?;
            (k == want).then(|| parse(md5, d)).flatten()
        })
    }

    /// Records `digests` for `key` (best effort: a failure is logged at debug level only).
    pub fn insert(&self, key: &Key, digests: &FileDigests) {
        if let Err(e) = self.write(key, digests) {
            tracing::debug!("digest cache {}: {e}", self.path.display());
        }
    }

    fn write(&self, key: &Key, digests: &FileDigests) -> std::io::Result<()> {
        let want = format!("{} ", key.text());
        let old = std::fs::read_to_string(&self.path).unwrap_or_default();
        let mut lines: Vec<&str> = (old.lines()).filter(|l| !l.starts_with(&want)).collect();
        let line = format!(
            "{want}{} {}",
            HEXLOWER.encode(&digests.md5),
            HEXLOWER.encode(&digests.sha256)
        );
        lines.push(&line);
        let keep = &lines[lines.len().saturating_sub(MAX_ENTRIES)..];
        let dir = self.path.parent().expect("a file in a folder");
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join(format!("digests.{}.tmp", std::process::id()));
        let mut f = std::fs::File::create(&tmp)?;
        for l in keep {
            writeln!(f, "{l}")?;
        }
        drop(f);
        std::fs::rename(&tmp, &self.path).inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
    }
}

fn parse(md5: &str, sha256: &str) -> Option<FileDigests> {
    Some(FileDigests {
        md5: HEXLOWER.decode(md5.as_bytes()).ok()?.try_into().ok()?,
        sha256: HEXLOWER.decode(sha256.as_bytes()).ok()?.try_into().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_file_is_found_by_its_key_and_only_by_it() {
        let dir = std::env::temp_dir().join(format!("edm-dcache-{}", crate::rt::random_u64()));
        let cache = DigestCache {
            path: dir.join("edm-cast/digests"),
        };
        let file = dir.join("f");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(&file, b"one").unwrap();
        let key = Key::of(&std::fs::metadata(&file).unwrap());
        let d = FileDigests {
            md5: [7; 16],
            sha256: [9; 32],
        };
        assert_eq!(cache.lookup(&key), None);
        cache.insert(&key, &d);
        assert_eq!(cache.lookup(&key), Some(d));
        assert!(!key.settled(SystemTime::now()));
        assert!(key.settled(SystemTime::now() + SETTLE));
        // Written again (same size, a clock tick later): its change time moved, so it is not the
        // file recorded.
        std::thread::sleep(Duration::from_millis(50));
        std::fs::write(&file, b"two").unwrap();
        let again = Key::of(&std::fs::metadata(&file).unwrap());
        assert_ne!(again, key);
        assert_eq!(cache.lookup(&again), None);
        // Bounded: the oldest go.
        for i in 0..MAX_ENTRIES as u64 {
            cache.insert(
                &Key {
                    ino: (i + 1) << 40,
                    ..key
                },
                &d,
            );
        }
        let text = std::fs::read_to_string(&cache.path).unwrap();
        assert_eq!(text.lines().count(), MAX_ENTRIES);
        assert_eq!(cache.lookup(&key), None);
        // A damaged line is skipped, not fatal.
        std::fs::write(&cache.path, format!("{} zz 00\n", key.text())).unwrap();
        assert_eq!(cache.lookup(&key), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
