//! The sandbox policy: everything the guest component is handed, as plain data.
//!
//! The guest gets no ambient authority. What it may see (environment variables), read
//! (files) and reach (HTTPS hosts) is decided here, once, from the host's environment, and
//! printed by `--print-sandbox`. `run.rs` and `egress/` only apply this struct.
//!
//! The concerns live apart: [`grants`] (the files and directories the guest may read),
//! [`allow`] (where its HTTP may go), [`cli_config`] (the Aliyun CLI profiles both follow)
//! and [`display`] (how `--print-sandbox` shows it all);
//! this file assembles them into one [`SandboxPolicy`].

use std::fmt;

use alibabakms_contract::vars;

mod allow;
mod cli_config;
mod display;
mod grants;

use allow::{hosts_named_by_env, hosts_named_by_profiles};
pub use allow::{AllowedHosts, ALLOWED_HOSTS_ENV};
use grants::{cli_oidc_token_dirs, granted_files, home_dir, CREDENTIAL_FILES};
pub use grants::{GrantedDir, GrantedFile};

/// Environment variables passed to the guest when set: the credential chain's own variables
/// and the plugin's switches, as the guest reads them. Nothing else of the host's environment
/// is visible inside.
pub const GUEST_ENV_VARS: &[&str] = vars::PASSED;

/// Turns on diagnostics on stderr (the guest's and the host's); never prints a secret.
pub const DEBUG_ENV: &str = vars::DEBUG;

/// What the guest component may see and reach.
#[derive(Clone, PartialEq, Eq)]
pub struct SandboxPolicy {
    /// Variables passed to the guest, with their values. Never printed: `Debug` and
    /// `Display` show names only.
    pub env: Vec<(String, String)>,
    /// Where the guest's HTTP requests may go.
    pub hosts: AllowedHosts,
    /// Credential files the guest may read (their directories, read-only).
    pub files: Vec<GrantedFile>,
    /// Directories of token files named inside the Aliyun CLI config (read-only).
    pub dirs: Vec<GrantedDir>,
    /// Credential and token files that are not shared, and why (shown by `--print-sandbox`;
    /// the guest's error names the variable or the profile, and the path).
    pub not_shared: Vec<String>,
    /// Where the component's `cache` import keeps key metadata (None: nothing is kept), and
    /// for how long the component keeps using it.
    pub cache: Option<std::path::PathBuf>,
    pub cache_ttl: Result<std::time::Duration, String>,
}

/// Set by the host (never taken from the user's environment): the comma-separated names of
/// the credential-file variables whose file was not shared because its directory is `/` or
/// contains the home directory, so the guest says so instead of "file not found".
pub const NOT_SHARED_ENV: &str = vars::NOT_SHARED;

impl SandboxPolicy {
    /// Builds the policy from the process environment.
    pub fn from_env() -> Result<Self, PolicyError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Builds the policy from any variable lookup (the environment, or a table in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, PolicyError> {
        let mut env: Vec<(String, String)> = GUEST_ENV_VARS
            .iter()
            .filter_map(|name| lookup(name).map(|value| (name.to_string(), value)))
            .collect();
        let mut hosts = match lookup(ALLOWED_HOSTS_ENV) {
            Some(list) => AllowedHosts::parse(&list)?,
            None => AllowedHosts::default(),
        };
        hosts.from_env = hosts_named_by_env(&lookup);
        let (files, refused) = granted_files(&lookup);
        for cf in CREDENTIAL_FILES {
            match files.iter().find(|f| f.var == cf.var) {
                // The guest finds a granted file through its variable, at its sandbox path.
                Some(f) => env.push((f.var.to_string(), f.guest_path.clone())),
                // A path the user named that is not a readable file, or that is not shared:
                // pass it on unchanged so the guest's error names the variable and the path.
                None => {
                    let refused = refused.iter().find(|r| r.var == cf.var);
                    if let Some(p) = refused
                        .map(|r| r.path.clone())
                        .or_else(|| lookup(cf.var).filter(|p| !p.trim().is_empty()))
                    {
                        env.push((cf.var.to_string(), p));
                    }
                }
            }
        }
        if !refused.is_empty() {
            let names: Vec<&str> = refused.iter().map(|r| r.var).collect();
            env.push((NOT_SHARED_ENV.to_string(), names.join(",")));
        }
        // The selected CLI profile's chain: its OIDC token directories and sign-in hosts.
        let chain = cli_config::selected_chain(&lookup, &files);
        let (dirs, mut not_shared) = cli_oidc_token_dirs(&lookup, chain.as_ref());
        hosts.from_profiles = hosts_named_by_profiles(&lookup, chain.as_ref());
        not_shared.splice(
            0..0,
            refused
                .iter()
                .map(|r| format!("{}={} ({})", r.var, r.path, r.reason)),
        );
        let cache_ttl = alibabakms_contract::cache_ttl(lookup(vars::CACHE_TTL).as_deref());
        let cache = match &cache_ttl {
            Ok(ttl) if !ttl.is_zero() => crate::cache::default_dir(
                lookup("XDG_CACHE_HOME").as_deref(),
                home_dir(&lookup).as_deref(),
            ),
            _ => None,
        };
        Ok(Self {
            env,
            hosts,
            files,
            dirs,
            not_shared,
            cache,
            cache_ttl,
        })
    }

    /// Whether `SIGSTORE_ALIBABAKMS_DEBUG` asks for per-request diagnostics on stderr.
    pub fn debug(&self) -> bool {
        self.env.iter().any(|(name, value)| {
            name == DEBUG_ENV && !matches!(value.trim(), "" | "0" | "false" | "no" | "off")
        })
    }

    /// Names of the variables passed to the guest.
    pub fn env_names(&self) -> impl Iterator<Item = &str> {
        self.env.iter().map(|(name, _)| name.as_str())
    }
}

/// A [`ALLOWED_HOSTS_ENV`] entry that could not be understood.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyError {
    pub entry: String,
    pub reason: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{ALLOWED_HOSTS_ENV}: entry {:?} is invalid: {}; expected a comma-separated list of host[:port]",
            self.entry, self.reason
        )
    }
}

impl std::error::Error for PolicyError {}

#[cfg(test)]
mod tests;
