//! The lab's download manager: `serve` (the protocol's `Catalog`, a sending session per URL) and a
//! student's `get` (its `Requester`, then a file `Listener`).

pub mod get;
mod ledger;
pub mod serve;
