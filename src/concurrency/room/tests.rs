//! The waiting room over the memory table, on tokio's paused clock: exact, no real waiting.

use super::*;
use crate::clock::ManualClock;
use crate::concurrency::memory::MemorySlots;

fn room() -> Arc<WaitingRoom> {
    let clock = Arc::new(ManualClock::new(Duration::from_secs(1_700_000_000)));
    WaitingRoom::new(
        Arc::new(MemorySlots::new(clock, 1000)),
        Duration::from_secs(60),
        RoomMetrics::default(),
    )
}

fn claim(max: u32, queue: u32, id: &str, flow: Option<&str>, action: SlotAction) -> Claim {
    Claim {
        op: SlotOp {
            key: "pool".into(),
            max,
            lease_ms: 300_000,
            lease: Some(id.into()),
            action,
            rule: Arc::from("d.pool"),
        },
        queue,
        queue_timeout: Duration::from_secs(30),
        flow: flow.map(Into::into),
        weight: 1,
        shadow: false,
    }
}

async fn admit(room: &Arc<WaitingRoom>, c: Claim, deadline: Option<Instant>) -> SlotResult {
    room.admit(&[c], false, deadline).await.expect("memory")[0].result
}

/// Lets spawned tasks run until `key` has `n` waiters.
async fn until_queued(room: &Arc<WaitingRoom>, n: usize) {
    for _ in 0..10_000 {
        if room.queued("pool").0 == n {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("never {n} waiters (have {})", room.queued("pool").0);
}

/// Spawns a waiter that reports its id when granted.
fn waiter(
    room: &Arc<WaitingRoom>,
    c: Claim,
    granted: &tokio::sync::mpsc::UnboundedSender<String>,
) -> tokio::task::JoinHandle<SlotResult> {
    let (room, granted) = (room.clone(), granted.clone());
    tokio::spawn(async move {
        let id = c.op.lease.clone().unwrap_or_default();
        let r = admit(&room, c, None).await;
        if r == SlotResult::Granted {
            let _ = granted.send(id);
        }
        r
    })
}

#[tokio::test(start_paused = true)]
async fn waiters_of_one_flow_are_served_in_arrival_order() {
    let room = room();
    assert_eq!(
        admit(&room, claim(1, 10, "h", None, SlotAction::Acquire), None).await,
        SlotResult::Granted
    );
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for (i, id) in ["w0", "w1", "w2"].into_iter().enumerate() {
        waiter(&room, claim(1, 10, id, None, SlotAction::Acquire), &tx);
        until_queued(&room, i + 1).await;
    }
    let mut holder = "h".to_owned();
    for want in ["w0", "w1", "w2"] {
        admit(
            &room,
            claim(1, 10, &holder, None, SlotAction::Release),
            None,
        )
        .await;
        holder = rx.recv().await.expect("granted");
        assert_eq!(holder, want);
    }
    assert_eq!(room.queued("pool").0, 0);
}

#[tokio::test(start_paused = true)]
async fn a_greedy_tenant_does_not_starve_the_others() {
    let room = room();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for i in 0..4 {
        assert_eq!(
            admit(
                &room,
                claim(4, 100, &format!("h{i}"), None, SlotAction::Acquire),
                None
            )
            .await,
            SlotResult::Granted
        );
    }
    let mut n = 0;
    for i in 0..40 {
        waiter(
            &room,
            claim(4, 100, &format!("A{i}"), Some("A"), SlotAction::Acquire),
            &tx,
        );
        n += 1;
        until_queued(&room, n).await;
    }
    for t in ["B", "C"] {
        for i in 0..5 {
            waiter(
                &room,
                claim(4, 100, &format!("{t}{i}"), Some(t), SlotAction::Acquire),
                &tx,
            );
            n += 1;
            until_queued(&room, n).await;
        }
    }
    // Free slots one at a time while everyone waits: 15 grants (B and C have 5 each).
    let mut holders: Vec<String> = (0..4).map(|i| format!("h{i}")).collect();
    let mut shares = std::collections::HashMap::new();
    for _ in 0..15 {
        let h = holders.remove(0);
        admit(&room, claim(4, 100, &h, None, SlotAction::Release), None).await;
        let got = rx.recv().await.expect("granted");
        *shares.entry(got[..1].to_owned()).or_insert(0) += 1;
        holders.push(got);
    }
    assert_eq!(shares.get("A"), Some(&5), "{shares:?}");
    assert_eq!(shares.get("B"), Some(&5), "{shares:?}");
    assert_eq!(shares.get("C"), Some(&5), "{shares:?}");
}

#[tokio::test(start_paused = true)]
async fn one_tenant_alone_gets_every_slot() {
    let room = room();
    for i in 0..4 {
        let c = claim(4, 10, &format!("A{i}"), Some("A"), SlotAction::Acquire);
        assert_eq!(admit(&room, c, None).await, SlotResult::Granted);
    }
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_waiter_leaves_and_never_takes_a_slot() {
    let room = room();
    admit(&room, claim(1, 10, "h", None, SlotAction::Acquire), None).await;
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let w = waiter(&room, claim(1, 10, "w", None, SlotAction::Acquire), &tx);
    until_queued(&room, 1).await;
    w.abort();
    let _ = w.await;
    assert_eq!(room.queued("pool").0, 0);
    admit(&room, claim(1, 10, "h", None, SlotAction::Release), None).await;
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    let peek = room
        .admit(&[claim(1, 10, "x", None, SlotAction::Peek)], false, None)
        .await
        .expect("peek");
    assert_eq!(peek[0].held, 0, "the cancelled waiter took a slot");
}

#[tokio::test(start_paused = true)]
async fn a_full_queue_refuses_at_once() {
    let room = room();
    admit(&room, claim(1, 1, "h", None, SlotAction::Acquire), None).await;
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let _w = waiter(&room, claim(1, 1, "w", None, SlotAction::Acquire), &tx);
    until_queued(&room, 1).await;
    let t0 = Instant::now();
    assert_eq!(
        admit(&room, claim(1, 1, "x", None, SlotAction::Acquire), None).await,
        SlotResult::Full
    );
    assert_eq!(t0.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn a_wait_ends_before_the_callers_deadline_and_at_queue_timeout() {
    let room = room();
    admit(&room, claim(1, 5, "h", None, SlotAction::Acquire), None).await;
    let t0 = Instant::now();
    let r = admit(
        &room,
        claim(1, 5, "a", None, SlotAction::Acquire),
        Some(t0 + Duration::from_millis(100)),
    )
    .await;
    assert_eq!(r, SlotResult::Full);
    assert_eq!(
        t0.elapsed(),
        Duration::from_millis(90),
        "a tenth of the time left as margin"
    );
    let t1 = Instant::now();
    let r = admit(&room, claim(1, 5, "b", None, SlotAction::Acquire), None).await;
    assert_eq!(r, SlotResult::Full);
    assert_eq!(t1.elapsed(), Duration::from_secs(30));
    assert_eq!(room.queued("pool").0, 0);
}

#[tokio::test(start_paused = true)]
async fn a_denied_request_takes_nothing_and_a_failed_claim_gives_its_slots_back() {
    let room = room();
    let mut user = claim(3, 0, "r1", None, SlotAction::Acquire);
    user.op.key = "user".into();
    let pool = claim(1, 0, "r1", None, SlotAction::Acquire);
    admit(&room, claim(1, 0, "other", None, SlotAction::Acquire), None).await;
    // The pool is full: the user slot taken first is given back.
    let out = room
        .admit(&[user.clone(), pool.clone()], false, None)
        .await
        .expect("memory");
    assert_eq!(
        (out[0].result, out[1].result),
        (SlotResult::Granted, SlotResult::Full)
    );
    let mut peek = user.clone();
    peek.op.action = SlotAction::Peek;
    assert_eq!(
        room.admit(&[peek.clone()], false, None)
            .await
            .expect("peek")[0]
            .held,
        0
    );
    // Denied by a rate limit: nothing is taken.
    let out = room.admit(&[user], true, None).await.expect("memory");
    assert_eq!(out[0].result, SlotResult::Unchanged);
    assert_eq!(
        room.admit(&[peek], false, None).await.expect("peek")[0].held,
        0
    );
}
