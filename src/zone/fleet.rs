//! The fleet's part of the zone (`entra_shared_store`; logic: entra-core `fleet.rs`): per session
//! provider, by name, its outbox of what the store must be told and where its reading of the
//! store stands; for the instance, the round claim (one round trip with the store at a time,
//! whichever worker holds it, taken over when stale) and the store's state for `entra_status`.
//! The sign-outs read from the store go into the provider's fleet record (`record.rs`,
//! `RecordKind::Fleet`).

use core::alloc::Layout;
use core::ptr::{self, NonNull};
use core::sync::atomic::Ordering::SeqCst;

use entra_core::fleet::{Item, ItemKind, Outbox, OutboxEntry, Received, StreamId, Taken, PUBLISH_PER_SECOND};
use ngx::allocator::Allocator;
use ngx::core::slab::LockedSlabPool;
use ngx::core::SlabPool;
use ngx::ffi::ngx_shm_zone_t;

use super::counters::FleetCounters;
use super::record::{record_name, RecordKind, RecordRef};
use super::root::{fleet_part, pool, FleetShared, FleetSlot, ERROR_BYTES};

/// The store as the instance last found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreState {
    /// No round trip yet.
    Starting = 0,
    Up = 1,
    Down = 2,
}

impl StoreState {
    pub fn word(self) -> &'static str {
        match self {
            StoreState::Starting => "starting",
            StoreState::Up => "up",
            StoreState::Down => "down",
        }
    }
}

/// Bytes of the zone one provider's outbox takes.
pub fn outbox_bytes() -> usize {
    outbox_layout().size()
}

fn outbox_layout() -> Layout {
    Layout::array::<OutboxEntry>(entra_core::fleet::OUTBOX_CAPACITY).expect("a fixed size")
}

/// Makes the part the first time a configuration has a store (never freed), and gives each of
/// `providers` (by name) its slot with an outbox; slots no provider uses any more are freed
/// with their outbox. Another `store` than before starts every reading from the stream's start.
/// The lock is held.
pub(super) fn assign_fleet(
    locked: &LockedSlabPool,
    part: &FleetShared,
    store: u64,
    providers: &[String],
    now_ms: u64,
) -> Result<(), String> {
    let before = part.store.swap(store, SeqCst);
    if before != store {
        // Another store knows nothing of this instance: it is told everything again.
        for slot in &part.slots {
            for word in [&slot.after_ms, &slot.after_seq] {
                word.store(0, SeqCst);
            }
            slot.read.store(0, SeqCst);
            slot.began_ms.store(now_ms, SeqCst);
            slot.republish.store(u32::from(before != 0), SeqCst);
        }
        part.state.store(StoreState::Starting as u32, SeqCst);
        // SAFETY: the lock is held.
        unsafe { (*part.guarded.get()).run_id_len = 0 };
    }
    let names: Vec<u64> = providers.iter().map(|p| record_name(RecordKind::Fleet, p)).collect();
    for slot in part.slots.iter().filter(|s| s.name.load(SeqCst) != 0) {
        if !names.contains(&slot.name.load(SeqCst)) {
            slot.name.store(0, SeqCst);
            let (outbox, len) = (slot.outbox.swap(ptr::null_mut(), SeqCst), slot.outbox_len.swap(0, SeqCst));
            if let Some(outbox) = NonNull::new(outbox) {
                // SAFETY: allocated below from this pool with this layout.
                unsafe {
                    locked.deallocate(outbox.cast(), Layout::array::<OutboxEntry>(len).expect("as made"))
                };
            }
        }
    }
    for (provider, &name) in providers.iter().zip(&names) {
        if part.slots.iter().any(|s| s.name.load(SeqCst) == name) {
            continue;
        }
        let slot =
            part.slots.iter().find(|s| s.name.load(SeqCst) == 0).ok_or_else(|| {
                format!("the shared zone has no free fleet slot for provider \"{provider}\"")
            })?;
        let outbox = locked
            .allocate_zeroed(outbox_layout())
            .map_err(|_| format!("no room in the shared zone for provider \"{provider}\"'s fleet outbox"))?;
        slot.outbox.store(outbox.as_ptr() as *mut OutboxEntry, SeqCst);
        slot.outbox_len.store(entra_core::fleet::OUTBOX_CAPACITY, SeqCst);
        for word in
            [&slot.after_ms, &slot.after_seq, &slot.watermark_ms, &slot.publish_second, &slot.publish_count]
        {
            word.store(0, SeqCst);
        }
        slot.read.store(0, SeqCst);
        slot.began_ms.store(now_ms, SeqCst);
        slot.republish.store(0, SeqCst);
        slot.name.store(name, SeqCst);
    }
    Ok(())
}

