//! Bad input, bad credentials and refused destinations: each ends in one clear errorMessage
//! that says what to fix, with nothing else on stdout and no secret anywhere.

use crate::harness::*;
use serde_json::json;

fn no_network_env() -> Vec<(String, String)> {
    vec![
        ("ALIBABA_CLOUD_ACCESS_KEY_ID".into(), AK_ID.into()),
        ("ALIBABA_CLOUD_ACCESS_KEY_SECRET".into(), AK_SECRET.into()),
    ]
}

#[test]
fn malformed_invocations() {
    let env = no_network_env();
    let e = run_raw(&env, &[], b"");
    assert!(e.err().contains("v1"), "{}", e.err());
    let e = run_raw(&env, &["v2", "{}"], b"");
    assert!(
        e.err().contains("unsupported protocol version"),
        "{}",
        e.err()
    );
    let e = run_raw(&env, &["v1", "{\"methodName\":"], b"");
    assert!(e.err().contains("not valid plugin JSON"), "{}", e.err());
    let e = run_raw(&env, &["v1", r#"{"methodName":"deleteEverything"}"#], b"");
    assert!(e.err().contains("unknown method"), "{}", e.err());
    assert!(!e.stderr.contains("panicked"), "no panic: {}", e.stderr);
}

#[test]
fn bad_key_references_show_both_forms() {
    let e = public_key(
        &no_network_env(),
        "kms.cn-hangzhou.aliyuncs.com/not-a-key/ref/at/all",
    );
    let msg = e.err();
    assert!(
        msg.contains("alias/NAME") && msg.contains("KEY_ID/versions/VERSION_ID"),
        "{msg}"
    );
}

#[test]
fn a_host_outside_the_allow_list_is_refused_without_connecting() {
    let emu = emulator();
    let mut env = env_for(&emu);
    env.retain(|(k, _)| k != "SIGSTORE_ALIBABAKMS_ALLOWED_HOSTS");
    let e = public_key(&env, &format!("{}//alias/x", emu.endpoint()));
    assert!(
        e.err().contains("SIGSTORE_ALIBABAKMS_ALLOWED_HOSTS"),
        "{}",
        e.err()
    );
    assert_eq!(emu.stats().tcp_connections, 0, "no socket was opened");
}

#[test]
fn an_untrusted_certificate_says_how_to_trust_it() {
    let emu = emulator();
    let mut env = env_for(&emu);
    // Trust some other CA only.
    env.retain(|(k, _)| k != "SSL_CERT_FILE");
    let other =
        alibabakms_emulator::Emulator::start(alibabakms_emulator::EmulatorConfig::default())
            .unwrap();
    env.push((
        "SSL_CERT_FILE".into(),
        other.ca_pem_path().display().to_string(),
    ));
    let e = public_key(&env, &format!("{}//alias/x", emu.endpoint()));
    assert!(e.err().contains("SSL_CERT_FILE"), "{}", e.err());
    assert_eq!(emu.stats().total_requests, 0);
}

/// The trust store is read as OpenSSL reads it: the bundle file (SSL_CERT_FILE) first, and
/// the certificate directory (SSL_CERT_DIR) only for an issuer the bundle lacks. A CA added
/// to the directory alone is trusted; a server the bundle trusts never costs the directory.
#[test]
fn a_ca_in_the_certificate_directory_alone_is_trusted() {
    let emu = emulator();
    let other =
        alibabakms_emulator::Emulator::start(alibabakms_emulator::EmulatorConfig::default())
            .unwrap();
    let dir = crate::credentials_remote::temp_dir();
    std::fs::copy(emu.ca_pem_path(), dir.join("kms-ca.pem")).unwrap();
    let key = format!("{}//alias/trusted", emu.endpoint());
    create_key(&env_for(&emu), &key, "EC_P256").ok("createKey");
    let with = |bundle: &std::path::Path| {
        let mut env = env_for(&emu);
        env.retain(|(k, _)| k != "SSL_CERT_FILE");
        env.push(("SSL_CERT_FILE".into(), bundle.display().to_string()));
        env.push(("SSL_CERT_DIR".into(), dir.display().to_string()));
        env.push(("SIGSTORE_ALIBABAKMS_DEBUG".into(), "1".into()));
        env
    };

    // The bundle trusts another CA only: the directory is read, and its CA trusted.
    let run = public_key(&with(other.ca_pem_path()), &key);
    run.ok("publicKey");
    assert!(
        run.stderr.contains("reading the certificate directories"),
        "{}",
        run.stderr
    );
    // The bundle has the CA: the directory is never read.
    let run = public_key(&with(emu.ca_pem_path()), &key);
    run.ok("publicKey");
    assert!(
        run.stderr.contains("trust store: 1 root certificates from"),
        "{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains("root certificates in all"),
        "{}",
        run.stderr
    );
    // --print-sandbox says where the roots come from, and in which order.
    let out = std::process::Command::new(BIN)
        .arg("--print-sandbox")
        .env_clear()
        .env("SSL_CERT_FILE", emu.ca_pem_path())
        .env("SSL_CERT_DIR", &dir)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let expected = format!(
        "trust roots: {}, {} (when needed)",
        emu.ca_pem_path().display(),
        dir.display()
    );
    assert!(text.contains(&expected), "{text}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn missing_credentials_list_the_sources_and_send_nothing() {
    let emu = emulator();
    let mut env = env_for(&emu);
    env.retain(|(k, _)| !k.starts_with("ALIBABA_CLOUD_ACCESS_KEY"));
    let e = sign_message(&env, &format!("{}//alias/x", emu.endpoint()), b"m");
    assert!(
        e.err().contains("ALIBABA_CLOUD_ACCESS_KEY_ID"),
        "{}",
        e.err()
    );
    assert_eq!(emu.stats().tcp_connections, 0);
}

#[test]
fn a_wrong_secret_names_where_it_was_read_but_not_its_value() {
    let emu = emulator();
    let mut env = env_for(&emu);
    for (k, v) in env.iter_mut() {
        if k == "ALIBABA_CLOUD_ACCESS_KEY_SECRET" {
            *v = "wrong-secret-value".into();
        }
    }
    let e = public_key(&env, &format!("{}//alias/x", emu.endpoint()));
    let msg = e.err();
    assert!(
        msg.contains("SignatureDoesNotMatch") && msg.contains("ALIBABA_CLOUD_ACCESS_KEY_SECRET"),
        "{msg}"
    );
    assert!(!msg.contains("wrong-secret-value") && !e.stderr.contains("wrong-secret-value"));
}

#[test]
fn an_unknown_access_key_is_reported() {
    let emu = emulator();
    let mut env = env_for(&emu);
    for (k, v) in env.iter_mut() {
        if k == "ALIBABA_CLOUD_ACCESS_KEY_ID" {
            *v = "LTAInobodyHasThisKey".into();
        }
    }
    let e = public_key(&env, &format!("{}//alias/x", emu.endpoint()));
    assert!(
        e.err().contains("InvalidAccessKeyId.NotFound")
            && e.err().contains("ALIBABA_CLOUD_ACCESS_KEY_ID"),
        "{}",
        e.err()
    );
}

#[test]
fn an_unknown_alias_says_how_to_create_it() {
    let emu = emulator();
    let env = env_for(&emu);
    let e = sign_message(&env, &format!("{}//alias/nope", emu.endpoint()), b"m");
    let msg = e.err();
    assert!(
        msg.contains("alias/nope does not exist") && msg.contains("cosign generate-key-pair"),
        "{msg}"
    );
    assert!(msg.contains("Forbidden.AliasNotFound"), "{msg}");
}

#[test]
fn a_skewed_clock_is_named() {
    let emu = emulator();
    emu.set_clock_offset_secs(20 * 60);
    let e = public_key(&env_for(&emu), &format!("{}//alias/x", emu.endpoint()));
    assert!(e.err().contains("clock"), "{}", e.err());
}

#[test]
fn create_key_refuses_bad_algorithms_and_key_ids_before_any_request() {
    let emu = emulator();
    let env = env_for(&emu);
    let e = create_key(
        &env,
        &format!("{}//alias/x", emu.endpoint()),
        "any-algorithm",
    );
    assert!(e.err().contains("any-algorithm"), "{}", e.err());
    let e = create_key(
        &env,
        &format!("{}//key-abc/versions/v1", emu.endpoint()),
        "EC_P256",
    );
    assert!(e.err().contains("alias"), "{}", e.err());
    assert_eq!(emu.stats().total_requests, 0);
}

#[test]
fn a_digest_of_the_wrong_length_is_refused_before_any_request() {
    let emu = emulator();
    let env = env_for(&emu);
    let e = sign_digest(&env, &format!("{}//alias/x", emu.endpoint()), &[1u8; 10], 5);
    assert!(e.err().contains("10 bytes"), "{}", e.err());
    let body = json!({"signature": "%%%", "verifyOptions": {"rpcOptions": rpc(), "messageOptions": {"digest": null}}});
    let e = call(
        &env,
        &format!("{}//alias/x", emu.endpoint()),
        "verifySignature",
        body,
        b"",
    );
    assert!(e.err().contains("base64"), "{}", e.err());
    assert_eq!(emu.stats().total_requests, 0);
}

#[test]
fn an_sts_token_is_used_and_a_wrong_one_is_refused() {
    let token = STS_TOKEN;
    let emu = alibabakms_emulator::Emulator::start(
        alibabakms_emulator::EmulatorConfig::default()
            .no_credentials()
            .access_key(AK_ID, AK_SECRET)
            .sts_credential(
                STS_ID,
                STS_SECRET,
                token,
                std::time::SystemTime::now() + std::time::Duration::from_secs(3600),
            ),
    )
    .unwrap();
    let key = format!("{}//alias/sts", emu.endpoint());
    pem_of(create_key(&env_for(&emu), &key, "EC_P256").ok("createKey"));
    let sts_env = |t: &str| {
        let mut env = env_for(&emu);
        env.retain(|(k, _)| !k.starts_with("ALIBABA_CLOUD_ACCESS_KEY"));
        env.push(("ALIBABA_CLOUD_ACCESS_KEY_ID".into(), STS_ID.into()));
        env.push(("ALIBABA_CLOUD_ACCESS_KEY_SECRET".into(), STS_SECRET.into()));
        env.push(("ALIBABA_CLOUD_SECURITY_TOKEN".into(), t.into()));
        env
    };
    let ok = sign_message(&sts_env(token), &key, b"m");
    ok.ok("signMessage");
    assert!(!ok.stderr.contains(token));
    let e = sign_message(&sts_env("CAIS-forged"), &key, b"m");
    assert!(
        e.err().contains("ALIBABA_CLOUD_SECURITY_TOKEN"),
        "{}",
        e.err()
    );
    assert!(!e.err().contains("CAIS-forged") && !e.err().contains(STS_SECRET));
}
