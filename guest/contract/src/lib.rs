//! The contract between the host and the guest component, written once and used by both.
//!
//! The host decides what the guest may see and reach from the same facts the guest acts on:
//! which variables the credential chain reads (the host passes exactly those), which forms an
//! endpoint variable takes (the host allows the host the guest will call), how long a call may
//! take without cosign's deadline (the host's backstop follows the guest's bound), and how
//! `ctxDeadline` is written and found, which files are shared where, and how far an Aliyun
//! CLI profile chain is followed. When the two sides read these separately they drift
//! apart; here they cannot.

mod deadline;
mod endpoints;
mod profiles;
pub mod rfc3339;

pub use deadline::ctx_deadline;
pub use endpoints::{
    cloud_sso_host, credentials_uri, imds_endpoint, oauth_endpoint, oauth_site_host, sts_endpoint,
    UriTarget,
};
pub use profiles::{profile_chain, ProfileChainError};

use std::time::Duration;

/// The environment variables the guest reads, by what they are for.
pub mod vars {
    /// The STS endpoint, `host[:port]` or `https://host[:port]` (see [`super::sts_endpoint`]).
    pub const STS_ENDPOINT: &str = "ALIBABA_CLOUD_STS_ENDPOINT";
    /// The ECS metadata endpoint, plain HTTP.
    pub const IMDS_ENDPOINT: &str = "ALIBABA_CLOUD_IMDS_ENDPOINT";
    /// A URI that answers temporary credentials.
    pub const CREDENTIALS_URI: &str = "ALIBABA_CLOUD_CREDENTIALS_URI";
    /// The OAuth service of Aliyun CLI `OAuth` profiles, `host[:port]` or `https://host[:port]`,
    /// instead of their site's (see [`super::oauth_endpoint`]); the plugin's own extension.
    pub const OAUTH_ENDPOINT: &str = "SIGSTORE_ALIBABAKMS_OAUTH_ENDPOINT";
    /// Seconds a call may take without cosign's `ctxDeadline`.
    pub const TIMEOUT: &str = "SIGSTORE_ALIBABAKMS_TIMEOUT";
    /// What `defaultAlgorithm` answers.
    pub const DEFAULT_ALGORITHM: &str = "SIGSTORE_ALIBABAKMS_DEFAULT_ALGORITHM";
    /// Diagnostics on stderr.
    pub const DEBUG: &str = "SIGSTORE_ALIBABAKMS_DEBUG";
    /// Seconds key metadata is kept between runs (0: not at all).
    pub const CACHE_TTL: &str = "SIGSTORE_ALIBABAKMS_CACHE_TTL";
    /// Set by the host, never taken from the user: the credential-file variables whose file
    /// is not shared (the guest's error then says why).
    pub const NOT_SHARED: &str = "SIGSTORE_ALIBABAKMS_NOT_SHARED";

    /// Variables passed to the guest as they are, when set.
    pub const PASSED: &[&str] = &[
        "ALIBABA_CLOUD_ACCESS_KEY_ID",
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
        "ALIBABA_CLOUD_SECURITY_TOKEN",
        "ALICLOUD_ACCESS_KEY",
        "ALICLOUD_SECRET_KEY",
        "ALICLOUD_ACCESS_KEY_STS_TOKEN",
        "ALIBABA_CLOUD_PROFILE",
        "ALIBABA_CLOUD_CLI_PROFILE_DISABLED",
        "ALIBABA_CLOUD_ROLE_ARN",
        "ALIBABA_CLOUD_OIDC_PROVIDER_ARN",
        "ALIBABA_CLOUD_ROLE_SESSION_NAME",
        "ALICLOUD_ROLE_SESSION_NAME",
        "ALIBABA_CLOUD_ROLE_SESSION_EXPIRATION",
        "ALICLOUD_ROLE_SESSION_EXPIRATION",
        STS_ENDPOINT,
        "ALIBABA_CLOUD_STS_REGION",
        "ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED",
        "ALIBABA_CLOUD_ECS_METADATA",
        "ALIBABA_CLOUD_ECS_METADATA_DISABLED",
        "ALIBABA_CLOUD_IMDSV1_DISABLED",
        "ALIBABA_CLOUD_IMDSV2_DISABLED",
        IMDS_ENDPOINT,
        CREDENTIALS_URI,
        OAUTH_ENDPOINT,
        TIMEOUT,
        DEFAULT_ALGORITHM,
        CACHE_TTL,
        DEBUG,
    ];

