//! In-flight limits over gRPC on the memory store (the cases: `tests/support/slot_cases.rs`).

mod support;

use support::slot_cases as cases;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_slots_then_over_limit_and_a_release_frees_one() {
    cases::three_slots_then_over_limit_and_a_release_frees_one(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_lease_id_never_buys_a_slot() {
    cases::a_reused_lease_id_never_buys_a_slot(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_slots_never_go_below_zero() {
    cases::anonymous_slots_never_go_below_zero(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_key_holds_the_call_until_a_release() {
    cases::a_full_key_holds_the_call_until_a_release(&[]).await;
}
