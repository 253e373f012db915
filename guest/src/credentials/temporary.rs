//! What the sources that fetch temporary credentials over plain HTTP(S) share (the
//! credentials URI, a CloudSSO sign-in, an OAuth exchange): one request bounded by the
//! deadline, redirects refused, and an answer that must hold an AccessKey, its secret, an STS
//! token and a still-future expiry. Messages name the source, never a value.

use super::{Context, Credentials, CredentialsError};
use crate::retry;
use crate::transport::{HttpRequest, HttpResponse};

/// Sends `request` once (`what` names it in the diagnostic line), with the per-request cap
/// and the call's deadline. No answer, or a redirect (never followed), is an error naming
/// `source`; `redirect_advice` follows the latter.
pub(super) fn send(
    cx: &Context<'_>,
    what: &str,
    source: &str,
    mut request: HttpRequest,
    redirect_advice: &str,
) -> Result<HttpResponse, CredentialsError> {
    request.timeout = Some(request.timeout.unwrap_or(retry::REQUEST_CAP));
    let response = cx
        .send_once(what, request)
        .map_err(|e| CredentialsError::Service(format!("{source}: no answer: {e}")))?;
    if (300..400).contains(&response.status) {
        return Err(CredentialsError::Service(format!(
            "{source}: answered with a redirect (HTTP {}), and redirects are not followed{}",
            response.status, redirect_advice
        )));
    }
    Ok(response)
}

/// The four values of an answer, as the service spelled them; `names` says how it names
/// them, for messages.
pub(super) struct Answered<'a> {
    pub id: &'a str,
    pub secret: &'a str,
    pub token: &'a str,
    pub expiration: &'a str,
    /// E.g. `AccessKeyId, AccessKeySecret or SecurityToken`.
    pub names: &'a str,
    /// The name of the expiry field, e.g. `Expiration`.
    pub expiration_name: &'a str,
    /// Who must hand out fresh ones, e.g. `the service behind the credentials URI`.
    pub issuer: &'a str,
}

/// Credentials from an answer: every value present, and the expiry an RFC 3339 time still
/// in the future (as credentials-go requires of every temporary source; credentials already
/// past it are refused here rather than by KMS).
pub(super) fn credentials(
    cx: &Context<'_>,
    source: String,
    a: Answered<'_>,
) -> Result<Credentials, CredentialsError> {
    if a.id.is_empty() || a.secret.is_empty() || a.token.is_empty() {
        return Err(CredentialsError::Service(format!(
            "{source}: the answer lacks {}",
            a.names
        )));
    }
    let Some(expires) = crate::rfc3339::parse_rfc3339(a.expiration) else {
        return Err(CredentialsError::Service(format!(
            "{source}: the answer has no {} as a UTC time (such as 2026-12-01T08:00:00Z); {} \
             must say until when its credentials hold",
            a.expiration_name, a.issuer
        )));
    };
    if expires <= cx.clock.now() {
        return Err(CredentialsError::Service(format!(
            "{source}: the credentials it answered expired at {}; {} must hand out fresh ones",
            crate::untrusted::server_text(a.expiration, 40),
            a.issuer
        )));
    }
    Ok(Credentials {
        access_key_id: a.id.to_string(),
        access_key_secret: a.secret.to_string(),
        security_token: Some(a.token.to_string()),
        source,
    })
}
