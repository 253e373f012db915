//! Where the AccessKey comes from: the providers of Alibaba Cloud's default credential chain,
//! tried in the official order. Each provider either yields credentials, says why it was
//! skipped, or fails; when none yields, the error lists every source and why, never a value.

use crate::transport::Transport;
use std::fmt;

mod imds;
mod sts;
mod uri;

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

/// Walks the chain in the official order and returns the first credentials found. Network
/// sources (STS) go through `transport`.
pub fn resolve(
    env: EnvLookup<'_>,
    transport: &dyn Transport,
) -> Result<Credentials, CredentialsError> {
    let now = std::time::SystemTime::now();
    let providers: [Provider<'_>; 7] = [
        ("environment", &|| {
            let found = env_keys(
                env,
                "ALIBABA_CLOUD_ACCESS_KEY_ID",
                "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
                "ALIBABA_CLOUD_SECURITY_TOKEN",
            )?;
            // Static keys with a role ARN: assume the role with them (as the ACK chain does).
            match (found, var(env, "ALIBABA_CLOUD_ROLE_ARN")) {
                (Found::Yes(keys), Some(role)) => {
                    sts::assume_role(env, transport, now, &keys, &role, &Default::default())
                        .map(Found::Yes)
                }
                (found, _) => Ok(found),
            }
        }),
        ("environment (legacy names)", &|| {
            env_keys(
                env,
                "ALICLOUD_ACCESS_KEY",
                "ALICLOUD_SECRET_KEY",
                "ALICLOUD_ACCESS_KEY_STS_TOKEN",
            )
        }),
        ("RRSA/OIDC", &|| sts::oidc(env, transport, now)),
        ("Aliyun CLI profile", &|| cli_profile(env, transport, now)),
        ("credentials file", &|| {
            credentials_file(env, transport, now)
        }),
        ("ECS RAM role", &|| imds::ecs_ram_role(env, transport)),
        ("credentials URI", &|| {
            uri::credentials_uri(env, transport, now)
        }),
    ];
    let mut skipped = Vec::new();
    for (name, provider) in providers {
        match provider() {
            Ok(Found::Yes(c)) => {
                crate::diag::line(|| format!("credentials: using {}", c.source));
                return Ok(c);
            }
            Ok(Found::Skipped(why)) | Err(CredentialsError(why)) => {
                // An unusable source does not hide the ones after it (as in the official
                // chain), but its reason is reported if nothing else works.
                crate::diag::line(|| format!("credentials: {name} skipped: {why}"));
                skipped.push(format!("{name}: {why}"));
            }
        }
    }
    Err(CredentialsError(format!(
        "no Alibaba Cloud credentials were found; tried {}. Set ALIBABA_CLOUD_ACCESS_KEY_ID and \
         ALIBABA_CLOUD_ACCESS_KEY_SECRET (and ALIBABA_CLOUD_SECURITY_TOKEN for an STS token), \
         or configure a profile with `aliyun configure`",
        skipped.join("; ")
    )))
}

/// Set by the host, not the user: the credential-file variables whose file it did not share.
const NOT_SHARED_VAR: &str = "SIGSTORE_ALIBABAKMS_NOT_SHARED";

/// Credential files are small; a larger one is not a credential file.
const MAX_FILE_BYTES: u64 = 1 << 20;

/// Reads a credential file named by `var` (the host grants its directory read-only and sets
/// `var` to the path inside the sandbox). `None` when the variable is unset: no such file.
fn read_named_file(
    env: EnvLookup<'_>,
    variable: &str,
) -> Result<Option<(String, String)>, CredentialsError> {
    let Some(path) = var(env, variable) else {
        return Ok(None);
    };
    // The host lists the files it would not share (their directory is `/` or contains the
    // home directory): say so, rather than "not found".
    if var(env, NOT_SHARED_VAR).is_some_and(|names| names.split(',').any(|n| n == variable)) {
        let dir = std::path::Path::new(&path)
            .parent()
            .map(|d| d.display().to_string())
            .unwrap_or_default();
        return Err(CredentialsError(format!(
            "{variable}={path} is not shared with the plugin's sandbox: its directory {dir} is / \
             or contains your home directory, and the plugin never shares those. Move the file \
             into a directory of its own (e.g. ~/.alibabacloud/) and set {variable} to its new \
             path (see --print-sandbox)"
        )));
    }
    let text = read_small_file(&path, &format!("{variable}={path}"))?;
    Ok(Some((path, text)))
}

