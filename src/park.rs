//! Parking a request and resuming it: a request waiting for keys or metadata (access phase) and
//! a sign-in callback waiting for its code exchange (server-rewrite phase) both sleep on a
//! timer of their connection and run nginx's phases again when it fires, the way nginx's
//! `limit_req` delays a request. Below the access phase and the callback, which both use it.

use std::sync::{Arc, Mutex};

use entra_core::exchange::ExchangeError;
use entra_core::signin::Matched;
use ngx::core::Status;
use ngx::ffi::{
    ngx_add_timer, ngx_handle_write_event, ngx_http_block_reading, ngx_http_core_run_phases,
    ngx_http_finalize_request, ngx_http_request_t, ngx_http_test_reading, ngx_int_t, NGX_OK,
};

use crate::log::{guard, request_log};
use crate::response::INTERNAL_ERROR;
use crate::worker::{self, Awaited, Worker};

/// What a parked request waits for, which sets how often it looks: it watches the shared zone,
/// so a fetch or a lookup made by another worker wakes it too (its own worker's wakes it at once).
#[derive(Clone, Copy)]
pub enum Waiting {
    /// Keys or metadata, a code exchange: every 20 ms.
    Keys,
    /// Graph's answer of this key, slower than a key fetch and possibly a hundred users at
    /// once: every 100 ms.
    Groups([u8; 32]),
}

impl Waiting {
    fn poll_ms(self) -> usize {
        match self {
            Waiting::Keys => 20,
            Waiting::Groups(_) => 100,
        }
    }

    fn awaited(self) -> Awaited {
        match self {
            Waiting::Keys => Awaited::Keys,
            Waiting::Groups(key) => Awaited::Lookup(key),
        }
    }
}

/// Parks the request: a timer on the connection's write event (deleted with the connection if
/// the client goes), then the phases run again from the one that parked it.
///
/// # Safety
/// `r` is a valid request.
pub unsafe fn park(r: *mut ngx_http_request_t, waiting: Waiting) -> ngx_int_t {
    // SAFETY: per the contract; a request's connection has a write event.
    unsafe {
        let wev = (*(*r).connection).write;
        (*wev).set_delayed(1);
        ngx_add_timer(wev, waiting.poll_ms());
        (*r).read_event_handler = Some(ngx_http_test_reading);
        (*r).write_event_handler = Some(resume);
    }
    Status::NGX_AGAIN.into()
}

/// Parks a request waiting for keys, metadata or a Graph lookup, counted among the worker's
/// waiters from its first wait on (when it had no `previous_wait`).
///
/// # Safety
/// `r` is a valid request.
pub unsafe fn park_waiter(
    r: *mut ngx_http_request_t,
    worker: &Worker,
    previous_wait: Option<u64>,
    waiting: Waiting,
) -> ngx_int_t {
    // SAFETY: per the contract.
    if previous_wait.is_none() && unsafe { worker.wait_for((*r).main, waiting.awaited()) }.is_err() {
        return INTERNAL_ERROR;
    }
    // SAFETY: per the contract.
    unsafe { park(r, waiting) }
}

unsafe extern "C" fn resume(r: *mut ngx_http_request_t) {
    // SAFETY: nginx calls the write event handler set by `park` with the parked request.
    guard(unsafe { request_log(r) }, "a parked request", (), || unsafe {
        let wev = (*(*r).connection).write;
        if (*wev).delayed() != 0 {
            // Woken before the timer: keep waiting.
            if ngx_handle_write_event(wev, 0) != NGX_OK as ngx_int_t {
                ngx_http_finalize_request(r, INTERNAL_ERROR);
            }
            return;
        }
        (*r).read_event_handler = Some(ngx_http_block_reading);
        (*r).write_event_handler = Some(ngx_http_core_run_phases);
        ngx_http_core_run_phases(r);
    })
}

/// Where the pool thread leaves the code exchange's answer for the parked callback.
pub type ExchangeAnswer = Arc<Mutex<Option<Result<String, ExchangeError>>>>;

/// A code exchange on its way: shared by the parked callback and the pool thread.
pub struct Pending {
    pub answer: ExchangeAnswer,
    pub matched: Matched,
    /// When the request stops waiting (ms).
    pub deadline: u64,
    /// The ID token named a key this worker does not have, and a refresh was asked for.
    pub waiting_for_keys: bool,
    _parked: ParkedCallback,
}

impl Pending {
    pub fn new(worker: &Worker, answer: ExchangeAnswer, matched: Matched, deadline: u64) -> Pending {
        Pending { answer, matched, deadline, waiting_for_keys: false, _parked: ParkedCallback::new(worker) }
    }

    /// The pool thread's answer, once it came (taken out).
    pub fn take_answer(&self) -> Option<Result<String, ExchangeError>> {
        self.answer.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// Puts an answer back, to be read at the next poll.
    pub fn keep_answer(&self, answer: Result<String, ExchangeError>) {
        *self.answer.lock().unwrap_or_else(|p| p.into_inner()) = Some(answer);
    }
}

/// One of the worker's parked callbacks, counted while it lives.
struct ParkedCallback;

impl ParkedCallback {
    fn new(worker: &Worker) -> ParkedCallback {
        worker.parked_callbacks.set(worker.parked_callbacks.get() + 1);
        ParkedCallback
    }
}

impl Drop for ParkedCallback {
    fn drop(&mut self) {
        if let Some(worker) = worker::current() {
            worker.parked_callbacks.set(worker.parked_callbacks.get().saturating_sub(1));
        }
    }
}
