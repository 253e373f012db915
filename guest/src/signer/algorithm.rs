//! Which algorithms the plugin creates keys with and signs with: the names cosign and KMS
//! use for them, the default, and whether an existing key can sign for cosign at all.

use super::{Session, SignerError};
use crate::crypto::{check_rsa_hash, HashAlg, PublicKey};
use crate::kms;

pub const DEFAULT_ALGORITHM: &str = "EC_P256";

/// Sets what `defaultAlgorithm` answers, so `cosign generate-key-pair --kms` (which always
/// creates the default) can make an RSA key.
pub const DEFAULT_ALGORITHM_VAR: &str = alibabakms_contract::vars::DEFAULT_ALGORITHM;

/// Algorithms `createKey` accepts, with the KMS key spec each creates: the KMS names (what
/// `supportedAlgorithms` lists) and sigstore's names for the same keys.
pub(super) const ALGORITHMS: &[(&str, &str)] = &[
    ("EC_P256", "EC_P256"),
    ("RSA_2048", "RSA_2048"),
    ("RSA_3072", "RSA_3072"),
    ("RSA_4096", "RSA_4096"),
    ("ecdsa-sha2-256-nistp256", "EC_P256"),
    ("rsa-sign-pkcs1-2048-sha256", "RSA_2048"),
    ("rsa-sign-pkcs1-3072-sha256", "RSA_3072"),
    ("rsa-sign-pkcs1-4096-sha256", "RSA_4096"),
];

pub fn supported_algorithms() -> Vec<String> {
    ["EC_P256", "RSA_2048", "RSA_3072", "RSA_4096"]
        .map(String::from)
        .to_vec()
}

/// What `defaultAlgorithm` answers: [`DEFAULT_ALGORITHM`], or the KMS name of the algorithm
/// [`DEFAULT_ALGORITHM_VAR`] names (in either naming), checked without any request.
pub fn default_algorithm(var: Option<&str>) -> Result<&'static str, String> {
    let Some(value) = var.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(DEFAULT_ALGORITHM);
    };
    ALGORITHMS
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(value))
        .map(|(_, spec)| *spec)
        .ok_or_else(|| {
            format!(
                "{DEFAULT_ALGORITHM_VAR}={value:?} is not an algorithm this plugin supports; \
                 accepted: {}",
                ALGORITHMS
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
}

/// How a key signs, from its KMS key spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    EcP256,
    Rsa,
}

impl Kind {
    /// How a public key signs.
    pub(super) fn of(key: &PublicKey) -> Kind {
        match key {
            PublicKey::P256(_) => Kind::EcP256,
            PublicKey::Rsa(_) => Kind::Rsa,
        }
    }

    /// The KMS algorithm and the digest KMS is given for a digest computed with `hash`.
    pub(super) fn algorithm(
        self,
        hash: HashAlg,
        digest: &[u8],
    ) -> Result<(&'static str, &[u8]), SignerError> {
        match self {
            // ECDSA uses the leftmost 256 bits of a longer digest (FIPS 186-4 §6.4): signing
            // them with ECDSA_SHA_256 gives a standard ECDSA-P256 signature over that hash.
            Kind::EcP256 => Ok(("ECDSA_SHA_256", &digest[..digest.len().min(32)])),
            Kind::Rsa => {
                check_rsa_hash(hash).map_err(|e| SignerError::InvalidInput(e.to_string()))?;
                Ok(("RSA_PKCS1_SHA_256", digest))
            }
        }
    }
}

impl<'a> Session<'a> {
    /// Checks that a key can sign for cosign: asymmetric SIGN/VERIFY, enabled, a spec cosign
    /// can verify.
    pub(super) fn usable(&self, meta: &kms::KeyMetadata) -> Result<Kind, SignerError> {
        let key = &meta.key_id;
        if !meta.key_usage.is_empty() && meta.key_usage != "SIGN/VERIFY" {
            return Err(SignerError::InvalidInput(format!(
                "key {key} ({}) has usage {}; cosign needs an asymmetric key with usage \
                 SIGN/VERIFY",
                self.key, meta.key_usage
            )));
        }
        match meta.key_state.as_str() {
            "Enabled" | "" => {}
            "Disabled" => {
                return Err(SignerError::InvalidInput(format!(
                    "key {key} ({}) is Disabled; enable it in KMS to sign with it",
                    self.key
                )))
            }
            "PendingDeletion" => {
                return Err(SignerError::InvalidInput(format!(
                    "key {key} ({}) is PendingDeletion; cancel the deletion in KMS or use \
                     another key",
                    self.key
                )))
            }
            other => {
                return Err(SignerError::InvalidInput(format!(
                    "key {key} ({}) is in state {other}; it must be Enabled to sign",
                    self.key
                )))
            }
        }
        match meta.key_spec.as_str() {
            "EC_P256" => Ok(Kind::EcP256),
            "RSA_2048" | "RSA_3072" | "RSA_4096" => Ok(Kind::Rsa),
            "EC_P256K" | "EC_SM2" => Err(SignerError::InvalidInput(format!(
                "key {key} is {}, which is not supported by cosign; use an EC_P256, RSA_2048, \
                 RSA_3072 or RSA_4096 key",
                meta.key_spec
            ))),
            other => Err(SignerError::InvalidInput(format!(
                "key {key} has key spec {other:?}, which cannot sign for cosign; use an \
                 EC_P256, RSA_2048, RSA_3072 or RSA_4096 key"
            ))),
        }
    }
}
