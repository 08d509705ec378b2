//! The receiver's output folder and file. Everything about a session comes from the network, and
//! anyone on the LAN can run a sender, so `--out` is opened once and every name is resolved inside
//! that open folder: the file is written into a temporary file of our own naming (created
//! exclusively, never through a symlink), checked, then moved to its name without replacing what is
//! there (unless `--overwrite`). Nothing is ever written outside `--out`.

use super::digest::read_digests;
use super::resume::Partial;
use crate::error::Error;
use edm_cast_proto::wire::FileDigests;
use std::ffi::CString;
use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Copies of one name kept side by side (`name (1).ext` …) before giving up.
const MAX_COPIES: u32 = 9999;

/// Free space a session may not take: 1 GiB, or 5% of a disk smaller than 20 GiB.
const SPARE: u64 = 1 << 30;

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

/// `name (n).ext` for the n-th copy, as browsers name a second download of the same file.
fn numbered(name: &str, n: u32) -> String {
    if n == 0 {
        return name.to_owned();
    }
    // The extension starts at the last dot (not a leading one), or before `.tar` of `.tar.gz`.
    let mut split = name.rfind('.').filter(|&i| i > 0).unwrap_or(name.len());
    if let Some(tar) = name[..split]
        .rfind('.')
        .filter(|&i| i > 0 && name[i..split].eq_ignore_ascii_case(".tar"))
    {
        split = tar;
    }
    format!("{} ({n}){}", &name[..split], &name[split..])
}

/// What a session may do to the output folder: `--overwrite`, `--allow-hidden`, `--max-size`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rules {
    pub overwrite: bool,
    pub allow_hidden: bool,
    pub max_size: Option<u64>,
}

/// `--out`, opened once: swapping its path for a symlink later does not move where files go.
#[derive(Clone)]
pub struct Folder {
    path: PathBuf,
    fd: Arc<OwnedFd>,
    rules: Rules,
}

