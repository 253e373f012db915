//! STS `AssumeRoleWithOIDC` on the emulator's HTTPS server: anonymous, strict about role,
//! provider and token, and its credentials then work with KMS (with their token only).

mod common;

use std::time::{Duration, SystemTime};

use alibabakms_emulator::{Emulator, EmulatorConfig};
use common::Client;

const ROLE: &str = "acs:ram::1234567890123456:role/signer";
const PROVIDER: &str = "acs:ram::1234567890123456:oidc-provider/ack-rrsa";
const TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.e30.c2lnbmF0dXJl";

fn oidc(c: &mut Client, params: &[(&str, &str)]) -> common::Resp {
    let body = params
        .iter()
        .map(|(k, v)| format!("{}={}", common::rfc3986(k), common::rfc3986(v)))
        .collect::<Vec<_>>()
        .join("&");
    let headers = vec![
        ("host".to_string(), c.endpoint.clone()),
        ("x-acs-action".to_string(), "AssumeRoleWithOIDC".to_string()),
        ("x-acs-version".to_string(), "2015-04-01".to_string()),
        (
            "content-type".to_string(),
            "application/x-www-form-urlencoded".to_string(),
        ),
    ];
    c.send("POST", "/", &headers, body.as_bytes()).unwrap()
}

fn good() -> Vec<(&'static str, &'static str)> {
    vec![
        ("RoleArn", ROLE),
        ("OIDCProviderArn", PROVIDER),
        ("OIDCToken", TOKEN),
        ("RoleSessionName", "e2e-session"),
        ("DurationSeconds", "3600"),
    ]
}

fn start(cfg: EmulatorConfig) -> (Emulator, Client) {
    let emu = Emulator::start(cfg).unwrap();
    let client = Client::connect(&emu.sts_endpoint(), emu.ca_pem()).unwrap();
    (emu, client)
}

#[test]
fn issues_sts_credentials_that_kms_accepts_with_their_token() {
    let (emu, mut c) = start(EmulatorConfig::default().oidc_role(ROLE, PROVIDER, TOKEN));
    let r = oidc(&mut c, &good());
    assert_eq!(r.status, 200, "{}", r.json);
    let creds = &r.json["Credentials"];
    let (id, secret, token) = (
        creds["AccessKeyId"].as_str().unwrap(),
        creds["AccessKeySecret"].as_str().unwrap(),
        creds["SecurityToken"].as_str().unwrap(),
    );
    assert!(id.starts_with("STS."));
    let exp =
        alibabakms_emulator::clock::parse_iso8601(creds["Expiration"].as_str().unwrap()).unwrap();
    assert!(exp > SystemTime::now() + Duration::from_secs(3500));
    assert_eq!(
        r.json["AssumedRoleUser"]["Arn"],
        format!("{ROLE}/e2e-session")
    );
    assert!(r.json["RequestId"].is_string());
    assert_eq!(emu.stats().action("AssumeRoleWithOIDC"), 1);

    let mut kms = Client::connect(&emu.endpoint(), emu.ca_pem()).unwrap();
    let ok = kms.call_as(
        id,
        secret,
        Some(token),
        SystemTime::now(),
        "CreateKey",
        &[("KeySpec", "EC_P256"), ("KeyUsage", "SIGN/VERIFY")],
    );
    assert_eq!(ok.status, 200, "{}", ok.json);
    let no_token = kms.call_as(
        id,
        secret,
        None,
        SystemTime::now(),
        "CreateKey",
        &[("KeySpec", "EC_P256"), ("KeyUsage", "SIGN/VERIFY")],
    );
    assert_ne!(no_token.status, 200, "{}", no_token.json);
}

