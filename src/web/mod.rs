//! The web side of `send`, `serve` and `video` (`--http ADDR:PORT`): the dashboard, the JSON API
//! and its event stream, Prometheus metrics, and the token-protected actions, all over the
//! command's [`Board`]. It runs on a thread and a runtime of its own, so a slow or hostile client
//! never delays the sending. Everything a client can make it hold is bounded: request bodies,
//! event streams.

mod metrics;

use crate::error::Error;
use crate::rt;
use crate::status::{Action, Board};
use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use data_encoding::HEXLOWER;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// `--http`, `--http-token`, `--http-linger`: `send`, `serve`, `video`.
#[derive(clap::Args, Debug, Clone)]
pub struct Web {
    /// Serve the dashboard, the JSON API and Prometheus metrics on ADDR:PORT (a bare port is on
    /// loopback: 127.0.0.1:PORT; 0.0.0.0:PORT for the LAN). Off by default.
    #[arg(long, value_name = "ADDR:PORT", value_parser = parse_listen)]
    pub http: Option<SocketAddr>,
    /// The token that actions from the page or the API need (`Authorization: Bearer TOKEN`).
    /// Default: a random one, printed at start.
    #[arg(long, value_name = "TOKEN", requires = "http", value_parser = parse_token)]
    pub http_token: Option<String>,
    /// Keep the dashboard up this many seconds after the end, so the final figures can be read
    /// (or scraped). Ctrl-C ends the wait.
    #[arg(long, value_name = "SECS", requires = "http", value_parser = crate::cli::seconds)]
    pub http_linger: Option<Duration>,
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

/// A token goes in an HTTP header: visible ASCII, no spaces, and long enough not to be guessed.
fn parse_token(s: &str) -> Result<String, String> {
    if s.len() < 16 || s.len() > 256 || !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("a token is 16 to 256 visible ASCII characters, no spaces".into());
    }
    Ok(s.to_owned())
}

/// Event streams open at once, at most: each holds a connection and a task.
const MAX_STREAMS: usize = 32;

/// Status events a stream sends at most this often (4 a second), however often the board changes.
const EVENT_EVERY: Duration = Duration::from_millis(250);

/// The largest request body taken: an action is a few bytes of JSON.
const MAX_BODY: usize = 4096;

/// The longest URL "send to class" takes.
const MAX_URL: usize = 2048;

/// What the handlers share.
#[derive(Clone)]
struct App {
    board: Board,
    /// The actions' token; None when the command takes no actions.
    token: Option<Arc<str>>,
    streams: Arc<Semaphore>,
    /// Listening on loopback: only requests that name a loopback host are served.
    loopback: bool,
}

