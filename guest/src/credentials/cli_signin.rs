//! The Aliyun CLI's sign-in modes, `CloudSSO` and `OAuth`: `aliyun configure` signs in (in a
//! browser, or with a device code) and stores an access token in the profile; the plugin
//! trades that token for STS credentials, or reuses the STS credentials the CLI stored, and
//! never writes the CLI's config. Wire facts from credentials-go providers/cloud_sso.go,
//! providers/oauth.go and providers/cli_profile.go, aliyun-cli config/profile.go,
//! config/configure.go and cloudsso/refresh.go, and credentials-python.

use super::cli_profile::CliProfile;
use super::{temporary, var, Context, Credentials, CredentialsError};
use crate::transport::{HttpRequest, HttpResponse, Scheme};
use crate::untrusted::{server_text, CODE_CHARS, MESSAGE_CHARS, REQUEST_ID_CHARS};
use std::time::{Duration, SystemTime};

/// Stored STS credentials are reused only while they hold this much longer: credentials-go
/// fetches new ones when `exp - now <= 180` (providers/cloud_sso.go `needUpdateCredential`).
const STORED_STS_MARGIN: i64 = 180;
/// An OAuth access token this close to its expiry is not sent: the exchange could cross it.
const OAUTH_TOKEN_MARGIN: i64 = 60;

/// One profile being resolved, for messages.
pub(super) struct Named<'a> {
    pub name: &'a str,
    pub path: &'a str,
}

impl Named<'_> {
    fn profile(&self) -> String {
        format!("profile {:?} in {}", self.name, self.path)
    }

    fn configure(&self, mode: &str) -> String {
        format!("`aliyun configure --profile {} --mode {mode}`", self.name)
    }
}

/// `CloudSSO`: `POST https://<sign-in host>/cloud-credentials` with the sign-in's access
/// token as a bearer token, for the profile's account and access configuration
/// (credentials-go providers/cloud_sso.go; aliyun-cli cloudsso/refresh.go). The answer is
/// already STS: no role is assumed after it.
pub(super) fn cloud_sso(
    cx: &Context<'_>,
    p: &CliProfile,
    at: &Named<'_>,
) -> Result<Credentials, CredentialsError> {
    let configure = at.configure("CloudSSO");
    let missing: Vec<&str> = [
        ("cloud_sso_sign_in_url", &p.cloud_sso_sign_in_url),
        ("cloud_sso_account_id", &p.cloud_sso_account_id),
        ("cloud_sso_access_config", &p.cloud_sso_access_config),
    ]
    .iter()
    .filter(|(_, v)| v.trim().is_empty())
    .map(|(k, _)| *k)
    .collect();
    if !missing.is_empty() {
        return Err(CredentialsError::Config(format!(
            "{} (mode CloudSSO) has no {}; set it up with {configure}",
            at.profile(),
            missing.join(", ")
        )));
    }
    let host = alibabakms_contract::cloud_sso_host(&p.cloud_sso_sign_in_url).map_err(|why| {
        CredentialsError::Config(format!(
            "the cloud_sso_sign_in_url of {} {why}",
            at.profile()
        ))
    })?;
    let expire = unix_seconds(&p.cloud_sso_access_token_expire, || {
        format!("the cloud_sso_access_token_expire of {}", at.profile())
    })?;
    if let Some(c) = stored_sts(cx, p, at, "CloudSSO") {
        return Ok(c);
    }
    let now = unix_now(cx);
    if p.access_token.trim().is_empty() {
        return Err(CredentialsError::Config(format!(
            "{} (mode CloudSSO) holds no CloudSSO sign-in (no access_token); sign in with \
             {configure}",
            at.profile()
        )));
    }
    // As credentials-go and the CLI: the sign-in cannot be renewed without the user.
    if expire <= now {
        return Err(CredentialsError::Config(format!(
            "the CloudSSO sign-in of {} has expired{}; sign in again with {configure}",
            at.profile(),
            when(expire, "at")
        )));
    }
    let (account, access_config) = (
        p.cloud_sso_account_id.trim(),
        p.cloud_sso_access_config.trim(),
    );
    let source = format!(
        "CloudSSO access configuration {access_config} of account {account} via {host}, Aliyun \
         CLI profile {:?} in {}",
        at.name, at.path
    );
    let token = p.access_token.trim();
    let body = serde_json::json!({"AccountId": account, "AccessConfigurationId": access_config});
    let response = temporary::send(
        cx,
        "CloudSSO",
        &source,
        HttpRequest {
            method: "POST",
            scheme: Scheme::Https,
            authority: host,
            path_and_query: "/cloud-credentials".into(),
            headers: vec![
                ("accept".into(), "application/json".into()),
                ("content-type".into(), "application/json".into()),
                ("authorization".into(), format!("Bearer {token}")),
            ],
            body: body.to_string().into_bytes(),
            timeout: None,
        },
        "; check the profile's cloud_sso_sign_in_url",
    )?;
    if response.status != 200 {
        // The CLI's error shape (cloudsso/refresh.go): `{"ErrorCode", "ErrorMessage"}`.
        let e = ErrorBody::read(&response, token, ["ErrorCode", "ErrorMessage", "RequestId"]);
        let expired = e.code.to_ascii_lowercase().contains("expired")
            || e.code.to_ascii_lowercase().contains("token");
        let advice = if matches!(response.status, 401 | 403) || expired {
            format!(
                " The CloudSSO sign-in of {} has ended or was refused; sign in again with \
                 {configure}.",
                at.profile()
            )
        } else {
            String::new()
        };
        return Err(CredentialsError::Service(format!(
            "{source}: HTTP {}{}{advice}",
            response.status,
            e.detail()
        )));
    }
    let json: serde_json::Value = serde_json::from_slice(&response.body)
        .map_err(|_| CredentialsError::Service(format!("{source}: the answer is not JSON")))?;
    let Some(c) = json.get("CloudCredential") else {
        return Err(CredentialsError::Service(format!(
            "{source}: the answer has no CloudCredential"
        )));
    };
    let field = |k: &str| c.get(k).and_then(|v| v.as_str()).unwrap_or_default();
    temporary::credentials(
        cx,
        source.clone(),
        temporary::Answered {
            id: field("AccessKeyId"),
            secret: field("AccessKeySecret"),
            token: field("SecurityToken"),
            expiration: field("Expiration"),
            names: "CloudCredential.AccessKeyId, AccessKeySecret or SecurityToken",
            expiration_name: "CloudCredential.Expiration",
            issuer: "the CloudSSO service",
        },
    )
}