#[test]
fn refuses_wrong_roles_providers_tokens_and_expired_tokens() {
    let expired = "eyJleHBpcmVkIjp0cnVlfQ.e30.c2ln";
    let (_emu, mut c) = start(
        EmulatorConfig::default()
            .oidc_role(ROLE, PROVIDER, TOKEN)
            .oidc_role_expiring(
                "acs:ram::1:role/old",
                PROVIDER,
                expired,
                SystemTime::now() - Duration::from_secs(60),
            ),
    );
    let with = |k: &'static str, v: &'static str| {
        let mut p = good();
        p.retain(|(n, _)| *n != k);
        if !v.is_empty() {
            p.push((k, v));
        }
        p
    };
    for (params, status, code) in [
        (
            with("RoleArn", "acs:ram::1:role/nope"),
            404,
            "EntityNotExist.Role",
        ),
        (
            with("OIDCProviderArn", "acs:ram::1:oidc-provider/other"),
            404,
            "EntityNotExist.OIDCProvider",
        ),
        (
            with("OIDCToken", "not-the-token"),
            400,
            "InvalidParameter.OIDCToken",
        ),
        (with("OIDCToken", ""), 400, "MissingOIDCToken"),
        (
            with("RoleSessionName", "a b"),
            400,
            "InvalidParameter.RoleSessionName",
        ),
        (
            with("DurationSeconds", "60"),
            400,
            "InvalidParameter.DurationSeconds",
        ),
    ] {
        let r = oidc(&mut c, &params);
        assert_eq!((r.status, r.code()), (status, code), "{}", r.json);
        assert!(!r.json.to_string().contains("not-the-token"), "{}", r.json);
    }
    let mut p = with("RoleArn", "acs:ram::1:role/old");
    p.retain(|(n, _)| *n != "OIDCToken");
    p.push(("OIDCToken", expired));
    let r = oidc(&mut c, &p);
    assert_eq!(
        (r.status, r.code()),
        (400, "AuthenticationFail.OIDCToken.Expired"),
        "{}",
        r.json
    );
}

#[test]
fn duration_seconds_is_bounded_by_the_role_and_sets_the_expiration() {
    let (_emu, mut c) = start(
        EmulatorConfig::default()
            .oidc_role(ROLE, PROVIDER, TOKEN)
            .oidc_role("acs:ram::1:role/long", PROVIDER, TOKEN)
            .max_session_duration("acs:ram::1:role/long", 43200),
    );
    let with = |role: &'static str, d: &'static str| {
        let mut p = good();
        p.retain(|(n, _)| *n != "DurationSeconds" && *n != "RoleArn");
        p.push(("RoleArn", role));
        p.push(("DurationSeconds", d));
        p
    };
    let expires_in = |r: &common::Resp| {
        let at = r.json["Credentials"]["Expiration"].as_str().unwrap();
        alibabakms_emulator::clock::parse_iso8601(at)
            .unwrap()
            .duration_since(SystemTime::now())
            .unwrap()
            .as_secs()
    };
    // RAM's default MaxSessionDuration is 3600: 900 and 3600 pass, 3601 does not.
    let r = oidc(&mut c, &with(ROLE, "900"));
    assert_eq!(r.status, 200, "{}", r.json);
    assert!((890..=900).contains(&expires_in(&r)), "{}", r.json);
    for bad in ["899", "3601", "43200", "-1", "x"] {
        let r = oidc(&mut c, &with(ROLE, bad));
        assert_eq!(
            (r.status, r.code()),
            (400, "InvalidParameter.DurationSeconds"),
            "{bad}: {}",
            r.json
        );
        assert!(r.json.to_string().contains("(3600)"), "{}", r.json);
    }
    // A role raised to 12 hours: up to 43200, and the credentials last that long.
    let r = oidc(&mut c, &with("acs:ram::1:role/long", "43200"));
    assert_eq!(r.status, 200, "{}", r.json);
    assert!((43190..=43200).contains(&expires_in(&r)), "{}", r.json);
    let r = oidc(&mut c, &with("acs:ram::1:role/long", "43201"));
    assert_eq!(r.code(), "InvalidParameter.DurationSeconds", "{}", r.json);
}

#[test]
fn other_sts_actions_are_not_found() {
    let (_emu, mut c) = start(EmulatorConfig::default());
    let headers = vec![
        ("host".to_string(), c.endpoint.clone()),
        ("x-acs-action".to_string(), "GetCallerIdentity".to_string()),
        ("x-acs-version".to_string(), "2015-04-01".to_string()),
    ];
    let r = c.send("POST", "/", &headers, b"").unwrap();
    assert_eq!((r.status, r.code()), (404, "InvalidAction.NotFound"));
}

