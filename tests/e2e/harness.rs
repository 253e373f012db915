//! Runs the real `sigstore-kms-alibabakms` binary exactly as cosign does: argv `v1 '<json>'`,
//! the message on stdin, one JSON object expected on stdout. The environment is cleared first,
//! so each test states every variable the plugin sees.

use alibabakms_emulator::{Emulator, EmulatorConfig};
use base64::Engine;
use serde_json::{json, Value};
use std::io::Write;
use std::process::{Command, Stdio};

pub const AK_ID: &str = "LTAI5tE2eTestAccessKey";
pub const AK_SECRET: &str = "e2e-secret-Zm9vYmFyYmF6cXV4";
pub const STS_ID: &str = "STS.e2eTemporaryKey";
pub const STS_SECRET: &str = "sts-secret-value";
pub const STS_TOKEN: &str = "CAIS-e2e-sts-token-value";
pub const CLI_ID: &str = "LTAI5tCliProfileKey";
pub const CLI_SECRET: &str = "cli-profile-secret-value";
pub const INI_ID: &str = "LTAI5tIniFileKey";
pub const INI_SECRET: &str = "ini-file-secret-value";
/// The OIDC (RRSA) token the emulator's STS accepts.
pub const OIDC_TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJlMmUifQ.b2lkYy10b2tlbi1zaWc";
/// The CloudSSO access token an Aliyun CLI profile holds (the emulator's CloudSSO accepts it).
pub const SSO_ACCESS_TOKEN: &str = "eyJraWQiOiJzc28ifQ.cloud-sso-access-token-value";
/// The OAuth access and refresh tokens an Aliyun CLI profile holds.
pub const OAUTH_ACCESS_TOKEN: &str = "oauth-access-token-value-3f9a";
pub const OAUTH_REFRESH_TOKEN: &str = "oauth-refresh-token-value-c41d";
/// Values that must never appear on the plugin's stdout or stderr, in any run.
const SECRETS: &[&str] = &[
    AK_SECRET,
    STS_SECRET,
    STS_TOKEN,
    CLI_SECRET,
    INI_SECRET,
    OIDC_TOKEN,
    SSO_ACCESS_TOKEN,
    OAUTH_ACCESS_TOKEN,
    OAUTH_REFRESH_TOKEN,
];

pub const BIN: &str = env!("CARGO_BIN_EXE_sigstore-kms-alibabakms");

pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub fn unb64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .expect("base64 from the plugin")
}

pub fn emulator() -> Emulator {
    Emulator::start(
        EmulatorConfig::default()
            .no_credentials()
            .access_key(AK_ID, AK_SECRET),
    )
    .expect("emulator starts")
}

/// What one plugin run produced.
#[derive(Debug)]
pub struct Run {
    pub response: Value,
    pub stderr: String,
    pub status: i32,
}

impl Run {
    pub fn ok(&self, method: &str) -> &Value {
        assert!(
            self.response.get("errorMessage").is_none(),
            "{method} failed: {}\nstderr: {}",
            self.response,
            self.stderr
        );
        assert_eq!(self.status, 0, "exit status on success");
        &self.response[method]
    }

    pub fn err(&self) -> &str {
        assert_ne!(self.status, 0, "an error exits non-zero");
        self.response["errorMessage"]
            .as_str()
            .unwrap_or_else(|| panic!("expected an errorMessage, got {}", self.response))
    }
}

/// The environment a user on a laptop would have, pointed at the emulator.
pub fn env_for(emu: &Emulator) -> Vec<(String, String)> {
    vec![
        ("ALIBABA_CLOUD_ACCESS_KEY_ID".into(), AK_ID.into()),
        ("ALIBABA_CLOUD_ACCESS_KEY_SECRET".into(), AK_SECRET.into()),
        (
            "SSL_CERT_FILE".into(),
            emu.ca_pem_path().display().to_string(),
        ),
        ("SIGSTORE_ALIBABAKMS_ALLOWED_HOSTS".into(), emu.endpoint()),
        // Tests never reach the real metadata address (100.100.100.200); the ECS tests
        // remove this and point ALIBABA_CLOUD_IMDS_ENDPOINT at the emulator.
        ("ALIBABA_CLOUD_ECS_METADATA_DISABLED".into(), "true".into()),
        // Each run asks KMS, and nothing is written to the real ~/.cache: the cache tests
        // (cache.rs) and the real-cosign suite turn it on in a directory of their own.
        ("SIGSTORE_ALIBABAKMS_CACHE_TTL".into(), "0".into()),
    ]
}

