//! The HTTPS front: accepts TLS connections on loopback, speaks HTTP/1.1 with keep-alive,
//! runs every request through the gateway checks, any injected fault and then the action, and
//! counts what happened so tests can assert on round trips, connections and handshakes.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rand_core::{OsRng, RngCore};
use serde_json::Value;
use std::future::Future as _;
use tokio::sync::Notify;

use crate::acs3_verify::{decode_query, verify_acs3, NonceCache};
use crate::actions::{self, ActionFn, Ctx, KMS_VERSION};
use crate::clock::Clock;
use crate::error::ApiError;
use crate::fault::{Fault, FaultPlan};
pub use crate::record::{Framing, RecordedRequest, Stats};
use crate::state::State;

/// Bodies larger than this are refused; KMS requests carry their parameters in the query.
const MAX_BODY: usize = 1 << 20;
/// How many requests [`Shared::requests`] keeps (the newest) unless configured otherwise.
pub const MAX_RECORDED: usize = 10_000;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything the connection tasks and the [`crate::Emulator`] handle share.
pub struct Shared {
    pub state: Mutex<State>,
    pub nonces: Mutex<NonceCache>,
    pub stats: Mutex<Stats>,
    /// The newest `max_recorded` requests, oldest first.
    pub requests: Mutex<VecDeque<RecordedRequest>>,
    pub max_recorded: usize,
    pub clock: Clock,
    pub log_requests: bool,
    pub connection_seq: Mutex<u64>,
    pub faults: Mutex<FaultPlan>,
    /// Added to every request before it is processed (a region's round trip).
    pub latency: Mutex<Duration>,
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
        let connected_at = Instant::now();
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
            let aborter = Aborter::new(&tcp);
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
            let reset = Arc::new(Notify::new());
            let service_reset = reset.clone();
            let service = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                let reset = service_reset.clone();
                async move {
                    Ok::<_, Infallible>(handle(req, shared, (conn_id, connected_at), reset).await)
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(tls), service);
            tokio::select! {
                _ = conn => {}
                _ = reset.notified() => aborter.abort(),
            }
            // Leaving drops the connection: after `abort`, the socket closes with an RST.
        });
    }
}

/// Closes a connection's socket with an RST instead of a FIN, through a duplicate of its file
/// descriptor kept from accept time (the original is buried in the TLS and HTTP layers). The
/// cost is one more descriptor per open connection.
struct Aborter {
    #[cfg(unix)]
    dup: Option<std::os::fd::OwnedFd>,
}

