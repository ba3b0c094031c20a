//! In-flight (concurrency) limits with a fair waiting room.
//!
//! A descriptor whose rule has `concurrency:` is not counted per time unit: a charge (positive
//! hits) takes one of `max` **slots**, a release (`is_negative_hits`, Envoy's stream-done call)
//! gives it back. A request that finds every slot taken waits — the ShouldRateLimit call is
//! held — until a slot frees or its wait ends.
//!
//! - [`rule`]: the `concurrency:` rule (max, queue, queue_timeout, lease, fairness, lease id).
//! - [`fair`]: the fair queue: weighted round-robin across `fair_by` values, FIFO within one.
//! - [`slots`]: the slot tables' contract ([`SlotBackend`]): leases, releases, expiry.
//! - [`memory`]: slots in this process (exact).
//! - [`room`]: the waiting room over any backend: who waits, who is served next, deadlines,
//!   cancellation, and the hand-over of a freed slot.
//! - [`claim`]: from a request's concurrency descriptors to the waiting room and back.
//!
//! A slot is tied to the request holding it through the `lease_id` attribute (Envoy's
//! `x-request-id`): a release frees only a slot this id holds, so the stream-done release of a
//! request that was denied frees nothing. Without a lease id a release frees the oldest
//! anonymous slot of the key. Every slot expires after `lease`.

pub mod claim;
pub mod fair;
pub mod memory;
pub mod metrics;
pub mod room;
pub mod rule;
pub mod slots;

pub use room::Claim;
pub use room::WaitingRoom;
pub use rule::ConcurrencyRule;
pub use slots::{SlotAction, SlotBackend, SlotOp, SlotOutcome, SlotResult};
