//! Where the AccessKey comes from: the providers of Alibaba Cloud's default credential chain,
//! tried in the official order (`CHAIN`), a module each, all over one [`Context`] (the
//! environment, the transport, the clock and the deadline). Each provider either yields
//! credentials, says why it was skipped, or fails; when none yields, the error lists every
//! source and why, never a value.

pub use crate::access_key::Credentials;
use crate::retry::{Clock, Deadline, RealClock};
use crate::transport::{HttpRequest, HttpResponse, Transport, TransportError};
use std::fmt;

mod cli_profile;
mod cli_signin;
mod credentials_file;
mod env;
mod files;
mod imds;
mod oidc;
mod sts;
mod temporary;
mod uri;

/// Why no credentials came; the texts name the source and what to do, never a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialsError {
    /// A source is set up wrong (half a key, an unreadable or malformed file, an unsupported
    /// mode, a session length out of range).
    Config(String),
    /// A source's service (STS, the metadata service, a credentials URI) refused, did not
    /// answer, or answered what cannot be used.
    Service(String),
    /// No source yielded: each one tried, with why.
    NoneFound(Vec<(&'static str, String)>),
}

impl fmt::Display for CredentialsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CredentialsError::Config(m) | CredentialsError::Service(m) => f.write_str(m),
            CredentialsError::NoneFound(tried) => {
                let tried: Vec<String> = tried
                    .iter()
                    .map(|(name, why)| format!("{name}: {why}"))
                    .collect();
                write!(
                    f,
                    "no Alibaba Cloud credentials were found; tried {}. Set \
                     ALIBABA_CLOUD_ACCESS_KEY_ID and ALIBABA_CLOUD_ACCESS_KEY_SECRET (and \
                     ALIBABA_CLOUD_SECURITY_TOKEN for an STS token), or configure a profile \
                     with `aliyun configure`",
                    tried.join("; ")
                )
            }
        }
    }
}

/// Reads one environment variable; empty values count as unset (as in the official SDKs).
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

fn var(env: EnvLookup<'_>, name: &str) -> Option<String> {
    env(name)
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// Outcome of one provider.
enum Found {
    Yes(Credentials),
    /// Not configured; the text says what would enable it.
    Skipped(String),
}

/// What a provider may use: the environment it was given, the network, the clock, and the
/// deadline every request it sends must meet.
pub struct Context<'a> {
    pub env: EnvLookup<'a>,
    pub transport: &'a dyn Transport,
    pub clock: &'a dyn Clock,
    pub deadline: Deadline,
}

impl<'a> Context<'a> {
    pub fn new(env: EnvLookup<'a>, transport: &'a dyn Transport, deadline: Deadline) -> Self {
        Context {
            env,
            transport,
            clock: &RealClock,
            deadline,
        }
    }

    /// One plain HTTP request (the metadata service, a credentials URI), bounded by the
    /// deadline as well as its own timeout, with one diagnostic line naming `what` (never
    /// the path, which may carry a secret).
    fn send_once(
        &self,
        what: &str,
        mut request: HttpRequest,
    ) -> Result<HttpResponse, TransportError> {
        let started = self.clock.now();
        let left = self.deadline.remaining(started);
        request.timeout = Some(request.timeout.map_or(left, |t| t.min(left)));
        let host = request.authority.clone();
        let outcome = self.transport.send(request);
        crate::diag::line(|| {
            let elapsed = self.clock.now().duration_since(started).unwrap_or_default();
            crate::diag::request_line(what, &host, &outcome, elapsed, 1)
        });
        outcome
    }
}

