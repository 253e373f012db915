//! The verifier against requests signed by Alibaba's official Go SDK and against the worked
//! vectors of reference/alibaba-protocol.md §1.7, plus what each one-byte change must do.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use alibabakms_emulator::clock::parse_iso8601;
use alibabakms_emulator::{verify_acs3, ApiError, Credential, NonceCache, VerifiedRequest};
use serde_json::Value;

const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// One captured request.
#[derive(Clone)]
struct Capture {
    /// Fixed at load time: the capture's x-acs-date and the credential it was signed with.
    when: SystemTime,
    cred: Credential,
    secret: String,
    method: String,
    path_and_query: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Capture {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn set_header(&mut self, name: &str, value: &str) {
        for (n, v) in &mut self.headers {
            if n == name {
                *v = value.to_string();
            }
        }
    }

    fn access_key_id(&self) -> String {
        let auth = self.header("authorization").unwrap();
        let cred = auth.split("Credential=").nth(1).unwrap();
        cred.split(',').next().unwrap().to_string()
    }

    fn date(&self) -> SystemTime {
        parse_iso8601(self.header("x-acs-date").unwrap()).unwrap()
    }

    /// The credential the server would hold for this request: STS when a token was sent.
    fn credential(&self) -> Credential {
        match self.header("x-acs-security-token") {
            Some(token) => Credential::sts(
                self.access_key_id(),
                self.secret.clone(),
                token,
                self.date() + Duration::from_secs(3600),
            ),
            None => Credential::access_key(self.access_key_id(), self.secret.clone()),
        }
    }

    fn verify_with(&self, now: SystemTime, cred: &Credential) -> Result<VerifiedRequest, ApiError> {
        verify_acs3(
            &self.method,
            &self.path_and_query,
            &self.headers,
            &self.body,
            now,
            |ak| (ak == cred.access_key_id).then(|| cred.clone()),
        )
    }

    /// Verifies at the capture's original date with its original credential, so a test
    /// can mutate headers (even the date or Authorization) and see only that change.
    fn verify(&self) -> Result<VerifiedRequest, ApiError> {
        self.verify_with(self.when, &self.cred)
    }
}

fn captures() -> Vec<Capture> {
    let caps: Vec<Capture> = alibabakms_fixtures::lines(alibabakms_fixtures::ACS3_SDK_REQUESTS)
        .map(|line| {
            let v: Value = serde_json::from_str(line).unwrap();
            let mut c = Capture {
                when: SystemTime::UNIX_EPOCH,
                cred: Credential::access_key("", ""),
                secret: v["access_key_secret"].as_str().unwrap().to_string(),
                method: v["method"].as_str().unwrap().to_string(),
                path_and_query: v["path_and_query_as_sent"].as_str().unwrap().to_string(),
                headers: v["headers_as_received_lowercased"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                    .collect(),
                body: v["body"].as_str().unwrap().as_bytes().to_vec(),
            };
            c.when = c.date();
            c.cred = c.credential();
            c
        })
        .collect();
    assert_eq!(caps.len(), 8, "the conformance file has 8 requests");
    caps
}

fn code(r: Result<VerifiedRequest, ApiError>) -> (u16, String) {
    match r {
        Ok(v) => panic!("expected an error, verified {}", v.action),
        Err(e) => (e.status, e.code),
    }
}

#[test]
fn every_sdk_capture_verifies() {
    for c in captures() {
        let v = c
            .verify()
            .unwrap_or_else(|e| panic!("{}: {e}", c.path_and_query));
        assert_eq!(v.action, c.header("x-acs-action").unwrap());
        assert_eq!(v.version, "2016-01-20");
        assert_eq!(v.access_key_id, c.access_key_id());
        assert_eq!(
            v.security_token.as_deref(),
            c.header("x-acs-security-token")
        );
        if v.action == "CreateKey" {
            // Sent as `Created+by+Sigstore`, signed as `Created%20by%20Sigstore`.
            assert_eq!(v.params["Description"], "Created by Sigstore");
            assert_eq!(v.params["KeyUsage"], "SIGN/VERIFY");
            assert!(v
                .canonical_request
                .contains("Description=Created%20by%20Sigstore&"));
        }
        if v.action == "AsymmetricSign" {
            assert_eq!(
                v.params["Digest"],
                "WJG1tSLV3whtD/CxEPvZ0hu0/HFjrzTQgoai6Eb2vgM="
            );
        }
    }
}

#[test]
fn changing_a_query_value_breaks_the_signature() {
    for c in captures() {
        let mut m = c.clone();
        m.path_and_query.push('0'); // the last value gains a character
        assert_eq!(code(m.verify()), (400, "SignatureDoesNotMatch".into()));

        // A `+` on the wire is a space, so sending `%2B`-signed data as `+` must fail too.
        if c.path_and_query.contains("%2F") {
            let mut m = c.clone();
            m.path_and_query = m.path_and_query.replacen("%2F", "/", 1);
            // `/` decodes to the same character: still valid (decoding is form-style).
            m.verify().unwrap();
            let mut m = c.clone();
            m.path_and_query = m.path_and_query.replacen("%2F", "+", 1);
            assert_eq!(code(m.verify()).1, "SignatureDoesNotMatch");
        }
    }
}

#[test]
fn changing_a_signed_header_breaks_the_signature() {
    for c in captures() {
        for name in ["x-acs-signature-nonce", "host", "x-acs-action"] {
            let mut m = c.clone();
            let mut value = m.header(name).unwrap().to_string();
            let last = value.pop().unwrap();
            value.push(if last == '1' { '2' } else { '1' });
            m.set_header(name, &value);
            assert_eq!(
                code(m.verify()),
                (400, "SignatureDoesNotMatch".into()),
                "{name}"
            );
        }
        // The date is signed too (shift by a second, still inside the window).
        let mut m = c.clone();
        let shifted = alibabakms_emulator::clock::format_iso8601(c.date() + Duration::from_secs(1));
        m.set_header("x-acs-date", &shifted);
        assert_eq!(
            code(m.verify_with(c.date(), &c.credential())).1,
            "SignatureDoesNotMatch"
        );
        // Unsigned headers are free to change.
        let mut m = c.clone();
        m.set_header("user-agent", "something else");
        m.verify().unwrap();
    }
}

#[test]
fn a_different_secret_breaks_the_signature() {
    for c in captures() {
        let mut m = c.clone();
        m.cred.access_key_secret.push('x');
        let e = m.verify().unwrap_err();
        assert_eq!((e.status, e.code.as_str()), (400, "SignatureDoesNotMatch"));
        assert!(e
            .message
            .starts_with("Specified signature is not matched with our calculation. server string to sign is:ACS3-HMAC-SHA256\n"));
    }
}

#[test]
fn a_body_that_does_not_match_its_hash_is_rejected() {
    for c in captures() {
        let mut m = c.clone();
        m.body = b"PageSize=1".to_vec();
        assert_eq!(code(m.verify()).1, "SignatureDoesNotMatch");
    }
}

#[test]
fn dates_sixteen_minutes_off_are_expired_and_fifteen_are_not() {
    let sixteen = Duration::from_secs(16 * 60);
    let fifteen = Duration::from_secs(15 * 60);
    for c in captures() {
        let cred = c.credential();
        assert_eq!(
            code(c.verify_with(c.date() + sixteen, &cred)),
            (400, "InvalidTimeStamp.Expired".into())
        );
        assert_eq!(
            code(c.verify_with(c.date() - sixteen, &cred)),
            (400, "InvalidTimeStamp.Expired".into())
        );
        c.verify_with(c.date() - fifteen, &cred).unwrap();
        c.verify_with(c.date() + fifteen, &cred).unwrap();
    }
}

#[test]
fn malformed_dates_are_format_errors() {
    let c = &captures()[0];
    for bad in [
        "2026-11-26T05:39:11",
        "2026-11-26 05:39:11Z",
        "Thu, 26 Nov 2026 05:39:11 GMT",
    ] {
        let mut m = c.clone();
        m.set_header("x-acs-date", bad);
        assert_eq!(
            code(m.verify()),
            (400, "InvalidTimeStamp.Format".into()),
            "{bad}"
        );
    }
}

#[test]
fn replaying_a_nonce_is_refused() {
    let mut nonces = NonceCache::default();
    for c in captures() {
        let v = c.verify().unwrap();
        nonces.check_and_record(&v.nonce, v.date, c.date()).unwrap();
        let again = c.verify().unwrap(); // the signature is still fine...
        let e = nonces
            .check_and_record(&again.nonce, again.date, c.date() + Duration::from_secs(5))
            .unwrap_err(); // ...but the nonce is spent
        assert_eq!((e.status, e.code.as_str()), (400, "SignatureNonceUsed"));
    }
}

#[test]
fn unknown_access_keys_are_not_found() {
    for c in captures() {
        let e = verify_acs3(
            &c.method,
            &c.path_and_query,
            &c.headers,
            &c.body,
            c.date(),
            |_| None,
        )
        .unwrap_err();
        assert_eq!(
            (e.status, e.code.as_str()),
            (404, "InvalidAccessKeyId.NotFound")
        );
    }
}

#[test]
fn unsigned_or_missing_required_headers_are_refused() {
    for c in captures() {
        // Drop x-acs-signature-nonce from SignedHeaders while still sending it.
        let mut m = c.clone();
        let auth = m
            .header("authorization")
            .unwrap()
            .replace(";x-acs-signature-nonce", "");
        m.set_header("authorization", &auth);
        assert_eq!(code(m.verify()), (400, "IncompleteSignature".into()));

        // An extra x-acs-* header that is not signed.
        let mut m = c.clone();
        m.headers.push(("x-acs-extra".into(), "1".into()));
        assert_eq!(code(m.verify()).1, "IncompleteSignature");

        // No nonce at all.
        let mut m = c.clone();
        m.headers.retain(|(n, _)| n != "x-acs-signature-nonce");
        assert_eq!(code(m.verify()), (400, "MissingParameter".into()));

        // Authorization missing or mangled.
        let mut m = c.clone();
        m.headers.retain(|(n, _)| n != "authorization");
        assert_eq!(code(m.verify()).1, "IncompleteSignature");
        let mut m = c.clone();
        let auth = m
            .header("authorization")
            .unwrap()
            .replace(",SignedHeaders", ", SignedHeaders");
        m.set_header("authorization", &auth);
        assert_eq!(code(m.verify()).1, "IncompleteSignature");
    }
}

#[test]
fn sts_tokens_must_be_present_matching_and_fresh() {
    let sts: Vec<Capture> = captures()
        .into_iter()
        .filter(|c| c.header("x-acs-security-token").is_some())
        .collect();
    assert_eq!(sts.len(), 3);
    for c in sts {
        let cred = c.credential();

        let mut m = c.clone();
        m.headers.retain(|(n, _)| n != "x-acs-security-token");
        assert_eq!(code(m.verify()), (400, "MissingSecurityToken".into()));

        let mut other = cred.clone();
        other.security_token = Some("another-token".into());
        assert_eq!(
            code(c.verify_with(c.date(), &other)).1,
            "InvalidSecurityToken.MismatchWithAccessKey"
        );

        let mut expired = cred.clone();
        expired.expiration = Some(c.date() - Duration::from_secs(1));
        assert_eq!(
            code(c.verify_with(c.date(), &expired)).1,
            "InvalidSecurityToken.Expired"
        );

        // The same request against a long-term key of the same id is a mismatch too.
        let long_term =
            Credential::access_key(cred.access_key_id.clone(), cred.access_key_secret.clone());
        assert_eq!(
            code(c.verify_with(c.date(), &long_term)).1,
            "InvalidSecurityToken.MismatchWithAccessKey"
        );
    }
}

// ---- reference §1.7 vectors -------------------------------------------------------------

struct Vector {
    host: &'static str,
    action: &'static str,
    version: &'static str,
    date: &'static str,
    nonce: &'static str,
    query: &'static [(&'static str, &'static str)],
    token: Option<(&'static str, &'static str)>,
    ak: &'static str,
    secret: &'static str,
    authorization: &'static str,
}

fn verify_vector(v: &Vector) -> VerifiedRequest {
    // The query on the wire: strict RFC 3986, as the reference recommends for Rust.
    let query = v
        .query
        .iter()
        .map(|(k, val)| {
            format!(
                "{k}={}",
                alibabakms_emulator::acs3_verify::percent_encode(val)
            )
        })
        .collect::<Vec<_>>()
        .join("&");
    let mut headers: Vec<(String, String)> = vec![
        ("host".into(), v.host.into()),
        ("x-acs-action".into(), v.action.into()),
        ("x-acs-version".into(), v.version.into()),
        ("x-acs-date".into(), v.date.into()),
        ("x-acs-signature-nonce".into(), v.nonce.into()),
        ("x-acs-content-sha256".into(), EMPTY_SHA256.into()),
        ("Authorization".into(), v.authorization.into()),
        (
            "User-Agent".into(),
            "AlibabaCloud (linux; amd64) Golang/1.23.3 Core/0.01 TeaDSL/1".into(),
        ),
    ];
    let cred = match v.token {
        Some((ak_header, token)) => {
            headers.push(("x-acs-accesskey-id".into(), ak_header.into()));
            headers.push(("x-acs-security-token".into(), token.into()));
            Credential::sts(
                v.ak,
                v.secret,
                token,
                SystemTime::now() + Duration::from_secs(1 << 40),
            )
        }
        None => Credential::access_key(v.ak, v.secret),
    };
    let now = parse_iso8601(v.date).unwrap();
    verify_acs3("POST", &format!("/?{query}"), &headers, b"", now, |ak| {
        (ak == v.ak).then(|| cred.clone())
    })
    .unwrap_or_else(|e| panic!("{} vector: {e}", v.action))
}

#[test]
fn vector_a_doc_v3_worked_example() {
    let v = verify_vector(&Vector {
        host: "ecs.cn-shanghai.aliyuncs.com",
        action: "RunInstances",
        version: "2014-05-26",
        date: "2023-10-26T10:22:32Z",
        nonce: "3156853299f313e23d1673dc12e1703d",
        query: &[
            ("ImageId", "win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd"),
            ("RegionId", "cn-shanghai"),
        ],
        token: None,
        ak: "YourAccessKeyId",
        secret: "YourAccessKeySecret",
        authorization: "ACS3-HMAC-SHA256 Credential=YourAccessKeyId,SignedHeaders=host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version,Signature=06563a9e1b43f5dfe96b81484da74bceab24a1d853912eee15083a6f0f3283c0",
    });
    assert_eq!(
        alibabakms_emulator::acs3_verify::string_to_sign(&v.canonical_request),
        "ACS3-HMAC-SHA256\n7ea06492da5221eba5297e897ce16e55f964061054b7695beedaac1145b1e259"
    );
}

const E_SIGNED: &str =
    "host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version";

#[test]
fn vector_e1_get_public_key() {
    let auth = format!("ACS3-HMAC-SHA256 Credential=testAccessKeyId,SignedHeaders={E_SIGNED},Signature=beb7344b198f5dd8d70ffa15a9b1cc27f52f75841976091efa85da9ca4fee015");
    let v = verify_vector(&Vector {
        host: "kms.cn-hangzhou.aliyuncs.com",
        action: "GetPublicKey",
        version: "2016-01-20",
        date: "2024-01-01T00:00:00Z",
        nonce: "0123456789abcdef0123456789abcdef",
        query: &[
            ("KeyId", "alias/test-key"),
            ("KeyVersionId", "2ab1a983-7072-4bbc-a582-584b5bd8ecf3"),
        ],
        token: None,
        ak: "testAccessKeyId",
        secret: "testAccessKeySecret",
        authorization: Box::leak(auth.into_boxed_str()),
    });
    assert_eq!(
        v.canonical_request,
        "POST\n/\nKeyId=alias%2Ftest-key&KeyVersionId=2ab1a983-7072-4bbc-a582-584b5bd8ecf3\n\
host:kms.cn-hangzhou.aliyuncs.com\n\
x-acs-action:GetPublicKey\n\
x-acs-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n\
x-acs-date:2024-01-01T00:00:00Z\n\
x-acs-signature-nonce:0123456789abcdef0123456789abcdef\n\
x-acs-version:2016-01-20\n\
\n\
host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version\n\
e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(
        alibabakms_emulator::acs3_verify::string_to_sign(&v.canonical_request),
        "ACS3-HMAC-SHA256\ne64896c8bd1c4b2df133de92773caaf53741e16ac40e0c0d6dbeb9e6261b19f0"
    );
    assert_eq!(v.params["KeyId"], "alias/test-key");
}

#[test]
fn vector_e2_asymmetric_sign_with_sts() {
    let v = verify_vector(&Vector {
        host: "kms.cn-hangzhou.aliyuncs.com",
        action: "AsymmetricSign",
        version: "2016-01-20",
        date: "2024-01-01T00:00:00Z",
        nonce: "0123456789abcdef0123456789abcdef",
        query: &[
            ("Algorithm", "ECDSA_SHA_256"),
            ("Digest", "+/8AAQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0="),
            ("KeyId", "key-hzz630494463ejqjx0001"),
            ("KeyVersionId", "2ab1a983-7072-4bbc-a582-584b5bd8ecf3"),
        ],
        token: Some(("testAccessKeyId", "testSecurityToken")),
        ak: "testAccessKeyId",
        secret: "testAccessKeySecret",
        authorization: "ACS3-HMAC-SHA256 Credential=testAccessKeyId,SignedHeaders=host;x-acs-accesskey-id;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-security-token;x-acs-signature-nonce;x-acs-version,Signature=d09cbfe66a9415790dbfa45b2163be2c0c19ae40a78df0e1b6b7dc3b16a45f0a",
    });
    assert!(v.canonical_request.starts_with(
        "POST\n/\nAlgorithm=ECDSA_SHA_256&Digest=%2B%2F8AAQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0%3D&KeyId=key-hzz630494463ejqjx0001&KeyVersionId=2ab1a983-7072-4bbc-a582-584b5bd8ecf3\nhost:kms.cn-hangzhou.aliyuncs.com\nx-acs-accesskey-id:testAccessKeyId\n"
    ));
    assert_eq!(
        alibabakms_emulator::acs3_verify::string_to_sign(&v.canonical_request),
        "ACS3-HMAC-SHA256\n778e2d9674617c05759b3c6c1b728a5e5d22538bb7b7af99aaf96dac6948fd50"
    );
    assert_eq!(v.security_token.as_deref(), Some("testSecurityToken"));
}

#[test]
fn vector_e3_create_key_with_a_space() {
    let auth = format!("ACS3-HMAC-SHA256 Credential=testAccessKeyId,SignedHeaders={E_SIGNED},Signature=232064f6f1a342dabb0b5eb256916bcf9faebeef4c3d89768404a57ffaf80f83");
    let v = verify_vector(&Vector {
        host: "kms.cn-hangzhou.aliyuncs.com",
        action: "CreateKey",
        version: "2016-01-20",
        date: "2024-01-01T00:00:00Z",
        nonce: "0123456789abcdef0123456789abcdef",
        query: &[
            ("Description", "Created by Sigstore"),
            ("KeySpec", "EC_P256"),
            ("KeyUsage", "SIGN/VERIFY"),
        ],
        token: None,
        ak: "testAccessKeyId",
        secret: "testAccessKeySecret",
        authorization: Box::leak(auth.into_boxed_str()),
    });
    assert!(v.canonical_request.contains(
        "\nDescription=Created%20by%20Sigstore&KeySpec=EC_P256&KeyUsage=SIGN%2FVERIFY\n"
    ));
    assert_eq!(
        alibabakms_emulator::acs3_verify::string_to_sign(&v.canonical_request),
        "ACS3-HMAC-SHA256\n4a763c37ba5d54cfd4a413dfd82904039c0364f3e2559619e60e4c1e0e306abd"
    );
    let expected: BTreeMap<String, String> = [
        ("Description", "Created by Sigstore"),
        ("KeySpec", "EC_P256"),
        ("KeyUsage", "SIGN/VERIFY"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(v.params, expected);
}

#[test]
fn python_style_signing_of_extra_headers_is_accepted() {
    // The Python SDK also signs accept and user-agent; the server recomputes over the list it
    // is given. Re-sign capture 0 with that larger list using an independent signer.
    use hmac::{Hmac, Mac};
    use sha2::{Digest, Sha256};
    let c = &captures()[0];
    let mut names: Vec<&str> = c
        .headers
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| n.starts_with("x-acs-") || ["host", "accept", "user-agent"].contains(n))
        .collect();
    names.sort();
    let canonical_headers: String = names
        .iter()
        .map(|n| format!("{n}:{}\n", c.header(n).unwrap().trim()))
        .collect();
    let signed = names.join(";");
    let canonical = format!(
        "POST\n/\nPageNumber=1&PageSize=100\n{canonical_headers}\n{signed}\n{EMPTY_SHA256}"
    );
    let to_sign = format!(
        "ACS3-HMAC-SHA256\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(c.secret.as_bytes()).unwrap();
    mac.update(to_sign.as_bytes());
    let sig = hex::encode(mac.finalize().into_bytes());
    let mut m = c.clone();
    m.set_header(
        "authorization",
        &format!("ACS3-HMAC-SHA256 Credential=refkms-ak,SignedHeaders={signed},Signature={sig}"),
    );
    let v = m.verify().unwrap();
    assert!(v.signed_headers.contains(&"user-agent".to_string()));
    // ...and then the signed user-agent may no longer change.
    m.set_header("user-agent", "changed");
    assert_eq!(code(m.verify()).1, "SignatureDoesNotMatch");
}
