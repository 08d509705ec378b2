//! edm-cast's protocol, sans-IO: the wire format (`wire`), how a file is cut into blocks
//! (`layout`), the RaptorQ calls (`codec`), the sender's and receiver's state machines, and the
//! download manager's two sides (`catalog` on the server, `requester` on a student's PC).
//!
//! Nothing here touches a socket, a thread, a file or the clock: the shell feeds datagrams and the
//! current time in, and takes datagrams, timeouts and events out. `PROTOCOL.md` is the spec.

pub mod catalog;
pub mod codec;
pub mod counters;
pub mod layout;
pub mod receiver;
pub mod requester;
pub mod rng;
pub mod sender;
pub mod video;
pub mod wire;

pub use catalog::{Catalog, CatalogConfig, CatalogEvent, Reply};
pub use codec::DecodeJob;
pub use counters::Counters;
pub use layout::{Layout, LayoutError};
pub use receiver::{ReceiveError, Receiver, ReceiverConfig, ReceiverEvent, SessionInfo};
pub use requester::{Answer, Requester};
pub use sender::{
    ConfigError, Destination, FileInfo, Sender, SenderConfig, SenderEvent, SenderStats, SourceError,
};
