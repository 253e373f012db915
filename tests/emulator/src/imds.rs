//! The ECS instance metadata service (reference §4.5), on its own plain-HTTP loopback
//! listener, as the real one is plain HTTP on 100.100.100.200:80.
//!
//! Strict about IMDSv2: `PUT /latest/api/token` with `X-aliyun-ecs-metadata-token-ttl-seconds`
//! (1..=21600) returns a session token; every `GET` without a valid, unexpired
//! `X-aliyun-ecs-metadata-token` is refused with 401 (the "hardened mode" of a real instance).
//! `GET /latest/meta-data/ram/security-credentials/` names the role attached
//! ([`crate::EmulatorConfig::ecs_role`]; 404 when none), and `.../<role>` returns fresh STS
//! credentials that the KMS side accepts with their token. With
//! [`crate::EmulatorConfig::imds_v1_only`] it is an instance without IMDSv2 instead: the token
//! request answers 404 and every `GET` is served without a token. One request per connection
//! (`Connection: close`). Requests are counted in [`crate::Stats::imds_requests`]. Bodies are
//! read by Content-Length only, as small HTTP/1.1 servers do: a chunked request is answered
//! 411 and counted in [`crate::Stats::imds_chunked_requests`].
//!
//! The same listener serves the `ALIBABA_CLOUD_CREDENTIALS_URI` endpoint when configured
//! ([`crate::EmulatorConfig::credentials_uri`]): `GET` [`CREDENTIALS_URI_PATH`] answers fresh
//! STS credentials, no token needed (reference §4.8).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use serde_json::json;

use crate::acs3_verify::Credential;
use crate::clock::format_iso8601;
use crate::server::{lock, Shared};
use crate::state::random_alnum;

const CREDENTIALS_PATH: &str = "/latest/meta-data/ram/security-credentials/";
/// Where the credentials-URI endpoint is served.
pub const CREDENTIALS_URI_PATH: &str = "/credentials-uri";
/// How long the credentials the service hands out last (a real instance: about 6 hours).
const CREDENTIALS_LIFETIME: Duration = Duration::from_secs(6 * 3600);

pub struct ImdsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

struct Imds {
    shared: Arc<Shared>,
    role: Option<String>,
    serve_uri: bool,
    /// No IMDSv2: the token request is refused and no token is required.
    v1_only: bool,
    tokens: Mutex<HashMap<String, SystemTime>>,
}

impl ImdsServer {
    pub fn start(
        shared: Arc<Shared>,
        role: Option<String>,
        serve_uri: bool,
        v1_only: bool,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let imds = Arc::new(Imds {
            shared,
            role,
            serve_uri,
            v1_only,
            tokens: Mutex::new(HashMap::new()),
        });
        let thread_stop = stop.clone();
        let thread = std::thread::Builder::new()
            .name(format!("imds-emulator-{}", addr.port()))
            .spawn(move || {
                for conn in listener.incoming() {
                    if thread_stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let imds = imds.clone();
                    std::thread::spawn(move || {
                        let _ = imds.serve(conn);
                    });
                }
            })?;
        Ok(ImdsServer {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for ImdsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Imds {
    fn serve(&self, conn: TcpStream) -> std::io::Result<()> {
        conn.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut reader = BufReader::new(conn.try_clone()?);
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let mut parts = line.split_whitespace();
        let (method, path) = (
            parts.next().unwrap_or("").to_string(),
            parts.next().unwrap_or("").to_string(),
        );
        if method.is_empty() {
            return Ok(());
        }
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h)? == 0 {
                break;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        lock(&self.shared.stats).imds_requests += 1;
        // Like many small HTTP/1.1 servers, this one reads bodies by Content-Length only: a
        // chunked body is refused rather than misread as the next request.
        let chunked = header("transfer-encoding").is_some();
        let (status, content_type, text) = if chunked {
            lock(&self.shared.stats).imds_chunked_requests += 1;
            (411, "text/plain", "Length Required".to_string())
        } else {
            let len: usize = header("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let mut body = vec![0u8; len.min(1 << 16)];
            reader.read_exact(&mut body)?;
            self.answer(&method, &path, &headers)
        };
        let mut conn = conn;
        write!(
            conn,
            "HTTP/1.1 {status} {}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
            reason(status),
            text.len()
        )?;
        conn.flush()
    }

    fn answer(
        &self,
        method: &str,
        path: &str,
        headers: &[(String, String)],
    ) -> (u16, &'static str, String) {
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let now = self.shared.clock.now();
        let plain = "text/plain";
        if path == "/latest/api/token" {
            if method != "PUT" {
                return (405, plain, String::new());
            }
            if self.v1_only {
                return (404, plain, String::new());
            }
            let ttl = header("x-aliyun-ecs-metadata-token-ttl-seconds")
                .and_then(|v| v.parse::<u64>().ok())
                .filter(|t| (1..=21600).contains(t));
            let Some(ttl) = ttl else {
                return (400, plain, "missing or invalid ttl".into());
            };
            let token = random_alnum(40);
            lock(&self.tokens).insert(token.clone(), now + Duration::from_secs(ttl));
            return (200, plain, token);
        }
        if method != "GET" {
            return (405, plain, String::new());
        }
        // A credentials URI may carry a query (often a secret); the path decides.
        let uri_path = path.split('?').next().unwrap_or("");
        if uri_path == CREDENTIALS_URI_PATH && self.serve_uri {
            return (200, "application/json", self.issue(now));
        }
        let valid = header("x-aliyun-ecs-metadata-token")
            .and_then(|t| lock(&self.tokens).get(t).copied())
            .is_some_and(|exp| exp > now);
        if !valid && !self.v1_only {
            return (401, plain, String::new());
        }
        let Some(rest) = path.strip_prefix(CREDENTIALS_PATH) else {
            return (404, plain, String::new());
        };
        let Some(role) = &self.role else {
            return (404, plain, String::new());
        };
        if rest.is_empty() {
            return (200, plain, role.clone());
        }
        if rest != role {
            return (404, plain, String::new());
        }
        (200, "application/json", self.issue(now))
    }

    /// Fresh STS credentials, registered with the KMS side.
    fn issue(&self, now: SystemTime) -> String {
        let expiration = now + CREDENTIALS_LIFETIME;
        let id = format!("STS.{}", random_alnum(21));
        let secret = random_alnum(30);
        let token = format!("CAIS{}", random_alnum(60));
        lock(&self.shared.state)
            .register_issued(Credential::sts(&id, &secret, &token, expiration), now);
        let body = json!({
            "AccessKeyId": id,
            "AccessKeySecret": secret,
            "SecurityToken": token,
            "Expiration": format_iso8601(expiration),
            "LastUpdated": format_iso8601(now),
            "Code": "Success",
        });
        body.to_string()
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        411 => "Length Required",
        _ => "Method Not Allowed",
    }
}
