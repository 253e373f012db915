//! cosign's `ctxDeadline`, read once for both sides: the guest answers by it, and the host's
//! backstop follows the same instant.

use serde_json::Value;

/// The earliest `ctxDeadline` anywhere in the request (initOptions, its rpcOptions, the
/// method's rpcOptions, createKey), with its text; `""` counts as absent.
pub fn ctx_deadline(v: &Value) -> Result<Option<(std::time::SystemTime, String)>, String> {
    fn collect<'v>(v: &'v Value, out: &mut Vec<&'v Value>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    if k == "ctxDeadline" {
                        out.push(v);
                    } else {
                        collect(v, out);
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|v| collect(v, out)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    collect(v, &mut found);
    let mut earliest: Option<(std::time::SystemTime, String)> = None;
    for value in found {
        let text = match value {
            Value::Null => continue,
            Value::String(s) if s.is_empty() => continue,
            Value::String(s) => s,
            other => return Err(format!("ctxDeadline {other} is not an RFC 3339 time")),
        };
        let at = crate::rfc3339::parse_rfc3339(text).ok_or_else(|| {
            format!(
                "ctxDeadline {:?} is not an RFC 3339 time such as 2026-11-26T05:41:17.281973069Z",
                text.chars().take(64).collect::<String>()
            )
        })?;
        if earliest.as_ref().is_none_or(|(e, _)| at < *e) {
            earliest = Some((at, text.clone()));
        }
    }
    Ok(earliest)
}
