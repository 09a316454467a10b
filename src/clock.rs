//! The clocks the module reads, all nginx's cached times (updated once per event loop turn):
//! wall-clock seconds for token lifetimes and what `entra_status` shows, wall-clock milliseconds
//! for when a session signed in (compared with front-channel logouts), and the monotonic clock
//! for schedules (refreshes, retries, forced refreshes: a wall clock stepped backwards would
//! stall them), timers and how long a fetch or a parked request has been going.

use ngx::ffi::{ngx_cached_time, ngx_current_msec, ngx_time};

/// Seconds since the epoch.
pub fn now() -> u64 {
    ngx_time() as u64
}

/// Milliseconds since the epoch.
pub fn epoch_ms() -> u64 {
    // SAFETY: nginx points ngx_cached_time at a valid time slot once it has started, and only
    // this process's event loop thread updates it.
    let time = unsafe { &*ngx_cached_time };
    (time.sec as u64).saturating_mul(1000).saturating_add(time.msec as u64)
}

/// Monotonic seconds, for the schedules kept in the shared zone.
pub fn mono_s() -> u64 {
    now_ms() / 1000
}

/// Monotonic milliseconds (CLOCK_MONOTONIC: the same in every process of the machine).
pub fn now_ms() -> u64 {
    // SAFETY: a plain read of a variable nginx updates on the event loop's own thread.
    unsafe { ngx_current_msec as u64 }
}
