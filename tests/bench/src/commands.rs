//! What a whole cosign command costs (the benchmark's fifth table): the real cosign 3
//! (`sign`, `attest`, `sign-blob`, `verify`) with the plugin, cold (no kept key metadata) and
//! warm (a second command within the cache's lifetime), beside the same command with a local
//! key file, in the same run, at 0 ms and at the injected round trip.
//!
//! The plugin's share of a command is the wall time of all its plugin runs, summed: the
//! `sigstore-kms-alibabakms` cosign finds on PATH is this benchmark's binary, which spawns the
//! real plugin with cosign's argv and stdio and logs how long it ran ([`timed_plugin`]). Its
//! budget is one round trip per KMS request the command sends, plus 30 ms.
//! The local-key command is shown beside it, but the difference is no measure of the share:
//! cosign decrypts a key file with scrypt, which costs more than the plugin's whole share.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use alibabakms_emulator::Emulator;
use alibabakms_testtools::{tool, tools_bin, Registry};

use crate::stats::Summary;

/// One cosign command of the table: its arguments after `cosign`, with `KEY` for the key and
/// `IMAGE` for the image reference.
const COMMANDS: &[(&str, &[&str])] = &[
    (
        "sign IMAGE",
        &[
            "sign",
            "--key",
            "KEY",
            "--use-signing-config=false",
            "--tlog-upload=false",
            "--yes",
            "IMAGE",
        ],
    ),
    (
        "attest IMAGE",
        &[
            "attest",
            "--key",
            "KEY",
            "--use-signing-config=false",
            "--tlog-upload=false",
            "--predicate",
            "predicate.json",
            "--type",
            "https://example.com/ci-result",
            "--yes",
            "IMAGE",
        ],
    ),
    (
        "sign-blob --bundle",
        &[
            "sign-blob",
            "--key",
            "KEY",
            "--use-signing-config=false",
            "--tlog-upload=false",
            "--bundle",
            "blob.sigstore.json",
            "--yes",
            "blob.txt",
        ],
    ),
    (
        "verify IMAGE",
        &[
            "verify",
            "--key",
            "VERIFY_KEY",
            "--insecure-ignore-tlog",
            "VERIFIED_IMAGE",
        ],
    ),
];

struct Setup {
    cosign: PathBuf,
    dir: PathBuf,
    env: Vec<(String, String)>,
    kms_key: String,
    image: String,
    kms_verified: String,
    local_verified: String,
}

