//! Where the AccessKey comes from: the providers of Alibaba Cloud's default credential chain,
//! tried in the official order. Each provider either yields credentials, says why it was
//! skipped, or fails; when none yields, the error lists every source and why, never a value.

use std::fmt;

/// An AccessKey pair, with an STS token when the key is temporary.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub access_key_id: String,
    pub access_key_secret: String,
    pub security_token: Option<String>,
    /// Where these came from, e.g. "environment (ALIBABA_CLOUD_ACCESS_KEY_ID, …)", so that
    /// an error about them can say what to fix.
    pub source: String,
}

// Never print a secret, even in debug output.
impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &"<redacted>")
            .field("access_key_secret", &"<redacted>")
            .field(
                "security_token",
                &self.security_token.as_ref().map(|_| "<redacted>"),
            )
            .field("source", &self.source)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialsError(pub String);

impl fmt::Display for CredentialsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
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

/// A static AccessKey from environment variables, under one naming scheme.
fn env_keys(
    env: EnvLookup<'_>,
    id: &str,
    secret: &str,
    token: &str,
) -> Result<Found, CredentialsError> {
    match (var(env, id), var(env, secret)) {
        (Some(access_key_id), Some(access_key_secret)) => {
            let security_token = var(env, token);
            let mut names = format!("{id}, {secret}");
            if security_token.is_some() {
                names.push_str(&format!(", {token}"));
            }
            Ok(Found::Yes(Credentials {
                access_key_id,
                access_key_secret,
                security_token,
                source: format!("environment ({names})"),
            }))
        }
        (Some(_), None) => Err(CredentialsError(format!(
            "{id} is set but {secret} is not; set both"
        ))),
        (None, Some(_)) => Err(CredentialsError(format!(
            "{secret} is set but {id} is not; set both"
        ))),
        (None, None) => Ok(Found::Skipped(format!("{id} and {secret} are not set"))),
    }
}

/// A named provider of the chain.
type Provider<'a> = (
    &'static str,
    &'a dyn Fn() -> Result<Found, CredentialsError>,
);

/// Walks the chain and returns the first credentials found.
pub fn resolve(env: EnvLookup<'_>) -> Result<Credentials, CredentialsError> {
    let providers: [Provider<'_>; 2] = [
        ("environment", &|| {
            env_keys(
                env,
                "ALIBABA_CLOUD_ACCESS_KEY_ID",
                "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
                "ALIBABA_CLOUD_SECURITY_TOKEN",
            )
        }),
        ("environment (legacy names)", &|| {
            env_keys(
                env,
                "ALICLOUD_ACCESS_KEY",
                "ALICLOUD_SECRET_KEY",
                "ALICLOUD_ACCESS_KEY_STS_TOKEN",
            )
        }),
    ];
    let mut skipped = Vec::new();
    for (name, provider) in providers {
        match provider()? {
            Found::Yes(c) => return Ok(c),
            Found::Skipped(why) => skipped.push(format!("{name}: {why}")),
        }
    }
    Err(CredentialsError(format!(
        "no Alibaba Cloud credentials were found; tried {}. Set ALIBABA_CLOUD_ACCESS_KEY_ID and \
         ALIBABA_CLOUD_ACCESS_KEY_SECRET (and ALIBABA_CLOUD_SECURITY_TOKEN for an STS token)",
        skipped.join("; ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
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
        let err = resolve(&e).unwrap_err().0;
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
            .0;
        assert!(
            err.contains("environment:") && err.contains("legacy"),
            "{err}"
        );
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
