//! The sandbox policy: everything the guest component is handed, as plain data.
//!
//! The guest gets no ambient authority. What it may see (environment variables), read
//! (files) and reach (HTTPS hosts) is decided here, once, from the host's environment, and
//! printed by `--print-sandbox`. `run.rs` and `egress.rs` only apply this struct.

use std::fmt;

use alibabakms_contract::vars;
use http::Uri;

/// Environment variables passed to the guest when set: the credential chain's own variables
/// and the plugin's switches, as the guest reads them. Nothing else of the host's environment
/// is visible inside.
pub const GUEST_ENV_VARS: &[&str] = vars::PASSED;

/// A credential file the chain reads: the variable that names it (and that the guest reads,
/// with the path as the guest sees it), the default under the home directory, and where its
/// directory appears inside the sandbox.
struct CredentialFile {
    var: &'static str,
    /// `None`: only where the variable points.
    default_in_home: Option<&'static str>,
    guest_dir: &'static str,
}

const CREDENTIAL_FILES: &[CredentialFile] = &[
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

/// Overrides the STS endpoint (host[:port], optionally with `https://`); its host is allowed
/// because the user named it in their own environment.
pub const STS_ENDPOINT_ENV: &str = vars::STS_ENDPOINT;

/// Overrides the ECS instance metadata endpoint (plain HTTP, `http://host[:port]`).
pub const IMDS_ENDPOINT_ENV: &str = vars::IMDS_ENDPOINT;

/// A URI answering temporary credentials (`http://` or `https://`); its host is allowed with
/// its scheme and port.
pub const CREDENTIALS_URI_ENV: &str = vars::CREDENTIALS_URI;

/// The ECS instance metadata service: plain HTTP on a link-local address, always allowed (it
/// hands out the instance RAM role's credentials and nothing else).
pub const DEFAULT_IMDS_HOST: &str = "100.100.100.200";

/// One file shared read-only with the guest: its own directory is preopened (WASI cannot
/// share a single file), never the home directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrantedFile {
    /// The variable the guest reads to find it.
    pub var: &'static str,
    pub host_path: std::path::PathBuf,
    pub host_dir: std::path::PathBuf,
    pub guest_dir: &'static str,
    pub guest_path: String,
}

/// A directory shared read-only at its own absolute path, because a credential file names a
/// file in it: the `oidc_token_file` of an Aliyun CLI `OIDC` profile. The guest opens the
/// path exactly as the config file writes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrantedDir {
    pub host_dir: std::path::PathBuf,
    /// The same path, as the guest sees it.
    pub guest_dir: String,
    /// Why it is shared, e.g. `oidc_token_file of profile "ci" in /home/u/.aliyun/config.json`.
    pub why: String,
}

/// Turns on diagnostics on stderr (the guest's and the host's); never prints a secret.
pub const DEBUG_ENV: &str = vars::DEBUG;

/// Extra `host[:port]` entries a key URI may name besides Alibaba Cloud's own endpoints.
pub const ALLOWED_HOSTS_ENV: &str = "SIGSTORE_ALIBABAKMS_ALLOWED_HOSTS";

/// Alibaba Cloud's endpoints: any subdomain of this, over HTTPS on port 443.
pub const ALIBABA_DOMAIN_SUFFIX: &str = ".aliyuncs.com";

const HTTPS_PORT: u16 = 443;
const HTTP_PORT: u16 = 80;

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
        let (dirs, mut not_shared) = cli_oidc_token_dirs(&lookup, &files);
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

