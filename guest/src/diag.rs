//! Diagnostics on stderr when `SIGSTORE_ALIBABAKMS_DEBUG` is set: one line per request (KMS,
//! STS, metadata service, credentials URI), per credential source tried, and one describing
//! what the sandbox shows the component. stdout belongs to cosign's protocol, so nothing goes
//! there.
//!
//! Only names, codes, hosts, timings and request ids are printed: never a header, a query,
//! a body, a key, a secret or a token.

use crate::transport::{HttpResponse, TransportError};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

static ENABLED: AtomicBool = AtomicBool::new(false);

/// The variable's value turns diagnostics on unless it is empty, `0`, `false`, `no` or `off`.
pub fn init(value: Option<&str>) {
    let on = value.is_some_and(|v| !matches!(v.trim(), "" | "0" | "false" | "no" | "off"));
    ENABLED.store(on, Ordering::Relaxed);
}

pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Prints one diagnostic line when enabled; the message is built only then.
pub fn line(message: impl FnOnce() -> String) {
    if enabled() {
        eprintln!("sigstore-kms-alibabakms: {}", message());
    }
}

/// What the sandbox lets the component see: the NAMES of its environment variables (never a
/// value) and its preopened directories, sorted.
pub fn sandbox_line(mut env_names: Vec<String>, mut dirs: Vec<String>) -> String {
    env_names.sort();
    dirs.sort();
    let list = |v: &[String]| {
        if v.is_empty() {
            "(none)".to_string()
        } else {
            v.join(", ")
        }
    };
    format!(
        "sandbox: environment variables visible: {}; directories: {}",
        list(&env_names),
        list(&dirs)
    )
}

/// One request line: what was asked where, what came back (status and the answer's `Code`),
/// how long it took, which attempt, and the request id for Alibaba Cloud support. Reads only
/// the `Code` and `RequestId` fields of a JSON answer; nothing of the request.
pub fn request_line(
    action: &str,
    host: &str,
    outcome: &Result<HttpResponse, TransportError>,
    elapsed: Duration,
    attempt: u32,
) -> String {
    let ms = elapsed.as_millis();
    match outcome {
        Ok(resp) => {
            let json: Option<serde_json::Value> = serde_json::from_slice(&resp.body).ok();
            use crate::untrusted::{server_text, CODE_CHARS, REQUEST_ID_CHARS};
            let field = |name: &str| {
                json.as_ref()
                    .and_then(|j| j.get(name))
                    .and_then(|v| v.as_str())
                    .map(|s| server_text(s, CODE_CHARS))
            };
            let request_id = field("RequestId")
                .or_else(|| resp.header("x-acs-request-id").map(str::to_string))
                .map(|id| server_text(&id, REQUEST_ID_CHARS))
                .unwrap_or_else(|| "-".into());
            let code = field("Code").map(|c| format!(" {c}")).unwrap_or_default();
            format!(
                "{action} {host} -> HTTP {}{code} in {ms} ms (attempt {attempt}, request id {request_id})",
                resp.status
            )
        }
        Err(e) => format!(
            "{action} {host} -> no answer: {} in {ms} ms (attempt {attempt})",
            e.kind()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sandbox_line_lists_names_only() {
        let l = sandbox_line(
            vec!["B_VAR".into(), "A_VAR".into()],
            vec!["/credentials/oidc".into()],
        );
        assert_eq!(
            l,
            "sandbox: environment variables visible: A_VAR, B_VAR; directories: /credentials/oidc"
        );
        assert!(sandbox_line(vec![], vec![]).ends_with("visible: (none); directories: (none)"));
    }

    #[test]
    fn request_lines_show_status_code_and_request_id_but_no_body() {
        let resp = HttpResponse {
            status: 400,
            headers: vec![],
            body: br#"{"Code":"InvalidParameter","RequestId":"R-1","Message":"secret-ish"}"#
                .to_vec(),
        };
        let l = request_line(
            "AssumeRole",
            "sts.aliyuncs.com",
            &Ok(resp),
            Duration::from_millis(12),
            2,
        );
        assert_eq!(
            l,
            "AssumeRole sts.aliyuncs.com -> HTTP 400 InvalidParameter in 12 ms (attempt 2, request id R-1)"
        );
        let plain = HttpResponse {
            status: 200,
            headers: vec![],
            body: b"imds-session-token".to_vec(),
        };
        let l = request_line("x", "h", &Ok(plain), Duration::ZERO, 1);
        assert!(!l.contains("imds-session-token"), "{l}");
    }
}