impl Aborter {
    fn new(tcp: &tokio::net::TcpStream) -> Self {
        #[cfg(unix)]
        {
            use std::os::fd::AsFd;
            Aborter {
                dup: tcp.as_fd().try_clone_to_owned().ok(),
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tcp;
            Aborter {}
        }
    }

    /// Sets `SO_LINGER` 0, so the last close of the socket resets it.
    fn abort(self) {
        #[cfg(unix)]
        if let Some(fd) = self.dup {
            if let Ok(tcp) = tokio::net::TcpStream::from_std(std::net::TcpStream::from(fd)) {
                let _ = tcp.set_zero_linger();
            }
        }
    }
}

/// What one request is and what became of it, for the counters, the log and the record.
struct Exchange {
    conn_id: u64,
    connected_at: Instant,
    started: Instant,
    request_id: String,
    method: String,
    path_and_query: String,
    action: String,
    headers: Vec<(String, String)>,
    params: BTreeMap<String, String>,
    /// The AccessKey the request claims, replaced by the verified one once known.
    access_key_id: Option<String>,
    fault: Option<&'static str>,
}

impl Exchange {
    /// Counts, logs and records the request with its outcome (`status` 0: no answer).
    fn finish(self, shared: &Shared, status: u16, code: Option<String>, canonical: Option<String>) {
        {
            let mut stats = lock(&shared.stats);
            stats.total_requests += 1;
            *stats
                .requests_per_action
                .entry(self.action.clone())
                .or_default() += 1;
            if let Some(code) = &code {
                *stats.rejected_per_code.entry(code.clone()).or_default() += 1;
            }
            if let Some(kind) = self.fault {
                stats.faults_injected += 1;
                *stats.faults_per_kind.entry(kind.to_string()).or_default() += 1;
            }
        }
        if shared.log_requests {
            // One line per request; never secrets (no Authorization, no token).
            let mut line = format!(
                "kms-emulator: conn={} {} action={} status={status} code={} ak={} request_id={} {}us",
                self.conn_id,
                self.method,
                if self.action.is_empty() { "-" } else { &self.action },
                code.as_deref().unwrap_or("-"),
                self.access_key_id.as_deref().unwrap_or("-"),
                self.request_id,
                self.started.elapsed().as_micros(),
            );
            if let Some(kind) = self.fault {
                line.push_str(&format!(" fault={kind}"));
            }
            if let Some(c) = &canonical {
                line.push_str(&format!(" server_canonical_request={c:?}"));
            }
            eprintln!("{line}");
        }
        let mut requests = lock(&shared.requests);
        while requests.len() >= shared.max_recorded.max(1) {
            requests.pop_front();
        }
        requests.push_back(RecordedRequest {
            connection: self.conn_id,
            method: self.method,
            path_and_query: self.path_and_query,
            action: self.action,
            params: self.params,
            headers: self.headers,
            status,
            code,
            request_id: self.request_id,
            server_canonical_request: canonical,
            fault: self.fault.map(str::to_string),
            connected_at: self.connected_at,
            received_at: self.started,
            answered_at: Instant::now(),
        });
    }
}

/// A request that passed the gateway: the action it asks for and its parameters.
struct Admitted {
    action: ActionFn,
    params: BTreeMap<String, String>,
}

async fn handle(
    req: Request<Incoming>,
    shared: Arc<Shared>,
    (conn_id, connected_at): (u64, Instant),
    reset: Arc<Notify>,
) -> Response<Either<Full<Bytes>, Trickle>> {
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
    let access_key_id = header("authorization").and_then(|a| {
        let cred = a.split("Credential=").nth(1)?;
        Some(cred.split(',').next()?.to_string())
    });
    let params = decode_query(path_and_query.split_once('?').map_or("", |(_, q)| q));

    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => Some(b.to_bytes()),
        Err(_) => None,
    };
    let latency = *lock(&shared.latency);
    if !latency.is_zero() {
        // tokio's timer ticks in whole milliseconds and rounds every sleep up; a plain sleep
        // on the blocking pool adds what was asked within tens of microseconds, so a
        // benchmark's round trips cost exactly the latency it set.
        let _ = tokio::task::spawn_blocking(move || std::thread::sleep(latency)).await;
    }

    let mut ex = Exchange {
        conn_id,
        connected_at,
        started,
        request_id,
        method,
        path_and_query,
        action,
        headers,
        params,
        access_key_id,
        fault: None,
    };
    // The sign-in services (CloudSSO, OAuth) answer in shapes of their own, by path.
    if let (Some(service), Some(body)) = (crate::signin::service(&ex.path_and_query), &body) {
        {
            let mut stats = lock(&shared.stats);
            match service {
                crate::signin::Service::CloudSso => stats.cloud_sso_requests += 1,
                crate::signin::Service::OAuth => stats.oauth_exchange_requests += 1,
            }
        }
        let now = shared.clock.now();
        let answer = crate::signin::answer(
            service,
            &mut lock(&shared.state),
            now,
            &ex.method,
            &ex.headers,
            body,
            &ex.request_id,
        );
        let request_id = ex.request_id.clone();
        ex.finish(&shared, answer.status, answer.code, None);
        return respond(
            &shared,
            answer.status,
            &answer.body,
            request_id,
            Vec::new(),
            None,
        );
    }
    let admitted = match body {
        None => Err(ApiError::gateway(
            413,
            "RequestEntityTooLarge",
            format!("The request body exceeds {MAX_BODY} bytes."),
        )),
        Some(body) => admit(&shared, &body, &mut ex),
    };

