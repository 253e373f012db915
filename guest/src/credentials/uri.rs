//! `ALIBABA_CLOUD_CREDENTIALS_URI` (reference §4.8): `GET <uri>` answers
//! `{"AccessKeyId", "AccessKeySecret", "SecurityToken", "Expiration"}`. The URI's path and
//! query may carry a secret (tokens often live in the path), so messages name only its
//! scheme and host.

use super::{var, Context, Credentials, CredentialsError, Found};
use crate::retry;
use crate::transport::{HttpRequest, Scheme};

const VAR: &str = alibabakms_contract::vars::CREDENTIALS_URI;

pub fn credentials_uri(cx: &Context<'_>) -> Result<Found, CredentialsError> {
    let env = cx.env;
    let Some(uri) = var(env, VAR) else {
        return Ok(Found::Skipped(format!("{VAR} is not set")));
    };
    let target = alibabakms_contract::credentials_uri(&uri).map_err(CredentialsError::Config)?;
    let (scheme, scheme_name) = if target.https {
        (Scheme::Https, "https")
    } else {
        (Scheme::Http, "http")
    };
    let (authority, path_and_query) = (target.authority.as_str(), target.path_and_query.as_str());
    let source = format!("credentials URI {scheme_name}://{authority} ({VAR})");
    // The host only: the URI's path and query may carry a secret.
    let outcome = cx.send_once(
        "credentials URI",
        HttpRequest {
            method: "GET",
            scheme,
            authority: authority.to_string(),
            path_and_query: path_and_query.to_string(),
            headers: vec![("accept".into(), "application/json".into())],
            body: Vec::new(),
            timeout: Some(retry::REQUEST_CAP),
        },
    );
    let response =
        outcome.map_err(|e| CredentialsError::Service(format!("{source}: no answer: {e}")))?;
    if (300..400).contains(&response.status) {
        return Err(CredentialsError::Service(format!(
            "{source}: answered with a redirect (HTTP {}), and redirects are not followed; \
             set {VAR} to the final address",
            response.status
        )));
    }
    if response.status != 200 {
        return Err(CredentialsError::Service(format!(
            "{source}: HTTP {}",
            response.status
        )));
    }
    let json: serde_json::Value = serde_json::from_slice(&response.body)
        .map_err(|_| CredentialsError::Service(format!("{source}: the answer is not JSON")))?;
    let field = |k: &str| json.get(k).and_then(|v| v.as_str()).unwrap_or_default();
    if !field("Code").is_empty() && field("Code") != "Success" {
        return Err(CredentialsError::Service(format!(
            "{source}: the answer has Code {:?}",
            crate::untrusted::server_text(field("Code"), crate::untrusted::CODE_CHARS)
        )));
    }
    let (id, secret, token) = (
        field("AccessKeyId"),
        field("AccessKeySecret"),
        field("SecurityToken"),
    );
    if id.is_empty() || secret.is_empty() || token.is_empty() {
        return Err(CredentialsError::Service(format!(
            "{source}: the answer lacks AccessKeyId, AccessKeySecret or SecurityToken"
        )));
    }
    // As the official provider does (credentials-go's URLCredentialsProvider), the answer
    // must say until when its credentials hold; credentials already past it are refused here
    // rather than by KMS.
    let expiration = field("Expiration");
    let Some(expires) = crate::rfc3339::parse_rfc3339(expiration) else {
        return Err(CredentialsError::Service(format!(
            "{source}: the answer has no Expiration as a UTC time (such as \
             2026-12-01T08:00:00Z); the credentials URI must say until when its credentials hold"
        )));
    };
    if expires <= cx.clock.now() {
        return Err(CredentialsError::Service(format!(
            "{source}: the credentials it answered expired at {}; the service behind the \
             credentials URI must hand out fresh ones",
            crate::untrusted::server_text(expiration, 40)
        )));
    }
    Ok(Found::Yes(Credentials {
        access_key_id: id.to_string(),
        access_key_secret: secret.to_string(),
        security_token: Some(token.to_string()),
        source,
    }))
}

#[cfg(test)]
mod tests {
    use super::super::testing::env_off_ecs as env;
    use super::super::testing::resolve;
    use crate::transport::mock::{json, MockTransport};
    use crate::transport::Scheme;

    #[test]
    fn reads_credentials_from_the_uri_and_never_names_its_query() {
        let t = MockTransport::new(|_| {
            json(
                200,
                serde_json::json!({"AccessKeyId": "STS.uri", "AccessKeySecret": "s",
                    "SecurityToken": "t", "Expiration": "2030-01-01T00:00:00Z"}),
            )
        });
        let e = env(&[(
            "ALIBABA_CLOUD_CREDENTIALS_URI",
            "http://127.0.0.1:8080/creds?key=hunter2",
        )]);
        let c = resolve(&e, &t).unwrap();
        assert_eq!(c.access_key_id, "STS.uri");
        assert_eq!(
            c.source,
            "credentials URI http://127.0.0.1:8080 (ALIBABA_CLOUD_CREDENTIALS_URI)"
        );
        let sent = t.sent.borrow();
        assert_eq!(sent[0].scheme, Scheme::Http);
        assert_eq!(sent[0].authority, "127.0.0.1:8080");
        assert_eq!(sent[0].path_and_query, "/creds?key=hunter2");
        drop(sent);

        let t = MockTransport::new(|_| json(500, serde_json::json!({})));
        let err = resolve(&e, &t).unwrap_err().to_string();
        assert!(
            err.contains("HTTP 500") && !err.contains("hunter2"),
            "{err}"
        );
        let err = resolve(&env(&[("ALIBABA_CLOUD_CREDENTIALS_URI", "ftp://x/")]), &t)
            .unwrap_err()
            .to_string();
        assert!(err.contains("http:// or https://"), "{err}");
    }

    #[test]
    fn the_answer_must_say_until_when_and_not_be_past_it() {
        let e = env(&[(
            "ALIBABA_CLOUD_CREDENTIALS_URI",
            "http://127.0.0.1:8080/creds",
        )]);
        let answer = |expiration: Option<&str>| {
            let mut body = serde_json::json!({"AccessKeyId": "STS.uri", "AccessKeySecret": "s",
                "SecurityToken": "t"});
            if let Some(x) = expiration {
                body["Expiration"] = x.into();
            }
            let t = MockTransport::new(move |_| json(200, body.clone()));
            resolve(&e, &t).map_err(|e| e.to_string())
        };
        let missing = answer(None).unwrap_err();
        assert!(missing.contains("no Expiration"), "{missing}");
        let junk = answer(Some("tomorrow")).unwrap_err();
        assert!(junk.contains("no Expiration"), "{junk}");
        let past = answer(Some("2020-01-01T00:00:00Z")).unwrap_err();
        assert!(past.contains("expired at 2020-01-01T00:00:00Z"), "{past}");
        assert!(answer(Some("2099-01-01T00:00:00Z")).is_ok());
    }
}
