//! The typed `sigstore:alibabakms/signer` export, called the way an embedder calls it.
//!
//! The component exports two things: `wasi:cli/run` (cosign's plugin protocol, covered by the
//! e2e suite through the binary) and the `signer` interface for hosts such as policy engines
//! that embed the component instead of running the binary. Nothing in this package calls
//! `signer` itself, so without this test that export could break (a WIT change, a wrong
//! error mapping, a stream that is never read) and no other test would notice.
//!
//! The test is an embedder: it takes the portable component the binary writes with
//! `--write-wasm`, compiles it with Cranelift, links stock wasmtime-wasi and wasmtime-wasi-http
//! (`wasi:http` through a send hook of its own that reaches only the KMS emulator) and calls
//! the typed functions. One test also runs the binary on the same key, to show that both
//! exports are one implementation.

use std::future::Future;
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};

use alibabakms_emulator::{Emulator, EmulatorConfig};
use base64::Engine as _;
use http::uri::Scheme;
use http_body_util::BodyExt;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use p256::ecdsa::signature::hazmat::PrehashVerifier;
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{DerSignature, VerifyingKey};
use p256::pkcs8::DecodePublicKey;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker, Resource, ResourceTable};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::p2::pipe::MemoryInputPipe;
use wasmtime_wasi::p2::DynInputStream;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{
    Error as HttpError, RequestOptions, WasiBody, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks,
    WasiHttpView,
};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "plugin",
        exports: { default: async },
        // Every import is a WASI interface that wasmtime-wasi(-http) already implements; map
        // them to those crates' bindings so `input-stream` is their `DynInputStream`.
        with: {
            "wasi:io": wasmtime_wasi::p2::bindings::io,
            "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
            "wasi:random": wasmtime_wasi::p2::bindings::random,
            "wasi:cli": wasmtime_wasi::p2::bindings::cli,
            "wasi:http": wasmtime_wasi_http::p2::bindings::http,
        },
    });
}

use bindings::exports::sigstore::alibabakms::signer::{CallOptions, Error, HashAlgorithm, Message};
use bindings::{Plugin, PluginPre};

const BIN: &str = env!("CARGO_BIN_EXE_sigstore-kms-alibabakms");
const AK_ID: &str = "LTAI5tEmbedTestAccessKey";
const AK_SECRET: &str = "embed-secret-cXV4YmF6Zm9v";

// ---------------------------------------------------------------------------------------
// The embedder: store data, egress hook, compiled component.

/// The store's data, as an embedder would have it.
struct Host {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    hooks: ToEmulator,
    /// The component's `cache` import, backed in memory as an embedder may.
    cache: std::collections::HashMap<String, Vec<u8>>,
}

impl WasiView for Host {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for Host {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// The guest's only way out: HTTPS to the emulator, trusting only the emulator's CA.
/// (The host crate's own egress hook is not reachable: this package is a binary.)
struct ToEmulator {
    authority: String,
    client: Client<HttpsConnector<HttpConnector>, WasiBody>,
}

impl ToEmulator {
    fn new(emu: &Emulator) -> Self {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(emu.ca_pem().as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .build();
        Self {
            authority: emu.endpoint(),
            client: Client::builder(TokioExecutor::new()).build(https),
        }
    }
}

type ErrorFuture = Box<dyn Future<Output = Result<(), HttpError>> + Send>;

impl WasiHttpHooks for ToEmulator {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        _options: Option<RequestOptions>,
        _fut: ErrorFuture,
    ) -> Box<dyn Future<Output = Result<(http::Response<WasiBody>, ErrorFuture), HttpError>> + Send>
    {
        let uri = request.uri();
        let allowed = uri.scheme() == Some(&Scheme::HTTPS)
            && uri.authority().map(|a| a.as_str()) == Some(self.authority.as_str());
        let client = self.client.clone();
        Box::new(async move {
            if !allowed {
                return Err(HttpError::HttpRequestDenied);
            }
            let response = client.request(request).await.map_err(internal)?;
            let response = response.map(|body| body.map_err(internal).boxed_unsync());
            Ok((response, Box::new(async { Ok(()) }) as ErrorFuture))
        })
    }
}

fn internal(e: impl std::fmt::Display) -> HttpError {
    HttpError::InternalError(Some(e.to_string()))
}

/// The component as `--write-wasm` writes it, compiled once for all tests.
fn plugin_pre() -> &'static PluginPre<Host> {
    static PRE: OnceLock<PluginPre<Host>> = OnceLock::new();
    PRE.get_or_init(|| {
        let path = std::env::temp_dir().join(format!("embed-test-{}.wasm", std::process::id()));
        let status = Command::new(BIN)
            .arg("--write-wasm")
            .arg(&path)
            .stdin(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "--write-wasm failed: {status}");
        let wasm = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();

        let engine = Engine::new(&Config::new()).unwrap();
        // The slow part of this suite: an unoptimised Cranelift takes 10-15 s here.
        let component = Component::new(&engine, &wasm).unwrap();
        let mut linker: Linker<Host> = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).unwrap();
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).unwrap();
        // The one import of our own: key metadata kept between calls, here in memory.
        let mut cache = linker.instance("sigstore:alibabakms/cache@0.1.0").unwrap();
        cache
            .func_wrap("get", |store, (key,): (String,)| {
                Ok((store.data().cache.get(&key).cloned(),))
            })
            .unwrap();
        cache
            .func_wrap("set", |mut store, (key, value): (String, Vec<u8>)| {
                store.data_mut().cache.insert(key, value);
                Ok(())
            })
            .unwrap();
        cache
            .func_wrap("delete", |mut store, (key,): (String,)| {
                store.data_mut().cache.remove(&key);
                Ok(())
            })
            .unwrap();
        PluginPre::new(linker.instantiate_pre(&component).unwrap()).unwrap()
    })
}