impl Folder {
    /// Creates the folder if missing and opens it. A folder this user cannot write to is reported
    /// now, not once a class is already sending.
    pub fn open(path: &Path, rules: Rules) -> Result<Folder, Error> {
        let err = |source| Error::OutFolder {
            path: path.to_owned(),
            source,
        };
        std::fs::create_dir_all(path).map_err(err)?;
        let dir = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY)
            .open(path)
            .map_err(err)?;
        let folder = Folder {
            path: path.to_owned(),
            fd: Arc::new(dir.into()),
            rules,
        };
        // Permission bits say nothing of a read-only mount or of root: try it.
        let (probe, _) = folder.create_temp().map_err(err)?;
        unlink_at(&folder.fd, &probe).map_err(err)?;
        Ok(folder)
    }

    pub fn rules(&self) -> Rules {
        self.rules
    }

    /// The name an announced name is kept under: a plain file name, and not hidden unless
    /// `--allow-hidden`: a sender could otherwise plant `.bashrc` or `.profile` in a home folder,
    /// unseen. Such a file is kept visible as `_bashrc`.
    pub fn name_for(&self, announced: &str, session: u32) -> String {
        let name = safe_name(announced, session);
        match name.strip_prefix('.') {
            Some(rest) if !self.rules.allow_hidden => format!("_{rest}"),
            _ => name,
        }
    }

    /// Refuses a session of `size` bytes that is larger than `--max-size` or than the free space
    /// (less a spare), before anything is written.
    pub fn admit(&self, name: &str, size: u64) -> Result<(), Error> {
        if let Some(max) = self.rules.max_size
            && size > max
        {
            return Err(Error::TooLarge {
                name: name.to_owned(),
                size: Some(size),
                max,
            });
        }
        let (free, spare) = self.free_space().map_err(|source| Error::OutFolder {
            path: self.path.clone(),
            source,
        })?;
        if size > free.saturating_sub(spare) {
            return Err(Error::NoRoom {
                name: name.to_owned(),
                size,
                path: self.path.clone(),
                free,
                spare,
            });
        }
        Ok(())
    }

    /// Bytes free for this user on the folder's disk, and the part of them kept spare.
    fn free_space(&self) -> io::Result<(u64, u64)> {
        let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
        // SAFETY: a valid fd and a buffer of the right type, which fstatvfs fills on success.
        check(unsafe { libc::fstatvfs(self.fd.as_raw_fd(), st.as_mut_ptr()) })?;
        // SAFETY: fstatvfs succeeded, so the buffer is filled.
        let st = unsafe { st.assume_init() };
        let unit = st.f_frsize;
        let disk = st.f_blocks.saturating_mul(unit);
        Ok((st.f_bavail.saturating_mul(unit), SPARE.min(disk / 20)))
    }

    /// The name of a file already there with this size and these digests: `name` itself or one of its
    /// numbered copies (up to the first free number), so that a file sent again is not kept twice.
    pub fn copy_of(&self, name: &str, size: u64, digests: FileDigests) -> Option<String> {
        (0..=MAX_COPIES)
            .map(|n| numbered(name, n))
            .take_while(|n| self.entry(n).is_some())
            .find(|n| {
                self.existing(n, size)
                    .is_some_and(|f| read_digests(f, |_| {}).is_ok_and(|d| d == digests))
            })
    }

    /// The regular file `name` if it is there with `size` bytes, opened for reading (never through
    /// a symlink, nor a FIFO that would block the open).
    fn existing(&self, name: &str, size: u64) -> Option<File> {
        let file = open_at(
            &self.fd,
            name,
            libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK,
        )
        .ok()?;
        let meta = file.metadata().ok()?;
        (meta.is_file() && meta.len() == size).then_some(file)
    }

    /// Whether `name` is a folder (not a symlink to one).
    pub fn has_folder(&self, name: &str) -> bool {
        self.entry(name).is_some_and(|m| m.is_dir())
    }

    /// The folder `name`, opened for reading, never through a symlink (`send --sync`).
    pub fn open_folder(&self, name: &str) -> io::Result<File> {
        open_dir_at(&self.fd, name)
    }

    /// Swaps what `a` and `b` are, at once (both must exist): a folder received with `send --sync`
    /// takes the place of the one it was synced from, which is then removed (`remove_folder`).
    pub fn exchange(&self, a: &str, b: &str) -> io::Result<()> {
        let (a, b) = (cstring(a)?, cstring(b)?);
        let fd = self.fd.as_raw_fd();
        // SAFETY: a valid fd and two NUL-terminated names.
        check(unsafe { libc::renameat2(fd, a.as_ptr(), fd, b.as_ptr(), libc::RENAME_EXCHANGE) })
    }

    /// Removes the folder `name` and what is in it (symlinks in it are removed, not followed).
    pub fn remove_folder(&self, name: &str) -> io::Result<()> {
        std::fs::remove_dir_all(self.path.join(name))
    }

    /// What is at `name` itself (a symlink is not followed), if anything.
    fn entry(&self, name: &str) -> Option<Metadata> {
        open_at(&self.fd, name, libc::O_PATH | libc::O_NOFOLLOW)
            .and_then(|f| f.metadata())
            .ok()
    }

    /// Where a file named `name` would land now, and whether something else is there under that
    /// name (kept, or replaced with `--overwrite`).
    pub fn planned(&self, name: &str) -> (PathBuf, bool) {
        let here = self.entry(name);
        let landing = if self.rules.overwrite && here.as_ref().is_some_and(|m| !m.is_dir()) {
            name.to_owned()
        } else {
            (0..=MAX_COPIES)
                .map(|n| numbered(name, n))
                .find(|n| self.entry(n).is_none())
                .unwrap_or_else(|| name.to_owned())
        };
        (self.path.join(landing), here.is_some())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Starts the file for `name`: an empty temporary file of our own naming inside the folder.
    pub fn create(&self, name: &str, size: Option<u64>) -> Result<OutputFile, Error> {
        let (temp, file) = self.create_temp().map_err(|source| Error::Write {
            path: self.path.clone(),
            source,
        })?;
        Ok(OutputFile {
            folder: self.clone(),
            name: name.to_owned(),
            temp,
            file: Arc::new(file),
            size,
            reserved: false,
            committed: false,
            partial: None,
        })
    }

    /// The output file for `name` in the partial file `temp` kept across runs (see `resume`).
    pub(super) fn adopt(
        &self,
        name: &str,
        temp: String,
        file: File,
        size: Option<u64>,
        partial: Partial,
    ) -> OutputFile {
        OutputFile {
            folder: self.clone(),
            name: name.to_owned(),
            temp,
            file: Arc::new(file),
            size,
            reserved: false,
            committed: false,
            partial: Some(partial),
        }
    }

    /// The regular file `name` of ours (never through a symlink, nor a FIFO), for reading and
    /// writing.
    pub(super) fn open_regular(&self, name: &str) -> io::Result<File> {
        let file = open_at(
            &self.fd,
            name,
            libc::O_RDWR | libc::O_NOFOLLOW | libc::O_NONBLOCK,
        )?;
        if !file.metadata()?.is_file() {
            return Err(io::ErrorKind::InvalidInput.into());
        }
        Ok(file)
    }

    /// A new file `name`, failing if anything is there.
    pub(super) fn create_named(&self, name: &str) -> io::Result<File> {
        create_at(&self.fd, name)
    }

    /// Removes `name` (a symlink itself, never what it points to).
    pub(super) fn remove(&self, name: &str) -> io::Result<()> {
        unlink_at(&self.fd, name)
    }

    /// When what is at `name` last changed.
    pub(super) fn modified(&self, name: &str) -> Option<std::time::SystemTime> {
        self.entry(name)?.modified().ok()
    }

    /// Replaces `name` with a small file holding `bytes`, at once (written beside it, then
    /// renamed over it).
    pub(super) fn write_small(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        let new = format!("{name}.new");
        let _ = unlink_at(&self.fd, &new);
        create_at(&self.fd, &new)?.write_all_at(bytes, 0)?;
        self.move_temp(&new, name, true)
    }

    /// A new file under a random name: O_EXCL never opens what is there (a file, or a symlink
    /// planted to redirect our writes), O_NOFOLLOW never follows a symlink.
    fn create_temp(&self) -> io::Result<(String, File)> {
        let mut tries = 0;
        loop {
            let name = format!(".edm-cast-{:016x}.part", crate::rt::random_u64());
            match create_at(&self.fd, &name) {
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && tries < 8 => tries += 1,
                r => return r.map(|f| (name, f)),
            }
        }
    }

    /// A new private folder under a random name (a tree is built in it, `tree`), and its fd.
    pub(super) fn temp_dir(&self) -> io::Result<(String, OwnedFd)> {
        let mut tries = 0;
        loop {
            let name = format!(".edm-cast-{:016x}.tree", crate::rt::random_u64());
            match mkdir_at(&self.fd, &name, 0o700) {
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && tries < 8 => tries += 1,
                r => {
                    return r
                        .and_then(|()| open_dir_at(&self.fd, &name))
                        .map(|d| (name, d.into()));
                }
            }
        }
    }

    /// Moves the folder `temp` to `name`, or the first free numbered copy of it: a folder that is
    /// there is never replaced, not even with `--overwrite` (it may hold other files).
    pub(super) fn commit_dir(&self, temp: &str, name: &str) -> Result<PathBuf, Error> {
        let mut n = 0;
        loop {
            let to = numbered(name, n);
            match self.move_temp(temp, &to, false) {
                Ok(()) => return Ok(self.path.join(to)),
                Err(e)
                    if matches!(e.raw_os_error(), Some(libc::EEXIST | libc::ENOTEMPTY))
                        && n < MAX_COPIES =>
                {
                    n += 1
                }
                Err(source) => {
                    return Err(Error::Write {
                        path: self.path.join(to),
                        source,
                    });
                }
            }
        }
    }

    /// Moves the temporary file `temp` to `name` inside the folder; replaces what is there only if
    /// `replace`.
    fn move_temp(&self, temp: &str, name: &str, replace: bool) -> io::Result<()> {
        let (from, to) = (cstring(temp)?, cstring(name)?);
        let dir = self.fd.as_raw_fd();
        if replace {
            // SAFETY: a valid fd and NUL-terminated names, relative to it.
            return check(unsafe { libc::renameat(dir, from.as_ptr(), dir, to.as_ptr()) });
        }
        // The raw system call: glibc's wrapper is 2.28+ only. The kernel checks and renames at
        // once, so a file that appeared meanwhile is never replaced.
        // SAFETY: a valid fd and NUL-terminated names, relative to it.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_renameat2,
                dir,
                from.as_ptr(),
                dir,
                to.as_ptr(),
                libc::RENAME_NOREPLACE,
            )
        };
        match check(rc as libc::c_int) {
            // No RENAME_NOREPLACE here (a kernel before 3.15, NFS): a hard link never replaces
            // its target either.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS)) => {
                // SAFETY: as above; flags 0: the temporary file is not a symlink.
                check(unsafe { libc::linkat(dir, from.as_ptr(), dir, to.as_ptr(), 0) })?;
                unlink_at(&self.fd, temp)
            }
            r => r,
        }
    }
}

