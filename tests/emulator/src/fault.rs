//! Faults a test can inject to exercise a client's retries, backoff and deadlines
//! ([`crate::Emulator::inject`]).
//!
//! A fault is applied to a request only after it passed the gateway: a valid signature, a
//! fresh nonce (which it consumes, as the real gateway's throttle does: a retry must be
//! re-signed with a new nonce), a known API version and action. So a client that retries by
//! resending the same bytes gets `SignatureNonceUsed`, as it would from Alibaba.
//!
//! Error faults use the codes Alibaba's own KMS tooling retries on (reference §5):
//!
//! | fault | HTTP | Code | Message | shape |
//! |---|---|---|---|---|
//! | [`Fault::Throttle`] | 429 | `Rejected.Throttling` | `QPS Limit Exceeded` | KMS (DOC-LIMITS sample) + `x-ratelimit-user-api` header |
//! | [`Fault::ServiceUnavailable`] | 503 | `ServiceUnavailableTemporary` | `Service Unavailable Temporary.` | KMS |
//! | [`Fault::InternalFailure`] | 500 | `InternalFailure` | `Internal Failure.` | KMS |
//!
//! The header's format is the one Alibaba's SDKs parse (`Limit:1,Remain:0,TimeLeft:2000,
//! Reset:1234`; `TimeLeft` in milliseconds, reference §1.6). What `Reset` holds is not
//! documented; the emulator puts the Unix time in milliseconds at which the window ends.
//! Clients should read only `TimeLeft`.
//!
//! KMS's error table also spells the 503 code `SerivceUnavailableTemporary` (sic); inject that
//! spelling, or any other error, with [`Fault::Error`].

use std::time::{Duration, SystemTime};

use crate::error::ApiError;

/// What happens to a request a fault applies to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// 429 `Rejected.Throttling` "QPS Limit Exceeded" with
    /// `x-ratelimit-user-api: Limit:1,Remain:0,TimeLeft:<ms>,Reset:<epoch ms>`, `TimeLeft`
    /// being what is left of the current one-second window (1..=1000 ms).
    Throttle,
    /// [`Fault::Throttle`] with a chosen `TimeLeft` (rounded up to whole milliseconds).
    ThrottleFor(Duration),
    /// 503 `ServiceUnavailableTemporary`.
    ServiceUnavailable,
    /// 500 `InternalFailure`.
    InternalFailure,
    /// Accepts the request and never answers; the connection stays open until the client
    /// gives up or the [`crate::Emulator`] is dropped.
    Hang,
    /// Waits this long, then processes the request normally.
    Delay(Duration),
    /// Closes the TCP connection without an answer, with an RST where the platform allows
    /// (`SO_LINGER` 0), so the client sees a reset or an unexpected end of stream.
    Reset,
    /// Answers with this error (status, code, message and JSON shape as given).
    Error(ApiError),
    /// Carries the request out (a key or alias is created), then closes the connection with
    /// an RST instead of answering: the request landed, but the client cannot know.
    ResetAfterProcessing,
    /// Carries the request out and answers it, but `Value` (AsymmetricSign's signature)
    /// holds 70 random bytes: a signature that verifies against nothing.
    BadSignature,
    /// Carries the request out and answers it, the body one byte per interval (headers at
    /// once): a server that keeps a connection busy without ever finishing.
    Trickle(Duration),
}

