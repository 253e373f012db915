//! Transient failures are retried (re-signed, with backoff), final ones are not, CreateKey
//! never is; cosign's ctxDeadline bounds every call, and a skewed clock is named as such.

use crate::harness::*;
use alibabakms_emulator::{ApiError, Emulator, Fault};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::{Duration, Instant, SystemTime};

/// An emulator with an EC key behind `alias/reliable`, and the reference to it.
fn keyed() -> (Emulator, Vec<(String, String)>, String) {
    let emu = emulator();
    let key = emu.create_key("EC_P256").expect("key");
    emu.create_alias("alias/reliable", &key.key_id)
        .expect("alias");
    let env = env_for(&emu);
    let key_ref = format!("{}//alias/reliable", emu.endpoint());
    (emu, env, key_ref)
}

/// signMessage of `msg` with `ctxDeadline` in initOptions.
fn sign_with_deadline(env: &[(String, String)], key_ref: &str, deadline: SystemTime) -> Run {
    let body = json!({"signOptions": {"rpcOptions": rpc(), "messageOptions": {"digest": null}}});
    let mut req: Value = serde_json::from_str(&request(key_ref, "signMessage", body, 5)).unwrap();
    req["initOptions"]["ctxDeadline"] = json!(rfc3339(deadline));
    run_raw(env, &["v1", &req.to_string()], b"hello")
}

fn nonces(emu: &Emulator, action: &str) -> Vec<String> {
    emu.requests()
        .iter()
        .filter(|r| r.action == action)
        .map(|r| r.header("x-acs-signature-nonce").unwrap_or("").to_string())
        .collect()
}

#[test]
fn throttling_is_retried_with_fresh_signatures() {
    let (emu, env, key) = keyed();
    emu.inject("AsymmetricSign", Fault::Throttle, 2);
    let r = sign_message(&env, &key, b"hello");
    signature_of(&r);
    assert_eq!(emu.stats().action("AsymmetricSign"), 3);
    let n = nonces(&emu, "AsymmetricSign");
    assert_eq!(n.iter().collect::<HashSet<_>>().len(), 3, "{n:?}");
}

#[test]
fn unavailable_and_internal_failures_are_retried() {
    let (emu, env, key) = keyed();
    emu.inject("AsymmetricSign", Fault::ServiceUnavailable, 1);
    emu.inject("AsymmetricSign", Fault::InternalFailure, 1);
    signature_of(&sign_message(&env, &key, b"hello"));
    assert_eq!(emu.stats().action("AsymmetricSign"), 3);
}

#[test]
fn broken_connections_are_retried() {
    let (emu, env, key) = keyed();
    emu.inject("AsymmetricSign", Fault::Reset, 1);
    signature_of(&sign_message(&env, &key, b"hello"));
    assert_eq!(emu.stats().action("AsymmetricSign"), 2);
    // At most four attempts, then the last failure, named as such.
    emu.reset_stats();
    emu.inject("AsymmetricSign", Fault::Reset, 5);
    let r = sign_message(&env, &key, b"hello");
    assert!(r.err().contains("connection broke"), "{}", r.err());
    assert_eq!(emu.stats().action("AsymmetricSign"), 4);
}

#[test]
fn invalid_parameters_are_not_retried() {
    let (emu, env, key) = keyed();
    emu.inject(
        "AsymmetricSign",
        Fault::Error(ApiError::invalid_parameter("Digest", "injected")),
        1,
    );
    let r = sign_message(&env, &key, b"hello");
    assert!(r.err().contains("InvalidParameter"), "{}", r.err());
    assert_eq!(emu.stats().action("AsymmetricSign"), 1);
}

#[test]
fn create_key_is_never_retried() {
    let emu = emulator();
    let env = env_for(&emu);
    emu.inject("CreateKey", Fault::InternalFailure, 1);
    let r = create_key(&env, &format!("{}//alias/once", emu.endpoint()), "EC_P256");
    let e = r.err();
    assert!(
        e.contains("InternalFailure") && e.contains("not retried"),
        "{e}"
    );
    assert_eq!(emu.stats().action("CreateKey"), 1);
}

#[test]
fn a_hanging_endpoint_ends_before_the_deadline() {
    let (emu, env, key) = keyed();
    emu.inject("AsymmetricSign", Fault::Hang, 1);
    let deadline = SystemTime::now() + Duration::from_secs(3);
    let start = Instant::now();
    let r = sign_with_deadline(&env, &key, deadline);
    let took = start.elapsed();
    let e = r.err();
    assert!(
        e.contains(&format!("deadline {}", rfc3339(deadline)))
            && e.contains("AsymmetricSign")
            && e.contains(&emu.endpoint()),
        "{e}"
    );
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert!(took > Duration::from_secs(2), "took {took:?}");
}

#[test]
fn a_passed_deadline_sends_nothing() {
    let (emu, env, key) = keyed();
    let start = Instant::now();
    let r = sign_with_deadline(&env, &key, SystemTime::now() - Duration::from_secs(1));
    assert!(r.err().contains("had already passed"), "{}", r.err());
    assert!(start.elapsed() < Duration::from_secs(2));
    assert_eq!(emu.stats().total_requests, 0);
}

#[test]
fn the_default_limit_can_be_set() {
    let (emu, mut env, key) = keyed();
    env.push(("SIGSTORE_ALIBABAKMS_TIMEOUT".into(), "2".into()));
    emu.inject("AsymmetricSign", Fault::Hang, 1);
    let start = Instant::now();
    let r = sign_message(&env, &key, b"hello");
    let e = r.err();
    assert!(
        e.contains("time limit of 2 s") && e.contains("SIGSTORE_ALIBABAKMS_TIMEOUT"),
        "{e}"
    );
    assert!(start.elapsed() < Duration::from_secs(3));
}

#[test]
fn clock_skew_is_measured() {
    let (emu, env, key) = keyed();
    emu.set_clock_offset_secs(20 * 60);
    let r = sign_message(&env, &key, b"hello");
    let e = r.err();
    assert!(
        e.contains("20 min") && e.contains("behind") && e.contains("synchronise the clock"),
        "{e}"
    );
    // Not a transient error: sent once.
    assert_eq!(emu.stats().total_requests, 2, "{:?}", emu.stats());
}