impl fmt::Debug for SandboxPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SandboxPolicy")
            .field("env", &self.env_names().collect::<Vec<_>>())
            .field("hosts", &self.hosts)
            .field(
                "files",
                &self.files.iter().map(|f| &f.host_path).collect::<Vec<_>>(),
            )
            .field(
                "dirs",
                &self.dirs.iter().map(|d| &d.host_dir).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl fmt::Display for SandboxPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "environment passed to the component (names only; values are never shown):"
        )?;
        if self.env.is_empty() {
            writeln!(f, "  (none set)")?;
        }
        for name in self.env_names() {
            writeln!(f, "  {name}")?;
        }
        writeln!(f, "  (candidates: {})", GUEST_ENV_VARS.join(", "))?;
        writeln!(
            f,
            "network: through wasi:http only (HTTPS; plain HTTP only to ECS instance metadata); no \
             sockets, no redirects followed"
        )?;
        writeln!(
            f,
            "  allowed: https://*{ALIBABA_DOMAIN_SUFFIX}:{HTTPS_PORT}"
        )?;
        for host in &self.hosts.extra {
            writeln!(f, "  allowed: https://{host}  (from {ALLOWED_HOSTS_ENV})")?;
        }
        writeln!(
            f,
            "  allowed: http://{DEFAULT_IMDS_HOST}:80  (ECS instance metadata)"
        )?;
        for e in &self.hosts.from_env {
            writeln!(
                f,
                "  allowed: {}://{}  (from {})",
                e.scheme(),
                e.host,
                e.var
            )?;
        }
        match (&self.cache, &self.cache_ttl) {
            (_, Err(e)) => writeln!(f, "cache: off ({e})")?,
            (None, Ok(ttl)) if ttl.is_zero() => writeln!(f, "cache: off ({}=0)", vars::CACHE_TTL)?,
            (None, Ok(_)) => writeln!(f, "cache: off (no home directory)")?,
            (Some(dir), Ok(ttl)) => writeln!(
                f,
                "cache: key metadata (key id, version, public key; never a secret) in {}/, \
                 owner-only, each entry used for {} s ({}); not a directory the component sees",
                dir.display(),
                ttl.as_secs(),
                vars::CACHE_TTL
            )?,
        }
        if self.files.is_empty() && self.dirs.is_empty() {
            writeln!(f, "files: none (no directory is shared with the component)")?;
        } else {
            writeln!(f, "files (each file's own directory, read-only):")?;
        }
        for file in &self.files {
            writeln!(
                f,
                "  {} -> {} ({})",
                file.host_path.display(),
                file.guest_path,
                file.var
            )?;
        }
        for dir in &self.dirs {
            writeln!(
                f,
                "  {}/ -> {}/ (directory of the {})",
                dir.host_dir.display(),
                dir.guest_dir,
                dir.why
            )?;
        }
        for note in &self.not_shared {
            writeln!(f, "  not shared: {note}")?;
        }
        Ok(())
    }
}

/// A credential file that exists but is not shared, because its directory is `/` or
/// contains the home directory.
struct RefusedFile {
    var: &'static str,
    /// As the user named it (or the default under HOME).
    path: String,
    reason: &'static str,
}

/// The credential files that exist: the path in the variable, else the default under HOME.
/// A file that does not exist is not granted (the guest then reports that source as absent);
/// one whose directory may not be shared (see [`shareable_dir`]) is refused.
fn granted_files(lookup: &impl Fn(&str) -> Option<String>) -> (Vec<GrantedFile>, Vec<RefusedFile>) {
    let home = lookup("HOME").filter(|h| !h.is_empty());
    let real_home = home_dir(lookup);
    let (mut granted, mut refused) = (Vec::new(), Vec::new());
    for cf in CREDENTIAL_FILES {
        let named = match lookup(cf.var).filter(|p| !p.trim().is_empty()) {
            Some(p) => std::path::PathBuf::from(p.trim()),
            None => match (&home, cf.default_in_home) {
                (Some(home), Some(default)) => std::path::Path::new(home).join(default),
                _ => continue,
            },
        };
        let Ok(path) = std::fs::canonicalize(&named) else {
            continue;
        };
        if !path.is_file() {
            continue;
        }
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            continue;
        };
        if let Err(reason) = shareable_dir(dir, real_home.as_deref()) {
            refused.push(RefusedFile {
                var: cf.var,
                path: named.display().to_string(),
                reason,
            });
            continue;
        }
        granted.push(GrantedFile {
            var: cf.var,
            guest_path: format!("{}/{}", cf.guest_dir, name.to_string_lossy()),
            host_dir: dir.to_path_buf(),
            host_path: path.clone(),
            guest_dir: cf.guest_dir,
        });
    }
    (granted, refused)
}

/// The home directory, resolved (symlinks and `..` removed): `HOME`, or the user's entry in
/// the system's account database when `HOME` is unset or empty, so that `env -u HOME` cannot
/// make the real home shareable.
fn home_dir(lookup: &impl Fn(&str) -> Option<String>) -> Option<std::path::PathBuf> {
    match lookup("HOME").filter(|h| !h.trim().is_empty()) {
        Some(h) => std::fs::canonicalize(h.trim()).ok(),
        None => system_home().and_then(|h| std::fs::canonicalize(h).ok()),
    }
}

