//! The HTTPS proxy named by the user's environment, read the way curl reads it.
//!
//! The proxy URL comes from `https_proxy`, `HTTPS_PROXY`, `all_proxy` or `ALL_PROXY` (the
//! first one set and non-empty, curl's order), the exceptions from `no_proxy` / `NO_PROXY`.
//! hyper-util's [`Matcher`] parses the URL (credentials percent-decoded into a `Basic`
//! header) and applies the curl rules for the exceptions: comma-separated, case-insensitive
//! domain suffixes with an optional leading dot, IP addresses and CIDR blocks. Two curl rules
//! it does not have are added here: `*` also covers IP addresses, and an entry with a port
//! (`host:8443`, `[::1]:443`) only applies to that port.
//!
//! The proxy is a transport hop only: the allow-list is checked against the destination
//! before any of this, and TLS runs end to end with the destination through the tunnel.
//! Opening that tunnel (HTTP CONNECT, the proxy's answer) is `connect.rs`'s job.

use std::fmt;

use http::{HeaderValue, Uri};
use hyper_util::client::proxy::matcher::Matcher;

/// Variables naming the proxy, in curl's order of preference.
pub const PROXY_VARS: [&str; 4] = ["https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"];
/// Variables listing the destinations that bypass the proxy, in curl's order.
pub const NO_PROXY_VARS: [&str; 2] = ["no_proxy", "NO_PROXY"];
/// curl's port for a proxy URL without one.
const DEFAULT_PROXY_PORT: u16 = 1080;
/// A stand-in proxy for matchers that only answer "bypass or not".
const PROBE_PROXY: &str = "http://proxy.invalid:1";

/// A usable HTTP proxy and when to use it.
pub struct Proxy {
    /// The variable the URL came from, for messages.
    pub var: &'static str,
    /// `http://host:port`, never with credentials.
    pub url: String,
    /// The host to connect to (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    /// `Basic …` for `Proxy-Authorization`, when the URL has credentials.
    pub auth: Option<HeaderValue>,
    pub no_proxy: NoProxy,
}

impl Proxy {
    /// Whether a connection to `dst` goes through the proxy: HTTPS destinations not listed in
    /// `NO_PROXY`. Plain-HTTP ones (a cloud metadata server on the local network) never do:
    /// the plugin does not read `http_proxy`.
    pub fn applies_to(&self, dst: &Uri) -> bool {
        dst.scheme_str() == Some("https") && !self.no_proxy.bypasses(dst)
    }
}

/// What the environment says about proxies.
pub enum ProxyConfig {
    /// No proxy variable set: connect directly.
    Direct,
    Proxy(Box<Proxy>),
    /// A proxy variable is set but cannot be used; requests fail rather than bypass it.
    Invalid(String),
}

impl ProxyConfig {
    pub fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the variables through `lookup` (tests pass a map).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let first = |names: &[&'static str]| {
            names.iter().find_map(|&name| {
                lookup(name)
                    .map(|v| v.trim().to_string())
                    .filter(|v| !v.is_empty())
                    .map(|v| (name, v))
            })
        };
        let Some((var, value)) = first(&PROXY_VARS) else {
            return ProxyConfig::Direct;
        };
        let no_proxy = match first(&NO_PROXY_VARS) {
            Some((var, list)) => NoProxy::parse(var, &list),
            None => NoProxy::default(),
        };
        match parse_proxy_url(var, &value) {
            Ok((url, host, port, auth)) => ProxyConfig::Proxy(Box::new(Proxy {
                var,
                url,
                host,
                port,
                auth,
                no_proxy,
            })),
            Err(e) => ProxyConfig::Invalid(e),
        }
    }
}

