//! The guest component embedded in this binary, and how it is loaded.
//!
//! build.rs compiles the guest ahead of time; the binary carries the result and only has to
//! make it runnable. `Component::deserialize` would first copy the 1.9 MB artifact into fresh
//! memory, and writing that copy (about 460 page faults) was half of every call's start-up.
//! On Linux the artifact is instead used where it already is: it sits page-aligned in this
//! binary's read-only data, wasmtime reads it in place (`deserialize_raw`), and the one thing
//! left to do, making its `.text` executable, is an `mprotect` of those pages. The kernel then
//! maps them from the page cache as the code runs, the same way it maps this binary's own.

use std::sync::OnceLock;

use wasmtime::component::Component;
use wasmtime::Engine;

use alibabakms_engine::engine_config;

/// Bytes aligned for use in place: 64 KiB is the largest page size wasmtime compiles for
/// (the artifact's `.text` is aligned to the target's page size within it).
#[repr(C, align(65536))]
struct PageAligned<B: ?Sized>(B);

/// The guest compiled ahead of time by build.rs for this target's baseline CPU.
static GUEST_CWASM: &PageAligned<[u8]> = &PageAligned(*include_bytes!(concat!(
    env!("OUT_DIR"),
    "/alibabakms-guest.cwasm"
)));

/// The portable component (any WASI 0.2 host with `wasi:http` can run it).
pub static GUEST_WASM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/alibabakms-guest.wasm"));

/// The engine and the embedded component, loaded once per process: wasmtime registers
/// loaded code by its address, and used in place every load would have the same one.
pub fn load() -> Result<(Engine, Component), String> {
    static LOADED: OnceLock<Result<(Engine, Component), String>> = OnceLock::new();
    LOADED
        .get_or_init(|| {
            #[allow(unused_mut)]
            let mut config = engine_config();
            #[cfg(target_os = "linux")]
            config.with_custom_code_memory(Some(std::sync::Arc::new(in_place::ReadOnlyCode)));
            let engine = Engine::new(&config)
                .map_err(|e| format!("cannot start the WebAssembly engine: {e}"))?;
            // SAFETY: deserializing runs the machine code it is given, so the bytes must come
            // from wasmtime's own `precompile_component`. GUEST_CWASM is exactly that: build.rs
            // produced it with this same wasmtime version and `engine_config()`, and it is
            // compiled into this binary, so nobody can swap it after the build. A mismatch
            // (another wasmtime version, config or CPU) is detected from the artifact's header
            // and reported, not executed. In place (Linux), wasmtime also needs the memory to
            // outlive the component and never change: it is a `static` in read-only data.
            #[cfg(target_os = "linux")]
            let component = unsafe {
                Component::deserialize_raw(&engine, std::ptr::NonNull::from(&GUEST_CWASM.0))
            };
            #[cfg(not(target_os = "linux"))]
            let component = unsafe { Component::deserialize(&engine, &GUEST_CWASM.0) };
            let component =
                component.map_err(|e| format!("cannot load the embedded component: {e}"))?;
            Ok((engine, component))
        })
        .clone()
}

#[cfg(target_os = "linux")]
mod in_place {
    use wasmtime::{CustomCodeMemory, Result};

    /// Code memory that is read-only data of this binary: publishing makes it read+execute,
    /// unpublishing read-only again. It is never writable, so W^X holds throughout.
    pub struct ReadOnlyCode;

    impl CustomCodeMemory for ReadOnlyCode {
        fn required_alignment(&self) -> usize {
            // SAFETY: sysconf has no preconditions.
            usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096)
        }

        fn publish_executable(&self, ptr: *const u8, len: usize) -> Result<()> {
            // SAFETY: wasmtime passes the artifact's `.text`, aligned to the page size
            // (checked against `required_alignment`) and inside GUEST_CWASM; `.text` is not
            // the artifact's last section, so its pages hold nothing but the artifact. The
            // code is mapped, never written, in this process: no instruction cache to clear.
            if unsafe {
                libc::mprotect(
                    ptr as *mut libc::c_void,
                    len,
                    libc::PROT_READ | libc::PROT_EXEC,
                )
            } == 0
            {
                Ok(())
            } else {
                Err(wasmtime::format_err!(
                    "cannot make the component's code executable: {}",
                    std::io::Error::last_os_error()
                ))
            }
        }

        fn unpublish_executable(&self, ptr: *const u8, len: usize) -> Result<()> {
            // SAFETY: as above; wasmtime calls this when the component is dropped, and
            // nothing runs from these pages any more.
            match unsafe { libc::mprotect(ptr as *mut libc::c_void, len, libc::PROT_READ) } {
                0 => Ok(()),
                _ => Err(wasmtime::format_err!("{}", std::io::Error::last_os_error())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_artifact_is_aligned_for_use_in_place() {
        assert_eq!(GUEST_CWASM.0.as_ptr() as usize % 65536, 0);
    }

    #[test]
    fn every_load_in_a_process_is_the_one_component() {
        let (engine, first) = load().unwrap();
        let handles: Vec<_> = (0..4)
            .map(|_| std::thread::spawn(|| load().unwrap()))
            .collect();
        for handle in handles {
            let (other_engine, other) = handle.join().unwrap();
            assert!(Engine::same(&engine, &other_engine));
            assert_eq!(
                first.component_type().exports(&engine).count(),
                other.component_type().exports(&engine).count()
            );
        }
    }
}