pub struct OutputFile {
    folder: Folder,
    /// The name the file is meant to have.
    name: String,
    /// The temporary file's name in the folder.
    temp: String,
    file: Arc<File>,
    size: Option<u64>,
    reserved: bool,
    committed: bool,
    /// Kept across runs (`resume`): the record of its verified blocks. A file dropped unfinished
    /// stays, with its record, for a later run to resume.
    partial: Option<Partial>,
}

impl OutputFile {
    /// The record of its verified blocks, if it is kept across runs.
    pub fn partial(&mut self) -> Option<&mut Partial> {
        self.partial.as_mut()
    }

    /// Not to be resumed (the disk is full, the file is wrong, or it is here already): removed
    /// when dropped, with its record.
    pub fn discard(&mut self) {
        if let Some(p) = self.partial.take() {
            p.remove();
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn temp_path(&self) -> PathBuf {
        self.folder.path.join(&self.temp)
    }

    /// A handle for writes from worker threads.
    pub fn handle(&self) -> FileHandle {
        FileHandle {
            file: self.file.clone(),
            path: self.temp_path(),
        }
    }

    /// Allocates the announced size in one go where the filesystem can, so the file lies in few
    /// extents and a disk that fills up meanwhile is reported at once. Called once data flows,
    /// never at join: an announce alone must not take the disk. (The hook for "only once the
    /// session is trusted and progressing".)
    pub fn reserve(&mut self) -> Result<(), Error> {
        if self.reserved {
            return Ok(());
        }
        self.reserved = true;
        match self.size {
            Some(size) => reserve(&self.file, size).map_err(|source| Error::Write {
                path: self.temp_path(),
                source,
            }),
            None => Ok(()),
        }
    }

    /// Cuts the file to its final size.
    pub fn set_len(&self, size: u64) -> Result<(), Error> {
        self.file.set_len(size).map_err(|source| Error::Write {
            path: self.temp_path(),
            source,
        })
    }

    /// Moves the checked file to its name; where something else has that name it is kept and this
    /// file becomes `name (1).ext` (or the next free number), unless `--overwrite`.
    pub fn commit(mut self) -> Result<PathBuf, Error> {
        let overwrite = self.folder.rules.overwrite;
        let mut n = 0;
        loop {
            let name = numbered(&self.name, n);
            // rename(2) makes the whole file appear at once; no fsync: it would cost every PC a
            // full disk write of the file at the very end, for durability across a power cut only.
            match self
                .folder
                .move_temp(&self.temp, &name, overwrite && n == 0)
            {
                Ok(()) => {
                    self.committed = true;
                    self.discard();
                    return Ok(self.folder.path.join(name));
                }
                // Taken (or, with --overwrite, a folder of that name): the next number.
                Err(e)
                    if matches!(e.raw_os_error(), Some(libc::EEXIST | libc::EISDIR))
                        && n < MAX_COPIES =>
                {
                    n += 1
                }
                Err(source) => {
                    return Err(Error::Write {
                        path: self.folder.path.join(name),
                        source,
                    });
                }
            }
        }
    }
}

impl Drop for OutputFile {
    fn drop(&mut self) {
        if let Some(p) = &mut self.partial {
            p.save(true);
        } else if !self.committed {
            let _ = unlink_at(&self.folder.fd, &self.temp);
        }
    }
}

#[derive(Clone)]
pub struct FileHandle {
    file: Arc<File>,
    path: PathBuf,
}

impl FileHandle {
    /// The file as written so far, for reading (a tree stream is read back, `tree`).
    pub(super) fn file(&self) -> &File {
        &self.file
    }

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
fn reserve(file: &File, size: u64) -> io::Result<()> {
    if size == 0 {
        return Ok(());
    }
    // SAFETY: a valid fd; posix_fallocate reads no memory of ours.
    let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, size as libc::off_t) };
    match rc {
        0 => Ok(()),
        libc::EOPNOTSUPP | libc::EINVAL => file.set_len(size),
        e => Err(io::Error::from_raw_os_error(e)),
    }
}

fn cstring(name: &str) -> io::Result<CString> {
    CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn open_at(dir: &OwnedFd, name: &str, flags: libc::c_int) -> io::Result<File> {
    let name = cstring(name)?;
    // SAFETY: a valid fd and a NUL-terminated name; the mode is read only with O_CREAT.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            flags | libc::O_CLOEXEC,
            0o666 as libc::c_uint,
        )
    };
    check(fd)?;
    // SAFETY: openat returned a new fd that nothing else owns.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// Creates `name` in `dir`, failing if anything (a symlink included) is there.
fn create_at(dir: &OwnedFd, name: &str) -> io::Result<File> {
    open_at(
        dir,
        name,
        libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
    )
}

/// Creates the file `path` (relative to `dir`) with `mode` (less the umask), failing if anything
/// is there; a symlink is never followed at its end.
pub(super) fn create_at_mode(dir: &OwnedFd, path: &str, mode: u32) -> io::Result<File> {
    let name = cstring(path)?;
    // SAFETY: a valid fd and a NUL-terminated name; the mode is read with O_CREAT.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            mode as libc::c_uint,
        )
    };
    check(fd)?;
    // SAFETY: openat returned a new fd that nothing else owns.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// Creates the folder `path` (relative to `dir`), failing if anything is there.
