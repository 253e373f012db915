//! The RPC client against a scripted transport, through KMS actions: request building
//! (the reference's vectors), error decoding, retries, deadlines and the token refresh.

use super::*;
use crate::kms::*;
use crate::transport::mock::{json, MockTransport};

fn kms<'a>(t: &'a MockTransport, endpoint: &str, c: Credentials) -> Client<'a> {
    let deadline = Deadline::limit(SystemTime::now(), Duration::from_secs(60));
    crate::kms::client(t, endpoint, c, deadline)
}

fn kms_at<'a>(
    t: &'a MockTransport,
    endpoint: &str,
    c: Credentials,
    clock: &'a dyn Clock,
    deadline: Deadline,
) -> Client<'a> {
    crate::kms::client(t, endpoint, c, deadline).with_clock(clock)
}

fn creds(token: Option<&str>) -> Credentials {
    Credentials {
        access_key_id: "testAccessKeyId".into(),
        access_key_secret: "testAccessKeySecret".into(),
        security_token: token.map(Into::into),
        source: "test".into(),
    }
}

#[test]
fn dates_are_utc_iso8601() {
    assert_eq!(format_date(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00Z");
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_704_067_200);
    assert_eq!(format_date(t), "2024-01-01T00:00:00Z");
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_709_210_096);
    assert_eq!(format_date(t), "2024-02-29T12:34:56Z");
}

/// The request the client builds is vector E1 of the reference, end to end.
#[test]
fn builds_vector_e1() {
    let t = MockTransport::new(|_| unreachable!());
    let c = kms(&t, "kms.cn-hangzhou.aliyuncs.com", creds(None));
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_704_067_200);
    let req = c.request(
        &get_public_key("alias/test-key", "2ab1a983-7072-4bbc-a582-584b5bd8ecf3"),
        now,
        "0123456789abcdef0123456789abcdef",
    );
    assert_eq!(req.authority, "kms.cn-hangzhou.aliyuncs.com");
    assert_eq!(
        req.path_and_query,
        "/?KeyId=alias%2Ftest-key&KeyVersionId=2ab1a983-7072-4bbc-a582-584b5bd8ecf3"
    );
    let auth = &req
        .headers
        .iter()
        .find(|(k, _)| k == "authorization")
        .unwrap()
        .1;
    assert!(auth
        .ends_with("Signature=beb7344b198f5dd8d70ffa15a9b1cc27f52f75841976091efa85da9ca4fee015"));
    assert!(!req.headers.iter().any(|(k, _)| k == "host"));
}

#[test]
fn sts_tokens_are_sent_and_signed() {
    let t = MockTransport::new(|_| unreachable!());
    let c = kms(
        &t,
        "kms.cn-hangzhou.aliyuncs.com",
        creds(Some("testSecurityToken")),
    );
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_704_067_200);
    let req = c.request(
        &asymmetric_sign(
            "key-hzz630494463ejqjx0001",
            "2ab1a983-7072-4bbc-a582-584b5bd8ecf3",
            "ECDSA_SHA_256",
            "+/8AAQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0=".into(),
        ),
        now,
        "0123456789abcdef0123456789abcdef",
    );
    let auth = &req
        .headers
        .iter()
        .find(|(k, _)| k == "authorization")
        .unwrap()
        .1;
    assert!(
        auth.ends_with(
            "Signature=d09cbfe66a9415790dbfa45b2163be2c0c19ae40a78df0e1b6b7dc3b16a45f0a"
        ),
        "{auth}"
    );
}

#[test]
fn each_request_gets_a_fresh_nonce() {
    let t = MockTransport::new(|_| json(200, serde_json::json!({})));
    let c = kms(&t, "kms.example.aliyuncs.com", creds(None));
    c.call_all(&[describe_key("a"), describe_key("b")]);
    let sent = t.sent.borrow();
    let nonce = |i: usize| {
        sent[i]
            .headers
            .iter()
            .find(|(k, _)| k == "x-acs-signature-nonce")
            .unwrap()
            .1
            .clone()
    };
    assert_ne!(nonce(0), nonce(1));
    assert_eq!(nonce(0).len(), 32);
}

