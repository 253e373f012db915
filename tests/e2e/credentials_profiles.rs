//! Aliyun CLI profiles whose secrets live outside config.json: mode `OIDC` (its
//! `oidc_token_file` is named inside the config, so the host reads the config to share that
//! file's directory, and nothing wider), alone and as the source of a `ChainableRamRoleArn`;
//! a role assumption's `policy` and `external_id`; the sign-in modes `CloudSSO` and `OAuth`
//! (whose sign-in host the sandbox allows because the selected profile names it) and the
//! refused `External`; and the ECS metadata IMDSv1/IMDSv2 switches. Everything is served by
//! the emulator on loopback.

use crate::credentials_remote::*;
use crate::harness::*;
use alibabakms_emulator::{Emulator, EmulatorConfig};
use std::path::{Path, PathBuf};

/// A role whose trust policy requires an ExternalId.
const GUARDED_ROLE: &str = "acs:ram::1234567890123456:role/cosign-guarded";
const EXTERNAL_ID: &str = "ext-7f3a";

/// The OIDC token written where the profile names it, and a HOME holding the config.
struct OidcSetup {
    home: PathBuf,
    token_dir: PathBuf,
    token_path: PathBuf,
}

fn oidc_profile_setup(token: &str, extra_profiles: &str, current: &str) -> OidcSetup {
    let root = temp_dir();
    let token_dir = std::fs::canonicalize(&root).unwrap().join("rrsa-tokens");
    let token_path = token_dir.join("token");
    write(&token_path, token);
    let home = root.join("home");
    write(
        &home.join(".aliyun/config.json"),
        &format!(
            r#"{{"current":"{current}","profiles":[
            {{"name":"ci","mode":"OIDC","region_id":"cn-hangzhou","ram_role_arn":"{ROLE}","oidc_provider_arn":"{PROVIDER}","oidc_token_file":"{}","ram_session_name":"ci-oidc-session"}}{extra_profiles}]}}"#,
            token_path.display()
        ),
    );
    OidcSetup {
        home,
        token_dir,
        token_path,
    }
}

fn profile_env(emu: &Emulator, home: &Path) -> Vec<(String, String)> {
    let mut env = base_env(emu, home);
    env.push(("ALIBABA_CLOUD_STS_ENDPOINT".into(), emu.sts_endpoint()));
    env
}

#[test]
fn a_cli_oidc_profile_signs_end_to_end() {
    let emu = emulator_with_oidc();
    let key = with_key(&emu, "cli-oidc");
    let s = oidc_profile_setup(OIDC_TOKEN, "", "ci");
    let mut env = profile_env(&emu, &s.home);
    env.push(("SIGSTORE_ALIBABAKMS_DEBUG".into(), "1".into()));
    let pem = pem_of(public_key(&env, &key).ok("publicKey"));
    let run = sign_message(&env, &key, b"signed with a CLI OIDC profile");
    assert!(openssl_verify(
        &pem,
        b"signed with a CLI OIDC profile",
        &signature_of(&run),
        "sha256"
    ));
    let (id, token) = last_kms_credential(&emu);
    assert!(id.starts_with("STS."), "{id}");
    let token = token.unwrap();
    assert!(!run.stderr.contains(&token) && !run.response.to_string().contains(&token));
    assert!(
        run.stderr.contains("Aliyun CLI profile \"ci\""),
        "the debug line names the source: {}",
        run.stderr
    );
    assert_eq!(emu.stats().action("AssumeRoleWithOIDC"), 2, "one per run");
    let sts = emu
        .requests()
        .into_iter()
        .find(|r| r.action == "AssumeRoleWithOIDC")
        .unwrap();
    assert!(sts.header("authorization").is_none(), "anonymous");
    assert_eq!(sts.params["RoleArn"], ROLE);
    assert_eq!(sts.params["OIDCProviderArn"], PROVIDER);
    assert_eq!(sts.params["RoleSessionName"], "ci-oidc-session");

    // The sandbox shares the token's directory at its own path, and nothing wider.
    let text = print_sandbox(&env);
    let dir = s.token_dir.display().to_string();
    assert!(
        text.contains(&format!(
            "  {dir}/ -> {dir}/ (directory of the oidc_token_file of profile \"ci\" in "
        )),
        "{text}"
    );
    let root = s.token_dir.parent().unwrap().display().to_string();
    assert!(
        !text
            .lines()
            .any(|l| l.contains(&format!("{root}/ ")) || l.contains(&format!("{root}/home/ "))),
        "{text}"
    );
}

