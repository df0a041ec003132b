//! Randomness for crash tests that a failure can replay: a small xorshift and a seed that is
//! printed (and taken from `TIDEMARK_CRASH_SEED` when set).

use std::time::Duration;

/// A small xorshift.
#[derive(Debug)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A duration in `[lo, hi)` ms.
    pub fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.next_u64() % (hi - lo))
    }
}

/// `TIDEMARK_CRASH_SEED`, else one from the clock; printed with `what` so a failure can be
/// replayed.
pub fn seed(what: &str) -> u64 {
    let s = std::env::var("TIDEMARK_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("{what} seed: {s} (set TIDEMARK_CRASH_SEED to replay)");
    s
}
