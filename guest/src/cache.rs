//! Key metadata kept between runs, so the plugin runs of one cosign command (cosign 3.1's
//! `sign` is five `publicKey` and one `signMessage`) ask KMS once.
//!
//! What is kept: the real key id, the version id and the public key of a key reference. Never
//! a secret, a token, a signature or a digest. An entry is found by a hash of the endpoint, the
//! KMS instance, the key reference, an explicit version (if any) and who signs: the
//! AccessKeyId for a static key, the credential source (which names the role, and so the
//! account) for assumed roles and the ECS role, whose temporary ids change every run. Two
//! accounts or two instances never share an entry.
//!
//! The host only stores bytes ([`Store`], the WIT `cache` import); this module decides what an
//! entry holds and when it is stale: [`TTL_VAR`] seconds after it was written (default
//! [`DEFAULT_TTL`], sigstore's own providers keep public keys 300 s; `0` turns caching off,
//! nothing is read or written). Callers refresh an entry that proves wrong (a signature that does
//! not verify against it, a key KMS says is gone) once, with fresh metadata.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::time::{Duration, SystemTime};

/// Bytes by key: what the host grants.
pub trait Store {
    fn get(&self, key: &str) -> Option<Vec<u8>>;
    fn set(&self, key: &str, value: &[u8]);
    fn delete(&self, key: &str);
}

/// A host that grants no storage: every lookup misses.
pub struct NoStore;

impl Store for NoStore {
    fn get(&self, _: &str) -> Option<Vec<u8>> {
        None
    }
    fn set(&self, _: &str, _: &[u8]) {}
    fn delete(&self, _: &str) {}
}

pub const TTL_VAR: &str = alibabakms_contract::vars::CACHE_TTL;
pub use alibabakms_contract::{cache_ttl as ttl, DEFAULT_CACHE_TTL as DEFAULT_TTL};

/// What is kept for one key reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub key_id: String,
    pub version_id: String,
    pub public_key_pem: String,
    /// Unix seconds when it was written.
    pub stored_at: u64,
}

/// The entries of one reference and signer, as seen at `now`.
pub struct Cache<'a> {
    store: &'a dyn Store,
    ttl: Duration,
    key: String,
    now: SystemTime,
}

/// Who signs, for the entry's key: see the module comment.
pub fn identity(access_key_id: &str, temporary: bool, source: &str) -> String {
    if temporary && source.contains("role ") {
        format!("source:{source}")
    } else {
        format!("access-key:{access_key_id}")
    }
}

impl<'a> Cache<'a> {
    /// The entry slot of `reference` (its endpoint, instance, key and version) for `identity`.
    pub fn new(
        store: &'a dyn Store,
        ttl: Duration,
        reference: &[&str],
        identity: &str,
        now: SystemTime,
    ) -> Self {
        let mut h = Sha256::new();
        h.update(b"sigstore-kms-alibabakms cache v1");
        for part in reference.iter().chain([&identity]) {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part.as_bytes());
        }
        Cache {
            store,
            ttl,
            key: hex::encode(h.finalize()),
            now,
        }
    }

    fn unix(&self) -> u64 {
        self.now
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs()
    }

    /// The entry, if one was kept and is fresh (written less than the lifetime ago, and not
    /// in the future).
    pub fn get(&self) -> Option<Entry> {
        if self.ttl.is_zero() {
            return None;
        }
        let bytes = self.store.get(&self.key)?;
        let entry: Entry = serde_json::from_slice(&bytes).ok()?;
        let age = self.unix().checked_sub(entry.stored_at)?;
        let fresh = age < self.ttl.as_secs() && !entry.key_id.is_empty();
        crate::diag::line(|| {
            format!(
                "cache: key metadata {} ({age} s old)",
                if fresh { "used" } else { "stale" }
            )
        });
        fresh.then_some(entry)
    }

    pub fn put(&self, key_id: &str, version_id: &str, public_key_pem: &str) {
        if self.ttl.is_zero() {
            return;
        }
        let entry = Entry {
            key_id: key_id.into(),
            version_id: version_id.into(),
            public_key_pem: public_key_pem.into(),
            stored_at: self.unix(),
        };
        if let Ok(bytes) = serde_json::to_vec(&entry) {
            self.store.set(&self.key, &bytes);
        }
    }

    pub fn forget(&self) {
        if !self.ttl.is_zero() {
            crate::diag::line(|| "cache: key metadata dropped; asking KMS again".into());
            self.store.delete(&self.key);
        }
    }
}

#[cfg(test)]
pub mod testing {
    use std::cell::RefCell;
    use std::collections::HashMap;

    /// An in-memory store for unit tests.
    #[derive(Default)]
    pub struct MemoryStore(pub RefCell<HashMap<String, Vec<u8>>>);

    impl super::Store for MemoryStore {
        fn get(&self, key: &str) -> Option<Vec<u8>> {
            self.0.borrow().get(key).cloned()
        }
        fn set(&self, key: &str, value: &[u8]) {
            self.0.borrow_mut().insert(key.into(), value.to_vec());
        }
        fn delete(&self, key: &str) {
            self.0.borrow_mut().remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::MemoryStore;
    use super::*;

    #[test]
    fn entries_live_their_ttl_and_are_kept_apart_by_reference_and_identity() {
        let store = MemoryStore::default();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let at = |secs: u64, id: &str| {
            Cache::new(
                &store,
                DEFAULT_TTL,
                &["kms.cn-hangzhou.aliyuncs.com", "", "alias/a", ""],
                id,
                t0 + Duration::from_secs(secs),
            )
        };
        at(0, "access-key:A").put("key-1", "v-1", "PEM");
        assert_eq!(at(299, "access-key:A").get().unwrap().version_id, "v-1");
        assert!(at(300, "access-key:A").get().is_none(), "stale");
        assert!(at(10, "access-key:B").get().is_none(), "another account");
        at(0, "access-key:A").forget();
        assert!(at(1, "access-key:A").get().is_none());
        // TTL 0: nothing written.
        Cache::new(&store, Duration::ZERO, &["e"], "i", t0).put("k", "v", "p");
        assert!(store.0.borrow().is_empty());
    }

    #[test]
    fn ttl_values() {
        assert_eq!(ttl(None), Ok(DEFAULT_TTL));
        assert_eq!(ttl(Some("0")), Ok(Duration::ZERO));
        assert!(ttl(Some("-1")).unwrap_err().contains(TTL_VAR));
        assert!(ttl(Some("86401")).is_err());
    }

    #[test]
    fn identity_is_the_access_key_unless_a_role_was_assumed() {
        assert_eq!(
            identity("LTAI1", false, "environment (…)"),
            "access-key:LTAI1"
        );
        assert_eq!(
            identity("STS.x", true, "environment (…)"),
            "access-key:STS.x"
        );
        assert_eq!(
            identity("STS.y", true, "RRSA/OIDC role acs:ram::1:role/r via sts"),
            "source:RRSA/OIDC role acs:ram::1:role/r via sts"
        );
    }
}
