//! The web side of downloads: `fetch` (HTTP with resume and a streaming MD5), the download
//! `cache`, and the address `policy` that keeps `serve` out of the school's own network.

pub mod cache;
pub mod fetch;
pub mod policy;
