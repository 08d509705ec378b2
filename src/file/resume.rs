//! A receiver's partial file kept across a kill, a crash or a reboot: it is written under a name
//! made from the content (`.edm-cast-<first 8 bytes of its SHA-256>.part` in `--out`), with a small
//! state file beside it (`.edm-cast-<same>.resume`) that names the content and lists the blocks
//! written and verified so far. A receiver started again with the same `--out`, joining a session
//! (the same one, or a re-run) of the same content cut the same way, takes the partial file back
//! and hands the listed blocks to `Receiver::resume`, which checks each one against the session's
//! block digest before it counts: a state file or partial file changed meanwhile costs blocks,
//! never a wrong file.
//!
//! The state file, text, at most `MAX_STATE` bytes:
//!
//! ```text
//! edm-cast partial 1
//! content SIZE T K PADDED MD5 SHA256      (as announced; PADDED 0 or 1, digests in hex)
//! blocks N                                 (blocks in the file)
//! have HEX                                 (bitmap of N bits, block b = bit 7 - b % 8 of byte b / 8)
//! ```
//!
//! Kept pairs go stale: one not touched for `KEEP_FOR`, and past the `KEEP_AT_MOST` most recently
//! touched, is removed when a session is joined. Only names of this form are ever removed, inside
//! `--out`, and never through a symlink.

use super::output::{Folder, OutputFile};
use crate::error::Error;
use data_encoding::HEXLOWER;
use edm_cast_proto::SessionInfo;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant, SystemTime};

/// The state file's first line: a later format gets another number, and is not read.
const VERSION_LINE: &str = "edm-cast partial 1";

/// A state file larger than this is not one of ours: the bitmap of the most blocks a file can have
/// (2^22, in hex) and a few lines.
const MAX_STATE: u64 = (1 << 20) + 4096;

/// A kept partial file not touched for this long is removed ...
const KEEP_FOR: Duration = Duration::from_secs(2 * 24 * 3600);

/// ... and so are those beyond the most recently touched few (each may be a large file).
const KEEP_AT_MOST: usize = 4;

/// The state is written at most this often while blocks arrive (and when the file is dropped):
/// a kill loses at most this much of the record, never a block's worth of wrong data.
const SAVE_EVERY: Duration = Duration::from_millis(200);

/// The record of a partial file kept across runs, owned by its `OutputFile`.
pub struct Partial {
    folder: Folder,
    /// `.edm-cast-<key>.resume`
    state: String,
    /// The `content ...` line.
    content: String,
    blocks: u32,
    have: Vec<u8>,
    dirty: bool,
    saved: Option<Instant>,
}

impl Partial {
    /// Records `block` as written and verified (or, `false`, as not to be trusted).
    pub fn set(&mut self, block: u32, verified: bool) {
        let Some(byte) = self.have.get_mut(block as usize / 8) else {
            return;
        };
        let bit = 0x80 >> (block % 8);
        let was = *byte & bit != 0;
        if was != verified {
            *byte ^= bit;
            self.dirty = true;
        }
    }

    /// Writes the state file if it changed, and (unless `now`) the last write is `SAVE_EVERY` old.
    /// A failure is not the transfer's: at worst a restart receives more again.
    pub fn save(&mut self, now: bool) {
        if !self.dirty || (!now && self.saved.is_some_and(|t| t.elapsed() < SAVE_EVERY)) {
            return;
        }
        let text = format!(
            "{VERSION_LINE}\n{}\nblocks {}\nhave {}\n",
            self.content,
            self.blocks,
            HEXLOWER.encode(&self.have)
        );
        match self.folder.write_small(&self.state, text.as_bytes()) {
            Ok(()) => {
                self.dirty = false;
                self.saved = Some(Instant::now());
            }
            Err(e) => tracing::debug!("cannot save {}: {e}", self.state),
        }
    }

    /// Removes the state file: the file is complete (or not to be resumed).
    pub fn remove(&self) {
        let _ = self.folder.remove(&self.state);
    }

    /// Blocks recorded as verified.
    fn kept(&self) -> Vec<u32> {
        (0..self.blocks)
            .filter(|b| self.have[*b as usize / 8] & (0x80 >> (b % 8)) != 0)
            .collect()
    }
}

/// The content line and file key of a session, if it can be resumed: its size and digests are
/// known (a download still arriving cannot be named by its content yet).
fn identity(info: &SessionInfo) -> Option<(String, String)> {
    let (size, digests) = (info.size?, info.digests?);
    let l = &info.layout;
    let content = format!(
        "content {size} {} {} {} {} {}",
        l.symbol_size(),
        l.block_symbols(),
        l.padded() as u8,
        HEXLOWER.encode(&digests.md5),
        HEXLOWER.encode(&digests.sha256)
    );
    Some((content, HEXLOWER.encode(&digests.sha256[..8])))
}

