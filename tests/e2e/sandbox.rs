//! The sandbox's limits, seen through the real binary: the component cannot follow a link out
//! of a directory it was given, sees none of the host's other environment variables, and
//! never follows a redirect to a host it may not reach.

use crate::credentials_remote::{temp_dir, write};
use crate::harness::*;
use alibabakms_emulator::{Emulator, EmulatorConfig};
use std::collections::BTreeSet;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

fn emulator_with_ini_key() -> Emulator {
    Emulator::start(
        EmulatorConfig::default()
            .no_credentials()
            .access_key(AK_ID, AK_SECRET)
            .access_key(INI_ID, INI_SECRET),
    )
    .unwrap()
}

/// No AccessKey variables, an empty HOME.
fn keyless_env(emu: &Emulator, home: &Path) -> Vec<(String, String)> {
    let mut env = env_for(emu);
    env.retain(|(k, _)| !k.starts_with("ALIBABA_CLOUD_ACCESS_KEY"));
    env.push(("HOME".into(), home.display().to_string()));
    env
}

/// A credentials file in a directory the sandbox does not share, reached through a link in
/// one it does (the CLI config's directory, `/credentials/aliyun-cli` inside): the component
/// cannot open it, says which variable and path it could not read, and never uses the key.
#[test]
fn a_link_out_of_a_shared_directory_is_not_followed() {
    let emu = emulator_with_ini_key();
    let key = format!("{}//alias/escape", emu.endpoint());
    create_key(&env_for(&emu), &key, "EC_P256").ok("createKey");
    emu.reset_stats();

    let base = temp_dir();
    let outside = base.join("not-shared/credentials");
    write(
        &outside,
        &format!("[default]\ntype = access_key\naccess_key_id = {INI_ID}\naccess_key_secret = {INI_SECRET}\n"),
    );
    let shared = base.join("shared");
    // A CLI config without a usable profile: its directory is shared, and the chain goes on.
    write(
        &shared.join("config.json"),
        r#"{"current":"none","profiles":[]}"#,
    );
    std::os::unix::fs::symlink(&outside, shared.join("absolute-link")).unwrap();
    std::os::unix::fs::symlink("../not-shared/credentials", shared.join("relative-link")).unwrap();
    let dotdot = format!(
        "/credentials/aliyun-cli/../..{}",
        outside.display() // absolute: `..` climbs to `/` of the sandbox first
    );
    for inside in [
        "/credentials/aliyun-cli/absolute-link".to_string(),
        "/credentials/aliyun-cli/relative-link".to_string(),
        dotdot,
    ] {
        let mut env = keyless_env(&emu, &base.join("home"));
        env.push((
            "ALIBABA_CLOUD_CONFIG_FILE".into(),
            shared.join("config.json").display().to_string(),
        ));
        env.push(("ALIBABA_CLOUD_CREDENTIALS_FILE".into(), inside.clone()));
        let run = public_key(&env, &key);
        let e = run.err();
        assert!(
            e.contains(&format!(
                "credentials file: cannot read ALIBABA_CLOUD_CREDENTIALS_FILE={inside}"
            )),
            "{e}"
        );
        assert!(!e.contains(INI_ID), "{e}");
        assert_eq!(
            emu.stats().total_requests,
            0,
            "{inside}: nothing was signed"
        );
    }

    // Control: the same file is a valid credentials file. Named by the user on the host, the
    // host shares its directory (the user's own grant), and it signs.
    let mut env = keyless_env(&emu, &base.join("home"));
    env.push((
        "ALIBABA_CLOUD_CREDENTIALS_FILE".into(),
        outside.display().to_string(),
    ));
    public_key(&env, &key).ok("publicKey");
    assert!(emu.stats().total_requests > 0);
}

/// The names (never the values) in the sandbox line of a debug run.
fn visible_env(stderr: &str) -> (BTreeSet<String>, String) {
    let line = stderr
        .lines()
        .find_map(|l| {
            l.strip_prefix("sigstore-kms-alibabakms: sandbox: environment variables visible: ")
        })
        .unwrap_or_else(|| panic!("no sandbox line:\n{stderr}"));
    let (names, dirs) = line.split_once("; directories: ").expect("two parts");
    (
        names.split(", ").map(str::to_string).collect(),
        dirs.to_string(),
    )
}

