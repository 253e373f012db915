//! What the guest sees when a request fails: hyper, connect, TLS and I/O errors mapped to
//! wasi-http error codes, and the error chain as text for logs. Apart: one table, used by the
//! client and the body alike.

use std::error::Error as StdError;
use std::io;

use wasmtime_wasi_http::Error as HttpError;

use super::connect::{ConnectError, ProxyFailure};

/// Maps a client, connect, TLS or body error to the wasi-http error code the guest sees.
///
/// Errors nest (`legacy::Error` → `io::Error` → `io::Error` → `rustls::Error`), and
/// `io::Error::source` skips the error it wraps, so the walk also follows `get_ref`.
pub(super) fn error_code(err: &(dyn StdError + 'static)) -> HttpError {
    let mut fallback = None;
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return tls_error_code(tls);
        }
        if let Some(connect) = e.downcast_ref::<ConnectError>() {
            return connect_code(connect);
        }
        if let Some(guest) = e.downcast_ref::<HttpError>() {
            // The guest's own request body failed (e.g. more bytes than content-length).
            return match guest {
                HttpError::HttpRequestBodySize(size) => HttpError::HttpRequestBodySize(*size),
                other => HttpError::InternalError(Some(other.to_string())),
            };
        }
        if let Some(io) = e.downcast_ref::<io::Error>() {
            if fallback.is_none() {
                fallback = io_error_code(io);
            }
            if let Some(inner) = io.get_ref() {
                current = Some(inner as &(dyn StdError + 'static));
                continue;
            }
        }
        if let Some(hyper) = e.downcast_ref::<hyper::Error>() {
            if fallback.is_none() {
                fallback = Some(hyper_error_code(hyper));
            }
        }
        current = e.source();
    }
    fallback.unwrap_or_else(|| HttpError::InternalError(Some(chain_text(err))))
}

fn connect_code(err: &ConnectError) -> HttpError {
    match err {
        ConnectError::Timeout => HttpError::ConnectionTimeout,
        ConnectError::Dns(_) => HttpError::DnsError {
            rcode: None,
            info_code: None,
        },
        ConnectError::Connect(io) => connect_error_code(io),
        // An unreachable proxy reads like an unreachable destination (refused, no address…);
        // the host's stderr line names the proxy. A refusing or broken proxy is a connection
        // failure too, never a sandbox denial.
        ConnectError::Proxy { failure, .. } => match failure {
            ProxyFailure::Unreachable(inner) => connect_code(inner),
            ProxyFailure::Refused { .. } | ProxyFailure::Protocol(_) | ProxyFailure::Io(_) => {
                HttpError::DestinationUnavailable
            }
        },
    }
}

fn tls_error_code(err: &rustls::Error) -> HttpError {
    match err {
        rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented => {
            HttpError::TlsCertificateError
        }
        rustls::Error::AlertReceived(alert) => HttpError::TlsAlertReceived {
            alert_id: Some(u8::from(*alert)),
            alert_message: Some(format!("{alert:?}")),
        },
        _ => HttpError::TlsProtocolError,
    }
}

fn connect_error_code(err: &io::Error) -> HttpError {
    match err.kind() {
        io::ErrorKind::ConnectionRefused => HttpError::ConnectionRefused,
        io::ErrorKind::TimedOut => HttpError::ConnectionTimeout,
        io::ErrorKind::HostUnreachable | io::ErrorKind::NetworkUnreachable => {
            HttpError::DestinationUnavailable
        }
        io::ErrorKind::AddrNotAvailable => HttpError::DestinationIpUnroutable,
        _ => HttpError::ConnectionRefused,
    }
}

fn io_error_code(err: &io::Error) -> Option<HttpError> {
    match err.kind() {
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe
        | io::ErrorKind::UnexpectedEof => Some(HttpError::ConnectionTerminated),
        io::ErrorKind::TimedOut => Some(HttpError::ConnectionReadTimeout),
        _ => None,
    }
}

fn hyper_error_code(err: &hyper::Error) -> HttpError {
    if err.is_incomplete_message() {
        HttpError::HttpResponseIncomplete
    } else if err.is_timeout() {
        HttpError::ConnectionReadTimeout
    } else if err.is_closed() || err.is_canceled() || err.is_body_write_aborted() {
        HttpError::ConnectionTerminated
    } else {
        HttpError::HttpProtocolError
    }
}

/// `outer: inner: innermost`, for logs and internal-error messages.
pub(super) fn chain_text(err: &(dyn StdError + 'static)) -> String {
    let mut text = err.to_string();
    let mut current = err.source();
    while let Some(e) = current {
        let part = e.to_string();
        if !text.ends_with(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        current = e.source();
    }
    text
}
