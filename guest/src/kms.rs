//! Typed KMS 2016-01-20 actions over a [`Transport`], each request signed with ACS3.
//!
//! One error type carries what KMS said (HTTP status, Code, Message, RequestId) so callers can
//! turn it into advice; nothing here knows about cosign.

use crate::acs3;
use crate::credentials::Credentials;
use crate::diag;
use crate::retry::{self, Clock, Deadline, RealClock};
pub use crate::rfc3339::format_date;
use crate::transport::{HttpRequest, HttpResponse, Scheme, Transport, TransportError};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::cell::RefCell;
use std::fmt;
use std::num::NonZeroI32;
use std::time::{Duration, SystemTime};

const API_VERSION: &str = "2016-01-20";
const USER_AGENT: &str = concat!("sigstore-kms-alibabakms/", env!("CARGO_PKG_VERSION"));

/// An error answer from the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KmsError {
    pub action: &'static str,
    pub http_status: u16,
    pub code: String,
    pub message: String,
    pub request_id: String,
    /// For `InvalidTimeStamp.Expired`: how far the local clock is ahead of the service's
    /// (negative: behind), from the request's `x-acs-date` and the answer's `Date` header.
    /// (`NonZero` keeps the error small; no skew needs no report.)
    pub clock_skew_secs: Option<NonZeroI32>,
}

impl fmt::Display for KmsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "KMS {} failed with {} (HTTP {}",
            self.action, self.code, self.http_status
        )?;
        if !self.request_id.is_empty() {
            write!(f, ", request id {}", self.request_id)?;
        }
        write!(f, ")")?;
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    Transport(TransportError),
    Kms(KmsError),
    /// A 2xx answer we could not understand.
    BadResponse {
        action: &'static str,
        detail: String,
    },
    /// The endpoint answered with a redirect (3xx). Redirects are never followed: the next
    /// hop would receive a signed request (and its STS token) meant for KMS.
    Redirect {
        action: &'static str,
        authority: String,
        status: u16,
        /// `scheme://host[:port]` of the `Location` header, if any (never its path or query).
        location: Option<String>,
    },
    /// The call's deadline passed (or had passed) before KMS answered.
    Deadline {
        /// `deadline …` or `time limit of …`.
        label: String,
        action: &'static str,
        authority: String,
    },
}

impl Error {
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Kms(e) => Some(&e.code),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Transport(e) => e.fmt(f),
            Error::Kms(e) => e.fmt(f),
            Error::BadResponse { action, detail } => {
                write!(
                    f,
                    "KMS {action} returned an answer that could not be read: {detail}"
                )
            }
            Error::Redirect {
                action,
                authority,
                status,
                location,
            } => {
                write!(
                    f,
                    "the KMS endpoint {authority} answered {action} with a redirect (HTTP {status}"
                )?;
                if let Some(to) = location {
                    write!(f, " to {to}")?;
                }
                write!(
                    f,
                    "); redirects are not followed. Check the endpoint in the key reference: it \
                     must be the KMS endpoint itself (kms.<region>.aliyuncs.com, or a host in \
                     SIGSTORE_ALIBABAKMS_ALLOWED_HOSTS that serves the KMS API)"
                )
            }
            Error::Deadline {
                label,
                action,
                authority,
            } => write!(
                f,
                "{label} passed while waiting for KMS {action} at {authority}"
            ),
        }
    }
}

/// A KMS action with its parameters, ready to be signed and sent.
#[derive(Clone)]
pub struct Call {
    pub action: &'static str,
    pub params: Vec<(&'static str, String)>,
}

/// Gets credentials again (the credential chain, re-run) after KMS said the STS token expired.
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

/// The code KMS answers for an STS token past its expiration.
pub const TOKEN_EXPIRED: &str = "InvalidSecurityToken.Expired";

pub struct Client<'a> {
    transport: &'a dyn Transport,
    endpoint: String,
    credentials: RefCell<Credentials>,
    refresh: Option<Refresh<'a>>,
    refreshed: RefCell<Option<Refreshed>>,
    clock: &'a dyn Clock,
    deadline: Deadline,
}

