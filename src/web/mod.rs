//! The web side of `send`, `serve` and `video` (`--http ADDR:PORT`): the JSON API over the
//! command's [`Board`]. It runs on a thread and a runtime of its own, so a slow or hostile client
//! never delays the sending.

use crate::error::Error;
use crate::status::Board;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use std::net::SocketAddr;

/// `--http`, `--http-token`: `send`, `serve`, `video`.
#[derive(clap::Args, Debug, Clone)]
pub struct Web {
    /// Serve the dashboard, the JSON API and Prometheus metrics on ADDR:PORT (a bare port is on
    /// loopback: 127.0.0.1:PORT). Off by default.
    #[arg(long, value_name = "ADDR:PORT", value_parser = parse_listen)]
    pub http: Option<SocketAddr>,
    /// The token that actions from the page or the API need (`Authorization: Bearer TOKEN`).
    /// Default for `serve`: a random one, printed at start.
    #[arg(long, value_name = "TOKEN", requires = "http")]
    pub http_token: Option<String>,
}

/// `8080` is `127.0.0.1:8080`; otherwise `ADDR:PORT`.
fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = s.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    s.parse().map_err(|_| {
        format!("'{s}' is not ADDR:PORT (like 127.0.0.1:8080, or 0.0.0.0:8080 for the LAN)")
    })
}

/// Starts the web server for `board` if `--http` was given; returns the address it listens on.
/// The socket is bound before this returns, so a port in use is an error at start.
pub fn start(web: &Web, board: &Board) -> Result<Option<SocketAddr>, Error> {
    let Some(addr) = web.http else {
        return Ok(None);
    };
    let listener = std::net::TcpListener::bind(addr).map_err(|source| Error::Socket {
        what: format!("cannot listen on {addr} (--http)"),
        source,
    })?;
    let local = listener.local_addr().map_err(|source| Error::Socket {
        what: "cannot read the web server's address".into(),
        source,
    })?;
    listener
        .set_nonblocking(true)
        .map_err(|source| Error::Socket {
            what: "cannot set up the web server".into(),
            source,
        })?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Usage(format!("cannot start the web server's runtime: {e}")))?;
    let app = Router::new()
        .route("/api/v1/status", get(status))
        .with_state(board.clone());
    std::thread::Builder::new()
        .name("web".into())
        .spawn(move || {
            runtime.block_on(async move {
                match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => {
                        if let Err(e) = axum::serve(l, app).await {
                            tracing::warn!("web server: {e}");
                        }
                    }
                    Err(e) => tracing::warn!("web server: {e}"),
                }
            })
        })
        .map_err(|source| Error::Socket {
            what: "cannot start the web server's thread".into(),
            source,
        })?;
    Ok(Some(local))
}

async fn status(State(board): State<Board>) -> axum::Json<crate::status::Status> {
    axum::Json(board.snapshot())
}
