//! The README's quick start: what cosign does with the plugin, against the emulator.
//!
//! Starts the KMS emulator on loopback, then runs the real plugin binary the way cosign
//! runs it for `generate-key-pair --kms`, `public-key`, `sign-blob` and `verify-blob`, and
//! checks the signature once more with the exported public key alone.
//!
//! Each step is printed as `[the cosign command] -> the plugin methods it runs`: this program
//! plays cosign's side of the protocol (cosign itself is not needed).
//!
//! Usage: kms-demo PATH-TO-sigstore-kms-alibabakms

use alibabakms_emulator::{Emulator, EmulatorConfig};
use base64::Engine;
use p256::ecdsa::signature::Verifier;
use p256::pkcs8::DecodePublicKey;
use serde_json::{json, Value};
use std::io::Write;
use std::process::{Command, ExitCode, Stdio};

const AK_ID: &str = "LTAI5tDemoAccessKeyId";
const AK_SECRET: &str = "demo-access-key-secret";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let plugin = std::env::args()
        .nth(1)
        .ok_or("usage: kms-demo PATH-TO-sigstore-kms-alibabakms")?;
    let emu = Emulator::start(
        EmulatorConfig::default()
            .no_credentials()
            .access_key(AK_ID, AK_SECRET),
    )
    .map_err(|e| format!("starting the emulator: {e}"))?;
    let key = format!("alibabakms://{}//alias/cosign-demo", emu.endpoint());
    println!(
        "KMS emulator listening on https://{} (CA: {})",
        emu.endpoint(),
        emu.ca_pem_path().display()
    );
    println!("key: {key}\n");

    let env = [
        ("ALIBABA_CLOUD_ACCESS_KEY_ID", AK_ID.to_string()),
        ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", AK_SECRET.to_string()),
        ("SSL_CERT_FILE", emu.ca_pem_path().display().to_string()),
        ("SIGSTORE_ALIBABAKMS_ALLOWED_HOSTS", emu.endpoint()),
    ];
    let resource = key.trim_start_matches("alibabakms://");
    let plugin_call = |method: &str, body: Value, stdin: &[u8]| -> Result<Value, String> {
        let mut args = json!({
            "initOptions": {"protocolVersion": "v1", "keyResourceID": resource, "hashFunc": 5,
                            "rpcOptions": {"keyVersion": "", "remoteVerification": false}},
            "methodName": method,
        });
        args[method] = body;
        let mut child = Command::new(&plugin)
            .args(["v1", &args.to_string()])
            .env_clear()
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("running {plugin}: {e}"))?;
        let _ = child.stdin.take().unwrap().write_all(stdin);
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        let v: Value = serde_json::from_slice(&out.stdout)
            .map_err(|e| format!("{method}: stdout is not JSON ({e})"))?;
        if let Some(e) = v.get("errorMessage") {
            return Err(format!("{method}: {e}"));
        }
        Ok(v[method].clone())
    };
    let b64 = base64::engine::general_purpose::STANDARD;
    let rpc = json!({"keyVersion": "", "remoteVerification": false});

    println!("[cosign generate-key-pair --kms {key}] -> plugin: defaultAlgorithm, createKey");
    let alg = plugin_call("defaultAlgorithm", json!({}), b"")?["defaultAlgorithm"].clone();
    let created = plugin_call("createKey", json!({"algorithm": alg}), b"")?;
    let pem = String::from_utf8(
        b64.decode(created["publicKeyPEM"].as_str().unwrap_or(""))
            .map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    println!("created an {} key in KMS\n", alg.as_str().unwrap_or("?"));

    println!("[cosign public-key --key {key}] -> plugin: publicKey");
    let exported = plugin_call(
        "publicKey",
        json!({"publicKeyOptions": {"rpcOptions": rpc}}),
        b"",
    )?;
    let exported = String::from_utf8(
        b64.decode(exported["publicKeyPEM"].as_str().unwrap_or(""))
            .map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    print!("{exported}");
    if exported != pem {
        return Err("publicKey returned another key than createKey".into());
    }

    let blob = b"demo release artifact\n".repeat(4096);
    println!(
        "\n[cosign sign-blob --key {key} artifact.bin] -> plugin: signMessage ({} bytes on stdin)",
        blob.len()
    );
    let signed = plugin_call(
        "signMessage",
        json!({"signOptions": {"rpcOptions": rpc, "messageOptions": {"digest": null}}}),
        &blob,
    )?;
    let signature = signed["signature"].as_str().unwrap_or("").to_string();
    println!("{signature}");

    println!("\n[cosign verify-blob --key {key} ...] -> plugin: verifySignature");
    plugin_call(
        "verifySignature",
        json!({"signature": signature, "verifyOptions": {"rpcOptions": rpc, "messageOptions": {"digest": null}}}),
        &blob,
    )?;
    println!("Verified OK (through the plugin)");

    println!("\n[cosign verify-blob --key cosign.pub ...] -> no plugin: P-256 check with the exported key");
    let public = p256::ecdsa::VerifyingKey::from_public_key_pem(&pem).map_err(|e| e.to_string())?;
    let der = b64.decode(&signature).map_err(|e| e.to_string())?;
    let sig = p256::ecdsa::DerSignature::try_from(der.as_slice()).map_err(|e| e.to_string())?;
    public
        .verify(&blob, &sig)
        .map_err(|_| "the signature does not verify with the exported public key".to_string())?;
    println!("Verified OK (offline, with the exported public key)");

    let stats = emu.stats();
    println!("\nKMS requests: {:?}", stats.requests_per_action);
    Ok(())
}
