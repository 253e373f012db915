//! The sign-in services behind the Aliyun CLI's `CloudSSO` and `OAuth` profiles, on the same
//! HTTPS server as KMS, told apart by path. Each trades a bearer access token for STS
//! credentials, which are registered with the KMS side at once (as STS-issued ones are), so a
//! client can sign KMS requests with them until their `Expiration`.
//!
//! * CloudSSO ([`crate::EmulatorConfig::cloud_sso`]): `POST` [`CLOUD_SSO_PATH`] with
//!   `Authorization: Bearer <access token>`, `Content-Type: application/json` and the body
//!   `{"AccountId", "AccessConfigurationId"}` (credentials-go providers/cloud_sso.go, aliyun-cli
//!   cloudsso/refresh.go) answers `{"CloudCredential": {"AccessKeyId", "AccessKeySecret",
//!   "SecurityToken", "Expiration"}, "RequestId"}`. Errors take the shape the CLI reads,
//!   `{"ErrorCode", "ErrorMessage", "RequestId"}`.
//! * OAuth ([`crate::EmulatorConfig::oauth`]): `POST` [`OAUTH_EXCHANGE_PATH`] with
//!   `Authorization: Bearer <access token>` and `Content-Type: application/json` (no body;
//!   one sent is ignored) answers camelCase `{"accessKeyId", "accessKeySecret",
//!   "securityToken", "expiration", "requestId"}`, as credentials-go's tests do. Errors take
//!   the shape an aliyun-cli comment documents, `{"error", "error_description", "requestId"}`.
//!
//! Checked in this order, codes chosen where the sources are silent: the method (405
//! `MethodNotAllowed` / `method_not_allowed`), the content type (400 `InvalidContentType` /
//! `invalid_request`), the bearer token (401 `InvalidAccessToken` / `invalid_token`), then
//! CloudSSO's body (400 `InvalidParameter`, `InvalidParameter.AccountId`,
//! `InvalidParameter.AccessConfigurationId`). A path whose service is not configured is 404.
//! No message echoes a token. Credentials last [`CREDENTIALS_LIFETIME`]; `Expiration` is
//! RFC 3339 in UTC. Requests are counted in [`crate::Stats::cloud_sso_requests`] and
//! [`crate::Stats::oauth_exchange_requests`], and recorded with the others.

use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

use crate::acs3_verify::Credential;
use crate::clock::format_iso8601;
use crate::state::{random_alnum, State};

/// Where CloudSSO hands out credentials.
pub const CLOUD_SSO_PATH: &str = "/cloud-credentials";
/// Where an OAuth access token is exchanged for credentials.
pub const OAUTH_EXCHANGE_PATH: &str = "/v1/exchange";
/// How long the credentials handed out last.
pub const CREDENTIALS_LIFETIME: Duration = Duration::from_secs(3600);

/// A CloudSSO sign-in the service accepts: its access token, for one account's access
/// configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloudSso {
    pub access_token: String,
    pub account_id: String,
    pub access_config: String,
}

/// Which service a path belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    CloudSso,
    OAuth,
}

/// The sign-in service `path_and_query` is for, if any (a query is ignored:
/// credentials-go's client sends `/cloud-credentials?`).
pub fn service(path_and_query: &str) -> Option<Service> {
    match path_and_query.split('?').next() {
        Some(CLOUD_SSO_PATH) => Some(Service::CloudSso),
        Some(OAUTH_EXCHANGE_PATH) => Some(Service::OAuth),
        _ => None,
    }
}

/// One answer: status, body, and the error code for the record (`None` on success).
pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub code: Option<String>,
}

/// A request to the sign-in `service`.
pub fn answer(
    service: Service,
    state: &mut State,
    now: SystemTime,
    method: &str,
    headers: &[(String, String)],
    body: &[u8],
    request_id: &str,
) -> Answer {
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let bearer = header("authorization").and_then(|a| a.strip_prefix("Bearer "));
    let json_type = header("content-type").is_some_and(|c| {
        c.split(';')
            .next()
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
    });
    match service {
        Service::CloudSso => {
            let error = |status: u16, code: &str, message: &str| Answer {
                status,
                body: json!({"ErrorCode": code, "ErrorMessage": message, "RequestId": request_id}),
                code: Some(code.to_string()),
            };
            let Some(sso) = state.cloud_sso.clone() else {
                return error(
                    404,
                    "NotFound",
                    "emulator: no CloudSSO service is configured (EmulatorConfig::cloud_sso).",
                );
            };
            if method != "POST" {
                return error(405, "MethodNotAllowed", "Use POST.");
            }
            if !json_type {
                return error(
                    400,
                    "InvalidContentType",
                    "The request body must be application/json.",
                );
            }
            if bearer != Some(sso.access_token.as_str()) {
                return error(
                    401,
                    "InvalidAccessToken",
                    "The access token is invalid or has expired.",
                );
            }
            let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(body) else {
                return error(400, "InvalidParameter", "The body is not a JSON object.");
            };
            let given = |k: &str| fields.get(k).and_then(Value::as_str);
            if given("AccountId") != Some(sso.account_id.as_str()) {
                return error(
                    400,
                    "InvalidParameter.AccountId",
                    "AccountId is missing or is not an account of this sign-in.",
                );
            }
            if given("AccessConfigurationId") != Some(sso.access_config.as_str()) {
                return error(
                    400,
                    "InvalidParameter.AccessConfigurationId",
                    "AccessConfigurationId is missing or is not assigned to this user.",
                );
            }
            let c = issue(state, now);
            Answer {
                status: 200,
                body: json!({
                    "CloudCredential": {
                        "AccessKeyId": c.id,
                        "AccessKeySecret": c.secret,
                        "SecurityToken": c.token,
                        "Expiration": c.expiration,
                    },
                    "RequestId": request_id,
                }),
                code: None,
            }
        }
        Service::OAuth => {
            let error = |status: u16, code: &str, message: &str| Answer {
                status,
                body: json!({"error": code, "error_description": message, "requestId": request_id}),
                code: Some(code.to_string()),
            };
            let Some(token) = state.oauth_token.clone() else {
                return error(
                    404,
                    "not_found",
                    "emulator: no OAuth service is configured (EmulatorConfig::oauth).",
                );
            };
            if method != "POST" {
                return error(405, "method_not_allowed", "Use POST.");
            }
            if !json_type {
                return error(
                    400,
                    "invalid_request",
                    "The Content-Type must be application/json.",
                );
            }
            if bearer != Some(token.as_str()) {
                return error(401, "invalid_token", "The access token is invalid.");
            }
            let c = issue(state, now);
            Answer {
                status: 200,
                body: json!({
                    "accessKeyId": c.id,
                    "accessKeySecret": c.secret,
                    "securityToken": c.token,
                    "expiration": c.expiration,
                    "requestId": request_id,
                }),
                code: None,
            }
        }
    }
}

struct Issued {
    id: String,
    secret: String,
    token: String,
    expiration: String,
}

/// Fresh STS credentials, registered with the KMS side.
fn issue(state: &mut State, now: SystemTime) -> Issued {
    let expiration = now + CREDENTIALS_LIFETIME;
    let id = format!("STS.{}", random_alnum(21));
    let secret = random_alnum(30);
    let token = format!("CAIS{}", random_alnum(60));
    state.register_issued(Credential::sts(&id, &secret, &token, expiration), now);
    Issued {
        id,
        secret,
        token,
        expiration: format_iso8601(expiration),
    }
}
