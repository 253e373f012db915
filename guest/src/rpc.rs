//! Alibaba Cloud's RPC-style API, signed with ACS3: the one client KMS and STS share.
//!
//! An [`Api`] names a product and its version, a [`Call`] one action with its parameters.
//! The [`Client`] builds each request (date, nonce, signature, or none for an anonymous
//! call), sends the calls of a batch together, retries what is transient within its
//! [`Deadline`], decodes the answer to JSON or a typed [`Error`], logs one line per request,
//! and, once per client, gets credentials again when the STS token has expired.

use crate::access_key::Credentials;
use crate::acs3;
use crate::diag;
use crate::retry::{self, Clock, Deadline, RealClock};
use crate::rfc3339::format_date;
use crate::transport::{HttpRequest, HttpResponse, Scheme, Transport, TransportError};
use serde::de::DeserializeOwned;
use std::cell::RefCell;
use std::num::NonZeroI32;
use std::time::{Duration, SystemTime};

mod error;
pub use error::{Error, ServiceError};

const USER_AGENT: &str = concat!("sigstore-kms-alibabakms/", env!("CARGO_PKG_VERSION"));

/// A product's RPC API.
#[derive(Debug, PartialEq, Eq)]
pub struct Api {
    /// `KMS`, `STS`: how messages name the service.
    pub product: &'static str,
    /// `x-acs-version`.
    pub version: &'static str,
    /// Prefix of the action in diagnostic lines (`STS AssumeRole`; KMS actions stand alone).
    pub log_prefix: &'static str,
    /// What to check when the endpoint answers with a redirect.
    pub endpoint_hint: &'static str,
}

/// An action with its parameters, ready to be signed and sent.
#[derive(Clone)]
pub struct Call {
    pub action: &'static str,
    pub params: Vec<(&'static str, String)>,
    /// The parameters travel as a form body rather than in the query (a token that must
    /// never appear in a URL).
    pub in_body: bool,
}

impl Call {
    /// Parameters in the query, as every KMS action sends them.
    pub fn new(action: &'static str, params: Vec<(&'static str, String)>) -> Self {
        Call {
            action,
            params,
            in_body: false,
        }
    }

    /// Parameters in an `application/x-www-form-urlencoded` body.
    pub fn form(action: &'static str, params: Vec<(&'static str, String)>) -> Self {
        Call {
            in_body: true,
            ..Call::new(action, params)
        }
    }
}

/// Gets credentials again (the credential chain, re-run) after the service said the STS
/// token expired; the error is the chain's message.
pub type Refresh<'a> = Box<dyn Fn() -> Result<Credentials, String> + 'a>;

/// What came of the one refresh a client makes after `InvalidSecurityToken.Expired`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refreshed {
    /// New credentials; the refused requests were sent again with them.
    New,
    /// The source gave the same token again (e.g. a static `ALIBABA_CLOUD_SECURITY_TOKEN`).
    Same,
    /// Getting credentials failed; the text says why (never a value).
    Failed(String),
}

/// The code answered for an STS token past its expiration.
pub const TOKEN_EXPIRED: &str = "InvalidSecurityToken.Expired";

/// A retry is not worth starting with less time than this left.
const MIN_ATTEMPT_TIME: Duration = Duration::from_millis(100);

pub struct Client<'a> {
    api: &'static Api,
    transport: &'a dyn Transport,
    endpoint: String,
    /// `None`: anonymous calls (the OIDC token is the proof).
    credentials: Option<RefCell<Credentials>>,
    refresh: Option<Refresh<'a>>,
    refreshed: RefCell<Option<Refreshed>>,
    clock: &'a dyn Clock,
    deadline: Deadline,
}

impl<'a> Client<'a> {
    /// An anonymous client of `api` at `endpoint` (`host[:port]`), bound by `deadline`.
    pub fn new(
        api: &'static Api,
        transport: &'a dyn Transport,
        endpoint: &str,
        deadline: Deadline,
    ) -> Self {
        Client {
            api,
            transport,
            endpoint: endpoint.to_string(),
            credentials: None,
            refresh: None,
            refreshed: RefCell::new(None),
            clock: &RealClock,
            deadline,
        }
    }

    /// Signs every request with `credentials` (ACS3).
    pub fn signed(mut self, credentials: Credentials) -> Self {
        self.credentials = Some(RefCell::new(credentials));
        self
    }

    /// The same client on another clock (unit tests).
    pub fn with_clock(mut self, clock: &'a dyn Clock) -> Self {
        self.clock = clock;
        self
    }