#[test]
fn a_chainable_profile_with_an_oidc_source_signs_with_policy_and_external_id() {
    let emu = Emulator::start(
        EmulatorConfig::default()
            .no_credentials()
            .oidc_role(ROLE, PROVIDER, OIDC_TOKEN)
            .ram_role_with_external_id(GUARDED_ROLE, EXTERNAL_ID),
    )
    .unwrap();
    let key = with_key(&emu, "chain-oidc");
    let policy = r#"{\"Version\":\"1\",\"Statement\":[{\"Effect\":\"Allow\",\"Action\":\"kms:*\",\"Resource\":\"*\"}]}"#;
    let s = oidc_profile_setup(
        OIDC_TOKEN,
        &format!(
            r#",
            {{"name":"release","mode":"ChainableRamRoleArn","source_profile":"ci","ram_role_arn":"{GUARDED_ROLE}","ram_session_name":"release","external_id":"{EXTERNAL_ID}","policy":"{policy}"}},
            {{"name":"no-id","mode":"ChainableRamRoleArn","source_profile":"ci","ram_role_arn":"{GUARDED_ROLE}"}}"#
        ),
        "release",
    );
    let env = profile_env(&emu, &s.home);
    let pem = pem_of(public_key(&env, &key).ok("publicKey"));
    let sig = signature_of(&sign_message(&env, &key, b"chained from OIDC"));
    assert!(openssl_verify(&pem, b"chained from OIDC", &sig, "sha256"));
    assert_eq!(emu.stats().action("AssumeRoleWithOIDC"), 2);
    assert_eq!(emu.stats().action("AssumeRole"), 2);
    let assume = emu
        .requests()
        .into_iter()
        .find(|r| r.action == "AssumeRole")
        .unwrap();
    // Signed by the credentials the OIDC exchange issued, with the profile's extras.
    let auth = assume.header("authorization").unwrap();
    assert!(auth.contains("Credential=STS."), "{auth}");
    assert!(assume.header("x-acs-security-token").is_some());
    assert_eq!(assume.params["RoleArn"], GUARDED_ROLE);
    assert_eq!(assume.params["ExternalId"], EXTERNAL_ID);
    assert_eq!(assume.params["Policy"], policy.replace('\\', ""));
    // The source's token directory is shared for the chain.
    assert!(print_sandbox(&env).contains(&format!(
        "{}/ (directory of the oidc_token_file of profile \"ci\"",
        s.token_dir.display()
    )));

    // Without the ExternalId the role's trust policy refuses, and the error says so.
    let mut env = env;
    env.push(("ALIBABA_CLOUD_PROFILE".into(), "no-id".into()));
    let e = public_key(&env, &key).err().to_string();
    assert!(
        e.contains("NoPermission") && e.contains(GUARDED_ROLE),
        "{e}"
    );
}

