//! Our codec layer against raw raptorq on the same data: encode (first-pass source symbols plus 5%
//! repair) and decode (5% of source symbols lost, replaced by repair; ours also checks the block
//! digest, as a receiver does), per block of K = 1024,
//! T = 1408. Prints MiB/s and the ratio ours / raw; medians of 7 rounds.
//!
//!     cargo bench -p edm-cast-proto

use edm_cast_proto::file::codec::{BlockEncoder, DecodeJob, Plans, SymbolSet};
use edm_cast_proto::file::layout::Layout;
use edm_cast_proto::rng::Rng;
use edm_cast_proto::wire::block_digest;
use raptorq::{
    EncodingPacket, ObjectTransmissionInformation, PayloadId, SourceBlockDecoder,
    SourceBlockEncoder, SourceBlockEncodingPlan,
};
use std::hint::black_box;
use std::time::Instant;

const K: u16 = 1024;
const T: u16 = 1408;
const BLOCKS: u32 = 16;
const REPAIR: u32 = 52; // 5% of K

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let layout = Layout::new(K as u64 * T as u64 * BLOCKS as u64, T, K).unwrap();
    let mut rng = Rng::new(1);
    let file: Vec<u8> = (0..layout.file_size().unwrap_or(0))
        .map(|_| rng.next_u64() as u8)
        .collect();
    let block = |b: u32| &file[layout.offset(b) as usize..][..layout.len(b)];
    let oti = ObjectTransmissionInformation::new(K as u64 * T as u64, T, 1, 1, 1);
    let plan = SourceBlockEncodingPlan::generate(K);
    let mib = (BLOCKS as f64 * K as f64 * T as f64) / (1 << 20) as f64;

    // Encode: every source symbol and REPAIR repair symbols, as datagram payloads.
    let mut plans = Plans::default();
    let (mut ours, mut raw) = (Vec::new(), Vec::new());
    for _ in 0..7 {
        let t = Instant::now();
        for b in 0..BLOCKS {
            let mut enc = BlockEncoder::new(&layout, b, block(b).to_vec());
            let mut out = Vec::with_capacity(1500);
            for esi in 0..K as u32 + REPAIR {
                out.clear();
                enc.write_symbol(&layout, &mut plans, esi, &mut out);
                black_box(&out);
            }
        }
        ours.push(mib / t.elapsed().as_secs_f64());
        let t = Instant::now();
        for b in 0..BLOCKS {
            let enc = SourceBlockEncoder::with_encoding_plan(0, &oti, block(b), &plan);
            black_box(enc.source_packets());
            black_box(enc.repair_packets(0, REPAIR));
        }
        raw.push(mib / t.elapsed().as_secs_f64());
    }
    let (o, r) = (median(ours), median(raw));
    println!(
        "encode  ours {o:7.1} MiB/s  raw raptorq {r:7.1} MiB/s  ours/raw {:.2}",
        o / r
    );

    // Decode: lose every 20th source symbol, add REPAIR repair symbols.
    let repair: Vec<Vec<(u32, Vec<u8>)>> = (0..BLOCKS)
        .map(|b| {
            let enc = SourceBlockEncoder::with_encoding_plan(0, &oti, block(b), &plan);
            enc.repair_packets(0, REPAIR)
                .into_iter()
                .map(|p| (p.payload_id().encoding_symbol_id(), p.data().to_vec()))
                .collect()
        })
        .collect();
    let (mut ours, mut raw) = (Vec::new(), Vec::new());
    for _ in 0..7 {
        let t = Instant::now();
        for b in 0..BLOCKS {
            let mut have = SymbolSet::new(K);
            for esi in (0..K as u32).filter(|e| e % 20 != 7) {
                have.insert(esi);
            }
            let job = DecodeJob::new(
                &layout,
                b,
                Some(block(b).to_vec()),
                have,
                repair[b as usize].clone(),
                // Whole blocks: the coded block is the file's bytes.
                block_digest(block(b)),
            );
            assert_eq!(job.run(None).unwrap(), block(b));
        }
        ours.push(mib / t.elapsed().as_secs_f64());
        let t = Instant::now();
        for b in 0..BLOCKS {
            let data = block(b);
            let packets = (0..K as u32)
                .filter(|e| e % 20 != 7)
                .map(|e| {
                    let at = e as usize * T as usize;
                    EncodingPacket::new(PayloadId::new(0, e), data[at..at + T as usize].to_vec())
                })
                .chain(
                    repair[b as usize]
                        .iter()
                        .map(|(e, s)| EncodingPacket::new(PayloadId::new(0, *e), s.clone())),
                );
            let mut dec = SourceBlockDecoder::new(0, &oti, K as u64 * T as u64);
            assert_eq!(dec.decode(packets).unwrap(), data);
        }
        raw.push(mib / t.elapsed().as_secs_f64());
    }
    let (o, r) = (median(ours), median(raw));
    println!(
        "decode  ours {o:7.1} MiB/s  raw raptorq {r:7.1} MiB/s  ours/raw {:.2}",
        o / r
    );
}
