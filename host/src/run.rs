//! One invocation of the component: load it, sandbox it, run `wasi:cli/run`, and turn
//! whatever happened into exactly one JSON object for cosign's stdout.
//!
//! The component is compiled at build time and loaded in place (guest.rs, half a
//! millisecond); here it is linked against the WASI interfaces the sandbox grants, and run with the real
//! argv, the real stdin streamed through, stderr inherited, and stdout captured so that a
//! trap halfway through an answer can still be reported as a clean `errorMessage`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use wasmtime::component::{Linker, ResourceTable};
use wasmtime::{Engine, Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};
use wasmtime_wasi_io::IoView;

use crate::egress::{Egress, EgressHooks};
use crate::guest;
use crate::policy::SandboxPolicy;
use crate::stdin::ReadAheadStdin;

/// A PluginResp is a few KiB at most; more is a guest bug, not an answer.
const STDOUT_LIMIT: usize = 1 << 20;

/// Linear memory the guest may use. Payloads are hashed as they stream in, so memory does
/// not grow with the message; this only stops a runaway guest from taking the machine.
const MEMORY_LIMIT: usize = 256 << 20;

/// The guest bounds its own work (cosign's `ctxDeadline`, else its time limit) and answers
/// before it. The host's backstop stops it this long after that bound, should it not
/// (a runaway loop never yields to anything else).
const BACKSTOP_MARGIN: Duration = Duration::from_secs(2);
/// The guest's limit without a `ctxDeadline`, unless `SIGSTORE_ALIBABAKMS_TIMEOUT` says
/// otherwise (the guest reads the same variable: `guest/src/retry.rs`).
use alibabakms_contract::{vars::TIMEOUT as TIMEOUT_VAR, DEFAULT_LIMIT};
/// How often the engine's epoch advances.
const EPOCH_TICK: Duration = Duration::from_millis(50);

/// The store's data: the WASI contexts and the sandbox's egress.
struct Host {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    hooks: EgressHooks,
    limits: StoreLimits,
    /// Behind the component's `cache` import.
    cache: crate::cache::CacheDir,
}

