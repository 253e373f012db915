//! Key specs, versions and states over real TLS with hand-signed requests: RSA, secp256k1 and
//! SM2 keys whose signatures verify with independent crates against the PEM GetPublicKey
//! returns, CreateKeyVersion's rules, ListKeyVersions' orders, and what each key state refuses.

mod common;

use std::time::{Duration, SystemTime};

use alibabakms_emulator::{Emulator, EmulatorConfig, KeyState, VersionOrder};
use base64::Engine as _;
use common::{Client, Resp};
use p256::pkcs8::spki::{ObjectIdentifier, SubjectPublicKeyInfoRef};
use p256::pkcs8::DecodePublicKey;
use rsa::traits::PublicKeyParts;
use serde_json::Value;
use sha2::{Digest, Sha256};

const ID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const RSA_ENCRYPTION: &str = "1.2.840.113549.1.1.1";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn unb64(text: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}

fn start(cfg: EmulatorConfig) -> (Emulator, Client) {
    let emu = Emulator::start(cfg).unwrap();
    let client = Client::connect(&emu.endpoint(), emu.ca_pem()).unwrap();
    (emu, client)
}

fn ok(r: Resp) -> Value {
    assert_eq!(r.status, 200, "{}", r.json);
    r.json
}

fn create(c: &mut Client, spec: &str) -> (String, String) {
    let v = ok(c.call(
        "CreateKey",
        &[("KeySpec", spec), ("KeyUsage", "SIGN/VERIFY")],
    ));
    let m = &v["KeyMetadata"];
    assert_eq!(m["KeySpec"], spec);
    assert_eq!(m["KeyState"], "Enabled");
    (
        m["KeyId"].as_str().unwrap().to_string(),
        m["PrimaryKeyVersion"].as_str().unwrap().to_string(),
    )
}

fn public_key_pem(c: &mut Client, key: &str, version: &str) -> String {
    let v = ok(c.call("GetPublicKey", &[("KeyId", key), ("KeyVersionId", version)]));
    v["PublicKey"].as_str().unwrap().to_string()
}

fn sign(c: &mut Client, key: &str, version: &str, algorithm: &str, digest: &[u8]) -> Resp {
    c.call(
        "AsymmetricSign",
        &[
            ("Algorithm", algorithm),
            ("Digest", &b64(digest)),
            ("KeyId", key),
            ("KeyVersionId", version),
        ],
    )
}

fn verify(
    c: &mut Client,
    key: &str,
    version: &str,
    algorithm: &str,
    digest: &[u8],
    sig: &[u8],
) -> Resp {
    c.call(
        "AsymmetricVerify",
        &[
            ("Algorithm", algorithm),
            ("Digest", &b64(digest)),
            ("KeyId", key),
            ("KeyVersionId", version),
            ("Value", &b64(sig)),
        ],
    )
}

/// Signs over the wire, checks AsymmetricVerify says true for it and false for it with one
/// byte flipped, and returns it.
fn sign_and_check_remote_verify(
    c: &mut Client,
    key: &str,
    version: &str,
    algorithm: &str,
    digest: &[u8],
) -> Vec<u8> {
    let r = sign(c, key, version, algorithm, digest);
    let v = ok(r);
    assert_eq!(v["KeyId"], key);
    assert_eq!(v["KeyVersionId"], version);
    let sig = unb64(v["Value"].as_str().unwrap());
    let said = ok(verify(c, key, version, algorithm, digest, &sig));
    assert_eq!(said["Value"], true, "{algorithm}");
    let mut flipped = sig.clone();
    flipped[sig.len() / 2] ^= 0x01;
    let said = ok(verify(c, key, version, algorithm, digest, &flipped));
    assert_eq!(said["Value"], false, "{algorithm}");
    sig
}

/// (algorithm OID, curve OID or None) of a PEM SubjectPublicKeyInfo.
fn spki_oids(pem: &str) -> (ObjectIdentifier, Option<ObjectIdentifier>) {
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"), "{pem}");
    assert!(pem.ends_with("-----END PUBLIC KEY-----\n"), "{pem}");
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = unb64(&body);
    let spki = SubjectPublicKeyInfoRef::try_from(der.as_slice()).unwrap();
    (spki.algorithm.oid, spki.algorithm.parameters_oid().ok())
}

fn code(r: &Resp) -> (u16, &str) {
    (r.status, r.code())
}

