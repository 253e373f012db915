//! Keys in a KMS instance through its dedicated gateway, `kst-….cryptoservice.kms.aliyuncs.com`
//! (document 601559: cryptographic operations only, key management on the shared gateway).
//! The emulator answers under that name as the gateway does ([`alibabakms_emulator::gateway`]);
//! the plugin reaches it through an `/etc/hosts` of its own ([`with_hosts`]).

use crate::harness::*;
use alibabakms_emulator::DEFAULT_KMS_INSTANCE_ID as INSTANCE;
use serde_json::{json, Value};

/// The gateway's `host:port`, and the plugin program that resolves it to the emulator.
fn gateway_of(emu: &alibabakms_emulator::Emulator) -> (String, Vec<String>) {
    let gateway = emu.dedicated_gateway(INSTANCE);
    let name = gateway.rsplit_once(':').unwrap().0.to_string();
    let program = with_hosts(&[&name], &[BIN]);
    (gateway, program)
}

fn env_with(emu: &alibabakms_emulator::Emulator, gateway: &str) -> Vec<(String, String)> {
    let mut env = env_for(emu);
    for (k, v) in env.iter_mut() {
        if k == "SIGSTORE_ALIBABAKMS_ALLOWED_HOSTS" {
            *v = format!("{},{gateway}", emu.endpoint());
        }
    }
    env
}

/// A key made through the shared gateway in the instance, as `KEY_ID/versions/VERSION_ID`.
fn key_in_instance(
    emu: &alibabakms_emulator::Emulator,
    env: &[(String, String)],
    alias: &str,
    spec: &str,
) -> String {
    let shared = format!("{}/{INSTANCE}/alias/{alias}", emu.endpoint());
    create_key(env, &shared, spec).ok("createKey");
    let key = emu.alias_target(&format!("alias/{alias}")).unwrap();
    let version = emu.key_versions(&key).unwrap().pop().unwrap();
    format!("{key}/versions/{version}")
}

fn call(
    program: &[String],
    env: &[(String, String)],
    key: &str,
    method: &str,
    args: Value,
    stdin: &[u8],
) -> Run {
    let program: Vec<&str> = program.iter().map(String::as_str).collect();
    call_through(&program, env, key, method, args, stdin)
}

fn options(remote: bool) -> Value {
    json!({"rpcOptions": {"keyVersion": "", "remoteVerification": remote}, "messageOptions": {"digest": null}})
}

#[test]
fn keys_in_an_instance_sign_and_verify_through_its_dedicated_gateway() {
    alibabakms_emulator::prewarm_rsa_keys("RSA_2048", 1);
    let emu = emulator();
    let (gateway, program) = gateway_of(&emu);
    let env = env_with(&emu, &gateway);
    for (alias, spec, digest) in [
        ("gw-ec", "EC_P256", "sha256"),
        ("gw-rsa", "RSA_2048", "sha256"),
    ] {
        let shared = format!("{}/{INSTANCE}/alias/{alias}", emu.endpoint());
        let key = format!(
            "{gateway}/{INSTANCE}/{}",
            key_in_instance(&emu, &env, alias, spec)
        );
        let made = pem_of(public_key(&env, &shared).ok("publicKey"));
        emu.reset_stats();
        let message = format!("signed through the gateway with {spec}");
        let message = message.as_bytes();
        let pem = pem_of(
            call(
                &program,
                &env,
                &key,
                "publicKey",
                json!({"publicKeyOptions": {"rpcOptions": rpc()}}),
                b"",
            )
            .ok("publicKey"),
        );
        assert_eq!(pem, made, "{spec}");
        let signed = call(
            &program,
            &env,
            &key,
            "signMessage",
            json!({"signOptions": options(false)}),
            message,
        );
        let signature = unb64(signed.ok("signMessage")["signature"].as_str().unwrap());
        assert!(openssl_verify(&pem, message, &signature, digest), "{spec}");
        // A first signature there (no key kept): GetPublicKey, then AsymmetricSign.
        let stats = emu.stats();
        assert_eq!(
            (
                stats.action("GetPublicKey"),
                stats.action("AsymmetricSign"),
                stats.total_requests
            ),
            (2, 1, 3),
            "{spec}: publicKey, then signMessage"
        );
        for remote in [false, true] {
            let args = json!({"signature": b64(&signature), "verifyOptions": options(remote)});
            call(
                &program,
                &env,
                &key,
                "verifySignature",
                args.clone(),
                message,
            )
            .ok("verifySignature");
            let wrong = call(
                &program,
                &env,
                &key,
                "verifySignature",
                args,
                b"another message",
            );
            assert!(
                wrong.err().contains("invalid signature"),
                "{spec} remote={remote}: {}",
                wrong.err()
            );
        }
        // Nothing the gateway refuses was sent to it.
        let stats = emu.stats();
        for action in ["DescribeKey", "ListKeyVersions"] {
            assert_eq!(stats.action(action), 0, "{spec}: {action} sent");
        }
        assert_eq!(stats.rejected("InvalidApi.NotFound"), 0);
        assert!(
            stats.action("AsymmetricSign") == 1 && stats.action("AsymmetricVerify") == 2,
            "{spec}"
        );
    }
}