impl fmt::Display for ProxyConfig {
    /// The `proxy:` lines of `--print-sandbox`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxyConfig::Direct => writeln!(
                f,
                "proxy: none (no {} set); connections are direct",
                PROXY_VARS.join("/")
            ),
            ProxyConfig::Invalid(e) => writeln!(f, "proxy: unusable, every request fails: {e}"),
            ProxyConfig::Proxy(p) => {
                writeln!(
                    f,
                    "proxy: {} (from {}{}): HTTP CONNECT tunnel, TLS end to end with the destination",
                    p.url,
                    p.var,
                    if p.auth.is_some() {
                        "; with credentials, not shown"
                    } else {
                        ""
                    }
                )?;
                match &p.no_proxy.var {
                    Some(var) => writeln!(f, "  not for: {}  (from {var})", p.no_proxy.raw),
                    None => writeln!(f, "  not for: (no {} set)", NO_PROXY_VARS.join("/")),
                }
            }
        }
    }
}

/// `(url without credentials, host, port, basic auth)`, or why the URL cannot be used.
fn parse_proxy_url(
    var: &str,
    value: &str,
) -> Result<(String, String, u16, Option<HeaderValue>), String> {
    let shown = redact(value);
    let expected = "expected http://[user:password@]host:port";
    // A `/`, `?` or `#` in the user or password ends a URL's authority, so the rest would be
    // taken for a path and the user name for the host (and looked up in DNS).
    if let Some(userinfo) = userinfo(value) {
        if userinfo.contains(['/', '?', '#']) {
            return Err(format!(
                "{var}={shown}: its user or password contains '/', '?' or '#', which must be \
                 percent-encoded in a URL (%2F, %3F, %23); {expected}"
            ));
        }
    }
    let probe = Matcher::builder().https(value).build();
    let Some(intercept) = probe.intercept(&Uri::from_static("https://destination.invalid/")) else {
        let scheme = value.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
        return Err(match scheme {
            Some(s)
                if s != "http" && s != "https" && s.chars().all(|c| c.is_ascii_alphanumeric()) =>
            {
                format!("{var}={shown}: {s}:// proxies are not supported; {expected}")
            }
            _ => format!("{var}={shown} is not a proxy URL; {expected}"),
        });
    };
    let uri = intercept.uri();
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(format!(
                "{var}={shown}: https:// proxies (TLS to the proxy) are not supported; \
                 {expected} (the tunnel through it is TLS end to end anyway)"
            ))
        }
        Some(other) => {
            return Err(format!(
                "{var}={shown}: {other}:// proxies are not supported; {expected}"
            ))
        }
        None => return Err(format!("{var}={shown} is not a proxy URL; {expected}")),
    }
    let Some(host) = uri.host().filter(|h| !h.is_empty()) else {
        return Err(format!("{var}={shown} names no host; {expected}"));
    };
    let port = uri.port_u16().unwrap_or(DEFAULT_PROXY_PORT);
    let bare = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let url = format!("http://{host}:{port}");
    Ok((url, bare, port, intercept.basic_auth().cloned()))
}

/// Everything before the last `@` after the scheme: what may be a user and password. A proxy
/// URL has no reason to carry `@` in its path, so the last one ends the credentials even when
/// an unencoded `/` in the password would end the authority first.
fn userinfo(value: &str) -> Option<&str> {
    let rest = value.split_once("://").map_or(value, |(_, r)| r);
    rest.rfind('@').map(|at| &rest[..at])
}

/// The value with any `user:password@` replaced, for messages.
fn redact(value: &str) -> String {
    let (scheme, rest) = match value.split_once("://") {
        Some((s, r)) => (format!("{s}://"), r),
        None => (String::new(), value),
    };
    match rest.rfind('@') {
        Some(at) => format!("{scheme}***@{}", &rest[at + 1..]),
        None => value.to_string(),
    }
}

