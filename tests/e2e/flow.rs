//! The main job: generate-key-pair → public-key → sign-blob → verify, in both URI forms.

use crate::harness::*;
use serde_json::json;
use sha2::Digest;

#[test]
fn generate_sign_verify_with_an_alias() {
    let emu = emulator();
    let env = env_for(&emu);
    let key = format!("{}//alias/release-signing", emu.endpoint());

    // cosign generate-key-pair --kms: defaultAlgorithm, then createKey with it.
    let alg = call(&env, &key, "defaultAlgorithm", json!({}), b"");
    let alg = alg.ok("defaultAlgorithm")["defaultAlgorithm"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(alg, "EC_P256");
    let created = create_key(&env, &key, &alg);
    let pem = pem_of(created.ok("createKey"));
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"), "{pem}");
    assert_eq!(emu.stats().action("CreateKey"), 1);

    // Running it again returns the same key and creates nothing.
    let again = create_key(&env, &key, &alg);
    assert_eq!(pem_of(again.ok("createKey")), pem);
    assert_eq!(emu.stats().action("CreateKey"), 1, "no second key");

    // cosign public-key --key
    let exported = public_key(&env, &key);
    assert_eq!(pem_of(exported.ok("publicKey")), pem);

    // cosign sign-blob --key: the blob on stdin.
    let blob = b"release-1.2.3.tar.gz contents".repeat(1000);
    let signed = sign_message(&env, &key, &blob);
    let sig = unb64(signed.ok("signMessage")["signature"].as_str().unwrap());
    assert_eq!(sig[0], 0x30, "ASN.1 DER SEQUENCE");

    // cosign verify --key REF (through the plugin): good, tampered signature, tampered message.
    verify_signature(&env, &key, &blob, &sig).ok("verifySignature");
    let mut bad_sig = sig.clone();
    let last = bad_sig.len() - 1;
    bad_sig[last] ^= 1;
    let e = verify_signature(&env, &key, &blob, &bad_sig);
    assert!(e.err().contains("invalid signature"), "{}", e.err());
    let mut other = blob.clone();
    other[0] ^= 1;
    let e = verify_signature(&env, &key, &other, &sig);
    assert!(e.err().contains("invalid signature"), "{}", e.err());

    // cosign verify --key cosign.pub: offline, with the exported PEM, by OpenSSL.
    assert!(openssl_verify(&pem, &blob, &sig, "sha256"));
    assert!(!openssl_verify(&pem, &other, &sig, "sha256"));
}

#[test]
fn key_id_and_version_form_and_instance_segment() {
    let emu = emulator();
    let env = env_for(&emu);
    let alias_ref = format!(
        "{}/kst-hzz65f176a0ogplgqob3/alias/instance-key",
        emu.endpoint()
    );
    let pem = pem_of(create_key(&env, &alias_ref, "EC_P256").ok("createKey"));
    let create = emu
        .requests()
        .into_iter()
        .find(|r| r.action == "CreateKey")
        .expect("CreateKey was sent");
    assert_eq!(
        create.params.get("DKMSInstanceId").map(String::as_str),
        Some("kst-hzz65f176a0ogplgqob3")
    );
    assert_eq!(
        create.params.get("KeySpec").map(String::as_str),
        Some("EC_P256")
    );
    assert_eq!(
        create.params.get("KeyUsage").map(String::as_str),
        Some("SIGN/VERIFY")
    );

    let key_id = create_key_id(&emu);
    let versions = emu.key_versions(&key_id).expect("the key exists");
    let version_ref = format!("{}//{}/versions/{}", emu.endpoint(), key_id, versions[0]);
    assert_eq!(pem_of(public_key(&env, &version_ref).ok("publicKey")), pem);

    let sig = unb64(
        sign_message(&env, &version_ref, b"hello").ok("signMessage")["signature"]
            .as_str()
            .unwrap(),
    );
    verify_signature(&env, &alias_ref, b"hello", &sig).ok("verifySignature");
    assert!(openssl_verify(&pem, b"hello", &sig, "sha256"));
}

fn create_key_id(emu: &alibabakms_emulator::Emulator) -> String {
    let resp = emu
        .requests()
        .into_iter()
        .find(|r| r.action == "CreateAlias")
        .expect("CreateAlias was sent");
    resp.params["KeyId"].clone()
}

/// cosign's CryptoSigner path: a digest in the JSON, empty stdin.
#[test]
fn signs_a_given_digest() {
    let emu = emulator();
    let env = env_for(&emu);
    let key = format!("{}//alias/digest-key", emu.endpoint());
    let pem = pem_of(create_key(&env, &key, "EC_P256").ok("createKey"));
    let digest = sha2::Sha256::digest(b"payload");
    let sig = unb64(
        sign_digest(&env, &key, &digest, 5).ok("signMessage")["signature"]
            .as_str()
            .unwrap(),
    );
    assert!(openssl_verify(&pem, b"payload", &sig, "sha256"));
    assert!(openssl_verify_digest(&pem, &digest, &sig));
}

/// Every call cosign was captured making, replayed against the emulator.
/// The captured `ctxDeadline`s have passed by now (the plugin would refuse to start): moved
/// far into the future, keeping everything else of the request as captured.
pub fn future_deadlines(arg: &str) -> Option<String> {
    fn walk(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m.iter_mut() {
                    if k == "ctxDeadline" && v.is_string() {
                        *v = json!("2099-01-01T00:00:00.000000001Z");
                    } else {
                        walk(v);
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(walk),
            _ => {}
        }
    }
    let mut v: serde_json::Value = serde_json::from_str(arg).ok()?;
    v.is_object().then_some(())?;
    walk(&mut v);
    Some(v.to_string())
}

#[test]
fn the_captured_cosign_calls_work() {
    let emu = emulator();
    let env = env_for(&emu);
    let mut pem = None;
    for line in alibabakms_fixtures::lines(alibabakms_fixtures::CLIPLUGIN_V1_CALLS) {
        let c: serde_json::Value = serde_json::from_str(line).unwrap();
        let argv = replayed_argv(&c, &emu);
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let stdin = unb64(c["stdin_base64"].as_str().unwrap());
        let run = run_raw(&env, &argv, &stdin);
        match c["method"].as_str().unwrap() {
            "defaultAlgorithm" => {
                assert_eq!(run.ok("defaultAlgorithm")["defaultAlgorithm"], "EC_P256")
            }
            "supportedAlgorithms" => assert_eq!(
                run.ok("supportedAlgorithms")["supportedAlgorithms"],
                json!(["EC_P256", "RSA_2048", "RSA_3072", "RSA_4096"])
            ),
            "createKey" => pem = Some(pem_of(run.ok("createKey"))),
            "publicKey" => assert_eq!(Some(pem_of(run.ok("publicKey"))), pem),
            "signMessage" => {
                let sig = unb64(run.ok("signMessage")["signature"].as_str().unwrap());
                let pem = pem.as_deref().unwrap();
                let digest_given = json_arg(&argv)["signMessage"]["signOptions"]["messageOptions"]
                    ["digest"]
                    .clone();
                if digest_given.is_null() {
                    assert!(openssl_verify(pem, &stdin, &sig, "sha256"));
                } else {
                    let digest = unb64(digest_given.as_str().unwrap());
                    assert!(openssl_verify_digest(pem, &digest, &sig));
                }
            }
            // The captured signature is the literal bytes "sig": a clear verification failure.
            "verifySignature" => assert!(run.err().contains("invalid signature"), "{}", run.err()),
            m => panic!("unexpected method {m}"),
        }
    }
}

fn json_arg(argv: &[&str]) -> serde_json::Value {
    serde_json::from_str(argv[1]).unwrap()
}

/// A large blob is hashed as it streams in; the signature covers every byte.
#[test]
fn signs_a_large_blob_from_stdin() {
    let emu = emulator();
    let env = env_for(&emu);
    let key = format!("{}//alias/big", emu.endpoint());
    let pem = pem_of(create_key(&env, &key, "EC_P256").ok("createKey"));
    let blob: Vec<u8> = (0..64 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    let sig = unb64(
        sign_message(&env, &key, &blob).ok("signMessage")["signature"]
            .as_str()
            .unwrap(),
    );
    assert!(openssl_verify(&pem, &blob, &sig, "sha256"));
}
