//! The web server: `/metrics`, the landing page, health and readiness.
//!
//! It only reads what the poller last published; no request reaches
//! Partner Center or changes state.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::server::conn::{http1, http2};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::build_info;
use crate::metrics::CONTENT_TYPE;
use crate::state::{ExporterState, SourceStatus};
use crate::web::{Denial, WebSecurity, tls::ALPN_H2};

/// How long a client may take to send its request headers.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long open connections get to finish after a stop signal.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// How long a client may take none of a response before it is dropped.
pub const DEFAULT_WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// How many scrapes may be in flight at once unless `--web.max-requests`
/// says otherwise: node_exporter's default.
pub const DEFAULT_MAX_REQUESTS: usize = 40;

/// Bodies smaller than this are sent as they are: gzip would not pay off.
const MIN_GZIP_BYTES: usize = 1024;

/// The most hyper buffers per connection, in either direction.
///
/// Reading, it is the largest request head (request line and headers)
/// accepted: a longer one is answered `431` and the connection closed.
/// Prometheus sends well under 1 KiB, a bearer token or a cookie a few
/// KiB more; 16 KiB is also Node.js' default limit, and it keeps thousands
/// of half-sent heads to tens of megabytes, where hyper's default (about
/// 400 KiB) would allow close to a gigabyte.
///
/// Writing, it is how much of a response hyper may hold before it waits
/// for the socket; a scrape keeps its slot until its body is written out,
/// or, for a body smaller than this, handed to hyper (see [`ResponseBody`]).
const MAX_BUFFER_BYTES: usize = 16 * 1024;

/// What the server needs besides its listeners and the shared state.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// The path metrics are served on, `/metrics` by default.
    pub telemetry_path: String,
    /// How long open connections get to finish after a stop signal.
    pub shutdown_grace: Duration,
    /// How long a client may take, from connecting or from its previous
    /// request, to send a request's headers.
    pub header_read_timeout: Duration,
    /// How many requests to the telemetry path may be in flight at once;
    /// more are answered `503`. 0 means no limit.
    pub max_requests: usize,
    /// How long a connection may accept none of a response that is being
    /// sent before it is closed.
    pub write_stall_timeout: Duration,
    /// TLS, basic auth and response headers from `--web.config.file`;
    /// `None` serves plain HTTP to anyone.
    pub web: Option<Arc<WebSecurity>>,
}

/// Why a listen address could not be used.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {address}: {source}")]
pub struct BindError {
    pub address: String,
    pub source: std::io::Error,
}

/// Binds a `--web.listen-address` value: `host:port`, `[v6]:port`, or
/// `:port` for every interface (IPv6 and IPv4 where the host has IPv6,
/// IPv4 alone where it does not).
pub async fn bind(address: &str) -> Result<TcpListener, BindError> {
    let error = |source| BindError {
        address: address.to_owned(),
        source,
    };
    if let Some(port) = address.strip_prefix(':') {
        let port: u16 = port.parse().map_err(|_| {
            error(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the port is not a number from 0 to 65535",
            ))
        })?;
        return bind_every_interface(port).map_err(error);
    }
    TcpListener::bind(address).await.map_err(error)
}

/// One dual-stack IPv6 socket, whatever the host's `bindv6only` default;
/// IPv4 alone where the host has no IPv6.
fn bind_every_interface(port: u16) -> std::io::Result<TcpListener> {
    let dual_stack = || -> std::io::Result<TcpListener> {
        use socket2::{Domain, Protocol, Socket, Type};
        let socket = Socket::new(Domain::IPV6, Type::STREAM, Some(Protocol::TCP))?;
        socket.set_only_v6(false)?;
        socket.set_reuse_address(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&SocketAddr::from(([0u16; 8], port)).into())?;
        socket.listen(1024)?;
        TcpListener::from_std(socket.into())
    };
    dual_stack().or_else(|v6_error| {
        let ipv4 =
            std::net::TcpListener::bind(SocketAddr::from(([0u8; 4], port))).and_then(|listener| {
                listener.set_nonblocking(true)?;
                TcpListener::from_std(listener)
            });
        ipv4.map_err(|v4_error| {
            std::io::Error::new(
                v4_error.kind(),
                format!("IPv6: {v6_error}; IPv4: {v4_error}"),
            )
        })
    })
}