/// One plain-HTTP request to the metadata listener: (status, body).
fn imds(emu: &Emulator, method: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    use std::io::{Read, Write};
    let addr = emu
        .imds_endpoint()
        .trim_start_matches("http://")
        .to_string();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nhost: 100.100.100.200\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("content-length: 0\r\n\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = out.split_once("\r\n\r\n").unwrap().1.to_string();
    (status, body)
}

#[test]
fn the_metadata_service_enforces_the_imdsv2_token_and_issues_kms_credentials() {
    let emu = Emulator::start(EmulatorConfig::default().ecs_role("EcsSigner")).unwrap();
    let creds = "/latest/meta-data/ram/security-credentials/";
    assert_eq!(imds(&emu, "GET", creds, &[]).0, 401, "no token");
    assert_eq!(
        imds(
            &emu,
            "GET",
            creds,
            &[("X-aliyun-ecs-metadata-token", "forged")]
        )
        .0,
        401
    );
    assert_eq!(imds(&emu, "PUT", "/latest/api/token", &[]).0, 400, "no TTL");
    let (status, token) = imds(
        &emu,
        "PUT",
        "/latest/api/token",
        &[("X-aliyun-ecs-metadata-token-ttl-seconds", "21600")],
    );
    assert_eq!(status, 200);
    let auth = [("X-aliyun-ecs-metadata-token", token.as_str())];
    assert_eq!(imds(&emu, "GET", creds, &auth), (200, "EcsSigner".into()));
    assert_eq!(imds(&emu, "GET", &format!("{creds}Other"), &auth).0, 404);
    let (status, body) = imds(&emu, "GET", &format!("{creds}EcsSigner"), &auth);
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["Code"], "Success");
    let mut kms = Client::connect(&emu.endpoint(), emu.ca_pem()).unwrap();
    let r = kms.call_as(
        v["AccessKeyId"].as_str().unwrap(),
        v["AccessKeySecret"].as_str().unwrap(),
        Some(v["SecurityToken"].as_str().unwrap()),
        SystemTime::now(),
        "CreateKey",
        &[("KeySpec", "EC_P256"), ("KeyUsage", "SIGN/VERIFY")],
    );
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(emu.stats().imds_requests, 7);

    // Without a role attached, discovery is 404.
    let emu = Emulator::start(EmulatorConfig::default()).unwrap();
    let (_, token) = imds(
        &emu,
        "PUT",
        "/latest/api/token",
        &[("X-aliyun-ecs-metadata-token-ttl-seconds", "60")],
    );
    assert_eq!(
        imds(
            &emu,
            "GET",
            creds,
            &[("X-aliyun-ecs-metadata-token", &token)]
        )
        .0,
        404
    );
}

#[test]
fn assume_role_is_acs3_signed_and_its_credentials_work_with_kms() {
    let role = "acs:ram::1234567890123456:role/release";
    let (emu, mut c) = start(EmulatorConfig::default().ram_role(role));
    let assume = |c: &mut Client, role: &str, secret: &str| {
        let mut input = common::SignInput::new(
            &c.endpoint,
            "AssumeRole",
            &[
                ("RoleArn", role),
                ("RoleSessionName", "release-1"),
                ("DurationSeconds", "900"),
            ],
        );
        input.version = "2015-04-01".into();
        input.secret = secret.into();
        c.send_signed(&input)
    };
    let r = assume(&mut c, role, alibabakms_emulator::DEFAULT_ACCESS_KEY_SECRET);
    assert_eq!(r.status, 200, "{}", r.json);
    let creds = &r.json["Credentials"];
    let mut kms = Client::connect(&emu.endpoint(), emu.ca_pem()).unwrap();
    let ok = kms.call_as(
        creds["AccessKeyId"].as_str().unwrap(),
        creds["AccessKeySecret"].as_str().unwrap(),
        Some(creds["SecurityToken"].as_str().unwrap()),
        SystemTime::now(),
        "CreateKey",
        &[("KeySpec", "EC_P256"), ("KeyUsage", "SIGN/VERIFY")],
    );
    assert_eq!(ok.status, 200, "{}", ok.json);

    let r = assume(&mut c, role, "wrong-secret");
    assert_eq!((r.status, r.code()), (400, "SignatureDoesNotMatch"));
    let r = assume(
        &mut c,
        "acs:ram::1:role/unknown",
        alibabakms_emulator::DEFAULT_ACCESS_KEY_SECRET,
    );
    assert_eq!((r.status, r.code()), (404, "EntityNotExist.Role"));
    // Unsigned, it is refused before any STS logic.
    let headers = vec![
        ("host".to_string(), c.endpoint.clone()),
        ("x-acs-action".to_string(), "AssumeRole".to_string()),
        ("x-acs-version".to_string(), "2015-04-01".to_string()),
    ];
    let r = c.send("POST", "/?RoleArn=x", &headers, b"").unwrap();
    assert_ne!(r.status, 200, "{}", r.json);
    assert_eq!(emu.stats().action("AssumeRole"), 4);
}

