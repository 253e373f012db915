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
    // DescribeKey and ListKeyVersions, then AsymmetricSign and GetPublicKey.
    assert_eq!(lines.len(), 4, "{}", run.stderr);
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
    // The host's start-up phases, in order, each with its time since main started.
    let phases = [
        "component loaded",
        "linked",
        "instantiated",
        "component returned",
    ];
    let at = |phase: &str| {
        run.stderr
            .find(&format!("sigstore-kms-alibabakms: {phase} at +"))
            .unwrap_or_else(|| panic!("no {phase:?} line:\n{}", run.stderr))
    };
    assert!(
        phases.windows(2).all(|w| at(w[0]) < at(w[1])),
        "{}",
        run.stderr
    );

    // Quiet unless asked.
    let quiet = sign_message(&env_for(&emu), &key, b"m");
    assert!(!quiet.stderr.contains(" -> "), "{}", quiet.stderr);
    assert!(!quiet.stderr.contains(" at +"), "{}", quiet.stderr);
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

// ---- every code path that logs, and what it must never show ------------------------------

use crate::credentials_remote::{
    base_env, ecs_env, emulator_with_oidc, oidc_env, temp_dir, with_key, write, ROLE,
};
use crate::proxy::{Proxy, AUTH};
use alibabakms_emulator::{Credential, Emulator};

/// The proxy password of the proxy tests (`cosign:s3cret`), and a wrong one.
const PROXY_PASSWORD: &str = "s3cret";
const WRONG_PROXY_PASSWORD: &str = "wr0ng-pr0xy-pass";
/// A secret in the credentials URI's query.
const URI_QUERY_SECRET: &str = "uri-query-secret-5gT";

/// Nothing on stdout or stderr may show a header that carries a secret, a signature, a body
/// field holding a secret, or any value of any credential the emulator knows (configured or
/// issued by its STS and metadata service: AccessKeyId, secret, token), or `extra`.
fn assert_no_secret(run: &Run, emu: &Emulator, extra: &[&str]) {
    let out = format!("{}\n{}", run.response, run.stderr);
    let lower = out.to_ascii_lowercase();
    for forbidden in [
        "authorization",
        "signature=",
        "x-acs-security-token",
        "x-acs-accesskey-id",
        "x-aliyun-ecs-metadata-token",
        "securitytoken",
        "accesskeysecret",
        "oidctoken=",
        "basic ",
    ] {
        assert!(
            !lower.contains(forbidden),
            "{forbidden:?} in the output:\n{out}"
        );
    }
    let credentials = emu.credentials();
    assert!(!credentials.is_empty());
    for c in credentials {
        let mut values = vec![c.access_key_id.clone(), c.access_key_secret.clone()];
        values.extend(c.security_token.clone());
        for v in values {
            assert!(!out.contains(&v), "a credential value leaked:\n{out}");
        }
    }
    for v in extra
        .iter()
        .chain(&[OIDC_TOKEN, URI_QUERY_SECRET, PROXY_PASSWORD])
    {
        assert!(!out.contains(v), "{v:?} leaked:\n{out}");
    }
}

/// The debug line of a request to `host` for `action`: status 200, first attempt, and the
/// request id the emulator gave it when `request_id` is known.
fn request_line<'a>(stderr: &'a str, action: &str, host: &str) -> &'a str {
    let prefix = format!("sigstore-kms-alibabakms: {action} {host} -> HTTP 200");
    let line = stderr
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no line {prefix:?}:\n{stderr}"));
    assert!(line.contains(" ms (attempt 1, request id "), "{line}");
    line
}

/// The request id the emulator gave the last `action`.
fn request_id(emu: &Emulator, action: &str) -> String {
    emu.requests()
        .into_iter()
        .rfind(|r| r.action == action)
        .unwrap_or_else(|| panic!("no {action} request"))
        .request_id
}

