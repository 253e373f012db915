//! Requests and connections per method: what each cosign call costs on the wire.

use crate::harness::*;
use serde_json::json;

#[test]
fn algorithm_queries_touch_nothing() {
    // No credentials, no allow-list, an endpoint that does not exist: still answered.
    for method in ["defaultAlgorithm", "supportedAlgorithms"] {
        let r = call(&[], "kms.nowhere.invalid//alias/x", method, json!({}), b"");
        let v = r.ok(method);
        assert!(!v[method].is_null(), "{v}");
    }
    let r = call(
        &[],
        "kms.nowhere.invalid//alias/x",
        "supportedAlgorithms",
        json!({}),
        b"",
    );
    assert_eq!(
        r.ok("supportedAlgorithms")["supportedAlgorithms"],
        json!(["EC_P256", "RSA_2048", "RSA_3072", "RSA_4096"])
    );
}

#[test]
fn each_method_stays_within_its_request_and_connection_budget() {
    let emu = emulator();
    let env = env_for(&emu);
    let key = format!("{}//alias/budget", emu.endpoint());

    for method in ["defaultAlgorithm", "supportedAlgorithms"] {
        call(&env, &key, method, json!({}), b"").ok(method);
    }
    assert_eq!(emu.stats().total_requests, 0);
    assert_eq!(emu.stats().tcp_connections, 0);

    // (what, run, most requests, most TCP connections): a second connection is allowed only
    // where two requests go out at once (DescribeKey with ListKeyVersions; CreateAlias with
    // GetPublicKey; AsymmetricSign with GetPublicKey, whose key checks the signature).
    let measure = |what: &str, f: &dyn Fn() -> Run, max_requests: u64, max_connections: u64| {
        emu.reset_stats();
        let r = f();
        assert!(
            r.response.get("errorMessage").is_none(),
            "{what}: {}",
            r.response
        );
        let s = emu.stats();
        assert!(
            s.total_requests <= max_requests,
            "{what}: {} requests > {max_requests}: {:?}",
            s.total_requests,
            s.requests_per_action
        );
        assert!(
            (1..=max_connections).contains(&s.tcp_connections),
            "{what}: {} TCP connections",
            s.tcp_connections
        );
        r
    };
    measure(
        "createKey (new alias)",
        &|| create_key(&env, &key, "EC_P256"),
        4,
        2,
    );
    measure(
        "createKey (existing alias)",
        &|| create_key(&env, &key, "EC_P256"),
        4,
        1,
    );
    measure("publicKey", &|| public_key(&env, &key), 2, 1);
    let signed = measure(
        "signMessage",
        &|| sign_message(&env, &key, b"payload"),
        4,
        2,
    );
    let sig = unb64(
        signed.response["signMessage"]["signature"]
            .as_str()
            .unwrap(),
    );
    measure(
        "verifySignature",
        &|| verify_signature(&env, &key, b"payload", &sig),
        2,
        1,
    );
}