/// The destinations that bypass the proxy.
#[derive(Default)]
pub struct NoProxy {
    /// The variable and its value as given, for `--print-sandbox`.
    pub var: Option<&'static str>,
    pub raw: String,
    /// `*`: nothing goes through the proxy.
    everything: bool,
    /// Entries without a port (hyper-util applies them; `None` when there are none).
    any_port: Option<Matcher>,
    /// Entries with a port, one matcher each.
    by_port: Vec<(u16, Matcher)>,
}

impl NoProxy {
    fn parse(var: &'static str, list: &str) -> Self {
        let mut everything = false;
        let mut any_port = Vec::new();
        let mut by_port = Vec::new();
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            if entry == "*" {
                everything = true;
                continue;
            }
            match split_port(entry) {
                (host, Some(port)) => by_port.push((port, bypass_matcher(host))),
                (host, None) => any_port.push(host),
            }
        }
        NoProxy {
            var: Some(var),
            raw: list.to_string(),
            everything,
            any_port: (!any_port.is_empty()).then(|| bypass_matcher(&any_port.join(","))),
            by_port,
        }
    }

    /// Whether requests to `dst` (an `https://host[:port]` URI) skip the proxy.
    pub fn bypasses(&self, dst: &Uri) -> bool {
        if self.everything {
            return true;
        }
        let port = dst.port_u16().unwrap_or(443);
        let listed = |m: &Matcher| m.intercept(dst).is_none();
        self.any_port.as_ref().is_some_and(listed)
            || self.by_port.iter().any(|(p, m)| *p == port && listed(m))
    }
}

/// A matcher that intercepts everything except `no` (its answer is the only thing used).
fn bypass_matcher(no: &str) -> Matcher {
    Matcher::builder().https(PROBE_PROXY).no(no).build()
}

