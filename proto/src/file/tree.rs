//! A folder (or several files) sent as one session (`PROTOCOL.md` section 4a): the session's file is
//! a tree stream, a manifest (paths, sizes, modes, mtimes, per-file SHA-256) followed by the files'
//! bytes in manifest order, so the block and repair machinery is the same as for one file and the
//! fountain code covers the whole set. Everything here comes from the network: the manifest is
//! parsed and checked whole (limits, every path component, order, duplicates, sizes against the
//! stream's length) before the shell writes anything.

use std::collections::HashMap;

/// The stream's first bytes.
pub const MAGIC: [u8; 8] = *b"EDMTREE1";
/// Bytes before the entries: magic, entry count (u32), entries' length (u32).
pub const HEADER_LEN: usize = 16;
/// Entries in one manifest.
pub const MAX_ENTRIES: u32 = 100_000;
/// Bytes of all entries together.
pub const MAX_MANIFEST_LEN: u32 = 16 << 20;
/// Components in one path.
pub const MAX_DEPTH: usize = 32;
/// Bytes in one path.
pub const MAX_PATH: usize = 4096;
/// Bytes in one path component (most file systems' limit).
pub const MAX_COMPONENT: usize = 255;
/// Fixed bytes of an entry: kind, mode, mtime (s, ns), size, SHA-256, path length.
const ENTRY_FIXED: usize = 1 + 2 + 8 + 4 + 8 + 32 + 2;

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A folder (kind byte 0).
    Folder,
    /// A regular file (kind byte 1).
    File,
}

/// One folder or file of the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// A folder or a file.
    pub kind: Kind,
    /// Relative, `/`-separated; its folder is an earlier entry (or the tree's root).
    pub path: String,
    /// Permission bits only (0..=0o777): never setuid, setgid or sticky.
    pub mode: u16,
    /// Seconds and nanoseconds since the Unix epoch.
    pub mtime: (i64, u32),
    /// 0 for a folder.
    pub size: u64,
    /// SHA-256 of the file's bytes; zeros for a folder.
    pub sha256: [u8; 32],
}

/// Why a manifest is refused: said in one line, with the offending path escaped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TreeError {
    /// The stream does not start with `MAGIC`.
    #[error("not a tree stream (it does not start with {MAGIC:?})")]
    Magic,
    #[error("{0} entries, more than the {MAX_ENTRIES} allowed")]
    /// More entries than `MAX_ENTRIES`.
    TooMany(u32),
    #[error("a manifest of {0} bytes, more than the {MAX_MANIFEST_LEN} allowed")]
    /// Entries longer than `MAX_MANIFEST_LEN` bytes.
    TooLong(u32),
    #[error("the manifest is cut short or has bytes left over")]
    /// The entries do not fill their length exactly.
    Truncated,
    #[error("entry {path:?}: {why}")]
    /// One entry breaks a rule.
    Bad {
        /// The entry's path, as sent.
        path: String,
        /// The rule it breaks.
        why: &'static str,
    },
    #[error("the files add up to a stream of {want} bytes, but the stream has {got}")]
    /// The header, the entries and the files' sizes do not add up to the stream's length.
    Length {
        /// What the manifest adds up to.
        want: u64,
        /// The stream's length.
        got: u64,
    },
}

impl Entry {
    fn bad(&self, why: &'static str) -> TreeError {
        TreeError::Bad {
            path: self.path.clone(),
            why,
        }
    }
}

/// The manifest of a tree stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    /// In order: a folder before what is in it.
    pub entries: Vec<Entry>,
}

/// The entry count and the entries' length a stream's header gives, checked against the limits
/// before anything else of the stream is read.
pub fn parse_header(header: &[u8; HEADER_LEN]) -> Result<(u32, u32), TreeError> {
    if header[..8] != MAGIC {
        return Err(TreeError::Magic);
    }
    let count = u32::from_be_bytes(header[8..12].try_into().expect("4 bytes"));
    let len = u32::from_be_bytes(header[12..16].try_into().expect("4 bytes"));
    if count > MAX_ENTRIES {
        return Err(TreeError::TooMany(count));
    }
    if len > MAX_MANIFEST_LEN {
        return Err(TreeError::TooLong(len));
    }
    Ok((count, len))
}