#[test]
fn every_credential_source_logs_its_requests_and_no_secret() {
    let emu = emulator_with_oidc();
    emu.add_credential(Credential::sts(
        STS_ID,
        STS_SECRET,
        STS_TOKEN,
        SystemTime::now() + Duration::from_secs(3600),
    ));
    let key = with_key(&emu, "redact");
    let sts = emu.sts_endpoint();
    let kms_lines = |run: &Run| {
        for action in ["DescribeKey", "ListKeyVersions", "AsymmetricSign"] {
            let line = request_line(&run.stderr, action, &emu.endpoint());
            assert!(line.contains(&request_id(&emu, action)), "{line}");
        }
        assert!(
            run.stderr
                .contains("sigstore-kms-alibabakms: sandbox: environment variables visible: "),
            "{}",
            run.stderr
        );
    };

    // Environment with an STS token.
    let mut env = base_env(&emu, &temp_dir());
    env.extend([
        (
            "ALIBABA_CLOUD_ACCESS_KEY_ID".to_string(),
            STS_ID.to_string(),
        ),
        ("ALIBABA_CLOUD_ACCESS_KEY_SECRET".into(), STS_SECRET.into()),
        ("ALIBABA_CLOUD_SECURITY_TOKEN".into(), STS_TOKEN.into()),
    ]);
    let run = sign_message(&debug(env), &key, b"m");
    run.ok("signMessage");
    kms_lines(&run);
    assert!(run.stderr.contains(
        "credentials: using environment (ALIBABA_CLOUD_ACCESS_KEY_ID, \
         ALIBABA_CLOUD_ACCESS_KEY_SECRET, ALIBABA_CLOUD_SECURITY_TOKEN)"
    ));
    assert_no_secret(&run, &emu, &[]);

    // Environment keys assuming a role (STS AssumeRole, signed).
    let mut env = base_env(&emu, &temp_dir());
    env.extend([
        ("ALIBABA_CLOUD_ACCESS_KEY_ID".to_string(), AK_ID.to_string()),
        ("ALIBABA_CLOUD_ACCESS_KEY_SECRET".into(), AK_SECRET.into()),
        ("ALIBABA_CLOUD_ROLE_ARN".into(), ROLE.into()),
        ("ALIBABA_CLOUD_STS_ENDPOINT".into(), sts.clone()),
    ]);
    let run = sign_message(&debug(env), &key, b"m");
    run.ok("signMessage");
    kms_lines(&run);
    let line = request_line(&run.stderr, "STS AssumeRole", &sts);
    assert!(line.contains(&request_id(&emu, "AssumeRole")), "{line}");
    assert_no_secret(&run, &emu, &[]);

    // RRSA/OIDC (STS AssumeRoleWithOIDC, anonymous, the token in the body).
    let run = sign_message(&debug(oidc_env(&emu, ROLE, OIDC_TOKEN)), &key, b"m");
    run.ok("signMessage");
    kms_lines(&run);
    let line = request_line(&run.stderr, "STS AssumeRoleWithOIDC", &sts);
    assert!(
        line.contains(&request_id(&emu, "AssumeRoleWithOIDC")),
        "{line}"
    );
    assert!(run.stderr.contains("credentials: using RRSA/OIDC role"));
    assert_no_secret(&run, &emu, &[]);

    // Aliyun CLI profile in RamRoleArn mode.
    let home = temp_dir();
    write(
        &home.join(".aliyun/config.json"),
        &format!(
            r#"{{"current":"r","profiles":[{{"name":"r","mode":"RamRoleArn","access_key_id":"{CLI_ID}","access_key_secret":"{CLI_SECRET}","ram_role_arn":"{ROLE}"}}]}}"#
        ),
    );
    let mut env = base_env(&emu, &home);
    env.push(("ALIBABA_CLOUD_STS_ENDPOINT".into(), sts.clone()));
    let run = sign_message(&debug(env), &key, b"m");
    run.ok("signMessage");
    kms_lines(&run);
    request_line(&run.stderr, "STS AssumeRole", &sts);
    assert!(run.stderr.contains("assumed with Aliyun CLI profile"));
    assert_no_secret(&run, &emu, &[]);

    // ECS RAM role from the metadata service (IMDSv2 token, role name, credentials).
    let imds = emu.imds_endpoint();
    let imds_host = imds.strip_prefix("http://").unwrap().to_string();
    let run = sign_message(&debug(ecs_env(&emu)), &key, b"m");
    run.ok("signMessage");
    kms_lines(&run);
    for what in [
        "metadata token",
        "metadata role name",
        "metadata credentials",
    ] {
        request_line(&run.stderr, what, &imds_host);
    }
    assert_no_secret(&run, &emu, &[]);

    // Credentials URI, with a secret in its query: only the host is shown.
    let mut env = base_env(&emu, &temp_dir());
    env.push((
        "ALIBABA_CLOUD_CREDENTIALS_URI".into(),
        format!("{}?key={URI_QUERY_SECRET}", emu.credentials_uri()),
    ));
    let run = sign_message(&debug(env), &key, b"m");
    run.ok("signMessage");
    kms_lines(&run);
    request_line(&run.stderr, "credentials URI", &imds_host);
    assert_no_secret(&run, &emu, &[]);
}

#[test]
fn host_lines_name_connections_proxies_and_refusals_but_no_credentials() {
    let emu = emulator_with_oidc();
    let key = with_key(&emu, "hostlines");
    let proxy = Proxy::start(Some(AUTH));
    let proxied = |userinfo: &str| {
        let mut env = debug(env_for(&emu));
        env.push(("HTTPS_PROXY".into(), proxy.url(userinfo)));
        env
    };

    // Through a proxy whose URL carries user:password.
    let run = sign_message(&proxied(&format!("cosign:{PROXY_PASSWORD}@")), &key, b"m");
    run.ok("signMessage");
    let proxy_origin = proxy.url("");
    assert!(
        run.stderr.contains(&format!(
            "tunnel to {} through {proxy_origin} open",
            emu.endpoint()
        )),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(&format!(
            "connected to 127.0.0.1:{}",
            proxy_origin.rsplit(':').next().unwrap()
        )),
        "{}",
        run.stderr
    );
    request_line(&run.stderr, "AsymmetricSign", &emu.endpoint());
    assert!(proxy.tunnels() >= 1);
    assert_no_secret(&run, &emu, &["Y29zaWduOnMzY3JldA=="]);

    // A proxy refusing other credentials is named, the password is not.
    let run = sign_message(
        &proxied(&format!("cosign:{WRONG_PROXY_PASSWORD}@")),
        &key,
        b"m",
    );
    run.err();
    assert!(
        run.stderr.contains("HTTPS_PROXY") && run.stderr.contains("407"),
        "{}",
        run.stderr
    );
    assert_no_secret(&run, &emu, &[WRONG_PROXY_PASSWORD]);

    // A destination outside the allow-list is refused, and the refusal logged.
    let mut env = debug(env_for(&emu));
    env.retain(|(k, _)| k != "SIGSTORE_ALIBABAKMS_ALLOWED_HOSTS");
    let run = sign_message(&env, &key, b"m");
    run.err();
    assert!(
        run.stderr.contains(&format!(
            "denied https://{} (not in the allow-list)",
            emu.endpoint()
        )),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(&format!(
            "DescribeKey {} -> no answer: refused by the sandbox",
            emu.endpoint()
        )),
        "{}",
        run.stderr
    );
    assert_no_secret(&run, &emu, &[]);
}
