//! The guest's only way out: wasi-http's send hook, the allow-list check and one pooled
//! HTTPS client.
//!
//! wasi-http hands every outgoing request of the guest to [`EgressHooks::send_request`]
//! (the crate's stock sender is compiled out: the `default-send-request` feature is off).
//! Here the request is checked against the [`AllowedHosts`] of the sandbox policy, then sent
//! through one hyper client per invocation: rustls with the OS trust store, HTTP/1.1 with
//! keep-alive, so sequential requests of one invocation share one TLS connection. Redirects
//! are never followed (hyper's client does not), so the guest must re-issue every hop and
//! the allow-list sees each of them.
//!
//! The client is built on the first request (or ahead of it, see [`Egress::prepare`]):
//! methods that never touch the network should not pay for TLS. The trust store is read
//! no further than a server needs ([`trust`]).
//!
//! A proxy named by `HTTPS_PROXY` & co. (see [`proxy`]) is only a transport hop: the
//! allow-list is checked against the destination first, the connector then opens an HTTP
//! CONNECT tunnel through the proxy, and TLS runs end to end with the destination inside it.
//! Tunnels are pooled like direct connections.

use std::error::Error as StdError;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
#[cfg(test)]
use rustls::RootCertStore;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Sleep;
use tower_service::Service;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use crate::policy::AllowedHosts;

pub mod proxy;
pub mod trust;
use proxy::{Proxy, ProxyConfig};

type BoxError = Box<dyn StdError + Send + Sync>;
type HttpsClient = Client<TimeoutConnector, WasiBody>;

/// Upper bounds on waiting for the network. The guest's `request-options` may shorten them,
/// never lengthen them, so a server that accepts and never answers cannot hang the plugin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// DNS, TCP connect and TLS handshake of a new connection.
    pub connect: Duration,
    /// From sending the request to the response head (on top of `connect`).
    pub first_byte: Duration,
    /// Between two chunks of the response body.
    pub between_bytes: Duration,
}

impl Timeouts {
    pub const DEFAULT: Timeouts = Timeouts {
        connect: Duration::from_secs(10),
        first_byte: Duration::from_secs(30),
        between_bytes: Duration::from_secs(30),
    };

    /// The host caps, shortened by whatever the guest asked for.
    pub fn limited_by(self, options: Option<&RequestOptions>) -> Timeouts {
        let cap = |cap: Duration, asked: Option<Duration>| asked.map_or(cap, |t| t.min(cap));
        let o = options.copied().unwrap_or_default();
        Timeouts {
            connect: cap(self.connect, o.connect_timeout),
            first_byte: cap(self.first_byte, o.first_byte_timeout),
            between_bytes: cap(self.between_bytes, o.between_bytes_timeout),
        }
    }
}

/// Where trust in server certificates comes from.
#[derive(Clone)]
enum TrustRoots {
    /// The OS store, where OpenSSL would find it (`SSL_CERT_FILE` and `SSL_CERT_DIR`
    /// when set), read no more than needed: see [`trust`].
    Native,
    /// Exactly these roots (tests).
    #[cfg(test)]
    Custom(Arc<RootCertStore>),
}

/// The outgoing-HTTP state of one invocation, shared by all its requests.
pub struct Egress {
    allowed: AllowedHosts,
    timeouts: Timeouts,
    roots: TrustRoots,
    debug: bool,
    /// The proxy the environment names, if any.
    proxy: Arc<ProxyConfig>,
    /// Built on the first request that passes the allow-list, or ahead of it by
    /// [`Egress::prepare`].
    client: OnceLock<Result<HttpsClient, String>>,
    /// TCP connections opened so far (debug output and tests).
    connections: Arc<AtomicUsize>,
}

impl Egress {
    /// Egress with the OS trust store, the default timeouts and the proxy the environment
    /// names.
    pub fn new(allowed: AllowedHosts, debug: bool) -> Self {
        Self::build(
            allowed,
            Timeouts::DEFAULT,
            TrustRoots::Native,
            ProxyConfig::from_env(),
            debug,
        )
    }

    /// Egress that trusts exactly `roots`, for tests against a throwaway CA.
    #[cfg(test)]
    pub fn with_roots(allowed: AllowedHosts, timeouts: Timeouts, roots: RootCertStore) -> Self {
        Self::with_proxy(allowed, timeouts, roots, ProxyConfig::Direct)
    }