/// Serves HTTP on every listener until `shutdown` is cancelled, then lets
/// open connections finish for up to `settings.shutdown_grace`.
pub async fn serve(
    listeners: Vec<TcpListener>,
    state: Arc<ExporterState>,
    settings: ServerSettings,
    shutdown: CancellationToken,
) {
    let graceful = GracefulShutdown::new();
    let routes = Arc::new(Routes {
        state,
        telemetry_path: settings.telemetry_path,
        scrape_slots: ScrapeSlots::new(settings.max_requests),
        web: settings.web.clone(),
    });
    if let Some(web) = &settings.web {
        tokio::spawn(web.clone().watch(shutdown.clone()));
    }
    // HTTP/1.1 only over plain TCP: it is what scrapers speak there, and its
    // header-read timer starts as soon as a connection opens, so a client
    // that connects and sends nothing is closed too. (Protocol sniffing for
    // HTTP/2 prior knowledge would wait for bytes without any limit.)
    //
    // The header-read timer also runs between the requests of a keep-alive
    // connection, so idle connections are closed after the same time.
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout)
        .max_buf_size(MAX_BUFFER_BYTES);
    // HTTP/2 only over TLS, when ALPN picked it (`http2` in the web
    // configuration). It has no header-read timer: a connection that
    // neither sends nor answers pings within the same time is closed.
    let mut h2_builder = http2::Builder::new(TokioExecutor::new());
    h2_builder
        .timer(TokioTimer::new())
        .keep_alive_interval(settings.header_read_timeout)
        .keep_alive_timeout(settings.header_read_timeout)
        .max_header_list_size(MAX_BUFFER_BYTES as u32)
        .max_send_buf_size(MAX_BUFFER_BYTES);
    let builders = Arc::new(Builders {
        http1: builder,
        http2: h2_builder,
        handshake_timeout: settings.header_read_timeout,
    });

    // One accept task per listener feeds a single loop that owns the
    // graceful-shutdown tracker, which cannot be shared between tasks.
    let (accepted_tx, mut accepted_rx) = mpsc::channel(64);
    let mut accept_loops = JoinSet::new();
    for listener in listeners {
        accept_loops.spawn(accept_loop(listener, accepted_tx.clone()));
    }
    drop(accepted_tx);
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = accepted_rx.recv() => match accepted {
                Some(accepted) => accepted,
                None => break,
            },
        };
        let stream = StallGuard::new(stream, settings.write_stall_timeout);
        match settings.web.as_ref().map(|web| web.current()) {
            Some(web) if web.tls().is_some() => {
                serve_tls_connection(stream, peer, &builders, &routes, graceful.watcher(), &web);
            }
            _ => serve_connection(stream, peer, &builders.http1, &routes, &graceful),
        }
    }
    accept_loops.shutdown().await;

    let open = graceful.count();
    if open > 0 {
        tracing::info!(connections = open, "waiting for open connections to finish");
    }
    if tokio::time::timeout(settings.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            grace_seconds = settings.shutdown_grace.as_secs_f64(),
            "connections still open after the shutdown grace period; closing them"
        );
    }
}

