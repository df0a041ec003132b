//! Allocator settings of the binaries, which run on mimalloc.

/// mimalloc's `purge_delay` option (`mi_option_purge_delay` in `mimalloc.h`).
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// How long freed memory stays with the process before mimalloc returns it to the OS (ms).
/// mimalloc's default (10 ms) hands a merge batch's buffers back between two statements and
/// faults them in again, zeroed, for the next: a million page faults and 37% of the merger's CPU
/// in one benchmark. A second keeps them across batches and still returns memory after a
/// backlog.
pub const PURGE_DELAY_MS: i64 = 1000;

/// Applies the settings; call first in `main` of a binary whose global allocator is mimalloc.
#[allow(unsafe_code)]
pub fn configure() {
    // SAFETY: sets an option value; mimalloc reads options atomically.
    unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, PURGE_DELAY_MS as std::ffi::c_long) };
}

/// The process's resident memory in bytes (`VmRSS`; Linux only, `None` elsewhere).
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Returns memory freed to the allocator to the OS now, rather than after [`PURGE_DELAY_MS`]:
/// for a process over its memory budget.
#[allow(unsafe_code)]
pub fn release() {
    // SAFETY: mi_collect only walks and purges the allocator's own free memory.
    unsafe { libmimalloc_sys::mi_collect(true) };
}
