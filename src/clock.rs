//! The two clocks the module reads, both nginx's cached times (updated once per event loop turn):
//! wall-clock seconds for token lifetimes and the fetch schedule, and monotonic milliseconds
//! for timers and how long a fetch or a parked request has been going.

use ngx::ffi::{ngx_current_msec, ngx_time};

/// Seconds since the epoch.
pub fn now() -> u64 {
    ngx_time() as u64
}

/// Monotonic milliseconds (CLOCK_MONOTONIC: the same in every process of the machine).
pub fn now_ms() -> u64 {
    // SAFETY: a plain read of a variable nginx updates on the event loop's own thread.
    unsafe { ngx_current_msec as u64 }
}
