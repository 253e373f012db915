//! ECS instance RAM role: temporary credentials from the instance metadata service over plain
//! HTTP (reference §4.5), with the IMDSv2 session token. Short timeouts: off ECS nothing
//! answers at the metadata address, and the chain must fail fast there.

use super::{var, Context, Credentials, CredentialsError, EnvLookup, Found};
use crate::transport::{HttpRequest, HttpResponse, Scheme, TransportError};
use std::time::Duration;

pub const DEFAULT_ENDPOINT: &str = "100.100.100.200";
/// For connecting and for the first byte of each answer (CRED-GO uses 1 s as well).
pub const TIMEOUT: Duration = Duration::from_secs(1);
const TOKEN_TTL_SECONDS: &str = "21600";
const CREDENTIALS_PATH: &str = "/latest/meta-data/ram/security-credentials/";

/// `ALIBABA_CLOUD_IMDS_ENDPOINT` (`http://` and a trailing `/` dropped), else 100.100.100.200.
pub fn endpoint(env: EnvLookup<'_>) -> String {
    match var(env, alibabakms_contract::vars::IMDS_ENDPOINT) {
        Some(e) => alibabakms_contract::imds_endpoint(&e),
        None => DEFAULT_ENDPOINT.to_string(),
    }
}

fn get(authority: &str, path: &str, token: Option<&str>) -> HttpRequest {
    let mut headers = vec![("accept".to_string(), "*/*".to_string())];
    if let Some(t) = token {
        headers.push(("x-aliyun-ecs-metadata-token".into(), t.to_string()));
    }
    HttpRequest {
        method: "GET",
        scheme: Scheme::Http,
        authority: authority.to_string(),
        path_and_query: path.to_string(),
        headers,
        body: Vec::new(),
        timeout: Some(TIMEOUT),
    }
}

pub fn ecs_ram_role(cx: &Context<'_>) -> Result<Found, CredentialsError> {
    let env = cx.env;
    if var(env, "ALIBABA_CLOUD_ECS_METADATA_DISABLED")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    {
        return Ok(Found::Skipped(
            "disabled by ALIBABA_CLOUD_ECS_METADATA_DISABLED".into(),
        ));
    }
    fetch(cx, var(env, "ALIBABA_CLOUD_ECS_METADATA"))
}

