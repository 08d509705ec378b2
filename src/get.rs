//! `edm-cast get URL`: asks the lab's `edm-cast serve` for a URL and receives it from the session
//! the server names (joining a running one late if the class already started), like `recv`.

use crate::error::Error;
use crate::net::{self, Group};
use crate::recv::Listener;
use edm_cast_proto::{Answer, ReceiveError, Requester};
use std::net::{SocketAddr, SocketAddrV4, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Sessions tried before giving up: one can end just as we are told to join it.
const ATTEMPTS: u32 = 3;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The http:// or https:// URL to get.
    pub url: String,
    /// Multicast group of the server, ADDR or ADDR:PORT (as given to `serve`).
    #[arg(long, default_value = "239.1.1.1")]
    pub group: Group,
    /// The server, HOST or HOST:PORT (default port 5006). Default: found by its announce.
    #[arg(long)]
    pub server: Option<String>,
    /// Interface to use: a name (eth0) or one of its IPv4 addresses. Default: the route's.
    #[arg(long)]
    pub iface: Option<String>,
    /// Folder to write the file into (created if missing).
    #[arg(long, default_value = ".")]
    pub out: PathBuf,
    /// Give up if no server answers within this many seconds.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub timeout: f64,
    /// Name shown on the server's log. Default: this host's name.
    #[arg(long)]
    pub name: Option<String>,
}

pub fn run(args: Args) -> Result<ExitCode, Error> {
    if !crate::fetch::is_url(&args.url) {
        return Err(Error::Usage(format!(
            "{:?} is not an http:// or https:// URL",
            args.url
        )));
    }
    std::fs::create_dir_all(&args.out).map_err(|source| Error::Write {
        path: args.out.clone(),
        source,
    })?;
    let timeout = Duration::try_from_secs_f64(args.timeout).map_err(|_| {
        Error::Usage(format!(
            "--timeout: {} is not a number of seconds",
            args.timeout
        ))
    })?;
    let server = args
        .server
        .as_deref()
        .map(|s| {
            let with_port = if s.contains(':') {
                s.to_owned()
            } else {
                format!("{s}:5006")
            };
            with_port
                .to_socket_addrs()
                .ok()
                .and_then(|mut a| a.find(SocketAddr::is_ipv4))
                .ok_or_else(|| Error::Usage(format!("--server: cannot resolve {s}")))
        })
        .transpose()?;
    let iface = net::interface_addr(args.iface.as_deref())?;
    let runtime = crate::runtime()?;
    runtime.block_on(async {
        let mut last = None;
        for _ in 0..ATTEMPTS {
            let (session, port) = ask(&args, server, iface, timeout).await?;
            let group = Group(SocketAddrV4::new(*args.group.0.ip(), port));
            let listener = Listener::new(
                group,
                iface,
                args.out.clone(),
                args.name.clone(),
                Some(Duration::from_secs(5)),
                Some(session),
            )?;
            match listener.receive(&[]).await {
                Ok((_, path)) => {
                    println!("{}", path.display());
                    return Ok(ExitCode::SUCCESS);
                }
                // The session ended as we came: ask again, for a new one.
                Err(e @ (Error::NoSession { .. } | Error::Receive(ReceiveError::LeftBehind))) => {
                    tracing::debug!("session {session:08x}: {e}; asking again");
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.expect("at least one attempt"))
    })
}

/// Finds the server and asks it for the URL: the session and port to join.
async fn ask(
    args: &Args,
    server: Option<SocketAddr>,
    iface: std::net::Ipv4Addr,
    timeout: Duration,
) -> Result<(u32, u16), Error> {
    // The server's announces come on the group; its answers on our own unicast socket.
    let announces = match server {
        Some(_) => None,
        None => Some(net::register(net::group_socket(args.group, iface)?)?),
    };
    let unicast = net::register(net::feedback_socket(iface)?)?;
    let mut requester = Requester::new(
        crate::random_u64() as u32,
        args.url.clone(),
        server,
        Instant::now(),
    );
    let deadline = Instant::now() + timeout;
    let (mut a, mut b) = (vec![0u8; 2048], vec![0u8; 2048]);
    let mut out = Vec::new();
    loop {
        while let Some(to) = requester.poll_transmit(Instant::now(), &mut out) {
            if let Err(e) = unicast.send_to(&out, to).await {
                tracing::debug!("request to {to}: {e}");
            }
        }
        match requester.answer() {
            Some(Answer::Offer { session, port }) => return Ok((*session, *port)),
            Some(Answer::Refused(why)) => {
                return Err(Error::Refused {
                    url: args.url.clone(),
                    why: why.clone(),
                });
            }
            None => {}
        }
        let wake = requester.poll_timeout().unwrap_or(deadline).min(deadline);
        tokio::select! {
            r = async { announces.as_ref().expect("guarded").recv_from(&mut a).await }, if announces.is_some() => {
                if let Ok((n, from)) = r {
                    requester.handle_datagram(from, &a[..n]);
                }
            }
            r = unicast.recv_from(&mut b) => {
                if let Ok((n, from)) = r {
                    requester.handle_datagram(from, &b[..n]);
                }
            }
            _ = tokio::time::sleep_until(wake.into()) => {
                if Instant::now() >= deadline {
                    return Err(Error::NoServer {
                        group: server.map_or(args.group.to_string(), |s| s.to_string()),
                        secs: timeout.as_secs(),
                    });
                }
            }
        }
    }
}