pub(super) fn mkdir_at(dir: &OwnedFd, path: &str, mode: u32) -> io::Result<()> {
    let name = cstring(path)?;
    // SAFETY: a valid fd and a NUL-terminated name.
    check(unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), mode as libc::mode_t) })
}

/// Opens the folder `path` (relative to `dir`), never through a symlink at its end.
pub(super) fn open_dir_at(dir: &OwnedFd, path: &str) -> io::Result<File> {
    open_at(
        dir,
        path,
        libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
    )
}

/// Frees the disk blocks of `len` bytes at `offset` in `file`, which then reads as zeros there;
/// a file system that cannot is left as it is.
pub(super) fn punch_hole(file: &File, offset: u64, len: u64) {
    if len == 0 {
        return;
    }
    // SAFETY: a valid fd; fallocate reads no memory of ours.
    unsafe {
        libc::fallocate(
            file.as_raw_fd(),
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            offset as libc::off_t,
            len as libc::off_t,
        )
    };
}

/// Sets a file's modification time to `mtime` (seconds, nanoseconds).
pub(super) fn set_times(file: &File, mtime: (i64, u32)) -> io::Result<()> {
    let t = libc::timespec {
        tv_sec: mtime.0 as libc::time_t,
        tv_nsec: mtime.1 as libc::c_long,
    };
    // The access time is left as it is.
    let omit = libc::timespec {
        tv_sec: 0,
        tv_nsec: libc::UTIME_OMIT,
    };
    // SAFETY: a valid fd and two timespecs.
    check(unsafe { libc::futimens(file.as_raw_fd(), [omit, t].as_ptr()) })
}

