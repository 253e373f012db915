//! The Aliyun CLI's `~/.aliyun/config.json` (`aliyun configure`): the profile named by
//! `ALIBABA_CLOUD_PROFILE` or the file's `current`, in each mode the plugin supports,
//! source profiles followed to a bounded depth. The sign-in modes (`CloudSSO`, `OAuth`) live
//! in [`super::cli_signin`]; `External` is refused.

use super::cli_signin::{self, Named};
use super::files::{not_configured, profile_name, read_named_file, read_small_file};
use super::{imds, keys_from, sts, var, Context, Credentials, CredentialsError, Found};

#[derive(serde::Deserialize)]
struct CliConfig {
    #[serde(default)]
    current: String,
    #[serde(default)]
    profiles: Vec<CliProfile>,
}

/// One profile, with the fields of the modes the plugin reads (names as in credentials-go
/// providers/cli_profile.go `type profile` and aliyun-cli config/profile.go).
#[derive(serde::Deserialize)]
pub(super) struct CliProfile {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub mode: String,
    #[serde(default)]
    pub access_key_id: String,
    #[serde(default)]
    pub access_key_secret: String,
    #[serde(default)]
    pub sts_token: String,
    /// Unix seconds: until when the STS credentials the CLI stored hold (CloudSSO, OAuth).
    #[serde(default)]
    pub sts_expiration: serde_json::Value,
    #[serde(default)]
    pub ram_role_arn: String,
    #[serde(default)]
    pub ram_session_name: String,
    #[serde(default)]
    pub ram_role_name: String,
    #[serde(default)]
    pub source_profile: String,
    #[serde(default)]
    pub sts_region: String,
    #[serde(default)]
    pub policy: String,
    #[serde(default)]
    pub external_id: String,
    #[serde(default)]
    pub oidc_provider_arn: String,
    #[serde(default)]
    pub oidc_token_file: String,
    /// Seconds, as `aliyun configure` writes it (0 or absent: the default).
    #[serde(default)]
    pub expired_seconds: serde_json::Value,
    #[serde(default)]
    pub cloud_sso_sign_in_url: String,
    #[serde(default)]
    pub cloud_sso_account_id: String,
    #[serde(default)]
    pub cloud_sso_access_config: String,
    /// The CloudSSO sign-in's access token.
    #[serde(default)]
    pub access_token: String,
    /// Unix seconds.
    #[serde(default)]
    pub cloud_sso_access_token_expire: serde_json::Value,
    #[serde(default)]
    pub oauth_site_type: String,
    #[serde(default)]
    pub oauth_access_token: String,
    /// Unix seconds.
    #[serde(default)]
    pub oauth_access_token_expire: serde_json::Value,
    /// Read only to say whether the CLI can refresh the access token; never sent.
    #[serde(default)]
    pub oauth_refresh_token: String,
}

