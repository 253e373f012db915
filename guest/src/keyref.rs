//! Key references: what a user writes after `alibabakms://`.
//!
//! A key URI may come from a policy file someone else wrote, so parsing is strict about what
//! may appear where (no user info, scheme, query or path tricks in the endpoint) and every
//! error shows the accepted forms.

use std::fmt;

pub const SCHEME: &str = "alibabakms://";

const FORMS: &str = "expected alibabakms://ENDPOINT/[INSTANCE_ID]/alias/NAME or \
alibabakms://ENDPOINT/[INSTANCE_ID]/KEY_ID/versions/VERSION_ID \
(for example alibabakms://kms.cn-hangzhou.aliyuncs.com//alias/cosign-key; \
the instance segment may be empty)";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRef {
    /// `host[:port]` of the KMS endpoint, e.g. `kms.cn-hangzhou.aliyuncs.com`.
    pub endpoint: String,
    /// KMS instance (`kst-…`), used when creating a key.
    pub instance_id: Option<String>,
    pub key: KeySelector,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySelector {
    /// The full alias name including its `alias/` prefix, as KMS takes it for `KeyId`.
    Alias(String),
    /// A key id, with an explicit version or none (then the newest version is used).
    Key { id: String, version: Option<String> },
}

impl KeyRef {
    /// What goes into the `KeyId` parameter: KMS accepts an alias there directly.
    pub fn key_id_param(&self) -> &str {
        match &self.key {
            KeySelector::Alias(a) => a,
            KeySelector::Key { id, .. } => id,
        }
    }

    pub fn alias(&self) -> Option<&str> {
        match &self.key {
            KeySelector::Alias(a) => Some(a),
            KeySelector::Key { .. } => None,
        }
    }

    pub fn version(&self) -> Option<&str> {
        match &self.key {
            KeySelector::Key { version, .. } => version.as_deref(),
            KeySelector::Alias(_) => None,
        }
    }
}

impl fmt::Display for KeyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inst = self.instance_id.as_deref().unwrap_or("");
        match &self.key {
            KeySelector::Alias(a) => write!(f, "{SCHEME}{}/{inst}/{a}", self.endpoint),
            KeySelector::Key {
                id,
                version: Some(v),
            } => {
                write!(f, "{SCHEME}{}/{inst}/{id}/versions/{v}", self.endpoint)
            }
            KeySelector::Key { id, version: None } => {
                write!(f, "{SCHEME}{}/{inst}/{id}", self.endpoint)
            }
        }
    }
}

/// A key reference that does not parse: what was given (its first 200 characters) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRefError {
    pub shown: String,
    pub why: String,
}

impl fmt::Display for KeyRefError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid key reference {:?}: {}; {FORMS}",
            self.shown, self.why
        )
    }
}

fn bad(input: &str, why: impl fmt::Display) -> KeyRefError {
    // Bound what we echo back: a hostile reference could be megabytes long.
    KeyRefError {
        shown: input.chars().take(200).collect(),
        why: why.to_string(),
    }
}

fn is_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

/// Parses a key reference, with or without the `alibabakms://` prefix (cosign strips it before
/// passing `keyResourceID`).
pub fn parse(input: &str) -> Result<KeyRef, KeyRefError> {
    let rest = input.strip_prefix(SCHEME).unwrap_or(input);
    if rest.is_empty() {
        return Err(bad(input, "it is empty"));
    }
    if let Some(c) = rest.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad(input, format!("it contains the character {c:?}")));
    }
    if rest.contains(['?', '#', '@', '\\', '%']) {
        return Err(bad(input, "it may not contain '?', '#', '@', '%' or '\\'"));
    }
    let (endpoint, path) = rest
        .split_once('/')
        .ok_or_else(|| bad(input, "it names no key after the endpoint"))?;
    validate_endpoint(endpoint).map_err(|why| bad(input, why))?;

    let segs: Vec<&str> = path.split('/').collect();
    // The instance segment is optional: `ENDPOINT//alias/x`, `ENDPOINT/kst-1/alias/x`, and the
    // lenient `ENDPOINT/alias/x` all work.
    let (instance, segs) = match segs.as_slice() {
        ["alias", ..] => (None, &segs[..]),
        [_key, "versions", _ver] => (None, &segs[..]),
        [inst, rest @ ..] if !rest.is_empty() => {
            let inst = (!inst.is_empty()).then(|| inst.to_string());
            (inst, rest)
        }
        _ => return Err(bad(input, "it names no key after the endpoint")),
    };
    if let Some(inst) = &instance {
        if !inst.chars().all(is_id_char) {
            return Err(bad(
                input,
                format!("instance id {inst:?} may only contain letters, digits, '-' and '_'"),
            ));
        }
    }
    let key = match segs {
        ["alias", name @ ..] if !name.is_empty() => {
            let name = name.join("/");
            validate_alias(&name).map_err(|why| bad(input, why))?;
            KeySelector::Alias(format!("alias/{name}"))
        }
        [id, "versions", version] => {
            validate_id("key id", id).map_err(|why| bad(input, why))?;
            validate_id("key version id", version).map_err(|why| bad(input, why))?;
            KeySelector::Key {
                id: id.to_string(),
                version: Some(version.to_string()),
            }
        }
        [id] if *id != "alias" => {
            validate_id("key id", id).map_err(|why| bad(input, why))?;
            KeySelector::Key {
                id: id.to_string(),
                version: None,
            }
        }
        _ => {
            return Err(bad(
                input,
                "the key part is neither alias/NAME nor KEY_ID/versions/VERSION_ID",
            ))
        }
    };
    Ok(KeyRef {
        endpoint: endpoint.to_ascii_lowercase(),
        instance_id: instance,
        key,
    })
}

