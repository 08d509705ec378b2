//! The command line: the commands, the argument groups several of them share, and value parsers.

use crate::error::Error;
use crate::file::output::{Folder, Rules};
use crate::http::cache::{Cache, Size};
use crate::net::Group;
use crate::net::pace::Rate;
use crate::{dist, download, file, keys, video};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

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

Exit codes (every one but 0 comes with a last line on stderr that says why):
  0    success
  1    error
  2    send: some receivers did not get the file, or fewer than --min-receivers took part
  3    send --wait: nobody joined, so nothing was sent (unless --send-anyway)
  64   the command line is wrong (an unknown option, a value that is not valid), or its --config file
  130  interrupted (Ctrl-C)
  143  terminated (SIGTERM)"
)]
pub struct Cli {
    /// More log output (-v debug, -vv trace); RUST_LOG works too.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Read options from a TOML file whose keys are the long option names (`out = "/srv/inbox"`,
    /// `keep = true`, `trust = ["edm1-…"]`); an option on the command line wins over the file's.
    #[arg(long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Send a file, or a URL while it downloads, to every receiver on the group; exits when all
    /// have it.
    #[command(after_help = "Examples:
  edm-cast send ubuntu.iso --group 239.1.1.1 --min-receivers 8
  edm-cast send image.img --iface eth0 --rate 900M --min-receivers 30 --wait 60
  edm-cast send https://example.org/big.iso --min-receivers 8 --cache /srv/edm-cache")]
    Send(file::send::Args),
    /// Receive the next file sent on the group, check its MD5, and print its path.
    #[command(after_help = "Examples:
  edm-cast recv --group 239.1.1.1 --out ~/Downloads
  edm-cast recv --iface eth0 --out /srv/images --keep")]
    Recv(file::recv::Args),
    /// Run the lab's download manager: students' `get URL` requests are sent once, from the
    /// cache or downloaded with cut-through, to everyone who asks.
    #[command(after_help = "Examples:
  edm-cast serve --group 239.1.1.1 --cache /srv/edm-cache --cache-size 200G
  edm-cast serve --iface eth0 --rate 900M --allow 10.20.0.0/16")]
    Serve(download::serve::Args),
    /// Ask the lab's server for a URL and receive it with the class.
    #[command(after_help = "Examples:
  edm-cast get https://example.org/big.iso --out ~/Downloads
  edm-cast get https://example.org/big.iso --server labserver")]
    Get(download::get::Args),
    /// Relay live H.264 sources (e.g. a Pi camera) as multicast RTP with FEC, while someone watches.
    #[command(after_help = "Examples:
  pi$     rpicam-vid -t 0 --inline --intra 30 -o udp://SERVER:5000
  server$ edm-cast video --from pi        # pi = raw H.264 on udp://:5000 unless --source says otherwise
  server$ edm-cast video --from pi --from cam2 --source cam2=rtp://:5002 --run-on-demand cam2='ffmpeg ...'")]
    Video(video::relay::Args),
    /// Watch a relayed channel: starts ffplay (or VLC), or with --sdp writes an SDP for any player.
    #[command(after_help = "Examples:
  edm-cast watch pi
  edm-cast watch pi --sdp pi.sdp        # then: vlc --demux avformat pi.sdp")]
    Watch(video::watch::Args),
    /// Make a key pair: the private key signs what a teacher sends (--key); the public key, one
    /// line, goes to the lab PCs (--trust, or /etc/edm-cast/trusted).
    #[command(after_help = "Examples:
  teacher$ edm-cast keygen ~/.config/edm-cast/teacher.key
  teacher$ edm-cast keygen --show ~/.config/edm-cast/teacher.key
  lab PC $ edm-cast recv --trust edm1-...")]
    Keygen(keys::Args),
    /// Write the man pages (edm-cast.1, edm-cast-send.1, ...) into a folder (for packages).
    #[command(hide = true)]
    Manpage(dist::ManpageArgs),
    /// Print the shell completion script for SHELL (for packages).
    #[command(hide = true)]
    Completions(dist::CompletionsArgs),
}

