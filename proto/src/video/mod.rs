//! Live video, sans-IO (`proto/VIDEO.md` is the spec): the wire format of control and repair
//! datagrams (`wire`), RTP headers (`rtp`), H.264 over RTP (`h264`), RaptorQ over windows of RTP
//! packets (`fec`), and the channel's two sides, the relay's lease table and the viewer
//! (`channel`).

pub mod channel;
pub mod fec;
pub mod h264;
pub mod rtp;
pub mod wire;
