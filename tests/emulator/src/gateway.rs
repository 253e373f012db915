//! A KMS instance's dedicated gateway, `<instance>.cryptoservice.kms.aliyuncs.com`: the
//! same OpenAPI (2016-01-20, ACS3-signed with RAM credentials), cryptographic operations
//! only. Alibaba's "阿里云SDK" page (help.aliyun.com document 601559) says key management
//! (CreateKey, CreateAlias, DescribeKey, ListKeyVersions, …) goes through the shared gateway
//! only, and every cryptographic action but ReEncrypt through both.
//!
//! The emulator serves a request as instance `kst-…`'s dedicated gateway when its `Host` is
//! that name (with any port); its certificate names `*.cryptoservice.kms.aliyuncs.com`, as
//! an instance's CA-issued one does. Chosen where the docs are silent, as conservatively as
//! the rest: a management action there is 404 `InvalidApi.NotFound` (the gateway has no such
//! API), a host naming no instance of the account is 403 `Forbidden.DKMSInstanceNotFound`,
//! and a key outside the instance is 404 `Forbidden.KeyNotFound` (it serves its own keys).

use crate::actions::ALIAS_OR_ID;
use crate::error::ApiError;
use crate::state::State;
use std::collections::BTreeMap;

/// What follows the instance id in its dedicated gateway's host name.
pub const HOST_SUFFIX: &str = ".cryptoservice.kms.aliyuncs.com";

/// The name on the server certificate that covers every instance's gateway.
pub const TLS_NAME: &str = "*.cryptoservice.kms.aliyuncs.com";

/// The cryptographic actions of [`crate::actions::ACTIONS`]: all a dedicated gateway serves.
const CRYPTO_ACTIONS: &[&str] = &["GetPublicKey", "AsymmetricSign", "AsymmetricVerify"];

/// The instance whose dedicated gateway `host` (a `Host` header, port allowed) names.
pub fn instance_of(host: &str) -> Option<&str> {
    let name = host.rsplit_once(':').map_or(host, |(name, _)| name);
    let suffix_at = name.len().checked_sub(HOST_SUFFIX.len())?;
    let (id, suffix) = name.split_at(suffix_at);
    (suffix.eq_ignore_ascii_case(HOST_SUFFIX) && !id.is_empty() && !id.contains('.')).then_some(id)
}

/// Whether the dedicated gateway of `instance` serves `action` on the key in `params`.
pub fn admit(
    state: &State,
    instance: &str,
    action: &str,
    params: &BTreeMap<String, String>,
) -> Result<(), ApiError> {
    if !state.kms_instances.contains(instance) {
        return Err(ApiError::dkms_instance_not_found(instance));
    }
    if !CRYPTO_ACTIONS.contains(&action) {
        return Err(ApiError::api_not_found(format!(
            "{action} is key management, which the dedicated gateway of KMS instance \
             {instance} does not serve; call the shared gateway (kms.<region>.aliyuncs.com)."
        )));
    }
    // A missing KeyId is the action's own error to give.
    let Some(key_ref) = params.get("KeyId") else {
        return Ok(());
    };
    let key_id = state.resolve_key(key_ref, ALIAS_OR_ID)?;
    if state.key(&key_id).dkms_instance_id.as_deref() != Some(instance) {
        return Err(ApiError::key_not_found(format!(
            "KeyId: {key_ref} is not a key of KMS instance {instance}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_of_reads_the_host_name_only() {
        assert_eq!(
            instance_of("kst-abc.cryptoservice.kms.aliyuncs.com:8443"),
            Some("kst-abc")
        );
        assert_eq!(
            instance_of("kst-abc.cryptoservice.kms.aliyuncs.com"),
            Some("kst-abc")
        );
        for other in [
            "kms.cn-hangzhou.aliyuncs.com",
            "127.0.0.1:443",
            ".cryptoservice.kms.aliyuncs.com",
            "a.kst-abc.cryptoservice.kms.aliyuncs.com",
            "kst-abc.cryptoservice.kms.aliyuncs.com.evil",
        ] {
            assert_eq!(instance_of(other), None, "{other}");
        }
    }
}
