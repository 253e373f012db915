//! Load: 50 concurrent sign invocations against a KMS that throttles and fails some of them.
//! All must succeed (retried within their deadlines), with no duplicate keys and no lost or
//! invalid signatures.

use crate::harness::*;
use alibabakms_emulator::Fault;

#[test]
fn fifty_concurrent_signs_survive_throttling_and_server_errors() {
    let emu = emulator();
    let env = env_for(&emu);
    let key = format!("{}//alias/load", emu.endpoint());
    let pem = pem_of(create_key(&env, &key, "EC_P256").ok("createKey"));
    emu.reset_stats();
    // Spread over the actions a sign makes; each fault fires once, for whoever comes first.
    emu.inject("AsymmetricSign", Fault::Throttle, 15);
    emu.inject("AsymmetricSign", Fault::ServiceUnavailable, 10);
    emu.inject("ListKeyVersions", Fault::InternalFailure, 10);
    emu.inject("DescribeKey", Fault::Throttle, 10);

    let messages: Vec<Vec<u8>> = (0..50)
        .map(|i| format!("artifact {i}").into_bytes())
        .collect();
    let runs: Vec<Run> = std::thread::scope(|s| {
        let handles: Vec<_> = messages
            .iter()
            .map(|m| {
                let (env, key) = (&env, &key);
                s.spawn(move || sign_message(env, key, m))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (m, run) in messages.iter().zip(&runs) {
        let sig = signature_of(run);
        assert!(
            openssl_verify(&pem, m, &sig, "sha256"),
            "a valid signature for every message"
        );
    }
    let stats = emu.stats();
    assert_eq!(
        stats.faults_injected, 45,
        "every injected fault was hit and survived"
    );
    let signed = emu
        .requests()
        .into_iter()
        .filter(|r| r.action == "AsymmetricSign" && r.status == 200)
        .count();
    assert_eq!(
        signed, 50,
        "exactly one successful signature per invocation"
    );
    assert_eq!(
        stats.action("CreateKey"),
        0,
        "no key was created under load"
    );
}