#[test]
fn an_unreadable_oidc_token_file_names_the_profile_and_the_path() {
    let emu = emulator_with_oidc();
    let key = with_key(&emu, "cli-oidc-missing");
    let s = oidc_profile_setup(OIDC_TOKEN, "", "ci");
    std::fs::remove_file(&s.token_path).unwrap();
    let env = profile_env(&emu, &s.home);
    let e = public_key(&env, &key).err().to_string();
    let path = s.token_path.display().to_string();
    assert!(
        e.contains(&format!(
            "cannot read the oidc_token_file {path} of profile \"ci\""
        )),
        "{e}"
    );
    assert_eq!(emu.stats().action("AssumeRoleWithOIDC"), 0);
    assert!(print_sandbox(&env).contains(&format!("not shared: {path}")));

    // A token in the home directory itself is not shared (that would share HOME): the error
    // names the file, and --print-sandbox says why.
    let s = oidc_profile_setup(OIDC_TOKEN, "", "ci");
    let in_home = s.home.join("token");
    write(&in_home, OIDC_TOKEN);
    let config = s.home.join(".aliyun/config.json");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        &s.token_path.display().to_string(),
        &in_home.display().to_string(),
    );
    write(&config, &text);
    let env = profile_env(&emu, &s.home);
    let e = public_key(&env, &key).err().to_string();
    assert!(
        e.contains(&format!(
            "the oidc_token_file {} of profile \"ci\"",
            in_home.display()
        )),
        "{e}"
    );
    let shown = print_sandbox(&env);
    assert!(shown.contains("contains the home directory"), "{shown}");
    assert!(
        !shown.contains(&format!("{}/ ->", s.home.display())),
        "{shown}"
    );

    // A malformed config: the guest reports it, the host shares nothing extra.
    write(&config, "{\"current\": \"ci\", \"profiles\": [");
    let e = public_key(&env, &key).err().to_string();
    assert!(e.contains("not a valid Aliyun CLI config"), "{e}");
}

#[test]
fn a_token_file_directly_in_home_is_refused_by_name_and_home_is_never_shared() {
    let emu = emulator_with_oidc();
    let key = with_key(&emu, "token-in-home");
    let home = std::fs::canonicalize(temp_dir()).unwrap().join("home");
    let token = home.join("token");
    write(&token, OIDC_TOKEN);
    // A sibling in HOME that would work as a token if HOME were shared, named by the CLI
    // profile: it must not be readable either.
    let sibling = home.join("sibling-token");
    write(&sibling, OIDC_TOKEN);
    write(
        &home.join(".aliyun/config.json"),
        &format!(
            r#"{{"current":"ci","profiles":[{{"name":"ci","mode":"OIDC","ram_role_arn":"{ROLE}","oidc_provider_arn":"{PROVIDER}","oidc_token_file":"{}"}}]}}"#,
            sibling.display()
        ),
    );
    let mut env = profile_env(&emu, &home);
    env.extend([
        ("ALIBABA_CLOUD_ROLE_ARN".to_string(), ROLE.to_string()),
        (
            "ALIBABA_CLOUD_OIDC_PROVIDER_ARN".to_string(),
            PROVIDER.to_string(),
        ),
        (
            "ALIBABA_CLOUD_OIDC_TOKEN_FILE".to_string(),
            token.display().to_string(),
        ),
    ]);
    let e = public_key(&env, &key).err().to_string();
    let path = token.display().to_string();
    assert!(
        e.contains(&format!(
            "ALIBABA_CLOUD_OIDC_TOKEN_FILE={path} is not shared with the plugin's sandbox: its \
             directory {} is / or contains your home directory",
            home.display()
        )) && e.contains("Move the file into a directory of its own (e.g. ~/.alibabacloud/)"),
        "{e}"
    );
    assert!(
        e.contains(&format!(
            "cannot read the oidc_token_file {}",
            sibling.display()
        )) && e.contains("contains your home directory: keep the token in a directory of its own"),
        "{e}"
    );
    assert_eq!(emu.stats().action("AssumeRoleWithOIDC"), 0, "nothing read");
    let shown = print_sandbox(&env);
    assert!(
        shown.contains(&format!(
            "not shared: ALIBABA_CLOUD_OIDC_TOKEN_FILE={path} (its directory is / or contains \
             the home directory"
        )),
        "{shown}"
    );
    assert!(!shown.contains("/credentials/oidc"), "{shown}");
    assert!(
        !shown.contains(&format!("{} ->", home.display()))
            && !shown.contains(&format!("{}/ ->", home.display())),
        "{shown}"
    );

    // Moved into a directory of its own, as the error says, it signs.
    let own = home.join(".alibabacloud/rrsa/token");
    write(&own, OIDC_TOKEN);
    env.retain(|(k, _)| k != "ALIBABA_CLOUD_OIDC_TOKEN_FILE");
    env.push((
        "ALIBABA_CLOUD_OIDC_TOKEN_FILE".into(),
        own.display().to_string(),
    ));
    sign_message(&env, &key, b"m").ok("signMessage");
    assert_eq!(emu.stats().action("AssumeRoleWithOIDC"), 1);
}