impl<'a> Client<'a> {
    /// A client bound by the current deadline ([`retry::with_deadline`]).
    pub fn new(transport: &'a dyn Transport, endpoint: &str, credentials: Credentials) -> Self {
        Client {
            transport,
            endpoint: endpoint.to_string(),
            credentials: RefCell::new(credentials),
            refresh: None,
            refreshed: RefCell::new(None),
            clock: &RealClock,
            deadline: retry::current(SystemTime::now()),
        }
    }

    /// The same client on another clock and deadline (unit tests).
    pub fn with_clock(mut self, clock: &'a dyn Clock, deadline: Deadline) -> Self {
        self.clock = clock;
        self.deadline = deadline;
        self
    }

    /// When KMS answers that the STS token expired, get credentials once more with
    /// `refresh` and send the refused requests again (once per client).
    pub fn with_refresh(mut self, refresh: Refresh<'a>) -> Self {
        self.refresh = Some(refresh);
        self
    }

    /// Where the credentials in use came from.
    pub fn source(&self) -> String {
        self.credentials.borrow().source.clone()
    }

    /// What the refresh after an expired STS token gave, if one was made.
    pub fn refreshed(&self) -> Option<Refreshed> {
        self.refreshed.borrow().clone()
    }

    /// Builds the signed HTTP request for a call, at time `now` with `nonce`.
    pub fn request(&self, call: &Call, now: SystemTime, nonce: &str) -> HttpRequest {
        let date = format_date(now);
        let mut headers: Vec<(String, String)> = vec![
            ("host".into(), self.endpoint.clone()),
            ("x-acs-action".into(), call.action.into()),
            ("x-acs-version".into(), API_VERSION.into()),
            ("x-acs-date".into(), date),
            ("x-acs-signature-nonce".into(), nonce.into()),
            (
                "x-acs-content-sha256".into(),
                acs3::EMPTY_BODY_SHA256.into(),
            ),
            ("accept".into(), "application/json".into()),
            ("user-agent".into(), USER_AGENT.into()),
        ];
        let credentials = self.credentials.borrow();
        if let Some(token) = &credentials.security_token {
            headers.push((
                "x-acs-accesskey-id".into(),
                credentials.access_key_id.clone(),
            ));
            headers.push(("x-acs-security-token".into(), token.clone()));
        }
        let query: Vec<(&str, &str)> = call.params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let header_refs: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let signable = acs3::SignableRequest {
            method: "POST",
            path: "/",
            query: &query,
            headers: &header_refs,
            payload_sha256: acs3::EMPTY_BODY_SHA256,
        };
        let authorization = acs3::authorization(
            &signable,
            &credentials.access_key_id,
            &credentials.access_key_secret,
        );
        // `host` travels as the URI authority; wasi:http does not let a guest set it.
        headers.retain(|(k, _)| k != "host");
        headers.push(("authorization".into(), authorization));
        HttpRequest {
            method: "POST",
            scheme: Scheme::Https,
            authority: self.endpoint.clone(),
            path_and_query: format!("/?{}", acs3::canonical_query(&query)),
            headers,
            body: Vec::new(),
            timeout: Some(retry::REQUEST_CAP),
        }
    }

    /// Sends calls concurrently (one round trip) and decodes each answer. Transient failures
    /// are sent again, re-signed, after a backoff (see [`retry`]); nothing waits past the
    /// deadline. Calls refused because the STS token expired are sent once more with fresh
    /// credentials, if the client can refresh them and has not done so yet.
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

