//! The component's exports: `wasi:cli/run` (the cosign plugin) and the typed `signer`
//! interface for hosts that embed the component. Both call the same `Signer`.

use crate::crypto::HashAlg;
use crate::retry::Deadline;
use crate::signer::{self, Message, Options, Signer, SignerError};
use crate::wasi_http::WasiHttp;
use std::io::Write;

wit_bindgen::generate!({
    path: "../wit",
    world: "plugin",
    with: {
        "wasi:io/error@0.2.12": wasip2::io::error,
        "wasi:io/poll@0.2.12": wasip2::io::poll,
        "wasi:io/streams@0.2.12": wasip2::io::streams,
        "wasi:clocks/monotonic-clock@0.2.12": wasip2::clocks::monotonic_clock,
        "wasi:clocks/wall-clock@0.2.12": wasip2::clocks::wall_clock,
        "wasi:random/random@0.2.12": wasip2::random::random,
        "wasi:cli/environment@0.2.12": wasip2::cli::environment,
        "wasi:http/types@0.2.12": wasip2::http::types,
        "wasi:http/outgoing-handler@0.2.12": wasip2::http::outgoing_handler,
        "wasi:cli/run@0.2.12": generate,
    },
});

use exports::sigstore::alibabakms::signer as wit;

/// The sandbox hands the component only the variables the credential chain reads.
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

struct Component;

/// The storage the host grants through the WIT `cache` import.
struct WitStore;

impl crate::cache::Store for WitStore {
    fn get(&self, key: &str) -> Option<Vec<u8>> {
        sigstore::alibabakms::cache::get(key)
    }
    fn set(&self, key: &str, value: &[u8]) {
        sigstore::alibabakms::cache::set(key, value)
    }
    fn delete(&self, key: &str) {
        sigstore::alibabakms::cache::delete(key)
    }
}

/// stdin, whose every wait ends by the call's deadline: a pipe that stays open without data,
/// or trickles, ends the call with an answer that says so instead of keeping it past the
/// point where cosign kills the plugin.
struct DeadlineStdin {
    stream: wasip2::io::streams::InputStream,
    read: u64,
    /// The plugin's own limit until the request names cosign's deadline.
    deadline: Deadline,
}

impl crate::protocol::Input for DeadlineStdin {
    fn bound_by(&mut self, deadline: &Deadline) {
        self.deadline = deadline.clone();
    }
}

impl DeadlineStdin {
    fn new() -> Self {
        let limit = std::env::var(crate::retry::TIMEOUT_VAR).ok();
        DeadlineStdin {
            stream: wasip2::cli::stdin::get_stdin(),
            read: 0,
            deadline: Deadline::default_limit(std::time::SystemTime::now(), limit.as_deref()),
        }
    }
}

impl std::io::Read for DeadlineStdin {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use wasip2::io::streams::StreamError;
        loop {
            match self.stream.read(buf.len() as u64) {
                Ok(bytes) if bytes.is_empty() => {}
                Ok(bytes) => {
                    buf[..bytes.len()].copy_from_slice(&bytes);
                    self.read += bytes.len() as u64;
                    return Ok(bytes.len());
                }
                Err(StreamError::Closed) => return Ok(0),
                Err(StreamError::LastOperationFailed(e)) => {
                    return Err(std::io::Error::other(e.to_debug_string()))
                }
            }
            let now = std::time::SystemTime::now();
            let deadline = &self.deadline;
            let left = deadline.remaining(now);
            let ready = self.stream.subscribe();
            if !left.is_zero() {
                let ns = left.as_nanos().min(u128::from(u64::MAX)) as u64;
                let timer = wasip2::clocks::monotonic_clock::subscribe_duration(ns);
                wasip2::io::poll::poll(&[&ready, &timer]);
            }
            if !ready.ready() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "the {} passed while waiting for the message on stdin ({} bytes read, \
                         stdin still open)",
                        deadline.label, self.read
                    ),
                ));
            }
        }
    }
}

