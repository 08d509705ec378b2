//! The whole file's digests, MD5 and SHA-256, the checks `md5sum` and `sha256sum` give the class:
//! of a whole file (the sender's, before it sends), of a download as it streams in, and, with
//! `recv --verify-file`, the receiver's, computed while the file arrives: blocks are hashed in file
//! order as soon as the ones before them are written, so at the end only the last few remain and
//! the class is not kept waiting for a full re-read of the file. While the size is unknown, the
//! highest block so far may be the padded last one: it waits until a later block shows it is not,
//! or the size is known. Without `--verify-file` the same thread only follows the verified prefix
//! (a tree's unpacking frees what lies before it): every block matched its digest already
//! (PROTOCOL.md 9), so the file's MD5 and SHA-256 are the announced ones, not computed again.

use super::output::FileHandle;
use crate::error::Error;
use edm_cast_proto::wire::{FileDigests, FileHasher};
use std::collections::BTreeMap;
use std::io::{self, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;

enum Msg {
    Written {
        block: u32,
        offset: u64,
        len: usize,
        bytes: Option<Vec<u8>>,
    },
    Finish {
        size: u64,
    },
}

/// Tells the hashing thread which blocks are on disk.
#[derive(Clone)]
pub struct WrittenBlocks {
    tx: mpsc::Sender<Msg>,
    /// The thread hashes: it may take a block's bytes.
    hashing: bool,
}

impl WrittenBlocks {
    /// `block`'s `len` bytes are in the file at `offset`; `bytes`, when given, are those bytes
    /// (the decoder's buffer, moved): the next block in file order is hashed from them instead of
    /// being read back from the file. Handed back when the thread does not hash them.
    pub fn written(
        &self,
        block: u32,
        offset: u64,
        len: usize,
        bytes: Option<Vec<u8>>,
    ) -> Option<Vec<u8>> {
        let (bytes, back) = match self.hashing {
            true => (bytes, None),
            false => (None, bytes),
        };
        let _ = self.tx.send(Msg::Written {
            block,
            offset,
            len,
            bytes,
        });
        back
    }
}

/// The receiver's digests, computed on a thread of their own as blocks reach the disk (with
/// `hash`; without, only the prefix written is followed).
pub struct RunningDigests {
    tx: mpsc::Sender<Msg>,
    hashing: bool,
    thread: Option<JoinHandle<Result<Option<FileDigests>, Error>>>,
    /// The file's first bytes hashed (or, not hashing, passed) so far: not read again, so a
    /// tree's unpacking may punch them out of the stream once copied (`tree::Feed`).
    hashed: Arc<AtomicU64>,
}

impl RunningDigests {
    /// `exact`: the file's size is known, so every block's length is final. `hash`: compute the
    /// MD5 and SHA-256 (`--verify-file`).
    pub fn start(file: FileHandle, exact: bool, hash: bool) -> Self {
        let (tx, rx) = mpsc::channel();
        let hashed = Arc::new(AtomicU64::new(0));
        let done = hashed.clone();
        let thread = std::thread::spawn(move || {
            let mut hasher = hash.then(FileHasher::default);
            let mut next = 0u32;
            let mut ready = BTreeMap::new();
            for msg in rx {
                match msg {
                    Msg::Written {
                        block,
                        offset,
                        len,
                        bytes,
                    } => {
                        // Only the blocks hashed now or at the next message keep their bytes:
                        // blocks that came early are read back in their turn, so they never
                        // pile up in memory.
                        let bytes = bytes.filter(|b| block <= next + 1 && b.len() >= len);
                        ready.insert(block, (offset, len, bytes));
                        while ready.contains_key(&next)
                            && (exact || ready.contains_key(&(next + 1)))
                        {
                            let (offset, len, bytes) = ready.remove(&next).expect("checked");
                            if let Some(hasher) = &mut hasher {
                                add(hasher, &file, offset, len, bytes)?;
                            }
                            done.store(offset + len as u64, Ordering::Release);
                            next += 1;
                        }
                    }
                    Msg::Finish { size } => {
                        while let Some((offset, len, bytes)) = ready.remove(&next) {
                            let len = (len as u64).min(size.saturating_sub(offset)) as usize;
                            if let Some(hasher) = &mut hasher {
                                add(hasher, &file, offset, len, bytes)?;
                            }
                            next += 1;
                        }
                        break;
                    }
                }
            }
            Ok(hasher.map(FileHasher::finish))
        });
        RunningDigests {
            tx,
            hashing: hash,
            thread: Some(thread),
            hashed,
        }
    }

    /// How many of the file's first bytes are hashed (or passed), as it goes.
    pub fn hashed(&self) -> Arc<AtomicU64> {
        self.hashed.clone()
    }

    pub fn written(&self) -> WrittenBlocks {
        WrittenBlocks {
            tx: self.tx.clone(),
            hashing: self.hashing,
        }
    }

    /// The digests of the file's `size` bytes, once every block has been reported written
    /// (None when not hashing).
    pub fn finish(mut self, size: u64) -> Result<Option<FileDigests>, Error> {
        let _ = self.tx.send(Msg::Finish { size });
        self.thread
            .take()
            .expect("finished once")
            .join()
            .unwrap_or_else(|_| Err(Error::Protocol("the MD5 thread failed".into())))
    }
}

/// Adds a block's first `len` bytes: from `bytes` if the writer handed them over, else read back.
fn add(
    hasher: &mut FileHasher,
    file: &FileHandle,
    offset: u64,
    len: usize,
    bytes: Option<Vec<u8>>,
) -> Result<(), Error> {
    match bytes {
        Some(b) => hasher.update(&b[..len]),
        None => hasher.update(&file.read_at(offset, len)?),
    }
    Ok(())
}

/// Chunks read ahead of the SHA-256 thread at most (1 MiB each).
const AHEAD: usize = 4;

/// The digests of what `file` holds from where it stands: MD5 on this thread as it reads, SHA-256
/// on another. The sender computes them before its session starts, so the teacher waits for
/// them: on this VM MD5 runs at ~520 MB/s and SHA-256 (SHA-NI) at ~1.6 GB/s, 2.6 s per GB one
/// after the other, the time of MD5 alone side by side.
pub fn read_digests(mut file: impl Read, mut progress: impl FnMut(u64)) -> io::Result<FileDigests> {
    use md5::Digest;
    let (full_tx, full_rx) = mpsc::sync_channel::<Vec<u8>>(AHEAD);
    // Buffers come back once hashed: a fresh 1 MiB allocation per chunk is a fresh mmap, whose
    // page faults cost more than the SHA-256 thread saves.
    let (empty_tx, empty_rx) = mpsc::channel::<Vec<u8>>();
    for _ in 0..AHEAD + 2 {
        empty_tx
            .send(vec![0u8; 1 << 20])
            .expect("receiver held here");
    }
    std::thread::scope(|scope| {
        let sha256 = scope.spawn(move || {
            let mut h = sha2::Sha256::new();
            for chunk in full_rx {
                h.update(&chunk);
                // Gone only once this side stops reading, when nothing more is needed.
                let _ = empty_tx.send(chunk);
            }
            h.finalize()
        });
        let mut md5 = md5::Md5::new();
        let mut total = 0u64;
        let failed = || io::Error::other("the SHA-256 thread failed");
        let mut spare = None;
        let read = loop {
            let Some(mut buf) = spare.take().or_else(|| empty_rx.recv().ok()) else {
                break Err(failed());
            };
            buf.resize(1 << 20, 0);
            let n = match file.read(&mut buf) {
                Ok(0) => break Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                    spare = Some(buf);
                    continue;
                }
                Err(e) => break Err(e),
            };
            buf.truncate(n);
            md5.update(&buf);
            if full_tx.send(buf).is_err() {
                break Err(failed());
            }
            total += n as u64;
            progress(total);
        };
        drop(full_tx);
        let sha256 = sha256.join().map_err(|_| failed())?;
        read.map(|()| FileDigests {
            md5: md5.finalize().into(),
            sha256: sha256.into(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The two threads' digests are those of the bytes in order, across many chunks and a short
    /// last one, as one `FileHasher` gives them.
    #[test]
    fn read_digests_match_one_hasher_over_the_same_bytes() {
        let bytes: Vec<u8> = (0..(5u32 << 20) + 12_345)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let mut one = FileHasher::default();
        one.update(&bytes);
        let mut seen = 0;
        let got = read_digests(&bytes[..], |n| seen = n).unwrap();
        assert_eq!(got, one.finish());
        assert_eq!(seen, bytes.len() as u64);
        let empty = read_digests(&[][..], |_| {}).unwrap();
        assert_eq!(empty, FileHasher::default().finish());
    }
}