    /// When the service answers that the STS token expired, get credentials once more with
    /// `refresh` and send the refused requests again (once per client).
    pub fn with_refresh(mut self, refresh: Refresh<'a>) -> Self {
        self.refresh = Some(refresh);
        self
    }

    /// Where the credentials in use came from (empty for an anonymous client).
    pub fn source(&self) -> String {
        self.credentials
            .as_ref()
            .map(|c| c.borrow().source.clone())
            .unwrap_or_default()
    }

    /// What the refresh after an expired STS token gave, if one was made.
    pub fn refreshed(&self) -> Option<Refreshed> {
        self.refreshed.borrow().clone()
    }

    /// Builds the HTTP request for a call, at time `now` with `nonce`, signed unless the
    /// client is anonymous.
    pub fn request(&self, call: &Call, now: SystemTime, nonce: &str) -> HttpRequest {
        let params: Vec<(&str, &str)> = call.params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (query, body) = if call.in_body {
            (Vec::new(), acs3::canonical_query(&params).into_bytes())
        } else {
            (params, Vec::new())
        };
        let mut headers: Vec<(String, String)> = vec![
            ("host".into(), self.endpoint.clone()),
            ("x-acs-action".into(), call.action.into()),
            ("x-acs-version".into(), self.api.version.into()),
            ("x-acs-date".into(), format_date(now)),
            ("x-acs-signature-nonce".into(), nonce.into()),
            ("accept".into(), "application/json".into()),
            ("user-agent".into(), USER_AGENT.into()),
        ];
        if call.in_body {
            headers.push((
                "content-type".into(),
                "application/x-www-form-urlencoded".into(),
            ));
        }
        if let Some(credentials) = &self.credentials {
            let credentials = credentials.borrow();
            let payload_sha256 = if body.is_empty() {
                acs3::EMPTY_BODY_SHA256.to_string()
            } else {
                acs3::payload_sha256(&body)
            };
            let header_refs: Vec<(&str, &str)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let added = acs3::sign(
                &acs3::SignableRequest {
                    method: "POST",
                    path: "/",
                    query: &query,
                    headers: &header_refs,
                    payload_sha256: &payload_sha256,
                },
                &acs3::SigningKey {
                    access_key_id: &credentials.access_key_id,
                    secret: &credentials.access_key_secret,
                    security_token: credentials.security_token.as_deref(),
                },
            );
            headers.extend(added.into_iter().map(|(k, v)| (k.to_string(), v)));
        }
        // `host` is signed but travels as the URI authority: wasi:http does not let a guest
        // set it.
        headers.retain(|(k, _)| k != "host");
        let path_and_query = if query.is_empty() {
            "/".to_string()
        } else {
            format!("/?{}", acs3::canonical_query(&query))
        };
        HttpRequest {
            method: "POST",
            scheme: Scheme::Https,
            authority: self.endpoint.clone(),
            path_and_query,
            headers,
            body,
            timeout: Some(retry::REQUEST_CAP),
        }
    }

    /// Sends calls concurrently (one round trip) and decodes each answer, in the order of
    /// `calls`. Transient failures are sent again, re-signed, after a backoff (see
    /// [`retry`]); nothing waits past the deadline. Calls refused because the STS token
    /// expired are sent once more with fresh credentials, if the client can refresh them and
    /// has not done so yet.
    pub fn call_all(&self, calls: &[Call]) -> Vec<Result<serde_json::Value, Error>> {
        let mut results = self.send_retrying(calls);
        let expired: Vec<usize> = results
            .iter()
            .enumerate()
            .filter(|(_, r)| matches!(r, Err(e) if e.code() == Some(TOKEN_EXPIRED)))
            .map(|(i, _)| i)
            .collect();
        if expired.is_empty() || !self.refresh_once() {
            return results;
        }
        let again: Vec<Call> = expired.iter().map(|&i| calls[i].clone()).collect();
        for (i, result) in expired.into_iter().zip(self.send_retrying(&again)) {
            results[i] = result;
        }
        results
    }

    /// One call, its answer decoded to `T`.
    pub fn call<T: DeserializeOwned>(&self, call: Call) -> Result<T, Error> {
        let [answer] = self.call_array([call]);
        answer
    }