impl Manifest {
    /// The header and the entries, as they start the stream (the files' bytes follow).
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::new();
        for e in &self.entries {
            body.push(match e.kind {
                Kind::Folder => 0,
                Kind::File => 1,
            });
            body.extend_from_slice(&e.mode.to_be_bytes());
            body.extend_from_slice(&e.mtime.0.to_be_bytes());
            body.extend_from_slice(&e.mtime.1.to_be_bytes());
            body.extend_from_slice(&e.size.to_be_bytes());
            body.extend_from_slice(&e.sha256);
            body.extend_from_slice(&(e.path.len() as u16).to_be_bytes());
            body.extend_from_slice(e.path.as_bytes());
        }
        let mut out = Vec::with_capacity(HEADER_LEN + body.len());
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&(self.entries.len() as u32).to_be_bytes());
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// Parses `count` entries from `body` (the `len` bytes after the header) and checks the whole
    /// manifest against a stream of `stream_len` bytes.
    pub fn parse(count: u32, body: &[u8], stream_len: u64) -> Result<Manifest, TreeError> {
        // Each entry takes at least its fixed part: a huge count in a short body fails here.
        if count as usize > body.len() / ENTRY_FIXED + 1 {
            return Err(TreeError::Truncated);
        }
        let mut entries = Vec::with_capacity(count as usize);
        let mut at = 0usize;
        let mut take = |n: usize| -> Result<&[u8], TreeError> {
            let s = body.get(at..at + n).ok_or(TreeError::Truncated)?;
            at += n;
            Ok(s)
        };
        for _ in 0..count {
            let fixed = take(ENTRY_FIXED)?;
            let kind = match fixed[0] {
                0 => Kind::Folder,
                1 => Kind::File,
                _ => {
                    return Err(TreeError::Bad {
                        path: String::new(),
                        why: "unknown kind",
                    });
                }
            };
            let mode = u16::from_be_bytes([fixed[1], fixed[2]]);
            let secs = i64::from_be_bytes(fixed[3..11].try_into().expect("8 bytes"));
            let nanos = u32::from_be_bytes(fixed[11..15].try_into().expect("4 bytes"));
            let size = u64::from_be_bytes(fixed[15..23].try_into().expect("8 bytes"));
            let sha256: [u8; 32] = fixed[23..55].try_into().expect("32 bytes");
            let path_len = u16::from_be_bytes([fixed[55], fixed[56]]) as usize;
            let raw = take(path_len)?;
            let path = String::from_utf8(raw.to_vec()).map_err(|_| TreeError::Bad {
                path: String::from_utf8_lossy(raw).into_owned(),
                why: "not valid UTF-8",
            })?;
            entries.push(Entry {
                kind,
                path,
                mode,
                mtime: (secs, nanos),
                size,
                sha256,
            });
        }
        if at != body.len() {
            return Err(TreeError::Truncated);
        }
        let manifest = Manifest { entries };
        manifest.check(HEADER_LEN as u64 + body.len() as u64, stream_len)?;
        Ok(manifest)
    }

    /// Every rule of section 4a: paths, order, duplicates, and the sizes against the stream.
    fn check(&self, manifest_len: u64, stream_len: u64) -> Result<(), TreeError> {
        let mut seen: HashMap<&str, Kind> = HashMap::with_capacity(self.entries.len());
        let mut want = manifest_len;
        for e in &self.entries {
            check_path(e)?;
            if e.mode > 0o777 {
                return Err(e.bad("mode has bits beyond 0o777 (setuid, setgid, sticky)"));
            }
            if e.mtime.1 >= 1_000_000_000 {
                return Err(e.bad("mtime nanoseconds out of range"));
            }
            if e.kind == Kind::Folder && (e.size != 0 || e.sha256 != [0; 32]) {
                return Err(e.bad("a folder with a size or a digest"));
            }
            if let Some((parent, _)) = e.path.rsplit_once('/') {
                match seen.get(parent) {
                    Some(Kind::Folder) => {}
                    Some(Kind::File) => return Err(e.bad("inside something that is a file")),
                    None => return Err(e.bad("its folder is not listed before it")),
                }
            }
            if seen.insert(&e.path, e.kind).is_some() {
                return Err(e.bad("listed twice"));
            }
            want = want.checked_add(e.size).ok_or_else(|| e.bad("too large"))?;
        }
        if want != stream_len {
            return Err(TreeError::Length {
                want,
                got: stream_len,
            });
        }
        Ok(())
    }

    /// Bytes of the whole stream: header, entries and the files.
    pub fn stream_len(&self) -> u64 {
        self.encode().len() as u64 + self.entries.iter().map(|e| e.size).sum::<u64>()
    }
}