/// Starts the web server for `board` if `--http` was given, and says where it is (and the token
/// actions need, when the board takes actions) on stderr; returns the address it listens on.
/// The socket is bound before this returns, so a port in use is an error at start.
///
/// A command that takes actions makes its board with an action channel (`Board::new` or
/// `Board::taking`) and reads [`Action`]s from it; the token is handled here.
pub fn start(web: &Web, board: &Board) -> Result<Option<SocketAddr>, Error> {
    let Some(addr) = web.http else {
        return Ok(None);
    };
    let actions = board.snapshot().actions;
    let token: Option<Arc<str>> = match (&web.http_token, actions) {
        (_, false) => None,
        (Some(t), true) => Some(t.as_str().into()),
        (None, true) => Some(HEXLOWER.encode(&rt::random_bytes::<16>()?).into()),
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
    let actions = match (&token, web.http_token.is_some()) {
        (None, _) => "read-only".to_owned(),
        (Some(_), true) => "actions need the token given with --http-token".to_owned(),
        (Some(t), false) => format!("actions need token {t}"),
    };
    eprintln!("edm-cast: dashboard on http://{local}/ ({actions})");
    if local.ip().is_unspecified() {
        let port = local.port();
        let lan: Vec<String> = if_addrs::get_if_addrs()
            .unwrap_or_default()
            .iter()
            .filter(|i| !i.is_loopback() && i.ip().is_ipv4())
            .map(|i| format!("http://{}:{port}/", i.ip()))
            .collect();
        if !lan.is_empty() {
            eprintln!("edm-cast: on the LAN: {}", lan.join(" "));
        }
    }
    let app = router(App {
        board: board.clone(),
        token,
        streams: Arc::new(Semaphore::new(MAX_STREAMS)),
        loopback: local.ip().is_loopback(),
    });
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

/// `--http-linger`: at the command's end, keeps the process (and so the dashboard) up that long
/// so the final figures can be read or scraped; Ctrl-C or SIGTERM ends the wait.
pub async fn linger(web: &Web, shutdown: &mut rt::Shutdown) {
    if let Some(linger) = web.http_linger {
        tokio::select! {
            _ = tokio::time::sleep(linger) => {}
            _ = shutdown.recv() => {}
        }
    }
}

fn router(app: App) -> Router {
    Router::new()
        .route("/", get(dashboard))
        .route("/api/v1/status", get(status))
        .route("/api/v1/events", get(events))
        .route("/api/v1/sessions", post(send_to_class))
        .route("/api/v1/sessions/{id}/stop", post(stop))
        .route("/metrics", get(metrics))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such page or endpoint") })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn_with_state(app.clone(), guard))
        .with_state(app)
}

/// A JSON error: `{"error": "..."}`.
fn error(code: StatusCode, why: &str) -> Response {
    (code, axum::Json(serde_json::json!({ "error": why }))).into_response()
}

/// DNS rebinding: a page a student opens in their browser may make a name of its own resolve to
/// 127.0.0.1 and read a loopback dashboard as if it were its own site. A loopback server answers
/// only requests addressed to a loopback host. (Actions need the token anyway.) And every
/// answer says: no framing, no sniffing, nothing loaded from elsewhere.
async fn guard(State(app): State<App>, req: Request, next: Next) -> Response {
    if app.loopback {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        if !is_loopback_host(host) {
            return error(
                StatusCode::MISDIRECTED_REQUEST,
                "this dashboard answers on 127.0.0.1 or localhost only",
            );
        }
    }
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
             connect-src 'self'; img-src data:; form-action 'none'; frame-ancestors 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    res
}

/// `127.0.0.1:8080`, `localhost`, `[::1]:8080`, ...
fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(n, _)| n),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

async fn dashboard() -> Response {
    (
        [(header::CACHE_CONTROL, "no-store")],
        Html(include_str!("dashboard.html")),
    )
        .into_response()
}

async fn status(State(app): State<App>) -> axum::Json<crate::status::Status> {
    axum::Json(app.board.snapshot())
}

async fn metrics(State(app): State<App>) -> Response {
    (
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        metrics::render(&app.board.snapshot()),
    )
        .into_response()
}

/// `GET /api/v1/events`: a `status` event with the snapshot at once and whenever the board
/// changes, at most every [`EVENT_EVERY`]; comments keep idle connections open.
async fn events(State(app): State<App>) -> Response {
    let Ok(permit) = app.streams.clone().try_acquire_owned() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many event streams open: try again later",
        );
    };
    let changes = app.board.subscribe();
    let stream = futures_util::stream::unfold(
        (app.board, changes, permit, None::<Instant>),
        |(board, mut changes, permit, last)| async move {
            if let Some(last) = last {
                changes.changed().await.ok()?;
                tokio::time::sleep_until(last + EVENT_EVERY).await;
            }
            // What changed while this stream slept is in this snapshot.
            changes.borrow_and_update();
            let event = Event::default()
                .event("status")
                .json_data(board.snapshot())
                .ok()?;
            Some((
                Ok::<_, Infallible>(event),
                (board, changes, permit, Some(Instant::now())),
            ))
        },
    );
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

/// Whether the request carries the token: None if so, else the answer (401 without one, 403
/// with another). Compared in constant time.
fn unauthorized(app: &App, headers: &HeaderMap) -> Option<Response> {
    let token = app.token.as_deref()?;
    let Some(given) = headers.get(header::AUTHORIZATION) else {
        let mut res = error(
            StatusCode::UNAUTHORIZED,
            "actions need the token: Authorization: Bearer TOKEN",
        );
        res.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return Some(res);
    };
    let given = given.as_bytes().strip_prefix(b"Bearer ").unwrap_or(b"");
    if constant_time_eq::constant_time_eq(given, token.as_bytes()) {
        None
    } else {
        Some(error(StatusCode::FORBIDDEN, "wrong token"))
    }
}

