//! Each method against a scripted KMS: how many requests it takes, what they carry, and
//! what the user is told when something is refused.

use super::*;
use crate::transport::mock::{json, MockTransport};
use crate::transport::HttpRequest;
use p256::ecdsa::signature::hazmat::PrehashSigner;
use p256::ecdsa::{DerSignature, SigningKey};
use p256::pkcs8::{EncodePublicKey, LineEnding};
use serde_json::json as j;
use sha2::Digest;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

const REF: &str = "kms.cn-hangzhou.aliyuncs.com//alias/cosign";

fn env(k: &str) -> Option<String> {
    match k {
        "ALIBABA_CLOUD_ACCESS_KEY_ID" => Some("LTAItest".into()),
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET" => Some("secret".into()),
        _ => None,
    }
}

fn params(r: &HttpRequest) -> HashMap<String, String> {
    let q = r.path_and_query.trim_start_matches("/?");
    q.split('&')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| {
            (
                k.to_string(),
                v.replace("%2F", "/")
                    .replace("%3D", "=")
                    .replace("%2B", "+"),
            )
        })
        .collect()
}

fn action(r: &HttpRequest) -> String {
    r.headers
        .iter()
        .find(|(k, _)| k == "x-acs-action")
        .unwrap()
        .1
        .clone()
}

/// A tiny in-memory KMS for unit tests (the strict one is the emulator in tests/).
fn fake_kms(aliases: Rc<RefCell<HashMap<String, String>>>) -> MockTransport {
    let sk = SigningKey::from_slice(&[9u8; 32]).unwrap();
    MockTransport::new(move |r| {
        let p = params(r);
        let key_of = |id: &str| {
            aliases
                .borrow()
                .get(id)
                .cloned()
                .or_else(|| (!id.starts_with("alias/")).then(|| id.to_string()))
        };
        match action(r).as_str() {
            "ListKeyVersions" => match key_of(&p["KeyId"]) {
                Some(k) => json(
                    200,
                    j!({"TotalCount": 3, "PageNumber": 1, "PageSize": 100, "KeyVersions": {"KeyVersion": [
                    {"KeyId": k, "KeyVersionId": "v-old", "CreationDate": "2024-01-01T00:00:00Z"},
                    {"KeyId": k, "KeyVersionId": "v-new", "CreationDate": "2025-06-01T00:00:00Z"},
                    {"KeyId": k, "KeyVersionId": "v-mid", "CreationDate": "2024-06-01T00:00:00Z"}]}}),
                ),
                None => json(
                    404,
                    j!({"Code": "Forbidden.AliasNotFound", "Message": "The specified Alias is not found.", "RequestId": "r"}),
                ),
            },
            "DescribeKey" => match key_of(&p["KeyId"]) {
                Some(k) => json(
                    200,
                    j!({"KeyMetadata": {"KeyId": k, "KeySpec": "EC_P256", "KeyUsage": "SIGN/VERIFY", "KeyState": "Enabled"}}),
                ),
                None => json(
                    404,
                    j!({"Code": "Forbidden.AliasNotFound", "Message": "The specified Alias is not found.", "RequestId": "r"}),
                ),
            },
            "GetPublicKey" => json(
                200,
                j!({"PublicKey": sk.verifying_key().to_public_key_pem(LineEnding::LF).unwrap(), "KeyVersionId": p["KeyVersionId"]}),
            ),
            "AsymmetricSign" => {
                assert_eq!(p["KeyVersionId"], "v-new");
                let digest = base64::engine::general_purpose::STANDARD
                    .decode(&p["Digest"])
                    .unwrap();
                assert_eq!(digest.len(), 32);
                let sig: DerSignature = sk.sign_prehash(&digest).unwrap();
                json(
                    200,
                    j!({"Value": base64::engine::general_purpose::STANDARD.encode(sig.as_bytes())}),
                )
            }
            "AsymmetricVerify" => {
                let digest = base64::engine::general_purpose::STANDARD
                    .decode(&p["Digest"])
                    .unwrap();
                let sig = base64::engine::general_purpose::STANDARD
                    .decode(&p["Value"])
                    .unwrap();
                let ok = p256::ecdsa::Signature::from_der(&sig)
                    .map(|sig| {
                        p256::ecdsa::signature::hazmat::PrehashVerifier::verify_prehash(
                            sk.verifying_key(),
                            &digest,
                            &sig,
                        )
                        .is_ok()
                    })
                    .unwrap_or(false);
                json(200, j!({"Value": ok}))
            }
            "CreateKey" => json(
                200,
                j!({"KeyMetadata": {"KeyId": "key-new", "PrimaryKeyVersion": "v-1"}}),
            ),
            "CreateAlias" => {
                aliases
                    .borrow_mut()
                    .insert(p["AliasName"].clone(), p["KeyId"].clone());
                json(200, j!({"RequestId": "r"}))
            }
            other => panic!("unexpected action {other}"),
        }
    })
}

