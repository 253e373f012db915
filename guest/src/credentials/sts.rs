//! STS 2015-04-01 over the RPC client: `AssumeRole` (signed with the credentials that assume
//! the role) and `AssumeRoleWithOIDC` (anonymous: the OIDC token is the proof), with the
//! endpoint, session name and session length the official SDKs choose, and the hints a
//! refused assumption deserves.

use super::{var, Context, Credentials, CredentialsError, EnvLookup};
use crate::rpc::{self, Api, Call};
use std::time::SystemTime;

pub const API: Api = Api {
    product: "STS",
    version: "2015-04-01",
    log_prefix: "STS ",
    endpoint_hint: "Check ALIBABA_CLOUD_STS_ENDPOINT (or ALIBABA_CLOUD_STS_REGION).",
};

/// How long an STS session lasts unless configured: as in the official SDKs.
const DEFAULT_DURATION_SECONDS: u32 = 3600;
/// STS sessions last from 900 seconds up to the role's `MaxSessionDuration`, which RAM
/// allows up to 43200 (12 hours); roles are created with 3600.
const DURATION_RANGE: std::ops::RangeInclusive<i64> = 900..=43200;
const DURATION_VARS: [&str; 2] = [
    "ALIBABA_CLOUD_ROLE_SESSION_EXPIRATION",
    "ALICLOUD_ROLE_SESSION_EXPIRATION",
];

/// `DurationSeconds` of a role assumption: `from_profile` (an Aliyun CLI profile's
/// `expired_seconds`, with the words that name it) when given, else
/// `ALIBABA_CLOUD_ROLE_SESSION_EXPIRATION`, else `ALICLOUD_ROLE_SESSION_EXPIRATION`, else
/// 3600. A value outside 900..=43200 seconds is an error naming where it came from, before
/// anything is sent.
pub fn duration_seconds(
    env: EnvLookup<'_>,
    from_profile: Option<(i64, &str)>,
) -> Result<u32, CredentialsError> {
    let (seconds, what) = match from_profile {
        Some((seconds, what)) => (seconds, what.to_string()),
        None => {
            let Some((name, value)) = DURATION_VARS
                .iter()
                .find_map(|name| var(env, name).map(|v| (*name, v)))
            else {
                return Ok(DEFAULT_DURATION_SECONDS);
            };
            let seconds = value.parse::<i64>().map_err(|_| {
                CredentialsError::Config(format!(
                    "{name}={value} is not a whole number of seconds; STS sessions last {} to \
                     {} seconds",
                    DURATION_RANGE.start(),
                    DURATION_RANGE.end()
                ))
            })?;
            (seconds, name.to_string())
        }
    };
    if !DURATION_RANGE.contains(&seconds) {
        return Err(CredentialsError::Config(format!(
            "{what} is {seconds} seconds; STS sessions last {} to {} seconds (and at most the \
             role's MaxSessionDuration, 3600 unless raised in RAM)",
            DURATION_RANGE.start(),
            DURATION_RANGE.end()
        )));
    }
    Ok(seconds as u32)
}

/// The STS host: what `ALIBABA_CLOUD_STS_ENDPOINT` names (the forms the host's allow-list
/// takes too: `alibabakms_contract::sts_endpoint`), else
/// `sts[-vpc].<ALIBABA_CLOUD_STS_REGION>.aliyuncs.com`, else `sts.aliyuncs.com`.
pub fn endpoint(env: EnvLookup<'_>) -> Result<String, CredentialsError> {
    endpoint_in(env, None)
}

/// As [`endpoint`], with the STS region of a profile (its `sts_region`), which comes after
/// `ALIBABA_CLOUD_STS_ENDPOINT` and before `ALIBABA_CLOUD_STS_REGION`.
pub fn endpoint_in(env: EnvLookup<'_>, region: Option<&str>) -> Result<String, CredentialsError> {
    if let Some(e) = var(env, alibabakms_contract::vars::STS_ENDPOINT) {
        return alibabakms_contract::sts_endpoint(&e).map_err(CredentialsError::Config);
    }
    let region = region
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(str::to_string)
        .or_else(|| var(env, "ALIBABA_CLOUD_STS_REGION"));
    match region {
        Some(region) => {
            let vpc = var(env, "ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED")
                .is_some_and(|v| v.eq_ignore_ascii_case("true"));
            Ok(format!(
                "sts{}.{region}.aliyuncs.com",
                if vpc { "-vpc" } else { "" }
            ))
        }
        None => Ok("sts.aliyuncs.com".into()),
    }
}

