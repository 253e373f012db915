//! Keys and algorithms: every algorithm × every hash × message/digest path, key versions,
//! remote verification, key states, and the generate-key-pair race.

use crate::harness::*;
use alibabakms_emulator::{KeyState, VersionOrder};
use serde_json::json;
use sha2::Digest;
use std::time::{Duration, SystemTime};

/// Go crypto.Hash numbers with the OpenSSL digest name.
const SHA256: (u64, &str) = (5, "sha256");
const SHA384: (u64, &str) = (6, "sha384");
const SHA512: (u64, &str) = (7, "sha512");

/// (createKey algorithm, the KMS key spec it makes, the hashes to sign with).
type Case = (&'static str, &'static str, &'static [(u64, &'static str)]);

fn digest(hash: u64, message: &[u8]) -> Vec<u8> {
    match hash {
        5 => sha2::Sha256::digest(message).to_vec(),
        6 => sha2::Sha384::digest(message).to_vec(),
        7 => sha2::Sha512::digest(message).to_vec(),
        _ => unreachable!(),
    }
}

#[test]
fn every_algorithm_and_hash_signs_and_verifies_on_every_path() {
    alibabakms_emulator::prewarm_rsa_keys("RSA_2048", 1);
    alibabakms_emulator::prewarm_rsa_keys("RSA_3072", 1);
    alibabakms_emulator::prewarm_rsa_keys("RSA_4096", 1);
    let emu = emulator();
    let env = env_for(&emu);
    let cases: [Case; 4] = [
        (
            "ecdsa-sha2-256-nistp256",
            "EC_P256",
            &[SHA256, SHA384, SHA512],
        ),
        ("rsa-sign-pkcs1-2048-sha256", "RSA_2048", &[SHA256]),
        ("RSA_3072", "RSA_3072", &[SHA256]),
        // KMS makes RSA_4096 keys in KMS instances only.
        ("rsa-sign-pkcs1-4096-sha256", "RSA_4096", &[SHA256]),
    ];
    let message = b"v1.2.3 release manifest".repeat(100);
    for (algorithm, spec, hashes) in cases {
        let instance = match spec {
            "RSA_4096" => alibabakms_emulator::DEFAULT_KMS_INSTANCE_ID,
            _ => "",
        };
        let key = format!(
            "{}/{instance}/alias/{}",
            emu.endpoint(),
            spec.to_lowercase().replace('_', "-")
        );
        let pem = pem_of(create_key(&env, &key, algorithm).ok("createKey"));
        let created = emu
            .requests()
            .into_iter()
            .rev()
            .find(|r| r.action == "CreateKey")
            .unwrap();
        assert_eq!(created.params["KeySpec"], spec, "{algorithm}");
        for &(hash, name) in hashes {
            let d = digest(hash, &message);
            for input in [Input::Message(&message), Input::Digest(&d)] {
                let what = format!("{algorithm} {name} {}", matches!(input, Input::Message(_)));
                let sig = signature_of(&sign_or_verify(
                    &env,
                    &key,
                    input,
                    hash,
                    None,
                    &Opts::default(),
                ));
                // Offline, by an independent verifier: the message path as `cosign verify
                // --key cosign.pub` checks it, and the digest alone.
                assert!(
                    openssl_verify(&pem, &message, &sig, name),
                    "{what}: openssl"
                );
                if spec == "EC_P256" {
                    assert!(
                        openssl_verify_digest(&pem, &d, &sig),
                        "{what}: openssl digest"
                    );
                }
                for remote in [false, true] {
                    let opts = Opts {
                        remote,
                        ..Opts::default()
                    };
                    sign_or_verify(&env, &key, input, hash, Some(&sig), &opts)
                        .ok("verifySignature");
                    let mut bad = sig.clone();
                    bad[sig.len() / 2] ^= 0x40;
                    let e = sign_or_verify(&env, &key, input, hash, Some(&bad), &opts);
                    assert!(
                        e.err().contains("invalid signature"),
                        "{what} remote={remote}: {}",
                        e.err()
                    );
                }
            }
        }
    }
    // Remote verification sends the digest as Digest and the signature as Value.
    let verify = emu
        .requests()
        .into_iter()
        .rev()
        .find(|r| r.action == "AsymmetricVerify")
        .unwrap();
    assert_eq!(verify.params["Algorithm"], "RSA_PKCS1_SHA_256");
    assert_eq!(unb64(&verify.params["Digest"]).len(), 32);
    assert!(
        unb64(&verify.params["Value"]).len() == 512,
        "a 4096-bit signature"
    );
}

