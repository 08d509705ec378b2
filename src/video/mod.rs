//! Live video: the `relay` (`edm-cast video`: its `sources`, pulled over `rtsp` where needed, each
//! relayed as a `channel`, announced by `sap` on request) and the viewer (`edm-cast watch`).

mod channel;
pub mod relay;
mod rtsp;
mod sap;
mod sources;
pub mod watch;
