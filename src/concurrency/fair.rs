//! The fair queue of one key's waiting room: weighted round-robin across **flows** (the
//! `fair_by` values, e.g. tenants), FIFO within a flow.
//!
//! Active flows sit in a ring. The flow at the front is served up to its weight in a row,
//! then goes to the back; a flow that empties leaves the ring, and a new flow joins at the
//! back — so a tenant with one waiter is served within one round however many waiters a
//! greedy tenant has queued. Waiters without a `fair_by` value share one flow (`None`).

use hashbrown::HashMap;
use std::collections::VecDeque;

/// A flow's identity: the waiter's `fair_by` value, or `None`.
pub type FlowKey = Option<Box<str>>;

/// One flow: its waiters in arrival order and its turn's remaining credit.
#[derive(Debug)]
struct Flow<T> {
    /// `(waiter id, item)`, oldest first.
    items: VecDeque<(u64, T)>,
    /// Waiters served per turn (the latest waiter's weight).
    weight: u32,
    /// Waiters still to serve in the current turn.
    credit: u32,
}

/// Waiters of one key.
#[derive(Debug)]
pub struct FairQueue<T> {
    /// Flows with waiters, by key.
    flows: HashMap<FlowKey, Flow<T>>,
    /// The round-robin order of the flows; the front is being served.
    ring: VecDeque<FlowKey>,
    /// Waiters in all flows.
    len: usize,
}

impl<T> Default for FairQueue<T> {
    fn default() -> Self {
        FairQueue {
            flows: HashMap::new(),
            ring: VecDeque::new(),
            len: 0,
        }
    }
}

impl<T> FairQueue<T> {
    /// Waiters queued.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nobody waits.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Queues waiter `id` in `flow` with `weight` (at least 1).
    pub fn push(&mut self, flow: FlowKey, weight: u32, id: u64, item: T) {
        let weight = weight.max(1);
        match self.flows.get_mut(&flow) {
            Some(f) => {
                f.weight = weight;
                f.items.push_back((id, item));
            }
            None => {
                self.ring.push_back(flow.clone());
                self.flows.insert(
                    flow,
                    Flow {
                        items: VecDeque::from([(id, item)]),
                        weight,
                        credit: weight,
                    },
                );
            }
        }
        self.len += 1;
    }

    /// The waiter to serve next: its id and item.
    pub fn peek(&self) -> Option<(u64, &T)> {
        let flow = self.flows.get(self.ring.front()?)?;
        flow.items.front().map(|(id, item)| (*id, item))
    }

    /// Serves the waiter [`FairQueue::peek`] shows, advancing the round-robin.
    pub fn pop(&mut self) -> Option<(u64, T)> {
        let key = self.ring.front()?.clone();
        let flow = self.flows.get_mut(&key)?;
        let served = flow.items.pop_front()?;
        self.len -= 1;
        flow.credit = flow.credit.saturating_sub(1);
        if flow.items.is_empty() {
            self.flows.remove(&key);
            self.ring.pop_front();
        } else if flow.credit == 0 {
            flow.credit = flow.weight;
            self.ring.rotate_left(1);
        }
        Some(served)
    }

    /// Removes waiter `id` of `flow` (it gave up or timed out); its item, if it was queued.
    pub fn remove(&mut self, flow: &FlowKey, id: u64) -> Option<T> {
        let f = self.flows.get_mut(flow)?;
        let at = f.items.iter().position(|(i, _)| *i == id)?;
        let (_, item) = f.items.remove(at)?;
        self.len -= 1;
        if f.items.is_empty() {
            self.flows.remove(flow);
            if let Some(pos) = self.ring.iter().position(|k| k == flow) {
                self.ring.remove(pos);
            }
        }
        Some(item)
    }