/// Where a file session's datagrams go: `send`, `recv`, `serve`, `get`.
#[derive(clap::Args, Debug, Clone)]
pub struct Network {
    /// Multicast group, ADDR or ADDR:PORT (IPv6: ff15::1 or [ff15::1]:5007).
    #[arg(long, default_value = "239.1.1.1")]
    pub group: Group,
    /// Interface to use: a name (eth0) or one of its addresses (IPv4, or IPv6 for an IPv6 group). Default: the route's.
    #[arg(long)]
    pub iface: Option<String>,
}

/// How a sender sends: `send`, `serve`.
#[derive(clap::Args, Debug, Clone)]
pub struct Sending {
    /// Link rate to send at (for `serve`: all sessions together), in bit/s with k/M/G units. Keep
    /// it below the slowest link on the way (a 100 Mbit/s switch port: 95M; a dedicated gigabit
    /// LAN: 900M). `send` with congestion control (the default): the most it sends at, by default
    /// the interface's link speed (1G where the OS does not say). `serve`: default 100M.
    #[arg(long)]
    pub rate: Option<Rate>,
    /// Multicast TTL: 1 keeps the packets on the local network.
    #[arg(long, default_value = "1", value_parser = ttl)]
    pub ttl: u32,
    /// Drop a receiver that has been silent this many seconds (it is reported as not done).
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = seconds)]
    pub drop_after: Duration,
}

/// Where downloads are kept: `send URL`, `serve`.
#[derive(clap::Args, Debug, Clone)]
pub struct Caching {
    /// Keep downloads in DIR, and send a URL from there while the web server says it is unchanged
    /// (ETag / Last-Modified).
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
    /// Largest size of --cache; least recently used downloads go first.
    #[arg(long, value_name = "SIZE", default_value = "20G")]
    pub cache_size: Size,
}

impl Caching {
    /// The cache, opened (and its folder made), if `--cache` was given.
    pub fn open(&self) -> Result<Option<Arc<Cache>>, Error> {
        self.cache
            .as_deref()
            .map(|d| Cache::open(d, self.cache_size).map(Arc::new))
            .transpose()
    }
}

/// Where a received file goes, who receives it, and whose files it takes: `recv`, `get`.
#[derive(clap::Args, Debug, Clone)]
pub struct Receiving {
    #[command(flatten)]
    pub trusting: keys::Trusting,
    /// This PC's own private key: opens sessions encrypted for it (`send --encrypt --to`).
    #[arg(long, value_name = "PATH")]
    pub key: Option<PathBuf>,
    /// Folder to write the file into (created if missing).
    #[arg(long, default_value = ".")]
    pub out: PathBuf,
    /// Name shown on the sender's screen (and the server's log). Default: this host's name.
    #[arg(long)]
    pub name: Option<String>,
    /// Replace a different file of the same name in --out (and, from `send --sync`, the folder
    /// synced from). Default: keep it, and write the new one as "name (1).ext".
    #[arg(long)]
    pub overwrite: bool,
    /// Keep names that start with a dot. Default: ".bashrc" is written as "_bashrc", so that a
    /// sender cannot plant hidden files (shell startup files in a home folder).
    #[arg(long)]
    pub allow_hidden: bool,
    /// Refuse a file larger than this (like 500M or 20G). A file must also fit in the free space
    /// of --out's disk, less 1 GiB (5% of a disk under 20 GiB).
    #[arg(long, value_name = "SIZE")]
    pub max_size: Option<Size>,
    /// Also compute the whole file's MD5 and SHA-256 and fail if they are not the announced ones.
    /// Default: a file is verified once every block matched the digest the sender published
    /// for it (signed in a signed session), and the MD5 and SHA-256 reported are the announced
    /// ones, which those blocks reproduce; this costs about 2 CPU-s per GB more.
    #[arg(long)]
    pub verify_file: bool,
}