#[test]
fn errors_keep_code_message_and_request_id() {
    let t = MockTransport::new(|_| {
        json(
            404,
            serde_json::json!({"Code": "Forbidden.AliasNotFound", "Message": "The specified Alias is not found.", "RequestId": "r-1", "HttpStatus": 404}),
        )
    });
    let c = kms(&t, "kms.example.aliyuncs.com", creds(None));
    let e = c
        .call::<KeyMetadataResponse>(describe_key("alias/x"))
        .unwrap_err();
    assert_eq!(e.code(), Some("Forbidden.AliasNotFound"));
    let text = e.to_string();
    assert!(
        text.contains("HTTP 404") && text.contains("r-1") && text.contains("not found"),
        "{text}"
    );
}

#[test]
fn non_json_errors_still_say_something() {
    let t = MockTransport::new(|_| {
        Ok(HttpResponse {
            status: 502,
            headers: vec![],
            body: b"<html>bad gateway".to_vec(),
        })
    });
    let c = kms(&t, "kms.example.aliyuncs.com", creds(None));
    let e = c
        .call::<KeyMetadataResponse>(describe_key("k"))
        .unwrap_err();
    assert_eq!(e.code(), Some("HTTP502"));
}

// ---- retries and deadlines ---------------------------------------------------------

use std::cell::{Cell, RefCell};
use std::rc::Rc;

/// A clock that only moves when slept on (or told to).
struct FakeClock {
    now: Cell<SystemTime>,
    slept: RefCell<Vec<Duration>>,
}

impl FakeClock {
    fn new() -> Rc<Self> {
        Rc::new(FakeClock {
            now: Cell::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_704_067_200)),
            slept: RefCell::new(Vec::new()),
        })
    }
    fn advance(&self, d: Duration) {
        self.now.set(self.now.get() + d);
    }
}

impl Clock for FakeClock {
    fn now(&self) -> SystemTime {
        self.now.get()
    }
    fn sleep(&self, d: Duration) {
        self.slept.borrow_mut().push(d);
        self.advance(d);
    }
}

fn in_secs(clock: &FakeClock, secs: u64) -> Deadline {
    Deadline::ctx(clock.now() + Duration::from_secs(secs), "D")
}

fn kms_error(status: u16, code: &str) -> Result<HttpResponse, TransportError> {
    json(
        status,
        serde_json::json!({"Code": code, "Message": "m", "RequestId": "r"}),
    )
}

fn throttled(time_left_ms: u64) -> Result<HttpResponse, TransportError> {
    let mut r = kms_error(429, "Rejected.Throttling")?;
    r.headers.push((
        "x-ratelimit-user-api".into(),
        format!("Limit:1,Remain:0,TimeLeft:{time_left_ms},Reset:1"),
    ));
    Ok(r)
}

/// Answers from a script, one entry per request, then `{}`.
fn scripted(script: Vec<Result<HttpResponse, TransportError>>) -> MockTransport {
    let script = RefCell::new(script.into_iter());
    MockTransport::new(move |_| {
        script
            .borrow_mut()
            .next()
            .unwrap_or_else(|| json(200, serde_json::json!({"Value": "sig"})))
    })
}

fn header<'r>(r: &'r HttpRequest, name: &str) -> &'r str {
    &r.headers.iter().find(|(k, _)| k == name).unwrap().1
}

