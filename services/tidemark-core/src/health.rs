//! Whether a process's loops make progress, read by `/healthz` and `/readyz`.
//!
//! A loop (ingest's consume loop, the merge cycle) registers a [`Beat`] and marks each turn that
//! worked ([`Beat::ok`]) or failed ([`Beat::failed`]). Readiness is "the last turn worked, and
//! recently": a merger whose every cycle fails, or an ingest loop stuck in a retry, is not ready,
//! and says why. A condition the process cannot leave by itself ([`broken`]) makes it unhealthy
//! until it is restarted, with the cause.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The progress of one loop.
#[derive(Debug)]
pub struct Beat {
    /// Milliseconds since [`epoch`] of the last turn that worked.
    last_ok_ms: AtomicU64,
    /// The last turn's error, with how many turns in a row failed; `None` once one works.
    failing: Mutex<Option<(u64, String)>>,
    /// Whether `failing` may be set (so a working turn takes no lock).
    has_failed: AtomicBool,
    /// Longer than this without a turn that worked is a wedged loop.
    stale_after: Duration,
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    epoch().elapsed().as_millis() as u64
}

impl Beat {
    /// A turn worked (cheap: one atomic store, plus a lock only after failures).
    pub fn ok(&self) {
        self.last_ok_ms.store(now_ms(), Ordering::Relaxed);
        if self.has_failed.swap(false, Ordering::Relaxed) {
            *self.failing.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
    }

    /// A turn failed with `error`.
    pub fn failed(&self, error: &str) {
        let mut f = self.failing.lock().unwrap_or_else(|p| p.into_inner());
        let n = f.as_ref().map_or(0, |(n, _)| *n) + 1;
        *f = Some((n, error.to_owned()));
        self.has_failed.store(true, Ordering::Relaxed);
    }

    /// `Ok` when the last turn worked within `stale_after`; otherwise why not.
    pub fn ready(&self) -> Result<(), String> {
        if let Some((n, e)) = self
            .failing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            return Err(format!("the last {n} turn(s) failed: {e}"));
        }
        let idle =
            Duration::from_millis(now_ms().saturating_sub(self.last_ok_ms.load(Ordering::Relaxed)));
        if idle > self.stale_after {
            return Err(format!(
                "no progress for {} s (stuck in a retry or a wait; see the logs)",
                idle.as_secs()
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Default)]
struct Registry {
    beats: BTreeMap<&'static str, Arc<Beat>>,
    broken: Option<String>,
}

fn registry() -> &'static Mutex<Registry> {
    static R: OnceLock<Mutex<Registry>> = OnceLock::new();
    R.get_or_init(Default::default)
}

fn lock() -> std::sync::MutexGuard<'static, Registry> {
    registry().lock().unwrap_or_else(|p| p.into_inner())
}

/// The beat of the loop `name` (created on first use, counted as a fresh start).
pub fn beat(name: &'static str, stale_after: Duration) -> Arc<Beat> {
    lock()
        .beats
        .entry(name)
        .or_insert_with(|| {
            Arc::new(Beat {
                last_ok_ms: AtomicU64::new(now_ms()),
                failing: Mutex::new(None),
                has_failed: AtomicBool::new(false),
                stale_after,
            })
        })
        .clone()
}

/// Readiness of every registered loop, by name.
pub fn loops() -> Vec<(&'static str, Result<(), String>)> {
    let beats: Vec<_> = lock().beats.iter().map(|(n, b)| (*n, b.clone())).collect();
    beats.into_iter().map(|(n, b)| (n, b.ready())).collect()
}

/// The process cannot go on by itself (`cause` says why): `/healthz` fails from now on.
pub fn broken(cause: String) {
    tracing::error!(cause = %cause, "unhealthy: needs an operator");
    lock().broken.get_or_insert(cause);
}

/// `Err(cause)` once [`broken`] was called.
pub fn liveness() -> Result<(), String> {
    lock().broken.clone().map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_loop_is_not_ready_until_a_turn_works() {
        let b = beat("test-failing", Duration::from_secs(60));
        assert_eq!(b.ready(), Ok(()));
        b.failed("warehouse: connection refused");
        b.failed("warehouse: connection refused");
        let e = b.ready().unwrap_err();
        assert!(
            e.contains("last 2 turn(s)") && e.contains("connection refused"),
            "{e}"
        );
        b.ok();
        assert_eq!(b.ready(), Ok(()));
    }

    #[test]
    fn a_loop_without_progress_goes_stale() {
        let b = beat("test-stale", Duration::from_millis(20));
        std::thread::sleep(Duration::from_millis(40));
        assert!(b.ready().unwrap_err().contains("no progress"));
        b.ok();
        assert_eq!(b.ready(), Ok(()));
        assert!(loops().iter().any(|(n, _)| *n == "test-stale"));
    }
}
