//! Credential sources that ask the network: RRSA/OIDC through STS `AssumeRoleWithOIDC` and role
//! assumption through STS `AssumeRole`, served by the emulator on loopback
//! (`ALIBABA_CLOUD_STS_ENDPOINT`), and the ECS RAM role from the
//! emulator's plain-HTTP metadata listener (`ALIBABA_CLOUD_IMDS_ENDPOINT`), which also serves
//! `ALIBABA_CLOUD_CREDENTIALS_URI`. No test reaches Alibaba Cloud or 100.100.100.200.

use crate::harness::*;
use alibabakms_emulator::{Emulator, EmulatorConfig};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

pub(crate) const ROLE: &str = "acs:ram::1234567890123456:role/cosign-signer";
pub(crate) const PROVIDER: &str = "acs:ram::1234567890123456:oidc-provider/ack-rrsa-c1";
const EXPIRED_ROLE: &str = "acs:ram::1234567890123456:role/stale";
pub(crate) const ECS_ROLE: &str = "EcsCosignSigner";
pub(crate) const SECOND_ROLE: &str = "acs:ram::1234567890123456:role/cosign-release";
const EXPIRED_TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.eyJleHAiOjF9.ZXhwaXJlZC1zaWc";

pub(crate) fn emulator_with_oidc() -> Emulator {
    Emulator::start(
        EmulatorConfig::default()
            .no_credentials()
            .access_key(AK_ID, AK_SECRET)
            .access_key(CLI_ID, CLI_SECRET)
            .access_key(INI_ID, INI_SECRET)
            .ecs_role(ECS_ROLE)
            .ram_role(ROLE)
            .ram_role(SECOND_ROLE)
            .credentials_uri()
            .oidc_role(ROLE, PROVIDER, OIDC_TOKEN)
            .oidc_role_expiring(
                EXPIRED_ROLE,
                PROVIDER,
                EXPIRED_TOKEN,
                SystemTime::now() - Duration::from_secs(600),
            ),
    )
    .unwrap()
}

