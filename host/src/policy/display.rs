//! How the policy is shown: the `Display` that `--print-sandbox` prints and a `Debug` that,
//! like it, names variables but never shows their values. Apart so the wording of that
//! output is in one place, next to nothing that decides the policy.

use std::fmt;

use alibabakms_contract::vars;

use super::allow::{ALIBABA_DOMAIN_SUFFIX, ALLOWED_HOSTS_ENV, DEFAULT_IMDS_HOST, HTTPS_PORT};
use super::{SandboxPolicy, GUEST_ENV_VARS};

impl fmt::Debug for SandboxPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SandboxPolicy")
            .field("env", &self.env_names().collect::<Vec<_>>())
            .field("hosts", &self.hosts)
            .field(
                "files",
                &self.files.iter().map(|f| &f.host_path).collect::<Vec<_>>(),
            )
            .field(
                "dirs",
                &self.dirs.iter().map(|d| &d.host_dir).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl fmt::Display for SandboxPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "environment passed to the component (names only; values are never shown):"
        )?;
        if self.env.is_empty() {
            writeln!(f, "  (none set)")?;
        }
        for name in self.env_names() {
            writeln!(f, "  {name}")?;
        }
        writeln!(f, "  (candidates: {})", GUEST_ENV_VARS.join(", "))?;
        writeln!(
            f,
            "network: through wasi:http only (HTTPS; plain HTTP only to ECS instance metadata); no \
             sockets, no redirects followed"
        )?;
        writeln!(
            f,
            "  allowed: https://*{ALIBABA_DOMAIN_SUFFIX}:{HTTPS_PORT}"
        )?;
        for host in &self.hosts.extra {
            writeln!(f, "  allowed: https://{host}  (from {ALLOWED_HOSTS_ENV})")?;
        }
        writeln!(
            f,
            "  allowed: http://{DEFAULT_IMDS_HOST}:80  (ECS instance metadata)"
        )?;
        for e in &self.hosts.from_env {
            writeln!(
                f,
                "  allowed: {}://{}  (from {})",
                e.scheme(),
                e.host,
                e.var
            )?;
        }
        for p in &self.hosts.from_profiles {
            writeln!(f, "  allowed: https://{}  ({})", p.host, p.why)?;
        }
        match (&self.cache, &self.cache_ttl) {
            (_, Err(e)) => writeln!(f, "cache: off ({e})")?,
            (None, Ok(ttl)) if ttl.is_zero() => writeln!(f, "cache: off ({}=0)", vars::CACHE_TTL)?,
            (None, Ok(_)) => writeln!(f, "cache: off (no home directory)")?,
            (Some(dir), Ok(ttl)) => writeln!(
                f,
                "cache: key metadata (key id, version, public key; never a secret) in {}/, \
                 owner-only, each entry used for {} s ({}); not a directory the component sees",
                dir.display(),
                ttl.as_secs(),
                vars::CACHE_TTL
            )?,
        }
        if self.files.is_empty() && self.dirs.is_empty() {
            writeln!(f, "files: none (no directory is shared with the component)")?;
        } else {
            writeln!(f, "files (each file's own directory, read-only):")?;
        }
        for file in &self.files {
            writeln!(
                f,
                "  {} -> {} ({})",
                file.host_path.display(),
                file.guest_path,
                file.var
            )?;
        }
        for dir in &self.dirs {
            writeln!(
                f,
                "  {}/ -> {}/ (directory of the {})",
                dir.host_dir.display(),
                dir.guest_dir,
                dir.why
            )?;
        }
        for note in &self.not_shared {
            writeln!(f, "  not shared: {note}")?;
        }
        Ok(())
    }
}
