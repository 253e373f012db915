//! sigstore-kms-alibabakms: every piece of logic of the plugin, compiled to a WebAssembly
//! component. The host only sandboxes it and carries its HTTP.
//!
//! Data flows one way: `protocol` (cosign's JSON) → `signer` (what each method does) →
//! `kms` (typed KMS actions) → `rpc` (the one client of Alibaba's signed RPC API, which
//! `credentials` uses for STS too) → `transport` (the seam; `wasi_http` is the one
//! implementation that touches the network). The deadline of a call travels as a value
//! (`retry::Deadline`) from `protocol` to everything that waits. `acs3`, `access_key`,
//! `keyref`, `crypto` and `credentials` are pure and unit-tested natively.

pub mod access_key;
pub mod acs3;
pub mod cache;
pub mod credentials;
pub mod crypto;
pub mod diag;
pub mod keyref;
pub mod kms;
pub mod protocol;
pub mod retry;
pub mod rpc;
pub use alibabakms_contract::rfc3339;
pub mod signer;
pub mod transport;
pub mod untrusted;

#[cfg(target_family = "wasm")]
mod component;
#[cfg(target_family = "wasm")]
mod wasi_http;
