//! A local stand-in for Alibaba Cloud KMS (API version 2016-01-20), strict enough to test a
//! client against.
//!
//! The real service cannot be reached from the machines that build and test
//! sigstore-kms-alibabakms, so this emulator is what every test talks to. A lenient emulator
//! would make those tests lie, so it behaves like the real gateway wherever that is known:
//!
//! * HTTPS only (its own CA, written to a file for `SSL_CERT_FILE`), HTTP/1.1 with keep-alive.
//! * Every request must carry a valid `ACS3-HMAC-SHA256` signature ([`verify_acs3`], written
//!   from the spec, not from a client): unknown AccessKeys, wrong signatures, unsigned
//!   `x-acs-*`/`host` headers, dates more than 15 minutes off, reused nonces, missing or
//!   foreign STS tokens are refused with Alibaba's codes and HTTP statuses.
//! * Every answer carries an RFC 7231 `Date` header read from the emulator's clock (offset
//!   included, [`Emulator::set_clock_offset_secs`]), as HTTP servers do, so a client can say how
//!   far its clock is off.
//! * The actions keep real keys of every spec they accept (`EC_P256`, `EC_P256K`, `EC_SM2`,
//!   `RSA_2048`, `RSA_3072`, and `RSA_4096` in a KMS instance): signatures (DER ECDSA/SM2, RSA PKCS#1 v1.5 and PSS) verify
//!   against the PEM `GetPublicKey` returns, and responses use the documented JSON shapes
//!   (`KeyVersions.KeyVersion[]`, string `KeyMetadata` fields, boolean verify `Value`, ...).
//!   Key state gates what a key can do as KMS's 409 codes say.
//! * Tests can make it misbehave like a real region: inject throttling, 5xx, hangs, delays and
//!   connection resets per action ([`Emulator::inject`]), add a round-trip latency
//!   ([`Emulator::set_latency`]) and list key versions in any order ([`VersionOrder`]).
//! * STS 2015-04-01 `AssumeRoleWithOIDC` (and `AssumeRole`, signed with ACS3 or the legacy V1
//!   HMAC-SHA1 of [`v1_verify`]) is served on the same HTTPS server (dispatched by
//!   `x-acs-version`; [`sts`], [`EmulatorConfig::oidc_role`], [`Emulator::sts_endpoint`]):
//!   anonymous, strict about role, provider, token and its expiry; the credentials it issues
//!   are accepted by the KMS side with their token until their `Expiration`.
//! * The sign-in services of Aliyun CLI `CloudSSO` and `OAuth` profiles on the same HTTPS
//!   server ([`signin`], [`EmulatorConfig::cloud_sso`], [`EmulatorConfig::oauth`]): a bearer
//!   access token buys STS credentials that the KMS side accepts.
//! * An ECS instance metadata service on a plain-HTTP loopback listener of its own ([`imds`],
//!   [`EmulatorConfig::ecs_role`], [`Emulator::imds_endpoint`]), enforcing the IMDSv2 token.
//! * It counts requests per action, connections, TLS handshakes and injected faults, and
//!   records what each request carried (the newest 10 000 by default), so tests can hold a
//!   client to its round-trip budget.
//!
//! What is real and what is not:
//!
//! * Real: all key material and signatures (RSA via `rsa`, P-256/secp256k1/SM2 via RustCrypto's
//!   `p256`/`k256`/`sm2`), every key a fresh distinct one. RSA keys are slow to generate, so a
//!   small per-process pool makes them ahead in the background ([`prewarm_rsa_keys`]).
//! * Chosen where the reference is silent, and documented where chosen: SM2DSA signatures
//!   are DER like ECDSA's; CreateKeyVersion's rule violations are 400
//!   `Rejected.UnsupportedOperation` ([`actions`]); the throttle header's `Reset` value
//!   ([`fault`]).
//! * A KMS 3.0 account on request ([`EmulatorConfig::kms3_key_stores`]): asymmetric keys only
//!   in a KMS instance.
//! * A KMS instance's dedicated gateway, for requests whose `Host` is
//!   `<instance>.cryptoservice.kms.aliyuncs.com` ([`gateway`], [`Emulator::dedicated_gateway`]):
//!   cryptographic actions on the instance's own keys only.
//! * Not implemented: symmetric and HMAC keys, `ENCRYPT/DECRYPT` usage, and the actions
//!   outside [`actions::ACTIONS`]; each is refused with a message that says so.
//!
//! Where Alibaba's behaviour is not documented the emulator picks the conservative reading and
//! says so in a doc comment (see [`error`], [`fault`], [`actions`] and
//! [`state::Key::primary_version`]).
//!
//! ```no_run
//! use alibabakms_emulator::{Emulator, EmulatorConfig};
//! let emu = Emulator::start(EmulatorConfig::default()).unwrap();
//! let key = emu.create_key("EC_P256").unwrap();
//! emu.create_alias("alias/demo", &key.key_id).unwrap();
//! println!("alibabakms://{}/alias/demo (CA: {})", emu.endpoint(), emu.ca_pem_path().display());
//! ```