/// `~/.aliyun/config.json`, as written by `aliyun configure`.
pub fn cli_profile(cx: &Context<'_>) -> Result<Found, CredentialsError> {
    let env = cx.env;
    const VAR: &str = alibabakms_contract::vars::CONFIG_FILE;
    if var(env, "ALIBABA_CLOUD_CLI_PROFILE_DISABLED")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    {
        return Ok(Found::Skipped(
            "disabled by ALIBABA_CLOUD_CLI_PROFILE_DISABLED".into(),
        ));
    }
    let Some((path, text)) = read_named_file(env, VAR)? else {
        return Ok(Found::Skipped(not_configured(VAR)));
    };
    let config: CliConfig = serde_json::from_str(&text).map_err(|e| {
        CredentialsError::Config(format!(
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
        cx,
        config: &config,
        path: &path,
    };
    cli.chain_from(&name)?;
    cli.profile(&name, chosen_by).map(Found::Yes)
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
pub(super) fn cli_mode(mode: &str) -> &str {
    let mode = mode.trim();
    CLI_MODES
        .iter()
        .find(|known| known.eq_ignore_ascii_case(mode))
        .copied()
        .unwrap_or(mode)
}

/// One loaded Aliyun CLI config, resolving profiles (and their source profiles).
struct Cli<'a> {
    cx: &'a Context<'a>,
    config: &'a CliConfig,
    path: &'a str,
}

/// How deep `ChainableRamRoleArn` profiles may chain (each link is one AssumeRole).
use alibabakms_contract::{profile_chain, ProfileChainError, MAX_PROFILE_CHAIN};

impl Cli<'_> {
    /// Walks the chain from `name` first (the walk the host shares token files by), so a
    /// loop or a chain too deep fails before any request.
    fn chain_from(&self, name: &str) -> Result<(), CredentialsError> {
        let path = self.path;
        let source_of = |n: &str| {
            let p = self.config.profiles.iter().find(|p| p.name == n)?;
            let from = p.source_profile.trim();
            (cli_mode(&p.mode) == "ChainableRamRoleArn" && !from.is_empty())
                .then(|| from.to_string())
        };
        match profile_chain(name, source_of) {
            Ok(_) => Ok(()),
            Err(ProfileChainError::Loop { chain, again }) => {
                Err(CredentialsError::Config(format!(
                    "profiles in {path} chain in a loop: {} -> {again}",
                    chain.join(" -> ")
                )))
            }
            Err(ProfileChainError::TooDeep { chain }) => Err(CredentialsError::Config(format!(
                "profiles in {path} chain more than {MAX_PROFILE_CHAIN} deep: {}",
                chain.join(" -> ")
            ))),
        }
    }

    fn profile(&self, name: &str, chosen_by: &str) -> Result<Credentials, CredentialsError> {
        let (env, path) = (self.cx.env, self.path);
        let profile = self
            .config
            .profiles
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| {
                CredentialsError::Config(format!(
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
                Found::Skipped(why) => Err(CredentialsError::Config(why)),
            }
        };
        let non_empty = |v: &'_ str| Some(v.trim().to_string()).filter(|v| !v.is_empty());
        let session = non_empty(&profile.ram_session_name);
        let role_arn = || {
            non_empty(&profile.ram_role_arn)
                .ok_or_else(|| CredentialsError::Config(format!("{source} has no ram_role_arn")))
        };
        // The session length of the role assumptions (`expired_seconds`), checked before any
        // request.
        let duration = || -> Result<u32, CredentialsError> {
            let what = format!("expired_seconds of profile {name:?} in {path}");
            let seconds = match &profile.expired_seconds {
                serde_json::Value::Null => None,
                serde_json::Value::Number(n) => Some(n.as_i64().ok_or_else(|| {
                    CredentialsError::Config(format!("{what} is not a whole number of seconds"))
                })?),
                _ => {
                    return Err(CredentialsError::Config(format!(
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
            sts::assume_role(self.cx, &with, &role_arn()?, &options)
        };
        match mode {
            "AK" => keys(None),
            "StsToken" => {
                let token = Some(profile.sts_token.clone()).filter(|t| !t.is_empty());
                if token.is_none() {
                    return Err(CredentialsError::Config(format!(
                        "{source} has no sts_token"
                    )));
                }
                keys(token)
            }
            "RamRoleArn" => assume(keys(
                Some(profile.sts_token.clone()).filter(|t| !t.is_empty()),
            )?),
            "EcsRamRole" => {
                let role = Some(profile.ram_role_name.trim().to_string()).filter(|r| !r.is_empty());
                match imds::fetch(self.cx, role)? {
                    Found::Yes(c) => Ok(Credentials {
                        source: format!("{} for {source}", c.source),
                        ..c
                    }),
                    Found::Skipped(why) => {
                        Err(CredentialsError::Config(format!("{source}: {why}")))
                    }
                }
            }
            "OIDC" => {
                let role = role_arn()?;
                let provider = non_empty(&profile.oidc_provider_arn).ok_or_else(|| {
                    CredentialsError::Config(format!("{source} has no oidc_provider_arn"))
                })?;
                let file = non_empty(&profile.oidc_token_file).ok_or_else(|| {
                    CredentialsError::Config(format!("{source} has no oidc_token_file"))
                })?;
                // The host shares the token file's directory at the same path (see
                // host/src/policy/grants.rs); re-read on every run, as the token rotates.
                let token = read_small_file(
                    &file,
                    &format!("the oidc_token_file {file} of profile {name:?} in {path}"),
                )
                .map_err(|e| {
                    CredentialsError::Config(format!(
                        "{e} (the sandbox shares the directory of an absolute oidc_token_file \
                         that exists, unless that directory is / or contains your home \
                         directory: keep the token in a directory of its own; see \
                         --print-sandbox)"
                    ))
                })?;
                let token = token.trim();
                if token.is_empty() {
                    return Err(CredentialsError::Config(format!(
                        "the oidc_token_file {file} of profile {name:?} in {path} is empty"
                    )));
                }
                let duration = duration()?;
                let host = sts::endpoint_in(env, Some(&profile.sts_region))?;
                let session = session
                    .clone()
                    .unwrap_or_else(|| sts::session_name(env, self.cx.clock.now()));
                sts::assume_role_with_oidc(
                    self.cx,
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
                    return Err(CredentialsError::Config(format!(
                        "{source} has no source_profile"
                    )));
                }
                // Checked before the source profile sends anything.
                duration()?;
                let base = self.profile(from, &format!("source_profile of {name:?}"))?;
                assume(base)
            }
            "CloudSSO" => cli_signin::cloud_sso(self.cx, profile, &Named { name, path }),
            "OAuth" => cli_signin::oauth(self.cx, profile, &Named { name, path }),
            // Decided, not pending: the command line may hold a secret, so it is never shown.
            "External" => Err(CredentialsError::Config(format!(
                "profile {name:?} in {path} uses mode External, which gets credentials by running \
                 the program in its process_command; this plugin does not run it, as a program \
                 named in a config file would run outside the sandbox that keeps a hostile \
                 config harmless. Run the program yourself and export the credentials it gives \
                 as ALIBABA_CLOUD_ACCESS_KEY_ID, ALIBABA_CLOUD_ACCESS_KEY_SECRET and \
                 ALIBABA_CLOUD_SECURITY_TOKEN, or serve them at ALIBABA_CLOUD_CREDENTIALS_URI, \
                 or choose another profile with ALIBABA_CLOUD_PROFILE"
            ))),
            other => Err(CredentialsError::Config(format!(
                "profile {name:?} in {path} uses mode {other:?}, which this plugin does not \
                 support yet (supported: AK, StsToken, RamRoleArn, EcsRamRole, OIDC, \
                 ChainableRamRoleArn, CloudSSO, OAuth); set ALIBABA_CLOUD_ACCESS_KEY_ID and \
                 ALIBABA_CLOUD_ACCESS_KEY_SECRET or choose another profile with \
                 ALIBABA_CLOUD_PROFILE"
            ))),
        }
    }
}