#[test]
fn the_default_algorithm_is_chosen_by_a_variable_without_any_request() {
    let emu = emulator();
    let key = format!("{}//alias/default", emu.endpoint());
    let default_with = |value: &str| {
        let mut env = env_for(&emu);
        env.push(("SIGSTORE_ALIBABAKMS_DEFAULT_ALGORITHM".into(), value.into()));
        call(&env, &key, "defaultAlgorithm", json!({}), b"")
    };
    for (value, answer) in [
        ("RSA_4096", "RSA_4096"),
        ("rsa-sign-pkcs1-3072-sha256", "RSA_3072"),
        ("rsa_2048", "RSA_2048"),
        ("", "EC_P256"),
    ] {
        assert_eq!(
            default_with(value).ok("defaultAlgorithm")["defaultAlgorithm"],
            answer,
            "{value:?}"
        );
    }
    let e = default_with("RSA_1024").err().to_string();
    assert!(
        e.contains("SIGSTORE_ALIBABAKMS_DEFAULT_ALGORITHM=\"RSA_1024\"")
            && e.contains("EC_P256, RSA_2048, RSA_3072, RSA_4096"),
        "{e}"
    );
    assert_eq!(emu.stats().total_requests, 0);
    assert_eq!(
        call(&env_for(&emu), &key, "supportedAlgorithms", json!({}), b"").ok("supportedAlgorithms")
            ["supportedAlgorithms"],
        json!(["EC_P256", "RSA_2048", "RSA_3072", "RSA_4096"])
    );
}

#[test]
fn an_rsa_4096_key_outside_a_kms_instance_says_where_it_must_live() {
    let emu = emulator();
    let key = format!("{}//alias/big", emu.endpoint());
    let e = create_key(&env_for(&emu), &key, "RSA_4096")
        .err()
        .to_string();
    assert!(
        e.contains("KMS instance") && e.contains("/kst-…/alias/big"),
        "{e}"
    );
    assert!(emu.alias_target("alias/big").is_none());
}

/// On a KMS 3.0 account the default key store holds symmetric keys only: `generate-key-pair`
/// with an empty instance segment is refused with the URI to write instead, and nothing is
/// left behind; the same alias in the instance's segment creates, signs and verifies.
#[test]
fn a_kms_3_account_keeps_asymmetric_keys_in_its_instance() {
    use alibabakms_emulator::{Emulator, EmulatorConfig, DEFAULT_KMS_INSTANCE_ID};
    let emu = Emulator::start(
        EmulatorConfig::default()
            .no_credentials()
            .access_key(AK_ID, AK_SECRET)
            .kms3_key_stores(),
    )
    .unwrap();
    let env = env_for(&emu);
    let shared = format!("{}//alias/kms3", emu.endpoint());
    let e = create_key(&env, &shared, "EC_P256").err().to_string();
    assert!(
        e.contains("KMS 3.0") && e.contains(&format!("{}/kst-…/alias/kms3", emu.endpoint())),
        "{e}"
    );
    assert_eq!(
        emu.stats().action("CreateAlias"),
        0,
        "no alias for a key that is not there"
    );
    let in_instance = format!("{}/{DEFAULT_KMS_INSTANCE_ID}/alias/kms3", emu.endpoint());
    let pem = pem_of(create_key(&env, &in_instance, "EC_P256").ok("createKey"));
    let sig = unb64(
        sign_message(&env, &in_instance, b"kms3").ok("signMessage")["signature"]
            .as_str()
            .unwrap(),
    );
    verify_signature(&env, &in_instance, b"kms3", &sig).ok("verifySignature");
    assert!(pem.contains("BEGIN PUBLIC KEY"));
}

/// A KMS instance's dedicated gateway serves cryptographic operations only (document 601559):
/// creating a key there is refused before any request, with the shared gateway's URI.
#[test]
fn key_creation_on_a_dedicated_gateway_names_the_shared_one() {
    let emu = emulator();
    let key = "kst-hzz65f176a0ogplgqob3.cryptoservice.kms.aliyuncs.com//alias/gw";
    let e = create_key(&env_for(&emu), key, "EC_P256").err().to_string();
    assert!(
        e.contains("dedicated gateway")
            && e.contains(
                "alibabakms://kms.<region>.aliyuncs.com/kst-hzz65f176a0ogplgqob3/alias/gw"
            ),
        "{e}"
    );
    assert_eq!(emu.stats().total_requests, 0);
}