/// The home directory of the effective user in the account database (getpwuid_r).
fn system_home() -> Option<std::path::PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let mut buf = vec![0u8; 16 * 1024];
    // SAFETY: an all-zero passwd is a valid value to be overwritten.
    let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call, `buf` outlives every use of `entry`.
    let rc = unsafe {
        libc::getpwuid_r(
            libc::geteuid(),
            &mut entry,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut found,
        )
    };
    if rc != 0 || found.is_null() || entry.pw_dir.is_null() {
        return None;
    }
    // SAFETY: getpwuid_r succeeded, so pw_dir points at a NUL-terminated string in `buf`.
    let dir = unsafe { std::ffi::CStr::from_ptr(entry.pw_dir) };
    let dir = std::ffi::OsStr::from_bytes(dir.to_bytes());
    (!dir.is_empty()).then(|| std::path::PathBuf::from(dir))
}

/// Why a credential file's directory is not shared: the one rule for every file the sandbox
/// shares by its directory. `real_dir` is resolved; sharing `/`, the home directory or any
/// directory above it would show the component every file in the home directory.
fn shareable_dir(
    real_dir: &std::path::Path,
    real_home: Option<&std::path::Path>,
) -> Result<(), &'static str> {
    if real_dir.parent().is_none() || real_home.is_some_and(|h| h.starts_with(real_dir)) {
        return Err(
            "its directory is / or contains the home directory, which is never shared; move \
             the file into a directory of its own (e.g. ~/.alibabacloud/) and name it there",
        );
    }
    Ok(())
}

/// How many `source_profile` links the host follows (the guest refuses deeper chains).
use alibabakms_contract::MAX_PROFILE_CHAIN;

/// The directories of the `oidc_token_file`s the selected Aliyun CLI profile uses: the
/// profile itself when its mode is `OIDC`, and each `source_profile` of a
/// `ChainableRamRoleArn` chain (loops and chains deeper than [`MAX_PROFILE_CHAIN`] end the
/// walk). Only the granted config file is read, and of it only the profile names, modes,
/// source profiles and token paths; a config that is not valid JSON shares nothing (the guest
/// reports it). A token path that is not absolute, not a readable file, or whose directory
/// is `/`, the home directory or above it, is not shared, with the reason.
fn cli_oidc_token_dirs(
    lookup: &impl Fn(&str) -> Option<String>,
    files: &[GrantedFile],
) -> (Vec<GrantedDir>, Vec<String>) {
    let (mut dirs, mut not_shared) = (Vec::new(), Vec::new());
    if lookup("ALIBABA_CLOUD_CLI_PROFILE_DISABLED")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
    {
        return (dirs, not_shared);
    }
    let Some(config) = files.iter().find(|f| f.var == "ALIBABA_CLOUD_CONFIG_FILE") else {
        return (dirs, not_shared);
    };
    // A FIFO, a device or a huge file is not read (the guest reports it when it opens it).
    let Ok(json) = crate::files::read_capped(&config.host_path, 1 << 20)
        .map_err(drop)
        .and_then(|text| serde_json::from_slice::<serde_json::Value>(&text).map_err(drop))
    else {
        return (dirs, not_shared);
    };
    let field = |v: &serde_json::Value, k: &str| {
        v.get(k)
            .and_then(|x| x.as_str())
            .map(|x| x.trim().to_string())
            .unwrap_or_default()
    };
    let profiles: &[serde_json::Value] = json
        .get("profiles")
        .and_then(|p| p.as_array())
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let home = home_dir(lookup);
    let mut name = lookup("ALIBABA_CLOUD_PROFILE")
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| field(&json, "current"));
    let mut visited: Vec<String> = Vec::new();
    while visited.len() < MAX_PROFILE_CHAIN && !visited.contains(&name) {
        visited.push(name.clone());
        let Some(profile) = profiles.iter().find(|p| field(p, "name") == name) else {
            break;
        };
        // Any case, as the CLI (and the guest) accept.
        let mode = field(profile, "mode");
        let token_file = field(profile, "oidc_token_file");
        if mode.eq_ignore_ascii_case("OIDC") && !token_file.is_empty() {
            let why = format!(
                "oidc_token_file of profile {name:?} in {}",
                config.host_path.display()
            );
            match token_dir(&token_file, home.as_deref()) {
                Ok(dir) => {
                    if !dirs.iter().any(|d: &GrantedDir| d.host_dir == dir) {
                        dirs.push(GrantedDir {
                            guest_dir: dir.display().to_string(),
                            host_dir: dir,
                            why,
                        });
                    }
                }
                Err(reason) => not_shared.push(format!("{token_file} ({why}): {reason}")),
            }
        }
        if !mode.eq_ignore_ascii_case("ChainableRamRoleArn") {
            break;
        }
        name = field(profile, "source_profile");
    }
    (dirs, not_shared)
}

