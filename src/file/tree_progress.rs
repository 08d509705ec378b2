//! How many files of a tree a receiver has, for its progress line: blocks cover byte ranges of the
//! tree stream, and a file is done once every block it overlaps is decoded (an empty file once the
//! manifest is known). The manifest itself is read from the blocks that hold it, as soon as they
//! are all in: until then the count is not known.

use edm_cast_proto::file::tree::{self, HEADER_LEN, Kind, Manifest};

/// A receiver's tree session, block by block: which blocks are in, whether the manifest is, and
/// then the files done.
#[derive(Debug)]
pub struct TreeProgress {
    have: Vec<bool>,
    /// Blocks 0..prefix are all in.
    prefix: u32,
    block_bytes: u64,
    manifest: Stage,
}

#[derive(Debug)]
enum Stage {
    /// Waiting for the blocks that hold the header ...
    Header,
    /// ... then for those of the entries (`count` of them in `len` bytes) ...
    Entries {
        count: u32,
        len: u32,
    },
    /// ... which the shell reads and parses ...
    Reading,
    Known(FilesDone),
    /// A header or manifest that does not parse: no count (the unpacking refuses it anyway).
    Broken,
}

impl TreeProgress {
    /// For a tree stream of `blocks` blocks of `block_bytes`.
    pub fn new(blocks: u32, block_bytes: u64) -> Self {
        TreeProgress {
            have: vec![false; blocks as usize],
            prefix: 0,
            block_bytes: block_bytes.max(1),
            manifest: Stage::Header,
        }
    }

    /// Block `block` is decoded (or a kept one checked). `header` reads the stream's first
    /// `HEADER_LEN` bytes, once they are in. Returns the entry count and length once the
    /// manifest's blocks are all in: the shell reads them and calls `manifest` (once).
    pub fn block_done(
        &mut self,
        block: u32,
        header: impl FnOnce() -> Option<[u8; HEADER_LEN]>,
    ) -> Option<(u32, u32)> {
        let slot = self.have.get_mut(block as usize)?;
        if std::mem::replace(slot, true) {
            return None;
        }
        if let Stage::Known(files) = &mut self.manifest {
            files.block_done(block);
        }
        while self.have.get(self.prefix as usize) == Some(&true) {
            self.prefix += 1;
        }
        let prefix = u64::from(self.prefix) * self.block_bytes;
        if matches!(self.manifest, Stage::Header) && prefix >= HEADER_LEN as u64 {
            self.manifest = match header().map(|h| tree::parse_header(&h)) {
                Some(Ok((count, len))) => Stage::Entries { count, len },
                _ => Stage::Broken,
            };
        }
        match self.manifest {
            Stage::Entries { count, len } if prefix >= HEADER_LEN as u64 + u64::from(len) => {
                self.manifest = Stage::Reading;
                Some((count, len))
            }
            _ => None,
        }
    }

    /// The stream's first bytes whose blocks are all in (a whole number of blocks: the last
    /// one's padding counts; the caller caps it at the stream's size).
    pub fn prefix_bytes(&self) -> u64 {
        u64::from(self.prefix) * self.block_bytes
    }

    /// The manifest, read and parsed (None: it does not parse).
    pub fn manifest(&mut self, manifest: Option<Manifest>) {
        self.manifest = match manifest {
            Some(m) => {
                let have = &self.have;
                Stage::Known(FilesDone::new(&m, self.block_bytes, |b| {
                    have.get(b as usize) == Some(&true)
                }))
            }
            None => Stage::Broken,
        };
    }

    /// Files done and files in the tree, once the manifest is known.
    pub fn files(&self) -> Option<(usize, usize)> {
        match &self.manifest {
            Stage::Known(f) => Some((f.done(), f.total())),
            _ => None,
        }
    }
}

/// The files of a tree, and which of them are whole.
#[derive(Debug)]
pub struct FilesDone {
    /// The non-empty files' byte ranges in the stream (start, end), in stream order: they follow
    /// one another without overlapping.
    spans: Vec<(u64, u64)>,
    /// Blocks each of them still waits for.
    left: Vec<u32>,
    block_bytes: u64,
    total: usize,
    done: usize,
}

impl FilesDone {
    /// For `manifest`, cut in blocks of `block_bytes`, with the blocks `have` says are done.
    pub fn new(manifest: &Manifest, block_bytes: u64, have: impl Fn(u32) -> bool) -> Self {
        let block_bytes = block_bytes.max(1);
        let mut at = manifest.encode().len() as u64;
        debug_assert!(at >= HEADER_LEN as u64);
        let mut spans = Vec::new();
        let mut total = 0;
        for e in manifest.entries.iter().filter(|e| e.kind == Kind::File) {
            total += 1;
            if e.size > 0 {
                spans.push((at, at + e.size));
            }
            at += e.size;
        }
        let mut me = FilesDone {
            left: spans
                .iter()
                .map(|&(start, end)| ((end - 1) / block_bytes - start / block_bytes + 1) as u32)
                .collect(),
            spans,
            block_bytes,
            // Empty files are whole as soon as the manifest says they exist.
            done: 0,
            total,
        };
        me.done = total - me.spans.len();
        let blocks = me
            .spans
            .last()
            .map_or(0, |&(_, end)| (end - 1) / block_bytes + 1);
        for b in 0..blocks as u32 {
            if have(b) {
                me.block_done(b);
            }
        }
        me
    }

