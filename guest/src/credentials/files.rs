//! Reading the credential files the host shares: each is named by a variable the host sets
//! to its path inside the sandbox, checked to be a regular file and capped in size.

use super::{var, CredentialsError, EnvLookup};

/// Set by the host, not the user: the credential-file variables whose file it did not share.
const NOT_SHARED_VAR: &str = alibabakms_contract::vars::NOT_SHARED;

/// Credential files are small; a larger one is not a credential file.
const MAX_FILE_BYTES: u64 = 1 << 20;

/// Reads a credential file named by `var` (the host grants its directory read-only and sets
/// `var` to the path inside the sandbox). `None` when the variable is unset: no such file.
pub fn read_named_file(
    env: EnvLookup<'_>,
    variable: &str,
) -> Result<Option<(String, String)>, CredentialsError> {
    let Some(path) = var(env, variable) else {
        return Ok(None);
    };
    // The host lists the files it would not share (their directory is `/` or contains the
    // home directory): say so, rather than "not found".
    if var(env, NOT_SHARED_VAR).is_some_and(|names| names.split(',').any(|n| n == variable)) {
        let dir = std::path::Path::new(&path)
            .parent()
            .map(|d| d.display().to_string())
            .unwrap_or_default();
        return Err(CredentialsError::Config(format!(
            "{variable}={path} is not shared with the plugin's sandbox: its directory {dir} is / \
             or contains your home directory, and the plugin never shares those. Move the file \
             into a directory of its own (e.g. ~/.alibabacloud/) and set {variable} to its new \
             path (see --print-sandbox)"
        )));
    }
    let text = read_small_file(&path, &format!("{variable}={path}"))?;
    Ok(Some((path, text)))
}

/// Reads a credential file at most [`MAX_FILE_BYTES`] long; `what` names it in errors.
pub fn read_small_file(path: &str, what: &str) -> Result<String, CredentialsError> {
    let fail = |e: std::io::Error| CredentialsError::Config(format!("cannot read {what}: {e}"));
    // Looked at before it is opened: opening a FIFO would wait for a writer.
    if !std::fs::metadata(path).map_err(fail)?.is_file() {
        return Err(CredentialsError::Config(format!(
            "cannot read {what}: it is not a regular file"
        )));
    }
    let file = std::fs::File::open(path).map_err(fail)?;
    let mut text = String::new();
    use std::io::Read;
    file.take(MAX_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(fail)?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(CredentialsError::Config(format!(
            "{what} is larger than 1 MiB"
        )));
    }
    Ok(text)
}

/// The profile a file-based source uses: `ALIBABA_CLOUD_PROFILE`, else `fallback`.
pub fn profile_name(env: EnvLookup<'_>, fallback: &str) -> String {
    var(env, "ALIBABA_CLOUD_PROFILE").unwrap_or_else(|| fallback.to_string())
}

/// Why a file source was skipped: neither its default file (which the host shares when it
/// exists) nor `variable` is there.
pub fn not_configured(variable: &str) -> String {
    let default = alibabakms_contract::CREDENTIAL_FILES
        .iter()
        .find(|f| f.var == variable)
        .and_then(|f| f.default_in_home);
    match default {
        Some(file) => format!("no ~/{file} and {variable} is not set"),
        None => format!("{variable} is not set"),
    }
}
