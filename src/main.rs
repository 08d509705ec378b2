//! edm-cast: one file to a whole classroom over IP multicast, with RaptorQ fountain codes; the
//! download manager (`serve`, `get`); and live video (`video`, `watch`).
//!
//! The protocol lives in the `edm-cast-proto` crate (`proto/`); this binary is the shell around
//! it, one room per product: `file/`, `download/`, `video/`, on `net/` (sockets, batching, pacing)
//! and `http/` (downloads, cache, address policy).

mod cli;
mod config;
mod dist;
mod download;
mod error;
mod file;
mod http;
mod keys;
mod net;
mod rt;
mod status;
mod video;
mod web;

use clap::{CommandFactory, Parser};
use cli::{Cli, Command};
use error::Exit;
use std::process::ExitCode;

fn main() -> ExitCode {
    // A --config file's options go in as if typed; a wrong one is refused like a wrong flag (64).
    let args = match config::apply(&Cli::command(), std::env::args_os().collect()) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("edm-cast: {e}");
            return e.exit_code();
        }
    };
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        // --help and --version: printed to stdout, exit 0.
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let args: Vec<String> = args
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
            eprintln!("edm-cast: {}", cli::usage_line(&e, &args));
            return Exit::Usage.into();
        }
    };
    let level = match cli.verbose {
        0 => "warn",
        1 => "debug",
        _ => "trace",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let result = match cli.command {
        Command::Send(args) => file::send::run(args),
        Command::Recv(args) => file::recv::run(args),
        Command::Serve(args) => download::serve::run(args),
        Command::Get(args) => download::get::run(args),
        Command::Video(args) => video::relay::run(args),
        Command::Watch(args) => video::watch::run(args),
        Command::Keygen(args) => keys::run(args),
        Command::Manpage(args) => dist::manpages(args),
        Command::Completions(args) => dist::completions(args),
    };
    result.unwrap_or_else(|e| {
        eprintln!("edm-cast: {e}");
        e.exit_code()
    })
}
