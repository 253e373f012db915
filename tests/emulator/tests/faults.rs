//! Injected faults and latency over real TLS with hand-signed requests: what a client's
//! retries and deadlines will meet. Each fault applies only its number of times, only after
//! the gateway admitted the request, and the request's nonce is spent either way.

mod common;

use std::collections::BTreeSet;
use std::io::ErrorKind;
use std::time::{Duration, Instant, SystemTime};

use alibabakms_emulator::{ApiError, Emulator, EmulatorConfig, Fault};
use common::{sign, Client, SignInput};

fn start(cfg: EmulatorConfig) -> (Emulator, Client) {
    let emu = Emulator::start(cfg).unwrap();
    let client = Client::connect(&emu.endpoint(), emu.ca_pem()).unwrap();
    (emu, client)
}

fn kms_shape() -> BTreeSet<String> {
    ["HttpStatus", "Code", "Message", "RequestId"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

#[test]
fn throttle_answers_429_with_the_rate_limit_header_the_given_number_of_times() {
    let (emu, mut c) = start(EmulatorConfig::default());
    emu.inject("ListAliases", Fault::Throttle, 2);
    assert_eq!(emu.pending_faults().len(), 1);

    // Other actions are not affected.
    assert_eq!(c.call("ListKeyVersions", &[]).code(), "MissingParameter");
    for _ in 0..2 {
        let r = c.call("ListAliases", &[]);
        assert_eq!((r.status, r.code()), (429, "Rejected.Throttling"));
        assert_eq!(r.json["Message"], "QPS Limit Exceeded");
        assert_eq!(r.json["HttpStatus"], 429);
        let keys: BTreeSet<String> = r.json.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, kms_shape());
        let h = r.header("x-ratelimit-user-api").expect("rate-limit header");
        let fields: Vec<(&str, u128)> = h
            .split(',')
            .map(|kv| {
                let (k, v) = kv.split_once(':').unwrap();
                (k, v.parse().unwrap())
            })
            .collect();
        let names: Vec<&str> = fields.iter().map(|(k, _)| *k).collect();
        assert_eq!(names, ["Limit", "Remain", "TimeLeft", "Reset"], "{h}");
        assert_eq!((fields[0].1, fields[1].1), (1, 0));
        assert!((1..=1000).contains(&fields[2].1), "{h}");
    }
    assert_eq!(c.call("ListAliases", &[]).status, 200);
    assert!(emu.pending_faults().is_empty());

    emu.inject("*", Fault::ThrottleFor(Duration::from_millis(2500)), 1);
    let r = c.call("DescribeKey", &[("KeyId", "alias/whatever")]);
    assert_eq!(r.status, 429);
    assert!(r
        .header("x-ratelimit-user-api")
        .unwrap()
        .starts_with("Limit:1,Remain:0,TimeLeft:2500,Reset:"));
    assert_eq!(r.code(), "Rejected.Throttling");
    // The fault came after the gateway but before the action: no AliasNotFound.
    assert_eq!(
        c.call("DescribeKey", &[("KeyId", "alias/whatever")]).code(),
        "Forbidden.AliasNotFound"
    );

    let s = emu.stats();
    assert_eq!((s.faults_injected, s.faults("Throttle")), (3, 3));
    assert_eq!(s.rejected("Rejected.Throttling"), 3);
    assert_eq!(s.action("ListAliases"), 3);
    let faulted: Vec<_> = emu
        .requests()
        .into_iter()
        .filter(|r| r.fault.is_some())
        .map(|r| (r.action, r.status, r.fault.unwrap()))
        .collect();
    assert_eq!(faulted.len(), 3);
    assert!(faulted
        .iter()
        .all(|(_, status, kind)| *status == 429 && kind == "Throttle"));
}

#[test]
fn error_faults_use_the_retryable_codes_and_spend_the_nonce() {
    let (emu, mut c) = start(EmulatorConfig::default());
    emu.inject("ListAliases", Fault::ServiceUnavailable, 1);
    emu.inject("ListAliases", Fault::InternalFailure, 1);
    emu.inject(
        "ListAliases",
        Fault::Error(ApiError::service(
            503,
            "SerivceUnavailableTemporary",
            "Service Unavailable Temporary.",
        )),
        1,
    );

    // A request the gateway refuses does not use up a fault.
    let r = c.call_as(
        "refkms-ak",
        "wrong",
        None,
        SystemTime::now(),
        "ListAliases",
        &[],
    );
    assert_eq!(r.code(), "SignatureDoesNotMatch");

    let input = SignInput::new(&c.endpoint, "ListAliases", &[]);
    let (path, headers) = sign(&input);
    let r = c.send("POST", &path, &headers, b"").unwrap();
    assert_eq!((r.status, r.code()), (503, "ServiceUnavailableTemporary"));
    let keys: BTreeSet<String> = r.json.as_object().unwrap().keys().cloned().collect();
    assert_eq!(keys, kms_shape());
    // Resending the same signed bytes is a replay: faulted requests spend their nonce.
    let r = c.send("POST", &path, &headers, b"").unwrap();
    assert_eq!((r.status, r.code()), (400, "SignatureNonceUsed"));

    let r = c.call("ListAliases", &[]);
    assert_eq!((r.status, r.code()), (500, "InternalFailure"));
    let r = c.call("ListAliases", &[]);
    assert_eq!((r.status, r.code()), (503, "SerivceUnavailableTemporary"));
    assert_eq!(c.call("ListAliases", &[]).status, 200);

    let s = emu.stats();
    assert_eq!(s.faults_injected, 3);
    assert_eq!(
        (
            s.faults("ServiceUnavailable"),
            s.faults("InternalFailure"),
            s.faults("Error")
        ),
        (1, 1, 1)
    );
    assert_eq!(s.rejected("SignatureNonceUsed"), 1);

    emu.inject("*", Fault::InternalFailure, 5);
    emu.clear_faults();
    assert_eq!(c.call("ListAliases", &[]).status, 200);
}

#[test]
fn hang_never_answers_so_the_clients_own_timeout_fires() {
    let (emu, mut c) = start(EmulatorConfig::default());
    emu.inject("ListAliases", Fault::Hang, 1);
    c.set_read_timeout(Some(Duration::from_millis(800)));
    let started = Instant::now();
    let err = c.try_call("ListAliases", &[]).unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "{err:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(800));

    // The server goes on serving other connections meanwhile, and the fault was used up.
    let mut c2 = Client::connect(&emu.endpoint(), emu.ca_pem()).unwrap();
    assert_eq!(c2.call("ListAliases", &[]).status, 200);
    let hung = emu
        .requests()
        .into_iter()
        .find(|r| r.fault.as_deref() == Some("Hang"))
        .unwrap();
    assert_eq!((hung.status, hung.code), (0, None));
    assert_eq!(emu.stats().faults("Hang"), 1);
    // Dropping the emulator ends the hung exchange instead of waiting for it.
    let started = Instant::now();
    drop(emu);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn reset_closes_the_connection_without_an_answer() {
    let (emu, mut c) = start(EmulatorConfig::default());
    emu.inject("GetPublicKey", Fault::Reset, 1);
    c.set_read_timeout(Some(Duration::from_secs(10)));
    let started = Instant::now();
    let err = c
        .try_call("GetPublicKey", &[("KeyId", "k"), ("KeyVersionId", "v")])
        .unwrap_err();
    assert!(
        matches!(
            err.kind(),
            ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::UnexpectedEof
        ),
        "no HTTP answer, a closed connection: {err:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "closed, not timed out"
    );

    // Only once: a new connection gets a real answer.
    let mut c2 = Client::connect(&emu.endpoint(), emu.ca_pem()).unwrap();
    let r = c2.call("GetPublicKey", &[("KeyId", "k"), ("KeyVersionId", "v")]);
    assert_eq!(r.code(), "Forbidden.KeyNotFound");
    let s = emu.stats();
    assert_eq!((s.faults("Reset"), s.tcp_connections), (1, 2));
    assert_eq!(s.action("GetPublicKey"), 2);
}

#[test]
fn delay_and_latency_slow_answers_down() {
    let (emu, mut c) = start(EmulatorConfig::default());
    emu.inject("*", Fault::Delay(Duration::from_millis(400)), 1);
    let started = Instant::now();
    assert_eq!(c.call("ListAliases", &[]).status, 200);
    assert!(started.elapsed() >= Duration::from_millis(400));
    let started = Instant::now();
    assert_eq!(c.call("ListAliases", &[]).status, 200);
    assert!(started.elapsed() < Duration::from_millis(400));
    assert_eq!(emu.stats().faults("Delay"), 1);

    emu.set_latency(Duration::from_millis(250));
    for _ in 0..2 {
        let started = Instant::now();
        // Latency applies to every request, refused ones too.
        assert_eq!(c.call("NoSuchAction", &[]).status, 404);
        assert!(started.elapsed() >= Duration::from_millis(250));
    }
    emu.set_latency(Duration::ZERO);
    let started = Instant::now();
    c.call("ListAliases", &[]);
    assert!(started.elapsed() < Duration::from_millis(250));

    let (_emu, mut c) = start(EmulatorConfig::default().latency(Duration::from_millis(300)));
    let started = Instant::now();
    assert_eq!(c.call("ListAliases", &[]).status, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[test]
fn the_request_log_keeps_only_the_newest() {
    let (emu, mut c) = start(EmulatorConfig::default().max_recorded_requests(5));
    for i in 0..12 {
        let size = (i + 1).to_string();
        assert_eq!(c.call("ListAliases", &[("PageSize", &size)]).status, 200);
    }
    let sizes: Vec<String> = emu
        .requests()
        .iter()
        .map(|r| r.params["PageSize"].clone())
        .collect();
    assert_eq!(sizes, ["8", "9", "10", "11", "12"]);
    assert_eq!(
        emu.stats().total_requests,
        12,
        "counters still count everything"
    );
    assert_eq!(
        EmulatorConfig::default().max_recorded_requests,
        10_000,
        "the default bound"
    );
}

#[test]
fn binary_takes_a_latency() {
    let dir = std::env::temp_dir().join(format!("kms-emulator-latency-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca_out = dir.join("ca.pem");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_kms-emulator"))
        .args([
            "--latency-ms",
            "300",
            "--version-order",
            "shuffled",
            "--quiet",
        ])
        .args(["--ca-out", ca_out.to_str().unwrap()])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let (endpoint, _stdout) = common::read_endpoint(&mut child);
    let ca = std::fs::read_to_string(&ca_out).unwrap();
    let mut c = Client::connect(&endpoint, &ca).unwrap();
    let started = Instant::now();
    let status = c.call("ListAliases", &[]).status;
    let took = started.elapsed();
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    child.wait().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(status, 200);
    assert!(took >= Duration::from_millis(300), "{took:?}");

    for bad in [["--latency-ms", "soon"], ["--version-order", "random"]] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_kms-emulator"))
            .args(bad)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
    }
}
