//! `edm-cast send FILE|URL`: one session, from a file or from a download that is multicast while
//! it arrives; `send FOLDER` or `send FILE FILE FOLDER...`: one session for the whole tree (`tree`).

use super::neighbours::Neighbours;
use super::restart::{self, Content, Restart};
use super::session::{Session, Setup};
use super::source;
use super::status_lines::{Event, Final, StatusArg, StatusLines, Summary};
use super::tree;
use super::view::SenderView;
use crate::cli::{Caching, Network, Sending, seconds};
use crate::error::{Error, Exit};
use crate::http::fetch;
use crate::http::policy::Policy;
use crate::keys::{self, Signing};
use crate::net;
use crate::net::pace::{Rate, WIRE_OVERHEAD};
use crate::rt::{self, Shutdown};
use crate::status::{Action, Board};
use crate::web::{self, Web};
use edm_cast_proto::file::fec::{MAX_DESIGN_LOSS, MAX_LOSS_CAP};
use edm_cast_proto::file::tree::HEADER_LEN;
use edm_cast_proto::wire::MAX_DATAGRAM;
use edm_cast_proto::{CcConfig, Encryption, Fec, SenderConfig};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Where congestion control's slow start begins: safe on any wired LAN, and two doublings from
/// 100 Mbit/s.
const CC_INITIAL: f64 = 25e6;
/// `--min-rate`'s default share of the ceiling (at most `CC_INITIAL`): one PC cannot slow the
/// class below it.
const CC_MIN_SHARE: f64 = 0.1;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The file to send, or an http:// or https:// URL to download and send while it arrives; or a
    /// folder, or several files and folders, sent as one tree in one session.
    #[arg(required = true)]
    pub source: Vec<String>,
    /// With a folder or several sources: leave out files and folders whose name (or path inside
    /// the tree) matches GLOB, e.g. '*.tmp' (repeatable).
    #[arg(long, value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// With a folder: send what symlinks point to (by default they are skipped with a line).
    #[arg(long)]
    pub follow_symlinks: bool,
    #[command(flatten)]
    pub net: Network,
    #[command(flatten)]
    pub sending: Sending,
    /// Start once this many receivers have said hello.
    #[arg(long, default_value_t = 1)]
    pub min_receivers: usize,
    /// Start after this many seconds even if fewer receivers said hello (if none did, end there:
    /// exit 3, unless --send-anyway). Default: wait for them.
    #[arg(long, value_name = "SECS", value_parser = seconds)]
    pub wait: Option<Duration>,
    /// With --wait: send the file even if no receiver said hello (to PCs that cannot answer).
    #[arg(long, requires = "wait")]
    pub send_anyway: bool,
    /// Name announced to receivers. Default: the file's name (for a URL: its last path segment).
    #[arg(long)]
    pub name: Option<String>,
    /// URL only (see --cache).
    #[command(flatten)]
    pub caching: Caching,
    #[command(flatten)]
    pub signing: Signing,
    #[command(flatten)]
    pub web: Web,
    #[command(flatten)]
    pub status: StatusArg,
    /// Encrypt the session: only the PCs listed with --to can read it.
    #[arg(long, requires = "to")]
    pub encrypt: bool,
    /// With --encrypt: a PC that may read the session, by its public key (`edm1-…`) or a file of
    /// keys, one a line (repeatable).
    #[arg(long, value_name = "KEY|FILE", requires = "encrypt")]
    pub to: Vec<String>,
    /// Re-run a session for the PCs it missed, listed in FILE (the restart file the earlier `send`
    /// wrote): start once they have all said hello (with --wait: at most that long); each resumes
    /// from what its `recv` kept. FILE is updated afterwards, or removed once every PC has the file.
    #[arg(long, value_name = "FILE")]
    pub resume_from: Option<PathBuf>,
    /// Sync: send only what the receivers lack. Each `recv` that already has the folder (from an
    /// earlier session) reuses its files with the same SHA-256, and the folder it has is replaced
    /// by the one sent; a PC without it gets everything.
    #[arg(long, conflicts_with = "resume_from")]
    pub sync: bool,
    /// Congestion control: `on` follows the class's slowest followed receiver up to --rate; `off`
    /// sends at --rate (default 100M) whatever the receivers report.
    #[arg(long, value_name = "on|off", default_value = "on", value_parser = ["on", "off"])]
    pub cc: String,
    /// Same as --cc off: send at exactly --rate.
    #[arg(long)]
    pub rate_fixed: bool,
    /// With congestion control: the class is never sent slower than this, and a receiver whose
    /// path takes less is not followed (it collects what reaches it, and is left behind if the
    /// others finish first); nor is one far below the others (under half of the best). Default:
    /// 10% of --rate, at most 25M.
    #[arg(long, value_name = "RATE")]
    pub min_rate: Option<Rate>,
    /// Size each block's first-pass repair for the loss the receivers report, as if at most this
    /// much (one PC claiming more gets the class no more): most receivers then decode every
    /// block without a repair round.
    #[arg(long, value_name = "PERCENT", default_value_t = (MAX_DESIGN_LOSS * 100.0) as u16,
          value_parser = clap::value_parser!(u16).range(0..=(MAX_LOSS_CAP * 100.0) as i64))]
    pub fec_loss_max: u16,
    /// Instead: send this much first-pass repair per block, in percent of its source symbols,
    /// whatever the receivers report (1 was the default before the first pass followed them).
    #[arg(long, value_name = "PERCENT", conflicts_with = "fec_loss_max",
          value_parser = clap::value_parser!(u16).range(0..=100))]
    pub fec_repair: Option<u16>,
    /// Source symbols per block (K): larger blocks cost receivers more CPU per decode.
    #[arg(long, default_value_t = 1024, hide = true)]
    pub block_symbols: u16,
}

