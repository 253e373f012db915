//! KMS 2016-01-20: the actions the plugin sends (each a [`Call`] for the [`rpc`] client)
//! and the answers it reads. Sending, signing, retrying and decoding errors are the RPC
//! client's; nothing here knows about cosign.

use crate::access_key::Credentials;
use crate::retry::Deadline;
use crate::rpc::{self, Api, Call};
use crate::transport::Transport;
use serde::Deserialize;

pub use crate::rpc::{Error, Refreshed, ServiceError as KmsError, TOKEN_EXPIRED};

pub const API: Api = Api {
    product: "KMS",
    version: "2016-01-20",
    log_prefix: "",
    endpoint_hint: "Check the endpoint in the key reference: it must be the KMS endpoint \
                    itself (kms.<region>.aliyuncs.com, or a host in \
                    SIGSTORE_ALIBABAKMS_ALLOWED_HOSTS that serves the KMS API)",
};

/// A KMS client at `endpoint` (`host[:port]`), signing with `credentials`, bound by `deadline`.
pub fn client<'a>(
    transport: &'a dyn Transport,
    endpoint: &str,
    credentials: Credentials,
    deadline: Deadline,
) -> rpc::Client<'a> {
    rpc::Client::new(&API, transport, endpoint, deadline).signed(credentials)
}

// ---- typed actions -------------------------------------------------------------------------

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeyMetadata {
    pub key_id: String,
    #[serde(default)]
    pub key_spec: String,
    #[serde(default)]
    pub key_usage: String,
    #[serde(default)]
    pub key_state: String,
    #[serde(default)]
    pub primary_key_version: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeyMetadataResponse {
    pub key_metadata: KeyMetadata,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeyVersion {
    #[serde(default)]
    pub key_id: String,
    pub key_version_id: String,
    #[serde(default)]
    pub creation_date: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct KeyVersions {
    #[serde(default)]
    key_version: Vec<KeyVersion>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListKeyVersionsResponse {
    #[serde(default)]
    key_versions: Option<KeyVersions>,
    #[serde(default)]
    pub total_count: u64,
    #[serde(default)]
    pub page_number: u64,
    #[serde(default)]
    pub page_size: u64,
}

impl ListKeyVersionsResponse {
    pub fn versions(self) -> Vec<KeyVersion> {
        self.key_versions.map(|k| k.key_version).unwrap_or_default()
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PublicKeyResponse {
    pub public_key: String,
    #[serde(default)]
    pub key_id: String,
    #[serde(default)]
    pub key_version_id: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SignResponse {
    /// Base64 of the signature bytes.
    pub value: String,
    #[serde(default)]
    pub request_id: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct VerifyResponse {
    /// Whether the signature is valid: a JSON boolean.
    pub value: bool,
}

pub const PAGE_SIZE: u64 = 100;

pub fn describe_key(key_id: &str) -> Call {
    Call::new("DescribeKey", vec![("KeyId", key_id.into())])
}

pub fn list_key_versions(key_id: &str, page: u64) -> Call {
    Call::new(
        "ListKeyVersions",
        vec![
            ("KeyId", key_id.into()),
            ("PageNumber", page.to_string()),
            ("PageSize", PAGE_SIZE.to_string()),
        ],
    )
}

pub fn get_public_key(key_id: &str, version: &str) -> Call {
    Call::new(
        "GetPublicKey",
        vec![("KeyId", key_id.into()), ("KeyVersionId", version.into())],
    )
}

pub fn asymmetric_sign(key_id: &str, version: &str, algorithm: &str, digest_b64: String) -> Call {
    Call::new(
        "AsymmetricSign",
        vec![
            ("KeyId", key_id.into()),
            ("KeyVersionId", version.into()),
            ("Algorithm", algorithm.into()),
            ("Digest", digest_b64),
        ],
    )
}

/// Note the field names: `Digest` is the digest, `Value` the signature (the older Go plugin
/// swapped them).
pub fn asymmetric_verify(
    key_id: &str,
    version: &str,
    algorithm: &str,
    digest_b64: String,
    signature_b64: String,
) -> Call {
    Call::new(
        "AsymmetricVerify",
        vec![
            ("KeyId", key_id.into()),
            ("KeyVersionId", version.into()),
            ("Algorithm", algorithm.into()),
            ("Digest", digest_b64),
            ("Value", signature_b64),
        ],
    )
}

pub fn create_key(spec: &str, instance_id: Option<&str>) -> Call {
    let mut params = vec![
        ("KeySpec", spec.to_string()),
        ("KeyUsage", "SIGN/VERIFY".to_string()),
        (
            "Description",
            "Created by sigstore-kms-alibabakms for cosign".to_string(),
        ),
    ];
    if let Some(i) = instance_id {
        params.push(("DKMSInstanceId", i.to_string()));
    }
    Call::new("CreateKey", params)
}

pub fn create_alias(alias: &str, key_id: &str) -> Call {
    Call::new(
        "CreateAlias",
        vec![("AliasName", alias.into()), ("KeyId", key_id.into())],
    )
}

/// The shortest window KMS allows: a key that lost a race leaves as soon as possible.
pub fn schedule_key_deletion(key_id: &str) -> Call {
    Call::new(
        "ScheduleKeyDeletion",
        vec![
            ("KeyId", key_id.into()),
            ("PendingWindowInDays", "7".into()),
        ],
    )
}
