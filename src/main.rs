//! edm-cast: one file to a whole classroom over IP multicast, with RaptorQ fountain codes.
//!
//! The protocol lives in the `edm-cast-proto` crate (`proto/`); this binary is the shell around it:
//! command line, sockets, pacing, files and the terminal.

mod cache;
mod datapath;
mod digest;
mod error;
mod fetch;
mod get;
mod net;
mod output;
mod pace;
mod policy;
mod recv;
mod send;
mod serve;
mod session;
mod source;
mod ui;
mod verify;
mod video;
mod watch;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "edm-cast",
    version,
    about = "Send one file to a whole LAN at once over IP multicast (RaptorQ FEC)",
    after_help = "Examples:
  teacher$ edm-cast send ubuntu.iso --group 239.1.1.1 --min-receivers 8
  teacher$ edm-cast send https://example.org/big.iso --group 239.1.1.1 --min-receivers 8
  student$ edm-cast recv --group 239.1.1.1 --out ~/Downloads
  server$  edm-cast serve --group 239.1.1.1 --cache /srv/edm-cache
  student$ edm-cast get https://example.org/big.iso --out ~/Downloads
  server$  edm-cast video --from pi                      # live camera, relayed while watched
  student$ edm-cast watch pi

Exit codes: 0 success; 1 error; 2 (send) some receivers did not get the file; 130 interrupted."
)]
struct Cli {
    /// More log output (-v debug, -vv trace); RUST_LOG works too.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Send a file, or a URL while it downloads, to every receiver on the group; exits when all
    /// have it.
    #[command(after_help = "Examples:
  edm-cast send ubuntu.iso --group 239.1.1.1 --min-receivers 8
  edm-cast send image.img --iface eth0 --rate 900M --min-receivers 30 --wait 60
  edm-cast send https://example.org/big.iso --min-receivers 8 --cache /srv/edm-cache")]
    Send(send::Args),
    /// Receive the next file sent on the group, check its MD5, and print its path.
    #[command(after_help = "Examples:
  edm-cast recv --group 239.1.1.1 --out ~/Downloads
  edm-cast recv --iface eth0 --out /srv/images --keep")]
    Recv(recv::Args),
    /// Run the lab's download manager: students' `get URL` requests are sent once, from the
    /// cache or downloaded with cut-through, to everyone who asks.
    #[command(after_help = "Examples:
  edm-cast serve --group 239.1.1.1 --cache /srv/edm-cache --cache-size 200G
  edm-cast serve --iface eth0 --rate 900M --allow 10.20.0.0/16")]
    Serve(serve::Args),
    /// Ask the lab's server for a URL and receive it with the class.
    #[command(after_help = "Examples:
  edm-cast get https://example.org/big.iso --out ~/Downloads
  edm-cast get https://example.org/big.iso --server labserver")]
    Get(get::Args),
    /// Relay live H.264 sources (e.g. a Pi camera) as multicast RTP with FEC, while someone watches.
    #[command(after_help = "Examples:
  pi$     rpicam-vid -t 0 --inline --intra 30 -o udp://SERVER:5000
  server$ edm-cast video --from pi        # pi = raw H.264 on udp://:5000 unless --source says otherwise
  server$ edm-cast video --from pi --from cam2 --source cam2=rtp://:5002 --run-on-demand cam2='ffmpeg ...'")]
    Video(video::Args),
    /// Watch a relayed channel: starts ffplay (or VLC), or with --sdp writes an SDP for any player.
    #[command(after_help = "Examples:
  edm-cast watch pi
  edm-cast watch pi --sdp pi.sdp        # then: vlc pi.sdp")]
    Watch(watch::Args),
}

/// Every command's runtime: one thread for the network; a few more, started on demand, for the
/// blocking work of a receiver (decoding, the disk).
pub fn runtime() -> Result<tokio::runtime::Runtime, error::Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(4)
        .build()
        .map_err(|e| error::Error::Usage(format!("cannot start the runtime: {e}")))
}

/// A number of seconds from the command line, as a duration; `flag` names it in the error.
pub fn secs(value: f64, flag: &str) -> Result<std::time::Duration, error::Error> {
    std::time::Duration::try_from_secs_f64(value)
        .map_err(|_| error::Error::Usage(format!("{flag}: {value} is not a number of seconds")))
}

/// A random number for session and receiver ids, seeded by the standard library's per-process keys.
pub fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.write_u32(std::process::id());
    h.finish()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
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
        Command::Send(args) => send::run(args),
        Command::Recv(args) => recv::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Get(args) => get::run(args),
        Command::Video(args) => video::run(args),
        Command::Watch(args) => watch::run(args),
    };
    result.unwrap_or_else(|e| {
        eprintln!("edm-cast: {e}");
        match e {
            error::Error::Interrupted => ExitCode::from(130),
            _ => ExitCode::FAILURE,
        }
    })
}