/// Runs the plugin with raw argv (after the program name) and stdin.
pub fn run_raw(env: &[(String, String)], argv: &[&str], stdin: &[u8]) -> Run {
    run_program(&[BIN], env, argv, stdin)
}

/// Runs `program` (a command and its first arguments: the binary, or another runtime with
/// its runner) as cosign runs the plugin, and holds it to the same output rules.
pub fn run_program(program: &[&str], env: &[(String, String)], argv: &[&str], stdin: &[u8]) -> Run {
    let mut child = Command::new(program[0])
        .args(&program[1..])
        .args(argv)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the plugin");
    {
        let mut input = child.stdin.take().unwrap();
        // The plugin may answer before reading all of stdin (e.g. a bad key reference).
        let _ = input.write_all(stdin);
    }
    let out = child.wait_with_output().expect("plugin exits");
    let stdout = String::from_utf8(out.stdout).expect("stdout is UTF-8");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    // stdout must be exactly one JSON object and nothing else.
    let response: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!("stdout is not one JSON value ({e}): {stdout:?}\nstderr: {stderr}")
    });
    assert!(
        response.is_object(),
        "stdout is not a JSON object: {stdout}"
    );
    assert_no_secret(&stdout);
    assert_no_secret(&stderr);
    Run {
        response,
        stderr,
        status: out.status.code().unwrap_or(-1),
    }
}

/// Runs one protocol method through `program` (see [`run_program`]), encoded as cosign's
/// cliplugin client encodes it.
pub fn call_through(
    program: &[&str],
    env: &[(String, String)],
    key: &str,
    method: &str,
    args: Value,
    stdin: &[u8],
) -> Run {
    let mut request = json!({
        "initOptions": {"protocolVersion": "v1", "keyResourceID": format!("alibabakms://{key}"), "hashFunc": 5},
        "methodName": method,
    });
    request[method] = args;
    run_program(program, env, &["v1", &request.to_string()], stdin)
}

/// Another runtime of the plugin (`program`) creates an EC key, signs `message`, and
/// verifies; the signature is checked by OpenSSL and by this build's binary (with
/// `native_env`), and a signature over another message is refused.
pub fn create_sign_verify_through(
    program: &[&str],
    env: &[(String, String)],
    native_env: &[(String, String)],
    key: &str,
    message: &[u8],
) {
    let call = |method: &str, args: Value, stdin: &[u8]| {
        call_through(program, env, key, method, args, stdin)
    };
    let created = call("createKey", json!({"algorithm": "EC_P256"}), b"");
    let pem = pem_of(created.ok("createKey"));
    let signed = call("signMessage", json!({"signOptions": {}}), message);
    let signature = unb64(signed.ok("signMessage")["signature"].as_str().unwrap());
    assert!(openssl_verify(&pem, message, &signature, "sha256"));
    verify_signature(native_env, key, message, &signature).ok("verifySignature");
    let args = json!({"signature": b64(&signature), "verifyOptions": {}});
    call("verifySignature", args.clone(), message).ok("verifySignature");
    let wrong = call("verifySignature", args, b"another message");
    assert!(wrong.err().contains("invalid signature"), "{}", wrong.err());
}

/// Runs one protocol method the way cosign's cliplugin client encodes it.
pub fn call(
    env: &[(String, String)],
    key_ref: &str,
    method: &str,
    body: Value,
    stdin: &[u8],
) -> Run {
    let json = request(key_ref, method, body, 5);
    run_raw(env, &["v1", &json], stdin)
}

pub fn request(key_ref: &str, method: &str, body: Value, hash_func: u64) -> String {
    let mut args = json!({
        "initOptions": {
            "protocolVersion": "v1",
            "keyResourceID": key_ref,
            "hashFunc": hash_func,
            "rpcOptions": {"keyVersion": "", "remoteVerification": false}
        },
        "methodName": method,
    });
    args[method] = body;
    args.to_string()
}

pub fn rpc() -> Value {
    json!({"keyVersion": "", "remoteVerification": false})
}

pub fn create_key(env: &[(String, String)], key_ref: &str, algorithm: &str) -> Run {
    call(
        env,
        key_ref,
        "createKey",
        json!({"algorithm": algorithm}),
        b"",
    )
}