    /// Waiters per flow (the admin API's view), in ring order.
    pub fn flows(&self) -> impl Iterator<Item = (&FlowKey, usize)> {
        self.ring
            .iter()
            .filter_map(|k| self.flows.get(k).map(|f| (k, f.items.len())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> FlowKey {
        Some(s.into())
    }

    /// Serves everything, returning the flow of each served waiter.
    fn drain(q: &mut FairQueue<&'static str>) -> Vec<&'static str> {
        std::iter::from_fn(|| q.pop().map(|(_, f)| f)).collect()
    }

    #[test]
    fn one_flow_is_fifo() {
        let mut q = FairQueue::default();
        for i in 0..5 {
            q.push(None, 1, i, i);
        }
        let order: Vec<u64> = std::iter::from_fn(|| q.pop().map(|(id, _)| id)).collect();
        assert_eq!(order, vec![0, 1, 2, 3, 4]);
        assert!(q.is_empty());
    }

    #[test]
    fn a_greedy_flow_does_not_starve_a_small_one() {
        let mut q = FairQueue::default();
        for i in 0..40 {
            q.push(key("a"), 1, i, "a");
        }
        q.push(key("b"), 1, 100, "b");
        q.push(key("c"), 1, 101, "c");
        q.push(key("b"), 1, 102, "b");
        let served = drain(&mut q);
        assert_eq!(&served[..6], &["a", "b", "c", "a", "b", "a"]);
        assert_eq!(served.len(), 43);
    }

    #[test]
    fn weights_set_the_shares() {
        let mut q = FairQueue::default();
        for i in 0..30 {
            q.push(key("ent"), 4, i, "ent");
            q.push(key("free"), 1, 100 + i, "free");
        }
        let first10 = &drain(&mut q)[..10];
        assert_eq!(first10.iter().filter(|f| **f == "ent").count(), 8);
        assert_eq!(first10.iter().filter(|f| **f == "free").count(), 2);
    }

    #[test]
    fn removing_waiters_keeps_the_ring_consistent() {
        let mut q = FairQueue::default();
        q.push(key("a"), 1, 1, "a");
        q.push(key("b"), 1, 2, "b");
        q.push(key("a"), 1, 3, "a");
        assert_eq!(q.remove(&key("b"), 2), Some("b"));
        assert_eq!(q.remove(&key("b"), 2), None, "twice");
        assert_eq!(q.len(), 2);
        assert_eq!(q.peek().map(|(id, _)| id), Some(1));
        assert_eq!(q.remove(&key("a"), 1), Some("a"));
        assert_eq!(q.pop().map(|(id, _)| id), Some(3));
        assert!(q.is_empty());
        assert!(q.peek().is_none());
    }

    proptest::proptest! {
        /// Any interleaving of pushes, pops and removals keeps `len` equal to the waiters
        /// reachable, and every waiter is served or removed exactly once.
        #[test]
        fn every_waiter_leaves_once(ops in proptest::collection::vec((0u8..3, 0u8..4, 1u32..4), 1..200)) {
            let mut q: FairQueue<u64> = FairQueue::default();
            let mut live: Vec<(FlowKey, u64)> = Vec::new();
            let mut next = 0u64;
            let mut left = std::collections::HashSet::new();
            for (op, flow, weight) in ops {
                let fk: FlowKey = if flow == 0 { None } else { Some(flow.to_string().into()) };
                match op {
                    0 => { q.push(fk.clone(), weight, next, next); live.push((fk, next)); next += 1; }
                    1 => if let Some((id, v)) = q.pop() {
                        proptest::prop_assert_eq!(id, v);
                        proptest::prop_assert!(left.insert(id));
                        live.retain(|(_, i)| *i != id);
                    },
                    _ => if let Some((fk, id)) = live.first().cloned() {
                        proptest::prop_assert_eq!(q.remove(&fk, id), Some(id));
                        proptest::prop_assert!(left.insert(id));
                        live.remove(0);
                    },
                }
                proptest::prop_assert_eq!(q.len(), live.len());
                proptest::prop_assert_eq!(q.flows().map(|(_, n)| n).sum::<usize>(), live.len());
            }
        }
    }
}