impl WasiView for Host {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl IoView for Host {
    fn table(&mut self) -> &mut ResourceTable {
        &mut self.table
    }
}

impl WasiHttpView for Host {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// What to print on stdout and the exit status.
#[derive(Debug, PartialEq, Eq)]
pub struct Outcome {
    pub stdout: Vec<u8>,
    pub exit_code: u8,
}

/// Runs the component's `wasi:cli/run` with `args` (argv[0] included) inside `policy`.
pub async fn run(args: &[String], policy: &SandboxPolicy) -> Outcome {
    let stdout = MemoryOutputPipe::new(STDOUT_LIMIT);
    let result = run_component(args, policy, stdout.clone()).await;
    finish(result, &stdout.contents())
}

/// How the run ended, before looking at what the guest printed.
#[derive(Debug)]
enum Ended {
    /// `run` returned `ok`, or the guest called `exit(0)`.
    Ok,
    /// `run` returned `err`, or the guest exited with a non-zero status.
    Failed,
    /// The component could not be loaded or instantiated, or it trapped.
    Error(String),
}

async fn run_component(args: &[String], policy: &SandboxPolicy, stdout: MemoryOutputPipe) -> Ended {
    let phases = Phases::new(policy.debug());
    let request = args
        .get(2)
        .and_then(|raw| serde_json::from_str::<serde_json::Value>(raw).ok());
    let egress = Arc::new(Egress::new(policy.hosts.clone(), policy.debug()));
    // Only calls that reach KMS pay for TLS, and they pay for it while the component loads.
    if request.as_ref().is_some_and(reaches_network) {
        egress.prepare();
    }
    phases.mark("egress");
    let (engine, component) = match guest::load() {
        Ok(loaded) => loaded,
        Err(e) => return Ended::Error(e),
    };
    phases.mark("component loaded");
    let pre = match linker(&engine)
        .and_then(|linker| linker.instantiate_pre(&component))
        .and_then(CommandPre::new)
    {
        Ok(pre) => pre,
        Err(e) => return Ended::Error(format!("cannot link the component: {}", chain(&e))),
    };
    phases.mark("linked");
    let host = match sandbox(args, policy, stdout, egress) {
        Ok(host) => host,
        Err(e) => return e,
    };
    let mut store = Store::new(&engine, host);
    store.limiter(|host| &mut host.limits);
    // The backstop: wasm code traps once the epoch passes it, and a guest waiting in a
    // host call (HTTP) is dropped when the same time has passed.
    let limit = backstop(request.as_ref(), &policy.env);
    let _ticker = arm_backstop(&mut store, limit);

    phases.mark("sandbox set up");
    let running = async {
        match pre.instantiate_async(&mut store).await {
            Ok(command) => {
                phases.mark("instantiated");
                let ran = command.wasi_cli_run().call_run(&mut store).await;
                phases.mark("component returned");
                ran
            }
            Err(e) => Err(e),
        }
    };
    let stopped = || {
        Ended::Error(format!(
            "the plugin component ran past its time limit ({:.1} s) and was stopped",
            limit.as_secs_f64()
        ))
    };
    let result = match tokio::time::timeout(limit + EPOCH_TICK * 2, running).await {
        Ok(result) => result,
        Err(_elapsed) => return stopped(),
    };
    match result {
        Ok(Ok(())) => Ended::Ok,
        Ok(Err(())) => Ended::Failed,
        Err(e) => match e.downcast_ref::<I32Exit>() {
            Some(I32Exit(0)) => Ended::Ok,
            Some(I32Exit(_)) => Ended::Failed,
            None if e.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::Interrupt) => {
                stopped()
            }
            None => Ended::Error(format!("the plugin component failed: {}", chain(&e))),
        },
    }
}

/// The store's data for one run: the WASI context `policy` allows, with the real argv and
/// stdin, stdout captured into `stdout`, and HTTP through `egress`.
fn sandbox(
    args: &[String],
    policy: &SandboxPolicy,
    stdout: MemoryOutputPipe,
    egress: Arc<Egress>,
) -> Result<Host, Ended> {
    let mut wasi = WasiCtx::builder();
    wasi.args(args)
        .envs(&policy.env)
        .stdin(ReadAheadStdin::new())
        .stdout(stdout)
        .inherit_stderr();
    // Only the credential files' own directories, read-only; no sockets (not even linked).
    // Then the directories of token files named inside the Aliyun CLI config, at their own path.
    let shared = policy.files.iter().map(|f| (&f.host_dir, f.guest_dir));
    let shared = shared.chain(
        policy
            .dirs
            .iter()
            .map(|d| (&d.host_dir, d.guest_dir.as_str())),
    );
    for (host_dir, guest_dir) in shared {
        if let Err(e) = wasi.preopened_dir(host_dir, guest_dir, FsPerms::ReadOnly) {
            return Err(Ended::Error(format!(
                "cannot share {} with the plugin component: {e}",
                host_dir.display()
            )));
        }
    }
    Ok(Host {
        wasi: wasi.build(),
        http: WasiHttpCtx::new(),
        table: ResourceTable::new(),
        hooks: EgressHooks(egress),
        cache: crate::cache::CacheDir::new(policy.cache.clone(), policy.debug()),
        limits: StoreLimitsBuilder::new()
            .memory_size(MEMORY_LIMIT)
            .trap_on_grow_failure(true)
            .build(),
    })
}

/// With SIGSTORE_ALIBABAKMS_DEBUG: one stderr line per start-up phase, in milliseconds
/// since the process started, so start-up cost is visible without a profiler.
struct Phases(Option<std::time::Instant>);

/// When `main` started, for [`Phases`].
pub static STARTED: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();

impl Phases {
    fn new(debug: bool) -> Self {
        Phases(debug.then(|| *STARTED.get_or_init(std::time::Instant::now)))
    }

