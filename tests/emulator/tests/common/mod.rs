//! Test helpers: a small ACS3 signer written separately from the emulator's verifier (so a
//! shared mistake cannot make both agree), and a blocking HTTPS/1.1 client with keep-alive.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::SystemTime;

use hmac::{Hmac, Mac};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use sha2::{Digest, Sha256};

/// RFC 3986 encoding as the Go SDK produces it (`QueryEscape` + fix-ups).
pub fn rfc3986(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub fn iso8601(t: SystemTime) -> String {
    alibabakms_emulator::clock::format_iso8601(t)
}

/// What to sign; [`SignInput::new`] fills in the emulator's defaults.
#[derive(Clone)]
pub struct SignInput {
    pub method: String,
    pub host: String,
    pub action: String,
    pub version: String,
    pub params: Vec<(String, String)>,
    pub date: String,
    pub nonce: String,
    pub ak: String,
    pub secret: String,
    pub token: Option<String>,
    /// Sent and signed as `content-type` when set.
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

impl SignInput {
    /// POST, version 2016-01-20, now, a fresh nonce, the default AccessKey, empty body.
    pub fn new(host: &str, action: &str, params: &[(&str, &str)]) -> Self {
        SignInput {
            method: "POST".into(),
            host: host.into(),
            action: action.into(),
            version: "2016-01-20".into(),
            params: params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            date: iso8601(SystemTime::now()),
            nonce: random_nonce(),
            ak: alibabakms_emulator::DEFAULT_ACCESS_KEY_ID.into(),
            secret: alibabakms_emulator::DEFAULT_ACCESS_KEY_SECRET.into(),
            token: None,
            content_type: None,
            body: Vec::new(),
        }
    }
}

/// Returns (path_and_query, headers) signed like OA-GO-2.0.10: all x-acs-*, host and
/// content-type headers are signed; `user-agent`/`accept` are sent unsigned.
pub fn sign(input: &SignInput) -> (String, Vec<(String, String)>) {
    let mut params = input.params.clone();
    params.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let query = params
        .iter()
        .map(|(k, v)| format!("{k}={}", rfc3986(v)))
        .collect::<Vec<_>>()
        .join("&");
    let payload_hash = hex::encode(Sha256::digest(&input.body));
    let mut signed: Vec<(String, String)> = vec![
        ("host".into(), input.host.clone()),
        ("x-acs-action".into(), input.action.clone()),
        ("x-acs-version".into(), input.version.clone()),
        ("x-acs-date".into(), input.date.clone()),
        ("x-acs-signature-nonce".into(), input.nonce.clone()),
        ("x-acs-content-sha256".into(), payload_hash.clone()),
    ];
    if let Some(token) = &input.token {
        signed.push(("x-acs-accesskey-id".into(), input.ak.clone()));
        signed.push(("x-acs-security-token".into(), token.clone()));
    }
    if let Some(ct) = &input.content_type {
        signed.push(("content-type".into(), ct.clone()));
    }
    signed.sort();
    let canonical_headers: String = signed.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let signed_names = signed
        .iter()
        .map(|(k, _)| k.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let canonical = format!(
        "{}\n/\n{query}\n{canonical_headers}\n{signed_names}\n{payload_hash}",
        input.method
    );
    let sts = format!(
        "ACS3-HMAC-SHA256\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(input.secret.as_bytes()).unwrap();
    mac.update(sts.as_bytes());
    let sig = hex::encode(mac.finalize().into_bytes());
    let mut headers = signed;
    headers.push((
        "authorization".into(),
        format!(
            "ACS3-HMAC-SHA256 Credential={},SignedHeaders={signed_names},Signature={sig}",
            input.ak
        ),
    ));
    headers.push(("accept".into(), "application/json".into()));
    headers.push(("user-agent".into(), "emulator-test/1".into()));
    let path = if query.is_empty() {
        "/".to_string()
    } else {
        format!("/?{query}")
    };
    (path, headers)
}

pub fn random_nonce() -> String {
    use rand_core::RngCore;
    let mut b = [0u8; 16];
    rand_core::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

/// A parsed response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub json: serde_json::Value,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn code(&self) -> &str {
        self.json["Code"].as_str().unwrap_or("")
    }
}

/// One TLS connection, reused for every request (HTTP/1.1 keep-alive).
pub struct Client {
    stream: BufReader<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>,
    pub endpoint: String,
}

pub fn tls_config(ca_pem: &str) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

impl Client {
    /// Connects to `endpoint` (`127.0.0.1:PORT`) verifying the server against `ca_pem`.
    pub fn connect(endpoint: &str, ca_pem: &str) -> std::io::Result<Client> {
        Self::connect_named(endpoint, endpoint, ca_pem)
    }

    /// Connects to `addr` as a client does that resolved `endpoint` (`NAME:PORT`) to it: the
    /// name is sent (SNI), checked on the certificate and signed as the `host` header.
    pub fn connect_named(addr: &str, endpoint: &str, ca_pem: &str) -> std::io::Result<Client> {
        let host = endpoint.rsplit_once(':').unwrap().0;
        let name = ServerName::try_from(host.to_string()).unwrap();
        let conn = rustls::ClientConnection::new(tls_config(ca_pem), name)
            .map_err(std::io::Error::other)?;
        let tcp = TcpStream::connect(addr)?;
        let mut stream = rustls::StreamOwned::new(conn, tcp);
        // Complete the handshake now so certificate errors surface here.
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock)?;
        }
        Ok(Client {
            stream: BufReader::new(stream),
            endpoint: endpoint.to_string(),
        })
    }

    /// Gives up reading a reply after `timeout` (the client's own deadline).
    pub fn set_read_timeout(&self, timeout: Option<std::time::Duration>) {
        self.stream
            .get_ref()
            .sock
            .set_read_timeout(timeout)
            .unwrap();
    }

    /// Signs with the default AccessKey and sends, returning transport errors instead of
    /// panicking on them.
    pub fn try_call(&mut self, action: &str, params: &[(&str, &str)]) -> std::io::Result<Resp> {
        let input = SignInput::new(&self.endpoint, action, params);
        let (path, headers) = sign(&input);
        self.send(&input.method, &path, &headers, &input.body)
    }

    /// Sends a raw request (headers exactly as given; Content-Length added) and reads the reply.
    pub fn send(
        &mut self,
        method: &str,
        path_and_query: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> std::io::Result<Resp> {
        let mut req = format!("{method} {path_and_query} HTTP/1.1\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
        let s = self.stream.get_mut();
        s.write_all(req.as_bytes())?;
        s.write_all(body)?;
        s.flush()?;

        let mut status_line = String::new();
        self.stream.read_line(&mut status_line)?;
        let status: u16 = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line {status_line:?}")))?;
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            self.stream.read_line(&mut line)?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (k, v) = line.split_once(':').unwrap();
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
        let len: usize = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .map(|(_, v)| v.parse().unwrap())
            .expect("content-length");
        let mut buf = vec![0u8; len];
        self.stream.read_exact(&mut buf)?;
        let json = serde_json::from_slice(&buf)
            .unwrap_or_else(|e| panic!("non-JSON body ({e}): {}", String::from_utf8_lossy(&buf)));
        Ok(Resp {
            status,
            headers,
            json,
        })
    }

    /// Signs with the given credentials and the current time, then sends.
    pub fn call_as(
        &mut self,
        ak: &str,
        secret: &str,
        token: Option<&str>,
        date: SystemTime,
        action: &str,
        params: &[(&str, &str)],
    ) -> Resp {
        let mut input = SignInput::new(&self.endpoint, action, params);
        input.date = iso8601(date);
        input.ak = ak.into();
        input.secret = secret.into();
        input.token = token.map(str::to_string);
        self.send_signed(&input)
    }

    /// Signs `input` and sends it as signed.
    pub fn send_signed(&mut self, input: &SignInput) -> Resp {
        let (path, headers) = sign(input);
        self.send(&input.method, &path, &headers, &input.body)
            .unwrap()
    }

    /// Signs with the emulator's default AccessKey and the current time.
    pub fn call(&mut self, action: &str, params: &[(&str, &str)]) -> Resp {
        self.call_as(
            alibabakms_emulator::DEFAULT_ACCESS_KEY_ID,
            alibabakms_emulator::DEFAULT_ACCESS_KEY_SECRET,
            None,
            SystemTime::now(),
            action,
            params,
        )
    }
}

/// Reads the `endpoint=HOST:PORT` line a started `kms-emulator` prints first; returns the
/// endpoint and the rest of its stdout.
pub fn read_endpoint(
    child: &mut std::process::Child,
) -> (String, BufReader<std::process::ChildStdout>) {
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let endpoint = line
        .trim_end()
        .strip_prefix("endpoint=")
        .unwrap_or_else(|| panic!("first line {line:?}"))
        .to_string();
    (endpoint, stdout)
}
