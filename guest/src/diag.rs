//! Diagnostics on stderr when `SIGSTORE_ALIBABAKMS_DEBUG` is set: one line per request and
//! per credential source tried. stdout belongs to cosign's protocol, so nothing goes there.
//!
//! Only names, codes, hosts, timings and request ids are printed: never a header, a query,
//! a body, a key, a secret or a token.

use std::sync::atomic::{AtomicBool, Ordering};

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