#[test]
fn throttling_is_retried_re_signed_with_fresh_nonces() {
    let clock = FakeClock::new();
    let t = scripted(vec![
        throttled(10),
        kms_error(503, "ServiceUnavailableTemporary"),
    ]);
    let c = kms_at(
        &t,
        "kms.example.aliyuncs.com",
        creds(None),
        &*clock,
        in_secs(&clock, 60),
    );
    let v: SignResponse = c
        .call(asymmetric_sign("k", "v", "ECDSA_SHA_256", "AA==".into()))
        .unwrap();
    assert_eq!(v.value, "sig");
    let sent = t.sent.borrow();
    assert_eq!(sent.len(), 3);
    let nonces: std::collections::HashSet<_> = sent
        .iter()
        .map(|r| header(r, "x-acs-signature-nonce"))
        .collect();
    assert_eq!(nonces.len(), 3);
    let slept = clock.slept.borrow();
    assert_eq!(slept.len(), 2);
    assert!(slept[0] >= Duration::from_millis(10) && slept[0] <= retry::BACKOFF_BASE);
    assert!(slept[1] <= retry::BACKOFF_BASE * 2);
}

#[test]
fn time_left_is_the_least_wait() {
    let clock = FakeClock::new();
    let t = scripted(vec![throttled(3_000)]);
    let c = kms_at(
        &t,
        "kms.example.aliyuncs.com",
        creds(None),
        &*clock,
        in_secs(&clock, 60),
    );
    c.call::<serde_json::Value>(describe_key("k")).unwrap();
    assert_eq!(t.sent.borrow().len(), 2);
    assert!(clock.slept.borrow()[0] >= Duration::from_secs(3));
}

#[test]
fn at_most_four_attempts_then_the_last_error() {
    let clock = FakeClock::new();
    let t = MockTransport::new(|_| kms_error(500, "InternalFailure"));
    let c = kms_at(
        &t,
        "kms.example.aliyuncs.com",
        creds(None),
        &*clock,
        in_secs(&clock, 60),
    );
    let e = c.call::<serde_json::Value>(describe_key("k")).unwrap_err();
    assert_eq!(e.code(), Some("InternalFailure"));
    assert_eq!(t.sent.borrow().len(), retry::MAX_ATTEMPTS as usize);
}

#[test]
fn final_errors_and_create_key_are_sent_once() {
    for (call, status, code) in [
        (describe_key("k"), 400, "InvalidParameter"),
        (describe_key("k"), 404, "Forbidden.AliasNotFound"),
        (create_key("EC_P256", None), 500, "InternalFailure"),
        (create_key("EC_P256", None), 429, "Rejected.Throttling"),
    ] {
        let clock = FakeClock::new();
        let t = MockTransport::new(move |_| kms_error(status, code));
        let c = kms_at(
            &t,
            "kms.example.aliyuncs.com",
            creds(None),
            &*clock,
            in_secs(&clock, 60),
        );
        let e = c.call::<serde_json::Value>(call).unwrap_err();
        assert_eq!(e.code(), Some(code));
        assert_eq!(t.sent.borrow().len(), 1, "{code}");
        assert!(clock.slept.borrow().is_empty());
    }
    // A broken connection is retried, except for CreateKey.
    let reset = || TransportError::Broken {
        authority: "h".into(),
        detail: "ConnectionTerminated".into(),
    };
    let clock = FakeClock::new();
    let t = scripted(vec![Err(reset())]);
    let c = kms_at(
        &t,
        "kms.example.aliyuncs.com",
        creds(None),
        &*clock,
        in_secs(&clock, 60),
    );
    c.call::<serde_json::Value>(describe_key("k")).unwrap();
    assert_eq!(t.sent.borrow().len(), 2);
    let t = scripted(vec![Err(reset())]);
    let c = kms_at(
        &t,
        "kms.example.aliyuncs.com",
        creds(None),
        &*clock,
        in_secs(&clock, 60),
    );
    assert!(c
        .call::<serde_json::Value>(create_key("EC_P256", None))
        .is_err());
    assert_eq!(t.sent.borrow().len(), 1);
}