/// The directory to share for a token file, as written (the guest opens the written path),
/// or why it is not shared.
fn token_dir(
    token_file: &str,
    home: Option<&std::path::Path>,
) -> Result<std::path::PathBuf, &'static str> {
    let path = std::path::Path::new(token_file);
    if !path.is_absolute() {
        return Err("not an absolute path");
    }
    // Only looked at, never opened here: opening a FIFO would wait for a writer.
    if crate::files::is_regular(path).is_err() {
        return Err("not a regular file");
    }
    let dir = path.parent().ok_or("no directory")?;
    let real = std::fs::canonicalize(dir).map_err(|_| "its directory cannot be resolved")?;
    shareable_dir(&real, home)?;
    Ok(dir.to_path_buf())
}

/// The HTTPS destinations the guest may reach: every `*.aliyuncs.com` on port 443, plus the
/// exact `host:port` entries of [`ALLOWED_HOSTS_ENV`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowedHosts {
    pub extra: Vec<HostPort>,
    /// Endpoints the credential chain's own variables name (the STS and metadata endpoint
    /// overrides), with the variable that named each. A key URI alone never adds one.
    pub from_env: Vec<EnvHost>,
}

/// An endpoint named by one of the user's own credential variables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvHost {
    /// Plain HTTP (the metadata service) rather than HTTPS.
    pub http: bool,
    pub host: HostPort,
    pub var: &'static str,
}

impl EnvHost {
    pub fn scheme(&self) -> &'static str {
        if self.http {
            "http"
        } else {
            "https"
        }
    }
}

/// The endpoints the user's credential variables name. An entry that is not a valid
/// `host[:port]` is left out: the guest's request to it is then refused with a clear error.
fn hosts_named_by_env(lookup: &impl Fn(&str) -> Option<String>) -> Vec<EnvHost> {
    let mut out = Vec::new();
    // The forms the guest calls, parsed by the same function; a value it refuses, it names.
    if let Some(value) = lookup(STS_ENDPOINT_ENV) {
        let host = alibabakms_contract::sts_endpoint(&value).ok();
        if let Some(Ok(host)) = host.as_deref().map(HostPort::parse) {
            out.push(EnvHost {
                http: false,
                host,
                var: STS_ENDPOINT_ENV,
            });
        }
    }
    if let Some(value) = lookup(CREDENTIALS_URI_ENV) {
        let v = value.trim();
        let (http, rest) = match (v.strip_prefix("https://"), v.strip_prefix("http://")) {
            (Some(r), _) => (false, Some(r)),
            (_, Some(r)) => (true, Some(r)),
            _ => (false, None),
        };
        if let Some(rest) = rest {
            let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
            let with_port = if authority.ends_with(']') || !authority.contains(':') {
                format!("{authority}:{}", if http { HTTP_PORT } else { HTTPS_PORT })
            } else {
                authority.to_string()
            };
            if let Ok(host) = HostPort::parse(&with_port) {
                out.push(EnvHost {
                    http,
                    host,
                    var: CREDENTIALS_URI_ENV,
                });
            }
        }
    }
    if let Some(value) = lookup(IMDS_ENDPOINT_ENV) {
        let v = value.trim();
        let v = v.strip_prefix("http://").unwrap_or(v).trim_end_matches('/');
        // No port means HTTP's 80, not HTTPS's 443.
        let with_port = if v.ends_with(']') || !v.contains(':') {
            format!("{v}:80")
        } else {
            v.to_string()
        };
        if let Ok(host) = HostPort::parse(&with_port) {
            out.push(EnvHost {
                http: true,
                host,
                var: IMDS_ENDPOINT_ENV,
            });
        }
    }
    out
}

impl AllowedHosts {
    /// Parses a comma-separated `host[:port]` list; blanks between commas are skipped.
    pub fn parse(list: &str) -> Result<Self, PolicyError> {
        let extra = list
            .split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(HostPort::parse)
            .collect::<Result<_, _>>()?;
        Ok(Self {
            extra,
            from_env: Vec::new(),
        })
    }

