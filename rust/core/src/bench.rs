//! Throughput of the percpu_ref fast path against one shared atomic counter.
//!
//! This is *why* `pgmap->ref` is a percpu_ref: with a shared `atomic_long_t`
//! every get/put of every CPU bounces one cache line; with per-CPU counters a
//! get/put touches only the CPU's own line. Both sides run in the same call,
//! interleaved round by round, so machine noise hits both alike.

#![cfg(not(loom))]

use crate::stress::RealRef;
use crate::sync::{AtomicU64, Ordering};
use crossbeam_utils::CachePadded;
use std::hint::black_box;
use std::sync::Barrier;
use std::time::Instant;

/// One measurement: `threads` threads each doing `pairs` get+put pairs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Throughput {
    pub threads: usize,
    /// get+put pairs per second, all threads together.
    pub pairs_per_sec: f64,
    /// Nanoseconds per get+put pair, per thread.
    pub ns_per_pair: f64,
}

fn measure(threads: usize, pairs: u64, body: &(dyn Fn(usize, u64) + Sync)) -> Throughput {
    // Each thread times its own work, from the barrier's release to the end
    // of its loop; the run lasts from the first start to the last end. A
    // clock read by the coordinating thread instead would miss work done
    // while it was descheduled (on a shared 2-core machine, whole runs).
    let barrier = Barrier::new(threads);
    let spans: Vec<(Instant, Instant)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    let start = Instant::now();
                    body(t, pairs);
                    (start, Instant::now())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("benchmark thread panicked")).collect()
    });
    let first = spans.iter().map(|s| s.0).min().expect("at least one thread");
    let last = spans.iter().map(|s| s.1).max().expect("at least one thread");
    let elapsed = last.duration_since(first).as_secs_f64();
    let total = threads as f64 * pairs as f64;
    Throughput { threads, pairs_per_sec: total / elapsed.max(1e-9), ns_per_pair: elapsed * 1e9 / pairs.max(1) as f64 }
}

/// get+put pairs on each thread's own CPU slot of a percpu-mode ref.
pub fn percpu_pairs(threads: usize, pairs: u64) -> Throughput {
    let r = RealRef::new(threads.max(1), 0);
    measure(threads, pairs, &|cpu, n| {
        for _ in 0..n {
            let _ = black_box(r.get(cpu));
            let _ = black_box(r.put(cpu));
        }
    })
}

/// The same pairs on a single shared atomic counter (what `pgmap->ref` would
/// cost as a plain `atomic_long_t`, i.e. a percpu_ref in atomic mode).
pub fn shared_atomic_pairs(threads: usize, pairs: u64) -> Throughput {
    let c = CachePadded::new(AtomicU64::new(1));
    measure(threads, pairs, &|_, n| {
        for _ in 0..n {
            black_box(c.fetch_add(1, Ordering::AcqRel));
            black_box(c.fetch_sub(1, Ordering::AcqRel));
        }
    })
}

/// The ref in atomic mode (after `switch_to_atomic_sync`): the real code
/// path a killed pgmap's users take.
pub fn atomic_mode_pairs(threads: usize, pairs: u64) -> Throughput {
    let r = RealRef::new(threads.max(1), crate::init_flags::INIT_ATOMIC);
    measure(threads, pairs, &|cpu, n| {
        for _ in 0..n {
            let _ = black_box(r.get(cpu));
            let _ = black_box(r.put(cpu));
        }
    })
}

/// Side-by-side comparison: `rounds` interleaved rounds of each variant;
/// returns the per-variant median (by pairs/s).
pub fn compare(threads: usize, pairs: u64, rounds: usize) -> [Throughput; 3] {
    let mut a = Vec::new();
    let mut b = Vec::new();
    let mut c = Vec::new();
    for _ in 0..rounds.max(1) {
        a.push(percpu_pairs(threads, pairs));
        b.push(shared_atomic_pairs(threads, pairs));
        c.push(atomic_mode_pairs(threads, pairs));
    }
    let median = |mut v: Vec<Throughput>| {
        v.sort_by(|x, y| x.pairs_per_sec.total_cmp(&y.pairs_per_sec));
        v[v.len() / 2]
    };
    [median(a), median(b), median(c)]
}
