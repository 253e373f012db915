//! Digests, public keys and local signature checks.
//!
//! Signatures must verify with the public key alone (`cosign verify --key cosign.pub`), so the
//! same rules are applied here that an offline verifier applies: ECDSA over the digest of the
//! hash the caller names, ASN.1 DER signatures, PEM `PUBLIC KEY` (SubjectPublicKeyInfo).

use p256::ecdsa::signature::hazmat::PrehashVerifier;
use p256::pkcs8::{DecodePublicKey, EncodePublicKey, LineEnding};
use rsa::traits::PublicKeyParts;
use sha2::Digest;
use std::fmt;
use std::io::Read;

/// Why a digest, key or signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CryptoError {
    /// `hashFunc` 0.
    NoHash,
    /// A Go `crypto.Hash` number other than SHA-256/384/512.
    UnsupportedHash(u64),
    DigestLength {
        hash: HashAlg,
        got: usize,
    },
    /// RSA keys sign SHA-256 digests only.
    RsaHash(HashAlg),
    RsaBits(usize),
    /// A key spec cosign cannot verify with (`EC_P256K (secp256k1)`, `EC_SM2`).
    UnsupportedKey(&'static str),
    NotAPublicKey,
    NotDer,
    /// The signature does not verify.
    Mismatch(HashAlg),
}

impl fmt::Display for CryptoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CryptoError::NoHash => {
                write!(f, "no hash function was given (hashFunc 0); use SHA-256")
            }
            CryptoError::UnsupportedHash(n) => write!(
                f,
                "hash function {} is not supported; use SHA-256, SHA-384 or SHA-512",
                go_hash_name(*n)
            ),
            CryptoError::DigestLength { hash, got } => write!(
                f,
                "the digest is {got} bytes, but a {} digest is {} bytes",
                hash.name(),
                hash.digest_len()
            ),
            CryptoError::RsaHash(hash) => write!(
                f,
                "RSA keys in KMS sign SHA-256 digests only (RSA_PKCS1_SHA_256), not {}; use \
                 SHA-256 or an EC_P256 key",
                hash.name()
            ),
            CryptoError::RsaBits(bits) => write!(
                f,
                "the RSA key has {bits} bits; cosign keys in KMS are RSA_2048, RSA_3072 or \
                 RSA_4096"
            ),
            CryptoError::UnsupportedKey(spec) => write!(
                f,
                "the key is {spec}, which is not supported by cosign; use an EC_P256 or RSA key"
            ),
            CryptoError::NotAPublicKey => write!(
                f,
                "KMS returned a public key that is neither a P-256 nor an RSA PEM \
                 SubjectPublicKeyInfo"
            ),
            CryptoError::NotDer => {
                write!(f, "the signature is not an ASN.1 DER ECDSA signature")
            }
            CryptoError::Mismatch(hash) => write!(
                f,
                "the signature does not match this key and the {} digest of the message",
                hash.name()
            ),
        }
    }
}

/// A hash cosign may name, from Go's `crypto.Hash` numbering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashAlg {
    Sha256,
    Sha384,
    Sha512,
}

impl HashAlg {
    /// Maps Go's `crypto.Hash` integer (SHA256=5, SHA384=6, SHA512=7).
    pub fn from_go(n: u64) -> Result<HashAlg, CryptoError> {
        match n {
            5 => Ok(HashAlg::Sha256),
            6 => Ok(HashAlg::Sha384),
            7 => Ok(HashAlg::Sha512),
            0 => Err(CryptoError::NoHash),
            other => Err(CryptoError::UnsupportedHash(other)),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            HashAlg::Sha256 => "SHA-256",
            HashAlg::Sha384 => "SHA-384",
            HashAlg::Sha512 => "SHA-512",
        }
    }

    pub fn digest_len(self) -> usize {
        match self {
            HashAlg::Sha256 => 32,
            HashAlg::Sha384 => 48,
            HashAlg::Sha512 => 64,
        }
    }

