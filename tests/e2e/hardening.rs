//! What an adversarial probe of the release binary broke, each case driven through the real
//! binary: files that are FIFOs or devices, a proxy password with a `/`, a credentials URI's
//! path, stdin and server bodies that trickle past cosign's deadline, server text that is
//! huge or carries terminal controls, a signature that verifies against nothing, a missing
//! HOME, and a connection that breaks while the alias is being created.

use crate::credentials_remote::{base_env, emulator_with_oidc, temp_dir, write, PROVIDER, ROLE};
use crate::harness::*;
use alibabakms_emulator::{ApiError, Fault};
use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

/// The tests give cosign's deadline 3 s ahead; the plugin answers 150 ms before it. An answer
/// later than a second after it would come after cosign killed the plugin (the old behaviour
/// was 2 s after it, or never).
const DEADLINE_SLACK: Duration = Duration::from_secs(4);

/// What stdin holds for a bounded run.
enum Stdin<'a> {
    Bytes(&'a [u8]),
    /// Open, and never written to or closed while the plugin runs.
    Idle,
}

/// Runs the binary as cosign would, killing it after `limit`: a run that has not answered by
/// then fails the test (the answer must come by cosign's deadline, not when stdin closes).
fn run_bounded(
    env: &[(String, String)],
    args: &[&str],
    stdin: Stdin<'_>,
    limit: Duration,
) -> (String, String, Duration) {
    let started = Instant::now();
    let mut child = Command::new(BIN)
        .args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let input = child.stdin.take().unwrap();
    let held = match stdin {
        Stdin::Bytes(b) => {
            let mut input = input;
            let _ = input.write_all(b);
            None
        }
        Stdin::Idle => Some(input),
    };
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{args:?} did not answer within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let elapsed = started.elapsed();
    drop(held);
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_no_secret(&stdout);
    assert_no_secret(&stderr);
    (stdout, stderr, elapsed)
}

/// A request for `method` with cosign's deadline `secs` from now.
fn with_deadline(key: &str, method: &str, body: serde_json::Value, secs: u64) -> String {
    let mut req: serde_json::Value = serde_json::from_str(&request(key, method, body, 5)).unwrap();
    req["initOptions"]["ctxDeadline"] =
        json!(rfc3339(SystemTime::now() + Duration::from_secs(secs)));
    req.to_string()
}

fn sign_body() -> serde_json::Value {
    json!({"signOptions": {"rpcOptions": rpc(), "messageOptions": {"digest": null}}})
}

fn public_key_body() -> serde_json::Value {
    json!({"publicKeyOptions": {"rpcOptions": rpc()}})
}

fn error_of(stdout: &str) -> String {
    let v: serde_json::Value =
        serde_json::from_str(stdout).unwrap_or_else(|e| panic!("{e}: {stdout:?}"));
    v["errorMessage"]
        .as_str()
        .unwrap_or_else(|| panic!("expected an errorMessage, got {v}"))
        .to_string()
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
}

fn with_key_of(emu: &alibabakms_emulator::Emulator, alias: &str) -> String {
    let key = format!("{}//alias/{alias}", emu.endpoint());
    create_key(&env_for(emu), &key, "EC_P256").ok("createKey");
    key
}

#[test]
fn an_oidc_profile_whose_token_file_is_a_fifo_hangs_nothing() {
    let root = temp_dir();
    let fifo = std::fs::canonicalize(&root).unwrap().join("token-pipe");
    mkfifo(&fifo);
    let home = root.join("home");
    write(
        &home.join(".aliyun/config.json"),
        &format!(
            r#"{{"current":"ci","profiles":[{{"name":"ci","mode":"OIDC","ram_role_arn":"{ROLE}","oidc_provider_arn":"{PROVIDER}","oidc_token_file":"{}"}}]}}"#,
            fifo.display()
        ),
    );
    let emu = emulator_with_oidc();
    let key = with_key_of(&emu, "fifo");
    let env = base_env(&emu, &home);
    let limit = Duration::from_secs(8);
    let (out, _, _) = run_bounded(
        &env,
        &["v1", &request(&key, "defaultAlgorithm", json!({}), 5)],
        Stdin::Bytes(b""),
        limit,
    );
    assert!(out.contains("EC_P256"), "{out}");
    let (out, _, _) = run_bounded(&env, &["--print-sandbox"], Stdin::Bytes(b""), limit);
    assert!(
        out.contains(&format!("{} (oidc_token_file", fifo.display()))
            && out.contains("not a regular file"),
        "{out}"
    );
    let (out, _, elapsed) = run_bounded(
        &env,
        &[
            "v1",
            &with_deadline(&key, "publicKey", public_key_body(), 3),
        ],
        Stdin::Bytes(b""),
        limit,
    );
    let e = error_of(&out);
    assert!(e.contains(&fifo.display().to_string()), "{e}");
    assert!(elapsed < DEADLINE_SLACK, "{elapsed:?}");
}

