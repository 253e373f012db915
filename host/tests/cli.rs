//! The real binary with its embedded component: the flags for people, and one protocol call
//! as cosign makes it.

use std::io::Write;
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_sigstore-kms-alibabakms");

fn run(args: &[&str], env: &[(&str, &str)], stdin: &[u8]) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// stdout must be exactly one JSON object: cosign parses it whole.
fn one_json_object(stdout: &[u8]) -> serde_json::Map<String, serde_json::Value> {
    let value: serde_json::Value = serde_json::from_slice(stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {:?}", text(stdout)));
    value
        .as_object()
        .cloned()
        .expect("stdout is not a JSON object")
}

const DEFAULT_ALGORITHM: &str = r#"{"initOptions":{"protocolVersion":"v1","keyResourceID":"kms.cn-hangzhou.aliyuncs.com//alias/cosign","hashFunc":5,"rpcOptions":{"keyVersion":"","remoteVerification":false}},"methodName":"defaultAlgorithm","defaultAlgorithm":{}}"#;

#[test]
fn version() {
    let out = run(&["--version"], &[], b"");
    assert!(out.status.success());
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with(&format!(
            "sigstore-kms-alibabakms {}",
            env!("CARGO_PKG_VERSION")
        )),
        "{stdout}"
    );
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
}

#[test]
fn help() {
    let out = run(&["--help"], &[], b"");
    assert!(out.status.success());
    let stdout = text(&out.stdout);
    for needle in [
        "alibabakms://ENDPOINT/[INSTANCE_ID]/alias/NAME",
        "alibabakms://ENDPOINT/[INSTANCE_ID]/KEY_ID/versions/VERSION_ID",
        "v1 '<json>'",
        "ALIBABA_CLOUD_ACCESS_KEY_ID",
        "ALICLOUD_ACCESS_KEY_STS_TOKEN",
        "SIGSTORE_ALIBABAKMS_ALLOWED_HOSTS",
        "SIGSTORE_ALIBABAKMS_DEBUG",
        "SSL_CERT_FILE",
        "--print-sandbox",
    ] {
        assert!(
            stdout.contains(needle),
            "--help lacks {needle:?}:\n{stdout}"
        );
    }
}

#[test]
fn a_protocol_call_prints_one_json_object_and_nothing_else() {
    let out = run(&["v1", DEFAULT_ALGORITHM], &[], b"");
    let answer = one_json_object(&out.stdout);
    // The component answers the method or says why not; either way in PluginResp shape.
    assert!(
        answer.contains_key("defaultAlgorithm") || answer.contains_key("errorMessage"),
        "{answer:?}"
    );
}

#[test]
fn garbage_on_argv_still_gets_a_json_answer() {
    let out = run(&["v1", "{not json"], &[], b"");
    let answer = one_json_object(&out.stdout);
    assert!(answer.contains_key("errorMessage"), "{answer:?}");
    let out = run(&[], &[], b"");
    one_json_object(&out.stdout);
}

#[test]
fn a_bad_allow_list_is_reported_in_error_message() {
    let out = run(
        &["v1", DEFAULT_ALGORITHM],
        &[(
            "SIGSTORE_ALIBABAKMS_ALLOWED_HOSTS",
            "https://emulator.local",
        )],
        b"",
    );
    let answer = one_json_object(&out.stdout);
    let message = answer["errorMessage"].as_str().unwrap();
    assert!(
        message.contains("SIGSTORE_ALIBABAKMS_ALLOWED_HOSTS"),
        "{message}"
    );
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn print_sandbox_names_variables_but_never_values() {
    let out = run(
        &["--print-sandbox"],
        &[
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAI-visible-id"),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "very-secret-value"),
            ("HOME", "/home/someone"),
            ("SIGSTORE_ALIBABAKMS_ALLOWED_HOSTS", "localhost:8443"),
        ],
        b"",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("ALIBABA_CLOUD_ACCESS_KEY_SECRET"),
        "{stdout}"
    );
    assert!(!stdout.contains("very-secret-value"), "{stdout}");
    assert!(!stdout.contains("LTAI-visible-id"), "{stdout}");
    assert!(!stdout.contains("/home/someone"), "{stdout}");
    assert!(stdout.contains("https://localhost:8443"), "{stdout}");
    assert!(stdout.contains("*.aliyuncs.com"), "{stdout}");
}

#[test]
fn the_portable_component_can_be_written_out() {
    let path = std::env::temp_dir().join(format!("alibabakms-{}.wasm", std::process::id()));
    let out = run(&["--write-wasm", path.to_str().unwrap()], &[], b"");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let wasm = std::fs::read(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    // A component, not a core module: `\0asm`, version 0x0d, layer 1.
    assert_eq!(&wasm[..8], b"\0asm\x0d\0\x01\0");
}
