//! An STS token that expires (`InvalidSecurityToken.Expired` from KMS) is refreshed once: the
//! credential chain runs again and the refused requests go out again with the new token. A
//! source that gives the same token again, or a second expiry, is a clear error, not a loop.

use crate::credentials_remote::{emulator_with_oidc, oidc_env, with_key, ROLE};
use crate::harness::*;
use alibabakms_emulator::{Emulator, EmulatorConfig};
use std::time::{Duration, SystemTime};

/// (action, code) of every request the emulator answered, in order.
fn answered(emu: &Emulator) -> Vec<(String, Option<String>)> {
    emu.requests()
        .into_iter()
        .map(|r| (r.action, r.code))
        .collect()
}

fn count(log: &[(String, Option<String>)], action: &str) -> usize {
    log.iter().filter(|(a, _)| a == action).count()
}

const EXPIRED: &str = "InvalidSecurityToken.Expired";

#[test]
fn a_token_expired_before_its_first_use_is_refreshed_once() {
    let emu = emulator_with_oidc();
    let key = with_key(&emu, "expiring");
    let mut env = oidc_env(&emu, ROLE, OIDC_TOKEN);
    env.push(("SIGSTORE_ALIBABAKMS_DEBUG".into(), "1".into()));
    let pem = pem_of(public_key(&env, &key).ok("publicKey"));
    emu.clear_requests();
    emu.expire_next_issued_credentials(0);
    let run = sign_message(&env, &key, b"signed after a refresh");
    let sig = signature_of(&run);
    assert!(openssl_verify(
        &pem,
        b"signed after a refresh",
        &sig,
        "sha256"
    ));
    let log = answered(&emu);
    assert_eq!(count(&log, "AssumeRoleWithOIDC"), 2, "{log:?}");
    // The first token's two requests were refused as expired, then sent again.
    let refused: Vec<_> = log
        .iter()
        .filter(|(_, c)| c.as_deref() == Some(EXPIRED))
        .collect();
    assert_eq!(refused.len(), 2, "{log:?}");
    assert_eq!(count(&log, "DescribeKey"), 2, "{log:?}");
    assert_eq!(count(&log, "ListKeyVersions"), 2, "{log:?}");
    assert_eq!(count(&log, "AsymmetricSign"), 1, "{log:?}");
    assert!(
        run.stderr
            .contains("credentials: KMS says the STS token expired; getting credentials again"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_token_expiring_mid_call_is_refreshed_and_the_sign_goes_through() {
    let emu = emulator_with_oidc();
    let key = with_key(&emu, "midcall");
    let env = oidc_env(&emu, ROLE, OIDC_TOKEN);
    let pem = pem_of(public_key(&env, &key).ok("publicKey"));
    emu.clear_requests();
    // DescribeKey and ListKeyVersions are accepted; the token expires before AsymmetricSign.
    emu.expire_next_issued_credentials(2);
    let sig = signature_of(&sign_message(&env, &key, b"m"));
    assert!(openssl_verify(&pem, b"m", &sig, "sha256"));
    let log = answered(&emu);
    assert_eq!(count(&log, "AssumeRoleWithOIDC"), 2, "{log:?}");
    assert_eq!(count(&log, "AsymmetricSign"), 2, "{log:?}");
    assert_eq!(
        log.iter()
            .filter(|(_, c)| c.as_deref() == Some(EXPIRED))
            .count(),
        // AsymmetricSign and the GetPublicKey that checks its signature, sent together.
        2,
        "{log:?}"
    );
    assert_eq!(count(&log, "GetPublicKey"), 2, "{log:?}");
}

#[test]
fn a_token_that_expires_again_after_the_refresh_is_an_error_not_a_loop() {
    let emu = emulator_with_oidc();
    let key = with_key(&emu, "twice");
    let env = oidc_env(&emu, ROLE, OIDC_TOKEN);
    emu.clear_requests();
    // The first token and the refreshed one are both expired when used.
    emu.expire_next_issued_credentials(0);
    emu.expire_next_issued_credentials(0);
    let run = sign_message(&env, &key, b"m");
    let msg = run.err();
    assert!(
        msg.contains("the STS security token has expired, and so had the new one obtained from RRSA/OIDC role")
            && msg.contains("check that the local clock is correct")
            && msg.contains(EXPIRED),
        "{msg}"
    );
    let log = answered(&emu);
    assert_eq!(count(&log, "AssumeRoleWithOIDC"), 2, "{log:?}");
    // Two rounds of DescribeKey with ListKeyVersions, all refused; no third.
    assert_eq!(count(&log, "DescribeKey"), 2, "{log:?}");
    assert_eq!(count(&log, "ListKeyVersions"), 2, "{log:?}");
    assert_eq!(count(&log, "AsymmetricSign"), 0, "{log:?}");
}

#[test]
fn a_static_expired_token_is_a_clear_error_after_one_round() {
    let emu = Emulator::start(
        EmulatorConfig::default()
            .no_credentials()
            .access_key(AK_ID, AK_SECRET)
            .sts_credential(
                STS_ID,
                STS_SECRET,
                STS_TOKEN,
                SystemTime::now() - Duration::from_secs(60),
            ),
    )
    .unwrap();
    let key = format!("{}//alias/stale", emu.endpoint());
    create_key(&env_for(&emu), &key, "EC_P256").ok("createKey");
    emu.clear_requests();
    let mut env = env_for(&emu);
    env.retain(|(k, _)| !k.starts_with("ALIBABA_CLOUD_ACCESS_KEY"));
    env.push(("ALIBABA_CLOUD_ACCESS_KEY_ID".into(), STS_ID.into()));
    env.push(("ALIBABA_CLOUD_ACCESS_KEY_SECRET".into(), STS_SECRET.into()));
    env.push(("ALIBABA_CLOUD_SECURITY_TOKEN".into(), STS_TOKEN.into()));
    let e = sign_message(&env, &key, b"m");
    let msg = e.err();
    assert!(
        msg.contains("STS security token read from environment")
            && msg.contains("ALIBABA_CLOUD_SECURITY_TOKEN")
            && msg.contains("has expired")
            && msg.contains("gave the same token")
            && msg.contains(EXPIRED),
        "{msg}"
    );
    // One round (DescribeKey with ListKeyVersions), both refused; nothing sent again.
    let log = answered(&emu);
    assert_eq!(log.len(), 2, "{log:?}");
    assert!(log.iter().all(|(_, c)| c.as_deref() == Some(EXPIRED)));
}
