//! The one wasmtime [`Config`] of this plugin.
//!
//! A precompiled component only loads into an engine whose settings match the ones it was
//! compiled with (epoch interruption, fuel, memory layout, wasm features, …). The host's
//! `build.rs` precompiles the guest with it (a build dependency), and the binary builds its
//! runtime engine with it, so the two cannot drift apart.
//!
//! Only settings that exist without Cranelift belong here: the runtime is built without a
//! compiler. `build.rs` adds the compilation target on top.

use wasmtime::Config;

/// Settings shared by the build-time precompile and the run-time engine.
pub fn engine_config() -> Config {
    let mut config = Config::new();
    // Lets the host bound the guest's wall-clock time (cosign's `ctxDeadline`) by
    // advancing the engine epoch; the compiled code carries the checks, so it must be
    // decided at build time.
    config.epoch_interruption(true);
    // Start-up is paid on every cosign call, and loading the precompiled component is most
    // of it; these tables only serve external profilers and debuggers and would make the
    // artifact bigger and its loading slower (wasm backtraces do not need them).
    config.native_unwind_info(false);
    config.generate_address_map(false);
    // The binary's copy of the guest multiplies 64×64→128 bits in one instruction (build.rs);
    // the portable component does not need it.
    config.wasm_wide_arithmetic(true);
    config
}