/// A named provider of the chain.
type Provider = (
    &'static str,
    fn(&Context<'_>) -> Result<Found, CredentialsError>,
);

/// The chain, in the official order.
const CHAIN: [Provider; 7] = [
    ("environment", env::official),
    ("environment (legacy names)", env::legacy),
    ("RRSA/OIDC", oidc::oidc),
    ("Aliyun CLI profile", cli_profile::cli_profile),
    ("credentials file", credentials_file::credentials_file),
    ("ECS RAM role", imds::ecs_ram_role),
    ("credentials URI", uri::credentials_uri),
];

/// Walks the chain in the official order and returns the first credentials found.
pub fn resolve(cx: &Context<'_>) -> Result<Credentials, CredentialsError> {
    let mut skipped = Vec::new();
    for (name, provider) in CHAIN {
        match provider(cx) {
            Ok(Found::Yes(c)) => {
                crate::diag::line(|| format!("credentials: using {}", c.source));
                return Ok(c);
            }
            outcome => {
                // An unusable source does not hide the ones after it (as in the official
                // chain), but its reason is reported if nothing else works.
                let why = match outcome {
                    Ok(Found::Skipped(why)) => why,
                    Err(e) => e.to_string(),
                    Ok(Found::Yes(_)) => unreachable!("answered above"),
                };
                crate::diag::line(|| format!("credentials: {name} skipped: {why}"));
                skipped.push((name, why));
            }
        }
    }
    Err(CredentialsError::NoneFound(skipped))
}

fn keys_from(
    source: &str,
    id: &str,
    secret: &str,
    token: Option<String>,
) -> Result<Found, CredentialsError> {
    if id.trim().is_empty() || secret.trim().is_empty() {
        return Err(CredentialsError::Config(format!(
            "{source} has no access_key_id or no access_key_secret"
        )));
    }
    Ok(Found::Yes(Credentials {
        access_key_id: id.trim().to_string(),
        access_key_secret: secret.trim().to_string(),
        security_token: token.map(|t| t.trim().to_string()),
        source: source.to_string(),
    }))
}

/// Test helpers shared by the providers' tests.
#[cfg(test)]
pub(crate) mod testing {
    use crate::transport::Transport;
    use std::collections::HashMap;
    use std::time::{Duration, SystemTime};

    /// The chain over `env` and `transport`, with a minute to run.
    pub fn resolve(
        env: super::EnvLookup<'_>,
        transport: &dyn Transport,
    ) -> Result<super::Credentials, super::CredentialsError> {
        let deadline = crate::retry::Deadline::limit(SystemTime::now(), Duration::from_secs(60));
        super::resolve(&super::Context::new(env, transport, deadline))
    }

    /// An environment lookup over `pairs`.
    pub fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    /// The same, with the ECS metadata source disabled (tests never reach a metadata service).
    pub fn env_off_ecs(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let mut all = pairs.to_vec();
        all.push(("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true"));
        env(&all)
    }

    /// Writes `text` to a file called `name` in a fresh directory; returns its path.
    pub fn temp_file(name: &str, text: &str) -> String {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("cred-test-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::cli_profile::cli_mode;
    use super::testing::{env, temp_file};
    use super::*;

    /// The chain off ECS: the metadata service does not answer, nothing else is asked.
    fn resolve(env: EnvLookup<'_>) -> Result<Credentials, CredentialsError> {
        let t = crate::transport::mock::MockTransport::new(|r| {
            assert_eq!(
                r.authority,
                imds::DEFAULT_ENDPOINT,
                "unexpected request {r:?}"
            );
            Err(crate::transport::TransportError::Connect {
                authority: r.authority.clone(),
                detail: "unreachable".into(),
            })
        });
        super::testing::resolve(env, &t)
    }

    #[test]
    fn reads_the_official_names_first() {
        let e = env(&[
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", "id1"),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "s1"),
            ("ALICLOUD_ACCESS_KEY", "id2"),
            ("ALICLOUD_SECRET_KEY", "s2"),
        ]);
        let c = resolve(&e).unwrap();
        assert_eq!((c.access_key_id.as_str(), c.security_token), ("id1", None));
        assert!(c.source.contains("ALIBABA_CLOUD_ACCESS_KEY_ID"));
    }

    #[test]
    fn reads_an_sts_token_and_the_legacy_names() {
        let e = env(&[
            ("ALICLOUD_ACCESS_KEY", "STS.id"),
            ("ALICLOUD_SECRET_KEY", "s"),
            ("ALICLOUD_ACCESS_KEY_STS_TOKEN", "tok"),
        ]);
        let c = resolve(&e).unwrap();
        assert_eq!(c.security_token.as_deref(), Some("tok"));
        assert!(c.source.contains("ALICLOUD_ACCESS_KEY_STS_TOKEN"));
    }

    #[test]
    fn half_a_key_is_an_error_that_names_the_missing_variable() {
        let e = env(&[("ALIBABA_CLOUD_ACCESS_KEY_ID", "id1")]);
        let err = resolve(&e).unwrap_err().to_string();
        assert!(
            err.contains("ALIBABA_CLOUD_ACCESS_KEY_SECRET is set")
                || err.contains("ALIBABA_CLOUD_ACCESS_KEY_SECRET")
        );
        assert!(!err.contains("id1"), "never echo a value: {err}");
    }

    #[test]
    fn nothing_found_lists_every_source_without_values() {
        let err = resolve(&env(&[("ALIBABA_CLOUD_ACCESS_KEY_ID", " ")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("environment:") && err.contains("legacy"),
            "{err}"
        );
    }

    const CLI: &str = r#"{"current":"dev","profiles":[
        {"name":"dev","mode":"AK","access_key_id":"cli-id","access_key_secret":"cli-secret"},
        {"name":"sts","mode":"StsToken","access_key_id":"STS.x","access_key_secret":"s","sts_token":"t"},
        {"name":"role","mode":"RsaKeyPair","access_key_id":"a","access_key_secret":"b"}]}"#;

    #[test]
    fn reads_the_aliyun_cli_profile_named_by_current_or_the_variable() {
        let path = temp_file("config.json", CLI);
        let c = resolve(&env(&[("ALIBABA_CLOUD_CONFIG_FILE", &path)])).unwrap();
        assert_eq!(c.access_key_id, "cli-id");
        assert!(
            c.source.contains("\"dev\"") && c.source.contains("mode AK"),
            "{}",
            c.source
        );
        let c = resolve(&env(&[
            ("ALIBABA_CLOUD_CONFIG_FILE", &path),
            ("ALIBABA_CLOUD_PROFILE", "sts"),
        ]))
        .unwrap();
        assert_eq!(c.security_token.as_deref(), Some("t"));
        // The environment comes first.
        let c = resolve(&env(&[
            ("ALIBABA_CLOUD_CONFIG_FILE", &path),
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", "env-id"),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "env-secret"),
        ]))
        .unwrap();
        assert_eq!(c.access_key_id, "env-id");
    }

    #[test]
    fn mode_names_are_case_insensitive_as_in_the_aliyun_cli() {
        assert_eq!(cli_mode("ak"), "AK");
        assert_eq!(cli_mode(" oidc "), "OIDC");
        assert_eq!(cli_mode("chainableramrolearn"), "ChainableRamRoleArn");
        assert_eq!(cli_mode("STSTOKEN"), "StsToken");
        assert_eq!(cli_mode("cloudsso"), "CloudSSO");
        assert_eq!(cli_mode("Magic"), "Magic");
        let path = temp_file(
            "config.json",
            r#"{"current":"dev","profiles":[
            {"name":"dev","mode":"ak","access_key_id":"cli-id","access_key_secret":"cli-secret"},
            {"name":"sts","mode":"ststoken","access_key_id":"STS.x","access_key_secret":"s","sts_token":"t"},
            {"name":"sso","mode":"cloudsso"}]}"#,
        );
        let c = resolve(&env(&[("ALIBABA_CLOUD_CONFIG_FILE", &path)])).unwrap();
        assert_eq!(c.access_key_id, "cli-id");
        assert!(c.source.contains("(mode AK)"), "{}", c.source);
        let c = resolve(&env(&[
            ("ALIBABA_CLOUD_CONFIG_FILE", &path),
            ("ALIBABA_CLOUD_PROFILE", "sts"),
        ]))
        .unwrap();
        assert_eq!(c.security_token.as_deref(), Some("t"));
        let e = resolve(&env(&[
            ("ALIBABA_CLOUD_CONFIG_FILE", &path),
            ("ALIBABA_CLOUD_PROFILE", "sso"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("(mode CloudSSO) has no cloud_sso_sign_in_url"),
            "{e}"
        );
    }

    #[test]
    fn an_unsupported_mode_is_named() {
        let path = temp_file("config.json", CLI);
        let e = resolve(&env(&[
            ("ALIBABA_CLOUD_CONFIG_FILE", &path),
            ("ALIBABA_CLOUD_PROFILE", "role"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("uses mode \"RsaKeyPair\"") && e.contains("CloudSSO, OAuth)"),
            "{e}"
        );
        let e = resolve(&env(&[
            ("ALIBABA_CLOUD_CONFIG_FILE", &path),
            ("ALIBABA_CLOUD_PROFILE", "nope"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("no profile \"nope\"") && e.contains("dev, sts, role"),
            "{e}"
        );
    }

    #[test]
    fn reads_the_credentials_file_after_the_cli_profile() {
        let ini = temp_file("credentials", "# comment\n[default]\ntype = access_key\naccess_key_id = \"ini-id\"\naccess_key_secret = ini-secret ; note\n[other]\ntype = external\n");
        let c = resolve(&env(&[("ALIBABA_CLOUD_CREDENTIALS_FILE", &ini)])).unwrap();
        assert_eq!(
            (c.access_key_id.as_str(), c.access_key_secret.as_str()),
            ("ini-id", "ini-secret")
        );
        let cli = temp_file("config.json", CLI);
        let c = resolve(&env(&[
            ("ALIBABA_CLOUD_CREDENTIALS_FILE", &ini),
            ("ALIBABA_CLOUD_CONFIG_FILE", &cli),
        ]))
        .unwrap();
        assert_eq!(
            c.access_key_id, "cli-id",
            "the CLI profile comes before the credentials file"
        );
        let e = resolve(&env(&[
            ("ALIBABA_CLOUD_CREDENTIALS_FILE", &ini),
            ("ALIBABA_CLOUD_PROFILE", "other"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(e.contains("\"external\""), "{e}");
    }

    #[test]
    fn unreadable_and_malformed_files_are_clear_errors() {
        let e = resolve(&env(&[(
            "ALIBABA_CLOUD_CONFIG_FILE",
            "/nonexistent/config.json",
        )]))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("cannot read ALIBABA_CLOUD_CONFIG_FILE=/nonexistent/config.json"),
            "{e}"
        );
        let bad = temp_file("bad.json", "{not json");
        let e = resolve(&env(&[("ALIBABA_CLOUD_CONFIG_FILE", &bad)]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a valid Aliyun CLI config"), "{e}");
    }

    #[test]
    fn a_file_the_host_did_not_share_is_named_with_what_to_do() {
        let token = temp_file("token", "jwt");
        let e = resolve(&env(&[
            ("ALIBABA_CLOUD_ROLE_ARN", "acs:ram::1:role/r"),
            (
                "ALIBABA_CLOUD_OIDC_PROVIDER_ARN",
                "acs:ram::1:oidc-provider/p",
            ),
            ("ALIBABA_CLOUD_OIDC_TOKEN_FILE", &token),
            (
                "SIGSTORE_ALIBABAKMS_NOT_SHARED",
                "ALIBABA_CLOUD_CONFIG_FILE,ALIBABA_CLOUD_OIDC_TOKEN_FILE",
            ),
        ]))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains(&format!(
                "ALIBABA_CLOUD_OIDC_TOKEN_FILE={token} is not shared with the plugin's sandbox"
            )) && e.contains("Move the file into a directory of its own"),
            "{e}"
        );
        // Only the listed variables: a readable file named by another one is read.
        let cli = temp_file("config.json", CLI);
        let c = resolve(&env(&[
            ("ALIBABA_CLOUD_CONFIG_FILE", &cli),
            (
                "SIGSTORE_ALIBABAKMS_NOT_SHARED",
                "ALIBABA_CLOUD_CREDENTIALS_FILE",
            ),
        ]))
        .unwrap();
        assert_eq!(c.access_key_id, "cli-id");
    }

    #[test]
    fn debug_output_redacts_secrets() {
        let c = resolve(&env(&[
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAIexample"),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "topsecret"),
            ("ALIBABA_CLOUD_SECURITY_TOKEN", "tok"),
        ]))
        .unwrap();
        let s = format!("{c:?}");
        assert!(
            !s.contains("topsecret") && !s.contains("LTAIexample") && !s.contains("tok\""),
            "{s}"
        );
    }
}