#[test]
fn an_ssl_cert_file_that_is_a_fifo_or_dev_zero_ends_by_the_deadline() {
    let emu = emulator();
    let key = with_key_of(&emu, "certfile");
    let fifo = temp_dir().join("ca-pipe");
    mkfifo(&fifo);
    for path in [fifo.display().to_string(), "/dev/zero".to_string()] {
        let mut env = env_for(&emu);
        env.retain(|(k, _)| k != "SSL_CERT_FILE");
        env.push(("SSL_CERT_FILE".into(), path.clone()));
        let (out, err, elapsed) = run_bounded(
            &env,
            &[
                "v1",
                &with_deadline(&key, "publicKey", public_key_body(), 3),
            ],
            Stdin::Bytes(b""),
            Duration::from_secs(8),
        );
        let e = error_of(&out);
        assert!(e.contains("certificate"), "{path}: {e}");
        assert!(
            err.contains(&path) && err.contains("not a regular file"),
            "{path}: {err}"
        );
        assert!(elapsed < DEADLINE_SLACK, "{path}: {elapsed:?}");
    }
}

#[test]
fn a_proxy_password_with_a_slash_is_refused_and_never_shown() {
    let emu = emulator();
    let key = with_key_of(&emu, "proxypass");
    for url in [
        "http://cosign:pa/ss@127.0.0.1:3128",
        "https://cosign:pa/ss@127.0.0.1:3128",
        "socks5h://cosign:pa/ss@127.0.0.1:1080",
    ] {
        let mut env = env_for(&emu);
        env.push(("HTTPS_PROXY".into(), url.into()));
        let run = public_key(&env, &key);
        let e = run.err().to_string();
        assert!(
            e.contains("HTTPS_PROXY") && e.contains("***@127.0.0.1"),
            "{e}"
        );
        let (sandbox, _, _) = run_bounded(
            &env,
            &["--print-sandbox"],
            Stdin::Bytes(b""),
            Duration::from_secs(8),
        );
        for shown in [&e, &run.stderr, &sandbox] {
            assert!(
                !shown.contains("pa/ss") && !shown.contains("cosign:"),
                "{url}: {shown}"
            );
        }
    }
    let mut env = env_for(&emu);
    env.push((
        "HTTPS_PROXY".into(),
        "http://cosign:pa/ss@127.0.0.1:3128".into(),
    ));
    let e = public_key(&env, &key).err().to_string();
    assert!(e.contains("percent-encoded"), "{e}");
}

#[test]
fn an_idle_stdin_ends_by_cosigns_deadline() {
    let emu = emulator();
    let key = with_key_of(&emu, "idle");
    let (out, _, elapsed) = run_bounded(
        &env_for(&emu),
        &["v1", &with_deadline(&key, "signMessage", sign_body(), 3)],
        Stdin::Idle,
        Duration::from_secs(8),
    );
    let e = error_of(&out);
    assert!(e.contains("stdin") && e.contains("deadline"), "{e}");
    assert!(elapsed < DEADLINE_SLACK, "{elapsed:?}");
}

#[test]
fn a_body_trickling_from_kms_ends_by_cosigns_deadline() {
    let emu = emulator();
    let key = with_key_of(&emu, "trickle");
    emu.inject(
        "ListKeyVersions",
        Fault::Trickle(Duration::from_millis(500)),
        10,
    );
    let (out, _, elapsed) = run_bounded(
        &env_for(&emu),
        &[
            "v1",
            &with_deadline(&key, "publicKey", public_key_body(), 3),
        ],
        Stdin::Bytes(b""),
        Duration::from_secs(10),
    );
    let e = error_of(&out);
    assert!(
        e.contains("ListKeyVersions") || e.contains("deadline"),
        "{e}"
    );
    assert!(elapsed < DEADLINE_SLACK, "{elapsed:?}");
}