    fn mark(&self, phase: &str) {
        if let Some(since) = self.0 {
            eprintln!(
                "sigstore-kms-alibabakms: {phase} at +{:.2} ms",
                since.elapsed().as_secs_f64() * 1e3
            );
        }
    }
}

/// Whether a cosign request will reach KMS: every method but the two answered from the
/// plugin's own tables.
fn reaches_network(request: &serde_json::Value) -> bool {
    !matches!(
        request.get("methodName").and_then(|m| m.as_str()),
        None | Some("defaultAlgorithm" | "supportedAlgorithms")
    )
}

/// How long the host lets the guest run: the guest's own bound (the earliest `ctxDeadline`
/// in the request, else its time limit) plus [`BACKSTOP_MARGIN`].
fn backstop(request: Option<&serde_json::Value>, env: &[(String, String)]) -> Duration {
    // A request the guest refuses (a malformed ctxDeadline) is answered at once: the time
    // limit is bound enough for it.
    let earliest = request
        .and_then(|r| alibabakms_contract::ctx_deadline(r).ok().flatten())
        .map(|(at, _)| at);
    let limit = match earliest {
        Some(at) => at
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
        None => env
            .iter()
            .find(|(k, _)| k == TIMEOUT_VAR)
            .and_then(|(_, v)| alibabakms_contract::time_limit(Some(v)).ok())
            .unwrap_or(DEFAULT_LIMIT),
    };
    limit + BACKSTOP_MARGIN
}

/// Makes wasm code in `store` trap (`Trap::Interrupt`) once `limit` has passed; keep the
/// ticker alive while the store runs.
fn arm_backstop<T>(store: &mut Store<T>, limit: Duration) -> EpochTicker {
    let ticker = EpochTicker::start(store.engine());
    store.set_epoch_deadline(limit.as_millis().div_ceil(EPOCH_TICK.as_millis()) as u64 + 1);
    ticker
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until dropped.
struct EpochTicker(Arc<AtomicBool>);

impl EpochTicker {
    fn start(engine: &Engine) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (engine, flag) = (engine.clone(), stop.clone());
        std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(EPOCH_TICK);
                engine.increment_epoch();
            }
        });
        EpochTicker(stop)
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// The WASI interfaces the sandbox grants, one by one: what the component imports and
/// nothing more. `wasi:sockets` is deliberately absent, so a component that imports it fails
/// here instead of getting a socket later. `wasi:filesystem` is linked for the credential
/// files, but sees only the directories the `SandboxPolicy` preopens, read-only.
fn linker(engine: &Engine) -> wasmtime::Result<Linker<Host>> {
    use wasmtime_wasi::cli::{WasiCli, WasiCliView};
    use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView};
    use wasmtime_wasi::filesystem::{WasiFilesystem, WasiFilesystemView};
    use wasmtime_wasi::p2::bindings::{cli, clocks, filesystem, random};
    use wasmtime_wasi::random::WasiRandom;

    let mut linker = Linker::new(engine);
    let l = &mut linker;
    wasmtime_wasi_io::add_to_linker_async(l)?;
    clocks::wall_clock::add_to_linker::<Host, WasiClocks>(l, Host::clocks)?;
    clocks::monotonic_clock::add_to_linker::<Host, WasiClocks>(l, Host::clocks)?;
    random::random::add_to_linker::<Host, WasiRandom>(l, |h| h.wasi.random())?;
    random::insecure::add_to_linker::<Host, WasiRandom>(l, |h| h.wasi.random())?;
    random::insecure_seed::add_to_linker::<Host, WasiRandom>(l, |h| h.wasi.random())?;
    filesystem::types::add_to_linker::<Host, WasiFilesystem>(l, Host::filesystem)?;
    filesystem::preopens::add_to_linker::<Host, WasiFilesystem>(l, Host::filesystem)?;
    cli::environment::add_to_linker::<Host, WasiCli>(l, Host::cli)?;
    cli::exit::add_to_linker::<Host, WasiCli>(l, Host::cli)?;
    cli::stdin::add_to_linker::<Host, WasiCli>(l, Host::cli)?;
    cli::stdout::add_to_linker::<Host, WasiCli>(l, Host::cli)?;
    cli::stderr::add_to_linker::<Host, WasiCli>(l, Host::cli)?;
    cli::terminal_input::add_to_linker::<Host, WasiCli>(l, Host::cli)?;
    cli::terminal_output::add_to_linker::<Host, WasiCli>(l, Host::cli)?;
    cli::terminal_stdin::add_to_linker::<Host, WasiCli>(l, Host::cli)?;
    cli::terminal_stdout::add_to_linker::<Host, WasiCli>(l, Host::cli)?;
    cli::terminal_stderr::add_to_linker::<Host, WasiCli>(l, Host::cli)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(l)?;
    // The one capability of our own: bytes by key, in the user's cache directory.
    let mut cache = l.instance("sigstore:alibabakms/cache@0.1.0")?;
    cache.func_wrap("get", |store, (key,): (String,)| {
        Ok((store.data().cache.get(&key),))
    })?;
    cache.func_wrap("set", |store, (key, value): (String, Vec<u8>)| {
        store.data().cache.set(&key, &value);
        Ok(())
    })?;
    cache.func_wrap("delete", |store, (key,): (String,)| {
        store.data().cache.delete(&key);
        Ok(())
    })?;
    Ok(linker)
}

