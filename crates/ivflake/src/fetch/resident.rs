//! The memory cache's lists of one index version as an array by list
//! number. A warm search finds each of its lists with an index and an atomic
//! load here, where moka's `get` (hash, concurrent map, read log, and now and
//! then its maintenance) cost about 0.65 µs a list: 21 µs of a 110 µs search
//! probing 32 lists.
//!
//! moka stays the cache: it alone decides what is kept (weights, TinyLFU).
//! This table only mirrors it. A list enters here just before it enters moka,
//! and leaves when moka's eviction listener names that same buffer, so the
//! table never keeps a list moka let go. Races between two inserts of one
//! list can only leave a slot empty; a search that finds a slot empty goes
//! to the fetch wave, which looks in moka before the store.
//!
//! Hits found here are reported to moka for a sample of searches, enough for
//! its frequency sketch and recency order; Caffeine, which moka follows,
//! drops read events under load the same way.

use std::cell::Cell;
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use bytes::Bytes;

/// One search in this many (per thread) reports its table hits to moka:
/// about 2% of a warm 32-list search (profiled). Misses reach moka at full
/// rate (the wave asks it), so sampling hits favours newcomers over resident
/// lists in TinyLFU's frequency comparisons, by at most this factor; the
/// sampling is kept low for that reason, and hot lists saturate the sketch's
/// 4-bit counters either way.
const ACCESS_SAMPLE: u32 = 8;

/// See the module docs.
pub(crate) struct ResidentLists {
    slots: Box<[ArcSwapOption<Bytes>]>,
}

impl ResidentLists {
    pub fn new(lists: usize) -> Self {
        Self {
            slots: (0..lists).map(|_| ArcSwapOption::empty()).collect(),
        }
    }

    /// Bytes the table itself takes (its slots, not the lists they share).
    pub fn slot_bytes(&self) -> u64 {
        (self.slots.len() * std::mem::size_of::<ArcSwapOption<Bytes>>()) as u64
    }

    /// The list, when the memory cache holds it.
    pub fn get(&self, list: usize) -> Option<Arc<Bytes>> {
        self.slots.get(list)?.load_full()
    }

    /// Mirrors an insert into the memory cache; called before that insert.
    pub fn put(&self, list: usize, bytes: &Bytes) {
        if let Some(slot) = self.slots.get(list) {
            slot.store(Some(Arc::new(bytes.clone())));
        }
    }

    /// Mirrors a removal from the memory cache: empties the slot only when
    /// it still holds that buffer (a newer insert of the list stays).
    pub fn remove(&self, list: usize, removed: &Bytes) {
        let Some(slot) = self.slots.get(list) else { return };
        let current = slot.load();
        if current.as_deref().is_some_and(|held| same_buffer(held, removed)) {
            slot.compare_and_swap(&current, None);
        }
    }
}

fn same_buffer(a: &Bytes, b: &Bytes) -> bool {
    a.as_ptr() == b.as_ptr() && a.len() == b.len()
}

/// Whether this search on this thread should report its hits to moka.
pub(crate) fn sample_access() -> bool {
    thread_local! {
        static SEARCHES: Cell<u32> = const { Cell::new(0) };
    }
    SEARCHES.with(|n| {
        let seen = n.get();
        n.set(seen.wrapping_add(1));
        seen.is_multiple_of(ACCESS_SAMPLE)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_follows_the_buffer_it_was_given() {
        let table = ResidentLists::new(4);
        let old = Bytes::from(vec![1u8; 16]);
        let new = Bytes::from(vec![2u8; 16]);
        assert!(table.get(1).is_none());
        table.put(1, &old);
        assert_eq!(table.get(1).as_deref(), Some(&old));

        // A newer insert replaces it; the old buffer's removal leaves it be.
        table.put(1, &new);
        table.remove(1, &old);
        assert_eq!(table.get(1).as_deref(), Some(&new));
        // An equal copy is another buffer: only the one held empties it.
        table.remove(1, &Bytes::from(vec![2u8; 16]));
        assert!(table.get(1).is_some());
        table.remove(1, &new);
        assert!(table.get(1).is_none());

        // Out-of-range lists are ignored, never a panic.
        table.put(9, &new);
        table.remove(9, &new);
        assert!(table.get(9).is_none());
        assert_eq!(
            table.slot_bytes(),
            4 * std::mem::size_of::<ArcSwapOption<Bytes>>() as u64
        );
    }

    /// Through the scheduler's own insert path and moka's listener: after
    /// inserts, replacements, admission refusals and evictions, the table
    /// holds exactly moka's lists, the same buffers, and goes with the last
    /// pin; and the cache is within its budget after every insert.
    #[test]
    fn the_table_holds_exactly_what_moka_holds() {
        use crate::config::FetchConfig;
        use crate::fetch::{FetchScheduler, ListKey};
        use crate::location::IndexLocation;
        use crate::object::IndexObject;

        let list_bytes = 1000;
        let scheduler = FetchScheduler::new(FetchConfig {
            memory_cache_bytes: 10 * list_bytes,
            ..FetchConfig::default()
        });
        let store: Arc<dyn object_store::ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let object = IndexObject::new(IndexLocation::new(store, "x", "memory:///x"), 1, None);
        let pin = scheduler.pin_lists(&object, 64);
        let core = &scheduler.core;
        for round in 0..3u8 {
            for list in 0..64 {
                let bytes = Bytes::from(vec![round ^ list as u8; list_bytes as usize]);
                core.remember(ListKey::new(&object, list), bytes);
                // The budget holds after every insert, not at moka's next
                // maintenance (`iter` sees entries maintenance has not weighed).
                let held: u64 = core.memory.iter().map(|(_, v)| v.len() as u64).sum();
                assert!(held <= 10 * list_bytes, "round {round}, list {list}: {held} bytes");
            }
        }
        let table = pin.resident.clone().expect("an index pin has a table");
        let mut held = 0;
        for list in 0..64 {
            let key = ListKey::new(&object, list);
            let in_moka = core.memory.iter().find(|(k, _)| **k == key).map(|(_, v)| v);
            match (in_moka, table.get(list)) {
                (Some(a), Some(b)) => {
                    assert!(same_buffer(&a, &b), "list {list}: another buffer");
                    held += 1;
                }
                (None, None) => {}
                (a, b) => panic!("list {list}: moka {:?}, table {:?}", a.is_some(), b.is_some()),
            }
        }
        assert!((1..=10).contains(&held), "{held} lists held");

        let id = object.id;
        let other = scheduler.pin_lists(&object, 64);
        drop(pin);
        assert!(core.resident.read().unwrap().contains_key(&id), "a handle is left");
        drop(other);
        assert!(!core.resident.read().unwrap().contains_key(&id));
    }

    #[test]
    fn one_search_in_eight_reports_to_moka() {
        // Run on a thread of its own so other tests do not move the count.
        let reported = std::thread::spawn(|| (0..256).filter(|_| sample_access()).count())
            .join()
            .unwrap();
        assert_eq!(reported, 256 / ACCESS_SAMPLE as usize);
    }
}
