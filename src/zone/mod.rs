//! The shared zone (`entra_shared_zone`), and the only code that changes it.
//!
//! With `entra_shared_store`, the fleet's part (`fleet.rs`): per session provider its outbox
//! and where its reading of the store stands, and the instance's round claim.
//! Graph's answers per provider and the tenants' app tokens (`graph.rs`, group overage).
//! One record per session provider holds the sessions issued and ended, for single sign-out
//! (`record.rs`, by provider name). One slot per provider holds, for every worker to see: the key set and issuers last fetched
//! (discovery providers only), the refresh schedule, which worker is fetching, and the counters
//! that `entra_status` reports. Slots are given to providers by [`assign_slots`], which nginx
//! runs in the master once a new configuration is committed; a reload that fails never touches
//! them, and a provider whose name, tenant and key source survive a reload keeps its slot (and
//! its keys). Every read and write of a slot names the provider it is for ([`SlotRef`]) and is
//! refused under the zone's lock when the slot has been given to another since: a worker that
//! outlives a reload can never write its provider's keys into another's slot.
//!
//! Plain atomics for what is read without the lock; the slab pool's own mutex (which the master
//! frees if a worker dies holding it) around the short copies in and out. No lock is held across
//! parsing, cryptography or I/O. See docs/ARCHITECTURE.md, "The shared zone".

mod claim;
mod counters;
mod fleet;
mod graph;
mod record;
mod root;
mod setup;
mod slot;

pub use claim::Claim;
pub use counters::{
    CounterValues, Counters, GraphEvent, SignInEvent, StepUpEvent, GRAPH_EVENTS, JUDGED, JUDGING_BUCKETS_US,
    STEP_UP_EVENTS, STEP_UP_REASONS,
};
pub use fleet::{outbox_bytes, FleetProviderRef, FleetRef, RoundPart, StoreState, StoreStatus};
pub use graph::{answers_bytes, Finished, Found, GraphRef};
pub use record::{admit_callback, record_bytes, RecordKind, RecordRef, WantedRecord};
pub use root::{fixed_bytes, StoreError};
pub use setup::{add_zone, assign_slots};
pub use slot::{identity, SlotRef};
