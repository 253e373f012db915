//! Which files and directories the guest may read: the credential files, the token
//! directories an Aliyun CLI profile names, and the home-directory rule that keeps both from
//! exposing more. Apart from the allow-list because it touches the file system, not the network.

use super::cli_config::{field, CliChain};

/// The credential files, as the contract names them.
pub(super) use alibabakms_contract::CREDENTIAL_FILES;

/// One file shared read-only with the guest: its own directory is preopened (WASI cannot
/// share a single file), never the home directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrantedFile {
    /// The variable the guest reads to find it.
    pub var: &'static str,
    pub host_path: std::path::PathBuf,
    pub host_dir: std::path::PathBuf,
    pub guest_dir: &'static str,
    pub guest_path: String,
}

/// A directory shared read-only at its own absolute path, because a credential file names a
/// file in it: the `oidc_token_file` of an Aliyun CLI `OIDC` profile. The guest opens the
/// path exactly as the config file writes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrantedDir {
    pub host_dir: std::path::PathBuf,
    /// The same path, as the guest sees it.
    pub guest_dir: String,
    /// Why it is shared, e.g. `oidc_token_file of profile "ci" in /home/u/.aliyun/config.json`.
    pub why: String,
}

/// A credential file that exists but is not shared, because its directory is `/` or
/// contains the home directory.
pub(super) struct RefusedFile {
    pub(super) var: &'static str,
    /// As the user named it (or the default under HOME).
    pub(super) path: String,
    pub(super) reason: &'static str,
}

/// The credential files that exist: the path in the variable, else the default under HOME.
/// A file that does not exist is not granted (the guest then reports that source as absent);
/// one whose directory may not be shared (see [`shareable_dir`]) is refused.
pub(super) fn granted_files(
    lookup: &impl Fn(&str) -> Option<String>,
) -> (Vec<GrantedFile>, Vec<RefusedFile>) {
    let home = lookup("HOME").filter(|h| !h.is_empty());
    let real_home = home_dir(lookup);
    let (mut granted, mut refused) = (Vec::new(), Vec::new());
    for cf in CREDENTIAL_FILES {
        let named = match lookup(cf.var).filter(|p| !p.trim().is_empty()) {
            Some(p) => std::path::PathBuf::from(p.trim()),
            None => match (&home, cf.default_in_home) {
                (Some(home), Some(default)) => std::path::Path::new(home).join(default),
                _ => continue,
            },
        };
        let Ok(path) = std::fs::canonicalize(&named) else {
            continue;
        };
        if !path.is_file() {
            continue;
        }
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            continue;
        };
        if let Err(reason) = shareable_dir(dir, real_home.as_deref()) {
            refused.push(RefusedFile {
                var: cf.var,
                path: named.display().to_string(),
                reason,
            });
            continue;
        }
        granted.push(GrantedFile {
            var: cf.var,
            guest_path: format!("{}/{}", cf.guest_dir, name.to_string_lossy()),
            host_dir: dir.to_path_buf(),
            host_path: path.clone(),
            guest_dir: cf.guest_dir,
        });
    }
    (granted, refused)
}

/// The home directory, resolved (symlinks and `..` removed): `HOME`, or the user's entry in
/// the system's account database when `HOME` is unset or empty, so that `env -u HOME` cannot
/// make the real home shareable.
pub(super) fn home_dir(lookup: &impl Fn(&str) -> Option<String>) -> Option<std::path::PathBuf> {
    match lookup("HOME").filter(|h| !h.trim().is_empty()) {
        Some(h) => std::fs::canonicalize(h.trim()).ok(),
        None => system_home().and_then(|h| std::fs::canonicalize(h).ok()),
    }
}

/// The home directory of the effective user in the account database (getpwuid_r).
fn system_home() -> Option<std::path::PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let mut buf = vec![0u8; 16 * 1024];
    // SAFETY: an all-zero passwd is a valid value to be overwritten.
    let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call, `buf` outlives every use of `entry`.
    let rc = unsafe {
        libc::getpwuid_r(
            libc::geteuid(),
            &mut entry,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut found,
        )
    };
    if rc != 0 || found.is_null() || entry.pw_dir.is_null() {
        return None;
    }
    // SAFETY: getpwuid_r succeeded, so pw_dir points at a NUL-terminated string in `buf`.
    let dir = unsafe { std::ffi::CStr::from_ptr(entry.pw_dir) };
    let dir = std::ffi::OsStr::from_bytes(dir.to_bytes());
    (!dir.is_empty()).then(|| std::path::PathBuf::from(dir))
}

/// Why a credential file's directory is not shared: the one rule for every file the sandbox
/// shares by its directory. `real_dir` is resolved; sharing `/`, the home directory or any
/// directory above it would show the component every file in the home directory.
pub(super) fn shareable_dir(
    real_dir: &std::path::Path,
    real_home: Option<&std::path::Path>,
) -> Result<(), &'static str> {
    if real_dir.parent().is_none() || real_home.is_some_and(|h| h.starts_with(real_dir)) {
        return Err(
            "its directory is / or contains the home directory, which is never shared; move \
             the file into a directory of its own (e.g. ~/.alibabacloud/) and name it there",
        );
    }
    Ok(())
}

/// The directories of the `oidc_token_file`s the selected Aliyun CLI profile uses: the
/// profile itself when its mode is `OIDC`, and each `source_profile` of a
/// `ChainableRamRoleArn` chain ([`super::cli_config::selected_chain`]). Of the config only
/// the profile names, modes, source profiles and token paths are read. A token path that is
/// not absolute, not a readable file, or whose directory is `/`, the home directory or above
/// it, is not shared, with the reason.
pub(super) fn cli_oidc_token_dirs(
    lookup: &impl Fn(&str) -> Option<String>,
    chain: Option<&CliChain>,
) -> (Vec<GrantedDir>, Vec<String>) {
    let (mut dirs, mut not_shared) = (Vec::new(), Vec::new());
    let Some(chain) = chain else {
        return (dirs, not_shared);
    };
    let home = home_dir(lookup);
    for (name, profile) in &chain.profiles {
        let mode = field(profile, "mode");
        let token_file = field(profile, "oidc_token_file");
        if mode.eq_ignore_ascii_case("OIDC") && !token_file.is_empty() {
            let why = format!(
                "oidc_token_file of profile {name:?} in {}",
                chain.path.display()
            );
            match token_dir(&token_file, home.as_deref()) {
                Ok(dir) => {
                    if !dirs.iter().any(|d: &GrantedDir| d.host_dir == dir) {
                        dirs.push(GrantedDir {
                            guest_dir: dir.display().to_string(),
                            host_dir: dir,
                            why,
                        });
                    }
                }
                Err(reason) => not_shared.push(format!("{token_file} ({why}): {reason}")),
            }
        }
    }
    (dirs, not_shared)
}

/// The directory to share for a token file, as written (the guest opens the written path),
/// or why it is not shared.
fn token_dir(
    token_file: &str,
    home: Option<&std::path::Path>,
) -> Result<std::path::PathBuf, &'static str> {
    let path = std::path::Path::new(token_file);
    if !path.is_absolute() {
        return Err("not an absolute path");
    }
    // Only looked at, never opened here: opening a FIFO would wait for a writer.
    if crate::files::is_regular(path).is_err() {
        return Err("not a regular file");
    }
    let dir = path.parent().ok_or("no directory")?;
    let real = std::fs::canonicalize(dir).map_err(|_| "its directory cannot be resolved")?;
    shareable_dir(&real, home)?;
    Ok(dir.to_path_buf())
}
