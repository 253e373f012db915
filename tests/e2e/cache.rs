//! Key metadata kept between runs (the component's `cache` import, a per-user directory on
//! the host): what whole cosign commands cost in KMS requests, replayed from the calls the real
//! cosign 3.1.1 makes, and every way an entry must not be trusted or shared.

use crate::harness::*;
use alibabakms_emulator::{Emulator, EmulatorConfig};
use base64::Engine;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

fn emulator_two_accounts() -> Emulator {
    Emulator::start(
        EmulatorConfig::default()
            .no_credentials()
            .access_key(AK_ID, AK_SECRET)
            .access_key(CLI_ID, CLI_SECRET),
    )
    .unwrap()
}

/// The environment of a user whose cache lives in `dir`.
fn cached_env(emu: &Emulator, dir: &Path) -> Vec<(String, String)> {
    let mut env = env_for(emu);
    env.retain(|(k, _)| k != "SIGSTORE_ALIBABAKMS_CACHE_TTL");
    env.push(("XDG_CACHE_HOME".into(), dir.display().to_string()));
    env
}

fn entries(dir: &Path) -> Vec<PathBuf> {
    match std::fs::read_dir(dir.join("sigstore-kms-alibabakms")) {
        Ok(d) => d.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    }
}

/// Replays the plugin calls cosign 3.1.1 made for `command`, pointed at `key`; returns the
/// signature of its signMessage, if it has one. Every call must succeed.
fn cosign3(
    env: &[(String, String)],
    emu: &Emulator,
    command: &str,
    key: &str,
    signature: Option<&[u8]>,
) -> Option<Vec<u8>> {
    let mut signed = None;
    for line in alibabakms_fixtures::lines(alibabakms_fixtures::COSIGN_CLI_CALLS) {
        let call: Value = serde_json::from_str(line).unwrap();
        if call["cosign"] != "3.1.1" || call["command"] != command {
            continue;
        }
        let argv = replayed_argv(&call, emu);
        let mut request: Value = serde_json::from_str(&argv[1]).unwrap();
        request["initOptions"]["keyResourceID"] = key.into();
        let method = call["method"].as_str().unwrap();
        if let (Some(sig), "verifySignature") = (signature, method) {
            request["verifySignature"]["signature"] = b64(sig).into();
        }
        let stdin = unb64(call["stdin_base64"].as_str().unwrap());
        let run = run_raw(env, &["v1", &request.to_string()], &stdin);
        let answer = run.ok(method);
        if method == "signMessage" {
            signed = Some(unb64(answer["signature"].as_str().unwrap()));
        }
    }
    signed
}

#[test]
fn a_cosign_3_sign_asks_kms_three_times_cold_and_once_warm_and_verify_not_at_all() {
    let emu = emulator();
    let dir = temp_dir();
    let env = cached_env(&emu, &dir);
    let key = format!("{}//alias/cached", emu.endpoint());
    let pem = pem_of(create_key(&env_for(&emu), &key, "EC_P256").ok("createKey"));
    let payload = |sig: &[u8]| {
        // The image payload of the capture, signed as cosign sent it (digest and stdin).
        let call = alibabakms_fixtures::lines(alibabakms_fixtures::COSIGN_CLI_CALLS)
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .find(|c| {
                c["cosign"] == "3.1.1"
                    && c["method"] == "signMessage"
                    && c["command"] == "cosign sign --key KEY IMAGE"
            })
            .unwrap();
        let stdin = unb64(call["stdin_base64"].as_str().unwrap());
        assert!(openssl_verify(&pem, &stdin, sig, "sha256"));
    };

    // Cold: 5 publicKey and a signMessage, as cosign 3.1 runs them for `cosign sign`.
    emu.reset_stats();
    let sig = cosign3(&env, &emu, "cosign sign --key KEY IMAGE", &key, None).unwrap();
    payload(&sig);
    let s = emu.stats();
    assert_eq!(s.total_requests, 3, "{:?}", s.requests_per_action);
    assert_eq!(
        (
            s.action("ListKeyVersions"),
            s.action("GetPublicKey"),
            s.action("AsymmetricSign")
        ),
        (1, 1, 1)
    );
    assert_eq!(entries(&dir).len(), 1);

    // Without the cache: 2 requests per publicKey, 4 for the signMessage.
    emu.reset_stats();
    cosign3(
        &env_for(&emu),
        &emu,
        "cosign sign --key KEY IMAGE",
        &key,
        None,
    );
    assert_eq!(emu.stats().total_requests, 14);

    // Warm: the AsymmetricSign alone, its signature checked against the kept key.
    emu.reset_stats();
    let sig = cosign3(&env, &emu, "cosign sign --key KEY IMAGE", &key, None).unwrap();
    payload(&sig);
    assert_eq!(
        emu.stats().total_requests,
        1,
        "{:?}",
        emu.stats().requests_per_action
    );

    // `cosign verify` (cosign 3.1 runs publicKey, then verifySignature per signature):
    // nothing asked of KMS.
    emu.reset_stats();
    cosign3(
        &env,
        &emu,
        "cosign verify --key KEY IMAGE",
        &key,
        Some(&sig),
    );
    assert_eq!(emu.stats().total_requests, 0);
    // Without the cache, the same command asks KMS for each run.
    emu.reset_stats();
    cosign3(
        &env_for(&emu),
        &emu,
        "cosign verify --key KEY IMAGE",
        &key,
        Some(&sig),
    );
    assert_eq!(emu.stats().total_requests, 4);
}

