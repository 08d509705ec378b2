//! `--cache DIR`: downloads kept by URL, so the next class does not fetch them again. Each entry is
//! `KEY.data` (the bytes) and `KEY.meta` (URL, name, size, MD5, ETag, Last-Modified, and the data
//! file's size and modification time once in place: a copy changed since does not match its MD5 and is not
//! used), KEY being the MD5 of the URL. The `.meta` file's modification time is the entry's last use; past the size
//! limit the least recently used entries are removed.

use super::fetch::Validators;
use crate::error::Error;
use crate::file::source::Stamp;
use crate::rt::random_u64;
use crate::status::CacheStatus;
use data_encoding::HEXLOWER;
use edm_cast_proto::wire::FileDigests;
use md5::{Digest, Md5};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

/// A byte count with an optional binary unit: `500M`, `20G`, `1T`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub u64);

impl FromStr for Size {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim().trim_end_matches(['B', 'b']);
        let (num, shift) = match t.char_indices().last() {
            Some((i, c)) if c.is_ascii_alphabetic() => {
                let shift = match c.to_ascii_uppercase() {
                    'K' => 10,
                    'M' => 20,
                    'G' => 30,
                    'T' => 40,
                    _ => return Err(format!("{s:?} is not a size (like 500M or 20G)")),
                };
                (&t[..i], shift)
            }
            _ => (t, 0),
        };
        let n: f64 = num
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not a size (like 500M or 20G)"))?;
        if !(n >= 0.0 && n.is_finite()) {
            return Err(format!("{s:?} is not a size"));
        }
        Ok(Size((n * (1u64 << shift) as f64) as u64))
    }
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub path: PathBuf,
    pub name: String,
    pub size: u64,
    pub digests: FileDigests,
    pub validators: Validators,
}

pub struct Cache {
    dir: PathBuf,
    limit: u64,
    /// URLs sent from the cache, and URLs downloaded because it had no current copy.
    hits: AtomicU64,
    misses: AtomicU64,
}

impl Cache {
    pub fn open(dir: &Path, limit: Size) -> Result<Self, Error> {
        fs::create_dir_all(dir).map_err(|source| Error::Write {
            path: dir.to_owned(),
            source,
        })?;
        tidy_orphans(dir);
        Ok(Cache {
            dir: dir.to_owned(),
            limit: limit.0,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        })
    }

    fn key(url: &str) -> String {
        HEXLOWER.encode(&Md5::digest(url.as_bytes()))
    }