async fn accept_loop(listener: TcpListener, accepted: mpsc::Sender<(TcpStream, SocketAddr)>) {
    loop {
        match listener.accept().await {
            Ok(connection) => {
                // As Go's net/http and nginx do: a response is written in
                // several pieces (gzip header, parts, trailer), and with
                // Nagle's algorithm the last small one waits for the
                // client's delayed ACK, up to 40 ms on Linux.
                if let Err(err) = connection.0.set_nodelay(true) {
                    tracing::debug!(error = %err, "cannot set TCP_NODELAY");
                }
                if accepted.send(connection).await.is_err() {
                    return;
                }
            }
            Err(err) => {
                // Usually out of file descriptors: back off instead of spinning.
                tracing::warn!(error = %err, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

fn serve_connection(
    stream: StallGuard,
    peer: SocketAddr,
    builder: &http1::Builder,
    routes: &Arc<Routes>,
    graceful: &GracefulShutdown,
) {
    let connection = graceful
        .watch(builder.serve_connection(TokioIo::new(stream), service(routes.clone(), peer)));
    tokio::spawn(async move {
        if let Err(err) = connection.await {
            tracing::debug!(%peer, error = %err, "connection ended with an error");
        }
    });
}

/// How connections are served once accepted.
struct Builders {
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
    /// How long a client may take to complete its TLS handshake: the
    /// header-read timeout, so a client that connects and never handshakes
    /// is dropped as one that never sends a request is.
    handshake_timeout: Duration,
}

/// Serves one connection over TLS, with the TLS settings in force when it
/// was accepted: HTTP/2 when ALPN chose it, HTTP/1.1 otherwise.
fn serve_tls_connection(
    stream: StallGuard,
    peer: SocketAddr,
    builders: &Arc<Builders>,
    routes: &Arc<Routes>,
    watcher: Watcher,
    web: &crate::web::ActiveWebConfig,
) {
    let Some(acceptor) = web.tls().cloned() else {
        return;
    };
    let builders = builders.clone();
    let service = service(routes.clone(), peer);
    tokio::spawn(async move {
        let stream =
            match tokio::time::timeout(builders.handshake_timeout, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(err)) => {
                    tracing::debug!(%peer, error = %err, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake not completed in time; closing");
                    return;
                }
            };
        let h2 = stream.get_ref().1.alpn_protocol() == Some(ALPN_H2);
        let io = TokioIo::new(stream);
        let result = if h2 {
            watcher
                .watch(builders.http2.serve_connection(io, service))
                .await
        } else {
            watcher
                .watch(builders.http1.serve_connection(io, service))
                .await
        };
        if let Err(err) = result {
            tracing::debug!(%peer, error = %err, "connection ended with an error");
        }
    });
}

/// The request handler of one connection.
fn service(
    routes: Arc<Routes>,
    peer: SocketAddr,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = Response<ResponseBody>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<ResponseBody>, Infallible>> + Send,
> + Clone
+ Send
+ 'static {
    hyper::service::service_fn(move |request| {
        let routes = routes.clone();
        async move { Ok::<_, Infallible>(routes.respond(request, peer).await) }
    })
}

/// A connection's socket that fails a write the client has taken none of
/// for `limit`, which closes the connection.
///
/// hyper has no write timeout: without this, a client that sends a request
/// and never reads the answer would keep its connection, and a scrape its
/// slot under `--web.max-requests`, for as long as it liked. The limit is on
/// stalls, not on the whole response, so a slow but reading client is served.
struct StallGuard {
    stream: TcpStream,
    limit: Duration,
    /// Runs from the first write the socket could not take, until one it can.
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl StallGuard {
    fn new(stream: TcpStream, limit: Duration) -> Self {
        Self {
            stream,
            limit,
            stalled: None,
        }
    }

    fn guard<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if poll.is_ready() {
            self.stalled = None;
            return poll;
        }
        let limit = self.limit;
        let stalled = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        if stalled.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "the client took none of the response for {}",
                    humantime::format_duration(limit)
                ),
            )));
        }
        Poll::Pending
    }
}

impl AsyncRead for StallGuard {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for StallGuard {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.stream).poll_write(cx, buf);
        this.guard(cx, poll)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        this.guard(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.stream).poll_flush(cx);
        this.guard(cx, poll)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// The request router and the state it reads.
struct Routes {
    state: Arc<ExporterState>,
    telemetry_path: String,
    scrape_slots: ScrapeSlots,
    /// Basic auth, rate limit and extra headers, when configured.
    web: Option<Arc<WebSecurity>>,
}

/// The `--web.max-requests` limit, like promhttp's `MaxRequestsInFlight`,
/// on the telemetry path only: `/healthz` and the other small pages still
/// answer while scrapes are refused, so an overload is visible as such.
///
/// A scrape holds its slot until its body has been handed to the socket
/// (see [`ResponseBody`]), not just until it is rendered: a client that
/// asks for the metrics and does not read them keeps its slot until it is
/// dropped for stalling (see [`StallGuard`]), which bounds the memory such
/// clients can tie up to `max_requests` bodies.
struct ScrapeSlots {
    /// `None` when there is no limit.
    slots: Option<Arc<Semaphore>>,
    limit: usize,
}

impl ScrapeSlots {
    fn new(limit: usize) -> Self {
        // A semaphore holds at most MAX_PERMITS; any limit that high is no
        // limit in practice.
        let slots =
            (limit > 0).then(|| Arc::new(Semaphore::new(limit.min(Semaphore::MAX_PERMITS))));
        Self { slots, limit }
    }