#[test]
fn rsa_keys_sign_pkcs1_and_pss_that_verify_with_the_rsa_crate() {
    alibabakms_emulator::prewarm_rsa_keys("RSA_3072", 1);
    let (_emu, mut c) = start(EmulatorConfig::default());
    let digest: [u8; 32] = Sha256::digest(b"hello rsa").into();

    let mut moduli = Vec::new();
    for (spec, bits) in [("RSA_2048", 2048), ("RSA_3072", 3072), ("RSA_2048", 2048)] {
        let started = std::time::Instant::now();
        let (key, version) = create(&mut c, spec);
        eprintln!("CreateKey {spec}: {:?}", started.elapsed());
        let pem = public_key_pem(&mut c, &key, &version);
        assert_eq!(spki_oids(&pem), (RSA_ENCRYPTION.parse().unwrap(), None));
        let public = rsa::RsaPublicKey::from_public_key_pem(&pem).unwrap();
        assert_eq!(public.n().bits(), bits, "{spec}");
        moduli.push(public.n().clone());

        let sig =
            sign_and_check_remote_verify(&mut c, &key, &version, "RSA_PKCS1_SHA_256", &digest);
        assert_eq!(sig.len(), bits / 8);
        public
            .verify(rsa::Pkcs1v15Sign::new::<Sha256>(), &digest, &sig)
            .expect("PKCS#1 v1.5 over the SHA-256 digest");
        // Deterministic: the same digest gives the same signature.
        let again = ok(sign(&mut c, &key, &version, "RSA_PKCS1_SHA_256", &digest));
        assert_eq!(unb64(again["Value"].as_str().unwrap()), sig);

        let sig = sign_and_check_remote_verify(&mut c, &key, &version, "RSA_PSS_SHA_256", &digest);
        assert_eq!(sig.len(), bits / 8);
        public
            .verify(rsa::Pss::new_with_salt::<Sha256>(32), &digest, &sig)
            .expect("PSS, MGF1-SHA-256, 32-byte salt");
        assert!(public
            .verify(rsa::Pkcs1v15Sign::new::<Sha256>(), &digest, &sig)
            .is_err());

        // Wrong algorithm for the spec, wrong digest sizes.
        for (alg, len) in [
            ("ECDSA_SHA_256", 32),
            ("SM2DSA", 32),
            ("RSA_PSS_SHA_384", 32),
            ("RSA_PSS_SHA_256", 20),
            ("RSA_PKCS1_SHA_256", 33),
        ] {
            let r = sign(&mut c, &key, &version, alg, &vec![1u8; len]);
            assert_eq!(code(&r), (400, "InvalidParameter"), "{alg} {len}");
            let r = verify(&mut c, &key, &version, alg, &vec![1u8; len], &[0u8; 256]);
            assert_eq!(code(&r), (400, "InvalidParameter"), "{alg} {len}");
        }
    }
    assert_ne!(moduli[0], moduli[2], "every key is its own");

    // RSA algorithms do not fit EC keys either.
    let (key, version) = create(&mut c, "EC_P256");
    let r = sign(&mut c, &key, &version, "RSA_PKCS1_SHA_256", &digest);
    assert_eq!(code(&r), (400, "InvalidParameter"));
    assert!(r.json["Message"]
        .as_str()
        .unwrap()
        .contains("ECDSA_SHA_256"));
    let r = sign(&mut c, &key, &version, "ECDSA_SHA_256", &digest[..31]);
    assert_eq!(code(&r), (400, "InvalidParameter"));

    // A spec the emulator does not implement, one KMS keeps for KMS instances (no
    // DKMSInstanceId here), and usages it lacks.
    for spec in ["RSA_4096", "Aliyun_AES_256"] {
        let r = c.call("CreateKey", &[("KeySpec", spec)]);
        assert_eq!(code(&r), (400, "InvalidParameter"), "{spec}");
    }
    let r = c.call(
        "CreateKey",
        &[("KeySpec", "RSA_2048"), ("KeyUsage", "ENCRYPT/DECRYPT")],
    );
    assert_eq!(code(&r), (400, "InvalidParameter"));
}