#[test]
fn sign_uses_the_newest_version_in_two_round_trips_and_checks_the_signature() {
    let aliases = Rc::new(RefCell::new(HashMap::from([(
        "alias/cosign".to_string(),
        "key-1".to_string(),
    )])));
    let t = fake_kms(aliases);
    let s = Signer::new(&t, &env);
    let msg = b"hello world".to_vec();
    let sig = s
        .sign(
            REF,
            Message::Stream(&mut &msg[..]),
            HashAlg::Sha256,
            &Options::default(),
        )
        .unwrap();
    assert_eq!(
        t.actions(),
        [
            "DescribeKey",
            "ListKeyVersions",
            "AsymmetricSign",
            "GetPublicKey"
        ]
    );
    assert_eq!(
        *t.round_trips.borrow(),
        2,
        "DescribeKey and ListKeyVersions go together"
    );
    assert_eq!(params(&t.sent.borrow()[2])["KeyId"], "key-1");
    s.verify(
        REF,
        Message::Stream(&mut &msg[..]),
        HashAlg::Sha256,
        &sig,
        &Options::default(),
    )
    .unwrap();
    let e = s.verify(
        REF,
        Message::Stream(&mut &b"hellO world"[..]),
        HashAlg::Sha256,
        &sig,
        &Options::default(),
    );
    assert!(
        matches!(e, Err(SignerError::VerificationFailed(_))),
        "{e:?}"
    );
}

#[test]
fn remote_verification_sends_digest_and_signature_in_their_fields_and_reads_the_answer() {
    let aliases = Rc::new(RefCell::new(HashMap::from([(
        "alias/cosign".to_string(),
        "key-1".to_string(),
    )])));
    let t = fake_kms(aliases);
    let s = Signer::new(&t, &env);
    let remote = Options {
        remote_verification: true,
        ..Options::default()
    };
    let digest = sha2::Sha256::digest(b"m").to_vec();
    let sig = s
        .sign(
            REF,
            Message::Digest(digest.clone()),
            HashAlg::Sha256,
            &remote,
        )
        .unwrap();
    s.verify(
        REF,
        Message::Digest(digest.clone()),
        HashAlg::Sha256,
        &sig,
        &remote,
    )
    .unwrap();
    let sent = t.sent.borrow().last().cloned().unwrap();
    assert_eq!(action(&sent), "AsymmetricVerify");
    assert_eq!(
        params(&sent)["Digest"],
        base64::engine::general_purpose::STANDARD.encode(&digest)
    );
    drop(sent);
    let other = sha2::Sha256::digest(b"n").to_vec();
    let e = s
        .verify(REF, Message::Digest(other), HashAlg::Sha256, &sig, &remote)
        .unwrap_err();
    assert!(
        matches!(e, SignerError::VerificationFailed(ref m) if m.contains("AsymmetricVerify")),
        "{e}"
    );
}

#[test]
fn the_newest_version_is_found_on_any_page() {
    let t = MockTransport::new(|r| {
        let p = params(r);
        match action(r).as_str() {
            "ListKeyVersions" => {
                let page: u64 = p["PageNumber"].parse().unwrap();
                // 150 versions, 100 per page; the newest is on page 2.
                let versions: Vec<_> = (0..if page == 1 { 100 } else { 50 })
                    .map(|i| {
                        let n = (page - 1) * 100 + i;
                        let date = if n == 120 { "2030-01-01T00:00:00Z".to_string() } else { format!("2024-01-01T00:{:02}:{:02}Z", n / 60, n % 60) };
                        j!({"KeyId": "key-1", "KeyVersionId": format!("v-{n}"), "CreationDate": date})
                    })
                    .collect();
                json(
                    200,
                    j!({"TotalCount": 150, "PageNumber": page, "PageSize": 100, "KeyVersions": {"KeyVersion": versions}}),
                )
            }
            "GetPublicKey" => {
                assert_eq!(p["KeyVersionId"], "v-120");
                let sk = SigningKey::from_slice(&[9u8; 32]).unwrap();
                json(
                    200,
                    j!({"PublicKey": sk.verifying_key().to_public_key_pem(LineEnding::LF).unwrap()}),
                )
            }
            other => panic!("unexpected {other}"),
        }
    });
    let s = Signer::new(&t, &env);
    s.public_key("kms.cn-hangzhou.aliyuncs.com//key-1", &Options::default())
        .unwrap();
    assert_eq!(
        t.actions(),
        ["ListKeyVersions", "ListKeyVersions", "GetPublicKey"]
    );
}

