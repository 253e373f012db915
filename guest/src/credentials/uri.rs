//! `ALIBABA_CLOUD_CREDENTIALS_URI` (reference §4.8): `GET <uri>` answers
//! `{"AccessKeyId", "AccessKeySecret", "SecurityToken", "Expiration"}`. The URI's path and
//! query may carry a secret (tokens often live in the path), so messages name only its
//! scheme and host.

use super::{temporary, var, Context, CredentialsError, Found};
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
    // Named by its host only: the URI's path and query may carry a secret.
    let response = temporary::send(
        cx,
        "credentials URI",
        &source,
        HttpRequest {
            method: "GET",
            scheme,
            authority: authority.to_string(),
            path_and_query: path_and_query.to_string(),
            headers: vec![("accept".into(), "application/json".into())],
            body: Vec::new(),
            timeout: None,
        },
        &format!("; set {VAR} to the final address"),
    )?;
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
    // As the official provider does (credentials-go's URLCredentialsProvider), the answer
    // must say until when its credentials hold.
    temporary::credentials(
        cx,
        source,
        temporary::Answered {
            id: field("AccessKeyId"),
            secret: field("AccessKeySecret"),
            token: field("SecurityToken"),
            expiration: field("Expiration"),
            names: "AccessKeyId, AccessKeySecret or SecurityToken",
            expiration_name: "Expiration",
            issuer: "the service behind the credentials URI",
        },
    )
    .map(Found::Yes)
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