/// The credentials of `role` (discovered when `None`) from the metadata service.
pub fn fetch(cx: &Context<'_>, role: Option<String>) -> Result<Found, CredentialsError> {
    let env = cx.env;
    let host = endpoint(env);
    let unreachable = |e: TransportError| {
        CredentialsError::Service(format!(
            "no ECS metadata service answered at http://{host} ({e}); outside ECS this is \
             expected (set ALIBABA_CLOUD_ECS_METADATA_DISABLED=true to skip it)"
        ))
    };
    let flag = |name: &str| var(env, name).is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let (v1_disabled, v2_disabled) = (
        flag("ALIBABA_CLOUD_IMDSV1_DISABLED"),
        flag("ALIBABA_CLOUD_IMDSV2_DISABLED"),
    );
    if v1_disabled && v2_disabled {
        return Err(CredentialsError::Config(
            "ALIBABA_CLOUD_IMDSV1_DISABLED and ALIBABA_CLOUD_IMDSV2_DISABLED are both true: no \
             way is left to ask the ECS metadata service"
                .into(),
        ));
    }
    // IMDSv2 session token (skipped with ALIBABA_CLOUD_IMDSV2_DISABLED, as the ACK chain
    // does). No answer at all: not on ECS, stop here. An HTTP error: the instance may not
    // offer tokens; go on without one (IMDSv1), as the official chain does, unless
    // ALIBABA_CLOUD_IMDSV1_DISABLED forbids it.
    let token = if v2_disabled {
        None
    } else {
        let token_response = cx
            .send_once(
                "metadata token",
                HttpRequest {
                    method: "PUT",
                    scheme: Scheme::Http,
                    authority: host.clone(),
                    path_and_query: "/latest/api/token".into(),
                    headers: vec![(
                        "x-aliyun-ecs-metadata-token-ttl-seconds".into(),
                        TOKEN_TTL_SECONDS.into(),
                    )],
                    body: Vec::new(),
                    timeout: Some(TIMEOUT),
                },
            )
            .map_err(unreachable)?;
        let token = (token_response.status == 200)
            .then(|| {
                String::from_utf8_lossy(&token_response.body)
                    .trim()
                    .to_string()
            })
            .filter(|t| !t.is_empty());
        if token.is_none() {
            if v1_disabled {
                return Err(CredentialsError::Service(format!(
                    "the ECS metadata service at http://{host} gave no IMDSv2 token (HTTP {}) \
                     and ALIBABA_CLOUD_IMDSV1_DISABLED=true forbids asking without one",
                    token_response.status
                )));
            }
            crate::diag::line(|| {
                format!(
                    "credentials: no IMDSv2 token from http://{host} (HTTP {}); asking without \
                     one (IMDSv1)",
                    token_response.status
                )
            });
        }
        token
    };
    let token = token.as_deref();

    let role = match role {
        Some(role) => role,
        None => {
            let r = cx
                .send_once("metadata role name", get(&host, CREDENTIALS_PATH, token))
                .map_err(unreachable)?;
            if r.status == 404 {
                return Ok(Found::Skipped(format!(
                    "the instance at http://{host} has no RAM role attached"
                )));
            }
            let body = ok_body(&host, "the RAM role name", &r)?;
            let name = body.lines().next().unwrap_or("").trim().to_string();
            if name.is_empty() {
                return Ok(Found::Skipped(format!(
                    "the instance at http://{host} has no RAM role attached"
                )));
            }
            name
        }
    };
    if !role
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        return Err(CredentialsError::Config(format!(
            "the ECS RAM role name {role:?} is not a valid role name"
        )));
    }
    let source = format!("ECS RAM role {role} via metadata http://{host}");
    let r = cx
        .send_once(
            "metadata credentials",
            get(&host, &format!("{CREDENTIALS_PATH}{role}"), token),
        )
        .map_err(unreachable)?;
    let body = ok_body(&host, &format!("credentials of role {role}"), &r)?;
    let json: serde_json::Value = serde_json::from_str(&body)
        .map_err(|_| CredentialsError::Service(format!("{source}: the answer is not JSON")))?;
    let field = |k: &str| json.get(k).and_then(|v| v.as_str()).unwrap_or_default();
    if field("Code") != "Success" {
        return Err(CredentialsError::Service(format!(
            "{source}: the metadata service answered Code {:?}",
            crate::untrusted::server_text(field("Code"), crate::untrusted::CODE_CHARS)
        )));
    }
    let (id, secret, sts_token) = (
        field("AccessKeyId"),
        field("AccessKeySecret"),
        field("SecurityToken"),
    );
    if id.is_empty() || secret.is_empty() || sts_token.is_empty() {
        return Err(CredentialsError::Service(format!(
            "{source}: the answer lacks AccessKeyId, AccessKeySecret or SecurityToken"
        )));
    }
    Ok(Found::Yes(Credentials {
        access_key_id: id.to_string(),
        access_key_secret: secret.to_string(),
        security_token: Some(sts_token.to_string()),
        source,
    }))
}

fn ok_body(host: &str, what: &str, r: &HttpResponse) -> Result<String, CredentialsError> {
    if r.status != 200 {
        return Err(CredentialsError::Service(format!(
            "the ECS metadata service at http://{host} refused {what} with HTTP {}",
            r.status
        )));
    }
    Ok(String::from_utf8_lossy(&r.body).into_owned())
}

#[cfg(test)]
mod tests {
    use super::super::testing::env;
    use super::super::testing::resolve;
    use super::*;
    use crate::transport::mock::MockTransport;

    fn text(status: u16, body: &str) -> Result<HttpResponse, TransportError> {
        Ok(HttpResponse {
            status,
            headers: vec![],
            body: body.as_bytes().to_vec(),
        })
    }

