//! What can go wrong with a call, typed: the service's refusal with its code, a transport
//! failure, an answer that could not be read, a redirect, or the deadline. Turned into text
//! only where an answer is written (cosign's `errorMessage`, the WIT error).

use super::Api;
use crate::transport::TransportError;
use std::fmt;
use std::num::NonZeroI32;

/// What the service said when it refused a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceError {
    pub product: &'static str,
    pub action: &'static str,
    pub http_status: u16,
    /// The answer's `Code`, or `HTTP<status>` when it has none.
    pub code: String,
    pub message: String,
    pub request_id: String,
    /// For `InvalidTimeStamp.Expired`: how far the local clock is ahead of the service's
    /// (negative: behind), from the request's `x-acs-date` and the answer's `Date` header.
    /// (`NonZero` keeps the error small; no skew needs no report.)
    pub clock_skew_secs: Option<NonZeroI32>,
}

impl fmt::Display for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} failed with {} (HTTP {}",
            self.product, self.action, self.code, self.http_status
        )?;
        if !self.request_id.is_empty() {
            write!(f, ", request id {}", self.request_id)?;
        }
        write!(f, ")")?;
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    Transport(TransportError),
    Service(ServiceError),
    /// A 2xx answer we could not understand.
    BadResponse {
        product: &'static str,
        action: &'static str,
        detail: String,
    },
    /// The endpoint answered with a redirect (3xx). Redirects are never followed: the next
    /// hop would receive a signed request (and its STS token) meant for this endpoint.
    Redirect {
        api: &'static Api,
        action: &'static str,
        authority: String,
        status: u16,
        /// `scheme://host[:port]` of the `Location` header, if any (never its path or query).
        location: Option<String>,
    },
    /// The call's deadline passed (or had passed) before the service answered.
    Deadline {
        /// `deadline …` or `time limit of …`.
        label: String,
        product: &'static str,
        action: &'static str,
        authority: String,
    },
}

impl Error {
    /// The service's `Code`, when it answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Service(e) => Some(&e.code),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Transport(e) => e.fmt(f),
            Error::Service(e) => e.fmt(f),
            Error::BadResponse {
                product,
                action,
                detail,
            } => write!(
                f,
                "{product} {action} returned an answer that could not be read: {detail}"
            ),
            Error::Redirect {
                api,
                action,
                authority,
                status,
                location,
            } => {
                write!(
                    f,
                    "the {} endpoint {authority} answered {action} with a redirect (HTTP {status}",
                    api.product
                )?;
                if let Some(to) = location {
                    write!(f, " to {to}")?;
                }
                write!(f, "); redirects are not followed. {}", api.endpoint_hint)
            }
            Error::Deadline {
                label,
                product,
                action,
                authority,
            } => write!(
                f,
                "{label} passed while waiting for {product} {action} at {authority}"
            ),
        }
    }
}