pub(crate) fn temp_dir() -> PathBuf {
    let mut b = [0u8; 6];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom").unwrap(), &mut b).unwrap();
    let dir = std::env::temp_dir().join(format!("kms-e2e-remote-{}", hex::encode(b)));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub(crate) fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// Trust, allow-list and an empty HOME; no AccessKey variables.
pub(crate) fn base_env(emu: &Emulator, home: &Path) -> Vec<(String, String)> {
    let mut env = env_for(emu);
    env.retain(|(k, _)| !k.starts_with("ALIBABA_CLOUD_ACCESS_KEY"));
    env.push(("HOME".into(), home.display().to_string()));
    env
}

/// RRSA variables for `role`, with the token written to a file (as the cluster projects it).
pub(crate) fn oidc_env(emu: &Emulator, role: &str, token: &str) -> Vec<(String, String)> {
    let dir = temp_dir();
    let token_path = dir.join("rrsa-tokens/token");
    write(&token_path, token);
    let mut env = base_env(emu, &dir.join("home"));
    env.extend([
        ("ALIBABA_CLOUD_ROLE_ARN".to_string(), role.to_string()),
        (
            "ALIBABA_CLOUD_OIDC_PROVIDER_ARN".to_string(),
            PROVIDER.to_string(),
        ),
        (
            "ALIBABA_CLOUD_OIDC_TOKEN_FILE".to_string(),
            token_path.display().to_string(),
        ),
        ("ALIBABA_CLOUD_STS_ENDPOINT".to_string(), emu.sts_endpoint()),
    ]);
    env
}

pub(crate) fn with_key(emu: &Emulator, alias: &str) -> String {
    let key = emu.create_key("EC_P256").unwrap();
    emu.create_alias(&format!("alias/{alias}"), &key.key_id)
        .unwrap();
    format!("{}//alias/{alias}", emu.endpoint())
}

/// The AccessKey that signed the last KMS request, and whether it carried an STS token.
pub(crate) fn last_kms_credential(emu: &Emulator) -> (String, Option<String>) {
    let r = emu
        .requests()
        .into_iter()
        .rev()
        .find(|r| r.header("x-acs-version") == Some("2016-01-20"))
        .expect("a KMS request");
    let auth = r.header("authorization").unwrap();
    let id = auth
        .split("Credential=")
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .to_string();
    (id, r.header("x-acs-security-token").map(str::to_string))
}

#[test]
fn rrsa_oidc_signs_end_to_end() {
    let emu = emulator_with_oidc();
    let key = with_key(&emu, "rrsa");
    let mut env = oidc_env(&emu, ROLE, OIDC_TOKEN);
    env.push(("SIGSTORE_ALIBABAKMS_DEBUG".into(), "1".into()));
    let pem = pem_of(public_key(&env, &key).ok("publicKey"));
    let run = sign_message(&env, &key, b"signed with RRSA");
    let sig = signature_of(&run);
    assert!(openssl_verify(&pem, b"signed with RRSA", &sig, "sha256"));
    let (id, token) = last_kms_credential(&emu);
    assert!(id.starts_with("STS."), "{id}");
    let token = token.expect("STS credentials carry their token");
    // Neither the issued secret token nor the OIDC token shows anywhere (SECRETS covers the
    // latter in every run).
    assert!(!run.stderr.contains(&token) && !run.response.to_string().contains(&token));
    assert_eq!(
        emu.stats().action("AssumeRoleWithOIDC"),
        2,
        "one exchange per run"
    );
    let sts = emu
        .requests()
        .into_iter()
        .find(|r| r.action == "AssumeRoleWithOIDC")
        .unwrap();
    assert!(sts.header("authorization").is_none(), "anonymous");
    assert_eq!(sts.params.get("RoleArn").map(String::as_str), Some(ROLE));
    assert!(sts.params["RoleSessionName"].starts_with("sigstore-kms-alibabakms-"));
    assert!(
        !sts.path_and_query.contains("OIDCToken"),
        "the token travels in the body"
    );
}

#[test]
fn the_session_name_comes_from_the_environment() {
    let emu = emulator_with_oidc();
    let key = with_key(&emu, "session");
    let mut env = oidc_env(&emu, ROLE, OIDC_TOKEN);
    env.push((
        "ALIBABA_CLOUD_ROLE_SESSION_NAME".into(),
        "release-42".into(),
    ));
    public_key(&env, &key).ok("publicKey");
    let sts = emu
        .requests()
        .into_iter()
        .find(|r| r.action == "AssumeRoleWithOIDC")
        .unwrap();
    assert_eq!(sts.params["RoleSessionName"], "release-42");
}

#[test]
fn environment_keys_come_before_oidc_and_assume_the_role() {
    // Static keys with ALIBABA_CLOUD_ROLE_ARN: AssumeRole signed with them, never OIDC.
    let emu = emulator_with_oidc();
    let key = with_key(&emu, "envfirst");
    let mut env = oidc_env(&emu, ROLE, OIDC_TOKEN);
    env.push(("ALIBABA_CLOUD_ACCESS_KEY_ID".into(), AK_ID.into()));
    env.push(("ALIBABA_CLOUD_ACCESS_KEY_SECRET".into(), AK_SECRET.into()));
    let pem = pem_of(public_key(&env, &key).ok("publicKey"));
    let sig = signature_of(&sign_message(&env, &key, b"assumed"));
    assert!(openssl_verify(&pem, b"assumed", &sig, "sha256"));
    assert!(last_kms_credential(&emu).0.starts_with("STS."));
    assert_eq!(emu.stats().action("AssumeRoleWithOIDC"), 0);
    assert_eq!(emu.stats().action("AssumeRole"), 2);
    let assume = emu
        .requests()
        .into_iter()
        .find(|r| r.action == "AssumeRole")
        .unwrap();
    assert!(assume
        .header("authorization")
        .unwrap()
        .contains(&format!("Credential={AK_ID},")));

    // Without the role ARN, the keys sign KMS requests themselves.
    env.retain(|(k, _)| k != "ALIBABA_CLOUD_ROLE_ARN");
    sign_message(&env, &key, b"m").ok("signMessage");
    assert_eq!(last_kms_credential(&emu), (AK_ID.to_string(), None));

    // A role STS does not know is a clear error.
    env.push((
        "ALIBABA_CLOUD_ROLE_ARN".into(),
        "acs:ram::1:role/nope".into(),
    ));
    let e = public_key(&env, &key).err().to_string();
    assert!(
        e.contains("EntityNotExist.Role") && e.contains("acs:ram::1:role/nope"),
        "{e}"
    );
}

#[test]
fn cli_ram_role_arn_and_ini_ram_role_arn_assume_their_role() {
    let emu = emulator_with_oidc();
    let key = with_key(&emu, "filerole");
    let home = temp_dir();
    write(
        &home.join(".aliyun/config.json"),
        &format!(
            r#"{{"current":"r","profiles":[{{"name":"r","mode":"RamRoleArn","access_key_id":"{CLI_ID}","access_key_secret":"{CLI_SECRET}","ram_role_arn":"{ROLE}","ram_session_name":"cli-session"}}]}}"#
        ),
    );
    let mut env = base_env(&emu, &home);
    env.push(("ALIBABA_CLOUD_STS_ENDPOINT".into(), emu.sts_endpoint()));
    sign_message(&env, &key, b"m").ok("signMessage");
    assert!(last_kms_credential(&emu).0.starts_with("STS."));
    let assume = emu
        .requests()
        .into_iter()
        .rfind(|r| r.action == "AssumeRole")
        .unwrap();
    assert!(assume
        .header("authorization")
        .unwrap()
        .contains(&format!("Credential={CLI_ID},")));
    assert_eq!(assume.params["RoleSessionName"], "cli-session");

    let home = temp_dir();
    write(
        &home.join(".alibabacloud/credentials"),
        &format!("[default]\ntype = ram_role_arn\naccess_key_id = {INI_ID}\naccess_key_secret = {INI_SECRET}\nrole_arn = {ROLE}\n"),
    );
    let mut env = base_env(&emu, &home);
    env.push(("ALIBABA_CLOUD_STS_ENDPOINT".into(), emu.sts_endpoint()));
    sign_message(&env, &key, b"m").ok("signMessage");
    let assume = emu
        .requests()
        .into_iter()
        .rfind(|r| r.action == "AssumeRole")
        .unwrap();
    assert!(assume
        .header("authorization")
        .unwrap()
        .contains(&format!("Credential={INI_ID},")));
    assert_eq!(emu.stats().action("AssumeRole"), 2);
}

#[test]
fn oidc_comes_before_the_cli_profile() {
    let emu = emulator_with_oidc();
    let key = with_key(&emu, "beforecli");
    let env = oidc_env(&emu, ROLE, OIDC_TOKEN);
    let home = env.iter().find(|(k, _)| k == "HOME").unwrap().1.clone();
    write(
        &Path::new(&home).join(".aliyun/config.json"),
        &format!(
            r#"{{"current":"default","profiles":[{{"name":"default","mode":"AK","access_key_id":"{CLI_ID}","access_key_secret":"{CLI_SECRET}"}}]}}"#
        ),
    );
    sign_message(&env, &key, b"m").ok("signMessage");
    assert!(last_kms_credential(&emu).0.starts_with("STS."));

    // Without the OIDC variables the same HOME uses the CLI profile.
    let mut env = env;
    env.retain(|(k, _)| k != "ALIBABA_CLOUD_OIDC_TOKEN_FILE");
    sign_message(&env, &key, b"m").ok("signMessage");
    assert_eq!(last_kms_credential(&emu).0, CLI_ID);
}

#[test]
fn an_expired_or_invalid_token_is_a_clear_error() {
    let emu = emulator_with_oidc();
    let key = with_key(&emu, "bad");
    let run = public_key(&oidc_env(&emu, EXPIRED_ROLE, EXPIRED_TOKEN), &key);
    let e = run.err();
    assert!(
        e.contains("AuthenticationFail.OIDCToken.Expired")
            && e.contains("has expired")
            && e.contains(EXPIRED_ROLE),
        "{e}"
    );
    assert!(!e.contains(EXPIRED_TOKEN) && !run.stderr.contains(EXPIRED_TOKEN));

    let run = public_key(&oidc_env(&emu, ROLE, "eyJ.forged.token"), &key);
    let e = run.err();
    assert!(e.contains("InvalidParameter.OIDCToken"), "{e}");
    assert!(!e.contains("eyJ.forged.token") && !run.stderr.contains("eyJ.forged.token"));
}

#[test]
fn a_missing_token_file_is_a_clear_error() {
    let emu = emulator_with_oidc();
    let key = with_key(&emu, "nofile");
    let mut env = oidc_env(&emu, ROLE, OIDC_TOKEN);
    for (k, v) in env.iter_mut() {
        if k == "ALIBABA_CLOUD_OIDC_TOKEN_FILE" {
            *v = "/nonexistent/rrsa/token".into();
        }
    }
    let e = public_key(&env, &key).err().to_string();
    assert!(
        e.contains("ALIBABA_CLOUD_OIDC_TOKEN_FILE=/nonexistent/rrsa/token"),
        "{e}"
    );
    assert_eq!(emu.stats().action("AssumeRoleWithOIDC"), 0);
}

#[test]
fn the_sts_endpoint_must_be_reachable_through_the_sandbox() {
    // The STS override names a host the sandbox allows because the user named it; a closed
    // port there is a connection error that names STS, not a hang.
    let emu = emulator_with_oidc();
    let key = with_key(&emu, "closed");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let mut env = oidc_env(&emu, ROLE, OIDC_TOKEN);
    for (k, v) in env.iter_mut() {
        if k == "ALIBABA_CLOUD_STS_ENDPOINT" {
            *v = format!("127.0.0.1:{port}");
        }
    }
    let e = public_key(&env, &key).err().to_string();
    assert!(
        e.contains("AssumeRoleWithOIDC got no answer") && e.contains(&format!("127.0.0.1:{port}")),
        "{e}"
    );
}

/// Host and guest read ALIBABA_CLOUD_STS_ENDPOINT with one parser: every form the guest calls
/// is allowed by the sandbox (https:// and a trailing `/` included), and a form it refuses
/// (plain http://) is named as the variable's fault, not as a missing allow-list entry.
#[test]
fn every_sts_endpoint_form_works_or_is_named() {
    let emu = emulator_with_oidc();
    let key = with_key(&emu, "stsforms");
    let with_endpoint = |value: String| {
        let mut env = oidc_env(&emu, ROLE, OIDC_TOKEN);
        env.retain(|(k, _)| k != "ALIBABA_CLOUD_STS_ENDPOINT");
        env.push(("ALIBABA_CLOUD_STS_ENDPOINT".into(), value));
        public_key(&env, &key)
    };
    for value in [
        emu.sts_endpoint(),
        format!("https://{}", emu.sts_endpoint()),
        format!("https://{}/", emu.sts_endpoint()),
    ] {
        with_endpoint(value.clone()).ok("publicKey");
    }
    let e = with_endpoint(format!("http://{}", emu.sts_endpoint()))
        .err()
        .to_string();
    assert!(
        e.contains("ALIBABA_CLOUD_STS_ENDPOINT=http://") && e.contains("HTTPS only"),
        "{e}"
    );
    assert!(!e.contains("SIGSTORE_ALIBABAKMS_ALLOWED_HOSTS"), "{e}");
}

/// The ECS source enabled and pointed at the emulator's metadata listener.
pub(crate) fn ecs_env(emu: &Emulator) -> Vec<(String, String)> {
    let mut env = base_env(emu, &temp_dir());
    env.retain(|(k, _)| k != "ALIBABA_CLOUD_ECS_METADATA_DISABLED");
    env.push(("ALIBABA_CLOUD_IMDS_ENDPOINT".into(), emu.imds_endpoint()));
    env
}

#[test]
fn the_ecs_ram_role_signs_end_to_end() {
    let emu = emulator_with_oidc();
    let key = with_key(&emu, "ecs");
    let mut env = ecs_env(&emu);
    env.push(("SIGSTORE_ALIBABAKMS_DEBUG".into(), "1".into()));
    let pem = pem_of(public_key(&env, &key).ok("publicKey"));
    let run = sign_message(&env, &key, b"signed on ECS");
    assert!(openssl_verify(
        &pem,
        b"signed on ECS",
        &signature_of(&run),
        "sha256"
    ));
    let (id, token) = last_kms_credential(&emu);
    assert!(id.starts_with("STS."), "{id}");
    let token = token.unwrap();
    assert!(!run.stderr.contains(&token) && !run.response.to_string().contains(&token));
    // Per run: the IMDSv2 token, the role name, the role's credentials.
    assert_eq!(emu.stats().imds_requests, 6);

    // A configured role name skips discovery.
    let mut env = ecs_env(&emu);
    env.push(("ALIBABA_CLOUD_ECS_METADATA".into(), ECS_ROLE.into()));
    public_key(&env, &key).ok("publicKey");
    assert_eq!(emu.stats().imds_requests, 8);
}

#[test]
fn the_credentials_file_comes_before_ecs() {
    let emu = emulator_with_oidc();
    let key = with_key(&emu, "inifirst");
    let mut env = ecs_env(&emu);
    let home = temp_dir();
    write(
        &home.join(".alibabacloud/credentials"),
        &format!("[default]\ntype = access_key\naccess_key_id = {INI_ID}\naccess_key_secret = {INI_SECRET}\n"),
    );
    for (k, v) in env.iter_mut() {
        if k == "HOME" {
            *v = home.display().to_string();
        }
    }
    sign_message(&env, &key, b"m").ok("signMessage");
    assert_eq!(last_kms_credential(&emu).0, INI_ID);
    assert_eq!(emu.stats().imds_requests, 0);
}

#[test]
fn ecs_metadata_disabled_or_absent_fails_fast() {
    let emu = emulator_with_oidc();
    let key = with_key(&emu, "noecs");

    let mut env = ecs_env(&emu);
    env.push(("ALIBABA_CLOUD_ECS_METADATA_DISABLED".into(), "true".into()));
    let started = std::time::Instant::now();
    let e = public_key(&env, &key).err().to_string();
    let disabled = started.elapsed();
    assert!(
        e.contains("ECS RAM role: disabled by ALIBABA_CLOUD_ECS_METADATA_DISABLED"),
        "{e}"
    );
    assert_eq!(emu.stats().imds_requests, 0);

    // Nothing listens at the metadata address: one refused connection, then the error.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let mut env = ecs_env(&emu);
    for (k, v) in env.iter_mut() {
        if k == "ALIBABA_CLOUD_IMDS_ENDPOINT" {
            *v = format!("http://127.0.0.1:{port}");
        }
    }
    let started = std::time::Instant::now();
    let e = public_key(&env, &key).err().to_string();
    let absent = started.elapsed();
    assert!(
        e.contains(&format!(
            "no ECS metadata service answered at http://127.0.0.1:{port}"
        )),
        "{e}"
    );
    eprintln!(
        "no credentials: {disabled:?} with ECS disabled, {absent:?} with nothing at the \
         metadata address (the ECS step: {:?})",
        absent.saturating_sub(disabled)
    );
    assert!(absent < Duration::from_secs(10), "{absent:?}");
}

#[test]
fn a_key_uri_alone_cannot_reach_plain_http() {
    // The metadata listener is plain HTTP; naming it as a KMS endpoint (HTTPS) in the key URI,
    // even when allow-listed, never turns into a plain-HTTP request.
    let emu = emulator_with_oidc();
    let imds = emu
        .imds_endpoint()
        .trim_start_matches("http://")
        .to_string();
    let mut env = env_for(&emu);
    env.push(("SIGSTORE_ALIBABAKMS_ALLOWED_HOSTS".into(), imds.clone()));
    let e = public_key(&env, &format!("{imds}//alias/x"))
        .err()
        .to_string();
    // Only a TLS handshake arrived there, never a metadata request.
    assert_eq!(emu.stats().imds_requests, 0, "{e}");
    assert!(e.contains(&imds), "{e}");
}

#[test]
fn cli_ecs_ram_role_chainable_profiles_and_ini_ecs_ram_role() {
    let emu = emulator_with_oidc();
    let key = with_key(&emu, "profiles");
    let home = temp_dir();
    write(
        &home.join(".aliyun/config.json"),
        &format!(
            r#"{{"current":"chain2","profiles":[
            {{"name":"ecs","mode":"EcsRamRole","ram_role_name":"{ECS_ROLE}"}},
            {{"name":"chain1","mode":"ChainableRamRoleArn","source_profile":"ecs","ram_role_arn":"{ROLE}"}},
            {{"name":"chain2","mode":"ChainableRamRoleArn","source_profile":"chain1","ram_role_arn":"{SECOND_ROLE}"}},
            {{"name":"loop","mode":"ChainableRamRoleArn","source_profile":"loop","ram_role_arn":"{ROLE}"}}]}}"#
        ),
    );
    // The chain's own ECS step stays disabled: the profile names the role itself.
    let mut env = base_env(&emu, &home);
    env.push(("ALIBABA_CLOUD_IMDS_ENDPOINT".into(), emu.imds_endpoint()));
    env.push(("ALIBABA_CLOUD_STS_ENDPOINT".into(), emu.sts_endpoint()));
    let pem = pem_of(public_key(&env, &key).ok("publicKey"));
    let sig = signature_of(&sign_message(&env, &key, b"chained"));
    assert!(openssl_verify(&pem, b"chained", &sig, "sha256"));
    // Per run: token + role credentials (no discovery), then two AssumeRole calls.
    assert_eq!(emu.stats().imds_requests, 4);
    assert_eq!(emu.stats().action("AssumeRole"), 4);
    let roles: Vec<String> = emu
        .requests()
        .into_iter()
        .filter(|r| r.action == "AssumeRole")
        .map(|r| r.params["RoleArn"].clone())
        .collect();
    assert_eq!(&roles[..2], [ROLE, SECOND_ROLE]);

    let mut looped = env.clone();
    looped.push(("ALIBABA_CLOUD_PROFILE".into(), "loop".into()));
    let e = public_key(&looped, &key).err().to_string();
    assert!(e.contains("chain in a loop: loop -> loop"), "{e}");

    let home = temp_dir();
    write(
        &home.join(".alibabacloud/credentials"),
        &format!("[default]\ntype = ecs_ram_role\nrole_name = {ECS_ROLE}\n"),
    );
    let mut env = base_env(&emu, &home);
    env.push(("ALIBABA_CLOUD_IMDS_ENDPOINT".into(), emu.imds_endpoint()));
    sign_message(&env, &key, b"m").ok("signMessage");
    assert!(last_kms_credential(&emu).0.starts_with("STS."));
    assert_eq!(emu.stats().imds_requests, 6);
}

