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