/// The output file for a session, kept across runs: the partial file an earlier run left for the
/// same content, with the blocks it recorded (to be checked), or a new one. `None` if the session
/// cannot be resumed (content not known yet) or another receiver is writing that partial file now.
pub fn open(
    folder: &Folder,
    name: &str,
    info: &SessionInfo,
) -> Result<Option<(OutputFile, Vec<u32>)>, Error> {
    let Some((content, key)) = identity(info) else {
        return Ok(None);
    };
    let (part, state) = (
        format!(".edm-cast-{key}.part"),
        format!(".edm-cast-{key}.resume"),
    );
    tidy(folder, &key);
    let err = |source| Error::Write {
        path: folder.path().join(&part),
        source,
    };
    let blocks = info.layout.num_blocks();
    let mut partial = Partial {
        folder: folder.clone(),
        state,
        content,
        blocks,
        have: vec![0; (blocks as usize).div_ceil(8)],
        dirty: true,
        saved: None,
    };
    let earlier = match folder.open_regular(&part) {
        Ok(file) if !lock(&file).map_err(err)? => return Ok(None),
        Ok(file) => read_state(folder, &partial).map(|have| (file, have)),
        Err(_) => None,
    };
    let (file, kept) = match earlier {
        Some((file, have)) => {
            partial.have = have;
            partial.dirty = false;
            let kept = partial.kept();
            (file, kept)
        }
        None => {
            // Whatever is there under this name is not a partial file we can use: start afresh.
            let _ = folder.remove(&part);
            let file = folder.create_named(&part).map_err(err)?;
            if !lock(&file).map_err(err)? {
                return Ok(None);
            }
            partial.save(true);
            (file, Vec::new())
        }
    };
    Ok(Some((
        folder.adopt(name, part, file, info.size, partial),
        kept,
    )))
}

/// The bitmap of the state file beside `partial`'s file, if there is one for the same content and
/// the same blocks.
fn read_state(folder: &Folder, partial: &Partial) -> Option<Vec<u8>> {
    let mut text = String::new();
    folder
        .open_regular(&partial.state)
        .ok()?
        .take(MAX_STATE)
        .read_to_string(&mut text)
        .ok()?;
    let mut lines = text.lines();
    if lines.next()? != VERSION_LINE || lines.next()? != partial.content {
        return None;
    }
    let blocks: u32 = lines.next()?.strip_prefix("blocks ")?.parse().ok()?;
    let have = HEXLOWER
        .decode(lines.next()?.strip_prefix("have ")?.as_bytes())
        .ok()?;
    (blocks == partial.blocks && have.len() == partial.have.len()).then_some(have)
}

/// Takes the partial file for this process; false if another receiver holds it.
fn lock(file: &File) -> io::Result<bool> {
    // SAFETY: flock(2) on a valid fd we own; the lock goes with the file's last close.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(true);
    }
    match io::Error::last_os_error() {
        e if e.raw_os_error() == Some(libc::EWOULDBLOCK) => Ok(false),
        e => Err(e),
    }
}

