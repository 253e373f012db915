//! The egress client against real loopback TLS servers spun up in each test.

use super::*;
use bytes::Bytes;
use http_body::{Body, Frame};
use http_body_util::{Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::net::TcpListener;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

/// A throwaway CA and a server certificate it issued for `localhost` and `127.0.0.1`.
struct TestPki {
    roots: RootCertStore,
    server: Arc<rustls::ServerConfig>,
}

fn test_pki() -> TestPki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "egress test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);

    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();

    let mut roots = RootCertStore::empty();
    roots.add(ca_cert.der().clone()).unwrap();
    let chain: Vec<CertificateDer<'static>> = vec![leaf.der().clone()];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    TestPki {
        roots,
        server: Arc::new(server),
    }
}

/// What the test server does with a connection.
#[derive(Clone, Copy)]
enum Mode {
    /// TLS + HTTP/1.1 with keep-alive; the path picks the answer (see `answer`).
    Serve,
    /// Accepts TCP and then says nothing at all (not even a TLS handshake).
    Silent,
}

struct TestServer {
    port: u16,
    /// TCP connections accepted.
    accepts: Arc<AtomicUsize>,
}

impl TestServer {
    fn origin(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    fn accepted(&self) -> usize {
        self.accepts.load(Ordering::SeqCst)
    }
}

async fn spawn_server(config: Arc<rustls::ServerConfig>, mode: Mode) -> TestServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepts = Arc::new(AtomicUsize::new(0));
    let counter = accepts.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            counter.fetch_add(1, Ordering::SeqCst);
            match mode {
                Mode::Silent => held.push(tcp),
                Mode::Serve => {
                    let acceptor = TlsAcceptor::from(config.clone());
                    tokio::spawn(async move {
                        let Ok(tls) = acceptor.accept(tcp).await else {
                            return;
                        };
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(tls), service_fn(answer))
                            .await;
                    });
                }
            }
        }
    });
    TestServer { port, accepts }
}

/// `/host` echoes the Host header; `/no-head` never answers; `/stall-body` sends one
/// chunk and then stalls; anything else answers `hello`.
async fn answer(
    req: Request<Incoming>,
) -> Result<Response<http_body_util::combinators::BoxBody<Bytes, Infallible>>, Infallible> {
    let body = match req.uri().path() {
        "/host" => {
            let host = req.headers().get(http::header::HOST).cloned();
            Full::new(Bytes::from(
                host.map(|h| h.as_bytes().to_vec()).unwrap_or_default(),
            ))
            .boxed()
        }
        "/no-head" => std::future::pending().await,
        "/stall-body" => StallBody { sent: false }.boxed(),
        _ => Full::new(Bytes::from_static(b"hello")).boxed(),
    };
    Ok(Response::new(body))
}

/// One chunk, then nothing, forever.
struct StallBody {
    sent: bool,
}

impl Body for StallBody {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.sent {
            Poll::Pending
        } else {
            self.sent = true;
            Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"first")))))
        }
    }
}

fn get(uri: &str) -> Request<WasiBody> {
    Request::get(uri)
        .body(
            Empty::<Bytes>::new()
                .map_err(|never| match never {})
                .boxed_unsync(),
        )
        .unwrap()
}

fn allow(server: &TestServer) -> AllowedHosts {
    AllowedHosts::parse(&format!("127.0.0.1:{}", server.port)).unwrap()
}

const SHORT: Timeouts = Timeouts {
    connect: Duration::from_millis(300),
    first_byte: Duration::from_millis(300),
    between_bytes: Duration::from_millis(300),
};

async fn body_text(response: Response<WasiBody>) -> Result<String, HttpError> {
    let bytes = response.into_body().collect().await?.to_bytes();
    Ok(String::from_utf8(bytes.to_vec()).unwrap())
}