/// One embedding: a store whose guest sees only the two credential variables.
struct Embedded {
    store: Store<Host>,
    plugin: Plugin,
}

impl Embedded {
    async fn new(emu: &Emulator) -> Self {
        let pre = plugin_pre();
        let wasi = WasiCtx::builder()
            .env("ALIBABA_CLOUD_ACCESS_KEY_ID", AK_ID)
            .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", AK_SECRET)
            .build();
        let host = Host {
            wasi,
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            hooks: ToEmulator::new(emu),
            cache: Default::default(),
        };
        let mut store = Store::new(pre.engine(), host);
        let plugin = pre.instantiate_async(&mut store).await.unwrap();
        Self { store, plugin }
    }

    async fn default_algorithm(&mut self) -> String {
        let signer = self.plugin.sigstore_alibabakms_signer();
        signer
            .call_default_algorithm(&mut self.store)
            .await
            .unwrap()
    }

    async fn supported_algorithms(&mut self) -> Vec<String> {
        let signer = self.plugin.sigstore_alibabakms_signer();
        signer
            .call_supported_algorithms(&mut self.store)
            .await
            .unwrap()
    }

    async fn create_key(&mut self, key_ref: &str, algorithm: &str) -> Result<String, Error> {
        let signer = self.plugin.sigstore_alibabakms_signer();
        signer
            .call_create_key(&mut self.store, key_ref, algorithm)
            .await
            .unwrap()
    }

    async fn public_key(&mut self, key_ref: &str) -> Result<String, Error> {
        let signer = self.plugin.sigstore_alibabakms_signer();
        signer
            .call_public_key(&mut self.store, key_ref, &newest())
            .await
            .unwrap()
    }

    /// Signs a SHA-256 `digest` computed here.
    async fn sign_digest(&mut self, key_ref: &str, digest: &[u8]) -> Result<Vec<u8>, Error> {
        let signer = self.plugin.sigstore_alibabakms_signer();
        let message = Message::Digest(digest.to_vec());
        signer
            .call_sign(
                &mut self.store,
                key_ref,
                &message,
                HashAlgorithm::Sha256,
                &newest(),
            )
            .await
            .unwrap()
    }

    /// Signs `message`, handed to the component as a `wasi:io` input stream it hashes itself.
    async fn sign_stream(&mut self, key_ref: &str, message: &[u8]) -> Result<Vec<u8>, Error> {
        let stream = self.input_stream(message);
        let signer = self.plugin.sigstore_alibabakms_signer();
        let borrowed = Message::Stream(Resource::new_borrow(stream.rep()));
        let result = signer
            .call_sign(
                &mut self.store,
                key_ref,
                &borrowed,
                HashAlgorithm::Sha256,
                &newest(),
            )
            .await
            .unwrap();
        self.drop_stream(stream);
        result
    }

    async fn verify(
        &mut self,
        key_ref: &str,
        message: Message,
        signature: &[u8],
        options: CallOptions,
    ) -> Result<(), Error> {
        let signer = self.plugin.sigstore_alibabakms_signer();
        signer
            .call_verify(
                &mut self.store,
                key_ref,
                &message,
                HashAlgorithm::Sha256,
                signature,
                &options,
            )
            .await
            .unwrap()
    }

    /// An in-memory `input-stream` in the store's table, owned by the host.
    fn input_stream(&mut self, bytes: &[u8]) -> Resource<DynInputStream> {
        let stream: DynInputStream = Box::new(MemoryInputPipe::new(bytes.to_vec()));
        self.store.data_mut().table.push(stream).unwrap()
    }

    fn drop_stream(&mut self, stream: Resource<DynInputStream>) {
        self.store.data_mut().table.delete(stream).unwrap();
    }
}

fn newest() -> CallOptions {
    CallOptions {
        key_version: None,
        remote_verification: false,
    }
}

