//! glibc malloc tuning: the agent is a small, long-lived process whose few
//! big allocations are transient (a patch scan streams the ~50 MB apt index
//! through 256 KiB buffers; an inventory reads the ~1 MB dpkg status), and
//! glibc's defaults keep that memory resident long after it was freed:
//!
//! - every thread that allocates may get its own arena (up to 8 per core),
//!   and blocking-pool threads come and go, so freed memory is spread over
//!   several heaps that each keep their own free lists;
//! - the mmap threshold adapts upwards to the largest freed mmapped block,
//!   so after the first scan its buffers come from the heap, not from mmap,
//!   and stay there;
//! - a heap only shrinks from its top, so one live allocation above the
//!   freed buffers pins all of them.
//!
//! [`configure`] pins one arena and fixed thresholds at start-up;
//! [`release_free_memory`] hands free pages back after the big periodic jobs.
//! Other platforms and allocators: both are no-ops.
#![allow(unsafe_code)]

/// Allocations at or above this size are mmapped and unmapped on free.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 128 * 1024;
/// A heap whose free top exceeds this is trimmed at once.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_THRESHOLD: libc::c_int = 256 * 1024;

/// Call once at start-up, before the runtime starts its threads.
pub fn configure() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; glibc applies them
    // under its own locks and it is safe to call from any thread.
    unsafe {
        // The agent's threads mostly sleep: contention on one arena is nil.
        libc::mallopt(libc::M_ARENA_MAX, 1);
        // Setting either threshold also turns off glibc's dynamic raising of both.
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
    }
}

/// Returns free heap pages to the kernel (all arenas, not just the top).
/// Costs a walk over the free lists: call it after a big job, not per sample.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes the arena locks itself and frees nothing in use.
    unsafe {
        libc::malloc_trim(0);
    }
}
