//! The sign-in services of Aliyun CLI `CloudSSO` and `OAuth` profiles on the emulator's HTTPS
//! server: strict about method, content type, bearer token and (CloudSSO) body, answering in
//! their own error shapes, and the credentials they hand out work with KMS.

mod common;

use std::time::SystemTime;

use alibabakms_emulator::{Emulator, EmulatorConfig};
use common::{Client, Resp};

const SSO_TOKEN: &str = "sso-access-token";
const ACCOUNT: &str = "1234567890123456";
const ACCESS_CONFIG: &str = "ac-signer";
const OAUTH_TOKEN: &str = "oauth-access-token";

fn start() -> (Emulator, Client) {
    let emu = Emulator::start(
        EmulatorConfig::default()
            .cloud_sso(SSO_TOKEN, ACCOUNT, ACCESS_CONFIG)
            .oauth(OAUTH_TOKEN),
    )
    .unwrap();
    let client = Client::connect(&emu.endpoint(), emu.ca_pem()).unwrap();
    (emu, client)
}

fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn sso(c: &mut Client, method: &str, token: &str, content_type: &str, body: &str) -> Resp {
    let h = headers(&[
        ("host", &c.endpoint.clone()),
        ("accept", "application/json"),
        ("content-type", content_type),
        ("authorization", &format!("Bearer {token}")),
    ]);
    c.send(method, "/cloud-credentials?", &h, body.as_bytes())
        .unwrap()
}

fn good_body() -> String {
    serde_json::json!({"AccountId": ACCOUNT, "AccessConfigurationId": ACCESS_CONFIG}).to_string()
}

/// The credentials work with KMS, with their token.
fn kms_accepts(emu: &Emulator, id: &str, secret: &str, token: &str) {
    let mut kms = Client::connect(&emu.endpoint(), emu.ca_pem()).unwrap();
    let r = kms.call_as(
        id,
        secret,
        Some(token),
        SystemTime::now(),
        "CreateKey",
        &[("KeySpec", "EC_P256"), ("KeyUsage", "SIGN/VERIFY")],
    );
    assert_eq!(r.status, 200, "{}", r.json);
}

#[test]
fn cloud_sso_hands_out_credentials_that_kms_accepts() {
    let (emu, mut c) = start();
    let r = sso(&mut c, "POST", SSO_TOKEN, "application/json", &good_body());
    assert_eq!(r.status, 200, "{}", r.json);
    let cred = &r.json["CloudCredential"];
    let field = |k: &str| cred[k].as_str().unwrap().to_string();
    assert!(field("AccessKeyId").starts_with("STS."));
    assert!(r.json["RequestId"].is_string());
    let expires = alibabakms_emulator::clock::parse_iso8601(&field("Expiration"));
    assert!(expires.is_some_and(|t| t > SystemTime::now()), "{}", r.json);
    kms_accepts(
        &emu,
        &field("AccessKeyId"),
        &field("AccessKeySecret"),
        &field("SecurityToken"),
    );
    assert_eq!(emu.stats().cloud_sso_requests, 1);
    let recorded = emu.requests();
    assert_eq!(recorded[0].path_and_query, "/cloud-credentials?");
    assert_eq!(recorded[0].status, 200);
}

#[test]
fn cloud_sso_is_strict_about_method_type_token_and_body() {
    let (emu, mut c) = start();
    let body = good_body();
    let cases = [
        (
            sso(&mut c, "GET", SSO_TOKEN, "application/json", ""),
            405,
            "MethodNotAllowed",
        ),
        (
            sso(&mut c, "POST", SSO_TOKEN, "text/plain", &body),
            400,
            "InvalidContentType",
        ),
        (
            sso(&mut c, "POST", "wrong", "application/json", &body),
            401,
            "InvalidAccessToken",
        ),
        (
            sso(&mut c, "POST", SSO_TOKEN, "application/json", "[1]"),
            400,
            "InvalidParameter",
        ),
        (
            sso(
                &mut c,
                "POST",
                SSO_TOKEN,
                "application/json",
                r#"{"AccountId":"999","AccessConfigurationId":"ac-signer"}"#,
            ),
            400,
            "InvalidParameter.AccountId",
        ),
        (
            sso(
                &mut c,
                "POST",
                SSO_TOKEN,
                "application/json",
                r#"{"AccountId":"1234567890123456"}"#,
            ),
            400,
            "InvalidParameter.AccessConfigurationId",
        ),
    ];
    for (r, status, code) in cases {
        assert_eq!(r.status, status, "{}", r.json);
        assert_eq!(r.json["ErrorCode"], code, "{}", r.json);
        assert!(r.json["ErrorMessage"].is_string() && r.json["RequestId"].is_string());
        assert!(!r.json.to_string().contains(SSO_TOKEN));
    }
    assert_eq!(emu.stats().cloud_sso_requests, 6);
    assert_eq!(emu.stats().rejected("InvalidAccessToken"), 1);
    // Without the service configured, the path is not found.
    let emu = Emulator::start(EmulatorConfig::default()).unwrap();
    let mut c = Client::connect(&emu.endpoint(), emu.ca_pem()).unwrap();
    let r = sso(&mut c, "POST", SSO_TOKEN, "application/json", &body);
    assert_eq!(
        (r.status, r.json["ErrorCode"].as_str()),
        (404, Some("NotFound"))
    );
}

fn exchange(c: &mut Client, method: &str, token: &str, content_type: &str) -> Resp {
    let h = headers(&[
        ("host", &c.endpoint.clone()),
        ("content-type", content_type),
        ("authorization", &format!("Bearer {token}")),
    ]);
    c.send(method, "/v1/exchange", &h, b"").unwrap()
}

#[test]
fn the_oauth_exchange_answers_camel_case_credentials_that_kms_accepts() {
    let (emu, mut c) = start();
    let r = exchange(&mut c, "POST", OAUTH_TOKEN, "application/json");
    assert_eq!(r.status, 200, "{}", r.json);
    let field = |k: &str| r.json[k].as_str().unwrap().to_string();
    assert!(field("accessKeyId").starts_with("STS."));
    assert!(r.json["requestId"].is_string());
    assert!(alibabakms_emulator::clock::parse_iso8601(&field("expiration")).is_some());
    kms_accepts(
        &emu,
        &field("accessKeyId"),
        &field("accessKeySecret"),
        &field("securityToken"),
    );
    for (r, status, error) in [
        (
            exchange(&mut c, "PUT", OAUTH_TOKEN, "application/json"),
            405,
            "method_not_allowed",
        ),
        (
            exchange(&mut c, "POST", OAUTH_TOKEN, "text/plain"),
            400,
            "invalid_request",
        ),
        (
            exchange(&mut c, "POST", "stale", "application/json"),
            401,
            "invalid_token",
        ),
    ] {
        assert_eq!(r.status, status, "{}", r.json);
        assert_eq!(r.json["error"], error, "{}", r.json);
        assert!(r.json["error_description"].is_string() && r.json["requestId"].is_string());
    }
    assert_eq!(emu.stats().oauth_exchange_requests, 4);
    assert_eq!(emu.stats().cloud_sso_requests, 0);
}
