//! `createKey`: the key an alias names, created with its alias when new. Idempotent, safe
//! when processes race for one alias (the losers delete their keys), and never leaves an
//! orphaned key behind when naming it fails.

use super::algorithm::ALGORITHMS;
use super::{Session, Signer, SignerError};
use crate::crypto::PublicKey;
use crate::keyref::KeySelector;
use crate::kms::{self, KmsError};

impl<'a> Signer<'a> {
    /// Returns the key an alias names, creating key and alias when the alias is new, so
    /// running `cosign generate-key-pair` twice gives the same key. Safe when several
    /// processes race for the same new alias: the losers delete their keys and use the winner's.
    pub fn create_key(&self, key_ref: &str, algorithm: &str) -> Result<PublicKey, SignerError> {
        let spec = ALGORITHMS
            .iter()
            .find(|(name, _)| *name == algorithm)
            .map(|(_, spec)| *spec)
            .ok_or_else(|| {
                SignerError::InvalidInput(format!(
                    "algorithm {algorithm:?} is not supported; supported: {}",
                    ALGORITHMS
                        .iter()
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
        let parsed = crate::keyref::parse(key_ref).ok();
        let endpoint = parsed
            .as_ref()
            .map(|k| k.endpoint.as_str())
            .unwrap_or_default();
        if let Some(instance) = super::advice::dedicated_gateway(endpoint) {
            // Document 601559: CreateKey and CreateAlias go through the shared gateway only.
            return Err(SignerError::InvalidInput(format!(
                "{} is the dedicated gateway of KMS instance {instance}, which serves \
                 cryptographic operations only; create the key through the shared gateway of \
                 its region: alibabakms://kms.<region>.aliyuncs.com/{instance}/{}",
                endpoint,
                parsed
                    .as_ref()
                    .and_then(|k| k.alias())
                    .unwrap_or("alias/NAME")
            )));
        }
        let s = self.session(key_ref)?;
        let (key_id, version, key) = s.find_or_create(spec)?;
        // The next command (cosign's publicKey right after, a sign soon after) finds it kept.
        s.cache(&super::Options::default())
            .put(&key_id, &version, &key.to_pem());
        Ok(key)
    }
}

/// A key id, its version, and that version's public key.
type Found = (String, String, PublicKey);

impl<'a> Session<'a> {
    fn find_or_create(&self, spec: &str) -> Result<Found, SignerError> {
        let s = self;
        let alias = match &s.key.key {
            KeySelector::Alias(a) => a.clone(),
            KeySelector::Key { .. } => {
                return Err(SignerError::InvalidInput(format!(
                    "creating a key needs an alias reference such as alibabakms://{}//alias/NAME, \
                     so the key can be found again by name; {} names an existing key: export its \
                     public key with `cosign public-key --key` instead",
                    s.key.endpoint, s.key
                )))
            }
        };
        match s
            .client
            .call::<kms::KeyMetadataResponse>(kms::describe_key(&alias))
        {
            Ok(existing) => return s.existing_key(&alias, existing.key_metadata, spec),
            Err(e) if e.code() == Some("Forbidden.AliasNotFound") => {}
            Err(e) => return Err(s.advise(e)),
        }
        // KMS has no idempotency token on CreateKey: it is sent once, never retried blindly.
        let created: kms::KeyMetadataResponse = s
            .client
            .call(kms::create_key(spec, s.key.instance_id.as_deref()))
            .map_err(|e| match s.key.instance_id {
                // RSA_4096 keys live in a KMS instance (document 480161), and on KMS 3.0 every
                // asymmetric key does: its default key store holds symmetric keys only ("Key
                // types and specifications"). What KMS answers then is not documented; a
                // refused parameter without an instance gets this advice.
                None if e.code() == Some("InvalidParameter") => SignerError::InvalidInput(format!(
                    "{spec} keys live in a KMS instance here (RSA_4096 always, every \
                         asymmetric key on a KMS 3.0 account): name yours in the key URI, \
                         alibabakms://{}/kst-…/{} ({e})",
                    s.key.endpoint, alias
                )),
                _ => s.advise(e),
            })?;
        let key_id = created.key_metadata.key_id;
        let version = created.key_metadata.primary_key_version;
        // Naming the key and reading its public key do not depend on each other: when KMS
        // said which version is primary, both go out in one round trip.
        let name = kms::create_alias(&alias, &key_id);
        let (named, public) = if version.is_empty() {
            (s.client.call::<serde_json::Value>(name), None)
        } else {
            let (named, public) = s
                .client
                .call_pair::<serde_json::Value, kms::PublicKeyResponse>(
                    name,
                    kms::get_public_key(&key_id, &version),
                );
            (named, Some(public))
        };
        let named = match named {
            // The connection broke (or KMS failed) after CreateAlias went out: it may have
            // landed. Read the alias back rather than fail the command on a network blip.
            Err(e) if may_have_landed(&e) => s.alias_after_blip(&alias, &key_id, e),
            other => other.map(drop),
        };
        if let Err(e) = named {
            // Never leave an orphan key behind: whatever went wrong, schedule ours for deletion.
            s.discard(&key_id);
            if e.code() == Some("AliasAlreadyExists") {
                // Another process won the race for this alias; use its key.
                let winner: kms::KeyMetadataResponse = s
                    .client
                    .call(kms::describe_key(&alias))
                    .map_err(|e| s.advise(e))?;
                return s.existing_key(&alias, winner.key_metadata, spec);
            }
            return Err(s.advise(e));
        }
        let version = match public {
            Some(answer) => {
                let key = s.public_key_from(&key_id, &version, answer)?;
                return Ok((key_id, version, key));
            }
            None => s.newest_version(&key_id, None)?,
        };
        let key = s.public_key_of(&key_id, &version)?;
        Ok((key_id, version, key))
    }

    /// The key an existing alias names, if it is the kind that was asked for.
    pub(super) fn existing_key(
        &self,
        alias: &str,
        meta: kms::KeyMetadata,
        spec: &str,
    ) -> Result<Found, SignerError> {
        self.usable(&meta)?;
        if meta.key_spec != spec {
            return Err(SignerError::InvalidInput(format!(
                "{alias} already names key {} of spec {}, not {spec}; use that algorithm or \
                 choose another alias",
                meta.key_id, meta.key_spec
            )));
        }
        let version = self.newest_version(&meta.key_id, None)?;
        let key = self.public_key_of(&meta.key_id, &version)?;
        Ok((meta.key_id, version, key))
    }

    /// After a CreateAlias whose answer was lost: Ok when the alias names our key (it landed,
    /// or landed on a second try because it had not); the error to handle otherwise (an
    /// `AliasAlreadyExists` when another process's key holds it).
    pub(super) fn alias_after_blip(
        &self,
        alias: &str,
        key_id: &str,
        lost: kms::Error,
    ) -> Result<(), kms::Error> {
        crate::diag::line(|| format!("CreateAlias got no answer ({lost}); reading {alias} back"));
        match self
            .client
            .call::<kms::KeyMetadataResponse>(kms::describe_key(alias))
        {
            Ok(found) if found.key_metadata.key_id == key_id => Ok(()),
            // Another process's key holds it: the race was lost, as with AliasAlreadyExists.
            Ok(_) => Err(kms::Error::Service(KmsError {
                product: kms::API.product,
                action: "CreateAlias",
                http_status: 409,
                code: "AliasAlreadyExists".into(),
                message: format!("{alias} names another key"),
                request_id: String::new(),
                clock_skew_secs: None,
            })),
            Err(e) if e.code() == Some("Forbidden.AliasNotFound") => self
                .client
                .call::<serde_json::Value>(kms::create_alias(alias, key_id))
                .map(drop),
            Err(_) => Err(lost),
        }
    }

    /// Best effort: schedules a key we created but could not name for deletion.
    pub(super) fn discard(&self, key_id: &str) {
        match self
            .client
            .call::<serde_json::Value>(kms::schedule_key_deletion(key_id))
        {
            Ok(_) => eprintln!(
                "sigstore-kms-alibabakms: key {key_id} could not be given its alias and was \
                 scheduled for deletion (7-day window)"
            ),
            Err(e) => eprintln!(
                "sigstore-kms-alibabakms: key {key_id} could not be given its alias and could \
                 not be scheduled for deletion ({e}); delete it in the KMS console"
            ),
        }
    }
}

/// Whether a failed request may still have been carried out: no answer came (the connection
/// broke, or it timed out), or KMS failed on its side.
pub(super) fn may_have_landed(e: &kms::Error) -> bool {
    use crate::transport::TransportError;
    match e {
        kms::Error::Transport(
            TransportError::Broken { .. }
            | TransportError::Other { .. }
            | TransportError::Timeout { .. },
        ) => true,
        kms::Error::Service(k) => k.http_status >= 500,
        _ => false,
    }
}
