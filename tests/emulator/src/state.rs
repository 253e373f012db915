//! Everything the emulated account holds: keys with their versions and real key material,
//! aliases, KMS instances and the credentials the gateway accepts. One struct, kept behind
//! one Mutex by the server, so every action sees a consistent account.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::SystemTime;

use base64::Engine as _;
use p256::ecdsa::signature::hazmat::{PrehashVerifier, RandomizedPrehashSigner};
use p256::pkcs8::{EncodePublicKey, LineEnding};
use rand_core::{OsRng, RngCore};

use crate::acs3_verify::Credential;
use crate::error::ApiError;

/// Key specs Alibaba KMS documents (reference §2.1); only some are implemented here.
pub const KNOWN_KEY_SPECS: [&str; 12] = [
    "Aliyun_AES_256",
    "Aliyun_AES_128",
    "Aliyun_AES_192",
    "Aliyun_SM4",
    "RSA_2048",
    "RSA_3072",
    "RSA_4096",
    "EC_P256",
    "EC_P256K",
    "EC_SM2",
    "HMAC_SHA256",
    "HMAC_SM3",
];

/// Key specs this emulator can create (it holds real key material for them).
pub const SUPPORTED_KEY_SPECS: [&str; 1] = ["EC_P256"];

pub const USAGE_SIGN_VERIFY: &str = "SIGN/VERIFY";
pub const USAGE_ENCRYPT_DECRYPT: &str = "ENCRYPT/DECRYPT";

/// Lifecycle state of a key ("Impact of CMK states on API calls").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyState {
    Enabled,
    Disabled,
    PendingDeletion,
}

impl KeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Enabled => "Enabled",
            KeyState::Disabled => "Disabled",
            KeyState::PendingDeletion => "PendingDeletion",
        }
    }

    /// The 409 a cryptographic call gets when the key is not Enabled.
    pub fn require_enabled(self, key_id: &str) -> Result<(), ApiError> {
        match self {
            KeyState::Enabled => Ok(()),
            KeyState::Disabled => Err(ApiError::state_conflict(
                "Rejected.Disabled",
                format!("The key {key_id} is disabled."),
            )),
            KeyState::PendingDeletion => Err(ApiError::state_conflict(
                "Rejected.PendingDeletion",
                format!("The key {key_id} is pending deletion."),
            )),
        }
    }
}

/// The private half of one key version. An enum so RSA and other curves can join later.
pub enum KeyMaterial {
    EcP256(p256::ecdsa::SigningKey),
}

impl KeyMaterial {
    /// Fresh material for `spec`, or InvalidParameter for a spec this emulator lacks.
    pub fn generate(spec: &str) -> Result<Self, ApiError> {
        match spec {
            "EC_P256" => Ok(KeyMaterial::EcP256(p256::ecdsa::SigningKey::random(
                &mut OsRng,
            ))),
            other if KNOWN_KEY_SPECS.contains(&other) => Err(ApiError::invalid_parameter(
                "KeySpec",
                format!(
                    "{other} is a valid Alibaba KMS key spec but this emulator does not implement it (supported: {}).",
                    SUPPORTED_KEY_SPECS.join(", ")
                ),
            )),
            other => Err(ApiError::invalid_parameter(
                "KeySpec",
                format!(
                    "Unknown key spec {other:?}; Alibaba KMS key specs are {}.",
                    KNOWN_KEY_SPECS.join(", ")
                ),
            )),
        }
    }

