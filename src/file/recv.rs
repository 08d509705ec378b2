//! `edm-cast recv`: receives the next file (or, with `--keep`, file after file) sent on the group
//! and prints where each one is.

use super::listener::{Listener, Listening};
use crate::cli::{Network, Receiving, seconds};
use crate::error::Error;
use crate::net;
use crate::rt::{self, Shutdown};
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub net: Network,
    #[command(flatten)]
    pub receiving: Receiving,
    /// Give up if no session is heard within this many seconds. Default: wait.
    #[arg(long, value_name = "SECS", value_parser = seconds)]
    pub timeout: Option<Duration>,
    /// Stay for more files after the first (until interrupted, or until --timeout passes with
    /// no new session).
    #[arg(long)]
    pub keep: bool,
}

pub fn run(args: Args) -> Result<ExitCode, Error> {
    let out = &args.receiving.out;
    std::fs::create_dir_all(out).map_err(|source| Error::Write {
        path: out.clone(),
        source,
    })?;
    let iface = net::interface_addr(args.net.iface.as_deref())?;
    rt::runtime()?.block_on(async {
        let mut shutdown = Shutdown::new()?;
        let how = Listening::new(&args.receiving, args.timeout)?;
        let listener = Listener::new(args.net.group, iface, how)?;
        let mut done_sessions = Vec::new();
        loop {
            let received = listener.receive(&done_sessions, &mut shutdown).await;
            let (session, path) = match received {
                // With --keep, a quiet spell after some files is the normal end.
                Err(Error::NoSession { .. }) if !done_sessions.is_empty() => {
                    return Ok(ExitCode::SUCCESS);
                }
                r => r?,
            };
            done_sessions.push(session);
            println!("{}", path.display());
            if !args.keep {
                return Ok(ExitCode::SUCCESS);
            }
        }
    })
}