/// Makes the fleet's part (zeroed). The lock is held.
pub(super) fn make_fleet_part(locked: &LockedSlabPool) -> Result<*mut FleetShared, String> {
    locked
        .allocate_zeroed(Layout::new::<FleetShared>())
        .map(|p| p.as_ptr() as *mut FleetShared)
        .map_err(|_| "no room in the shared zone for the fleet's part".to_owned())
}

/// The instance's handle on the fleet's part.
pub struct FleetRef {
    pool: SlabPool,
    part: NonNull<FleetShared>,
    store: u64,
}

// SAFETY: the part lives in shared memory mapped for the whole life of the process; it is
// atomics throughout, but for the guarded bytes, touched only under the pool's lock.
unsafe impl Send for FleetRef {}
// SAFETY: as above.
unsafe impl Sync for FleetRef {}

/// One provider's handle on its fleet slot and fleet record.
pub struct FleetProviderRef {
    pool: SlabPool,
    slot: NonNull<FleetSlot>,
    name: u64,
    /// The sign-outs the fleet published, and the sessions issued here.
    pub record: RecordRef,
}

// SAFETY: as for FleetRef.
unsafe impl Send for FleetProviderRef {}
// SAFETY: as above.
unsafe impl Sync for FleetProviderRef {}

/// What a round takes of one provider's slot.
#[derive(Clone)]
pub struct RoundPart {
    pub taken: Vec<Taken>,
    pub items: Vec<Item>,
    pub watermark_ms: u64,
    pub after: StreamId,
    pub republish: bool,
}

/// What `entra_status` shows of the store.
pub struct StoreStatus {
    pub state: StoreState,
    pub since_ms: u64,
    pub last_error: String,
    pub rounds: u64,
    pub failures: u64,
}

impl FleetRef {
    /// The part for the store of identity `store`, once a configuration with one was committed.
    pub fn find(zone: *mut ngx_shm_zone_t, store: u64) -> Option<FleetRef> {
        let pool = pool(zone)?;
        let part = {
            let _locked = pool.lock();
            NonNull::new(fleet_part(&pool)?)?
        };
        Some(FleetRef { pool, part, store })
    }

    fn part(&self) -> &FleetShared {
        // SAFETY: see the Send impl.
        unsafe { self.part.as_ref() }
    }

    /// Whether the part still speaks to this worker's store (a reload may have changed it).
    pub fn current(&self) -> bool {
        self.part().store.load(SeqCst) == self.store
    }

    /// Takes the round for worker `pid`: when none runs (or its worker died, `stale_ms`), and
    /// the last started `every_ms` ago or the round is `urgent`.
    pub fn claim_round(&self, pid: u32, now_ms: u64, every_ms: u64, stale_ms: u64, urgent: bool) -> bool {
        let _locked = self.pool.lock();
        let p = self.part();
        let owner = p.round_owner.load(SeqCst);
        let live = owner != 0 && p.round_started_ms.load(SeqCst).saturating_add(stale_ms) > now_ms;
        let due = urgent || p.last_round_ms.load(SeqCst).saturating_add(every_ms) <= now_ms;
        if live || !due || !self.current() {
            return false;
        }
        p.round_started_ms.store(now_ms, SeqCst);
        // Rounds are due by when the last one started: a tick a second apart finds it due.
        p.last_round_ms.store(now_ms, SeqCst);
        p.round_owner.store(pid, SeqCst);
        true
    }

    /// The store's `run_id` as last seen (empty: none yet).
    pub fn run_id(&self) -> String {
        let _locked = self.pool.lock();
        // SAFETY: the lock is held.
        let g = unsafe { &*self.part().guarded.get() };
        String::from_utf8_lossy(&g.run_id[..g.run_id_len]).into_owned()
    }

    /// Ends worker `pid`'s round at `now_ms`: the store answered with `run_id`, or failed with
    /// `error`. Returns `true` when a failure should be logged (once a minute).
    pub fn end_round(&self, pid: u32, now_ms: u64, answer: Result<&str, &str>) -> bool {
        let _locked = self.pool.lock();
        let p = self.part();
        let _ = p.round_owner.compare_exchange(pid, 0, SeqCst, SeqCst);
        if !self.current() {
            return false;
        }
        // SAFETY: the lock is held.
        let g = unsafe { &mut *p.guarded.get() };
        let state = if answer.is_ok() { StoreState::Up } else { StoreState::Down };
        p.rounds.fetch_add(1, SeqCst);
        if answer.is_err() {
            p.failures.fetch_add(1, SeqCst);
        }
        if p.state.swap(state as u32, SeqCst) != state as u32 {
            p.state_since_ms.store(now_ms, SeqCst);
        }
        match answer {
            Ok(run_id) => {
                let n = run_id.len().min(g.run_id.len());
                g.run_id[..n].copy_from_slice(&run_id.as_bytes()[..n]);
                g.run_id_len = n;
                false
            }
            Err(error) => {
                let n = error.len().min(ERROR_BYTES);
                g.last_error[..n].copy_from_slice(&error.as_bytes()[..n]);
                g.last_error_len = n;
                let (now_s, last) = (now_ms / 1000, p.logged_s.load(SeqCst));
                let log = last == 0 || now_s >= last + 60;
                if log {
                    p.logged_s.store(now_s, SeqCst);
                }
                log
            }
        }
    }