#[test]
fn only_listed_variables_are_visible_to_the_component() {
    let emu = emulator();
    let key = format!("{}//alias/env", emu.endpoint());
    create_key(&env_for(&emu), &key, "EC_P256").ok("createKey");
    let home = temp_dir();
    write(
        &home.join(".aliyun/config.json"),
        r#"{"current":"none","profiles":[]}"#,
    );
    let mut env = env_for(&emu);
    env.extend(
        [
            ("SIGSTORE_ALIBABAKMS_DEBUG", "1"),
            ("AWS_SECRET_ACCESS_KEY", "aws-canary-value-Qx7"),
            ("PATH", "/usr/bin:/bin"),
            ("SIGSTORE_E2E_CANARY", "canary-value-Zk3"),
            ("ALIBABA_CLOUD_ROLE_SESSION_NAME", "visible-session"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    env.push(("HOME".into(), home.display().to_string()));
    let run = sign_message(&env, &key, b"m");
    run.ok("signMessage");
    let (names, dirs) = visible_env(&run.stderr);
    let expected: BTreeSet<String> = [
        "ALIBABA_CLOUD_ACCESS_KEY_ID",
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
        "ALIBABA_CLOUD_ECS_METADATA_DISABLED",
        "ALIBABA_CLOUD_ROLE_SESSION_NAME",
        "SIGSTORE_ALIBABAKMS_DEBUG",
        "SIGSTORE_ALIBABAKMS_CACHE_TTL",
        // The CLI config found under HOME, as the component sees it.
        "ALIBABA_CLOUD_CONFIG_FILE",
    ]
    .map(str::to_string)
    .into();
    assert_eq!(names, expected, "{}", run.stderr);
    for hidden in [
        "AWS_SECRET_ACCESS_KEY",
        "HOME",
        "PATH",
        "SIGSTORE_E2E_CANARY",
        "SSL_CERT_FILE",
        "SIGSTORE_ALIBABAKMS_ALLOWED_HOSTS",
    ] {
        assert!(!names.contains(hidden), "{hidden} is visible");
    }
    assert_eq!(dirs, "/credentials/aliyun-cli", "{}", run.stderr);
    for value in [
        "aws-canary-value-Qx7",
        "canary-value-Zk3",
        "visible-session",
        "/usr/bin",
    ] {
        assert!(!run.stderr.contains(value), "a value is shown: {value}");
    }

    // Nothing granted: no directory at all.
    let mut env = env_for(&emu);
    env.push(("SIGSTORE_ALIBABAKMS_DEBUG".into(), "1".into()));
    let run = public_key(&env, &key);
    run.ok("publicKey");
    assert_eq!(visible_env(&run.stderr).1, "(none)");
}

/// An HTTPS server (trusted through its own test CA) that answers every request with
/// `status` and a `Location` pointing at `location`.
struct Redirector {
    port: u16,
    requests: Arc<AtomicUsize>,
    ca_path: std::path::PathBuf,
}

impl Redirector {
    fn start(status: &'static str, location: String) -> Redirector {
        let tls = alibabakms_emulator::tls::generate(&[]).unwrap();
        let ca_path = temp_dir().join("ca.pem");
        std::fs::write(&ca_path, &tls.ca_pem).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(AtomicUsize::new(0));
        let (count, config) = (requests.clone(), tls.server_config);
        std::thread::spawn(move || {
            for tcp in listener.incoming().flatten() {
                let conn = rustls::ServerConnection::new(config.clone()).unwrap();
                let mut stream = rustls::StreamOwned::new(conn, tcp);
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match stream.read(&mut byte) {
                        Ok(1) => head.push(byte[0]),
                        _ => break,
                    }
                }
                if !head.ends_with(b"\r\n\r\n") {
                    continue;
                }
                count.fetch_add(1, Ordering::SeqCst);
                let answer = format!(
                    "HTTP/1.1 {status}\r\nLocation: {location}\r\nContent-Length: 0\r\n\
                     Connection: close\r\n\r\n"
                );
                let _ = stream.write_all(answer.as_bytes());
                let _ = stream.flush();
                stream.conn.send_close_notify();
                let _ = stream.flush();
            }
        });
        Redirector {
            port,
            requests,
            ca_path,
        }
    }
}

#[test]
fn redirects_are_not_followed() {
    for status in ["302 Found", "307 Temporary Redirect"] {
        // The redirect's target: a listener the sandbox does not allow; it must see nothing.
        let target = TcpListener::bind("127.0.0.1:0").unwrap();
        target.set_nonblocking(true).unwrap();
        let target_port = target.local_addr().unwrap().port();
        let server =
            Redirector::start(status, format!("https://127.0.0.1:{target_port}/?stolen=1"));
        let endpoint = format!("127.0.0.1:{}", server.port);
        let env: Vec<(String, String)> = [
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", AK_ID),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", AK_SECRET),
            ("SSL_CERT_FILE", &server.ca_path.display().to_string()),
            ("SIGSTORE_ALIBABAKMS_ALLOWED_HOSTS", &endpoint),
            ("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .into();
        let run = public_key(&env, &format!("{endpoint}//alias/moved"));
        let e = run.err();
        let code = &status[..3];
        assert!(
            e.contains(&format!(
                "the KMS endpoint {endpoint} answered ListKeyVersions with a redirect (HTTP {code} to https://127.0.0.1:{target_port})"
            )) && e.contains("redirects are not followed"),
            "{e}"
        );
        assert!(!e.contains("stolen"), "{e}");
        assert_eq!(
            server.requests.load(Ordering::SeqCst),
            1,
            "sent once, not retried"
        );
        match target.accept() {
            Err(err) if err.kind() == ErrorKind::WouldBlock => {}
            other => panic!("the redirect target got a connection: {other:?}"),
        }
    }
}