#[test]
fn retries_stop_at_the_deadline() {
    let clock = FakeClock::new();
    // KMS asks for 2 s; only 1 s is left: the throttling error stands, nothing waits.
    let t = MockTransport::new(|_| throttled(2_000));
    let c = kms_at(
        &t,
        "kms.example.aliyuncs.com",
        creds(None),
        &*clock,
        in_secs(&clock, 1),
    );
    let e = c.call::<serde_json::Value>(describe_key("k")).unwrap_err();
    assert_eq!(e.code(), Some("Rejected.Throttling"));
    assert_eq!(t.sent.borrow().len(), 1);
    assert!(clock.slept.borrow().is_empty());
}

#[test]
fn requests_are_bounded_by_the_deadline() {
    let clock = FakeClock::new();
    let deadline = in_secs(&clock, 3);
    let at = deadline.at;
    let c2 = clock.clone();
    // The endpoint never answers: the host's timeout ends the request at the deadline.
    let t = MockTransport::new(move |r| {
        c2.now.set(at);
        assert_eq!(r.timeout, Some(Duration::from_millis(2_850)));
        Err(TransportError::Timeout {
            authority: r.authority.clone(),
        })
    });
    let c = kms_at(
        &t,
        "kms.example.aliyuncs.com",
        creds(None),
        &*clock,
        deadline,
    );
    let e = c
        .call::<serde_json::Value>(asymmetric_sign("k", "v", "A", "AA==".into()))
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "deadline D passed while waiting for KMS AsymmetricSign at kms.example.aliyuncs.com"
    );
    assert_eq!(t.sent.borrow().len(), 1);
    // A far deadline leaves the normal cap.
    let clock = FakeClock::new();
    let t = MockTransport::new(|r| {
        assert_eq!(r.timeout, Some(retry::REQUEST_CAP));
        json(200, serde_json::json!({}))
    });
    let c = kms_at(
        &t,
        "kms.example.aliyuncs.com",
        creds(None),
        &*clock,
        in_secs(&clock, 600),
    );
    c.call::<serde_json::Value>(describe_key("k")).unwrap();
}

#[test]
fn a_passed_deadline_sends_nothing() {
    let clock = FakeClock::new();
    let t = MockTransport::new(|_| unreachable!());
    let deadline = Deadline::ctx(clock.now(), "D");
    let c = kms_at(
        &t,
        "kms.example.aliyuncs.com",
        creds(None),
        &*clock,
        deadline,
    );
    let e = c.call::<serde_json::Value>(describe_key("k")).unwrap_err();
    assert!(matches!(e, Error::Deadline { .. }), "{e}");
    assert!(t.sent.borrow().is_empty());
}

#[test]
fn expired_timestamps_report_the_skew() {
    let clock = FakeClock::new();
    // The service's clock is 20 minutes ahead of ours.
    let t = MockTransport::new(|_| {
        let mut r = kms_error(400, "InvalidTimeStamp.Expired")?;
        r.headers
            .push(("Date".into(), "Mon, 01 Jan 2024 00:20:00 GMT".into()));
        Ok(r)
    });
    let c = kms_at(
        &t,
        "kms.example.aliyuncs.com",
        creds(None),
        &*clock,
        in_secs(&clock, 60),
    );
    match c.call::<serde_json::Value>(describe_key("k")).unwrap_err() {
        Error::Service(e) => assert_eq!(e.clock_skew_secs, NonZeroI32::new(-1200)),
        other => panic!("{other}"),
    }
    assert_eq!(t.sent.borrow().len(), 1);
}