    /// Whether a request to `uri` may leave the sandbox: scheme https, and host and port
    /// matching an entry. The destination is the URI's authority only.
    pub fn allows(&self, uri: &Uri) -> bool {
        let https = match uri.scheme() {
            Some(s) if *s == http::uri::Scheme::HTTPS => true,
            Some(s) if *s == http::uri::Scheme::HTTP => false,
            _ => return false,
        };
        let Some(authority) = uri.authority() else {
            return false;
        };
        // `user@host` is never what the guest means; refuse rather than guess.
        if authority.as_str().contains('@') {
            return false;
        }
        let host = authority.host().to_ascii_lowercase();
        let port = match authority.port_u16() {
            Some(port) => port,
            // `host:` or an out-of-range port: refuse rather than guess a default.
            None if authority.as_str().len() != authority.host().len() => return false,
            None if https => HTTPS_PORT,
            None => HTTP_PORT,
        };
        if !https {
            // Plain HTTP only to the metadata service (its default address or
            // ALIBABA_CLOUD_IMDS_ENDPOINT) and an http:// ALIBABA_CLOUD_CREDENTIALS_URI.
            return (host == DEFAULT_IMDS_HOST && port == HTTP_PORT)
                || self
                    .from_env
                    .iter()
                    .any(|e| e.http && e.host.host == host && e.host.port == port);
        }
        if port == HTTPS_PORT && is_alibaba_host(&host) {
            return true;
        }
        self.extra.iter().any(|e| e.host == host && e.port == port)
            || self
                .from_env
                .iter()
                .any(|e| !e.http && e.host.host == host && e.host.port == port)
    }
}

/// `kms.cn-hangzhou.aliyuncs.com` yes; `aliyuncs.com`, `evilaliyuncs.com` and
/// `aliyuncs.com.evil.com` no.
fn is_alibaba_host(host: &str) -> bool {
    host.strip_suffix(ALIBABA_DOMAIN_SUFFIX)
        .is_some_and(|sub| !sub.is_empty() && !sub.ends_with('.'))
}

/// One exact allow-list entry. The host is lower-case; IPv6 literals keep their brackets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPort {
    pub host: String,
    pub port: u16,
}

impl HostPort {
    /// Parses `host` (port 443) or `host:port`.
    pub fn parse(entry: &str) -> Result<Self, PolicyError> {
        let invalid = |why: &str| PolicyError {
            entry: entry.to_string(),
            reason: why.to_string(),
        };
        if entry.contains("://") {
            return Err(invalid(
                "give host[:port] without a scheme (HTTPS is implied)",
            ));
        }
        if entry.contains(['/', '@', '*', '?', '#']) || entry.chars().any(char::is_whitespace) {
            return Err(invalid(
                "give host[:port] only: no path, user, wildcard or spaces",
            ));
        }
        // Split off the port ourselves: `http::uri::Authority` silently ignores a port it
        // cannot parse, and an entry must never quietly mean port 443 instead.
        let (host, port) = if entry.starts_with('[') {
            let close = entry
                .find(']')
                .ok_or_else(|| invalid("an IPv6 address needs its closing ']'"))?;
            let (host, rest) = entry.split_at(close + 1);
            match rest {
                "" => (host, None),
                _ => match rest.strip_prefix(':') {
                    Some(port) => (host, Some(port)),
                    None => return Err(invalid("expected ':port' after the IPv6 address")),
                },
            }
        } else {
            match entry.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (entry, None),
            }
        };
        let port = match port {
            None => HTTPS_PORT,
            Some("") => return Err(invalid("the port is empty")),
            Some(p) if !p.bytes().all(|b| b.is_ascii_digit()) => {
                return Err(invalid("the port is not a number"));
            }
            Some(p) => match p.parse::<u16>() {
                Ok(0) | Err(_) => return Err(invalid("the port must be from 1 to 65535")),
                Ok(p) => p,
            },
        };
        if host.is_empty() {
            return Err(invalid("the host is empty"));
        }
        if host
            .parse::<http::uri::Authority>()
            .map(|a| a.host() != host)
            .unwrap_or(true)
        {
            return Err(invalid("not a valid host name or IP address"));
        }
        Ok(Self {
            host: host.to_ascii_lowercase(),
            port,
        })
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
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
mod tests {
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
        assert!(p.to_string().contains(
            "allowed: https://sts.internal.example:8443  (from ALIBABA_CLOUD_STS_ENDPOINT)"
        ));
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
}
