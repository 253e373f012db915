//! `bench`: what a cosign user pays for sigstore-kms-alibabakms, measured against the
//! in-process emulator and printed as tables (run it with `./bench.sh`).
//!
//! 1. Cold calls of the real binary per method, at 0 ms and at an injected round-trip time:
//!    wall time, time until the first request reached the emulator, KMS requests, sequential
//!    round trips, TCP connections and TLS handshakes (the emulator's counters and request
//!    log), and peak RSS (wait4).
//! 2. Sizes of the host binary and of the portable component.
//! 3. signMessage over a large message on stdin (1 GiB by default): throughput and peak RSS,
//!    against native SHA-256 over the same bytes in the same run, with the CPU's SHA
//!    extensions and software-only.
//! 4. The guest's logic compiled natively (the same `protocol::handle`, in this process) vs
//!    the same calls through the plugin binary.
//! 5. Whole commands of the real cosign 3 with the plugin, cold and warm (key metadata kept
//!    between runs), beside the same commands with a local key file (`commands.rs`).
//!
//! Timing is not a test: this never runs in `cargo test`.

mod commands;
mod native;
mod plugin;
mod stats;

use std::io::Read;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use alibabakms_emulator::{
    Emulator, EmulatorConfig, DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET,
};
use alibabakms_guest::crypto::{HashAlg, PublicKey};
use sha2::Digest;

use plugin::{Method, PATTERN_CHUNK};
use stats::{round_trips, server_busy, Summary};

struct Args {
    bin: PathBuf,
    soft_sha: Option<PathBuf>,
    runs: usize,
    rtt_ms: u64,
    big_mib: u64,
    big_runs: usize,
    cosign_runs: usize,
}

const USAGE: &str = "usage: bench --bin PATH [--soft-sha PATH] [--runs N] [--rtt-ms MS] [--big-mib MIB] [--big-runs N]

  --bin PATH       the release sigstore-kms-alibabakms binary
  --soft-sha PATH  tests/bench/sha256-soft built with sha2's force-soft (./bench.sh builds it)
  --runs N         cold invocations per method and RTT (default 15)
  --rtt-ms MS      the injected round-trip time of the second pass (default 20)
  --big-mib MIB    size of the large signMessage (default 1024)
  --big-runs N     large signMessage runs (default 3)
  --cosign-runs N  runs per whole cosign command and case (default 5)";

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        bin: PathBuf::new(),
        soft_sha: None,
        runs: 15,
        rtt_ms: 20,
        big_mib: 1024,
        big_runs: 3,
        cosign_runs: 5,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))
        };
        let number = |v: String| v.parse::<u64>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--bin" => args.bin = PathBuf::from(value()?),
            "--soft-sha" => args.soft_sha = Some(PathBuf::from(value()?)),
            "--runs" => args.runs = number(value()?)?.max(1) as usize,
            "--rtt-ms" => args.rtt_ms = number(value()?)?,
            "--big-mib" => args.big_mib = number(value()?)?.max(1),
            "--big-runs" => args.big_runs = number(value()?)?.max(1) as usize,
            "--cosign-runs" => args.cosign_runs = number(value()?)?.max(1) as usize,
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    if args.bin.as_os_str().is_empty() {
        return Err(USAGE.to_string());
    }
    Ok(args)
}