/// Decides what reaches cosign: the guest's answer when it is one JSON object, otherwise
/// an `errorMessage` of our own. cosign reads stdout as a single JSON document, so a
/// half-written answer must never get through.
fn finish(ended: Ended, stdout: &[u8]) -> Outcome {
    let answer = is_json_object(stdout);
    match ended {
        Ended::Ok if answer => Outcome {
            stdout: stdout.to_vec(),
            exit_code: 0,
        },
        Ended::Failed if answer => Outcome {
            stdout: stdout.to_vec(),
            exit_code: 1,
        },
        Ended::Error(message) if answer => {
            // A complete answer followed by a trap: the answer is what cosign can use;
            // the trap goes to the person reading stderr.
            eprintln!("sigstore-kms-alibabakms: {message}");
            Outcome {
                stdout: stdout.to_vec(),
                exit_code: 1,
            }
        }
        Ended::Ok | Ended::Failed if stdout.is_empty() => {
            error_outcome("the plugin component finished without an answer")
        }
        Ended::Ok | Ended::Failed => {
            error_outcome("the plugin component wrote something that is not a JSON object")
        }
        Ended::Error(message) => error_outcome(&message),
    }
}

fn is_json_object(bytes: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(bytes).is_ok_and(|v| v.is_object())
}

/// An answer made by the host itself.
pub fn error_outcome(message: &str) -> Outcome {
    let mut stdout = serde_json::json!({ "errorMessage": message })
        .to_string()
        .into_bytes();
    stdout.push(b'\n');
    Outcome {
        stdout,
        exit_code: 1,
    }
}

