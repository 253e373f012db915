//! Running the real plugin binary as cosign does: argv `v1 '<json>'`, the message on stdin,
//! one JSON object on stdout; with its wall time and peak RSS.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

/// The large message is this many bytes of xorshift output, repeated (as in sha256-soft).
pub const PATTERN_CHUNK: usize = 256 * 1024;

pub fn pattern() -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..PATTERN_CHUNK)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Writes `bytes` bytes of the pattern into `to` on a thread of its own, as cosign's
/// goroutine copies the message into the plugin's stdin.
pub fn feed_pipe(mut to: impl Write + Send + 'static, bytes: u64) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let chunk = pattern();
        let mut left = bytes;
        while left > 0 {
            let n = left.min(PATTERN_CHUNK as u64) as usize;
            if to.write_all(&chunk[..n]).is_err() {
                return; // the plugin stopped reading (it failed); its answer says why
            }
            left -= n as u64;
        }
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `--version`: process start and exit without the component, the floor of every call.
    Version,
    DefaultAlgorithm,
    SupportedAlgorithms,
    PublicKey,
    SignMessage,
    VerifySignature,
    /// createKey on an alias that exists: cosign's generate-key-pair run a second time.
    CreateKeyExisting,
    /// createKey on an alias that does not exist yet (a fresh alias every call): a new key.
    CreateKeyNew,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::Version => "--version (floor: process, no component)",
            Method::DefaultAlgorithm => "defaultAlgorithm",
            Method::SupportedAlgorithms => "supportedAlgorithms",
            Method::PublicKey => "publicKey",
            Method::SignMessage => "signMessage",
            Method::VerifySignature => "verifySignature",
            Method::CreateKeyExisting => "createKey (existing alias)",
            Method::CreateKeyNew => "createKey (new alias)",
        }
    }

    fn takes_message(self) -> bool {
        matches!(self, Method::SignMessage | Method::VerifySignature)
    }
}

pub struct Plugin {
    pub bin: PathBuf,
    pub env: Vec<(String, String)>,
    pub key_ref: String,
}

pub struct Outcome {
    pub stdout: String,
    pub started: Instant,
    pub wall: Duration,
    pub max_rss_kib: i64,
}

impl Outcome {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or(Value::Null)
    }

    pub fn ok(&self) -> bool {
        if self.stdout.starts_with("sigstore-kms-alibabakms ") {
            return true; // --version
        }
        let v = self.json();
        v.is_object() && v.get("errorMessage").is_none()
    }

    pub fn signature(&self) -> Option<Vec<u8>> {
        let b64 = self.json()["signMessage"]["signature"]
            .as_str()?
            .to_string();
        base64::engine::general_purpose::STANDARD.decode(b64).ok()
    }
}

impl Plugin {
    /// argv after the program name, as cosign's plugin client builds it.
    pub fn argv(&self, method: Method, signature: Option<&[u8]>) -> Vec<String> {
        let rpc = json!({"keyVersion": "", "remoteVerification": false});
        let message_options = json!({"rpcOptions": rpc, "messageOptions": {"digest": null}});
        let (name, body) = match method {
            Method::Version => {
                return vec!["sigstore-kms-alibabakms".into(), "--version".into()];
            }
            Method::DefaultAlgorithm => ("defaultAlgorithm", json!({})),
            Method::SupportedAlgorithms => ("supportedAlgorithms", json!({})),
            Method::PublicKey => (
                "publicKey",
                json!({"publicKeyOptions": {"rpcOptions": rpc}}),
            ),
            Method::SignMessage => ("signMessage", json!({"signOptions": message_options})),
            Method::VerifySignature => {
                let sig = base64::engine::general_purpose::STANDARD
                    .encode(signature.expect("verifySignature needs a signature"));
                (
                    "verifySignature",
                    json!({"signature": sig, "verifyOptions": message_options}),
                )
            }
            Method::CreateKeyExisting | Method::CreateKeyNew => {
                ("createKey", json!({"algorithm": "EC_P256"}))
            }
        };
        let key_ref = match method {
            Method::CreateKeyNew => {
                static NEW_ALIASES: AtomicU32 = AtomicU32::new(0);
                let n = NEW_ALIASES.fetch_add(1, Ordering::Relaxed);
                format!("{}-new-{}-{n}", self.key_ref, std::process::id())
            }
            _ => self.key_ref.clone(),
        };
        let mut request = json!({
            "initOptions": {
                "protocolVersion": "v1",
                "keyResourceID": key_ref,
                "hashFunc": 5,
                "rpcOptions": rpc,
            },
            "methodName": name,
        });
        request[name] = body;
        vec![
            "sigstore-kms-alibabakms".to_string(),
            "v1".to_string(),
            request.to_string(),
        ]
    }

    /// One cold call with `message` on stdin (for the methods that read it).
    pub fn run(&self, method: Method, message: &[u8], signature: Option<&[u8]>) -> Outcome {
        let message = if method.takes_message() {
            message.to_vec()
        } else {
            Vec::new()
        };
        self.spawn(method, signature, move |stdin| {
            std::thread::spawn(move || {
                let mut stdin = stdin;
                let _ = stdin.write_all(&message);
            })
        })
    }

    /// One cold call with `bytes` bytes of the pattern streamed into stdin.
    pub fn run_streamed(&self, method: Method, bytes: u64) -> Outcome {
        self.spawn(method, None, move |stdin| feed_pipe(stdin, bytes))
    }

    #[allow(clippy::zombie_processes)] // reaped by wait4 below
    fn spawn(
        &self,
        method: Method,
        signature: Option<&[u8]>,
        feed: impl FnOnce(std::process::ChildStdin) -> JoinHandle<()>,
    ) -> Outcome {
        let argv = self.argv(method, signature);
        let started = Instant::now();
        let mut child = Command::new(&self.bin)
            .args(&argv[1..])
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the plugin");
        let feeder = feed(child.stdin.take().expect("stdin"));
        let mut stdout = child.stdout.take().expect("stdout");
        let reader = std::thread::spawn(move || {
            let mut out = String::new();
            let _ = stdout.read_to_string(&mut out);
            out
        });
        // wait4, not Child::wait: it also reports the child's peak RSS. It reaps the child,
        // so `child` must not be waited on again.
        let mut status = 0;
        // SAFETY: rusage is plain data; wait4 fills it for our own child's pid.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let pid = child.id() as libc::pid_t;
        let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        let wall = started.elapsed();
        assert_eq!(rc, pid, "wait4: {}", std::io::Error::last_os_error());
        let _ = feeder.join();
        let stdout = reader.join().expect("stdout reader");
        Outcome {
            stdout,
            started,
            wall,
            max_rss_kib: usage.ru_maxrss,
        }
    }
}
