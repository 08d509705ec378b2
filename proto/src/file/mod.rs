//! The file protocol (`PROTOCOL.md`): how a file is cut into blocks (`layout`), the RaptorQ calls
//! per block (`codec`), and the two state machines, `Sender` and `Receiver`.

pub mod cc;
pub mod codec;
pub mod crypt;
pub mod fec;
pub mod layout;
pub mod peers;
pub mod receiver;
pub mod sender;
pub mod tree;
