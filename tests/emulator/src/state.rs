//! Everything the emulated account holds: keys with their versions and real key material,
//! aliases, KMS instances and the credentials the gateway accepts. One struct, kept behind
//! one Mutex by the server, so every action sees a consistent account.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::SystemTime;

use base64::Engine as _;
use rand_core::{OsRng, RngCore};
use sha2::{Digest as _, Sha256};

use crate::acs3_verify::Credential;
use crate::error::ApiError;
pub use crate::material::KeyMaterial;

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
pub const SUPPORTED_KEY_SPECS: [&str; 6] = [
    "RSA_2048", "RSA_3072", "RSA_4096", "EC_P256", "EC_P256K", "EC_SM2",
];

/// Specs KMS offers only for keys in a KMS instance (KMS 3.0 software keys; help.aliyun.com
/// document 480161, "Key management types and key specifications"), not in the shared key
/// store.
pub const INSTANCE_ONLY_KEY_SPECS: [&str; 1] = ["RSA_4096"];

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

    /// The 409 a call gets when the key is not Enabled: `AsymmetricSign`, `AsymmetricVerify`,
    /// `GetPublicKey` and `CreateKeyVersion`. The reference (§2.13) lists `Rejected.Disabled`
    /// and `Rejected.PendingDeletion` as key-state conflicts without a per-action table; the
    /// emulator takes the strict reading that every call that uses a key's material is
    /// refused, `GetPublicKey` included, while metadata calls (DescribeKey, ListKeyVersions,
    /// DescribeKeyVersion) answer in every state.
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

