//! The sandbox policy built from tables of variables, and the files those name.

use super::allow::{HostPort, CREDENTIALS_URI_ENV, IMDS_ENDPOINT_ENV, STS_ENDPOINT_ENV};
use super::grants::shareable_dir;
use super::*;
use std::collections::HashMap;

fn allows(hosts: &AllowedHosts, uri: &str) -> bool {
    hosts.allows(&uri.parse().unwrap())
}

fn policy(vars: &[(&str, &str)]) -> Result<SandboxPolicy, PolicyError> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    SandboxPolicy::from_lookup(|name| map.get(name).cloned())
}

#[test]
fn alibaba_endpoints_are_allowed_on_443_only() {
    let hosts = AllowedHosts::default();
    assert!(allows(&hosts, "https://kms.cn-hangzhou.aliyuncs.com/"));
    assert!(allows(
        &hosts,
        "https://kms.cn-hangzhou.aliyuncs.com:443/?Action=x"
    ));
    assert!(allows(
        &hosts,
        "https://kst-abc.cryptoservice.kms.aliyuncs.com/"
    ));
    assert!(allows(&hosts, "https://sts.aliyuncs.com/"));
    assert!(!allows(
        &hosts,
        "https://kms.cn-hangzhou.aliyuncs.com:8443/"
    ));
    assert!(!allows(&hosts, "http://kms.cn-hangzhou.aliyuncs.com/"));
}

#[test]
fn the_wildcard_is_a_real_subdomain_match() {
    let hosts = AllowedHosts::default();
    assert!(!allows(&hosts, "https://evilaliyuncs.com/"));
    assert!(!allows(&hosts, "https://aliyuncs.com/"));
    assert!(!allows(&hosts, "https://aliyuncs.com.evil.com/"));
    assert!(!allows(&hosts, "https://kms.aliyuncs.com.evil.com/"));
    assert!(!allows(&hosts, "https://.aliyuncs.com/"));
    assert!(!allows(&hosts, "https://x..aliyuncs.com/"));
    assert!(!allows(&hosts, "https://kms.aliyuncs.co/"));
}

#[test]
fn host_matching_ignores_case() {
    let hosts = AllowedHosts::parse("Emulator.Local:8443").unwrap();
    assert!(allows(&hosts, "https://KMS.CN-HANGZHOU.ALIYUNCS.COM/"));
    assert!(allows(&hosts, "https://emulator.local:8443/"));
    assert!(allows(&hosts, "https://EMULATOR.local:8443/"));
}

#[test]
fn extra_entries_match_scheme_host_and_port() {
    let hosts =
        AllowedHosts::parse("localhost:8443, gateway.example.com ,127.0.0.1:9000,[::1]:7000")
            .unwrap();
    assert!(allows(&hosts, "https://localhost:8443/"));
    assert!(!allows(&hosts, "https://localhost/"));
    assert!(!allows(&hosts, "https://localhost:8444/"));
    assert!(!allows(&hosts, "http://localhost:8443/"));
    // No port in the entry means 443.
    assert!(allows(&hosts, "https://gateway.example.com/"));
    assert!(allows(&hosts, "https://gateway.example.com:443/"));
    assert!(!allows(&hosts, "https://gateway.example.com:8443/"));
    assert!(!allows(&hosts, "https://sub.gateway.example.com/"));
    assert!(allows(&hosts, "https://127.0.0.1:9000/"));
    assert!(allows(&hosts, "https://[::1]:7000/"));
    assert!(!allows(&hosts, "https://[::1]:7001/"));
}

#[test]
fn anything_else_is_denied() {
    let hosts = AllowedHosts::default();
    assert!(!allows(&hosts, "https://example.com/"));
    assert!(!allows(&hosts, "https://127.0.0.1/"));
    assert!(!allows(&hosts, "https://169.254.169.254/"));
    assert!(!allows(&hosts, "/relative/path"));
    // The destination is the authority; userinfo is refused outright.
    assert!(!allows(&hosts, "https://kms.aliyuncs.com@evil.com/"));
    assert!(!allows(&hosts, "https://user@kms.aliyuncs.com/"));
}