    let mut extra_headers = Vec::new();
    let mut trickle = None;
    let outcome = match admitted {
        Err(e) => Err(e),
        Ok(admitted) => {
            let fault = lock(&shared.faults).take(&ex.action);
            ex.fault = fault.as_ref().map(Fault::kind);
            match fault {
                Some(Fault::Hang) => {
                    ex.finish(&shared, 0, None, None);
                    // Never answers; dropped with the connection or the emulator.
                    return std::future::pending().await;
                }
                Some(Fault::Reset) => {
                    ex.finish(&shared, 0, None, None);
                    reset.notify_one();
                    return std::future::pending().await;
                }
                Some(Fault::Delay(d)) => {
                    tokio::time::sleep(d).await;
                    run_action(&shared, admitted).await
                }
                Some(Fault::ResetAfterProcessing) => {
                    let _ = run_action(&shared, admitted).await;
                    ex.finish(&shared, 0, None, None);
                    reset.notify_one();
                    return std::future::pending().await;
                }
                Some(Fault::BadSignature) => run_action(&shared, admitted).await.map(|mut v| {
                    let mut junk = [0u8; 70];
                    OsRng.fill_bytes(&mut junk);
                    v["Value"] =
                        Value::String(base64::engine::general_purpose::STANDARD.encode(junk));
                    v
                }),
                Some(Fault::Trickle(every)) => {
                    trickle = Some(every);
                    run_action(&shared, admitted).await
                }
                Some(other) => {
                    let (e, headers) = other
                        .response(shared.clock.now())
                        .expect("error faults have a response");
                    extra_headers = headers;
                    Err(e)
                }
                None => run_action(&shared, admitted).await,
            }
        }
    };

    let (status, json, code, canonical) = match outcome {
        Ok(mut v) => {
            if let Value::Object(m) = &mut v {
                m.insert("RequestId".into(), Value::String(ex.request_id.clone()));
            }
            (200, v, None, None)
        }
        Err(e) => (
            e.status,
            e.to_json(&ex.request_id, &host_id),
            Some(e.code.clone()),
            e.canonical_request.clone(),
        ),
    };
    let request_id = ex.request_id.clone();
    ex.finish(&shared, status, code, canonical);
    respond(&shared, status, &json, request_id, extra_headers, trickle)
}

/// A JSON answer with the headers every answer carries.
fn respond(
    shared: &Shared,
    status: u16,
    json: &Value,
    request_id: String,
    extra_headers: Vec<(String, String)>,
    trickle: Option<Duration>,
) -> Response<Either<Full<Bytes>, Trickle>> {
    let body = serde_json::to_vec(json).expect("JSON values serialize");
    let mut response = Response::builder()
        .status(status)
        .header("content-type", "application/json;charset=utf-8")
        .header("x-acs-request-id", request_id)
        // As the real gateway does; from the emulator's clock, offset included.
        .header("date", crate::clock::format_http_date(shared.clock.now()));
    for (name, value) in extra_headers {
        response = response.header(name, value);
    }
    let body = Bytes::from(body);
    let body = match trickle {
        None => Either::Left(Full::new(body)),
        Some(every) => Either::Right(Trickle::new(body, every)),
    };
    response
        .body(body)
        .expect("static response parts are valid")
}

/// A response body sent one byte per interval ([`Fault::Trickle`]).
pub struct Trickle {
    rest: Bytes,
    every: Duration,
    next: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl Trickle {
    fn new(rest: Bytes, every: Duration) -> Self {
        Trickle {
            rest,
            every,
            next: Box::pin(tokio::time::sleep(every)),
        }
    }
}

impl hyper::body::Body for Trickle {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        use std::task::Poll;
        if self.rest.is_empty() {
            return Poll::Ready(None);
        }
        if self.next.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        let every = self.every;
        let at = tokio::time::Instant::now() + every;
        self.next.as_mut().reset(at);
        let byte = self.rest.split_to(1);
        Poll::Ready(Some(Ok(hyper::body::Frame::data(byte))))
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.rest.len() as u64)
    }
}

