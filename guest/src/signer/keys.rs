//! Finding the key version to use and its public key: an explicit version, or the newest
//! by creation date over every page KMS lists, and the public key read and parsed.

use super::{Options, Session, SignerError};
use crate::cache::Cache;
use crate::crypto::PublicKey;
use crate::kms;

/// A key version and its public key, as KMS names them (an alias resolved to its key id).
pub(super) struct VersionKey {
    pub key_id: String,
    pub version: String,
    pub key: PublicKey,
}

impl<'a> Session<'a> {
    /// The public key from KMS (version lookup included), kept in `cache`.
    pub(super) fn fresh_public_key(
        &self,
        cache: &Cache<'_>,
        opts: &Options,
    ) -> Result<VersionKey, SignerError> {
        let version = self.version(opts)?;
        let answer = self
            .client
            .call::<kms::PublicKeyResponse>(kms::get_public_key(self.key.key_id_param(), &version));
        let real_id = answer
            .as_ref()
            .ok()
            .map(|a| a.key_id.clone())
            .filter(|id| !id.is_empty());
        let key = self.public_key_from(self.key.key_id_param(), &version, answer)?;
        // An alias is kept by the real key id it names, which AsymmetricSign takes as it is.
        let key_id = real_id.unwrap_or_else(|| self.key.key_id_param().to_string());
        cache.put(&key_id, &version, &key.to_pem());
        Ok(VersionKey {
            key_id,
            version,
            key,
        })
    }

    /// An explicit version: the options', else the reference's.
    pub(super) fn explicit_version(&self, opts: &Options) -> Option<String> {
        let from_opts = opts.key_version.as_deref().filter(|v| !v.is_empty());
        from_opts.or(self.key.version()).map(str::to_string)
    }

    /// The version to use: explicit, else the newest (which a dedicated gateway cannot
    /// tell: ListKeyVersions is key management).
    pub(super) fn version(&self, opts: &Options) -> Result<String, SignerError> {
        match (self.explicit_version(opts), &self.gateway) {
            (Some(v), _) => Ok(v),
            (None, Some(instance)) => Err(SignerError::InvalidInput(
                super::advice::name_the_version(&self.key, instance),
            )),
            (None, None) => self.newest_version(self.key.key_id_param(), None),
        }
    }

    /// The key's metadata and the version to use. Both requests need only the reference, so
    /// when the version must be looked up they go out together: one round trip.
    pub(super) fn describe_with_version(
        &self,
        opts: &Options,
    ) -> Result<(kms::KeyMetadata, String), SignerError> {
        let key_id = self.key.key_id_param();
        if let Some(v) = self.explicit_version(opts) {
            let meta: kms::KeyMetadataResponse = self
                .client
                .call(kms::describe_key(key_id))
                .map_err(|e| self.advise(e))?;
            return Ok((meta.key_metadata, v));
        }
        let (meta, versions) = self
            .client
            .call_pair::<kms::KeyMetadataResponse, kms::ListKeyVersionsResponse>(
                kms::describe_key(key_id),
                kms::list_key_versions(key_id, 1),
            );
        let meta = meta.map_err(|e| self.advise(e))?;
        let first = versions.map_err(|e| self.advise(e))?;
        // Later pages (more than 100 versions) are fetched by the real key id.
        let version = self.newest_version(&meta.key_metadata.key_id, Some(first))?;
        Ok((meta.key_metadata, version))
    }

    /// The newest version by CreationDate, whatever order KMS lists them in.
    pub(super) fn newest_version(
        &self,
        key_id: &str,
        mut first_page: Option<kms::ListKeyVersionsResponse>,
    ) -> Result<String, SignerError> {
        let mut newest: Option<kms::KeyVersion> = None;
        for page in 1u64.. {
            let resp = match first_page.take() {
                Some(p) => p,
                None => self
                    .client
                    .call(kms::list_key_versions(key_id, page))
                    .map_err(|e| self.advise(e))?,
            };
            let total = resp.total_count;
            let versions = resp.versions();
            // Bounded: KMS allows 50 versions per key; a misbehaving endpoint cannot loop us.
            let last_page = versions.is_empty() || page * kms::PAGE_SIZE >= total || page >= 10;
            for v in versions {
                if newest
                    .as_ref()
                    .is_none_or(|n| v.creation_date > n.creation_date)
                {
                    newest = Some(v);
                }
            }
            if last_page {
                break;
            }
        }
        newest.map(|v| v.key_version_id).ok_or_else(|| {
            SignerError::InvalidInput(format!(
                "KMS lists no versions for {key_id} at {}",
                self.key.endpoint
            ))
        })
    }

    pub(super) fn public_key_of(
        &self,
        key_id: &str,
        version: &str,
    ) -> Result<PublicKey, SignerError> {
        let answer = self.client.call(kms::get_public_key(key_id, version));
        self.public_key_from(key_id, version, answer)
    }

    /// The public key in KMS's answer to GetPublicKey for `key_id` `version`.
    pub(super) fn public_key_from(
        &self,
        key_id: &str,
        version: &str,
        answer: Result<kms::PublicKeyResponse, kms::Error>,
    ) -> Result<PublicKey, SignerError> {
        let answer = answer.map_err(|e| self.advise(e))?;
        PublicKey::from_pem(&answer.public_key).map_err(|why| {
            SignerError::InvalidInput(format!("key {key_id} version {version}: {why}"))
        })
    }
}