#[test]
fn redirects_are_not_followed_and_say_so() {
    let t = MockTransport::new(|_| {
        Ok(HttpResponse {
            status: 307,
            headers: vec![(
                "Location".into(),
                "https://user:pw@127.0.0.1:9/steal?token=x".into(),
            )],
            body: b"".to_vec(),
        })
    });
    let c = kms(&t, "kms.example.aliyuncs.com", creds(None));
    let e = c.call::<serde_json::Value>(describe_key("k")).unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("answered DescribeKey with a redirect (HTTP 307")
            && text.contains("redirects are not followed"),
        "{text}"
    );
    assert!(!text.contains("pw") && !text.contains("token=x"), "{text}");
    assert_eq!(t.sent.borrow().len(), 1, "not retried, not followed");
    assert_eq!(
        location_origin("https://other.example:8443/x?y"),
        Some("https://other.example:8443".into())
    );
    assert_eq!(location_origin("/relative"), None);
}

fn expired() -> Result<HttpResponse, TransportError> {
    kms_error(400, TOKEN_EXPIRED)
}

fn token_of(r: &HttpRequest) -> String {
    header(r, "x-acs-security-token").to_string()
}

#[test]
fn an_expired_token_is_refreshed_once_and_the_calls_sent_again() {
    // Expired for token "old", fine for any other.
    let t = MockTransport::new(|r| {
        if token_of(r) == "old" {
            expired()
        } else {
            json(200, serde_json::json!({"Value": "sig"}))
        }
    });
    let refreshes = Cell::new(0);
    let c = kms(&t, "kms.example.aliyuncs.com", creds(Some("old"))).with_refresh(Box::new(|| {
        refreshes.set(refreshes.get() + 1);
        Ok(creds(Some("new")))
    }));
    let answers = c.call_all(&[describe_key("a"), list_key_versions("a", 1)]);
    assert!(answers.iter().all(Result::is_ok), "{answers:?}");
    assert_eq!(refreshes.get(), 1);
    assert_eq!(c.refreshed(), Some(Refreshed::New));
    let tokens: Vec<String> = t.sent.borrow().iter().map(token_of).collect();
    assert_eq!(tokens, ["old", "old", "new", "new"]);
    // Once per client: a second expiry is an error, not another refresh.
    let t2 = MockTransport::new(|_| expired());
    let c = kms(&t2, "kms.example.aliyuncs.com", creds(Some("old")))
        .with_refresh(Box::new(|| Ok(creds(Some("new")))));
    let e = c.call::<serde_json::Value>(describe_key("a")).unwrap_err();
    assert_eq!(e.code(), Some(TOKEN_EXPIRED));
    assert_eq!(t2.sent.borrow().len(), 2);
    let e = c.call::<serde_json::Value>(describe_key("a")).unwrap_err();
    assert_eq!(e.code(), Some(TOKEN_EXPIRED));
    assert_eq!(t2.sent.borrow().len(), 3);
}

#[test]
fn the_same_token_or_a_failed_refresh_is_not_sent_again() {
    let t = MockTransport::new(|_| expired());
    let c = kms(&t, "kms.example.aliyuncs.com", creds(Some("old")))
        .with_refresh(Box::new(|| Ok(creds(Some("old")))));
    let e = c.call::<serde_json::Value>(describe_key("a")).unwrap_err();
    assert_eq!(e.code(), Some(TOKEN_EXPIRED));
    assert_eq!(c.refreshed(), Some(Refreshed::Same));
    assert_eq!(t.sent.borrow().len(), 1);

    let t = MockTransport::new(|_| expired());
    let c = kms(&t, "kms.example.aliyuncs.com", creds(Some("old")))
        .with_refresh(Box::new(|| Err("STS said no".into())));
    c.call::<serde_json::Value>(describe_key("a")).unwrap_err();
    assert_eq!(c.refreshed(), Some(Refreshed::Failed("STS said no".into())));
    assert_eq!(t.sent.borrow().len(), 1);

    // Without a refresher nothing is retried.
    let t = MockTransport::new(|_| expired());
    let c = kms(&t, "kms.example.aliyuncs.com", creds(Some("old")));
    c.call::<serde_json::Value>(describe_key("a")).unwrap_err();
    assert_eq!(c.refreshed(), None);
    assert_eq!(t.sent.borrow().len(), 1);
}
