//! The native engine's hot path allocates nothing per executed program:
//! allocations come only from corpus additions and from violations (the
//! machine formats a violation's message; the engine computes its
//! signature), never from a clean program that adds no coverage.
#![cfg(not(loom))]

#[path = "common/counting_alloc.rs"]
mod counting_alloc;

use counting_alloc::allocs_here;
use zdfuzz_core::fuzz::{NativeConfig, NativeFuzzer};
use zdfuzz_core::{DeviceType, Rules};

#[test]
fn allocations_come_only_from_corpus_growth_and_violations() {
    for preset in ["e3", "p20"] {
        let mut f =
            NativeFuzzer::new(NativeConfig::new(Rules::preset(preset).unwrap(), DeviceType::DEFAULT.to_vec(), 1))
                .unwrap();
        f.run(3000, None); // warm up: buffers reach their size
        let s0 = f.stats();
        let a0 = allocs_here();
        f.run(4000, None);
        let allocs = allocs_here() - a0;
        let s1 = f.stats();
        let grown = (s1.corpus - s0.corpus) as u64;
        let violations = s1.violations - s0.violations;
        // a corpus entry: its bytes, now and then the corpus vector; a
        // violation: the machine's strings and the signature's
        // (a livelock report, I-D3, lists the faults and their pages: up to
        // ~20 small strings)
        let budget = 3 * grown + 24 * violations + 16;
        assert!(
            allocs as u64 <= budget,
            "{preset}: {allocs} allocations for 4000 programs, {grown} new entries, {violations} violations"
        );
        assert!(4000 - violations > 1000, "{preset}: too few clean programs to say anything ({violations} violations)");
    }
}