/// The gateway's checks: method, path, signature, nonce, API version and action. Fills the
/// exchange's params and AccessKey for the record.
fn admit(shared: &Shared, body: &[u8], ex: &mut Exchange) -> Result<Admitted, ApiError> {
    // The RPC-style KMS API takes POST (what the SDKs send) and GET (KMS-META: [post, get]).
    if ex.method != "POST" && ex.method != "GET" {
        return Err(ApiError::unsupported_http_method(&ex.method));
    }
    let path = ex.path_and_query.split('?').next().unwrap_or("");
    if path != "/" {
        return Err(ApiError::api_not_found(format!(
            "KMS is an RPC-style API served at path \"/\", not {path:?}."
        )));
    }

    // STS shares the server; `x-acs-version` says which product a request is for.
    let version = ex
        .headers
        .iter()
        .find(|(n, _)| n == "x-acs-version")
        .map(|(_, v)| v.as_str());
    // The legacy V1 signature (HMAC-SHA1, parameters only), as the credential libraries
    // sign STS AssumeRole; accepted for STS and KMS alike.
    let mut all_params =
        crate::acs3_verify::decode_query(ex.path_and_query.split_once('?').map_or("", |(_, q)| q));
    let form = ex
        .headers
        .iter()
        .any(|(n, v)| n == "content-type" && v.starts_with("application/x-www-form-urlencoded"));
    if form {
        all_params.extend(crate::acs3_verify::decode_query(&String::from_utf8_lossy(
            body,
        )));
    }
    if crate::v1_verify::is_v1(&all_params) {
        let now = shared.clock.now();
        let v = crate::v1_verify::verify_v1(&ex.method, &all_params, now, |ak| {
            lock(&shared.state).credentials.get(ak).cloned()
        })?;
        ex.params = all_params.clone();
        ex.action = v.action.clone();
        ex.access_key_id = Some(v.access_key_id.clone());
        lock(&shared.nonces).check_and_record(&v.nonce, v.date, now)?;
        let action = if v.version == crate::sts::STS_VERSION {
            crate::sts::signed_action(&v.action)
        } else if v.version == KMS_VERSION {
            actions::find(&v.action)
        } else {
            None
        }
        .ok_or_else(|| {
            ApiError::api_not_found(format!(
                "No action {:?} in version {:?}.",
                v.action, v.version
            ))
        })?;
        if v.version == KMS_VERSION {
            at_dedicated_gateway(shared, ex, &v.action, &all_params)?;
        }
        return Ok(Admitted {
            action,
            params: all_params,
        });
    }
    if version == Some(crate::sts::STS_VERSION) && ex.action != "AssumeRole" {
        let (action, params) =
            crate::sts::admit(&ex.method, &ex.path_and_query, &ex.headers, body)?;
        ex.params = params.clone();
        return Ok(Admitted { action, params });
    }

    let now = shared.clock.now();
    let verified = verify_acs3(
        &ex.method,
        &ex.path_and_query,
        &ex.headers,
        body,
        now,
        |ak| lock(&shared.state).credentials.get(ak).cloned(),
    )?;
    ex.params = verified.params.clone();
    ex.access_key_id = Some(verified.access_key_id.clone());
    lock(&shared.nonces).check_and_record(&verified.nonce, verified.date, now)?;

    if verified.version == crate::sts::STS_VERSION {
        let action = crate::sts::signed_action(&verified.action).ok_or_else(|| {
            ApiError::api_not_found(format!("STS has no signed action {:?}.", verified.action))
        })?;
        return Ok(Admitted {
            action,
            params: verified.params,
        });
    }
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
    at_dedicated_gateway(shared, ex, &verified.action, &verified.params)?;
    lock(&shared.state).count_use(&verified.access_key_id, now);
    Ok(Admitted {
        action,
        params: verified.params,
    })
}

/// A KMS action sent to a KMS instance's dedicated gateway (by `Host`) must be one it serves.
fn at_dedicated_gateway(
    shared: &Shared,
    ex: &Exchange,
    action: &str,
    params: &BTreeMap<String, String>,
) -> Result<(), ApiError> {
    let host = ex.headers.iter().find(|(n, _)| n == "host");
    match host.and_then(|(_, h)| crate::gateway::instance_of(h)) {
        Some(instance) => crate::gateway::admit(&lock(&shared.state), instance, action, params),
        None => Ok(()),
    }
}

/// Runs the action on the blocking pool, so a slow one (RSA key generation) leaves the server
/// answering others, and injected hangs and delays running, meanwhile.
async fn run_action(shared: &Arc<Shared>, admitted: Admitted) -> Result<Value, ApiError> {
    let shared = shared.clone();
    tokio::task::spawn_blocking(move || {
        let now = shared.clock.now();
        let mut state = lock(&shared.state);
        (admitted.action)(&mut Ctx {
            state: &mut state,
            params: &admitted.params,
            now,
        })
    })
    .await
    .unwrap_or_else(|e| {
        Err(ApiError::service(
            500,
            "InternalFailure",
            format!("Internal Failure. (emulator: the action panicked: {e})"),
        ))
    })
}