/// `OAuth`: `POST <site>/v1/exchange` with the profile's OAuth access token as a bearer
/// token and no body (credentials-go providers/oauth.go `getCredentials`).
///
/// An access token about to expire is not refreshed here. A refresh (`POST <site>/v1/token`,
/// `grant_type=refresh_token`) hands out a new refresh token as well, which must be written
/// back to the CLI's config; credentials-go and the CLI both write it, and this plugin never
/// writes the user's config. Refreshing in memory only would strand the profile once the
/// service revokes the old refresh token. The error says to let the CLI refresh it instead.
pub(super) fn oauth(
    cx: &Context<'_>,
    p: &CliProfile,
    at: &Named<'_>,
) -> Result<Credentials, CredentialsError> {
    let configure = at.configure("OAuth");
    let site_type = p.oauth_site_type.trim();
    let site_host = alibabakms_contract::oauth_site_host(site_type).map_err(|why| {
        let value = if site_type.is_empty() {
            "has no oauth_site_type".to_string()
        } else {
            format!("has oauth_site_type {site_type:?}")
        };
        CredentialsError::Config(format!(
            "{} (mode OAuth) {value}; it {why} (in any case); set it with {configure}",
            at.profile()
        ))
    })?;
    const VAR: &str = alibabakms_contract::vars::OAUTH_ENDPOINT;
    let (host, via) = match var(cx.env, VAR) {
        Some(v) => (
            alibabakms_contract::oauth_endpoint(&v).map_err(CredentialsError::Config)?,
            format!("({VAR})"),
        ),
        None => (
            site_host.to_string(),
            format!("(site {})", site_type.to_ascii_uppercase()),
        ),
    };
    let expire = unix_seconds(&p.oauth_access_token_expire, || {
        format!("the oauth_access_token_expire of {}", at.profile())
    })?;
    if let Some(c) = stored_sts(cx, p, at, "OAuth") {
        return Ok(c);
    }
    let token = p.oauth_access_token.trim();
    if token.is_empty() {
        return Err(CredentialsError::Config(format!(
            "{} (mode OAuth) holds no OAuth sign-in (no oauth_access_token); sign in with \
             {configure}",
            at.profile()
        )));
    }
    if expire - unix_now(cx) <= OAUTH_TOKEN_MARGIN {
        let refresh = if p.oauth_refresh_token.trim().is_empty() {
            String::new()
        } else {
            format!(
                "run any aliyun command with this profile (e.g. `aliyun sts GetCallerIdentity \
                 --profile {}`) so the CLI refreshes it with its refresh token and saves it, or ",
                at.name
            )
        };
        let state = if expire <= unix_now(cx) {
            "expired"
        } else {
            "is about to expire"
        };
        return Err(CredentialsError::Config(format!(
            "the OAuth access token of {} {state}{}; {refresh}sign in again with {configure} \
             (this plugin does not refresh it, as that would change the refresh token saved in \
             the CLI's config, which it never writes)",
            at.profile(),
            when(expire, "at")
        )));
    }
    let source = format!(
        "OAuth exchange via {host} {via}, Aliyun CLI profile {:?} in {}",
        at.name, at.path
    );
    let response = temporary::send(
        cx,
        "OAuth exchange",
        &source,
        HttpRequest {
            method: "POST",
            scheme: Scheme::Https,
            authority: host,
            path_and_query: "/v1/exchange".into(),
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("authorization".into(), format!("Bearer {token}")),
            ],
            body: Vec::new(),
            timeout: None,
        },
        "",
    )?;
    if response.status != 200 {
        // As an aliyun-cli comment documents it (config/configure.go):
        // `{"error":"expired_token","error_description":"…","requestId":"…"}`.
        let e = ErrorBody::read(
            &response,
            token,
            ["error", "error_description", "requestId"],
        );
        let advice = if matches!(response.status, 401 | 403) || e.code.contains("token") {
            format!(
                " The OAuth access token of {} was refused; run `aliyun sts GetCallerIdentity \
                 --profile {}` so the CLI refreshes it, or sign in again with {configure}.",
                at.profile(),
                at.name
            )
        } else {
            String::new()
        };
        return Err(CredentialsError::Service(format!(
            "{source}: HTTP {}{}{advice}",
            response.status,
            e.detail()
        )));
    }
    let json: serde_json::Value = serde_json::from_slice(&response.body)
        .map_err(|_| CredentialsError::Service(format!("{source}: the answer is not JSON")))?;
    // camelCase as credentials-go's and the CLI's tests answer (Go matches keys without
    // case); PascalCase as credentials-python requires. Which the service sends is not
    // settled by either, so both are read.
    let field = |camel: &str| {
        let mut pascal = camel.to_string();
        pascal[..1].make_ascii_uppercase();
        [camel, pascal.as_str()]
            .iter()
            .find_map(|k| json.get(*k).and_then(|v| v.as_str()))
            .unwrap_or_default()
    };
    temporary::credentials(
        cx,
        source.clone(),
        temporary::Answered {
            id: field("accessKeyId"),
            secret: field("accessKeySecret"),
            token: field("securityToken"),
            expiration: field("expiration"),
            names: "accessKeyId, accessKeySecret or securityToken",
            expiration_name: "expiration",
            issuer: "the OAuth service",
        },
    )
}