#[test]
fn rsa_keys_refuse_other_hashes_before_signing() {
    alibabakms_emulator::prewarm_rsa_keys("RSA_2048", 1);
    let emu = emulator();
    let env = env_for(&emu);
    let key = format!("{}//alias/rsa", emu.endpoint());
    create_key(&env, &key, "RSA_2048").ok("createKey");
    let e = sign_digest(&env, &key, &sha2::Sha512::digest(b"m"), 7);
    assert!(e.err().contains("SHA-256"), "{}", e.err());
    assert_eq!(emu.stats().action("AsymmetricSign"), 0);
}

#[test]
fn the_newest_version_signs_whatever_order_kms_lists_them_in() {
    let emu = emulator();
    let env = env_for(&emu);
    let key = format!("{}//alias/rotated", emu.endpoint());
    create_key(&env, &key, "EC_P256").ok("createKey");
    let key_id = emu.alias_target("alias/rotated").unwrap();
    let first = emu.key_versions(&key_id).unwrap()[0].clone();
    let now = SystemTime::now();
    let newest = emu
        .add_key_version(&key_id, now + Duration::from_secs(3600))
        .unwrap();
    let _older = emu
        .add_key_version(&key_id, now - Duration::from_secs(86_400 * 30))
        .unwrap();
    let newest_pem = emu.public_key_pem(&key_id, &newest).unwrap();
    for order in [
        VersionOrder::OldestFirst,
        VersionOrder::NewestFirst,
        VersionOrder::Shuffled,
    ] {
        emu.set_version_order(order);
        emu.clear_requests();
        let sig = signature_of(&sign_message(&env, &key, b"rotated"));
        let sent = emu
            .requests()
            .into_iter()
            .find(|r| r.action == "AsymmetricSign")
            .unwrap();
        assert_eq!(sent.params["KeyVersionId"], newest, "{order:?}");
        assert!(openssl_verify(&newest_pem, b"rotated", &sig, "sha256"));
        assert_eq!(
            pem_of(public_key(&env, &key).ok("publicKey")).trim(),
            newest_pem.trim()
        );
    }
    // A key id without a version means the newest too.
    let by_id = format!("{}//{key_id}", emu.endpoint());
    assert_eq!(
        pem_of(public_key(&env, &by_id).ok("publicKey")).trim(),
        newest_pem.trim()
    );

    // rpcOptions.keyVersion selects an older version, for signing and verifying.
    let pinned = Opts {
        key_version: first.clone(),
        ..Opts::default()
    };
    let sig = signature_of(&sign_or_verify(
        &env,
        &key,
        Input::Message(b"old"),
        5,
        None,
        &pinned,
    ));
    let first_pem = emu.public_key_pem(&key_id, &first).unwrap();
    assert!(openssl_verify(&first_pem, b"old", &sig, "sha256"));
    sign_or_verify(&env, &key, Input::Message(b"old"), 5, Some(&sig), &pinned)
        .ok("verifySignature");
    let e = sign_or_verify(
        &env,
        &key,
        Input::Message(b"old"),
        5,
        Some(&sig),
        &Opts::default(),
    );
    assert!(
        e.err().contains("invalid signature"),
        "the newest version did not sign it"
    );

    // A version that does not exist is a clear error.
    let missing = Opts {
        key_version: "no-such-version".into(),
        ..Opts::default()
    };
    let e = sign_or_verify(&env, &key, Input::Message(b"x"), 5, None, &missing);
    assert!(e.err().contains("version"), "{}", e.err());
}

