//! Bad input, generated: the protocol JSON, key URIs, KMS responses, PEM public keys and
//! credential files. Whatever arrives, the plugin never panics, never allocates without bound,
//! and always ends in exactly one JSON object for cosign.
//!
//! `cargo test` runs a short pass (256 cases per property); a longer fuzzing run is
//! `PROPTEST_CASES=100000 cargo test -p alibabakms-guest --test robustness --release`.

use alibabakms_guest::crypto::PublicKey;
use alibabakms_guest::keyref;
use alibabakms_guest::protocol;
use alibabakms_guest::signer::Signer;
use alibabakms_guest::transport::{HttpRequest, HttpResponse, Transport, TransportError};
use proptest::prelude::*;
use serde_json::Value;

/// A KMS that answers every request with the same arbitrary status and body.
struct Scripted {
    status: u16,
    body: Vec<u8>,
}

impl Transport for Scripted {
    fn send_all(&self, requests: Vec<HttpRequest>) -> Vec<Result<HttpResponse, TransportError>> {
        requests
            .iter()
            .map(|_| {
                Ok(HttpResponse {
                    status: self.status,
                    headers: vec![],
                    body: self.body.clone(),
                })
            })
            .collect()
    }
}

fn env(name: &str) -> Option<String> {
    match name {
        "ALIBABA_CLOUD_ACCESS_KEY_ID" => Some("LTAIfuzz".into()),
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET" => Some("fuzz-secret".into()),
        "ALIBABA_CLOUD_ECS_METADATA_DISABLED" => Some("true".into()),
        _ => None,
    }
}

/// Runs one invocation and checks the answer is one JSON object of the expected shape.
fn answer(argv: &[String], stdin: &[u8], transport: &dyn Transport) -> Value {
    let signer = Signer::new(transport, &env);
    let r = protocol::handle(argv, &mut &stdin[..], &signer);
    let v: Value = serde_json::from_str(&r.json).expect("one JSON value");
    let obj = v.as_object().expect("a JSON object");
    assert_eq!(obj.len(), 1, "exactly one key: {v}");
    assert_eq!(r.ok, !obj.contains_key("errorMessage"), "{v}");
    assert!(r.json.len() < 64 * 1024, "bounded answer");
    assert!(!r.json.contains("fuzz-secret"), "no secret in {v}");
    v
}

const METHODS: &[&str] = &[
    "defaultAlgorithm",
    "supportedAlgorithms",
    "createKey",
    "publicKey",
    "signMessage",
    "verifySignature",
    "",
    "bogus",
];

/// JSON values of any shape, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        ".{0,40}".prop_map(Value::String),
        "[A-Za-z0-9+/=]{0,60}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("digest".to_string()),
                    Just("hashFunc".to_string()),
                    Just("keyVersion".to_string()),
                    Just("ctxDeadline".to_string()),
                    Just("signature".to_string()),
                    Just("algorithm".to_string()),
                    ".{0,8}"
                ],
                inner,
                0..4
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn any_argv_text_gets_one_json_answer(version in ".{0,4}", raw in ".{0,200}") {
        let argv = vec!["plugin".to_string(), version, raw];
        answer(&argv, b"", &Scripted { status: 500, body: vec![] });
    }

    #[test]
    fn any_request_shape_gets_one_json_answer(
        method in prop::sample::select(METHODS),
        key in prop_oneof![Just("kms.cn-hangzhou.aliyuncs.com//alias/k".to_string()), ".{0,60}"],
        init in json_value(),
        body in json_value(),
        // Retryable answers (429, 5xx) would make each case wait out real backoff; the retry
        // policy has its own tests.
        status in prop_oneof![Just(200u16), Just(400u16), Just(404u16), Just(409u16)],
        kms_body in json_value(),
        stdin in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut args = serde_json::json!({
            "initOptions": {"keyResourceID": key, "protocolVersion": "v1"},
            "methodName": method,
        });
        if let (Some(obj), Value::Object(extra)) = (args["initOptions"].as_object_mut(), init) {
            for (k, v) in extra { if k != "ctxDeadline" { obj.insert(k, v); } }
        }
        args[method] = body;
        let argv = vec!["plugin".to_string(), "v1".to_string(), args.to_string()];
        let kms = Scripted { status, body: kms_body.to_string().into_bytes() };
        answer(&argv, &stdin, &kms);
    }

    #[test]
    fn any_kms_answer_bytes_end_in_a_clear_result(
        status in prop_oneof![100u16..429, 430u16..500],
        body in prop::collection::vec(any::<u8>(), 0..300),
        method in prop::sample::select(&["publicKey", "signMessage", "verifySignature", "createKey"][..]),
    ) {
        let args = serde_json::json!({
            "initOptions": {"keyResourceID": "kms.cn-hangzhou.aliyuncs.com//alias/k", "hashFunc": 5},
            "methodName": method,
            "createKey": {"algorithm": "EC_P256"},
            "verifySignature": {"signature": "MEUCIQ=="},
        });
        let argv = vec!["plugin".to_string(), "v1".to_string(), args.to_string()];
        answer(&argv, b"message", &Scripted { status, body });
    }

    #[test]
    fn key_references_never_panic_and_errors_stay_short(input in ".{0,400}") {
        if let Err(e) = keyref::parse(&input) {
            prop_assert!(e.to_string().len() < 1200);
        }
    }

    #[test]
    fn public_keys_never_panic(pem in ".{0,300}", der in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = PublicKey::from_pem(&pem);
        use base64::Engine;
        let wrapped = format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(&der)
        );
        let _ = PublicKey::from_pem(&wrapped);
    }

    #[test]
    fn credential_files_never_panic(config in ".{0,300}", ini in ".{0,300}", profile in "[a-z]{0,6}") {
        let dir = std::env::temp_dir().join(format!("kms-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (c, i) = (dir.join(format!("c-{profile}.json")), dir.join(format!("i-{profile}")));
        std::fs::write(&c, &config).unwrap();
        std::fs::write(&i, &ini).unwrap();
        let (cs, is) = (c.display().to_string(), i.display().to_string());
        let env = move |name: &str| match name {
            "ALIBABA_CLOUD_CONFIG_FILE" => Some(cs.clone()),
            "ALIBABA_CLOUD_CREDENTIALS_FILE" => Some(is.clone()),
            "ALIBABA_CLOUD_PROFILE" => Some(profile.clone()),
            "ALIBABA_CLOUD_ECS_METADATA_DISABLED" => Some("true".into()),
            _ => None,
        };
        let deadline = alibabakms_guest::retry::Deadline::limit(std::time::SystemTime::now(), std::time::Duration::from_secs(5));
        let t = Scripted { status: 500, body: vec![] };
        let _ = alibabakms_guest::credentials::resolve(&alibabakms_guest::credentials::Context::new(&env, &t, deadline));
    }
}
