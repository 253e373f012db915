//! Opening a new connection: the connect timeout, DNS and TCP (the one place in the host
//! that opens sockets), and the HTTP CONNECT tunnel through a proxy (`proxy.rs` only decides,
//! from `HTTPS_PROXY` & co., whether and which proxy). Apart: it is hyper's connector plumbing.

use std::error::Error as StdError;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::Uri;
use hyper_rustls::HttpsConnector;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tower_service::Service;

use super::proxy::{Proxy, ProxyConfig};
use super::{log, Phase, ATTEMPT};

type BoxError = Box<dyn StdError + Send + Sync>;

/// Bounds DNS + TCP + TLS of a new connection.
#[derive(Clone)]
pub(super) struct TimeoutConnector {
    pub(super) inner: HttpsConnector<TcpConnector>,
    /// Used when the connect runs outside a request's task (hyper finishing it in the
    /// background after a pooled connection won the race).
    pub(super) cap: Duration,
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
pub(super) struct TcpConnector {
    pub(super) connections: Arc<AtomicUsize>,
    pub(super) debug: bool,
    pub(super) proxy: Arc<ProxyConfig>,
    /// A proxy failure is explained on stderr once per invocation.
    pub(super) proxy_reported: Arc<AtomicBool>,
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
pub(super) enum ProxyFailure {
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
pub(super) enum ConnectError {
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