impl Fault {
    /// The name recorded in [`crate::Stats::faults_per_kind`] and
    /// [`crate::RecordedRequest::fault`].
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::Throttle | Fault::ThrottleFor(_) => "Throttle",
            Fault::ServiceUnavailable => "ServiceUnavailable",
            Fault::InternalFailure => "InternalFailure",
            Fault::Hang => "Hang",
            Fault::Delay(_) => "Delay",
            Fault::Reset => "Reset",
            Fault::Error(_) => "Error",
            Fault::ResetAfterProcessing => "ResetAfterProcessing",
            Fault::BadSignature => "BadSignature",
            Fault::Trickle(_) => "Trickle",
        }
    }

    /// The error response of an error fault, with its extra headers; `None` for the others.
    pub(crate) fn response(&self, now: SystemTime) -> Option<(ApiError, Vec<(String, String)>)> {
        let throttle = |time_left_ms: u128| {
            let now_ms = now
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis();
            let header = format!(
                "Limit:1,Remain:0,TimeLeft:{time_left_ms},Reset:{}",
                now_ms + time_left_ms
            );
            (
                ApiError::service(429, "Rejected.Throttling", "QPS Limit Exceeded"),
                vec![("x-ratelimit-user-api".to_string(), header)],
            )
        };
        match self {
            Fault::Throttle => {
                let into_second = now
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap_or_default()
                    .subsec_millis();
                Some(throttle(u128::from(1000 - into_second)))
            }
            Fault::ThrottleFor(d) => Some(throttle(d.as_nanos().div_ceil(1_000_000))),
            Fault::ServiceUnavailable => Some((
                ApiError::service(
                    503,
                    "ServiceUnavailableTemporary",
                    "Service Unavailable Temporary.",
                ),
                Vec::new(),
            )),
            Fault::InternalFailure => Some((
                ApiError::service(500, "InternalFailure", "Internal Failure."),
                Vec::new(),
            )),
            Fault::Error(e) => Some((e.clone(), Vec::new())),
            Fault::Hang
            | Fault::Delay(_)
            | Fault::Reset
            | Fault::ResetAfterProcessing
            | Fault::BadSignature
            | Fault::Trickle(_) => None,
        }
    }
}

/// One [`crate::Emulator::inject`] call: `fault` for the next `remaining` requests to `action`
/// (`"*"`: any action).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultRule {
    pub action: String,
    pub fault: Fault,
    pub remaining: u32,
}

/// The injected faults, in injection order.
#[derive(Default)]
pub struct FaultPlan {
    rules: Vec<FaultRule>,
}

impl FaultPlan {
    pub fn add(&mut self, action: &str, fault: Fault, times: u32) {
        if times > 0 {
            self.rules.push(FaultRule {
                action: action.to_string(),
                fault,
                remaining: times,
            });
        }
    }

    /// The fault for a request to `action`, if any: the oldest rule that matches and has uses
    /// left, which loses one (and is dropped at zero).
    pub fn take(&mut self, action: &str) -> Option<Fault> {
        let i = self
            .rules
            .iter()
            .position(|r| r.action == "*" || r.action == action)?;
        let rule = &mut self.rules[i];
        rule.remaining -= 1;
        let fault = rule.fault.clone();
        if rule.remaining == 0 {
            self.rules.remove(i);
        }
        Some(fault)
    }

    pub fn clear(&mut self) {
        self.rules.clear();
    }

    pub fn pending(&self) -> Vec<FaultRule> {
        self.rules.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_apply_in_order_and_only_their_number_of_times() {
        let mut plan = FaultPlan::default();
        plan.add("AsymmetricSign", Fault::InternalFailure, 2);
        plan.add("*", Fault::Hang, 1);
        plan.add("GetPublicKey", Fault::Reset, 0);
        assert_eq!(plan.pending().len(), 2);
        assert_eq!(plan.take("GetPublicKey"), Some(Fault::Hang));
        assert_eq!(plan.take("GetPublicKey"), None);
        assert_eq!(plan.take("AsymmetricSign"), Some(Fault::InternalFailure));
        assert_eq!(plan.take("AsymmetricSign"), Some(Fault::InternalFailure));
        assert_eq!(plan.take("AsymmetricSign"), None);
        assert!(plan.pending().is_empty());
    }

    #[test]
    fn throttle_header_carries_the_time_left() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_250);
        let (e, h) = Fault::Throttle.response(now).unwrap();
        assert_eq!(
            (e.status, e.code.as_str(), e.message.as_str()),
            (429, "Rejected.Throttling", "QPS Limit Exceeded")
        );
        assert_eq!(
            h,
            [(
                "x-ratelimit-user-api".to_string(),
                "Limit:1,Remain:0,TimeLeft:750,Reset:1700000001000".to_string()
            )]
        );
        let (_, h) = Fault::ThrottleFor(Duration::from_micros(2_000_001))
            .response(now)
            .unwrap();
        assert!(h[0].1.contains("TimeLeft:2001,"), "{h:?}");
        assert!(Fault::Hang.response(now).is_none());
    }
}