#[test]
fn a_wrong_digest_length_is_refused_before_any_request() {
    let t = fake_kms(Rc::default());
    let s = Signer::new(&t, &env);
    let e = s
        .sign(
            REF,
            Message::Digest(vec![0; 10]),
            HashAlg::Sha256,
            &Options::default(),
        )
        .unwrap_err();
    assert!(
        matches!(e, SignerError::InvalidInput(ref m) if m.contains("10 bytes")),
        "{e}"
    );
    assert!(t.actions().is_empty());
}

#[test]
fn sha512_digests_sign_and_verify_on_p256() {
    let aliases = Rc::new(RefCell::new(HashMap::from([(
        "alias/cosign".to_string(),
        "key-1".to_string(),
    )])));
    let t = fake_kms(aliases);
    let s = Signer::new(&t, &env);
    let digest = sha2::Sha512::digest(b"blob").to_vec();
    let sig = s
        .sign(
            REF,
            Message::Digest(digest.clone()),
            HashAlg::Sha512,
            &Options::default(),
        )
        .unwrap();
    s.verify(
        REF,
        Message::Digest(digest),
        HashAlg::Sha512,
        &sig,
        &Options::default(),
    )
    .unwrap();
}

#[test]
fn create_key_is_idempotent_and_needs_at_most_four_requests() {
    let aliases = Rc::new(RefCell::new(HashMap::new()));
    let t = fake_kms(aliases.clone());
    let s = Signer::new(&t, &env);
    let first = s.create_key(REF, "EC_P256").unwrap();
    assert_eq!(
        t.actions(),
        ["DescribeKey", "CreateKey", "CreateAlias", "GetPublicKey"]
    );
    // The alias and the public key of the primary version go out together.
    assert_eq!(*t.round_trips.borrow(), 3);
    assert_eq!(aliases.borrow()["alias/cosign"], "key-new");
    let again = s.create_key(REF, "EC_P256").unwrap();
    assert_eq!(first.to_pem(), again.to_pem());
    assert_eq!(t.actions().len(), 7, "{:?}", t.actions());
}

#[test]
fn a_new_key_without_a_primary_version_has_its_versions_listed() {
    // Whether CreateKey names the primary version of an asymmetric key is undocumented.
    let aliases = Rc::new(RefCell::new(HashMap::new()));
    let kms = fake_kms(aliases.clone());
    let t = MockTransport::new(move |r| match action(r).as_str() {
        "CreateKey" => json(200, j!({"KeyMetadata": {"KeyId": "key-new"}})),
        _ => kms.send(r.clone()),
    });
    let created = Signer::new(&t, &env).create_key(REF, "EC_P256").unwrap();
    assert_eq!(
        t.actions(),
        [
            "DescribeKey",
            "CreateKey",
            "CreateAlias",
            "ListKeyVersions",
            "GetPublicKey"
        ]
    );
    assert_eq!(params(&t.sent.borrow()[4])["KeyVersionId"], "v-new");
    assert_eq!(aliases.borrow()["alias/cosign"], "key-new");
    let again = Signer::new(&t, &env)
        .public_key(REF, &Options::default())
        .unwrap();
    assert_eq!(created.to_pem(), again.to_pem());
}

#[test]
fn unsupported_algorithms_are_refused_before_any_request() {
    let t = fake_kms(Rc::default());
    let s = Signer::new(&t, &env);
    let e = s.create_key(REF, "any-algorithm").unwrap_err().to_string();
    assert!(e.contains("any-algorithm") && e.contains("EC_P256"), "{e}");
    assert!(t.actions().is_empty());
}

#[test]
fn missing_alias_advice_says_how_to_create_it() {
    let t = fake_kms(Rc::default());
    let s = Signer::new(&t, &env);
    let e = s
        .public_key(REF, &Options::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("alias/cosign does not exist") && e.contains("cosign generate-key-pair"),
        "{e}"
    );
    assert!(e.contains("Forbidden.AliasNotFound"), "{e}");
}

#[test]
fn explicit_versions_skip_the_lookup() {
    let t = fake_kms(Rc::default());
    let s = Signer::new(&t, &env);
    s.public_key(
        "kms.cn-hangzhou.aliyuncs.com//key-1/versions/v-3",
        &Options::default(),
    )
    .unwrap();
    assert_eq!(t.actions(), ["GetPublicKey"]);
    let opts = Options {
        key_version: Some("v-9".into()),
        ..Options::default()
    };
    s.public_key("kms.cn-hangzhou.aliyuncs.com//key-1", &opts)
        .unwrap();
    assert_eq!(params(&t.sent.borrow()[1])["KeyVersionId"], "v-9");
}

#[test]
fn no_credentials_means_no_request() {
    let t = fake_kms(Rc::default());
    let no_env = |n: &str| (n == "ALIBABA_CLOUD_ECS_METADATA_DISABLED").then(|| "true".into());
    let s = Signer::new(&t, &no_env);
    let e = s.public_key(REF, &Options::default()).unwrap_err();
    assert!(matches!(e, SignerError::Credentials(_)));
    assert!(t.actions().is_empty());
}
