//! The real tools the end-to-end suite and the benchmark drive, fetched by `fetch.sh` into
//! the build directory's `tools/bin`: where they are, and a real OCI registry on loopback.

mod registry;

pub use registry::Registry;

use std::path::{Path, PathBuf};

/// `TARGET/tools/bin` for a binary built in `TARGET/debug` or `TARGET/release`.
pub fn tools_bin(built_binary: &Path) -> PathBuf {
    built_binary
        .parent()
        .and_then(Path::parent)
        .expect("a built binary lies in the target directory")
        .join("tools/bin")
}

/// `var`'s path when set, else `default`; a tool that is not there is a clear error.
pub fn tool(var: &str, default: PathBuf) -> Result<PathBuf, String> {
    let path = std::env::var_os(var).map(PathBuf::from).unwrap_or(default);
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "{} not found: run tests/tools/fetch.sh (./test.sh does), or set {var}=/path",
            path.display()
        ))
    }
}