fn emulator() -> Emulator {
    Emulator::start(
        EmulatorConfig::default()
            .no_credentials()
            .access_key(AK_ID, AK_SECRET),
    )
    .expect("emulator starts")
}

/// A P-256 key behind `alias/<name>` in the emulator, made without the component.
fn alias_with_key(emu: &Emulator, name: &str) -> String {
    let key = emu.create_key("EC_P256").unwrap();
    emu.create_alias(&format!("alias/{name}"), &key.key_id)
        .unwrap();
    format!("{}//alias/{name}", emu.endpoint())
}

fn verifying_key(pem: &str) -> VerifyingKey {
    VerifyingKey::from_public_key_pem(pem).unwrap_or_else(|e| panic!("{e}: {pem}"))
}

fn der_signature(bytes: &[u8]) -> DerSignature {
    DerSignature::try_from(bytes).unwrap_or_else(|e| panic!("not an ECDSA DER signature: {e}"))
}

/// 300 KiB that are not all alike, so a stream read in chunks is hashed in order.
fn large_message() -> Vec<u8> {
    (0..300 * 1024u32).map(|i| (i * 31 % 251) as u8).collect()
}

// ---------------------------------------------------------------------------------------
// The tests.

#[tokio::test]
async fn algorithms_are_answered_without_the_network() {
    let emu = emulator();
    let mut embedded = Embedded::new(&emu).await;
    let default = embedded.default_algorithm().await;
    let supported = embedded.supported_algorithms().await;

    assert_eq!(default, "EC_P256");
    assert!(!supported.is_empty());
    assert!(supported.contains(&default), "{supported:?}");
    let stats = emu.stats();
    assert_eq!(stats.total_requests, 0, "{stats:?}");
    assert_eq!(stats.tcp_connections, 0, "{stats:?}");
}

#[tokio::test]
async fn create_key_returns_the_pem_public_key_returns() {
    let emu = emulator();
    let mut embedded = Embedded::new(&emu).await;
    let key_ref = format!("{}//alias/embed", emu.endpoint());

    let created = embedded.create_key(&key_ref, "EC_P256").await.unwrap();
    assert!(
        created.starts_with("-----BEGIN PUBLIC KEY-----\n")
            && created.trim_end().ends_with("-----END PUBLIC KEY-----"),
        "{created}"
    );
    verifying_key(&created);
    // The key is the one KMS holds behind the new alias.
    let key_id = emu.alias_target("alias/embed").expect("alias created");
    let versions = emu.key_versions(&key_id).unwrap();
    let held = emu.public_key_pem(&key_id, &versions[0]).unwrap();
    assert_eq!(verifying_key(&held), verifying_key(&created));

    assert_eq!(embedded.public_key(&key_ref).await.unwrap(), created);
    // Creating again returns the same key; it does not make a second one.
    assert_eq!(
        embedded.create_key(&key_ref, "EC_P256").await.unwrap(),
        created
    );
    assert_eq!(emu.stats().action("CreateKey"), 1);
}

#[tokio::test]
async fn a_signed_digest_verifies_with_p256_and_with_verify() {
    let emu = emulator();
    let key_ref = alias_with_key(&emu, "digest");
    let mut embedded = Embedded::new(&emu).await;
    let pem = embedded.public_key(&key_ref).await.unwrap();
    let digest = Sha256::digest(b"an embedder's message");

    let signature = embedded.sign_digest(&key_ref, &digest).await.unwrap();

    let key = verifying_key(&pem);
    key.verify_prehash(&digest, &der_signature(&signature))
        .expect("the signature verifies with p256");
    // The component's own verify, locally and with KMS.
    let remote = CallOptions {
        remote_verification: true,
        ..newest()
    };
    for options in [newest(), remote] {
        let digest = Message::Digest(digest.to_vec());
        embedded
            .verify(&key_ref, digest, &signature, options)
            .await
            .unwrap();
    }
    assert_eq!(emu.stats().action("AsymmetricVerify"), 1);

    let mut tampered = signature.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 0x01;
    let digest = Message::Digest(digest.to_vec());
    match embedded.verify(&key_ref, digest, &tampered, newest()).await {
        Err(Error::VerificationFailed(why)) => assert!(!why.is_empty()),
        other => panic!("a tampered signature gave {other:?}"),
    }
}