/// The safe-name rules for every component: relative, no `.` or `..`, no empty component, no
/// NUL or control character, within the length and depth limits.
fn check_path(e: &Entry) -> Result<(), TreeError> {
    let p = &e.path;
    if p.len() > MAX_PATH {
        return Err(e.bad("path longer than 4096 bytes"));
    }
    if p.starts_with('/') {
        return Err(e.bad("an absolute path"));
    }
    let mut depth = 0;
    for c in p.split('/') {
        depth += 1;
        match c {
            "" => return Err(e.bad("an empty path component")),
            "." | ".." => return Err(e.bad("`.` or `..` in the path")),
            _ if c.len() > MAX_COMPONENT => {
                return Err(e.bad("a path component longer than 255 bytes"));
            }
            _ if c.chars().any(char::is_control) => {
                return Err(e.bad("a control character in the path"));
            }
            _ => {}
        }
    }
    if depth > MAX_DEPTH {
        return Err(e.bad("nested deeper than 32 folders"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(path: &str) -> Entry {
        Entry {
            kind: Kind::Folder,
            path: path.into(),
            mode: 0o755,
            mtime: (1_700_000_000, 5),
            size: 0,
            sha256: [0; 32],
        }
    }

    fn file(path: &str, size: u64) -> Entry {
        Entry {
            kind: Kind::File,
            path: path.into(),
            mode: 0o644,
            mtime: (1_700_000_000, 0),
            size,
            sha256: [7; 32],
        }
    }

    /// Encodes `m`, then parses it back as the receiver does.
    fn roundtrip(m: &Manifest) -> Result<Manifest, TreeError> {
        let bytes = m.encode();
        let (count, len) = parse_header(bytes[..HEADER_LEN].try_into().unwrap())?;
        assert_eq!(len as usize, bytes.len() - HEADER_LEN);
        Manifest::parse(count, &bytes[HEADER_LEN..], m.stream_len())
    }

    fn refused(entries: Vec<Entry>) -> String {
        roundtrip(&Manifest { entries }).unwrap_err().to_string()
    }

    #[test]
    fn a_manifest_round_trips() {
        let m = Manifest {
            entries: vec![
                folder("empty"),
                folder("d é x"),
                file("d é x/a b.txt", 10),
                file("top", 0),
            ],
        };
        assert_eq!(roundtrip(&m).unwrap(), m);
    }

    #[test]
    fn hostile_paths_are_refused() {
        assert_eq!(
            refused(vec![file("../evil", 1)]),
            "entry \"../evil\": `.` or `..` in the path"
        );
        assert_eq!(
            refused(vec![folder("a"), file("a/../../x", 1)]),
            "entry \"a/../../x\": `.` or `..` in the path"
        );
        assert_eq!(
            refused(vec![file("/etc/passwd", 1)]),
            "entry \"/etc/passwd\": an absolute path"
        );
        assert_eq!(
            refused(vec![file("a//b", 1)]),
            "entry \"a//b\": an empty path component"
        );
        assert_eq!(
            refused(vec![file("x\ny", 1)]),
            "entry \"x\\ny\": a control character in the path"
        );
        assert_eq!(
            refused(vec![file("a/b", 1)]),
            "entry \"a/b\": its folder is not listed before it"
        );
        assert_eq!(
            refused(vec![file("a", 1), file("a/b", 1)]),
            "entry \"a/b\": inside something that is a file"
        );
        assert_eq!(
            refused(vec![file("a", 1), folder("a")]),
            "entry \"a\": listed twice"
        );
        let mut suid = file("s", 1);
        suid.mode = 0o4755;
        assert_eq!(
            refused(vec![suid]),
            "entry \"s\": mode has bits beyond 0o777 (setuid, setgid, sticky)"
        );
        assert!(refused(vec![file(&"n".repeat(256), 1)]).ends_with("longer than 255 bytes"));
    }

    #[test]
    fn a_path_that_is_not_utf8_is_refused() {
        let mut bytes = Manifest {
            entries: vec![file("ab", 0)],
        }
        .encode();
        let n = bytes.len();
        bytes[n - 1] = 0xff;
        assert_eq!(
            Manifest::parse(1, &bytes[HEADER_LEN..], n as u64)
                .unwrap_err()
                .to_string(),
            "entry \"a\u{fffd}\": not valid UTF-8"
        );
    }

    #[test]
    fn deep_nesting_is_refused() {
        let mut entries = Vec::new();
        let mut path = String::from("d");
        for _ in 0..40 {
            entries.push(folder(&path));
            path.push_str("/d");
        }
        let refused = refused(entries);
        assert!(
            refused.ends_with("nested deeper than 32 folders"),
            "{refused}"
        );
    }

    #[test]
    fn a_million_entries_are_refused_from_the_header_alone() {
        let mut header = [0u8; HEADER_LEN];
        header[..8].copy_from_slice(&MAGIC);
        header[8..12].copy_from_slice(&1_000_000u32.to_be_bytes());
        assert_eq!(
            parse_header(&header).unwrap_err().to_string(),
            "1000000 entries, more than the 100000 allowed"
        );
        header[8..12].copy_from_slice(&10u32.to_be_bytes());
        header[12..16].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(parse_header(&header), Err(TreeError::TooLong(_))));
        header[0] = b'X';
        assert_eq!(parse_header(&header), Err(TreeError::Magic));
    }

    #[test]
    fn sizes_must_add_up_to_the_stream() {
        let m = Manifest {
            entries: vec![file("a", 5)],
        };
        let bytes = m.encode();
        let got = Manifest::parse(1, &bytes[HEADER_LEN..], m.stream_len() + 1);
        assert!(matches!(got, Err(TreeError::Length { .. })));
        // A count larger than the body can hold, and a body with bytes left over.
        assert_eq!(
            Manifest::parse(99_999, &bytes[HEADER_LEN..], 0),
            Err(TreeError::Truncated)
        );
        let mut long = bytes[HEADER_LEN..].to_vec();
        long.push(0);
        assert_eq!(Manifest::parse(1, &long, 0), Err(TreeError::Truncated));
    }
}