    /// A metadata service with role `EcsSigner`, requiring the IMDSv2 token.
    fn imds(r: &HttpRequest) -> Result<HttpResponse, TransportError> {
        assert_eq!(r.scheme, Scheme::Http);
        assert_eq!(r.timeout, Some(TIMEOUT));
        let token = r
            .headers
            .iter()
            .find(|(n, _)| n == "x-aliyun-ecs-metadata-token")
            .map(|(_, v)| v.as_str());
        match (r.method, r.path_and_query.as_str()) {
            ("PUT", "/latest/api/token") => text(200, "imds-token"),
            _ if token != Some("imds-token") => text(401, ""),
            ("GET", CREDENTIALS_PATH) => text(200, "EcsSigner"),
            ("GET", "/latest/meta-data/ram/security-credentials/EcsSigner") => text(
                200,
                r#"{"AccessKeyId":"STS.ecs","AccessKeySecret":"ecs-secret","SecurityToken":"ecs-token","Expiration":"2030-01-01T00:00:00Z","LastUpdated":"2029-12-31T18:00:00Z","Code":"Success"}"#,
            ),
            _ => text(404, ""),
        }
    }

    /// An instance without IMDSv2: the token request is refused, metadata needs no token.
    fn imds_v1(r: &HttpRequest) -> Result<HttpResponse, TransportError> {
        match (r.method, r.path_and_query.as_str()) {
            ("PUT", _) => text(403, ""),
            _ => {
                assert!(
                    !r.headers
                        .iter()
                        .any(|(n, _)| n == "x-aliyun-ecs-metadata-token"),
                    "no token to send"
                );
                imds(&HttpRequest {
                    headers: vec![("x-aliyun-ecs-metadata-token".into(), "imds-token".into())],
                    ..r.clone()
                })
            }
        }
    }

    #[test]
    fn without_an_imdsv2_token_it_falls_back_to_v1_unless_v1_is_disabled() {
        let t = MockTransport::new(imds_v1);
        let c = resolve(&env(&[]), &t).unwrap();
        assert_eq!(c.access_key_id, "STS.ecs");
        assert_eq!(t.sent.borrow().len(), 3);

        let t = MockTransport::new(imds_v1);
        let e = resolve(&env(&[("ALIBABA_CLOUD_IMDSV1_DISABLED", "true")]), &t)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("gave no IMDSv2 token (HTTP 403)")
                && e.contains("ALIBABA_CLOUD_IMDSV1_DISABLED=true"),
            "{e}"
        );
        assert_eq!(t.sent.borrow().len(), 1, "nothing asked without a token");
        // With v1 disabled, an instance that gives tokens still works.
        let t = MockTransport::new(imds);
        let c = resolve(&env(&[("ALIBABA_CLOUD_IMDSV1_DISABLED", "true")]), &t).unwrap();
        assert_eq!(c.access_key_id, "STS.ecs");

