//! The web server: listeners, connections (TLS, header-read and write-stall
//! timeouts), and the graceful stop; the endpoints are [`super::routes`].
//!
//! It only reads what the pollers last published; no request reaches
//! Partner Center or changes state.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::body::ResponseBody;
use super::routes::Routes;
use crate::collect::state::ExporterState;
use crate::http::web::{WebSecurity, tls::ALPN_H2};

/// How long a client may take to send its request headers.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long open connections get to finish after a stop signal.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// How long a client may take none of a response before it is dropped.
pub const DEFAULT_WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// How many scrapes may be in flight at once unless `--web.max-requests`
/// says otherwise: node_exporter's default.
pub const DEFAULT_MAX_REQUESTS: usize = 40;

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
    let routes = Arc::new(Routes::new(
        state,
        settings.telemetry_path,
        settings.max_requests,
        settings.web.clone(),
    ));
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
    web: &crate::http::web::ActiveWebConfig,
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

#[cfg(test)]
mod tests {
    use super::*;

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
