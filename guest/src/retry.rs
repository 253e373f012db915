//! Time bounds and retries, in one place: the deadline of a call (cosign's `ctxDeadline` or
//! the default limit, passed as a value to whatever waits), the clock and sleep behind a trait so unit tests do
//! not wait, and the policy of what is retried and how long to wait in between.
//!
//! The transient failures retried (reference §1.6 and §5): throttling, the service's
//! "temporarily unavailable" codes (with their misspellings), `InternalFailure`, other 5xx,
//! and connections that broke mid-request. Everything else is final; `CreateKey` is never
//! retried, as KMS has no idempotency token for it, and `CreateAlias` only when throttled
//! (refused before anything happened): after a 5xx or a broken connection the alias may
//! exist already, and a second attempt would read as a lost race.

use crate::transport::{HttpResponse, TransportError};
use std::time::{Duration, SystemTime};

/// Overall limit of one call when cosign sends no `ctxDeadline` (the host's backstop follows it).
pub use alibabakms_contract::DEFAULT_LIMIT;
/// Overrides [`DEFAULT_LIMIT`], in seconds.
pub const TIMEOUT_VAR: &str = alibabakms_contract::vars::TIMEOUT;
/// How long before cosign's deadline the plugin gives up, so its answer is written before
/// cosign kills the process.
pub const MARGIN: Duration = Duration::from_millis(150);
/// Cap of one request (connect, first byte, between bytes).
pub const REQUEST_CAP: Duration = Duration::from_secs(30);
pub const BACKOFF_BASE: Duration = Duration::from_millis(200);
pub const BACKOFF_CAP: Duration = Duration::from_secs(5);
/// Attempts per call, the first included.
pub const MAX_ATTEMPTS: u32 = 4;

/// When the current call must have answered, and how to name that bound in messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deadline {
    /// The instant the plugin stops waiting (the margin already taken off).
    pub at: SystemTime,
    /// E.g. `deadline 2026-11-26T05:41:17.281973069Z` or `time limit of 60 s`.
    pub label: String,
}

impl Deadline {
    /// cosign's deadline, answered [`MARGIN`] early.
    pub fn ctx(at: SystemTime, text: &str) -> Self {
        Deadline {
            at: at.checked_sub(MARGIN).unwrap_or(at),
            label: format!("deadline {text}"),
        }
    }

    /// The plugin's own limit from `now`.
    pub fn limit(now: SystemTime, limit: Duration) -> Self {
        Deadline {
            at: now + limit,
            label: format!(
                "time limit of {} s (set {TIMEOUT_VAR} to change it)",
                limit.as_secs_f64()
            ),
        }
    }

    /// The plugin's own limit from `now` when no deadline is given: [`TIMEOUT_VAR`]'s
    /// `value` when valid, else [`DEFAULT_LIMIT`] (`protocol` refuses an invalid value
    /// before anything is sent).
    pub fn default_limit(now: SystemTime, value: Option<&str>) -> Self {
        Deadline::limit(
            now,
            alibabakms_contract::time_limit(value).unwrap_or(DEFAULT_LIMIT),
        )
    }

    /// Time left at `now`; zero once passed.
    pub fn remaining(&self, now: SystemTime) -> Duration {
        self.at.duration_since(now).unwrap_or(Duration::ZERO)
    }
}

/// The limit without a `ctxDeadline`: [`TIMEOUT_VAR`] seconds when set and valid.
pub fn default_limit(var: Option<String>) -> Result<Duration, String> {
    alibabakms_contract::time_limit(var.as_deref())
}

/// Wall clock and sleep.
pub trait Clock {
    fn now(&self) -> SystemTime;
    fn sleep(&self, d: Duration);
}

pub struct RealClock;

impl Clock for RealClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    #[cfg(target_family = "wasm")]
    fn sleep(&self, d: Duration) {
        let ns = d.as_nanos().min(u128::from(u64::MAX)) as u64;
        wasip2::clocks::monotonic_clock::subscribe_duration(ns).block();
    }

    #[cfg(not(target_family = "wasm"))]
    fn sleep(&self, d: Duration) {
        std::thread::sleep(d);
    }
}

/// Whether a failed attempt of `action` may be sent again.
pub fn retryable_code(action: &str, http_status: u16, code: &str) -> bool {
    let throttled = matches!(
        code,
        "Rejected.Throttling" | "Throttling" | "Throttling.User" | "Throttling.Api"
    ) || http_status == 429;
    match action {
        "CreateKey" => return false,
        "CreateAlias" => return throttled,
        _ => {}
    }
    throttled
        || matches!(
            code,
            "ServiceUnavailableTemporary"
                | "SerivceUnavailableTemporary"
                | "SerivceUnvailableTemporary"
                | "InternalFailure"
        )
        || http_status >= 500
}

/// Connections that broke before the answer: sending again is safe for idempotent actions.
/// TLS, DNS, refused connections, sandbox denials and timeouts are final.
pub fn retryable_transport(action: &str, e: &TransportError) -> bool {
    if matches!(action, "CreateKey" | "CreateAlias") {
        return false;
    }
    matches!(e, TransportError::Broken { .. })
}