#[test]
fn the_credentials_uri_signs_after_ecs() {
    let emu = emulator_with_oidc();
    let key = with_key(&emu, "uri");
    let mut env = base_env(&emu, &temp_dir());
    env.push((
        "ALIBABA_CLOUD_CREDENTIALS_URI".into(),
        emu.credentials_uri(),
    ));
    let pem = pem_of(public_key(&env, &key).ok("publicKey"));
    let sig = signature_of(&sign_message(&env, &key, b"from the URI"));
    assert!(openssl_verify(&pem, b"from the URI", &sig, "sha256"));
    assert!(last_kms_credential(&emu).0.starts_with("STS."));
    assert_eq!(emu.stats().imds_requests, 2, "one GET per run");

    // ECS comes first when it answers.
    let mut env = ecs_env(&emu);
    env.push((
        "ALIBABA_CLOUD_CREDENTIALS_URI".into(),
        emu.credentials_uri(),
    ));
    public_key(&env, &key).ok("publicKey");
    assert_eq!(
        emu.stats().imds_requests,
        5,
        "token, role, credentials; no URI"
    );

    // A URI that answers an error is named by its host alone: tokens often live in the path,
    // so neither path nor query is shown, in the answer or in the debug lines.
    let mut env = base_env(&emu, &temp_dir());
    env.push((
        "ALIBABA_CLOUD_CREDENTIALS_URI".into(),
        format!(
            "{}/token-in-path-9f3k/creds?secret=abc123",
            emu.imds_endpoint()
        ),
    ));
    env.push(("SIGSTORE_ALIBABAKMS_DEBUG".into(), "1".into()));
    let run = public_key(&env, &key);
    let e = run.err().to_string();
    assert!(
        e.contains("HTTP 401") && e.contains(&emu.imds_endpoint()),
        "{e}"
    );
    for shown in [&e, &run.stderr] {
        assert!(
            !shown.contains("token-in-path-9f3k") && !shown.contains("abc123"),
            "{shown}"
        );
    }
    // Nor on success: the source named in the debug line is the host.
    let mut env = base_env(&emu, &temp_dir());
    env.push((
        "ALIBABA_CLOUD_CREDENTIALS_URI".into(),
        emu.credentials_uri(),
    ));
    env.push(("SIGSTORE_ALIBABAKMS_DEBUG".into(), "1".into()));
    let run = public_key(&env, &key);
    run.ok("publicKey");
    let path = emu.credentials_uri().replace(&emu.imds_endpoint(), "");
    assert!(
        path.len() > 1 && !run.stderr.contains(&path),
        "{}",
        run.stderr
    );
}