    /// The cached copy of `url`, if complete; marks it used.
    pub fn lookup(&self, url: &str) -> Option<Entry> {
        let key = Cache::key(url);
        let meta_path = self.dir.join(format!("{key}.meta"));
        let text = fs::read_to_string(&meta_path).ok()?;
        let field = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(k)?.strip_prefix('='))
                .map(str::to_owned)
        };
        if field("url")? != url {
            return None;
        }
        let size = field("size")?.parse().ok()?;
        let digests = FileDigests {
            md5: parse_hex(&field("md5")?)?,
            sha256: parse_hex(&field("sha256")?)?,
        };
        let path = self.dir.join(format!("{key}.data"));
        let meta = fs::metadata(&path).ok()?;
        if meta.len() != size || field("stamp")? != Stamp::of(&meta).to_string() {
            return None;
        }
        let _ = File::options()
            .write(true)
            .open(&meta_path)
            .and_then(|f| f.set_modified(SystemTime::now()));
        Some(Entry {
            path,
            name: field("name").unwrap_or_else(|| "download".into()),
            size,
            digests,
            validators: Validators {
                etag: field("etag"),
                last_modified: field("last-modified"),
            },
        })
    }

    /// A new file to download `url` into; `insert` makes it the cached copy. It is locked
    /// (`flock`) while any descriptor of it is open, so that `tidy_orphans` knows it is in use.
    pub fn spool(&self, url: &str) -> Result<(File, PathBuf), Error> {
        let path = self.dir.join(format!(
            "{}.{:08x}.part",
            Cache::key(url),
            random_u64() as u32
        ));
        let file = super::spool::create(&path)?;
        if !try_lock(&file) {
            tracing::debug!("{}: cannot lock it", path.display());
        }
        Ok((file, path))
    }

    /// Makes a finished download the cached copy of `url`, then trims the cache to its limit.
    pub fn insert(&self, url: &str, spooled: &Path, entry: &Entry) -> Result<PathBuf, Error> {
        let key = Cache::key(url);
        let data = self.dir.join(format!("{key}.data"));
        let meta = self.dir.join(format!("{key}.meta"));
        let werr = |path: &Path| {
            let path = path.to_owned();
            move |source| Error::Write { path, source }
        };
        let mut text = format!(
            "url={url}\nname={}\nsize={}\nmd5={}\nsha256={}\n",
            entry.name.replace('\n', " "),
            entry.size,
            HEXLOWER.encode(&entry.digests.md5),
            HEXLOWER.encode(&entry.digests.sha256)
        );
        for (k, v) in [
            ("etag", &entry.validators.etag),
            ("last-modified", &entry.validators.last_modified),
        ] {
            if let Some(v) = v {
                text.push_str(&format!("{k}={}\n", v.replace('\n', " ")));
            }
        }
        // The old meta goes first, so a crash in between leaves no meta pointing at wrong bytes.
        let _ = fs::remove_file(&meta);
        fs::rename(spooled, &data).map_err(werr(&data))?;
        let stamp = Stamp::of(&fs::metadata(&data).map_err(werr(&data))?);
        text.push_str(&format!("stamp={stamp}\n"));
        let tmp = self.dir.join(format!("{key}.meta.tmp"));
        fs::write(&tmp, text).map_err(werr(&tmp))?;
        fs::rename(&tmp, &meta).map_err(werr(&meta))?;
        self.evict(&key);
        Ok(data)
    }

    /// Counts a URL sent from the cache (`hit`) or downloaded because there was no current copy.
    pub fn count(&self, hit: bool) {
        let n = if hit { &self.hits } else { &self.misses };
        n.fetch_add(1, Ordering::Relaxed);
    }

    /// Its entries, the room they take and the counts, for the dashboard.
    pub fn status(&self) -> CacheStatus {
        let entries = self.entries();
        CacheStatus {
            entries: entries.len() as u64,
            bytes: entries.iter().map(|e| e.2).sum(),
            capacity: Some(self.limit),
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
        }
    }

    /// Complete entries: last use, key and size.
    fn entries(&self) -> Vec<(SystemTime, String, u64)> {
        let Ok(dir) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        dir.flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let key = name.strip_suffix(".meta")?.to_owned();
                let used = e.metadata().ok()?.modified().ok()?;
                let size = fs::metadata(self.dir.join(format!("{key}.data")))
                    .ok()?
                    .len();
                Some((used, key, size))
            })
            .collect()
    }

    /// Removes least recently used entries (never `keep`) until the data fits the limit.
    fn evict(&self, keep: &str) {
        let mut entries = self.entries();
        let mut total: u64 = entries.iter().map(|e| e.2).sum();
        entries.sort();
        for (_, key, size) in entries {
            if total <= self.limit {
                break;
            }
            if key == keep {
                continue;
            }
            let _ = fs::remove_file(self.dir.join(format!("{key}.meta")));
            let _ = fs::remove_file(self.dir.join(format!("{key}.data")));
            tracing::info!("cache: evicted {key} ({size} bytes)");
            total -= size;
        }
    }
}

/// A digest written as lowercase hex; an entry of an older edm-cast (no SHA-256) is not one.
fn parse_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    HEXLOWER.decode(s.as_bytes()).ok()?.try_into().ok()
}

/// A spool file no process has had open for this long is an orphan; younger ones may be between
/// their creation and their lock.
const ORPHAN_AGE: std::time::Duration = std::time::Duration::from_secs(60);

/// Removes the spool files of downloads whose process is gone (killed, or the machine went down
/// mid-download: a clean end removes or keeps its own): a `.part` that nobody holds locked and
/// that has not changed for `ORPHAN_AGE`. Without this, each such end kept a partial download in
/// the cache folder for good, outside `--cache-size`.
fn tidy_orphans(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        if path.extension().is_none_or(|x| x != "part") {
            continue;
        }
        let Ok(file) = File::open(&path) else {
            continue;
        };
        let old = (file.metadata().and_then(|m| m.modified()))
            .is_ok_and(|t| t.elapsed().is_ok_and(|age| age >= ORPHAN_AGE));
        if old && try_lock(&file) {
            tracing::info!(
                "{}: a download's spool left by a process that is gone: removed",
                path.display()
            );
            let _ = fs::remove_file(&path);
        }
    }
}

