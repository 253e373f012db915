//! The seam between the logic and the network.
//!
//! Everything above this trait is plain Rust that unit tests drive with a scripted transport;
//! the one implementation that touches `wasi:http` lives in `wasi_http.rs`.

use std::fmt;
use std::time::Duration;

/// HTTPS for KMS and STS; plain HTTP only for the ECS instance metadata service, which is
/// served on a link-local address without TLS.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Scheme {
    #[default]
    Https,
    Http,
}

#[derive(Debug, Clone)]
pub struct HttpRequest {
    pub method: &'static str,
    pub scheme: Scheme,
    /// `host[:port]`.
    pub authority: String,
    pub path_and_query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Upper bound for connecting and for the first byte of the answer.
    pub timeout: Option<Duration>,
}

#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Why a request got no HTTP answer. Each variant carries the authority it was sent to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportError {
    /// The host's sandbox refused the destination.
    Denied { authority: String },
    /// The server's certificate is not trusted (or TLS failed otherwise).
    Tls { authority: String, detail: String },
    /// No connection: DNS, refused, unreachable.
    Connect { authority: String, detail: String },
    /// No answer in time.
    Timeout { authority: String },
    /// The connection broke before the whole answer arrived (reset, closed, cut short): the
    /// request may or may not have been processed.
    Broken { authority: String, detail: String },
    /// Anything else the HTTP layer reported.
    Other { authority: String, detail: String },
}

impl TransportError {
    /// A short name of what went wrong, for diagnostics.
    pub fn kind(&self) -> &'static str {
        match self {
            TransportError::Denied { .. } => "refused by the sandbox",
            TransportError::Tls { .. } => "TLS failure",
            TransportError::Connect { .. } => "no connection",
            TransportError::Timeout { .. } => "timeout",
            TransportError::Broken { .. } => "connection broken",
            TransportError::Other { .. } => "transport error",
        }
    }
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransportError::Denied { authority } => write!(
                f,
                "the request to {authority} was refused by the plugin's sandbox: only HTTPS to \
                 *.aliyuncs.com and the hosts listed in SIGSTORE_ALIBABAKMS_ALLOWED_HOSTS \
                 (comma-separated host[:port]) may be reached; to use {authority}, add it to \
                 SIGSTORE_ALIBABAKMS_ALLOWED_HOSTS"
            ),
            TransportError::Tls { authority, detail } => write!(
                f,
                "TLS with {authority} failed ({detail}); if the endpoint uses a private CA (a \
                 KMS instance gateway, a TLS-inspecting proxy), set SSL_CERT_FILE to a PEM \
                 file with that CA certificate"
            ),
            TransportError::Connect { authority, detail } => write!(
                f,
                "could not connect to {authority} ({detail}); check the endpoint in the key \
                 reference (e.g. kms.cn-hangzhou.aliyuncs.com) and the network or proxy"
            ),
            TransportError::Timeout { authority } => write!(
                f,
                "{authority} did not answer in time; check the endpoint and the network"
            ),
            TransportError::Broken { authority, detail } => {
                write!(f, "the request to {authority} failed: {detail}")
            }
            TransportError::Other { authority, detail } => {
                write!(f, "the request to {authority} failed: {detail}")
            }
        }
    }
}

pub trait Transport {
    /// Sends the requests concurrently and returns their outcomes in the same order.
    fn send_all(&self, requests: Vec<HttpRequest>) -> Vec<Result<HttpResponse, TransportError>>;

    fn send(&self, request: HttpRequest) -> Result<HttpResponse, TransportError> {
        self.send_all(vec![request])
            .pop()
            .expect("one outcome per request")
    }
}

/// A scripted transport for unit tests: answers from a handler and records every request.
#[cfg(test)]
pub mod mock {
    use super::*;
    use std::cell::RefCell;

    type Handler = Box<dyn Fn(&HttpRequest) -> Result<HttpResponse, TransportError>>;

    pub struct MockTransport {
        handler: Handler,
        pub sent: RefCell<Vec<HttpRequest>>,
        /// How many `send_all` calls (sequential round trips) were made.
        pub round_trips: RefCell<usize>,
    }

    impl MockTransport {
        pub fn new(
            handler: impl Fn(&HttpRequest) -> Result<HttpResponse, TransportError> + 'static,
        ) -> Self {
            MockTransport {
                handler: Box::new(handler),
                sent: RefCell::new(Vec::new()),
                round_trips: RefCell::new(0),
            }
        }

        pub fn actions(&self) -> Vec<String> {
            self.sent
                .borrow()
                .iter()
                .map(|r| {
                    r.headers
                        .iter()
                        .find(|(n, _)| n == "x-acs-action")
                        .map(|(_, v)| v.clone())
                        .unwrap_or_default()
                })
                .collect()
        }
    }

    impl Transport for MockTransport {
        fn send_all(
            &self,
            requests: Vec<HttpRequest>,
        ) -> Vec<Result<HttpResponse, TransportError>> {
            *self.round_trips.borrow_mut() += 1;
            requests
                .into_iter()
                .map(|r| {
                    let out = (self.handler)(&r);
                    self.sent.borrow_mut().push(r);
                    out
                })
                .collect()
        }
    }

    pub fn json(status: u16, body: serde_json::Value) -> Result<HttpResponse, TransportError> {
        Ok(HttpResponse {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string().into_bytes(),
        })
    }
}