/// `outer: inner: root cause`, one line: a message for people, not a backtrace.
fn chain(err: &wasmtime::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in err.chain() {
        let text = cause.to_string();
        // Trap messages can carry a multi-line wasm backtrace; keep the first line.
        let line = text.lines().next().unwrap_or_default().trim().to_string();
        if !line.is_empty() && !parts.iter().any(|p| p.contains(&line)) {
            parts.push(line);
        }
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use alibabakms_engine::engine_config;
    use wasmtime::component::Component;

    /// Tests and embedders run the component more than once per process, at the same time:
    /// each run gets its own store and sandbox over the one loaded component.
    #[tokio::test(flavor = "current_thread")]
    async fn runs_at_the_same_time_each_answer() {
        let policy = SandboxPolicy::from_lookup(|_| None).unwrap();
        let call = |method: &str| {
            let request = format!(
                r#"{{"initOptions":{{"protocolVersion":"v1","keyResourceID":"kms.cn-hangzhou.aliyuncs.com//alias/k","hashFunc":5}},"methodName":"{method}","{method}":{{}}}}"#
            );
            [
                "sigstore-kms-alibabakms".to_string(),
                "v1".to_string(),
                request,
            ]
        };
        let (default, supported) = (call("defaultAlgorithm"), call("supportedAlgorithms"));
        let (default, supported) = tokio::join!(run(&default, &policy), run(&supported, &policy));
        assert_eq!(
            String::from_utf8(default.stdout).unwrap().trim(),
            r#"{"defaultAlgorithm":{"defaultAlgorithm":"EC_P256"}}"#
        );
        assert!(
            String::from_utf8(supported.stdout)
                .unwrap()
                .contains("EC_P256"),
            "supportedAlgorithms"
        );
    }

    #[test]
    fn the_embedded_component_links_in_the_sandbox() {
        let (engine, component) = guest::load().unwrap();
        let imports: Vec<String> = component
            .component_type()
            .imports(&engine)
            .map(|(name, _)| name.to_string())
            .collect();
        assert!(
            !imports.iter().any(|name| name.starts_with("wasi:sockets")),
            "{imports:?}"
        );
        let pre = linker(&engine)
            .unwrap()
            .instantiate_pre(&component)
            .unwrap();
        CommandPre::new(pre).unwrap();
    }

    /// A component whose only import is the instance `name`, asking for its `resource`.
    /// (An instance import that asks for nothing links against anything, so it must ask.)
    fn importing(engine: &Engine, name: &str, resource: &str) -> Component {
        use wasm_encoder::{ComponentBuilder, ComponentTypeRef, InstanceType, TypeBounds};
        let mut instance = InstanceType::new();
        instance.export(resource, ComponentTypeRef::Type(TypeBounds::SubResource));
        let mut builder = ComponentBuilder::default();
        let ty = builder.type_instance(None, &instance);
        builder.import(name, ComponentTypeRef::Instance(ty));
        Component::new(engine, builder.finish()).unwrap()
    }

    #[test]
    fn sockets_are_not_in_the_sandbox() {
        let engine = Engine::new(&engine_config()).unwrap();
        for (granted, resource) in [
            ("wasi:io/streams@0.2.12", "input-stream"),
            ("wasi:http/types@0.2.12", "fields"),
            ("wasi:cli/terminal-output@0.2.12", "terminal-output"),
            // Linked for the credential files; only preopened directories are visible.
            ("wasi:filesystem/types@0.2.12", "descriptor"),
        ] {
            let component = importing(&engine, granted, resource);
            linker(&engine)
                .unwrap()
                .instantiate_pre(&component)
                .unwrap();
        }
        for (denied, resource) in [
            ("wasi:sockets/tcp@0.2.12", "tcp-socket"),
            ("wasi:sockets/udp@0.2.12", "udp-socket"),
            ("wasi:sockets/network@0.2.12", "network"),
            (
                "wasi:sockets/ip-name-lookup@0.2.12",
                "resolve-address-stream",
            ),
        ] {
            let component = importing(&engine, denied, resource);
            let err = linker(&engine)
                .unwrap()
                .instantiate_pre(&component)
                .err()
                .unwrap_or_else(|| panic!("{denied} linked"));
            let message = chain(&err);
            assert!(
                message.contains(denied.split('@').next().unwrap()),
                "{message}"
            );
        }
    }

    fn message(outcome: &Outcome) -> String {
        let v: serde_json::Value = serde_json::from_slice(&outcome.stdout).unwrap();
        v["errorMessage"].as_str().unwrap().to_string()
    }

    #[test]
    fn a_good_answer_passes_through_untouched() {
        let answer = br#"{"defaultAlgorithm":{"defaultAlgorithm":"EC_P256"}}"#;
        assert_eq!(
            finish(Ended::Ok, answer),
            Outcome {
                stdout: answer.to_vec(),
                exit_code: 0
            }
        );
        let error = br#"{"errorMessage":"alias not found"}"#;
        assert_eq!(
            finish(Ended::Failed, error),
            Outcome {
                stdout: error.to_vec(),
                exit_code: 1
            }
        );
    }

    #[test]
    fn a_trap_without_an_answer_becomes_an_error_message() {
        let outcome = finish(
            Ended::Error("the plugin component failed: boom".into()),
            b"",
        );
        assert_eq!(outcome.exit_code, 1);
        assert_eq!(message(&outcome), "the plugin component failed: boom");
    }

    #[test]
    fn a_half_written_answer_never_reaches_cosign() {
        let outcome = finish(Ended::Error("trap".into()), br#"{"signMessage":{"sig"#);
        assert_eq!(message(&outcome), "trap");
        let outcome = finish(Ended::Ok, br#"{"a":1}{"b":2}"#);
        assert!(message(&outcome).contains("not a JSON object"));
        let outcome = finish(Ended::Ok, b"[1]");
        assert!(message(&outcome).contains("not a JSON object"));
        let outcome = finish(Ended::Ok, b"");
        assert!(message(&outcome).contains("without an answer"));
        assert_eq!(outcome.exit_code, 1);
    }

    #[test]
    fn a_complete_answer_survives_a_later_trap() {
        let answer = br#"{"errorMessage":"x"}"#;
        let outcome = finish(Ended::Error("trap".into()), answer);
        // The guest's own answer is more useful than "it trapped", but the run failed.
        assert_eq!(outcome.stdout, answer);
        assert_eq!(outcome.exit_code, 1);
    }

    #[test]
    fn the_backstop_follows_the_guest_limit() {
        let none: Vec<(String, String)> = Vec::new();
        let parsed = |json: &str| serde_json::from_str::<serde_json::Value>(json).unwrap();
        assert_eq!(backstop(None, &none), DEFAULT_LIMIT + BACKSTOP_MARGIN);
        assert_eq!(
            backstop(Some(&parsed("{}")), &none),
            DEFAULT_LIMIT + BACKSTOP_MARGIN
        );
        let env = vec![(TIMEOUT_VAR.to_string(), "5".to_string())];
        assert_eq!(
            backstop(Some(&parsed("{}")), &env),
            Duration::from_secs(5) + BACKSTOP_MARGIN
        );
        let soon = SystemTime::now() + Duration::from_secs(10);
        let later = soon + Duration::from_secs(100);
        let text = alibabakms_contract::rfc3339::format_date;
        let json = format!(
            r#"{{"initOptions":{{"ctxDeadline":"{}"}},"createKey":{{"ctxDeadline":"{}"}}}}"#,
            text(later),
            text(soon)
        );
        let b = backstop(Some(&parsed(&json)), &env);
        assert!(
            b <= Duration::from_secs(10) + BACKSTOP_MARGIN && b >= Duration::from_secs(8),
            "{b:?}"
        );
    }

    #[test]
    fn only_calls_that_reach_kms_prepare_tls() {
        let method = |m: &str| serde_json::json!({ "methodName": m });
        assert!(!reaches_network(&method("defaultAlgorithm")));
        assert!(!reaches_network(&method("supportedAlgorithms")));
        assert!(!reaches_network(&serde_json::json!({})));
        for m in ["publicKey", "signMessage", "verifySignature", "createKey"] {
            assert!(reaches_network(&method(m)), "{m}");
        }
    }

    /// A guest that never yields is stopped by the epoch backstop, not waited for.
    #[tokio::test(flavor = "current_thread")]
    async fn a_runaway_guest_is_stopped() {
        use wasm_encoder::{
            BlockType, CodeSection, ExportKind, ExportSection, Function, FunctionSection,
            Instruction, Module, TypeSection,
        };
        let mut types = TypeSection::new();
        types.ty().function([], []);
        let mut functions = FunctionSection::new();
        functions.function(0);
        let mut exports = ExportSection::new();
        exports.export("spin", ExportKind::Func, 0);
        let mut spin = Function::new([]);
        spin.instruction(&Instruction::Loop(BlockType::Empty))
            .instruction(&Instruction::Br(0))
            .instruction(&Instruction::End)
            .instruction(&Instruction::End);
        let mut code = CodeSection::new();
        code.function(&spin);
        let mut module = Module::new();
        module
            .section(&types)
            .section(&functions)
            .section(&exports)
            .section(&code);

        let engine = Engine::new(&engine_config()).unwrap();
        let module = wasmtime::Module::new(&engine, module.finish()).unwrap();
        let mut store = Store::new(&engine, ());
        let _ticker = arm_backstop(&mut store, Duration::from_millis(300));
        let instance = wasmtime::Instance::new_async(&mut store, &module, &[])
            .await
            .unwrap();
        let spin = instance
            .get_typed_func::<(), ()>(&mut store, "spin")
            .unwrap();
        let start = std::time::Instant::now();
        let err = spin.call_async(&mut store, ()).await.unwrap_err();
        assert_eq!(
            err.downcast_ref::<wasmtime::Trap>(),
            Some(&wasmtime::Trap::Interrupt)
        );
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(250) && took < Duration::from_secs(3),
            "{took:?}"
        );
    }
}
