//! The web side of downloads: `fetch` (HTTP with resume and a streaming MD5, within `serve`'s
//! limits), the download `cache`, the `spool` room downloads share, and the address `policy` that
//! keeps `serve` out of the school's own network.

pub mod cache;
pub mod fetch;
pub mod policy;
pub mod spool;