#[tokio::test]
async fn sequential_requests_share_one_connection() {
    let pki = test_pki();
    let server = spawn_server(pki.server.clone(), Mode::Serve).await;
    let egress = Egress::with_roots(allow(&server), Timeouts::DEFAULT, pki.roots);

    for _ in 0..3 {
        let response = egress
            .send(get(&format!("{}/", server.origin())), None)
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(body_text(response).await.unwrap(), "hello");
    }
    assert_eq!(
        server.accepted(),
        1,
        "the server saw more than one TCP connection"
    );
    assert_eq!(egress.connections_opened(), 1);
}

#[tokio::test]
async fn the_host_header_comes_from_the_uri_only() {
    let pki = test_pki();
    let server = spawn_server(pki.server.clone(), Mode::Serve).await;
    let egress = Egress::with_roots(allow(&server), Timeouts::DEFAULT, pki.roots);

    let mut request = get(&format!("{}/host", server.origin()));
    request
        .headers_mut()
        .insert(http::header::HOST, "evil.example".parse().unwrap());
    let response = egress.send(request, None).await.unwrap();
    assert_eq!(
        body_text(response).await.unwrap(),
        format!("127.0.0.1:{}", server.port)
    );
}

#[tokio::test]
async fn an_untrusted_certificate_is_a_certificate_error() {
    let pki = test_pki();
    let server = spawn_server(pki.server.clone(), Mode::Serve).await;
    // Trusts another CA only.
    let egress = Egress::with_roots(allow(&server), SHORT, test_pki().roots);

    let err = egress
        .send(get(&format!("{}/", server.origin())), None)
        .await
        .unwrap_err();
    assert!(matches!(err, HttpError::TlsCertificateError), "{err:?}");
}