fn main() {
    // Run by cosign as its plugin (see commands.rs): time the real one.
    if let Some(real) = std::env::var_os(commands::TIMED_PLUGIN_VAR) {
        std::process::exit(commands::timed_plugin(real));
    }
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let emu = Emulator::start(EmulatorConfig::default().log_requests(false)).expect("emulator");
    let key = emu.create_key("EC_P256").expect("create key");
    emu.create_alias("alias/bench", &key.key_id).expect("alias");
    let key_ref = format!("{}//alias/bench", emu.endpoint());
    let env = vec![
        (
            "ALIBABA_CLOUD_ACCESS_KEY_ID".to_string(),
            DEFAULT_ACCESS_KEY_ID.to_string(),
        ),
        (
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET".to_string(),
            DEFAULT_ACCESS_KEY_SECRET.to_string(),
        ),
        (
            "SIGSTORE_ALIBABAKMS_ALLOWED_HOSTS".to_string(),
            emu.endpoint(),
        ),
        (
            "ALIBABA_CLOUD_ECS_METADATA_DISABLED".to_string(),
            "true".to_string(),
        ),
        // Each call is measured cold: no key metadata kept from the call before.
        ("SIGSTORE_ALIBABAKMS_CACHE_TTL".to_string(), "0".to_string()),
    ];
    let trust = Trust::as_installed(&emu);
    let mut env = env;
    env.extend(trust.env.iter().cloned());
    let plugin = plugin::Plugin {
        bin: args.bin.clone(),
        env: env.clone(),
        key_ref: key_ref.clone(),
    };

    println!("# sigstore-kms-alibabakms benchmark");
    println!();
    println!("machine: {}", machine());
    println!(
        "plugin: {} ({} runs per cell; median (min–max))",
        args.bin.display(),
        args.runs
    );
    println!("trust store: {}", trust.description);

    // A signature for verifySignature, and a check that the binary works at all.
    let message = b"bench message".to_vec();
    let signed = plugin.run(Method::SignMessage, &message, None);
    let signature = signed
        .signature()
        .unwrap_or_else(|| panic!("the plugin could not sign: {}", signed.stdout));

    cold_calls(&emu, &plugin, &args, &message, &signature);
    sizes(&args);
    let hosted_big = big_message(&emu, &plugin, &args);
    native_vs_hosted(
        &trust, &plugin, &args, &env, &message, &signature, hosted_big,
    );
    commands::cosign_commands(&emu, &args.bin, &env, args.cosign_runs, args.rtt_ms);
    let _ = std::fs::remove_file(&trust.bundle);
}

/// The trust store as a default install has it, so that each call pays what it pays on a
/// user's machine: the OS bundle file with the emulator's CA appended, as SSL_CERT_FILE,
/// and the OS certificate directories as SSL_CERT_DIR (the plugin reads those only for a
/// server the bundle does not trust).
struct Trust {
    bundle: PathBuf,
    env: Vec<(String, String)>,
    description: String,
}

impl Trust {
    fn as_installed(emu: &Emulator) -> Trust {
        let os = openssl_probe::probe();
        let mut pem = os
            .cert_file
            .as_ref()
            .and_then(|f| std::fs::read_to_string(f).ok())
            .unwrap_or_default();
        let os_roots = pem.matches("-----BEGIN CERTIFICATE-----").count();
        pem.push('\n');
        pem.push_str(emu.ca_pem());
        let bundle =
            std::env::temp_dir().join(format!("alibabakms-bench-{}-roots.pem", std::process::id()));
        std::fs::write(&bundle, &pem).expect("write the trust bundle");
        let mut dirs: Vec<String> = Vec::new();
        for dir in os.cert_dir.iter().map(|d| d.display().to_string()) {
            if !dirs.contains(&dir) {
                dirs.push(dir); // SSL_CERT_DIR may repeat a standard location
            }
        }
        let mut env = vec![("SSL_CERT_FILE".to_string(), bundle.display().to_string())];
        if !dirs.is_empty() {
            env.push(("SSL_CERT_DIR".to_string(), dirs.join(":")));
        }
        let description = format!(
            "SSL_CERT_FILE = {} ({os_roots} roots) + the emulator's CA; SSL_CERT_DIR = {}",
            os.cert_file
                .as_ref()
                .map_or("no OS bundle".to_string(), |f| f.display().to_string()),
            if dirs.is_empty() {
                "(none)".to_string()
            } else {
                dirs.join(":")
            },
        );
        Trust {
            bundle,
            env,
            description,
        }
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cpu}, {cores} cores, {}", std::env::consts::OS)
}

