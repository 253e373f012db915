//! The endpoint variables of the credential chain, parsed once: the guest calls what these
//! return, and the host's allow-list admits exactly that.

use crate::vars;

/// The STS `host[:port]` that [`vars::STS_ENDPOINT`] names: `host[:port]`, optionally with
/// `https://` and a trailing `/`. STS is called over HTTPS only (a role assumption carries a
/// signature or an OIDC token), so `http://` and any other scheme or a path are refused,
/// with a message naming the variable.
pub fn sts_endpoint(value: &str) -> Result<String, String> {
    https_authority(
        vars::STS_ENDPOINT,
        value,
        "STS",
        "sts.cn-hangzhou.aliyuncs.com or 127.0.0.1:9443",
    )
}

/// `host[:port]`, optionally with `https://` and a trailing `/`, of an endpoint variable
/// `name` for `service`, which is called over HTTPS only.
fn https_authority(
    name: &str,
    value: &str,
    service: &str,
    example: &str,
) -> Result<String, String> {
    let v = value.trim();
    let rest = match v.split_once("://") {
        None => v,
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("https") => rest,
        Some((scheme, _)) => {
            return Err(format!(
                "{name}={v}: {service} is called over HTTPS only; give host[:port] or \
                 https://host[:port], not {scheme}://"
            ))
        }
    };
    let host = rest.trim_end_matches('/');
    if !is_authority(host) {
        return Err(format!("{name}={v} is not host[:port] (e.g. {example})"));
    }
    Ok(host.to_string())
}

/// A plausible `host[:port]`: not empty, no path, query, fragment, userinfo or spaces (the
/// host's allow-list parses it strictly).
fn is_authority(host: &str) -> bool {
    !host.is_empty()
        && !host
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "/?#@\\".contains(c))
}

/// The `host[:port]` a CloudSSO profile's `cloud_sso_sign_in_url` names, where the temporary
/// credentials are fetched (`POST https://<host>/cloud-credentials`; as credentials-go
/// providers/cloud_sso.go and aliyun-cli cloudsso/refresh.go, only the scheme and host of
/// the URL are kept). HTTPS only: the request carries the sign-in's access token, a bearer
/// secret. The error says what is wrong, without the URL.
pub fn cloud_sso_host(sign_in_url: &str) -> Result<String, String> {
    let v = sign_in_url.trim();
    let rest = match v.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("https") => rest,
        Some((scheme, _)) => {
            return Err(format!(
                "is a {scheme}:// URL; it must be https:// (the CloudSSO access token sent to \
                 it is a bearer secret)"
            ))
        }
        None => {
            return Err(
                "is not an https:// URL (the CloudSSO access token sent to it is a \
                 bearer secret)"
                    .into(),
            )
        }
    };
    let host = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    if !is_authority(host) {
        return Err("has no usable host (give https://host[:port]/...)".into());
    }
    Ok(host.to_string())
}

/// The OAuth service of an OAuth profile's `oauth_site_type` (any case, as credentials-go
/// providers/cli_profile.go upper-cases it): `CN` or `INTL`, as in its `oauthBaseUrlMap`
/// (the same in aliyun-cli config/configure.go).
pub fn oauth_site_host(site_type: &str) -> Result<&'static str, String> {
    match site_type.trim().to_ascii_uppercase().as_str() {
        "CN" => Ok("oauth.aliyun.com"),
        "INTL" => Ok("oauth.alibabacloud.com"),
        _ => Err("must be CN or INTL".into()),
    }
}

/// The OAuth service's `host[:port]` that [`vars::OAUTH_ENDPOINT`] names instead of the
/// site's (the plugin's own extension, for private deployments and tests): `host[:port]`,
/// optionally with `https://` and a trailing `/`; HTTPS only (the access token is a bearer
/// secret).
pub fn oauth_endpoint(value: &str) -> Result<String, String> {
    https_authority(
        vars::OAUTH_ENDPOINT,
        value,
        "the OAuth service",
        "oauth.aliyun.com or 127.0.0.1:9443",
    )
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
