//! Server-side verification of Alibaba Cloud's V3 request signature, `ACS3-HMAC-SHA256`
//! (reference/alibaba-protocol.md §1).
//!
//! Written independently of any client signer, from the spec, so it can be the oracle the
//! plugin's own signer is tested against. Pure: no I/O, no clock, no stored state; replay
//! protection lives in [`NonceCache`], which the server consults after a request verified.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::time::{Duration, SystemTime};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::clock::{format_iso8601, parse_iso8601};
use crate::error::ApiError;

/// The only algorithm implemented (the others, `ACS3-HMAC-SM3` and `ACS3-RSA-SHA256`, are
/// rejected with `InvalidSignatureMethod`).
pub const ALGORITHM: &str = "ACS3-HMAC-SHA256";

/// How far `x-acs-date` may be from the server's clock, either way (DOC-V3: 15 minutes).
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(15 * 60);

/// Headers every V3 request must carry (DOC-V3 common request headers).
pub const REQUIRED_HEADERS: [&str; 6] = [
    "host",
    "x-acs-action",
    "x-acs-version",
    "x-acs-date",
    "x-acs-signature-nonce",
    "x-acs-content-sha256",
];

/// What the server knows about an AccessKey.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credential {
    pub access_key_id: String,
    pub access_key_secret: String,
    /// Set for STS credentials: the request must carry exactly this token in
    /// `x-acs-security-token`, signed.
    pub security_token: Option<String>,
    /// When STS credentials stop working (`InvalidSecurityToken.Expired` from then on).
    pub expiration: Option<SystemTime>,
}

impl Credential {
    /// A long-term RAM AccessKey.
    pub fn access_key(id: impl Into<String>, secret: impl Into<String>) -> Self {
        Credential {
            access_key_id: id.into(),
            access_key_secret: secret.into(),
            security_token: None,
            expiration: None,
        }
    }

    /// Temporary STS credentials.
    pub fn sts(
        id: impl Into<String>,
        secret: impl Into<String>,
        security_token: impl Into<String>,
        expiration: SystemTime,
    ) -> Self {
        Credential {
            access_key_id: id.into(),
            access_key_secret: secret.into(),
            security_token: Some(security_token.into()),
            expiration: Some(expiration),
        }
    }
}

/// A request whose signature checked out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedRequest {
    pub access_key_id: String,
    pub action: String,
    pub version: String,
    /// Query parameters (form-decoded), plus form-body parameters when the body is
    /// `application/x-www-form-urlencoded`.
    pub params: BTreeMap<String, String>,
    pub nonce: String,
    pub date: SystemTime,
    pub signed_headers: Vec<String>,
    pub security_token: Option<String>,
    /// What the signature was computed over, for tests that compare intermediate steps.
    pub canonical_request: String,
}

/// RFC 3986 percent-encoding of the UTF-8 bytes: `A-Z a-z 0-9 - _ . ~` kept, everything else
/// `%XX` with upper-case hex (so a space is `%20`, never `+`).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `key=enc(value)` pairs sorted byte-wise by key and joined with `&` (§1.2). Keys are not
/// encoded, as in the Go SDK (they are plain identifiers).
pub fn canonical_query_string(params: &BTreeMap<String, String>) -> String {
    // BTreeMap<String, _> iterates in byte order of the keys, which is the order required.
    params
        .iter()
        .map(|(k, v)| format!("{k}={}", percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// `ACS3-HMAC-SHA256\n` + hex(sha256(canonical request)).
pub fn string_to_sign(canonical_request: &str) -> String {
    format!(
        "{ALGORITHM}\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    )
}

/// The parts of an `Authorization: ACS3-HMAC-SHA256 Credential=..,SignedHeaders=..,Signature=..`.
struct Authorization<'a> {
    credential: &'a str,
    signed_headers: &'a str,
    signature: &'a str,
}

fn parse_authorization(value: &str) -> Result<Authorization<'_>, ApiError> {
    let Some((algorithm, rest)) = value.split_once(' ') else {
        return Err(ApiError::incomplete_signature(
            "Authorization must be \"ACS3-HMAC-SHA256 Credential=..,SignedHeaders=..,Signature=..\".",
        ));
    };
    if algorithm != ALGORITHM {
        if algorithm.starts_with("ACS3-") {
            return Err(ApiError::invalid_signature_method(algorithm));
        }
        return Err(ApiError::incomplete_signature(format!(
            "Unknown authorization scheme {algorithm:?}."
        )));
    }
    // Exactly the layout the SDKs produce (§1.4): fixed order, no spaces after commas.
    let parts: Vec<&str> = rest.split(',').collect();
    let field = |i: usize, name: &str| -> Result<&str, ApiError> {
        parts
            .get(i)
            .and_then(|p| p.strip_prefix(name))
            .and_then(|p| p.strip_prefix('='))
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                ApiError::incomplete_signature(format!(
                    "Authorization field {} must be {name}=<value>.",
                    i + 1
                ))
            })
    };
    if parts.len() != 3 {
        return Err(ApiError::incomplete_signature(
            "Authorization must have exactly Credential, SignedHeaders and Signature.",
        ));
    }
    Ok(Authorization {
        credential: field(0, "Credential")?,
        signed_headers: field(1, "SignedHeaders")?,
        signature: field(2, "Signature")?,
    })
}

