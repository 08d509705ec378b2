//! The RaptorQ calls (RFC 6330): one systematic code per source block, through raptorq's
//! `SourceBlockEncoder`/`SourceBlockDecoder`. Our own header carries the 32-bit block number, so
//! raptorq's 8-bit source block number is always 0 here.

use crate::coding::block_oti;
use crate::file::layout::Layout;
use crate::wire::{BlockDigest, SymbolHash, block_digest, symbol_hash};
use raptorq::{
    EncodingPacket, PayloadId, SourceBlockDecoder, SourceBlockEncoder, SourceBlockEncodingPlan,
};
use std::collections::HashMap;
use std::sync::Arc;

/// Encoding plans by K, made once: a plan makes each block's encoding several times cheaper.
#[derive(Default)]
pub struct Plans(HashMap<u16, SourceBlockEncodingPlan>);

impl Plans {
    fn get(&mut self, k: u16) -> &SourceBlockEncodingPlan {
        self.0
            .entry(k)
            .or_insert_with(|| SourceBlockEncodingPlan::generate(k))
    }
}

/// One block's bytes, padded to K*T, and (once a repair symbol is wanted) its encoder.
pub struct BlockEncoder {
    k: u16,
    t: usize,
    data: Vec<u8>,
    encoder: Option<SourceBlockEncoder>,
}

impl BlockEncoder {
    /// `data` is the block's bytes as in the file; it is zero-padded to whole symbols.
    pub fn new(layout: &Layout, block: u32, mut data: Vec<u8>) -> Self {
        let k = layout.symbols(block);
        let t = layout.symbol_size() as usize;
        data.resize(k as usize * t, 0);
        BlockEncoder {
            k,
            t,
            data,
            encoder: None,
        }
    }

    /// K of this block.
    pub fn symbols(&self) -> u16 {
        self.k
    }

    /// The block as coded: its K symbols, the last one zero-padded (what its digest covers).
    pub fn coded(&self) -> &[u8] {
        &self.data
    }

    /// Source symbol `esi` (< K): a slice of the block itself, since the code is systematic.
    pub fn source_symbol(&self, esi: u32) -> &[u8] {
        let at = esi as usize * self.t;
        &self.data[at..at + self.t]
    }

    /// Writes symbol `esi` into `out`: a source symbol below K, a repair symbol from K on.
    pub fn write_symbol(
        &mut self,
        layout: &Layout,
        plans: &mut Plans,
        esi: u32,
        out: &mut Vec<u8>,
    ) {
        if esi < self.k as u32 {
            out.extend_from_slice(self.source_symbol(esi));
            return;
        }
        let k = self.k as u32;
        let packet = self.prepare(layout, plans).repair_packets(esi - k, 1);
        out.extend_from_slice(packet[0].data());
    }

    /// Builds the encoder now (the costly part of repair: milliseconds per block), so the caller
    /// can choose when that pause happens.
    pub fn prepare(&mut self, layout: &Layout, plans: &mut Plans) -> &SourceBlockEncoder {
        let (k, data) = (self.k, &self.data);
        self.encoder.get_or_insert_with(|| {
            SourceBlockEncoder::with_encoding_plan(
                0,
                &block_oti(k, layout.symbol_size()),
                data,
                plans.get(k),
            )
        })
    }
}

/// A bit per source symbol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SymbolSet {
    words: Vec<u64>,
    count: u32,
}

impl SymbolSet {
    /// An empty set for a block of `k` source symbols.
    pub fn new(k: u16) -> Self {
        SymbolSet {
            words: vec![0; (k as usize).div_ceil(64)],
            count: 0,
        }
    }

    /// Marks `i`; false if it was already there.
    pub fn insert(&mut self, i: u32) -> bool {
        let (w, b) = ((i / 64) as usize, i % 64);
        let fresh = self.words[w] & (1 << b) == 0;
        self.words[w] |= 1 << b;
        self.count += fresh as u32;
        fresh
    }

    /// Whether `i` is marked.
    pub fn contains(&self, i: u32) -> bool {
        self.words[(i / 64) as usize] & (1 << (i % 64)) != 0
    }

    /// Whether it was made for a block of `k` source symbols.
    pub fn fits(&self, k: u16) -> bool {
        self.words.len() == (k as usize).div_ceil(64)
    }

