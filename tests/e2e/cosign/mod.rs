//! The real cosign, both lines (2.x and 3.x), with the plugin on its `PATH`, against the
//! emulator and a real OCI registry (Debian's docker-registry) on loopback.
//!
//! The tools come from `tests/tools/fetch.sh` (which `./test.sh` runs) into the build
//! directory's `tools/bin`; `COSIGN=/path` takes the place of the fetched cosign of its own line
//! (read from its `--help`, or given as `COSIGN_LINE=2|3`), `DOCKER_REGISTRY=/path` of the
//! registry. A tool that cannot be found fails the test: nothing is skipped.
//!
//! Nothing may leave loopback. Each test re-runs itself inside a network namespace of its own
//! (`unshare --net`, with a user namespace when not root) where the only interface is `lo`;
//! where the machine does not allow that, it says so on stderr and runs in place. Either way
//! cosign's `HTTPS_PROXY` points at a tripwire on loopback that records every connection cosign
//! tries to open to anything but loopback (Go never proxies loopback), and each test asserts
//! the tripwire saw none: no TUF, no Rekor, no TSA, no Alibaba endpoint.

mod suite;

use crate::harness::{env_for, tempdir, BIN};
use alibabakms_emulator::Emulator;
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex, OnceLock};

/// A real OCI registry on loopback, from `DOCKER_REGISTRY` or the fetched tools.
pub struct Registry(alibabakms_testtools::Registry);

impl Registry {
    pub fn start(dir: &Path) -> Registry {
        let bin =
            alibabakms_testtools::tool("DOCKER_REGISTRY", tools_bin().join("docker-registry"))
                .unwrap_or_else(|e| panic!("{e}"));
        Registry(alibabakms_testtools::Registry::start(&bin, dir))
    }

    pub fn push_image(&self, repo: &str, layer: &[u8]) -> String {
        self.0.push_image(repo, layer)
    }
}

/// Which cosign: its path and its line (2 or 3: their flags differ).
#[derive(Clone, Debug)]
pub struct CosignBin {
    pub path: PathBuf,
    pub line: u8,
}

/// The build directory's `tools/bin`, where `tests/tools/fetch.sh` puts the tools.
fn tools_bin() -> PathBuf {
    alibabakms_testtools::tools_bin(Path::new(BIN))
}

fn missing(what: &str, path: &Path, var: &str) -> ! {
    panic!(
        "{what} not found at {}: run tests/tools/fetch.sh (./test.sh does), or set {var}=/path",
        path.display()
    )
}

/// The cosign of one line: `COSIGN` when it is of that line, else the fetched one.
pub fn cosign(line: u8) -> CosignBin {
    if let Some(path) = std::env::var_os("COSIGN").map(PathBuf::from) {
        if !path.is_file() {
            missing("COSIGN", &path, "COSIGN");
        }
        let its_line = std::env::var("COSIGN_LINE")
            .ok()
            .and_then(|l| l.parse().ok())
            .unwrap_or_else(|| line_of(&path));
        if its_line == line {
            return CosignBin { path, line };
        }
    }
    let path = tools_bin().join(format!("cosign-{line}"));
    if !path.is_file() {
        missing(&format!("cosign {line}.x"), &path, "COSIGN");
    }
    CosignBin { path, line }
}

/// Whether this cosign is of the 2.x or 3.x line. Debian builds print `GitVersion: devel`, so
/// the version is read from a default only 3.x has.
fn line_of(path: &Path) -> u8 {
    let out = Command::new(path)
        .args(["sign-blob", "--help"])
        .output()
        .expect("run cosign --help");
    let help = String::from_utf8_lossy(&out.stdout);
    if help.contains("--use-signing-config=true") {
        3
    } else {
        2
    }
}

/// Whether a test should run where it is: `false` when it has just run itself inside a
/// network namespace (the outcome is asserted here), `true` when it is the copy inside one, or
/// when namespaces are not available.
pub fn run_here(test: &str) -> bool {
    if std::env::var_os("ALIBABAKMS_IN_NETNS").is_some() {
        return true;
    }
    let Some(unshare) = netns_prefix() else {
        eprintln!("{test}: no network namespace here (unshare --net refused); running in place, with the tripwire proxy only");
        return true;
    };
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(&unshare[0])
        .args(&unshare[1..])
        .arg(&exe)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env("ALIBABAKMS_IN_NETNS", "1")
        .output()
        .expect("run the test in a network namespace");
    assert!(
        out.status.success(),
        "{test} failed inside its network namespace:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    false
}

/// `unshare … sh -c 'ip link set lo up && exec "$@"' sh`, when it works on this machine.
fn netns_prefix() -> Option<&'static [String]> {
    static PREFIX: OnceLock<Option<Vec<String>>> = OnceLock::new();
    PREFIX
        .get_or_init(|| {
            let mut cmd: Vec<String> = vec!["unshare".into(), "--net".into()];
            // SAFETY: geteuid has no preconditions.
            if unsafe { libc::geteuid() } != 0 {
                cmd.push("--map-root-user".into());
            }
            cmd.extend(
                ["--", "sh", "-c", "ip link set lo up && exec \"$@\"", "sh"].map(String::from),
            );
            let works = Command::new(&cmd[0])
                .args(&cmd[1..])
                .arg("true")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            works.then_some(cmd)
        })
        .as_deref()
}