/// The single value of a header that may appear only once.
fn single<'a>(
    headers: &'a BTreeMap<String, Vec<String>>,
    name: &str,
) -> Result<Option<&'a str>, ApiError> {
    match headers.get(name).map(Vec::as_slice) {
        None => Ok(None),
        Some([v]) => Ok(Some(v.as_str())),
        Some(_) => Err(ApiError::incomplete_signature(format!(
            "Header {name} is given more than once."
        ))),
    }
}

fn required<'a>(
    headers: &'a BTreeMap<String, Vec<String>>,
    name: &str,
) -> Result<&'a str, ApiError> {
    match single(headers, name)? {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(ApiError::missing_header(name)),
    }
}

/// Form-decodes `a=b&c=d` (`+` is a space, `%XX` decoded), refusing repeated keys: the SDKs
/// never send them, and a server that silently picked one would hide a client bug.
fn decode_form(input: &[u8], into: &mut BTreeMap<String, String>) -> Result<(), ApiError> {
    for (k, v) in form_urlencoded::parse(input) {
        if into.insert(k.to_string(), v.to_string()).is_some() {
            return Err(ApiError::invalid_parameter(
                &k,
                "The parameter is given more than once.",
            ));
        }
    }
    Ok(())
}

/// Verifies one ACS3-HMAC-SHA256 request exactly as received.
///
/// `headers` are (name, value) pairs in any case; repeated names are allowed only for headers
/// that are not among the required ones and are then joined as the SDKs do (sorted, `,`).
/// `now` is the server's clock; `lookup` resolves an AccessKey id.
///
/// Checks, in order: Authorization layout → required headers → `x-acs-date` format and skew →
/// AccessKey → security token → SignedHeaders completeness → body hash → signature.
pub fn verify_acs3(
    method: &str,
    path_and_query: &str,
    headers: &[(String, String)],
    body: &[u8],
    now: SystemTime,
    lookup: impl Fn(&str) -> Option<Credential>,
) -> Result<VerifiedRequest, ApiError> {
    let mut by_name: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in headers {
        by_name
            .entry(name.to_ascii_lowercase())
            .or_default()
            .push(value.trim().to_string());
    }

    let auth_value = single(&by_name, "authorization")?.ok_or_else(|| {
        ApiError::incomplete_signature("The Authorization header is missing (ACS3-HMAC-SHA256).")
    })?;
    let auth = parse_authorization(auth_value)?;

    for name in REQUIRED_HEADERS {
        required(&by_name, name)?;
    }
    let action = required(&by_name, "x-acs-action")?;
    let version = required(&by_name, "x-acs-version")?;
    let nonce = required(&by_name, "x-acs-signature-nonce")?;
    let date_text = required(&by_name, "x-acs-date")?;
    let claimed_payload_hash = required(&by_name, "x-acs-content-sha256")?;

    let date = parse_iso8601(date_text).ok_or_else(|| ApiError::timestamp_format(date_text))?;
    let skew = match now.duration_since(date) {
        Ok(behind) => behind,
        Err(ahead) => ahead.duration(),
    };
    if skew > MAX_CLOCK_SKEW {
        return Err(ApiError::timestamp_expired(format!(
            "x-acs-date {date_text} is {}s away from server time {}; at most {}s are allowed.",
            skew.as_secs(),
            format_iso8601(now),
            MAX_CLOCK_SKEW.as_secs()
        )));
    }

    let credential = lookup(auth.credential).ok_or_else(ApiError::access_key_not_found)?;

    let sent_token = single(&by_name, "x-acs-security-token")?;
    let sent_token_ak = single(&by_name, "x-acs-accesskey-id")?;
    match &credential.security_token {
        Some(expected) => {
            let Some(token) = sent_token.filter(|t| !t.is_empty()) else {
                return Err(ApiError::missing_security_token());
            };
            if token != expected {
                return Err(ApiError::security_token_mismatch(
                    "x-acs-security-token does not belong to this AccessKey.",
                ));
            }
            if credential.expiration.is_some_and(|exp| now >= exp) {
                return Err(ApiError::security_token_expired());
            }
        }
        None => {
            if sent_token.is_some() {
                return Err(ApiError::security_token_mismatch(
                    "A security token was sent with a long-term AccessKey.",
                ));
            }
        }
    }
    if let Some(ak) = sent_token_ak {
        if ak != credential.access_key_id {
            return Err(ApiError::security_token_mismatch(format!(
                "x-acs-accesskey-id {ak:?} differs from the Credential in Authorization."
            )));
        }
    }

    // SignedHeaders: lower-case, sorted, no repeats, each one present, and covering host,
    // every x-acs-* header that was sent, and content-type when a body depends on it.
    let signed: Vec<&str> = auth.signed_headers.split(';').collect();
    for (i, name) in signed.iter().enumerate() {
        if name.is_empty() || *name != name.to_ascii_lowercase() {
            return Err(ApiError::incomplete_signature(format!(
                "SignedHeaders entry {name:?} must be a non-empty lower-case header name."
            )));
        }
        if i > 0 && signed[i - 1] >= *name {
            return Err(ApiError::incomplete_signature(
                "SignedHeaders must be sorted byte-wise without repeats.",
            ));
        }
        if !by_name.contains_key(*name) {
            return Err(ApiError::incomplete_signature(format!(
                "Header {name} is listed in SignedHeaders but was not sent."
            )));
        }
    }
    let must_sign = by_name.keys().filter(|n| {
        n.starts_with("x-acs-") || *n == "host" || (*n == "content-type" && !body.is_empty())
    });
    for name in must_sign {
        if !signed.contains(&name.as_str()) {
            return Err(ApiError::incomplete_signature(format!(
                "Header {name} was sent but is not in SignedHeaders."
            )));
        }
    }

    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let mut query_params = BTreeMap::new();
    decode_form(query.as_bytes(), &mut query_params)?;

    let canonical_uri = if path.is_empty() { "/" } else { path }
        .replace('+', "%20")
        .replace('*', "%2A")
        .replace("%7E", "~");
    let canonical_headers: String = signed
        .iter()
        .map(|name| {
            let mut values = by_name[*name].clone();
            values.sort();
            format!("{name}:{}\n", values.join(","))
        })
        .collect();
    // The payload hash is recomputed from the bytes received, never taken from the header.
    let payload_hash = hex::encode(Sha256::digest(body));
    let canonical_request = format!(
        "{method}\n{canonical_uri}\n{}\n{canonical_headers}\n{}\n{payload_hash}",
        canonical_query_string(&query_params),
        auth.signed_headers,
    );
    let to_sign = string_to_sign(&canonical_request);

    let mut mac = Hmac::<Sha256>::new_from_slice(credential.access_key_secret.as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(to_sign.as_bytes());
    let signature_ok = auth.signature.len() == 64
        && auth
            .signature
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && hex::decode(auth.signature)
            .map(|sig| mac.verify_slice(&sig).is_ok())
            .unwrap_or(false);
    if !signature_ok || claimed_payload_hash != payload_hash {
        return Err(ApiError::signature_does_not_match(
            &to_sign,
            canonical_request,
        ));
    }

    let mut params = query_params;
    let form_body = single(&by_name, "content-type")?
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|mime| {
            mime.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if form_body {
        decode_form(body, &mut params)?;
    }

    Ok(VerifiedRequest {
        access_key_id: credential.access_key_id,
        action: action.to_string(),
        version: version.to_string(),
        params,
        nonce: nonce.to_string(),
        date,
        signed_headers: signed.iter().map(|s| s.to_string()).collect(),
        security_token: sent_token.map(str::to_string),
        canonical_request,
    })
}

/// Remembers signature nonces for as long as a request carrying them could still pass the
/// timestamp check, so a replay inside that window gets `SignatureNonceUsed`.
///
/// Memory is bounded: entries are dropped once their window is over, and past `capacity` the
/// oldest entry is dropped (which could let one very old replay through; at the default
/// capacity that takes over 500 requests per second for 30 minutes).
pub struct NonceCache {
    seen: HashSet<String>,
    /// (forget-after, nonce) in arrival order.
    order: VecDeque<(SystemTime, String)>,
    capacity: usize,
}

impl Default for NonceCache {
    fn default() -> Self {
        Self::new(1_000_000)
    }
}

impl NonceCache {
    pub fn new(capacity: usize) -> Self {
        NonceCache {
            seen: HashSet::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// Records `nonce` (scoped to nothing: a nonce may be used once, by anyone) or fails if
    /// it was seen inside the window. `date` is the request's `x-acs-date`.
    pub fn check_and_record(
        &mut self,
        nonce: &str,
        date: SystemTime,
        now: SystemTime,
    ) -> Result<(), ApiError> {
        while let Some((forget_after, _)) = self.order.front() {
            if *forget_after < now || self.order.len() > self.capacity {
                let (_, old) = self.order.pop_front().expect("front exists");
                self.seen.remove(&old);
            } else {
                break;
            }
        }
        if self.seen.contains(nonce) {
            return Err(ApiError::nonce_used());
        }
        // A request dated `date` passes the skew check until date + window, and the nonce
        // must outlive that; keep it a window longer still to cover clock changes in tests.
        let forget_after = date.max(now) + MAX_CLOCK_SKEW * 2;
        self.seen.insert(nonce.to_string());
        self.order.push_back((forget_after, nonce.to_string()));
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

/// Form-decodes a query string the way the server does (last value wins), for recording
/// what a client sent even when its request is rejected.
pub fn decode_query(query: &str) -> BTreeMap<String, String> {
    form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_encoding_matches_reference_examples() {
        assert_eq!(percent_encode(" ~/*-+"), "%20~%2F%2A-%2B");
        assert_eq!(percent_encode("你 a!'()*"), "%E4%BD%A0%20a%21%27%28%29%2A");
        assert_eq!(percent_encode("alias/test-key"), "alias%2Ftest-key");
    }

    #[test]
    fn canonical_query_sorts_bytewise_and_keeps_empty_values() {
        let mut p = BTreeMap::new();
        p.insert("test".to_string(), "ok".to_string());
        p.insert("empty".to_string(), String::new());
        p.insert("Zed".to_string(), "a b".to_string());
        assert_eq!(canonical_query_string(&p), "Zed=a%20b&empty=&test=ok");
    }

    #[test]
    fn authorization_layout_is_strict() {
        assert!(parse_authorization(
            "ACS3-HMAC-SHA256 Credential=a,SignedHeaders=host,Signature=ab"
        )
        .is_ok());
        for bad in [
            "ACS3-HMAC-SHA256 Credential=a, SignedHeaders=host,Signature=ab",
            "ACS3-HMAC-SHA256  Credential=a,SignedHeaders=host,Signature=ab",
            "ACS3-HMAC-SHA256 SignedHeaders=host,Credential=a,Signature=ab",
            "ACS3-HMAC-SHA256 Credential=,SignedHeaders=host,Signature=ab",
            "ACS3-HMAC-SHA256 Credential=a,SignedHeaders=host",
            "ACS3-HMAC-SHA256 Credential=a,SignedHeaders=host,Signature=ab,Extra=1",
            "ACS3-HMAC-SHA256",
            "Bearer x",
        ] {
            let e = parse_authorization(bad)
                .err()
                .unwrap_or_else(|| panic!("{bad}"));
            assert_eq!(e.code, "IncompleteSignature", "{bad}");
        }
        let e = parse_authorization("ACS3-HMAC-SM3 Credential=a,SignedHeaders=host,Signature=ab")
            .err()
            .unwrap();
        assert_eq!(e.code, "InvalidSignatureMethod");
    }

    #[test]
    fn nonce_cache_rejects_replays_and_forgets_after_the_window() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut c = NonceCache::new(10);
        c.check_and_record("n1", t0, t0).unwrap();
        assert_eq!(
            c.check_and_record("n1", t0, t0 + Duration::from_secs(60))
                .unwrap_err()
                .code,
            "SignatureNonceUsed"
        );
        // Long after the window the entry is gone (and such a request would fail the date check).
        c.check_and_record("n2", t0, t0 + Duration::from_secs(3600))
            .unwrap();
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn nonce_cache_is_bounded() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut c = NonceCache::new(100);
        for i in 0..1000 {
            c.check_and_record(&format!("n{i}"), t0, t0).unwrap();
        }
        assert!(c.len() <= 101, "{}", c.len());
    }
}