/// What stands before any action of `kind`: the command takes it, the token.
fn admit(app: &App, headers: &HeaderMap, kind: &str) -> Option<Response> {
    if app.token.is_none() {
        return Some(error(
            StatusCode::NOT_FOUND,
            "this command takes no actions: the dashboard is read-only",
        ));
    }
    if !app.board.takes(kind) {
        return Some(error(
            StatusCode::METHOD_NOT_ALLOWED,
            &format!("this command takes no '{kind}' action"),
        ));
    }
    unauthorized(app, headers)
}

/// Passes `action` to the command: 202, or 503 when its queue is full or it has ended.
fn act(app: &App, action: Action) -> Response {
    if app.board.act(action) {
        (
            StatusCode::ACCEPTED,
            axum::Json(serde_json::json!({ "accepted": true })),
        )
            .into_response()
    } else {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the command is busy or ending: try again",
        )
    }
}

#[derive(serde::Deserialize)]
struct SendBody {
    url: String,
}

/// `POST /api/v1/sessions {"url": "..."}`: "send to class".
async fn send_to_class(
    State(app): State<App>,
    headers: HeaderMap,
    body: Result<axum::Json<SendBody>, JsonRejection>,
) -> Response {
    if let Some(res) = admit(&app, &headers, "send") {
        return res;
    }
    let url = match body {
        Ok(axum::Json(b)) => b.url,
        Err(e) => return error(e.status(), &format!("expected {{\"url\": \"...\"}}: {e}")),
    };
    let ok = url.len() <= MAX_URL
        && url::Url::parse(&url).is_ok_and(|u| matches!(u.scheme(), "http" | "https"));
    if !ok {
        return error(
            StatusCode::BAD_REQUEST,
            "the url must be an http:// or https:// URL",
        );
    }
    act(&app, Action::Send { url })
}