#[test]
fn entries_are_parsed_strictly() {
    let ok = AllowedHosts::parse(" , a.example:1,,b.example ,").unwrap();
    assert_eq!(
        ok.extra,
        vec![
            HostPort {
                host: "a.example".into(),
                port: 1
            },
            HostPort {
                host: "b.example".into(),
                port: 443
            },
        ]
    );
    for bad in [
        "https://a.example",
        "a.example/path",
        "*.example.com",
        "user@a.example",
        "a.example:",
        "a.example:0",
        "a.example:65536",
        "a.example:port",
        ":8443",
        "a b",
        "a.example:8443:1",
        "[::1",
        "[::1]x",
        "::1",
    ] {
        let err = AllowedHosts::parse(bad).unwrap_err();
        assert_eq!(err.entry, bad, "{bad}");
        assert!(err.to_string().contains(ALLOWED_HOSTS_ENV), "{err}");
    }
}

#[test]
fn only_listed_variables_reach_the_guest() {
    let p = policy(&[
        ("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAIid"),
        ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "s3cret"),
        ("SIGSTORE_ALIBABAKMS_DEBUG", "1"),
        ("HOME", "/root"),
        ("AWS_SECRET_ACCESS_KEY", "nope"),
    ])
    .unwrap();
    assert_eq!(
        p.env,
        vec![
            (
                "ALIBABA_CLOUD_ACCESS_KEY_ID".to_string(),
                "LTAIid".to_string()
            ),
            (
                "ALIBABA_CLOUD_ACCESS_KEY_SECRET".to_string(),
                "s3cret".to_string()
            ),
            ("SIGSTORE_ALIBABAKMS_DEBUG".to_string(), "1".to_string()),
        ]
    );
    assert_eq!(p.hosts, AllowedHosts::default());
}

#[test]
fn printing_the_policy_never_shows_values() {
    let p = policy(&[
        ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "s3cret-value"),
        ("ALIBABA_CLOUD_SECURITY_TOKEN", "token-value"),
        (ALLOWED_HOSTS_ENV, "emulator.local:8443"),
    ])
    .unwrap();
    for text in [format!("{p}"), format!("{p:?}"), format!("{p:#?}")] {
        assert!(!text.contains("s3cret-value"), "{text}");
        assert!(!text.contains("token-value"), "{text}");
        assert!(text.contains("ALIBABA_CLOUD_ACCESS_KEY_SECRET"), "{text}");
        assert!(text.contains("emulator.local"), "{text}");
    }
    let shown = p.to_string();
    assert!(shown.contains("https://*.aliyuncs.com:443"), "{shown}");
    assert!(shown.contains("https://emulator.local:8443"), "{shown}");
    assert!(shown.contains("files: none"), "{shown}");
}

#[test]
fn the_sts_endpoint_the_user_names_is_allowed_and_printed() {
    let p = policy(&[(STS_ENDPOINT_ENV, "https://sts.internal.example:8443/")]).unwrap();
    assert!(allows(&p.hosts, "https://sts.internal.example:8443/"));
    assert!(!allows(&p.hosts, "http://sts.internal.example:8443/"));
    assert!(!allows(&p.hosts, "https://sts.internal.example/"));
    assert!(p
        .to_string()
        .contains("allowed: https://sts.internal.example:8443  (from ALIBABA_CLOUD_STS_ENDPOINT)"));
    assert!(p.env_names().any(|n| n == STS_ENDPOINT_ENV));
    // The metadata endpoint is plain HTTP, its own port only.
    let p = policy(&[(IMDS_ENDPOINT_ENV, "http://127.0.0.1:8080")]).unwrap();
    assert!(allows(&p.hosts, "http://127.0.0.1:8080/latest/api/token"));
    assert!(!allows(&p.hosts, "https://127.0.0.1:8080/"));
    assert!(!allows(&p.hosts, "http://127.0.0.1:8081/"));
    assert!(p
        .to_string()
        .contains("allowed: http://127.0.0.1:8080  (from ALIBABA_CLOUD_IMDS_ENDPOINT)"));
    let p = policy(&[(IMDS_ENDPOINT_ENV, "metadata.local")]).unwrap();
    assert!(allows(&p.hosts, "http://metadata.local/"));
    // The default metadata address, over HTTP on port 80 only; no other plain HTTP.
    let p = policy(&[]).unwrap();
    assert!(allows(&p.hosts, "http://100.100.100.200/latest/api/token"));
    assert!(allows(&p.hosts, "http://100.100.100.200:80/"));
    assert!(!allows(&p.hosts, "http://100.100.100.200:8080/"));
    assert!(!allows(&p.hosts, "https://100.100.100.200/"));
    assert!(!allows(&p.hosts, "http://kms.cn-hangzhou.aliyuncs.com/"));
    let p = policy(&[(ALLOWED_HOSTS_ENV, "emulator.local:8443")]).unwrap();
    assert!(!allows(&p.hosts, "http://emulator.local:8443/"));
    // The credentials URI's host, with its own scheme and port.
    let p = policy(&[(CREDENTIALS_URI_ENV, "http://creds.local:9000/v1/creds?t=x")]).unwrap();
    assert!(allows(&p.hosts, "http://creds.local:9000/v1/creds?t=x"));
    assert!(!allows(&p.hosts, "https://creds.local:9000/"));
    let p = policy(&[(CREDENTIALS_URI_ENV, "https://creds.local/path")]).unwrap();
    assert!(allows(&p.hosts, "https://creds.local/path"));
    assert!(!allows(&p.hosts, "http://creds.local/path"));
    assert!(p
        .to_string()
        .contains("allowed: https://creds.local:443  (from ALIBABA_CLOUD_CREDENTIALS_URI)"));
    // Nonsense is simply not allowed.
    assert!(policy(&[(STS_ENDPOINT_ENV, "a b/c")])
        .unwrap()
        .hosts
        .from_env
        .is_empty());
}

