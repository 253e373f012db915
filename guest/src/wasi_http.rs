//! The only code that touches the network: requests go out through `wasi:http`, so the host's
//! sandbox (allow-list, trust roots, pooled connection, timeouts) applies to every one of them.

use crate::transport::{self, HttpRequest, HttpResponse, Transport, TransportError};
use std::io::Write;
use wasip2::clocks::monotonic_clock;
use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    ErrorCode, Fields, FutureIncomingResponse, Method, OutgoingBody, OutgoingRequest,
    RequestOptions, Scheme,
};
use wasip2::io::poll::Pollable;
use wasip2::io::streams::StreamError;

/// Answers larger than this are refused: KMS and STS answers are a few KiB, and a hostile
/// endpoint must not make the plugin allocate without bound.
const MAX_RESPONSE_BYTES: u64 = 1 << 20;

pub struct WasiHttp;

impl Transport for WasiHttp {
    fn send_all(&self, requests: Vec<HttpRequest>) -> Vec<Result<HttpResponse, TransportError>> {
        // Start every request before waiting on any: the host runs them concurrently. Each
        // exchange, its body included, ends by its timeout: the host bounds the wait for each
        // chunk, but a server sending a byte now and then would never trip that alone.
        let started: Vec<_> = requests
            .iter()
            .map(|req| {
                let until = req
                    .timeout
                    .map(|t| monotonic_clock::now().saturating_add(t.as_nanos() as u64));
                start(req).map(|f| (f, until))
            })
            .collect();
        started
            .into_iter()
            .zip(&requests)
            .map(|(fut, req)| fut.and_then(|(f, until)| finish(f, &req.authority, until)))
            .collect()
    }
}

fn start(req: &HttpRequest) -> Result<FutureIncomingResponse, TransportError> {
    let other = |detail: String| TransportError::Other {
        authority: req.authority.clone(),
        detail,
    };
    let mut entries: Vec<(String, Vec<u8>)> = req
        .headers
        .iter()
        .map(|(n, v)| (n.clone(), v.as_bytes().to_vec()))
        .collect();
    // Every body goes out with its length, as Alibaba's official SDKs send it (Go's net/http:
    // `Content-Length: 0` for an empty POST or PUT, nothing for a GET). Without it the body
    // would be chunked, which some gateways and proxies refuse (411).
    if req.method != "GET" || !req.body.is_empty() {
        entries.push((
            "content-length".into(),
            req.body.len().to_string().into_bytes(),
        ));
    }
    let headers = Fields::from_list(&entries).map_err(|e| other(format!("bad header: {e:?}")))?;
    let outgoing = OutgoingRequest::new(headers);
    let method = match req.method {
        "GET" => Method::Get,
        "PUT" => Method::Put,
        _ => Method::Post,
    };
    outgoing
        .set_method(&method)
        .map_err(|_| other("bad method".into()))?;
    outgoing
        .set_scheme(Some(&match req.scheme {
            transport::Scheme::Https => Scheme::Https,
            transport::Scheme::Http => Scheme::Http,
        }))
        .map_err(|_| other("bad scheme".into()))?;
    outgoing
        .set_authority(Some(&req.authority))
        .map_err(|_| other(format!("bad authority {:?}", req.authority)))?;
    outgoing
        .set_path_with_query(Some(&req.path_and_query))
        .map_err(|_| other("bad path".into()))?;
    let options = RequestOptions::new();
    if let Some(t) = req.timeout {
        let ns = t.as_nanos().min(u64::MAX as u128) as u64;
        // Hosts may not support every timeout; the host keeps its own caps regardless.
        let _ = options.set_connect_timeout(Some(ns));
        let _ = options.set_first_byte_timeout(Some(ns));
        let _ = options.set_between_bytes_timeout(Some(ns));
    }
    if req.body.is_empty() {
        // A request whose body is never opened goes out with an empty one of known length.
        return outgoing_handler::handle(outgoing, Some(options))
            .map_err(|code| map_error(code, &req.authority));
    }
    let body = outgoing
        .body()
        .map_err(|_| other("request body unavailable".into()))?;
    let future = outgoing_handler::handle(outgoing, Some(options))
        .map_err(|code| map_error(code, &req.authority))?;
    {
        let mut stream = body
            .write()
            .map_err(|_| other("request body unavailable".into()))?;
        stream
            .write_all(&req.body)
            .map_err(|e| other(format!("writing the body: {e}")))?;
        stream
            .flush()
            .map_err(|e| other(format!("writing the body: {e}")))?;
    }
    OutgoingBody::finish(body, None).map_err(|code| map_error(code, &req.authority))?;
    Ok(future)
}

