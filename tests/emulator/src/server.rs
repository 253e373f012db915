//! The HTTPS front: accepts TLS connections on loopback, speaks HTTP/1.1 with keep-alive,
//! runs every request through the gateway checks and then the action, and counts what
//! happened so tests can assert on round trips, connections and handshakes.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rand_core::{OsRng, RngCore};
use serde_json::Value;

use crate::acs3_verify::{decode_query, verify_acs3, NonceCache};
use crate::actions::{self, Ctx, KMS_VERSION};
use crate::clock::Clock;
use crate::error::ApiError;
use crate::state::State;

/// Bodies larger than this are refused; KMS requests carry their parameters in the query.
const MAX_BODY: usize = 1 << 20;
/// How many requests [`Shared::requests`] keeps (the newest).
const MAX_RECORDED: usize = 10_000;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Counters since start (or the last reset).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Requests per `x-acs-action` header value (`""` when absent), accepted or not.
    pub requests_per_action: HashMap<String, u64>,
    pub total_requests: u64,
    pub tcp_connections: u64,
    pub tls_handshakes: u64,
    /// Rejected requests per error code.
    pub rejected_per_code: HashMap<String, u64>,
}

impl Stats {
    pub fn action(&self, action: &str) -> u64 {
        self.requests_per_action.get(action).copied().unwrap_or(0)
    }

    pub fn rejected(&self, code: &str) -> u64 {
        self.rejected_per_code.get(code).copied().unwrap_or(0)
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
    pub status: u16,
    /// `None` on success, else the error code returned.
    pub code: Option<String>,
    pub request_id: String,
    /// For `SignatureDoesNotMatch`: the canonical request the server computed.
    pub server_canonical_request: Option<String>,
}

impl RecordedRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Everything the connection tasks and the [`crate::Emulator`] handle share.
pub struct Shared {
    pub state: Mutex<State>,
    pub nonces: Mutex<NonceCache>,
    pub stats: Mutex<Stats>,
    pub requests: Mutex<Vec<RecordedRequest>>,
    pub clock: Clock,
    pub log_requests: bool,
    pub connection_seq: Mutex<u64>,
}

/// Locks, recovering from a panic elsewhere (the data stays usable for tests).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// `4F1A...-...`: the upper-case GUID form POP request ids take.
fn request_id() -> String {
    let mut b = [0u8; 16];
    OsRng.fill_bytes(&mut b);
    let h = hex::encode_upper(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Accepts connections until `shutdown` fires.
pub async fn serve(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    shared: Arc<Shared>,
    mut shutdown: tokio::sync::oneshot::Receiver<()>,
) {
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((tcp, _peer)) = accepted else {
            // Out of descriptors or similar: back off instead of spinning.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let conn_id = {
            let mut seq = lock(&shared.connection_seq);
            *seq += 1;
            *seq
        };
        lock(&shared.stats).tcp_connections += 1;
        let acceptor = acceptor.clone();
        let shared = shared.clone();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    if shared.log_requests {
                        eprintln!("kms-emulator: conn={conn_id} TLS handshake failed: {e}");
                    }
                    return;
                }
                Err(_) => return,
            };
            lock(&shared.stats).tls_handshakes += 1;
            let service = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(handle(req, &shared, conn_id).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(tls), service)
                .await;
        });
    }
}