impl Receiving {
    /// Opens --out (created if missing) with these rules; fails now if it cannot be written to.
    pub fn folder(&self) -> Result<Folder, Error> {
        Folder::open(
            &self.out,
            Rules {
                overwrite: self.overwrite,
                allow_hidden: self.allow_hidden,
                max_size: self.max_size.map(|s| s.0),
            },
        )
    }
}

/// A clap error in one line, as every other error: clap's message and tips, then which help to
/// read (clap prints several lines, the usage between them). With no command at all, the help.
pub fn usage_line(e: &clap::Error, args: &[String]) -> String {
    use clap::CommandFactory;
    let text = e.render().to_string();
    if e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        return format!(
            "{}\nedm-cast: no command given: name one of the commands above",
            text.trim_end()
        );
    }
    let said: Vec<String> = text
        .split("\n\n")
        .map(str::trim)
        .filter(|p| !p.is_empty() && !p.starts_with("Usage: ") && !p.starts_with("For more"))
        .map(|p| {
            let words: Vec<&str> = p.split_whitespace().collect();
            words.join(" ").trim_start_matches("error: ").to_owned()
        })
        .collect();
    let cli = Cli::command();
    let help = match args
        .iter()
        .skip(1)
        .find_map(|a| cli.find_subcommand(a).map(|c| c.get_name().to_owned()))
    {
        Some(command) => format!("edm-cast {command} --help"),
        None => "edm-cast --help".into(),
    };
    format!("{} (see {help})", said.join("; "))
}

/// A multicast TTL, 1 to 255. 0 would keep every packet on this host: the class would hear
/// nothing, and the sender would wait for ever.
pub fn ttl(s: &str) -> Result<u32, String> {
    match s.trim().parse::<u32>() {
        Ok(0) => Err("0 keeps the packets on this host, so no PC would hear them: use 1 (this LAN, the default) or more to cross routers".into()),
        Ok(n @ 1..=255) => Ok(n),
        _ => Err(format!("'{s}' is not a TTL: use 1 (this LAN) to 255")),
    }
}

/// A number of seconds (`5`, `0.5`) as a duration.
pub fn seconds(s: &str) -> Result<Duration, String> {
    s.trim()
        .parse::<f64>()
        .ok()
        .and_then(|v| Duration::try_from_secs_f64(v).ok())
        .ok_or_else(|| format!("'{s}' is not a number of seconds"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_parse_and_nonsense_is_refused() {
        assert_eq!(seconds("5"), Ok(Duration::from_secs(5)));
        assert_eq!(seconds("0.25"), Ok(Duration::from_millis(250)));
        for bad in ["-1", "soon", "inf", "NaN", ""] {
            assert!(
                seconds(bad).unwrap_err().contains("number of seconds"),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_ttl_of_0_or_past_255_is_refused() {
        assert_eq!(ttl("1"), Ok(1));
        assert_eq!(ttl("255"), Ok(255));
        assert!(ttl("0").unwrap_err().contains("use 1"));
        for bad in ["256", "-1", "one", ""] {
            assert!(ttl(bad).unwrap_err().contains("not a TTL"), "{bad}");
        }
    }

    #[test]
    fn every_exit_code_is_documented_in_the_help_and_the_readme() {
        use crate::error::Exit;
        use clap::CommandFactory;
        let help = Cli::command().render_long_help().to_string();
        let readme = include_str!("../README.md");
        for exit in Exit::ALL {
            let code = exit.code();
            assert!(
                help.lines()
                    .any(|l| l.trim_start().starts_with(&format!("{code} "))),
                "{code} is not in --help"
            );
            assert!(
                readme.contains(&format!("| {code} |")),
                "{code} is not in README"
            );
        }
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