#[test]
fn keys_that_cannot_sign_are_named_before_signing() {
    let emu = emulator();
    let env = env_for(&emu);
    for spec in ["EC_P256K", "EC_SM2"] {
        let k = emu.create_key(spec).unwrap();
        let alias = format!("alias/{}", spec.to_lowercase().replace('_', "-"));
        emu.create_alias(&alias, &k.key_id).unwrap();
        let key = format!("{}//{alias}", emu.endpoint());
        let e = public_key(&env, &key);
        assert!(
            e.err().contains("not supported by cosign"),
            "{spec}: {}",
            e.err()
        );
        let e = sign_message(&env, &key, b"m");
        assert!(
            e.err().contains("not supported by cosign"),
            "{spec}: {}",
            e.err()
        );
    }
    assert_eq!(emu.stats().action("AsymmetricSign"), 0);

    let key = format!("{}//alias/stateful", emu.endpoint());
    create_key(&env, &key, "EC_P256").ok("createKey");
    let key_id = emu.alias_target("alias/stateful").unwrap();
    for (state, word) in [
        (KeyState::Disabled, "Disabled"),
        (KeyState::PendingDeletion, "PendingDeletion"),
    ] {
        emu.set_key_state(&key_id, state).unwrap();
        let e = sign_message(&env, &key, b"m");
        assert!(e.err().contains(word), "{}", e.err());
        let e = create_key(&env, &key, "EC_P256");
        assert!(e.err().contains(word), "{}", e.err());
    }
    assert_eq!(emu.stats().action("AsymmetricSign"), 0);

    // An alias that names a key of another spec is not silently reused.
    let key = format!("{}//alias/ec-only", emu.endpoint());
    create_key(&env, &key, "EC_P256").ok("createKey");
    let e = create_key(&env, &key, "RSA_2048");
    assert!(
        e.err().contains("EC_P256") && e.err().contains("RSA_2048"),
        "{}",
        e.err()
    );
    assert_eq!(emu.stats().action("CreateKey"), 2, "no RSA key was created");
}

/// Several `cosign generate-key-pair` runs on one new alias at once all get the same key, and
/// every key created by a process that lost the race is scheduled for deletion.
#[test]
fn concurrent_generate_key_pair_yields_one_key_and_no_orphans() {
    let emu = emulator();
    let env = env_for(&emu);
    let key = format!("{}//alias/contended", emu.endpoint());
    let runs: Vec<Run> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| s.spawn(|| create_key(&env, &key, "EC_P256")))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let pems: Vec<String> = runs.iter().map(|r| pem_of(r.ok("createKey"))).collect();
    assert!(
        pems.iter().all(|p| *p == pems[0]),
        "all processes return the same key"
    );
    let winner = emu.alias_target("alias/contended").unwrap();
    assert_eq!(
        pems[0].trim(),
        emu.public_key_pem(&winner, &emu.key_versions(&winner).unwrap()[0])
            .unwrap()
            .trim()
    );

    let ok = |action: &str| {
        emu.requests()
            .into_iter()
            .filter(|r| r.action == action && r.status == 200)
            .collect::<Vec<_>>()
    };
    let created = ok("CreateKey");
    let deleted = ok("ScheduleKeyDeletion");
    assert!(!created.is_empty());
    assert_eq!(
        deleted.len(),
        created.len() - 1,
        "every losing key is scheduled for deletion"
    );
    assert!(
        deleted.iter().all(|d| d.params["KeyId"] != winner),
        "the winner's key is kept"
    );
    assert!(deleted
        .iter()
        .all(|d| d.params["PendingWindowInDays"] == "7"));
    let reported = runs
        .iter()
        .filter(|r| r.stderr.contains("scheduled for deletion"))
        .count();
    assert_eq!(
        reported,
        deleted.len(),
        "each deletion is reported on stderr"
    );
}

/// When the new key cannot be given its alias (here: no permission to CreateAlias), createKey
/// fails saying why, and the key it created is scheduled for deletion, not left orphaned;
/// its public key, fetched in the same round trip, is not returned.
#[test]
fn a_key_that_cannot_be_named_is_scheduled_for_deletion() {
    use alibabakms_emulator::{ApiError, Fault};
    let emu = emulator();
    let env = env_for(&emu);
    let denied = "User not authorized to operate on the specified resource.";
    emu.inject(
        "CreateAlias",
        Fault::Error(ApiError::service(403, "Forbidden.NoPermission", denied)),
        1,
    );
    let run = create_key(
        &env,
        &format!("{}//alias/unnamed", emu.endpoint()),
        "EC_P256",
    );
    assert!(
        run.err().contains("Forbidden.NoPermission"),
        "{}",
        run.err()
    );
    assert!(
        run.stderr.contains("scheduled for deletion"),
        "{}",
        run.stderr
    );
    assert_eq!(emu.alias_target("alias/unnamed"), None);
    let sent = emu.requests();
    let named = sent.iter().find(|r| r.action == "CreateAlias").unwrap();
    let deleted = sent
        .iter()
        .find(|r| r.action == "ScheduleKeyDeletion")
        .expect("ScheduleKeyDeletion was sent");
    assert_eq!(deleted.status, 200);
    assert_eq!(deleted.params["KeyId"], named.params["KeyId"]);
}