#[tokio::test]
async fn a_certificate_for_another_name_is_a_certificate_error() {
    let pki = test_pki();
    let server = spawn_server(pki.server.clone(), Mode::Serve).await;
    // The certificate names localhost and 127.0.0.1, not 127.0.0.2 (still loopback).
    let hosts = AllowedHosts::parse(&format!("127.0.0.2:{}", server.port)).unwrap();
    let egress = Egress::with_roots(hosts, SHORT, pki.roots);

    let err = egress
        .send(get(&format!("https://127.0.0.2:{}/", server.port)), None)
        .await
        .unwrap_err();
    // Linux answers 127.0.0.2 on the loopback interface; elsewhere the connect fails.
    assert!(
        matches!(
            err,
            HttpError::TlsCertificateError | HttpError::ConnectionRefused
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_denied_host_never_opens_a_socket() {
    let pki = test_pki();
    let server = spawn_server(pki.server.clone(), Mode::Serve).await;
    let egress = Egress::with_roots(AllowedHosts::default(), SHORT, pki.roots);

    for uri in [
        format!("{}/", server.origin()),
        format!("http://127.0.0.1:{}/", server.port),
        format!("https://localhost:{}/", server.port),
        "https://example.com/".to_string(),
    ] {
        let err = egress.send(get(&uri), None).await.unwrap_err();
        assert!(
            matches!(err, HttpError::HttpRequestDenied),
            "{uri}: {err:?}"
        );
    }
    // Give a connection that should not exist every chance to show up.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(server.accepted(), 0);
    assert_eq!(egress.connections_opened(), 0);
    assert!(
        egress.client.get().is_none(),
        "the client was built for nothing"
    );
}

#[tokio::test]
async fn allowed_but_wrong_port_is_denied() {
    let pki = test_pki();
    let server = spawn_server(pki.server.clone(), Mode::Serve).await;
    let hosts = AllowedHosts::parse(&format!("127.0.0.1:{}", server.port + 1)).unwrap();
    let egress = Egress::with_roots(hosts, SHORT, pki.roots);
    let err = egress
        .send(get(&format!("{}/", server.origin())), None)
        .await
        .unwrap_err();
    assert!(matches!(err, HttpError::HttpRequestDenied), "{err:?}");
    assert_eq!(server.accepted(), 0);
}

#[tokio::test]
async fn a_server_that_never_speaks_hits_the_connect_timeout() {
    let pki = test_pki();
    let server = spawn_server(pki.server.clone(), Mode::Silent).await;
    let egress = Egress::with_roots(allow(&server), SHORT, pki.roots);

    let start = Instant::now();
    let err = egress
        .send(get(&format!("{}/", server.origin())), None)
        .await
        .unwrap_err();
    assert!(matches!(err, HttpError::ConnectionTimeout), "{err:?}");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(server.accepted(), 1);
}

#[tokio::test]
async fn a_server_that_never_answers_hits_the_first_byte_timeout() {
    let pki = test_pki();
    let server = spawn_server(pki.server.clone(), Mode::Serve).await;
    let egress = Egress::with_roots(allow(&server), SHORT, pki.roots);

    let start = Instant::now();
    let err = egress
        .send(get(&format!("{}/no-head", server.origin())), None)
        .await
        .unwrap_err();
    assert!(matches!(err, HttpError::ConnectionReadTimeout), "{err:?}");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn a_stalled_body_hits_the_between_bytes_timeout() {
    let pki = test_pki();
    let server = spawn_server(pki.server.clone(), Mode::Serve).await;
    let egress = Egress::with_roots(allow(&server), SHORT, pki.roots);

    let response = egress
        .send(get(&format!("{}/stall-body", server.origin())), None)
        .await
        .unwrap();
    let err = body_text(response).await.unwrap_err();
    assert!(matches!(err, HttpError::ConnectionReadTimeout), "{err:?}");
}

#[tokio::test]
async fn the_guest_may_shorten_but_not_lengthen_timeouts() {
    let pki = test_pki();
    let server = spawn_server(pki.server.clone(), Mode::Serve).await;
    let egress = Egress::with_roots(allow(&server), Timeouts::DEFAULT, pki.roots);

    let options = RequestOptions {
        first_byte_timeout: Some(Duration::from_millis(200)),
        ..Default::default()
    };
    let start = Instant::now();
    let err = egress
        .send(get(&format!("{}/no-head", server.origin())), Some(options))
        .await
        .unwrap_err();
    assert!(matches!(err, HttpError::ConnectionReadTimeout), "{err:?}");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );

    let long = RequestOptions {
        connect_timeout: Some(Duration::from_secs(3600)),
        first_byte_timeout: Some(Duration::from_millis(5)),
        between_bytes_timeout: None,
    };
    assert_eq!(
        SHORT.limited_by(Some(&long)),
        Timeouts {
            connect: SHORT.connect,
            first_byte: Duration::from_millis(5),
            between_bytes: SHORT.between_bytes,
        }
    );
    assert_eq!(SHORT.limited_by(None), SHORT);
}

#[tokio::test]
async fn a_closed_port_is_connection_refused() {
    let pki = test_pki();
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let hosts = AllowedHosts::parse(&format!("127.0.0.1:{port}")).unwrap();
    let egress = Egress::with_roots(hosts, SHORT, pki.roots);
    let err = egress
        .send(get(&format!("https://127.0.0.1:{port}/")), None)
        .await
        .unwrap_err();
    assert!(matches!(err, HttpError::ConnectionRefused), "{err:?}");
}

#[tokio::test]
async fn an_unknown_name_is_a_dns_error() {
    let pki = test_pki();
    // `.invalid` is reserved never to resolve (RFC 2606).
    let hosts = AllowedHosts::parse("no-such-host.invalid").unwrap();
    let egress = Egress::with_roots(hosts, Timeouts::DEFAULT, pki.roots);
    let err = egress
        .send(get("https://no-such-host.invalid/"), None)
        .await
        .unwrap_err();
    assert!(matches!(err, HttpError::DnsError { .. }), "{err:?}");
}

/// A loopback HTTP CONNECT proxy: `auth` is the `Proxy-Authorization` value it demands.
struct TestProxy {
    port: u16,
    /// Tunnels opened (CONNECT answered 200).
    tunnels: Arc<AtomicUsize>,
    /// The request lines received.
    requests: Arc<std::sync::Mutex<Vec<String>>>,
}

async fn spawn_proxy(auth: Option<&'static str>) -> TestProxy {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let tunnels = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (count, seen) = (tunnels.clone(), requests.clone());
    tokio::spawn(async move {
        loop {
            let (mut client, _) = listener.accept().await.unwrap();
            let (count, seen) = (count.clone(), seen.clone());
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if client.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let head = String::from_utf8(head).unwrap();
                let line = head.lines().next().unwrap().to_string();
                seen.lock().unwrap().push(line.clone());
                let given = head.lines().find_map(|l| {
                    l.strip_prefix("Proxy-Authorization: ")
                        .or_else(|| l.strip_prefix("proxy-authorization: "))
                });
                if auth.is_some() && given != auth {
                    let _ = client
                        .write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"test\"\r\nContent-Length: 0\r\n\r\n")
                        .await;
                    return;
                }
                let target = line.split(' ').nth(1).unwrap().to_string();
                let Ok(mut upstream) = TcpStream::connect(target).await else {
                    let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
                    return;
                };
                count.fetch_add(1, Ordering::SeqCst);
                client
                    .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .await
                    .unwrap();
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            });
        }
    });
    TestProxy {
        port,
        tunnels,
        requests,
    }
}

