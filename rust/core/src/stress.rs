//! percpu_ref driven by real threads.
//!
//! [`SharedRef`] is what a kernel subsystem embeds: the lock-free
//! [`PercpuRef`] over cache-padded atomics, the global `percpu_ref_switch_lock`
//! (a mutex serializing control operations), an [`Rcu`] domain for the grace
//! period, and the release callback. [`run_stress`] is the stress harness:
//! worker threads get/put on their own CPU slots while a killer kills the ref,
//! waits for a grace period and then for release; release must fire exactly
//! once, after every worker's last put.

use crate::percpu_ref::{Effects, NoSuchCpu, PercpuRef};
use crate::rcu::Rcu;
#[cfg(not(loom))]
use crate::sync::{spin_hint, thread, Arc, AtomicBool, Ordering};
use crate::sync::{AtomicU64, Mutex};
use crossbeam_utils::CachePadded;

/// The ref as real threads share it.
pub type RealRef = PercpuRef<CachePadded<AtomicU64>>;

pub struct SharedRef {
    pub inner: RealRef,
    pub rcu: Rcu,
    switch_lock: Mutex<()>,
    release: Box<dyn Fn() + Send + Sync>,
}

impl SharedRef {
    pub fn new(cpus: usize, flags: u32, release: impl Fn() + Send + Sync + 'static) -> Self {
        SharedRef {
            inner: RealRef::new(cpus, flags),
            rcu: Rcu::new(cpus),
            switch_lock: Mutex::new(()),
            release: Box::new(release),
        }
    }

    fn after(&self, fx: Effects) -> Effects {
        if fx.released {
            (self.release)();
        }
        fx
    }

    #[inline]
    pub fn get(&self, cpu: usize) -> Result<Effects, NoSuchCpu> {
        self.inner.get(cpu)
    }

    #[inline]
    pub fn put(&self, cpu: usize) -> Result<Effects, NoSuchCpu> {
        self.inner.put(cpu).map(|fx| self.after(fx))
    }

    #[inline]
    pub fn tryget_live(&self, cpu: usize) -> Result<bool, NoSuchCpu> {
        self.inner.tryget_live(cpu).map(|(ok, _)| ok)
    }

    /// Run a control operation under the switch lock. If a switch is still
    /// waiting for its grace period, synchronize RCU first, so that the core's
    /// "the grace period elapses now" is true for real threads too.
    fn control(&self, op: impl FnOnce(&RealRef) -> Effects) -> Effects {
        let _guard = self.switch_lock.lock().unwrap_or_else(|p| p.into_inner());
        if self.inner.switch_pending() {
            self.rcu.synchronize();
        }
        let fx = op(&self.inner);
        self.after(fx)
    }

    pub fn kill(&self) -> Effects {
        self.control(|r| r.kill())
    }

    pub fn switch_to_percpu(&self) -> Effects {
        self.control(|r| r.switch_to_percpu())
    }

    pub fn switch_to_atomic(&self) -> Effects {
        self.control(|r| r.switch_to_atomic(false))
    }

    /// Wait for a grace period, then run the pending switch's RCU callback.
    pub fn grace_period(&self) -> Effects {
        self.control(|r| r.grace_period())
    }
}

/// Result of one [`run_stress`] round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StressReport {
    pub releases: u64,
    /// Puts that completed after release had run (must be 0).
    pub puts_after_release: u64,
    /// Gets/puts performed in total by the workers.
    pub ops: u64,
    /// Misuse events seen by anyone (must be 0).
    pub events: u64,
}

/// Workers each hold one reference, do `ops` get/put pairs on their own CPU
/// slot, announcing quiescent states, and drop their reference; meanwhile
/// the killer kills the ref, waits for a grace period and spins until
/// release. Not for loom (unbounded loops); loom has its own small tests.
#[cfg(not(loom))]
pub fn run_stress(workers: usize, ops: u64) -> StressReport {
    let released = Arc::new(AtomicU64::new(0));
    let r2 = released.clone();
    let r = Arc::new(SharedRef::new(workers + 1, 0, move || {
        r2.fetch_add(1, Ordering::SeqCst);
    }));
    let events = Arc::new(AtomicU64::new(0));
    let late = Arc::new(AtomicU64::new(0));
    let start = Arc::new(AtomicBool::new(false));
    // Each worker's reference is taken before the ref can be killed.
    for cpu in 0..workers {
        r.get(cpu).ok();
    }
    let mut handles = Vec::new();
    for cpu in 0..workers {
        let (r, events, late, released, start) =
            (r.clone(), events.clone(), late.clone(), released.clone(), start.clone());
        handles.push(thread::spawn(move || {
            while !start.load(Ordering::Acquire) {
                spin_hint();
            }
            let count = |fx: Result<Effects, NoSuchCpu>| {
                if fx.map_or(true, |f| !f.events.is_empty()) {
                    events.fetch_add(1, Ordering::Relaxed);
                }
            };
            for i in 0..ops {
                count(r.get(cpu));
                count(r.put(cpu));
                if i % 64 == 0 {
                    r.rcu.quiescent(cpu);
                }
            }
            if released.load(Ordering::SeqCst) != 0 {
                late.fetch_add(1, Ordering::Relaxed);
            }
            count(r.put(cpu)); // the worker's own reference
            r.rcu.offline(cpu);
        }));
    }
    // The killer runs as the last CPU slot, offline for RCU purposes.
    let killer = workers;
    r.rcu.offline(killer);
    start.store(true, Ordering::Release);
    let mut fx = r.kill();
    fx.absorb(r.grace_period());
    if !fx.events.is_empty() {
        events.fetch_add(1, Ordering::Relaxed);
    }
    while released.load(Ordering::SeqCst) == 0 {
        spin_hint();
        thread::yield_now();
    }
    for h in handles {
        h.join().ok();
    }
    StressReport {
        releases: released.load(Ordering::SeqCst),
        puts_after_release: late.load(Ordering::SeqCst),
        ops: workers as u64 * ops * 2,
        events: events.load(Ordering::SeqCst),
    }
}
