//! `sha256-soft BYTES`: hashes BYTES of the benchmark's pattern with sha2's portable
//! software code (no SHA extensions) and prints `seconds hex-digest`.
//!
//! The pattern must match `pattern()` in the benchmark: 256 KiB of xorshift bytes, repeated.

use sha2::{Digest, Sha256};
use std::time::Instant;

const CHUNK: usize = 256 * 1024;

fn pattern() -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..CHUNK)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn main() {
    let bytes: u64 = match std::env::args().nth(1).map(|a| a.parse()) {
        Some(Ok(n)) => n,
        _ => {
            eprintln!("usage: sha256-soft BYTES");
            std::process::exit(2);
        }
    };
    let chunk = pattern();
    let started = Instant::now();
    let mut hasher = Sha256::new();
    let mut left = bytes;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        hasher.update(&chunk[..n]);
        left -= n as u64;
    }
    let digest = hasher.finalize();
    let secs = started.elapsed().as_secs_f64();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    println!("{secs} {hex}");
}
