//! RRSA / OIDC from the environment (reference §4.3): the token in
//! `ALIBABA_CLOUD_OIDC_TOKEN_FILE` exchanged for the role's credentials with STS
//! `AssumeRoleWithOIDC`, re-read on every run as the cluster rotates it.

use super::files::read_named_file;
use super::{sts, var, Context, CredentialsError, Found};

/// The RRSA/OIDC provider: skipped unless all three variables are set.
pub fn oidc(cx: &Context<'_>) -> Result<Found, CredentialsError> {
    let env = cx.env;
    const TOKEN_VAR: &str = "ALIBABA_CLOUD_OIDC_TOKEN_FILE";
    let role = var(env, "ALIBABA_CLOUD_ROLE_ARN");
    let provider = var(env, "ALIBABA_CLOUD_OIDC_PROVIDER_ARN");
    let token_file = var(env, TOKEN_VAR);
    let (Some(role), Some(provider), Some(_)) = (role, provider, token_file) else {
        return Ok(Found::Skipped(format!(
            "ALIBABA_CLOUD_ROLE_ARN, ALIBABA_CLOUD_OIDC_PROVIDER_ARN and {TOKEN_VAR} are not all \
             set"
        )));
    };
    // Re-read on every run: the token rotates.
    let (path, token) = read_named_file(env, TOKEN_VAR)?.expect("the variable is set");
    let token = token.trim();
    if token.is_empty() {
        return Err(CredentialsError::Config(format!(
            "{TOKEN_VAR}={path} is empty"
        )));
    }
    let host = sts::endpoint(env)?;
    let source = format!("RRSA/OIDC role {role} via {host}");
    let duration = sts::duration_seconds(env, None)?;
    sts::assume_role_with_oidc(
        cx,
        &sts::OidcExchange {
            host: &host,
            role_arn: &role,
            provider_arn: &provider,
            token,
            session: &sts::session_name(env, cx.clock.now()),
            duration,
            source: &source,
            token_origin: TOKEN_VAR,
        },
    )
    .map(Found::Yes)
}