/// The `DurationSeconds` of the last STS request, and how long the session the emulator issued
/// for the last KMS request's credential lasts from now.
fn last_session(emu: &Emulator) -> (String, u64) {
    let sts = emu
        .requests()
        .into_iter()
        .rev()
        .find(|r| r.action == "AssumeRoleWithOIDC")
        .unwrap();
    let id = last_kms_credential(emu).0;
    let left = emu
        .credential_expiration(&id)
        .unwrap()
        .duration_since(std::time::SystemTime::now())
        .unwrap()
        .as_secs();
    (sts.params["DurationSeconds"].clone(), left)
}

#[test]
fn expired_seconds_and_the_session_expiration_variable_set_the_session_length() {
    let emu = Emulator::start(
        EmulatorConfig::default()
            .no_credentials()
            .oidc_role(ROLE, PROVIDER, OIDC_TOKEN)
            .max_session_duration(ROLE, 43200),
    )
    .unwrap();
    let key = with_key(&emu, "session-length");
    let s = oidc_profile_setup(OIDC_TOKEN, "", "ci");
    let config = s.home.join(".aliyun/config.json");
    let plain = std::fs::read_to_string(&config).unwrap();
    write(
        &config,
        &plain.replace(
            r#""ram_session_name":"ci-oidc-session""#,
            r#""ram_session_name":"ci-oidc-session","expired_seconds":7200"#,
        ),
    );
    let env = profile_env(&emu, &s.home);
    sign_message(&env, &key, b"two hours").ok("signMessage");
    let (sent, left) = last_session(&emu);
    assert_eq!(sent, "7200");
    assert!((7100..=7200).contains(&left), "{left}");

    // Without expired_seconds, the variable decides; the profile's value wins over it.
    let mut with_var = env.clone();
    with_var.push((
        "ALIBABA_CLOUD_ROLE_SESSION_EXPIRATION".into(),
        "5400".into(),
    ));
    sign_message(&with_var, &key, b"m").ok("signMessage");
    assert_eq!(last_session(&emu).0, "7200");
    write(&config, &plain);
    sign_message(&with_var, &key, b"m").ok("signMessage");
    let (sent, left) = last_session(&emu);
    assert_eq!(sent, "5400");
    assert!((5300..=5400).contains(&left), "{left}");

    // Out of range: a clear error naming the variable, and nothing is sent.
    let before = emu.stats().action("AssumeRoleWithOIDC");
    let mut bad = env.clone();
    bad.push(("ALIBABA_CLOUD_ROLE_SESSION_EXPIRATION".into(), "60".into()));
    let e = public_key(&bad, &key).err().to_string();
    assert!(
        e.contains(
            "ALIBABA_CLOUD_ROLE_SESSION_EXPIRATION is 60 seconds; STS sessions last 900 to 43200 \
             seconds"
        ),
        "{e}"
    );
    assert_eq!(emu.stats().action("AssumeRoleWithOIDC"), before);

    // Longer than the role's MaxSessionDuration (RAM's default 3600): STS refuses, and the
    // error says which parameter.
    let emu = emulator_with_oidc();
    let key = with_key(&emu, "session-too-long");
    let mut env = profile_env(&emu, &s.home);
    env.push((
        "ALIBABA_CLOUD_ROLE_SESSION_EXPIRATION".into(),
        "7200".into(),
    ));
    let e = public_key(&env, &key).err().to_string();
    assert!(
        e.contains("InvalidParameter.DurationSeconds") && e.contains("MaxSessionDuration (3600)"),
        "{e}"
    );
}