/// `AssumeRole` signed with V1 exactly as credentials-go sends it: common parameters in the
/// query, the action's in a form body, HMAC-SHA1 over both.
fn assume_role_v1(c: &mut Client, secret: &str, nonce: &str, role: &str) -> common::Resp {
    use alibabakms_emulator::v1_verify::{signature, string_to_sign};
    let query: Vec<(&str, String)> = vec![
        (
            "AccessKeyId",
            alibabakms_emulator::DEFAULT_ACCESS_KEY_ID.into(),
        ),
        ("Action", "AssumeRole".into()),
        ("Format", "JSON".into()),
        ("SignatureMethod", "HMAC-SHA1".into()),
        ("SignatureNonce", nonce.into()),
        ("SignatureVersion", "1.0".into()),
        ("Timestamp", common::iso8601(SystemTime::now())),
        ("Version", "2015-04-01".into()),
    ];
    let body: Vec<(&str, String)> = vec![
        ("DurationSeconds", "3600".into()),
        ("RoleArn", role.into()),
        ("RoleSessionName", "credentials-go-1".into()),
    ];
    let all = query
        .iter()
        .chain(&body)
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    let sig = signature(secret, &string_to_sign("POST", &all));
    let enc = |pairs: &[(&str, String)]| {
        pairs
            .iter()
            .map(|(k, v)| format!("{}={}", common::rfc3986(k), common::rfc3986(v)))
            .collect::<Vec<_>>()
            .join("&")
    };
    let path = format!("/?{}&Signature={}", enc(&query), common::rfc3986(&sig));
    let headers = vec![
        ("host".to_string(), c.endpoint.clone()),
        (
            "content-type".to_string(),
            "application/x-www-form-urlencoded".to_string(),
        ),
        ("accept-encoding".to_string(), "identity".to_string()),
    ];
    c.send("POST", &path, &headers, enc(&body).as_bytes())
        .unwrap()
}

#[test]
fn assume_role_also_accepts_the_v1_signature_of_the_credential_libraries() {
    let role = "acs:ram::1234567890123456:role/release";
    let (emu, mut c) = start(EmulatorConfig::default().ram_role(role));
    let secret = alibabakms_emulator::DEFAULT_ACCESS_KEY_SECRET;
    let r = assume_role_v1(&mut c, secret, "nonce-v1-0001", role);
    assert_eq!(r.status, 200, "{}", r.json);
    assert!(r.json["Credentials"]["AccessKeyId"]
        .as_str()
        .unwrap()
        .starts_with("STS."));
    assert_eq!(emu.stats().action("AssumeRole"), 1);

    let r = assume_role_v1(&mut c, secret, "nonce-v1-0001", role);
    assert_eq!(r.status, 400, "a reused nonce: {}", r.json);
    let r = assume_role_v1(&mut c, "wrong", "nonce-v1-0002", role);
    assert_eq!((r.status, r.code()), (400, "SignatureDoesNotMatch"));
    let r = assume_role_v1(&mut c, secret, "nonce-v1-0003", "acs:ram::1:role/nope");
    assert_eq!((r.status, r.code()), (404, "EntityNotExist.Role"));
}
