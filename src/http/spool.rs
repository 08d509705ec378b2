//! `serve --spool-size`: how much the downloads under way may take at once in the spool folder (the
//! cache, or $TMPDIR, which is often a tmpfs: RAM), and never more than its file system has free.
//! A download claims its Content-Length before its body is fetched or, size unknown, a step at a
//! time as its bytes arrive. The claim is given back when its session ends: the spool file is then
//! gone, or in the cache, which trims itself to `--cache-size` (so the cache folder holds at most
//! `--cache-size` + `--spool-size`).

use crate::error::Error;
use crate::file::view::bytes;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

/// Claimed at a time by a download of unknown size, so the file system is not asked at every read.
const STEP: u64 = 16 << 20;

/// Bytes claimed, and the part of them already written.
#[derive(Debug, Default, Clone, Copy)]
struct Totals {
    claimed: u64,
    written: u64,
}

/// A new spool file at `path` (never one already there), to write a download into and read it
/// back.
pub fn create(path: &Path) -> Result<File, Error> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|source| Error::Write {
            path: path.to_owned(),
            source,
        })
}

/// The room downloads share.
pub struct Spool {
    dir: PathBuf,
    limit: u64,
    totals: Mutex<Totals>,
}

/// One download's part of the spool, given back on drop.
pub struct Claim {
    spool: Arc<Spool>,
    mine: Mutex<Totals>,
}

impl Spool {
    /// Downloads into `dir` may hold `limit` bytes at once.
    pub fn new(dir: PathBuf, limit: u64) -> Arc<Spool> {
        Arc::new(Spool {
            dir,
            limit,
            totals: Mutex::new(Totals::default()),
        })
    }

    /// An empty claim for one more download.
    pub fn claim(self: &Arc<Self>) -> Claim {
        Claim {
            spool: self.clone(),
            mine: Mutex::new(Totals::default()),
        }
    }

    /// Raises `mine` to `want` bytes claimed, if the limit and the free space allow it.
    fn grow(&self, all: &mut Totals, mine: &mut Totals, want: u64) -> Result<(), String> {
        let more = want.saturating_sub(mine.claimed);
        if all.claimed + more > self.limit {
            return Err(format!(
                "no room in the spool: {} more would pass --spool-size {} ({} taken by downloads under way)",
                bytes(more),
                bytes(self.limit),
                bytes(all.claimed)
            ));
        }
        // What was promised to downloads but is not on disk yet must fit too.
        let unwritten = all.claimed - all.written + more;
        if let Some(free) = free_space(&self.dir)
            && unwritten > free
        {
            return Err(format!(
                "no room in the spool: {} wanted, {} free in {}",
                bytes(unwritten),
                bytes(free),
                self.dir.display()
            ));
        }
        all.claimed += more;
        mine.claimed += more;
        Ok(())
    }
}

impl Claim {
    /// Claims room for `total` bytes in all (a Content-Length) before they come.
    pub fn reserve(&self, total: u64) -> Result<(), String> {
        let mut all = lock(&self.spool.totals);
        let mut mine = lock(&self.mine);
        self.spool.grow(&mut all, &mut mine, total)
    }

    /// The download is about to hold `total` bytes: claims more if it must (a step ahead), and
    /// counts them as written.
    pub fn take(&self, total: u64) -> Result<(), String> {
        let mut all = lock(&self.spool.totals);
        let mut mine = lock(&self.mine);
        if total > mine.claimed {
            let ahead = (mine.claimed + STEP).max(total);
            self.spool
                .grow(&mut all, &mut mine, ahead)
                .or_else(|_| self.spool.grow(&mut all, &mut mine, total))?;
        }
        let new = total.saturating_sub(mine.written);
        all.written += new;
        mine.written += new;
        Ok(())
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut all = lock(&self.spool.totals);
        let mine = lock(&self.mine);
        all.claimed -= mine.claimed;
        all.written -= mine.written;
    }
}

/// The totals stay consistent even if a download thread panicked while holding the lock: every
/// change to them is made after the checks that can fail.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Bytes an unprivileged writer may still use on the file system holding `dir`, if it can be asked.
fn free_space(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs(3) reads the NUL-terminated `path` and fills in the zeroed struct.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::statvfs(path.as_ptr(), &mut st) } == 0;
    ok.then(|| st.f_bavail as u64 * st.f_frsize as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downloads_at_once_share_the_limit_and_give_it_back() {
        let spool = Spool::new(std::env::temp_dir(), 100 << 20);
        // A known size is claimed whole before the body comes.
        let a = spool.claim();
        a.reserve(70 << 20).unwrap();
        let b = spool.claim();
        let e = b.reserve(40 << 20).unwrap_err();
        assert!(e.contains("--spool-size 100.0 MiB"), "{e}");
        // Size unknown: claimed a step ahead while it fits, then byte for byte, then refused.
        b.take(1 << 20).unwrap();
        assert_eq!(lock(&b.mine).claimed, STEP);
        b.take(30 << 20).unwrap();
        assert_eq!(lock(&spool.totals).claimed, 100 << 20);
        assert!(b.take((30 << 20) + 1).is_err());
        // Writing within a claim needs no more room.
        a.take(70 << 20).unwrap();
        assert_eq!(lock(&spool.totals).written, 100 << 20);
        drop(a);
        b.take(60 << 20).unwrap();
        drop(b);
        let t = *lock(&spool.totals);
        assert_eq!((t.claimed, t.written), (0, 0));
    }

    #[test]
    fn no_more_than_the_disk_has_free() {
        let dir = std::env::temp_dir();
        let free = free_space(&dir).expect("statvfs works on the temp dir");
        let spool = Spool::new(dir, u64::MAX);
        let e = spool.claim().reserve(free + (1 << 30)).unwrap_err();
        assert!(e.contains("free in"), "{e}");
    }
}
