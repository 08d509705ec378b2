//! The receiver's output file: written at block offsets into a temporary file inside `--out`,
//! checked, then renamed atomically to the announced name. Nothing is ever written outside `--out`.

use crate::error::Error;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Reduces an announced name to a plain file name: the last component of any path (either slash),
/// no control characters, never empty, `.` or `..`, at most 200 bytes.
pub fn safe_name(announced: &str, session: u32) -> String {
    let last = announced
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_control())
        .collect::<String>();
    let mut name = last.trim().to_owned();
    while name.len() > 200 {
        name.pop();
    }
    if name.is_empty() || name == "." || name == ".." {
        format!("edm-cast-{session:08x}.bin")
    } else {
        name
    }
}

pub struct OutputFile {
    pub final_path: PathBuf,
    temp_path: PathBuf,
    file: Arc<File>,
    committed: bool,
}

impl OutputFile {
    /// Creates the temporary file and reserves `size` bytes (if known), so a full disk is
    /// reported now.
    pub fn create(dir: &Path, name: &str, session: u32, size: Option<u64>) -> Result<Self, Error> {
        let final_path = dir.join(name);
        let temp_path = dir.join(format!(".{name}.{session:08x}.part"));
        let write_err = |source| Error::Write {
            path: temp_path.clone(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&temp_path)
            .map_err(write_err)?;
        let out = OutputFile {
            final_path,
            temp_path: temp_path.clone(),
            file: Arc::new(file),
            committed: false,
        };
        if let Some(size) = size {
            reserve(&out.file, size).map_err(write_err)?;
        }
        Ok(out)
    }

    /// A handle for writes from worker threads.
    pub fn handle(&self) -> FileHandle {
        FileHandle {
            file: self.file.clone(),
            path: self.temp_path.clone(),
        }
    }

    /// Cuts the file to its final size.
    pub fn set_len(&self, size: u64) -> Result<(), Error> {
        self.file.set_len(size).map_err(|source| Error::Write {
            path: self.temp_path.clone(),
            source,
        })
    }

    /// Moves the checked file to its name (replacing an older file of that name).
    pub fn commit(mut self) -> Result<PathBuf, Error> {
        let err = |source| Error::Write {
            path: self.final_path.clone(),
            source,
        };
        // rename(2) makes the whole file appear at once; no fsync: it would cost every PC a full
        // disk write of the file at the very end, for durability across a power cut only.
        std::fs::rename(&self.temp_path, &self.final_path).map_err(err)?;
        self.committed = true;
        Ok(self.final_path.clone())
    }
}

impl Drop for OutputFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.temp_path);
        }
    }
}

#[derive(Clone)]
pub struct FileHandle {
    file: Arc<File>,
    path: PathBuf,
}

impl FileHandle {
    pub fn write_at(&self, offset: u64, data: &[u8]) -> Result<(), Error> {
        self.file
            .write_all_at(data, offset)
            .map_err(|source| Error::Write {
                path: self.path.clone(),
                source,
            })
    }

    pub fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>, Error> {
        let mut buf = vec![0; len];
        self.file
            .read_exact_at(&mut buf, offset)
            .map_err(|source| Error::Read {
                path: self.path.clone(),
                source,
            })?;
        Ok(buf)
    }
}

/// Allocates the file's blocks up front where the filesystem can; elsewhere just sets the length.
fn reserve(file: &File, size: u64) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    if size == 0 {
        return Ok(());
    }
    // SAFETY: a valid fd; posix_fallocate reads no memory of ours.
    let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, size as libc::off_t) };
    match rc {
        0 => Ok(()),
        libc::EOPNOTSUPP | libc::EINVAL => file.set_len(size),
        e => Err(std::io::Error::from_raw_os_error(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announced_names_are_reduced_to_plain_file_names() {
        let s = 0xAB;
        assert_eq!(safe_name("ubuntu.iso", s), "ubuntu.iso");
        assert_eq!(safe_name("../../etc/passwd", s), "passwd");
        assert_eq!(safe_name("/etc/shadow", s), "shadow");
        assert_eq!(safe_name("C:\\Windows\\evil.dll", s), "evil.dll");
        assert_eq!(safe_name("..", s), "edm-cast-000000ab.bin");
        assert_eq!(safe_name("dir/..", s), "edm-cast-000000ab.bin");
        assert_eq!(safe_name("", s), "edm-cast-000000ab.bin");
        assert_eq!(safe_name("a/", s), "edm-cast-000000ab.bin");
        assert_eq!(safe_name("bad\nname\u{7}.txt", s), "badname.txt");
        assert!(safe_name(&"é".repeat(300), s).len() <= 200);
    }
}