pub fn public_key(env: &[(String, String)], key_ref: &str) -> Run {
    call(
        env,
        key_ref,
        "publicKey",
        json!({"publicKeyOptions": {"rpcOptions": rpc()}}),
        b"",
    )
}

/// What a sign or verify call covers: the message on stdin, or a digest in the JSON.
#[derive(Clone, Copy)]
pub enum Input<'a> {
    Message(&'a [u8]),
    Digest(&'a [u8]),
}

/// Per-call options, as cosign's rpcOptions carry them.
#[derive(Clone, Default)]
pub struct Opts {
    pub key_version: String,
    pub remote: bool,
}

/// signMessage or verifySignature (`signature: Some`) with Go's crypto.Hash number `hash`,
/// encoded as cosign's client does: hashFunc in initOptions and, with a digest, in
/// messageOptions too.
pub fn sign_or_verify(
    env: &[(String, String)],
    key_ref: &str,
    input: Input<'_>,
    hash: u64,
    signature: Option<&[u8]>,
    opts: &Opts,
) -> Run {
    let rpc = json!({"keyVersion": opts.key_version, "remoteVerification": opts.remote});
    let (message_options, stdin) = match input {
        Input::Message(m) => (json!({"digest": null}), m),
        Input::Digest(d) => (json!({"digest": b64(d), "hashFunc": hash}), &b""[..]),
    };
    let call_options = json!({"rpcOptions": rpc, "messageOptions": message_options});
    let (method, body) = match signature {
        None => ("signMessage", json!({"signOptions": call_options})),
        Some(sig) => (
            "verifySignature",
            json!({"signature": b64(sig), "verifyOptions": call_options}),
        ),
    };
    run_raw(env, &["v1", &request(key_ref, method, body, hash)], stdin)
}

/// The signature bytes of a successful signMessage.
pub fn signature_of(run: &Run) -> Vec<u8> {
    unb64(
        run.ok("signMessage")["signature"]
            .as_str()
            .expect("signature"),
    )
}

pub fn sign_message(env: &[(String, String)], key_ref: &str, message: &[u8]) -> Run {
    sign_or_verify(
        env,
        key_ref,
        Input::Message(message),
        5,
        None,
        &Opts::default(),
    )
}

pub fn sign_digest(env: &[(String, String)], key_ref: &str, digest: &[u8], hash_func: u64) -> Run {
    sign_or_verify(
        env,
        key_ref,
        Input::Digest(digest),
        hash_func,
        None,
        &Opts::default(),
    )
}

pub fn verify_signature(
    env: &[(String, String)],
    key_ref: &str,
    message: &[u8],
    signature: &[u8],
) -> Run {
    sign_or_verify(
        env,
        key_ref,
        Input::Message(message),
        5,
        Some(signature),
        &Opts::default(),
    )
}

/// The PEM text inside a createKey/publicKey answer.
pub fn pem_of(answer: &Value) -> String {
    String::from_utf8(unb64(
        answer["publicKeyPEM"].as_str().expect("publicKeyPEM"),
    ))
    .unwrap()
}

/// Verifies like `cosign verify --key cosign.pub` does offline, with an independent
/// implementation: OpenSSL's command line.
pub fn openssl_verify(pem: &str, message: &[u8], signature: &[u8], digest: &str) -> bool {
    let dir = tempdir();
    let (k, m, s) = (dir.join("cosign.pub"), dir.join("msg"), dir.join("sig"));
    std::fs::write(&k, pem).unwrap();
    std::fs::write(&m, message).unwrap();
    std::fs::write(&s, signature).unwrap();
    let out = Command::new("openssl")
        .args(["dgst", &format!("-{digest}"), "-verify"])
        .arg(&k)
        .arg("-signature")
        .arg(&s)
        .arg(&m)
        .output()
        .expect("openssl is installed");
    let _ = std::fs::remove_dir_all(&dir);
    out.status.success()
}

/// Verifies a signature over a digest (no message), as a verifier handed only the digest does.
pub fn openssl_verify_digest(pem: &str, digest: &[u8], signature: &[u8]) -> bool {
    let dir = tempdir();
    let (k, d, s) = (dir.join("cosign.pub"), dir.join("digest"), dir.join("sig"));
    std::fs::write(&k, pem).unwrap();
    std::fs::write(&d, digest).unwrap();
    std::fs::write(&s, signature).unwrap();
    let out = Command::new("openssl")
        .args(["pkeyutl", "-verify", "-pubin", "-inkey"])
        .arg(&k)
        .arg("-in")
        .arg(&d)
        .arg("-sigfile")
        .arg(&s)
        .output()
        .expect("openssl is installed");
    let _ = std::fs::remove_dir_all(&dir);
    out.status.success()
}

pub fn tempdir() -> std::path::PathBuf {
    let mut bytes = [0u8; 8];
    getrandom(&mut bytes);
    let dir = std::env::temp_dir().join(format!("kms-e2e-{}", hex::encode(bytes)));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn getrandom(buf: &mut [u8]) {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(buf)
        .unwrap();
}

/// No credential value of the test setups appears in `text`.
pub fn assert_no_secret(text: &str) {
    for secret in SECRETS {
        assert!(!text.contains(secret), "a secret leaked");
    }
}

/// Every request the emulator received carried its body with a Content-Length (or, for a
/// GET, had no body at all): none was chunked, as Alibaba's official SDKs never send one.
pub fn assert_no_chunked(emu: &Emulator) {
    let requests = emu.requests();
    let chunked: Vec<String> = requests
        .iter()
        .filter(|r| r.framing() == alibabakms_emulator::Framing::Chunked)
        .map(|r| format!("{} {}", r.method, r.action))
        .collect();
    assert!(chunked.is_empty(), "chunked requests: {chunked:?}");
    assert_eq!(
        emu.stats().imds_chunked_requests,
        0,
        "chunked metadata requests"
    );
}

/// RFC 3339 with nanoseconds, as cosign sends `ctxDeadline`.
pub fn rfc3339(t: std::time::SystemTime) -> String {
    let nanos = t
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let whole = alibabakms_emulator::clock::format_iso8601(t);
    format!("{}.{nanos:09}Z", whole.trim_end_matches('Z'))
}

/// The argv (after the program name) of a captured call, pointed at `emu` and with its
/// passed `ctxDeadline`s moved into the future.
pub fn replayed_argv(call: &Value, emu: &Emulator) -> Vec<String> {
    call["argv"].as_array().expect("argv")[1..]
        .iter()
        .map(|a| {
            a.as_str()
                .expect("argv strings")
                .replace("kms.cn-hangzhou.aliyuncs.com", &emu.endpoint())
        })
        .map(|a| crate::flow::future_deadlines(&a).unwrap_or(a))
        .collect()
}

/// What `--print-sandbox` prints for `env` (it must succeed, and show no secret).
pub fn print_sandbox(env: &[(String, String)]) -> String {
    let out = Command::new(BIN)
        .arg("--print-sandbox")
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("run --print-sandbox");
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).expect("UTF-8");
    assert_no_secret(&text);
    text
}

/// `program` run in a mount namespace of its own whose `/etc/hosts` maps `names` to
/// 127.0.0.1: how a test reaches the emulator under a real host name (a KMS instance's
/// dedicated gateway, which the plugin tells by name) without touching the machine's
/// resolver. Needs unprivileged user namespaces (`unshare -rm`, util-linux).
pub fn with_hosts(names: &[&str], program: &[&str]) -> Vec<String> {
    let dir = tempdir();
    let hosts = dir.join("hosts");
    let lines: String = names.iter().map(|n| format!("127.0.0.1 {n}\n")).collect();
    std::fs::write(&hosts, format!("127.0.0.1 localhost\n{lines}")).unwrap();
    let tool = |name: &str| {
        ["/usr/bin", "/bin"]
            .iter()
            .map(|d| std::path::Path::new(d).join(name))
            .find(|p| p.exists())
            .unwrap_or_else(|| panic!("{name} (util-linux) is needed to map test host names"))
            .display()
            .to_string()
    };
    let script = format!("{} --bind \"$0\" /etc/hosts && exec \"$@\"", tool("mount"));
    let mut argv = vec![
        tool("unshare"),
        "-rm".into(),
        "/bin/sh".into(),
        "-c".into(),
        script,
    ];
    argv.push(hosts.display().to_string());
    argv.extend(program.iter().map(|p| p.to_string()));
    let probe = Command::new(&argv[0])
        .args(&argv[1..6])
        .arg("/bin/true")
        .output()
        .expect("run unshare");
    assert!(
        probe.status.success(),
        "mapping test host names needs unprivileged user and mount namespaces \
         (`unshare -rm`): {}",
        String::from_utf8_lossy(&probe.stderr)
    );
    argv
}