    /// The same, through `proxy`.
    #[cfg(test)]
    pub fn with_proxy(
        allowed: AllowedHosts,
        timeouts: Timeouts,
        roots: RootCertStore,
        proxy: ProxyConfig,
    ) -> Self {
        Self::build(
            allowed,
            timeouts,
            TrustRoots::Custom(Arc::new(roots)),
            proxy,
            false,
        )
    }

    fn build(
        allowed: AllowedHosts,
        timeouts: Timeouts,
        roots: TrustRoots,
        proxy: ProxyConfig,
        debug: bool,
    ) -> Self {
        Self {
            allowed,
            timeouts,
            roots,
            debug,
            proxy: Arc::new(proxy),
            client: OnceLock::new(),
            connections: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// How many TCP connections this egress has opened.
    #[cfg(test)]
    pub fn connections_opened(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }

    /// Sends one request of the guest, or refuses it.
    pub async fn send(
        &self,
        mut request: Request<WasiBody>,
        options: Option<RequestOptions>,
    ) -> Result<Response<WasiBody>, HttpError> {
        if !self.allowed.allows(request.uri()) {
            if self.debug {
                log(format_args!(
                    "denied {} (not in the allow-list)",
                    origin(request.uri())
                ));
            }
            return Err(HttpError::HttpRequestDenied);
        }
        // The destination is the URI's authority; hyper derives `Host` from it. The guest
        // cannot set `Host` through wasi-http anyway; drop any that slipped in.
        request.headers_mut().remove(http::header::HOST);

        let timeouts = self.timeouts.limited_by(options.as_ref());
        let client = self.client()?;
        let attempt = Arc::new(Attempt::new(timeouts.connect));
        let exchange = ATTEMPT.scope(attempt.clone(), client.request(request));
        let response = match first_byte_deadline(exchange, &attempt, timeouts.first_byte).await {
            None => return Err(HttpError::ConnectionReadTimeout),
            Some(Err(err)) => {
                if self.debug {
                    log(format_args!("request failed: {}", chain_text(&err)));
                }
                return Err(error_code(&err));
            }
            Some(Ok(response)) => response,
        };
        Ok(response.map(|body| TimeoutBody::new(body, timeouts.between_bytes).boxed_unsync()))
    }

    /// Builds the HTTPS client (trust store, TLS configuration) on a thread of its own, so
    /// it is ready when the component's first request comes: reading the OS trust store's
    /// bundle takes about a millisecond, as long as loading the component. A request that comes
    /// first waits for this build instead of starting another.
    pub fn prepare(self: &Arc<Self>) {
        let egress = self.clone();
        std::thread::spawn(move || {
            let _ = egress.client.get_or_init(|| egress.make_client());
        });
    }

    fn client(&self) -> Result<&HttpsClient, HttpError> {
        self.client
            .get_or_init(|| self.make_client())
            .as_ref()
            .map_err(|msg| HttpError::InternalError(Some(msg.clone())))
    }

    fn make_client(&self) -> Result<HttpsClient, String> {
        if let ProxyConfig::Invalid(why) = &*self.proxy {
            // Never fall back to a direct connection the user's network may not allow.
            log(format_args!("{why}"));
            return Err(why.clone());
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS configuration: {e}"))?;
        let tls = match &self.roots {
            // Full webpki verification, with roots read as needed (the API calls any
            // verifier but rustls's own "dangerous").
            TrustRoots::Native => {
                tls.dangerous()
                    .with_custom_certificate_verifier(Arc::new(trust::OsRoots::new(
                        trust::RootLocations::from_env(),
                        &provider,
                        self.debug,
                    )))
            }
            #[cfg(test)]
            TrustRoots::Custom(roots) => tls.with_root_certificates(roots.clone()),
        }
        .with_no_client_auth();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(TcpConnector {
                connections: self.connections.clone(),
                debug: self.debug,
                proxy: self.proxy.clone(),
                proxy_reported: Arc::new(AtomicBool::new(false)),
            });
        let connector = TimeoutConnector {
            inner: https,
            cap: self.timeouts.connect,
        };
        Ok(Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(4)
            .build(connector))
    }
}

/// The hook object wasi-http calls; one per invocation, sharing one [`Egress`].
pub struct EgressHooks(pub Arc<Egress>);

impl WasiHttpHooks for EgressHooks {
    /// hyper sets `Host` from the URI authority, the only destination there is.
    fn set_host_header(&mut self) -> bool {
        false
    }

    fn send_request(
        &mut self,
        request: Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (
                        Response<WasiBody>,
                        Box<dyn Future<Output = Result<(), HttpError>> + Send>,
                    ),
                    HttpError,
                >,
            > + Send,
    > {
        let egress = self.0.clone();
        Box::new(async move {
            let response = egress.send(request, options).await?;
            // The pooled client drives the connection itself; there is no per-request I/O
            // task to hand back.
            let io: Box<dyn Future<Output = Result<(), HttpError>> + Send> =
                Box::new(async { Ok(()) });
            Ok((response, io))
        })
    }
}

tokio::task_local! {
    /// The request being sent. The connector is shared by the pool, so what it needs to
    /// know about the request (its connect timeout) and what the request needs to know
    /// about the connect (when it finished) travel with the task instead.
    static ATTEMPT: Arc<Attempt>;
}

/// One request's view of its connection.
struct Attempt {
    connect_timeout: Duration,
    phase: std::sync::Mutex<Phase>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// No new connection (yet): a pooled one may be used.
    Idle,
    /// Resolving, connecting, TLS; bounded by the connect timeout.
    Connecting,
    /// A new connection for this request became ready at this instant.
    Connected(Instant),
}

impl Attempt {
    fn new(connect_timeout: Duration) -> Self {
        Self {
            connect_timeout,
            phase: std::sync::Mutex::new(Phase::Idle),
        }
    }

    fn phase(&self) -> Phase {
        *self.phase.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set(&self, phase: Phase) {
        *self.phase.lock().unwrap_or_else(|e| e.into_inner()) = phase;
    }
}

/// Runs `exchange` until the response head arrives, allowing `first_byte` from the moment
/// the request could be sent: from the start when a pooled connection is used, from the end
/// of the handshake when a new one was opened (the connect has its own timeout). `None`
/// means the first byte did not come in time.
async fn first_byte_deadline<F: Future>(
    exchange: F,
    attempt: &Attempt,
    first_byte: Duration,
) -> Option<F::Output> {
    let start = tokio::time::Instant::now();
    tokio::pin!(exchange);
    loop {
        let phase = attempt.phase();
        let deadline = match phase {
            Phase::Idle => start + first_byte,
            // The connector's own timeout ends this phase; look again when it has.
            Phase::Connecting => tokio::time::Instant::now() + attempt.connect_timeout,
            Phase::Connected(at) => tokio::time::Instant::from_std(at) + first_byte,
        };
        tokio::select! {
            output = &mut exchange => return Some(output),
            () = tokio::time::sleep_until(deadline) => {
                if attempt.phase() == phase && !matches!(phase, Phase::Connecting) {
                    return None;
                }
            }
        }
    }
}

/// Bounds DNS + TCP + TLS of a new connection.
#[derive(Clone)]
struct TimeoutConnector {
    inner: HttpsConnector<TcpConnector>,
    /// Used when the connect runs outside a request's task (hyper finishing it in the
    /// background after a pooled connection won the race).
    cap: Duration,
}

impl Service<Uri> for TimeoutConnector {
    type Response = <HttpsConnector<TcpConnector> as Service<Uri>>::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let attempt = ATTEMPT.try_with(Arc::clone).ok();
        let limit = attempt.as_ref().map_or(self.cap, |a| a.connect_timeout);
        if let Some(attempt) = &attempt {
            attempt.set(Phase::Connecting);
        }
        let connecting = self.inner.call(uri);
        Box::pin(async move {
            let result = match tokio::time::timeout(limit, connecting).await {
                Ok(result) => result,
                Err(_elapsed) => Err(Box::new(ConnectError::Timeout) as BoxError),
            };
            if let Some(attempt) = attempt {
                attempt.set(match result {
                    Ok(_) => Phase::Connected(Instant::now()),
                    // A failed connect fails the request; nothing waits on the phase.
                    Err(_) => Phase::Idle,
                });
            }
            result
        })
    }
}

/// Resolves and connects, directly or through the proxy; the one place in the host that
/// opens sockets.
#[derive(Clone)]
struct TcpConnector {
    connections: Arc<AtomicUsize>,
    debug: bool,
    proxy: Arc<ProxyConfig>,
    /// A proxy failure is explained on stderr once per invocation.
    proxy_reported: Arc<AtomicBool>,
}

impl TcpConnector {
    /// The proxy to reach `uri` through, if any.
    fn proxy_for(&self, uri: &Uri) -> Option<&Proxy> {
        match &*self.proxy {
            ProxyConfig::Proxy(p) if p.applies_to(uri) => Some(p),
            _ => None,
        }
    }

    async fn open(&self, host: &str, port: u16) -> Result<TcpStream, ConnectError> {
        let start = Instant::now();
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(ConnectError::Dns)?
            .collect();
        let mut last_error = None;
        for addr in addrs {
            match TcpStream::connect(addr).await {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    self.connections.fetch_add(1, Ordering::Relaxed);
                    if self.debug {
                        log(format_args!(
                            "connected to {host}:{port} ({addr}) in {} ms",
                            start.elapsed().as_millis()
                        ));
                    }
                    return Ok(stream);
                }
                Err(err) => last_error = Some(err),
            }
        }
        Err(match last_error {
            Some(err) => ConnectError::Connect(err),
            None => ConnectError::Dns(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{host} has no address"),
            )),
        })
    }

    /// A TCP connection to the proxy, tunnelled to `authority` (`host:port`).
    async fn open_tunnel(&self, proxy: &Proxy, authority: &str) -> Result<TcpStream, ConnectError> {
        let result = async {
            let mut stream = self
                .open(&proxy.host, proxy.port)
                .await
                .map_err(|e| ProxyFailure::Unreachable(Box::new(e)))?;
            connect_tunnel(&mut stream, proxy, authority).await?;
            if self.debug {
                log(format_args!(
                    "tunnel to {authority} through {} open",
                    proxy.url
                ));
            }
            Ok(stream)
        }
        .await;
        result.map_err(|failure| {
            let err = ConnectError::Proxy {
                var: proxy.var,
                url: proxy.url.clone(),
                authority: authority.to_string(),
                failure,
            };
            if !self.proxy_reported.swap(true, Ordering::Relaxed) {
                log(format_args!("{err}"));
            }
            err
        })
    }
}

impl Service<Uri> for TcpConnector {
    type Response = TokioIo<TcpStream>;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, ConnectError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), ConnectError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let host = uri.host().unwrap_or_default();
            let port = uri.port_u16().unwrap_or(443);
            let stream = match this.proxy_for(&uri) {
                // CONNECT takes the host as in a URI (IPv6 bracketed).
                Some(proxy) => this.open_tunnel(proxy, &format!("{host}:{port}")).await?,
                // IPv6 literals come bracketed in URIs; the resolver wants them bare.
                None => {
                    let bare = host.trim_start_matches('[').trim_end_matches(']');
                    this.open(bare, port).await?
                }
            };
            Ok(TokioIo::new(stream))
        })
    }
}

