use super::*;
use crate::clock::ManualClock;

const T0: Duration = Duration::from_secs(1_700_000_000);

fn setup(max_keys: usize) -> (Arc<ManualClock>, MemorySlots) {
    let clock = Arc::new(ManualClock::new(T0));
    let slots = MemorySlots::new(clock.clone(), max_keys);
    (clock, slots)
}

fn op(key: &str, max: u32, lease: Option<&str>, action: SlotAction) -> SlotOp {
    SlotOp {
        key: key.into(),
        max,
        lease_ms: 10_000,
        lease: lease.map(Into::into),
        action,
        rule: Arc::from("d.k"),
    }
}

fn run(s: &MemorySlots, o: SlotOp) -> SlotOutcome {
    s.run_now(std::slice::from_ref(&o))[0]
}

#[test]
fn named_leases_take_and_free_their_own_slot() {
    let (_, s) = setup(10);
    for id in ["a", "b"] {
        assert_eq!(
            run(&s, op("k", 2, Some(id), SlotAction::Acquire)).result,
            SlotResult::Granted
        );
    }
    let full = run(&s, op("k", 2, Some("c"), SlotAction::Acquire));
    assert_eq!((full.result, full.held), (SlotResult::Full, 2));
    assert_eq!(full.next_expiry, Some(Duration::from_secs(10)));
    assert_eq!(
        run(&s, op("k", 2, Some("c"), SlotAction::Release)).result,
        SlotResult::Stray
    );
    let freed = run(&s, op("k", 2, Some("a"), SlotAction::Release));
    assert_eq!((freed.result, freed.held), (SlotResult::Released, 1));
    assert_eq!(
        run(&s, op("k", 2, Some("a"), SlotAction::Release)).result,
        SlotResult::Stray
    );
    assert_eq!(run(&s, op("k", 2, Some("b"), SlotAction::Release)).held, 0);
    assert!(s.is_empty(), "an empty table is dropped");
}

#[test]
fn a_duplicate_id_is_refused_and_its_release_absorbed() {
    let (_, s) = setup(10);
    assert_eq!(
        run(&s, op("k", 5, Some("x"), SlotAction::Acquire)).result,
        SlotResult::Granted
    );
    assert_eq!(
        run(&s, op("k", 5, Some("x"), SlotAction::Acquire)).result,
        SlotResult::InUse
    );
    run(&s, op("k", 5, Some("x"), SlotAction::Note));
    assert_eq!(
        run(&s, op("k", 5, Some("x"), SlotAction::Release)).result,
        SlotResult::Absorbed
    );
    assert_eq!(
        run(&s, op("k", 5, Some("x"), SlotAction::Release)).result,
        SlotResult::Absorbed
    );
    let last = run(&s, op("k", 5, Some("x"), SlotAction::Release));
    assert_eq!((last.result, last.held), (SlotResult::Released, 0));
}

#[test]
fn anonymous_releases_free_the_oldest_and_never_go_below_zero() {
    let (clock, s) = setup(10);
    assert_eq!(
        run(&s, op("k", 2, None, SlotAction::Release)).result,
        SlotResult::Stray
    );
    run(&s, op("k", 2, None, SlotAction::Acquire));
    clock.advance(Duration::from_secs(4));
    run(&s, op("k", 2, None, SlotAction::Acquire));
    let r = run(&s, op("k", 2, None, SlotAction::Release));
    assert_eq!(r.result, SlotResult::Released);
    // The younger lease is left: it ends 10 s after its own start.
    assert_eq!(r.next_expiry, Some(Duration::from_secs(10)));
    // Named ids and anonymous slots do not mix.
    assert_eq!(
        run(&s, op("k", 2, Some("a"), SlotAction::Release)).result,
        SlotResult::Stray
    );
}

#[test]
fn leases_expire_after_their_lease() {
    let (clock, s) = setup(10);
    run(&s, op("k", 1, Some("a"), SlotAction::Acquire));
    clock.advance(Duration::from_millis(9_999));
    assert_eq!(
        run(&s, op("k", 1, Some("b"), SlotAction::Acquire)).result,
        SlotResult::Full
    );
    clock.advance(Duration::from_millis(1));
    let o = run(&s, op("k", 1, Some("b"), SlotAction::Acquire));
    assert_eq!((o.result, o.expired), (SlotResult::Granted, 1));
    // The expired holder's late release frees nothing.
    assert_eq!(
        run(&s, op("k", 1, Some("a"), SlotAction::Release)).result,
        SlotResult::Stray
    );
}