    /// Two calls sent together (one round trip), each answer decoded to its own type.
    pub fn call_pair<A: DeserializeOwned, B: DeserializeOwned>(
        &self,
        a: Call,
        b: Call,
    ) -> (Result<A, Error>, Result<B, Error>) {
        let (action_a, action_b) = (a.action, b.action);
        let mut answers = self.call_all(&[a, b]).into_iter();
        let mut next = |action| match answers.next() {
            Some(answer) => answer,
            None => Err(self.lost(action)),
        };
        let first = next(action_a).and_then(|v| parse(self.api, action_a, v));
        let second = next(action_b).and_then(|v| parse(self.api, action_b, v));
        (first, second)
    }

    /// `N` calls of one answer type sent together, answers in the calls' order.
    pub fn call_array<T: DeserializeOwned, const N: usize>(
        &self,
        calls: [Call; N],
    ) -> [Result<T, Error>; N] {
        let actions = calls.each_ref().map(|c| c.action);
        let mut answers = self.call_all(&calls).into_iter();
        actions.map(|action| match answers.next() {
            Some(answer) => answer.and_then(|v| parse(self.api, action, v)),
            None => Err(self.lost(action)),
        })
    }

    /// The transport gave fewer outcomes than requests: a broken transport, said as such.
    fn lost(&self, action: &'static str) -> Error {
        Error::BadResponse {
            product: self.api.product,
            action,
            detail: "the transport returned no outcome for the request".into(),
        }
    }

    /// Gets credentials again, at most once per client; true when they are new, so the
    /// refused requests are worth sending again.
    fn refresh_once(&self) -> bool {
        let (Some(refresh), Some(credentials)) = (&self.refresh, &self.credentials) else {
            return false;
        };
        if self.refreshed.borrow().is_some() {
            return false;
        }
        diag::line(|| {
            format!(
                "credentials: {} says the STS token expired; getting credentials again (once)",
                self.api.product
            )
        });
        let outcome = match refresh() {
            Ok(new) => {
                let same = {
                    let old = credentials.borrow();
                    new.access_key_id == old.access_key_id
                        && new.security_token == old.security_token
                };
                if same {
                    Refreshed::Same
                } else {
                    *credentials.borrow_mut() = new;
                    Refreshed::New
                }
            }
            Err(why) => Refreshed::Failed(why),
        };
        let new = outcome == Refreshed::New;
        *self.refreshed.borrow_mut() = Some(outcome);
        new
    }

    fn send_retrying(&self, calls: &[Call]) -> Vec<Result<serde_json::Value, Error>> {
        let mut results: Vec<Option<Result<serde_json::Value, Error>>> = vec![None; calls.len()];
        let mut pending: Vec<usize> = (0..calls.len()).collect();
        let mut attempt = 0u32;
        while !pending.is_empty() {
            let now = self.clock.now();
            let remaining = self.deadline.remaining(now);
            if remaining.is_zero() {
                for &i in &pending {
                    results[i] = Some(Err(self.deadline_error(&calls[i])));
                }
                break;
            }
            // The deadline bounds the request itself when it is nearer than the cap.
            let timeout = remaining.min(retry::REQUEST_CAP);
            let requests = pending
                .iter()
                .map(|&i| {
                    let mut r = self.request(&calls[i], now, &new_nonce());
                    r.timeout = Some(timeout);
                    r
                })
                .collect();
            let mut outcomes = self.transport.send_all(requests);
            outcomes.resize_with(pending.len(), || {
                Err(TransportError::Other {
                    authority: self.endpoint.clone(),
                    detail: "the transport returned no outcome for the request".into(),
                })
            });
            attempt += 1;
            let elapsed = self.clock.now().duration_since(now).unwrap_or_default();
            for (&i, outcome) in pending.iter().zip(&outcomes) {
                diag::line(|| {
                    let what = format!("{}{}", self.api.log_prefix, calls[i].action);
                    diag::request_line(&what, &self.endpoint, outcome, elapsed, attempt)
                });
            }
            let mut again = Vec::new();
            let mut wait = Duration::ZERO;
            for (&i, outcome) in pending.iter().zip(outcomes) {
                let call = &calls[i];
                let (result, retryable) = match outcome {
                    Err(TransportError::Timeout { .. })
                        if self.deadline.remaining(self.clock.now()) <= MIN_ATTEMPT_TIME =>
                    {
                        (Err(self.deadline_error(call)), false)
                    }
                    Err(e) => {
                        let r = retry::retryable_transport(call.action, &e);
                        (Err(Error::Transport(e)), r)
                    }
                    Ok(resp) => {
                        if let Some(w) = retry::rate_limit_wait(&resp) {
                            wait = wait.max(w);
                        }
                        let result = decode(self.api, call.action, &self.endpoint, resp, now);
                        let r = matches!(&result, Err(Error::Service(e))
                            if retry::retryable_code(call.action, e.http_status, &e.code));
                        (result, r)
                    }
                };
                if retryable && attempt < retry::MAX_ATTEMPTS {
                    again.push(i);
                }
                results[i] = Some(result);
            }
            if again.is_empty() {
                break;
            }
            let delay = retry::backoff(attempt - 1, retry::random_u64()).max(wait);
            // Retry only when there is time left to wait and to send once more; otherwise
            // the last answer stands.
            if self.deadline.remaining(self.clock.now()) <= delay + MIN_ATTEMPT_TIME {
                break;
            }
            self.clock.sleep(delay);
            pending = again;
        }
        results
            .into_iter()
            .zip(calls)
            .map(|(r, call)| r.unwrap_or_else(|| Err(self.deadline_error(call))))
            .collect()
    }