    /// Variables naming a credential file: passed with the file's path as the sandbox shows
    /// it (its directory shared read-only), or as given when it is not shared.
    pub const CONFIG_FILE: &str = "ALIBABA_CLOUD_CONFIG_FILE";
    pub const CREDENTIALS_FILE: &str = "ALIBABA_CLOUD_CREDENTIALS_FILE";
    pub const OIDC_TOKEN_FILE: &str = "ALIBABA_CLOUD_OIDC_TOKEN_FILE";
    pub const FILES: &[&str] = &[CONFIG_FILE, CREDENTIALS_FILE, OIDC_TOKEN_FILE];

    /// Every variable the guest may be handed.
    pub fn all() -> impl Iterator<Item = &'static str> {
        PASSED
            .iter()
            .chain(FILES)
            .chain(std::iter::once(&NOT_SHARED))
            .copied()
    }
}

/// How many `source_profile` links an Aliyun CLI profile chain may have; host and guest both
/// stop there.
pub const MAX_PROFILE_CHAIN: usize = 5;

/// A credential file the chain reads: the variable that names it (set by the host to the
/// path the guest sees), its default under the home directory, and the directory it is
/// shared at inside the sandbox.
pub struct CredentialFile {
    pub var: &'static str,
    /// `None`: only where the variable points.
    pub default_in_home: Option<&'static str>,
    pub guest_dir: &'static str,
}

pub const CREDENTIAL_FILES: &[CredentialFile] = &[
    CredentialFile {
        var: vars::CONFIG_FILE,
        default_in_home: Some(".aliyun/config.json"),
        guest_dir: "/credentials/aliyun-cli",
    },
    CredentialFile {
        var: vars::CREDENTIALS_FILE,
        default_in_home: Some(".alibabacloud/credentials"),
        guest_dir: "/credentials/alibabacloud",
    },
    // RRSA: the projected service-account token; re-read on every run (it rotates).
    CredentialFile {
        var: vars::OIDC_TOKEN_FILE,
        default_in_home: None,
        guest_dir: "/credentials/oidc",
    },
];

/// A call's limit when cosign sends no `ctxDeadline`, unless [`vars::TIMEOUT`] says otherwise.
pub const DEFAULT_LIMIT: Duration = Duration::from_secs(60);

/// The limit without a `ctxDeadline`: [`vars::TIMEOUT`]'s value, seconds in (0, 86400], when
/// set; else [`DEFAULT_LIMIT`].
pub fn time_limit(value: Option<&str>) -> Result<Duration, String> {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(DEFAULT_LIMIT),
        Some(v) => v
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s > 0.0 && *s <= 86_400.0)
            .map(Duration::from_secs_f64)
            .ok_or_else(|| {
                format!(
                    "{}={v:?} is not a number of seconds between 0 and 86400",
                    vars::TIMEOUT
                )
            }),
    }
}

/// How long key metadata is kept between runs when [`vars::CACHE_TTL`] is not set: as long as
/// sigstore's own KMS providers keep public keys.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(300);
/// Longer would keep a rotated-away or deleted key's metadata for too long.
const MAX_CACHE_TTL_SECS: u64 = 86_400;