/// `host:port` / `[v6]:port` → (host, port); anything else is a host, IP or CIDR block.
fn split_port(entry: &str) -> (&str, Option<u16>) {
    if let Some(rest) = entry.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((host, "")) => (host, None),
            Some((host, port)) => match port.strip_prefix(':').and_then(|p| p.parse().ok()) {
                Some(port) => (host, Some(port)),
                None => (entry, None),
            },
            None => (entry, None),
        };
    }
    match entry.split_once(':') {
        // One colon: host:port. More: a bare IPv6 address.
        Some((host, port)) if !port.contains(':') => match port.parse() {
            Ok(port) => (host, Some(port)),
            Err(_) => (entry, None),
        },
        _ => (entry, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> ProxyConfig {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ProxyConfig::from_lookup(|name| map.get(name).cloned())
    }

    fn proxy(vars: &[(&str, &str)]) -> Box<Proxy> {
        match config(vars) {
            ProxyConfig::Proxy(p) => p,
            ProxyConfig::Direct => panic!("no proxy"),
            ProxyConfig::Invalid(e) => panic!("invalid: {e}"),
        }
    }

    fn invalid(vars: &[(&str, &str)]) -> String {
        match config(vars) {
            ProxyConfig::Invalid(e) => e,
            _ => panic!("expected an invalid configuration"),
        }
    }

    /// Whether `https://{authority}/` goes through the proxy under `NO_PROXY=no`.
    fn proxied(no: &str, authority: &str) -> bool {
        let p = proxy(&[("HTTPS_PROXY", "http://proxy:3128"), ("NO_PROXY", no)]);
        let dst: Uri = format!("https://{authority}/").parse().unwrap();
        p.applies_to(&dst)
    }

    #[test]
    fn only_https_destinations_are_proxied() {
        let p = proxy(&[("ALL_PROXY", "http://proxy:3128")]);
        assert!(p.applies_to(&Uri::from_static("https://kms.example.com/")));
        assert!(!p.applies_to(&Uri::from_static("http://100.100.100.200/latest/meta-data")));
    }

    #[test]
    fn no_variable_means_direct() {
        assert!(matches!(config(&[]), ProxyConfig::Direct));
        assert!(matches!(
            config(&[("HTTPS_PROXY", "  "), ("NO_PROXY", "*")]),
            ProxyConfig::Direct
        ));
        // HTTP_PROXY is for plain-HTTP destinations; the plugin has none.
        assert!(matches!(
            config(&[("HTTP_PROXY", "http://proxy:3128")]),
            ProxyConfig::Direct
        ));
    }

    #[test]
    fn variables_are_read_in_curls_order() {
        let p = proxy(&[
            ("HTTPS_PROXY", "http://upper:1"),
            ("https_proxy", "http://lower:2"),
            ("ALL_PROXY", "http://all:3"),
        ]);
        assert_eq!((p.var, p.url.as_str()), ("https_proxy", "http://lower:2"));
        let p = proxy(&[
            ("HTTPS_PROXY", "http://upper:1"),
            ("ALL_PROXY", "http://all:3"),
        ]);
        assert_eq!((p.var, p.url.as_str()), ("HTTPS_PROXY", "http://upper:1"));
        let p = proxy(&[("ALL_PROXY", "http://all:3")]);
        assert_eq!((p.var, p.url.as_str()), ("ALL_PROXY", "http://all:3"));
        let p = proxy(&[
            ("all_proxy", "http://all:3"),
            ("no_proxy", "a"),
            ("NO_PROXY", "b"),
        ]);
        assert_eq!(p.no_proxy.var, Some("no_proxy"));
        assert_eq!(p.no_proxy.raw, "a");
    }

    #[test]
    fn proxy_urls() {
        let p = proxy(&[(
            "HTTPS_PROXY",
            "http://Aladdin:open%20sesame@proxy.corp:3128/",
        )]);
        assert_eq!(p.url, "http://proxy.corp:3128");
        assert_eq!((p.host.as_str(), p.port), ("proxy.corp", 3128));
        // base64("Aladdin:open sesame"): the password is percent-decoded first.
        assert_eq!(
            p.auth.as_ref().unwrap(),
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
        // No scheme means http, no port means curl's 1080; IPv6 hosts connect unbracketed.
        let p = proxy(&[("HTTPS_PROXY", "proxy.corp")]);
        assert_eq!((p.url.as_str(), p.port), ("http://proxy.corp:1080", 1080));
        assert!(p.auth.is_none());
        let p = proxy(&[("HTTPS_PROXY", "http://[::1]:8080")]);
        assert_eq!(
            (p.url.as_str(), p.host.as_str()),
            ("http://[::1]:8080", "::1")
        );
    }

    #[test]
    fn unsupported_proxies_are_refused_without_showing_credentials() {
        let e = invalid(&[("HTTPS_PROXY", "socks5://user:secret@proxy:1080")]);
        assert!(
            e.contains("HTTPS_PROXY") && e.contains("socks5:// proxies are not supported"),
            "{e}"
        );
        assert!(!e.contains("secret") && e.contains("***@proxy:1080"), "{e}");
        let e = invalid(&[("ALL_PROXY", "https://proxy:443")]);
        assert!(
            e.contains("ALL_PROXY") && e.contains("https:// proxies"),
            "{e}"
        );
        let e = invalid(&[("https_proxy", "ftp://proxy")]);
        assert!(e.contains("ftp:// proxies are not supported"), "{e}");
        let e = invalid(&[("HTTPS_PROXY", "http://pro xy:80")]);
        assert!(e.contains("is not a proxy URL"), "{e}");
    }

    #[test]
    fn a_slash_in_the_password_is_refused_and_never_shown() {
        for url in [
            "http://cosign:pa/ss@proxy.corp:3128",
            "https://cosign:pa/ss@proxy.corp:3128",
            "socks5h://cosign:pa/ss@proxy.corp:1080",
            "http://co?sign:pa#ss@proxy.corp:3128",
        ] {
            let e = invalid(&[("HTTPS_PROXY", url)]);
            for secret in ["pa/ss", "pa#ss", "co?sign", "cosign", "ss@"] {
                assert!(!e.contains(secret), "{e}");
            }
            assert!(e.contains("***@proxy.corp:"), "{e}");
        }
        let e = invalid(&[("HTTPS_PROXY", "http://cosign:pa/ss@proxy.corp:3128")]);
        assert!(e.contains("percent-encoded"), "{e}");
        // Encoded, it works.
        let p = proxy(&[("HTTPS_PROXY", "http://cosign:pa%2Fss@proxy.corp:3128")]);
        assert_eq!((p.host.as_str(), p.port), ("proxy.corp", 3128));
        assert!(p.auth.is_some());
    }

    #[test]
    fn no_proxy_domains_are_suffixes_with_an_optional_dot() {
        assert!(!proxied("example.com", "example.com"));
        assert!(!proxied("example.com", "kms.example.com:443"));
        assert!(!proxied(".example.com", "kms.example.com"));
        assert!(!proxied(".example.com", "example.com"));
        assert!(proxied("example.com", "notexample.com"));
        assert!(proxied("example.com", "example.com.evil"));
        assert!(!proxied("EXAMPLE.com", "Kms.Example.COM"));
        assert!(!proxied(" other.org , example.com ", "a.b.example.com"));
        assert!(proxied("other.org,,", "example.com"));
        assert!(proxied("", "example.com"));
    }

    #[test]
    fn no_proxy_star_covers_names_and_addresses() {
        assert!(!proxied("*", "kms.example.com"));
        assert!(!proxied("*", "127.0.0.1:8443"));
        assert!(!proxied("*", "[::1]:8443"));
        assert!(!proxied("other.org, *", "10.1.2.3"));
    }

    #[test]
    fn no_proxy_ip_addresses_and_blocks() {
        assert!(!proxied("127.0.0.1", "127.0.0.1:8443"));
        assert!(proxied("127.0.0.1", "127.0.0.2"));
        assert!(!proxied("10.0.0.0/8", "10.20.30.40"));
        assert!(proxied("10.0.0.0/8", "11.0.0.1"));
        assert!(!proxied("::1", "[::1]:443"));
        assert!(!proxied("[::1]", "[::1]:443"));
        assert!(!proxied("fd00::/8", "[fd12::1]"));
        // An address is not a name: no suffix matching on it.
        assert!(proxied("0.0.1", "10.0.0.1"));
    }

    #[test]
    fn no_proxy_entries_with_a_port_apply_to_that_port_only() {
        assert!(!proxied("example.com:8443", "kms.example.com:8443"));
        assert!(proxied("example.com:8443", "kms.example.com"));
        assert!(!proxied("example.com:443", "kms.example.com"));
        assert!(!proxied("127.0.0.1:8443", "127.0.0.1:8443"));
        assert!(proxied("127.0.0.1:8443", "127.0.0.1:9443"));
        assert!(!proxied("[::1]:8443", "[::1]:8443"));
        assert!(proxied("[::1]:8443", "[::1]:443"));
        assert!(!proxied("other:1, example.com", "example.com:9"));
    }

    #[test]
    fn print_sandbox_lines() {
        let text = config(&[
            ("HTTPS_PROXY", "http://u:secret@proxy:3128"),
            ("NO_PROXY", "localhost,.corp"),
        ])
        .to_string();
        assert!(
            text.contains("proxy: http://proxy:3128 (from HTTPS_PROXY; with credentials"),
            "{text}"
        );
        assert!(
            text.contains("not for: localhost,.corp  (from NO_PROXY)"),
            "{text}"
        );
        assert!(!text.contains("secret"), "{text}");
        assert!(config(&[]).to_string().starts_with("proxy: none"));
        let text = config(&[("HTTPS_PROXY", "socks5://proxy")]).to_string();
        assert!(
            text.contains("unusable") && text.contains("socks5"),
            "{text}"
        );
    }
}
