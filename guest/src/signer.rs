//! What each method does, shared by both exports (cosign's `wasi:cli/run` protocol and the
//! typed `signer` interface): key-version resolution, key creation, signing, verification,
//! and turning KMS errors into advice a person can act on.

use crate::cache::{self, Cache};
use crate::credentials::{self, EnvLookup};
use crate::crypto::{check_rsa_hash, HashAlg, PublicKey};
use crate::keyref::{self, KeyRef, KeySelector};
use crate::kms::{self, KmsError, Refreshed};
use crate::retry::Deadline;
use crate::rpc::Client;
use crate::transport::Transport;
use base64::Engine;
use std::fmt;
use std::io::Read;

pub const DEFAULT_ALGORITHM: &str = "EC_P256";

/// Sets what `defaultAlgorithm` answers, so `cosign generate-key-pair --kms` (which always
/// creates the default) can make an RSA key.
pub const DEFAULT_ALGORITHM_VAR: &str = alibabakms_contract::vars::DEFAULT_ALGORITHM;

/// Algorithms `createKey` accepts, with the KMS key spec each creates: the KMS names (what
/// `supportedAlgorithms` lists) and sigstore's names for the same keys.
const ALGORITHMS: &[(&str, &str)] = &[
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
enum Kind {
    EcP256,
    Rsa,
}

impl Kind {
    /// How a public key signs.
    fn of(key: &PublicKey) -> Kind {
        match key {
            PublicKey::P256(_) => Kind::EcP256,
            PublicKey::Rsa(_) => Kind::Rsa,
        }
    }

    /// The KMS algorithm and the digest KMS is given for a digest computed with `hash`.
    fn algorithm(self, hash: HashAlg, digest: &[u8]) -> Result<(&'static str, &[u8]), SignerError> {
        match self {
            // ECDSA uses the leftmost 256 bits of a longer digest (FIPS 186-4 §6.4): signing
            // them with ECDSA_SHA_256 gives a standard ECDSA-P256 signature over that hash.
            Kind::EcP256 => Ok(("ECDSA_SHA_256", &digest[..digest.len().min(32)])),
            Kind::Rsa => {
                check_rsa_hash(hash).map_err(SignerError::InvalidInput)?;
                Ok(("RSA_PKCS1_SHA_256", digest))
            }
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// An explicit key version; overrides the one in the key reference.
    pub key_version: Option<String>,
    pub remote_verification: bool,
}

/// What is signed or verified.
pub enum Message<'a> {
    /// The whole message; hashed as it is read.
    Stream(&'a mut dyn Read),
    Digest(Vec<u8>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignerError {
    InvalidInput(String),
    Credentials(String),
    Transport(String),
    /// KMS refused; the second field is advice.
    Kms(Box<KmsError>, String),
    VerificationFailed(String),
}

impl fmt::Display for SignerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SignerError::InvalidInput(m)
            | SignerError::Credentials(m)
            | SignerError::Transport(m)
            | SignerError::VerificationFailed(m) => f.write_str(m),
            SignerError::Kms(e, advice) if advice.is_empty() => e.fmt(f),
            SignerError::Kms(e, advice) => write!(f, "{advice} ({e})"),
        }
    }
}

#[derive(Clone)]
pub struct Signer<'a> {
    transport: &'a dyn Transport,
    env: EnvLookup<'a>,
    store: &'a dyn cache::Store,
    /// What every request of a method must meet.
    deadline: Deadline,
}

/// A parsed reference with a client for its endpoint.
struct Session<'a> {
    key: KeyRef,
    client: Client<'a>,
    store: &'a dyn cache::Store,
    ttl: std::time::Duration,
    /// Who signs, as cache entries are keyed ([`cache::identity`]).
    identity: String,
}

impl<'a> Signer<'a> {
    pub fn new(transport: &'a dyn Transport, env: EnvLookup<'a>) -> Self {
        let limit = env(crate::retry::TIMEOUT_VAR);
        Signer {
            transport,
            env,
            store: &cache::NoStore,
            deadline: Deadline::default_limit(std::time::SystemTime::now(), limit.as_deref()),
        }
    }

