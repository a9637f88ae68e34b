//! Real threads on the lock-free percpu_ref: release fires exactly once,
//! after every put, never early.
#![cfg(not(loom))]

use zdfuzz_core::stress::run_stress;

#[test]
fn release_fires_once_after_every_put() {
    for round in 0..20 {
        let rep = run_stress(3, 20_000);
        assert_eq!(rep.releases, 1, "round {round}: {rep:?}");
        assert_eq!(rep.puts_after_release, 0, "round {round}: release ran early: {rep:?}");
        assert_eq!(rep.events, 0, "round {round}: misuse reported: {rep:?}");
    }
}