/// An exclusive `flock` on `file`'s open file description, if no other holds one (released when
/// the last descriptor of it closes, or the process ends however it ends).
fn try_lock(file: &File) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: flock(2) on a descriptor this `File` owns for the duration of the call.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `.part` left by a killed download (unlocked, unchanged for a minute) goes when the cache
    /// is opened; one still held by a download, one just made, and the entries stay.
    #[test]
    fn opening_the_cache_removes_only_orphaned_spools() {
        let dir = std::env::temp_dir().join(format!("edm-cache-orphans-{:x}", random_u64()));
        let cache = Cache::open(&dir, Size(1 << 30)).unwrap();
        let long_ago = SystemTime::now() - 2 * ORPHAN_AGE;
        let (held, held_path) = cache.spool("http://x/held").unwrap();
        held.set_modified(long_ago).unwrap();
        let orphan = dir.join("0123.deadbeef.part");
        File::create(&orphan)
            .unwrap()
            .set_modified(long_ago)
            .unwrap();
        let fresh = dir.join("4567.deadbeef.part");
        File::create(&fresh).unwrap();
        let entry = dir.join("89ab.data");
        File::create(&entry)
            .unwrap()
            .set_modified(long_ago)
            .unwrap();
        drop(Cache::open(&dir, Size(1 << 30)).unwrap());
        assert!(!orphan.exists());
        assert!(held_path.exists() && fresh.exists() && entry.exists());
        // Once its download's descriptors are closed (the process gone), it is an orphan too.
        drop(held);
        drop(Cache::open(&dir, Size(1 << 30)).unwrap());
        assert!(!held_path.exists() && fresh.exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!("20G".parse::<Size>().unwrap().0, 20 << 30);
        assert_eq!("500M".parse::<Size>().unwrap().0, 500 << 20);
        assert_eq!("1.5k".parse::<Size>().unwrap().0, 1536);
        assert_eq!("123".parse::<Size>().unwrap().0, 123);
        assert!("lots".parse::<Size>().is_err());
        assert!("-1G".parse::<Size>().is_err());
    }

    #[test]
    fn entries_round_trip_and_the_least_recently_used_goes_first() {
        let dir = std::env::temp_dir().join(format!("edm-cache-test-{:x}", random_u64()));
        let cache = Cache::open(&dir, Size(250)).unwrap();
        let put = |url: &str, len: usize| {
            let (_, spool) = cache.spool(url).unwrap();
            fs::write(&spool, vec![7u8; len]).unwrap();
            let e = Entry {
                path: PathBuf::new(),
                name: "x.iso".into(),
                size: len as u64,
                digests: FileDigests {
                    md5: [9; 16],
                    sha256: [8; 32],
                },
                validators: Validators {
                    etag: Some("\"abc\"".into()),
                    last_modified: None,
                },
            };
            cache.insert(url, &spool, &e).unwrap();
        };
        put("http://a/1", 100);
        std::thread::sleep(std::time::Duration::from_millis(20));
        put("http://a/2", 100);
        std::thread::sleep(std::time::Duration::from_millis(20));
        let e = cache.lookup("http://a/1").unwrap();
        assert_eq!(
            (e.size, e.digests.md5, e.validators.etag.as_deref()),
            (100, [9; 16], Some("\"abc\""))
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
        put("http://a/3", 100);
        // 300 bytes > 250: entry 2, used least recently, is gone; 1 was just looked up.
        assert!(cache.lookup("http://a/2").is_none());
        assert!(cache.lookup("http://a/1").is_some());
        assert!(cache.lookup("http://a/3").is_some());
        assert!(cache.lookup("http://other").is_none());
        cache.count(true);
        cache.count(false);
        cache.count(false);
        let st = cache.status();
        assert_eq!(
            (st.entries, st.bytes, st.capacity, st.hits, st.misses),
            (2, 200, Some(250), 1, 2)
        );
        // A copy written to since (same size) no longer has its MD5: not used.
        std::thread::sleep(std::time::Duration::from_millis(20));
        fs::write(cache.lookup("http://a/3").unwrap().path, vec![6u8; 100]).unwrap();
        assert!(cache.lookup("http://a/3").is_none());
        let _ = fs::remove_dir_all(&dir);
    }
}
