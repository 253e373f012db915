//! Aliyun CLI profiles whose secrets live outside config.json: mode `OIDC` (its
//! `oidc_token_file` is named inside the config, so the host reads the config to share that
//! file's directory, and nothing wider), alone and as the source of a `ChainableRamRoleArn`;
//! a role assumption's `policy` and `external_id`; and the ECS metadata IMDSv1/IMDSv2
//! switches. Everything is served by the emulator on loopback.

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