/// The order `ListKeyVersions` returns a key's versions in. KMS does not document one (reference
/// §2.6: the 2021 demo lists the newest first), so clients must not depend on it; switch this
/// to test that they do not.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum VersionOrder {
    /// By `CreationDate`, oldest first (ties keep creation order).
    #[default]
    OldestFirst,
    /// By `CreationDate`, newest first (ties: the later-created first).
    NewestFirst,
    /// A random order fixed per emulator: the same on every call, so paging stays consistent,
    /// with each new version landing at a random place.
    Shuffled,
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

    /// The newest version by `CreationDate` (the last created among equal dates).
    pub fn newest_version(&self) -> Option<&KeyVersion> {
        self.versions.iter().max_by_key(|v| v.creation_date)
    }

    /// The versions in `order`; `seed` fixes the [`VersionOrder::Shuffled`] permutation.
    pub fn versions_in(&self, order: VersionOrder, seed: &[u8]) -> Vec<&KeyVersion> {
        // Indices keep creation order among equal dates.
        let mut v: Vec<(usize, &KeyVersion)> = self.versions.iter().enumerate().collect();
        match order {
            VersionOrder::OldestFirst => v.sort_by_key(|(i, v)| (v.creation_date, *i)),
            VersionOrder::NewestFirst => {
                v.sort_by_key(|(i, v)| std::cmp::Reverse((v.creation_date, *i)))
            }
            VersionOrder::Shuffled => v.sort_by_cached_key(|(_, v)| {
                Sha256::new()
                    .chain_update(seed)
                    .chain_update(v.id.as_bytes())
                    .finalize()
            }),
        }
        v.into_iter().map(|(_, v)| v).collect()
    }

    /// Whether the key's material is asymmetric (the only kind CreateKeyVersion accepts).
    pub fn is_asymmetric(&self) -> bool {
        self.spec.starts_with("RSA_") || self.spec.starts_with("EC_")
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
    /// KMS 3.0: asymmetric keys only in a KMS instance ([`crate::EmulatorConfig::kms3_key_stores`]).
    pub kms3_key_stores: bool,
    pub credentials: HashMap<String, Credential>,
    /// Roles STS `AssumeRoleWithOIDC` may assume ([`crate::sts`]).
    pub oidc_roles: Vec<crate::sts::OidcRole>,
    /// Roles STS `AssumeRole` may assume.
    pub ram_roles: BTreeSet<String>,
    /// Role ARN -> the `ExternalId` its trust policy requires.
    pub ram_role_external_ids: std::collections::BTreeMap<String, String>,
    /// `MaxSessionDuration` of roles raised above the default 3600 seconds.
    pub max_session_durations: std::collections::BTreeMap<String, u64>,
    /// Aliases per region (DOC-LIMITS default: 300).
    pub max_aliases: usize,
    /// How ListKeyVersions orders versions.
    pub version_order: VersionOrder,
    /// Fixes the [`VersionOrder::Shuffled`] permutation for this emulator.
    pub shuffle_seed: [u8; 16],
    /// Queued by [`crate::Emulator::expire_next_issued_credentials`]: the next STS credentials
    /// issued (by STS or the metadata service), one entry each, expire after this many
    /// accepted KMS requests.
    pub next_issued_uses: std::collections::VecDeque<u32>,
    /// Issued STS credentials with a use budget: AccessKeyId -> accepted requests left.
    pub uses_left: HashMap<String, u32>,
    /// The CloudSSO sign-in [`crate::signin`] accepts, if served.
    pub cloud_sso: Option<crate::signin::CloudSso>,
    /// The OAuth access token [`crate::signin`] exchanges, if served.
    pub oauth_token: Option<String>,
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
            kms3_key_stores: false,
            credentials: HashMap::new(),
            oidc_roles: Vec::new(),
            ram_roles: BTreeSet::new(),
            ram_role_external_ids: Default::default(),
            max_session_durations: Default::default(),
            max_aliases: 300,
            version_order: VersionOrder::default(),
            shuffle_seed: {
                let mut seed = [0u8; 16];
                OsRng.fill_bytes(&mut seed);
                seed
            },
            next_issued_uses: std::collections::VecDeque::new(),
            uses_left: HashMap::new(),
            cloud_sso: None,
            oauth_token: None,
        }
    }

    /// Registers STS credentials just issued (by STS, the metadata service or a sign-in
    /// service), applying a
    /// pending [`crate::Emulator::expire_next_issued_credentials`]: with a budget of 0 they
    /// are expired from the start, else after that many accepted KMS requests.
    pub fn register_issued(&mut self, mut credential: Credential, now: SystemTime) {
        match self.next_issued_uses.pop_front() {
            Some(0) => credential.expiration = Some(now),
            Some(n) => {
                self.uses_left.insert(credential.access_key_id.clone(), n);
            }
            None => {}
        }
        self.credentials
            .insert(credential.access_key_id.clone(), credential);
    }

    /// Counts one accepted KMS request signed by `access_key_id`; a credential whose use
    /// budget runs out expires now (later requests get `InvalidSecurityToken.Expired`).
    pub fn count_use(&mut self, access_key_id: &str, now: SystemTime) {
        let Some(left) = self.uses_left.get_mut(access_key_id) else {
            return;
        };
        *left = left.saturating_sub(1);
        if *left == 0 {
            self.uses_left.remove(access_key_id);
            if let Some(c) = self.credentials.get_mut(access_key_id) {
                c.expiration = Some(now);
            }
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

    /// Adds a version to a key (the seeding counterpart of CreateKeyVersion, without its
    /// 7-day spacing rule so tests can build histories).
    pub fn add_key_version(
        &mut self,
        key_ref: &str,
        creation_date: SystemTime,
    ) -> Result<String, ApiError> {
        let forms = KeyRefForms {
            alias: true,
            arn: true,
        };
        let key_id = self.resolve_key(key_ref, forms)?;
        let key = self.key_mut(&key_id);
        let material = KeyMaterial::generate(&key.spec)?;
        let id = random_guid();
        key.versions.push(KeyVersion {
            id: id.clone(),
            creation_date,
            material,
        });
        Ok(id)
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
    use crate::material::{sm2_from_der, sm2_to_der};

    #[test]
    fn issued_credentials_expire_after_their_queued_use_budget() {
        let mut s = State::new("cn-hangzhou".into(), "1234567890123456".into());
        let now = SystemTime::now();
        let later = now + std::time::Duration::from_secs(3600);
        let expired = |s: &State, id: &str| {
            s.credentials[id]
                .expiration
                .is_some_and(|e| e <= now + std::time::Duration::from_secs(1))
        };
        s.next_issued_uses.extend([0, 2]);
        s.register_issued(Credential::sts("A", "s", "t", later), now);
        s.register_issued(Credential::sts("B", "s", "t", later), now);
        s.register_issued(Credential::sts("C", "s", "t", later), now);
        assert!(expired(&s, "A"), "a budget of 0: expired from the start");
        assert!(!expired(&s, "B"));
        s.count_use("B", now);
        assert!(!expired(&s, "B"), "one use left");
        s.count_use("B", now);
        assert!(expired(&s, "B"), "budget spent");
        s.count_use("C", now);
        assert!(!expired(&s, "C"), "only queued issues are affected");
    }

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
        for spec in ["Aliyun_AES_256", "HMAC_SHA256"] {
            let e = KeyMaterial::generate(spec).err().unwrap();
            assert_eq!((e.status, e.code.as_str()), (400, "InvalidParameter"));
            assert!(e.message.contains("does not implement"), "{spec}");
        }
        let e = KeyMaterial::generate("EC_P999").err().unwrap();
        assert!(e.message.contains("Unknown key spec"));
    }

    fn sign_verify_flip(m: &KeyMaterial, algorithm: &str) -> Vec<u8> {
        let digest = [0x5au8; 32];
        let sig = m.sign(algorithm, &digest).unwrap();
        assert!(m.verify(algorithm, &digest, &sig).unwrap(), "{algorithm}");
        let mut bad = sig.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(!m.verify(algorithm, &digest, &bad).unwrap(), "{algorithm}");
        assert!(!m.verify(algorithm, &[0x5bu8; 32], &sig).unwrap());
        assert!(!m.verify(algorithm, &digest, b"garbage").unwrap());
        assert_eq!(
            m.sign(algorithm, &[0u8; 48]).unwrap_err().code,
            "InvalidParameter",
            "{algorithm} takes 32-byte digests"
        );
        sig
    }

    #[test]
    fn secp256k1_and_sm2_material_sign_der_that_verifies() {
        let k = KeyMaterial::generate("EC_P256K").unwrap();
        assert_eq!(k.algorithms(), ["ECDSA_SHA_256"]);
        let sig = sign_verify_flip(&k, "ECDSA_SHA_256");
        assert_eq!(sig[0], 0x30);
        // The same signature with s replaced by n - s is just as valid (OpenSSL accepts it).
        let parsed = k256::ecdsa::Signature::from_der(&sig).unwrap();
        let (r, s) = parsed.split_scalars();
        let high = k256::ecdsa::Signature::from_scalars(r, -*s).unwrap();
        assert!(high.normalize_s().is_some(), "s is the high one");
        assert!(k
            .verify("ECDSA_SHA_256", &[0x5au8; 32], high.to_der().as_bytes())
            .unwrap());
        assert_eq!(
            k.sign("RSA_PKCS1_SHA_256", &[0u8; 32]).unwrap_err().code,
            "InvalidParameter"
        );

        let m = KeyMaterial::generate("EC_SM2").unwrap();
        assert_eq!(m.algorithms(), ["SM2DSA"]);
        let sig = sign_verify_flip(&m, "SM2DSA");
        let parsed = sm2_from_der(&sig).unwrap();
        assert_eq!(sm2_to_der(&parsed), sig);
        assert_eq!(
            m.sign("ECDSA_SHA_256", &[0u8; 32]).unwrap_err().code,
            "InvalidParameter"
        );
    }

    #[test]
    fn rsa_material_signs_pkcs1_and_pss() {
        let m = KeyMaterial::generate("RSA_2048").unwrap();
        assert_eq!(m.algorithms(), ["RSA_PSS_SHA_256", "RSA_PKCS1_SHA_256"]);
        let pkcs1 = sign_verify_flip(&m, "RSA_PKCS1_SHA_256");
        assert_eq!(pkcs1.len(), 256);
        assert_eq!(m.sign("RSA_PKCS1_SHA_256", &[0x5au8; 32]).unwrap(), pkcs1);
        let pss = sign_verify_flip(&m, "RSA_PSS_SHA_256");
        assert_ne!(m.sign("RSA_PSS_SHA_256", &[0x5au8; 32]).unwrap(), pss);
        // One scheme's signature is not the other's.
        assert!(!m.verify("RSA_PSS_SHA_256", &[0x5au8; 32], &pkcs1).unwrap());
        assert!(!m.verify("RSA_PKCS1_SHA_256", &[0x5au8; 32], &pss).unwrap());
        assert_eq!(
            m.sign("ECDSA_SHA_256", &[0u8; 32]).unwrap_err().code,
            "InvalidParameter"
        );
    }

    #[test]
    fn version_orders() {
        let mut key = Key {
            id: "key-x".into(),
            arn: String::new(),
            spec: "EC_P256".into(),
            usage: USAGE_SIGN_VERIFY.into(),
            description: String::new(),
            protection_level: "SOFTWARE".into(),
            origin: "Aliyun_KMS".into(),
            creator: String::new(),
            dkms_instance_id: None,
            creation_date: SystemTime::UNIX_EPOCH,
            state: KeyState::Enabled,
            delete_date: None,
            primary_version: String::new(),
            versions: Vec::new(),
        };
        let t0 = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        for (id, secs) in [("b", 20), ("a", 10), ("c", 30), ("c2", 30)] {
            key.versions.push(KeyVersion {
                id: id.into(),
                creation_date: t0 + std::time::Duration::from_secs(secs),
                material: KeyMaterial::generate("EC_P256").unwrap(),
            });
        }
        let ids = |order, seed: &[u8]| -> Vec<String> {
            key.versions_in(order, seed)
                .iter()
                .map(|v| v.id.clone())
                .collect()
        };
        assert_eq!(ids(VersionOrder::OldestFirst, b""), ["a", "b", "c", "c2"]);
        assert_eq!(ids(VersionOrder::NewestFirst, b""), ["c2", "c", "b", "a"]);
        assert_eq!(key.newest_version().unwrap().id, "c2");
        // Shuffled: stable for one seed, and some seed gives an order that is neither sorted one.
        assert_eq!(
            ids(VersionOrder::Shuffled, b"s1"),
            ids(VersionOrder::Shuffled, b"s1")
        );
        let orders: BTreeSet<Vec<String>> = (0u8..40)
            .map(|i| ids(VersionOrder::Shuffled, &[i]))
            .collect();
        assert!(orders.len() > 5, "{orders:?}");
    }
}