    /// How many are marked.
    pub fn len(&self) -> u32 {
        self.count
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// Everything needed to decode one block, handed to the shell to run off the network path.
#[derive(Debug)]
pub struct DecodeJob {
    /// The block.
    pub block: u32,
    /// Where the block goes in the file ...
    pub offset: u64,
    /// ... and how many bytes of it are file.
    pub len: usize,
    k: u16,
    t: u16,
    /// What the decoded block must hash to (DIGESTS).
    digest: BlockDigest,
    /// For a block that failed its digest: the hashes of the sender's symbols. Only symbols that
    /// match are used; the others are counted and dropped.
    pub(crate) verify: Option<Arc<HashMap<u32, SymbolHash>>>,
    /// Symbols dropped by `verify`: whose hash differs (forged), and whose hash is not known.
    pub(crate) rejected: (u32, u32),
    /// The block's K*T buffer with the source symbols in `have`, or `None` if they were spilled
    /// to the output file (then `run` must be given the block's bytes read back from there).
    pub(crate) source: Option<Vec<u8>>,
    pub(crate) have: SymbolSet,
    /// Symbols kept apart: repair symbols, and source symbols that came after a spill.
    pub(crate) extra: Vec<(u32, Vec<u8>)>,
}

/// A block kept in the output file from an earlier run of the receiver (`Receiver::resume`), to be
/// checked against the digest this session published before it counts: the file may have been
/// cut short by a crash, or changed by anyone, since. Handed to the shell, which reads the block's
/// `len` bytes at `offset` and calls `run` off the network path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckJob {
    /// The block.
    pub block: u32,
    /// Where the block is in the file ...
    pub offset: u64,
    /// ... and how many bytes of it are file.
    pub len: usize,
    /// Bytes of the block as coded: K_b symbols of T (its last bytes are padding).
    coded: usize,
    digest: BlockDigest,
}

impl CheckJob {
    pub(crate) fn new(layout: &Layout, block: u32, digest: BlockDigest) -> Self {
        CheckJob {
            block,
            offset: layout.offset(block),
            len: layout.len(block),
            coded: layout.symbols(block) as usize * layout.symbol_size() as usize,
            digest,
        }
    }

    /// Whether `bytes`, the block as read from the file (`len` bytes), is the block the sender
    /// published the digest of.
    pub fn run(&self, mut bytes: Vec<u8>) -> bool {
        if bytes.len() != self.len {
            return false;
        }
        bytes.resize(self.coded, 0);
        block_digest(&bytes) == self.digest
    }
}

/// Why a job gave no block. Either way the job comes back, with its symbols, to be returned to
/// the receiver: nothing was written.
#[derive(Debug)]
pub enum DecodeError {
    /// Too few independent (or, when checked, verified) symbols: more are needed.
    TooFew(Box<DecodeJob>),
    /// The decoded block is not the one whose digest the sender published: a symbol was forged or
    /// damaged. The receiver checks each symbol against the sender's hashes before trying again.
    Forged(Box<DecodeJob>),
}

impl DecodeError {
    /// The job it came from.
    pub fn job(&self) -> &DecodeJob {
        match self {
            DecodeError::TooFew(j) | DecodeError::Forged(j) => j,
        }
    }
}

/// Symbols of a block of `k` from which raptorq usually decodes without its HDPC rows (RFC 6330
/// 5.3.3.4): from K + H(K') held it tries its GF(2)-only solve (raptorq 2.0.1, "case 3a"), and
/// where that falls short of rank it runs the full solve after it. At K = 1024 (H = 10), T = 1408,
/// 5% of the source symbols missing, one thread: the GF(2) solve fell short for 73% of blocks at
/// K + H, 24% at K + H + 2, 7% at K + H + 4, 1% at K + H + 6 (600 solves each); a block took about
/// 3.0 ms from K + 1, 2.9 at K + H + 2, 2.2 at K + H + 4. Waiting for K + H + 6 instead made
/// the receiver no cheaper in the lab (decode CPU over 9 alternated runs of bench/recvcpu.sh's
/// case), probably because more of a window's blocks then wait for the pass's end, and decode at
/// once.
pub fn cheap_decode_at(k: u32) -> u32 {
    // H(K') by RFC 6330 Table 2: 10 up to K' = 1032, then one more at each of these K'.
    let kp = raptorq::extended_source_block_symbols(k);
    let h = 10
        + [1050, 10899, 20778, 30654, 40398, 50511]
            .iter()
            .filter(|&&at| kp >= at)
            .count() as u32;
    k + h + 2
}

impl DecodeJob {
    /// A job for `block`: its source symbols in `source` (K·T bytes, or `None` if spilled) as
    /// marked in `have`, other symbols in `extra`, and the digest it must match.
    pub fn new(
        layout: &Layout,
        block: u32,
        source: Option<Vec<u8>>,
        have: SymbolSet,
        extra: Vec<(u32, Vec<u8>)>,
        digest: BlockDigest,
    ) -> Self {
        DecodeJob {
            block,
            offset: layout.offset(block),
            len: layout.len(block),
            k: layout.symbols(block),
            t: layout.symbol_size(),
            digest,
            verify: None,
            rejected: (0, 0),
            source,
            have,
            extra,
        }
    }

