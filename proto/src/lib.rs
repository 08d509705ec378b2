#![warn(missing_docs)]
//! edm-cast's protocol, sans-IO: the wire format (`wire`, `video::wire`), the file protocol's
//! sender and receiver (`file`), the download manager (`download`) and live video (`video`).
//!
//! Nothing here touches a socket, a thread, a file or the clock: the shell feeds datagrams and the
//! current time in, and takes datagrams, timeouts and events out. `PROTOCOL.md` and `VIDEO.md` are
//! the specs.
//!
//! Every state machine has the same contract, as in quinn-proto: getters; inputs
//! `handle_datagram(now, from, bytes)`, `handle_timeout(now)` and the like; commands; and outputs
//! `poll_transmit(now, buf)`, `poll_timeout()`, `poll_event()`. A shell drives one this way (here a
//! teacher and one PC on a perfect network, in memory):
//!
//! ```
//! use edm_cast_proto::wire::{FeedbackAddr, FileHasher};
//! use edm_cast_proto::{
//!     FileInfo, Receiver, ReceiverConfig, ReceiverEvent, Sender, SenderConfig, SenderEvent,
//! };
//! use std::net::SocketAddr;
//! use std::time::{Duration, Instant};
//!
//! let file = vec![7u8; 300_000];
//! let mut hasher = FileHasher::default();
//! hasher.update(&file);
//! let info = FileInfo {
//!     name: "notes.pdf".into(),
//!     size: Some(file.len() as u64),
//!     digests: Some(hasher.finish()),
//! };
//! let teacher: SocketAddr = "10.0.0.1:5007".parse().unwrap();
//! let pc: SocketAddr = "10.0.0.2:6000".parse().unwrap();
//! let cfg = SenderConfig {
//!     feedback: FeedbackAddr::Source { port: 5007 },
//!     ..SenderConfig::default()
//! };
//! let mut now = Instant::now();
//! let mut sender = Sender::new(cfg, info, now).unwrap();
//! let mut receiver = Receiver::new(ReceiverConfig::default());
//! let (mut copy, mut buf) = (vec![0u8; file.len()], Vec::new());
//! while !receiver.is_finished() {
//!     // The sender's datagrams go out (a shell paces them); it asks for blocks to be read.
//!     while sender.poll_transmit(now, &mut buf).is_some() {
//!         receiver.handle_datagram(now, teacher, &buf);
//!     }
//!     while let Some(ev) = sender.poll_event() {
//!         if let SenderEvent::NeedBlock { block, offset, len } = ev {
//!             sender.supply_block(block, file[offset as usize..][..len].to_vec());
//!         }
//!     }
//!     // The receiver asks for decodes (a shell runs them on worker threads) and a last check.
//!     while let Some(ev) = receiver.poll_event() {
//!         match ev {
//!             ReceiverEvent::Decode(job) => {
//!                 let (at, block) = (job.offset as usize, job.block);
//!                 let bytes = job.run(None).expect("a lossless network");
//!                 copy[at..at + bytes.len()].copy_from_slice(&bytes);
//!                 receiver.handle_decoded(now, Ok(block));
//!             }
//!             ReceiverEvent::Complete { .. } => receiver.verified(now, copy == file),
//!             _ => {}
//!         }
//!     }
//!     // Its feedback goes back: hello, progress, done.
//!     while receiver.poll_transmit(now, &mut buf).is_some() {
//!         sender.handle_datagram(now, pc, &buf);
//!     }
//!     // Then time moves on to the next timeout either asked for.
//!     let next = [sender.poll_timeout(), receiver.poll_timeout()].into_iter().flatten().min();
//!     now = next.unwrap_or(now).max(now + Duration::from_millis(1));
//!     sender.handle_timeout(now);
//!     receiver.handle_timeout(now);
//! }
//! assert_eq!(copy, file);
//! ```

pub mod auth;
mod coding;
pub mod counters;
pub mod download;
pub mod file;
pub mod limit;
pub mod rng;
pub mod video;
pub mod wire;

pub use auth::{KeyId, PublicKey, SecretKey, Signer, Trust, WallClock};
pub use counters::Counters;
pub use download::catalog::{Catalog, CatalogConfig, CatalogEvent, Reply};
pub use download::requester::{Answer, Requester};
pub use file::cc::{CcConfig, RateControl};
pub use file::codec::{CheckJob, DecodeError, DecodeJob, SymbolSet};
pub use file::fec::Fec;
pub use file::layout::{Layout, LayoutError};
pub use file::peers::Limits;
pub use file::receiver::{ReceiveError, Receiver, ReceiverConfig, ReceiverEvent, SessionInfo};
pub use file::sender::{
    ConfigError, Destination, Encryption, FileInfo, ReceiverInfo, Sender, SenderConfig,
    SenderEvent, SenderStats, SessionPhase, SourceError,
};
