//! Errors the emulator answers with: the real codes, HTTP statuses and the two JSON shapes
//! Alibaba Cloud uses (reference/alibaba-protocol.md §2.13).
//!
//! Statuses the reference could not pin down for KMS are chosen from Alibaba's public POP
//! error-code list and noted on the constructor that makes them.

use serde_json::{json, Value};

/// Who produced an error in the real service, which decides its JSON shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The POP API gateway (authentication, signature, routing):
    /// `{"RequestId","HostId","Code","Message","Recommend"}`.
    Gateway,
    /// KMS itself (parameters, key state, not-found):
    /// `{"HttpStatus","Code","Message","RequestId"}`.
    Service,
}

/// One rejected request: HTTP status, Alibaba error code and a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub code: String,
    pub message: String,
    pub kind: ErrorKind,
    /// For `SignatureDoesNotMatch`: the canonical request the server computed. Logged and
    /// recorded for debugging; never put in the response body (the real one does not either).
    pub canonical_request: Option<String>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

impl ApiError {
    pub fn gateway(status: u16, code: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code: code.to_string(),
            message: message.into(),
            kind: ErrorKind::Gateway,
            canonical_request: None,
        }
    }

    pub fn service(status: u16, code: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code: code.to_string(),
            message: message.into(),
            kind: ErrorKind::Service,
            canonical_request: None,
        }
    }

    /// The response body, in the shape of whoever produced the error.
    pub fn to_json(&self, request_id: &str, host_id: &str) -> Value {
        match self.kind {
            ErrorKind::Gateway => json!({
                "RequestId": request_id,
                "HostId": host_id,
                "Code": self.code,
                "Message": self.message,
                "Recommend": format!(
                    "https://error-center.aliyun.com/status/search?Keyword={}&source=PopGw",
                    self.code
                ),
            }),
            ErrorKind::Service => json!({
                "HttpStatus": self.status,
                "Code": self.code,
                "Message": self.message,
                "RequestId": request_id,
            }),
        }
    }

    // ---- gateway (POP) errors -------------------------------------------------------------

    /// 400 (KMS error table).
    pub fn incomplete_signature(detail: impl std::fmt::Display) -> Self {
        Self::gateway(
            400,
            "IncompleteSignature",
            format!("The request signature does not conform to Aliyun standards. {detail}"),
        )
    }

    /// 400: the reference lists 400 or 403; Alibaba's POP list and SDK error reports show 400.
    pub fn signature_does_not_match(string_to_sign: &str, canonical_request: String) -> Self {
        let mut e = Self::gateway(
            400,
            "SignatureDoesNotMatch",
            format!(
                "Specified signature is not matched with our calculation. server string to sign is:{string_to_sign}"
            ),
        );
        e.canonical_request = Some(canonical_request);
        e
    }

    /// 404 (KMS error table).
    pub fn access_key_not_found() -> Self {
        Self::gateway(
            404,
            "InvalidAccessKeyId.NotFound",
            "Specified access key is not found.",
        )
    }

    /// 400 (POP list; reported by users with status 400).
    pub fn timestamp_expired(detail: impl std::fmt::Display) -> Self {
        Self::gateway(
            400,
            "InvalidTimeStamp.Expired",
            format!("Specified time stamp or date value is expired. {detail}"),
        )
    }

    /// 400 (POP list).
    pub fn timestamp_format(value: &str) -> Self {
        Self::gateway(
            400,
            "InvalidTimeStamp.Format",
            format!(
                "Specified time stamp or date value is not well formatted: {value:?} (expected yyyy-MM-ddTHH:mm:ssZ)."
            ),
        )
    }

    /// 400 (POP list).
    pub fn nonce_used() -> Self {
        Self::gateway(
            400,
            "SignatureNonceUsed",
            "Specified signature nonce was used already.",
        )
    }

    /// 400 (POP list; status unconfirmed for KMS).
    pub fn missing_security_token() -> Self {
        Self::gateway(
            400,
            "MissingSecurityToken",
            "SecurityToken is mandatory for this action.",
        )
    }

    /// 400 (POP list; status unconfirmed for KMS).
    pub fn security_token_mismatch(detail: impl std::fmt::Display) -> Self {
        Self::gateway(
            400,
            "InvalidSecurityToken.MismatchWithAccessKey",
            format!("Specified SecurityToken mismatch with the AccessKey. {detail}"),
        )
    }

    /// 400 (POP list; status unconfirmed for KMS).
    pub fn security_token_expired() -> Self {
        Self::gateway(
            400,
            "InvalidSecurityToken.Expired",
            "Specified SecurityToken is expired.",
        )
    }

    /// 404 (POP list): unknown action, or an action under a version this product lacks.
    pub fn api_not_found(detail: impl std::fmt::Display) -> Self {
        Self::gateway(
            404,
            "InvalidApi.NotFound",
            format!("Specified api is not found, please check your url and method. {detail}"),
        )
    }

    /// 400 (POP list): a required common request header is absent.
    pub fn missing_header(name: &str) -> Self {
        Self::gateway(
            400,
            "MissingParameter",
            format!(
                "The input parameter \"{name}\" that is mandatory for processing this request is not supplied."
            ),
        )
    }

    /// 403 (KMS error table).
    pub fn unsupported_http_method(method: &str) -> Self {
        Self::gateway(
            403,
            "UnsupportedHTTPMethod",
            format!("Specified HTTP method {method} is not supported; use POST or GET."),
        )
    }

    /// 400 (POP list): only ACS3-HMAC-SHA256 is implemented here.
    pub fn invalid_signature_method(method: &str) -> Self {
        Self::gateway(
            400,
            "InvalidSignatureMethod",
            format!(
                "Specified signature method {method:?} is not supported (this emulator implements ACS3-HMAC-SHA256)."
            ),
        )
    }

    // ---- KMS service errors ---------------------------------------------------------------

    /// 400 MissingParameter for an action parameter.
    pub fn missing_parameter(name: &str) -> Self {
        Self::service(
            400,
            "MissingParameter",
            format!(
                "The input parameter \"{name}\" that is mandatory for processing this request is not supplied."
            ),
        )
    }

    /// 400 InvalidParameter, with what was wrong.
    pub fn invalid_parameter(name: &str, detail: impl std::fmt::Display) -> Self {
        Self::service(
            400,
            "InvalidParameter",
            format!("The specified parameter \"{name}\" is not valid. {detail}"),
        )
    }

    pub fn key_not_found(detail: impl std::fmt::Display) -> Self {
        Self::service(
            404,
            "Forbidden.KeyNotFound",
            format!("The specified Key is not found. {detail}"),
        )
    }

    pub fn alias_not_found(alias: &str) -> Self {
        Self::service(
            404,
            "Forbidden.AliasNotFound",
            format!("The specified Alias is not found: {alias}"),
        )
    }

    pub fn dkms_instance_not_found(id: &str) -> Self {
        Self::service(
            403,
            "Forbidden.DKMSInstanceNotFound",
            format!("The specified DKMS Instance is not found: {id}"),
        )
    }

    pub fn alias_already_exists(alias: &str) -> Self {
        Self::service(
            400,
            "AliasAlreadyExists",
            format!("The specified Alias already exists: {alias}"),
        )
    }

    pub fn state_conflict(code: &str, detail: impl std::fmt::Display) -> Self {
        Self::service(409, code, format!("{detail}"))
    }

    pub fn unsupported_operation(detail: impl std::fmt::Display) -> Self {
        Self::service(
            400,
            "UnsupportedOperation",
            format!("This action is not supported. {detail}"),
        )
    }

    pub fn limit_exceeded(detail: impl std::fmt::Display) -> Self {
        Self::service(400, "Rejected.LimitExceeded", format!("{detail}"))
    }
}