/// Table 1: every method cold, at 0 ms and at the injected RTT.
fn cold_calls(emu: &Emulator, plugin: &plugin::Plugin, args: &Args, message: &[u8], sig: &[u8]) {
    let methods = [
        Method::Version,
        Method::DefaultAlgorithm,
        Method::SupportedAlgorithms,
        Method::PublicKey,
        Method::SignMessage,
        Method::VerifySignature,
        Method::CreateKeyExisting,
        Method::CreateKeyNew,
    ];
    for rtt_ms in [0, args.rtt_ms] {
        let rtt = Duration::from_millis(rtt_ms);
        emu.set_latency(rtt);
        println!();
        println!("## Cold calls, {rtt_ms} ms injected round trip per request");
        println!();
        println!(
            "| method | wall ms | to 1st connection ms | requests | round trips | TCP / TLS | wall − trips × RTT ms | wall − emulator ms | peak RSS MiB |"
        );
        println!("|---|---|---|---|---|---|---|---|---|");
        for method in methods {
            let mut wall = Vec::new();
            let mut first = Vec::new();
            let mut requests = Vec::new();
            let mut trips = Vec::new();
            let mut conns = Vec::new();
            let mut tls = Vec::new();
            let mut idle = Vec::new();
            let mut ours = Vec::new();
            let mut rss = Vec::new();
            // One warm-up run fills the page cache; it is not counted.
            for run in 0..=args.runs {
                emu.reset_stats();
                emu.clear_requests();
                let out = plugin.run(method, message, Some(sig));
                if !out.ok() {
                    panic!("{method:?} failed: {}", out.stdout);
                }
                if run == 0 {
                    continue;
                }
                let log = emu.requests();
                let stats = emu.stats();
                let ms = out.wall.as_secs_f64() * 1e3;
                let n_trips = round_trips(&log);
                wall.push(ms);
                if let Some(t) = log.iter().map(|r| r.connected_at).min() {
                    first.push(t.saturating_duration_since(out.started).as_secs_f64() * 1e3);
                }
                requests.push(stats.total_requests as f64);
                trips.push(n_trips as f64);
                conns.push(stats.tcp_connections as f64);
                tls.push(stats.tls_handshakes as f64);
                idle.push(ms - n_trips as f64 * rtt_ms as f64);
                ours.push(ms - server_busy(&log).as_secs_f64() * 1e3);
                rss.push(out.max_rss_kib as f64 / 1024.0);
            }
            let first = if first.is_empty() {
                "–".to_string()
            } else {
                Summary::of(&first).show(1)
            };
            println!(
                "| {} | {} | {} | {} | {} | {} / {} | {} | {} | {} |",
                method.name(),
                Summary::of(&wall).show(1),
                first,
                Summary::of(&requests).show_count(),
                Summary::of(&trips).show_count(),
                Summary::of(&conns).show_count(),
                Summary::of(&tls).show_count(),
                Summary::of(&idle).show(1),
                Summary::of(&ours).show(1),
                Summary::of(&rss).show(1),
            );
        }
    }
    emu.set_latency(Duration::ZERO);
    println!();
    println!(
        "to 1st connection: from spawning the plugin to the emulator accepting its first TCP \
         connection (the first request going out). wall − trips × RTT: the time not spent \
         waiting on the network, as the budget defines it. wall − emulator: the same without \
         any time the emulator held a request (its own work and its timer's rounding \
         included). The emulator adds the latency to each request; TCP and TLS handshakes on \
         loopback get none."
    );
}

