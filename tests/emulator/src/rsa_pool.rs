//! RSA private keys made ahead of time. A 3072-bit key takes about one to a few seconds even
//! with `rsa`/`num-bigint-dig` optimised (the root Cargo.toml builds them at opt-level 3 in
//! the dev profile), too slow to make while a client waits on every `CreateKey` or
//! `CreateKeyVersion` of a test.
//!
//! So each modulus size has a small per-process pool, filled by a background thread the first
//! time a key of that size is asked for (or by [`prewarm`]). A key is handed out once and
//! removed, so every key the emulator uses is a real, freshly generated and distinct key; an
//! empty pool just means the caller generates one itself.

use std::collections::{HashMap, HashSet};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};

use rand_core::OsRng;
use rsa::RsaPrivateKey;

/// Spare keys kept per size once that size has been used.
const SPARES_2048: usize = 2;
/// A 3072-bit key costs seconds of CPU: keep one, once a second one has been asked for.
const SPARES_3072: usize = 1;

#[derive(Default)]
struct Pool {
    ready: HashMap<usize, Vec<RsaPrivateKey>>,
    /// Sizes a filler thread is working on (one thread per size).
    filling: HashSet<usize>,
    /// How many keys each size's filler keeps ready.
    target: HashMap<usize, usize>,
    /// Callers of [`take`] waiting for a key, per size.
    waiting: HashMap<usize, usize>,
    /// Keys handed out so far, per size.
    taken: HashMap<usize, usize>,
}

impl Pool {
    fn ready(&self, bits: usize) -> usize {
        self.ready.get(&bits).map_or(0, Vec::len)
    }

    /// Keys of `bits` bits the filler should have ready.
    fn wanted(&self, bits: usize) -> usize {
        self.target.get(&bits).copied().unwrap_or(0) + self.waiting.get(&bits).copied().unwrap_or(0)
    }
}

fn pool() -> &'static (Mutex<Pool>, Condvar) {
    static POOL: OnceLock<(Mutex<Pool>, Condvar)> = OnceLock::new();
    POOL.get_or_init(Default::default)
}

fn lock() -> MutexGuard<'static, Pool> {
    pool().0.lock().unwrap_or_else(|e| e.into_inner())
}

/// A freshly generated `bits`-bit key: a spare from the pool, or the next one the size's
/// filler thread makes (never two generations of one size at once, so a caller does not race
/// the filler for the CPU). The pool is topped up again in the background.
pub fn take(bits: usize) -> RsaPrivateKey {
    let mut p = lock();
    let taken = p.taken.get(&bits).copied().unwrap_or(0) + 1;
    p.taken.insert(bits, taken);
    // A process that makes one 3072-bit key should not pay for a spare it never uses.
    let spares = match (bits > 2048, taken) {
        (false, _) => SPARES_2048,
        (true, 1) => 0,
        (true, _) => SPARES_3072,
    };
    let target = p.target.entry(bits).or_insert(0);
    *target = (*target).max(spares);
    *p.waiting.entry(bits).or_insert(0) += 1;
    let key = loop {
        if let Some(key) = p.ready.get_mut(&bits).and_then(Vec::pop) {
            break Some(key);
        }
        if !p.filling.contains(&bits) && !start_filler(&mut p, bits) {
            break None;
        }
        p = pool().1.wait(p).unwrap_or_else(|e| e.into_inner());
    };
    *p.waiting.get_mut(&bits).expect("counted above") -= 1;
    if !p.filling.contains(&bits) && p.ready(bits) < p.wanted(bits) {
        start_filler(&mut p, bits);
    }
    drop(p);
    // Without a thread, make the key here.
    key.unwrap_or_else(|| generate(bits))
}

/// Asks for `count` keys of `bits` bits to be made in the background (returns at once).
pub fn prewarm(bits: usize, count: usize) {
    let mut p = lock();
    let target = p.target.entry(bits).or_insert(0);
    *target = (*target).max(count);
    if !p.filling.contains(&bits) && p.ready(bits) < p.wanted(bits) {
        start_filler(&mut p, bits);
    }
}

/// Blocks until the pool holds at least `count` keys of `bits` bits (for tests of the pool).
#[cfg(test)]
pub fn wait_ready(bits: usize, count: usize) {
    let mut p = lock();
    while p.ready(bits) < count {
        p = pool().1.wait(p).unwrap();
    }
}

fn generate(bits: usize) -> RsaPrivateKey {
    RsaPrivateKey::new(&mut OsRng, bits).expect("RSA key generation succeeds for 2048-4096 bits")
}

/// Starts the filler thread of `bits`, which makes keys until the pool has what is wanted.
/// False if no thread could be started.
fn start_filler(p: &mut Pool, bits: usize) -> bool {
    p.filling.insert(bits);
    let spawned = std::thread::Builder::new()
        .name(format!("kms-emulator-rsa{bits}"))
        .spawn(move || loop {
            let key = generate(bits);
            let mut p = lock();
            p.ready.entry(bits).or_default().push(key);
            pool().1.notify_all();
            if p.ready(bits) >= p.wanted(bits) {
                p.filling.remove(&bits);
                return;
            }
        });
    if spawned.is_err() {
        p.filling.remove(&bits);
    }
    spawned.is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::traits::PublicKeyParts;

    #[test]
    fn pooled_keys_are_real_and_never_handed_out_twice() {
        prewarm(2048, 3);
        wait_ready(2048, 3);
        let keys: Vec<RsaPrivateKey> = (0..4).map(|_| take(2048)).collect();
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(k.size(), 256);
            k.validate().unwrap();
            for other in &keys[i + 1..] {
                assert_ne!(k.n(), other.n());
            }
        }
    }
}
