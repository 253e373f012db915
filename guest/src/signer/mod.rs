//! What each method does, shared by both exports (cosign's `wasi:cli/run` protocol and the
//! typed `signer` interface): signing (checked against the public key before cosign gets
//! it), verification, the public key, and the session behind each (key reference,
//! credentials, KMS client, metadata cache). Key creation, version lookup, algorithms and
//! advice on KMS errors each have a module of their own.

use crate::cache::{self, Cache};
use crate::credentials::{self, EnvLookup};
use crate::crypto::{HashAlg, PublicKey};
use crate::keyref::{self, KeyRef};
use crate::kms::{self, KmsError};
use crate::retry::Deadline;
use crate::rpc::Client;
use crate::transport::Transport;
use base64::Engine;
use std::fmt;
use std::io::Read;

mod advice;
mod algorithm;
mod create;
mod keys;

use algorithm::Kind;
pub use algorithm::{
    default_algorithm, supported_algorithms, DEFAULT_ALGORITHM, DEFAULT_ALGORITHM_VAR,
};

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

/// Why a method failed. Texts are the plugin's own advice; what came from elsewhere keeps
/// its type until an answer is written (cosign's `errorMessage`, the WIT error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignerError {
    /// The key reference, the message, the options or the key do not fit; says what to do.
    InvalidInput(String),
    Credentials(credentials::CredentialsError),
    /// KMS gave no answer, or one that could not be read.
    Transport(Box<kms::Error>),
    /// KMS refused; the second field is advice.
    Kms(Box<KmsError>, String),
    VerificationFailed(String),
}

impl fmt::Display for SignerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SignerError::InvalidInput(m) | SignerError::VerificationFailed(m) => f.write_str(m),
            SignerError::Credentials(e) => e.fmt(f),
            SignerError::Transport(e) => e.fmt(f),
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
    /// The KMS instance whose dedicated gateway the endpoint is: cryptographic operations
    /// only there, so no DescribeKey or ListKeyVersions ([`advice::dedicated_gateway`]).
    gateway: Option<String>,
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
        let gateway = advice::dedicated_gateway(&key.endpoint).map(str::to_string);
        if let (Some(gateway), Some(instance)) = (&gateway, &key.instance_id) {
            if gateway != instance {
                return Err(SignerError::InvalidInput(format!(
                    "{key} names KMS instance {instance}, but {} is the dedicated gateway of \
                     {gateway}; use the gateway of the key's instance, \
                     {instance}.cryptoservice.kms.aliyuncs.com",
                    key.endpoint
                )));
            }
        }
        let ttl =
            cache::ttl((self.env)(cache::TTL_VAR).as_deref()).map_err(SignerError::InvalidInput)?;
        let (env, transport, deadline) = (self.env, self.transport, self.deadline.clone());
        let creds = credentials::resolve(&credentials::Context::new(env, transport, deadline))
            .map_err(SignerError::Credentials)?;
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
                credentials::resolve(&cx).map_err(|e| e.to_string())
            }));
        Ok(Session {
            key,
            client,
            store: self.store,
            ttl,
            identity,
            gateway,
        })
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
        Ok(s.fresh_public_key(&cache, opts)?.key)
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
            match s.sign_with_kept(&entry, hash, &digest) {
                Ok(signature) => return Ok(signature),
                // Not when KMS is only busy: that is no reason to doubt the entry.
                Err(SignerError::Kms(e, _)) if e.http_status != 429 && e.http_status < 500 => {
                    cache.forget()
                }
                Err(SignerError::VerificationFailed(_)) => cache.forget(),
                Err(e) => return Err(e),
            }
        }
        if s.gateway.is_some() {
            // No DescribeKey at a dedicated gateway: the public key says which algorithm.
            let found = s.fresh_public_key(&cache, opts)?;
            return s.sign_with(&found, hash, &digest);
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
        let invalid = |why: &dyn fmt::Display| {
            SignerError::VerificationFailed(format!("invalid signature for {}: {why}", s.key))
        };
        if opts.remote_verification {
            let (key_id, version, kind) = if s.gateway.is_some() {
                let found = s.fresh_public_key(&s.cache(opts), opts)?;
                (found.key_id, found.version, Kind::of(&found.key))
            } else {
                let (meta, version) = s.describe_with_version(opts)?;
                let kind = s.usable(&meta)?;
                (meta.key_id, version, kind)
            };
            let (algorithm, kms_digest) = kind.algorithm(hash, &digest)?;
            let call = kms::asymmetric_verify(
                &key_id,
                &version,
                algorithm,
                b64(kms_digest),
                b64(signature),
            );
            let answer: kms::VerifyResponse = s.client.call(call).map_err(|e| s.advise(e))?;
            return match answer.value {
                true => Ok(()),
                false => Err(invalid(
                    &"KMS AsymmetricVerify answered that it does not match",
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
                Err(why) if s.explicit_version(opts).is_some() => return Err(invalid(&why)),
                Err(_) => cache.forget(),
            }
        }
        let found = s.fresh_public_key(&cache, opts)?;
        found
            .key
            .verify(hash, &digest, signature)
            .map_err(|why| invalid(&why))
    }
}

impl kms::SignResponse {
    /// The signature bytes of the answer.
    fn signature(&self) -> Result<Vec<u8>, SignerError> {
        base64::engine::general_purpose::STANDARD
            .decode(self.value.trim())
            .map_err(|_| {
                SignerError::Transport(Box::new(kms::Error::BadResponse {
                    product: kms::API.product,
                    action: "AsymmetricSign",
                    detail: "the signature is not base64".into(),
                }))
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

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn digest_of(message: Message<'_>, hash: HashAlg) -> Result<Vec<u8>, SignerError> {
    match message {
        Message::Digest(d) => {
            hash.check_digest(&d)
                .map_err(|e| SignerError::InvalidInput(e.to_string()))?;
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

    /// AsymmetricSign with kept metadata, checked against the kept public key.
    fn sign_with_kept(
        &self,
        entry: &cache::Entry,
        hash: HashAlg,
        digest: &[u8],
    ) -> Result<Vec<u8>, SignerError> {
        let key = PublicKey::from_pem(&entry.public_key_pem)
            .map_err(|why| SignerError::VerificationFailed(format!("kept public key: {why}")))?;
        let found = keys::VersionKey {
            key_id: entry.key_id.clone(),
            version: entry.version_id.clone(),
            key,
        };
        self.sign_with(&found, hash, digest)
    }

    /// AsymmetricSign with the algorithm `found`'s public key calls for, checked against it.
    fn sign_with(
        &self,
        found: &keys::VersionKey,
        hash: HashAlg,
        digest: &[u8],
    ) -> Result<Vec<u8>, SignerError> {
        let (algorithm, kms_digest) = Kind::of(&found.key).algorithm(hash, digest)?;
        let call = kms::asymmetric_sign(&found.key_id, &found.version, algorithm, b64(kms_digest));
        let answer: kms::SignResponse = self.client.call(call).map_err(|e| self.advise(e))?;
        let signature = answer.signature()?;
        check_signature(
            &found.key,
            &found.key_id,
            &found.version,
            hash,
            digest,
            &signature,
            &answer,
        )?;
        Ok(signature)
    }
}

#[cfg(test)]
mod tests;
