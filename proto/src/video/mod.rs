//! Live video, sans-IO (`proto/VIDEO.md` is the spec): the wire format of control and repair
//! datagrams (`wire`), RTP headers (`rtp`), H.264 over RTP (`h264`), RaptorQ over windows of RTP
//! packets (`fec`), and the relay's control state machine, its lease table (`channel::Leases`).

pub mod channel;
pub mod fec;
pub mod h264;
pub mod rtp;
pub mod wire;