/// The longest proxy answer to CONNECT we read.
const MAX_PROXY_HEAD: usize = 16 * 1024;

/// Asks the proxy for a tunnel to `authority` and reads its answer, byte by byte so that
/// nothing after the head (the destination's TLS) is consumed here.
async fn connect_tunnel(
    stream: &mut TcpStream,
    proxy: &Proxy,
    authority: &str,
) -> Result<(), ProxyFailure> {
    let mut request = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n").into_bytes();
    if let Some(auth) = &proxy.auth {
        request.extend_from_slice(b"Proxy-Authorization: ");
        request.extend_from_slice(auth.as_bytes());
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"\r\n");
    stream.write_all(&request).await.map_err(ProxyFailure::Io)?;

    let mut head = Vec::with_capacity(128);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_PROXY_HEAD {
            return Err(ProxyFailure::Protocol(
                "its answer to CONNECT is too long".into(),
            ));
        }
        match stream.read(&mut byte).await.map_err(ProxyFailure::Io)? {
            0 => {
                return Err(ProxyFailure::Protocol(
                    "it closed the connection without answering CONNECT".into(),
                ))
            }
            _ => head.push(byte[0]),
        }
    }
    let text = String::from_utf8_lossy(&head);
    let status_line = text.lines().next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let (version, code) = (parts.next().unwrap_or_default(), parts.next());
    let reason = parts.next().unwrap_or_default().trim().to_string();
    match code.and_then(|c| c.parse::<u16>().ok()) {
        Some(status) if version.starts_with("HTTP/1.") => {
            if (200..300).contains(&status) {
                Ok(())
            } else {
                Err(ProxyFailure::Refused {
                    status,
                    reason,
                    sent_credentials: proxy.auth.is_some(),
                })
            }
        }
        _ => Err(ProxyFailure::Protocol(format!(
            "it answered CONNECT with {:?}, not HTTP/1.x",
            status_line.chars().take(80).collect::<String>()
        ))),
    }
}

