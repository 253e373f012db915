//! Real key material for every key version: generation per key spec, signing, verification
//! and the public key PEM that `GetPublicKey` returns.

use p256::ecdsa::signature::hazmat::{PrehashVerifier, RandomizedPrehashSigner};
use p256::pkcs8::{EncodePublicKey, LineEnding};
use rand_core::OsRng;
use sha2::Sha256;

use crate::error::ApiError;
use crate::rsa_pool;
use crate::state::*;

/// The distinguishing identifier SM2 key objects are built with (GM/T 0009's default). It only
/// enters `Z(A)`, which KMS callers compute themselves: `SM2DSA` signs the given digest.
const SM2_DEFAULT_DISTID: &str = "1234567812345678";

/// The private half of one key version.
///
/// Everything here is real key material: RSA via the `rsa` crate, P-256, secp256k1 and SM2 via
/// RustCrypto's `p256`, `k256` and `sm2`. Signatures verify against the `GetPublicKey` PEM with
/// any standard library.
pub enum KeyMaterial {
    EcP256(p256::ecdsa::SigningKey),
    /// secp256k1 (`EC_P256K`).
    EcP256k(k256::ecdsa::SigningKey),
    /// SM2 (`EC_SM2`).
    Sm2(Box<sm2::dsa::SigningKey>),
    /// `RSA_2048` / `RSA_3072` / `RSA_4096`.
    Rsa(Box<rsa::RsaPrivateKey>),
}

impl KeyMaterial {
    /// InvalidParameter unless this emulator can make keys of `spec`; cheap, so actions check
    /// their other parameters before paying for [`KeyMaterial::generate`].
    pub fn check_spec(spec: &str) -> Result<(), ApiError> {
        if SUPPORTED_KEY_SPECS.contains(&spec) {
            Ok(())
        } else if KNOWN_KEY_SPECS.contains(&spec) {
            Err(ApiError::invalid_parameter(
                "KeySpec",
                format!(
                    "{spec} is a valid Alibaba KMS key spec but this emulator does not implement it (supported: {}).",
                    SUPPORTED_KEY_SPECS.join(", ")
                ),
            ))
        } else {
            Err(ApiError::invalid_parameter(
                "KeySpec",
                format!(
                    "Unknown key spec {spec:?}; Alibaba KMS key specs are {}.",
                    KNOWN_KEY_SPECS.join(", ")
                ),
            ))
        }
    }

    /// Fresh material for `spec`, or InvalidParameter for a spec this emulator lacks. Each call
    /// makes a new, distinct key (RSA keys may come from a pool made ahead, see
    /// [`crate::prewarm_rsa_keys`], but never twice).
    pub fn generate(spec: &str) -> Result<Self, ApiError> {
        Self::check_spec(spec)?;
        Ok(match spec {
            "EC_P256" => KeyMaterial::EcP256(p256::ecdsa::SigningKey::random(&mut OsRng)),
            "EC_P256K" => KeyMaterial::EcP256k(k256::ecdsa::SigningKey::random(&mut OsRng)),
            "EC_SM2" => {
                let secret = sm2::SecretKey::random(&mut OsRng);
                let key = sm2::dsa::SigningKey::new(SM2_DEFAULT_DISTID, &secret)
                    .expect("a random SM2 secret key makes a signing key");
                KeyMaterial::Sm2(Box::new(key))
            }
            "RSA_2048" => KeyMaterial::Rsa(Box::new(rsa_pool::take(2048))),
            "RSA_3072" => KeyMaterial::Rsa(Box::new(rsa_pool::take(3072))),
            "RSA_4096" => KeyMaterial::Rsa(Box::new(rsa_pool::take(4096))),
            other => unreachable!("check_spec accepted {other}"),
        })
    }

