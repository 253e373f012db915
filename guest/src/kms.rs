//! Typed KMS 2016-01-20 actions over a [`Transport`], each request signed with ACS3.
//!
//! One error type carries what KMS said (HTTP status, Code, Message, RequestId) so callers can
//! turn it into advice; nothing here knows about cosign.

use crate::acs3;
use crate::credentials::Credentials;
use crate::transport::{HttpRequest, HttpResponse, Transport, TransportError};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::fmt;
use std::time::{Duration, SystemTime};

const API_VERSION: &str = "2016-01-20";
const USER_AGENT: &str = concat!("sigstore-kms-alibabakms/", env!("CARGO_PKG_VERSION"));
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// An error answer from the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KmsError {
    pub action: &'static str,
    pub http_status: u16,
    pub code: String,
    pub message: String,
    pub request_id: String,
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
        }
    }
}

/// A KMS action with its parameters, ready to be signed and sent.
pub struct Call {
    pub action: &'static str,
    pub params: Vec<(&'static str, String)>,
}

pub struct Client<'a> {
    transport: &'a dyn Transport,
    endpoint: String,
    credentials: Credentials,
}

impl<'a> Client<'a> {
    pub fn new(transport: &'a dyn Transport, endpoint: &str, credentials: Credentials) -> Self {
        Client {
            transport,
            endpoint: endpoint.to_string(),
            credentials,
        }
    }

    pub fn credentials(&self) -> &Credentials {
        &self.credentials
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
        if let Some(token) = &self.credentials.security_token {
            headers.push((
                "x-acs-accesskey-id".into(),
                self.credentials.access_key_id.clone(),
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
            &self.credentials.access_key_id,
            &self.credentials.access_key_secret,
        );
        // `host` travels as the URI authority; wasi:http does not let a guest set it.
        headers.retain(|(k, _)| k != "host");
        headers.push(("authorization".into(), authorization));
        HttpRequest {
            method: "POST",
            authority: self.endpoint.clone(),
            path_and_query: format!("/?{}", acs3::canonical_query(&query)),
            headers,
            body: Vec::new(),
            timeout: Some(REQUEST_TIMEOUT),
        }
    }

    /// Sends calls concurrently (one round trip) and decodes each answer.
    pub fn call_all(&self, calls: &[Call]) -> Vec<Result<serde_json::Value, Error>> {
        let now = SystemTime::now();
        let requests = calls
            .iter()
            .map(|c| self.request(c, now, &new_nonce()))
            .collect();
        self.transport
            .send_all(requests)
            .into_iter()
            .zip(calls)
            .map(|(outcome, call)| decode(call.action, outcome.map_err(Error::Transport)?))
            .collect()
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

fn decode(action: &'static str, resp: HttpResponse) -> Result<serde_json::Value, Error> {
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
    let mut code = field("Code");
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
    // Bound what a misbehaving endpoint can push into our error message.
    let message: String = field("Message").chars().take(500).collect();
    Err(Error::Kms(KmsError {
        action,
        http_status: resp.status,
        code,
        message,
        request_id,
    }))
}

/// 32 lower-case hex characters, unique per request (a reused nonce is rejected as a replay).
fn new_nonce() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the platform provides randomness");
    hex::encode(bytes)
}

/// `yyyy-MM-ddTHH:mm:ssZ` in UTC.
pub fn format_date(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

// Howard Hinnant's days-to-civil algorithm: no date crate needed for one format.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
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
}
