//! How an emulator is started: who it accepts, which roles and instances exist, the modes
//! of the real service it stands in for, and the faults and latency tests inject.

use crate::*;
use std::net::SocketAddr;
use std::time::Duration;

/// How to start an emulator. `Default` listens on `127.0.0.1:0` and accepts one static
/// AccessKey ([`DEFAULT_ACCESS_KEY_ID`] / [`DEFAULT_ACCESS_KEY_SECRET`]).
#[derive(Clone)]
pub struct EmulatorConfig {
    pub listen: SocketAddr,
    /// Long-term AccessKeys and STS credentials the gateway accepts.
    pub credentials: Vec<Credential>,
    /// Roles STS `AssumeRoleWithOIDC` lets a token holder assume ([`sts`]).
    pub oidc_roles: Vec<OidcRole>,
    /// Roles STS `AssumeRole` lets any known AccessKey assume ([`sts`]).
    pub ram_roles: Vec<String>,
    /// The RAM role attached to the "instance" whose metadata service [`imds`] emulates.
    pub ecs_role: Option<String>,
    /// Whether the metadata listener also serves [`imds::CREDENTIALS_URI_PATH`].
    pub credentials_uri: bool,
    /// The CloudSSO sign-in the HTTPS server accepts at [`signin::CLOUD_SSO_PATH`].
    pub cloud_sso: Option<signin::CloudSso>,
    /// The OAuth access token the HTTPS server exchanges at [`signin::OAUTH_EXCHANGE_PATH`].
    pub oauth: Option<String>,
    /// An instance without IMDSv2: the token request is refused (404) and metadata is served
    /// without a token (IMDSv1). Default: tokens required (hardened mode).
    pub imds_v1_only: bool,
    /// `ExternalId` values the trust policy of a [`EmulatorConfig::ram_role`] requires.
    pub ram_role_external_ids: Vec<(String, String)>,
    /// Roles whose `MaxSessionDuration` is raised above RAM's default of 3600 seconds
    /// ([`EmulatorConfig::max_session_duration`]).
    pub max_session_durations: Vec<(String, u64)>,
    /// KMS instance ids `CreateKey` accepts as `DKMSInstanceId`.
    pub kms_instance_ids: Vec<String>,
    /// An account of KMS 3.0, whose default key store holds symmetric keys only: every
    /// asymmetric key lives in a KMS instance ([`EmulatorConfig::kms3_key_stores`]).
    pub kms3_key_stores: bool,
    /// Used in ARNs.
    pub region: String,
    /// Used in ARNs and as `Creator`.
    pub account_id: String,
    /// Seconds added to the server's clock (negative: server behind the client).
    pub clock_offset_secs: i64,
    /// Replaces the system clock as the base of the server's "now".
    pub now: Option<NowFn>,
    /// One line per request on stderr.
    pub log_requests: bool,
    /// Alias quota per region (Alibaba's default: 300).
    pub max_aliases: usize,
    /// Names added to the server certificate besides 127.0.0.1, ::1 and localhost.
    pub extra_tls_names: Vec<String>,
    /// How ListKeyVersions orders a key's versions (default: oldest first).
    pub version_order: VersionOrder,
    /// Added to every request before it is processed, to mimic a region's round trip.
    pub latency: Duration,
    /// How many requests [`Emulator::requests`] keeps, the newest (default 10 000), so load
    /// tests do not grow memory without bound.
    pub max_recorded_requests: usize,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            credentials: vec![Credential::access_key(
                DEFAULT_ACCESS_KEY_ID,
                DEFAULT_ACCESS_KEY_SECRET,
            )],
            kms_instance_ids: vec![DEFAULT_KMS_INSTANCE_ID.to_string()],
            kms3_key_stores: false,
            oidc_roles: Vec::new(),
            ecs_role: None,
            credentials_uri: false,
            cloud_sso: None,
            oauth: None,
            imds_v1_only: false,
            ram_role_external_ids: Vec::new(),
            max_session_durations: Vec::new(),
            ram_roles: Vec::new(),
            region: "cn-hangzhou".to_string(),
            account_id: "1234567890123456".to_string(),
            clock_offset_secs: 0,
            now: None,
            log_requests: false,
            max_aliases: 300,
            extra_tls_names: Vec::new(),
            version_order: VersionOrder::OldestFirst,
            latency: Duration::ZERO,
            max_recorded_requests: server::MAX_RECORDED,
        }
    }
}

