//! The fuzz harness of edm-cast-proto: one function per target, each taking the fuzzer's bytes.
//! Every datagram may be hostile, so none of them may panic, loop or do unbounded work.
//!
//! This is plain Rust with no fuzzer in it: `fuzz_targets/` wrap these functions for cargo-fuzz
//! (nightly), and `proto/tests/fuzz_corpus.rs` includes this file to replay the committed corpora
//! through the same functions on stable, in `cargo test`.

pub mod download;
pub mod file;
pub mod parsers;
pub mod script;
pub mod seeds;
pub mod video;

pub use download::{catalog, requester};
pub use file::{receiver, sender};
pub use parsers::{keys, packet, rtp, tree, video_wire};
pub use video::{h264, leases, playout, viewer};

/// A target: what the fuzzer's bytes are run through.
pub type Target = fn(&[u8]);

/// Every target by name (its `fuzz_targets/NAME.rs` and its `corpus/NAME` folder).
pub const TARGETS: [(&str, Target); 13] = [
    ("packet", packet),
    ("video_wire", video_wire),
    ("rtp", rtp),
    ("keys", keys),
    ("receiver", receiver),
    ("sender", sender),
    ("catalog", catalog),
    ("requester", requester),
    ("leases", leases),
    ("viewer", viewer),
    ("playout", playout),
    ("h264", h264),
    ("tree", tree),
];
