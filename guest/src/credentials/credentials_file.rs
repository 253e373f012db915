//! The shared credentials file `~/.alibabacloud/credentials`: an INI file with one section
//! per profile (`access_key`, `ram_role_arn`, `ecs_ram_role`).

use super::files::{not_configured, profile_name, read_named_file};
use super::{imds, keys_from, sts, Context, Credentials, CredentialsError, Found};

/// `~/.alibabacloud/credentials`: an INI file with one section per profile.
pub fn credentials_file(cx: &Context<'_>) -> Result<Found, CredentialsError> {
    let env = cx.env;
    const VAR: &str = alibabakms_contract::vars::CREDENTIALS_FILE;
    let Some((path, text)) = read_named_file(env, VAR)? else {
        return Ok(Found::Skipped(not_configured(VAR)));
    };
    let name = profile_name(env, "default");
    let Some(section) = ini_section(&text, &name) else {
        return Ok(Found::Skipped(format!("{path} has no section [{name}]")));
    };
    let get = |k: &str| {
        section
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    };
    let source = format!("credentials file {path} [{name}]");
    match get("type") {
        "access_key" => keys_from(
            &source,
            get("access_key_id"),
            get("access_key_secret"),
            None,
        ),
        "ram_role_arn" => {
            let Found::Yes(keys) = keys_from(
                &source,
                get("access_key_id"),
                get("access_key_secret"),
                None,
            )?
            else {
                unreachable!("keys_from yields or fails")
            };
            if get("role_arn").is_empty() {
                return Err(CredentialsError::Config(format!(
                    "{source} has no role_arn"
                )));
            }
            let options = sts::AssumeOptions {
                session: Some(get("role_session_name")).filter(|s| !s.is_empty()),
                policy: Some(get("policy")),
                ..Default::default()
            };
            sts::assume_role(cx, &keys, get("role_arn"), &options).map(Found::Yes)
        }
        "ecs_ram_role" => {
            let role = Some(get("role_name").to_string()).filter(|r| !r.is_empty());
            match imds::fetch(cx, role)? {
                Found::Yes(c) => Ok(Found::Yes(Credentials {
                    source: format!("{} for {source}", c.source),
                    ..c
                })),
                Found::Skipped(why) => Err(CredentialsError::Config(format!("{source}: {why}"))),
            }
        }
        "" => Err(CredentialsError::Config(format!(
            "{source} has no type (expected type = access_key)"
        ))),
        other => Err(CredentialsError::Config(format!(
            "{source} has type {other:?}, which this plugin does not support yet (supported: \
             access_key, ram_role_arn, ecs_ram_role)"
        ))),
    }
}

/// The `key = value` pairs of one `[section]`; `#`/`;` start comments, quotes are stripped.
fn ini_section(text: &str, wanted: &str) -> Option<Vec<(String, String)>> {
    let mut current: Option<&str> = None;
    let mut found: Option<Vec<(String, String)>> = None;
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = Some(name.trim());
            if name.trim() == wanted {
                found.get_or_insert_with(Vec::new);
            }
            continue;
        }
        if current == Some(wanted) {
            if let Some((k, v)) = line.split_once('=') {
                let v = v.trim().trim_matches('"').trim_matches('\'');
                found
                    .get_or_insert_with(Vec::new)
                    .push((k.trim().to_string(), v.to_string()));
            }
        }
    }
    found
}
