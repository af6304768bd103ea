//! Which connections already have an entry whose batch is to come again.
//!
//! A stream batch with a failure is redelivered from its first failed record, to the same function
//! and usually to the same warm instance. Without memory, every connection that already had those
//! entries would get them again: one slow connection among a thousand made a thousand duplicates.
//! With it, a redelivered entry goes only where it is still missing. The memory is per process and
//! bounded; what it forgets (a cold instance, an eviction) is at worst a duplicate, which clients
//! de-duplicate by entry id — delivery stays at least once.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;

use uuid::Uuid;

/// Remembered (entry, connection) pairs at most; the oldest entries are forgotten first.
pub const DEFAULT_CAPACITY: usize = 200_000;

#[derive(Debug)]
pub struct Redeliveries {
    capacity: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    delivered: HashMap<Uuid, HashSet<String>>,
    /// Entries in the order first remembered, for eviction.
    order: VecDeque<Uuid>,
    pairs: usize,
}

impl Default for Redeliveries {
    fn default() -> Self {
        Redeliveries::with_capacity(DEFAULT_CAPACITY)
    }
}

impl Redeliveries {
    pub fn with_capacity(capacity: usize) -> Self {
        Redeliveries { capacity, state: Mutex::new(State::default()) }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves a set that is still consistent enough to
        // consult: the worst outcome is one duplicate.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether `connection` already received `entry`.
    pub fn already_delivered(&self, entry: Uuid, connection: &str) -> bool {
        self.state().delivered.get(&entry).is_some_and(|c| c.contains(connection))
    }

    /// Remembers that `connections` received `entry`, because its batch will come again.
    pub fn remember(&self, entry: Uuid, connections: impl IntoIterator<Item = String>) {
        let mut state = self.state();
        let State { delivered, order, pairs } = &mut *state;
        let known = delivered.contains_key(&entry);
        let set = delivered.entry(entry).or_default();
        // Ids in `order` no longer remembered are skipped on eviction.
        let before = set.len();
        set.extend(connections);
        *pairs += set.len() - before;
        if !known {
            order.push_back(entry);
        }
        while *pairs > self.capacity {
            let Some(oldest) = order.pop_front() else { break };
            // A forgotten id left in `order` frees nothing; its removal is a no-op.
            *pairs -= delivered.remove(&oldest).map_or(0, |c| c.len());
        }
    }

    /// Forgets `entry`: its batch went through, nothing of it will come again.
    pub fn forget(&self, entry: Uuid) {
        let mut state = self.state();
        let State { delivered, order, pairs } = &mut *state;
        if let Some(connections) = delivered.remove(&entry) {
            *pairs -= connections.len();
            // `order` keeps forgotten ids until compacted, so forgetting stays cheap per entry.
            if delivered.is_empty() {
                order.clear();
            } else if order.len() > 2 * delivered.len() + 1024 {
                order.retain(|e| delivered.contains_key(e));
            }
        }
    }

    /// Remembered pairs.
    pub fn len(&self) -> usize {
        self.state().pairs
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_until_forgotten_and_stays_within_capacity() {
        let memory = Redeliveries::with_capacity(3);
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        memory.remember(a, ["c1".to_owned(), "c2".to_owned()]);
        assert!(memory.already_delivered(a, "c1"));
        assert!(!memory.already_delivered(a, "c3"));
        assert!(!memory.already_delivered(b, "c1"));
        memory.remember(a, ["c1".to_owned()]);
        assert_eq!(memory.len(), 2, "a pair is counted once");
        memory.remember(b, ["c1".to_owned(), "c2".to_owned()]);
        assert!(!memory.already_delivered(a, "c1"), "the oldest entry makes room");
        assert!(memory.already_delivered(b, "c2"));
        assert_eq!(memory.len(), 2);
        memory.forget(b);
        assert!(memory.is_empty());
    }
}