#[test]
fn two_accounts_and_two_instances_never_share_an_entry() {
    let emu = emulator_two_accounts();
    let dir = temp_dir();
    let key = format!("{}//alias/shared", emu.endpoint());
    create_key(&env_for(&emu), &key, "EC_P256").ok("createKey");
    let account_a = cached_env(&emu, &dir);
    let mut account_b = cached_env(&emu, &dir);
    for (k, v) in account_b.iter_mut() {
        match k.as_str() {
            "ALIBABA_CLOUD_ACCESS_KEY_ID" => *v = CLI_ID.into(),
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET" => *v = CLI_SECRET.into(),
            _ => {}
        }
    }
    let requests = |env: &[(String, String)], key: &str| {
        emu.reset_stats();
        public_key(env, key).ok("publicKey");
        emu.stats().total_requests
    };
    assert_eq!(requests(&account_a, &key), 2, "cold");
    assert_eq!(requests(&account_a, &key), 0, "kept");
    assert_eq!(requests(&account_b, &key), 2, "another AccessKey");
    let in_instance = format!(
        "{}/{}/alias/shared",
        emu.endpoint(),
        alibabakms_emulator::DEFAULT_KMS_INSTANCE_ID
    );
    assert_eq!(requests(&account_a, &in_instance), 2, "another instance");
    assert_eq!(entries(&dir).len(), 3);
}

#[test]
fn an_entry_open_to_others_owned_by_someone_else_or_wrong_is_not_trusted() {
    let emu = emulator();
    let dir = temp_dir();
    let env = cached_env(&emu, &dir);
    let key = format!("{}//alias/guarded", emu.endpoint());
    let pem = pem_of(create_key(&env_for(&emu), &key, "EC_P256").ok("createKey"));
    public_key(&env, &key).ok("publicKey");
    let entry = entries(&dir).pop().expect("one entry");
    let requests = |f: &dyn Fn()| {
        emu.reset_stats();
        f();
        emu.stats().total_requests
    };

    // Writable by others: ignored, and replaced by a private one.
    std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(0o666)).unwrap();
    assert_eq!(
        requests(&|| assert_eq!(pem_of(public_key(&env, &key).ok("publicKey")), pem)),
        2
    );
    let mode = std::fs::metadata(&entry).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    // Someone else's file (only root can make one).
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        std::os::unix::fs::chown(&entry, Some(65534), Some(65534)).unwrap();
        assert_eq!(
            requests(&|| {
                public_key(&env, &key).ok("publicKey");
            }),
            2
        );
    } else {
        eprintln!("not root: the someone-else's-entry case is covered by host/src/cache.rs only");
    }

    // A kept public key that is not the key's (the entry rewritten by hand): a signature KMS
    // made does not verify against it, so the entry is dropped and KMS asked again.
    let mut text: Value = serde_json::from_slice(&std::fs::read(&entry).unwrap()).unwrap();
    let other = {
        let other_key = format!("{}//alias/other", emu.endpoint());
        pem_of(create_key(&env_for(&emu), &other_key, "EC_P256").ok("createKey"))
    };
    text["public_key_pem"] = other.into();
    std::fs::write(&entry, text.to_string()).unwrap();
    std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(0o600)).unwrap();
    let sig = signature_of(&sign_message(&env, &key, b"payload"));
    assert!(openssl_verify(&pem, b"payload", &sig, "sha256"));
    let kept: Value = serde_json::from_slice(&std::fs::read(&entry).unwrap()).unwrap();
    assert_eq!(
        kept["public_key_pem"],
        pem.as_str(),
        "the entry was written anew"
    );
}

