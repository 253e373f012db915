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
//!
//! The pieces live apart: [`connect`] opens new connections (the connect timeout, DNS and
//! TCP, the CONNECT tunnel through a proxy), [`body`] bounds the waits of a response body,
//! [`errors`] maps failures to the wasi-http error codes the guest sees; [`proxy`] reads the
//! proxy configuration and [`trust`] the trust store. This file is the hook and its client.

use std::future::Future;
#[cfg(test)]
use std::sync::atomic::Ordering;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use http::{Request, Response, Uri};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
#[cfg(test)]
use rustls::RootCertStore;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use crate::policy::AllowedHosts;

mod body;
mod connect;
mod errors;
pub mod proxy;
pub mod trust;
use body::TimeoutBody;
use connect::{TcpConnector, TimeoutConnector};
use errors::{chain_text, error_code};
use proxy::ProxyConfig;

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
        // The one place the host decides `Host`: hyper derives it from the URI's authority,
        // the only destination there is. (The guest may not set it, wasi-http forbids the
        // header; wasi-http's own copy of the authority is dropped here with anything else.)
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