    /// The store restarted empty (or is another): noticed at `now_ms`.
    pub fn note_restart(&self, now_ms: u64) {
        self.part().restarted_ms.store(now_ms, SeqCst);
    }

    /// Whether the store restarted so recently that the other instances may not have told it
    /// their sign-ins yet ([`entra_core::fleet::RESTART_GRACE_MS`]).
    pub fn in_restart_grace(&self, now_ms: u64) -> bool {
        let at = self.part().restarted_ms.load(SeqCst);
        at != 0 && now_ms < at.saturating_add(entra_core::fleet::RESTART_GRACE_MS)
    }

    pub fn status(&self) -> StoreStatus {
        let _locked = self.pool.lock();
        let p = self.part();
        // SAFETY: the lock is held.
        let g = unsafe { &*p.guarded.get() };
        let state = match p.state.load(SeqCst) {
            1 => StoreState::Up,
            2 => StoreState::Down,
            _ => StoreState::Starting,
        };
        StoreStatus {
            state,
            since_ms: p.state_since_ms.load(SeqCst),
            last_error: String::from_utf8_lossy(&g.last_error[..g.last_error_len]).into_owned(),
            rounds: p.rounds.load(SeqCst),
            failures: p.failures.load(SeqCst),
        }
    }

    /// Provider `name`'s slot and fleet record.
    pub fn provider(&self, zone: *mut ngx_shm_zone_t, provider: &str) -> Option<FleetProviderRef> {
        let name = record_name(RecordKind::Fleet, provider);
        let slot = {
            let _locked = self.pool.lock();
            NonNull::from(self.part().slots.iter().find(|s| s.name.load(SeqCst) == name)?)
        };
        let record = RecordRef::find(zone, RecordKind::Fleet, provider)?;
        Some(FleetProviderRef { pool: self.pool.clone(), slot, name, record })
    }
}

impl FleetProviderRef {
    fn slot(&self) -> Option<&FleetSlot> {
        // SAFETY: see the Send impl; a slot freed by a reload keeps its memory (it is part of
        // the fleet's part), only its name changes.
        let slot = unsafe { self.slot.as_ref() };
        (slot.name.load(SeqCst) == self.name).then_some(slot)
    }

    fn outbox<R>(&self, body: impl FnOnce(&FleetSlot, Outbox) -> R) -> Option<R> {
        let _locked = self.pool.lock();
        let slot = self.slot()?;
        let (entries, len) = (slot.outbox.load(SeqCst), slot.outbox_len.load(SeqCst));
        // SAFETY: a non-null outbox holds `len` entries allocated by `assign_fleet`, changed
        // only under the lock, which is held.
        let entries = (!entries.is_null()).then(|| unsafe { core::slice::from_raw_parts(entries, len) })?;
        Some(body(slot, Outbox::new(entries)))
    }

    /// Puts `item` in the outbox. A full outbox (the store long unreachable) cannot keep a
    /// sign-out: the provider's watermark rises to it here and is published once the store is
    /// back; `false` then.
    pub fn tell(&self, item: Item) -> bool {
        let kept = self.outbox(|slot, outbox| {
            let kept = outbox.push(item);
            match (kept, item.kind) {
                (true, _) => {}
                // Told again with everything this instance issued, once the store is back.
                (false, ItemKind::SignIn) => slot.republish.store(1, SeqCst),
                (false, _) => {
                    slot.watermark_ms.fetch_max(item.at_ms, SeqCst);
                    slot.counters.dropped.fetch_add(1, SeqCst);
                    slot.counters.watermarks.fetch_add(1, SeqCst);
                }
            }
            kept
        });
        if kept == Some(false) && item.kind != ItemKind::SignIn {
            self.record.raise_watermark(item.at_ms);
        }
        kept.unwrap_or(false)
    }