/// Reads a credential file at most [`MAX_FILE_BYTES`] long; `what` names it in errors.
fn read_small_file(path: &str, what: &str) -> Result<String, CredentialsError> {
    let fail = |e: std::io::Error| CredentialsError(format!("cannot read {what}: {e}"));
    // Looked at before it is opened: opening a FIFO would wait for a writer.
    if !std::fs::metadata(path).map_err(fail)?.is_file() {
        return Err(CredentialsError(format!(
            "cannot read {what}: it is not a regular file"
        )));
    }
    let file = std::fs::File::open(path).map_err(fail)?;
    let mut text = String::new();
    use std::io::Read;
    file.take(MAX_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(fail)?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(CredentialsError(format!("{what} is larger than 1 MiB")));
    }
    Ok(text)
}

/// The profile a file-based source uses: `ALIBABA_CLOUD_PROFILE`, else `fallback`.
fn profile_name(env: EnvLookup<'_>, fallback: &str) -> String {
    var(env, "ALIBABA_CLOUD_PROFILE").unwrap_or_else(|| fallback.to_string())
}

#[derive(serde::Deserialize)]
struct CliConfig {
    #[serde(default)]
    current: String,
    #[serde(default)]
    profiles: Vec<CliProfile>,
}

#[derive(serde::Deserialize)]
struct CliProfile {
    #[serde(default)]
    name: String,
    #[serde(default)]
    mode: String,
    #[serde(default)]
    access_key_id: String,
    #[serde(default)]
    access_key_secret: String,
    #[serde(default)]
    sts_token: String,
    #[serde(default)]
    ram_role_arn: String,
    #[serde(default)]
    ram_session_name: String,
    #[serde(default)]
    ram_role_name: String,
    #[serde(default)]
    source_profile: String,
    #[serde(default)]
    sts_region: String,
    #[serde(default)]
    policy: String,
    #[serde(default)]
    external_id: String,
    #[serde(default)]
    oidc_provider_arn: String,
    #[serde(default)]
    oidc_token_file: String,
    /// Seconds, as `aliyun configure` writes it (0 or absent: the default).
    #[serde(default)]
    expired_seconds: serde_json::Value,
}

/// `~/.aliyun/config.json`, as written by `aliyun configure`.
fn cli_profile(
    env: EnvLookup<'_>,
    transport: &dyn Transport,
    now: std::time::SystemTime,
) -> Result<Found, CredentialsError> {
    const VAR: &str = "ALIBABA_CLOUD_CONFIG_FILE";
    if var(env, "ALIBABA_CLOUD_CLI_PROFILE_DISABLED")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    {
        return Ok(Found::Skipped(
            "disabled by ALIBABA_CLOUD_CLI_PROFILE_DISABLED".into(),
        ));
    }
    let Some((path, text)) = read_named_file(env, VAR)? else {
        return Ok(Found::Skipped(format!(
            "no ~/.aliyun/config.json and {VAR} is not set"
        )));
    };
    let config: CliConfig = serde_json::from_str(&text).map_err(|e| {
        CredentialsError(format!(
            "{VAR}={path} is not a valid Aliyun CLI config: {e}"
        ))
    })?;
    let name = profile_name(env, &config.current);
    let chosen_by = if var(env, "ALIBABA_CLOUD_PROFILE").is_some() {
        "ALIBABA_CLOUD_PROFILE"
    } else {
        "its \"current\" field"
    };
    let cli = Cli {
        env,
        transport,
        now,
        config: &config,
        path: &path,
    };
    cli.profile(&name, chosen_by, &mut Vec::new())
        .map(Found::Yes)
}

/// Every mode the Aliyun CLI knows, spelled as it writes them (`config/profile.go`).
const CLI_MODES: &[&str] = &[
    "AK",
    "StsToken",
    "RamRoleArn",
    "EcsRamRole",
    "RsaKeyPair",
    "RamRoleArnWithRoleName",
    "ChainableRamRoleArn",
    "External",
    "CredentialsURI",
    "OIDC",
    "CloudSSO",
    "OAuth",
    "BearerToken",
    "Anonymous",
];