fn unlink_at(dir: &OwnedFd, name: &str) -> io::Result<()> {
    let name = cstring(name)?;
    // SAFETY: a valid fd and a NUL-terminated name.
    check(unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), 0) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    struct Dir(PathBuf);
    impl Dir {
        fn new(tag: &str) -> Dir {
            let p = std::env::temp_dir()
                .join(format!("edm-output-{tag}-{:x}", crate::rt::random_u64()));
            std::fs::create_dir_all(&p).unwrap();
            Dir(p)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

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

    #[test]
    fn copies_are_numbered_before_the_extension() {
        assert_eq!(numbered("worksheet.pdf", 0), "worksheet.pdf");
        assert_eq!(numbered("worksheet.pdf", 1), "worksheet (1).pdf");
        assert_eq!(numbered("notes", 2), "notes (2)");
        assert_eq!(numbered("src.tar.gz", 1), "src (1).tar.gz");
        assert_eq!(numbered("v1.2.iso", 3), "v1.2 (3).iso");
        assert_eq!(numbered(".bashrc", 1), ".bashrc (1)");
    }

    #[test]
    fn hidden_names_are_made_visible_unless_allowed() {
        let d = Dir::new("hidden");
        let folder = Folder::open(&d.0, Rules::default()).unwrap();
        assert_eq!(folder.name_for("../.bashrc", 1), "_bashrc");
        assert_eq!(
            folder.name_for(".ssh/authorized_keys", 1),
            "authorized_keys"
        );
        assert_eq!(folder.name_for("a.txt", 1), "a.txt");
        let rules = Rules {
            allow_hidden: true,
            ..Rules::default()
        };
        let folder = Folder::open(&d.0, rules).unwrap();
        assert_eq!(folder.name_for(".bashrc", 1), ".bashrc");
    }

    /// The temporary file's name is random; whatever name it gets, a symlink planted there is
    /// neither followed nor opened.
    #[test]
    fn a_planted_symlink_is_never_opened_for_writing() {
        let d = Dir::new("symlink");
        let victim = d.0.join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        let out = d.0.join("out");
        let folder = Folder::open(&out, Rules::default()).unwrap();
        symlink(&victim, out.join("planted")).unwrap();
        symlink(d.0.join("dangling"), out.join("dangling")).unwrap();
        for name in ["planted", "dangling"] {
            let e = create_at(&folder.fd, name).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::AlreadyExists, "{name}");
        }
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert!(!d.0.join("dangling").exists());
        // Nor is one read as "the file already there".
        assert!(folder.existing("planted", 8).is_none());
    }

    #[test]
    fn a_file_in_the_way_is_kept_and_the_new_one_numbered() {
        let d = Dir::new("keep");
        let folder = Folder::open(&d.0, Rules::default()).unwrap();
        std::fs::write(d.0.join("w.pdf"), b"old").unwrap();
        std::fs::write(d.0.join("w (1).pdf"), b"older").unwrap();
        assert_eq!(folder.planned("w.pdf"), (d.0.join("w (2).pdf"), true));
        let f = folder.create("w.pdf", Some(3)).unwrap();
        f.handle().write_at(0, b"new").unwrap();
        assert_eq!(f.commit().unwrap(), d.0.join("w (2).pdf"));
        assert_eq!(std::fs::read(d.0.join("w.pdf")).unwrap(), b"old");
        assert_eq!(std::fs::read(d.0.join("w (2).pdf")).unwrap(), b"new");
        // Sent again, it is found among the copies, and only a regular file of that size counts.
        let digests = |b: &[u8]| {
            let mut h = edm_cast_proto::wire::FileHasher::default();
            h.update(b);
            h.finish()
        };
        assert_eq!(
            folder.copy_of("w.pdf", 3, digests(b"new")).as_deref(),
            Some("w (2).pdf")
        );
        assert_eq!(folder.copy_of("w.pdf", 3, digests(b"now")), None);
        symlink(d.0.join("w (2).pdf"), d.0.join("v.pdf")).unwrap();
        assert_eq!(folder.copy_of("v.pdf", 3, digests(b"new")), None);
        // With --overwrite it is replaced, but a folder of that name never is.
        let rules = Rules {
            overwrite: true,
            ..Rules::default()
        };
        let folder = Folder::open(&d.0, rules).unwrap();
        let f = folder.create("w.pdf", None).unwrap();
        f.handle().write_at(0, b"newer").unwrap();
        assert_eq!(f.commit().unwrap(), d.0.join("w.pdf"));
        assert_eq!(std::fs::read(d.0.join("w.pdf")).unwrap(), b"newer");
        std::fs::create_dir(d.0.join("dir.iso")).unwrap();
        assert_eq!(folder.planned("dir.iso"), (d.0.join("dir (1).iso"), true));
        let f = folder.create("dir.iso", None).unwrap();
        assert_eq!(f.commit().unwrap(), d.0.join("dir (1).iso"));
        assert!(d.0.join("dir.iso").is_dir());
        // No temporary file is left behind.
        let left: Vec<_> = std::fs::read_dir(&d.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".part"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn a_session_larger_than_max_size_or_the_disk_is_refused() {
        let d = Dir::new("admit");
        let rules = Rules {
            max_size: Some(1000),
            ..Rules::default()
        };
        let folder = Folder::open(&d.0, rules).unwrap();
        folder.admit("a", 1000).unwrap();
        assert!(matches!(
            folder.admit("a", 1001),
            Err(Error::TooLarge { .. })
        ));
        let folder = Folder::open(&d.0, Rules::default()).unwrap();
        let (_, spare) = folder.free_space().unwrap();
        assert!(spare <= SPARE);
        let e = folder.admit("huge.iso", 49 << 40).unwrap_err();
        assert!(e.to_string().contains("the disk is full"), "{e}");
    }
}
