//! Turning what KMS refused into advice for this key reference: what the code means here
//! and what to do about it (create the alias, fix the region, grant the permission, set the
//! clock), without ever showing a secret.

use super::{Session, SignerError};
use crate::keyref::KeyRef;
use crate::kms::{self, Refreshed};

impl<'a> Session<'a> {
    /// Turns a KMS error into advice for this reference.
    pub(super) fn advise(&self, e: kms::Error) -> SignerError {
        let e = match e {
            kms::Error::Service(e) => e,
            other => return SignerError::Transport(Box::new(other)),
        };
        let key = &self.key;
        let ep = &key.endpoint;
        let source = &self.client.source();
        let advice = match e.code.as_str() {
            "Forbidden.AliasNotFound" => format!(
                "{} does not exist at {ep}; create it with `cosign generate-key-pair --kms \
                 alibabakms://{ep}//{}`, or check the alias name and the region of the endpoint",
                key.alias().unwrap_or("the alias"),
                key.alias().unwrap_or("alias/NAME"),
            ),
            "Forbidden.KeyNotFound" => format!(
                "the key or key version in {key} does not exist at {ep}; check the key id, the \
                 version id and the region of the endpoint"
            ),
            "InvalidAccessKeyId.NotFound" | "InvalidAccessKeyId.Inactive" | "Forbidden.AccessKey"
            | "Forbidden.AccessKeyDisabled" => format!(
                "KMS does not accept the AccessKey read from {source}; check that it is correct \
                 and active"
            ),
            "SignatureDoesNotMatch" | "IncompleteSignature" => format!(
                "KMS rejected the request signature; check the AccessKey secret read from {source}"
            ),
            kms::TOKEN_EXPIRED => match self.client.refreshed() {
                Some(Refreshed::Same) => format!(
                    "the STS security token read from {source} has expired, and reading the \
                     credentials again gave the same token; put fresh STS credentials there (a \
                     new token comes with its own AccessKey pair) or use a source that renews \
                     them (RRSA/OIDC, a RAM role, the ECS RAM role)"
                ),
                Some(Refreshed::New) => format!(
                    "the STS security token has expired, and so had the new one obtained from \
                     {source} right after; check that the local clock is correct and that the \
                     source hands out valid credentials"
                ),
                Some(Refreshed::Failed(why)) => format!(
                    "the STS security token has expired, and getting new credentials failed: {why}"
                ),
                None => format!(
                    "the STS security token read from {source} has expired; get a fresh one"
                ),
            },
            code if code.starts_with("InvalidSecurityToken") || code == "MissingSecurityToken" => format!(
                "KMS rejected the STS security token read from {source}; it may have expired — \
                 get a fresh one"
            ),
            "InvalidTimeStamp.Expired" => match e.clock_skew_secs.map(|s| s.get()) {
                Some(skew) => format!(
                    "the local clock is {} {} Alibaba Cloud's (more than the 15 minutes KMS \
                     allows); synchronise the clock (e.g. with NTP)",
                    skew_text(u64::from(skew.unsigned_abs())),
                    if skew > 0 { "ahead of" } else { "behind" }
                ),
                None => "the local clock differs from Alibaba Cloud's by more than 15 minutes; \
                         synchronise the clock (e.g. with NTP)"
                    .to_string(),
            },
            "Forbidden.NoPermission" => format!(
                "the RAM identity behind {source} may not call kms:{} on this key; grant it that \
                 permission",
                e.action
            ),
            "Rejected.Disabled" => format!("the key in {key} is disabled; enable it in KMS"),
            "Rejected.PendingDeletion" => format!(
                "the key in {key} is pending deletion; cancel the deletion in KMS or use another key"
            ),
            "Forbidden.DKMSInstanceNotFound" => format!(
                "KMS instance {} does not exist in this region; check the instance segment of \
                 the key reference",
                key.instance_id.as_deref().unwrap_or("")
            ),
            "Rejected.Throttling" | "Throttling" | "Throttling.User" | "Throttling.Api" => {
                "KMS is throttling requests from this account; try again shortly".to_string()
            }
            _ => String::new(),
        };
        // KMS has no idempotency token for CreateKey, so even transient failures stand.
        let advice = if e.action == "CreateKey"
            && crate::retry::retryable_code("DescribeKey", e.http_status, &e.code)
        {
            "KMS could not create the key just now; CreateKey is not retried, as a retry could \
             create a second key: check the KMS console for a new key without an alias, then \
             run the command again"
                .to_string()
        } else if let Some(instance) = dedicated_gateway(ep).filter(|_| is_management(e.action)) {
            // Document 601559: management actions go through the shared gateway only.
            format!(
                "{ep} is the dedicated gateway of KMS instance {instance}, which serves \
                 cryptographic operations only, not {}; use the shared gateway of its region \
                 instead, alibabakms://kms.<region>.aliyuncs.com/{instance}/{} (cryptographic \
                 operations through it need the instance's public access enabled)",
                e.action,
                key.alias().unwrap_or("KEY")
            )
        } else if let Some(instance) =
            dedicated_gateway(ep).filter(|_| e.code == "MissingParameter")
        {
            // Document 613363: before image 3.0.0 a gateway takes its ClientKey protocol only,
            // and asks RAM-signed requests for its `x-kms-acccesskeyid`.
            format!(
                "the dedicated gateway of KMS instance {instance} does not take RAM-signed \
                 requests: its image is older than 3.0.0; upgrade the instance's image, or use \
                 the shared gateway of its region, alibabakms://kms.<region>.aliyuncs.com/\
                 {instance}/{} (with the instance's public access enabled)",
                key.key_id_param()
            )
        } else {
            advice
        };
        SignerError::Kms(Box::new(e), advice)
    }
}

/// `about 20 min`, `3 h 2 min`, `40 s`: how far off a clock is, readable.
pub(super) fn skew_text(secs: u64) -> String {
    match secs {
        s if s >= 3600 => format!("{} h {} min", s / 3600, (s % 3600 + 30) / 60),
        s if s >= 60 => format!("about {} min", (s + 30) / 60),
        s => format!("{s} s"),
    }
}

/// The KMS instance whose dedicated gateway `endpoint` is (`kst-….cryptoservice.kms.aliyuncs.com`).
pub(super) fn dedicated_gateway(endpoint: &str) -> Option<&str> {
    let host = endpoint.split(':').next().unwrap_or(endpoint);
    host.strip_suffix(".cryptoservice.kms.aliyuncs.com")
        .filter(|id| id.starts_with("kst-") && !id.contains('.'))
}

/// Why `key`, a reference at the dedicated gateway of `instance` without a version, cannot
/// be used there, and what to write instead.
pub(super) fn name_the_version(key: &KeyRef, instance: &str) -> String {
    let ep = &key.endpoint;
    let named = key.key_id_param();
    format!(
        "{ep} is the dedicated gateway of KMS instance {instance}, which serves cryptographic \
         operations only, and {key} names no key version: finding the newest needs \
         ListKeyVersions, a key management action of the shared gateway. Name the version, \
         alibabakms://{ep}/{instance}/KEY_ID/versions/VERSION_ID (`aliyun kms ListKeyVersions \
         --KeyId {named}` lists them), or use the shared gateway of the instance's region, \
         alibabakms://kms.<region>.aliyuncs.com/{instance}/{named}"
    )
}

/// Key management rather than a cryptographic operation: only the shared gateway serves it.
fn is_management(action: &str) -> bool {
    matches!(
        action,
        "DescribeKey" | "ListKeyVersions" | "CreateKey" | "CreateAlias" | "ScheduleKeyDeletion"
    )
}