fn v1_emulator() -> Emulator {
    Emulator::start(
        EmulatorConfig::default()
            .no_credentials()
            .ecs_role(ECS_ROLE)
            .imds_v1_only(),
    )
    .unwrap()
}

#[test]
fn without_imdsv2_the_ecs_role_falls_back_to_v1_unless_disabled() {
    let emu = v1_emulator();
    let key = with_key(&emu, "imdsv1");
    let env = ecs_env(&emu);
    let pem = pem_of(public_key(&env, &key).ok("publicKey"));
    let sig = signature_of(&sign_message(&env, &key, b"IMDSv1"));
    assert!(openssl_verify(&pem, b"IMDSv1", &sig, "sha256"));
    assert!(last_kms_credential(&emu).0.starts_with("STS."));
    // Per run: the refused token request, the role name, the credentials.
    assert_eq!(emu.stats().imds_requests, 6);

    let mut env = ecs_env(&emu);
    env.push(("ALIBABA_CLOUD_IMDSV1_DISABLED".into(), "true".into()));
    let e = public_key(&env, &key).err().to_string();
    assert!(
        e.contains("gave no IMDSv2 token (HTTP 404)")
            && e.contains("ALIBABA_CLOUD_IMDSV1_DISABLED=true"),
        "{e}"
    );
    assert_eq!(emu.stats().imds_requests, 7, "only the token request");

    // The ACK switch: no token request at all.
    let mut env = ecs_env(&emu);
    env.push(("ALIBABA_CLOUD_IMDSV2_DISABLED".into(), "true".into()));
    public_key(&env, &key).ok("publicKey");
    assert_eq!(emu.stats().imds_requests, 9);
}

#[test]
fn with_imdsv1_disabled_a_hardened_instance_still_signs() {
    // The default emulator requires the token; disabling v1 changes nothing there.
    let emu = emulator_with_oidc();
    let key = with_key(&emu, "imdsv2");
    let mut env = ecs_env(&emu);
    env.push(("ALIBABA_CLOUD_IMDSV1_DISABLED".into(), "true".into()));
    sign_message(&env, &key, b"m").ok("signMessage");
    assert!(last_kms_credential(&emu).0.starts_with("STS."));
    // Without a token such an instance refuses: the ACK switch cannot work there.
    let mut env = ecs_env(&emu);
    env.push(("ALIBABA_CLOUD_IMDSV2_DISABLED".into(), "true".into()));
    let e = public_key(&env, &key).err().to_string();
    assert!(e.contains("HTTP 401"), "{e}");
}

const SSO_ACCOUNT: &str = "1234567890123456";
const SSO_ACCESS_CONFIG: &str = "ac-cosign-signer";

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn signin_emulator() -> Emulator {
    Emulator::start(
        EmulatorConfig::default()
            .no_credentials()
            .cloud_sso(SSO_ACCESS_TOKEN, SSO_ACCOUNT, SSO_ACCESS_CONFIG)
            .oauth(OAUTH_ACCESS_TOKEN)
            .sts_credential(
                STS_ID,
                STS_SECRET,
                STS_TOKEN,
                std::time::SystemTime::now() + std::time::Duration::from_secs(3600),
            )
            .ram_role(ROLE),
    )
    .unwrap()
}

/// `https://localhost:PORT`: the emulator under a name the allow-list does not hold (it
/// holds 127.0.0.1:PORT, for KMS), so only the profile naming it lets it through.
fn emulator_as_localhost(emu: &Emulator) -> String {
    format!("localhost:{}", emu.addr().port())
}

/// A HOME whose config.json holds `profiles`, `current` selected.
fn signin_home(profiles: serde_json::Value, current: &str) -> PathBuf {
    let home = temp_dir().join("home");
    write(
        &home.join(".aliyun/config.json"),
        &serde_json::json!({"current": current, "profiles": profiles}).to_string(),
    );
    home
}