/// credentials-go requires the credentials URI's `Expiration` and honours it: credentials the
/// URI answers already past it are refused with their time, before KMS is asked. (The
/// emulator's clock runs 7 hours behind, so what it hands out for 6 hours has expired.)
#[test]
fn credentials_the_uri_answers_already_expired_are_refused_with_their_time() {
    let emu = Emulator::start(
        EmulatorConfig::default()
            .no_credentials()
            .credentials_uri()
            .clock_offset_secs(-7 * 3600),
    )
    .unwrap();
    let key = format!("{}//alias/uri-expired", emu.endpoint());
    let mut env = base_env(&emu, &temp_dir());
    env.push((
        "ALIBABA_CLOUD_CREDENTIALS_URI".into(),
        emu.credentials_uri(),
    ));
    let e = public_key(&env, &key).err().to_string();
    assert!(
        e.contains("expired at") && e.contains("must hand out fresh ones"),
        "{e}"
    );
    assert_eq!(emu.stats().imds_requests, 1, "one GET");
    assert_eq!(emu.stats().action("ListKeyVersions"), 0, "KMS never asked");
}

/// Every request carries its body as Alibaba's official SDKs do: with a Content-Length, never
/// chunked (gateways and proxies that take no chunked uploads answer 411, and a server that
/// reads bodies by length misreads the chunk trailer as the next request). The metadata
/// listener refuses chunked requests, so the ECS run fails if one is sent.
#[test]
fn every_request_is_framed_with_its_length() {
    use alibabakms_emulator::Framing;
    let emu = emulator_with_oidc();
    let key = with_key(&emu, "framing");
    for env in [
        oidc_env(&emu, ROLE, OIDC_TOKEN),
        ecs_env(&emu),
        env_for(&emu),
    ] {
        sign_message(&env, &key, b"framed").ok("signMessage");
    }
    let requests = emu.requests();
    assert!(requests.iter().any(|r| r.action == "AssumeRoleWithOIDC"));
    assert!(requests.iter().any(|r| r.action == "AsymmetricSign"));
    for r in &requests {
        match r.action.as_str() {
            // The STS form body, with its length.
            "AssumeRoleWithOIDC" => assert!(
                matches!(r.framing(), Framing::ContentLength(n) if n > 0),
                "{r:?}"
            ),
            // KMS: parameters in the query, an empty body, `Content-Length: 0`.
            _ => assert_eq!(r.framing(), Framing::ContentLength(0), "{}", r.action),
        }
    }
    assert!(
        emu.stats().imds_requests >= 3,
        "the ECS run asked the metadata service"
    );
    assert_no_chunked(&emu);
}
