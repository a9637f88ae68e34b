//! loom model checking of the lock-free percpu_ref and its QSBR grace period.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p zdfuzz-core --test loom_percpu_ref --release`.
//! Preemptions are bounded so each model finishes in seconds.
#![cfg(loom)]

use loom::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use loom::sync::Arc;
use loom::thread;
use zdfuzz_core::init_flags::{ALLOW_REINIT, INIT_ATOMIC};
use zdfuzz_core::stress::SharedRef;

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(3);
    b.check(f);
}

fn counted(cpus: usize, flags: u32) -> (Arc<SharedRef>, Arc<AtomicU64>) {
    let released = Arc::new(AtomicU64::new(0));
    let r2 = released.clone();
    let r = SharedRef::new(cpus, flags, move || {
        r2.fetch_add(1, Ordering::SeqCst);
    });
    (Arc::new(r), released)
}

/// A user gets and puts on its CPU while the owner kills the ref and the
/// grace period folds the per-CPU counts: release exactly once, only after
/// the user's last put, and no underflow at the fold.
#[test]
fn get_put_racing_with_kill_and_fold() {
    model(|| {
        let (r, released) = counted(2, 0);
        r.get(0).unwrap(); // the user's reference, taken before the kill
        let user = {
            let (r, released) = (r.clone(), released.clone());
            thread::spawn(move || {
                r.get(0).unwrap();
                r.put(0).unwrap();
                r.rcu.quiescent(0);
                assert_eq!(released.load(Ordering::SeqCst), 0, "released while a reference is held");
                let fx = r.put(0).unwrap();
                assert!(fx.events.is_empty(), "{fx:?}");
                r.rcu.offline(0);
            })
        };
        r.rcu.offline(1); // the owner is not a reader
        let fx = r.kill();
        assert!(fx.events.is_empty(), "{fx:?}");
        let fx = r.grace_period();
        assert!(fx.events.is_empty(), "underflow at the fold: {fx:?}");
        user.join().unwrap();
        assert_eq!(released.load(Ordering::SeqCst), 1);
        assert_eq!(r.inner.count(), 0);
    });
}

/// tryget_live racing with kill: a user may win before the kill is seen,
/// but after the confirmation (grace period) no tryget_live succeeds; the
/// count stays exact and release runs once.
#[test]
fn tryget_live_racing_with_kill() {
    model(|| {
        let (r, released) = counted(2, 0);
        let user = {
            let r = r.clone();
            thread::spawn(move || {
                if r.tryget_live(0).unwrap() {
                    r.rcu.quiescent(0);
                    r.put(0).unwrap();
                }
                r.rcu.offline(0);
            })
        };
        r.rcu.offline(1);
        r.kill();
        r.grace_period();
        assert!(!r.tryget_live(1).unwrap(), "tryget_live succeeded after the kill was confirmed");
        user.join().unwrap();
        assert_eq!(released.load(Ordering::SeqCst), 1);
    });
}

/// The last two puts race in atomic mode: exactly one of them runs
/// release, and release observes everything both users did before their
/// put (the AcqRel on the counter orders it).
#[test]
fn last_put_racing_with_release() {
    model(|| {
        let done = Arc::new([AtomicBool::new(false), AtomicBool::new(false)]);
        let released = Arc::new(AtomicU64::new(0));
        let (d2, r2) = (done.clone(), released.clone());
        let r = Arc::new(SharedRef::new(2, INIT_ATOMIC, move || {
            assert!(d2[0].load(Ordering::Relaxed), "release before user 0 finished");
            assert!(d2[1].load(Ordering::Relaxed), "release before user 1 finished");
            r2.fetch_add(1, Ordering::Relaxed);
        }));
        r.get(0).unwrap();
        r.get(1).unwrap();
        r.kill(); // atomic already: drops the initial ref, no grace period
        let users: Vec<_> = (0..2)
            .map(|cpu| {
                let (r, done) = (r.clone(), done.clone());
                thread::spawn(move || {
                    done[cpu].store(true, Ordering::Relaxed);
                    r.put(cpu).unwrap();
                })
            })
            .collect();
        for u in users {
            u.join().unwrap();
        }
        assert_eq!(released.load(Ordering::Relaxed), 1);
    });
}

/// switch_to_percpu racing with a get/put: the per-CPU counters are zeroed
/// and the bias added before ATOMIC is cleared, so no update is lost and the
/// count afterwards is exact.
#[test]
fn switch_to_percpu_racing_with_get() {
    model(|| {
        let (r, released) = counted(2, INIT_ATOMIC | ALLOW_REINIT);
        let user = {
            let r = r.clone();
            thread::spawn(move || {
                r.get(0).unwrap();
                r.put(0).unwrap();
                r.get(0).unwrap(); // keeps one reference
                r.rcu.offline(0);
            })
        };
        r.rcu.offline(1);
        let fx = r.switch_to_percpu();
        assert!(fx.events.is_empty(), "{fx:?}");
        user.join().unwrap();
        assert_eq!(r.inner.count(), 2, "initial + the user's reference");
        r.kill();
        r.grace_period();
        assert_eq!(released.load(Ordering::SeqCst), 0);
        r.put(1).unwrap();
        assert_eq!(released.load(Ordering::SeqCst), 1);
    });
}
