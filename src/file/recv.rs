//! `edm-cast recv`: receives the next file (or, with `--keep`, file after file) sent on the group
//! and prints where each one is.

use super::exec::{Exec, ExecArgs};
use super::listener::{Delivered, Listener, Listening};
use super::status_lines::{Event, StatusArg, StatusLines, Summary};
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
    #[command(flatten)]
    pub status: StatusArg,
    #[command(flatten)]
    pub exec: ExecArgs,
}

pub fn run(args: Args) -> Result<ExitCode, Error> {
    let iface = net::interface_addr(args.net.iface.as_deref(), args.net.group)?;
    let lines = StatusLines::open(&args.status)?;
    rt::runtime()?.block_on(async {
        let mut shutdown = Shutdown::new()?;
        let how = Listening {
            lines: lines.clone(),
            ..Listening::new(&args.receiving, args.timeout)?
        };
        let trusted = how.trust.is_some();
        // A tree's staging folder left by a receiver killed while unpacking.
        super::tree::tidy_stages(&how.out);
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
        lines.emit(Event::Listening {
            group: args.net.group.to_string(),
            iface: net::describe_iface(args.net.group, iface),
        });
        let mut exec = Exec::new(&args.exec, lines.clone());
        let mut tally = Tally::default();
        let result = receive(
            &args,
            &listener,
            &lines,
            &mut exec,
            &mut tally,
            &mut shutdown,
        )
        .await;
        // The last file's command, too, runs to its end (or its timeout) before recv exits.
        let result = match exec.as_mut() {
            Some(exec) if result.is_ok() => tokio::select! {
                () = exec.finish() => result,
                stop = shutdown.recv() => Err(Error::Interrupted(stop)),
            },
            _ => result,
        };
        let (exit, error) = match &result {
            Ok(_) => (0, None),
            Err(e) => (e.code(), Some(e.to_string())),
        };
        lines.emit(Event::Summary(Summary::Recv {
            exit,
            error,
            files: tally.files,
            failed: tally.failed,
            exec_failed: exec.as_ref().map_or(0, Exec::failed),
        }));
        result
    })
}

/// Sessions that ended one way or the other, for the summary line.
#[derive(Default)]
struct Tally {
    files: usize,
    failed: usize,
}

/// Receives a file, or with `--keep` file after file.
async fn receive(
    args: &Args,
    listener: &Listener,
    lines: &StatusLines,
    exec: &mut Option<Exec>,
    tally: &mut Tally,
    shutdown: &mut Shutdown,
) -> Result<ExitCode, Error> {
    // Sessions received, failed or refused: none is joined again.
    let mut seen = Vec::new();
    let mut received = 0;
    loop {
        let r = listener.receive(&seen, shutdown).await;
        if let Err(e) = &r.file
            && r.session.is_some()
        {
            tally.failed += 1;
            lines.emit(Event::SessionFailed {
                session: r.session.map(|s| format!("{s:08x}")),
                error: e.to_string(),
            });
        }
        match r.file {
            Ok(path) => {
                received += 1;
                // A tree counts its files.
                tally.files += r
                    .delivered
                    .as_ref()
                    .and_then(|d| d.tree.as_ref())
                    .map_or(1, |t| t.files);
                // With status lines on stdout, the paths go to stderr.
                if lines.on_stdout() {
                    eprintln!("{}", path.display());
                } else {
                    println!("{}", path.display());
                }
                delivered(&path, r.delivered.as_ref(), lines, exec);
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
            Err(e) if args.keep && r.session.is_some() && !matches!(e, Error::Interrupted(_)) => {
                eprintln!("edm-cast: {e}; waiting for the next session");
            }
            Err(e) => return Err(e),
        }
        seen.extend(r.session);
        if !args.keep {
            return Ok(ExitCode::SUCCESS);
        }
    }
}

/// A file is in place: its status line, and `--exec` (for a file received, not for a copy that
/// was there already). A tree: a line and a command for each of its files, then `tree_done`.
pub(crate) fn delivered(
    path: &std::path::Path,
    file: Option<&Delivered>,
    lines: &StatusLines,
    exec: &mut Option<Exec>,
) {
    let Some(file) = file else {
        return;
    };
    // Scripts get absolute paths: they may run elsewhere.
    let path = &std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    let (md5, sha256) = super::status_lines::hex(&file.digests);
    if let Some(tree) = &file.tree {
        for f in &tree.placed {
            let (md5, sha256) = super::status_lines::hex(&f.digests);
            lines.emit(Event::FileDone {
                session: format!("{:08x}", file.session),
                path: path.join(&f.path),
                size: f.size,
                md5,
                sha256,
                sender: file.sender.ip().to_string(),
                signed_by: file.signed_by.clone(),
                already_present: false,
                tree: Some(path.to_owned()),
                // Each file's SHA-256 was checked as it was unpacked.
                verified: super::listener::Verified::File.as_str(),
            });
        }
        lines.emit(Event::TreeDone {
            session: format!("{:08x}", file.session),
            path: path.to_owned(),
            files: tree.files,
            folders: tree.folders,
            bytes: tree.bytes,
            size: file.size,
            md5,
            sha256,
            sender: file.sender.ip().to_string(),
            signed_by: file.signed_by.clone(),
            verified: file.verified.as_str(),
        });
        if let Some(exec) = exec {
            exec.run_tree(path, tree.placed.clone(), file);
        }
        return;
    }
    lines.emit(Event::FileDone {
        session: format!("{:08x}", file.session),
        path: path.to_owned(),
        size: file.size,
        md5,
        sha256,
        sender: file.sender.ip().to_string(),
        signed_by: file.signed_by.clone(),
        already_present: file.already_present,
        tree: None,
        verified: file.verified.as_str(),
    });
    if let Some(exec) = exec
        && !file.already_present
    {
        exec.run(path, file);
    }
}
