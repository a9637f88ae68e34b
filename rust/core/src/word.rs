//! One machine word of shared state, as percpu_ref sees it.
//!
//! The kernel keeps a percpu_ref in `unsigned long`s: one per CPU and one
//! `atomic_long_t`. zdfuzz runs the *same* percpu_ref code in two settings:
//!
//! * the deterministic simulation, single-threaded, where the CPU is an operand
//!   and the grace period an explicit event — there a word is a plain
//!   [`Cell<u64>`]: no `lock` prefix, no padding, cheap to copy and hash;
//! * real threads (stress harness, benchmark, loom), where a word is an
//!   [`AtomicU64`](crate::sync::AtomicU64), and per-CPU words are wrapped in
//!   [`CachePadded`] so that two CPUs never share a cache line — the whole
//!   point of a per-CPU counter.
//!
//! All arithmetic is modulo 2^64, as the kernel's `unsigned long` counters:
//! a per-CPU slot may wrap, only the sum of the slots means anything.

use crate::sync::{AtomicU64, Ordering};
use crossbeam_utils::CachePadded;
use std::cell::Cell;

/// A 64-bit cell with the handful of atomic operations percpu_ref needs.
/// Orderings are honoured by the atomic implementations and ignored by the
/// single-threaded [`Cell`] one.
pub trait Word {
    fn new(v: u64) -> Self;
    fn load(&self, o: Ordering) -> u64;
    fn store(&self, v: u64, o: Ordering);
    /// Wrapping add; returns the previous value.
    fn fetch_add(&self, v: u64, o: Ordering) -> u64;
    /// Wrapping subtract; returns the previous value.
    fn fetch_sub(&self, v: u64, o: Ordering) -> u64;
    fn fetch_or(&self, v: u64, o: Ordering) -> u64;
    /// `this_cpu_add`: a wrapping add by the only writer of this word — a load
    /// and a store, no locked read-modify-write. Correct only while a single
    /// thread (the CPU that owns the word) updates it; the per-CPU counters of
    /// percpu_ref obey that rule, as the kernel's do with preemption disabled.
    #[inline]
    fn owner_add(&self, v: u64) {
        self.store(self.load(Ordering::Relaxed).wrapping_add(v), Ordering::Relaxed)
    }
    fn fetch_and(&self, v: u64, o: Ordering) -> u64;
    /// Strong compare-and-exchange; `Err` carries the value seen.
    fn compare_exchange(&self, current: u64, new: u64, o: Ordering) -> Result<u64, u64>;
}

impl Word for Cell<u64> {
    #[inline]
    fn new(v: u64) -> Self {
        Cell::new(v)
    }
    #[inline]
    fn load(&self, _: Ordering) -> u64 {
        self.get()
    }
    #[inline]
    fn store(&self, v: u64, _: Ordering) {
        self.set(v)
    }
    #[inline]
    fn fetch_add(&self, v: u64, _: Ordering) -> u64 {
        let old = self.get();
        self.set(old.wrapping_add(v));
        old
    }
    #[inline]
    fn fetch_sub(&self, v: u64, _: Ordering) -> u64 {
        let old = self.get();
        self.set(old.wrapping_sub(v));
        old
    }
    #[inline]
    fn fetch_or(&self, v: u64, _: Ordering) -> u64 {
        let old = self.get();
        self.set(old | v);
        old
    }
    #[inline]
    fn fetch_and(&self, v: u64, _: Ordering) -> u64 {
        let old = self.get();
        self.set(old & v);
        old
    }
    #[inline]
    fn compare_exchange(&self, current: u64, new: u64, _: Ordering) -> Result<u64, u64> {
        let old = self.get();
        if old == current {
            self.set(new);
            Ok(old)
        } else {
            Err(old)
        }
    }
}

/// The failure ordering allowed for a given success ordering.
#[inline]
fn failure_ordering(o: Ordering) -> Ordering {
    match o {
        Ordering::Release | Ordering::Relaxed => Ordering::Relaxed,
        Ordering::SeqCst => Ordering::SeqCst,
        _ => Ordering::Acquire,
    }
}

impl Word for AtomicU64 {
    #[inline]
    fn new(v: u64) -> Self {
        AtomicU64::new(v)
    }
    #[inline]
    fn load(&self, o: Ordering) -> u64 {
        AtomicU64::load(self, o)
    }
    #[inline]
    fn store(&self, v: u64, o: Ordering) {
        AtomicU64::store(self, v, o)
    }
    #[inline]
    fn fetch_add(&self, v: u64, o: Ordering) -> u64 {
        AtomicU64::fetch_add(self, v, o)
    }
    #[inline]
    fn fetch_sub(&self, v: u64, o: Ordering) -> u64 {
        AtomicU64::fetch_sub(self, v, o)
    }
    #[inline]
    fn fetch_or(&self, v: u64, o: Ordering) -> u64 {
        AtomicU64::fetch_or(self, v, o)
    }
    #[inline]
    fn fetch_and(&self, v: u64, o: Ordering) -> u64 {
        AtomicU64::fetch_and(self, v, o)
    }
    #[inline]
    fn compare_exchange(&self, current: u64, new: u64, o: Ordering) -> Result<u64, u64> {
        AtomicU64::compare_exchange(self, current, new, o, failure_ordering(o))
    }
}

impl<W: Word> Word for CachePadded<W> {
    #[inline]
    fn new(v: u64) -> Self {
        CachePadded::new(W::new(v))
    }
    #[inline]
    fn load(&self, o: Ordering) -> u64 {
        (**self).load(o)
    }
    #[inline]
    fn store(&self, v: u64, o: Ordering) {
        (**self).store(v, o)
    }
    #[inline]
    fn fetch_add(&self, v: u64, o: Ordering) -> u64 {
        (**self).fetch_add(v, o)
    }
    #[inline]
    fn fetch_sub(&self, v: u64, o: Ordering) -> u64 {
        (**self).fetch_sub(v, o)
    }
    #[inline]
    fn fetch_or(&self, v: u64, o: Ordering) -> u64 {
        (**self).fetch_or(v, o)
    }
    #[inline]
    fn fetch_and(&self, v: u64, o: Ordering) -> u64 {
        (**self).fetch_and(v, o)
    }
    #[inline]
    fn compare_exchange(&self, current: u64, new: u64, o: Ordering) -> Result<u64, u64> {
        (**self).compare_exchange(current, new, o)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn exercise<W: Word>() {
        let w = W::new(1);
        assert_eq!(w.fetch_sub(2, Ordering::Relaxed), 1);
        assert_eq!(w.load(Ordering::Relaxed), u64::MAX, "subtraction wraps like unsigned long");
        assert_eq!(w.fetch_add(1, Ordering::Relaxed), u64::MAX);
        assert_eq!(w.load(Ordering::Relaxed), 0);
        assert_eq!(w.compare_exchange(1, 5, Ordering::AcqRel), Err(0));
        assert_eq!(w.compare_exchange(0, 5, Ordering::AcqRel), Ok(0));
        assert_eq!(w.fetch_or(2, Ordering::Relaxed), 5);
        assert_eq!(w.fetch_and(!1, Ordering::Relaxed), 7);
        assert_eq!(w.load(Ordering::Relaxed), 6);
    }

    #[test]
    fn cell_and_atomic_words_agree() {
        exercise::<Cell<u64>>();
        exercise::<AtomicU64>();
        exercise::<CachePadded<AtomicU64>>();
    }
}
