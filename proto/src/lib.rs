//! edm-cast's protocol, sans-IO: the wire format (`wire`, `video::wire`), the file protocol's
//! sender and receiver (`file`), the download manager (`download`) and live video (`video`).
//!
//! Nothing here touches a socket, a thread, a file or the clock: the shell feeds datagrams and the
//! current time in, and takes datagrams, timeouts and events out. `PROTOCOL.md` and `VIDEO.md` are
//! the specs.

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
pub use file::codec::{DecodeError, DecodeJob};
pub use file::layout::{Layout, LayoutError};
pub use file::peers::Limits;
pub use file::receiver::{ReceiveError, Receiver, ReceiverConfig, ReceiverEvent, SessionInfo};
pub use file::sender::{
    ConfigError, Destination, Encryption, FileInfo, ReceiverInfo, Sender, SenderConfig,
    SenderEvent, SenderStats, SourceError,
};