async fn handle(req: Request<Incoming>, shared: &Shared, conn_id: u64) -> Response<Full<Bytes>> {
    let started = Instant::now();
    let request_id = request_id();
    let (parts, body) = req.into_parts();
    let method = parts.method.as_str().to_string();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".to_string());
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let action = header("x-acs-action").unwrap_or_default();
    let host_id = header("host").unwrap_or_else(|| "kms.aliyuncs.com".to_string());

    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => Some(b.to_bytes()),
        Err(_) => None,
    };
    let mut params = decode_query(path_and_query.split_once('?').map_or("", |(_, q)| q));
    // For the log: the AccessKey the request claims, replaced by the verified one below.
    let mut access_key_id = header("authorization").and_then(|a| {
        let cred = a.split("Credential=").nth(1)?;
        Some(cred.split(',').next()?.to_string())
    });
    let outcome = match body {
        None => Err(ApiError::gateway(
            413,
            "RequestEntityTooLarge",
            format!("The request body exceeds {MAX_BODY} bytes."),
        )),
        Some(body) => process(
            shared,
            &method,
            &path_and_query,
            &headers,
            &body,
            &mut params,
            &mut access_key_id,
        ),
    };

    let (status, json, code, canonical) = match outcome {
        Ok(mut v) => {
            if let Value::Object(m) = &mut v {
                m.insert("RequestId".into(), Value::String(request_id.clone()));
            }
            (200, v, None, None)
        }
        Err(e) => (
            e.status,
            e.to_json(&request_id, &host_id),
            Some(e.code.clone()),
            e.canonical_request.clone(),
        ),
    };

    {
        let mut stats = lock(&shared.stats);
        stats.total_requests += 1;
        *stats.requests_per_action.entry(action.clone()).or_default() += 1;
        if let Some(code) = &code {
            *stats.rejected_per_code.entry(code.clone()).or_default() += 1;
        }
    }
    if shared.log_requests {
        // One line per request; never secrets (no Authorization, no token).
        let mut line = format!(
            "kms-emulator: conn={conn_id} {method} action={} status={status} code={} ak={} request_id={request_id} {}us",
            if action.is_empty() { "-" } else { &action },
            code.as_deref().unwrap_or("-"),
            access_key_id.as_deref().unwrap_or("-"),
            started.elapsed().as_micros(),
        );
        if let Some(c) = &canonical {
            line.push_str(&format!(" server_canonical_request={c:?}"));
        }
        eprintln!("{line}");
    }
    {
        let mut requests = lock(&shared.requests);
        if requests.len() >= MAX_RECORDED {
            requests.remove(0);
        }
        requests.push(RecordedRequest {
            connection: conn_id,
            method,
            path_and_query,
            action,
            params,
            headers,
            status,
            code,
            request_id: request_id.clone(),
            server_canonical_request: canonical,
        });
    }

    let body = serde_json::to_vec(&json).expect("JSON values serialize");
    Response::builder()
        .status(status)
        .header("content-type", "application/json;charset=utf-8")
        .header("x-acs-request-id", request_id)
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts are valid")
}

/// Gateway checks, then the action. Fills `params`/`access_key_id` for the request record.
fn process(
    shared: &Shared,
    method: &str,
    path_and_query: &str,
    headers: &[(String, String)],
    body: &[u8],
    params: &mut BTreeMap<String, String>,
    access_key_id: &mut Option<String>,
) -> Result<Value, ApiError> {
    // Fault injection (throttling, 5xx, delays) belongs here, after routing and before or
    // after authentication depending on the fault: the real gateway throttles authenticated
    // callers, so a throttle hook would sit after the nonce check below.
    // The RPC-style KMS API takes POST (what the SDKs send) and GET (KMS-META: [post, get]).
    if method != "POST" && method != "GET" {
        return Err(ApiError::unsupported_http_method(method));
    }
    let path = path_and_query.split('?').next().unwrap_or("");
    if path != "/" {
        return Err(ApiError::api_not_found(format!(
            "KMS is an RPC-style API served at path \"/\", not {path:?}."
        )));
    }

    let now = shared.clock.now();
    let verified = verify_acs3(method, path_and_query, headers, body, now, |ak| {
        lock(&shared.state).credentials.get(ak).cloned()
    })?;
    *params = verified.params.clone();
    *access_key_id = Some(verified.access_key_id.clone());
    lock(&shared.nonces).check_and_record(&verified.nonce, verified.date, now)?;

    if verified.version != KMS_VERSION {
        return Err(ApiError::api_not_found(format!(
            "Product Kms has no version {:?} (use {KMS_VERSION}).",
            verified.version
        )));
    }
    let Some(action) = actions::find(&verified.action) else {
        return Err(ApiError::api_not_found(format!(
            "Product Kms version {KMS_VERSION} has no action {:?}.",
            verified.action
        )));
    };
    let mut state = lock(&shared.state);
    action(&mut Ctx {
        state: &mut state,
        params: &verified.params,
        now,
    })
}