/// [`vars::CACHE_TTL`]'s value: whole seconds from 0 (no caching) to a day; else
/// [`DEFAULT_CACHE_TTL`].
pub fn cache_ttl(value: Option<&str>) -> Result<Duration, String> {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(DEFAULT_CACHE_TTL),
        Some(v) => v
            .parse::<u64>()
            .ok()
            .filter(|s| *s <= MAX_CACHE_TTL_SECS)
            .map(Duration::from_secs)
            .ok_or_else(|| {
                format!(
                    "{}={v:?} is not a number of seconds from 0 (no caching) to \
                     {MAX_CACHE_TTL_SECS}",
                    vars::CACHE_TTL
                )
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sts_endpoint_forms() {
        for (value, host) in [
            (
                "sts.cn-hangzhou.aliyuncs.com",
                "sts.cn-hangzhou.aliyuncs.com",
            ),
            ("https://127.0.0.1:9443/", "127.0.0.1:9443"),
            (" HTTPS://sts.aliyuncs.com ", "sts.aliyuncs.com"),
        ] {
            assert_eq!(sts_endpoint(value).unwrap(), host, "{value}");
        }
        let e = sts_endpoint("http://127.0.0.1:9443").unwrap_err();
        assert!(
            e.starts_with("ALIBABA_CLOUD_STS_ENDPOINT=") && e.contains("HTTPS only"),
            "{e}"
        );
        for value in ["", "https://", "https://host/path", "user@host", "ftp://x"] {
            assert!(sts_endpoint(value).is_err(), "{value:?}");
        }
    }

    #[test]
    fn sign_in_hosts_of_cli_profiles() {
        for (url, host) in [
            (
                "https://signin-cn-shanghai.alibabacloudsso.com/d-00fc2p61/login",
                "signin-cn-shanghai.alibabacloudsso.com",
            ),
            ("HTTPS://127.0.0.1:9443", "127.0.0.1:9443"),
            ("https://sso.example?x=1", "sso.example"),
        ] {
            assert_eq!(cloud_sso_host(url).unwrap(), host, "{url}");
        }
        assert!(cloud_sso_host("http://sso.example/")
            .unwrap_err()
            .contains("must be https://"));
        assert!(cloud_sso_host("sso.example")
            .unwrap_err()
            .contains("not an https:// URL"));
        for bad in ["https://", "https://user@sso.example/", "https:///path"] {
            assert!(
                cloud_sso_host(bad).unwrap_err().contains("no usable host"),
                "{bad}"
            );
        }
        assert_eq!(oauth_site_host("cn"), Ok("oauth.aliyun.com"));
        assert_eq!(oauth_site_host(" INTL "), Ok("oauth.alibabacloud.com"));
        assert!(oauth_site_host("EU").is_err() && oauth_site_host("").is_err());
        assert_eq!(
            oauth_endpoint("https://127.0.0.1:9443/").unwrap(),
            "127.0.0.1:9443"
        );
        assert_eq!(oauth_endpoint("oauth.internal").unwrap(), "oauth.internal");
        let e = oauth_endpoint("http://oauth.internal").unwrap_err();
        assert!(
            e.starts_with("SIGSTORE_ALIBABAKMS_OAUTH_ENDPOINT=") && e.contains("HTTPS only"),
            "{e}"
        );
        assert!(oauth_endpoint("https://oauth.internal/v1").is_err());
    }

    #[test]
    fn time_limits() {
        assert_eq!(time_limit(None), Ok(DEFAULT_LIMIT));
        assert_eq!(time_limit(Some(" 2.5 ")), Ok(Duration::from_millis(2500)));
        assert!(time_limit(Some("0"))
            .unwrap_err()
            .contains("SIGSTORE_ALIBABAKMS_TIMEOUT"));
    }

    /// Every variable name the guest's code mentions is one the host hands it: a source added
    /// to the chain cannot silently miss the sandbox.
    #[test]
    fn every_variable_the_guest_reads_is_one_the_host_passes() {
        let known: Vec<&str> = vars::all().collect();
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../src");
        let mut files = vec![src];
        let mut missing = Vec::new();
        let mut seen = 0;
        while let Some(path) = files.pop() {
            if path.is_dir() {
                files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for prefix in ["\"ALIBABA_CLOUD_", "\"ALICLOUD_", "\"SIGSTORE_ALIBABAKMS_"] {
                for (at, _) in text.match_indices(prefix) {
                    let name: String = text[at + 1..]
                        .chars()
                        .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                        .collect();
                    seen += 1;
                    if !known.contains(&name.as_str()) {
                        missing.push(format!("{name} ({})", path.display()));
                    }
                }
            }
        }
        assert!(seen > 50, "the guest's sources were read ({seen} names)");
        assert!(
            missing.is_empty(),
            "read by the guest, not passed by the host: {missing:?}"
        );
    }
}
