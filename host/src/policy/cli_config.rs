//! The granted Aliyun CLI config as the host reads it: the profile the guest will use (the
//! one `ALIBABA_CLOUD_PROFILE` or the file's `current` names) and the `source_profile`s of
//! its `ChainableRamRoleArn` chain, walked as the guest walks it. What the sandbox adds for a
//! profile (an OIDC token's directory in [`super::grants`], a sign-in host in
//! [`super::allow`]) follows from these profiles only, never from one the guest will not use.

use std::path::PathBuf;

use alibabakms_contract::vars;
use serde_json::Value;

use super::GrantedFile;

/// The selected profile and the profiles it chains to, in order.
pub(super) struct CliChain {
    /// The config file, as the host sees it (for the reasons `--print-sandbox` shows).
    pub path: PathBuf,
    pub profiles: Vec<(String, Value)>,
}

/// A string field of a profile (or of the file), trimmed; `""` when absent or not a string.
pub(super) fn field(v: &Value, k: &str) -> String {
    v.get(k)
        .and_then(|x| x.as_str())
        .map(|x| x.trim().to_string())
        .unwrap_or_default()
}

/// The chain of the selected profile in the granted config. None when the CLI-profile
/// source is disabled, no config is granted, or it is not valid JSON (the guest reports it).
/// A loop or a chain too deep ends the walk where the guest refuses it; a profile the file
/// does not have ends it too.
pub(super) fn selected_chain(
    lookup: &impl Fn(&str) -> Option<String>,
    files: &[GrantedFile],
) -> Option<CliChain> {
    if lookup("ALIBABA_CLOUD_CLI_PROFILE_DISABLED")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
    {
        return None;
    }
    let config = files.iter().find(|f| f.var == vars::CONFIG_FILE)?;
    // A FIFO, a device or a huge file is not read (the guest reports it when it opens it).
    let text = crate::files::read_capped(&config.host_path, 1 << 20).ok()?;
    let json: Value = serde_json::from_slice(&text).ok()?;
    let profiles: &[Value] = json
        .get("profiles")
        .and_then(|p| p.as_array())
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let start = lookup("ALIBABA_CLOUD_PROFILE")
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| field(&json, "current"));
    let find = |name: &str| profiles.iter().find(|p| field(p, "name") == name);
    // The guest's own walk (the contract's), modes in any case as the CLI and the guest
    // accept them.
    let names = alibabakms_contract::profile_chain(&start, |name| {
        let profile = find(name)?;
        let from = field(profile, "source_profile");
        let chains = field(profile, "mode").eq_ignore_ascii_case("ChainableRamRoleArn");
        (chains && !from.is_empty()).then_some(from)
    })
    .unwrap_or_else(|e| e.chain().to_vec());
    let profiles = names
        .into_iter()
        .map_while(|name| find(&name).map(|p| (name, p.clone())))
        .collect();
    Some(CliChain {
        path: config.host_path.clone(),
        profiles,
    })
}