fn sso_profile(emu: &Emulator, name: &str, token_expire: i64) -> serde_json::Value {
    serde_json::json!({"name": name, "mode": "CloudSSO",
        "cloud_sso_sign_in_url": format!("https://{}/device/login", emulator_as_localhost(emu)),
        "cloud_sso_account_id": SSO_ACCOUNT, "cloud_sso_access_config": SSO_ACCESS_CONFIG,
        "access_token": SSO_ACCESS_TOKEN, "cloud_sso_access_token_expire": token_expire})
}

fn oauth_profile(name: &str, token_expire: i64) -> serde_json::Value {
    serde_json::json!({"name": name, "mode": "OAuth", "oauth_site_type": "CN",
        "oauth_access_token": OAUTH_ACCESS_TOKEN, "oauth_access_token_expire": token_expire,
        "oauth_refresh_token": OAUTH_REFRESH_TOKEN})
}

#[test]
fn a_cloud_sso_profile_signs_end_to_end_through_its_sign_in_host() {
    let emu = signin_emulator();
    let key = with_key(&emu, "cloud-sso");
    let home = signin_home(
        serde_json::json!([sso_profile(&emu, "sso", unix_now() + 3600)]),
        "sso",
    );
    let mut env = base_env(&emu, &home);
    env.push(("SIGSTORE_ALIBABAKMS_DEBUG".into(), "1".into()));
    let run = public_key(&env, &key);
    let pem = pem_of(run.ok("publicKey"));
    assert_eq!(emu.stats().cloud_sso_requests, 1, "one request per run");
    let host = emulator_as_localhost(&emu);
    assert!(
        run.stderr.contains(&format!(
            "CloudSSO access configuration {SSO_ACCESS_CONFIG} of account {SSO_ACCOUNT} via \
             {host}, Aliyun CLI profile \"sso\""
        )),
        "the debug line names the source: {}",
        run.stderr
    );
    let sso = emu
        .requests()
        .into_iter()
        .find(|r| r.path_and_query.starts_with("/cloud-credentials"))
        .unwrap();
    assert_eq!((sso.method.as_str(), sso.status), ("POST", 200));
    assert_eq!(sso.header("host"), Some(host.as_str()));
    let sig = signature_of(&sign_message(&env, &key, b"signed with CloudSSO"));
    assert!(openssl_verify(
        &pem,
        b"signed with CloudSSO",
        &sig,
        "sha256"
    ));
    assert_eq!(emu.stats().cloud_sso_requests, 2);
    let (id, token) = last_kms_credential(&emu);
    assert!(id.starts_with("STS.") && token.is_some(), "{id}");

    // The sandbox allows the sign-in host because the selected profile names it.
    let text = print_sandbox(&env);
    assert!(
        text.contains(&format!(
            "allowed: https://{host}  (cloud_sso_sign_in_url of profile \"sso\" in "
        )),
        "{text}"
    );
}

#[test]
fn a_sign_in_host_only_an_unselected_profile_names_is_not_allowed() {
    let emu = signin_emulator();
    let host = emulator_as_localhost(&emu);
    let home = signin_home(
        serde_json::json!([
            {"name": "ak", "mode": "AK", "access_key_id": CLI_ID, "access_key_secret": CLI_SECRET},
            sso_profile(&emu, "sso", unix_now() + 3600),
            oauth_profile("oauth", unix_now() + 3600)]),
        "ak",
    );
    let mut env = base_env(&emu, &home);
    env.push((
        "SIGSTORE_ALIBABAKMS_OAUTH_ENDPOINT".into(),
        format!("https://{host}"),
    ));
    let text = print_sandbox(&env);
    assert!(!text.contains(&host), "{text}");
    assert!(!text.contains("oauth.aliyun.com"), "{text}");
    // Selected, each is.
    for profile in ["sso", "oauth"] {
        let mut env = env.clone();
        env.push(("ALIBABA_CLOUD_PROFILE".into(), profile.into()));
        let text = print_sandbox(&env);
        assert!(
            text.contains(&format!("allowed: https://{host}  (")),
            "{text}"
        );
    }
}