/// A listener on loopback that cosign's `HTTPS_PROXY`/`HTTP_PROXY` point at: every connection
/// it gets is an attempt to reach something beyond loopback, recorded by its request line.
pub struct Tripwire {
    pub url: String,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Tripwire {
    pub fn start() -> Tripwire {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let _ = conn.set_read_timeout(Some(std::time::Duration::from_secs(2)));
                let mut head = [0u8; 512];
                let n = conn.read(&mut head).unwrap_or(0);
                let text = String::from_utf8_lossy(&head[..n]);
                record
                    .lock()
                    .unwrap()
                    .push(text.lines().next().unwrap_or("").to_string());
                // Dropped: the attempt fails at once instead of hanging.
            }
        });
        Tripwire { url, seen }
    }

    pub fn assert_untouched(&self) {
        let seen = self.seen.lock().unwrap();
        assert!(
            seen.is_empty(),
            "cosign tried to reach beyond loopback: {seen:?}"
        );
    }
}

/// One test's world: the emulator, a registry, a home and a `PATH` holding only the plugin.
pub struct World {
    pub cosign: CosignBin,
    pub emu: Emulator,
    pub dir: PathBuf,
    env: Vec<(String, String)>,
    tripwire: Tripwire,
}

/// What one cosign command did.
pub struct Outcome {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl World {
    pub fn new(cosign: CosignBin, emu: Emulator) -> World {
        World::with_plugin(cosign, emu, &[Path::new(BIN)])
    }

    /// A world whose plugin is `program`: this build's binary, or another runtime carrying
    /// the same component, or a wrapper (a command as an absolute path, and its first
    /// arguments).
    pub fn with_plugin(cosign: CosignBin, emu: Emulator, program: &[&Path]) -> World {
        let dir = tempdir();
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        // cosign finds `alibabakms://` plugins as `sigstore-kms-alibabakms` on PATH.
        let plugin = bin.join("sigstore-kms-alibabakms");
        assert!(program[0].is_absolute(), "{}", program[0].display());
        if let [binary] = program {
            std::os::unix::fs::symlink(binary, &plugin).unwrap();
        } else {
            let quoted: Vec<String> = program
                .iter()
                .map(|p| {
                    let p = p.to_str().unwrap();
                    assert!(!p.contains('\''), "{p}");
                    format!("'{p}'")
                })
                .collect();
            let script = format!("#!/bin/sh\nexec {} \"$@\"\n", quoted.join(" "));
            std::fs::write(&plugin, script).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        for d in ["home", "tuf", "work"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        let tripwire = Tripwire::start();
        let mut env = env_for(&emu);
        // What users get: key metadata kept between the plugin runs of a command (in the
        // temporary HOME's .cache).
        env.retain(|(k, _)| k != "SIGSTORE_ALIBABAKMS_CACHE_TTL");
        let path = |p: &str| dir.join(p).display().to_string();
        env.extend([
            ("PATH".into(), bin.display().to_string()),
            ("HOME".into(), path("home")),
            ("TUF_ROOT".into(), path("tuf")),
            ("HTTPS_PROXY".into(), tripwire.url.clone()),
            ("HTTP_PROXY".into(), tripwire.url.clone()),
            ("NO_PROXY".into(), "127.0.0.1,localhost".into()),
            // The plugin reads the proxy too; its requests go to the emulator on loopback.
        ]);
        World {
            cosign,
            emu,
            dir,
            env,
            tripwire,
        }
    }

    pub fn key(&self, alias: &str) -> String {
        format!("alibabakms://{}//alias/{alias}", self.emu.endpoint())
    }

    /// An alias reference whose new keys are made in the emulator's KMS instance.
    pub fn key_in_instance(&self, alias: &str) -> String {
        format!(
            "alibabakms://{}/{}/alias/{alias}",
            self.emu.endpoint(),
            alibabakms_emulator::DEFAULT_KMS_INSTANCE_ID
        )
    }

    /// Sets a variable for every later cosign command (and so for the plugin).
    pub fn set_env(&mut self, name: &str, value: &str) {
        self.env.retain(|(k, _)| k != name);
        self.env.push((name.into(), value.into()));
    }

    /// A file in the test's working directory.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join("work").join(name)
    }

    /// Runs `cosign ARGS` in the working directory.
    pub fn run(&self, args: &[&str]) -> Outcome {
        let out: Output = Command::new(&self.cosign.path)
            .args(args)
            .current_dir(self.dir.join("work"))
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .output()
            .expect("run cosign");
        let outcome = Outcome {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        crate::harness::assert_no_secret(&outcome.stdout);
        crate::harness::assert_no_secret(&outcome.stderr);
        outcome
    }

    /// Runs a command that must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.ok,
            "cosign {} (line {}) failed:\n{}",
            args.join(" "),
            self.cosign.line,
            o.stderr
        );
        o.stdout
    }

    /// Runs a command that must fail; returns its stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            !o.ok,
            "cosign {} (line {}) succeeded but must fail:\n{}",
            args.join(" "),
            self.cosign.line,
            o.stderr
        );
        o.stderr
    }

    /// The flags that keep signing off the public services: 2.x uploads to Rekor unless told
    /// not to; 3.x also fetches the public signing config and writes a bundle.
    pub fn private_signing(&self) -> Vec<&'static str> {
        match self.cosign.line {
            2 => vec!["--tlog-upload=false"],
            _ => vec!["--use-signing-config=false", "--tlog-upload=false"],
        }
    }

    /// Every request the plugin sent had a Content-Length, none was chunked, and cosign reached
    /// nothing beyond loopback.
    pub fn finish(self) {
        self.tripwire.assert_untouched();
        crate::harness::assert_no_chunked(&self.emu);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
