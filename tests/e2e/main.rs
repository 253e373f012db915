//! End-to-end tests: the built plugin binary, driven exactly as cosign drives it, against the
//! strict KMS emulator on loopback. Compiled as an integration test of the host package so
//! Cargo builds the binary first and hands us its path.

mod harness;

mod budget;
mod cache;
mod cosign;
mod cosign_calls;
mod credentials;
mod credentials_profiles;
mod credentials_remote;
mod cross;
mod diagnostics;
mod errors;
mod expiry;
mod flow;
mod gateway;
mod hardening;
mod keys;
mod load;
mod node;
mod proxy;
mod reliability;
mod sandbox;
