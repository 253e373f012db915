//! sigstore-kms-alibabakms: every piece of logic of the plugin, compiled to a WebAssembly
//! component. The host only sandboxes it and carries its HTTP.
//!
//! Data flows one way: `protocol` (cosign's JSON) → `signer` (what each method does) →
//! `kms` (typed KMS actions) → `transport` (the seam; `wasi_http` is the one implementation
//! that touches the network). `acs3`, `keyref`, `crypto` and `credentials` are pure and
//! unit-tested natively.

pub mod acs3;
pub mod cache;
pub mod credentials;
pub mod crypto;
pub mod diag;
pub mod keyref;
pub mod kms;
pub mod protocol;
pub mod retry;
pub use alibabakms_contract::rfc3339;
pub mod signer;
pub mod transport;
pub mod untrusted;

#[cfg(target_family = "wasm")]
mod component;
#[cfg(target_family = "wasm")]
mod wasi_http;
