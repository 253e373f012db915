//! The binary built for a second CPU: aarch64 Linux (`tests/tools/cross.sh`, which
//! `./test.sh` runs), under qemu-user, as a complete plugin against the emulator. Its
//! signature is checked by OpenSSL and by this machine's native binary.
//!
//! Every test here has `aarch64` in its name: `ALIBABAKMS_SKIP_CROSS=1 ./test.sh` skips them
//! (and says so) for everyday work; CI never does.

use crate::harness::*;
use serde_json::json;
use std::path::{Path, PathBuf};

/// The aarch64 binary and the qemu wrapper, where `tests/tools/cross.sh` leaves them.
pub fn aarch64_plugin() -> [PathBuf; 2] {
    let target_dir = Path::new(BIN)
        .parent()
        .and_then(Path::parent)
        .expect("the binary lies in the target directory");
    let binary = target_dir.join("aarch64-unknown-linux-gnu/release/sigstore-kms-alibabakms");
    let qemu = alibabakms_testtools::tools_bin(Path::new(BIN)).join("run-aarch64");
    for path in [&binary, &qemu] {
        assert!(
            path.is_file(),
            "{} is missing: run tests/tools/cross.sh (./test.sh does), or leave the aarch64 \
             tests out with ALIBABAKMS_SKIP_CROSS=1 ./test.sh",
            path.display()
        );
    }
    [qemu, binary]
}

fn aarch64_call(
    env: &[(String, String)],
    key: &str,
    method: &str,
    args: serde_json::Value,
    stdin: &[u8],
) -> Run {
    let [qemu, binary] = aarch64_plugin();
    let mut request = json!({
        "initOptions": {"protocolVersion": "v1", "keyResourceID": format!("alibabakms://{key}"), "hashFunc": 5},
        "methodName": method,
    });
    request[method] = args;
    run_program(
        &[qemu.to_str().unwrap(), binary.to_str().unwrap()],
        env,
        &["v1", &request.to_string()],
        stdin,
    )
}

#[test]
fn the_aarch64_binary_creates_a_key_signs_and_verifies_under_qemu() {
    // It is the other CPU's binary: ELF machine 183 (EM_AARCH64), not this machine's.
    let [_, binary] = aarch64_plugin();
    let head = std::fs::read(&binary).unwrap();
    assert_eq!(&head[..4], b"\x7fELF");
    assert_eq!(u16::from_le_bytes([head[18], head[19]]), 183, "e_machine");

    let emu = emulator();
    let env = env_for(&emu);
    let key = format!("{}//alias/arm64", emu.endpoint());
    let created = aarch64_call(
        &env,
        &key,
        "createKey",
        json!({"algorithm": "EC_P256"}),
        b"",
    );
    let pem = pem_of(created.ok("createKey"));
    let message = b"signed on aarch64";
    let signed = aarch64_call(
        &env,
        &key,
        "signMessage",
        json!({"signOptions": {}}),
        message,
    );
    let signature = unb64(signed.ok("signMessage")["signature"].as_str().unwrap());
    // An independent verifier, and the native binary, accept what the aarch64 run produced.
    assert!(openssl_verify(&pem, message, &signature, "sha256"));
    verify_signature(&env, &key, message, &signature).ok("verifySignature");
    // The aarch64 binary verifies too, and refuses a signature over another message.
    let args = json!({"signature": b64(&signature), "verifyOptions": {}});
    aarch64_call(&env, &key, "verifySignature", args.clone(), message).ok("verifySignature");
    let wrong = aarch64_call(&env, &key, "verifySignature", args, b"another message");
    assert!(wrong.err().contains("invalid signature"), "{}", wrong.err());
    assert_eq!(emu.stats().action("AsymmetricSign"), 1);
}

#[test]
fn the_aarch64_binary_says_what_to_do_and_keeps_its_sandbox_under_qemu() {
    let emu = emulator();
    let env = env_for(&emu);
    let key = format!("{}//alias/missing", emu.endpoint());
    let e = aarch64_call(&env, &key, "publicKey", json!({}), b"")
        .err()
        .to_string();
    assert!(e.contains("cosign generate-key-pair --kms"), "{e}");
    // A host the sandbox was not told about is refused before any connection.
    let mut elsewhere = env.clone();
    elsewhere.retain(|(k, _)| k != "SIGSTORE_ALIBABAKMS_ALLOWED_HOSTS");
    let e = aarch64_call(&elsewhere, &key, "publicKey", json!({}), b"")
        .err()
        .to_string();
    assert!(e.contains("SIGSTORE_ALIBABAKMS_ALLOWED_HOSTS"), "{e}");
    assert_eq!(emu.stats().action("GetPublicKey"), 0);
}