/// The STS credentials the CLI stored in the profile after its own exchange
/// (`access_key_id`, `access_key_secret`, `sts_token`, `sts_expiration` in Unix seconds),
/// while they hold more than [`STORED_STS_MARGIN`] longer. aliyun-cli reuses them the same
/// way (config/profile.go `GetCredential`, cases CloudSSO and OAuth), so a profile the CLI
/// just used sends no request at all; credentials-go does not read them. A missing or
/// malformed `sts_expiration` means there is nothing to reuse.
fn stored_sts(cx: &Context<'_>, p: &CliProfile, at: &Named<'_>, mode: &str) -> Option<Credentials> {
    let expires = p.sts_expiration.as_i64()?;
    let (id, secret, token) = (
        p.access_key_id.trim(),
        p.access_key_secret.trim(),
        p.sts_token.trim(),
    );
    if id.is_empty() || secret.is_empty() || token.is_empty() {
        return None;
    }
    (expires - unix_now(cx) > STORED_STS_MARGIN).then(|| Credentials {
        access_key_id: id.to_string(),
        access_key_secret: secret.to_string(),
        security_token: Some(token.to_string()),
        source: format!(
            "the STS credentials the Aliyun CLI stored in {} (mode {mode}, until {})",
            at.profile(),
            crate::rfc3339::format_date(instant(expires))
        ),
    })
}

