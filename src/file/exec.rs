//! `recv --exec CMD`: a command run after each file received and verified, as UFTP's
//! post-receive script (README, "Running a command after each file").
//!
//! The command is the user's string, run by `/bin/sh -c`; what the file is (its path, digests,
//! sender) reaches it only through the environment, never through the command line: the file's
//! name comes from the network. Each run is bounded by `--exec-timeout` (then its whole process
//! group is killed) and runs beside the receiving, which never waits for it: a few at a time, the
//! others queued, and past a bound not run at all. A tree's files are one entry of that queue: once
//! the tree is in place, its files' commands start in the manifest's order, a few at a time, so a
//! tree of 100,000 files never has more than `RUNNING` processes. A failure is one line on stderr
//! and an `exec_failed` status line; it never stops `recv`.

use super::listener::{Delivered, Verified};
use super::status_lines::{self, Event, StatusLines};
use super::tree::Placed;
use crate::cli::seconds;
use edm_cast_proto::wire::FileDigests;
use futures_util::StreamExt;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Commands running at once; the next ones wait for a slot.
const RUNNING: usize = 4;

/// Commands running or waiting at most (a tree's counting as one): past this a file's command is
/// not run (and that is reported), so a command that hangs cannot pile up without end.
const QUEUED: usize = 64;

/// `recv`'s `--exec` and `--exec-timeout`.
#[derive(clap::Args, Debug, Clone)]
pub struct ExecArgs {
    /// Run CMD with `/bin/sh -c` after each file received and verified, with the file in the
    /// environment: EDM_CAST_PATH, EDM_CAST_NAME, EDM_CAST_SIZE, EDM_CAST_MD5, EDM_CAST_SHA256,
    /// EDM_CAST_SESSION, EDM_CAST_SENDER, EDM_CAST_SIGNED_BY, EDM_CAST_TREE (a folder sent: once
    /// per file of it, this the folder), EDM_CAST_VERIFIED (`blocks` or `file`: see --verify-file).
    /// Receiving goes on meanwhile; a failure is reported and never stops recv.
    #[arg(long, value_name = "CMD")]
    pub exec: Option<String>,
    /// Kill a --exec command (and what it started) still running after this many seconds.
    #[arg(long, value_name = "SECS", default_value = "300", value_parser = seconds, requires = "exec")]
    pub exec_timeout: Duration,
}

/// The commands of one `recv`.
pub struct Exec {
    command: Arc<str>,
    timeout: Duration,
    slots: Arc<Semaphore>,
    runs: JoinSet<()>,
    lines: StatusLines,
    failed: Arc<AtomicUsize>,
}

impl Exec {
    /// With `--exec`, the runner; it must be used inside the runtime.
    pub fn new(args: &ExecArgs, lines: StatusLines) -> Option<Self> {
        Some(Exec {
            command: args.exec.as_deref()?.into(),
            timeout: args.exec_timeout,
            slots: Arc::new(Semaphore::new(RUNNING)),
            runs: JoinSet::new(),
            lines,
            failed: Arc::default(),
        })
    }

    /// Starts the command for the file at `path`, absolute (in the background: this returns at
    /// once).
    pub fn run(&mut self, path: &Path, file: &Delivered) {
        while self.runs.try_join_next().is_some() {}
        let report = Report {
            session: format!("{:08x}", file.session),
            path: path.to_owned(),
            lines: self.lines.clone(),
            failed: self.failed.clone(),
        };
        if self.runs.len() >= QUEUED {
            return report.failed(
                None,
                format!("not run: {QUEUED} commands are running or waiting already"),
            );
        }
        let env = environment(path, file.size, &file.digests, None, file);
        let (command, timeout, slots) = (self.command.clone(), self.timeout, self.slots.clone());
        self.runs
            .spawn(run_reported(command, env, timeout, slots, report));
    }

    /// Starts the command for every file of the tree in place at `root` (absolute), in the
    /// manifest's order, at most `RUNNING` at once (in the background: this returns at once).
    pub fn run_tree(&mut self, root: &Path, placed: Vec<Placed>, file: &Delivered) {
        while self.runs.try_join_next().is_some() {}
        let session = format!("{:08x}", file.session);
        if self.runs.len() >= QUEUED {
            for f in &placed {
                Report {
                    session: session.clone(),
                    path: root.join(&f.path),
                    lines: self.lines.clone(),
                    failed: self.failed.clone(),
                }
                .failed(
                    None,
                    format!("not run: {QUEUED} commands are running or waiting already"),
                );
            }
            return;
        }
        let (command, timeout, slots) = (self.command.clone(), self.timeout, self.slots.clone());
        let (lines, failed) = (self.lines.clone(), self.failed.clone());
        // What the runs need of the session, not its list of files again.
        let file = Delivered {
            tree: None,
            signed_by: file.signed_by.clone(),
            ..*file
        };
        let root = root.to_owned();
        self.runs.spawn(async move {
            // Each run's variables are made when it starts: only a few are held at a time.
            futures_util::stream::iter(placed)
                .for_each_concurrent(RUNNING, |f| {
                    let path = root.join(&f.path);
                    let env = environment(&path, f.size, &f.digests, Some(&root), &file);
                    let report = Report {
                        session: session.clone(),
                        path,
                        lines: lines.clone(),
                        failed: failed.clone(),
                    };
                    run_reported(command.clone(), env, timeout, slots.clone(), report)
                })
                .await;
        });
    }

