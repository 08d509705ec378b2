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
    /// no new session). A session that fails, is aborted or is refused is reported in one line
    /// and skipped.
    #[arg(long)]
    pub keep: bool,
}

pub fn run(args: Args) -> Result<ExitCode, Error> {
    let iface = net::interface_addr(args.net.iface.as_deref())?;
    rt::runtime()?.block_on(async {
        let mut shutdown = Shutdown::new()?;
        let how = Listening::new(&args.receiving, args.timeout)?;
        let trusted = how.trust.is_some();
        let listener = Listener::new(args.net.group, iface, how)?;
        // Said at once: a blank terminal looks like a hang.
        eprintln!(
            "listening on {} ({}) for a session{}{}…",
            args.net.group,
            net::describe_iface(args.net.group, iface),
            if trusted {
                " signed by a trusted key"
            } else {
                ""
            },
            args.timeout
                .map(|t| format!(" for up to {} s", t.as_secs_f64()))
                .unwrap_or_default()
        );
        // Sessions received, failed or refused: none is joined again.
        let mut seen = Vec::new();
        let mut received = 0;
        loop {
            let r = listener.receive(&seen, &mut shutdown).await;
            match r.file {
                Ok(path) => {
                    received += 1;
                    println!("{}", path.display());
                }
                // With --keep, a quiet spell after some sessions is the normal end.
                Err(Error::NoSession { .. }) if !seen.is_empty() => {
                    return match received {
                        0 => Err(Error::NothingReceived(seen.len())),
                        _ => Ok(ExitCode::SUCCESS),
                    };
                }
                // Anyone on the LAN can start a session, and a sender can fail or be stopped:
                // --keep stays for the next one.
                Err(e)
                    if args.keep && r.session.is_some() && !matches!(e, Error::Interrupted(_)) =>
                {
                    eprintln!("edm-cast: {e}; waiting for the next session");
                }
                Err(e) => return Err(e),
            }
            seen.extend(r.session);
            if !args.keep {
                return Ok(ExitCode::SUCCESS);
            }
        }
    })
}