#[test]
fn the_oidc_token_file_is_shared_read_only_by_its_directory() {
    let dir = std::env::temp_dir().join(format!("policy-oidc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let token = dir.join("token");
    std::fs::write(&token, "jwt").unwrap();
    let p = policy(&[("ALIBABA_CLOUD_OIDC_TOKEN_FILE", token.to_str().unwrap())]).unwrap();
    let f = p
        .files
        .iter()
        .find(|f| f.var == "ALIBABA_CLOUD_OIDC_TOKEN_FILE")
        .unwrap();
    assert_eq!(f.guest_path, "/credentials/oidc/token");
    assert_eq!(f.host_dir, std::fs::canonicalize(&dir).unwrap());
    assert!(p.env.contains(&(
        "ALIBABA_CLOUD_OIDC_TOKEN_FILE".to_string(),
        "/credentials/oidc/token".to_string()
    )));
    // No default location: without the variable nothing is shared.
    assert!(policy(&[("HOME", dir.to_str().unwrap())])
        .unwrap()
        .files
        .is_empty());
}

#[test]
fn a_named_file_whose_directory_is_or_holds_home_is_not_shared() {
    let root = std::env::temp_dir().join(format!("policy-home-file-{}", std::process::id()));
    let home = root.join("home");
    std::fs::create_dir_all(home.join(".alibabacloud")).unwrap();
    for name in ["token", "id_ed25519", ".alibabacloud/credentials"] {
        std::fs::write(home.join(name), "x").unwrap();
    }
    std::fs::write(root.join("config.json"), "{}").unwrap();
    let h = home.to_str().unwrap();
    let token = home.join("token").display().to_string();
    let above = root.join("config.json").display().to_string();
    let p = policy(&[
        ("HOME", h),
        ("ALIBABA_CLOUD_OIDC_TOKEN_FILE", &token),
        ("ALIBABA_CLOUD_CONFIG_FILE", &above),
    ])
    .unwrap();
    // Only the credentials file's own directory; never HOME or its parent.
    let real_home = std::fs::canonicalize(&home).unwrap();
    assert_eq!(p.files.len(), 1, "{p:?}");
    assert_eq!(p.files[0].host_dir, real_home.join(".alibabacloud"));
    assert!(p.dirs.is_empty());
    // The guest gets the paths as named and the names of the refused variables.
    let get = |k: &str| p.env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    assert_eq!(get("ALIBABA_CLOUD_OIDC_TOKEN_FILE"), Some(token.clone()));
    assert_eq!(get("ALIBABA_CLOUD_CONFIG_FILE"), Some(above.clone()));
    assert_eq!(
        get(NOT_SHARED_ENV).as_deref(),
        Some("ALIBABA_CLOUD_CONFIG_FILE,ALIBABA_CLOUD_OIDC_TOKEN_FILE")
    );
    let shown = p.to_string();
    for (var, path) in [
        ("ALIBABA_CLOUD_OIDC_TOKEN_FILE", &token),
        ("ALIBABA_CLOUD_CONFIG_FILE", &above),
    ] {
        assert!(
            shown.contains(&format!(
                "not shared: {var}={path} (its directory is / or contains the home directory"
            )),
            "{shown}"
        );
    }
    assert!(
        !shown.contains(&format!("{} ->", real_home.display())),
        "{shown}"
    );
    // A file directly in / is refused too; the variable is not taken from the user.
    assert!(shareable_dir(std::path::Path::new("/"), None).is_err());
    assert!(shareable_dir(&real_home.join(".aliyun"), Some(&real_home)).is_ok());
    assert!(policy(&[(NOT_SHARED_ENV, "x")]).unwrap().env.is_empty());
}

#[test]
fn oidc_token_directories_named_in_the_cli_config_are_shared_at_their_path() {
    let root = std::env::temp_dir().join(format!("policy-cli-oidc-{}", std::process::id()));
    let home = root.join("home");
    let tokens = root.join("tokens");
    std::fs::create_dir_all(home.join(".aliyun")).unwrap();
    std::fs::create_dir_all(&tokens).unwrap();
    std::fs::write(tokens.join("token"), "jwt").unwrap();
    std::fs::write(home.join("token"), "jwt").unwrap();
    let tokens = std::fs::canonicalize(&tokens).unwrap();
    let token = tokens.join("token").display().to_string();
    let in_home = std::fs::canonicalize(home.join("token")).unwrap();
    let config = home.join(".aliyun/config.json");
    let write = |text: String| std::fs::write(&config, text).unwrap();
    write(format!(
        r#"{{"current":"chain","profiles":[
            {{"name":"chain","mode":"chainableramrolearn","source_profile":"oidc","access_key_secret":"never-read"}},
            {{"name":"oidc","mode":"oidc","oidc_token_file":"{token}"}},
            {{"name":"other","mode":"OIDC","oidc_token_file":"/etc/hostname"}},
            {{"name":"relative","mode":"OIDC","oidc_token_file":"token"}},
            {{"name":"home","mode":"OIDC","oidc_token_file":"{}"}},
            {{"name":"loop","mode":"ChainableRamRoleArn","source_profile":"loop"}}]}}"#,
        in_home.display()
    ));
    let h = home.to_str().unwrap();
    let p = policy(&[("HOME", h)]).unwrap();
    assert_eq!(p.dirs.len(), 1, "{p:?}");
    assert_eq!(p.dirs[0].host_dir, tokens);
    assert_eq!(p.dirs[0].guest_dir, tokens.display().to_string());
    assert!(
        p.dirs[0].why.contains("profile \"oidc\""),
        "{}",
        p.dirs[0].why
    );
    let shown = p.to_string();
    assert!(
        shown.contains(&format!(
            "{}/ -> {}/ (directory of the oidc_token_file of profile \"oidc\"",
            tokens.display(),
            tokens.display()
        )),
        "{shown}"
    );
    assert!(!shown.contains("never-read"), "{shown}");
    // Modes in any case (as the CLI accepts them); only the selected profile's chain:
    // /etc of "other" is not shared.
    assert!(!shown.contains("/etc"), "{shown}");
    // Not absolute, or the home directory itself: not shared, and said so.
    let p = policy(&[("HOME", h), ("ALIBABA_CLOUD_PROFILE", "relative")]).unwrap();
    assert!(p.dirs.is_empty());
    assert!(
        p.not_shared[0].contains("not an absolute path"),
        "{:?}",
        p.not_shared
    );
    let p = policy(&[("HOME", h), ("ALIBABA_CLOUD_PROFILE", "home")]).unwrap();
    assert!(p.dirs.is_empty());
    assert!(p.to_string().contains("contains the home directory"), "{p}");
    // A loop ends the walk; disabled profiles share nothing.
    assert!(policy(&[("HOME", h), ("ALIBABA_CLOUD_PROFILE", "loop")])
        .unwrap()
        .dirs
        .is_empty());
    assert!(
        policy(&[("HOME", h), ("ALIBABA_CLOUD_CLI_PROFILE_DISABLED", "true")])
            .unwrap()
            .dirs
            .is_empty()
    );
    // A malformed config shares nothing and does not fail.
    write("{\"current\": \"oidc\", \"profiles\": [".into());
    let p = policy(&[("HOME", h)]).unwrap();
    assert!(p.dirs.is_empty() && p.files.len() == 1);
}