pub mod acs3_verify;
pub mod actions;
pub mod clock;
mod config;
pub mod error;
pub mod fault;
pub mod gateway;
pub mod imds;
mod material;
mod record;
mod rsa_pool;
mod server;
pub mod signin;
pub mod state;
pub mod sts;
pub mod tls;
pub mod v1_verify;

use std::collections::VecDeque;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use serde_json::Value;

pub use acs3_verify::{verify_acs3, Credential, NonceCache, VerifiedRequest};
pub use clock::NowFn;
pub use config::EmulatorConfig;
pub use error::{ApiError, ErrorKind};
pub use fault::{Fault, FaultRule};
pub use server::{Framing, RecordedRequest, Stats};
pub use state::{KeyState, VersionOrder};
pub use sts::OidcRole;

use server::{lock, Shared};
use state::State;

/// The AccessKey id an emulator accepts unless configured otherwise. It matches the captures
/// in shared/conformance/acs3-sdk-requests.jsonl.
pub const DEFAULT_ACCESS_KEY_ID: &str = "refkms-ak";
/// The secret of [`DEFAULT_ACCESS_KEY_ID`].
pub const DEFAULT_ACCESS_KEY_SECRET: &str = "refkms-secret";
/// The KMS instance known by default (usable as `DKMSInstanceId`).
pub const DEFAULT_KMS_INSTANCE_ID: &str = "kst-hzz65f176a0ogplgqob3";

/// Starts making `count` keys of an RSA spec (`RSA_2048`, `RSA_3072`) in the background, so
/// that later `CreateKey`/`CreateKeyVersion` calls for it answer at once; returns immediately.
/// The keys are kept per process and each is handed out once. Other specs are ignored.
pub fn prewarm_rsa_keys(spec: &str, count: usize) {
    match spec {
        "RSA_2048" => rsa_pool::prewarm(2048, count),
        "RSA_3072" => rsa_pool::prewarm(3072, count),
        "RSA_4096" => rsa_pool::prewarm(4096, count),
        _ => {}
    }
}

/// A key made by [`Emulator::create_key`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreatedKey {
    pub key_id: String,
    /// The key's first version.
    pub version_id: String,
    pub arn: String,
    /// The full `KeyMetadata`, as CreateKey returned it.
    pub metadata: Value,
}

/// A running emulator. Dropping it stops the server and deletes its CA file.
pub struct Emulator {
    shared: Arc<Shared>,
    addr: SocketAddr,
    ca_pem: String,
    ca_path: PathBuf,
    temp_dir: PathBuf,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    imds: imds::ImdsServer,
}

