//! A private CA and a server certificate for the loopback names, made fresh per emulator.
//!
//! KMS is HTTPS-only, and a client under test must verify the server the way it would verify
//! Alibaba's (a KMS instance's private CA is the real-world twin of this), so the emulator
//! never offers plain HTTP and clients trust it through its CA file (`SSL_CERT_FILE`).

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

/// The CA (PEM, for clients) and a rustls server config presenting a leaf it signed.
pub struct TlsMaterial {
    pub ca_pem: String,
    pub server_config: Arc<rustls::ServerConfig>,
}

fn to_io(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(format!("TLS setup: {e}"))
}

/// `extra_names` are added to the leaf's subject alternative names (IPs or DNS names),
/// besides `127.0.0.1`, `::1` and `localhost`.
pub fn generate(extra_names: &[String]) -> std::io::Result<TlsMaterial> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(to_io)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "alibabakms-emulator test CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate().map_err(to_io)?;
    let ca_cert = ca_params.self_signed(&ca_key).map_err(to_io)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let mut names = vec![
        "127.0.0.1".to_string(),
        "::1".to_string(),
        "localhost".to_string(),
    ];
    names.extend(extra_names.iter().cloned());
    let mut leaf_params = CertificateParams::new(names).map_err(to_io)?;
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    leaf_params.use_authority_key_identifier_extension = true;
    leaf_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf_key = KeyPair::generate().map_err(to_io)?;
    let leaf_cert = leaf_params.signed_by(&leaf_key, &issuer).map_err(to_io)?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server_config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(to_io)?
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf_cert.der().clone(), ca_cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
        )
        .map_err(to_io)?;
    // HTTP/1.1 only; keep-alive gives the connection reuse clients are measured on.
    server_config.alpn_protocols = vec![b"http/1.1".to_vec()];

    Ok(TlsMaterial {
        ca_pem: ca_cert.pem(),
        server_config: Arc::new(server_config),
    })
}