    /// Signing algorithms valid for this material (reference §2.10).
    pub fn algorithms(&self) -> &'static [&'static str] {
        match self {
            KeyMaterial::EcP256(_) | KeyMaterial::EcP256k(_) => &["ECDSA_SHA_256"],
            KeyMaterial::Sm2(_) => &["SM2DSA"],
            KeyMaterial::Rsa(_) => &["RSA_PSS_SHA_256", "RSA_PKCS1_SHA_256"],
        }
    }

    /// Length in bytes of the digest `algorithm` signs: SHA-256 for all of them, SM3 (also 32
    /// bytes, `SM3(Z(A) || M)`) for SM2DSA. Only called with a name from [`Self::algorithms`].
    fn digest_len(algorithm: &str) -> usize {
        match algorithm {
            "ECDSA_SHA_256" | "RSA_PSS_SHA_256" | "RSA_PKCS1_SHA_256" | "SM2DSA" => 32,
            other => unreachable!("no digest length for {other}"),
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

    /// `PUBLIC KEY` PEM (SubjectPublicKeyInfo), `\n` line breaks, trailing `\n`. EC keys are
    /// `id-ecPublicKey` with the curve's OID as parameter (prime256v1, secp256k1, sm2p256v1);
    /// RSA keys are `rsaEncryption` with NULL parameters, as KMS's (`MIIBIjANBgkqh...`).
    pub fn public_key_pem(&self) -> String {
        match self {
            KeyMaterial::EcP256(sk) => sk.verifying_key().to_public_key_pem(LineEnding::LF),
            KeyMaterial::EcP256k(sk) => sk.verifying_key().to_public_key_pem(LineEnding::LF),
            KeyMaterial::Sm2(sk) => {
                sm2::PublicKey::from(sk.verifying_key()).to_public_key_pem(LineEnding::LF)
            }
            KeyMaterial::Rsa(sk) => {
                let public: &rsa::RsaPublicKey = sk.as_ref().as_ref();
                public.to_public_key_pem(LineEnding::LF)
            }
        }
        .expect("public keys encode")
    }

    /// Signs a prehashed digest. ECDSA and SM2 signatures are DER `SEQUENCE{r, s}` with a random
    /// nonce, as KMS's are (so two signatures of one digest differ); RSA-PSS uses a random
    /// 32-byte salt; RSA PKCS#1 v1.5 is deterministic.
    pub fn sign(&self, algorithm: &str, digest: &[u8]) -> Result<Vec<u8>, ApiError> {
        self.check_algorithm(algorithm, digest)?;
        let failed = |e: &dyn std::fmt::Display| ApiError::invalid_parameter("Digest", e);
        match self {
            KeyMaterial::EcP256(sk) => {
                let sig: p256::ecdsa::Signature = sk
                    .sign_prehash_with_rng(&mut OsRng, digest)
                    .map_err(|e| failed(&e))?;
                Ok(sig.to_der().as_bytes().to_vec())
            }
            KeyMaterial::EcP256k(sk) => {
                let sig: k256::ecdsa::Signature = sk
                    .sign_prehash_with_rng(&mut OsRng, digest)
                    .map_err(|e| failed(&e))?;
                Ok(sig.to_der().as_bytes().to_vec())
            }
            KeyMaterial::Sm2(sk) => {
                let sig: sm2::dsa::Signature = sk
                    .sign_prehash_with_rng(&mut OsRng, digest)
                    .map_err(|e| failed(&e))?;
                Ok(sm2_to_der(&sig))
            }
            KeyMaterial::Rsa(sk) => {
                let sig = if algorithm == "RSA_PSS_SHA_256" {
                    sk.sign_with_rng(&mut OsRng, rsa::Pss::new_with_salt::<Sha256>(32), digest)
                } else {
                    sk.sign_with_rng(&mut OsRng, rsa::Pkcs1v15Sign::new::<Sha256>(), digest)
                };
                sig.map_err(|e| failed(&e))
            }
        }
    }

    /// Whether `signature` is valid over `digest`; a malformed signature is `false`, not an
    /// error, as in KMS. ECDSA accepts both `s` and `n - s` (as OpenSSL does; k256 alone would
    /// refuse a high `s`). RSA-PSS wants the 32-byte salt KMS signs with.
    pub fn verify(
        &self,
        algorithm: &str,
        digest: &[u8],
        signature: &[u8],
    ) -> Result<bool, ApiError> {
        self.check_algorithm(algorithm, digest)?;
        Ok(match self {
            KeyMaterial::EcP256(sk) => p256::ecdsa::Signature::from_der(signature)
                .map(|sig| sk.verifying_key().verify_prehash(digest, &sig).is_ok())
                .unwrap_or(false),
            KeyMaterial::EcP256k(sk) => k256::ecdsa::Signature::from_der(signature)
                .map(|sig| {
                    let sig = sig.normalize_s().unwrap_or(sig);
                    sk.verifying_key().verify_prehash(digest, &sig).is_ok()
                })
                .unwrap_or(false),
            KeyMaterial::Sm2(sk) => sm2_from_der(signature)
                .map(|sig| sk.verifying_key().verify_prehash(digest, &sig).is_ok())
                .unwrap_or(false),
            KeyMaterial::Rsa(sk) => {
                let public: &rsa::RsaPublicKey = sk.as_ref().as_ref();
                let result = if algorithm == "RSA_PSS_SHA_256" {
                    public.verify(rsa::Pss::new_with_salt::<Sha256>(32), digest, signature)
                } else {
                    public.verify(rsa::Pkcs1v15Sign::new::<Sha256>(), digest, signature)
                };
                result.is_ok()
            }
        })
    }
}

/// DER `SEQUENCE{INTEGER r, INTEGER s}` of an SM2 signature. The ASN.1 is curve-independent, so
/// p256's encoder does it: SM2's order is below P-256's, so every valid SM2 `(r, s)` is in range.
pub(crate) fn sm2_to_der(sig: &sm2::dsa::Signature) -> Vec<u8> {
    let as_p256 = p256::ecdsa::Signature::from_slice(&sig.to_bytes())
        .expect("SM2 scalars are below P-256's order");
    as_p256.to_der().as_bytes().to_vec()
}

/// The inverse of [`sm2_to_der`]; `None` for anything that is not a DER signature in SM2's range.
pub(crate) fn sm2_from_der(der: &[u8]) -> Option<sm2::dsa::Signature> {
    let bytes = p256::ecdsa::Signature::from_der(der).ok()?.to_bytes();
    sm2::dsa::Signature::from_slice(&bytes).ok()
}