    /// Waits for the commands started (each bounded by `--exec-timeout`).
    pub async fn finish(&mut self) {
        while self.runs.join_next().await.is_some() {}
    }

    /// Runs that failed so far.
    pub fn failed(&self) -> usize {
        self.failed.load(Ordering::Relaxed)
    }
}

/// Runs the command once a slot is free, and reports how it went.
async fn run_reported(
    command: Arc<str>,
    env: Vec<(&'static str, String)>,
    timeout: Duration,
    slots: Arc<Semaphore>,
    report: Report,
) {
    // The semaphore is never closed: a permit always comes.
    let Ok(_slot) = slots.acquire_owned().await else {
        return;
    };
    let started = Instant::now();
    match run_one(&command, env, timeout).await {
        Ok(()) => report.lines.emit(Event::ExecDone {
            session: report.session.clone(),
            path: report.path.clone(),
            secs: started.elapsed().as_secs_f64(),
        }),
        Err((exit, why)) => report.failed(exit, why),
    }
}

/// Where a run's outcome goes.
struct Report {
    session: String,
    path: PathBuf,
    lines: StatusLines,
    failed: Arc<AtomicUsize>,
}

impl Report {
    fn failed(&self, exit: Option<i32>, why: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        eprintln!(
            "edm-cast: --exec for {}: {why}; receiving goes on",
            self.path.display()
        );
        self.lines.emit(Event::ExecFailed {
            session: self.session.clone(),
            path: self.path.clone(),
            exit,
            error: why,
        });
    }
}

/// What the command learns about the file at `path` (of `size` bytes, with `digests`; in the tree
/// at `tree`, if it is one of a tree's), only through these variables.
fn environment(
    path: &Path,
    size: u64,
    digests: &FileDigests,
    tree: Option<&Path>,
    file: &Delivered,
) -> Vec<(&'static str, String)> {
    let (md5, sha256) = status_lines::hex(digests);
    vec![
        ("EDM_CAST_PATH", path.display().to_string()),
        (
            "EDM_CAST_NAME",
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        ),
        ("EDM_CAST_SIZE", size.to_string()),
        ("EDM_CAST_MD5", md5),
        ("EDM_CAST_SHA256", sha256),
        ("EDM_CAST_SESSION", format!("{:08x}", file.session)),
        ("EDM_CAST_SENDER", file.sender.ip().to_string()),
        (
            "EDM_CAST_SIGNED_BY",
            file.signed_by.clone().unwrap_or_default(),
        ),
        (
            "EDM_CAST_TREE",
            tree.map(|t| t.display().to_string()).unwrap_or_default(),
        ),
        // A tree's file was checked against its SHA-256 as it was unpacked.
        (
            "EDM_CAST_VERIFIED",
            match tree {
                Some(_) => Verified::File,
                None => file.verified,
            }
            .as_str()
            .to_owned(),
        ),
    ]
}

/// Runs the command once: Ok if it exited 0 in time, else its exit code (if it exited) and why.
async fn run_one(
    command: &str,
    env: Vec<(&'static str, String)>,
    timeout: Duration,
) -> Result<(), (Option<i32>, String)> {
    // Its output goes to stderr: recv's stdout is for the paths (or the status lines).
    let stdout = std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| (None, format!("cannot start /bin/sh: {e}")))?;
    let mut child = tokio::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(command)
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::from(stdout))
        // Its own process group, so that a timeout (or recv's end) stops what it started too.
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| (None, format!("cannot start /bin/sh: {e}")))?;
    let group = child.id().map(Group);
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) => {
            // It ended: what it left running in the background is its own business.
            std::mem::forget(group);
            checked(status)
        }
        Ok(Err(e)) => Err((None, format!("cannot wait for it: {e}"))),
        Err(_) => Err((
            None,
            format!(
                "still running after --exec-timeout {} s: killed",
                timeout.as_secs_f64()
            ),
        )),
    }
}

fn checked(status: ExitStatus) -> Result<(), (Option<i32>, String)> {
    if status.success() {
        Ok(())
    } else {
        Err((status.code(), format!("the command failed ({status})")))
    }
}

/// A running command's process group, killed when dropped: on a timeout, or when `recv` ends
/// (interrupted) with the command still running.
struct Group(u32);

impl Drop for Group {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the process group of a child spawned with process_group(0) and not
        // yet reaped, so the group id is still its own.
        unsafe { libc::kill(-(self.0 as i32), libc::SIGKILL) };
    }
}