impl exports::wasi::cli::run::Guest for Component {
    fn run() -> Result<(), ()> {
        crate::diag::init(std::env::var("SIGSTORE_ALIBABAKMS_DEBUG").ok().as_deref());
        crate::diag::line(|| {
            // Names only, never values: what the host's sandbox lets the component see.
            let names = std::env::vars_os()
                .map(|(name, _)| name.to_string_lossy().into_owned())
                .collect();
            let dirs = wasip2::filesystem::preopens::get_directories()
                .into_iter()
                .map(|(_, path)| path)
                .collect();
            crate::diag::sandbox_line(names, dirs)
        });
        let args: Vec<String> = std::env::args().collect();
        let signer = Signer::new(&WasiHttp, &env).with_store(&WitStore);
        let response = crate::protocol::handle(&args, &mut DeadlineStdin::new(), &signer);
        let mut out = std::io::stdout();
        // One write of one JSON object: stdout belongs to cosign's protocol.
        let written = out
            .write_all(response.json.as_bytes())
            .and_then(|_| out.flush());
        if response.ok && written.is_ok() {
            Ok(())
        } else {
            Err(())
        }
    }
}

impl From<SignerError> for wit::Error {
    fn from(e: SignerError) -> Self {
        match e {
            SignerError::InvalidInput(m) => wit::Error::InvalidInput(m),
            SignerError::Credentials(e) => wit::Error::Credentials(e.to_string()),
            SignerError::Transport(e) => wit::Error::Transport(e.to_string()),
            SignerError::VerificationFailed(m) => wit::Error::VerificationFailed(m),
            SignerError::Kms(e, advice) => wit::Error::Kms((
                wit::KmsError {
                    http_status: e.http_status,
                    code: e.code,
                    message: e.message,
                    request_id: e.request_id,
                },
                advice,
            )),
        }
    }
}

fn hash(h: wit::HashAlgorithm) -> HashAlg {
    match h {
        wit::HashAlgorithm::Sha256 => HashAlg::Sha256,
        wit::HashAlgorithm::Sha384 => HashAlg::Sha384,
        wit::HashAlgorithm::Sha512 => HashAlg::Sha512,
    }
}

fn options(o: wit::CallOptions) -> Options {
    Options {
        key_version: o.key_version,
        remote_verification: o.remote_verification,
    }
}

/// Reads a borrowed `wasi:io` input stream to its end.
struct StreamReader<'a>(&'a wasip2::io::streams::InputStream);

impl std::io::Read for StreamReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self.0.blocking_read(buf.len() as u64) {
            Ok(chunk) => {
                let n = chunk.len().min(buf.len());
                buf[..n].copy_from_slice(&chunk[..n]);
                Ok(n)
            }
            Err(wasip2::io::streams::StreamError::Closed) => Ok(0),
            Err(wasip2::io::streams::StreamError::LastOperationFailed(e)) => {
                Err(std::io::Error::other(e.to_debug_string()))
            }
        }
    }
}

fn with_message<T>(m: wit::Message<'_>, f: impl FnOnce(Message<'_>) -> T) -> T {
    match m {
        wit::Message::Stream(s) => f(Message::Stream(&mut StreamReader(s))),
        wit::Message::Digest(d) => f(Message::Digest(d)),
    }
}

impl wit::Guest for Component {
    fn default_algorithm() -> String {
        signer::DEFAULT_ALGORITHM.into()
    }

    fn supported_algorithms() -> Vec<String> {
        signer::supported_algorithms()
    }

    fn create_key(key_ref: String, algorithm: String) -> Result<String, wit::Error> {
        let s = Signer::new(&WasiHttp, &env).with_store(&WitStore);
        Ok(s.create_key(&key_ref, &algorithm)?.to_pem())
    }

    fn public_key(key_ref: String, o: wit::CallOptions) -> Result<String, wit::Error> {
        let s = Signer::new(&WasiHttp, &env).with_store(&WitStore);
        Ok(s.public_key(&key_ref, &options(o))?.to_pem())
    }

    fn sign(
        key_ref: String,
        m: wit::Message<'_>,
        h: wit::HashAlgorithm,
        o: wit::CallOptions,
    ) -> Result<Vec<u8>, wit::Error> {
        let s = Signer::new(&WasiHttp, &env).with_store(&WitStore);
        Ok(with_message(m, |m| {
            s.sign(&key_ref, m, hash(h), &options(o))
        })?)
    }

    fn verify(
        key_ref: String,
        m: wit::Message<'_>,
        h: wit::HashAlgorithm,
        signature: Vec<u8>,
        o: wit::CallOptions,
    ) -> Result<(), wit::Error> {
        let s = Signer::new(&WasiHttp, &env).with_store(&WitStore);
        Ok(with_message(m, |m| {
            s.verify(&key_ref, m, hash(h), &signature, &options(o))
        })?)
    }
}

export!(Component);
