//! MD5 of a whole file, the check `md5sum` gives the class.

use md5::{Digest, Md5};
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

/// MD5 of the file at `path`, calling `progress` with the bytes read so far.
pub fn md5_file(path: &Path, mut progress: impl FnMut(u64)) -> io::Result<[u8; 16]> {
    let mut file = File::open(path)?;
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

pub fn hex(md5: &[u8; 16]) -> String {
    md5.iter().map(|b| format!("{b:02x}")).collect()
}