pub fn run(args: Args) -> Result<ExitCode, Error> {
    let iface = net::interface_addr(args.net.iface.as_deref(), args.net.group)?;
    let lines = StatusLines::open(&args.status)?;
    let tree = args.source.len() > 1 || Path::new(&args.source[0]).is_dir();
    let first = args.source[0].clone();
    let mut source = if tree {
        tree_source(&args)?
    } else if fetch::is_url(&first) {
        let cache = args.caching.open()?;
        // The operator's own command: any address may be fetched (serve is stricter).
        let agent = fetch::agent(Arc::new(Policy::allow_all()));
        source::url(&agent, &first, cache.as_ref(), &fetch::Limits::default())?
    } else {
        if args.caching.cache.is_some() {
            return Err(Error::Usage("--cache is for URLs".into()));
        }
        source::file(&PathBuf::from(&first), None)?
    };
    match &args.name {
        Some(n) if tree => source.name = tree::announced(n),
        Some(n) => source.name = n.clone(),
        None => {}
    }
    let content = Content {
        name: source.name.clone(),
        // A tree's restart file goes beside its folder, not into it.
        path: PathBuf::from(first.trim_end_matches('/')),
        size: source.size,
        digests: source.digests,
    };
    let rerun = (args.resume_from.as_deref())
        .map(|path| Restart::read(path, &content))
        .transpose()?;
    let wait_for = rerun.as_ref().map(Restart::names).unwrap_or_default();
    let setup = Setup {
        min_receivers: args.min_receivers,
        wait_for: wait_for.clone(),
        wait: args.wait,
        drop_after: args.sending.drop_after,
        block_symbols: args.block_symbols,
        signer: keys::signer(&args.signing)?,
        encryption: encryption(&args)?,
        cc: None,
        sync: args.sync.then(|| sync_prefix(&source)).transpose()?,
        fec: match args.fec_repair {
            Some(percent) => (Fec::Fixed, percent as f64 / 100.0),
            None => (
                Fec::Adaptive {
                    max_loss: args.fec_loss_max as f64 / 100.0,
                },
                SenderConfig::default().proactive,
            ),
        },
    };
    let group = args.net.group;
    let cc_on = args.cc == "on" && !args.rate_fixed;
    if !cc_on && args.min_rate.is_some() {
        return Err(Error::Usage(
            "--min-rate is for congestion control (not with --cc off or --rate-fixed)".into(),
        ));
    }
    let rate = match args.sending.rate {
        Some(r) => r,
        None if cc_on => net::link_speed(group, iface).unwrap_or(Rate(1e9)),
        None => Rate(100e6),
    };
    let setup = Setup {
        cc: cc_on.then(|| CcConfig {
            ceiling: rate.0,
            min_rate: args
                .min_rate
                .map_or((rate.0 * CC_MIN_SHARE).min(CC_INITIAL), |r| r.0.min(rate.0)),
            initial: CC_INITIAL.min(rate.0),
            packet_bits: ((MAX_DATAGRAM + WIRE_OVERHEAD) * 8) as f64,
        }),
        ..setup
    };
    let mut session = Session::open(
        source,
        group,
        iface,
        args.sending.ttl,
        &setup,
        rate,
        SenderView::new(),
    )?;
    eprintln!(
        "edm-cast: sending {} to {group} at {}{rate}, session {:08x}{}; waiting for {} receiver(s){}",
        session.describe(),
        if cc_on { "up to " } else { "" },
        session.id,
        match (&setup.signer, &setup.encryption) {
            (Some(s), None) => format!(", signed by {}", s.key.public().fingerprint()),
            (Some(s), Some(e)) => format!(
                ", signed by {}, encrypted for {} PC(s)",
                s.key.public().fingerprint(),
                e.recipients.len()
            ),
            (None, Some(e)) => format!(", encrypted for {} PC(s), unsigned", e.recipients.len()),
            (None, None) => ", unsigned".into(),
        },
        args.min_receivers,
        args.wait
            .map(|w| format!(" for up to {} s", w.as_secs_f64()))
            .unwrap_or_default(),
    );
    session.report_to(lines.clone());
    if let (Some(path), Some(r)) = (&args.resume_from, &rerun) {
        eprintln!(
            "edm-cast: re-running session {} for the {} PC(s) listed in {}: waiting for {}",
            r.session,
            r.receivers.len(),
            path.display(),
            wait_for.join(", ")
        );
    }
    if let Some(neighbours) = Neighbours::start(group, iface, session.id) {
        session.watch(neighbours);
    }
    if args.wait.is_some() && !args.send_anyway {
        session.end_if_nobody();
    }
    if args.web.http.is_some() {
        // The dashboard's "stop" (with the token) ends this session; `send` starts none.
        let (tx, mut actions) = mpsc::channel(4);
        let board = Board::taking("send", rt::hostname(), Some(tx), vec!["stop"]);
        web::start(&args.web, &board)?;
        let (stop, stopped) = watch::channel(false);
        let id = session.id;
        std::thread::Builder::new()
            .name("actions".into())
            .spawn(move || {
                while let Some(action) = actions.blocking_recv() {
                    if action == (Action::Stop { session: id }) {
                        let _ = stop.send(true);
                    }
                }
            })
            .map_err(|source| Error::Socket {
                what: "cannot start the dashboard's action thread".into(),
                source,
            })?;
        session.stop_on(stopped);
        session.publish(board);
    }
    let runtime = rt::runtime()?;
    let mut shutdown = runtime.block_on(async { Shutdown::new() })?;
    if let Err(e) = runtime.block_on(session.run(Some(&mut shutdown))) {
        summary(&lines, &mut session, e.code(), Some(e.to_string()));
        return Err(e);
    }
    session.finish_view();
    let (code, why) = if session.nobody_joined() {
        let why = format!(
            "nobody joined within --wait {} s, so nothing was sent: is `edm-cast recv` running on the PCs, with the same --group (and --iface)? (--send-anyway sends all the same)",
            args.wait.unwrap_or_default().as_secs_f64()
        );
        eprintln!("edm-cast: {why}");
        (Exit::NobodyJoined.code(), Some(why))
    } else {
        // Before the summary, whose last line says why the exit is 2.
        if !fetch::is_url(&first) {
            restart::after(&session, &content, args.resume_from.as_deref(), &wait_for);
        }
        if lines.on_stdout() {
            session.summary(args.min_receivers, &mut std::io::stderr())
        } else {
            session.summary(args.min_receivers, &mut std::io::stdout())
        }
    };
    summary(&lines, &mut session, code, why);
    runtime.block_on(web::linger(&args.web, &mut shutdown));
    Ok(ExitCode::from(code))
}

