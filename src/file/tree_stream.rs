//! A tree's stream (`PROTOCOL.md` 4a: its manifest, then its files' bytes) read where its files
//! lie, not copied first: a course folder of several GB needs no room in `$TMPDIR` (a tmpfs, so
//! memory, on many systems) and no time to be written there.
//!
//! Each file is opened for each read (a tree may hold 100,000 files: more than a process may keep
//! open), and after each read its size and modification time must be what they were when its
//! SHA-256 was computed for the manifest: as for one file (`source`), a file written to while it
//! is sent aborts the session before a block of its new bytes goes out.

use super::digest::read_digests;
use super::source::Stamp;
use crate::error::Error;
use edm_cast_proto::wire::FileDigests;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

/// The stream: the manifest's bytes, then each file's, in the manifest's order.
pub struct Stream {
    head: Vec<u8>,
    /// The files with bytes, in stream order (`at` increasing; empty files have no part).
    parts: Vec<Part>,
    len: u64,
}

/// One file's bytes in the stream.
pub struct Part {
    /// Where its bytes start in the stream.
    pub at: u64,
    pub path: PathBuf,
    /// What the file was when its SHA-256 was computed; its length is the part's.
    pub stamp: Stamp,
}

impl Stream {
    /// The stream of `head` (the encoded manifest) followed by `parts`, which must follow each
    /// other from `head.len()` on.
    pub fn new(head: Vec<u8>, parts: Vec<Part>) -> Stream {
        let mut len = head.len() as u64;
        for p in &parts {
            debug_assert_eq!(p.at, len, "parts follow each other");
            len += p.stamp.size();
        }
        Stream { head, parts, len }
    }

    /// Its length in bytes.
    pub fn size(&self) -> u64 {
        self.len
    }

    /// Fills `buf` with the stream's bytes from `offset`. Fails if a file cannot be read, is
    /// shorter than it was, or changed since its SHA-256 was computed.
    pub fn read_exact_at(&self, mut buf: &mut [u8], mut offset: u64) -> Result<(), Error> {
        if offset + buf.len() as u64 > self.len {
            return Err(Error::Other(format!(
                "a read of {} bytes at {offset} is past the tree's stream ({} bytes)",
                buf.len(),
                self.len
            )));
        }
        if offset < self.head.len() as u64 {
            let from = &self.head[offset as usize..];
            let n = from.len().min(buf.len());
            buf[..n].copy_from_slice(&from[..n]);
            (buf, offset) = (&mut buf[n..], offset + n as u64);
        }
        // The first part that ends after `offset`.
        let mut i = self
            .parts
            .partition_point(|p| p.at + p.stamp.size() <= offset);
        while !buf.is_empty() {
            let part = &self.parts[i];
            let within = offset - part.at;
            let n = (part.stamp.size() - within).min(buf.len() as u64) as usize;
            part.read_exact_at(&mut buf[..n], within)?;
            (buf, offset, i) = (&mut buf[n..], offset + n as u64, i + 1);
        }
        Ok(())
    }

    /// The whole stream's MD5 and SHA-256 (`progress`: bytes read so far).
    pub fn digests(&self, progress: impl FnMut(u64)) -> Result<FileDigests, Error> {
        let mut reader = Reader {
            stream: self,
            at: 0,
            failed: None,
        };
        read_digests(&mut reader, progress)
            .map_err(|e| (reader.failed.take()).unwrap_or_else(|| Error::Other(e.to_string())))
    }
}

impl Part {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> Result<(), Error> {
        let read = |source| Error::Read {
            path: self.path.clone(),
            source,
        };
        let file = File::open(&self.path).map_err(read)?;
        file.read_exact_at(buf, offset).map_err(read)?;
        self.stamp.check(&file, &self.path, "SHA-256")
    }
}

/// Reads the stream from its start, a megabyte at most at a time; keeps the error that stopped it.
struct Reader<'a> {
    stream: &'a Stream,
    at: u64,
    failed: Option<Error>,
}

impl Read for Reader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (self.stream.len - self.at).min(buf.len().min(1 << 20) as u64) as usize;
        if let Err(e) = self.stream.read_exact_at(&mut buf[..n], self.at) {
            let said = io::Error::other(e.to_string());
            self.failed = Some(e);
            return Err(said);
        }
        self.at += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use md5::Digest;

    /// Three files, one empty (no part), read across every boundary.
    #[test]
    fn reads_cross_the_manifest_and_the_files_and_see_a_changed_file() {
        let dir = std::env::temp_dir().join(format!("edm-stream-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let head = b"HEAD".to_vec();
        let contents: [&[u8]; 3] = [b"abc", b"", b"defgh"];
        let mut parts = Vec::new();
        let mut at = head.len() as u64;
        for (i, c) in contents.iter().enumerate() {
            let path = dir.join(format!("f{i}"));
            std::fs::write(&path, c).unwrap();
            if !c.is_empty() {
                let stamp = Stamp::of(&std::fs::metadata(&path).unwrap());
                parts.push(Part { at, path, stamp });
                at += c.len() as u64;
            }
        }
        let stream = Stream::new(head, parts);
        let whole = b"HEADabcdefgh";
        assert_eq!(stream.size(), whole.len() as u64);
        for from in 0..whole.len() {
            for to in from..=whole.len() {
                let mut buf = vec![0; to - from];
                stream.read_exact_at(&mut buf, from as u64).unwrap();
                assert_eq!(buf, &whole[from..to], "{from}..{to}");
            }
        }
        let (md5, sha256) = (md5::Md5::digest(whole), sha2::Sha256::digest(whole));
        let d = stream.digests(|_| {}).unwrap();
        assert_eq!((d.md5, d.sha256), (md5.into(), sha256.into()));
        assert!(stream.read_exact_at(&mut [0; 2], 11).is_err());
        // Same size, another modification time: refused, in the file's bytes only.
        let f2 = dir.join("f2");
        let t = std::fs::metadata(&f2).unwrap().modified().unwrap();
        let f = std::fs::File::options().write(true).open(&f2).unwrap();
        f.set_modified(t + std::time::Duration::from_secs(1))
            .unwrap();
        drop(f);
        let err = stream.read_exact_at(&mut [0; 3], 8).unwrap_err();
        assert!(
            err.to_string().contains("changed while it was sent"),
            "{err}"
        );
        stream.read_exact_at(&mut [0; 7], 0).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
