//! STS (API version 2015-04-01) on the same HTTPS server as KMS, told apart by the
//! `x-acs-version` header (reference §4.3).
//!
//! Implemented: `AssumeRoleWithOIDC`, anonymous as on the real service (no AccessKey, no
//! signature). Its parameters are read from the query and from an
//! `application/x-www-form-urlencoded` body, as STS accepts both. The credentials it issues
//! are registered with the KMS side at once, with their token and `Expiration`, so a client
//! can sign KMS requests with them.
//!
//! Error codes chosen where the reference is silent (documented here, shaped like STS's own):
//! a missing parameter is 400 `Missing<Name>`; an unknown role 404 `EntityNotExist.Role`; a
//! provider that is not the role's 404 `EntityNotExist.OIDCProvider`; a token that is not
//! the configured one 400 `InvalidParameter.OIDCToken`; a configured token past its expiry
//! 400 `AuthenticationFail.OIDCToken.Expired`; bad `RoleSessionName`/`DurationSeconds` 400
//! `InvalidParameter.<Name>`. No message ever echoes the token. `DurationSeconds` (default
//! 3600) must be from 900 to the role's `MaxSessionDuration`: 3600 as RAM creates roles,
//! unless raised with [`crate::EmulatorConfig::max_session_duration`] (at most 43200); the
//! credentials issued expire that many seconds after the server's "now".
//!
//! `AssumeRole` is signed: it goes through the same ACS3 verification as KMS (any AccessKey
//! or STS credential the emulator knows may sign), or through the legacy V1 HMAC-SHA1 check
//! the credential libraries' signature needs ([`crate::v1_verify`]),
//! then [`signed_action`] runs it for the roles of [`crate::EmulatorConfig::ram_role`]. An
//! unknown role is 404 `EntityNotExist.Role`. A role whose trust policy requires an
//! `ExternalId` ([`crate::EmulatorConfig::ram_role_with_external_id`]) refuses a request
//! without exactly that value with 403 `NoPermission`. A `Policy` must be a JSON object with
//! a `Version`, at most 2048 characters, else 400 `InvalidParameter.PolicyGrammar` (or
//! `.PolicySize`).
//!
//! Not implemented: every other STS action (404 `InvalidAction.NotFound`).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

use crate::acs3_verify::{decode_query, Credential};
use crate::actions::{ActionFn, Ctx};
use crate::clock::format_iso8601;
use crate::error::ApiError;
use crate::state::random_alnum;

pub const STS_VERSION: &str = "2015-04-01";

/// A RAM role that trusts an OIDC provider, and the one token that provider issued.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OidcRole {
    pub role_arn: String,
    pub provider_arn: String,
    pub token: String,
    /// After this the token is refused as expired; `None`: never.
    pub token_expires: Option<SystemTime>,
}