    /// True when `run` needs the block's bytes read back from the output file.
    pub fn needs_spilled(&self) -> bool {
        self.source.is_none() && !self.have.is_empty()
    }

    /// Decodes and checks the block against its digest. `spilled` is the block as written to the
    /// output file (at least `len` bytes), when `needs_spilled`. On success the block's `len` bytes.
    pub fn run(mut self, spilled: Option<Vec<u8>>) -> Result<Vec<u8>, DecodeError> {
        let kt = self.k as usize * self.t as usize;
        let mut source = match self.source.take().or(spilled) {
            Some(s) => s,
            None => vec![0; kt],
        };
        source.resize(kt, 0);
        if let Some(hashes) = self.verify.clone() {
            self.drop_unverified(&hashes, &source);
        }
        if self.have.len() == self.k as u32 {
            return match self.checked(&source) {
                Ok(()) => {
                    source.truncate(self.len);
                    Ok(source)
                }
                Err(()) => self.back(source, true),
            };
        }
        let t = self.t as usize;
        let packets = (0..self.k as u32)
            .filter(|&i| self.have.contains(i))
            .map(|i| {
                let at = i as usize * t;
                EncodingPacket::new(PayloadId::new(0, i), source[at..at + t].to_vec())
            })
            .chain(
                self.extra
                    .iter()
                    .map(|(esi, s)| EncodingPacket::new(PayloadId::new(0, *esi), s.clone())),
            );
        let mut decoder = SourceBlockDecoder::new(0, &block_oti(self.k, self.t), kt as u64);
        match decoder.decode(packets) {
            Some(mut out) if self.checked(&out).is_ok() => {
                out.truncate(self.len);
                Ok(out)
            }
            Some(_) => self.back(source, true),
            None => self.back(source, false),
        }
    }

    /// Whether the coded block is the block the sender published.
    fn checked(&self, coded: &[u8]) -> Result<(), ()> {
        (block_digest(coded) == self.digest).then_some(()).ok_or(())
    }

    /// The job back with its symbols, for more of them or for a check of each.
    fn back(mut self, source: Vec<u8>, forged: bool) -> Result<Vec<u8>, DecodeError> {
        self.source = Some(source);
        Err(if forged {
            DecodeError::Forged(Box::new(self))
        } else {
            DecodeError::TooFew(Box::new(self))
        })
    }

    /// Keeps only the symbols whose hash is the one the sender published.
    fn drop_unverified(&mut self, hashes: &HashMap<u32, SymbolHash>, source: &[u8]) {
        let t = self.t as usize;
        let block = self.block;
        let verdict = |esi: u32, symbol: &[u8], rejected: &mut (u32, u32)| match hashes.get(&esi) {
            Some(h) if *h == symbol_hash(block, esi, symbol) => true,
            Some(_) => {
                rejected.0 += 1;
                false
            }
            None => {
                rejected.1 += 1;
                false
            }
        };
        let mut have = SymbolSet::new(self.k);
        for i in (0..self.k as u32).filter(|&i| self.have.contains(i)) {
            let at = i as usize * t;
            if verdict(i, &source[at..at + t], &mut self.rejected) {
                have.insert(i);
            }
        }
        self.have = have;
        let mut rejected = self.rejected;
        self.extra
            .retain(|(esi, s)| verdict(*esi, s, &mut rejected));
        self.rejected = rejected;
    }

