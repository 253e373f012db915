//! Every plugin call the real cosign 2.5.0 and 3.1.1 made for the commands of the real-cosign
//! suite (tests/fixtures/cosign-cli-calls.jsonl), replayed in order against the emulator, each
//! answer checked. cosign 3.1 sends a digest *and* the whole payload on stdin, and asks for the
//! public key again and again; both must work exactly as captured.

use crate::harness::*;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::HashMap;

#[test]
fn every_captured_cosign_cli_call_is_answered() {
    let mut per_version: Vec<(String, Vec<Value>)> = Vec::new();
    for line in alibabakms_fixtures::lines(alibabakms_fixtures::COSIGN_CLI_CALLS) {
        let call: Value = serde_json::from_str(line).unwrap();
        let version = call["cosign"].as_str().unwrap().to_string();
        match per_version.iter_mut().find(|(v, _)| *v == version) {
            Some((_, calls)) => calls.push(call),
            None => per_version.push((version, vec![call])),
        }
    }
    let versions: Vec<&str> = per_version.iter().map(|(v, _)| v.as_str()).collect();
    assert_eq!(versions, ["2.5.0", "3.1.1"]);
    let mut answered = 0;
    for (version, calls) in &per_version {
        answered += replay(version, calls);
    }
    assert_eq!(answered, 36, "every line of the capture was replayed");
}

/// Replays one cosign version's calls against a fresh emulator; returns how many.
fn replay(version: &str, calls: &[Value]) -> usize {
    let emu = emulator();
    let env = env_for(&emu);
    let mut pem: Option<String> = None;
    // What our key signed, by payload: cosign verifies the payloads it signed.
    let mut signed: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
    for call in calls {
        let command = call["command"].as_str().unwrap();
        let what = format!("cosign {version} `{command}`");
        let argv = replayed_argv(call, &emu);
        let mut request: Value = serde_json::from_str(&argv[1]).unwrap();
        let stdin = unb64(call["stdin_base64"].as_str().unwrap());
        let method = call["method"].as_str().unwrap();
        assert_eq!(request["methodName"], method);
        let run_as_captured =
            |request: &Value| run_raw(&env, &["v1", &request.to_string()], &stdin);
        match method {
            "defaultAlgorithm" => assert_eq!(
                run_as_captured(&request).ok(method)["defaultAlgorithm"],
                "EC_P256",
                "{what}"
            ),
            "createKey" => pem = Some(pem_of(run_as_captured(&request).ok(method))),
            "publicKey" => assert_eq!(
                Some(pem_of(run_as_captured(&request).ok(method))),
                pem,
                "{what}"
            ),
            "signMessage" => {
                let sig = signature_of(&run_as_captured(&request));
                let pem = pem.as_deref().expect("a key was created first");
                // The signature covers the payload cosign streamed; where cosign also sent
                // the digest (3.1), it is the payload's.
                assert!(openssl_verify(pem, &stdin, &sig, "sha256"), "{what}");
                let digest = &request["signMessage"]["signOptions"]["messageOptions"]["digest"];
                if let Some(d) = digest.as_str() {
                    assert_eq!(unb64(d), Sha256::digest(&stdin).to_vec(), "{what}");
                }
                signed.insert(stdin.clone(), sig);
            }
            "verifySignature" => {
                // The captured signature is from the capture's own key: refused by ours.
                let refused = run_as_captured(&request);
                assert!(
                    refused.err().contains("invalid signature"),
                    "{what}: {}",
                    refused.err()
                );
                // Our key's signature over the same payload is accepted.
                let ours = signed.get(&stdin).expect("cosign verifies what it signed");
                request["verifySignature"]["signature"] = b64(ours).into();
                run_as_captured(&request).ok(method);
            }
            m => panic!("{what}: unexpected method {m}"),
        }
    }
    assert_no_chunked(&emu);
    calls.len()
}