/// The gateway side of an STS request: method, path and action; returns the action and its
/// parameters (query and form body merged).
pub fn admit(
    method: &str,
    path_and_query: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<(ActionFn, BTreeMap<String, String>), ApiError> {
    if method != "POST" && method != "GET" {
        return Err(ApiError::unsupported_http_method(method));
    }
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    if path != "/" {
        return Err(ApiError::api_not_found(format!(
            "STS is an RPC-style API served at path \"/\", not {path:?}."
        )));
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let mut params = decode_query(query);
    if header("content-type").is_some_and(|c| c.starts_with("application/x-www-form-urlencoded")) {
        let form = std::str::from_utf8(body).map_err(|_| {
            ApiError::service(400, "InvalidParameter", "The form body is not UTF-8.")
        })?;
        params.extend(decode_query(form));
    }
    let action = header("x-acs-action")
        .map(str::to_string)
        .or_else(|| params.get("Action").cloned())
        .unwrap_or_default();
    match action.as_str() {
        "AssumeRoleWithOIDC" => Ok((assume_role_with_oidc as ActionFn, params)),
        other => Err(ApiError::gateway(
            404,
            "InvalidAction.NotFound",
            format!("Specified api is not found, please check your url and method. (emulator: STS action {other:?} is not implemented)"),
        )),
    }
}

/// The STS actions that need a signature, after ACS3 verification.
pub fn signed_action(action: &str) -> Option<ActionFn> {
    match action {
        "AssumeRole" => Some(assume_role as ActionFn),
        _ => None,
    }
}

/// RAM's default `MaxSessionDuration` for a role.
const DEFAULT_MAX_SESSION: u64 = 3600;

/// `RoleSessionName`, and `DurationSeconds` checked against the `MaxSessionDuration` of
/// `role_arn`.
fn session_and_duration(
    params: &BTreeMap<String, String>,
    state: &crate::state::State,
    role_arn: &str,
) -> Result<(String, u64), ApiError> {
    let session = required(params, "RoleSessionName")?;
    if !(2..=64).contains(&session.len())
        || !session
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".@_-".contains(&b))
    {
        return Err(invalid(
            "RoleSessionName",
            "RoleSessionName must be 2 to 64 characters of [A-Za-z0-9.@_-].",
        ));
    }
    let max = state
        .max_session_durations
        .get(role_arn)
        .copied()
        .unwrap_or(DEFAULT_MAX_SESSION)
        .min(43200);
    let duration = match params.get("DurationSeconds") {
        None => 3600,
        Some(d) => d
            .parse::<u64>()
            .ok()
            .filter(|d| (900..=max).contains(d))
            .ok_or_else(|| {
                invalid(
                    "DurationSeconds",
                    &format!(
                        "DurationSeconds must be from 900 to the role's MaxSessionDuration \
                         ({max})."
                    ),
                )
            })?,
    };
    Ok((session.to_string(), duration))
}

fn assume_role(ctx: &mut Ctx<'_>) -> Result<Value, ApiError> {
    let role_arn = required(ctx.params, "RoleArn")?.to_string();
    let (session, duration) = session_and_duration(ctx.params, ctx.state, &role_arn)?;
    if !ctx.state.ram_roles.contains(&role_arn) {
        return Err(ApiError::service(
            404,
            "EntityNotExist.Role",
            "The specified Role not exists.",
        ));
    }
    if let Some(policy) = ctx.params.get("Policy") {
        if policy.is_empty() || policy.len() > 2048 {
            return Err(invalid(
                "PolicySize",
                "The policy must be 1 to 2048 characters.",
            ));
        }
        let parsed: Option<Value> = serde_json::from_str(policy).ok();
        if parsed.is_none_or(|p| p.get("Version").is_none()) {
            return Err(invalid(
                "PolicyGrammar",
                "The policy is not a JSON policy document with a Version.",
            ));
        }
    }
    if let Some(required_id) = ctx.state.ram_role_external_ids.get(&role_arn) {
        if ctx.params.get("ExternalId") != Some(required_id) {
            return Err(ApiError::service(
                403,
                "NoPermission",
                "You are not authorized to do this action: the role's trust policy requires \
                 another ExternalId.",
            ));
        }
    }
    Ok(issue(ctx, &role_arn, &session, duration))
}

/// Fresh STS credentials for a session of `role_arn`, registered with the KMS side.
fn issue(ctx: &mut Ctx<'_>, role_arn: &str, session: &str, duration: u64) -> Value {
    let expiration = ctx.now + Duration::from_secs(duration);
    let id = format!("STS.{}", random_alnum(21));
    let secret = random_alnum(30);
    let security_token = format!("CAIS{}", random_alnum(60));
    ctx.state.register_issued(
        Credential::sts(&id, &secret, &security_token, expiration),
        ctx.now,
    );
    json!({
        "AssumedRoleUser": {
            "AssumedRoleId": format!("{}:{session}", random_digits()),
            "Arn": format!("{role_arn}/{session}"),
        },
        "Credentials": {
            "AccessKeyId": id,
            "AccessKeySecret": secret,
            "SecurityToken": security_token,
            // `2006-01-02T15:04:05Z`, as STS answers.
            "Expiration": format_iso8601(expiration),
        },
    })
}

fn required<'a>(params: &'a BTreeMap<String, String>, name: &str) -> Result<&'a str, ApiError> {
    params
        .get(name)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            ApiError::service(
                400,
                &format!("Missing{name}"),
                format!("{name} is mandatory for this action."),
            )
        })
}

fn invalid(name: &str, why: &str) -> ApiError {
    ApiError::service(400, &format!("InvalidParameter.{name}"), why.to_string())
}

fn assume_role_with_oidc(ctx: &mut Ctx<'_>) -> Result<Value, ApiError> {
    let role_arn = required(ctx.params, "RoleArn")?;
    let provider_arn = required(ctx.params, "OIDCProviderArn")?;
    let token = required(ctx.params, "OIDCToken")?;
    let (session, duration) = session_and_duration(ctx.params, ctx.state, role_arn)?;
    if !(4..=20000).contains(&token.len()) {
        return Err(invalid(
            "OIDCToken",
            "The OIDC token must be 4 to 20000 characters.",
        ));
    }
    let role = ctx
        .state
        .oidc_roles
        .iter()
        .find(|r| r.role_arn == role_arn)
        .ok_or_else(|| {
            ApiError::service(404, "EntityNotExist.Role", "The specified Role not exists.")
        })?
        .clone();
    if role.provider_arn != provider_arn {
        return Err(ApiError::service(
            404,
            "EntityNotExist.OIDCProvider",
            "The specified OIDC provider does not exist or is not trusted by the role.",
        ));
    }
    if role.token != token {
        return Err(invalid(
            "OIDCToken",
            "The OIDC token is invalid: it was not issued by the specified provider.",
        ));
    }
    if role.token_expires.is_some_and(|t| t <= ctx.now) {
        return Err(ApiError::service(
            400,
            "AuthenticationFail.OIDCToken.Expired",
            "Specified OIDC token has expired.",
        ));
    }
    let role_arn = role_arn.to_string();
    let mut answer = issue(ctx, &role_arn, &session, duration);
    answer["OIDCTokenInfo"] =
        json!({"VerificationInfo": "Success", "Issuer": "https://oidc.emulator.local"});
    Ok(answer)
}

fn random_digits() -> String {
    random_alnum(40)
        .bytes()
        .filter(u8::is_ascii_digit)
        .map(char::from)
        .chain(std::iter::repeat('7'))
        .take(17)
        .collect()
}