/// Table 2: what a user downloads.
fn sizes(args: &Args) {
    let bin = std::fs::metadata(&args.bin).map(|m| m.len()).unwrap_or(0);
    let wasm_path =
        std::env::temp_dir().join(format!("alibabakms-bench-{}.wasm", std::process::id()));
    let status = std::process::Command::new(&args.bin)
        .arg("--write-wasm")
        .arg(&wasm_path)
        .status()
        .expect("run --write-wasm");
    assert!(status.success(), "--write-wasm failed");
    let wasm = std::fs::metadata(&wasm_path).map(|m| m.len()).unwrap_or(0);
    let _ = std::fs::remove_file(&wasm_path);
    println!();
    println!("## Sizes");
    println!();
    println!("| artifact | MiB |");
    println!("|---|---|");
    println!(
        "| host binary (with the precompiled component) | {:.2} |",
        mib(bin)
    );
    println!("| portable component (.wasm) | {:.2} |", mib(wasm));
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// What the large signMessage took through the plugin: median seconds.
struct HostedBig {
    secs: f64,
}

/// Table 3: a large message through the plugin vs native SHA-256 over the same bytes.
fn big_message(emu: &Emulator, plugin: &plugin::Plugin, args: &Args) -> HostedBig {
    let bytes = args.big_mib * 1024 * 1024;
    let pattern = plugin::pattern();
    let expected = {
        let mut h = sha2::Sha256::new();
        feed(&pattern, bytes, |c| h.update(c));
        h.finalize().to_vec()
    };
    let public_key = PublicKey::from_pem(&emu_public_pem(emu)).expect("public key");

    let mut secs = Vec::new();
    let mut rss = Vec::new();
    for _ in 0..args.big_runs {
        let out = plugin.run_streamed(Method::SignMessage, bytes);
        assert!(out.ok(), "large signMessage failed: {}", out.stdout);
        // The signature must be over exactly these bytes: the plugin hashed them all.
        let sig = out.signature().expect("signature");
        public_key
            .verify(HashAlg::Sha256, &expected, &sig)
            .expect("the large message's signature verifies against native SHA-256");
        secs.push(out.wall.as_secs_f64());
        rss.push(out.max_rss_kib as f64 / 1024.0);
    }
    let plugin_secs = Summary::of(&secs);

    // Native, in this process: sha2 picks the CPU's SHA extensions when it has them.
    let mut hw = Vec::new();
    for _ in 0..args.big_runs {
        let started = Instant::now();
        let mut h = sha2::Sha256::new();
        feed(&pattern, bytes, |c| h.update(c));
        assert_eq!(h.finalize().to_vec(), expected);
        hw.push(started.elapsed().as_secs_f64());
    }
    let hw = Summary::of(&hw);
    let soft = args.soft_sha.as_ref().map(|path| {
        let mut runs = Vec::new();
        for _ in 0..args.big_runs {
            let out = std::process::Command::new(path)
                .arg(bytes.to_string())
                .output()
                .expect("run sha256-soft");
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let mut parts = text.split_whitespace();
            let secs: f64 = parts.next().and_then(|s| s.parse().ok()).expect("seconds");
            assert_eq!(
                parts.next(),
                Some(hex(&expected).as_str()),
                "sha256-soft digest"
            );
            runs.push(secs);
        }
        Summary::of(&runs)
    });

    let mbps = |s: f64| bytes as f64 / s / 1e6;
    println!();
    println!(
        "## signMessage with {} MiB on stdin ({} runs; the signature is checked against native SHA-256)",
        args.big_mib, args.big_runs
    );
    println!();
    println!("| what | seconds | MB/s | peak RSS MiB | plugin ÷ this |");
    println!("|---|---|---|---|---|");
    println!(
        "| plugin signMessage (stdin pipe → sandboxed SHA-256 → KMS) | {} | {:.0} | {} | 1.00 |",
        plugin_secs.show(2),
        mbps(plugin_secs.median),
        Summary::of(&rss).show(1)
    );
    if let Some(soft) = soft {
        println!(
            "| native SHA-256, software only (sha2 force-soft) | {} | {:.0} | – | {:.2} |",
            soft.show(2),
            mbps(soft.median),
            soft.median / plugin_secs.median
        );
    } else {
        println!("| native SHA-256, software only | not measured (pass --soft-sha) | | | |");
    }
    println!(
        "| native SHA-256, CPU SHA extensions if present (sha2) | {} | {:.0} | – | {:.2} |",
        hw.show(2),
        mbps(hw.median),
        hw.median / plugin_secs.median
    );
    println!();
    println!(
        "plugin ÷ this: the plugin's throughput as a fraction of that baseline's (1.00 = as fast)."
    );
    HostedBig {
        secs: plugin_secs.median,
    }
}

/// Calls `f` with `bytes` bytes of the repeated pattern, a chunk at a time.
fn feed(pattern: &[u8], bytes: u64, mut f: impl FnMut(&[u8])) {
    let mut left = bytes;
    while left > 0 {
        let n = left.min(PATTERN_CHUNK as u64) as usize;
        f(&pattern[..n]);
        left -= n as u64;
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn emu_public_pem(emu: &Emulator) -> String {
    let key_id = emu.alias_target("alias/bench").expect("alias");
    let version = emu.key_versions(&key_id).expect("versions")[0].clone();
    emu.public_key_pem(&key_id, &version).expect("pem")
}

/// Table 4: the same calls natively in this process vs through the plugin binary.
fn native_vs_hosted(
    trust: &Trust,
    plugin: &plugin::Plugin,
    args: &Args,
    env: &[(String, String)],
    message: &[u8],
    signature: &[u8],
    hosted_big: HostedBig,
) {
    // The same roots as the plugin's bundle, parsed on every call as a plugin process does.
    let ca = std::fs::read_to_string(&trust.bundle).expect("read the trust bundle");
    println!();
    println!("## The guest's logic natively (in this process) vs through the plugin binary");
    println!();
    println!("| call | native ms | plugin ms | plugin ÷ native |");
    println!("|---|---|---|---|");
    for method in [
        Method::DefaultAlgorithm,
        Method::PublicKey,
        Method::SignMessage,
        Method::VerifySignature,
    ] {
        let argv = plugin.argv(method, Some(signature));
        let mut native = Vec::new();
        let mut hosted = Vec::new();
        for run in 0..=args.runs {
            let started = Instant::now();
            let response = native::call(env, &ca, &argv, &mut &message[..]);
            let elapsed = started.elapsed().as_secs_f64() * 1e3;
            assert!(response.ok, "native {method:?}: {}", response.json);
            let out = plugin.run(method, message, Some(signature));
            assert!(out.ok(), "plugin {method:?}: {}", out.stdout);
            if run > 0 {
                native.push(elapsed);
                hosted.push(out.wall.as_secs_f64() * 1e3);
            }
        }
        let (n, h) = (Summary::of(&native), Summary::of(&hosted));
        println!(
            "| {} | {} | {} | {:.1} |",
            method.name(),
            n.show(2),
            h.show(2),
            h.median / n.median
        );
    }

    // The large message: the same signMessage natively, reading the same bytes from a pipe.
    let bytes = args.big_mib * 1024 * 1024;
    let argv = plugin.argv(Method::SignMessage, None);
    let mut native = Vec::new();
    for _ in 0..args.big_runs {
        let (mut reader, writer) = std::io::pipe().expect("pipe");
        let feeder = plugin::feed_pipe(writer, bytes);
        let started = Instant::now();
        let response = native::call(env, &ca, &argv, &mut reader as &mut dyn Read);
        native.push(started.elapsed().as_secs_f64());
        assert!(response.ok, "native large signMessage: {}", response.json);
        feeder.join().expect("feeder");
    }
    let n = Summary::of(&native);
    println!(
        "| signMessage, {} MiB | {} | {:.0} | {:.2} |",
        args.big_mib,
        Summary::of(&native.iter().map(|s| s * 1e3).collect::<Vec<_>>()).show(0),
        hosted_big.secs * 1e3,
        hosted_big.secs / n.median
    );
}