impl Emulator {
    /// Binds, writes the CA file and starts serving on a thread of its own.
    pub fn start(cfg: EmulatorConfig) -> std::io::Result<Emulator> {
        // Every instance's dedicated gateway is this server too ([`gateway`]).
        let mut tls_names = cfg.extra_tls_names.clone();
        tls_names.push(gateway::TLS_NAME.to_string());
        let tls = tls::generate(&tls_names)?;

        let temp_dir = std::env::temp_dir().join(format!(
            "alibabakms-emulator-{}-{}",
            std::process::id(),
            state::random_alnum(10)
        ));
        std::fs::create_dir_all(&temp_dir)?;
        let ca_path = temp_dir.join("ca.pem");
        std::fs::write(&ca_path, &tls.ca_pem)?;

        let mut state = State::new(cfg.region.clone(), cfg.account_id.clone());
        state.max_aliases = cfg.max_aliases;
        state.version_order = cfg.version_order;
        state.kms3_key_stores = cfg.kms3_key_stores;
        state
            .kms_instances
            .extend(cfg.kms_instance_ids.iter().cloned());
        for c in &cfg.credentials {
            state.credentials.insert(c.access_key_id.clone(), c.clone());
        }
        state.oidc_roles = cfg.oidc_roles.clone();
        state.ram_roles = cfg.ram_roles.iter().cloned().collect();
        state.ram_role_external_ids = cfg.ram_role_external_ids.iter().cloned().collect();
        state.max_session_durations = cfg.max_session_durations.iter().cloned().collect();
        state.cloud_sso = cfg.cloud_sso.clone();
        state.oauth_token = cfg.oauth.clone();
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            nonces: Mutex::new(NonceCache::default()),
            stats: Mutex::new(Stats::default()),
            requests: Mutex::new(VecDeque::new()),
            max_recorded: cfg.max_recorded_requests,
            clock: clock::Clock::new(cfg.now.clone(), cfg.clock_offset_secs),
            log_requests: cfg.log_requests,
            connection_seq: Mutex::new(0),
            faults: Mutex::new(fault::FaultPlan::default()),
            latency: Mutex::new(cfg.latency),
        });

        let std_listener = TcpListener::bind(cfg.listen)?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let listener = {
            let _guard = runtime.enter();
            tokio::net::TcpListener::from_std(std_listener)?
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.server_config.clone());
        let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel();
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("kms-emulator-{}", addr.port()))
            .spawn(move || {
                runtime.block_on(server::serve(
                    listener,
                    acceptor,
                    thread_shared,
                    shutdown_rx,
                ));
                // Dropping the runtime here cancels open connections.
            })?;

        let imds = imds::ImdsServer::start(
            shared.clone(),
            cfg.ecs_role.clone(),
            cfg.credentials_uri,
            cfg.imds_v1_only,
        )?;
        Ok(Emulator {
            imds,
            shared,
            addr,
            ca_pem: tls.ca_pem,
            ca_path,
            temp_dir,
            shutdown: Some(shutdown_tx),
            thread: Some(thread),
        })
    }

    /// `127.0.0.1:PORT`: the ENDPOINT of `alibabakms://ENDPOINT/...` key URIs.
    pub fn endpoint(&self) -> String {
        self.addr.to_string()
    }

    /// `<instance>.cryptoservice.kms.aliyuncs.com:PORT`: the emulator as the dedicated gateway
    /// of KMS `instance` ([`gateway`]). The name must resolve to the listening address (a
    /// test maps it in an `/etc/hosts` of its own).
    pub fn dedicated_gateway(&self, instance: &str) -> String {
        format!("{instance}{}:{}", gateway::HOST_SUFFIX, self.addr.port())
    }

    /// `127.0.0.1:PORT` for `ALIBABA_CLOUD_STS_ENDPOINT`: STS is served by the same HTTPS
    /// server ([`sts`]), told apart by `x-acs-version: 2015-04-01`. Its requests are counted
    /// in [`Emulator::stats`] under their action (e.g. `AssumeRoleWithOIDC`).
    pub fn sts_endpoint(&self) -> String {
        self.addr.to_string()
    }

    /// `http://127.0.0.1:PORT` for `ALIBABA_CLOUD_IMDS_ENDPOINT`: the ECS metadata service, on a
    /// plain-HTTP listener of its own ([`imds`]).
    pub fn imds_endpoint(&self) -> String {
        format!("http://{}", self.imds.addr())
    }

    /// `http://127.0.0.1:PORT/credentials-uri` for `ALIBABA_CLOUD_CREDENTIALS_URI` (served when
    /// [`EmulatorConfig::credentials_uri`] is set, else 404).
    pub fn credentials_uri(&self) -> String {
        format!("{}{}", self.imds_endpoint(), imds::CREDENTIALS_URI_PATH)
    }

    /// `https://127.0.0.1:PORT/login` for a CloudSSO profile's `cloud_sso_sign_in_url`: the
    /// HTTPS server serves `/cloud-credentials` when [`EmulatorConfig::cloud_sso`] is set
    /// ([`signin`]; only the URL's scheme and host matter to a client).
    pub fn sign_in_url(&self) -> String {
        format!("https://{}/login", self.addr)
    }

    /// `127.0.0.1:PORT`, where the HTTPS server serves the OAuth exchange `/v1/exchange` when
    /// [`EmulatorConfig::oauth`] is set ([`signin`]).
    pub fn oauth_endpoint(&self) -> String {
        self.addr.to_string()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The CA that signed the server certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The same CA in a file (for `SSL_CERT_FILE`), removed when the emulator is dropped.
    pub fn ca_pem_path(&self) -> &Path {
        &self.ca_path
    }

    pub fn stats(&self) -> Stats {
        lock(&self.shared.stats).clone()
    }

    pub fn reset_stats(&self) {
        *lock(&self.shared.stats) = Stats::default();
    }

    /// Requests received so far (the newest [`EmulatorConfig::max_recorded_requests`], 10 000
    /// by default), oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.requests).iter().cloned().collect()
    }

    pub fn clear_requests(&self) {
        lock(&self.shared.requests).clear();
    }

    /// The server's current time (system or injected clock plus offset).
    pub fn now(&self) -> SystemTime {
        self.shared.clock.now()
    }

    /// Moves the server's clock relative to its base, e.g. `-1200` for 20 minutes behind.
    pub fn set_clock_offset_secs(&self, secs: i64) {
        self.shared.clock.set_offset_secs(secs);
    }

    /// Applies `fault` to the next `times` requests for `action` (`"*"`: any action) that pass
    /// the gateway (signature, nonce, version, known action). Rules apply in the order they were
    /// injected: a request takes the oldest matching rule with uses left. `times` 0 does
    /// nothing. See [`fault`] for the codes.
    pub fn inject(&self, action: &str, fault: Fault, times: u32) {
        lock(&self.shared.faults).add(action, fault, times);
    }

    /// Drops every injected fault not applied yet.
    pub fn clear_faults(&self) {
        lock(&self.shared.faults).clear();
    }

    /// Injected faults not used up yet, oldest first.
    pub fn pending_faults(&self) -> Vec<FaultRule> {
        lock(&self.shared.faults).pending()
    }

    /// Delay added to every request from now on (`Duration::ZERO`: none).
    pub fn set_latency(&self, latency: Duration) {
        *lock(&self.shared.latency) = latency;
    }

    /// How ListKeyVersions orders versions from now on.
    pub fn set_version_order(&self, order: VersionOrder) {
        lock(&self.shared.state).version_order = order;
    }

    pub fn add_credential(&self, credential: Credential) {
        lock(&self.shared.state)
            .credentials
            .insert(credential.access_key_id.clone(), credential);
    }

    /// The next STS credentials the emulator issues (through STS `AssumeRole*` or the
    /// metadata service) stop working after `uses` accepted KMS requests: from then on KMS
    /// answers `InvalidSecurityToken.Expired`, as for credentials past their `Expiration`.
    /// With 0 they are expired when first used. Each call applies to one issue (calls queue
    /// up for the issues after it); later issues are unaffected.
    pub fn expire_next_issued_credentials(&self, uses: u32) {
        lock(&self.shared.state).next_issued_uses.push_back(uses);
    }

    /// Every credential the emulator accepts now: configured ones and those STS and the
    /// metadata service issued (tests check that none of their values leaks).
    pub fn credentials(&self) -> Vec<Credential> {
        lock(&self.shared.state)
            .credentials
            .values()
            .cloned()
            .collect()
    }

    /// When the credential `access_key_id` stops working: `None` for a long-term AccessKey or
    /// an unknown id. Tests read the `Expiration` of the STS sessions it issued this way.
    pub fn credential_expiration(&self, access_key_id: &str) -> Option<SystemTime> {
        lock(&self.shared.state)
            .credentials
            .get(access_key_id)
            .and_then(|c| c.expiration)
    }

    pub fn remove_credential(&self, access_key_id: &str) {
        lock(&self.shared.state).credentials.remove(access_key_id);
    }

    pub fn add_kms_instance(&self, id: &str) {
        lock(&self.shared.state)
            .kms_instances
            .insert(id.to_string());
    }

    /// Runs an action directly, without signature checks, faults, latency, counters or request
    /// records: the same code the API runs, for seeding and inspecting state. `RequestId` is not
    /// added.
    pub fn call(&self, action: &str, params: &[(&str, &str)]) -> Result<Value, ApiError> {
        let f = actions::find(action)
            .ok_or_else(|| ApiError::api_not_found(format!("No action {action:?}.")))?;
        let params = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let now = self.now();
        let mut state = lock(&self.shared.state);
        f(&mut actions::Ctx {
            state: &mut state,
            params: &params,
            now,
        })
    }

    /// CreateKey with `KeySpec=spec` (usage SIGN/VERIFY).
    pub fn create_key(&self, spec: &str) -> Result<CreatedKey, ApiError> {
        self.create_key_with(&[("KeySpec", spec), ("KeyUsage", "SIGN/VERIFY")])
    }

    /// CreateKey with any parameters (e.g. `DKMSInstanceId`, `Description`).
    pub fn create_key_with(&self, params: &[(&str, &str)]) -> Result<CreatedKey, ApiError> {
        let v = self.call("CreateKey", params)?;
        let m = &v["KeyMetadata"];
        let field = |k: &str| m[k].as_str().unwrap_or_default().to_string();
        Ok(CreatedKey {
            key_id: field("KeyId"),
            version_id: field("PrimaryKeyVersion"),
            arn: field("Arn"),
            metadata: m.clone(),
        })
    }

    /// CreateAlias (`alias_name` includes the `alias/` prefix).
    pub fn create_alias(&self, alias_name: &str, key_id: &str) -> Result<(), ApiError> {
        self.call(
            "CreateAlias",
            &[("AliasName", alias_name), ("KeyId", key_id)],
        )
        .map(drop)
    }

    /// Adds a key version dated `creation_date`; returns its id. `key` may be an id or alias.
    /// Unlike CreateKeyVersion it ignores the 7-day spacing, the 50-version cap and the key's
    /// state, so tests can build any history.
    pub fn add_key_version(
        &self,
        key: &str,
        creation_date: SystemTime,
    ) -> Result<String, ApiError> {
        lock(&self.shared.state).add_key_version(key, creation_date)
    }

    /// Puts a key into `state` directly (PendingDeletion gets a DeleteDate 7 days out).
    pub fn set_key_state(&self, key: &str, new_state: KeyState) -> Result<(), ApiError> {
        let now = self.now();
        let mut state = lock(&self.shared.state);
        let key_id = state.resolve_key(
            key,
            state::KeyRefForms {
                alias: true,
                arn: true,
            },
        )?;
        let k = state.key_mut(&key_id);
        k.state = new_state;
        k.delete_date = (new_state == KeyState::PendingDeletion)
            .then(|| now + std::time::Duration::from_secs(7 * 86400));
        Ok(())
    }

    /// The key id an alias (`alias/NAME`) points to.
    pub fn alias_target(&self, alias_name: &str) -> Option<String> {
        lock(&self.shared.state).aliases.get(alias_name).cloned()
    }

    /// PEM public key of one version, or `None` if the key or version does not exist.
    pub fn public_key_pem(&self, key_id: &str, version_id: &str) -> Option<String> {
        let state = lock(&self.shared.state);
        let key = state.keys.get(key_id)?;
        Some(key.version(version_id)?.material.public_key_pem())
    }

    /// Version ids of a key, oldest first.
    pub fn key_versions(&self, key_id: &str) -> Option<Vec<String>> {
        let state = lock(&self.shared.state);
        let key = state.keys.get(key_id)?;
        let mut v: Vec<_> = key.versions.iter().collect();
        v.sort_by_key(|v| v.creation_date);
        Some(v.iter().map(|v| v.id.clone()).collect())
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_dir_all(&self.temp_dir);
    }
}
