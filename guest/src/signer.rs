//! What each method does, shared by both exports (cosign's `wasi:cli/run` protocol and the
//! typed `signer` interface): key-version resolution, key creation, signing, verification,
//! and turning KMS errors into advice a person can act on.

use crate::credentials::{self, EnvLookup};
use crate::crypto::{HashAlg, PublicKey};
use crate::keyref::{self, KeyRef, KeySelector};
use crate::kms::{self, Client, KmsError};
use crate::transport::Transport;
use base64::Engine;
use std::fmt;
use std::io::Read;

pub const DEFAULT_ALGORITHM: &str = "EC_P256";

/// Algorithms `createKey` accepts, with the KMS key spec each creates. The KMS names come
/// first: they are what `supportedAlgorithms` lists.
const ALGORITHMS: &[(&str, &str)] = &[
    ("EC_P256", "EC_P256"),
    ("ecdsa-sha2-256-nistp256", "EC_P256"),
];

pub fn supported_algorithms() -> Vec<String> {
    vec![DEFAULT_ALGORITHM.to_string()]
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
    Kms(KmsError, String),
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

pub struct Signer<'a> {
    transport: &'a dyn Transport,
    env: EnvLookup<'a>,
}

/// A parsed reference with a client for its endpoint.
struct Session<'a> {
    key: KeyRef,
    client: Client<'a>,
}

impl<'a> Signer<'a> {
    pub fn new(transport: &'a dyn Transport, env: EnvLookup<'a>) -> Self {
        Signer { transport, env }
    }

    fn session(&self, key_ref: &str) -> Result<Session<'a>, SignerError> {
        let key = keyref::parse(key_ref).map_err(|e| SignerError::InvalidInput(e.to_string()))?;
        let creds = credentials::resolve(self.env).map_err(|e| SignerError::Credentials(e.0))?;
        let client = Client::new(self.transport, &key.endpoint, creds);
        Ok(Session { key, client })
    }

    /// Returns the key an alias names, creating key and alias when the alias is new, so
    /// running `cosign generate-key-pair` twice gives the same key.
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
        match s.newest_version(&alias) {
            Ok(version) => return s.public_key_of(&alias, &version),
            Err(SignerError::Kms(e, _)) if e.code == "Forbidden.AliasNotFound" => {}
            Err(e) => return Err(e),
        }
        let created: kms::KeyMetadataResponse = s
            .client
            .call(kms::create_key(spec, s.key.instance_id.as_deref()))
            .map_err(|e| s.advise(e))?;
        let key_id = created.key_metadata.key_id;
        if let Err(e) = s
            .client
            .call::<serde_json::Value>(kms::create_alias(&alias, &key_id))
        {
            // Never leave an orphan key behind: whatever went wrong, schedule ours for deletion.
            s.discard(&key_id);
            if e.code() == Some("AliasAlreadyExists") {
                // Another process won the race for this alias; use its key.
                let version = s.newest_version(&alias)?;
                return s.public_key_of(&alias, &version);
            }
            return Err(s.advise(e));
        }
        let version = match created.key_metadata.primary_key_version {
            v if !v.is_empty() => v,
            _ => s.newest_version(&key_id)?,
        };
        s.public_key_of(&key_id, &version)
    }

    pub fn public_key(&self, key_ref: &str, opts: &Options) -> Result<PublicKey, SignerError> {
        let s = self.session(key_ref)?;
        let version = s.version(opts)?;
        s.public_key_of(s.key.key_id_param(), &version)
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
        let version = s.version(opts)?;
        // EC_P256 signs the leftmost 256 bits of longer digests (FIPS 186-4 §6.4).
        let kms_digest = &digest[..digest.len().min(32)];
        let call = kms::asymmetric_sign(
            s.key.key_id_param(),
            &version,
            "ECDSA_SHA_256",
            base64::engine::general_purpose::STANDARD.encode(kms_digest),
        );
        let answer: kms::SignResponse = s.client.call(call).map_err(|e| s.advise(e))?;
        base64::engine::general_purpose::STANDARD
            .decode(answer.value.trim())
            .map_err(|_| {
                SignerError::Transport(
                    "KMS AsymmetricSign returned a signature that is not base64".into(),
                )
            })
    }

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
        let version = s.version(opts)?;
        let key = s.public_key_of(s.key.key_id_param(), &version)?;
        key.verify(hash, &digest, signature).map_err(|why| {
            SignerError::VerificationFailed(format!("invalid signature for {}: {why}", s.key))
        })
    }
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

impl Session<'_> {
    /// The version to use: options, then the reference, then the newest.
    fn version(&self, opts: &Options) -> Result<String, SignerError> {
        if let Some(v) = opts.key_version.as_deref().filter(|v| !v.is_empty()) {
            return Ok(v.to_string());
        }
        match self.key.version() {
            Some(v) => Ok(v.to_string()),
            None => self.newest_version(self.key.key_id_param()),
        }
    }

    /// The newest version by CreationDate, whatever order KMS lists them in.
    fn newest_version(&self, key_id: &str) -> Result<String, SignerError> {
        let mut newest: Option<kms::KeyVersion> = None;
        for page in 1.. {
            let resp: kms::ListKeyVersionsResponse = self
                .client
                .call(kms::list_key_versions(key_id, page))
                .map_err(|e| self.advise(e))?;
            let seen = page * kms::PAGE_SIZE;
            let total = resp.total_count;
            let versions = resp.versions();
            let last_page = versions.is_empty() || seen >= total || page >= 50;
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

    fn public_key_of(&self, key_id: &str, version: &str) -> Result<PublicKey, SignerError> {
        let answer: kms::PublicKeyResponse = self
            .client
            .call(kms::get_public_key(key_id, version))
            .map_err(|e| self.advise(e))?;
        PublicKey::from_pem(&answer.public_key).map_err(|why| {
            SignerError::InvalidInput(format!("key {key_id} version {version}: {why}"))
        })
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
            kms::Error::Kms(e) => e,
            other => return SignerError::Transport(other.to_string()),
        };
        let key = &self.key;
        let ep = &key.endpoint;
        let source = &self.client.credentials().source;
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
            code if code.starts_with("InvalidSecurityToken") || code == "MissingSecurityToken" => format!(
                "KMS rejected the STS security token read from {source}; it may have expired — \
                 get a fresh one"
            ),
            "InvalidTimeStamp.Expired" => "the local clock differs from Alibaba Cloud's by more \
                 than 15 minutes; synchronise the clock (e.g. with NTP)"
                .to_string(),
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
        SignerError::Kms(e, advice)
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
    fn sign_uses_the_newest_version_in_two_requests_and_verifies() {
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
        assert_eq!(t.actions(), ["ListKeyVersions", "AsymmetricSign"]);
        assert_eq!(params(&t.sent.borrow()[1])["KeyId"], "alias/cosign");
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
            [
                "ListKeyVersions",
                "CreateKey",
                "CreateAlias",
                "GetPublicKey"
            ]
        );
        assert_eq!(aliases.borrow()["alias/cosign"], "key-new");
        let again = s.create_key(REF, "EC_P256").unwrap();
        assert_eq!(first.to_pem(), again.to_pem());
        assert_eq!(t.actions().len(), 6, "{:?}", t.actions());
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
        let no_env = |_: &str| None;
        let s = Signer::new(&t, &no_env);
        let e = s.public_key(REF, &Options::default()).unwrap_err();
        assert!(matches!(e, SignerError::Credentials(_)));
        assert!(t.actions().is_empty());
    }
}
