//! Static AccessKeys from environment variables: the official names (with a role to assume
//! when `ALIBABA_CLOUD_ROLE_ARN` is set, as the ACK chain does) and the legacy `ALICLOUD_*`
//! names.

use super::{sts, var, Context, Credentials, CredentialsError, EnvLookup, Found};

/// `ALIBABA_CLOUD_ACCESS_KEY_ID` & co.; with `ALIBABA_CLOUD_ROLE_ARN`, the role assumed with
/// them.
pub fn official(cx: &Context<'_>) -> Result<Found, CredentialsError> {
    let found = env_keys(
        cx.env,
        "ALIBABA_CLOUD_ACCESS_KEY_ID",
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
        "ALIBABA_CLOUD_SECURITY_TOKEN",
    )?;
    match (found, var(cx.env, "ALIBABA_CLOUD_ROLE_ARN")) {
        (Found::Yes(keys), Some(role)) => {
            sts::assume_role(cx, &keys, &role, &Default::default()).map(Found::Yes)
        }
        (found, _) => Ok(found),
    }
}

/// `ALICLOUD_ACCESS_KEY` & co.
pub fn legacy(cx: &Context<'_>) -> Result<Found, CredentialsError> {
    env_keys(
        cx.env,
        "ALICLOUD_ACCESS_KEY",
        "ALICLOUD_SECRET_KEY",
        "ALICLOUD_ACCESS_KEY_STS_TOKEN",
    )
}

/// A static AccessKey from environment variables, under one naming scheme.
fn env_keys(
    env: EnvLookup<'_>,
    id: &str,
    secret: &str,
    token: &str,
) -> Result<Found, CredentialsError> {
    match (var(env, id), var(env, secret)) {
        (Some(access_key_id), Some(access_key_secret)) => {
            let security_token = var(env, token);
            let mut names = format!("{id}, {secret}");
            if security_token.is_some() {
                names.push_str(&format!(", {token}"));
            }
            Ok(Found::Yes(Credentials {
                access_key_id,
                access_key_secret,
                security_token,
                source: format!("environment ({names})"),
            }))
        }
        (Some(_), None) => Err(CredentialsError::Config(format!(
            "{id} is set but {secret} is not; set both"
        ))),
        (None, Some(_)) => Err(CredentialsError::Config(format!(
            "{secret} is set but {id} is not; set both"
        ))),
        (None, None) => Ok(Found::Skipped(format!("{id} and {secret} are not set"))),
    }
}