    /// Block `block` is decoded (each block is to be given once).
    pub fn block_done(&mut self, block: u32) {
        let (from, to) = (
            u64::from(block) * self.block_bytes,
            (u64::from(block) + 1) * self.block_bytes,
        );
        let first = self.spans.partition_point(|&(_, end)| end <= from);
        for i in first..self.spans.len() {
            if self.spans[i].0 >= to {
                break;
            }
            self.left[i] -= 1;
            if self.left[i] == 0 {
                self.done += 1;
            }
        }
    }

    /// Files whose bytes are all decoded.
    pub fn done(&self) -> usize {
        self.done
    }

    /// Files in the tree.
    pub fn total(&self) -> usize {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edm_cast_proto::file::tree::Entry;

    fn entry(kind: Kind, path: &str, size: u64) -> Entry {
        Entry {
            kind,
            path: path.into(),
            mode: 0o644,
            mtime: (0, 0),
            size,
            sha256: [0; 32],
        }
    }

    #[test]
    fn a_file_is_done_once_every_block_it_overlaps_is() {
        let manifest = Manifest {
            entries: vec![
                entry(Kind::File, "a", 10),
                entry(Kind::Folder, "d", 0),
                entry(Kind::File, "d/empty", 0),
                entry(Kind::File, "d/big", 250),
                entry(Kind::File, "d/c", 5),
            ],
        };
        let head = manifest.encode().len() as u64;
        // Blocks of 100 bytes: a in block head/100; big over the next three or so; c at the end.
        let bb = 100;
        let blocks = (head + 265).div_ceil(bb) as u32;
        let mut f = FilesDone::new(&manifest, bb, |_| false);
        assert_eq!((f.done(), f.total()), (1, 4), "the empty file at once");
        // Last block first: c (and only c: big still lacks its earlier blocks).
        f.block_done(blocks - 1);
        assert_eq!(f.done(), 2);
        for b in (0..blocks - 1).rev() {
            f.block_done(b);
        }
        assert_eq!(f.done(), 4);
        // Built while blocks are in already: all but the last block, so big and c wait.
        let most = FilesDone::new(&manifest, bb, |b| b < blocks - 1);
        assert_eq!(most.done(), 2);
    }

    #[test]
    fn the_count_comes_once_the_manifest_blocks_are_in() {
        let manifest = Manifest {
            entries: (0..40)
                .map(|i| entry(Kind::File, &format!("file number {i}"), 100))
                .collect(),
        };
        let stream = manifest.encode();
        let (bb, head) = (1024u64, stream.len() as u64);
        assert!(head > 2 * bb && head < 3 * bb, "{head}");
        let blocks = (head + 4000).div_ceil(bb) as u32;
        let header = || Some(stream[..HEADER_LEN].try_into().unwrap());
        let want = Some((40, (head - HEADER_LEN as u64) as u32));
        // In order: the header is in with block 0, the entries with block 2.
        let mut p = TreeProgress::new(blocks, bb);
        assert_eq!(p.block_done(0, header), None);
        assert_eq!(p.block_done(1, header), None);
        assert_eq!(p.block_done(2, header), want);
        assert_eq!(p.files(), None, "until it is read");
        p.manifest(Some(manifest.clone()));
        assert_eq!(p.files(), Some((2, 40)), "the files within blocks 0..=2");
        // Later blocks first: nothing until block 0 comes, then all at once.
        let mut p = TreeProgress::new(blocks, bb);
        for b in (1..blocks).rev() {
            assert_eq!(p.block_done(b, header), None);
        }
        assert_eq!(p.block_done(0, header), want);
        assert_eq!(p.block_done(0, header), None, "asked once");
        p.manifest(Some(manifest.clone()));
        assert_eq!(p.files(), Some((40, 40)));
        // A header that does not parse: no count, ever.
        let mut broken = TreeProgress::new(blocks, bb);
        assert_eq!(broken.block_done(0, || Some([0; HEADER_LEN])), None);
        assert_eq!(broken.block_done(1, header), None);
        assert_eq!(broken.files(), None);
    }

    #[test]
    fn many_small_files_in_one_block_are_done_together() {
        let manifest = Manifest {
            entries: (0..50)
                .map(|i| entry(Kind::File, &format!("f{i}"), 7))
                .collect(),
        };
        let head = manifest.encode().len() as u64;
        let bb = head + 350;
        let mut f = FilesDone::new(&manifest, bb, |_| false);
        assert_eq!((f.done(), f.total()), (0, 50));
        f.block_done(0);
        assert_eq!(f.done(), 50);
    }
}
