//! Blocking work off the event loop: nginx thread pools, one task per job. Key fetches use
//! nginx's `default` pool; code exchanges use `entra_signin`, so that a burst of sign-ins cannot
//! queue key refreshes behind it; Graph lookups use `entra_graph`, so that neither a burst of
//! users in many groups nor a slow Graph can delay sign-ins or key refreshes.

use core::ffi::c_void;
use core::mem::size_of;
use core::ptr;
use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};

use ngx::ffi::{
    ngx_array_create, ngx_array_push, ngx_conf_t, ngx_cycle, ngx_cycle_t, ngx_event_t, ngx_int_t, ngx_log_t,
    ngx_module_t, ngx_str_t, ngx_thread_pool_add, ngx_thread_pool_get, ngx_thread_task_alloc,
    ngx_thread_task_post, ngx_thread_task_t, NGX_OK,
};

use crate::log::{debug, guard};
use crate::worker::cycle_log;

/// nginx's default pool (32 threads unless `thread_pool default ...;` says otherwise).
pub const DEFAULT_POOL: &str = "default";
/// The sign-in pool, and how it is made when the configuration does not declare it.
pub const SIGNIN_POOL: &str = "entra_signin";
/// The Graph lookups' pool.
pub const GRAPH_POOL: &str = "entra_graph";
/// The threads of the module's own pools, when the configuration does not declare them.
const OWN_POOL_SIZE: &str = "threads=8";

/// A job: `run` on a pool thread, touching only its own data; `done` back on the event loop.
pub trait Job: Send {
    fn run(&mut self);
    fn done(self: Box<Self>);
    /// What the job is, for the log.
    fn what(&self) -> &'static str;
}

extern "C" {
    /// nginx's `thread_pool` module (not in nginx-sys' bindings).
    static mut ngx_thread_pool_module: ngx_module_t;
}