impl TestProxy {
    fn tunnels(&self) -> usize {
        self.tunnels.load(Ordering::SeqCst)
    }
}

fn proxy_env(vars: &[(&str, String)]) -> ProxyConfig {
    ProxyConfig::from_lookup(|name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
    })
}

/// base64("user:pa ss")
const USER_PASS: &str = "Basic dXNlcjpwYSBzcw==";

#[tokio::test]
async fn requests_go_through_one_reused_tunnel_with_credentials() {
    let pki = test_pki();
    let server = spawn_server(pki.server.clone(), Mode::Serve).await;
    let proxy = spawn_proxy(Some(USER_PASS)).await;
    let config = proxy_env(&[(
        "HTTPS_PROXY",
        format!("http://user:pa%20ss@127.0.0.1:{}", proxy.port),
    )]);
    let egress = Egress::with_proxy(allow(&server), Timeouts::DEFAULT, pki.roots, config);

    for _ in 0..3 {
        let response = egress
            .send(get(&format!("{}/host", server.origin())), None)
            .await
            .unwrap();
        assert_eq!(
            body_text(response).await.unwrap(),
            format!("127.0.0.1:{}", server.port)
        );
    }
    assert_eq!(proxy.tunnels(), 1);
    assert_eq!(server.accepted(), 1);
    assert_eq!(egress.connections_opened(), 1);
    assert_eq!(
        *proxy.requests.lock().unwrap(),
        [format!("CONNECT 127.0.0.1:{} HTTP/1.1", server.port)]
    );
}

#[tokio::test]
async fn no_proxy_destinations_connect_directly() {
    let pki = test_pki();
    let server = spawn_server(pki.server.clone(), Mode::Serve).await;
    let proxy = spawn_proxy(None).await;
    for no in [
        "127.0.0.1".to_string(),
        format!("example.com, 127.0.0.1:{}", server.port),
        "*".to_string(),
    ] {
        let config = proxy_env(&[
            ("https_proxy", format!("http://127.0.0.1:{}", proxy.port)),
            ("no_proxy", no),
        ]);
        let egress = Egress::with_proxy(allow(&server), SHORT, pki.roots.clone(), config);
        let response = egress
            .send(get(&format!("{}/", server.origin())), None)
            .await
            .unwrap();
        assert_eq!(body_text(response).await.unwrap(), "hello");
    }
    assert_eq!(proxy.tunnels(), 0);
    assert!(proxy.requests.lock().unwrap().is_empty());
}

