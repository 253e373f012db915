//! cosign's KMS CLI-plugin protocol, version v1: argv `v1 '<json>'`, the message on stdin,
//! exactly one JSON object on stdout. Every failure, including malformed input, becomes an
//! `errorMessage`; nothing here panics on input.

use crate::crypto::HashAlg;
use crate::retry::{self, Deadline};
use crate::signer::{self, Message, Options, Signer};
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};
use std::io::Read;

pub const PROTOCOL_VERSION: &str = "v1";

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RpcOptions {
    #[serde(default)]
    key_version: Option<String>,
    #[serde(default)]
    remote_verification: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct InitOptions {
    #[serde(default)]
    protocol_version: Option<String>,
    #[serde(default, rename = "keyResourceID")]
    key_resource_id: Option<String>,
    #[serde(default)]
    hash_func: Option<u64>,
    #[serde(default)]
    rpc_options: Option<RpcOptions>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MessageOptions {
    #[serde(default)]
    digest: Option<String>,
    #[serde(default)]
    hash_func: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateKeyArgs {
    #[serde(default)]
    algorithm: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PublicKeyOptions {
    #[serde(default)]
    rpc_options: Option<RpcOptions>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PublicKeyArgs {
    #[serde(default)]
    public_key_options: Option<PublicKeyOptions>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MessageCallOptions {
    #[serde(default)]
    rpc_options: Option<RpcOptions>,
    #[serde(default)]
    message_options: Option<MessageOptions>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SignArgs {
    #[serde(default)]
    sign_options: Option<MessageCallOptions>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct VerifyArgs {
    #[serde(default)]
    signature: Option<String>,
    #[serde(default)]
    verify_options: Option<MessageCallOptions>,
}

/// `PluginArgs`: unknown fields are ignored, as newer clients may add some.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PluginArgs {
    #[serde(default)]
    init_options: Option<InitOptions>,
    #[serde(default)]
    method_name: Option<String>,
    #[serde(default)]
    create_key: Option<CreateKeyArgs>,
    #[serde(default)]
    public_key: Option<PublicKeyArgs>,
    #[serde(default)]
    sign_message: Option<SignArgs>,
    #[serde(default)]
    verify_signature: Option<VerifyArgs>,
}

/// The answer for cosign: one JSON object, and whether it reports success.
pub struct Response {
    pub json: String,
    pub ok: bool,
}

fn error(message: impl Into<String>) -> Response {
    Response {
        json: json!({ "errorMessage": message.into() }).to_string(),
        ok: false,
    }
}

fn success(method: &str, body: Value) -> Response {
    let mut obj = serde_json::Map::new();
    obj.insert(method.to_string(), body);
    Response {
        json: Value::Object(obj).to_string(),
        ok: true,
    }
}

/// Where the message comes from: cosign's stdin, bounded by the call's deadline once the
/// request has named it.
pub trait Input: Read {
    fn bound_by(&mut self, _deadline: &Deadline) {}
}

impl Input for &[u8] {}

/// Handles one invocation. `args` is the full argv (program name first).
pub fn handle(args: &[String], stdin: &mut dyn Input, signer: &Signer<'_>) -> Response {
    let (version, raw) = match args {
        [_, version, raw, ..] => (version, raw),
        [_, version] if version.starts_with('-') => {
            return error(format!("unknown option {version:?}; cosign runs this plugin as `sigstore-kms-alibabakms v1 '<json>'`"))
        }
        _ => {
            return error(
                "missing arguments: cosign runs this plugin as `sigstore-kms-alibabakms v1 '<json>'` \
                 (see --help)",
            )
        }
    };
    if version != PROTOCOL_VERSION {
        return error(format!(
            "unsupported protocol version {version:?}: this plugin speaks {PROTOCOL_VERSION}; \
             upgrade cosign or this plugin so that they match"
        ));
    }
    // Parse to a value first: serde would also accept a JSON array for a struct.
    let deadline;
    let args: PluginArgs = match serde_json::from_str::<Value>(raw) {
        Ok(v @ Value::Object(_)) => {
            deadline = alibabakms_contract::ctx_deadline(&v);
            match serde_json::from_value(v) {
                Ok(a) => a,
                Err(e) => return error(format!("the request is not valid plugin JSON: {e}")),
            }
        }
        Ok(_) => return error("the request is not valid plugin JSON: expected a JSON object"),
        Err(e) => return error(format!("the request is not valid plugin JSON: {e}")),
    };
    let mut init = args.init_options.unwrap_or_default();
    if let Some(v) = init.protocol_version.as_deref().filter(|v| !v.is_empty()) {
        if v != PROTOCOL_VERSION {
            return error(format!(
                "unsupported protocolVersion {v:?}: this plugin speaks {PROTOCOL_VERSION}"
            ));
        }
    }
    let method = args.method_name.unwrap_or_default();
    let key_ref = init.key_resource_id.clone().unwrap_or_default();
    let init_rpc = init.rpc_options.take().unwrap_or_default();

    match method.as_str() {
        // No network and no credentials: cosign exits if these fail.
        "defaultAlgorithm" => {
            return match signer.default_algorithm() {
                Ok(algorithm) => {
                    success("defaultAlgorithm", json!({ "defaultAlgorithm": algorithm }))
                }
                Err(e) => error(format!("defaultAlgorithm: {e}")),
            }
        }
        "supportedAlgorithms" => {
            return success(
                "supportedAlgorithms",
                json!({ "supportedAlgorithms": signer::supported_algorithms() }),
            )
        }
        _ => {}
    }
    // Every other method is bounded by the deadline, or by the plugin's own limit.
    let now = std::time::SystemTime::now();
    let deadline = match deadline {
        Ok(Some((at, text))) => {
            if at <= now {
                return error(format!(
                    "{method}: deadline {text} had already passed when the plugin started; \
                     nothing was sent to KMS"
                ));
            }
            Deadline::ctx(at, &text)
        }
        Ok(None) => match retry::default_limit(std::env::var(retry::TIMEOUT_VAR).ok()) {
            Ok(limit) => Deadline::limit(now, limit),
            Err(e) => return error(e),
        },
        Err(e) => return error(e),
    };
    stdin.bound_by(&deadline);
    let signer = signer.clone().with_deadline(deadline);
    let rest = MethodArgs {
        create_key: args.create_key,
        public_key: args.public_key,
        sign_message: args.sign_message,
        verify_signature: args.verify_signature,
    };
    dispatch(&method, rest, &init, &init_rpc, &key_ref, stdin, &signer)
}

/// The method objects of a request, after the no-network methods are answered.
struct MethodArgs {
    create_key: Option<CreateKeyArgs>,
    public_key: Option<PublicKeyArgs>,
    sign_message: Option<SignArgs>,
    verify_signature: Option<VerifyArgs>,
}

fn dispatch(
    method: &str,
    args: MethodArgs,
    init: &InitOptions,
    init_rpc: &RpcOptions,
    key_ref: &str,
    stdin: &mut dyn Read,
    signer: &Signer<'_>,
) -> Response {
    let key_ref = key_ref.to_string();
    match method {
        "createKey" => {
            let algorithm = args
                .create_key
                .and_then(|c| c.algorithm)
                .filter(|a| !a.is_empty())
                .unwrap_or_else(|| {
                    signer
                        .default_algorithm()
                        .unwrap_or(signer::DEFAULT_ALGORITHM)
                        .to_string()
                });
            match signer.create_key(&key_ref, &algorithm) {
                Ok(key) => success("createKey", json!({ "publicKeyPEM": b64(key.to_pem()) })),
                Err(e) => error(format!("createKey: {e}")),
            }
        }
        "publicKey" => {
            let rpc = args
                .public_key
                .and_then(|p| p.public_key_options)
                .and_then(|o| o.rpc_options);
            let opts = options(rpc, init_rpc);
            match signer.public_key(&key_ref, &opts) {
                Ok(key) => success("publicKey", json!({ "publicKeyPEM": b64(key.to_pem()) })),
                Err(e) => error(format!("publicKey: {e}")),
            }
        }
        "signMessage" => {
            let call = args
                .sign_message
                .and_then(|s| s.sign_options)
                .unwrap_or_default();
            let (message, hash, opts) = match prepare(call, init, init_rpc, stdin) {
                Ok(p) => p,
                Err(e) => return error(format!("signMessage: {e}")),
            };
            match signer.sign(&key_ref, message, hash, &opts) {
                Ok(sig) => success("signMessage", json!({ "signature": b64(sig) })),
                Err(e) => error(format!("signMessage: {e}")),
            }
        }
        "verifySignature" => {
            let v = args.verify_signature.unwrap_or_default();
            let signature = match decode_b64("signature", v.signature.as_deref().unwrap_or("")) {
                Ok(s) if !s.is_empty() => s,
                Ok(_) => return error("verifySignature: no signature was given"),
                Err(e) => return error(format!("verifySignature: {e}")),
            };
            let call = v.verify_options.unwrap_or_default();
            let (message, hash, opts) = match prepare(call, init, init_rpc, stdin) {
                Ok(p) => p,
                Err(e) => return error(format!("verifySignature: {e}")),
            };
            match signer.verify(&key_ref, message, hash, &signature, &opts) {
                Ok(()) => success("verifySignature", json!({})),
                Err(e) => error(format!("verifySignature: {e}")),
            }
        }
        "" => error("methodName is missing from the request"),
        other => error(format!(
            "unknown method {:?}; this plugin implements defaultAlgorithm, supportedAlgorithms, \
             createKey, publicKey, signMessage and verifySignature",
            other.chars().take(100).collect::<String>()
        )),
    }
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn decode_b64(field: &str, s: &str) -> Result<Vec<u8>, String> {
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|e| format!("{field} is not valid standard base64 ({e})"))
}

/// Per-call rpcOptions win over initOptions.rpcOptions; `keyVersion: ""` means not set.
fn options(call: Option<RpcOptions>, init: &RpcOptions) -> Options {
    let call = call.unwrap_or_default();
    let pick = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
    Options {
        key_version: pick(&call.key_version).or_else(|| pick(&init.key_version)),
        remote_verification: call
            .remote_verification
            .or(init.remote_verification)
            .unwrap_or(false),
    }
}

/// The message (stdin or the given digest), its hash and the options of a sign/verify call.
fn prepare<'a>(
    call: MessageCallOptions,
    init: &InitOptions,
    init_rpc: &RpcOptions,
    stdin: &'a mut dyn Read,
) -> Result<(Message<'a>, HashAlg, Options), String> {
    let msg = call.message_options.unwrap_or_default();
    // messageOptions.hashFunc, else initOptions.hashFunc, else SHA-256.
    let hash = match msg
        .hash_func
        .filter(|h| *h != 0)
        .or(init.hash_func.filter(|h| *h != 0))
    {
        Some(n) => HashAlg::from_go(n).map_err(|e| e.to_string())?,
        None => HashAlg::Sha256,
    };
    let message = match msg.digest {
        Some(d) => {
            let digest = decode_b64("messageOptions.digest", &d)?;
            hash.check_digest(&digest).map_err(|e| e.to_string())?;
            Message::Digest(digest)
        }
        None => Message::Stream(stdin),
    };
    Ok((message, hash, options(call.rpc_options, init_rpc)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::{HttpRequest, HttpResponse, Transport, TransportError};

    /// A transport that must never be used: these tests cover what happens before the network.
    struct NoNetwork;
    impl Transport for NoNetwork {
        fn send_all(&self, r: Vec<HttpRequest>) -> Vec<Result<HttpResponse, TransportError>> {
            panic!(
                "unexpected request {:?}",
                r.first().map(|r| &r.path_and_query)
            )
        }
    }

    fn run(argv: &[&str]) -> Value {
        // No credentials; off ECS (the metadata source would otherwise be asked).
        let env = |n: &str| (n == "ALIBABA_CLOUD_ECS_METADATA_DISABLED").then(|| "true".into());
        let signer = Signer::new(&NoNetwork, &env);
        let args: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        let r = handle(&args, &mut &b""[..], &signer);
        let v: Value = serde_json::from_str(&r.json).unwrap();
        assert_eq!(r.ok, v.get("errorMessage").is_none());
        v
    }

    fn err(v: &Value) -> &str {
        v["errorMessage"]
            .as_str()
            .unwrap_or_else(|| panic!("no error in {v}"))
    }

    /// Every call cosign makes, exactly as captured; the no-network ones answer, the others
    /// reach the point where they need credentials (none are set here).
    #[test]
    fn every_captured_call_gets_a_well_formed_answer() {
        let mut n = 0;
        for line in alibabakms_fixtures::lines(alibabakms_fixtures::CLIPLUGIN_V1_CALLS) {
            let call: Value = serde_json::from_str(line).unwrap();
            let mut argv: Vec<String> = call["argv"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap().to_string())
                .collect();
            // The captured deadlines have passed by now; move them into the future.
            if let Some(Ok(mut request)) = argv.get(2).map(|a| serde_json::from_str::<Value>(a)) {
                future_deadlines(&mut request);
                argv[2] = request.to_string();
            }
            let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
            let v = run(&argv);
            match call["method"].as_str().unwrap() {
                "defaultAlgorithm" => assert_eq!(
                    v,
                    json!({"defaultAlgorithm": {"defaultAlgorithm": "EC_P256"}})
                ),
                "supportedAlgorithms" => {
                    assert_eq!(
                        v,
                        json!({"supportedAlgorithms": {"supportedAlgorithms": ["EC_P256", "RSA_2048", "RSA_3072", "RSA_4096"]}})
                    )
                }
                m => assert!(err(&v).contains("ALIBABA_CLOUD_ACCESS_KEY_ID"), "{m}: {v}"),
            }
            n += 1;
        }
        assert_eq!(n, 8);
    }

    fn future_deadlines(v: &mut Value) {
        match v {
            Value::Object(m) => {
                for (k, v) in m.iter_mut() {
                    if k == "ctxDeadline" && v.is_string() {
                        *v = json!("2099-01-01T00:00:00Z");
                    } else {
                        future_deadlines(v);
                    }
                }
            }
            Value::Array(a) => a.iter_mut().for_each(future_deadlines),
            _ => {}
        }
    }

    #[test]
    fn bad_invocations_get_clear_errors() {
        assert!(err(&run(&["p"])).contains("v1"));
        assert!(err(&run(&["p", "v2", "{}"])).contains("unsupported protocol version \"v2\""));
        assert!(err(&run(&["p", "v1", "{not json"])).contains("not valid plugin JSON"));
        assert!(err(&run(&["p", "v1", "[]"])).contains("not valid plugin JSON"));
        assert!(err(&run(&["p", "v1", "{}"])).contains("methodName is missing"));
        assert!(err(&run(&["p", "v1", r#"{"methodName":"frobnicate"}"#]))
            .contains("unknown method \"frobnicate\""));
        assert!(err(&run(&[
            "p",
            "v1",
            r#"{"initOptions":{"protocolVersion":"v9"},"methodName":"defaultAlgorithm"}"#
        ]))
        .contains("v9"));
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let v = run(&[
            "p",
            "v1",
            r#"{"futureField":1,"initOptions":{"newThing":{}},"methodName":"defaultAlgorithm","defaultAlgorithm":{"x":1}}"#,
        ]);
        assert_eq!(v["defaultAlgorithm"]["defaultAlgorithm"], "EC_P256");
    }

    #[test]
    fn bad_base64_and_digests_are_refused_before_any_request() {
        let sign = |digest: &str, hash: u64| {
            run(&[
                "p",
                "v1",
                &format!(
                    r#"{{"initOptions":{{"keyResourceID":"kms.cn-hangzhou.aliyuncs.com//alias/k","hashFunc":5}},"methodName":"signMessage","signMessage":{{"signOptions":{{"messageOptions":{{"digest":"{digest}","hashFunc":{hash}}}}}}}}}"#
                ),
            ])
        };
        assert!(err(&sign("%%%", 5)).contains("not valid standard base64"));
        assert!(err(&sign("AAAA", 5)).contains("3 bytes"));
        assert!(err(&sign("AAAA", 3)).contains("SHA-1"));
        let v = run(&[
            "p",
            "v1",
            r#"{"initOptions":{"keyResourceID":"x//alias/k"},"methodName":"verifySignature","verifySignature":{"signature":"!!"}}"#,
        ]);
        assert!(err(&v).contains("signature is not valid standard base64"));
    }

    #[test]
    fn create_key_checks_the_algorithm_first() {
        let v = run(&[
            "p",
            "v1",
            r#"{"initOptions":{"keyResourceID":"kms.cn-hangzhou.aliyuncs.com//alias/k"},"methodName":"createKey","createKey":{"algorithm":"any-algorithm"}}"#,
        ]);
        assert!(err(&v).contains("\"any-algorithm\" is not supported"));
    }

    #[test]
    fn bad_key_references_show_both_forms() {
        let v = run(&[
            "p",
            "v1",
            r#"{"initOptions":{"keyResourceID":"nonsense"},"methodName":"publicKey"}"#,
        ]);
        let e = err(&v);
        assert!(
            e.contains("alias/NAME") && e.contains("KEY_ID/versions/VERSION_ID"),
            "{e}"
        );
    }

    #[test]
    fn the_earliest_ctx_deadline_wins() {
        use alibabakms_contract::ctx_deadline;
        let v: Value = serde_json::from_str(
            r#"{"initOptions":{"ctxDeadline":"2030-01-01T00:00:10Z","rpcOptions":{"ctxDeadline":""}},
                "signMessage":{"signOptions":{"rpcOptions":{"ctxDeadline":"2030-01-01T00:00:05.5Z"}}},
                "createKey":{"ctxDeadline":null}}"#,
        )
        .unwrap();
        let (at, text) = ctx_deadline(&v).unwrap().unwrap();
        assert_eq!(text, "2030-01-01T00:00:05.5Z");
        assert_eq!(
            at,
            crate::rfc3339::parse_rfc3339("2030-01-01T00:00:05.5Z").unwrap()
        );
        assert_eq!(ctx_deadline(&json!({"initOptions": {}})), Ok(None));
        let e = ctx_deadline(&json!({"createKey": {"ctxDeadline": "next tuesday"}})).unwrap_err();
        assert!(
            e.contains("\"next tuesday\" is not an RFC 3339 time"),
            "{e}"
        );
        assert!(ctx_deadline(&json!({"initOptions": {"ctxDeadline": 5}})).is_err());
    }

    #[test]
    fn deadlines_are_checked_before_anything_is_sent() {
        let v = run(&[
            "p",
            "v1",
            r#"{"initOptions":{"ctxDeadline":"2001-01-01T00:00:00.123456789Z","keyResourceID":"kms.cn-hangzhou.aliyuncs.com//alias/k"},"methodName":"publicKey"}"#,
        ]);
        let e = err(&v);
        assert!(
            e.contains("deadline 2001-01-01T00:00:00.123456789Z had already passed")
                && e.contains("nothing was sent"),
            "{e}"
        );
        let v = run(&[
            "p",
            "v1",
            r#"{"initOptions":{"ctxDeadline":"soon"},"methodName":"signMessage"}"#,
        ]);
        assert!(err(&v).contains("ctxDeadline \"soon\""));
        // The no-network methods answer whatever the deadline.
        let v = run(&[
            "p",
            "v1",
            r#"{"initOptions":{"ctxDeadline":"2001-01-01T00:00:00Z"},"methodName":"defaultAlgorithm"}"#,
        ]);
        assert_eq!(v["defaultAlgorithm"]["defaultAlgorithm"], "EC_P256");
    }
}