/// A profile's mode in the CLI's own spelling: the CLI accepts any case (its `NormalizeMode`,
/// e.g. `aliyun configure --mode oidc`), so `oidc` or `ak` mean `OIDC` and `AK` here too. A
/// name the CLI does not know is kept as written (and reported as unsupported).
fn cli_mode(mode: &str) -> &str {
    let mode = mode.trim();
    CLI_MODES
        .iter()
        .find(|known| known.eq_ignore_ascii_case(mode))
        .copied()
        .unwrap_or(mode)
}

/// One loaded Aliyun CLI config, resolving profiles (and their source profiles).
struct Cli<'a> {
    env: EnvLookup<'a>,
    transport: &'a dyn Transport,
    now: std::time::SystemTime,
    config: &'a CliConfig,
    path: &'a str,
}

/// How deep `ChainableRamRoleArn` profiles may chain (each link is one AssumeRole).
use alibabakms_contract::MAX_PROFILE_CHAIN;

impl Cli<'_> {
    fn profile(
        &self,
        name: &str,
        chosen_by: &str,
        visited: &mut Vec<String>,
    ) -> Result<Credentials, CredentialsError> {
        let (env, path) = (self.env, self.path);
        if visited.iter().any(|v| v == name) {
            return Err(CredentialsError(format!(
                "profiles in {path} chain in a loop: {} -> {name}",
                visited.join(" -> ")
            )));
        }
        if visited.len() >= MAX_PROFILE_CHAIN {
            return Err(CredentialsError(format!(
                "profiles in {path} chain more than {MAX_PROFILE_CHAIN} deep: {}",
                visited.join(" -> ")
            )));
        }
        visited.push(name.to_string());
        let profile = self
            .config
            .profiles
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| {
                CredentialsError(format!(
                    "{path} has no profile {name:?} (chosen by {chosen_by}); profiles: {}",
                    self.config
                        .profiles
                        .iter()
                        .map(|p| p.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
        let mode = cli_mode(&profile.mode);
        let source = format!("Aliyun CLI profile {name:?} in {path} (mode {mode})");
        let keys = |token: Option<String>| -> Result<Credentials, CredentialsError> {
            match keys_from(
                &source,
                &profile.access_key_id,
                &profile.access_key_secret,
                token,
            )? {
                Found::Yes(c) => Ok(c),
                Found::Skipped(why) => Err(CredentialsError(why)),
            }
        };
        let non_empty = |v: &'_ str| Some(v.trim().to_string()).filter(|v| !v.is_empty());
        let session = non_empty(&profile.ram_session_name);
        let role_arn = || {
            non_empty(&profile.ram_role_arn)
                .ok_or_else(|| CredentialsError(format!("{source} has no ram_role_arn")))
        };
        // The session length of the role assumptions (`expired_seconds`), checked before any
        // request.
        let duration = || -> Result<u32, CredentialsError> {
            let what = format!("expired_seconds of profile {name:?} in {path}");
            let seconds = match &profile.expired_seconds {
                serde_json::Value::Null => None,
                serde_json::Value::Number(n) => Some(n.as_i64().ok_or_else(|| {
                    CredentialsError(format!("{what} is not a whole number of seconds"))
                })?),
                _ => {
                    return Err(CredentialsError(format!(
                        "{what} is not a number of seconds"
                    )))
                }
            };
            sts::duration_seconds(env, seconds.filter(|s| *s != 0).map(|s| (s, what.as_str())))
        };
        let assume = |with: Credentials| {
            let options = sts::AssumeOptions {
                duration: Some(duration()?),
                session: session.as_deref(),
                region: Some(profile.sts_region.as_str()),
                policy: Some(profile.policy.as_str()),
                external_id: Some(profile.external_id.as_str()),
            };
            sts::assume_role(env, self.transport, self.now, &with, &role_arn()?, &options)
        };
        match mode {
            "AK" => keys(None),
            "StsToken" => {
                let token = Some(profile.sts_token.clone()).filter(|t| !t.is_empty());
                if token.is_none() {
                    return Err(CredentialsError(format!("{source} has no sts_token")));
                }
                keys(token)
            }
            "RamRoleArn" => assume(keys(
                Some(profile.sts_token.clone()).filter(|t| !t.is_empty()),
            )?),
            "EcsRamRole" => {
                let role = Some(profile.ram_role_name.trim().to_string()).filter(|r| !r.is_empty());
                match imds::fetch(env, self.transport, role)? {
                    Found::Yes(c) => Ok(Credentials {
                        source: format!("{} for {source}", c.source),
                        ..c
                    }),
                    Found::Skipped(why) => Err(CredentialsError(format!("{source}: {why}"))),
                }
            }
            "OIDC" => {
                let role = role_arn()?;
                let provider = non_empty(&profile.oidc_provider_arn).ok_or_else(|| {
                    CredentialsError(format!("{source} has no oidc_provider_arn"))
                })?;
                let file = non_empty(&profile.oidc_token_file)
                    .ok_or_else(|| CredentialsError(format!("{source} has no oidc_token_file")))?;
                // The host shares the token file's directory at the same path (see
                // host/src/policy.rs); re-read on every run, as the token rotates.
                let token = read_small_file(
                    &file,
                    &format!("the oidc_token_file {file} of profile {name:?} in {path}"),
                )
                .map_err(|CredentialsError(e)| {
                    CredentialsError(format!(
                        "{e} (the sandbox shares the directory of an absolute oidc_token_file \
                         that exists, unless that directory is / or contains your home \
                         directory: keep the token in a directory of its own; see \
                         --print-sandbox)"
                    ))
                })?;
                let token = token.trim();
                if token.is_empty() {
                    return Err(CredentialsError(format!(
                        "the oidc_token_file {file} of profile {name:?} in {path} is empty"
                    )));
                }
                let duration = duration()?;
                let host = sts::endpoint_in(env, Some(&profile.sts_region))?;
                let session = session
                    .clone()
                    .unwrap_or_else(|| sts::session_name(env, self.now));
                sts::assume_role_with_oidc(
                    self.transport,
                    self.now,
                    &sts::OidcExchange {
                        host: &host,
                        role_arn: &role,
                        provider_arn: &provider,
                        token,
                        session: &session,
                        duration,
                        source: &format!("role {role} via {host}, OIDC token of {source}"),
                        token_origin: &format!("the oidc_token_file {file}"),
                    },
                )
            }
            "ChainableRamRoleArn" => {
                let from = profile.source_profile.trim();
                if from.is_empty() {
                    return Err(CredentialsError(format!("{source} has no source_profile")));
                }
                // Checked before the source profile sends anything.
                duration()?;
                let base = self.profile(from, &format!("source_profile of {name:?}"), visited)?;
                assume(base)
            }
            other => Err(CredentialsError(format!(
                "profile {name:?} in {path} uses mode {other:?}, which this plugin does not \
                 support yet (supported: AK, StsToken, RamRoleArn, EcsRamRole, OIDC, \
                 ChainableRamRoleArn); set ALIBABA_CLOUD_ACCESS_KEY_ID and \
                 ALIBABA_CLOUD_ACCESS_KEY_SECRET or choose another profile with \
                 ALIBABA_CLOUD_PROFILE"
            ))),
        }
    }
}

fn keys_from(
    source: &str,
    id: &str,
    secret: &str,
    token: Option<String>,
) -> Result<Found, CredentialsError> {
    if id.trim().is_empty() || secret.trim().is_empty() {
        return Err(CredentialsError(format!(
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

/// `~/.alibabacloud/credentials`: an INI file with one section per profile.
fn credentials_file(
    env: EnvLookup<'_>,
    transport: &dyn Transport,
    now: std::time::SystemTime,
) -> Result<Found, CredentialsError> {
    const VAR: &str = "ALIBABA_CLOUD_CREDENTIALS_FILE";
    let Some((path, text)) = read_named_file(env, VAR)? else {
        return Ok(Found::Skipped(format!(
            "no ~/.alibabacloud/credentials and {VAR} is not set"
        )));
    };
    let name = profile_name(env, "default");
    let Some(section) = ini_section(&text, &name) else {
        return Ok(Found::Skipped(format!("{path} has no section [{name}]")));
    };
    let get = |k: &str| {
        section
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    };
    let source = format!("credentials file {path} [{name}]");
    match get("type") {
        "access_key" => keys_from(
            &source,
            get("access_key_id"),
            get("access_key_secret"),
            None,
        ),
        "ram_role_arn" => {
            let Found::Yes(keys) = keys_from(
                &source,
                get("access_key_id"),
                get("access_key_secret"),
                None,
            )?
            else {
                unreachable!("keys_from yields or fails")
            };
            if get("role_arn").is_empty() {
                return Err(CredentialsError(format!("{source} has no role_arn")));
            }
            let options = sts::AssumeOptions {
                session: Some(get("role_session_name")).filter(|s| !s.is_empty()),
                policy: Some(get("policy")),
                ..Default::default()
            };
            sts::assume_role(env, transport, now, &keys, get("role_arn"), &options).map(Found::Yes)
        }
        "ecs_ram_role" => {
            let role = Some(get("role_name").to_string()).filter(|r| !r.is_empty());
            match imds::fetch(env, transport, role)? {
                Found::Yes(c) => Ok(Found::Yes(Credentials {
                    source: format!("{} for {source}", c.source),
                    ..c
                })),
                Found::Skipped(why) => Err(CredentialsError(format!("{source}: {why}"))),
            }
        }
        "" => Err(CredentialsError(format!(
            "{source} has no type (expected type = access_key)"
        ))),
        other => Err(CredentialsError(format!(
            "{source} has type {other:?}, which this plugin does not support yet (supported: \
             access_key, ram_role_arn, ecs_ram_role)"
        ))),
    }
}

/// The `key = value` pairs of one `[section]`; `#`/`;` start comments, quotes are stripped.
fn ini_section(text: &str, wanted: &str) -> Option<Vec<(String, String)>> {
    let mut current: Option<&str> = None;
    let mut found: Option<Vec<(String, String)>> = None;
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = Some(name.trim());
            if name.trim() == wanted {
                found.get_or_insert_with(Vec::new);
            }
            continue;
        }
        if current == Some(wanted) {
            if let Some((k, v)) = line.split_once('=') {
                let v = v.trim().trim_matches('"').trim_matches('\'');
                found
                    .get_or_insert_with(Vec::new)
                    .push((k.trim().to_string(), v.to_string()));
            }
        }
    }
    found
}

/// Test helpers shared by the providers' tests.
#[cfg(test)]
pub(crate) mod testing {
    use std::collections::HashMap;

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
        super::resolve(env, &t)
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

    const CLI: &str = r#"{"current":"dev","profiles":[
        {"name":"dev","mode":"AK","access_key_id":"cli-id","access_key_secret":"cli-secret"},
        {"name":"sts","mode":"StsToken","access_key_id":"STS.x","access_key_secret":"s","sts_token":"t"},
        {"name":"role","mode":"CloudSSO","access_key_id":"a","access_key_secret":"b"}]}"#;

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
        .0;
        assert!(e.contains("uses mode \"CloudSSO\""), "{e}");
    }

    #[test]
    fn an_unsupported_mode_is_named() {
        let path = temp_file("config.json", CLI);
        let e = resolve(&env(&[
            ("ALIBABA_CLOUD_CONFIG_FILE", &path),
            ("ALIBABA_CLOUD_PROFILE", "role"),
        ]))
        .unwrap_err()
        .0;
        assert!(e.contains("CloudSSO"), "{e}");
        let e = resolve(&env(&[
            ("ALIBABA_CLOUD_CONFIG_FILE", &path),
            ("ALIBABA_CLOUD_PROFILE", "nope"),
        ]))
        .unwrap_err()
        .0;
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
        .0;
        assert!(e.contains("\"external\""), "{e}");
    }

    #[test]
    fn unreadable_and_malformed_files_are_clear_errors() {
        let e = resolve(&env(&[(
            "ALIBABA_CLOUD_CONFIG_FILE",
            "/nonexistent/config.json",
        )]))
        .unwrap_err()
        .0;
        assert!(
            e.contains("cannot read ALIBABA_CLOUD_CONFIG_FILE=/nonexistent/config.json"),
            "{e}"
        );
        let bad = temp_file("bad.json", "{not json");
        let e = resolve(&env(&[("ALIBABA_CLOUD_CONFIG_FILE", &bad)]))
            .unwrap_err()
            .0;
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
        .0;
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
