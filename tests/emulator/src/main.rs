//! `kms-emulator`: the emulator as a process, for scripts and the README demo.
//!
//! Prints exactly one line, `endpoint=HOST:PORT`, on stdout once it accepts connections,
//! logs one line per request on stderr, and runs until SIGTERM or SIGINT.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use alibabakms_emulator::{
    Emulator, EmulatorConfig, VersionOrder, DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET,
    DEFAULT_KMS_INSTANCE_ID,
};

fn usage() -> String {
    format!(
        "kms-emulator: a strict local Alibaba Cloud KMS (2016-01-20) over HTTPS

USAGE: kms-emulator [OPTIONS]

OPTIONS:
  --listen ADDR               address to listen on (default 127.0.0.1:0, a free port)
  --ca-out PATH               also write the emulator's CA certificate (PEM) to PATH
  --access-key-id ID          AccessKey id to accept (default {DEFAULT_ACCESS_KEY_ID})
  --access-key-secret SECRET  its secret (default {DEFAULT_ACCESS_KEY_SECRET})
  --kms-instance-id ID        also accept ID as a DKMSInstanceId (repeatable;
                              {DEFAULT_KMS_INSTANCE_ID} is always known)
  --latency-ms N              delay every request by N milliseconds (a region's round trip)
  --version-order ORDER       ListKeyVersions order: oldest (default), newest or shuffled
  --quiet                     no per-request log lines on stderr
  -h, --help                  this text

Prints `endpoint=HOST:PORT` on stdout when ready; runs until SIGTERM/SIGINT.
"
    )
}

struct Args {
    listen: SocketAddr,
    ca_out: Option<String>,
    access_key_id: String,
    access_key_secret: String,
    instances: Vec<String>,
    latency: Duration,
    version_order: VersionOrder,
    quiet: bool,
}

fn parse_args() -> Result<Option<Args>, String> {
    let mut args = Args {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        ca_out: None,
        access_key_id: DEFAULT_ACCESS_KEY_ID.to_string(),
        access_key_secret: DEFAULT_ACCESS_KEY_SECRET.to_string(),
        instances: Vec::new(),
        latency: Duration::ZERO,
        version_order: VersionOrder::OldestFirst,
        quiet: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--listen" => {
                let v = value("--listen")?;
                args.listen = v
                    .parse()
                    .map_err(|e| format!("--listen {v:?}: {e} (want IP:PORT)"))?;
            }
            "--ca-out" => args.ca_out = Some(value("--ca-out")?),
            "--access-key-id" => args.access_key_id = value("--access-key-id")?,
            "--access-key-secret" => args.access_key_secret = value("--access-key-secret")?,
            "--kms-instance-id" => args.instances.push(value("--kms-instance-id")?),
            "--latency-ms" => {
                let v = value("--latency-ms")?;
                let ms: u64 = v
                    .parse()
                    .map_err(|e| format!("--latency-ms {v:?}: {e} (want milliseconds)"))?;
                args.latency = Duration::from_millis(ms);
            }
            "--version-order" => {
                args.version_order = match value("--version-order")?.as_str() {
                    "oldest" => VersionOrder::OldestFirst,
                    "newest" => VersionOrder::NewestFirst,
                    "shuffled" => VersionOrder::Shuffled,
                    other => {
                        return Err(format!(
                            "--version-order {other:?}: want oldest, newest or shuffled"
                        ))
                    }
                };
            }
            "--quiet" => args.quiet = true,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Some(args))
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(Some(a)) => a,
        Ok(None) => {
            print!("{}", usage());
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("kms-emulator: {e}\n\n{}", usage());
            return ExitCode::from(2);
        }
    };

    let mut cfg = EmulatorConfig::default()
        .listen(args.listen)
        .no_credentials()
        .access_key(args.access_key_id, args.access_key_secret)
        .latency(args.latency)
        .version_order(args.version_order)
        .log_requests(!args.quiet);
    for id in args.instances {
        cfg = cfg.kms_instance(id);
    }
    let emulator = match Emulator::start(cfg) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("kms-emulator: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(path) = &args.ca_out {
        if let Err(e) = std::fs::write(path, emulator.ca_pem()) {
            eprintln!("kms-emulator: cannot write --ca-out {path}: {e}");
            return ExitCode::FAILURE;
        }
    }

    let mut out = std::io::stdout().lock();
    if writeln!(out, "endpoint={}", emulator.endpoint())
        .and_then(|_| out.flush())
        .is_err()
    {
        return ExitCode::FAILURE;
    }
    drop(out);

    // Wait for a signal, then drop the emulator so its temp directory is removed.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kms-emulator: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    });
    eprintln!("kms-emulator: stopping");
    drop(emulator);
    ExitCode::SUCCESS
}