    /// Bounds every request by `deadline` (cosign's, or the plugin's own limit).
    pub fn with_deadline(mut self, deadline: Deadline) -> Self {
        self.deadline = deadline;
        self
    }

    /// Keeps key metadata between runs in `store` (see [`cache`]).
    pub fn with_store(mut self, store: &'a dyn cache::Store) -> Self {
        self.store = store;
        self
    }

    /// What `defaultAlgorithm` answers here (see [`default_algorithm`]).
    pub fn default_algorithm(&self) -> Result<&'static str, String> {
        default_algorithm((self.env)(DEFAULT_ALGORITHM_VAR).as_deref())
    }

    fn session(&self, key_ref: &str) -> Result<Session<'a>, SignerError> {
        let key = keyref::parse(key_ref).map_err(|e| SignerError::InvalidInput(e.to_string()))?;
        let ttl =
            cache::ttl((self.env)(cache::TTL_VAR).as_deref()).map_err(SignerError::InvalidInput)?;
        let (env, transport, deadline) = (self.env, self.transport, self.deadline.clone());
        let creds = credentials::resolve(&credentials::Context::new(env, transport, deadline))
            .map_err(|e| SignerError::Credentials(e.0))?;
        let identity = cache::identity(
            &creds.access_key_id,
            creds.security_token.is_some(),
            &creds.source,
        );
        // An expired STS token (a long run, a token that rotated meanwhile) is refreshed once
        // by running the credential chain again.
        let deadline = self.deadline.clone();
        let client = kms::client(self.transport, &key.endpoint, creds, deadline.clone())
            .with_refresh(Box::new(move || {
                let cx = credentials::Context::new(env, transport, deadline.clone());
                credentials::resolve(&cx).map_err(|e| e.0)
            }));
        Ok(Session {
            key,
            client,
            store: self.store,
            ttl,
            identity,
        })
    }

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
        let s = self.session(key_ref)?;
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
                // KMS keeps RSA_4096 for keys in a KMS instance (document 480161).
                None if spec == "RSA_4096" && e.code() == Some("InvalidParameter") => {
                    SignerError::InvalidInput(format!(
                        "RSA_4096 keys live in a KMS instance: name yours in the key URI, \
                         alibabakms://{}/kst-…/{} ({e})",
                        s.key.endpoint, alias
                    ))
                }
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
        match public {
            Some(answer) => s.public_key_from(&key_id, &version, answer),
            None => {
                let version = s.newest_version(&key_id, None)?;
                s.public_key_of(&key_id, &version)
            }
        }
    }

    pub fn public_key(&self, key_ref: &str, opts: &Options) -> Result<PublicKey, SignerError> {
        let s = self.session(key_ref)?;
        let cache = s.cache(opts);
        if let Some(key) = cache
            .get()
            .and_then(|e| PublicKey::from_pem(&e.public_key_pem).ok())
        {
            return Ok(key);
        }
        s.fresh_public_key(&cache, opts)
    }

    pub fn sign(
        &self,
        key_ref: &str,
        message: Message<'_>,
        hash: HashAlg,
        opts: &Options,
    ) -> Result<Vec<u8>, SignerError> {
        let s = self.session(key_ref)?;
        let digest = digest_of(message, hash)?;
        // With the key's metadata kept from an earlier run: AsymmetricSign alone, checked
        // against the kept public key. A key KMS says is gone, or a signature that does not
        // verify against the kept key, drops the entry and goes the whole way once.
        let cache = s.cache(opts);
        if let Some(entry) = cache.get() {
            match s.sign_with(&entry, hash, &digest) {
                Ok(signature) => return Ok(signature),
                // Not when KMS is only busy: that is no reason to doubt the entry.
                Err(SignerError::Kms(e, _)) if e.http_status != 429 && e.http_status < 500 => {
                    cache.forget()
                }
                Err(SignerError::VerificationFailed(_)) => cache.forget(),
                Err(e) => return Err(e),
            }
        }
        let (meta, version) = s.describe_with_version(opts)?;
        let (algorithm, kms_digest) = s.usable(&meta)?.algorithm(hash, &digest)?;
        // The public key comes with the signature, in the same round trip: a signature is
        // checked against it before cosign gets it, so a broken or hostile endpoint cannot
        // make cosign publish one that verifies against nothing.
        let (answer, public) = s
            .client
            .call_pair::<kms::SignResponse, kms::PublicKeyResponse>(
                kms::asymmetric_sign(&meta.key_id, &version, algorithm, b64(kms_digest)),
                kms::get_public_key(&meta.key_id, &version),
            );
        let answer = answer.map_err(|e| s.advise(e))?;
        let signature = answer.signature()?;
        let key = s.public_key_from(&meta.key_id, &version, public)?;
        check_signature(
            &key,
            &meta.key_id,
            &version,
            hash,
            &digest,
            &signature,
            &answer,
        )?;
        cache.put(&meta.key_id, &version, &key.to_pem());
        Ok(signature)
    }

    /// Checks a signature locally with the key's public key (what `cosign verify --key
    /// cosign.pub` does too), or with AsymmetricVerify when `remote_verification` is set.
    pub fn verify(
        &self,
        key_ref: &str,
        message: Message<'_>,
        hash: HashAlg,
        signature: &[u8],
        opts: &Options,
    ) -> Result<(), SignerError> {
        let s = self.session(key_ref)?;
        let digest = digest_of(message, hash)?;
        let invalid = |why: String| {
            SignerError::VerificationFailed(format!("invalid signature for {}: {why}", s.key))
        };
        if opts.remote_verification {
            let (meta, version) = s.describe_with_version(opts)?;
            let (algorithm, kms_digest) = s.usable(&meta)?.algorithm(hash, &digest)?;
            let call = kms::asymmetric_verify(
                &meta.key_id,
                &version,
                algorithm,
                b64(kms_digest),
                b64(signature),
            );
            let answer: kms::VerifyResponse = s.client.call(call).map_err(|e| s.advise(e))?;
            return match answer.value {
                true => Ok(()),
                false => Err(invalid(
                    "KMS AsymmetricVerify answered that it does not match".into(),
                )),
            };
        }
        // A kept public key that does not verify the signature may be an old one (the key
        // rotated): unless the version is pinned, ask KMS again once.
        let cache = s.cache(opts);
        if let Some(kept) = cache
            .get()
            .and_then(|e| PublicKey::from_pem(&e.public_key_pem).ok())
        {
            match kept.verify(hash, &digest, signature) {
                Ok(()) => return Ok(()),
                Err(why) if s.explicit_version(opts).is_some() => return Err(invalid(why)),
                Err(_) => cache.forget(),
            }
        }
        let key = s.fresh_public_key(&cache, opts)?;
        key.verify(hash, &digest, signature).map_err(invalid)
    }
}

