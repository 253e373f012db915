//! The legacy RPC signature V1 (`HMAC-SHA1`, reference §1.8), as the official credential
//! libraries sign STS `AssumeRole`: every parameter of query and form body but `Signature`,
//! sorted and RFC 3986-encoded, `StringToSign = METHOD&%2F&pe(canonical query)`, key
//! `secret + "&"`, base64. Verified as strictly as ACS3: known AccessKey, exact STS token,
//! `Timestamp` within 15 minutes, fresh `SignatureNonce`.

use std::collections::BTreeMap;
use std::time::SystemTime;

use base64::Engine as _;

use crate::acs3_verify::{percent_encode, Credential, MAX_CLOCK_SKEW};
use crate::clock::parse_iso8601;
use crate::error::ApiError;

/// `METHOD&%2F&pe(sorted k=v joined by &)`.
pub fn string_to_sign(method: &str, params: &BTreeMap<String, String>) -> String {
    let canonical = params
        .iter()
        .filter(|(k, _)| k.as_str() != "Signature")
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    format!(
        "{method}&{}&{}",
        percent_encode("/"),
        percent_encode(&canonical)
    )
}

/// `base64(HMAC-SHA1(secret + "&", string_to_sign))`.
pub fn signature(secret: &str, string_to_sign: &str) -> String {
    let key = ring::hmac::Key::new(
        ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
        format!("{secret}&").as_bytes(),
    );
    base64::engine::general_purpose::STANDARD
        .encode(ring::hmac::sign(&key, string_to_sign.as_bytes()).as_ref())
}

/// Whether a request carries a V1 signature (rather than an ACS3 `Authorization`).
pub fn is_v1(params: &BTreeMap<String, String>) -> bool {
    params.contains_key("Signature")
        && params.get("SignatureVersion").map(String::as_str) == Some("1.0")
}

/// A V1-verified request: the caller, its nonce and time.
pub struct VerifiedV1 {
    pub access_key_id: String,
    pub action: String,
    pub version: String,
    pub nonce: String,
    pub date: SystemTime,
}

pub fn verify_v1(
    method: &str,
    params: &BTreeMap<String, String>,
    now: SystemTime,
    lookup: impl Fn(&str) -> Option<Credential>,
) -> Result<VerifiedV1, ApiError> {
    let get = |k: &str| params.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let missing = |k: &str| {
        ApiError::gateway(
            400,
            &format!("Missing{k}"),
            format!("{k} is mandatory for this action."),
        )
    };
    if get("SignatureMethod") != Some("HMAC-SHA1") {
        return Err(ApiError::gateway(
            400,
            "InvalidSignatureMethod",
            "Specified signature method is not valid (expected HMAC-SHA1).",
        ));
    }
    let ak = get("AccessKeyId").ok_or_else(|| missing("AccessKeyId"))?;
    let timestamp = get("Timestamp").ok_or_else(|| missing("Timestamp"))?;
    let nonce = get("SignatureNonce").ok_or_else(|| missing("SignatureNonce"))?;
    let action = get("Action").ok_or_else(|| missing("Action"))?;
    let version = get("Version").ok_or_else(|| missing("Version"))?;
    let date = parse_iso8601(timestamp).ok_or_else(|| ApiError::timestamp_format(timestamp))?;
    let skew = match now.duration_since(date) {
        Ok(d) => d,
        Err(e) => e.duration(),
    };
    if skew > MAX_CLOCK_SKEW {
        return Err(ApiError::timestamp_expired(format!(
            "Timestamp {timestamp} is more than 15 minutes from the server's time"
        )));
    }
    let cred = lookup(ak).ok_or_else(ApiError::access_key_not_found)?;
    let sts = string_to_sign(method, params);
    let expected = signature(&cred.access_key_secret, &sts);
    if get("Signature") != Some(expected.as_str()) {
        return Err(ApiError::gateway(
            400,
            "SignatureDoesNotMatch",
            format!("Specified signature is not matched with our calculation. server string to sign is:{sts}"),
        ));
    }
    match (&cred.security_token, get("SecurityToken")) {
        (None, _) => {}
        (Some(_), None) => return Err(ApiError::missing_security_token()),
        (Some(want), Some(got)) if want != got => {
            return Err(ApiError::security_token_mismatch(
                "SecurityToken does not match",
            ))
        }
        (Some(_), Some(_)) => {
            if cred.expiration.is_some_and(|e| e <= now) {
                return Err(ApiError::security_token_expired());
            }
        }
    }
    Ok(VerifiedV1 {
        access_key_id: ak.to_string(),
        action: action.to_string(),
        version: version.to_string(),
        nonce: nonce.to_string(),
        date,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn reference_vectors() {
        // §1.8: the ECS doc example.
        let p = params(&[
            ("AccessKeyId", "testid"),
            ("Action", "DescribeDedicatedHosts"),
            ("Format", "JSON"),
            ("RegionId", "cn-beijing"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "edb2b34af0af9a6d14deaf7c1a5315eb"),
            ("SignatureVersion", "1.0"),
            ("Timestamp", "2023-03-13T08:34:30Z"),
            ("Version", "2014-05-26"),
        ]);
        assert_eq!(
            signature("testsecret", &string_to_sign("GET", &p)),
            "9NaGiOspFP5UPcwX8Iwt2YJXXuk="
        );
        // §1.8: the KMS doc example (no nonce).
        let p = params(&[
            ("AccessKeyId", "testid"),
            ("Action", "CreateKey"),
            ("Format", "json"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureVersion", "1.0"),
            ("Timestamp", "2016-03-28T03:13:08Z"),
            ("Version", "2016-01-20"),
        ]);
        assert_eq!(
            signature("testsecret", &string_to_sign("GET", &p)),
            "41wk2SSX1GJh7fwnc5eqOfiJPFg="
        );
        // §1.8: the Python SDK test.
        let p = params(&[("query", "test"), ("body", "test")]);
        assert_eq!(
            signature("secret", &string_to_sign("GET", &p)),
            "XlUyV4sXjOuX5FnjUz9IF9tm5rU="
        );
    }
}
