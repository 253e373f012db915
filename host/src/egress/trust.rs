//! Which server certificates the egress trusts: the OS trust store, read no more than a
//! call needs.
//!
//! Where the roots are is OpenSSL's convention, as rustls-native-certs reads it:
//! `SSL_CERT_FILE` and `SSL_CERT_DIR` when either is set (then only those), else the
//! platform's bundle file and certificate directories (openssl-probe). Reading all of it
//! costs about 5 ms on a stock Debian or Alibaba Cloud Linux: the directory holds every
//! bundled root again as a file of its own, and each is read and parsed. That is more than
//! the rest of a call's start-up, and the bundle alone costs a fifth of it. So the bundle
//! file is read first, and the directories only when the bundle does not trust a server (a
//! CA added to the directory alone) or when there is no bundle: as OpenSSL, which looks in
//! the directory only for an issuer it has not found.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::SignatureScheme;
use rustls::{CertificateError, DigitallySignedStruct, Error as TlsError, RootCertStore};

use super::log;

/// Where trusted roots are kept: a bundle file and directories of single certificates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RootLocations {
    pub file: Option<PathBuf>,
    pub dirs: Vec<PathBuf>,
}

impl RootLocations {
    /// `SSL_CERT_FILE` and `SSL_CERT_DIR` (a `:`-separated list) when either is set, else
    /// what openssl-probe finds on this platform. `None` where the OS keeps its roots
    /// elsewhere than in files (macOS, Windows) and neither variable is set.
    pub fn from_env() -> Option<Self> {
        let var = |name| std::env::var_os(name).filter(|v| !v.is_empty());
        Self::from_vars(var("SSL_CERT_FILE"), var("SSL_CERT_DIR")).or_else(probe)
    }

    fn from_vars(file: Option<OsString>, dir: Option<OsString>) -> Option<Self> {
        let dirs: Vec<PathBuf> = dir
            .iter()
            .flat_map(std::env::split_paths)
            .filter(|p| !p.as_os_str().is_empty())
            .collect();
        let file = file.map(PathBuf::from);
        (file.is_some() || !dirs.is_empty()).then_some(RootLocations { file, dirs })
    }
}

#[cfg(all(unix, not(target_os = "macos")))]
fn probe() -> Option<RootLocations> {
    let found = openssl_probe::probe();
    Some(RootLocations {
        file: found.cert_file,
        dirs: found.cert_dir,
    })
}

#[cfg(not(all(unix, not(target_os = "macos"))))]
fn probe() -> Option<RootLocations> {
    None
}

/// The OS trust store as a certificate verifier: the bundle file's roots, and on a miss
/// those of the directories too (see the module comment).
#[derive(Debug)]
pub struct OsRoots {
    /// `None`: the platform's own store (macOS, Windows), read whole on first use.
    locations: Option<RootLocations>,
    provider: Arc<CryptoProvider>,
    debug: bool,
    /// The bundle file's roots; `None` when it has none (everything is read at once).
    file: Option<Arc<WebPkiServerVerifier>>,
    /// All the roots, read on the first miss; `None` inside when there are none at all.
    all: OnceLock<Option<Arc<WebPkiServerVerifier>>>,
}

impl OsRoots {
    /// Reads the bundle file of `locations` (from [`RootLocations::from_env`]) now, the rest
    /// when a server needs it.
    pub fn new(
        locations: Option<RootLocations>,
        provider: &Arc<CryptoProvider>,
        debug: bool,
    ) -> Self {
        let mut os = OsRoots {
            locations,
            provider: provider.clone(),
            debug,
            file: None,
            all: OnceLock::new(),
        };
        if let Some(RootLocations {
            file: Some(path),
            dirs,
        }) = &os.locations
        {
            let (mut certs, mut errors) = (Vec::new(), Vec::new());
            read_bundle(path, &mut certs, &mut errors);
            let mut roots = RootCertStore::empty();
            let (added, _) = roots.add_parsable_certificates(certs);
            os.file = os.verifier(roots);
            if debug {
                log(format_args!(
                    "trust store: {added} root certificates from {}{}",
                    path.display(),
                    match dirs.is_empty() {
                        true => "",
                        false =>
                            "; the certificate directories are read only if a server needs them",
                    }
                ));
            }
        }
        if os.file.is_none() {
            os.all();
        }
        os
    }

    /// Whether the roots beyond the bundle file have been read (tests).
    #[cfg(test)]
    pub fn read_all(&self) -> bool {
        self.all.get().is_some()
    }

    fn verifier(&self, roots: RootCertStore) -> Option<Arc<WebPkiServerVerifier>> {
        // Fails only without roots.
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
            .build()
            .ok()
    }