#[test]
fn secp256k1_and_sm2_keys_have_their_curves_public_keys() {
    let (_emu, mut c) = start(EmulatorConfig::default());
    let digest: [u8; 32] = Sha256::digest(b"hello curves").into();

    let (key, version) = create(&mut c, "EC_P256K");
    let pem = public_key_pem(&mut c, &key, &version);
    assert_eq!(
        spki_oids(&pem),
        (
            ID_EC_PUBLIC_KEY.parse().unwrap(),
            Some("1.3.132.0.10".parse().unwrap())
        ),
        "secp256k1"
    );
    let vk = k256::ecdsa::VerifyingKey::from_public_key_pem(&pem).unwrap();
    let sig = sign_and_check_remote_verify(&mut c, &key, &version, "ECDSA_SHA_256", &digest);
    let sig = k256::ecdsa::Signature::from_der(&sig).expect("DER ECDSA");
    use k256::ecdsa::signature::hazmat::PrehashVerifier;
    vk.verify_prehash(&digest, &sig).unwrap();
    let r = sign(&mut c, &key, &version, "SM2DSA", &digest);
    assert_eq!(code(&r), (400, "InvalidParameter"));

    let (key, version) = create(&mut c, "EC_SM2");
    let pem = public_key_pem(&mut c, &key, &version);
    assert_eq!(
        spki_oids(&pem),
        (
            ID_EC_PUBLIC_KEY.parse().unwrap(),
            Some("1.2.156.10197.1.301".parse().unwrap())
        ),
        "sm2p256v1"
    );
    let public = sm2::PublicKey::from_public_key_pem(&pem).unwrap();
    let (other_key, other_version) = create(&mut c, "EC_SM2");
    assert_ne!(public_key_pem(&mut c, &other_key, &other_version), pem);
    // SM2DSA signs the given e = SM3(Z(A) || M); the distinguishing id only shapes Z(A).
    let vk = sm2::dsa::VerifyingKey::new("1234567812345678", public).unwrap();
    let sig = sign_and_check_remote_verify(&mut c, &key, &version, "SM2DSA", &digest);
    let rs = p256::ecdsa::Signature::from_der(&sig).expect("DER SEQUENCE{r, s}");
    let sig = sm2::dsa::Signature::from_slice(&rs.to_bytes()).unwrap();
    vk.verify_prehash(&digest, &sig).unwrap();
    let r = sign(&mut c, &key, &version, "ECDSA_SHA_256", &digest);
    assert_eq!(code(&r), (400, "InvalidParameter"));
}

#[test]
fn disabled_and_pending_deletion_keys_refuse_key_use_but_describe() {
    let (emu, mut c) = start(EmulatorConfig::default());
    let (key, version) = create(&mut c, "EC_P256");
    let digest = [3u8; 32];
    let sig = unb64(
        ok(sign(&mut c, &key, &version, "ECDSA_SHA_256", &digest))["Value"]
            .as_str()
            .unwrap(),
    );
    emu.create_alias("alias/states", &key).unwrap();

    for (action, state, code_409) in [
        ("DisableKey", "Disabled", "Rejected.Disabled"),
        (
            "ScheduleKeyDeletion",
            "PendingDeletion",
            "Rejected.PendingDeletion",
        ),
    ] {
        let params: &[(&str, &str)] = if action == "DisableKey" {
            &[("KeyId", &key)]
        } else {
            &[("KeyId", &key), ("PendingWindowInDays", "7")]
        };
        ok(c.call(action, params));
        let d = ok(c.call("DescribeKey", &[("KeyId", "alias/states")]));
        assert_eq!(d["KeyMetadata"]["KeyState"], state);

        let r = c.call(
            "GetPublicKey",
            &[("KeyId", &key), ("KeyVersionId", &version)],
        );
        assert_eq!(code(&r), (409, code_409), "GetPublicKey when {state}");
        assert_eq!(r.json["HttpStatus"], 409);
        let r = sign(&mut c, "alias/states", &version, "ECDSA_SHA_256", &digest);
        assert_eq!(code(&r), (409, code_409), "AsymmetricSign when {state}");
        let r = verify(&mut c, &key, &version, "ECDSA_SHA_256", &digest, &sig);
        assert_eq!(code(&r), (409, code_409), "AsymmetricVerify when {state}");
        let r = c.call("CreateKeyVersion", &[("KeyId", &key)]);
        assert_eq!(code(&r), (409, code_409), "CreateKeyVersion when {state}");

        // Metadata stays readable.
        ok(c.call("ListKeyVersions", &[("KeyId", &key)]));
        ok(c.call(
            "DescribeKeyVersion",
            &[("KeyId", &key), ("KeyVersionId", &version)],
        ));

        emu.set_key_state(&key, KeyState::Enabled).unwrap();
        public_key_pem(&mut c, &key, &version);
        let said = ok(verify(
            &mut c,
            &key,
            &version,
            "ECDSA_SHA_256",
            &digest,
            &sig,
        ));
        assert_eq!(said["Value"], true);
    }
}

