//! The download manager (`PROTOCOL.md`, "Download manager"): the server's `Catalog` of URLs and
//! their sessions, and a student's `Requester`. The sessions themselves are the file protocol's.

pub mod catalog;
pub mod requester;
