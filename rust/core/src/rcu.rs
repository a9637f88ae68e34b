//! A quiescent-state-based RCU domain for real threads.
//!
//! Mirrors what percpu_ref needs from kernel RCU (`call_rcu` /
//! `synchronize_rcu` in a non-preemptible kernel): a *grace period* ends once
//! every CPU has passed through a *quiescent state* — a point where it is not
//! inside a percpu_ref fast-path operation. In the kernel a context switch is
//! a quiescent state and `rcu_read_lock()` costs nothing; here each worker
//! thread owns a CPU slot and calls [`Rcu::quiescent`] between operations (or
//! [`Rcu::offline`] when it stops), so the fast path stays a plain load of the
//! mode word and an uncontended add on the thread's own cache line.
//!
//! Why it is enough for percpu_ref: the switcher sets ATOMIC, then
//! [`Rcu::synchronize`] bumps the epoch (Release) and waits until every
//! online CPU has published (Release) a quiescent state of the new epoch,
//! read with Acquire. A CPU announcing that state first read the new epoch
//! (Acquire), so its later operations see ATOMIC; its earlier per-CPU updates
//! happen-before the announcement and therefore before the fold.

use crate::sync::{spin_hint, AtomicU64, Ordering};
use crossbeam_utils::CachePadded;

/// A CPU that is outside every read-side section for good.
const OFFLINE: u64 = u64::MAX;

#[derive(Debug)]
pub struct Rcu {
    epoch: CachePadded<AtomicU64>,
    /// Per CPU: the last epoch it announced a quiescent state in.
    seen: Box<[CachePadded<AtomicU64>]>,
}

impl Rcu {
    /// A domain with `cpus` CPU slots, all online, none quiescent yet.
    pub fn new(cpus: usize) -> Self {
        Rcu {
            epoch: CachePadded::new(AtomicU64::new(0)),
            seen: (0..cpus.max(1)).map(|_| CachePadded::new(AtomicU64::new(0))).collect(),
        }
    }

    pub fn cpus(&self) -> usize {
        self.seen.len()
    }

    /// The calling thread, running as `cpu`, is between fast-path operations.
    /// Out-of-range CPUs are ignored.
    #[inline]
    pub fn quiescent(&self, cpu: usize) {
        if let Some(s) = self.seen.get(cpu) {
            let e = self.epoch.load(Ordering::Acquire);
            if s.load(Ordering::Relaxed) != e {
                s.store(e, Ordering::Release);
            }
        }
    }

    /// `cpu` stops taking part (an idle CPU: an extended quiescent state).
    pub fn offline(&self, cpu: usize) {
        if let Some(s) = self.seen.get(cpu) {
            s.store(OFFLINE, Ordering::Release);
        }
    }

    /// `cpu` takes part again; it must not be inside an operation.
    pub fn online(&self, cpu: usize) {
        if let Some(s) = self.seen.get(cpu) {
            s.store(self.epoch.load(Ordering::Acquire), Ordering::Release);
        }
    }

    /// `synchronize_rcu()`: wait until every online CPU passed a quiescent
    /// state after this call began. The caller must not itself be a CPU that
    /// is waited for (it would wait for itself), unless it is offline.
    pub fn synchronize(&self) {
        let target = self.epoch.fetch_add(1, Ordering::AcqRel) + 1;
        for s in self.seen.iter() {
            loop {
                let v = s.load(Ordering::Acquire);
                if v == OFFLINE || v >= target {
                    break;
                }
                spin_hint();
            }
        }
    }
}