impl Setup {
    fn run(&self, args: &[&str], kms: bool) -> Duration {
        let (key, verify_key, verified) = match kms {
            true => (
                self.kms_key.as_str(),
                self.kms_key.as_str(),
                self.kms_verified.as_str(),
            ),
            false => ("cosign.key", "cosign.pub", self.local_verified.as_str()),
        };
        let args: Vec<&str> = args
            .iter()
            .map(|a| match *a {
                "KEY" => key,
                "VERIFY_KEY" => verify_key,
                "IMAGE" => self.image.as_str(),
                "VERIFIED_IMAGE" => verified,
                other => other,
            })
            .collect();
        let started = Instant::now();
        let out = Command::new(&self.cosign)
            .args(&args)
            .current_dir(&self.dir)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .output()
            .expect("run cosign");
        let took = started.elapsed();
        assert!(
            out.status.success(),
            "cosign {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        took
    }

    fn forget_cache(&self) {
        let _ = std::fs::remove_dir_all(self.dir.join("cache"));
    }

    /// The plugin runs since the last call, and their summed wall time in ms.
    fn plugin_runs(&self) -> (usize, f64) {
        let log = self.dir.join("plugin-runs.log");
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let _ = std::fs::remove_file(&log);
        let ns: Vec<f64> = text.lines().filter_map(|l| l.trim().parse().ok()).collect();
        (ns.len(), ns.iter().sum::<f64>() / 1e6)
    }
}

pub fn cosign_commands(
    emu: &Emulator,
    bin: &Path,
    env: &[(String, String)],
    runs: usize,
    rtt_ms: u64,
) {
    let tools = tools_bin(bin);
    let (cosign, registry_bin) = match (
        tool("COSIGN", tools.join("cosign-3")),
        tool("DOCKER_REGISTRY", tools.join("docker-registry")),
    ) {
        // Absolute: cosign runs in a directory of its own.
        (Ok(c), Ok(r)) => (
            std::fs::canonicalize(c).unwrap(),
            std::fs::canonicalize(r).unwrap(),
        ),
        (Err(e), _) | (_, Err(e)) => {
            println!("\n## Whole cosign commands\n\nnot measured: {e}");
            return;
        }
    };
    let dir = std::env::temp_dir().join(format!("alibabakms-bench-cosign-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let plugin_dir = dir.join("bin");
    std::fs::create_dir_all(&plugin_dir).unwrap();
    // cosign runs the plugin through this benchmark's own binary (a symbolic link named as
    // the plugin), which runs the real one as cosign would and logs its wall time.
    std::os::unix::fs::symlink(
        std::env::current_exe().unwrap(),
        plugin_dir.join("sigstore-kms-alibabakms"),
    )
    .unwrap();
    std::fs::write(
        dir.join("predicate.json"),
        br#"{"builder":"ci","passed":true}"#,
    )
    .unwrap();
    std::fs::write(dir.join("blob.txt"), b"release artifact\n").unwrap();
    let registry = Registry::start(&registry_bin, &dir);

    let mut env: Vec<(String, String)> = env
        .iter()
        .filter(|(k, _)| k != "SIGSTORE_ALIBABAKMS_CACHE_TTL")
        .cloned()
        .collect();
    let path = |p: &str| dir.join(p).display().to_string();
    env.extend([
        ("PATH".to_string(), plugin_dir.display().to_string()),
        ("HOME".to_string(), path("home")),
        ("TUF_ROOT".to_string(), path("tuf")),
        ("XDG_CACHE_HOME".to_string(), path("cache")),
        ("COSIGN_PASSWORD".to_string(), String::new()),
        (
            TIMED_PLUGIN_VAR.to_string(),
            std::fs::canonicalize(bin).unwrap().display().to_string(),
        ),
        (PLUGIN_LOG_VAR.to_string(), path("plugin-runs.log")),
        // Nothing leaves loopback: a dead proxy for anything that would.
        ("HTTPS_PROXY".to_string(), "http://127.0.0.1:9".to_string()),
        ("NO_PROXY".to_string(), "127.0.0.1,localhost".to_string()),
    ]);
    let mut setup = Setup {
        cosign,
        dir: dir.clone(),
        env,
        kms_key: format!("alibabakms://{}//alias/bench", emu.endpoint()),
        image: registry.push_image("signed", b"the image each sign adds to"),
        kms_verified: registry.push_image("kms-verified", b"signed once through KMS"),
        local_verified: registry.push_image("local-verified", b"signed once with a key file"),
    };
    // The local key, and the one signature each verify checks.
    setup.run(&["generate-key-pair"], false);
    let sign = COMMANDS[0].1;
    let image = std::mem::replace(&mut setup.image, setup.kms_verified.clone());
    setup.run(sign, true);
    setup.image = setup.local_verified.clone();
    setup.run(sign, false);
    setup.image = image;

    println!();
    println!("## Whole cosign commands (cosign 3, {runs} runs per cell; median (min–max))");
    println!();
    setup.plugin_runs();
    println!(
        "cold: no key metadata kept; warm: kept by an earlier command within its lifetime. \
         plugin's share: the wall time of the command's plugin runs (each from spawn to exit, as \
         its parent sees it), summed; budget: one round trip per KMS request, plus 30 ms. local \
         key: the same command with a cosign.key file (cosign's scrypt decryption of it \
         included)."
    );
    for rtt in [0, rtt_ms] {
        emu.set_latency(Duration::from_millis(rtt));
        println!();
        println!("### {rtt} ms round trip");
        println!();
        println!("| command | plugin runs | KMS requests cold / warm | plugin's share cold ms | plugin's share warm ms | budget cold / warm ms | command cold ms | command warm ms | local key ms |");
        println!("|---|---|---|---|---|---|---|---|---|");
        for (name, args) in COMMANDS {
            let (mut local, mut cold, mut warm) = (Vec::new(), Vec::new(), Vec::new());
            let (mut cold_share, mut warm_share) = (Vec::new(), Vec::new());
            let (mut cold_requests, mut warm_requests, mut plugin_runs) = (0, 0, 0);
            for _ in 0..runs {
                local.push(ms(setup.run(args, false)));
                setup.forget_cache();
                setup.plugin_runs();
                emu.reset_stats();
                cold.push(ms(setup.run(args, true)));
                cold_requests = emu.stats().total_requests;
                let (n, share) = setup.plugin_runs();
                plugin_runs = n;
                cold_share.push(share);
                emu.reset_stats();
                warm.push(ms(setup.run(args, true)));
                warm_requests = emu.stats().total_requests;
                warm_share.push(setup.plugin_runs().1);
            }
            let show = |v: &[f64]| Summary::of(v).show(0);
            let budget = |requests: u64| requests as f64 * rtt as f64 + 30.0;
            println!(
                "| {name} | {plugin_runs} | {cold_requests} / {warm_requests} | {} | {} | {:.0} / {:.0} | {} | {} | {} |",
                show(&cold_share),
                show(&warm_share),
                budget(cold_requests),
                budget(warm_requests),
                show(&cold),
                show(&warm),
                show(&local),
            );
        }
    }
    emu.set_latency(Duration::ZERO);
    drop(registry);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Set for cosign (and so for the benchmark binary it runs as its plugin): the real plugin.
pub const TIMED_PLUGIN_VAR: &str = "ALIBABAKMS_BENCH_TIMED_PLUGIN";
const PLUGIN_LOG_VAR: &str = "ALIBABAKMS_BENCH_PLUGIN_LOG";

/// The benchmark binary run as cosign's plugin: runs `real` with the same argv, stdin, stdout
/// and stderr, appends its wall time (ns) to the log, and exits as it did.
pub fn timed_plugin(real: std::ffi::OsString) -> i32 {
    let started = Instant::now();
    let status = Command::new(real)
        .args(std::env::args_os().skip(1))
        .status();
    let ns = started.elapsed().as_nanos();
    if let Some(log) = std::env::var_os(PLUGIN_LOG_VAR) {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
        {
            let _ = writeln!(f, "{ns}");
        }
    }
    status.ok().and_then(|s| s.code()).unwrap_or(1)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