    /// Signing algorithms valid for this material (reference §2.10).
    pub fn algorithms(&self) -> &'static [&'static str] {
        match self {
            KeyMaterial::EcP256(_) => &["ECDSA_SHA_256"],
        }
    }

    /// Length in bytes of the digest `algorithm` signs.
    fn digest_len(algorithm: &str) -> usize {
        match algorithm {
            "ECDSA_SHA_256" => 32,
            _ => 32,
        }
    }

    fn check_algorithm(&self, algorithm: &str, digest: &[u8]) -> Result<(), ApiError> {
        if !self.algorithms().contains(&algorithm) {
            return Err(ApiError::invalid_parameter(
                "Algorithm",
                format!(
                    "{algorithm:?} does not fit this key; valid: {}.",
                    self.algorithms().join(", ")
                ),
            ));
        }
        let want = Self::digest_len(algorithm);
        if digest.len() != want {
            return Err(ApiError::invalid_parameter(
                "Digest",
                format!(
                    "{algorithm} signs a {want}-byte digest; the decoded Digest has {} bytes.",
                    digest.len()
                ),
            ));
        }
        Ok(())
    }

    /// `PUBLIC KEY` PEM (SubjectPublicKeyInfo), `\n` line breaks, trailing `\n`.
    pub fn public_key_pem(&self) -> String {
        match self {
            KeyMaterial::EcP256(sk) => sk
                .verifying_key()
                .to_public_key_pem(LineEnding::LF)
                .expect("P-256 public keys encode"),
        }
    }

    /// Signs a prehashed digest; ECDSA signatures are DER `SEQUENCE{r, s}` with a random
    /// nonce, as KMS's are (so two signatures of one digest differ).
    pub fn sign(&self, algorithm: &str, digest: &[u8]) -> Result<Vec<u8>, ApiError> {
        self.check_algorithm(algorithm, digest)?;
        match self {
            KeyMaterial::EcP256(sk) => {
                let sig: p256::ecdsa::Signature = sk
                    .sign_prehash_with_rng(&mut OsRng, digest)
                    .map_err(|e| ApiError::invalid_parameter("Digest", e))?;
                Ok(sig.to_der().as_bytes().to_vec())
            }
        }
    }

    /// Whether `signature` is valid over `digest`; a malformed signature is `false`, not an
    /// error, as in KMS.
    pub fn verify(
        &self,
        algorithm: &str,
        digest: &[u8],
        signature: &[u8],
    ) -> Result<bool, ApiError> {
        self.check_algorithm(algorithm, digest)?;
        match self {
            KeyMaterial::EcP256(sk) => Ok(p256::ecdsa::Signature::from_der(signature)
                .map(|sig| sk.verifying_key().verify_prehash(digest, &sig).is_ok())
                .unwrap_or(false)),
        }
    }
}

pub struct KeyVersion {
    pub id: String,
    pub creation_date: SystemTime,
    pub material: KeyMaterial,
}

pub struct Key {
    pub id: String,
    pub arn: String,
    pub spec: String,
    pub usage: String,
    pub description: String,
    pub protection_level: String,
    pub origin: String,
    pub creator: String,
    pub dkms_instance_id: Option<String>,
    pub creation_date: SystemTime,
    pub state: KeyState,
    pub delete_date: Option<SystemTime>,
    /// The version made with the key. Not moved by later versions: whether KMS populates and
    /// advances it for asymmetric keys is unconfirmed (reference §2.1), so clients should not
    /// lean on it; the emulator keeps the conservative reading.
    pub primary_version: String,
    /// In creation order (insertion order breaks ties of equal dates).
    pub versions: Vec<KeyVersion>,
}

impl Key {
    pub fn version(&self, version_id: &str) -> Option<&KeyVersion> {
        self.versions.iter().find(|v| v.id == version_id)
    }
}

/// The emulated Alibaba Cloud account in one region.
pub struct State {
    pub region: String,
    pub account_id: String,
    pub keys: BTreeMap<String, Key>,
    /// `alias/NAME` → key id.
    pub aliases: BTreeMap<String, String>,
    pub kms_instances: BTreeSet<String>,
    pub credentials: HashMap<String, Credential>,
    /// Aliases per region (DOC-LIMITS default: 300).
    pub max_aliases: usize,
}

/// Random lower-case alphanumerics.
pub fn random_alnum(n: usize) -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = vec![0u8; n];
    OsRng.fill_bytes(&mut bytes);
    // 256 % 36 != 0 gives a slight bias; irrelevant for identifiers.
    bytes
        .iter()
        .map(|b| CHARS[*b as usize % CHARS.len()] as char)
        .collect()
}

/// A random (version 4) GUID, lower case: the form of key version ids.
pub fn random_guid() -> String {
    let mut b = [0u8; 16];
    OsRng.fill_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Strict standard base64 (with padding), the encoding KMS uses for Digest and Value.
pub fn unb64(name: &str, text: &str) -> Result<Vec<u8>, ApiError> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| ApiError::invalid_parameter(name, format!("Not standard base64: {e}.")))
}

/// Which spellings of a key a parameter accepts (they differ per action, see §2).
#[derive(Clone, Copy)]
pub struct KeyRefForms {
    pub alias: bool,
    pub arn: bool,
}

impl State {
    pub fn new(region: String, account_id: String) -> Self {
        State {
            region,
            account_id,
            keys: BTreeMap::new(),
            aliases: BTreeMap::new(),
            kms_instances: BTreeSet::new(),
            credentials: HashMap::new(),
            max_aliases: 300,
        }
    }

    pub fn key_arn(&self, key_id: &str) -> String {
        format!("acs:kms:{}:{}:key/{key_id}", self.region, self.account_id)
    }

