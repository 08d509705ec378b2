//! `send --sync` on the receiving side (PROTOCOL.md 5.9): once the tree's manifest is in the
//! stream file, the files of the folder already here (an earlier session's) that the manifest
//! lists with the same size and SHA-256 are copied into the stream file where the stream holds
//! them, and the receiver is told which source symbols that fills (`Receiver::known`): it then
//! asks only for the rest. The folder received replaces the one it was synced from. Nothing here
//! follows a symlink, and every read is bounded by the manifest's sizes.

use super::output::{FileHandle, Folder};
use crate::error::Error;
use edm_cast_proto::file::tree::{Kind, Manifest};
use edm_cast_proto::{Layout, SymbolSet};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::FileExt;

/// What was found already here.
pub struct Found {
    /// Per block, the source symbols now in the stream file.
    pub known: Vec<(u32, SymbolSet)>,
    /// Files reused, of those in the manifest, and their bytes.
    pub files: usize,
    pub of: usize,
    pub bytes: u64,
}

/// Copies each file of the folder `old` in `folder` that the manifest lists with the same size
/// and SHA-256 into `stream` at its offset there. The stream's first `prefix` bytes (its header
/// and manifest) are already in it. Returns the source symbols whose bytes are then all there.
pub fn scan(
    folder: &Folder,
    old: &str,
    manifest: &Manifest,
    prefix: u64,
    layout: &Layout,
    stream: &FileHandle,
) -> Result<Found, Error> {
    let root = folder.open_folder(old).map_err(|source| Error::Read {
        path: folder.path().join(old),
        source,
    })?;
    let mut found = Found {
        known: Vec::new(),
        files: 0,
        of: 0,
        bytes: 0,
    };
    let mut ranges = vec![(0, prefix)];
    let mut offset = prefix;
    let mut buf = vec![0u8; 1 << 20];
    for e in &manifest.entries {
        if e.kind != Kind::File {
            continue;
        }
        found.of += 1;
        let at = offset;
        offset += e.size;
        if e.size == 0 {
            continue;
        }
        // A file that is missing, not a regular file, behind a symlink or of another size is
        // simply not reused.
        let Ok(file) = open_beneath(&root, &e.path) else {
            continue;
        };
        if !file
            .metadata()
            .is_ok_and(|m| m.is_file() && m.len() == e.size)
        {
            continue;
        }
        // Only bytes that match go into the stream: a block may be decoded and written there
        // already (it came whole for another PC), and must not be overwritten with other bytes.
        // A small file is hashed from memory, a large one read twice.
        let small = e.size <= buf.len() as u64;
        let mut hasher = Sha256::new();
        let read = each_chunk(&file, e.size, &mut buf, |chunk| hasher.update(chunk));
        if read != e.size || <[u8; 32]>::from(hasher.finalize()) != e.sha256 {
            continue;
        }
        if small {
            stream.write_at(at, &buf[..e.size as usize])?;
        } else {
            let mut done = 0;
            let mut failed = None;
            let copied = each_chunk(&file, e.size, &mut buf, |chunk| {
                if failed.is_none() {
                    failed = stream.write_at(at + done, chunk).err();
                    done += chunk.len() as u64;
                }
            });
            if let Some(e) = failed {
                return Err(e);
            }
            if copied != e.size {
                continue;
            }
        }
        ranges.push((at, at + e.size));
        found.files += 1;
        found.bytes += e.size;
    }
    found.known = known_symbols(&ranges, layout);
    Ok(found)
}

/// Reads at most `size` bytes of `file` from its start, a chunk of `buf` at a time (a file no
/// larger than `buf` stays whole in it), handing each to `f`; how many were read.
fn each_chunk(file: &File, size: u64, buf: &mut [u8], mut f: impl FnMut(&[u8])) -> u64 {
    let mut read = 0u64;
    while read < size {
        let want = (size - read).min(buf.len() as u64) as usize;
        let at = if size <= buf.len() as u64 {
            read as usize
        } else {
            0
        };
        match file.read_at(&mut buf[at..at + want], read) {
            Ok(0) => break,
            Ok(n) => {
                f(&buf[at..at + n]);
                read += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    read
}

/// The source symbols lying wholly within `ranges` (sorted by start) of the stream, per block; the
/// last symbol's zero padding counts as there.
fn known_symbols(ranges: &[(u64, u64)], layout: &Layout) -> Vec<(u32, SymbolSet)> {
    let size = layout.file_size().unwrap_or(0);
    let (t, k) = (layout.symbol_size() as u64, layout.block_symbols() as u64);
    // Consecutive files are one stretch: a symbol across their boundary is known too.
    let mut merged: Vec<(u64, u64)> = Vec::new();
    for &(a, z) in ranges.iter().filter(|(a, z)| a < z) {
        match merged.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(z),
            _ => merged.push((a, z)),
        }
    }
    let mut sets: BTreeMap<u32, SymbolSet> = BTreeMap::new();
    for (a, z) in merged {
        let end = if z >= size { z.div_ceil(t) } else { z / t };
        for g in a.div_ceil(t)..end {
            let block = (g / k) as u32;
            if block >= layout.num_blocks() {
                break;
            }
            sets.entry(block)
                .or_insert_with(|| SymbolSet::new(layout.symbols(block)))
                .insert((g % k) as u32);
        }
    }
    sets.into_iter().collect()
}

/// Opens the file at the relative `path` under `root`, one component at a time, never through a
/// symlink (a student may have planted one in the folder) nor blocking on a FIFO.
fn open_beneath(root: &File, path: &str) -> io::Result<File> {
    let parts: Vec<&str> = path.split('/').collect();
    let (last, dirs) = parts.split_last().ok_or(io::ErrorKind::InvalidInput)?;
    let mut dir: Option<File> = None;
    for d in dirs {
        let at = dir.as_ref().unwrap_or(root);
        dir = Some(open_at(at, d, libc::O_RDONLY | libc::O_DIRECTORY)?);
    }
    open_at(
        dir.as_ref().unwrap_or(root),
        last,
        libc::O_RDONLY | libc::O_NONBLOCK,
    )
}

fn open_at(dir: &File, name: &str, flags: libc::c_int) -> io::Result<File> {
    let name = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: a valid fd and a NUL-terminated name; no O_CREAT, so no mode is read.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            flags | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: openat returned a new fd that nothing else owns.
    Ok(unsafe { File::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Symbols wholly inside the known stretches, consecutive stretches joined, and the short
    /// last symbol known when the stretch reaches the end of the stream.
    #[test]
    fn known_symbols_are_those_wholly_inside_what_is_here() {
        // T = 16, K = 4: blocks of 64 bytes; 150 bytes: blocks 0, 1 (4 symbols), 2 (2 symbols).
        let layout = Layout::new(150, 16, 4).unwrap();
        let known = known_symbols(&[(0, 20), (20, 40), (70, 100), (120, 150)], &layout);
        let got: Vec<(u32, Vec<u32>)> = known
            .iter()
            .map(|(b, s)| {
                (
                    *b,
                    (0..4)
                        .filter(|&i| i < layout.symbols(*b) as u32 && s.contains(i))
                        .collect(),
                )
            })
            .collect();
        // [0, 40): symbols 0, 1; [70, 100): global 5 (80..96); [120, 150): global 8 (128..144)
        // and 9 (144..150, the padded last one).
        assert_eq!(got, [(0, vec![0, 1]), (1, vec![1]), (2, vec![0, 1])]);
    }
}
