//! `sigstore-kms-alibabakms`: the program cosign runs for every `alibabakms://` key.
//!
//! All plugin logic lives in a WebAssembly component compiled into this binary; this crate
//! is the host around it. `main` sorts argv into the few flags meant for people (`--help`,
//! `--version`, `--print-sandbox`) and everything else, which is cosign's protocol and is
//! handed unchanged to the component.

mod cache;
mod egress;
mod files;
mod guest;
mod policy;
mod run;
mod stdin;

use std::io::Write;
use std::process::ExitCode;

use policy::{SandboxPolicy, ALLOWED_HOSTS_ENV, DEBUG_ENV, GUEST_ENV_VARS};

const PROGRAM: &str = env!("CARGO_BIN_NAME");
const VERSION: &str = env!("CARGO_PKG_VERSION");

fn main() -> ExitCode {
    let _ = run::STARTED.set(std::time::Instant::now());
    let args: Vec<String> = std::env::args_os()
        .map(|arg| arg.to_string_lossy().into_owned())
        .collect();
    match args.get(1).map(String::as_str) {
        Some("--help" | "-h") => {
            print!("{}", help());
            ExitCode::SUCCESS
        }
        Some("--version" | "-V") => {
            println!("{PROGRAM} {VERSION} (cosign KMS plugin protocol v1)");
            ExitCode::SUCCESS
        }
        Some("--print-sandbox") => print_sandbox(),
        // Hidden: the portable component, for other WASI hosts and for inspection.
        Some("--write-wasm") => write_wasm(args.get(2).map(String::as_str)),
        _ => protocol(&args),
    }
}

/// One cosign call: run the component and print exactly its one JSON answer.
fn protocol(args: &[String]) -> ExitCode {
    // argv[0] is the program's name, not the path it was started from.
    let argv: Vec<String> = std::iter::once(PROGRAM.to_string())
        .chain(args.iter().skip(1).cloned())
        .collect();
    let outcome = match SandboxPolicy::from_env() {
        Err(e) => run::error_outcome(&e.to_string()),
        Ok(policy) => match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime.block_on(run::run(&argv, &policy)),
            Err(e) => run::error_outcome(&format!("cannot start the async runtime: {e}")),
        },
    };
    let mut stdout = std::io::stdout().lock();
    // A closed stdout means cosign is gone; there is no one left to tell.
    let _ = stdout
        .write_all(&outcome.stdout)
        .and_then(|()| stdout.flush());
    ExitCode::from(outcome.exit_code)
}

fn print_sandbox() -> ExitCode {
    match SandboxPolicy::from_env() {
        Ok(policy) => {
            print!("{policy}");
            let t = egress::Timeouts::DEFAULT;
            println!(
                "timeouts: connect {:?}, first byte {:?}, between bytes {:?} (the component may only shorten them)",
                t.connect, t.first_byte, t.between_bytes
            );
            println!("trust roots: {}", trust_roots());
            print!("{}", egress::proxy::ProxyConfig::from_env());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{PROGRAM}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Where server certificates are checked against, as egress/trust.rs will look.
fn trust_roots() -> String {
    let paths = |locations: &egress::trust::RootLocations| {
        let file = locations.file.iter().map(|f| f.display().to_string());
        let dirs = locations
            .dirs
            .iter()
            .map(|d| format!("{} (when needed)", d.display()));
        file.chain(dirs).collect::<Vec<_>>().join(", ")
    };
    let set = ["SSL_CERT_FILE", "SSL_CERT_DIR"]
        .iter()
        .any(|v| std::env::var_os(v).is_some());
    match egress::trust::RootLocations::from_env() {
        Some(found) if set => paths(&found),
        Some(found) => format!("the operating system's store: {}", paths(&found)),
        None => "the operating system's store".to_string(),
    }
}

fn write_wasm(path: Option<&str>) -> ExitCode {
    let Some(path) = path else {
        eprintln!("{PROGRAM}: usage: {PROGRAM} --write-wasm PATH");
        return ExitCode::FAILURE;
    };
    match std::fs::write(path, guest::GUEST_WASM) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{PROGRAM}: writing {path}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn help() -> String {
    let credentials = GUEST_ENV_VARS
        .iter()
        .filter(|name| **name != DEBUG_ENV)
        .map(|name| format!("  {name}\n"))
        .collect::<String>();
    format!(
        "\
{PROGRAM} {VERSION}: cosign (sigstore) KMS plugin for Alibaba Cloud KMS

Lets cosign sign and verify with keys that never leave Alibaba Cloud KMS. The plugin's
logic runs as a sandboxed WebAssembly component: it sees only the variables listed below
and reaches the network only over HTTPS to Alibaba Cloud (or hosts you allow).

USAGE
  You do not run this yourself: put it on PATH and give cosign an alibabakms:// key.
    cosign generate-key-pair --kms alibabakms://kms.cn-hangzhou.aliyuncs.com//alias/cosign
    cosign sign --key alibabakms://kms.cn-hangzhou.aliyuncs.com//alias/cosign IMAGE
  cosign then runs `{PROGRAM} v1 '<json>'` once per operation, with the message on stdin,
  and reads one JSON answer from stdout.

KEY REFERENCES
  alibabakms://ENDPOINT/[INSTANCE_ID]/alias/NAME
  alibabakms://ENDPOINT/[INSTANCE_ID]/KEY_ID/versions/VERSION_ID
  ENDPOINT is the KMS endpoint (e.g. kms.cn-hangzhou.aliyuncs.com, or a KMS instance's
  INSTANCE_ID.cryptoservice.kms.aliyuncs.com, which signs and verifies only, so there the
  reference names the version); INSTANCE_ID may be left empty (two slashes).

ENVIRONMENT
 Credentials (passed to the component when set):
{credentials} Network:
  {ALLOWED_HOSTS_ENV}
      Comma-separated host[:port] list (port 443 when omitted) that key references may
      name besides *.aliyuncs.com, e.g. an emulator or a private gateway. HTTPS only.
  SSL_CERT_FILE, SSL_CERT_DIR
      Trust roots to use instead of the operating system's (a KMS instance CA, a
      TLS-inspecting proxy).
 Diagnostics:
  {DEBUG_ENV}=1
      One line per request on stderr: action, status, latency, request id. Never a secret.

OPTIONS
  -h, --help         Print this help.
  -V, --version      Print the version.
  --print-sandbox    Print what the component may see and reach (variable names, never values).
  Any other arguments are cosign's plugin protocol and are passed to the component.
"
    )
}
