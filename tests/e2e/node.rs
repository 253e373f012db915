//! The portable component under a second, independent runtime: Node.js through jco
//! (`host/node/run.mjs`, with the jco and preview2-shim that `tests/tools/setup.sh` installs
//! from host/node's lock), as a complete cosign plugin against the emulator. Its signature is
//! checked by OpenSSL and by the native binary.

use crate::harness::*;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// A runner directory: host/node's scripts, the npm packages, and this build's portable
/// component (`--write-wasm`) transpiled by jco, made once per test process.
pub(crate) fn runner() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("node");
        let packages = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../target/tools/node/node_modules")
            .canonicalize()
            .expect(
                "jco is installed in target/tools/node: run tests/tools/setup.sh (./test.sh does)",
            );
        let dir = tempdir();
        for file in ["run.mjs", "cache.mjs", "package.json"] {
            std::fs::copy(source.join(file), dir.join(file)).unwrap();
        }
        std::os::unix::fs::symlink(&packages, dir.join("node_modules")).unwrap();
        let wasm = dir.join("alibabakms-guest.wasm");
        let written = Command::new(BIN)
            .arg("--write-wasm")
            .arg(&wasm)
            .status()
            .unwrap();
        assert!(written.success(), "--write-wasm");
        let transpiled = Command::new("node")
            .arg(packages.join("@bytecodealliance/jco/dist/jco.js"))
            .args([
                "transpile",
                "alibabakms-guest.wasm",
                "--out-dir",
                "gen",
                "--name",
                "guest",
            ])
            .args([
                "--map",
                "sigstore:alibabakms/cache@0.1.0=../cache.mjs",
                "--quiet",
            ])
            .current_dir(&dir)
            .output()
            .expect("node is installed");
        assert!(
            transpiled.status.success(),
            "jco transpile: {}",
            String::from_utf8_lossy(&transpiled.stderr)
        );
        dir
    })
}

/// What a Node host gives the plugin: the user's variables, and the emulator's CA the way
/// Node takes extra roots.
fn node_env(emu: &alibabakms_emulator::Emulator) -> Vec<(String, String)> {
    let mut env = env_for(emu);
    env.push((
        "NODE_EXTRA_CA_CERTS".into(),
        emu.ca_pem_path().display().to_string(),
    ));
    env
}

fn node_call(
    env: &[(String, String)],
    key: &str,
    method: &str,
    args: serde_json::Value,
    stdin: &[u8],
) -> Run {
    let run_mjs = runner().join("run.mjs");
    call_through(
        &["node", run_mjs.to_str().unwrap()],
        env,
        key,
        method,
        args,
        stdin,
    )
}

#[test]
fn under_node_the_component_creates_a_key_signs_and_verifies() {
    let emu = emulator();
    let run_mjs = runner().join("run.mjs");
    let key = format!("{}//alias/node", emu.endpoint());
    create_sign_verify_through(
        &["node", run_mjs.to_str().unwrap()],
        &node_env(&emu),
        &env_for(&emu),
        &key,
        b"signed under Node.js",
    );
    // Every request Node sent was signed and accepted by the strict emulator.
    assert_eq!(emu.stats().action("AsymmetricSign"), 1);
}

#[test]
fn under_node_errors_say_what_to_do_and_name_no_secret() {
    let emu = emulator();
    let env = node_env(&emu);
    let key = format!("{}//alias/missing", emu.endpoint());
    let e = node_call(&env, &key, "publicKey", json!({}), b"")
        .err()
        .to_string();
    assert!(e.contains("cosign generate-key-pair --kms"), "{e}");
    // Without the emulator's CA Node refuses the TLS connection, and the answer says so.
    let mut no_ca = node_env(&emu);
    no_ca.retain(|(k, _)| k != "NODE_EXTRA_CA_CERTS");
    let e = node_call(&no_ca, &key, "publicKey", json!({}), b"")
        .err()
        .to_string();
    assert!(
        e.contains(&emu.endpoint()) && e.contains("certificate"),
        "{e}"
    );
}