fn validate_endpoint(ep: &str) -> Result<(), String> {
    if ep.is_empty() {
        return Err("the endpoint is empty".into());
    }
    if ep.contains(':') && ep.contains("//") {
        return Err("the endpoint must be a host name, not a URL".into());
    }
    let (host, port) = match ep.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (ep, None),
    };
    if host.is_empty() || host.len() > 253 {
        return Err(format!("endpoint host {host:?} is not a host name"));
    }
    let labels_ok = host.split('.').all(|l| {
        !l.is_empty()
            && l.len() <= 63
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    });
    if !labels_ok {
        return Err(format!("endpoint host {host:?} is not a valid host name"));
    }
    if let Some(p) = port {
        match p.parse::<u16>() {
            Ok(n) if n > 0 && p.chars().all(|c| c.is_ascii_digit()) => {}
            _ => {
                return Err(format!(
                    "endpoint port {p:?} is not a number from 1 to 65535"
                ))
            }
        }
    }
    Ok(())
}

fn validate_id(what: &str, id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > 128 || !id.chars().all(is_id_char) {
        return Err(format!(
            "{what} {id:?} may only contain letters, digits, '-' and '_'"
        ));
    }
    Ok(())
}

fn validate_alias(name: &str) -> Result<(), String> {
    // KMS: `alias/` + name, 1–255 characters in all; letters, digits, `_`, `-`, `/`, `:`.
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '/' | ':' | '.');
    if name.len() + "alias/".len() > 255 {
        return Err("the alias is longer than 255 characters".into());
    }
    if !name.chars().all(ok)
        || name
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return Err(format!(
            "alias name {name:?} may only contain letters, digits, '_', '-', ':', '.' and single '/'"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alias(ep: &str, inst: Option<&str>, a: &str) -> KeyRef {
        KeyRef {
            endpoint: ep.into(),
            instance_id: inst.map(Into::into),
            key: KeySelector::Alias(a.into()),
        }
    }

    #[test]
    fn alias_forms() {
        let want = alias("kms.cn-hangzhou.aliyuncs.com", None, "alias/cosign-key");
        assert_eq!(
            parse("kms.cn-hangzhou.aliyuncs.com//alias/cosign-key").unwrap(),
            want
        );
        assert_eq!(
            parse("alibabakms://kms.cn-hangzhou.aliyuncs.com//alias/cosign-key").unwrap(),
            want
        );
        assert_eq!(
            parse("kms.cn-hangzhou.aliyuncs.com/alias/cosign-key").unwrap(),
            want
        );
        assert_eq!(
            parse("kms.cn-hangzhou.aliyuncs.com/kst-abc123/alias/release_signing-key:v2").unwrap(),
            alias(
                "kms.cn-hangzhou.aliyuncs.com",
                Some("kst-abc123"),
                "alias/release_signing-key:v2"
            )
        );
        assert_eq!(
            parse("127.0.0.1:8443//alias/team/prod").unwrap(),
            alias("127.0.0.1:8443", None, "alias/team/prod")
        );
    }

    #[test]
    fn key_version_forms() {
        let r = parse("kms.cn-hangzhou.aliyuncs.com/kst-1/key-abc/versions/v-1").unwrap();
        assert_eq!(r.instance_id.as_deref(), Some("kst-1"));
        assert_eq!(
            r.key,
            KeySelector::Key {
                id: "key-abc".into(),
                version: Some("v-1".into())
            }
        );
        let r = parse("kms.cn-hangzhou.aliyuncs.com//key-abc/versions/v-1").unwrap();
        assert_eq!(r.instance_id, None);
        assert_eq!(r.key_id_param(), "key-abc");
        assert_eq!(r.version(), Some("v-1"));
        let r = parse("kms.cn-hangzhou.aliyuncs.com//key-abc").unwrap();
        assert_eq!(
            r.key,
            KeySelector::Key {
                id: "key-abc".into(),
                version: None
            }
        );
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "alibabakms://kms.cn-hangzhou.aliyuncs.com//alias/cosign-key",
            "alibabakms://kms.cn-hangzhou.aliyuncs.com/kst-1/key-abc/versions/v-1",
        ] {
            assert_eq!(parse(s).unwrap().to_string(), s);
        }
    }

    #[test]
    fn rejects_with_both_forms_in_the_message() {
        for bad in [
            "",
            "kms.cn-hangzhou.aliyuncs.com",
            "kms.cn-hangzhou.aliyuncs.com//",
            "kms.cn-hangzhou.aliyuncs.com//alias/",
            "kms.cn-hangzhou.aliyuncs.com//alias",
            "https://kms.cn-hangzhou.aliyuncs.com//alias/x",
            "user@evil.example//alias/x",
            "kms.cn-hangzhou.aliyuncs.com:0//alias/x",
            "kms.cn-hangzhou.aliyuncs.com:99999//alias/x",
            "kms..aliyuncs.com//alias/x",
            "kms.aliyuncs.com?x=1//alias/x",
            "kms.aliyuncs.com//alias/../../etc",
            "kms.aliyuncs.com//alias/a b",
            "kms.aliyuncs.com//key/versions/",
            "kms.aliyuncs.com/a/b/c/d/e",
            "kms.aliyuncs.com/kst 1/alias/x",
        ] {
            let e = parse(bad).expect_err(bad).to_string();
            assert!(
                e.contains("alias/NAME") && e.contains("KEY_ID/versions/VERSION_ID"),
                "{e}"
            );
        }
    }

    #[test]
    fn long_input_is_not_echoed_whole() {
        let huge = format!("kms.aliyuncs.com//alias/{}", "x".repeat(100_000));
        let e = parse(&huge).unwrap_err().to_string();
        assert!(e.len() < 1000, "error is {} bytes", e.len());
    }
}