/// `ALIBABA_CLOUD_ROLE_SESSION_NAME`, else `ALICLOUD_ROLE_SESSION_NAME`, else
/// `sigstore-kms-alibabakms-<unix seconds>`.
pub fn session_name(env: EnvLookup<'_>, now: SystemTime) -> String {
    var(env, "ALIBABA_CLOUD_ROLE_SESSION_NAME")
        .or_else(|| var(env, "ALICLOUD_ROLE_SESSION_NAME"))
        .unwrap_or_else(|| {
            let secs = now
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            format!("sigstore-kms-alibabakms-{secs}")
        })
}

/// One `AssumeRoleWithOIDC` call: the OIDC token (already read) for the role's credentials.
pub struct OidcExchange<'a> {
    /// The STS `host[:port]`.
    pub host: &'a str,
    pub role_arn: &'a str,
    pub provider_arn: &'a str,
    pub token: &'a str,
    pub session: &'a str,
    /// `DurationSeconds` (see [`duration_seconds`]).
    pub duration: u32,
    /// Names the source in errors and in the credentials' `source`.
    pub source: &'a str,
    /// Where the token came from, for the hint of a refused token (a variable or a file).
    pub token_origin: &'a str,
}

/// STS `AssumeRoleWithOIDC`, anonymous: the token is the proof. The token travels in the
/// form body, never in the URL, and never appears in an error.
pub fn assume_role_with_oidc(
    cx: &Context<'_>,
    x: &OidcExchange<'_>,
) -> Result<Credentials, CredentialsError> {
    let call = Call::form(
        "AssumeRoleWithOIDC",
        vec![
            ("DurationSeconds", x.duration.to_string()),
            ("OIDCProviderArn", x.provider_arn.to_string()),
            ("OIDCToken", x.token.to_string()),
            ("RoleArn", x.role_arn.to_string()),
            ("RoleSessionName", x.session.to_string()),
        ],
    );
    let client =
        rpc::Client::new(&API, cx.transport, x.host, cx.deadline.clone()).with_clock(cx.clock);
    answer(x.source, call.action, client.call(call), x.token_origin)
}

/// What a role assumption may add to the role ARN (all optional).
#[derive(Default)]
pub struct AssumeOptions<'a> {
    /// `RoleSessionName`; default [`session_name`].
    pub session: Option<&'a str>,
    /// The STS region of a profile (see [`endpoint_in`]).
    pub region: Option<&'a str>,
    /// `Policy`: a JSON policy that narrows the role's permissions for this session.
    pub policy: Option<&'a str>,
    /// `ExternalId`: the value the role's trust policy requires (confused-deputy guard).
    pub external_id: Option<&'a str>,
    /// `DurationSeconds`, already checked; default [`duration_seconds`] of the environment.
    pub duration: Option<u32>,
}

/// STS `AssumeRole` signed (ACS3) by `with`, for `role_arn`. `source` names where the role
/// and the signing key came from.
pub fn assume_role(
    cx: &Context<'_>,
    with: &Credentials,
    role_arn: &str,
    options: &AssumeOptions<'_>,
) -> Result<Credentials, CredentialsError> {
    let env = cx.env;
    let host = endpoint_in(env, options.region)?;
    let source = format!("role {role_arn} via {host}, assumed with {}", with.source);
    let session = options
        .session
        .map(str::to_string)
        .unwrap_or_else(|| session_name(env, cx.clock.now()));
    let duration = match options.duration {
        Some(d) => d,
        None => duration_seconds(env, None)?,
    };
    let mut params = vec![
        ("DurationSeconds", duration.to_string()),
        ("RoleArn", role_arn.to_string()),
        ("RoleSessionName", session),
    ];
    if let Some(policy) = options.policy.filter(|p| !p.trim().is_empty()) {
        params.push(("Policy", policy.trim().to_string()));
    }
    if let Some(id) = options.external_id.filter(|p| !p.trim().is_empty()) {
        params.push(("ExternalId", id.trim().to_string()));
    }
    let client = rpc::Client::new(&API, cx.transport, &host, cx.deadline.clone())
        .with_clock(cx.clock)
        .signed(with.clone());
    let call = Call::new("AssumeRole", params);
    answer(&source, call.action, client.call(call), "")
}