/// Makes sure the pool named `name` exists: nginx creates `default` on request, but any other
/// pool only from a `thread_pool` line, so the module declares `entra_signin` and `entra_graph`
/// itself, as if the configuration said `thread_pool entra_signin threads=8;`.
pub fn add_pool(cf: *mut ngx_conf_t, name: &'static str) -> Result<(), &'static str> {
    if name == DEFAULT_POOL {
        // SAFETY: called while the configuration is parsed; null names the default pool.
        return match unsafe { ngx_thread_pool_add(cf, ptr::null_mut()) }.is_null() {
            true => Err("cannot add nginx's default thread pool"),
            false => Ok(()),
        };
    }
    // SAFETY: the thread_pool module's command table is a static array whose first entry is
    // `thread_pool`; its handler reads only cf->args and adds the pool to the cycle.
    unsafe {
        let command = (*ptr::addr_of!(ngx_thread_pool_module)).commands;
        let Some(set) = command.as_ref().and_then(|c| c.set) else { return Err("no thread_pool directive") };
        let args = ngx_array_create((*cf).pool, 3, size_of::<ngx_str_t>());
        if args.is_null() {
            return Err("out of memory");
        }
        for word in ["thread_pool", name, OWN_POOL_SIZE] {
            let slot = ngx_array_push(args) as *mut ngx_str_t;
            if slot.is_null() {
                return Err("out of memory");
            }
            *slot = ngx_str_t { len: word.len(), data: word.as_ptr() as *mut u8 };
        }
        let saved = (*cf).args;
        (*cf).args = args;
        let conf = *(*(*cf).cycle).conf_ctx.add((*ptr::addr_of!(ngx_thread_pool_module)).index);
        let rv = set(cf, command, conf as *mut c_void);
        (*cf).args = saved;
        // nginx has logged why (a `thread_pool entra_signin` line of the operator's is a
        // duplicate: the module declares it).
        if !rv.is_null() {
            return Err("cannot add the module's thread pool");
        }
    }
    Ok(())
}

/// Hands a job to the pool `name`; `false` (the job dropped) when the pool is missing or full.
pub fn post(name: &'static str, job: Box<dyn Job>) -> bool {
    let mut pool_name = ngx_str_t { len: name.len(), data: name.as_ptr() as *mut u8 };
    // SAFETY: on the event loop of a worker whose cycle is live.
    let pool = unsafe { ngx_thread_pool_get(ngx_cycle as *mut ngx_cycle_t, &mut pool_name) };
    if pool.is_null() {
        return false;
    }
    let what = job.what();
    let Some(task) = idle_task() else { return false };
    // SAFETY: a task from `idle_task`, which no pool thread holds.
    let t = unsafe { &mut *task };
    let job = Box::into_raw(Box::new(job));
    // SAFETY: the context has room for the pointer.
    unsafe { *(t.ctx as *mut *mut Box<dyn Job>) = job };
    t.handler = Some(run);
    t.event.handler = Some(done);
    t.event.data = task as *mut c_void;
    t.event.log = cycle_log();
    // SAFETY: a fully set task and the live pool.
    if unsafe { ngx_thread_task_post(pool, task) } != NGX_OK as ngx_int_t {
        // SAFETY: the pool refused the task, so the job is still only ours.
        drop(unsafe { Box::from_raw(job) });
        give_back(task);
        return false;
    }
    UNFINISHED.with(|jobs| jobs.borrow_mut().push(job));
    let allocated = TASKS.with(|tasks| tasks.borrow().allocated);
    debug!(cycle_log(), "{} posted to thread pool \"{}\" ({} tasks in this worker)", what, name, allocated);
    true
}

/// Tasks come from the cycle's pool, which frees nothing before the cycle ends: one allocated
/// per job would grow a worker over its uptime. A task whose job is done serves the next one.
struct Tasks {
    cycle: *const ngx_cycle_t,
    idle: Vec<*mut ngx_thread_task_t>,
    allocated: usize,
}

thread_local! {
    static TASKS: RefCell<Tasks> =
        const { RefCell::new(Tasks { cycle: ptr::null(), idle: Vec::new(), allocated: 0 }) };
}

/// A task no pool thread holds: an idle one of this cycle, or a new one.
fn idle_task() -> Option<*mut ngx_thread_task_t> {
    // SAFETY: on the event loop of a worker whose cycle is live.
    let cycle = unsafe { ngx_cycle } as *const ngx_cycle_t;
    TASKS.with(|tasks| {
        let mut tasks = tasks.borrow_mut();
        if tasks.cycle != cycle {
            // A single-process nginx reloaded: the old tasks went with the old cycle's pool.
            *tasks = Tasks { cycle, idle: Vec::new(), allocated: 0 };
        }
        if let Some(task) = tasks.idle.pop() {
            return Some(task);
        }
        // SAFETY: the live cycle's pool; room for one pointer of context.
        let task = unsafe { ngx_thread_task_alloc((*cycle).pool, size_of::<*mut Box<dyn Job>>()) };
        if task.is_null() {
            return None;
        }
        tasks.allocated += 1;
        Some(task)
    })
}

thread_local! {
    /// Jobs posted whose completion has not run: a worker that exits while a fetch or an exchange
    /// runs never sees it complete.
    static UNFINISHED: RefCell<Vec<*mut Box<dyn Job>>> = const { RefCell::new(Vec::new()) };
}

/// Module `exit_process`: frees the jobs that will never complete. nginx's thread pools stop
/// first (their module exits before this one), each thread after the jobs queued before its
/// exit task, so no thread holds one any more.
pub unsafe extern "C" fn exit_process(_cycle: *mut ngx_cycle_t) {
    guard(cycle_log(), "the worker's exit", (), || {
        for job in UNFINISHED.with(|jobs| std::mem::take(&mut *jobs.borrow_mut())) {
            // SAFETY: posted by `post`, never completed, and no pool thread is left to touch it.
            drop(unsafe { Box::from_raw(job) });
        }
    })
}

/// Keeps `task`, whose job is done (or was never posted), for the next job.
fn give_back(task: *mut ngx_thread_task_t) {
    TASKS.with(|tasks| tasks.borrow_mut().idle.push(task));
}

/// On a pool thread: the job's blocking part. A panic stays in the job (its result says so).
unsafe extern "C" fn run(data: *mut c_void, _log: *mut ngx_log_t) {
    // SAFETY: the task's context holds the job posted with it, owned by this task until done.
    let job = unsafe { &mut **(data as *mut *mut Box<dyn Job>) };
    let _ = catch_unwind(AssertUnwindSafe(|| job.run()));
}

/// Back on the event loop.
unsafe extern "C" fn done(event: *mut ngx_event_t) {
    // SAFETY: nginx calls this with the task's event, whose data is the task posted in `post`;
    // the pool thread is done with the job.
    let task = unsafe { (*event).data } as *mut ngx_thread_task_t;
    // SAFETY: as above.
    let raw = unsafe { *((*task).ctx as *mut *mut Box<dyn Job>) };
    UNFINISHED.with(|jobs| jobs.borrow_mut().retain(|j| !core::ptr::eq(*j, raw)));
    // SAFETY: as above; the job was posted with this task and is ours again.
    let job = unsafe { *Box::from_raw(raw) };
    // nginx has read what it needs of the task before calling this handler.
    give_back(task);
    let what = job.what();
    guard(cycle_log(), what, (), || job.done());
}
