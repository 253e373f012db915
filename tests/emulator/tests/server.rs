//! The emulator over real TLS: a full create → alias → sign → verify flow, the error
//! responses clients see, the SDK's own requests replayed on the wire, and the binary.

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use alibabakms_emulator::clock::parse_iso8601;
use alibabakms_emulator::{Emulator, EmulatorConfig, KeyState};
use base64::Engine as _;
use common::{sign, Client, SignInput};
use p256::ecdsa::signature::hazmat::PrehashVerifier;
use p256::pkcs8::DecodePublicKey;
use serde_json::Value;
use sha2::{Digest, Sha256};

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn unb64(text: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn start() -> (Emulator, Client) {
    let emu = Emulator::start(EmulatorConfig::default()).unwrap();
    let client = Client::connect(&emu.endpoint(), emu.ca_pem()).unwrap();
    (emu, client)
}

#[test]
fn create_alias_sign_and_verify_round_trip() {
    let (emu, mut c) = start();

    let r = c.call(
        "CreateKey",
        &[
            ("Description", "Created by Sigstore"),
            ("KeySpec", "EC_P256"),
            ("KeyUsage", "SIGN/VERIFY"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(
        r.header("content-type"),
        Some("application/json;charset=utf-8")
    );
    assert_eq!(r.header("x-acs-request-id"), r.json["RequestId"].as_str());
    let meta = &r.json["KeyMetadata"];
    for field in [
        "KeyId",
        "Arn",
        "CreationDate",
        "KeyState",
        "KeySpec",
        "KeyUsage",
        "ProtectionLevel",
        "Origin",
        "Creator",
        "Description",
        "PrimaryKeyVersion",
    ] {
        assert!(
            meta[field].is_string(),
            "KeyMetadata.{field} must be a string: {meta}"
        );
    }
    let key_id = meta["KeyId"].as_str().unwrap().to_string();
    let tail = key_id.strip_prefix("key-").expect("KMS 3.0 key id");
    assert_eq!(tail.len(), 21);
    assert_eq!(meta["KeyState"], "Enabled");
    assert_eq!(meta["KeySpec"], "EC_P256");
    assert_eq!(meta["KeyUsage"], "SIGN/VERIFY");
    assert_eq!(meta["Description"], "Created by Sigstore");
    assert!(meta["Arn"]
        .as_str()
        .unwrap()
        .ends_with(&format!(":key/{key_id}")));
    assert!(parse_iso8601(meta["CreationDate"].as_str().unwrap()).is_some());
    let primary = meta["PrimaryKeyVersion"].as_str().unwrap().to_string();
    assert_eq!(primary.len(), 36, "a GUID");

    let r = c.call(
        "CreateAlias",
        &[("AliasName", "alias/test-key"), ("KeyId", &key_id)],
    );
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(keys(&r.json), set(&["RequestId"]));

    let r = c.call("ListKeyVersions", &[("KeyId", "alias/test-key")]);
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(r.json["TotalCount"], 1);
    assert_eq!(r.json["PageNumber"], 1);
    assert_eq!(r.json["PageSize"], 10);
    let versions = r.json["KeyVersions"]["KeyVersion"].as_array().unwrap();
    assert_eq!(versions.len(), 1);
    assert_eq!(
        versions[0]["KeyId"],
        key_id.as_str(),
        "the real id, not the alias"
    );
    let version = versions[0]["KeyVersionId"].as_str().unwrap().to_string();
    assert_eq!(version, primary);

    let r = c.call(
        "GetPublicKey",
        &[("KeyId", "alias/test-key"), ("KeyVersionId", &version)],
    );
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(r.json["KeyId"], key_id.as_str());
    let pem = r.json["PublicKey"].as_str().unwrap();
    assert!(
        pem.starts_with("-----BEGIN PUBLIC KEY-----\n")
            && pem.ends_with("-----END PUBLIC KEY-----\n")
    );
    assert_eq!(Some(pem.to_string()), emu.public_key_pem(&key_id, &version));
    let public = p256::ecdsa::VerifyingKey::from_public_key_pem(pem).unwrap();

    let digest = Sha256::digest(b"hello, sigstore");
    let r = c.call(
        "AsymmetricSign",
        &[
            ("Algorithm", "ECDSA_SHA_256"),
            ("Digest", &b64(&digest)),
            ("KeyId", "alias/test-key"),
            ("KeyVersionId", &version),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(r.json["KeyId"], key_id.as_str());
    assert_eq!(r.json["KeyVersionId"], version.as_str());
    let der = unb64(r.json["Value"].as_str().unwrap());
    let sig = p256::ecdsa::Signature::from_der(&der).expect("DER ECDSA");
    public
        .verify_prehash(&digest, &sig)
        .expect("verifies with the PEM key");

    let verify = |c: &mut Client, digest: &[u8], value: &str| {
        c.call(
            "AsymmetricVerify",
            &[
                ("Algorithm", "ECDSA_SHA_256"),
                ("Digest", &b64(digest)),
                ("KeyId", &key_id),
                ("KeyVersionId", &version),
                ("Value", value),
            ],
        )
    };
    let r = verify(&mut c, &digest, &b64(&der));
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(r.json["Value"], Value::Bool(true));
    let r = verify(&mut c, &Sha256::digest(b"other"), &b64(&der));
    assert_eq!(r.json["Value"], Value::Bool(false));
    let r = verify(&mut c, &digest, &b64(b"not a DER signature"));
    assert_eq!((r.status, &r.json["Value"]), (200, &Value::Bool(false)));

    let r = c.call("DescribeKey", &[("KeyId", "alias/test-key")]);
    assert_eq!(r.json["KeyMetadata"]["KeyId"], key_id.as_str());
    let arn = r.json["KeyMetadata"]["Arn"].as_str().unwrap().to_string();
    let r = c.call("DescribeKey", &[("KeyId", &arn)]);
    assert_eq!(r.json["KeyMetadata"]["KeyId"], key_id.as_str());

    let r = c.call("ListAliases", &[("PageSize", "100")]);
    assert_eq!(r.json["TotalCount"], 1);
    assert_eq!(r.json["Aliases"]["Alias"][0]["AliasName"], "alias/test-key");
    assert_eq!(r.json["Aliases"]["Alias"][0]["KeyId"], key_id.as_str());

    let s = emu.stats();
    assert_eq!(s.tcp_connections, 1, "one connection, kept alive");
    assert_eq!(s.tls_handshakes, 1);
    assert_eq!(s.total_requests, 11);
    assert_eq!(s.action("AsymmetricVerify"), 3);
    assert_eq!(s.action("CreateKey"), 1);
    assert_eq!(s.action("DescribeKey"), 2);
    assert!(s.rejected_per_code.is_empty(), "{:?}", s.rejected_per_code);

    let recorded = emu.requests();
    assert_eq!(recorded.len(), 11);
    assert!(recorded
        .iter()
        .all(|r| r.connection == recorded[0].connection));
    let alias_req = recorded.iter().find(|r| r.action == "CreateAlias").unwrap();
    assert_eq!(alias_req.params["AliasName"], "alias/test-key");
    assert_eq!(alias_req.code, None);
    assert!(alias_req
        .header("authorization")
        .unwrap()
        .starts_with("ACS3-HMAC-SHA256 "));

    // A second client is a second connection and handshake.
    let mut c2 = Client::connect(&emu.endpoint(), emu.ca_pem()).unwrap();
    assert_eq!(c2.call("ListAliases", &[]).status, 200);
    let s = emu.stats();
    assert_eq!((s.tcp_connections, s.tls_handshakes), (2, 2));
    emu.reset_stats();
    assert_eq!(emu.stats().total_requests, 0);
}

#[test]
fn errors_carry_real_codes_statuses_and_shapes() {
    let (emu, mut c) = start();
    let now = SystemTime::now();
    let gateway_shape = set(&["RequestId", "HostId", "Code", "Message", "Recommend"]);
    let kms_shape = set(&["HttpStatus", "Code", "Message", "RequestId"]);

    let r = c.call_as("refkms-ak", "wrong-secret", None, now, "ListAliases", &[]);
    assert_eq!((r.status, r.code()), (400, "SignatureDoesNotMatch"));
    assert_eq!(keys(&r.json), gateway_shape);
    assert_eq!(r.header("x-acs-request-id"), r.json["RequestId"].as_str());
    assert_eq!(
        r.header("content-type"),
        Some("application/json;charset=utf-8")
    );
    assert_eq!(r.json["HostId"], emu.endpoint().as_str());
    assert!(r.json["Message"].as_str().unwrap().starts_with(
        "Specified signature is not matched with our calculation. server string to sign is:"
    ));
    let rec = emu.requests().pop().unwrap();
    assert_eq!(rec.code.as_deref(), Some("SignatureDoesNotMatch"));
    assert!(rec
        .server_canonical_request
        .unwrap()
        .starts_with("POST\n/\n"));

    let r = c.call_as("nobody", "x", None, now, "ListAliases", &[]);
    assert_eq!((r.status, r.code()), (404, "InvalidAccessKeyId.NotFound"));

    let r = c.call("NoSuchAction", &[]);
    assert_eq!((r.status, r.code()), (404, "InvalidApi.NotFound"));
    assert_eq!(keys(&r.json), gateway_shape);

    let mut input = SignInput::new(&emu.endpoint(), "ListAliases", &[]);
    input.version = "2019-01-01".into();
    let r = c.send_signed(&input);
    assert_eq!((r.status, r.code()), (404, "InvalidApi.NotFound"));

    let key = emu.create_key("EC_P256").unwrap();
    let r = c.call("GetPublicKey", &[("KeyId", &key.key_id)]);
    assert_eq!((r.status, r.code()), (400, "MissingParameter"));
    assert_eq!(keys(&r.json), kms_shape);
    assert_eq!(r.json["HttpStatus"], 400);
    assert!(r.json["Message"].as_str().unwrap().contains("KeyVersionId"));

    let r = c.call("DescribeKey", &[("KeyId", "alias/nope")]);
    assert_eq!((r.status, r.code()), (404, "Forbidden.AliasNotFound"));
    let r = c.call("DescribeKey", &[("KeyId", "key-hzz000000000000000000")]);
    assert_eq!((r.status, r.code()), (404, "Forbidden.KeyNotFound"));
    let r = c.call(
        "CreateAlias",
        &[("AliasName", "alias/x"), ("KeyId", "alias/y")],
    );
    assert_eq!((r.status, r.code()), (404, "Forbidden.KeyNotFound"));

    let r = c.call(
        "CreateKey",
        &[("KeySpec", "EC_P256"), ("DKMSInstanceId", "kst-unknown")],
    );
    assert_eq!(
        (r.status, r.code()),
        (403, "Forbidden.DKMSInstanceNotFound")
    );
    let r = c.call("CreateKey", &[("KeySpec", "RSA_9999")]);
    assert_eq!((r.status, r.code()), (400, "InvalidParameter"));
    let r = c.call(
        "CreateKey",
        &[
            ("KeySpec", "EC_P256"),
            ("DKMSInstanceId", "kst-hzz65f176a0ogplgqob3"),
        ],
    );
    assert_eq!(
        r.json["KeyMetadata"]["DKMSInstanceId"],
        "kst-hzz65f176a0ogplgqob3"
    );

    let sign_params = |digest: &str| {
        vec![
            ("Algorithm".to_string(), "ECDSA_SHA_256".to_string()),
            ("Digest".to_string(), digest.to_string()),
            ("KeyId".to_string(), key.key_id.clone()),
            ("KeyVersionId".to_string(), key.version_id.clone()),
        ]
    };
    let call_sign = |c: &mut Client, digest: &str| {
        let p = sign_params(digest);
        let p: Vec<(&str, &str)> = p.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        c.call("AsymmetricSign", &p)
    };
    let r = call_sign(&mut c, &b64(&[1u8; 31]));
    assert_eq!((r.status, r.code()), (400, "InvalidParameter"));
    let r = call_sign(&mut c, "not base64!");
    assert_eq!((r.status, r.code()), (400, "InvalidParameter"));
    emu.set_key_state(&key.key_id, KeyState::Disabled).unwrap();
    let r = call_sign(&mut c, &b64(&[1u8; 32]));
    assert_eq!((r.status, r.code()), (409, "Rejected.Disabled"));
    emu.set_key_state(&key.key_id, KeyState::PendingDeletion)
        .unwrap();
    let r = call_sign(&mut c, &b64(&[1u8; 32]));
    assert_eq!((r.status, r.code()), (409, "Rejected.PendingDeletion"));

    // The same signed bytes twice: the second is a replay.
    let (path, headers) = sign(&SignInput::new(&emu.endpoint(), "ListAliases", &[]));
    assert_eq!(c.send("POST", &path, &headers, b"").unwrap().status, 200);
    let r = c.send("POST", &path, &headers, b"").unwrap();
    assert_eq!((r.status, r.code()), (400, "SignatureNonceUsed"));

    // The server's clock 20 minutes behind the client's.
    emu.set_clock_offset_secs(-20 * 60);
    let r = c.call("ListAliases", &[]);
    assert_eq!((r.status, r.code()), (400, "InvalidTimeStamp.Expired"));
    emu.set_clock_offset_secs(0);
    assert_eq!(c.call("ListAliases", &[]).status, 200);

    // GET is accepted like POST; other methods and paths are not.
    let mut get = SignInput::new(&emu.endpoint(), "ListAliases", &[("PageSize", "5")]);
    get.method = "GET".into();
    let (path, headers) = sign(&get);
    assert_eq!(c.send("GET", &path, &headers, b"").unwrap().status, 200);
    let r = c.send("PUT", &path, &headers, b"").unwrap();
    assert_eq!((r.status, r.code()), (403, "UnsupportedHTTPMethod"));
    let r = c.send("POST", "/v1/keys", &headers, b"").unwrap();
    assert_eq!((r.status, r.code()), (404, "InvalidApi.NotFound"));

    let s = emu.stats();
    assert_eq!(s.rejected("SignatureDoesNotMatch"), 1);
    assert_eq!(s.rejected("InvalidApi.NotFound"), 3);
    assert_eq!(s.rejected("SignatureNonceUsed"), 1);
    assert_eq!(s.rejected("InvalidTimeStamp.Expired"), 1);
    assert_eq!(s.tcp_connections, 1);
}

#[test]
fn form_body_parameters_count_only_when_content_type_is_signed() {
    let (emu, mut c) = start();
    for i in 0..3 {
        emu.create_alias(
            &format!("alias/a{i}"),
            &emu.create_key("EC_P256").unwrap().key_id,
        )
        .unwrap();
    }
    let mut input = SignInput::new(&c.endpoint, "ListAliases", &[]);
    input.body = b"PageSize=2".to_vec();
    input.content_type = Some("application/x-www-form-urlencoded".into());
    let r = c.send_signed(&input);
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(r.json["PageSize"], 2);
    assert_eq!(r.json["Aliases"]["Alias"].as_array().unwrap().len(), 2);

    // The same body with an unsigned content-type is refused.
    let mut input = SignInput::new(&c.endpoint, "ListAliases", &[]);
    input.body = b"PageSize=2".to_vec();
    let (path, mut headers) = sign(&input);
    headers.push((
        "content-type".into(),
        "application/x-www-form-urlencoded".into(),
    ));
    let r = c.send("POST", &path, &headers, &input.body).unwrap();
    assert_eq!((r.status, r.code()), (400, "IncompleteSignature"));
}

#[test]
fn sdk_requests_replayed_on_the_wire_are_accepted() {
    let now = parse_iso8601("2026-11-26T05:40:00Z").unwrap();
    let cfg = EmulatorConfig::default()
        .now_fn(Arc::new(move || now))
        .sts_credential(
            "STS.refkms",
            "refkms-sts-secret",
            "refkms-sts-token",
            now + Duration::from_secs(3600),
        );
    let emu = Emulator::start(cfg).unwrap();
    let mut c = Client::connect(&emu.endpoint(), emu.ca_pem()).unwrap();

    let lines: Vec<Value> = alibabakms_fixtures::lines(alibabakms_fixtures::ACS3_SDK_REQUESTS)
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let send = |c: &mut Client, line: &Value| {
        let headers: Vec<(String, String)> = line["headers_as_received_lowercased"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| *k != "content-length")
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
            .collect();
        c.send(
            line["method"].as_str().unwrap(),
            line["path_and_query_as_sent"].as_str().unwrap(),
            &headers,
            b"",
        )
        .unwrap()
    };
    for line in &lines {
        let action = line["headers_as_received_lowercased"]["x-acs-action"]
            .as_str()
            .unwrap();
        let r = send(&mut c, line);
        match action {
            "ListAliases" => assert_eq!(r.status, 200, "{}", r.json),
            "CreateKey" => {
                assert_eq!(r.status, 200, "{}", r.json);
                assert_eq!(r.json["KeyMetadata"]["Description"], "Created by Sigstore");
            }
            // Signed fine, but they name keys from the SDK's own run, absent here.
            _ => assert_eq!(
                (r.status, r.code()),
                (404, "Forbidden.KeyNotFound"),
                "{action}"
            ),
        }
    }
    let sts_key = emu
        .requests()
        .iter()
        .filter(|r| r.action == "CreateKey")
        .map(|r| r.params.get("DKMSInstanceId").cloned())
        .collect::<Vec<_>>();
    assert_eq!(
        sts_key,
        [None, Some("kst-hzz65f176a0ogplgqob3".to_string())]
    );
    for line in &lines {
        assert_eq!(send(&mut c, line).code(), "SignatureNonceUsed");
    }
}

#[test]
fn sts_credentials_need_their_token() {
    let expiry = SystemTime::now() + Duration::from_secs(3600);
    let cfg = EmulatorConfig::default().sts_credential("STS.abc", "sts-secret", "tok-1", expiry);
    let emu = Emulator::start(cfg).unwrap();
    let mut c = Client::connect(&emu.endpoint(), emu.ca_pem()).unwrap();
    let now = SystemTime::now();
    let r = c.call_as(
        "STS.abc",
        "sts-secret",
        Some("tok-1"),
        now,
        "ListAliases",
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.json);
    let r = c.call_as("STS.abc", "sts-secret", None, now, "ListAliases", &[]);
    assert_eq!((r.status, r.code()), (400, "MissingSecurityToken"));
    let r = c.call_as(
        "STS.abc",
        "sts-secret",
        Some("tok-2"),
        now,
        "ListAliases",
        &[],
    );
    assert_eq!(r.code(), "InvalidSecurityToken.MismatchWithAccessKey");
    emu.set_clock_offset_secs(3601);
    let r = c.call_as(
        "STS.abc",
        "sts-secret",
        Some("tok-1"),
        now + Duration::from_secs(3601),
        "ListAliases",
        &[],
    );
    assert_eq!(r.code(), "InvalidSecurityToken.Expired");
}

#[test]
fn only_tls_clients_that_trust_the_ca_get_in() {
    let (emu, _) = start();
    assert_eq!(
        std::fs::read_to_string(emu.ca_pem_path()).unwrap(),
        emu.ca_pem()
    );

    // Another emulator's CA does not vouch for this one.
    let other = Emulator::start(EmulatorConfig::default()).unwrap();
    assert!(Client::connect(&emu.endpoint(), other.ca_pem()).is_err());

    // Plain HTTP gets no HTTP answer.
    let mut tcp = std::net::TcpStream::connect(emu.endpoint()).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    tcp.write_all(b"POST / HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: 0\r\n\r\n")
        .unwrap();
    let mut buf = Vec::new();
    let _ = tcp.read_to_end(&mut buf);
    assert!(
        !buf.starts_with(b"HTTP/"),
        "{}",
        String::from_utf8_lossy(&buf)
    );
    assert_eq!(emu.stats().total_requests, 0);

    let ca_dir = emu.ca_pem_path().parent().unwrap().to_path_buf();
    drop(emu);
    assert!(!ca_dir.exists(), "the CA's temp dir goes with the emulator");
}

#[test]
fn binary_prints_its_endpoint_and_serves_until_terminated() {
    let dir = std::env::temp_dir().join(format!("kms-emulator-bin-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca_out = dir.join("ca.pem");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_kms-emulator"))
        .args(["--ca-out", ca_out.to_str().unwrap()])
        .args([
            "--access-key-id",
            "bin-ak",
            "--access-key-secret",
            "bin-secret",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (endpoint, mut stdout) = common::read_endpoint(&mut child);
    assert!(endpoint.starts_with("127.0.0.1:"));

    let ca = std::fs::read_to_string(&ca_out).unwrap();
    let mut c = Client::connect(&endpoint, &ca).unwrap();
    let r = c.call_as(
        "bin-ak",
        "bin-secret",
        None,
        SystemTime::now(),
        "ListAliases",
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.json);
    let r = c.call("ListAliases", &[]); // the default key is replaced by --access-key-id
    assert_eq!(r.code(), "InvalidAccessKeyId.NotFound");

    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "{exit:?}");
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "", "stdout carries only the endpoint line");
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(stderr.contains("action=ListAliases status=200"), "{stderr}");
    assert!(!stderr.contains("bin-secret"));
    let _ = std::fs::remove_dir_all(dir);
}
