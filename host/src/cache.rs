//! The storage behind the component's WIT `cache` import: one file per entry in a per-user
//! directory (`$XDG_CACHE_HOME/sigstore-kms-alibabakms`, else `~/.cache/…`).
//!
//! The component decides what is kept (non-secret key metadata) and when it is stale; this
//! only keeps bytes, and only where no one else can change them. The directory is created
//! owner-only (0700) and used only while it is the user's, a real directory and not open to
//! others. An entry is read only if it is a regular file of the user's, not writable by group
//! or others, and small; anything else is treated as missing and replaced on the next write
//! (written to a temporary file and renamed, so a reader never sees half an entry). Keys are
//! the component's hex digests, so no key can name a path.

use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// An entry is a few hundred bytes (an RSA-4096 public key included).
const MAX_ENTRY_BYTES: u64 = 16 * 1024;

pub struct CacheDir {
    dir: Option<PathBuf>,
    debug: bool,
}

impl CacheDir {
    /// `dir` is where entries live (None: nothing is kept).
    pub fn new(dir: Option<PathBuf>, debug: bool) -> Self {
        CacheDir { dir, debug }
    }

    fn note(&self, what: std::fmt::Arguments<'_>) {
        if self.debug {
            eprintln!("sigstore-kms-alibabakms: cache: {what}");
        }
    }

    /// The entry's path, for a key that is a hex digest.
    fn path(&self, key: &str) -> Option<PathBuf> {
        let dir = self.dir.as_ref()?;
        let valid = key.len() == 64 && key.bytes().all(|b| b.is_ascii_hexdigit());
        valid.then(|| dir.join(key))
    }

    /// The directory, when it is one only this user can use.
    fn owned_dir(&self, create: bool) -> Option<&Path> {
        let dir = self.dir.as_deref()?;
        if create {
            if let Some(parent) = dir.parent() {
                let _ = std::fs::create_dir_all(parent);
            }
            let _ = std::fs::DirBuilder::new().mode(0o700).create(dir);
        }
        let meta = std::fs::symlink_metadata(dir).ok()?;
        // SAFETY: geteuid has no preconditions.
        let me = unsafe { libc::geteuid() };
        if !meta.is_dir() || meta.uid() != me {
            self.note(format_args!(
                "{} is not a directory of this user's; nothing is kept",
                dir.display()
            ));
            return None;
        }
        if meta.mode() & 0o077 != 0 {
            // Ours, but open to others: close it before anything is kept there.
            if std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).is_err() {
                return None;
            }
        }
        Some(dir)
    }

    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        let path = self.path(key)?;
        self.owned_dir(false)?;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(&path)
            .ok()?;
        let meta = file.metadata().ok()?;
        // SAFETY: geteuid has no preconditions.
        let me = unsafe { libc::geteuid() };
        if !meta.is_file() || meta.uid() != me || meta.mode() & 0o022 != 0 {
            self.note(format_args!(
                "{} is not a private file of this user's; ignored",
                path.display()
            ));
            return None;
        }
        if meta.len() > MAX_ENTRY_BYTES {
            return None;
        }
        let mut bytes = Vec::new();
        file.take(MAX_ENTRY_BYTES + 1)
            .read_to_end(&mut bytes)
            .ok()?;
        (bytes.len() as u64 <= MAX_ENTRY_BYTES).then_some(bytes)
    }

    pub fn set(&self, key: &str, value: &[u8]) {
        let Some(path) = self.path(key) else { return };
        if value.len() as u64 > MAX_ENTRY_BYTES || self.owned_dir(true).is_none() {
            return;
        }
        let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)
            .and_then(|mut f| f.write_all(value))
            .and_then(|_| std::fs::rename(&tmp, &path));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            self.note(format_args!("could not write {}: {e}", path.display()));
        }
    }

    pub fn delete(&self, key: &str) {
        if let Some(path) = self.path(key) {
            if self.owned_dir(false).is_some() {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

/// Where entries live: `$XDG_CACHE_HOME` (when absolute), else `HOME/.cache`, under
/// `sigstore-kms-alibabakms`.
pub fn default_dir(xdg_cache_home: Option<&str>, home: Option<&Path>) -> Option<PathBuf> {
    let base = match xdg_cache_home.map(str::trim).filter(|d| d.starts_with('/')) {
        Some(d) => PathBuf::from(d),
        None => home?.join(".cache"),
    };
    Some(base.join("sigstore-kms-alibabakms"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("cache-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    const KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn entries_round_trip_in_an_owner_only_directory() {
        let dir = temp("round-trip").join("sigstore-kms-alibabakms");
        let c = CacheDir::new(Some(dir.clone()), false);
        assert_eq!(c.get(KEY), None);
        assert!(!dir.exists(), "a lookup creates nothing");
        c.set(KEY, b"entry");
        assert_eq!(c.get(KEY).as_deref(), Some(&b"entry"[..]));
        let mode = std::fs::metadata(&dir).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let mode = std::fs::metadata(dir.join(KEY)).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600);
        c.delete(KEY);
        assert_eq!(c.get(KEY), None);
    }

    #[test]
    fn keys_that_are_not_digests_and_files_open_to_others_are_refused() {
        let dir = temp("refused");
        let c = CacheDir::new(Some(dir.clone()), false);
        c.set("../escape", b"x");
        assert!(!dir.join("../escape").exists());
        c.set(KEY, b"entry");
        std::fs::set_permissions(dir.join(KEY), std::fs::Permissions::from_mode(0o666)).unwrap();
        assert_eq!(c.get(KEY), None, "writable by others");
        c.set(KEY, b"again");
        assert_eq!(c.get(KEY).as_deref(), Some(&b"again"[..]), "replaced");
    }

    #[test]
    fn the_directory_follows_xdg_then_home() {
        assert_eq!(
            default_dir(Some("/x/cache"), Some(Path::new("/home/u"))).unwrap(),
            Path::new("/x/cache/sigstore-kms-alibabakms")
        );
        assert_eq!(
            default_dir(Some("relative"), Some(Path::new("/home/u"))).unwrap(),
            Path::new("/home/u/.cache/sigstore-kms-alibabakms")
        );
        assert_eq!(default_dir(None, None), None);
    }
}