/// The `summary` status line: the session's end as the board shows it, and the exit code.
fn summary(lines: &StatusLines, session: &mut Session, exit: u8, error: Option<String>) {
    let s = session.status(std::time::Instant::now());
    lines.emit(Event::Summary(Summary::Send {
        session: s.id,
        outcome: s.outcome.unwrap_or("failed"),
        exit,
        error,
        secs: s.elapsed_secs,
        bytes: s.bytes.total,
        wire_ratio: s.wire_ratio,
        receivers: s.totals,
        list: s
            .receivers
            .into_iter()
            .map(|r| Final {
                id: r.id,
                name: r.name,
                addr: r.addr,
                state: r.state,
                reason: r.reason,
            })
            .collect(),
    }));
}

/// A folder or several sources: their tree stream, sent as the session's file.
fn tree_source(args: &Args) -> Result<source::Source, Error> {
    if let Some(url) = args.source.iter().find(|s| fetch::is_url(s)) {
        return Err(Error::Usage(format!(
            "{url}: a URL is sent on its own, not with other files"
        )));
    }
    let excludes = (args.exclude.iter())
        .map(|g| glob::Pattern::new(g).map_err(|e| Error::Usage(format!("--exclude {g}: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let sources: Vec<PathBuf> = args.source.iter().map(PathBuf::from).collect();
    let name = match &sources[..] {
        [one] => std::path::absolute(one)
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "folder".into()),
        _ => "files".into(),
    };
    let walk = tree::Walk {
        excludes: &excludes,
        follow: args.follow_symlinks,
    };
    let (stream, walked) = walk.stream(&sources)?;
    eprintln!(
        "edm-cast: {name}/: {} files in {} folders, {}{}",
        walked.files,
        walked.folders,
        super::view::bytes(walked.bytes),
        match walked.skipped {
            0 => String::new(),
            n => format!(" ({n} skipped)"),
        }
    );
    let at = sources[0].to_string_lossy();
    let path = PathBuf::from(at.trim_end_matches('/'));
    source::tree(stream, &path, tree::announced(&name), walked.files)
}

/// What a sync session sends first: a tree's header and manifest (receivers need it to find the
/// files they have); nothing for one file.
fn sync_prefix(source: &source::Source) -> Result<u64, Error> {
    if tree::root(&source.name).is_none() {
        return Ok(0);
    }
    let mut header = [0u8; HEADER_LEN];
    source.read_block(&mut header, 0)?;
    let (_, len) = edm_cast_proto::file::tree::parse_header(&header)
        .map_err(|e| Error::Protocol(format!("{}: {e}", source.path.display())))?;
    Ok(HEADER_LEN as u64 + len as u64)
}

/// `--encrypt --to`: a fresh session key for the listed PCs.
fn encryption(args: &Args) -> Result<Option<Encryption>, Error> {
    if !args.encrypt {
        return Ok(None);
    }
    let recipients = keys::public_keys(&args.to, "--to")?;
    Ok(Some(Encryption {
        key: rt::random_bytes()?,
        ephemeral: rt::random_bytes()?,
        recipients,
    }))
}