#[test]
fn server_text_is_bounded_and_inert() {
    let emu = emulator();
    let key = with_key_of(&emu, "loud");
    let code = format!(
        "Forbidden.\u{1b}[2J\u{1b}]0;owned\u{7}{}",
        "X".repeat(60_000)
    );
    let message = format!("\u{202E}{}\r\nINFO fake line", "m".repeat(60_000));
    emu.inject(
        "ListKeyVersions",
        Fault::Error(ApiError::service(403, &code, message)),
        1,
    );
    let run = public_key(&env_for(&emu), &key);
    let e = run.err().to_string();
    assert!(e.len() < 2_000, "{} bytes", e.len());
    assert!(e.contains("\\u{1b}") && e.contains("\\u{202e}"), "{e}");
    for shown in [&e, &run.stderr] {
        assert!(
            !shown.contains(['\u{1b}', '\u{7}', '\u{202E}', '\r']),
            "{shown:?}"
        );
    }
}

#[test]
fn a_signature_that_does_not_verify_is_never_returned() {
    let emu = emulator();
    let key = with_key_of(&emu, "selfcheck");
    emu.inject("AsymmetricSign", Fault::BadSignature, 1);
    let run = sign_message(&env_for(&emu), &key, b"payload");
    let e = run.err().to_string();
    assert!(
        e.contains("does not verify") && e.contains("request id"),
        "{e}"
    );
    assert!(run.response.get("signMessage").is_none());
    // Without the fault the same call signs, and the signature verifies.
    signature_of(&sign_message(&env_for(&emu), &key, b"payload"));
}

/// The home directory in the account database, as the host reads it when HOME is unset.
fn system_home() -> PathBuf {
    let out = Command::new("getent")
        .args(["passwd", &unsafe { libc::geteuid() }.to_string()])
        .output()
        .expect("getent");
    let line = String::from_utf8(out.stdout).unwrap();
    PathBuf::from(line.trim().split(':').nth(5).expect("a passwd entry"))
}

#[test]
fn without_home_the_real_home_is_still_never_shared() {
    let home = std::fs::canonicalize(system_home()).unwrap();
    let file = home.join(format!(".kms-e2e-credentials-{}", std::process::id()));
    std::fs::write(&file, "[default]\ntype = access_key\n")
        .expect("the home directory is writable");
    let emu = emulator();
    let mut env = env_for(&emu);
    env.retain(|(k, _)| !k.starts_with("ALIBABA_CLOUD_ACCESS_KEY"));
    // env_clear: no HOME at all.
    env.push((
        "ALIBABA_CLOUD_CREDENTIALS_FILE".into(),
        file.display().to_string(),
    ));
    let (sandbox, _, _) = run_bounded(
        &env,
        &["--print-sandbox"],
        Stdin::Bytes(b""),
        Duration::from_secs(8),
    );
    let run = public_key(&env, &format!("{}//alias/x", emu.endpoint()));
    let _ = std::fs::remove_file(&file);
    assert!(
        sandbox.contains("not shared")
            && !sandbox.contains(&format!("{} (read-only", home.display())),
        "{sandbox}"
    );
    let e = run.err().to_string();
    assert!(
        e.contains("ALIBABA_CLOUD_CREDENTIALS_FILE") && e.contains("directory of its own"),
        "{e}"
    );
}

#[test]
fn a_connection_broken_on_create_alias_does_not_fail_generate_key_pair() {
    // The alias landed, the answer was lost; then the alias did not land at all.
    for fault in [Fault::ResetAfterProcessing, Fault::Reset] {
        let emu = emulator();
        let key = format!("{}//alias/blip", emu.endpoint());
        emu.inject("CreateAlias", fault.clone(), 1);
        let created = create_key(&env_for(&emu), &key, "EC_P256");
        let pem = pem_of(created.ok("createKey"));
        let stats = emu.stats();
        assert_eq!(stats.action("CreateKey"), 1, "{fault:?}");
        assert_eq!(
            stats.action("ScheduleKeyDeletion"),
            0,
            "{fault:?}: no key discarded"
        );
        // The alias names the key that was returned.
        assert_eq!(
            pem_of(public_key(&env_for(&emu), &key).ok("publicKey")),
            pem,
            "{fault:?}"
        );
    }
}
