//! edm-cast's protocol, sans-IO: the wire format (`wire`), how a file is cut into blocks
//! (`layout`), the RaptorQ calls (`codec`), and the sender's and receiver's state machines.
//!
//! Nothing here touches a socket, a thread, a file or the clock: the shell feeds datagrams and the
//! current time in, and takes datagrams, timeouts and events out. `PROTOCOL.md` is the spec.

pub mod codec;
pub mod counters;
pub mod layout;
pub mod receiver;
pub mod rng;
pub mod sender;
pub mod video;
pub mod wire;

pub use codec::DecodeJob;
pub use counters::Counters;
pub use layout::{Layout, LayoutError};
pub use receiver::{ReceiveError, Receiver, ReceiverConfig, ReceiverEvent, SessionInfo};
pub use sender::{
    ConfigError, Destination, FileInfo, Sender, SenderConfig, SenderEvent, SenderStats,
};