/// The longest `TimeLeft` (milliseconds) of the `x-ratelimit-user-api` and
/// `x-ratelimit-user` headers: KMS's own word on when to try again.
pub fn rate_limit_wait(resp: &HttpResponse) -> Option<Duration> {
    ["x-ratelimit-user-api", "x-ratelimit-user"]
        .iter()
        .filter_map(|h| resp.header(h))
        .filter_map(|v| {
            v.split(',').find_map(|part| {
                let (k, v) = part.split_once(':')?;
                (k.trim() == "TimeLeft").then(|| v.trim().parse::<u64>().ok())?
            })
        })
        .max()
        .map(Duration::from_millis)
}

/// Full jitter: uniform in [0, min(cap, base × 2^retry)] for the `retry`-th retry (0-based),
/// `random` a uniformly random number.
pub fn backoff(retry: u32, random: u64) -> Duration {
    let ceiling = BACKOFF_BASE
        .saturating_mul(1u32 << retry.min(16))
        .min(BACKOFF_CAP);
    let ms = ceiling.as_millis() as u64;
    Duration::from_millis(random % (ms + 1))
}

pub fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).expect("the platform provides randomness");
    u64::from_le_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_codes_are_retried() {
        for code in [
            "Rejected.Throttling",
            "Throttling",
            "Throttling.User",
            "Throttling.Api",
            "ServiceUnavailableTemporary",
            "SerivceUnavailableTemporary",
            "SerivceUnvailableTemporary",
            "InternalFailure",
        ] {
            assert!(retryable_code("AsymmetricSign", 400, code), "{code}");
            assert!(!retryable_code("CreateKey", 503, code), "{code}");
        }
        assert!(retryable_code("DescribeKey", 502, "HTTP502"));
        assert!(retryable_code("CreateAlias", 429, "Rejected.Throttling"));
        assert!(!retryable_code("CreateAlias", 500, "InternalFailure"));
        assert!(!retryable_code("DescribeKey", 400, "InvalidParameter"));
        assert!(!retryable_code(
            "DescribeKey",
            404,
            "Forbidden.AliasNotFound"
        ));
        assert!(!retryable_code(
            "DescribeKey",
            400,
            "InvalidTimeStamp.Expired"
        ));
        let reset = TransportError::Broken {
            authority: "h".into(),
            detail: "ConnectionTerminated".into(),
        };
        assert!(retryable_transport("GetPublicKey", &reset));
        assert!(!retryable_transport("CreateKey", &reset));
        assert!(!retryable_transport("CreateAlias", &reset));
        for final_error in [
            TransportError::Denied {
                authority: "h".into(),
            },
            TransportError::Tls {
                authority: "h".into(),
                detail: "x".into(),
            },
            TransportError::Connect {
                authority: "h".into(),
                detail: "the host name could not be resolved".into(),
            },
            TransportError::Timeout {
                authority: "h".into(),
            },
            TransportError::Other {
                authority: "h".into(),
                detail: "connection reset".into(),
            },
        ] {
            assert!(!retryable_transport("GetPublicKey", &final_error));
        }
    }

    #[test]
    fn backoff_is_full_jitter_capped() {
        assert_eq!(backoff(0, 0), Duration::ZERO);
        assert_eq!(backoff(0, 200), Duration::from_millis(200));
        assert_eq!(backoff(0, 201), Duration::ZERO);
        assert_eq!(backoff(2, 800), Duration::from_millis(800));
        assert_eq!(backoff(10, 5000), BACKOFF_CAP);
        assert!(backoff(30, u64::MAX) <= BACKOFF_CAP);
    }

    #[test]
    fn rate_limit_headers_give_the_longest_time_left() {
        let resp = HttpResponse {
            status: 429,
            headers: vec![
                (
                    "X-RateLimit-User-Api".into(),
                    "Limit:1,Remain:0,TimeLeft:750,Reset:1700000001000".into(),
                ),
                (
                    "x-ratelimit-user".into(),
                    "Limit:10,Remain:0,TimeLeft:1200,Reset:1".into(),
                ),
            ],
            body: vec![],
        };
        assert_eq!(rate_limit_wait(&resp), Some(Duration::from_millis(1200)));
        let none = HttpResponse {
            status: 429,
            headers: vec![],
            body: vec![],
        };
        assert_eq!(rate_limit_wait(&none), None);
    }

    #[test]
    fn default_limit_reads_the_variable() {
        assert_eq!(default_limit(None), Ok(DEFAULT_LIMIT));
        assert_eq!(default_limit(Some("".into())), Ok(DEFAULT_LIMIT));
        assert_eq!(
            default_limit(Some("2.5".into())),
            Ok(Duration::from_millis(2500))
        );
        assert!(default_limit(Some("soon".into()))
            .unwrap_err()
            .contains(TIMEOUT_VAR));
        assert!(default_limit(Some("-1".into())).is_err());
    }

    #[test]
    fn ctx_deadlines_keep_a_margin() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        let d = Deadline::ctx(t, "X");
        assert_eq!(d.at, t - MARGIN);
        assert_eq!(d.label, "deadline X");
        assert_eq!(d.remaining(t), Duration::ZERO);
    }
}