    pub fn alias_arn(&self, alias_name: &str) -> String {
        format!("acs:kms:{}:{}:{alias_name}", self.region, self.account_id)
    }

    /// Resolves a `KeyId` parameter to a key id: a key id, or (when allowed) `alias/NAME` or an
    /// ARN `acs:kms:REGION:ACCOUNT:key/ID` / `...:alias/NAME` of this account and region.
    pub fn resolve_key(&self, key_ref: &str, forms: KeyRefForms) -> Result<String, ApiError> {
        if let Some(rest) = key_ref.strip_prefix("acs:kms:") {
            if !forms.arn {
                return Err(ApiError::key_not_found(format!(
                    "An ARN is not accepted here: {key_ref}"
                )));
            }
            let prefix = format!("{}:{}:", self.region, self.account_id);
            let resource = rest.strip_prefix(&prefix).ok_or_else(|| {
                ApiError::key_not_found(format!(
                    "The ARN names another region or account: {key_ref}"
                ))
            })?;
            if let Some(id) = resource.strip_prefix("key/") {
                return self.resolve_key(
                    id,
                    KeyRefForms {
                        alias: false,
                        arn: false,
                    },
                );
            }
            if resource.starts_with("alias/") {
                return self.resolve_key(
                    resource,
                    KeyRefForms {
                        alias: true,
                        arn: false,
                    },
                );
            }
            return Err(ApiError::key_not_found(format!("Malformed ARN: {key_ref}")));
        }
        if key_ref.starts_with("alias/") {
            if !forms.alias {
                return Err(ApiError::key_not_found(format!(
                    "An alias is not accepted here, pass the key id: {key_ref}"
                )));
            }
            return self
                .aliases
                .get(key_ref)
                .cloned()
                .ok_or_else(|| ApiError::alias_not_found(key_ref));
        }
        if self.keys.contains_key(key_ref) {
            Ok(key_ref.to_string())
        } else {
            Err(ApiError::key_not_found(format!("KeyId: {key_ref}")))
        }
    }

    pub fn key(&self, key_id: &str) -> &Key {
        &self.keys[key_id]
    }

    pub fn key_mut(&mut self, key_id: &str) -> &mut Key {
        self.keys.get_mut(key_id).expect("resolved key exists")
    }

    /// A new KMS 3.0 style key id: `key-` + 21 lower-case alphanumerics.
    pub fn new_key_id(&self) -> String {
        loop {
            let id = format!("key-hzz{}", random_alnum(18));
            if !self.keys.contains_key(&id) {
                return id;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_the_documented_shapes() {
        let s = State::new("cn-hangzhou".into(), "1234567890123456".into());
        let id = s.new_key_id();
        let tail = id.strip_prefix("key-").unwrap();
        assert_eq!(tail.len(), 21);
        assert!(tail
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
        let g = random_guid();
        assert_eq!(g.len(), 36);
        assert_eq!(g.matches('-').count(), 4);
        assert_ne!(random_guid(), g);
    }

    #[test]
    fn ec_material_signs_der_that_verifies_and_rejects_garbage() {
        let m = KeyMaterial::generate("EC_P256").unwrap();
        let digest = [7u8; 32];
        let sig = m.sign("ECDSA_SHA_256", &digest).unwrap();
        assert_eq!(sig[0], 0x30, "DER SEQUENCE");
        assert!(m.verify("ECDSA_SHA_256", &digest, &sig).unwrap());
        assert!(!m.verify("ECDSA_SHA_256", &[8u8; 32], &sig).unwrap());
        assert!(!m.verify("ECDSA_SHA_256", &digest, b"not der").unwrap());
        assert_eq!(
            m.sign("RSA_PSS_SHA_256", &digest).unwrap_err().code,
            "InvalidParameter"
        );
        assert_eq!(
            m.sign("ECDSA_SHA_256", &[0u8; 31]).unwrap_err().code,
            "InvalidParameter"
        );
        let pem = m.public_key_pem();
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));
        assert!(pem.ends_with("-----END PUBLIC KEY-----\n"));
    }

    #[test]
    fn unsupported_and_unknown_specs_are_invalid_parameters() {
        let e = KeyMaterial::generate("RSA_2048").err().unwrap();
        assert_eq!((e.status, e.code.as_str()), (400, "InvalidParameter"));
        assert!(e.message.contains("does not implement"));
        let e = KeyMaterial::generate("EC_P999").err().unwrap();
        assert!(e.message.contains("Unknown key spec"));
    }
}