    /// Gets credentials again, at most once per client; true when they are new, so the
    /// refused requests are worth sending again.
    fn refresh_once(&self) -> bool {
        let Some(refresh) = &self.refresh else {
            return false;
        };
        if self.refreshed.borrow().is_some() {
            return false;
        }
        diag::line(|| {
            "credentials: KMS says the STS token expired; getting credentials again (once)".into()
        });
        let outcome = match refresh() {
            Ok(new) => {
                let same = {
                    let old = self.credentials.borrow();
                    new.access_key_id == old.access_key_id
                        && new.security_token == old.security_token
                };
                if same {
                    Refreshed::Same
                } else {
                    *self.credentials.borrow_mut() = new;
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
            let outcomes = self.transport.send_all(requests);
            attempt += 1;
            let elapsed = self.clock.now().duration_since(now).unwrap_or_default();
            for (&i, outcome) in pending.iter().zip(&outcomes) {
                diag::line(|| {
                    diag::request_line(calls[i].action, &self.endpoint, outcome, elapsed, attempt)
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
                        let result = decode(call.action, &self.endpoint, resp, now);
                        let r = matches!(&result, Err(Error::Kms(e))
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
            .map(|r| r.expect("every call has an outcome"))
            .collect()
    }

    fn deadline_error(&self, call: &Call) -> Error {
        Error::Deadline {
            label: self.deadline.label.clone(),
            action: call.action,
            authority: self.endpoint.clone(),
        }
    }

    pub fn call<T: DeserializeOwned>(&self, call: Call) -> Result<T, Error> {
        let action = call.action;
        let value = self.call_all(&[call]).pop().expect("one answer per call")?;
        parse(action, value)
    }
}

pub fn parse<T: DeserializeOwned>(
    action: &'static str,
    value: serde_json::Value,
) -> Result<T, Error> {
    serde_json::from_value(value).map_err(|e| Error::BadResponse {
        action,
        detail: e.to_string(),
    })
}

/// A retry is not worth starting with less time than this left.
const MIN_ATTEMPT_TIME: Duration = Duration::from_millis(100);

fn decode(
    action: &'static str,
    authority: &str,
    resp: HttpResponse,
    sent_at: SystemTime,
) -> Result<serde_json::Value, Error> {
    if (300..400).contains(&resp.status) {
        return Err(Error::Redirect {
            action,
            authority: authority.to_string(),
            status: resp.status,
            location: resp.header("location").and_then(location_origin),
        });
    }
    let json: Option<serde_json::Value> = serde_json::from_slice(&resp.body).ok();
    if (200..300).contains(&resp.status) {
        return json.ok_or_else(|| Error::BadResponse {
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
    Err(Error::Kms(KmsError {
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

// ---- typed actions -------------------------------------------------------------------------

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeyMetadata {
    pub key_id: String,
    #[serde(default)]
    pub key_spec: String,
    #[serde(default)]
    pub key_usage: String,
    #[serde(default)]
    pub key_state: String,
    #[serde(default)]
    pub primary_key_version: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeyMetadataResponse {
    pub key_metadata: KeyMetadata,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeyVersion {
    #[serde(default)]
    pub key_id: String,
    pub key_version_id: String,
    #[serde(default)]
    pub creation_date: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct KeyVersions {
    #[serde(default)]
    key_version: Vec<KeyVersion>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListKeyVersionsResponse {
    #[serde(default)]
    key_versions: Option<KeyVersions>,
    #[serde(default)]
    pub total_count: u64,
    #[serde(default)]
    pub page_number: u64,
    #[serde(default)]
    pub page_size: u64,
}

impl ListKeyVersionsResponse {
    pub fn versions(self) -> Vec<KeyVersion> {
        self.key_versions.map(|k| k.key_version).unwrap_or_default()
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PublicKeyResponse {
    pub public_key: String,
    #[serde(default)]
    pub key_id: String,
    #[serde(default)]
    pub key_version_id: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SignResponse {
    /// Base64 of the signature bytes.
    pub value: String,
    #[serde(default)]
    pub request_id: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct VerifyResponse {
    /// Whether the signature is valid: a JSON boolean.
    pub value: bool,
}

pub const PAGE_SIZE: u64 = 100;

pub fn describe_key(key_id: &str) -> Call {
    Call {
        action: "DescribeKey",
        params: vec![("KeyId", key_id.into())],
    }
}

pub fn list_key_versions(key_id: &str, page: u64) -> Call {
    Call {
        action: "ListKeyVersions",
        params: vec![
            ("KeyId", key_id.into()),
            ("PageNumber", page.to_string()),
            ("PageSize", PAGE_SIZE.to_string()),
        ],
    }
}

pub fn get_public_key(key_id: &str, version: &str) -> Call {
    Call {
        action: "GetPublicKey",
        params: vec![("KeyId", key_id.into()), ("KeyVersionId", version.into())],
    }
}

pub fn asymmetric_sign(key_id: &str, version: &str, algorithm: &str, digest_b64: String) -> Call {
    Call {
        action: "AsymmetricSign",
        params: vec![
            ("KeyId", key_id.into()),
            ("KeyVersionId", version.into()),
            ("Algorithm", algorithm.into()),
            ("Digest", digest_b64),
        ],
    }
}

/// Note the field names: `Digest` is the digest, `Value` the signature (the older Go plugin
/// swapped them).
pub fn asymmetric_verify(
    key_id: &str,
    version: &str,
    algorithm: &str,
    digest_b64: String,
    signature_b64: String,
) -> Call {
    Call {
        action: "AsymmetricVerify",
        params: vec![
            ("KeyId", key_id.into()),
            ("KeyVersionId", version.into()),
            ("Algorithm", algorithm.into()),
            ("Digest", digest_b64),
            ("Value", signature_b64),
        ],
    }
}

pub fn create_key(spec: &str, instance_id: Option<&str>) -> Call {
    let mut params = vec![
        ("KeySpec", spec.to_string()),
        ("KeyUsage", "SIGN/VERIFY".to_string()),
        (
            "Description",
            "Created by sigstore-kms-alibabakms for cosign".to_string(),
        ),
    ];
    if let Some(i) = instance_id {
        params.push(("DKMSInstanceId", i.to_string()));
    }
    Call {
        action: "CreateKey",
        params,
    }
}

pub fn create_alias(alias: &str, key_id: &str) -> Call {
    Call {
        action: "CreateAlias",
        params: vec![("AliasName", alias.into()), ("KeyId", key_id.into())],
    }
}

/// The shortest window KMS allows: a key that lost a race leaves as soon as possible.
pub fn schedule_key_deletion(key_id: &str) -> Call {
    Call {
        action: "ScheduleKeyDeletion",
        params: vec![
            ("KeyId", key_id.into()),
            ("PendingWindowInDays", "7".into()),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::mock::{json, MockTransport};

    fn creds(token: Option<&str>) -> Credentials {
        Credentials {
            access_key_id: "testAccessKeyId".into(),
            access_key_secret: "testAccessKeySecret".into(),
            security_token: token.map(Into::into),
            source: "test".into(),
        }
    }

    #[test]
    fn dates_are_utc_iso8601() {
        assert_eq!(format_date(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_704_067_200);
        assert_eq!(format_date(t), "2024-01-01T00:00:00Z");
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_709_210_096);
        assert_eq!(format_date(t), "2024-02-29T12:34:56Z");
    }

    /// The request the client builds is vector E1 of the reference, end to end.
    #[test]
    fn builds_vector_e1() {
        let t = MockTransport::new(|_| unreachable!());
        let c = Client::new(&t, "kms.cn-hangzhou.aliyuncs.com", creds(None));
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_704_067_200);
        let req = c.request(
            &get_public_key("alias/test-key", "2ab1a983-7072-4bbc-a582-584b5bd8ecf3"),
            now,
            "0123456789abcdef0123456789abcdef",
        );
        assert_eq!(req.authority, "kms.cn-hangzhou.aliyuncs.com");
        assert_eq!(
            req.path_and_query,
            "/?KeyId=alias%2Ftest-key&KeyVersionId=2ab1a983-7072-4bbc-a582-584b5bd8ecf3"
        );
        let auth = &req
            .headers
            .iter()
            .find(|(k, _)| k == "authorization")
            .unwrap()
            .1;
        assert!(auth.ends_with(
            "Signature=beb7344b198f5dd8d70ffa15a9b1cc27f52f75841976091efa85da9ca4fee015"
        ));
        assert!(!req.headers.iter().any(|(k, _)| k == "host"));
    }

    #[test]
    fn sts_tokens_are_sent_and_signed() {
        let t = MockTransport::new(|_| unreachable!());
        let c = Client::new(
            &t,
            "kms.cn-hangzhou.aliyuncs.com",
            creds(Some("testSecurityToken")),
        );
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_704_067_200);
        let req = c.request(
            &asymmetric_sign(
                "key-hzz630494463ejqjx0001",
                "2ab1a983-7072-4bbc-a582-584b5bd8ecf3",
                "ECDSA_SHA_256",
                "+/8AAQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0=".into(),
            ),
            now,
            "0123456789abcdef0123456789abcdef",
        );
        let auth = &req
            .headers
            .iter()
            .find(|(k, _)| k == "authorization")
            .unwrap()
            .1;
        assert!(
            auth.ends_with(
                "Signature=d09cbfe66a9415790dbfa45b2163be2c0c19ae40a78df0e1b6b7dc3b16a45f0a"
            ),
            "{auth}"
        );
    }

    #[test]
    fn each_request_gets_a_fresh_nonce() {
        let t = MockTransport::new(|_| json(200, serde_json::json!({})));
        let c = Client::new(&t, "kms.example.aliyuncs.com", creds(None));
        c.call_all(&[describe_key("a"), describe_key("b")]);
        let sent = t.sent.borrow();
        let nonce = |i: usize| {
            sent[i]
                .headers
                .iter()
                .find(|(k, _)| k == "x-acs-signature-nonce")
                .unwrap()
                .1
                .clone()
        };
        assert_ne!(nonce(0), nonce(1));
        assert_eq!(nonce(0).len(), 32);
    }

    #[test]
    fn errors_keep_code_message_and_request_id() {
        let t = MockTransport::new(|_| {
            json(
                404,
                serde_json::json!({"Code": "Forbidden.AliasNotFound", "Message": "The specified Alias is not found.", "RequestId": "r-1", "HttpStatus": 404}),
            )
        });
        let c = Client::new(&t, "kms.example.aliyuncs.com", creds(None));
        let e = c
            .call::<KeyMetadataResponse>(describe_key("alias/x"))
            .unwrap_err();
        assert_eq!(e.code(), Some("Forbidden.AliasNotFound"));
        let text = e.to_string();
        assert!(
            text.contains("HTTP 404") && text.contains("r-1") && text.contains("not found"),
            "{text}"
        );
    }

    #[test]
    fn non_json_errors_still_say_something() {
        let t = MockTransport::new(|_| {
            Ok(HttpResponse {
                status: 502,
                headers: vec![],
                body: b"<html>bad gateway".to_vec(),
            })
        });
        let c = Client::new(&t, "kms.example.aliyuncs.com", creds(None));
        let e = c
            .call::<KeyMetadataResponse>(describe_key("k"))
            .unwrap_err();
        assert_eq!(e.code(), Some("HTTP502"));
    }

    // ---- retries and deadlines ---------------------------------------------------------

    use crate::retry::{Clock, Deadline};
    use std::cell::{Cell, RefCell};
    use std::rc::Rc;

    /// A clock that only moves when slept on (or told to).
    struct FakeClock {
        now: Cell<SystemTime>,
        slept: RefCell<Vec<Duration>>,
    }

    impl FakeClock {
        fn new() -> Rc<Self> {
            Rc::new(FakeClock {
                now: Cell::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_704_067_200)),
                slept: RefCell::new(Vec::new()),
            })
        }
        fn advance(&self, d: Duration) {
            self.now.set(self.now.get() + d);
        }
    }

    impl Clock for FakeClock {
        fn now(&self) -> SystemTime {
            self.now.get()
        }
        fn sleep(&self, d: Duration) {
            self.slept.borrow_mut().push(d);
            self.advance(d);
        }
    }

    fn in_secs(clock: &FakeClock, secs: u64) -> Deadline {
        Deadline::ctx(clock.now() + Duration::from_secs(secs), "D")
    }

    fn kms_error(status: u16, code: &str) -> Result<HttpResponse, TransportError> {
        json(
            status,
            serde_json::json!({"Code": code, "Message": "m", "RequestId": "r"}),
        )
    }

    fn throttled(time_left_ms: u64) -> Result<HttpResponse, TransportError> {
        let mut r = kms_error(429, "Rejected.Throttling")?;
        r.headers.push((
            "x-ratelimit-user-api".into(),
            format!("Limit:1,Remain:0,TimeLeft:{time_left_ms},Reset:1"),
        ));
        Ok(r)
    }

    /// Answers from a script, one entry per request, then `{}`.
    fn scripted(script: Vec<Result<HttpResponse, TransportError>>) -> MockTransport {
        let script = RefCell::new(script.into_iter());
        MockTransport::new(move |_| {
            script
                .borrow_mut()
                .next()
                .unwrap_or_else(|| json(200, serde_json::json!({"Value": "sig"})))
        })
    }

    fn header<'r>(r: &'r HttpRequest, name: &str) -> &'r str {
        &r.headers.iter().find(|(k, _)| k == name).unwrap().1
    }

    #[test]
    fn throttling_is_retried_re_signed_with_fresh_nonces() {
        let clock = FakeClock::new();
        let t = scripted(vec![
            throttled(10),
            kms_error(503, "ServiceUnavailableTemporary"),
        ]);
        let c = Client::new(&t, "kms.example.aliyuncs.com", creds(None))
            .with_clock(&*clock, in_secs(&clock, 60));
        let v: SignResponse = c
            .call(asymmetric_sign("k", "v", "ECDSA_SHA_256", "AA==".into()))
            .unwrap();
        assert_eq!(v.value, "sig");
        let sent = t.sent.borrow();
        assert_eq!(sent.len(), 3);
        let nonces: std::collections::HashSet<_> = sent
            .iter()
            .map(|r| header(r, "x-acs-signature-nonce"))
            .collect();
        assert_eq!(nonces.len(), 3);
        let slept = clock.slept.borrow();
        assert_eq!(slept.len(), 2);
        assert!(slept[0] >= Duration::from_millis(10) && slept[0] <= retry::BACKOFF_BASE);
        assert!(slept[1] <= retry::BACKOFF_BASE * 2);
    }

    #[test]
    fn time_left_is_the_least_wait() {
        let clock = FakeClock::new();
        let t = scripted(vec![throttled(3_000)]);
        let c = Client::new(&t, "kms.example.aliyuncs.com", creds(None))
            .with_clock(&*clock, in_secs(&clock, 60));
        c.call::<serde_json::Value>(describe_key("k")).unwrap();
        assert_eq!(t.sent.borrow().len(), 2);
        assert!(clock.slept.borrow()[0] >= Duration::from_secs(3));
    }

    #[test]
    fn at_most_four_attempts_then_the_last_error() {
        let clock = FakeClock::new();
        let t = MockTransport::new(|_| kms_error(500, "InternalFailure"));
        let c = Client::new(&t, "kms.example.aliyuncs.com", creds(None))
            .with_clock(&*clock, in_secs(&clock, 60));
        let e = c.call::<serde_json::Value>(describe_key("k")).unwrap_err();
        assert_eq!(e.code(), Some("InternalFailure"));
        assert_eq!(t.sent.borrow().len(), retry::MAX_ATTEMPTS as usize);
    }

    #[test]
    fn final_errors_and_create_key_are_sent_once() {
        for (call, status, code) in [
            (describe_key("k"), 400, "InvalidParameter"),
            (describe_key("k"), 404, "Forbidden.AliasNotFound"),
            (create_key("EC_P256", None), 500, "InternalFailure"),
            (create_key("EC_P256", None), 429, "Rejected.Throttling"),
        ] {
            let clock = FakeClock::new();
            let t = MockTransport::new(move |_| kms_error(status, code));
            let c = Client::new(&t, "kms.example.aliyuncs.com", creds(None))
                .with_clock(&*clock, in_secs(&clock, 60));
            let e = c.call::<serde_json::Value>(call).unwrap_err();
            assert_eq!(e.code(), Some(code));
            assert_eq!(t.sent.borrow().len(), 1, "{code}");
            assert!(clock.slept.borrow().is_empty());
        }
        // A broken connection is retried, except for CreateKey.
        let reset = || TransportError::Other {
            authority: "h".into(),
            detail: "ConnectionTerminated".into(),
        };
        let clock = FakeClock::new();
        let t = scripted(vec![Err(reset())]);
        let c = Client::new(&t, "kms.example.aliyuncs.com", creds(None))
            .with_clock(&*clock, in_secs(&clock, 60));
        c.call::<serde_json::Value>(describe_key("k")).unwrap();
        assert_eq!(t.sent.borrow().len(), 2);
        let t = scripted(vec![Err(reset())]);
        let c = Client::new(&t, "kms.example.aliyuncs.com", creds(None))
            .with_clock(&*clock, in_secs(&clock, 60));
        assert!(c
            .call::<serde_json::Value>(create_key("EC_P256", None))
            .is_err());
        assert_eq!(t.sent.borrow().len(), 1);
    }

    #[test]
    fn retries_stop_at_the_deadline() {
        let clock = FakeClock::new();
        // KMS asks for 2 s; only 1 s is left: the throttling error stands, nothing waits.
        let t = MockTransport::new(|_| throttled(2_000));
        let c = Client::new(&t, "kms.example.aliyuncs.com", creds(None))
            .with_clock(&*clock, in_secs(&clock, 1));
        let e = c.call::<serde_json::Value>(describe_key("k")).unwrap_err();
        assert_eq!(e.code(), Some("Rejected.Throttling"));
        assert_eq!(t.sent.borrow().len(), 1);
        assert!(clock.slept.borrow().is_empty());
    }

    #[test]
    fn requests_are_bounded_by_the_deadline() {
        let clock = FakeClock::new();
        let deadline = in_secs(&clock, 3);
        let at = deadline.at;
        let c2 = clock.clone();
        // The endpoint never answers: the host's timeout ends the request at the deadline.
        let t = MockTransport::new(move |r| {
            c2.now.set(at);
            assert_eq!(r.timeout, Some(Duration::from_millis(2_850)));
            Err(TransportError::Timeout {
                authority: r.authority.clone(),
            })
        });
        let c =
            Client::new(&t, "kms.example.aliyuncs.com", creds(None)).with_clock(&*clock, deadline);
        let e = c
            .call::<serde_json::Value>(asymmetric_sign("k", "v", "A", "AA==".into()))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "deadline D passed while waiting for KMS AsymmetricSign at kms.example.aliyuncs.com"
        );
        assert_eq!(t.sent.borrow().len(), 1);
        // A far deadline leaves the normal cap.
        let clock = FakeClock::new();
        let t = MockTransport::new(|r| {
            assert_eq!(r.timeout, Some(retry::REQUEST_CAP));
            json(200, serde_json::json!({}))
        });
        let c = Client::new(&t, "kms.example.aliyuncs.com", creds(None))
            .with_clock(&*clock, in_secs(&clock, 600));
        c.call::<serde_json::Value>(describe_key("k")).unwrap();
    }

    #[test]
    fn a_passed_deadline_sends_nothing() {
        let clock = FakeClock::new();
        let t = MockTransport::new(|_| unreachable!());
        let deadline = Deadline::ctx(clock.now(), "D");
        let c =
            Client::new(&t, "kms.example.aliyuncs.com", creds(None)).with_clock(&*clock, deadline);
        let e = c.call::<serde_json::Value>(describe_key("k")).unwrap_err();
        assert!(matches!(e, Error::Deadline { .. }), "{e}");
        assert!(t.sent.borrow().is_empty());
    }

    #[test]
    fn expired_timestamps_report_the_skew() {
        let clock = FakeClock::new();
        // The service's clock is 20 minutes ahead of ours.
        let t = MockTransport::new(|_| {
            let mut r = kms_error(400, "InvalidTimeStamp.Expired")?;
            r.headers
                .push(("Date".into(), "Mon, 01 Jan 2024 00:20:00 GMT".into()));
            Ok(r)
        });
        let c = Client::new(&t, "kms.example.aliyuncs.com", creds(None))
            .with_clock(&*clock, in_secs(&clock, 60));
        match c.call::<serde_json::Value>(describe_key("k")).unwrap_err() {
            Error::Kms(e) => assert_eq!(e.clock_skew_secs, NonZeroI32::new(-1200)),
            other => panic!("{other}"),
        }
        assert_eq!(t.sent.borrow().len(), 1);
    }

    #[test]
    fn redirects_are_not_followed_and_say_so() {
        let t = MockTransport::new(|_| {
            Ok(HttpResponse {
                status: 307,
                headers: vec![(
                    "Location".into(),
                    "https://user:pw@127.0.0.1:9/steal?token=x".into(),
                )],
                body: b"".to_vec(),
            })
        });
        let c = Client::new(&t, "kms.example.aliyuncs.com", creds(None));
        let e = c.call::<serde_json::Value>(describe_key("k")).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("answered DescribeKey with a redirect (HTTP 307")
                && text.contains("redirects are not followed"),
            "{text}"
        );
        assert!(!text.contains("pw") && !text.contains("token=x"), "{text}");
        assert_eq!(t.sent.borrow().len(), 1, "not retried, not followed");
        assert_eq!(
            location_origin("https://other.example:8443/x?y"),
            Some("https://other.example:8443".into())
        );
        assert_eq!(location_origin("/relative"), None);
    }

    fn expired() -> Result<HttpResponse, TransportError> {
        kms_error(400, TOKEN_EXPIRED)
    }

    fn token_of(r: &HttpRequest) -> String {
        header(r, "x-acs-security-token").to_string()
    }

    #[test]
    fn an_expired_token_is_refreshed_once_and_the_calls_sent_again() {
        // Expired for token "old", fine for any other.
        let t = MockTransport::new(|r| {
            if token_of(r) == "old" {
                expired()
            } else {
                json(200, serde_json::json!({"Value": "sig"}))
            }
        });
        let refreshes = Cell::new(0);
        let c = Client::new(&t, "kms.example.aliyuncs.com", creds(Some("old"))).with_refresh(
            Box::new(|| {
                refreshes.set(refreshes.get() + 1);
                Ok(creds(Some("new")))
            }),
        );
        let answers = c.call_all(&[describe_key("a"), list_key_versions("a", 1)]);
        assert!(answers.iter().all(Result::is_ok), "{answers:?}");
        assert_eq!(refreshes.get(), 1);
        assert_eq!(c.refreshed(), Some(Refreshed::New));
        let tokens: Vec<String> = t.sent.borrow().iter().map(token_of).collect();
        assert_eq!(tokens, ["old", "old", "new", "new"]);
        // Once per client: a second expiry is an error, not another refresh.
        let t2 = MockTransport::new(|_| expired());
        let c = Client::new(&t2, "kms.example.aliyuncs.com", creds(Some("old")))
            .with_refresh(Box::new(|| Ok(creds(Some("new")))));
        let e = c.call::<serde_json::Value>(describe_key("a")).unwrap_err();
        assert_eq!(e.code(), Some(TOKEN_EXPIRED));
        assert_eq!(t2.sent.borrow().len(), 2);
        let e = c.call::<serde_json::Value>(describe_key("a")).unwrap_err();
        assert_eq!(e.code(), Some(TOKEN_EXPIRED));
        assert_eq!(t2.sent.borrow().len(), 3);
    }

    #[test]
    fn the_same_token_or_a_failed_refresh_is_not_sent_again() {
        let t = MockTransport::new(|_| expired());
        let c = Client::new(&t, "kms.example.aliyuncs.com", creds(Some("old")))
            .with_refresh(Box::new(|| Ok(creds(Some("old")))));
        let e = c.call::<serde_json::Value>(describe_key("a")).unwrap_err();
        assert_eq!(e.code(), Some(TOKEN_EXPIRED));
        assert_eq!(c.refreshed(), Some(Refreshed::Same));
        assert_eq!(t.sent.borrow().len(), 1);

        let t = MockTransport::new(|_| expired());
        let c = Client::new(&t, "kms.example.aliyuncs.com", creds(Some("old")))
            .with_refresh(Box::new(|| Err("STS said no".into())));
        c.call::<serde_json::Value>(describe_key("a")).unwrap_err();
        assert_eq!(c.refreshed(), Some(Refreshed::Failed("STS said no".into())));
        assert_eq!(t.sent.borrow().len(), 1);

        // Without a refresher nothing is retried.
        let t = MockTransport::new(|_| expired());
        let c = Client::new(&t, "kms.example.aliyuncs.com", creds(Some("old")));
        c.call::<serde_json::Value>(describe_key("a")).unwrap_err();
        assert_eq!(c.refreshed(), None);
        assert_eq!(t.sent.borrow().len(), 1);
    }
}