#[test]
fn create_key_version_over_the_wire_keeps_its_interval() {
    let (emu, mut c) = start(EmulatorConfig::default());
    let (key, first) = create(&mut c, "EC_P256K");
    emu.create_alias("alias/rotating", &key).unwrap();

    let r = c.call("CreateKeyVersion", &[("KeyId", "alias/rotating")]);
    assert_eq!(code(&r), (400, "Rejected.UnsupportedOperation"));
    let shape: std::collections::BTreeSet<&str> = r
        .json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        shape,
        ["Code", "HttpStatus", "Message", "RequestId"]
            .into_iter()
            .collect()
    );
    let r = c.call("CreateKeyVersion", &[("KeyId", "alias/nope")]);
    assert_eq!(code(&r), (404, "Forbidden.AliasNotFound"));

    // Eight days on (the server's clock and the client's signing date alike).
    let later = SystemTime::now() + Duration::from_secs(8 * 86400);
    emu.set_clock_offset_secs(8 * 86400);
    let call_later = |c: &mut Client, action: &str, params: &[(&str, &str)]| {
        c.call_as(
            alibabakms_emulator::DEFAULT_ACCESS_KEY_ID,
            alibabakms_emulator::DEFAULT_ACCESS_KEY_SECRET,
            None,
            later,
            action,
            params,
        )
    };
    let v = ok(call_later(
        &mut c,
        "CreateKeyVersion",
        &[("KeyId", "alias/rotating")],
    ));
    let new = v["KeyVersion"]["KeyVersionId"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(v["KeyVersion"]["KeyId"], key.as_str());
    assert!(new.starts_with(&format!("{key}-")), "{new}");
    let r = call_later(&mut c, "CreateKeyVersion", &[("KeyId", &key)]);
    assert_eq!(code(&r), (400, "Rejected.UnsupportedOperation"));

    let d = ok(call_later(
        &mut c,
        "DescribeKeyVersion",
        &[("KeyId", "alias/rotating"), ("KeyVersionId", &new)],
    ));
    assert_eq!(d["KeyVersion"], v["KeyVersion"]);
    let pem_new = {
        let v = ok(call_later(
            &mut c,
            "GetPublicKey",
            &[("KeyId", &key), ("KeyVersionId", &new)],
        ));
        v["PublicKey"].as_str().unwrap().to_string()
    };
    let pem_first = {
        let v = ok(call_later(
            &mut c,
            "GetPublicKey",
            &[("KeyId", &key), ("KeyVersionId", &first)],
        ));
        v["PublicKey"].as_str().unwrap().to_string()
    };
    assert_ne!(pem_new, pem_first, "a new version is a new key pair");
    assert_eq!(emu.key_versions(&key).unwrap(), [first, new]);
}

#[test]
fn list_key_versions_order_is_configurable() {
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000);
    let list = |c: &mut Client, key: &str| -> Vec<String> {
        let v = ok(c.call("ListKeyVersions", &[("KeyId", key), ("PageSize", "100")]));
        v["KeyVersions"]["KeyVersion"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["KeyVersionId"].as_str().unwrap().to_string())
            .collect()
    };

    let (emu, mut c) = start(EmulatorConfig::default().version_order(VersionOrder::NewestFirst));
    let key = emu.create_key("EC_P256").unwrap();
    // Seeded out of date order: the helper ignores the 7-day rule.
    for days in [30u64, 10, 20] {
        emu.add_key_version(&key.key_id, t0 + Duration::from_secs(days * 86400))
            .unwrap();
    }
    let oldest_first = emu.key_versions(&key.key_id).unwrap();
    assert_eq!(oldest_first.len(), 4);
    assert_eq!(
        oldest_first[3], key.version_id,
        "CreateKey's version is newest"
    );
    let newest_first: Vec<String> = oldest_first.iter().rev().cloned().collect();
    assert_eq!(list(&mut c, &key.key_id), newest_first);

    emu.set_version_order(VersionOrder::OldestFirst);
    assert_eq!(list(&mut c, &key.key_id), oldest_first);

    // Shuffled: a fixed order per emulator; over a few keys it is neither sorted order.
    emu.set_version_order(VersionOrder::Shuffled);
    let mut unsorted = 0;
    for _ in 0..8 {
        let k = emu.create_key("EC_P256").unwrap();
        for days in 1..6u64 {
            emu.add_key_version(&k.key_id, t0 + Duration::from_secs(days * 86400))
                .unwrap();
        }
        let listed = list(&mut c, &k.key_id);
        assert_eq!(list(&mut c, &k.key_id), listed);
        let oldest = emu.key_versions(&k.key_id).unwrap();
        let mut a = listed.clone();
        a.sort();
        let mut b = oldest.clone();
        b.sort();
        assert_eq!(a, b, "the same versions");
        let newest: Vec<String> = oldest.iter().rev().cloned().collect();
        if listed != oldest && listed != newest {
            unsorted += 1;
        }
    }
    assert!(unsorted >= 4, "{unsorted} of 8 shuffled");
}