impl kms::SignResponse {
    /// The signature bytes of the answer.
    fn signature(&self) -> Result<Vec<u8>, SignerError> {
        base64::engine::general_purpose::STANDARD
            .decode(self.value.trim())
            .map_err(|_| {
                SignerError::Transport(
                    "KMS AsymmetricSign returned a signature that is not base64".into(),
                )
            })
    }
}

/// KMS's signature must verify against the key's public key before cosign gets it.
fn check_signature(
    key: &PublicKey,
    key_id: &str,
    version: &str,
    hash: HashAlg,
    digest: &[u8],
    signature: &[u8],
    answer: &kms::SignResponse,
) -> Result<(), SignerError> {
    key.verify(hash, digest, signature).map_err(|why| {
        SignerError::VerificationFailed(format!(
            "KMS returned a signature that does not verify against the public key of key \
             {key_id} version {version} ({why}; AsymmetricSign request id {}); it was not \
             handed to cosign. Try again; if it persists, report the request id to Alibaba \
             Cloud",
            crate::untrusted::server_text(&answer.request_id, crate::untrusted::REQUEST_ID_CHARS)
        ))
    })
}

/// Whether a failed request may still have been carried out: no answer came (the connection
/// broke, or it timed out), or KMS failed on its side.
fn may_have_landed(e: &kms::Error) -> bool {
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

/// `about 20 min`, `3 h 2 min`, `40 s`: how far off a clock is, readable.
fn skew_text(secs: u64) -> String {
    match secs {
        s if s >= 3600 => format!("{} h {} min", s / 3600, (s % 3600 + 30) / 60),
        s if s >= 60 => format!("about {} min", (s + 30) / 60),
        s => format!("{s} s"),
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn digest_of(message: Message<'_>, hash: HashAlg) -> Result<Vec<u8>, SignerError> {
    match message {
        Message::Digest(d) => {
            hash.check_digest(&d).map_err(SignerError::InvalidInput)?;
            Ok(d)
        }
        Message::Stream(r) => hash
            .digest_reader(r)
            .map_err(|e| SignerError::InvalidInput(format!("reading the message from stdin: {e}"))),
    }
}

impl<'a> Session<'a> {
    /// The cache slot of this reference, for the version `opts` pin (or the newest).
    fn cache(&self, opts: &Options) -> Cache<'a> {
        let version = self.explicit_version(opts).unwrap_or_default();
        let instance = self.key.instance_id.as_deref().unwrap_or_default();
        Cache::new(
            self.store,
            self.ttl,
            &[
                &self.key.endpoint,
                instance,
                self.key.key_id_param(),
                &version,
            ],
            &self.identity,
            std::time::SystemTime::now(),
        )
    }

    /// The public key from KMS (version lookup included), kept in `cache`.
    fn fresh_public_key(
        &self,
        cache: &Cache<'_>,
        opts: &Options,
    ) -> Result<PublicKey, SignerError> {
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
        Ok(key)
    }

    /// AsymmetricSign with kept metadata, checked against the kept public key.
    fn sign_with(
        &self,
        entry: &cache::Entry,
        hash: HashAlg,
        digest: &[u8],
    ) -> Result<Vec<u8>, SignerError> {
        let key = PublicKey::from_pem(&entry.public_key_pem)
            .map_err(|why| SignerError::VerificationFailed(format!("kept public key: {why}")))?;
        let (algorithm, kms_digest) = Kind::of(&key).algorithm(hash, digest)?;
        let call =
            kms::asymmetric_sign(&entry.key_id, &entry.version_id, algorithm, b64(kms_digest));
        let answer: kms::SignResponse = self.client.call(call).map_err(|e| self.advise(e))?;
        let signature = answer.signature()?;
        check_signature(
            &key,
            &entry.key_id,
            &entry.version_id,
            hash,
            digest,
            &signature,
            &answer,
        )?;
        Ok(signature)
    }

    /// An explicit version: the options', else the reference's.
    fn explicit_version(&self, opts: &Options) -> Option<String> {
        let from_opts = opts.key_version.as_deref().filter(|v| !v.is_empty());
        from_opts.or(self.key.version()).map(str::to_string)
    }

    /// The version to use: explicit, else the newest.
    fn version(&self, opts: &Options) -> Result<String, SignerError> {
        match self.explicit_version(opts) {
            Some(v) => Ok(v),
            None => self.newest_version(self.key.key_id_param(), None),
        }
    }

    /// The key's metadata and the version to use. Both requests need only the reference, so
    /// when the version must be looked up they go out together: one round trip.
    fn describe_with_version(
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
    fn newest_version(
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

    /// Checks that a key can sign for cosign: asymmetric SIGN/VERIFY, enabled, a spec cosign
    /// can verify.
    fn usable(&self, meta: &kms::KeyMetadata) -> Result<Kind, SignerError> {
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

    /// The key an existing alias names, if it is the kind that was asked for.
    fn existing_key(
        &self,
        alias: &str,
        meta: kms::KeyMetadata,
        spec: &str,
    ) -> Result<PublicKey, SignerError> {
        self.usable(&meta)?;
        if meta.key_spec != spec {
            return Err(SignerError::InvalidInput(format!(
                "{alias} already names key {} of spec {}, not {spec}; use that algorithm or \
                 choose another alias",
                meta.key_id, meta.key_spec
            )));
        }
        let version = self.newest_version(&meta.key_id, None)?;
        self.public_key_of(&meta.key_id, &version)
    }

    fn public_key_of(&self, key_id: &str, version: &str) -> Result<PublicKey, SignerError> {
        let answer = self.client.call(kms::get_public_key(key_id, version));
        self.public_key_from(key_id, version, answer)
    }

    /// The public key in KMS's answer to GetPublicKey for `key_id` `version`.
    fn public_key_from(
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

    /// After a CreateAlias whose answer was lost: Ok when the alias names our key (it landed,
    /// or landed on a second try because it had not); the error to handle otherwise (an
    /// `AliasAlreadyExists` when another process's key holds it).
    fn alias_after_blip(
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
    fn discard(&self, key_id: &str) {
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

    /// Turns a KMS error into advice for this reference.
    fn advise(&self, e: kms::Error) -> SignerError {
        let e = match e {
            kms::Error::Service(e) => e,
            other => return SignerError::Transport(other.to_string()),
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
        } else {
            advice
        };
        SignerError::Kms(Box::new(e), advice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::mock::{json, MockTransport};
    use crate::transport::HttpRequest;
    use p256::ecdsa::signature::hazmat::PrehashSigner;
    use p256::ecdsa::{DerSignature, SigningKey};
    use p256::pkcs8::{EncodePublicKey, LineEnding};
    use serde_json::json as j;
    use sha2::Digest;
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::rc::Rc;

    const REF: &str = "kms.cn-hangzhou.aliyuncs.com//alias/cosign";

    fn env(k: &str) -> Option<String> {
        match k {
            "ALIBABA_CLOUD_ACCESS_KEY_ID" => Some("LTAItest".into()),
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET" => Some("secret".into()),
            _ => None,
        }
    }

    fn params(r: &HttpRequest) -> HashMap<String, String> {
        let q = r.path_and_query.trim_start_matches("/?");
        q.split('&')
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| {
                (
                    k.to_string(),
                    v.replace("%2F", "/")
                        .replace("%3D", "=")
                        .replace("%2B", "+"),
                )
            })
            .collect()
    }

    fn action(r: &HttpRequest) -> String {
        r.headers
            .iter()
            .find(|(k, _)| k == "x-acs-action")
            .unwrap()
            .1
            .clone()
    }

    /// A tiny in-memory KMS for unit tests (the strict one is the emulator in tests/).
    fn fake_kms(aliases: Rc<RefCell<HashMap<String, String>>>) -> MockTransport {
        let sk = SigningKey::from_slice(&[9u8; 32]).unwrap();
        MockTransport::new(move |r| {
            let p = params(r);
            let key_of = |id: &str| {
                aliases
                    .borrow()
                    .get(id)
                    .cloned()
                    .or_else(|| (!id.starts_with("alias/")).then(|| id.to_string()))
            };
            match action(r).as_str() {
                "ListKeyVersions" => match key_of(&p["KeyId"]) {
                    Some(k) => json(
                        200,
                        j!({"TotalCount": 3, "PageNumber": 1, "PageSize": 100, "KeyVersions": {"KeyVersion": [
                        {"KeyId": k, "KeyVersionId": "v-old", "CreationDate": "2024-01-01T00:00:00Z"},
                        {"KeyId": k, "KeyVersionId": "v-new", "CreationDate": "2025-06-01T00:00:00Z"},
                        {"KeyId": k, "KeyVersionId": "v-mid", "CreationDate": "2024-06-01T00:00:00Z"}]}}),
                    ),
                    None => json(
                        404,
                        j!({"Code": "Forbidden.AliasNotFound", "Message": "The specified Alias is not found.", "RequestId": "r"}),
                    ),
                },
                "DescribeKey" => match key_of(&p["KeyId"]) {
                    Some(k) => json(
                        200,
                        j!({"KeyMetadata": {"KeyId": k, "KeySpec": "EC_P256", "KeyUsage": "SIGN/VERIFY", "KeyState": "Enabled"}}),
                    ),
                    None => json(
                        404,
                        j!({"Code": "Forbidden.AliasNotFound", "Message": "The specified Alias is not found.", "RequestId": "r"}),
                    ),
                },
                "GetPublicKey" => json(
                    200,
                    j!({"PublicKey": sk.verifying_key().to_public_key_pem(LineEnding::LF).unwrap(), "KeyVersionId": p["KeyVersionId"]}),
                ),
                "AsymmetricSign" => {
                    assert_eq!(p["KeyVersionId"], "v-new");
                    let digest = base64::engine::general_purpose::STANDARD
                        .decode(&p["Digest"])
                        .unwrap();
                    assert_eq!(digest.len(), 32);
                    let sig: DerSignature = sk.sign_prehash(&digest).unwrap();
                    json(
                        200,
                        j!({"Value": base64::engine::general_purpose::STANDARD.encode(sig.as_bytes())}),
                    )
                }
                "AsymmetricVerify" => {
                    let digest = base64::engine::general_purpose::STANDARD
                        .decode(&p["Digest"])
                        .unwrap();
                    let sig = base64::engine::general_purpose::STANDARD
                        .decode(&p["Value"])
                        .unwrap();
                    let ok = p256::ecdsa::Signature::from_der(&sig)
                        .map(|sig| {
                            p256::ecdsa::signature::hazmat::PrehashVerifier::verify_prehash(
                                sk.verifying_key(),
                                &digest,
                                &sig,
                            )
                            .is_ok()
                        })
                        .unwrap_or(false);
                    json(200, j!({"Value": ok}))
                }
                "CreateKey" => json(
                    200,
                    j!({"KeyMetadata": {"KeyId": "key-new", "PrimaryKeyVersion": "v-1"}}),
                ),
                "CreateAlias" => {
                    aliases
                        .borrow_mut()
                        .insert(p["AliasName"].clone(), p["KeyId"].clone());
                    json(200, j!({"RequestId": "r"}))
                }
                other => panic!("unexpected action {other}"),
            }
        })
    }

    #[test]
    fn sign_uses_the_newest_version_in_two_round_trips_and_checks_the_signature() {
        let aliases = Rc::new(RefCell::new(HashMap::from([(
            "alias/cosign".to_string(),
            "key-1".to_string(),
        )])));
        let t = fake_kms(aliases);
        let s = Signer::new(&t, &env);
        let msg = b"hello world".to_vec();
        let sig = s
            .sign(
                REF,
                Message::Stream(&mut &msg[..]),
                HashAlg::Sha256,
                &Options::default(),
            )
            .unwrap();
        assert_eq!(
            t.actions(),
            [
                "DescribeKey",
                "ListKeyVersions",
                "AsymmetricSign",
                "GetPublicKey"
            ]
        );
        assert_eq!(
            *t.round_trips.borrow(),
            2,
            "DescribeKey and ListKeyVersions go together"
        );
        assert_eq!(params(&t.sent.borrow()[2])["KeyId"], "key-1");
        s.verify(
            REF,
            Message::Stream(&mut &msg[..]),
            HashAlg::Sha256,
            &sig,
            &Options::default(),
        )
        .unwrap();
        let e = s.verify(
            REF,
            Message::Stream(&mut &b"hellO world"[..]),
            HashAlg::Sha256,
            &sig,
            &Options::default(),
        );
        assert!(
            matches!(e, Err(SignerError::VerificationFailed(_))),
            "{e:?}"
        );
    }

    #[test]
    fn remote_verification_sends_digest_and_signature_in_their_fields_and_reads_the_answer() {
        let aliases = Rc::new(RefCell::new(HashMap::from([(
            "alias/cosign".to_string(),
            "key-1".to_string(),
        )])));
        let t = fake_kms(aliases);
        let s = Signer::new(&t, &env);
        let remote = Options {
            remote_verification: true,
            ..Options::default()
        };
        let digest = sha2::Sha256::digest(b"m").to_vec();
        let sig = s
            .sign(
                REF,
                Message::Digest(digest.clone()),
                HashAlg::Sha256,
                &remote,
            )
            .unwrap();
        s.verify(
            REF,
            Message::Digest(digest.clone()),
            HashAlg::Sha256,
            &sig,
            &remote,
        )
        .unwrap();
        let sent = t.sent.borrow().last().cloned().unwrap();
        assert_eq!(action(&sent), "AsymmetricVerify");
        assert_eq!(
            params(&sent)["Digest"],
            base64::engine::general_purpose::STANDARD.encode(&digest)
        );
        drop(sent);
        let other = sha2::Sha256::digest(b"n").to_vec();
        let e = s
            .verify(REF, Message::Digest(other), HashAlg::Sha256, &sig, &remote)
            .unwrap_err();
        assert!(
            matches!(e, SignerError::VerificationFailed(ref m) if m.contains("AsymmetricVerify")),
            "{e}"
        );
    }

    #[test]
    fn the_newest_version_is_found_on_any_page() {
        let t = MockTransport::new(|r| {
            let p = params(r);
            match action(r).as_str() {
                "ListKeyVersions" => {
                    let page: u64 = p["PageNumber"].parse().unwrap();
                    // 150 versions, 100 per page; the newest is on page 2.
                    let versions: Vec<_> = (0..if page == 1 { 100 } else { 50 })
                        .map(|i| {
                            let n = (page - 1) * 100 + i;
                            let date = if n == 120 { "2030-01-01T00:00:00Z".to_string() } else { format!("2024-01-01T00:{:02}:{:02}Z", n / 60, n % 60) };
                            j!({"KeyId": "key-1", "KeyVersionId": format!("v-{n}"), "CreationDate": date})
                        })
                        .collect();
                    json(
                        200,
                        j!({"TotalCount": 150, "PageNumber": page, "PageSize": 100, "KeyVersions": {"KeyVersion": versions}}),
                    )
                }
                "GetPublicKey" => {
                    assert_eq!(p["KeyVersionId"], "v-120");
                    let sk = SigningKey::from_slice(&[9u8; 32]).unwrap();
                    json(
                        200,
                        j!({"PublicKey": sk.verifying_key().to_public_key_pem(LineEnding::LF).unwrap()}),
                    )
                }
                other => panic!("unexpected {other}"),
            }
        });
        let s = Signer::new(&t, &env);
        s.public_key("kms.cn-hangzhou.aliyuncs.com//key-1", &Options::default())
            .unwrap();
        assert_eq!(
            t.actions(),
            ["ListKeyVersions", "ListKeyVersions", "GetPublicKey"]
        );
    }

    #[test]
    fn a_wrong_digest_length_is_refused_before_any_request() {
        let t = fake_kms(Rc::default());
        let s = Signer::new(&t, &env);
        let e = s
            .sign(
                REF,
                Message::Digest(vec![0; 10]),
                HashAlg::Sha256,
                &Options::default(),
            )
            .unwrap_err();
        assert!(
            matches!(e, SignerError::InvalidInput(ref m) if m.contains("10 bytes")),
            "{e}"
        );
        assert!(t.actions().is_empty());
    }

    #[test]
    fn sha512_digests_sign_and_verify_on_p256() {
        let aliases = Rc::new(RefCell::new(HashMap::from([(
            "alias/cosign".to_string(),
            "key-1".to_string(),
        )])));
        let t = fake_kms(aliases);
        let s = Signer::new(&t, &env);
        let digest = sha2::Sha512::digest(b"blob").to_vec();
        let sig = s
            .sign(
                REF,
                Message::Digest(digest.clone()),
                HashAlg::Sha512,
                &Options::default(),
            )
            .unwrap();
        s.verify(
            REF,
            Message::Digest(digest),
            HashAlg::Sha512,
            &sig,
            &Options::default(),
        )
        .unwrap();
    }

    #[test]
    fn create_key_is_idempotent_and_needs_at_most_four_requests() {
        let aliases = Rc::new(RefCell::new(HashMap::new()));
        let t = fake_kms(aliases.clone());
        let s = Signer::new(&t, &env);
        let first = s.create_key(REF, "EC_P256").unwrap();
        assert_eq!(
            t.actions(),
            ["DescribeKey", "CreateKey", "CreateAlias", "GetPublicKey"]
        );
        // The alias and the public key of the primary version go out together.
        assert_eq!(*t.round_trips.borrow(), 3);
        assert_eq!(aliases.borrow()["alias/cosign"], "key-new");
        let again = s.create_key(REF, "EC_P256").unwrap();
        assert_eq!(first.to_pem(), again.to_pem());
        assert_eq!(t.actions().len(), 7, "{:?}", t.actions());
    }

    #[test]
    fn a_new_key_without_a_primary_version_has_its_versions_listed() {
        // Whether CreateKey names the primary version of an asymmetric key is undocumented.
        let aliases = Rc::new(RefCell::new(HashMap::new()));
        let kms = fake_kms(aliases.clone());
        let t = MockTransport::new(move |r| match action(r).as_str() {
            "CreateKey" => json(200, j!({"KeyMetadata": {"KeyId": "key-new"}})),
            _ => kms.send(r.clone()),
        });
        let created = Signer::new(&t, &env).create_key(REF, "EC_P256").unwrap();
        assert_eq!(
            t.actions(),
            [
                "DescribeKey",
                "CreateKey",
                "CreateAlias",
                "ListKeyVersions",
                "GetPublicKey"
            ]
        );
        assert_eq!(params(&t.sent.borrow()[4])["KeyVersionId"], "v-new");
        assert_eq!(aliases.borrow()["alias/cosign"], "key-new");
        let again = Signer::new(&t, &env)
            .public_key(REF, &Options::default())
            .unwrap();
        assert_eq!(created.to_pem(), again.to_pem());
    }

    #[test]
    fn unsupported_algorithms_are_refused_before_any_request() {
        let t = fake_kms(Rc::default());
        let s = Signer::new(&t, &env);
        let e = s.create_key(REF, "any-algorithm").unwrap_err().to_string();
        assert!(e.contains("any-algorithm") && e.contains("EC_P256"), "{e}");
        assert!(t.actions().is_empty());
    }

    #[test]
    fn missing_alias_advice_says_how_to_create_it() {
        let t = fake_kms(Rc::default());
        let s = Signer::new(&t, &env);
        let e = s
            .public_key(REF, &Options::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("alias/cosign does not exist") && e.contains("cosign generate-key-pair"),
            "{e}"
        );
        assert!(e.contains("Forbidden.AliasNotFound"), "{e}");
    }

    #[test]
    fn explicit_versions_skip_the_lookup() {
        let t = fake_kms(Rc::default());
        let s = Signer::new(&t, &env);
        s.public_key(
            "kms.cn-hangzhou.aliyuncs.com//key-1/versions/v-3",
            &Options::default(),
        )
        .unwrap();
        assert_eq!(t.actions(), ["GetPublicKey"]);
        let opts = Options {
            key_version: Some("v-9".into()),
            ..Options::default()
        };
        s.public_key("kms.cn-hangzhou.aliyuncs.com//key-1", &opts)
            .unwrap();
        assert_eq!(params(&t.sent.borrow()[1])["KeyVersionId"], "v-9");
    }

    #[test]
    fn no_credentials_means_no_request() {
        let t = fake_kms(Rc::default());
        let no_env = |n: &str| (n == "ALIBABA_CLOUD_ECS_METADATA_DISABLED").then(|| "true".into());
        let s = Signer::new(&t, &no_env);
        let e = s.public_key(REF, &Options::default()).unwrap_err();
        assert!(matches!(e, SignerError::Credentials(_)));
        assert!(t.actions().is_empty());
    }
}
