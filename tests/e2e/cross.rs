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
    let program = [qemu.to_str().unwrap(), binary.to_str().unwrap()];
    call_through(&program, env, key, method, args, stdin)
}

#[test]
fn the_aarch64_binary_creates_a_key_signs_and_verifies_under_qemu() {
    // It is the other CPU's binary: ELF machine 183 (EM_AARCH64), not this machine's.
    let [qemu, binary] = aarch64_plugin();
    let head = std::fs::read(&binary).unwrap();
    assert_eq!(&head[..4], b"\x7fELF");
    assert_eq!(u16::from_le_bytes([head[18], head[19]]), 183, "e_machine");

    let emu = emulator();
    let env = env_for(&emu);
    let key = format!("{}//alias/arm64", emu.endpoint());
    let program = [qemu.to_str().unwrap(), binary.to_str().unwrap()];
    create_sign_verify_through(&program, &env, &env, &key, b"signed on aarch64");
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