/// A Unix time in seconds, as the CLI writes its `*_expire` fields (an integer); absent or
/// `null` is 0 (never signed in).
fn unix_seconds(v: &serde_json::Value, what: impl Fn() -> String) -> Result<i64, CredentialsError> {
    match v {
        serde_json::Value::Null => Ok(0),
        serde_json::Value::Number(n) => n.as_i64().ok_or_else(|| {
            CredentialsError::Config(format!("{} is not a whole number of seconds", what()))
        }),
        _ => Err(CredentialsError::Config(format!(
            "{} is not a Unix time in seconds",
            what()
        ))),
    }
}

fn unix_now(cx: &Context<'_>) -> i64 {
    cx.clock
        .now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn instant(unix: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(unix.max(0) as u64)
}

/// ` at 2026-12-01T08:00:00Z`, or nothing when the profile holds no expiry.
fn when(unix: i64, word: &str) -> String {
    if unix <= 0 {
        String::new()
    } else {
        format!(" {word} {}", crate::rfc3339::format_date(instant(unix)))
    }
}

/// An error answer's code, message and request id, made inert, with the bearer token cut
/// out should the service echo it.
struct ErrorBody {
    code: String,
    message: String,
    request_id: String,
}

impl ErrorBody {
    fn read(response: &HttpResponse, token: &str, [code, message, id]: [&str; 3]) -> Self {
        let json: serde_json::Value =
            serde_json::from_slice(&response.body).unwrap_or(serde_json::Value::Null);
        let text = |k: &str, max: usize| {
            let raw = json.get(k).and_then(|v| v.as_str()).unwrap_or_default();
            let raw = if token.is_empty() {
                raw.to_string()
            } else {
                raw.replace(token, "…")
            };
            server_text(&raw, max)
        };
        ErrorBody {
            code: text(code, CODE_CHARS),
            message: text(message, MESSAGE_CHARS),
            request_id: text(id, REQUEST_ID_CHARS),
        }
    }

    /// ` Code: message (RequestId id)`, leaving out what the answer did not say.
    fn detail(&self) -> String {
        let mut out = String::new();
        if !self.code.is_empty() {
            out.push(' ');
            out.push_str(&self.code);
        }
        if !self.message.is_empty() {
            out.push_str(": ");
            out.push_str(&self.message);
        }
        if !self.request_id.is_empty() {
            out.push_str(&format!(" (RequestId {})", self.request_id));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{env_off_ecs as env, resolve, temp_file};
    use crate::transport::mock::{json, MockTransport};
    use crate::transport::{HttpRequest, Scheme};
    use serde_json::json as j;
    use std::time::SystemTime;

    const TOKEN: &str = "sso-access-token-secret";

    fn now() -> i64 {
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    }

    /// A config holding `profile` (given as JSON fields) as the current profile "p".
    fn config(profile: serde_json::Value) -> String {
        let mut p = profile;
        p["name"] = "p".into();
        temp_file(
            "config.json",
            &j!({"current": "p", "profiles": [p]}).to_string(),
        )
    }

    fn sso(expire: i64) -> serde_json::Value {
        j!({"mode": "CloudSSO",
            "cloud_sso_sign_in_url": "https://signin.sso.example:8443/d-123/login?x=1",
            "cloud_sso_account_id": "1234567890",
            "cloud_sso_access_config": "ac-abc",
            "access_token": TOKEN,
            "cloud_sso_access_token_expire": expire})
    }

    fn oauth(site: &str, expire: i64) -> serde_json::Value {
        j!({"mode": "OAuth", "oauth_site_type": site,
            "oauth_access_token": TOKEN, "oauth_access_token_expire": expire,
            "oauth_refresh_token": "refresh-secret"})
    }

    fn header<'a>(r: &'a HttpRequest, name: &str) -> Option<&'a str> {
        r.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn sso_answer() -> crate::transport::mock::MockTransport {
        MockTransport::new(|_| {
            json(
                200,
                j!({"RequestId": "R", "CloudCredential": {"AccessKeyId": "STS.sso",
                    "AccessKeySecret": "sso-secret", "SecurityToken": "sso-sts",
                    "Expiration": "2099-01-01T00:00:00Z"}}),
            )
        })
    }

    /// Runs the chain over a config with `profile` and `extra` variables.
    fn run(
        profile: serde_json::Value,
        extra: &[(&str, &str)],
        t: &MockTransport,
    ) -> Result<super::Credentials, String> {
        let path = config(profile);
        let mut vars = vec![("ALIBABA_CLOUD_CONFIG_FILE", path.as_str())];
        vars.extend_from_slice(extra);
        resolve(&env(&vars), t).map_err(|e| e.to_string())
    }

    #[test]
    fn cloud_sso_posts_the_bearer_token_to_the_sign_in_host() {
        let t = sso_answer();
        let c = run(sso(now() + 3600), &[], &t).unwrap();
        assert_eq!(c.access_key_id, "STS.sso");
        assert_eq!(c.security_token.as_deref(), Some("sso-sts"));
        assert!(
            c.source.starts_with(
                "CloudSSO access configuration ac-abc of account 1234567890 via \
                 signin.sso.example:8443, Aliyun CLI profile \"p\" in "
            ),
            "{}",
            c.source
        );
        let sent = t.sent.borrow();
        assert_eq!(sent.len(), 1);
        let r = &sent[0];
        assert_eq!((r.method, r.scheme), ("POST", Scheme::Https));
        // Only the scheme and host of the sign-in URL are kept.
        assert_eq!(r.authority, "signin.sso.example:8443");
        assert_eq!(r.path_and_query, "/cloud-credentials");
        assert_eq!(header(r, "accept"), Some("application/json"));
        assert_eq!(header(r, "content-type"), Some("application/json"));
        assert_eq!(
            header(r, "authorization"),
            Some(format!("Bearer {TOKEN}").as_str())
        );
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(
            body,
            j!({"AccountId": "1234567890", "AccessConfigurationId": "ac-abc"})
        );
    }

    #[test]
    fn cloud_sso_settings_are_checked_before_any_request() {
        let t = sso_answer();
        let mut p = sso(now() + 3600);
        p["cloud_sso_account_id"] = "".into();
        p["cloud_sso_access_config"] = " ".into();
        let e = run(p, &[], &t).unwrap_err();
        assert!(
            e.contains("(mode CloudSSO) has no cloud_sso_account_id, cloud_sso_access_config")
                && e.contains("`aliyun configure --profile p --mode CloudSSO`"),
            "{e}"
        );
        let mut p = sso(now() + 3600);
        p["cloud_sso_sign_in_url"] = "http://signin.sso.example/login".into();
        let e = run(p, &[], &t).unwrap_err();
        assert!(
            e.contains("the cloud_sso_sign_in_url of profile \"p\"")
                && e.contains("must be https://")
                && e.contains("bearer secret"),
            "{e}"
        );
        let mut p = sso(now() + 3600);
        p["cloud_sso_access_token_expire"] = "soon".into();
        let e = run(p, &[], &t).unwrap_err();
        assert!(e.contains("cloud_sso_access_token_expire"), "{e}");
        assert!(t.sent.borrow().is_empty());
    }

    #[test]
    fn an_expired_cloud_sso_sign_in_sends_nothing_and_says_when() {
        let t = sso_answer();
        let e = run(sso(1_700_000_000), &[], &t).unwrap_err();
        assert!(
            e.contains("the CloudSSO sign-in of profile \"p\" in ",)
                && e.contains(
                    "has expired at 2023-11-14T22:13:20Z; sign in again with `aliyun \
                 configure --profile p --mode CloudSSO`"
                ),
            "{e}"
        );
        let mut p = sso(now() + 3600);
        p["access_token"] = "".into();
        let e = run(p, &[], &t).unwrap_err();
        assert!(e.contains("no access_token"), "{e}");
        assert!(t.sent.borrow().is_empty());
        assert!(!e.contains(TOKEN));
    }

    #[test]
    fn stored_sts_credentials_are_reused_while_they_hold_long_enough() {
        let stored = |mut p: serde_json::Value, until: i64| {
            p["access_key_id"] = "STS.stored".into();
            p["access_key_secret"] = "stored-secret".into();
            p["sts_token"] = "stored-token".into();
            p["sts_expiration"] = until.into();
            p
        };
        for (mode, p) in [
            ("CloudSSO", sso(now() + 3600)),
            ("OAuth", oauth("CN", now() + 3600)),
        ] {
            // Even with the sign-in expired: the CLI's credentials still hold.
            let mut expired = p.clone();
            expired["cloud_sso_access_token_expire"] = 1.into();
            expired["oauth_access_token_expire"] = 1.into();
            let t = sso_answer();
            let c = run(stored(expired, now() + 3600), &[], &t).unwrap();
            assert_eq!(c.access_key_id, "STS.stored");
            assert_eq!(c.security_token.as_deref(), Some("stored-token"));
            assert!(
                c.source
                    .starts_with("the STS credentials the Aliyun CLI stored in profile \"p\" in ")
                    && c.source.contains(&format!("(mode {mode}, until ")),
                "{}",
                c.source
            );
            assert!(t.sent.borrow().is_empty(), "{mode}: nothing sent");
            // Within 180 s of their expiry, or without a token, they are not used.
            for p in [stored(p.clone(), now() + 100), {
                let mut x = stored(p.clone(), now() + 3600);
                x["sts_token"] = "".into();
                x
            }] {
                let t = MockTransport::new(|_| {
                    json(
                        200,
                        j!({"CloudCredential": {"AccessKeyId": "STS.new", "AccessKeySecret": "s",
                            "SecurityToken": "t", "Expiration": "2099-01-01T00:00:00Z"},
                            "accessKeyId": "STS.new", "accessKeySecret": "s",
                            "securityToken": "t", "expiration": "2099-01-01T00:00:00Z"}),
                    )
                });
                assert_eq!(run(p, &[], &t).unwrap().access_key_id, "STS.new", "{mode}");
                assert_eq!(t.sent.borrow().len(), 1);
            }
        }
    }

    #[test]
    fn cloud_sso_errors_show_the_code_and_message_and_advise_signing_in() {
        let t = MockTransport::new(|_| {
            json(
                401,
                j!({"ErrorCode": "InvalidAccessToken",
                    "ErrorMessage": format!("The token {TOKEN} is invalid."), "RequestId": "R-1"}),
            )
        });
        let e = run(sso(now() + 3600), &[], &t).unwrap_err();
        assert!(
            e.contains("HTTP 401 InvalidAccessToken: The token … is invalid. (RequestId R-1)")
                && e.contains("sign in again with `aliyun configure --profile p --mode CloudSSO`"),
            "{e}"
        );
        assert!(!e.contains(TOKEN), "{e}");
        let t = MockTransport::new(|_| json(500, j!({})));
        let e = run(sso(now() + 3600), &[], &t).unwrap_err();
        assert!(
            e.contains("HTTP 500") && !e.contains("sign in again"),
            "{e}"
        );
        // The answer must say until when, and be in the future.
        for (expiration, says) in [
            (None, "no CloudCredential.Expiration"),
            (Some("2020-01-01 00:00:00"), "no CloudCredential.Expiration"),
            (
                Some("2020-01-01T00:00:00Z"),
                "expired at 2020-01-01T00:00:00Z",
            ),
        ] {
            let t = MockTransport::new(move |_| {
                let mut c = j!({"AccessKeyId": "STS.x", "AccessKeySecret": "s",
                    "SecurityToken": "t"});
                if let Some(x) = expiration {
                    c["Expiration"] = x.into();
                }
                json(200, j!({"CloudCredential": c}))
            });
            let e = run(sso(now() + 3600), &[], &t).unwrap_err();
            assert!(e.contains(says), "{e}");
        }
        let t = MockTransport::new(|_| json(200, j!({"RequestId": "R"})));
        let e = run(sso(now() + 3600), &[], &t).unwrap_err();
        assert!(e.contains("the answer has no CloudCredential"), "{e}");
    }

    fn oauth_answer(body: serde_json::Value) -> MockTransport {
        MockTransport::new(move |_| json(200, body.clone()))
    }

    #[test]
    fn oauth_exchanges_at_its_site_in_either_casing() {
        let camel = j!({"accessKeyId": "STS.o", "accessKeySecret": "o-secret",
            "securityToken": "o-token", "expiration": "2099-01-01T00:00:00Z", "requestId": "R"});
        let pascal = j!({"AccessKeyId": "STS.o", "AccessKeySecret": "o-secret",
            "SecurityToken": "o-token", "Expiration": "2099-01-01T00:00:00Z"});
        for (site, host, body) in [
            ("CN", "oauth.aliyun.com", camel.clone()),
            ("intl", "oauth.alibabacloud.com", pascal),
        ] {
            let t = oauth_answer(body);
            let c = run(oauth(site, now() + 3600), &[], &t).unwrap();
            assert_eq!(c.access_key_id, "STS.o");
            assert_eq!(c.security_token.as_deref(), Some("o-token"));
            assert!(
                c.source.starts_with(&format!(
                    "OAuth exchange via {host} (site {}), Aliyun CLI profile \"p\"",
                    site.to_ascii_uppercase()
                )),
                "{}",
                c.source
            );
            let sent = t.sent.borrow();
            let r = &sent[0];
            assert_eq!((r.method, r.scheme), ("POST", Scheme::Https));
            assert_eq!(r.authority, host);
            assert_eq!(r.path_and_query, "/v1/exchange");
            assert_eq!(header(r, "content-type"), Some("application/json"));
            assert_eq!(
                header(r, "authorization"),
                Some(format!("Bearer {TOKEN}").as_str())
            );
            assert!(r.body.is_empty());
        }
        // The plugin's own variable moves the exchange elsewhere.
        let t = oauth_answer(camel);
        let c = run(
            oauth("CN", now() + 3600),
            &[(
                "SIGSTORE_ALIBABAKMS_OAUTH_ENDPOINT",
                "https://127.0.0.1:9443/",
            )],
            &t,
        )
        .unwrap();
        assert!(
            c.source.starts_with(
                "OAuth exchange via 127.0.0.1:9443 (SIGSTORE_ALIBABAKMS_OAUTH_ENDPOINT)"
            ),
            "{}",
            c.source
        );
        assert_eq!(t.sent.borrow()[0].authority, "127.0.0.1:9443");
        let e = run(
            oauth("CN", now() + 3600),
            &[(
                "SIGSTORE_ALIBABAKMS_OAUTH_ENDPOINT",
                "http://127.0.0.1:9443",
            )],
            &t,
        )
        .unwrap_err();
        assert!(e.contains("HTTPS only"), "{e}");
    }

    #[test]
    fn the_oauth_site_type_must_be_cn_or_intl() {
        let t = oauth_answer(j!({}));
        for (site, says) in [
            (
                "EU",
                "has oauth_site_type \"EU\"; it must be CN or INTL (in any case)",
            ),
            ("", "has no oauth_site_type; it must be CN or INTL"),
        ] {
            let e = run(oauth(site, now() + 3600), &[], &t).unwrap_err();
            assert!(e.contains(says) && e.contains("--mode OAuth"), "{e}");
        }
        assert!(t.sent.borrow().is_empty());
    }

    #[test]
    fn an_expiring_oauth_token_is_not_refreshed_and_nothing_is_sent() {
        let t = oauth_answer(j!({}));
        let e = run(oauth("CN", 1_700_000_000), &[], &t).unwrap_err();
        assert!(
            e.contains("the OAuth access token of profile \"p\" in ")
                && e.contains(
                    "expired at 2023-11-14T22:13:20Z; run any aliyun command with this \
                     profile (e.g. `aliyun sts GetCallerIdentity --profile p`) so the CLI \
                     refreshes it"
                )
                && e.contains("or sign in again with `aliyun configure --profile p --mode OAuth`"),
            "{e}"
        );
        // Less than a minute left counts as expired.
        let e = run(oauth("CN", now() + 30), &[], &t).unwrap_err();
        assert!(e.contains("is about to expire at"), "{e}");
        // Without a refresh token the CLI cannot refresh it either.
        let mut p = oauth("CN", 1_700_000_000);
        p["oauth_refresh_token"] = "".into();
        let e = run(p, &[], &t).unwrap_err();
        assert!(
            !e.contains("GetCallerIdentity") && e.contains("sign in again"),
            "{e}"
        );
        assert!(t.sent.borrow().is_empty());
        assert!(!e.contains(TOKEN) && !e.contains("refresh-secret"), "{e}");
    }

    #[test]
    fn oauth_errors_show_error_and_description() {
        let t = MockTransport::new(|_| {
            json(
                401,
                j!({"error": "expired_token", "error_description": "The access token is expired.",
                    "requestId": "R-2"}),
            )
        });
        let e = run(oauth("CN", now() + 3600), &[], &t).unwrap_err();
        assert!(
            e.contains("HTTP 401 expired_token: The access token is expired. (RequestId R-2)")
                && e.contains("`aliyun sts GetCallerIdentity --profile p`"),
            "{e}"
        );
        let t = oauth_answer(j!({"accessKeyId": "STS.o", "accessKeySecret": "s",
            "securityToken": "t"}));
        let e = run(oauth("CN", now() + 3600), &[], &t).unwrap_err();
        assert!(e.contains("no expiration as a UTC time"), "{e}");
    }

    #[test]
    fn external_is_refused_without_showing_the_command() {
        let t = oauth_answer(j!({}));
        let e = run(
            j!({"mode": "External", "process_command": "fetch-creds --token hunter2"}),
            &[],
            &t,
        )
        .unwrap_err();
        assert!(
            e.contains("uses mode External")
                && e.contains("does not run it")
                && e.contains("outside the sandbox")
                && e.contains("ALIBABA_CLOUD_ACCESS_KEY_ID")
                && e.contains("ALIBABA_CLOUD_SECURITY_TOKEN")
                && e.contains("ALIBABA_CLOUD_CREDENTIALS_URI"),
            "{e}"
        );
        assert!(!e.contains("hunter2") && !e.contains("fetch-creds"), "{e}");
        assert!(t.sent.borrow().is_empty());
    }

    #[test]
    fn cloud_sso_and_oauth_can_source_a_chain() {
        for base in [sso(now() + 3600), oauth("CN", now() + 3600)] {
            let mut base = base;
            base["name"] = "base".into();
            let path = temp_file(
                "config.json",
                &j!({"current": "c", "profiles": [base,
                    {"name": "c", "mode": "ChainableRamRoleArn", "source_profile": "base",
                     "ram_role_arn": "acs:ram::1:role/next"}]})
                .to_string(),
            );
            let t = MockTransport::new(|r| {
                let creds = j!({"AccessKeyId": "STS.base", "AccessKeySecret": "s",
                    "SecurityToken": "t", "Expiration": "2099-01-01T00:00:00Z"});
                match r.path_and_query.as_str() {
                    "/cloud-credentials" => json(200, j!({"CloudCredential": creds})),
                    "/v1/exchange" => json(200, creds),
                    _ => json(
                        200,
                        j!({"RequestId": "R", "Credentials": {"AccessKeyId": "STS.role",
                            "AccessKeySecret": "rs", "SecurityToken": "rt",
                            "Expiration": "2099-01-01T00:00:00Z"}}),
                    ),
                }
            });
            let c = resolve(&env(&[("ALIBABA_CLOUD_CONFIG_FILE", &path)]), &t).unwrap();
            assert_eq!(c.access_key_id, "STS.role");
            assert!(
                c.source.starts_with(
                    "role acs:ram::1:role/next via sts.aliyuncs.com, assumed \
                     with "
                ),
                "{}",
                c.source
            );
            let sent = t.sent.borrow();
            assert_eq!(sent.len(), 2);
            let auth = header(&sent[1], "authorization").unwrap();
            assert!(auth.contains("Credential=STS.base,"), "{auth}");
        }
    }
}