    /// Checks a caller-supplied digest before any request goes out.
    pub fn check_digest(self, digest: &[u8]) -> Result<(), CryptoError> {
        if digest.len() != self.digest_len() {
            return Err(CryptoError::DigestLength {
                hash: self,
                got: digest.len(),
            });
        }
        Ok(())
    }

    /// Hashes everything `reader` yields, in fixed-size chunks: memory does not grow with the
    /// message (cosign sign-blob may pass gigabytes on stdin).
    pub fn digest_reader(self, reader: &mut dyn Read) -> std::io::Result<Vec<u8>> {
        match self {
            HashAlg::Sha256 => stream::<sha2::Sha256>(reader),
            HashAlg::Sha384 => stream::<sha2::Sha384>(reader),
            HashAlg::Sha512 => stream::<sha2::Sha512>(reader),
        }
    }
}

fn stream<D: Digest>(reader: &mut dyn Read) -> std::io::Result<Vec<u8>> {
    // Small first: most messages are cosign's payloads of a few hundred bytes, and each page
    // of a zeroed buffer is touched (a page fault) before any byte is read. A message that
    // fills it is a big one: then chunks as large as the host's read-ahead.
    const FIRST: usize = 16 * 1024;
    const LARGE: usize = 256 * 1024;
    let mut hasher = D::new();
    let mut buf = vec![0u8; FIRST];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return Ok(hasher.finalize().to_vec()),
            Ok(n) => {
                hasher.update(&buf[..n]);
                if n == buf.len() && buf.len() < LARGE {
                    buf.resize(LARGE, 0);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

fn go_hash_name(n: u64) -> String {
    let name = match n {
        1 => "MD4",
        2 => "MD5",
        3 => "SHA-1",
        4 => "SHA-224",
        8 => "MD5+SHA1",
        9 => "RIPEMD-160",
        10 => "SHA3-224",
        11 => "SHA3-256",
        12 => "SHA3-384",
        13 => "SHA3-512",
        14 => "SHA-512/224",
        15 => "SHA-512/256",
        16 => "BLAKE2s-256",
        17 => "BLAKE2b-256",
        18 => "BLAKE2b-384",
        19 => "BLAKE2b-512",
        _ => return format!("#{n}"),
    };
    format!("{name} (#{n})")
}

/// A public key the plugin can verify with.
#[derive(Debug, Clone)]
pub enum PublicKey {
    P256(p256::ecdsa::VerifyingKey),
    /// RSA_2048 or RSA_3072, used with PKCS#1 v1.5 and SHA-256 (what cosign verifies).
    Rsa(rsa::RsaPublicKey),
}

impl PublicKey {
    /// Parses a PEM `PUBLIC KEY` as KMS returns it.
    pub fn from_pem(pem: &str) -> Result<PublicKey, CryptoError> {
        if let Ok(k) = p256::PublicKey::from_public_key_pem(pem.trim()) {
            return Ok(PublicKey::P256(k.into()));
        }
        match rsa::RsaPublicKey::from_public_key_pem(pem.trim()) {
            Ok(k) if matches!(k.size() * 8, 2048 | 3072 | 4096) => Ok(PublicKey::Rsa(k)),
            Ok(k) => Err(CryptoError::RsaBits(k.size() * 8)),
            Err(_) => Err(describe_unsupported_key(pem)),
        }
    }

    /// The KMS key spec of this key, for messages.
    pub fn spec(&self) -> String {
        match self {
            PublicKey::P256(_) => "EC_P256".into(),
            PublicKey::Rsa(k) => format!("RSA_{}", k.size() * 8),
        }
    }

    /// A canonical PEM (LF line endings), re-encoded from the parsed key so that what cosign
    /// writes to cosign.pub is always well-formed.
    pub fn to_pem(&self) -> String {
        let pem = match self {
            PublicKey::P256(k) => k.to_public_key_pem(LineEnding::LF),
            PublicKey::Rsa(k) => k.to_public_key_pem(LineEnding::LF),
        };
        pem.expect("a parsed key encodes")
    }

    /// Digest sent to KMS for a signature of a message hashed with `hash`. ECDSA over P-256
    /// uses the leftmost 256 bits of a longer digest (FIPS 186-4 §6.4), so the truncated digest
    /// signed with ECDSA_SHA_256 is a standard ECDSA-P256 signature over the longer hash.
    pub fn kms_digest<'a>(&self, digest: &'a [u8]) -> &'a [u8] {
        match self {
            PublicKey::P256(_) => &digest[..digest.len().min(32)],
            PublicKey::Rsa(_) => digest,
        }
    }

    /// Checks a signature over `digest` (computed with `hash`): ASN.1 DER ECDSA for P-256,
    /// PKCS#1 v1.5 with SHA-256 for RSA.
    pub fn verify(
        &self,
        hash: HashAlg,
        digest: &[u8],
        signature: &[u8],
    ) -> Result<(), CryptoError> {
        hash.check_digest(digest)?;
        match self {
            PublicKey::P256(k) => {
                let sig =
                    p256::ecdsa::Signature::from_der(signature).map_err(|_| CryptoError::NotDer)?;
                k.verify_prehash(digest, &sig)
                    .map_err(|_| CryptoError::Mismatch(hash))
            }
            PublicKey::Rsa(k) => {
                check_rsa_hash(hash)?;
                k.verify(rsa::Pkcs1v15Sign::new::<sha2::Sha256>(), digest, signature)
                    .map_err(|_| CryptoError::Mismatch(hash))
            }
        }
    }
}

/// RSA keys sign with RSA_PKCS1_SHA_256 only: KMS has no other PKCS#1 hash.
pub fn check_rsa_hash(hash: HashAlg) -> Result<(), CryptoError> {
    if hash != HashAlg::Sha256 {
        return Err(CryptoError::RsaHash(hash));
    }
    Ok(())
}

/// Names the key type when it is one cosign cannot use, instead of a bare parse failure.
fn describe_unsupported_key(pem: &str) -> CryptoError {
    use base64::Engine;
    let body: String = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .map(str::trim)
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap_or_default();
    let contains = |oid: &[u8]| der.windows(oid.len()).any(|w| w == oid);
    // OIDs as DER bytes: secp256k1 1.3.132.0.10, SM2 1.2.156.10197.1.301.
    if contains(&[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x0a]) {
        CryptoError::UnsupportedKey("EC_P256K (secp256k1)")
    } else if contains(&[0x06, 0x08, 0x2a, 0x81, 0x1c, 0xcf, 0x55, 0x01, 0x82, 0x2d]) {
        CryptoError::UnsupportedKey("EC_SM2")
    } else {
        CryptoError::NotAPublicKey
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::hazmat::PrehashSigner;
    use p256::ecdsa::{DerSignature, SigningKey};

    fn key() -> SigningKey {
        SigningKey::from_slice(&[7u8; 32]).unwrap()
    }

    #[test]
    fn hash_numbers_follow_go() {
        assert_eq!(HashAlg::from_go(5), Ok(HashAlg::Sha256));
        assert_eq!(HashAlg::from_go(7), Ok(HashAlg::Sha512));
        let e = HashAlg::from_go(3).unwrap_err().to_string();
        assert!(e.contains("SHA-1"), "{e}");
        assert!(HashAlg::from_go(0).is_err());
    }

    #[test]
    fn digest_length_is_checked() {
        assert!(HashAlg::Sha256.check_digest(&[0; 32]).is_ok());
        let e = HashAlg::Sha256
            .check_digest(&[0; 10])
            .unwrap_err()
            .to_string();
        assert!(e.contains("10 bytes") && e.contains("SHA-256"), "{e}");
    }

    #[test]
    fn streamed_digest_equals_one_shot() {
        let data: Vec<u8> = (0..1_000_000u32).map(|i| i as u8).collect();
        let got = HashAlg::Sha256.digest_reader(&mut &data[..]).unwrap();
        assert_eq!(got, sha2::Sha256::digest(&data).to_vec());
        let got = HashAlg::Sha512.digest_reader(&mut &data[..]).unwrap();
        assert_eq!(got, sha2::Sha512::digest(&data).to_vec());
        // Around the first buffer's size, and from a reader that returns short reads.
        struct Dribble<'a>(&'a [u8], usize);
        impl Read for Dribble<'_> {
            fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
                let n = self.1.min(out.len()).min(self.0.len());
                out[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        for len in [0, 1, 16 * 1024 - 1, 16 * 1024, 16 * 1024 + 1, 300_000] {
            for step in [7, 16 * 1024, usize::MAX] {
                let got = HashAlg::Sha256
                    .digest_reader(&mut Dribble(&data[..len], step))
                    .unwrap();
                assert_eq!(
                    got,
                    sha2::Sha256::digest(&data[..len]).to_vec(),
                    "{len} by {step}"
                );
            }
        }
    }

    #[test]
    fn pem_round_trip_and_verify() {
        let sk = key();
        let pem = sk
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap();
        let pk = PublicKey::from_pem(&pem).unwrap();
        assert_eq!(pk.to_pem(), pem);
        let digest = sha2::Sha256::digest(b"hello").to_vec();
        let sig: DerSignature = sk.sign_prehash(&digest).unwrap();
        pk.verify(HashAlg::Sha256, &digest, sig.as_bytes()).unwrap();
        let other = sha2::Sha256::digest(b"hellO").to_vec();
        assert!(pk.verify(HashAlg::Sha256, &other, sig.as_bytes()).is_err());
        assert!(pk
            .verify(HashAlg::Sha256, &digest, b"sig")
            .unwrap_err()
            .to_string()
            .contains("DER"));
    }

    #[test]
    fn sha512_on_p256_signs_the_truncated_digest() {
        let sk = key();
        let pk = PublicKey::P256(*sk.verifying_key());
        let digest = sha2::Sha512::digest(b"blob").to_vec();
        // What KMS does: ECDSA_SHA_256 over the leftmost 32 bytes.
        let sig: DerSignature = sk.sign_prehash(pk.kms_digest(&digest)).unwrap();
        // A standard verifier given the full SHA-512 digest accepts it.
        pk.verify(HashAlg::Sha512, &digest, sig.as_bytes()).unwrap();
    }

    #[test]
    fn rsa_pkcs1_sha256_verifies_and_other_hashes_are_refused() {
        use rsa::pkcs1v15::SigningKey as RsaSigningKey;
        use rsa::signature::{SignatureEncoding, Signer};
        let sk = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
        let pem = sk
            .to_public_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap();
        let pk = PublicKey::from_pem(&pem).unwrap();
        assert_eq!(pk.spec(), "RSA_2048");
        assert_eq!(pk.to_pem(), pem);
        let sig = RsaSigningKey::<sha2::Sha256>::new(sk).sign(b"msg").to_vec();
        let digest = sha2::Sha256::digest(b"msg").to_vec();
        pk.verify(HashAlg::Sha256, &digest, &sig).unwrap();
        assert!(pk
            .verify(HashAlg::Sha256, &sha2::Sha256::digest(b"msG"), &sig)
            .is_err());
        let e = pk
            .verify(HashAlg::Sha512, &sha2::Sha512::digest(b"msg"), &sig)
            .unwrap_err()
            .to_string();
        assert!(e.contains("SHA-256"), "{e}");
    }

    #[test]
    fn unsupported_keys_are_named() {
        // secp256k1 SPKI (generator point), built by hand.
        let k1 = "-----BEGIN PUBLIC KEY-----\nMFYwEAYHKoZIzj0CAQYFK4EEAAoDQgAEeb5mfvncu6xVoGKVzocLBwKb/NstzijZ\nWfKBWxb4F5hIOtp3JqPEZV2k+/wOEQio/Re0SKaFVBmcR9CP+xDUuA==\n-----END PUBLIC KEY-----\n";
        assert!(PublicKey::from_pem(k1)
            .unwrap_err()
            .to_string()
            .contains("EC_P256K"));
        assert!(PublicKey::from_pem("garbage")
            .unwrap_err()
            .to_string()
            .contains("neither"));
    }
}
