//! HTTPS_PROXY / NO_PROXY: the plugin reaches the emulator through an HTTP CONNECT tunnel
//! (TLS end to end, one tunnel per invocation), skips it for NO_PROXY destinations, and
//! names HTTPS_PROXY when the proxy refuses or cannot be reached.

use crate::harness::*;
use alibabakms_emulator::Emulator;
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

/// base64("cosign:s3cret")
pub(crate) const AUTH: &str = "Basic Y29zaWduOnMzY3JldA==";

/// CONNECT request lines, each with the `Proxy-Authorization` value that came with it.
type Seen = Mutex<Vec<(String, Option<String>)>>;

/// A small HTTP CONNECT proxy on loopback, one thread per connection.
pub(crate) struct Proxy {
    port: u16,
    tunnels: Arc<AtomicUsize>,
    seen: Arc<Seen>,
}

impl Proxy {
    /// `auth`: the `Proxy-Authorization` value demanded (407 otherwise).
    pub(crate) fn start(auth: Option<&'static str>) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let tunnels = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (count, log) = (tunnels.clone(), seen.clone());
        thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let (count, log) = (count.clone(), log.clone());
                thread::spawn(move || serve(client, auth, &count, &log));
            }
        });
        Proxy {
            port,
            tunnels,
            seen,
        }
    }

    pub(crate) fn url(&self, userinfo: &str) -> String {
        format!("http://{userinfo}127.0.0.1:{}", self.port)
    }

    pub(crate) fn tunnels(&self) -> usize {
        self.tunnels.load(Ordering::SeqCst)
    }
}

fn serve(mut client: TcpStream, auth: Option<&str>, tunnels: &AtomicUsize, seen: &Seen) {
    // Reads the head line by line; the client sends nothing more before our answer.
    let mut reader = BufReader::new(client.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let request = line.trim_end().to_string();
    let mut given = None;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
            break;
        }
        if let Some((name, value)) = header.trim_end().split_once(": ") {
            if name.eq_ignore_ascii_case("proxy-authorization") {
                given = Some(value.to_string());
            }
        }
    }
    seen.lock().unwrap().push((request.clone(), given.clone()));
    if auth.is_some() && given.as_deref() != auth {
        let _ = client.write_all(
            b"HTTP/1.1 407 Proxy Authentication Required\r\n\
              Proxy-Authenticate: Basic realm=\"e2e\"\r\nContent-Length: 0\r\n\r\n",
        );
        return;
    }
    let target = request.split(' ').nth(1).unwrap_or_default().to_string();
    let Ok(upstream) = TcpStream::connect(&target) else {
        let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n");
        return;
    };
    tunnels.fetch_add(1, Ordering::SeqCst);
    client
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .unwrap();
    let (mut up_read, mut up_write) = (upstream.try_clone().unwrap(), upstream);
    let mut down_write = client.try_clone().unwrap();
    let upward = thread::spawn(move || {
        let _ = std::io::copy(&mut reader, &mut up_write);
        let _ = up_write.shutdown(Shutdown::Write);
    });
    let _ = std::io::copy(&mut up_read, &mut down_write);
    let _ = down_write.shutdown(Shutdown::Write);
    let _ = upward.join();
}

/// An emulator with an EC key behind `alias/proxied`, the base environment and the reference.
fn keyed() -> (Emulator, Vec<(String, String)>, String) {
    let emu = emulator();
    let key = emu.create_key("EC_P256").expect("key");
    emu.create_alias("alias/proxied", &key.key_id)
        .expect("alias");
    let env = env_for(&emu);
    let key_ref = format!("{}//alias/proxied", emu.endpoint());
    (emu, env, key_ref)
}

fn with(env: &[(String, String)], vars: &[(&str, String)]) -> Vec<(String, String)> {
    let mut env = env.to_vec();
    env.extend(vars.iter().map(|(k, v)| (k.to_string(), v.clone())));
    env
}

#[test]
fn requests_go_through_one_tunnel_with_basic_auth_and_tls_end_to_end() {
    let (emu, env, key) = keyed();
    let proxy = Proxy::start(Some(AUTH));
    let env = with(&env, &[("HTTPS_PROXY", proxy.url("cosign:s3cret@"))]);
    emu.reset_stats();

    let pem = pem_of(public_key(&env, &key).ok("publicKey")).to_string();
    assert!(pem.contains("BEGIN PUBLIC KEY"), "{pem}");
    // One tunnel, reused for both requests of the invocation.
    assert_eq!(proxy.tunnels(), 1);
    let stats = emu.stats();
    assert!(stats.total_requests >= 2, "{stats:?}");
    assert_eq!(stats.tcp_connections, 1, "{stats:?}");
    // The emulator terminated TLS itself: the proxy only carried the tunnel.
    assert_eq!(stats.tls_handshakes, 1, "{stats:?}");
    let seen = proxy.seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [(
            format!("CONNECT {} HTTP/1.1", emu.endpoint()),
            Some(AUTH.to_string())
        )]
    );

    // Signing through it works too: a new invocation, and every connection it opens (its
    // requests may run concurrently) is a tunnel.
    emu.reset_stats();
    let signed = sign_message(&env, &key, b"through the proxy");
    let sig = unb64(signed.ok("signMessage")["signature"].as_str().unwrap());
    assert!(openssl_verify(&pem, b"through the proxy", &sig, "sha256"));
    let stats = emu.stats();
    assert!(stats.tcp_connections >= 1, "{stats:?}");
    assert_eq!(
        proxy.tunnels() as u64,
        1 + stats.tcp_connections,
        "{stats:?}"
    );
    assert_eq!(stats.tls_handshakes, stats.tcp_connections, "{stats:?}");
}