    fn deadline_error(&self, call: &Call) -> Error {
        Error::Deadline {
            label: self.deadline.label.clone(),
            product: self.api.product,
            action: call.action,
            authority: self.endpoint.clone(),
        }
    }
}

fn parse<T: DeserializeOwned>(
    api: &Api,
    action: &'static str,
    value: serde_json::Value,
) -> Result<T, Error> {
    serde_json::from_value(value).map_err(|e| Error::BadResponse {
        product: api.product,
        action,
        detail: e.to_string(),
    })
}

fn decode(
    api: &'static Api,
    action: &'static str,
    authority: &str,
    resp: HttpResponse,
    sent_at: SystemTime,
) -> Result<serde_json::Value, Error> {
    if (300..400).contains(&resp.status) {
        return Err(Error::Redirect {
            api,
            action,
            authority: authority.to_string(),
            status: resp.status,
            location: resp.header("location").and_then(location_origin),
        });
    }
    let json: Option<serde_json::Value> = serde_json::from_slice(&resp.body).ok();
    if (200..300).contains(&resp.status) {
        return json.ok_or_else(|| Error::BadResponse {
            product: api.product,
            action,
            detail: "the body is not JSON".into(),
        });
    }
    let field = |name: &str| {
        json.as_ref()
            .and_then(|j| j.get(name))
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string()
    };
    // Bound what a misbehaving endpoint can push into our error message, and keep it inert.
    use crate::untrusted::{server_text, CODE_CHARS, MESSAGE_CHARS, REQUEST_ID_CHARS};
    let mut code = server_text(&field("Code"), CODE_CHARS);
    if code.is_empty() {
        code = format!("HTTP{}", resp.status);
    }
    let mut request_id = field("RequestId");
    if request_id.is_empty() {
        request_id = resp
            .header("x-acs-request-id")
            .unwrap_or_default()
            .to_string();
    }
    let request_id = server_text(&request_id, REQUEST_ID_CHARS);
    let message = server_text(&field("Message"), MESSAGE_CHARS);
    let clock_skew_secs = if code == "InvalidTimeStamp.Expired" {
        clock_skew(sent_at, resp.header("date"))
    } else {
        None
    };
    Err(Error::Service(ServiceError {
        product: api.product,
        action,
        http_status: resp.status,
        code,
        message,
        request_id,
        clock_skew_secs,
    }))
}

/// `scheme://authority` of an absolute `Location`; a relative one (or junk) names no other
/// host. Path and query are left out: they may carry anything.
fn location_origin(location: &str) -> Option<String> {
    let (scheme, rest) = location.trim().split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let ok = |s: &str, extra: &[u8]| {
        !s.is_empty()
            && s.len() <= 255
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || extra.contains(&b))
    };
    (ok(scheme, b"+-.") && ok(authority, b"-.:[]_")).then(|| format!("{scheme}://{authority}"))
}

/// Local time of the request (whole seconds, as `x-acs-date` carries) minus the service's
/// time from the answer's `Date` header.
fn clock_skew(sent_at: SystemTime, date: Option<&str>) -> Option<NonZeroI32> {
    let server = crate::rfc3339::parse_http_date(date?)?;
    let secs = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
    };
    NonZeroI32::new(i32::try_from(secs(sent_at) - secs(server)).ok()?)
}

/// 32 lower-case hex characters, unique per request (a reused nonce is rejected as a replay).
fn new_nonce() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the platform provides randomness");
    hex::encode(bytes)
}

#[cfg(test)]
mod tests;