/// Removes stale kept pairs (not `keep`): untouched for `KEEP_FOR`, or beyond the
/// `KEEP_AT_MOST` most recently touched. A pair in use by another receiver is locked and left.
fn tidy(folder: &Folder, keep: &str) {
    let Ok(entries) = std::fs::read_dir(folder.path()) else {
        return;
    };
    let mut pairs: Vec<(SystemTime, String)> = entries
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            let key = name.strip_prefix(".edm-cast-")?.strip_suffix(".resume")?;
            let ours = key.len() == 16 && key.bytes().all(|c| c.is_ascii_hexdigit());
            if !ours || key == keep {
                return None;
            }
            let touched = folder.modified(&name)?;
            Some((touched, key.to_owned()))
        })
        .collect();
    pairs.sort_unstable_by(|a, b| b.cmp(a));
    let now = SystemTime::now();
    for (i, (touched, key)) in pairs.iter().enumerate() {
        let old = now.duration_since(*touched).unwrap_or_default() > KEEP_FOR;
        if !old && i + 1 < KEEP_AT_MOST {
            continue;
        }
        let part = format!(".edm-cast-{key}.part");
        if let Ok(file) = folder.open_regular(&part)
            && !lock(&file).unwrap_or(false)
        {
            continue;
        }
        let _ = folder.remove(&part);
        let _ = folder.remove(&format!(".edm-cast-{key}.resume"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::file::output::Rules;
    use edm_cast_proto::Layout;
    use edm_cast_proto::wire::FileDigests;
    use std::path::PathBuf;

    struct Dir(PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn dir(tag: &str) -> (Dir, Folder) {
        let p =
            std::env::temp_dir().join(format!("edm-resume-{tag}-{:x}", crate::rt::random_u64()));
        let folder = Folder::open(&p, Rules::default()).unwrap();
        (Dir(p), folder)
    }

    fn info(sha: u8) -> SessionInfo {
        SessionInfo {
            session: 7,
            name: "lesson.bin".into(),
            size: Some(100),
            digests: Some(FileDigests {
                md5: [1; 16],
                sha256: [sha; 32],
            }),
            block_bytes: 32,
            sender: "10.0.0.1:5000".parse().unwrap(),
            signed_by: None,
            encrypted: false,
            sync: false,
            layout: Layout::new(100, 16, 2).unwrap(),
        }
    }

    fn names(d: &Dir) -> Vec<String> {
        let mut n: Vec<String> = std::fs::read_dir(&d.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        n.sort();
        n
    }

    #[test]
    fn a_partial_file_and_its_record_outlive_the_run_for_the_same_content_only() {
        let (d, folder) = dir("same");
        let (mut out, kept) = open(&folder, "lesson.bin", &info(2)).unwrap().unwrap();
        assert!(kept.is_empty());
        out.handle().write_at(0, b"first block bytes").unwrap();
        let p = out.partial().unwrap();
        p.set(0, true);
        p.set(3, true);
        p.set(99, true);
        drop(out);
        let key = "0202020202020202";
        assert_eq!(
            names(&d),
            [
                format!(".edm-cast-{key}.part"),
                format!(".edm-cast-{key}.resume")
            ]
        );
        let text = std::fs::read_to_string(d.0.join(format!(".edm-cast-{key}.resume"))).unwrap();
        assert!(
            text.starts_with("edm-cast partial 1\ncontent 100 16 2 0 "),
            "{text}"
        );
        assert!(text.ends_with("blocks 4\nhave 90\n"), "{text}");
        // Started again for the same content: the record comes back (and the file with it).
        let (out, kept) = open(&folder, "lesson.bin", &info(2)).unwrap().unwrap();
        assert_eq!(kept, [0, 3]);
        assert_eq!(out.handle().read_at(0, 5).unwrap(), b"first");
        // While it is open, another receiver on the same folder does not take it.
        assert!(open(&folder, "lesson.bin", &info(2)).unwrap().is_none());
        drop(out);
        // Content of another SHA-256 but the same first 8 bytes, or a record edited to claim
        // more blocks: not trusted, started afresh.
        let mut other = info(2);
        other.digests.as_mut().unwrap().sha256[31] = 9;
        let (mut out, kept) = open(&folder, "lesson.bin", &other).unwrap().unwrap();
        assert!(kept.is_empty());
        assert_eq!(out.handle().read_at(0, 1).ok(), None, "a fresh, empty file");
        out.partial().unwrap().set(1, true);
        drop(out);
        let state = d.0.join(format!(".edm-cast-{key}.resume"));
        let edited = std::fs::read_to_string(&state)
            .unwrap()
            .replace("blocks 4", "blocks 400");
        std::fs::write(&state, edited).unwrap();
        assert!(
            open(&folder, "lesson.bin", &other)
                .unwrap()
                .unwrap()
                .1
                .is_empty()
        );
        // Once in place, nothing of it is left.
        let (out, _) = open(&folder, "lesson.bin", &other).unwrap().unwrap();
        assert_eq!(out.commit().unwrap(), d.0.join("lesson.bin"));
        assert_eq!(names(&d), ["lesson.bin"]);
    }

    #[test]
    fn planted_symlinks_are_replaced_never_followed() {
        let (d, folder) = dir("symlink");
        let victim = d.0.with_extension("victim");
        std::fs::write(&victim, b"precious").unwrap();
        let key = "0505050505050505";
        for ext in ["part", "resume", "resume.new"] {
            std::os::unix::fs::symlink(&victim, d.0.join(format!(".edm-cast-{key}.{ext}")))
                .unwrap();
        }
        let (mut out, kept) = open(&folder, "x", &info(5)).unwrap().unwrap();
        assert!(kept.is_empty());
        out.handle().write_at(0, b"new").unwrap();
        out.partial().unwrap().set(1, true);
        drop(out);
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        std::fs::remove_file(&victim).unwrap();
        for ext in ["part", "resume"] {
            let meta = std::fs::symlink_metadata(d.0.join(format!(".edm-cast-{key}.{ext}")));
            assert!(meta.unwrap().is_file(), "{ext}");
        }
    }

    #[test]
    fn stale_pairs_beyond_the_most_recent_few_are_removed() {
        let (d, folder) = dir("tidy");
        for sha in 10..16u8 {
            drop(open(&folder, "x", &info(sha)).unwrap().unwrap());
            // mtimes a little apart, oldest first.
            std::thread::sleep(Duration::from_millis(20));
        }
        let left: Vec<String> = names(&d)
            .into_iter()
            .filter(|n| n.ends_with(".resume"))
            .collect();
        // The last one opened and the 3 before it.
        let want: Vec<String> = (12..16u8)
            .map(|s| format!(".edm-cast-{}.resume", HEXLOWER.encode(&[s; 8])))
            .collect();
        assert_eq!(left, want);
        assert_eq!(names(&d).len(), 8, "each with its partial file");
    }
}
