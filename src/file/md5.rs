//! MD5, the check `md5sum` gives the class: of a whole file (the sender's, before it sends), and the
//! receiver's, computed while the file arrives: blocks are hashed in file order as soon as
//! the ones before them are written, so at the end only the last few remain and the class is not
//! kept waiting for a full re-read of the file. While the size is unknown, the highest block so far
//! may be the padded last one: it waits until a later block shows it is not, or the size is known.

use super::output::FileHandle;
use crate::error::Error;
use md5::{Digest, Md5};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::sync::mpsc;
use std::thread::JoinHandle;

enum Msg {
    Written { block: u32, offset: u64, len: usize },
    Finish { size: u64 },
}

/// Tells the hashing thread which blocks are on disk.
#[derive(Clone)]
pub struct WrittenBlocks(mpsc::Sender<Msg>);

impl WrittenBlocks {
    pub fn written(&self, block: u32, offset: u64, len: usize) {
        let _ = self.0.send(Msg::Written { block, offset, len });
    }
}

pub struct RunningMd5 {
    tx: mpsc::Sender<Msg>,
    thread: Option<JoinHandle<Result<[u8; 16], Error>>>,
}

impl RunningMd5 {
    /// `exact`: the file's size is known, so every block's length is final.
    pub fn start(file: FileHandle, exact: bool) -> Self {
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            let mut md5 = Md5::new();
            let mut next = 0u32;
            let mut ready = BTreeMap::new();
            for msg in rx {
                match msg {
                    Msg::Written { block, offset, len } => {
                        ready.insert(block, (offset, len));
                        while ready.contains_key(&next)
                            && (exact || ready.contains_key(&(next + 1)))
                        {
                            let (offset, len) = ready.remove(&next).expect("checked");
                            md5.update(file.read_at(offset, len)?);
                            next += 1;
                        }
                    }
                    Msg::Finish { size } => {
                        while let Some((offset, len)) = ready.remove(&next) {
                            let len = (len as u64).min(size.saturating_sub(offset)) as usize;
                            md5.update(file.read_at(offset, len)?);
                            next += 1;
                        }
                        break;
                    }
                }
            }
            Ok(md5.finalize().into())
        });
        RunningMd5 {
            tx,
            thread: Some(thread),
        }
    }

    pub fn written(&self) -> WrittenBlocks {
        WrittenBlocks(self.tx.clone())
    }

    /// The digest of the file's `size` bytes, once every block has been reported written.
    pub fn finish(mut self, size: u64) -> Result<[u8; 16], Error> {
        let _ = self.tx.send(Msg::Finish { size });
        self.thread
            .take()
            .expect("finished once")
            .join()
            .unwrap_or_else(|_| Err(Error::Protocol("the MD5 thread failed".into())))
    }
}

/// MD5 of the file at `path`, calling `progress` with the bytes read so far.
pub fn md5_file(path: &Path, progress: impl FnMut(u64)) -> io::Result<[u8; 16]> {
    md5_read(File::open(path)?, progress)
}

/// MD5 of what `file` holds from where it stands.
pub fn md5_read(mut file: impl Read, mut progress: impl FnMut(u64)) -> io::Result<[u8; 16]> {
    let mut hasher = Md5::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        total += n as u64;
        progress(total);
    }
    Ok(hasher.finalize().into())
}

/// An MD5 as 32 lowercase hex digits, as `md5sum` prints it.
pub fn hex(md5: &[u8; 16]) -> String {
    format!("{:032x}", u128::from_be_bytes(*md5))
}