    /// `Ok(None)` without a limit, `Ok(Some(slot))` within it, `Err(())`
    /// when every slot is taken.
    fn try_take(&self) -> Result<Option<OwnedSemaphorePermit>, ()> {
        match &self.slots {
            None => Ok(None),
            Some(slots) => slots.clone().try_acquire_owned().map(Some).map_err(|_| ()),
        }
    }
}

impl Routes {
    /// The web configuration's gate, then the endpoint.
    async fn respond(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
    ) -> Response<ResponseBody> {
        let Some(web) = &self.web else {
            return self.handle(&request, peer);
        };
        let active = web.current();
        let mut response = match web
            .admit(&active, request.uri().path(), request.headers())
            .await
        {
            Ok(()) => self.handle(&request, peer),
            Err(Denial::Unauthorized) => {
                tracing::debug!(%peer, path = request.uri().path(), "basic auth failed; answering 401");
                let mut response = text(StatusCode::UNAUTHORIZED, "401 Unauthorized\n");
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(
                        "Basic realm=\"partner-center-exporter\", charset=\"UTF-8\"",
                    ),
                );
                response
            }
            Err(Denial::RateLimited) => {
                text(StatusCode::TOO_MANY_REQUESTS, "429 Too Many Requests\n")
            }
        };
        active.add_headers(response.headers_mut());
        response
    }

    fn handle(&self, request: &Request<Incoming>, peer: SocketAddr) -> Response<ResponseBody> {
        let path = request.uri().path();
        let method = request.method();
        let response = if path == self.telemetry_path {
            allow_get(method).unwrap_or_else(|| match self.scrape_slots.try_take() {
                Ok(slot) => self.metrics(request.headers(), slot),
                Err(()) => {
                    tracing::debug!(%peer, limit = self.scrape_slots.limit, "too many scrapes in flight; answering 503");
                    too_many_scrapes(self.scrape_slots.limit)
                }
            })
        } else {
            match path {
                "/" => allow_get(method).unwrap_or_else(|| self.landing_page()),
                "/healthz" => allow_get(method).unwrap_or_else(|| text(StatusCode::OK, "OK\n")),
                "/readyz" => allow_get(method).unwrap_or_else(|| self.readiness()),
                _ => text(StatusCode::NOT_FOUND, "404 page not found\n"),
            }
        };
        tracing::debug!(%method, path, status = response.status().as_u16(), "request");
        if method == Method::HEAD {
            without_body(response)
        } else {
            response
        }
    }

    /// A scrape: the parts rendered ahead put together, compressed as one
    /// gzip member when the client accepts gzip; nothing is rendered or
    /// compressed here (see [`crate::exposition`]).
    fn metrics(
        &self,
        request_headers: &HeaderMap,
        slot: Option<OwnedSemaphorePermit>,
    ) -> Response<ResponseBody> {
        let exposition = self.state.exposition();
        let mut response = Response::builder()
            .header(header::CONTENT_TYPE, CONTENT_TYPE)
            .header(header::VARY, "Accept-Encoding");
        let compressed = (accepts_gzip(request_headers)
            && exposition.plain_len() >= MIN_GZIP_BYTES)
            .then(|| exposition.gzip_frames())
            .flatten();
        let frames = match compressed {
            Some(frames) => {
                response = response.header(header::CONTENT_ENCODING, "gzip");
                frames
            }
            None => exposition.plain_frames(),
        };
        response
            .body(ResponseBody::frames(frames, slot))
            .unwrap_or_else(|_| text(StatusCode::INTERNAL_SERVER_ERROR, "cannot build response\n"))
    }

