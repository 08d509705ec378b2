//! `edm-cast get URL`: asks the lab's `edm-cast serve` for a URL and receives it from the session
//! the server names (joining a running one late if the class already started), like `recv`.

use crate::cli::{Network, Receiving, seconds};
use crate::error::Error;
use crate::file::listener::{Listener, Listening};
use crate::file::recv::delivered;
use crate::file::status_lines::{Event, StatusArg, StatusLines, Summary};
use crate::http::fetch;
use crate::net;
use crate::rt::{self, Shutdown};
use edm_cast_proto::{Answer, ReceiveError, Requester, Trust};
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Sessions tried before giving up: one can end just as we are told to join it.
const ATTEMPTS: u32 = 3;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The http:// or https:// URL to get.
    pub url: String,
    /// The server's group and port (as given to `serve`), and the interface to use.
    #[command(flatten)]
    pub net: Network,
    /// The server, HOST or HOST:PORT (default port 5006). Default: found by its announce.
    #[arg(long)]
    pub server: Option<String>,
    #[command(flatten)]
    pub receiving: Receiving,
    /// Give up if no server answers within this many seconds.
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = seconds)]
    pub timeout: Duration,
    #[command(flatten)]
    pub status: StatusArg,
}

pub fn run(args: Args) -> Result<ExitCode, Error> {
    if !fetch::is_url(&args.url) {
        return Err(Error::Usage(format!(
            "{:?} is not an http:// or https:// URL",
            args.url
        )));
    }
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
                .ok_or_else(|| Error::Other(format!("--server: cannot resolve {s}")))
        })
        .transpose()?;
    let iface = net::interface_addr(args.net.iface.as_deref(), args.net.group)?;
    let lines = StatusLines::open(&args.status)?;
    let how = Listening {
        lines: lines.clone(),
        ..Listening::new(&args.receiving, Some(Duration::from_secs(5)))?
    };
    // Said at once: finding the server can take up to --timeout.
    eprintln!(
        "asking the edm-cast server {} for {}…",
        server.map_or(format!("on {}", args.net.group), |s| format!("at {s}")),
        args.url
    );
    lines.emit(Event::Requesting {
        url: args.url.clone(),
        group: args.net.group.to_string(),
        server: server.map(|s| s.to_string()),
    });
    let mut failed = 0;
    let result = rt::runtime()?.block_on(async {
        let mut shutdown = Shutdown::new()?;
        let mut last = None;
        for _ in 0..ATTEMPTS {
            let (session, port) = ask(&args, server, iface, &how.trust, &mut shutdown).await?;
            let group = args.net.group.with_port(port);
            let listener = Listener::new(
                group,
                iface,
                Listening {
                    session: Some(session),
                    ..how.clone()
                },
            )?;
            let r = listener.receive(&[], &mut shutdown).await;
            if let Err(e) = &r.file
                && r.session.is_some()
            {
                failed += 1;
                lines.emit(Event::SessionFailed {
                    session: r.session.map(|s| format!("{s:08x}")),
                    error: e.to_string(),
                });
            }
            match r.file {
                Ok(path) => {
                    // With status lines on stdout, the path goes to stderr.
                    if lines.on_stdout() {
                        eprintln!("{}", path.display());
                    } else {
                        println!("{}", path.display());
                    }
                    delivered(&path, r.delivered.as_ref(), &lines, &mut None);
                    return Ok(std::path::absolute(&path).unwrap_or(path));
                }
                // The session ended as we came: ask again, for a new one.
                Err(
                    e @ (Error::NoSession { .. } | Error::Receive(ReceiveError::LeftBehind { .. })),
                ) => {
                    tracing::debug!("session {session:08x}: {e}; asking again");
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.expect("at least one attempt"))
    });
    lines.emit(Event::Summary(Summary::Get {
        exit: result.as_ref().map_or_else(Error::code, |_| 0),
        error: result.as_ref().err().map(ToString::to_string),
        url: args.url.clone(),
        path: result.as_ref().ok().cloned(),
        failed,
    }));
    result.map(|_| ExitCode::SUCCESS)
}

/// Finds the server and asks it for the URL: the session and port to join.
async fn ask(
    args: &Args,
    server: Option<SocketAddr>,
    iface: net::Iface,
    trust: &Option<Trust>,
    shutdown: &mut Shutdown,
) -> Result<(u32, u16), Error> {
    let timeout = args.timeout;
    // The server's announces come on the group; its answers on our own unicast socket.
    let announces = match server {
        Some(_) => None,
        None => Some(net::register(net::group_socket(args.net.group, iface)?)?),
    };
    let unicast = net::register(net::feedback_socket(iface)?)?;
    let mut requester = Requester::new(
        rt::random_u64() as u32,
        args.url.clone(),
        server,
        trust.clone(),
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
                    requester.handle_datagram(Instant::now(), from, &a[..n]);
                }
            }
            r = unicast.recv_from(&mut b) => {
                if let Ok((n, from)) = r {
                    requester.handle_datagram(Instant::now(), from, &b[..n]);
                }
            }
            stop = shutdown.recv() => return Err(Error::Interrupted(stop)),
            _ = tokio::time::sleep_until(wake.into()) => {
                if Instant::now() >= deadline {
                    return Err(Error::NoServer {
                        group: server.map_or(args.net.group.to_string(), |s| s.to_string()),
                        secs: timeout.as_secs_f64(),
                    });
                }
            }
        }
    }
}