/// Without a version the newest one cannot be found there (ListKeyVersions is key
/// management): the error says what to write instead, before any request.
#[test]
fn a_reference_without_a_version_at_a_dedicated_gateway_names_what_to_write() {
    let emu = emulator();
    let (gateway, program) = gateway_of(&emu);
    let env = env_with(&emu, &gateway);
    let versioned = key_in_instance(&emu, &env, "gw", "EC_P256");
    let key_id = versioned.split('/').next().unwrap();
    emu.reset_stats();
    for (key, named) in [
        (format!("{gateway}/{INSTANCE}/alias/gw"), "alias/gw"),
        (format!("{gateway}//{key_id}"), key_id),
    ] {
        for (method, args) in [
            (
                "publicKey",
                json!({"publicKeyOptions": {"rpcOptions": rpc()}}),
            ),
            ("signMessage", json!({"signOptions": options(false)})),
        ] {
            let run = call(&program, &env, &key, method, args, b"m");
            let e = run.err();
            assert!(
                e.contains("dedicated gateway")
                    && e.contains(&format!(
                        "alibabakms://{gateway}/{INSTANCE}/KEY_ID/versions/VERSION_ID"
                    ))
                    && e.contains(&format!(
                        "alibabakms://kms.<region>.aliyuncs.com/{INSTANCE}/{named}"
                    )),
                "{method} {key}: {e}"
            );
        }
    }
    assert_eq!(emu.stats().total_requests, 0, "refused before any request");
    // An alias with the version given by the caller is usable there (KMS takes an alias as KeyId).
    let version = versioned.rsplit('/').next().unwrap();
    let alias = format!("{gateway}/{INSTANCE}/alias/gw");
    let args = json!({"signOptions": {"rpcOptions": {"keyVersion": version, "remoteVerification": false}, "messageOptions": {"digest": null}}});
    call(&program, &env, &alias, "signMessage", args, b"m").ok("signMessage");
    assert_eq!(
        emu.stats().action("ListKeyVersions") + emu.stats().action("DescribeKey"),
        0
    );
    // A reference naming another instance than the gateway's.
    let other = format!("{gateway}/kst-hzz00000000000000000/{versioned}");
    let e = call(
        &program,
        &env,
        &other,
        "publicKey",
        json!({"publicKeyOptions": {"rpcOptions": rpc()}}),
        b"",
    )
    .err()
    .to_string();
    assert!(
        e.contains("kst-hzz00000000000000000.cryptoservice.kms.aliyuncs.com"),
        "{e}"
    );
}

/// An instance image older than 3.0.0 takes only its own ClientKey protocol and asks a
/// RAM-signed request for `x-kms-acccesskeyid` (document 613363): the error says to upgrade.
#[test]
fn an_instance_image_before_3_0_is_told_apart() {
    let emu = emulator();
    let (gateway, program) = gateway_of(&emu);
    let env = env_with(&emu, &gateway);
    let key = format!(
        "{gateway}/{INSTANCE}/{}",
        key_in_instance(&emu, &env, "old", "EC_P256")
    );
    let refusal = alibabakms_emulator::error::ApiError::missing_parameter("x-kms-acccesskeyid");
    emu.inject(
        "GetPublicKey",
        alibabakms_emulator::Fault::Error(refusal),
        1,
    );
    let run = call(
        &program,
        &env,
        &key,
        "publicKey",
        json!({"publicKeyOptions": {"rpcOptions": rpc()}}),
        b"",
    );
    let e = run.err();
    assert!(
        e.contains("older than 3.0.0")
            && e.contains(&format!(
                "alibabakms://kms.<region>.aliyuncs.com/{INSTANCE}/"
            ))
            && e.contains("MissingParameter"),
        "{e}"
    );
}