    /// What the next round tells and reads for this provider, taken for worker `pid`: at most
    /// [`PUBLISH_PER_SECOND`] sign-outs a second (the others dropped, each raising the watermark).
    pub fn take_round(&self, pid: u32, now_ms: u64, stale_ms: u64) -> Option<RoundPart> {
        let mut dropped_at = 0;
        let part = self.outbox(|slot, outbox| {
            let taken = outbox.take(pid, now_ms, stale_ms, entra_core::fleet::OUTBOX_CAPACITY);
            let second = now_ms / 1000;
            if slot.publish_second.swap(second, SeqCst) != second {
                slot.publish_count.store(0, SeqCst);
            }
            let mut items = Vec::with_capacity(taken.len());
            for t in &taken {
                // Calls asked about publish only what the store confirms: real sessions.
                let publishes = t.item.kind == ItemKind::SignOut;
                if publishes && slot.publish_count.fetch_add(1, SeqCst) >= PUBLISH_PER_SECOND {
                    dropped_at = dropped_at.max(t.item.at_ms);
                    slot.counters.dropped.fetch_add(1, SeqCst);
                    continue;
                }
                items.push(t.item);
            }
            if dropped_at != 0 {
                slot.watermark_ms.fetch_max(dropped_at, SeqCst);
                slot.counters.watermarks.fetch_add(1, SeqCst);
            }
            RoundPart {
                taken,
                items,
                watermark_ms: slot.watermark_ms.load(SeqCst),
                after: StreamId { ms: slot.after_ms.load(SeqCst), seq: slot.after_seq.load(SeqCst) },
                republish: slot.republish.load(SeqCst) != 0,
            }
        });
        if dropped_at != 0 {
            self.record.raise_watermark(dropped_at);
        }
        part
    }

    /// The round is over: its items sent or not; when `answer` came, what it read goes into the
    /// fleet record (entries of sessions signed in up to their time plus `leeway_ms`), kept until
    /// `lifetime_ms` after it. With `ask_again`, the calls the store said no to wait in the
    /// outbox for the next round instead of being ignored (the store just restarted empty).
    pub fn end_round(
        &self,
        pid: u32,
        part: &RoundPart,
        answer: Option<&entra_core::fleet::ProviderAnswer>,
        (now_ms, leeway_ms, lifetime_ms): (u64, u64, u64),
        ask_again: bool,
    ) {
        self.outbox(|slot, outbox| {
            outbox.settle(pid, &part.taken, answer.is_some());
            let Some(answer) = answer else { return };
            let unknown = match ask_again {
                true => answer.unknown.iter().filter(|item| !outbox.push(**item)).count(),
                false => answer.unknown.len(),
            };
            if part.watermark_ms != 0 {
                let _ = slot.watermark_ms.compare_exchange(part.watermark_ms, 0, SeqCst, SeqCst);
            }
            if part.republish {
                slot.republish.store(0, SeqCst);
            }
            slot.after_ms.store(answer.last.ms, SeqCst);
            slot.after_seq.store(answer.last.seq, SeqCst);
            if answer.read_through {
                slot.read.store(1, SeqCst);
            }
            let c = &slot.counters;
            c.published.fetch_add(answer.published, SeqCst);
            c.received.fetch_add(answer.received.len() as u64, SeqCst);
            c.unknown.fetch_add(unknown as u64, SeqCst);
            c.confirmed.fetch_add(answer.confirmed.len() as u64, SeqCst);
            c.malformed.fetch_add(answer.malformed, SeqCst);
        });
        let Some(answer) = answer else { return };
        for item in &answer.confirmed {
            self.record.deny(item.key, item.at_ms, item.at_ms.saturating_add(lifetime_ms), now_ms);
        }
        for received in &answer.received {
            match *received {
                Received::SignOut { key, at_ms } => {
                    let until = at_ms.saturating_add(leeway_ms);
                    self.record.deny(key, until, at_ms.saturating_add(lifetime_ms), now_ms);
                }
                Received::Watermark { at_ms } => self.record.raise_watermark(at_ms.saturating_add(leeway_ms)),
            }
        }
    }

    /// Asks for everything this instance holds to be told again (the store restarted empty).
    pub fn ask_republish(&self) {
        if let Some(slot) = self.slot() {
            slot.republish.store(1, SeqCst);
        }
    }

    /// Until when (monotonic ms) session requests wait for the first read of the store: `wait_ms` after
    /// the slot began, while that read has not completed; `None` once it has.
    pub fn first_read_until(&self, wait_ms: u64) -> Option<u64> {
        let slot = self.slot()?;
        (slot.read.load(SeqCst) == 0).then(|| slot.began_ms.load(SeqCst).saturating_add(wait_ms))
    }

    /// Entries waiting in the outbox.
    pub fn waiting(&self) -> usize {
        self.outbox(|_, outbox| outbox.len()).unwrap_or(0)
    }

    pub fn counters(&self) -> Option<&FleetCounters> {
        self.slot().map(|s| &s.counters)
    }
}
