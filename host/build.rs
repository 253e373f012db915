//! Builds the guest component and compiles it ahead of time for the host binary.
//!
//! 1. Runs a nested `cargo build --release --locked -p alibabakms-guest --target wasm32-wasip2`
//!    in a target directory of its own, `alibabakms-guest/` inside the outer one (the outer
//!    directory itself would deadlock on cargo's build lock), with the outer build's host-only
//!    environment removed. The guest is the same for every host build, so the debug and
//!    release builds, for x86_64 and for aarch64, share it: a clean CI run builds it once.
//!    It builds the guest twice: the portable component (plain WASI 0.2, for any host), and the
//!    binary's own copy with the wide-arithmetic proposal (a 64×64→128-bit multiply, which
//!    makes the P-256 and RSA checks about ten times faster than 128-bit products emulated in
//!    32-bit wasm). The logic is the same source; only the instructions differ.
//!    `ALIBABAKMS_GUEST_WASM=/path/to/guest.wasm` skips this step and uses a prebuilt component
//!    for both.
//! 2. Copies the portable component to `$OUT_DIR/alibabakms-guest.wasm`.
//! 3. Precompiles the binary's copy with [`engine::engine_config`] (the run-time settings) for
//!    the baseline CPU of the target triple, so the artifact loads on any CPU of that
//!    architecture, and writes `$OUT_DIR/alibabakms-guest.cwasm`.
//!
//! The binary embeds both files; at run time it only loads the `.cwasm`, in place (src/guest.rs).

use alibabakms_engine as engine;

use std::env;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const GUEST_PACKAGE: &str = "alibabakms-guest";
const GUEST_ARTIFACT: &str = "alibabakms_guest.wasm";
const WASM_TARGET: &str = "wasm32-wasip2";
/// Escape hatch for CI and packagers: a component built elsewhere.
const PREBUILT_ENV: &str = "ALIBABAKMS_GUEST_WASM";
/// The binary's own copy may use this proposal; `engine_config` enables it at run time.
const NATIVE_COPY_RUSTFLAGS: &str = "-Ctarget-feature=+wide-arithmetic";

type BoxError = Box<dyn std::error::Error>;

fn main() -> Result<(), BoxError> {
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").ok_or("no CARGO_MANIFEST_DIR")?);
    let workspace = manifest_dir
        .parent()
        .ok_or("host/ has no parent")?
        .to_path_buf();
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").ok_or("no OUT_DIR")?);

    for path in [
        "../guest/src",
        "../guest/Cargo.toml",
        "../guest/contract",
        "../wit",
        "../Cargo.lock",
        "../Cargo.toml",
        "../rust-toolchain.toml",
    ] {
        println!("cargo:rerun-if-changed={path}");
    }
    println!("cargo:rerun-if-env-changed={PREBUILT_ENV}");

    let (portable_path, native_path) = match env::var_os(PREBUILT_ENV) {
        Some(prebuilt) => {
            let prebuilt = PathBuf::from(prebuilt);
            println!("cargo:rerun-if-changed={}", prebuilt.display());
            (prebuilt.clone(), prebuilt)
        }
        None => {
            let shared = guest_target_dir(&out_dir);
            (
                build_guest(&workspace, &shared.join("portable"), None)?,
                build_guest(
                    &workspace,
                    &shared.join("wide"),
                    Some(NATIVE_COPY_RUSTFLAGS),
                )?,
            )
        }
    };
    let read = |path: &Path| fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()));
    fs::write(out_dir.join("alibabakms-guest.wasm"), read(&portable_path)?)?;

    let cwasm = precompile(&read(&native_path)?)?;
    fs::write(out_dir.join("alibabakms-guest.cwasm"), cwasm)?;
    Ok(())
}

/// `<outer target dir>/alibabakms-guest`. `OUT_DIR` is
/// `<target dir>/[<triple>/]<profile>/build/<package>-<hash>/out`; the triple is there when
/// cargo was given `--target`. Any other layout keeps the guest under `OUT_DIR`.
fn guest_target_dir(out_dir: &Path) -> PathBuf {
    let target = env::var("TARGET").unwrap_or_default();
    let above_profile = out_dir.ancestors().nth(4);
    let target_dir = match above_profile {
        Some(dir) if dir.file_name().is_some_and(|n| n == target.as_str()) => dir.parent(),
        dir => dir,
    };
    match target_dir {
        Some(dir) if out_dir.ends_with("out") => dir.join("alibabakms-guest"),
        _ => out_dir.join("guest"),
    }
}

/// Builds the guest with a nested cargo (with `rustflags`, if any) and returns the path of
/// the component.
fn build_guest(
    workspace: &Path,
    target_dir: &Path,
    rustflags: Option<&str>,
) -> Result<PathBuf, BoxError> {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace)
        .args([
            "build",
            "--release",
            "--locked",
            "--target",
            WASM_TARGET,
            "-p",
            GUEST_PACKAGE,
        ])
        .arg("--target-dir")
        .arg(target_dir)
        // Flags meant for the host (linker, coverage, sanitizers) break the wasm link.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        // Our own --target-dir must win; an inherited one would deadlock on the outer lock.
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET_DIR")
        // `cargo clippy` sets this to clippy-driver; the guest is built, not linted, here.
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        // The build script's stdout is cargo's instruction channel; keep the child off it.
        .stdout(Stdio::from(std::io::stderr()));
    if let Some(flags) = rustflags {
        cmd.env("CARGO_ENCODED_RUSTFLAGS", flags);
    }
    // cargo-llvm-cov instruments everything it sees; the guest must stay a plain build.
    for (key, _) in env::vars_os() {
        if key.to_string_lossy().starts_with("CARGO_LLVM_COV") {
            cmd.env_remove(&key);
        }
    }
    let status = cmd
        .status()
        .map_err(|e| format!("running cargo for the guest: {e}"))?;
    if !status.success() {
        return Err(format!(
            "building the guest component failed ({status}); is the {WASM_TARGET} target installed? \
             (`rustup target add {WASM_TARGET}`)"
        )
        .into());
    }
    Ok(target_dir
        .join(WASM_TARGET)
        .join("release")
        .join(GUEST_ARTIFACT))
}

/// Compiles the component with the run-time settings for the baseline CPU of the target.
fn precompile(wasm: &[u8]) -> Result<Vec<u8>, BoxError> {
    let target = env::var("TARGET")?;
    let mut config = engine::engine_config();
    // An explicit target turns off the CPU features Cranelift would otherwise detect on the
    // build machine (AVX2, AVX-512, …); the artifact then runs on every CPU of the
    // architecture instead of failing to load on an older one.
    config
        .target(&target)
        .map_err(|e| format!("target {target}: {e}"))?;
    let engine = wasmtime::Engine::new(&config).map_err(|e| format!("wasmtime engine: {e}"))?;
    let cwasm = engine
        .precompile_component(wasm)
        .map_err(|e| format!("precompiling the guest component: {e:?}"))?;
    Ok(cwasm)
}
