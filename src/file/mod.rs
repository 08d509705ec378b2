//! Files: `send` and `recv`, and what they are made of: the sending `session` (the protocol's
//! `Sender` on a socket, paced), the receiving `listener` (its `Receiver`, decodes on worker
//! threads), the `source` of a session's bytes (a file or a download), the receiver's `output` file
//! and running `digest` (the sender's kept in `digest_cache`), the sender's `view`, and its watch
//! for other senders on its group (`neighbours`); a partial file kept across runs of a receiver
//! (`resume`), and the sender's list of the PCs a session missed (`restart`); a folder or many
//! files sent as one session (`tree`, its stream read from the files in place: `tree_stream`), how
//! many of its files a receiver has (`tree_progress`), and sent again to PCs that reuse the files
//! they have (`sync`).

pub mod digest;
pub mod digest_cache;
pub mod exec;
pub mod listener;
pub mod neighbours;
pub mod output;
pub mod recv;
pub mod restart;
pub mod resume;
pub mod send;
pub mod session;
pub mod source;
pub mod status_lines;
pub mod sync;
pub mod tree;
pub mod tree_progress;
pub mod tree_stream;
pub mod view;