#[test]
fn a_cloud_sso_profile_can_source_a_role_chain() {
    let emu = signin_emulator();
    let key = with_key(&emu, "cloud-sso-chain");
    let home = signin_home(
        serde_json::json!([
            sso_profile(&emu, "sso", unix_now() + 3600),
            {"name": "release", "mode": "ChainableRamRoleArn", "source_profile": "sso",
             "ram_role_arn": ROLE}]),
        "release",
    );
    let mut env = base_env(&emu, &home);
    env.push(("ALIBABA_CLOUD_STS_ENDPOINT".into(), emu.sts_endpoint()));
    sign_message(&env, &key, b"chained from CloudSSO").ok("signMessage");
    assert_eq!(emu.stats().cloud_sso_requests, 1);
    assert_eq!(emu.stats().action("AssumeRole"), 1);
    let assume = emu
        .requests()
        .into_iter()
        .find(|r| r.action == "AssumeRole")
        .unwrap();
    assert!(assume.header("x-acs-security-token").is_some());
    assert!(print_sandbox(&env).contains(&format!(
        "allowed: https://{}  (cloud_sso_sign_in_url of profile \"sso\"",
        emulator_as_localhost(&emu)
    )));
}

#[test]
fn stored_sts_credentials_of_a_sign_in_profile_are_reused_without_a_request() {
    let emu = signin_emulator();
    let key = with_key(&emu, "stored-sts");
    let stored = |mut p: serde_json::Value| {
        p["access_key_id"] = STS_ID.into();
        p["access_key_secret"] = STS_SECRET.into();
        p["sts_token"] = STS_TOKEN.into();
        p["sts_expiration"] = (unix_now() + 1800).into();
        p
    };
    let home = signin_home(
        serde_json::json!([
            stored(sso_profile(&emu, "sso", unix_now() - 60)),
            stored(oauth_profile("oauth", unix_now() - 60))
        ]),
        "sso",
    );
    for profile in ["sso", "oauth"] {
        let mut env = base_env(&emu, &home);
        env.push(("ALIBABA_CLOUD_PROFILE".into(), profile.into()));
        sign_message(&env, &key, b"with the CLI's stored STS").ok("signMessage");
        assert_eq!(last_kms_credential(&emu).0, STS_ID);
    }
    assert_eq!(emu.stats().cloud_sso_requests, 0);
    assert_eq!(emu.stats().oauth_exchange_requests, 0);
}

#[test]
fn an_expired_or_plain_http_cloud_sso_sign_in_is_a_clear_error_and_sends_nothing() {
    let emu = signin_emulator();
    let key = with_key(&emu, "sso-expired");
    let home = signin_home(
        serde_json::json!([sso_profile(&emu, "sso", unix_now() - 60)]),
        "sso",
    );
    let e = public_key(&base_env(&emu, &home), &key).err().to_string();
    assert!(
        e.contains("the CloudSSO sign-in of profile \"sso\" in ")
            && e.contains("has expired at ")
            && e.contains("sign in again with `aliyun configure --profile sso --mode CloudSSO`"),
        "{e}"
    );
    let mut plain = sso_profile(&emu, "sso", unix_now() + 3600);
    plain["cloud_sso_sign_in_url"] = format!("http://{}/login", emu.endpoint()).into();
    let home = signin_home(serde_json::json!([plain]), "sso");
    let env = base_env(&emu, &home);
    let e = public_key(&env, &key).err().to_string();
    assert!(
        e.contains("the cloud_sso_sign_in_url of profile \"sso\"")
            && e.contains("must be https://"),
        "{e}"
    );
    assert!(!print_sandbox(&env).contains("cloud_sso_sign_in_url"));
    assert_eq!(emu.stats().cloud_sso_requests, 0);
    assert_eq!(
        emu.stats().action("GetPublicKey"),
        0,
        "nothing reached KMS either"
    );
}