#[test]
fn lowercase_and_all_proxy_variables_are_honoured() {
    let (_emu, env, key) = keyed();
    for var in ["https_proxy", "ALL_PROXY", "all_proxy"] {
        let proxy = Proxy::start(None);
        let env = with(&env, &[(var, proxy.url(""))]);
        public_key(&env, &key).ok("publicKey");
        assert_eq!(proxy.tunnels(), 1, "{var}");
    }
}

#[test]
fn no_proxy_destinations_connect_directly() {
    let (emu, env, key) = keyed();
    let proxy = Proxy::start(None);
    for no in [
        "127.0.0.1".to_string(),
        format!("example.com,{}", emu.endpoint()),
        "*".to_string(),
    ] {
        let env = with(
            &env,
            &[("HTTPS_PROXY", proxy.url("")), ("NO_PROXY", no.clone())],
        );
        emu.reset_stats();
        public_key(&env, &key).ok("publicKey");
        assert_eq!(emu.stats().tcp_connections, 1, "{no}");
        assert_eq!(emu.stats().tls_handshakes, 1, "{no}");
    }
    // Another port of the same host is not covered by a host:port entry.
    let other_port = format!("127.0.0.1:{}", emu.addr().port().wrapping_add(1));
    let env = with(
        &env,
        &[("HTTPS_PROXY", proxy.url("")), ("NO_PROXY", other_port)],
    );
    public_key(&env, &key).ok("publicKey");
    assert_eq!(proxy.tunnels(), 1);
}

#[test]
fn a_proxy_demanding_other_credentials_is_named_in_the_error() {
    let (emu, env, key) = keyed();
    let proxy = Proxy::start(Some(AUTH));
    emu.reset_stats();
    for userinfo in ["", "cosign:wrong@"] {
        let env = with(&env, &[("HTTPS_PROXY", proxy.url(userinfo))]);
        let r = public_key(&env, &key);
        let err = r.err();
        assert!(err.contains("could not connect"), "{err}");
        assert!(err.contains("proxy"), "{err}");
        assert!(
            r.stderr.contains("HTTPS_PROXY") && r.stderr.contains("407"),
            "{}",
            r.stderr
        );
        assert!(!r.stderr.contains("wrong"), "{}", r.stderr);
        let hint = if userinfo.is_empty() {
            "wants credentials"
        } else {
            "did not accept the credentials"
        };
        assert!(r.stderr.contains(hint), "{}", r.stderr);
    }
    assert_eq!(proxy.tunnels(), 0);
    assert_eq!(emu.stats().total_requests, 0);
}

#[test]
fn an_unreachable_proxy_is_named_in_the_error() {
    let (emu, env, key) = keyed();
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://127.0.0.1:{}", closed.local_addr().unwrap().port());
    drop(closed);
    emu.reset_stats();
    let env = with(&env, &[("HTTPS_PROXY", url.clone())]);
    let r = public_key(&env, &key);
    assert!(r.err().contains("connection refused"), "{}", r.err());
    assert!(
        r.stderr.contains("HTTPS_PROXY") && r.stderr.contains(&url),
        "{}",
        r.stderr
    );
    assert_eq!(emu.stats().tcp_connections, 0);
}

#[test]
fn an_untrusted_certificate_through_the_proxy_still_points_at_ssl_cert_file() {
    let (_emu, env, key) = keyed();
    let proxy = Proxy::start(None);
    let mut env = with(&env, &[("HTTPS_PROXY", proxy.url(""))]);
    let empty = std::env::temp_dir().join(format!("e2e-proxy-empty-{}.pem", std::process::id()));
    std::fs::write(&empty, "").unwrap();
    for (k, v) in env.iter_mut() {
        if k == "SSL_CERT_FILE" {
            *v = empty.display().to_string();
        }
    }
    let r = public_key(&env, &key);
    assert!(r.err().contains("SSL_CERT_FILE"), "{}", r.err());
    assert_eq!(proxy.tunnels(), 1);
    let _ = std::fs::remove_file(&empty);
}

#[test]
fn unsupported_proxies_are_refused_not_bypassed() {
    let (emu, env, key) = keyed();
    emu.reset_stats();
    let env = with(
        &env,
        &[("HTTPS_PROXY", "socks5://user:pw@127.0.0.1:1080".into())],
    );
    let r = public_key(&env, &key);
    assert!(r.err().contains("socks5"), "{}", r.err());
    assert!(r.stderr.contains("HTTPS_PROXY"), "{}", r.stderr);
    assert!(!r.stderr.contains("pw@") && !r.err().contains("pw@"));
    assert_eq!(emu.stats().tcp_connections, 0);
}

#[test]
fn print_sandbox_shows_the_proxy_without_credentials() {
    let out = std::process::Command::new(BIN)
        .arg("--print-sandbox")
        .env_clear()
        .env("HTTPS_PROXY", "http://cosign:s3cret@proxy.corp:3128")
        .env("NO_PROXY", "localhost,.internal")
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("proxy: http://proxy.corp:3128 (from HTTPS_PROXY"),
        "{text}"
    );
    assert!(
        text.contains("localhost,.internal  (from NO_PROXY)"),
        "{text}"
    );
    assert!(!text.contains("s3cret"), "{text}");
}