/// `cosign generate-key-pair --kms` keeps what it learnt: the publicKey cosign asks for right
/// after it (and again in the next command) needs no request, for a new alias and for one
/// that already existed.
#[test]
fn a_created_key_is_kept_for_the_commands_after_it() {
    let emu = emulator();
    let dir = temp_dir();
    let env = cached_env(&emu, &dir);
    let key = format!("{}//alias/kept-on-create", emu.endpoint());
    let pem = pem_of(create_key(&env, &key, "EC_P256").ok("createKey"));
    assert_eq!(entries(&dir).len(), 1);
    emu.reset_stats();
    assert_eq!(pem_of(public_key(&env, &key).ok("publicKey")), pem);
    assert_eq!(emu.stats().total_requests, 0, "publicKey after createKey");
    std::fs::remove_dir_all(dir.join("sigstore-kms-alibabakms")).unwrap();
    assert_eq!(
        pem_of(create_key(&env, &key, "EC_P256").ok("createKey")),
        pem
    );
    emu.reset_stats();
    assert_eq!(pem_of(public_key(&env, &key).ok("publicKey")), pem);
    assert_eq!(
        emu.stats().total_requests,
        0,
        "publicKey after an existing alias"
    );
}

#[test]
fn a_ttl_of_zero_writes_nothing() {
    let emu = emulator();
    let dir = temp_dir();
    let mut env = cached_env(&emu, &dir);
    env.push(("SIGSTORE_ALIBABAKMS_CACHE_TTL".into(), "0".into()));
    let key = format!("{}//alias/uncached", emu.endpoint());
    create_key(&env_for(&emu), &key, "EC_P256").ok("createKey");
    emu.reset_stats();
    for _ in 0..2 {
        public_key(&env, &key).ok("publicKey");
    }
    assert_eq!(emu.stats().total_requests, 4);
    assert!(!dir.join("sigstore-kms-alibabakms").exists());
    let mut bad = cached_env(&emu, &dir);
    bad.push(("SIGSTORE_ALIBABAKMS_CACHE_TTL".into(), "soon".into()));
    let e = public_key(&bad, &key).err().to_string();
    assert!(e.contains("SIGSTORE_ALIBABAKMS_CACHE_TTL=\"soon\""), "{e}");
    // --print-sandbox says where entries live, or why none are kept.
    let sandbox = |env: &[(String, String)]| print_sandbox(env);
    assert!(sandbox(&env).contains("cache: off (SIGSTORE_ALIBABAKMS_CACHE_TTL=0)"));
    let on = sandbox(&cached_env(&emu, &dir));
    let expected = format!("cache: key metadata (key id, version, public key; never a secret) in {}/sigstore-kms-alibabakms/, owner-only, each entry used for 300 s", dir.display());
    assert!(on.contains(&expected), "{on}");
}

#[test]
fn a_rotated_key_is_picked_up_after_a_failed_verification() {
    let emu = emulator();
    let dir = temp_dir();
    let env = cached_env(&emu, &dir);
    let key = format!("{}//alias/rotating", emu.endpoint());
    let created = create_key(&env_for(&emu), &key, "EC_P256");
    let old = pem_of(created.ok("createKey"));
    public_key(&env, &key).ok("publicKey");
    // KMS rotates the key; something signs with the new version.
    let key_id = emu.alias_target("alias/rotating").unwrap();
    let v2 = emu
        .add_key_version(&key_id, SystemTime::now() + Duration::from_secs(1))
        .unwrap();
    let digest = Sha256::digest(b"after rotation");
    let signed = emu
        .call(
            "AsymmetricSign",
            &[
                ("KeyId", &key_id),
                ("KeyVersionId", &v2),
                ("Algorithm", "ECDSA_SHA_256"),
                (
                    "Digest",
                    &base64::engine::general_purpose::STANDARD.encode(digest),
                ),
            ],
        )
        .unwrap();
    let sig = unb64(signed["Value"].as_str().unwrap());
    // The kept (old) key refuses it; the plugin asks KMS once more and finds the new one.
    emu.reset_stats();
    verify_signature(&env, &key, b"after rotation", &sig).ok("verifySignature");
    assert_eq!(emu.stats().total_requests, 2);
    let new = pem_of(public_key(&env, &key).ok("publicKey"));
    assert_ne!(new, old);
    assert_eq!(new, emu.public_key_pem(&key_id, &v2).unwrap());
    // A signature that verifies against nothing is refused after that one refresh.
    emu.reset_stats();
    let e = verify_signature(&env, &key, b"something else", &sig)
        .err()
        .to_string();
    assert!(e.contains("invalid signature"), "{e}");
    assert_eq!(emu.stats().total_requests, 2, "one refresh, no loop");
}

fn temp_dir() -> PathBuf {
    let dir = tempdir();
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