/// Waits until `ready` is, or the monotonic clock reaches `until`; whether `ready` won.
fn wait(ready: &Pollable, until: Option<u64>) -> bool {
    match until {
        None => {
            ready.block();
            true
        }
        Some(t) => {
            let timer = monotonic_clock::subscribe_instant(t);
            wasip2::io::poll::poll(&[ready, &timer]);
            ready.ready()
        }
    }
}

fn finish(
    future: FutureIncomingResponse,
    authority: &str,
    until: Option<u64>,
) -> Result<HttpResponse, TransportError> {
    let other = |detail: String| TransportError::Other {
        authority: authority.into(),
        detail,
    };
    let timeout = || TransportError::Timeout {
        authority: authority.into(),
    };
    if !wait(&future.subscribe(), until) {
        return Err(timeout());
    }
    let response = match future.get() {
        Some(Ok(Ok(r))) => r,
        Some(Ok(Err(code))) => return Err(map_error(code, authority)),
        _ => return Err(other("the response was lost".into())),
    };
    let status = response.status();
    let headers = response
        .headers()
        .entries()
        .into_iter()
        .map(|(n, v)| (n, String::from_utf8_lossy(&v).into_owned()))
        .collect();
    let incoming = response
        .consume()
        .map_err(|_| other("response body unavailable".into()))?;
    let mut body = Vec::new();
    {
        let stream = incoming
            .stream()
            .map_err(|_| other("response body unavailable".into()))?;
        loop {
            match stream.read(64 * 1024) {
                Ok(bytes) if bytes.is_empty() => {
                    if !wait(&stream.subscribe(), until) {
                        return Err(timeout());
                    }
                }
                Ok(bytes) => {
                    body.extend_from_slice(&bytes);
                    if body.len() as u64 > MAX_RESPONSE_BYTES {
                        return Err(other(format!(
                            "the response is larger than {MAX_RESPONSE_BYTES} bytes"
                        )));
                    }
                }
                Err(StreamError::Closed) => break,
                // A body cut short is a broken connection when wasi-http says so.
                Err(StreamError::LastOperationFailed(e)) => {
                    return Err(match wasip2::http::types::http_error_code(&e) {
                        Some(code) => map_error(code, authority),
                        None => other(format!("reading the response: {}", e.to_debug_string())),
                    })
                }
            }
        }
    }
    drop(incoming);
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

fn map_error(code: ErrorCode, authority: &str) -> TransportError {
    let authority = authority.to_string();
    match code {
        ErrorCode::HttpRequestDenied => TransportError::Denied { authority },
        ErrorCode::TlsCertificateError => TransportError::Tls {
            authority,
            detail: "the server's certificate is not trusted".into(),
        },
        ErrorCode::TlsProtocolError | ErrorCode::TlsAlertReceived(_) => TransportError::Tls {
            authority,
            detail: format!("{code:?}"),
        },
        ErrorCode::DnsError(_)
        | ErrorCode::DnsTimeout
        | ErrorCode::DestinationNotFound
        | ErrorCode::DestinationUnavailable
        | ErrorCode::DestinationIpProhibited
        | ErrorCode::DestinationIpUnroutable
        | ErrorCode::ConnectionRefused => TransportError::Connect {
            authority,
            detail: connect_detail(&code),
        },
        // Retried for idempotent actions (`retry::retryable_transport`).
        ErrorCode::ConnectionTerminated
        | ErrorCode::HttpProtocolError
        | ErrorCode::HttpResponseIncomplete => TransportError::Broken {
            authority,
            detail: format!("the connection broke before the answer ({code:?})"),
        },
        ErrorCode::ConnectionTimeout
        | ErrorCode::ConnectionReadTimeout
        | ErrorCode::HttpResponseTimeout => TransportError::Timeout { authority },
        other => TransportError::Other {
            authority,
            detail: format!("{other:?}"),
        },
    }
}

fn connect_detail(code: &ErrorCode) -> String {
    match code {
        ErrorCode::DnsError(_) | ErrorCode::DnsTimeout | ErrorCode::DestinationNotFound => {
            "the host name could not be resolved".into()
        }
        ErrorCode::ConnectionRefused => "connection refused".into(),
        ErrorCode::DestinationIpProhibited => "the address is prohibited".into(),
        _ => "the destination is unreachable".into(),
    }
}