/// The credentials of an STS answer, or a clear message with a hint for the codes a user
/// can act on. Never includes a request parameter.
fn answer(
    source: &str,
    action: &str,
    outcome: Result<serde_json::Value, rpc::Error>,
    token_origin: &str,
) -> Result<Credentials, CredentialsError> {
    let e = match outcome {
        Ok(json) => return credentials_from(source, &json),
        Err(e) => e,
    };
    let rpc::Error::Service(e) = e else {
        return Err(CredentialsError::Service(match &e {
            rpc::Error::Transport(_) | rpc::Error::Deadline { .. } => {
                format!("{source}: STS {action} got no answer: {e}")
            }
            _ => format!("{source}: {e}"),
        }));
    };
    let code = &e.code;
    let hint = if code.contains("OIDCToken.Expired") {
        format!(
            " The OIDC token in {token_origin} has expired; it is normally rotated by the \
             cluster (RRSA), check that the file is refreshed."
        )
    } else if code.contains("OIDCToken") {
        format!(
            " The OIDC token in {token_origin} was not accepted; check that it is the token \
             issued for the OIDC provider ARN."
        )
    } else if code.starts_with("NoPermission") || code.contains("Role") {
        " Check the role ARN and that the role's trust policy allows this identity.".into()
    } else {
        String::new()
    };
    Err(CredentialsError::Service(format!(
        "{source}: STS {} failed with HTTP {} {code}: {} (RequestId {}).{hint}",
        e.action, e.http_status, e.message, e.request_id
    )))
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StsCredentials {
    access_key_id: String,
    access_key_secret: String,
    security_token: String,
    expiration: String,
}

/// `Credentials.{AccessKeyId, AccessKeySecret, SecurityToken, Expiration}` of an STS answer.
fn credentials_from(
    source: &str,
    json: &serde_json::Value,
) -> Result<Credentials, CredentialsError> {
    let bad = |why: &str| CredentialsError::Service(format!("{source}: STS answered {why}"));
    let c = json
        .get("Credentials")
        .ok_or_else(|| bad("without Credentials"))?;
    let c: StsCredentials = serde_json::from_value(c.clone())
        .map_err(|_| bad("with incomplete Credentials (expected AccessKeyId, AccessKeySecret, SecurityToken, Expiration)"))?;
    if c.access_key_id.is_empty() || c.access_key_secret.is_empty() || c.security_token.is_empty() {
        return Err(bad("with empty Credentials"));
    }
    if crate::rfc3339::parse_rfc3339(&c.expiration).is_none() {
        return Err(bad("with an Expiration that is not a UTC time"));
    }
    Ok(Credentials {
        access_key_id: c.access_key_id,
        access_key_secret: c.access_key_secret,
        security_token: Some(c.security_token),
        source: source.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::super::testing::env_off_ecs as env;
    use super::super::testing::resolve;
    use super::*;
    use crate::transport::mock::{json, MockTransport};
    use crate::transport::TransportError;
    use std::collections::HashMap;

    const ROLE: &str = "acs:ram::123:role/signer";
    const PROVIDER: &str = "acs:ram::123:oidc-provider/ack";

    fn ok_answer() -> Result<crate::transport::HttpResponse, TransportError> {
        json(
            200,
            serde_json::json!({"RequestId": "R", "Credentials": {
                "AccessKeyId": "STS.id", "AccessKeySecret": "sts-secret",
                "SecurityToken": "sts-token", "Expiration": "2030-01-01T00:00:00Z"}}),
        )
    }

    fn form_params(body: &[u8]) -> HashMap<String, String> {
        String::from_utf8(body.to_vec())
            .unwrap()
            .split('&')
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap();
                (k.to_string(), v.replace("%3A", ":").replace("%2F", "/"))
            })
            .collect()
    }

    #[test]
    fn exchanges_the_token_anonymously_and_names_the_role() {
        let path = super::super::testing::temp_file("token", "jwt.header.sig\n");
        let e = env(&[
            ("ALIBABA_CLOUD_ROLE_ARN", ROLE),
            ("ALIBABA_CLOUD_OIDC_PROVIDER_ARN", PROVIDER),
            ("ALIBABA_CLOUD_OIDC_TOKEN_FILE", &path),
            ("ALIBABA_CLOUD_STS_ENDPOINT", "https://127.0.0.1:9443/"),
            ("ALIBABA_CLOUD_ROLE_SESSION_NAME", "ci-run"),
        ]);
        let t = MockTransport::new(|_| ok_answer());
        let c = resolve(&e, &t).unwrap();
        assert_eq!(
            (c.access_key_id.as_str(), c.security_token.as_deref()),
            ("STS.id", Some("sts-token"))
        );
        assert_eq!(
            c.source,
            "RRSA/OIDC role acs:ram::123:role/signer via 127.0.0.1:9443"
        );
        let sent = t.sent.borrow();
        let r = &sent[0];
        assert_eq!(r.authority, "127.0.0.1:9443");
        assert!(!r.headers.iter().any(|(n, _)| n == "authorization"));
        assert!(r
            .headers
            .contains(&("x-acs-action".into(), "AssumeRoleWithOIDC".into())));
        let p = form_params(&r.body);
        assert_eq!(p["OIDCToken"], "jwt.header.sig");
        assert_eq!(p["RoleArn"], ROLE);
        assert_eq!(p["OIDCProviderArn"], PROVIDER);
        assert_eq!(p["RoleSessionName"], "ci-run");
        assert!(
            !r.path_and_query.contains("jwt"),
            "the token is not in the URL"
        );
    }

    #[test]
    fn environment_keys_with_a_role_arn_assume_the_role_signed_with_acs3() {
        let e = env(&[
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAIsource"),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "source-secret"),
            ("ALIBABA_CLOUD_ROLE_ARN", ROLE),
            ("ALIBABA_CLOUD_STS_ENDPOINT", "127.0.0.1:9443"),
        ]);
        let t = MockTransport::new(|_| ok_answer());
        let c = resolve(&e, &t).unwrap();
        assert_eq!(c.access_key_id, "STS.id");
        assert!(
            c.source.starts_with(
                "role acs:ram::123:role/signer via 127.0.0.1:9443, assumed with environment"
            ),
            "{}",
            c.source
        );
        let sent = t.sent.borrow();
        let auth = &sent[0]
            .headers
            .iter()
            .find(|(n, _)| n == "authorization")
            .unwrap()
            .1;
        assert!(
            auth.starts_with("ACS3-HMAC-SHA256 Credential=LTAIsource,"),
            "{auth}"
        );
        assert!(sent[0]
            .path_and_query
            .contains("RoleArn=acs%3Aram%3A%3A123%3Arole%2Fsigner"));
        drop(sent);
        assert_eq!(t.actions(), ["AssumeRole"]);

        let t = MockTransport::new(|_| {
            json(
                403,
                serde_json::json!({"RequestId": "R2", "Code": "NoPermission",
                    "Message": "You are not authorized to do this action."}),
            )
        });
        let err = resolve(&e, &t).unwrap_err().to_string();
        assert!(
            err.contains("NoPermission") && err.contains("trust policy"),
            "{err}"
        );
        assert!(!err.contains("source-secret"), "{err}");
    }

    #[test]
    fn a_cli_ram_role_arn_profile_and_an_ini_ram_role_arn_section_assume_their_role() {
        let cli = super::super::testing::temp_file(
            "token",
            r#"{"current":"r","profiles":[{"name":"r","mode":"RamRoleArn","access_key_id":"LTAIcli","access_key_secret":"cs","ram_role_arn":"acs:ram::123:role/cli","ram_session_name":"cli-session"}]}"#,
        );
        let t = MockTransport::new(|_| ok_answer());
        let c = resolve(&env(&[("ALIBABA_CLOUD_CONFIG_FILE", &cli)]), &t).unwrap();
        assert!(
            c.source.starts_with(
                "role acs:ram::123:role/cli via sts.aliyuncs.com, assumed with Aliyun CLI profile"
            ),
            "{}",
            c.source
        );
        assert!(t.sent.borrow()[0]
            .path_and_query
            .contains("RoleSessionName=cli-session"));

        let ini = super::super::testing::temp_file("token", "[default]\ntype = ram_role_arn\naccess_key_id = LTAIini\naccess_key_secret = is\nrole_arn = acs:ram::123:role/ini\n");
        let t = MockTransport::new(|_| ok_answer());
        let c = resolve(&env(&[("ALIBABA_CLOUD_CREDENTIALS_FILE", &ini)]), &t).unwrap();
        assert!(
            c.source.starts_with("role acs:ram::123:role/ini via"),
            "{}",
            c.source
        );
        let auth = t.sent.borrow()[0]
            .headers
            .iter()
            .find(|(n, _)| n == "authorization")
            .unwrap()
            .1
            .clone();
        assert!(auth.contains("Credential=LTAIini,"), "{auth}");
    }

    #[test]
    fn the_session_length_comes_from_the_profile_then_the_environment() {
        let d = |pairs: &[(&str, &str)], p: Option<(i64, &str)>| duration_seconds(&env(pairs), p);
        assert_eq!(d(&[], None), Ok(3600));
        assert_eq!(
            d(&[("ALIBABA_CLOUD_ROLE_SESSION_EXPIRATION", " 900 ")], None),
            Ok(900)
        );
        assert_eq!(
            d(&[("ALICLOUD_ROLE_SESSION_EXPIRATION", "43200")], None),
            Ok(43200)
        );
        assert_eq!(
            d(
                &[
                    ("ALIBABA_CLOUD_ROLE_SESSION_EXPIRATION", "1800"),
                    ("ALICLOUD_ROLE_SESSION_EXPIRATION", "x")
                ],
                None
            ),
            Ok(1800)
        );
        assert_eq!(
            d(
                &[("ALIBABA_CLOUD_ROLE_SESSION_EXPIRATION", "1800")],
                Some((7200, "p"))
            ),
            Ok(7200),
            "the profile wins"
        );
        for (pairs, profile, says) in [
            (
                vec![("ALIBABA_CLOUD_ROLE_SESSION_EXPIRATION", "899")],
                None,
                "ALIBABA_CLOUD_ROLE_SESSION_EXPIRATION is 899 seconds; STS sessions last 900 to 43200 seconds",
            ),
            (
                vec![("ALICLOUD_ROLE_SESSION_EXPIRATION", "1h")],
                None,
                "ALICLOUD_ROLE_SESSION_EXPIRATION=1h is not a whole number of seconds",
            ),
            (vec![], Some((43201, "expired_seconds of profile \"p\"")), "expired_seconds of profile \"p\" is 43201 seconds"),
            (vec![], Some((-5, "x")), "x is -5 seconds"),
        ] {
            let e = d(&pairs, profile).unwrap_err().to_string();
            assert!(e.contains(says), "{e}");
            assert!(e.contains("MaxSessionDuration") || e.contains("whole number"), "{e}");
        }

        // On the wire: a CLI RamRoleArn profile's expired_seconds, the environment's value for
        // RRSA, and no request at all when the value is out of range.
        let cli = super::super::testing::temp_file(
            "config.json",
            r#"{"current":"r","profiles":[
            {"name":"r","mode":"RamRoleArn","access_key_id":"LTAIcli","access_key_secret":"cs","ram_role_arn":"acs:ram::123:role/cli","expired_seconds":7200},
            {"name":"zero","mode":"RamRoleArn","access_key_id":"LTAIcli","access_key_secret":"cs","ram_role_arn":"acs:ram::123:role/cli","expired_seconds":0},
            {"name":"short","mode":"ChainableRamRoleArn","source_profile":"r","ram_role_arn":"acs:ram::123:role/c","expired_seconds":60},
            {"name":"text","mode":"RamRoleArn","access_key_id":"LTAIcli","access_key_secret":"cs","ram_role_arn":"acs:ram::123:role/cli","expired_seconds":"3600"}]}"#,
        );
        let sent_duration = |pairs: &[(&str, &str)]| {
            let t = MockTransport::new(|_| ok_answer());
            let r = resolve(&env(pairs), &t);
            let sent = t.sent.borrow();
            let q = sent.first().map(|r| {
                let mut q = r.path_and_query.clone();
                q.push('&');
                q.push_str(&String::from_utf8_lossy(&r.body));
                q
            });
            (r.map_err(|e| e.to_string()), q)
        };
        let (r, q) = sent_duration(&[("ALIBABA_CLOUD_CONFIG_FILE", &cli)]);
        assert!(r.is_ok() && q.unwrap().contains("DurationSeconds=7200"));
        let (_, q) = sent_duration(&[
            ("ALIBABA_CLOUD_CONFIG_FILE", &cli),
            ("ALIBABA_CLOUD_PROFILE", "zero"),
            ("ALIBABA_CLOUD_ROLE_SESSION_EXPIRATION", "2400"),
        ]);
        assert!(q.unwrap().contains("DurationSeconds=2400"), "0 means unset");
        for (profile, says) in [
            ("short", "expired_seconds of profile \"short\" in"),
            ("text", "expired_seconds of profile \"text\" in"),
        ] {
            let (r, q) = sent_duration(&[
                ("ALIBABA_CLOUD_CONFIG_FILE", &cli),
                ("ALIBABA_CLOUD_PROFILE", profile),
            ]);
            assert!(r.unwrap_err().contains(says));
            assert!(q.is_none(), "nothing is sent: {q:?}");
        }
        let token = super::super::testing::temp_file("token", "jwt");
        let (_, q) = sent_duration(&[
            ("ALIBABA_CLOUD_ROLE_ARN", ROLE),
            ("ALIBABA_CLOUD_OIDC_PROVIDER_ARN", PROVIDER),
            ("ALIBABA_CLOUD_OIDC_TOKEN_FILE", &token),
            ("ALIBABA_CLOUD_ROLE_SESSION_EXPIRATION", "5400"),
        ]);
        assert!(q.unwrap().contains("DurationSeconds=5400"));
    }

    #[test]
    fn chainable_profiles_assume_each_role_in_turn_and_loops_are_refused() {
        let cli = super::super::testing::temp_file(
            "token",
            r#"{"current":"c2","profiles":[
            {"name":"base","mode":"AK","access_key_id":"LTAIbase","access_key_secret":"bs"},
            {"name":"c1","mode":"ChainableRamRoleArn","source_profile":"base","ram_role_arn":"acs:ram::1:role/one"},
            {"name":"c2","mode":"ChainableRamRoleArn","source_profile":"c1","ram_role_arn":"acs:ram::1:role/two"},
            {"name":"x","mode":"ChainableRamRoleArn","source_profile":"y","ram_role_arn":"acs:ram::1:role/x"},
            {"name":"y","mode":"ChainableRamRoleArn","source_profile":"x","ram_role_arn":"acs:ram::1:role/y"}]}"#,
        );
        let t = MockTransport::new(|_| ok_answer());
        let c = resolve(&env(&[("ALIBABA_CLOUD_CONFIG_FILE", &cli)]), &t).unwrap();
        assert!(
            c.source.starts_with("role acs:ram::1:role/two"),
            "{}",
            c.source
        );
        let sent = t.sent.borrow();
        assert_eq!(sent.len(), 2);
        assert!(sent[0].path_and_query.contains("role%2Fone"));
        assert!(sent[1].path_and_query.contains("role%2Ftwo"));
        let auth = |i: usize| {
            sent[i]
                .headers
                .iter()
                .find(|(n, _)| n == "authorization")
                .unwrap()
                .1
                .clone()
        };
        assert!(auth(0).contains("Credential=LTAIbase,"));
        assert!(
            auth(1).contains("Credential=STS.id,"),
            "signed by the first role's key"
        );
        drop(sent);

        let t = MockTransport::new(|_| ok_answer());
        let e = resolve(
            &env(&[
                ("ALIBABA_CLOUD_CONFIG_FILE", &cli),
                ("ALIBABA_CLOUD_PROFILE", "x"),
            ]),
            &t,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("chain in a loop: x -> y -> x"), "{e}");
        assert!(t.sent.borrow().is_empty());
    }

    #[test]
    fn transient_sts_failures_are_retried_with_a_fresh_nonce() {
        let path = super::super::testing::temp_file("token", "jwt-token");
        let e = env(&[
            ("ALIBABA_CLOUD_ROLE_ARN", ROLE),
            ("ALIBABA_CLOUD_OIDC_PROVIDER_ARN", PROVIDER),
            ("ALIBABA_CLOUD_OIDC_TOKEN_FILE", &path),
        ]);
        let calls = std::cell::Cell::new(0);
        let t = MockTransport::new(move |_| {
            calls.set(calls.get() + 1);
            if calls.get() == 1 {
                json(
                    503,
                    serde_json::json!({"Code": "ServiceUnavailable", "Message": "busy"}),
                )
            } else {
                ok_answer()
            }
        });
        assert_eq!(resolve(&e, &t).unwrap().access_key_id, "STS.id");
        let sent = t.sent.borrow();
        assert_eq!(sent.len(), 2);
        let nonce = |i: usize| {
            sent[i]
                .headers
                .iter()
                .find(|(n, _)| n == "x-acs-signature-nonce")
                .unwrap()
                .1
                .clone()
        };
        assert_ne!(nonce(0), nonce(1));
        drop(sent);
        // Client errors are final.
        let t = MockTransport::new(|_| {
            json(
                400,
                serde_json::json!({"Code": "InvalidParameter.OIDCToken", "Message": "bad"}),
            )
        });
        assert!(resolve(&e, &t).is_err());
        assert_eq!(t.sent.borrow().len(), 1);
    }

    #[test]
    fn endpoints_and_session_names() {
        assert_eq!(endpoint(&env(&[])).unwrap(), "sts.aliyuncs.com");
        assert_eq!(
            endpoint(&env(&[("ALIBABA_CLOUD_STS_REGION", "cn-beijing")])).unwrap(),
            "sts.cn-beijing.aliyuncs.com"
        );
        assert_eq!(
            endpoint(&env(&[
                ("ALIBABA_CLOUD_STS_REGION", "cn-beijing"),
                ("ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED", "true")
            ]))
            .unwrap(),
            "sts-vpc.cn-beijing.aliyuncs.com"
        );
        // The forms the host's allow-list takes, and only those.
        let e = endpoint(&env(&[(
            "ALIBABA_CLOUD_STS_ENDPOINT",
            "http://127.0.0.1:9443",
        )]));
        assert!(e
            .unwrap_err()
            .to_string()
            .contains("ALIBABA_CLOUD_STS_ENDPOINT=http://127.0.0.1:9443"));
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(42);
        assert_eq!(session_name(&env(&[]), t), "sigstore-kms-alibabakms-42");
        assert_eq!(
            session_name(&env(&[("ALICLOUD_ROLE_SESSION_NAME", "legacy")]), t),
            "legacy"
        );
    }

    #[test]
    fn static_keys_in_the_environment_come_first_and_assume_the_role() {
        let path = super::super::testing::temp_file("token", "jwt");
        let e = env(&[
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", "id"),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "s"),
            ("ALIBABA_CLOUD_ROLE_ARN", ROLE),
            ("ALIBABA_CLOUD_OIDC_PROVIDER_ARN", PROVIDER),
            ("ALIBABA_CLOUD_OIDC_TOKEN_FILE", &path),
        ]);
        let t = MockTransport::new(|_| ok_answer());
        let c = resolve(&e, &t).unwrap();
        assert!(
            c.source.contains("assumed with environment"),
            "{}",
            c.source
        );
        assert_eq!(t.actions(), ["AssumeRole"], "not AssumeRoleWithOIDC");
        // Without the role ARN the keys are used as they are.
        let e = env(&[
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", "id"),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "s"),
        ]);
        let t = MockTransport::new(|_| ok_answer());
        assert_eq!(resolve(&e, &t).unwrap().access_key_id, "id");
        assert!(t.sent.borrow().is_empty());
    }

    #[test]
    fn sts_errors_are_clear_and_never_echo_the_token() {
        let path = super::super::testing::temp_file("token", "secret-jwt-value");
        let e = env(&[
            ("ALIBABA_CLOUD_ROLE_ARN", ROLE),
            ("ALIBABA_CLOUD_OIDC_PROVIDER_ARN", PROVIDER),
            ("ALIBABA_CLOUD_OIDC_TOKEN_FILE", &path),
        ]);
        let t = MockTransport::new(|_| {
            json(
                400,
                serde_json::json!({"RequestId": "R1", "Code": "AuthenticationFail.OIDCToken.Expired",
                    "Message": "Specified OIDC token has expired."}),
            )
        });
        let err = resolve(&e, &t).unwrap_err().to_string();
        assert!(
            err.contains("AuthenticationFail.OIDCToken.Expired")
                && err.contains("R1")
                && err.contains("has expired"),
            "{err}"
        );
        assert!(!err.contains("secret-jwt-value"), "{err}");

        let t = MockTransport::new(|r| {
            Err(TransportError::Connect {
                authority: r.authority.clone(),
                detail: "connection refused".into(),
            })
        });
        let err = resolve(&e, &t).unwrap_err().to_string();
        assert!(
            err.contains("sts.aliyuncs.com") && err.contains("no answer"),
            "{err}"
        );

        let t = MockTransport::new(|_| json(200, serde_json::json!({"Credentials": {}})));
        let err = resolve(&e, &t).unwrap_err().to_string();
        assert!(err.contains("incomplete Credentials"), "{err}");
    }

    #[test]
    fn a_missing_or_empty_token_file_is_a_clear_error() {
        let e = env(&[
            ("ALIBABA_CLOUD_ROLE_ARN", ROLE),
            ("ALIBABA_CLOUD_OIDC_PROVIDER_ARN", PROVIDER),
            ("ALIBABA_CLOUD_OIDC_TOKEN_FILE", "/nonexistent/token"),
        ]);
        let t = MockTransport::new(|_| ok_answer());
        let err = resolve(&e, &t).unwrap_err().to_string();
        assert!(
            err.contains("cannot read ALIBABA_CLOUD_OIDC_TOKEN_FILE=/nonexistent/token"),
            "{err}"
        );
        let empty = super::super::testing::temp_file("token", "  \n");
        let e = env(&[
            ("ALIBABA_CLOUD_ROLE_ARN", ROLE),
            ("ALIBABA_CLOUD_OIDC_PROVIDER_ARN", PROVIDER),
            ("ALIBABA_CLOUD_OIDC_TOKEN_FILE", &empty),
        ]);
        assert!(resolve(&e, &t)
            .unwrap_err()
            .to_string()
            .contains("is empty"));
        assert!(t.sent.borrow().is_empty());
    }

    #[test]
    fn a_cli_oidc_profile_exchanges_its_token_file_and_can_source_a_chain() {
        let token = super::super::testing::temp_file("token", "profile.jwt.sig\n");
        let cli = super::super::testing::temp_file(
            "config.json",
            &format!(
                r#"{{"current":"o","profiles":[
                {{"name":"o","mode":"OIDC","ram_role_arn":"{ROLE}","oidc_provider_arn":"{PROVIDER}","oidc_token_file":"{token}","ram_session_name":"oidc-session","sts_region":"cn-shanghai"}},
                {{"name":"c","mode":"ChainableRamRoleArn","source_profile":"o","ram_role_arn":"acs:ram::1:role/next","policy":"{{\"Version\":\"1\"}}","external_id":"ext-42"}},
                {{"name":"gone","mode":"OIDC","ram_role_arn":"{ROLE}","oidc_provider_arn":"{PROVIDER}","oidc_token_file":"/nonexistent/oidc/token"}},
                {{"name":"half","mode":"OIDC","ram_role_arn":"{ROLE}","oidc_token_file":"{token}"}}]}}"#
            ),
        );
        let t = MockTransport::new(|_| ok_answer());
        let c = resolve(&env(&[("ALIBABA_CLOUD_CONFIG_FILE", &cli)]), &t).unwrap();
        assert_eq!(c.security_token.as_deref(), Some("sts-token"));
        assert!(
            c.source.starts_with(&format!(
                "role {ROLE} via sts.cn-shanghai.aliyuncs.com, OIDC token of Aliyun CLI profile \"o\""
            )),
            "{}",
            c.source
        );
        let sent = t.sent.borrow();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].authority, "sts.cn-shanghai.aliyuncs.com");
        assert!(!sent[0].headers.iter().any(|(n, _)| n == "authorization"));
        let p = form_params(&sent[0].body);
        assert_eq!(p["OIDCToken"], "profile.jwt.sig");
        assert_eq!(p["RoleArn"], ROLE);
        assert_eq!(p["OIDCProviderArn"], PROVIDER);
        assert_eq!(p["RoleSessionName"], "oidc-session");
        drop(sent);

        // As the source of a chain: the OIDC credentials sign the AssumeRole, which carries
        // the profile's policy and external id; ALIBABA_CLOUD_STS_ENDPOINT wins over sts_region.
        let t = MockTransport::new(|_| ok_answer());
        let e = env(&[
            ("ALIBABA_CLOUD_CONFIG_FILE", &cli),
            ("ALIBABA_CLOUD_PROFILE", "c"),
            ("ALIBABA_CLOUD_STS_ENDPOINT", "127.0.0.1:9443"),
        ]);
        let c = resolve(&e, &t).unwrap();
        assert!(
            c.source.starts_with("role acs:ram::1:role/next"),
            "{}",
            c.source
        );
        assert_eq!(t.actions(), ["AssumeRoleWithOIDC", "AssumeRole"]);
        let sent = t.sent.borrow();
        assert!(sent.iter().all(|r| r.authority == "127.0.0.1:9443"));
        let q = &sent[1].path_and_query;
        assert!(q.contains("ExternalId=ext-42"), "{q}");
        assert!(q.contains("Policy=%7B%22Version%22%3A%221%22%7D"), "{q}");
        drop(sent);

        // A token file that cannot be read names the profile and the path; nothing is sent.
        let t = MockTransport::new(|_| ok_answer());
        let e = env(&[
            ("ALIBABA_CLOUD_CONFIG_FILE", &cli),
            ("ALIBABA_CLOUD_PROFILE", "gone"),
        ]);
        let err = resolve(&e, &t).unwrap_err().to_string();
        assert!(
            err.contains(
                "cannot read the oidc_token_file /nonexistent/oidc/token of profile \"gone\""
            ),
            "{err}"
        );
        let e = env(&[
            ("ALIBABA_CLOUD_CONFIG_FILE", &cli),
            ("ALIBABA_CLOUD_PROFILE", "half"),
        ]);
        let err = resolve(&e, &t).unwrap_err().to_string();
        assert!(err.contains("has no oidc_provider_arn"), "{err}");
        assert!(t.sent.borrow().is_empty());
    }

    #[test]
    fn an_ini_ram_role_arn_section_sends_its_policy() {
        let ini = super::super::testing::temp_file(
            "credentials",
            "[default]\ntype = ram_role_arn\naccess_key_id = LTAIini\naccess_key_secret = is\nrole_arn = acs:ram::123:role/ini\npolicy = {\"Version\":\"1\"}\n",
        );
        let t = MockTransport::new(|_| ok_answer());
        resolve(&env(&[("ALIBABA_CLOUD_CREDENTIALS_FILE", &ini)]), &t).unwrap();
        let q = t.sent.borrow()[0].path_and_query.clone();
        assert!(q.contains("Policy=%7B%22Version%22%3A%221%22%7D"), "{q}");
        assert!(!q.contains("ExternalId"), "{q}");
    }
}
