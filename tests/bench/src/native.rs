//! The guest's logic compiled natively: the same `protocol::handle` the component runs,
//! with a plain HTTPS transport instead of `wasi:http`, in this process.
//!
//! Comparing it with the plugin binary shows what the sandbox and a fresh process cost for
//! exactly the same calls.

use std::io::Read;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use alibabakms_guest::protocol;
use alibabakms_guest::signer::Signer;
use alibabakms_guest::transport::{HttpRequest, HttpResponse, Scheme, Transport, TransportError};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A transport over one pooled hyper client, like the host's, trusting only `ca_pem`;
/// like the host's, built on the first request (calls without one pay nothing for TLS).
pub struct NativeTransport {
    runtime: tokio::runtime::Runtime,
    ca_pem: String,
    client: OnceLock<HttpsClient>,
}

impl NativeTransport {
    pub fn new(ca_pem: &str) -> NativeTransport {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        NativeTransport {
            runtime,
            ca_pem: ca_pem.to_string(),
            client: OnceLock::new(),
        }
    }

    fn client(&self) -> &HttpsClient {
        self.client.get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            let certs = rustls::pki_types::pem::PemObject::pem_slice_iter(self.ca_pem.as_bytes());
            roots.add_parsable_certificates(certs.map(|c| c.expect("the roots are PEM")));
            let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
            let https = hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(tls)
                .https_or_http()
                .enable_http1()
                .build();
            Client::builder(TokioExecutor::new()).build(https)
        })
    }

    async fn send_one(&self, req: HttpRequest) -> Result<HttpResponse, TransportError> {
        let authority = req.authority.clone();
        let other = |detail: String| TransportError::Other {
            authority: authority.clone(),
            detail,
        };
        let scheme = match req.scheme {
            Scheme::Https => "https",
            Scheme::Http => "http",
        };
        let mut builder = hyper::Request::builder().method(req.method).uri(format!(
            "{scheme}://{}{}",
            req.authority, req.path_and_query
        ));
        for (name, value) in &req.headers {
            builder = builder.header(name, value);
        }
        let request = builder
            .body(Full::new(Bytes::from(req.body)))
            .map_err(|e| other(e.to_string()))?;
        let timeout = req.timeout.unwrap_or(Duration::from_secs(30));
        let response = tokio::time::timeout(timeout, self.client().request(request))
            .await
            .map_err(|_| TransportError::Timeout {
                authority: authority.clone(),
            })?
            .map_err(|e| other(e.to_string()))?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| other(e.to_string()))?
            .to_bytes()
            .to_vec();
        Ok(HttpResponse {
            status,
            headers,
            body,
        })
    }
}

impl Transport for NativeTransport {
    fn send_all(&self, requests: Vec<HttpRequest>) -> Vec<Result<HttpResponse, TransportError>> {
        self.runtime.block_on(async {
            // Concurrently, as the host does for the guest's parallel requests.
            futures_util::future::join_all(requests.into_iter().map(|r| self.send_one(r))).await
        })
    }
}

/// One plugin call, natively: argv as cosign passes it, the message on `stdin`. A fresh
/// transport per call, so each pays its own TLS handshake as a plugin process does.
pub fn call(
    env: &[(String, String)],
    ca_pem: &str,
    argv: &[String],
    stdin: &mut dyn Read,
) -> protocol::Response {
    let transport = NativeTransport::new(ca_pem);
    let lookup = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let signer = Signer::new(&transport, &lookup);
    protocol::handle(argv, &mut Unbounded(stdin), &signer)
}

/// The message as the benchmark feeds it: no deadline bounds its reads.
struct Unbounded<'a>(&'a mut dyn Read);

impl Read for Unbounded<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

impl protocol::Input for Unbounded<'_> {}