    /// Symbols this job holds.
    pub fn symbols(&self) -> u32 {
        self.have.len() + self.extra.len() as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 31 + i / 7) as u8).collect()
    }

    #[test]
    fn repair_symbols_decode_a_block_with_losses() {
        let layout = Layout::new(100 * 64 + 17, 64, 50).unwrap();
        let mut plans = Plans::default();
        for block in 0..layout.num_blocks() {
            let at = layout.offset(block) as usize;
            let file = pattern(layout.file_size().unwrap_or(0) as usize);
            let data = file[at..at + layout.len(block)].to_vec();
            let mut enc = BlockEncoder::new(&layout, block, data.clone());
            let k = enc.symbols() as u32;
            // Lose every third source symbol, replace with repair symbols.
            let mut source = vec![0u8; k as usize * 64];
            let mut have = SymbolSet::new(k as u16);
            let mut extra = Vec::new();
            for esi in 0..k {
                if esi % 3 != 1 {
                    let mut s = Vec::new();
                    enc.write_symbol(&layout, &mut plans, esi, &mut s);
                    source[esi as usize * 64..][..64].copy_from_slice(&s);
                    have.insert(esi);
                }
            }
            let mut esi = k;
            while have.len() + (extra.len() as u32) < k + 2 {
                let mut s = Vec::new();
                enc.write_symbol(&layout, &mut plans, esi, &mut s);
                extra.push((esi, s));
                esi += 1;
            }
            let digest = block_digest(enc.coded());
            let job = DecodeJob::new(&layout, block, Some(source), have, extra, digest);
            assert_eq!(job.run(None).unwrap(), data);
        }
    }

    #[test]
    fn a_forged_symbol_is_caught_by_the_digest_and_nothing_comes_out() {
        let layout = Layout::new(640, 64, 10).unwrap();
        let data = pattern(640);
        let digest = block_digest(&data);
        let mut have = SymbolSet::new(10);
        for i in 0..10 {
            have.insert(i);
        }
        let mut forged = data.clone();
        forged[200] ^= 0xFF;
        let job = DecodeJob::new(&layout, 0, Some(forged), have.clone(), Vec::new(), digest);
        assert!(matches!(job.run(None), Err(DecodeError::Forged(j)) if j.block == 0));
        let job = DecodeJob::new(&layout, 0, Some(data.clone()), have, Vec::new(), digest);
        assert_eq!(job.run(None).unwrap(), data);
    }

    #[test]
    fn with_the_senders_hashes_only_its_symbols_are_used() {
        let layout = Layout::new(640, 64, 10).unwrap();
        let data = pattern(640);
        let mut plans = Plans::default();
        let mut enc = BlockEncoder::new(&layout, 0, data.clone());
        // The sender's symbols 0..14, and their hashes.
        let symbols: Vec<Vec<u8>> = (0..14)
            .map(|esi| {
                let mut s = Vec::new();
                enc.write_symbol(&layout, &mut plans, esi, &mut s);
                s
            })
            .collect();
        let hashes: HashMap<u32, SymbolHash> = (0..14u32)
            .map(|e| (e, symbol_hash(0, e, &symbols[e as usize])))
            .collect();
        // Source symbol 3 forged, a repair symbol forged, and one with no hash (sent ahead).
        let mut source = data.clone();
        source[3 * 64] ^= 0xFF;
        let mut have = SymbolSet::new(10);
        for i in 0..10 {
            have.insert(i);
        }
        let mut bad = symbols[11].clone();
        bad[0] ^= 1;
        let extra = vec![
            (10, symbols[10].clone()),
            (11, bad),
            (12, symbols[12].clone()),
            (40, vec![0; 64]),
        ];
        let mut job = DecodeJob::new(&layout, 0, Some(source), have, extra, block_digest(&data));
        job.verify = Some(Arc::new(hashes));
        assert_eq!(job.run(None).unwrap(), data);
        // Without the hashes the same symbols decode to the wrong block, which the digest catches.
        let mut source = data.clone();
        source[3 * 64] ^= 0xFF;
        let mut have = SymbolSet::new(10);
        for i in 0..10 {
            have.insert(i);
        }
        let job = DecodeJob::new(
            &layout,
            0,
            Some(source),
            have,
            Vec::new(),
            block_digest(&data),
        );
        let Err(DecodeError::Forged(back)) = job.run(None) else {
            panic!("a forged source symbol is not the block");
        };
        assert_eq!(back.symbols(), 10, "the job comes back with its symbols");
    }

    #[test]
    fn spilled_source_is_read_back() {
        let layout = Layout::new(640, 64, 10).unwrap();
        let data = pattern(640);
        let mut have = SymbolSet::new(10);
        for i in 0..10 {
            have.insert(i);
        }
        let job = DecodeJob::new(&layout, 0, None, have, Vec::new(), block_digest(&data));
        assert!(job.needs_spilled());
        assert_eq!(job.run(Some(data.clone())).unwrap(), data);
    }

    #[test]
    fn too_few_symbols_give_the_job_back() {
        let layout = Layout::new(640, 64, 10).unwrap();
        let mut have = SymbolSet::new(10);
        have.insert(0);
        let job = DecodeJob::new(&layout, 0, Some(vec![0; 640]), have, Vec::new(), [0; 16]);
        let Err(DecodeError::TooFew(back)) = job.run(None) else {
            panic!("one symbol of ten cannot decode");
        };
        assert_eq!(back.symbols(), 1);
    }
}