    /// `/readyz`: 200 once every enabled source has finished its first
    /// poll and at least one has succeeded; the body names each source
    /// and its state either way.
    fn readiness(&self) -> Response<ResponseBody> {
        let mut body = if self.state.is_ready() {
            "ready\n".to_owned()
        } else {
            "not ready: waiting until every source has finished its first poll and one has succeeded\n"
                .to_owned()
        };
        for status in self.state.statuses() {
            body.push_str(&format!(
                "{}: {}\n",
                status.source,
                readiness_state(&status)
            ));
        }
        let code = if self.state.is_ready() {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        text(code, body)
    }

    /// `/`: what the exporter is, its links, and a row per source.
    fn landing_page(&self) -> Response<ResponseBody> {
        let format_time = |time: Option<chrono::DateTime<chrono::Utc>>| {
            time.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                .unwrap_or_else(|| "never".to_owned())
        };
        let mut rows = String::new();
        for status in self.state.statuses() {
            let mut result = match (&status.last_poll_at, &status.last_error) {
                (None, _) => "no poll has finished yet".to_owned(),
                (Some(_), None) => format!("succeeded, {} series", status.series),
                (Some(_), Some(error)) => format!("failed: {error}"),
            };
            if status.withdrawn {
                result.push_str(" (series withdrawn: no success within poll.max_staleness)");
            }
            rows.push_str(&format!(
                "<tr><td>{source}</td><td>{last_poll}</td><td>{result}</td><td>{series}</td><td>{last_success}</td></tr>\n",
                source = html_escape(status.source.as_str()),
                last_poll = format_time(status.last_poll_at),
                result = html_escape(&result),
                series = status.series,
                last_success = format_time(status.last_success_at),
            ));
        }
        let path = html_escape(&self.telemetry_path);
        let page = format!(
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\"><title>Partner Center Exporter</title></head>\n<body>\n\
<h1>Partner Center Exporter</h1>\n\
<p>Prometheus exporter for Microsoft Partner Center license data. Version {version} (revision {revision}).</p>\n\
<ul>\n<li><a href=\"{path}\">Metrics</a></li>\n<li><a href=\"/healthz\">Health</a></li>\n<li><a href=\"/readyz\">Readiness</a></li>\n</ul>\n\
<h2>Sources</h2>\n<table>\n\
<tr><th align=\"left\">Source</th><th align=\"left\">Last poll</th><th align=\"left\">Result</th><th align=\"left\">Series</th><th align=\"left\">Last success</th></tr>\n\
{rows}</table>\n</body>\n</html>\n",
            version = html_escape(build_info::VERSION),
            revision = html_escape(build_info::REVISION),
        );
        Response::builder()
            .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
            .body(ResponseBody::new(Bytes::from(page)))
            .unwrap_or_else(|_| text(StatusCode::INTERNAL_SERVER_ERROR, "cannot build response\n"))
    }
}

/// One source's line on `/readyz`.
fn readiness_state(status: &SourceStatus) -> String {
    let mut state = match (&status.last_poll_at, &status.last_error) {
        (None, _) => "waiting for the first poll".to_owned(),
        (Some(_), None) => format!("up, {} series", status.series),
        (Some(_), Some(_)) if status.last_success_at.is_some() => format!(
            "down: the last poll failed; serving {} series from the last success",
            status.series
        ),
        (Some(_), Some(_)) => "down: no poll has succeeded yet".to_owned(),
    };
    if status.withdrawn {
        state.push_str(" (series withdrawn: no success within poll.max_staleness)");
    }
    state
}

/// A response body of ready frames that keeps the scrape slot it was
/// given until hyper has written it out.
///
/// Several frames let a scrape send the parts of `/metrics` as they are
/// stored, shared with every other scrape, with no copy into one buffer.
///
/// hyper drops a body as soon as the body reports its end, which for a
/// plain `Full<Bytes>` is as soon as its one frame has been taken, before
/// any of it reaches the socket. While it holds a slot, this body reports
/// no end after its last frame; so hyper, once its write buffer holds more
/// than [`MAX_BUFFER_BYTES`], flushes it to the socket before it looks at
/// the body again, finds the response complete, and drops the body and slot.
pub struct ResponseBody {
    /// Frames not yet taken, in order; none is empty.
    frames: VecDeque<Bytes>,
    /// Bytes in `frames`.
    remaining: u64,
    slot: Option<OwnedSemaphorePermit>,
}

impl ResponseBody {
    fn new(data: Bytes) -> Self {
        Self::frames(vec![data], None)
    }

    fn empty() -> Self {
        Self::frames(Vec::new(), None)
    }