#[tokio::test]
async fn a_streamed_message_is_hashed_by_the_component() {
    let emu = emulator();
    let key_ref = alias_with_key(&emu, "stream");
    let mut embedded = Embedded::new(&emu).await;
    let pem = embedded.public_key(&key_ref).await.unwrap();
    let message = large_message();

    let signature = embedded.sign_stream(&key_ref, &message).await.unwrap();

    verifying_key(&pem)
        .verify(&message, &der_signature(&signature))
        .expect("the signature over the streamed message verifies with p256");
    // The same message as a stream also passes `verify`; one byte more does not.
    let stream = embedded.input_stream(&message);
    let borrowed = Message::Stream(Resource::new_borrow(stream.rep()));
    let verified = embedded
        .verify(&key_ref, borrowed, &signature, newest())
        .await;
    embedded.drop_stream(stream);
    verified.unwrap();

    let longer = [message.as_slice(), b"!"].concat();
    let stream = embedded.input_stream(&longer);
    let borrowed = Message::Stream(Resource::new_borrow(stream.rep()));
    let verified = embedded
        .verify(&key_ref, borrowed, &signature, newest())
        .await;
    embedded.drop_stream(stream);
    assert!(
        matches!(verified, Err(Error::VerificationFailed(_))),
        "{verified:?}"
    );
}

#[tokio::test]
async fn an_unknown_alias_is_a_kms_error_with_a_hint() {
    let emu = emulator();
    let mut embedded = Embedded::new(&emu).await;
    let key_ref = format!("{}//alias/nobody-made-this", emu.endpoint());

    match embedded.public_key(&key_ref).await {
        Err(Error::Kms((kms, hint))) => {
            assert_eq!(kms.code, "Forbidden.AliasNotFound", "{kms:?}");
            assert_eq!(kms.http_status, 404, "{kms:?}");
            assert!(!kms.request_id.is_empty(), "{kms:?}");
            assert!(hint.contains("generate-key-pair"), "{hint}");
        }
        other => panic!("an unknown alias gave {other:?}"),
    }
}

#[tokio::test]
async fn a_request_the_embedder_refuses_is_a_transport_error() {
    let emu = emulator();
    let mut embedded = Embedded::new(&emu).await;

    match embedded
        .public_key("kms.cn-hangzhou.aliyuncs.com//alias/elsewhere")
        .await
    {
        Err(Error::Transport(why)) => assert!(!why.is_empty()),
        other => panic!("a refused request gave {other:?}"),
    }
    assert_eq!(emu.stats().total_requests, 0);
}

/// cosign's path (the binary, `wasi:cli/run`) and the typed export agree on the key and
/// accept each other's signatures.
#[tokio::test]
async fn the_cosign_path_accepts_what_the_typed_export_signed() {
    let emu = emulator();
    let key_ref = alias_with_key(&emu, "shared");
    let mut embedded = Embedded::new(&emu).await;
    let pem = embedded.public_key(&key_ref).await.unwrap();
    let message = b"signed by an embedder, verified by cosign";
    let signature = embedded.sign_stream(&key_ref, message).await.unwrap();

    let body = serde_json::json!({ "publicKeyOptions": { "rpcOptions": rpc() } });
    let answer = cosign(&emu, &key_ref, "publicKey", body, b"");
    let cosign_pem = base64_text(answer["publicKey"]["publicKeyPEM"].as_str().unwrap());
    assert_eq!(cosign_pem, pem);

    let b64 = base64::engine::general_purpose::STANDARD.encode(&signature);
    let body = serde_json::json!({
        "signature": b64,
        "verifyOptions": { "rpcOptions": rpc(), "messageOptions": { "digest": null } },
    });
    let answer = cosign(&emu, &key_ref, "verifySignature", body, message);
    assert!(answer.get("errorMessage").is_none(), "{answer}");
}

/// Runs one cosign protocol call through the binary and returns its JSON answer.
fn cosign(
    emu: &Emulator,
    key_ref: &str,
    method: &str,
    body: serde_json::Value,
    stdin: &[u8],
) -> serde_json::Value {
    use std::io::Write;
    let mut request = serde_json::json!({
        "initOptions": {
            "protocolVersion": "v1",
            "keyResourceID": key_ref,
            "hashFunc": 5,
            "rpcOptions": rpc(),
        },
        "methodName": method,
    });
    request[method] = body;
    let mut child = Command::new(BIN)
        .arg("v1")
        .arg(request.to_string())
        .env_clear()
        .env("ALIBABA_CLOUD_ACCESS_KEY_ID", AK_ID)
        .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", AK_SECRET)
        .env("SSL_CERT_FILE", emu.ca_pem_path())
        .env("SIGSTORE_ALIBABAKMS_ALLOWED_HOSTS", emu.endpoint())
        // Nothing written to the real ~/.cache (HOME is unset: the account's home).
        .env("SIGSTORE_ALIBABAKMS_CACHE_TTL", "0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    serde_json::from_slice(&out.stdout).unwrap()
}

/// cosign's `RPCOptions` for the newest key version, verified locally.
fn rpc() -> serde_json::Value {
    serde_json::json!({ "keyVersion": "", "remoteVerification": false })
}

fn base64_text(b64: &str) -> String {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    String::from_utf8(bytes).unwrap()
}
