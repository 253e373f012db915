//! Where the guest's HTTP may go: the allow-list (Alibaba Cloud's domain, the hosts the user
//! lists, the endpoints their credential variables name, the sign-in services their selected
//! Aliyun CLI profile uses) and the strict `host[:port]` parser.
//! Apart from the file grants: this is the only part [`crate::egress`] consults.

use std::fmt;

use alibabakms_contract::vars;
use http::Uri;

use super::cli_config::{field, CliChain};
use super::PolicyError;

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

/// Extra `host[:port]` entries a key URI may name besides Alibaba Cloud's own endpoints.
pub const ALLOWED_HOSTS_ENV: &str = "SIGSTORE_ALIBABAKMS_ALLOWED_HOSTS";

/// Alibaba Cloud's endpoints: any subdomain of this, over HTTPS on port 443.
pub const ALIBABA_DOMAIN_SUFFIX: &str = ".aliyuncs.com";

pub(super) const HTTPS_PORT: u16 = 443;
const HTTP_PORT: u16 = 80;

/// The HTTPS destinations the guest may reach: every `*.aliyuncs.com` on port 443, plus the
/// exact `host:port` entries of [`ALLOWED_HOSTS_ENV`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowedHosts {
    pub extra: Vec<HostPort>,
    /// Endpoints the credential chain's own variables name (the STS and metadata endpoint
    /// overrides), with the variable that named each. A key URI alone never adds one.
    pub from_env: Vec<EnvHost>,
    /// HTTPS sign-in services the selected Aliyun CLI profile (or a profile of its chain)
    /// uses, with why ([`hosts_named_by_profiles`]).
    pub from_profiles: Vec<ProfileHost>,
}

/// An HTTPS host a profile of the user's Aliyun CLI config makes the guest call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProfileHost {
    pub host: HostPort,
    /// E.g. `cloud_sso_sign_in_url of profile "sso" in /home/u/.aliyun/config.json`.
    pub why: String,
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
pub(super) fn hosts_named_by_env(lookup: &impl Fn(&str) -> Option<String>) -> Vec<EnvHost> {
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
        if let Ok(target) = alibabakms_contract::credentials_uri(&value) {
            let (http, authority) = (!target.https, target.authority.as_str());
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
        let v = alibabakms_contract::imds_endpoint(&value);
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

/// The sign-in services of the selected profile's chain ([`CliChain`]): a `CloudSSO`
/// profile's `cloud_sso_sign_in_url` host, and an `OAuth` profile's site (`oauth_site_type`)
/// or [`vars::OAUTH_ENDPOINT`] instead. Parsed by the contract's functions, which the guest
/// calls too; a value the guest refuses (not https, an unknown site) adds nothing. Only the
/// profiles the guest will use count: a host another profile names stays out.
pub(super) fn hosts_named_by_profiles(
    lookup: &impl Fn(&str) -> Option<String>,
    chain: Option<&CliChain>,
) -> Vec<ProfileHost> {
    let mut out: Vec<ProfileHost> = Vec::new();
    let Some(chain) = chain else {
        return out;
    };
    let path = chain.path.display();
    for (name, profile) in &chain.profiles {
        let mode = field(profile, "mode");
        let named = if mode.eq_ignore_ascii_case("CloudSSO") {
            alibabakms_contract::cloud_sso_host(&field(profile, "cloud_sso_sign_in_url"))
                .ok()
                .map(|h| {
                    (
                        h,
                        format!("cloud_sso_sign_in_url of profile {name:?} in {path}"),
                    )
                })
        } else if mode.eq_ignore_ascii_case("OAuth") {
            let site = field(profile, "oauth_site_type");
            match lookup(vars::OAUTH_ENDPOINT).filter(|v| !v.trim().is_empty()) {
                Some(v) => alibabakms_contract::oauth_endpoint(&v).ok().map(|h| {
                    (
                        h,
                        format!(
                            "{}, for the OAuth profile {name:?} in {path}",
                            vars::OAUTH_ENDPOINT
                        ),
                    )
                }),
                None => alibabakms_contract::oauth_site_host(&site).ok().map(|h| {
                    (
                        h.to_string(),
                        format!(
                            "oauth_site_type {} of profile {name:?} in {path}",
                            site.to_ascii_uppercase()
                        ),
                    )
                }),
            }
        } else {
            None
        };
        if let Some((authority, why)) = named {
            if let Ok(host) = HostPort::parse(&authority) {
                if !out.iter().any(|p| p.host == host) {
                    out.push(ProfileHost { host, why });
                }
            }
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
            from_profiles: Vec::new(),
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
            || self
                .from_profiles
                .iter()
                .any(|p| p.host.host == host && p.host.port == port)
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
