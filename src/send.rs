//! `edm-cast send FILE|URL`: one session, from a file or from a download that is multicast while
//! it arrives.

use crate::cache::{Cache, Size};
use crate::digest::hex;
use crate::error::Error;
use crate::fetch;
use crate::net::{self, Group};
use crate::pace::Rate;
use crate::policy::Policy;
use crate::session::Session;
use crate::source;
use crate::ui::{self, SenderView};
use edm_cast_proto::SenderConfig;
use edm_cast_proto::wire::FeedbackAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The file to send, or an http:// or https:// URL to download and send while it arrives.
    pub source: String,
    /// Multicast group, ADDR or ADDR:PORT.
    #[arg(long, default_value = "239.1.1.1")]
    pub group: Group,
    /// Interface to send on: a name (eth0) or one of its IPv4 addresses. Default: the route's.
    #[arg(long)]
    pub iface: Option<String>,
    /// Link rate to send at, in bit/s with k/M/G units. Keep it below the slowest link on the
    /// way (a 100 Mbit/s switch port: 95M; a dedicated gigabit LAN: 900M).
    #[arg(long, default_value = "100M")]
    pub rate: Rate,
    /// Multicast TTL: 1 keeps the packets on the local network.
    #[arg(long, default_value_t = 1)]
    pub ttl: u32,
    /// Start once this many receivers have said hello.
    #[arg(long, default_value_t = 1)]
    pub min_receivers: usize,
    /// Start after this many seconds even if fewer receivers said hello. Default: wait for them.
    #[arg(long, value_name = "SECS")]
    pub wait: Option<f64>,
    /// Drop a receiver that has been silent this many seconds (it is reported as not done).
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    pub drop_after: f64,
    /// Name announced to receivers. Default: the file's name (for a URL: its last path segment).
    #[arg(long)]
    pub name: Option<String>,
    /// URL only: keep downloads in DIR, and send a URL from there while the web server says it
    /// is unchanged (ETag / Last-Modified).
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
    /// Largest size of --cache; least recently used downloads go first.
    #[arg(long, value_name = "SIZE", default_value = "20G")]
    pub cache_size: Size,
    /// Source symbols per block (K): larger blocks cost receivers more CPU per decode.
    #[arg(long, default_value_t = 1024, hide = true)]
    pub block_symbols: u16,
}

pub fn run(args: Args) -> Result<ExitCode, Error> {
    let wait = args.wait.map(|w| crate::secs(w, "--wait")).transpose()?;
    let drop_after = crate::secs(args.drop_after, "--drop-after")?;
    let iface = net::interface_addr(args.iface.as_deref())?;
    let socket = net::sender_socket(args.group, iface, args.ttl, 0)?;

    let mut source = if fetch::is_url(&args.source) {
        let cache = args
            .cache
            .as_deref()
            .map(|d| Cache::open(d, args.cache_size).map(Arc::new))
            .transpose()?;
        // The operator's own command: any address may be fetched (serve is stricter).
        let agent = fetch::agent(Arc::new(Policy::allow_all()));
        source::url(&agent, &args.source, cache.as_ref())?
    } else {
        if args.cache.is_some() {
            return Err(Error::Usage("--cache is for URLs".into()));
        }
        source::file(&PathBuf::from(&args.source), None)?
    };
    if let Some(n) = &args.name {
        source.name = n.clone();
    }
    let port = net::local_port(&socket)?;
    let session = crate::random_u64() as u32;
    let cfg = SenderConfig {
        session,
        block_symbols: args.block_symbols,
        min_receivers: args.min_receivers,
        wait,
        receiver_timeout: drop_after,
        feedback: FeedbackAddr::Source { port },
        ..SenderConfig::default()
    };
    let sender = source.sender(cfg)?;
    eprintln!(
        "edm-cast: sending {} ({}, {}) to {} at {}, session {session:08x}; waiting for {} receiver(s){}",
        source.name,
        source.size.map_or("size not known yet".into(), ui::bytes),
        match source.md5 {
            Some(m) => format!("md5 {}", hex(&m)),
            None => "downloading".into(),
        },
        args.group,
        args.rate,
        args.min_receivers,
        wait.map(|w| format!(" for up to {} s", w.as_secs_f64()))
            .unwrap_or_default(),
    );
    let runtime = crate::runtime()?;
    let mut session = Session::new(sender, source, args.group, args.rate, SenderView::new());
    runtime.block_on(async { session.run(net::register(socket)?, true).await })?;
    session.view.finish(&session.sender);
    Ok(session.summary(args.min_receivers))
}
