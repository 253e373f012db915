//! The endpoint variables of the credential chain, parsed once: the guest calls what these
//! return, and the host's allow-list admits exactly that.

use crate::vars;

/// The STS `host[:port]` that [`vars::STS_ENDPOINT`] names: `host[:port]`, optionally with
/// `https://` and a trailing `/`. STS is called over HTTPS only (a role assumption carries a
/// signature or an OIDC token), so `http://` and any other scheme or a path are refused,
/// with a message naming the variable.
pub fn sts_endpoint(value: &str) -> Result<String, String> {
    let v = value.trim();
    let rest = match v.split_once("://") {
        None => v,
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("https") => rest,
        Some((scheme, _)) => {
            return Err(format!(
                "{}={v}: STS is called over HTTPS only; give host[:port] or https://host[:port], \
                 not {scheme}://",
                vars::STS_ENDPOINT
            ))
        }
    };
    let host = rest.trim_end_matches('/');
    let bad = host.is_empty()
        || host
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "/?#@".contains(c));
    if bad {
        return Err(format!(
            "{}={v} is not host[:port] (e.g. sts.cn-hangzhou.aliyuncs.com or 127.0.0.1:9443)",
            vars::STS_ENDPOINT
        ));
    }
    Ok(host.to_string())
}

/// The metadata service's `host[:port]` that [`vars::IMDS_ENDPOINT`] names: plain HTTP, so
/// an `http://` prefix and a trailing `/` are dropped.
pub fn imds_endpoint(value: &str) -> String {
    let v = value.trim();
    v.strip_prefix("http://")
        .unwrap_or(v)
        .trim_end_matches('/')
        .to_string()
}

/// Where [`vars::CREDENTIALS_URI`] points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UriTarget {
    pub https: bool,
    /// `host[:port]`.
    pub authority: String,
    /// From the first `/`, `?` or `#` on (`/` when there is none); may carry a secret.
    pub path_and_query: String,
}

/// Parses [`vars::CREDENTIALS_URI`]: `http://` or `https://`, then a host with no userinfo.
pub fn credentials_uri(value: &str) -> Result<UriTarget, String> {
    let v = value.trim();
    let (https, rest) = if let Some(r) = v.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = v.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(format!(
            "{} must start with http:// or https://",
            vars::CREDENTIALS_URI
        ));
    };
    let (authority, path_and_query) = match rest.find(['/', '?', '#']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains('@') {
        return Err(format!(
            "{} has no usable host (give scheme://host[:port]/path)",
            vars::CREDENTIALS_URI
        ));
    }
    let path_and_query = if path_and_query.starts_with('/') {
        path_and_query.to_string()
    } else {
        format!("/{path_and_query}")
    };
    Ok(UriTarget {
        https,
        authority: authority.to_string(),
        path_and_query,
    })
}
