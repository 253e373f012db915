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
//! The client is built on the first request: loading the trust store costs several
//! milliseconds, which methods that never touch the network should not pay.

use std::error::Error as StdError;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
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
use rustls::RootCertStore;
use tokio::net::TcpStream;
use tokio::time::Sleep;
use tower_service::Service;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use crate::policy::AllowedHosts;

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
    /// The OS store, as `rustls-native-certs` finds it (it honours `SSL_CERT_FILE` and
    /// `SSL_CERT_DIR`, and then loads only those).
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
    /// Built on the first request that passes the allow-list.
    client: OnceLock<Result<HttpsClient, String>>,
    /// TCP connections opened so far (debug output and tests).
    connections: Arc<AtomicUsize>,
}

impl Egress {
    /// Egress with the OS trust store and the default timeouts.
    pub fn new(allowed: AllowedHosts, debug: bool) -> Self {
        Self::build(allowed, Timeouts::DEFAULT, TrustRoots::Native, debug)
    }

    /// Egress that trusts exactly `roots`, for tests against a throwaway CA.
    #[cfg(test)]
    pub fn with_roots(allowed: AllowedHosts, timeouts: Timeouts, roots: RootCertStore) -> Self {
        Self::build(
            allowed,
            timeouts,
            TrustRoots::Custom(Arc::new(roots)),
            false,
        )
    }

    fn build(allowed: AllowedHosts, timeouts: Timeouts, roots: TrustRoots, debug: bool) -> Self {
        Self {
            allowed,
            timeouts,
            roots,
            debug,
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

    fn client(&self) -> Result<&HttpsClient, HttpError> {
        self.client
            .get_or_init(|| self.make_client())
            .as_ref()
            .map_err(|msg| HttpError::InternalError(Some(msg.clone())))
    }

    fn make_client(&self) -> Result<HttpsClient, String> {
        let roots = match &self.roots {
            TrustRoots::Native => Arc::new(native_roots()),
            #[cfg(test)]
            TrustRoots::Custom(roots) => roots.clone(),
        };
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS configuration: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .wrap_connector(TcpConnector {
                connections: self.connections.clone(),
                debug: self.debug,
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

/// Loads the OS trust store; says so on stderr when nothing could be loaded.
fn native_roots() -> RootCertStore {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _unparsable) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let why: Vec<String> = found.errors.iter().map(ToString::to_string).collect();
        log(format_args!(
            "warning: no trusted root certificates found (set SSL_CERT_FILE or SSL_CERT_DIR){}{}",
            if why.is_empty() { "" } else { ": " },
            why.join("; ")
        ));
    }
    roots
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

/// Resolves and connects; the one place in the host that opens sockets.
#[derive(Clone)]
struct TcpConnector {
    connections: Arc<AtomicUsize>,
    debug: bool,
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
            let start = Instant::now();
            let host = uri.host().unwrap_or_default();
            // IPv6 literals come bracketed in URIs; the resolver wants them bare.
            let host = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let port = uri.port_u16().unwrap_or(443);
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
                .await
                .map_err(ConnectError::Dns)?
                .collect();
            let mut last_error = None;
            for addr in addrs {
                match TcpStream::connect(addr).await {
                    Ok(stream) => {
                        let _ = stream.set_nodelay(true);
                        this.connections.fetch_add(1, Ordering::Relaxed);
                        if this.debug {
                            log(format_args!(
                                "connected to {host}:{port} ({addr}) in {} ms",
                                start.elapsed().as_millis()
                            ));
                        }
                        return Ok(TokioIo::new(stream));
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
        })
    }
}

/// Why a new connection could not be opened.
#[derive(Debug)]
enum ConnectError {
    Dns(io::Error),
    Connect(io::Error),
    Timeout,
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Dns(e) => write!(f, "DNS lookup failed: {e}"),
            ConnectError::Connect(e) => write!(f, "connect failed: {e}"),
            ConnectError::Timeout => write!(f, "connect timed out"),
        }
    }
}

impl StdError for ConnectError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            ConnectError::Dns(e) | ConnectError::Connect(e) => Some(e),
            ConnectError::Timeout => None,
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
            match connect {
                ConnectError::Timeout => return HttpError::ConnectionTimeout,
                ConnectError::Dns(_) => {
                    return HttpError::DnsError {
                        rcode: None,
                        info_code: None,
                    }
                }
                ConnectError::Connect(io) => return connect_error_code(io),
            }
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