/// `POST /api/v1/sessions/{id}/stop`: END goes out to that session's receivers.
async fn stop(State(app): State<App>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Some(res) = admit(&app, &headers, "stop") {
        return res;
    }
    let session = (id.len() == 8)
        .then(|| u32::from_str_radix(&id, 16).ok())
        .flatten();
    let running = app
        .board
        .snapshot()
        .sessions
        .iter()
        .any(|s| s.id.eq_ignore_ascii_case(&id) && s.outcome.is_none());
    match session {
        Some(session) if running => act(&app, Action::Stop { session }),
        Some(_) => error(StatusCode::NOT_FOUND, "no running session with that id"),
        None => error(
            StatusCode::NOT_FOUND,
            "a session id is 8 hex digits, as the dashboard shows it",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::{MAX_BODY, Web, is_loopback_host, start};
    use crate::status::{Action, Board};
    use std::time::Duration;
    use tokio::sync::mpsc;

    const TOKEN: &str = "0123456789abcdef0123";

    /// `serve`'s kind of board (it takes "send to class") with a one-place action queue, its
    /// web server on a free loopback port.
    fn serving() -> (String, mpsc::Receiver<Action>, Board) {
        let (tx, rx) = mpsc::channel(1);
        let board = Board::new("serve", "lab".into(), Some(tx));
        let web = Web {
            http: Some(([127, 0, 0, 1], 0).into()),
            http_token: Some(TOKEN.into()),
            http_linger: None,
        };
        let addr = start(&web, &board).unwrap().unwrap();
        (format!("http://{addr}"), rx, board)
    }

    /// POSTs `body` with the token: (status, body).
    fn post(url: &str, body: &str, host: Option<&str>) -> (u16, String) {
        let mut req = ureq::post(url)
            .timeout(Duration::from_secs(5))
            .set("Authorization", &format!("Bearer {TOKEN}"))
            .set("Content-Type", "application/json");
        if let Some(h) = host {
            req = req.set("Host", h);
        }
        match req.send_string(body) {
            Ok(r) => (r.status(), r.into_string().unwrap()),
            Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap()),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn send_to_class_reaches_the_command_within_bounds() {
        let (base, mut actions, _board) = serving();
        let url = format!("{base}/api/v1/sessions");
        let (code, body) = post(&url, r#"{"url": "https://example.org/a.iso"}"#, None);
        assert_eq!((code, body.as_str()), (202, r#"{"accepted":true}"#));
        assert_eq!(
            actions.try_recv().unwrap(),
            Action::Send {
                url: "https://example.org/a.iso".into()
            }
        );
        // Not a web URL; not JSON; too big: refused, nothing passed on.
        let (code, body) = post(&url, r#"{"url": "file:///etc/passwd"}"#, None);
        assert_eq!(
            (code, body.as_str()),
            (
                400,
                r#"{"error":"the url must be an http:// or https:// URL"}"#
            )
        );
        assert_eq!(post(&url, "url=x", None).0, 400);
        let big = format!(
            r#"{{"url": "https://example.org/{}"}}"#,
            "a".repeat(MAX_BODY)
        );
        assert_eq!(post(&url, &big, None).0, 413);
        assert!(actions.try_recv().is_err());
        // The queue holds one action: the next waits for the command, the one after is "busy".
        let one = r#"{"url": "https://example.org/b.iso"}"#;
        assert_eq!(post(&url, one, None).0, 202);
        let (code, body) = post(&url, one, None);
        assert_eq!(
            (code, body.as_str()),
            (
                503,
                r#"{"error":"the command is busy or ending: try again"}"#
            )
        );
        // A name of someone else's that resolves to loopback (DNS rebinding) is not served.
        let (code, _) = post(&url, one, Some("evil.example:8080"));
        assert_eq!(code, 421);
        assert_eq!(
            actions.try_recv().unwrap(),
            Action::Send {
                url: "https://example.org/b.iso".into()
            }
        );
        assert!(actions.try_recv().is_err());
    }

    #[test]
    fn events_come_at_most_four_a_second_however_often_the_board_changes() {
        use std::io::BufRead;
        use std::time::Instant;
        let (base, _actions, board) = serving();
        let stream = ureq::get(&format!("{base}/api/v1/events"))
            .timeout(Duration::from_secs(10))
            .call()
            .unwrap();
        let busy = std::thread::spawn(move || {
            // A hundred changes a second, for 1.5 s.
            for _ in 0..150 {
                board.set_video(Default::default());
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        let start = Instant::now();
        let mut at = Vec::new();
        for line in std::io::BufReader::new(stream.into_reader()).lines() {
            if line.unwrap() == "event: status" {
                at.push(start.elapsed());
            }
            if at.len() == 6 {
                break;
            }
        }
        busy.join().unwrap();
        for w in at.windows(2) {
            assert!(w[1] - w[0] >= Duration::from_millis(240), "{at:?}");
            assert!(w[1] - w[0] < Duration::from_millis(600), "{at:?}");
        }
    }

    #[test]
    fn event_streams_are_bounded() {
        let (base, _actions, _board) = serving();
        let url = format!("{base}/api/v1/events");
        let open = || {
            ureq::get(&url)
                .timeout(Duration::from_secs(5))
                .call()
                .map_err(Box::new)
        };
        let streams: Vec<_> = (0..super::MAX_STREAMS)
            .map(|_| open().expect("a stream"))
            .collect();
        match open().map_err(|e| *e) {
            Err(ureq::Error::Status(503, r)) => assert_eq!(
                r.into_string().unwrap(),
                r#"{"error":"too many event streams open: try again later"}"#
            ),
            other => panic!("a stream beyond the bound: {other:?}"),
        }
        drop(streams);
        // A closed stream gives its place back once the server notices (at its next write).
        let end = std::time::Instant::now() + Duration::from_secs(30);
        while open().is_err() {
            assert!(std::time::Instant::now() < end, "no place given back");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    #[test]
    fn loopback_hosts() {
        for h in [
            "127.0.0.1:8080",
            "localhost:1",
            "LOCALHOST",
            "[::1]:80",
            "127.1.2.3",
        ] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in [
            "evil.example:8080",
            "10.0.0.1:8080",
            "",
            "127.0.0.1.evil.example",
        ] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }
}