    fn all(&self) -> Option<&Arc<WebPkiServerVerifier>> {
        self.all
            .get_or_init(|| {
                let (mut certs, mut errors) = (Vec::new(), Vec::new());
                match &self.locations {
                    None => {
                        let found = rustls_native_certs::load_native_certs();
                        certs = found.certs;
                        errors = found.errors.iter().map(ToString::to_string).collect();
                    }
                    Some(RootLocations { file, dirs }) => {
                        if let Some(file) = file {
                            read_bundle(file, &mut certs, &mut errors);
                        }
                        for dir in dirs {
                            let found = rustls_native_certs::load_certs_from_paths(None, Some(dir));
                            certs.extend(found.certs);
                            errors.extend(found.errors.iter().map(ToString::to_string));
                        }
                    }
                }
                let mut roots = RootCertStore::empty();
                let (added, _) = roots.add_parsable_certificates(certs);
                if added == 0 {
                    let why = errors;
                    log(format_args!(
                        "warning: no trusted root certificates found (set SSL_CERT_FILE or \
                         SSL_CERT_DIR){}{}",
                        if why.is_empty() { "" } else { ": " },
                        why.join("; ")
                    ));
                } else if self.debug {
                    log(format_args!(
                        "trust store: {added} root certificates in all"
                    ));
                }
                self.verifier(roots)
            })
            .as_ref()
    }
}

/// Adds the certificates of the PEM bundle at `path` to `certs`, or says in `errors` why
/// it could not be read.
///
/// Not rustls-pki-types' PEM reader: it decodes base64 in constant time, which private keys
/// need and public roots do not, at a fraction of the speed. On a stock 145-root bundle that
/// was 8% of a signMessage call's CPU time.
/// A bundle larger than this is not read: Debian's full bundle is about 220 KiB.
const MAX_BUNDLE_BYTES: u64 = 16 << 20;

fn read_bundle(path: &Path, certs: &mut Vec<CertificateDer<'static>>, errors: &mut Vec<String>) {
    const BEGIN: &[u8] = b"-----BEGIN CERTIFICATE-----";
    const END: &[u8] = b"-----END CERTIFICATE-----";
    let pem = match crate::files::read_capped(path, MAX_BUNDLE_BYTES) {
        Ok(pem) => pem,
        Err(e) => return errors.push(format!("cannot read {}: {e}", path.display())),
    };
    let mut body: Option<Vec<u8>> = None;
    for line in pem.split(|&b| b == b'\n').map(<[u8]>::trim_ascii) {
        match (&mut body, line) {
            (None, BEGIN) => body = Some(Vec::with_capacity(2048)),
            (Some(text), END) => {
                match base64::engine::general_purpose::STANDARD.decode(&text) {
                    Ok(der) => certs.push(CertificateDer::from(der)),
                    Err(e) => errors.push(format!(
                        "{}: a certificate is not base64: {e}",
                        path.display()
                    )),
                }
                body = None;
            }
            (Some(text), line) => text.extend_from_slice(line),
            (None, _) => {}
        }
    }
}