/// Why a tunnel through the proxy could not be opened.
#[derive(Debug)]
enum ProxyFailure {
    /// The proxy itself could not be reached.
    Unreachable(Box<ConnectError>),
    /// It answered CONNECT with this status.
    Refused {
        status: u16,
        reason: String,
        sent_credentials: bool,
    },
    /// It answered something else than HTTP.
    Protocol(String),
    Io(io::Error),
}

/// Why a new connection could not be opened.
#[derive(Debug)]
enum ConnectError {
    Dns(io::Error),
    Connect(io::Error),
    Timeout,
    /// The proxy named by `var` could not give us a tunnel to `authority`.
    Proxy {
        var: &'static str,
        url: String,
        authority: String,
        failure: ProxyFailure,
    },
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Dns(e) => write!(f, "DNS lookup failed: {e}"),
            ConnectError::Connect(e) => write!(f, "connect failed: {e}"),
            ConnectError::Timeout => write!(f, "connect timed out"),
            ConnectError::Proxy {
                var,
                url,
                authority,
                failure,
            } => {
                let hint =
                    format!("check {var}, or list the destination in NO_PROXY to connect directly");
                match failure {
                    ProxyFailure::Unreachable(e) => {
                        write!(f, "cannot reach the proxy {url} (from {var}): {e}; {hint}")
                    }
                    ProxyFailure::Refused {
                        status,
                        reason,
                        sent_credentials,
                    } => {
                        let what = match status {
                            407 if *sent_credentials => format!(
                                "; it did not accept the credentials in {var} \
                                 (http://user:password@host:port, percent-encoded)"
                            ),
                            407 => format!(
                                "; the proxy wants credentials: put them in {var} as \
                                 http://user:password@host:port (percent-encoded)"
                            ),
                            _ => format!("; {hint}"),
                        };
                        write!(
                            f,
                            "the proxy {url} (from {var}) refused to open a tunnel to \
                             {authority}: {status} {reason}{what}"
                        )
                    }
                    ProxyFailure::Protocol(why) => write!(
                        f,
                        "the proxy {url} (from {var}) could not open a tunnel to {authority}: \
                         {why}; {hint}"
                    ),
                    ProxyFailure::Io(e) => write!(
                        f,
                        "the proxy {url} (from {var}) could not open a tunnel to {authority}: \
                         {e}; {hint}"
                    ),
                }
            }
        }
    }
}