    fn frames(frames: Vec<Bytes>, slot: Option<OwnedSemaphorePermit>) -> Self {
        let frames: VecDeque<Bytes> = frames.into_iter().filter(|f| !f.is_empty()).collect();
        let remaining = frames.iter().map(|frame| frame.len() as u64).sum();
        Self {
            frames,
            remaining,
            slot,
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        match this.frames.pop_front() {
            Some(frame) => {
                this.remaining -= frame.len() as u64;
                Poll::Ready(Some(Ok(Frame::data(frame))))
            }
            None => {
                this.slot = None;
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.slot.is_none() && self.frames.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// The answer to a HEAD request: the GET answer's status and headers,
/// with its length stated, and no body (RFC 9110 §9.3.2). A scrape slot
/// the body held is released at once.
fn without_body(response: Response<ResponseBody>) -> Response<ResponseBody> {
    let (mut parts, body) = response.into_parts();
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(body.remaining));
    Response::from_parts(parts, ResponseBody::empty())
}

/// The answer to a scrape beyond `--web.max-requests`.
fn too_many_scrapes(limit: usize) -> Response<ResponseBody> {
    text(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("503 too many scrapes in flight (limit {limit}); try again later\n"),
    )
}

/// `None` for GET and HEAD; otherwise the 405 answer.
fn allow_get(method: &Method) -> Option<Response<ResponseBody>> {
    if method == Method::GET || method == Method::HEAD {
        return None;
    }
    let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "405 method not allowed\n");
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    Some(response)
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Whether `Accept-Encoding` allows gzip (RFC 9110 §12.5.3): its own
/// q-value if gzip is listed, otherwise that of `*`; `q=0` refuses.
fn accepts_gzip(headers: &HeaderMap) -> bool {
    let mut gzip = None;
    let mut any = None;
    let entries = headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','));
    for entry in entries {
        let mut parts = entry.split(';');
        let coding = parts.next().unwrap_or("").trim();
        let quality = parts
            .filter_map(|param| param.split_once('='))
            .find(|(name, _)| name.trim().eq_ignore_ascii_case("q"))
            .and_then(|(_, value)| value.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
            gzip = Some(quality);
        } else if coding == "*" {
            any = Some(quality);
        }
    }
    gzip.or(any).is_some_and(|quality| quality > 0.0)
}

fn html_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(accept_encoding: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_str(accept_encoding).expect("header"),
        );
        headers
    }

    #[test]
    fn gzip_negotiation() {
        assert!(accepts_gzip(&headers("gzip")));
        assert!(accepts_gzip(&headers("deflate, GZIP;q=0.5")));
        assert!(accepts_gzip(&headers("*")));
        assert!(!accepts_gzip(&headers("gzip;q=0")));
        assert!(
            !accepts_gzip(&headers("gzip; Q=0")),
            "the parameter name is case-insensitive"
        );
        assert!(
            !accepts_gzip(&headers("gzip;q=0, *")),
            "an explicit refusal beats *"
        );
        assert!(!accepts_gzip(&headers("*;q=0")));
        assert!(
            accepts_gzip(&headers("*;q=0, gzip")),
            "an explicit gzip beats a refused *"
        );
        assert!(!accepts_gzip(&headers("identity")));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            html_escape("<script>alert('x')</script> & \"y\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;y&quot;"
        );
    }

    #[tokio::test]
    async fn bind_refuses_bad_addresses_with_the_address_in_the_message() {
        for address in [":notaport", ":70000", "nonsense"] {
            let err = bind(address).await.expect_err("refused");
            assert!(err.to_string().contains(address), "{err}");
        }
        let listener = bind("127.0.0.1:0").await.expect("loopback");
        assert!(listener.local_addr().expect("addr").ip().is_loopback());
    }

    #[tokio::test]
    async fn a_port_alone_listens_on_ipv4_and_ipv6() {
        let listener = bind(":0").await.expect("every interface");
        let port = listener.local_addr().expect("addr").port();
        // Hosts without IPv6 bind IPv4 alone; only where ::1 exists must it answer.
        let has_ipv6 = std::net::TcpListener::bind("[::1]:0").is_ok();
        if !has_ipv6 {
            eprintln!("no IPv6 on this host; only IPv4 checked");
        }
        let clients: &[&str] = if has_ipv6 {
            &["127.0.0.1", "::1"]
        } else {
            &["127.0.0.1"]
        };
        let expected = clients.len();
        let accept = tokio::spawn(async move {
            for _ in 0..expected {
                listener.accept().await.expect("accept");
            }
        });
        for host in clients {
            tokio::net::TcpStream::connect((*host, port))
                .await
                .unwrap_or_else(|err| panic!("not reachable over {host}: {err}"));
        }
        accept.await.expect("every connection accepted");
    }

    #[tokio::test]
    async fn accepted_connections_send_without_nagle_delay() {
        let listener = bind("127.0.0.1:0").await.expect("loopback");
        let address = listener.local_addr().expect("addr");
        let (accepted, mut connections) = mpsc::channel(1);
        let accepting = tokio::spawn(accept_loop(listener, accepted));
        let _client = TcpStream::connect(address).await.expect("connect");
        let (stream, _) = connections.recv().await.expect("accepted");
        assert!(stream.nodelay().expect("TCP_NODELAY readable"));
        accepting.abort();
    }
}