#[test]
fn the_sweeper_reports_expiries_per_rule_and_drops_tables() {
    let (clock, s) = setup(10);
    run(&s, op("k1", 3, Some("a"), SlotAction::Acquire));
    run(&s, op("k2", 3, None, SlotAction::Acquire));
    run(&s, op("k2", 3, None, SlotAction::Acquire));
    assert!(s.sweep_now().is_empty());
    clock.advance(Duration::from_secs(11));
    let swept = s.sweep_now();
    assert_eq!(swept, vec![(Arc::from("d.k"), 3)]);
    assert!(s.is_empty());
}

#[test]
fn a_full_table_set_refuses_new_keys_until_one_frees() {
    let (_, s) = setup(2);
    run(&s, op("k1", 3, None, SlotAction::Acquire));
    run(&s, op("k2", 3, None, SlotAction::Acquire));
    assert_eq!(
        run(&s, op("k3", 3, None, SlotAction::Acquire)).result,
        SlotResult::NoRoom
    );
    assert_eq!(
        run(&s, op("k1", 3, None, SlotAction::Release)).result,
        SlotResult::Released,
        "known keys still release"
    );
    run(&s, op("k2", 3, None, SlotAction::Release));
    assert_eq!(
        run(&s, op("k3", 3, None, SlotAction::Acquire)).result,
        SlotResult::Granted
    );
}

#[test]
fn long_ids_are_bounded_and_still_tell_requests_apart() {
    let (_, s) = setup(10);
    let a = "a".repeat(4096);
    let b = format!("{}b", "a".repeat(4095));
    assert_eq!(
        run(&s, op("k", 5, Some(&a), SlotAction::Acquire)).result,
        SlotResult::Granted
    );
    assert_eq!(
        run(&s, op("k", 5, Some(&b), SlotAction::Acquire)).result,
        SlotResult::Granted
    );
    // An id posing as another's hash is hashed itself.
    let forged = lease_member(&a).into_owned();
    assert_eq!(
        run(&s, op("k", 5, Some(&forged), SlotAction::Release)).result,
        SlotResult::Stray
    );
    assert_eq!(
        run(&s, op("k", 5, Some(&a), SlotAction::Release)).result,
        SlotResult::Released
    );
}

#[test]
fn leases_in_all_are_bounded_too() {
    let (clock, s) = setup(3);
    for id in ["a", "b", "c"] {
        assert_eq!(
            run(&s, op("k", 10, Some(id), SlotAction::Acquire)).result,
            SlotResult::Granted
        );
    }
    assert_eq!(
        run(&s, op("k", 10, Some("d"), SlotAction::Acquire)).result,
        SlotResult::NoRoom
    );
    assert_eq!(
        run(&s, op("k", 10, None, SlotAction::Acquire)).result,
        SlotResult::NoRoom
    );
    // A duplicate is still told it is in use, not refused for room.
    assert_eq!(
        run(&s, op("k", 10, Some("a"), SlotAction::Acquire)).result,
        SlotResult::InUse
    );
    run(&s, op("k", 10, Some("a"), SlotAction::Release));
    run(&s, op("k", 10, Some("a"), SlotAction::Release));
    assert_eq!(
        run(&s, op("k", 10, Some("d"), SlotAction::Acquire)).result,
        SlotResult::Granted
    );
    // Expiry (on access or by the sweeper) gives the room back.
    clock.advance(Duration::from_secs(11));
    assert_eq!(s.sweep_now(), vec![(Arc::from("d.k"), 3)]);
    for id in ["e", "f", "g"] {
        assert_eq!(
            run(&s, op("k2", 10, Some(id), SlotAction::Acquire)).result,
            SlotResult::Granted
        );
    }
    clock.advance(Duration::from_secs(11));
    assert_eq!(
        run(&s, op("k2", 10, Some("h"), SlotAction::Acquire)).result,
        SlotResult::Granted,
        "expired on access"
    );
}