        // ALIBABA_CLOUD_IMDSV2_DISABLED (ACK): no token request at all.
        let t = MockTransport::new(imds_v1);
        resolve(&env(&[("ALIBABA_CLOUD_IMDSV2_DISABLED", "true")]), &t).unwrap();
        assert!(t.sent.borrow().iter().all(|r| r.method == "GET"));
        assert_eq!(t.sent.borrow().len(), 2);
        let t = MockTransport::new(|r| panic!("unexpected {r:?}"));
        let e = resolve(
            &env(&[
                ("ALIBABA_CLOUD_IMDSV1_DISABLED", "true"),
                ("ALIBABA_CLOUD_IMDSV2_DISABLED", "true"),
            ]),
            &t,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("both true"), "{e}");
    }

    #[test]
    fn discovers_the_role_and_reads_its_credentials_with_the_token() {
        let t = MockTransport::new(imds);
        let c = resolve(&env(&[]), &t).unwrap();
        assert_eq!(
            (c.access_key_id.as_str(), c.security_token.as_deref()),
            ("STS.ecs", Some("ecs-token"))
        );
        assert_eq!(
            c.source,
            "ECS RAM role EcsSigner via metadata http://100.100.100.200"
        );
        let sent = t.sent.borrow();
        assert_eq!(sent.len(), 3);
        assert_eq!(sent[0].authority, "100.100.100.200");
        assert!(sent[0].headers.contains(&(
            "x-aliyun-ecs-metadata-token-ttl-seconds".into(),
            "21600".into()
        )));
    }

    #[test]
    fn a_configured_role_skips_discovery_and_the_endpoint_can_move() {
        let t = MockTransport::new(imds);
        let c = resolve(
            &env(&[
                ("ALIBABA_CLOUD_ECS_METADATA", "EcsSigner"),
                ("ALIBABA_CLOUD_IMDS_ENDPOINT", "http://127.0.0.1:8080/"),
            ]),
            &t,
        )
        .unwrap();
        assert_eq!(c.access_key_id, "STS.ecs");
        assert_eq!(t.sent.borrow().len(), 2);
        assert_eq!(t.sent.borrow()[1].authority, "127.0.0.1:8080");
    }

    fn file(name: &str, text: &str) -> String {
        let dir = std::env::temp_dir().join(format!("imds-test-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    }

    #[test]
    fn cli_ecs_ram_role_and_ini_ecs_ram_role_read_the_named_role() {
        // Both name the role, even with the chain's own ECS step disabled.
        let cli = file(
            "config.json",
            r#"{"current":"e","profiles":[{"name":"e","mode":"EcsRamRole","ram_role_name":"EcsSigner"}]}"#,
        );
        let t = MockTransport::new(imds);
        let c = resolve(
            &env(&[
                ("ALIBABA_CLOUD_CONFIG_FILE", &cli),
                ("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true"),
            ]),
            &t,
        )
        .unwrap();
        assert_eq!(c.access_key_id, "STS.ecs");
        assert!(
            c.source.contains("for Aliyun CLI profile \"e\""),
            "{}",
            c.source
        );
        assert_eq!(t.sent.borrow().len(), 2, "no discovery");

        let ini = file(
            "credentials",
            "[default]\ntype = ecs_ram_role\nrole_name = EcsSigner\n",
        );
        let t = MockTransport::new(imds);
        let c = resolve(
            &env(&[
                ("ALIBABA_CLOUD_CREDENTIALS_FILE", &ini),
                ("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true"),
            ]),
            &t,
        )
        .unwrap();
        assert!(c.source.contains("for credentials file"), "{}", c.source);
    }

    #[test]
    fn disabled_or_absent_metadata_is_reported_without_waiting() {
        let t = MockTransport::new(|r| panic!("unexpected {r:?}"));
        let e = resolve(&env(&[("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true")]), &t)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("disabled by ALIBABA_CLOUD_ECS_METADATA_DISABLED"),
            "{e}"
        );

        let t = MockTransport::new(|r| {
            Err(TransportError::Timeout {
                authority: r.authority.clone(),
            })
        });
        let e = resolve(&env(&[]), &t).unwrap_err().to_string();
        assert!(
            e.contains("no ECS metadata service answered at http://100.100.100.200"),
            "{e}"
        );
        assert_eq!(
            t.sent.borrow().len(),
            1,
            "one try, no discovery after no answer"
        );
    }

    #[test]
    fn refusals_and_bad_answers_are_clear_and_secret_free() {
        let t = MockTransport::new(|r| match r.method {
            "PUT" => text(200, "tok"),
            _ if r.path_and_query == CREDENTIALS_PATH => text(200, "Role"),
            _ => text(200, r#"{"Code":"Failed","AccessKeySecret":"leak"}"#),
        });
        let e = resolve(&env(&[]), &t).unwrap_err().to_string();
        assert!(e.contains("Code \"Failed\"") && !e.contains("leak"), "{e}");
        let t = MockTransport::new(|r| match r.method {
            "PUT" => text(200, "tok"),
            _ => text(404, ""),
        });
        let e = resolve(&env(&[]), &t).unwrap_err().to_string();
        assert!(e.contains("no RAM role attached"), "{e}");
    }
}
