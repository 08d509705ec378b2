//! Live video: the `relay` (`edm-cast video`: its `sources`, pulled over `rtsp` where needed) and
//! the viewer (`edm-cast watch`).

pub mod relay;
mod rtsp;
mod sources;
pub mod watch;
