//! SIGSTORE_ALIBABAKMS_DEBUG: one stderr line per request and per credential source, and never
//! a secret, a token, a signature header or a query on any of them.

use crate::harness::*;
use alibabakms_emulator::{EmulatorConfig, Fault};
use std::time::{Duration, SystemTime};

fn debug(mut env: Vec<(String, String)>) -> Vec<(String, String)> {
    env.push(("SIGSTORE_ALIBABAKMS_DEBUG".into(), "1".into()));
    env
}

/// What no diagnostic line may contain, whatever else it says.
fn assert_redacted(stderr: &str) {
    for forbidden in [
        "authorization",
        "Signature=",
        "x-acs-security-token",
        "Digest=",
        "KeyId=",
    ] {
        assert!(
            !stderr.contains(forbidden),
            "{forbidden:?} in stderr:\n{stderr}"
        );
    }
}

#[test]
fn each_request_and_credential_source_gets_one_line() {
    let emu = emulator();
    let key = format!("{}//alias/diag", emu.endpoint());
    create_key(&env_for(&emu), &key, "EC_P256").ok("createKey");
    emu.clear_requests();
    let run = sign_message(&debug(env_for(&emu)), &key, b"m");
    run.ok("signMessage");
    let lines: Vec<&str> = run.stderr.lines().filter(|l| l.contains(" -> ")).collect();
    assert_eq!(lines.len(), 3, "{}", run.stderr);
    for r in emu.requests() {
        let line = lines
            .iter()
            .find(|l| l.starts_with(&format!("sigstore-kms-alibabakms: {} ", r.action)));
        let line = line.unwrap_or_else(|| panic!("no line for {}:\n{}", r.action, run.stderr));
        assert!(
            line.contains(&emu.endpoint()) && line.contains("HTTP 200"),
            "{line}"
        );
        assert!(
            line.contains("attempt 1") && line.contains(&r.request_id),
            "{line}"
        );
        assert!(line.contains(" ms "), "{line}");
    }
    assert!(
        run.stderr.contains("credentials: using environment"),
        "{}",
        run.stderr
    );
    assert_redacted(&run.stderr);

    // Quiet unless asked.
    let quiet = sign_message(&env_for(&emu), &key, b"m");
    assert!(!quiet.stderr.contains(" -> "), "{}", quiet.stderr);
}

#[test]
fn retries_and_skipped_sources_are_visible_and_sts_tokens_are_not() {
    let emu = alibabakms_emulator::Emulator::start(
        EmulatorConfig::default()
            .no_credentials()
            .access_key(AK_ID, AK_SECRET)
            .sts_credential(
                STS_ID,
                STS_SECRET,
                STS_TOKEN,
                SystemTime::now() + Duration::from_secs(3600),
            ),
    )
    .unwrap();
    let key = format!("{}//alias/diag", emu.endpoint());
    create_key(&env_for(&emu), &key, "EC_P256").ok("createKey");
    let mut env = env_for(&emu);
    env.retain(|(k, _)| !k.starts_with("ALIBABA_CLOUD_ACCESS_KEY"));
    env.push(("ALICLOUD_ACCESS_KEY".into(), STS_ID.into()));
    env.push(("ALICLOUD_SECRET_KEY".into(), STS_SECRET.into()));
    env.push(("ALICLOUD_ACCESS_KEY_STS_TOKEN".into(), STS_TOKEN.into()));
    emu.inject("AsymmetricSign", Fault::Throttle, 1);
    let run = sign_message(&debug(env), &key, b"m");
    run.ok("signMessage");
    assert!(
        run.stderr.contains("credentials: environment skipped"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("credentials: using environment (ALICLOUD_ACCESS_KEY"),
        "{}",
        run.stderr
    );
    let throttled = run
        .stderr
        .lines()
        .find(|l| l.contains("AsymmetricSign") && l.contains("attempt 1"));
    assert!(
        throttled.is_some_and(|l| l.contains("429") && l.contains("Rejected.Throttling")),
        "{}",
        run.stderr
    );
    assert!(run.stderr.lines().any(|l| l.contains("AsymmetricSign")
        && l.contains("attempt 2")
        && l.contains("HTTP 200")));
    assert_redacted(&run.stderr);
}
