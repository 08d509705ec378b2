//! Live video, sans-IO (`proto/VIDEO.md` is the spec): the wire format of control and repair
//! datagrams (`wire`), RTP headers (`rtp`), H.264 over RTP (`h264`), a source's RTP clock on the relay's (`clock`), RaptorQ over windows of RTP
//! packets (`fec`), who may feed a channel (`ingest`), and the two control state machines of a
//! channel: the relay's lease table (`channel::Leases`) and the viewer's (`viewer::Viewer`).

pub mod audio;
pub mod channel;
pub mod clock;
pub mod fec;
pub mod h264;
pub mod ingest;
pub mod rtcp;
pub mod rtp;
pub mod sap;
pub mod sdp;
pub mod viewer;
pub mod wire;
