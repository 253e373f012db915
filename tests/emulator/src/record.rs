//! What the emulator counts and keeps of each request, so tests can hold a client to its
//! round trips, connections, handshakes and framing.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

/// Counters since start (or the last reset).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Requests per `x-acs-action` header value (`""` when absent), accepted or not.
    pub requests_per_action: HashMap<String, u64>,
    pub total_requests: u64,
    pub tcp_connections: u64,
    pub tls_handshakes: u64,
    /// Rejected requests per error code (injected error faults included).
    pub rejected_per_code: HashMap<String, u64>,
    /// Requests an injected [`crate::Fault`] applied to (every kind, `Delay` included).
    pub faults_injected: u64,
    /// The same per [`crate::Fault::kind`].
    pub faults_per_kind: HashMap<String, u64>,
    /// Requests to the ECS metadata listener ([`crate::imds`]), refused ones included.
    pub imds_requests: u64,
    /// Requests to the ECS metadata listener with a chunked body, refused there with 411.
    pub imds_chunked_requests: u64,
    /// Requests to CloudSSO's `/cloud-credentials` ([`crate::signin`]), refused ones included.
    pub cloud_sso_requests: u64,
    /// Requests to the OAuth `/v1/exchange` ([`crate::signin`]), refused ones included.
    pub oauth_exchange_requests: u64,
}

impl Stats {
    pub fn action(&self, action: &str) -> u64 {
        self.requests_per_action.get(action).copied().unwrap_or(0)
    }

    pub fn rejected(&self, code: &str) -> u64 {
        self.rejected_per_code.get(code).copied().unwrap_or(0)
    }

    /// Faults of one [`crate::Fault::kind`] applied so far.
    pub fn faults(&self, kind: &str) -> u64 {
        self.faults_per_kind.get(kind).copied().unwrap_or(0)
    }
}

/// One request as the emulator saw it, for tests that assert what a client sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedRequest {
    /// Which TCP connection carried it (1, 2, ... in accept order since start).
    pub connection: u64,
    pub method: String,
    pub path_and_query: String,
    /// The `x-acs-action` header ("" when absent).
    pub action: String,
    /// Decoded query parameters (and form-body parameters when verification got that far).
    pub params: BTreeMap<String, String>,
    /// Headers as received, names lower-cased, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The HTTP status answered; 0 when no answer was sent ([`crate::Fault::Hang`],
    /// [`crate::Fault::Reset`]).
    pub status: u16,
    /// `None` on success, else the error code returned.
    pub code: Option<String>,
    pub request_id: String,
    /// For `SignatureDoesNotMatch`: the canonical request the server computed.
    pub server_canonical_request: Option<String>,
    /// The [`crate::Fault::kind`] of the injected fault that applied, if one did.
    pub fault: Option<String>,
    /// When its connection was accepted (the client's first packet of it, before TLS).
    pub connected_at: Instant,
    /// When its headers arrived and when its answer was ready (before any injected latency
    /// and after it): a benchmark counts sequential round trips from these intervals.
    pub received_at: Instant,
    pub answered_at: Instant,
}

impl RecordedRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// How the request framed its body, from the headers as received.
    pub fn framing(&self) -> Framing {
        if self
            .header("transfer-encoding")
            .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"))
        {
            Framing::Chunked
        } else if let Some(n) = self.header("content-length").and_then(|v| v.parse().ok()) {
            Framing::ContentLength(n)
        } else {
            Framing::None
        }
    }
}

/// The body framing of a request (RFC 9112 §6). Alibaba's official SDKs always send a
/// Content-Length; gateways and proxies that do not take chunked uploads answer them 411.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// `Content-Length: N`.
    ContentLength(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Neither header: no body.
    None,
}