#[test]
fn an_oauth_profile_signs_through_the_exchange_at_the_named_endpoint() {
    let emu = signin_emulator();
    let key = with_key(&emu, "oauth");
    let home = signin_home(
        serde_json::json!([oauth_profile("o", unix_now() + 3600)]),
        "o",
    );
    let host = emulator_as_localhost(&emu);
    let mut env = base_env(&emu, &home);
    env.push((
        "SIGSTORE_ALIBABAKMS_OAUTH_ENDPOINT".into(),
        format!("https://{host}/"),
    ));
    let pem = pem_of(public_key(&env, &key).ok("publicKey"));
    let sig = signature_of(&sign_message(&env, &key, b"signed with OAuth"));
    assert!(openssl_verify(&pem, b"signed with OAuth", &sig, "sha256"));
    assert_eq!(emu.stats().oauth_exchange_requests, 2, "one per run");
    let exchange = emu
        .requests()
        .into_iter()
        .find(|r| r.path_and_query == "/v1/exchange")
        .unwrap();
    assert_eq!((exchange.method.as_str(), exchange.status), ("POST", 200));
    assert_eq!(
        exchange.framing(),
        alibabakms_emulator::Framing::ContentLength(0)
    );
    assert!(last_kms_credential(&emu).0.starts_with("STS."));
    let text = print_sandbox(&env);
    assert!(
        text.contains(&format!(
            "allowed: https://{host}  (SIGSTORE_ALIBABAKMS_OAUTH_ENDPOINT, for the OAuth profile \"o\""
        )),
        "{text}"
    );
    // Without the variable, the site's own service is allowed (and nothing else).
    let env = base_env(&emu, &home);
    let text = print_sandbox(&env);
    assert!(
        text.contains(
            "allowed: https://oauth.aliyun.com:443  (oauth_site_type CN of profile \"o\""
        ),
        "{text}"
    );
    assert!(!text.contains(&host), "{text}");
}

#[test]
fn an_expired_oauth_token_is_not_refreshed_and_the_error_says_how() {
    let emu = signin_emulator();
    let key = with_key(&emu, "oauth-expired");
    let home = signin_home(
        serde_json::json!([oauth_profile("o", unix_now() - 10)]),
        "o",
    );
    let mut env = base_env(&emu, &home);
    env.push((
        "SIGSTORE_ALIBABAKMS_OAUTH_ENDPOINT".into(),
        emulator_as_localhost(&emu),
    ));
    let e = public_key(&env, &key).err().to_string();
    assert!(
        e.contains("the OAuth access token of profile \"o\" in ")
            && e.contains("expired at ")
            && e.contains("`aliyun sts GetCallerIdentity --profile o`")
            && e.contains("`aliyun configure --profile o --mode OAuth`"),
        "{e}"
    );
    assert_eq!(emu.stats().oauth_exchange_requests, 0);
}

#[test]
fn an_external_profile_is_refused_without_running_or_showing_its_command() {
    let emu = signin_emulator();
    let key = with_key(&emu, "external");
    let dir = temp_dir();
    let marker = dir.join("ran");
    let command = format!(
        "/bin/sh -c 'touch {} && echo secret-arg-9c1e'",
        marker.display()
    );
    let home = signin_home(
        serde_json::json!([{"name": "ext", "mode": "External", "process_command": command}]),
        "ext",
    );
    let run = public_key(&base_env(&emu, &home), &key);
    let e = run.err().to_string();
    assert!(
        e.contains("profile \"ext\"")
            && e.contains("uses mode External")
            && e.contains("this plugin does not run it")
            && e.contains("ALIBABA_CLOUD_ACCESS_KEY_ID")
            && e.contains("ALIBABA_CLOUD_CREDENTIALS_URI"),
        "{e}"
    );
    for shown in [&e, &run.stderr] {
        assert!(
            !shown.contains("secret-arg-9c1e") && !shown.contains("/bin/sh"),
            "{shown}"
        );
    }
    assert!(!marker.exists(), "the command never ran");
}