impl ServerCertVerifier for OsRoots {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        let verify = |v: &WebPkiServerVerifier| {
            v.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        };
        // Roots only add paths: what the bundle accepts, all the roots accept too, so
        // asking the bundle first and all of them after any refusal gives the verdict of
        // the whole store. (Not only UnknownIssuer: a CA renewed under the same name fails
        // the signature check against the old one in the bundle.)
        if let Some(file) = &self.file {
            match verify(file) {
                Err(e) if self.locations.as_ref().is_some_and(|l| !l.dirs.is_empty()) => {
                    if self.debug {
                        log(format_args!(
                            "trust store: {}'s certificate is not trusted by the bundle file \
                             ({e}); reading the certificate directories",
                            server_name.to_str()
                        ));
                    }
                }
                decided => return decided,
            }
        }
        match self.all() {
            Some(all) => verify(all),
            None => Err(TlsError::InvalidCertificate(
                CertificateError::UnknownIssuer,
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    use std::path::Path;

    /// A CA (its PEM) and a certificate it issued for kms.example.com (DER).
    fn ca_and_leaf(name: &str) -> (String, CertificateDer<'static>) {
        let ca_key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let ca = params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(params, ca_key);
        let leaf = CertificateParams::new(vec!["kms.example.com".to_string()])
            .unwrap()
            .signed_by(&KeyPair::generate().unwrap(), &issuer)
            .unwrap();
        (ca.pem(), leaf.der().clone())
    }

    fn scratch(test: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("trust-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("dir")).unwrap();
        dir
    }

    fn verify(roots: &OsRoots, leaf: &CertificateDer<'_>) -> Result<ServerCertVerified, TlsError> {
        let name = ServerName::try_from("kms.example.com").unwrap();
        roots.verify_server_cert(leaf, &[], &name, &[], UnixTime::now())
    }

    fn provider() -> Arc<CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    fn locations(file: Option<&Path>, dirs: &[&Path]) -> Option<RootLocations> {
        Some(RootLocations {
            file: file.map(Path::to_path_buf),
            dirs: dirs.iter().map(|d| d.to_path_buf()).collect(),
        })
    }

    #[test]
    fn bundles_are_read_as_pem_with_any_line_ends_and_text_around() {
        let dir = scratch("pem");
        let (ca, _) = ca_and_leaf("CA");
        let der: CertificateDer<'static> =
            rustls::pki_types::pem::PemObject::from_pem_slice(ca.as_bytes()).unwrap();
        let crlf = ca.replace('\n', "\r\n");
        let text = format!(
            "# a comment\n{ca}\nsome text\n{crlf}-----BEGIN TRUSTED CERTIFICATE-----\nAAAA\n\
             -----END TRUSTED CERTIFICATE-----\n-----BEGIN CERTIFICATE-----\n!!\n\
             -----END CERTIFICATE-----\n"
        );
        std::fs::write(dir.join("bundle.pem"), text).unwrap();
        let (mut certs, mut errors) = (Vec::new(), Vec::new());
        read_bundle(&dir.join("bundle.pem"), &mut certs, &mut errors);
        assert_eq!(certs, [der.clone(), der]);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains("not base64"), "{errors:?}");
        read_bundle(&dir.join("missing.pem"), &mut certs, &mut errors);
        assert!(errors[1].contains("missing.pem"), "{errors:?}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_variables_name_the_only_locations() {
        let os = |s: &str| Some(OsString::from(s));
        assert_eq!(RootLocations::from_vars(None, None), None);
        assert_eq!(
            RootLocations::from_vars(os("/b.pem"), None),
            Some(RootLocations {
                file: Some("/b.pem".into()),
                dirs: vec![]
            })
        );
        assert_eq!(
            RootLocations::from_vars(None, os("/one::/two")),
            Some(RootLocations {
                file: None,
                dirs: vec!["/one".into(), "/two".into()]
            })
        );
    }

    #[test]
    fn the_directories_are_read_only_for_an_issuer_the_bundle_lacks() {
        let dir = scratch("lazy");
        let (bundled_ca, bundled_leaf) = ca_and_leaf("bundled CA");
        let (added_ca, added_leaf) = ca_and_leaf("CA added to the directory");
        let (_, stranger) = ca_and_leaf("unknown CA");
        std::fs::write(dir.join("bundle.pem"), bundled_ca).unwrap();
        std::fs::write(dir.join("dir/added.pem"), added_ca).unwrap();

        let roots = OsRoots::new(
            locations(Some(&dir.join("bundle.pem")), &[&dir.join("dir")]),
            &provider(),
            false,
        );
        verify(&roots, &bundled_leaf).unwrap();
        assert!(!roots.read_all(), "a root of the bundle needs no directory");
        verify(&roots, &added_leaf).unwrap();
        assert!(roots.read_all());
        verify(&roots, &bundled_leaf).unwrap();
        assert_eq!(
            verify(&roots, &stranger).unwrap_err(),
            TlsError::InvalidCertificate(CertificateError::UnknownIssuer)
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_ca_renewed_under_the_same_name_in_the_directory_is_found() {
        let dir = scratch("renewed");
        let (old_ca, _) = ca_and_leaf("corporate CA");
        let (new_ca, leaf) = ca_and_leaf("corporate CA");
        std::fs::write(dir.join("bundle.pem"), old_ca).unwrap();
        std::fs::write(dir.join("dir/renewed.pem"), new_ca).unwrap();
        let roots = OsRoots::new(
            locations(Some(&dir.join("bundle.pem")), &[&dir.join("dir")]),
            &provider(),
            false,
        );
        verify(&roots, &leaf).unwrap();
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn without_a_bundle_the_directories_are_read_at_once() {
        let dir = scratch("nobundle");
        let (ca, leaf) = ca_and_leaf("CA in the directory");
        std::fs::write(dir.join("dir/ca.pem"), ca).unwrap();
        let roots = OsRoots::new(
            locations(Some(&dir.join("missing.pem")), &[&dir.join("dir")]),
            &provider(),
            false,
        );
        assert!(roots.read_all());
        verify(&roots, &leaf).unwrap();
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_bundle_alone_decides_without_a_directory() {
        let dir = scratch("fileonly");
        let (ca, leaf) = ca_and_leaf("the one CA");
        let (_, stranger) = ca_and_leaf("unknown CA");
        std::fs::write(dir.join("bundle.pem"), ca).unwrap();
        let roots = OsRoots::new(
            locations(Some(&dir.join("bundle.pem")), &[]),
            &provider(),
            false,
        );
        verify(&roots, &leaf).unwrap();
        assert_eq!(
            verify(&roots, &stranger).unwrap_err(),
            TlsError::InvalidCertificate(CertificateError::UnknownIssuer)
        );
        assert!(!roots.read_all());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn no_roots_at_all_trust_nothing() {
        let dir = scratch("none");
        let (_, leaf) = ca_and_leaf("some CA");
        let roots = OsRoots::new(
            locations(Some(&dir.join("missing.pem")), &[&dir.join("dir")]),
            &provider(),
            false,
        );
        assert_eq!(
            verify(&roots, &leaf).unwrap_err(),
            TlsError::InvalidCertificate(CertificateError::UnknownIssuer)
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