/// Reached under `<instance>.cryptoservice.kms.aliyuncs.com` (document 601559), the emulator
/// is that instance's dedicated gateway: its certificate covers the name, and it signs,
/// verifies and hands out public keys of the instance's own keys, and nothing else.
#[test]
fn the_dedicated_gateway_serves_cryptographic_operations_on_its_instance_keys_only() {
    let instance = alibabakms_emulator::DEFAULT_KMS_INSTANCE_ID;
    let (emu, mut shared) = start(EmulatorConfig::default());
    let v = ok(shared.call(
        "CreateKey",
        &[("KeySpec", "EC_P256"), ("DKMSInstanceId", instance)],
    ));
    let key = v["KeyMetadata"]["KeyId"].as_str().unwrap().to_string();
    let version = v["KeyMetadata"]["PrimaryKeyVersion"]
        .as_str()
        .unwrap()
        .to_string();
    ok(shared.call("CreateAlias", &[("AliasName", "alias/gw"), ("KeyId", &key)]));
    let (outside, outside_version) = create(&mut shared, "EC_P256");

    let gateway = emu.dedicated_gateway(instance);
    let mut gw = Client::connect_named(&emu.endpoint(), &gateway, emu.ca_pem()).unwrap();
    let digest = b64(&Sha256::digest(b"through the gateway"));
    for key_ref in [key.as_str(), "alias/gw"] {
        let sig = ok(gw.call(
            "AsymmetricSign",
            &[
                ("KeyId", key_ref),
                ("KeyVersionId", &version),
                ("Algorithm", "ECDSA_SHA_256"),
                ("Digest", &digest),
            ],
        ));
        let verified = ok(gw.call(
            "AsymmetricVerify",
            &[
                ("KeyId", key_ref),
                ("KeyVersionId", &version),
                ("Algorithm", "ECDSA_SHA_256"),
                ("Digest", &digest),
                ("Value", sig["Value"].as_str().unwrap()),
            ],
        ));
        assert_eq!(verified["Value"], true);
    }
    assert_eq!(
        public_key_pem(&mut gw, &key, &version),
        public_key_pem(&mut shared, &key, &version)
    );

    // Key management goes through the shared gateway only.
    for (action, params) in [
        ("DescribeKey", vec![("KeyId", key.as_str())]),
        ("ListKeyVersions", vec![("KeyId", key.as_str())]),
        (
            "CreateKey",
            vec![("KeySpec", "EC_P256"), ("DKMSInstanceId", instance)],
        ),
        (
            "CreateAlias",
            vec![("AliasName", "alias/gw2"), ("KeyId", key.as_str())],
        ),
    ] {
        let r = gw.call(action, &params);
        assert_eq!(
            (r.status, r.code()),
            (404, "InvalidApi.NotFound"),
            "{action}: {}",
            r.json
        );
    }
    assert_eq!(
        emu.alias_target("alias/gw2"),
        None,
        "the refused CreateAlias did nothing"
    );
    // A key outside the instance is not the gateway's to use.
    let r = gw.call(
        "GetPublicKey",
        &[("KeyId", &outside), ("KeyVersionId", &outside_version)],
    );
    assert_eq!(
        (r.status, r.code()),
        (404, "Forbidden.KeyNotFound"),
        "{}",
        r.json
    );
    // A gateway name of no instance of the account.
    let other = emu.dedicated_gateway("kst-hzz00000000000000000");
    let mut nowhere = Client::connect_named(&emu.endpoint(), &other, emu.ca_pem()).unwrap();
    let r = nowhere.call(
        "GetPublicKey",
        &[("KeyId", &key), ("KeyVersionId", &version)],
    );
    assert_eq!(
        (r.status, r.code()),
        (403, "Forbidden.DKMSInstanceNotFound"),
        "{}",
        r.json
    );
}