#[tokio::test]
async fn the_allow_list_still_applies_behind_a_proxy() {
    let pki = test_pki();
    let proxy = spawn_proxy(None).await;
    let config = proxy_env(&[("HTTPS_PROXY", format!("http://127.0.0.1:{}", proxy.port))]);
    let egress = Egress::with_proxy(AllowedHosts::default(), SHORT, pki.roots, config);
    let err = egress
        .send(get("https://example.com/"), None)
        .await
        .unwrap_err();
    assert!(matches!(err, HttpError::HttpRequestDenied), "{err:?}");
    assert!(proxy.requests.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_proxy_refusing_the_tunnel_is_a_connection_failure() {
    let pki = test_pki();
    let server = spawn_server(pki.server.clone(), Mode::Serve).await;
    let proxy = spawn_proxy(Some(USER_PASS)).await;
    for url in [
        format!("http://127.0.0.1:{}", proxy.port),
        format!("http://user:wrong@127.0.0.1:{}", proxy.port),
    ] {
        let config = proxy_env(&[("HTTPS_PROXY", url)]);
        let egress = Egress::with_proxy(allow(&server), SHORT, pki.roots.clone(), config);
        let err = egress
            .send(get(&format!("{}/", server.origin())), None)
            .await
            .unwrap_err();
        assert!(matches!(err, HttpError::DestinationUnavailable), "{err:?}");
    }
    assert_eq!(proxy.tunnels(), 0);
    assert_eq!(server.accepted(), 0);
}

#[tokio::test]
async fn an_unreachable_proxy_is_a_refused_connection() {
    let pki = test_pki();
    let server = spawn_server(pki.server.clone(), Mode::Serve).await;
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let config = proxy_env(&[("HTTPS_PROXY", format!("http://127.0.0.1:{port}"))]);
    let egress = Egress::with_proxy(allow(&server), SHORT, pki.roots, config);
    let err = egress
        .send(get(&format!("{}/", server.origin())), None)
        .await
        .unwrap_err();
    assert!(matches!(err, HttpError::ConnectionRefused), "{err:?}");
    assert_eq!(server.accepted(), 0);
}

#[tokio::test]
async fn tls_through_the_tunnel_is_checked_against_the_destination() {
    let pki = test_pki();
    let server = spawn_server(pki.server.clone(), Mode::Serve).await;
    let proxy = spawn_proxy(None).await;
    let config = proxy_env(&[("HTTPS_PROXY", format!("http://127.0.0.1:{}", proxy.port))]);
    // Trusts another CA only.
    let egress = Egress::with_proxy(allow(&server), SHORT, test_pki().roots, config);
    let err = egress
        .send(get(&format!("{}/", server.origin())), None)
        .await
        .unwrap_err();
    assert!(matches!(err, HttpError::TlsCertificateError), "{err:?}");
    assert_eq!(proxy.tunnels(), 1);
}

#[tokio::test]
async fn an_unusable_proxy_fails_every_request_instead_of_bypassing_it() {
    let pki = test_pki();
    let server = spawn_server(pki.server.clone(), Mode::Serve).await;
    let config = proxy_env(&[("ALL_PROXY", "socks5://127.0.0.1:1080".to_string())]);
    let egress = Egress::with_proxy(allow(&server), SHORT, pki.roots, config);
    let err = egress
        .send(get(&format!("{}/", server.origin())), None)
        .await
        .unwrap_err();
    match err {
        HttpError::InternalError(Some(msg)) => {
            assert!(msg.contains("ALL_PROXY") && msg.contains("socks5"), "{msg}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(server.accepted(), 0);
}

#[tokio::test]
async fn a_proxy_that_never_answers_connect_is_bounded_by_the_connect_timeout() {
    let pki = test_pki();
    let server = spawn_server(pki.server.clone(), Mode::Serve).await;
    let silent = spawn_server(pki.server.clone(), Mode::Silent).await;
    let config = proxy_env(&[("HTTPS_PROXY", format!("http://127.0.0.1:{}", silent.port))]);
    let egress = Egress::with_proxy(allow(&server), SHORT, pki.roots, config);
    let start = Instant::now();
    let err = egress
        .send(get(&format!("{}/", server.origin())), None)
        .await
        .unwrap_err();
    assert!(matches!(err, HttpError::ConnectionTimeout), "{err:?}");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(silent.accepted(), 1);
    assert_eq!(server.accepted(), 0);
}