impl EmulatorConfig {
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }

    /// Drops every configured credential (then add the ones a test wants).
    pub fn no_credentials(mut self) -> Self {
        self.credentials.clear();
        self
    }

    pub fn access_key(mut self, id: impl Into<String>, secret: impl Into<String>) -> Self {
        self.credentials.push(Credential::access_key(id, secret));
        self
    }

    /// STS credentials: requests must send `token` in a signed `x-acs-security-token`.
    pub fn sts_credential(
        mut self,
        id: impl Into<String>,
        secret: impl Into<String>,
        token: impl Into<String>,
        expiration: SystemTime,
    ) -> Self {
        self.credentials
            .push(Credential::sts(id, secret, token, expiration));
        self
    }

    /// A role STS `AssumeRoleWithOIDC` lets the holder of `token`, issued by `provider_arn`,
    /// assume; the credentials it returns work with KMS.
    pub fn oidc_role(
        mut self,
        role_arn: impl Into<String>,
        provider_arn: impl Into<String>,
        token: impl Into<String>,
    ) -> Self {
        self.oidc_roles.push(OidcRole {
            role_arn: role_arn.into(),
            provider_arn: provider_arn.into(),
            token: token.into(),
            token_expires: None,
        });
        self
    }

    /// As [`EmulatorConfig::oidc_role`], with a token that expires at `expires` (in the past:
    /// `AuthenticationFail.OIDCToken.Expired`).
    pub fn oidc_role_expiring(
        mut self,
        role_arn: impl Into<String>,
        provider_arn: impl Into<String>,
        token: impl Into<String>,
        expires: SystemTime,
    ) -> Self {
        self.oidc_roles.push(OidcRole {
            role_arn: role_arn.into(),
            provider_arn: provider_arn.into(),
            token: token.into(),
            token_expires: Some(expires),
        });
        self
    }

    /// A role STS `AssumeRole` (ACS3-signed by any AccessKey the emulator knows) may assume;
    /// the credentials it returns work with KMS.
    pub fn ram_role(mut self, role_arn: impl Into<String>) -> Self {
        self.ram_roles.push(role_arn.into());
        self
    }

    /// As [`EmulatorConfig::ram_role`], for a role whose trust policy requires `external_id`:
    /// `AssumeRole` without exactly that `ExternalId` is refused (403 `NoPermission`).
    pub fn ram_role_with_external_id(
        mut self,
        role_arn: impl Into<String>,
        external_id: impl Into<String>,
    ) -> Self {
        let role_arn = role_arn.into();
        self.ram_roles.push(role_arn.clone());
        self.ram_role_external_ids
            .push((role_arn, external_id.into()));
        self
    }

    /// Raises the `MaxSessionDuration` of `role_arn` (an OIDC or a RAM role) from RAM's default
    /// of 3600 seconds (RAM allows 3600 to 43200): STS then issues sessions up to that long.
    pub fn max_session_duration(mut self, role_arn: impl Into<String>, seconds: u64) -> Self {
        self.max_session_durations.push((role_arn.into(), seconds));
        self
    }

    /// The metadata service of an instance without IMDSv2 ([`EmulatorConfig::imds_v1_only`]).
    pub fn imds_v1_only(mut self) -> Self {
        self.imds_v1_only = true;
        self
    }

    /// Serves an `ALIBABA_CLOUD_CREDENTIALS_URI` endpoint ([`Emulator::credentials_uri`]).
    pub fn credentials_uri(mut self) -> Self {
        self.credentials_uri = true;
        self
    }

    /// Serves CloudSSO's `POST /cloud-credentials` on the HTTPS server ([`signin`],
    /// [`Emulator::sign_in_url`]): the holder of `access_token` gets temporary credentials for
    /// access configuration `access_config` of account `account_id`, which KMS accepts.
    pub fn cloud_sso(
        mut self,
        access_token: impl Into<String>,
        account_id: impl Into<String>,
        access_config: impl Into<String>,
    ) -> Self {
        self.cloud_sso = Some(signin::CloudSso {
            access_token: access_token.into(),
            account_id: account_id.into(),
            access_config: access_config.into(),
        });
        self
    }

    /// Serves the OAuth exchange `POST /v1/exchange` on the HTTPS server ([`signin`],
    /// [`Emulator::oauth_endpoint`]): the holder of `access_token` gets temporary credentials
    /// that KMS accepts.
    pub fn oauth(mut self, access_token: impl Into<String>) -> Self {
        self.oauth = Some(access_token.into());
        self
    }

    /// Attaches RAM role `name` to the emulated ECS instance: its metadata service
    /// ([`Emulator::imds_endpoint`]) then hands out STS credentials that KMS accepts.
    pub fn ecs_role(mut self, name: impl Into<String>) -> Self {
        self.ecs_role = Some(name.into());
        self
    }

    /// KMS 3.0's key stores: the default key store holds only `Aliyun_AES_256` keys ("Key
    /// types and specifications", alibabacloud.com/help/en/kms/key-management-service/
    /// user-guide/key-types-and-specifications), so `CreateKey` of an asymmetric spec needs a
    /// `DKMSInstanceId`. The docs do not say what the service answers without one; the
    /// emulator answers as it does for RSA_4096 outside an instance (400 `InvalidParameter`).
    pub fn kms3_key_stores(mut self) -> Self {
        self.kms3_key_stores = true;
        self
    }

    pub fn kms_instance(mut self, id: impl Into<String>) -> Self {
        self.kms_instance_ids.push(id.into());
        self
    }

    pub fn clock_offset_secs(mut self, secs: i64) -> Self {
        self.clock_offset_secs = secs;
        self
    }

    pub fn now_fn(mut self, now: NowFn) -> Self {
        self.now = Some(now);
        self
    }

    pub fn log_requests(mut self, on: bool) -> Self {
        self.log_requests = on;
        self
    }

    pub fn version_order(mut self, order: VersionOrder) -> Self {
        self.version_order = order;
        self
    }

    pub fn latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    pub fn max_recorded_requests(mut self, n: usize) -> Self {
        self.max_recorded_requests = n;
        self
    }
}