impl StdError for ConnectError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            ConnectError::Dns(e) | ConnectError::Connect(e) => Some(e),
            ConnectError::Timeout => None,
            ConnectError::Proxy { failure, .. } => match failure {
                ProxyFailure::Unreachable(e) => Some(&**e),
                ProxyFailure::Io(e) => Some(e),
                ProxyFailure::Refused { .. } | ProxyFailure::Protocol(_) => None,
            },
        }
    }
}

/// A response body whose every wait for the next chunk is bounded.
struct TimeoutBody {
    inner: Incoming,
    timeout: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl TimeoutBody {
    fn new(inner: Incoming, timeout: Duration) -> Self {
        Self {
            inner,
            timeout,
            sleep: None,
        }
    }
}

impl Body for TimeoutBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.sleep = None;
                Poll::Ready(frame.map(|f| f.map_err(|e| error_code(&e))))
            }
            Poll::Pending => {
                let timeout = this.timeout;
                let sleep = this
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(HttpError::ConnectionReadTimeout))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Maps a client, connect, TLS or body error to the wasi-http error code the guest sees.
///
/// Errors nest (`legacy::Error` → `io::Error` → `io::Error` → `rustls::Error`), and
/// `io::Error::source` skips the error it wraps, so the walk also follows `get_ref`.
fn error_code(err: &(dyn StdError + 'static)) -> HttpError {
    let mut fallback = None;
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return tls_error_code(tls);
        }
        if let Some(connect) = e.downcast_ref::<ConnectError>() {
            return connect_code(connect);
        }
        if let Some(guest) = e.downcast_ref::<HttpError>() {
            // The guest's own request body failed (e.g. more bytes than content-length).
            return match guest {
                HttpError::HttpRequestBodySize(size) => HttpError::HttpRequestBodySize(*size),
                other => HttpError::InternalError(Some(other.to_string())),
            };
        }
        if let Some(io) = e.downcast_ref::<io::Error>() {
            if fallback.is_none() {
                fallback = io_error_code(io);
            }
            if let Some(inner) = io.get_ref() {
                current = Some(inner as &(dyn StdError + 'static));
                continue;
            }
        }
        if let Some(hyper) = e.downcast_ref::<hyper::Error>() {
            if fallback.is_none() {
                fallback = Some(hyper_error_code(hyper));
            }
        }
        current = e.source();
    }
    fallback.unwrap_or_else(|| HttpError::InternalError(Some(chain_text(err))))
}

fn connect_code(err: &ConnectError) -> HttpError {
    match err {
        ConnectError::Timeout => HttpError::ConnectionTimeout,
        ConnectError::Dns(_) => HttpError::DnsError {
            rcode: None,
            info_code: None,
        },
        ConnectError::Connect(io) => connect_error_code(io),
        // An unreachable proxy reads like an unreachable destination (refused, no address…);
        // the host's stderr line names the proxy. A refusing or broken proxy is a connection
        // failure too, never a sandbox denial.
        ConnectError::Proxy { failure, .. } => match failure {
            ProxyFailure::Unreachable(inner) => connect_code(inner),
            ProxyFailure::Refused { .. } | ProxyFailure::Protocol(_) | ProxyFailure::Io(_) => {
                HttpError::DestinationUnavailable
            }
        },
    }
}

fn tls_error_code(err: &rustls::Error) -> HttpError {
    match err {
        rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented => {
            HttpError::TlsCertificateError
        }
        rustls::Error::AlertReceived(alert) => HttpError::TlsAlertReceived {
            alert_id: Some(u8::from(*alert)),
            alert_message: Some(format!("{alert:?}")),
        },
        _ => HttpError::TlsProtocolError,
    }
}

fn connect_error_code(err: &io::Error) -> HttpError {
    match err.kind() {
        io::ErrorKind::ConnectionRefused => HttpError::ConnectionRefused,
        io::ErrorKind::TimedOut => HttpError::ConnectionTimeout,
        io::ErrorKind::HostUnreachable | io::ErrorKind::NetworkUnreachable => {
            HttpError::DestinationUnavailable
        }
        io::ErrorKind::AddrNotAvailable => HttpError::DestinationIpUnroutable,
        _ => HttpError::ConnectionRefused,
    }
}

fn io_error_code(err: &io::Error) -> Option<HttpError> {
    match err.kind() {
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe
        | io::ErrorKind::UnexpectedEof => Some(HttpError::ConnectionTerminated),
        io::ErrorKind::TimedOut => Some(HttpError::ConnectionReadTimeout),
        _ => None,
    }
}

fn hyper_error_code(err: &hyper::Error) -> HttpError {
    if err.is_incomplete_message() {
        HttpError::HttpResponseIncomplete
    } else if err.is_timeout() {
        HttpError::ConnectionReadTimeout
    } else if err.is_closed() || err.is_canceled() || err.is_body_write_aborted() {
        HttpError::ConnectionTerminated
    } else {
        HttpError::HttpProtocolError
    }
}

/// `outer: inner: innermost`, for logs and internal-error messages.
fn chain_text(err: &(dyn StdError + 'static)) -> String {
    let mut text = err.to_string();
    let mut current = err.source();
    while let Some(e) = current {
        let part = e.to_string();
        if !text.ends_with(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        current = e.source();
    }
    text
}

fn origin(uri: &Uri) -> String {
    format!(
        "{}://{}",
        uri.scheme_str().unwrap_or("?"),
        uri.authority().map_or("", |a| a.as_str())
    )
}

fn log(args: std::fmt::Arguments<'_>) {
    eprintln!("sigstore-kms-alibabakms: {args}");
}

#[cfg(test)]
mod tests;