#[test]
fn sign_in_hosts_are_allowed_only_for_the_selected_cli_profile_chain() {
    let root = std::env::temp_dir().join(format!("policy-cli-signin-{}", std::process::id()));
    let home = root.join("home");
    std::fs::create_dir_all(home.join(".aliyun")).unwrap();
    std::fs::write(
        home.join(".aliyun/config.json"),
        r#"{"current":"chain","profiles":[
            {"name":"chain","mode":"ChainableRamRoleArn","source_profile":"sso","ram_role_arn":"r"},
            {"name":"sso","mode":"cloudsso","cloud_sso_sign_in_url":"https://Signin.SSO.example:8443/d-1/login","access_token":"never-read"},
            {"name":"other","mode":"CloudSSO","cloud_sso_sign_in_url":"https://other.sso.example/login"},
            {"name":"oauth","mode":"OAuth","oauth_site_type":"intl","oauth_access_token":"never-read"},
            {"name":"plain","mode":"CloudSSO","cloud_sso_sign_in_url":"http://plain.sso.example/login"}]}"#,
    )
    .unwrap();
    let h = home.to_str().unwrap();
    let config = std::fs::canonicalize(home.join(".aliyun/config.json")).unwrap();

    // The chain's base names the sign-in host: allowed over HTTPS on its port, and shown why.
    let p = policy(&[("HOME", h)]).unwrap();
    assert!(allows(
        &p.hosts,
        "https://signin.sso.example:8443/cloud-credentials"
    ));
    assert!(!allows(&p.hosts, "http://signin.sso.example:8443/"));
    assert!(!allows(&p.hosts, "https://signin.sso.example/"));
    // Another profile's host, and the OAuth site of an unselected profile, are not.
    assert!(!allows(&p.hosts, "https://other.sso.example/"));
    assert!(!allows(&p.hosts, "https://oauth.alibabacloud.com/"));
    let shown = p.to_string();
    assert!(
        shown.contains(&format!(
            "allowed: https://signin.sso.example:8443  (cloud_sso_sign_in_url of profile \"sso\" in {})",
            config.display()
        )),
        "{shown}"
    );
    assert!(
        !shown.contains("other.sso") && !shown.contains("never-read"),
        "{shown}"
    );

    // An OAuth profile: its site's service, or the plugin's variable instead.
    let p = policy(&[("HOME", h), ("ALIBABA_CLOUD_PROFILE", "oauth")]).unwrap();
    assert!(allows(
        &p.hosts,
        "https://oauth.alibabacloud.com/v1/exchange"
    ));
    assert!(!allows(&p.hosts, "https://oauth.aliyun.com/"));
    assert!(!allows(&p.hosts, "https://signin.sso.example:8443/"));
    assert!(p.to_string().contains(
        "allowed: https://oauth.alibabacloud.com:443  (oauth_site_type INTL of profile \"oauth\""
    ));
    let endpoint = (vars::OAUTH_ENDPOINT, "https://127.0.0.1:9443/");
    let p = policy(&[("HOME", h), ("ALIBABA_CLOUD_PROFILE", "oauth"), endpoint]).unwrap();
    assert!(allows(&p.hosts, "https://127.0.0.1:9443/v1/exchange"));
    assert!(!allows(&p.hosts, "https://oauth.alibabacloud.com/"));
    assert!(p.to_string().contains(
        "allowed: https://127.0.0.1:9443  (SIGSTORE_ALIBABAKMS_OAUTH_ENDPOINT, for the OAuth \
         profile \"oauth\""
    ));
    assert!(p.env_names().any(|n| n == vars::OAUTH_ENDPOINT));
    // The variable alone allows nothing: no OAuth profile is selected.
    let p = policy(&[("HOME", h), endpoint]).unwrap();
    assert!(!allows(&p.hosts, "https://127.0.0.1:9443/"));

    // A sign-in URL that is not https adds nothing (the guest refuses it); nor does a
    // disabled CLI-profile source.
    let p = policy(&[("HOME", h), ("ALIBABA_CLOUD_PROFILE", "plain")]).unwrap();
    assert!(p.hosts.from_profiles.is_empty());
    assert!(!allows(&p.hosts, "http://plain.sso.example/"));
    let p = policy(&[("HOME", h), ("ALIBABA_CLOUD_CLI_PROFILE_DISABLED", "true")]).unwrap();
    assert!(p.hosts.from_profiles.is_empty());
}

#[test]
fn debug_is_on_unless_empty_or_negative() {
    assert!(!policy(&[]).unwrap().debug());
    assert!(policy(&[(DEBUG_ENV, "1")]).unwrap().debug());
    assert!(policy(&[(DEBUG_ENV, "true")]).unwrap().debug());
    assert!(!policy(&[(DEBUG_ENV, "0")]).unwrap().debug());
    assert!(!policy(&[(DEBUG_ENV, "")]).unwrap().debug());
}

#[test]
fn a_bad_allow_list_is_an_error() {
    let err = policy(&[(ALLOWED_HOSTS_ENV, "https://emulator.local")]).unwrap_err();
    assert_eq!(err.entry, "https://emulator.local");
}
