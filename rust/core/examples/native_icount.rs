//! Fixed work for instruction counting (`valgrind --tool=callgrind`): the
//! native engine on p20, all four types, seed 1, for N programs (default
//! 10,000). Deterministic: the printed counters are identical on every run
//! and must stay so across hot-path changes that claim not to change
//! behaviour (benchmarks/README.md).
use zdfuzz_core::fuzz::{NativeConfig, NativeFuzzer};
use zdfuzz_core::{DeviceType, Rules};
fn main() {
    let n: u64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let cfg = NativeConfig::new(Rules::preset("p20").unwrap(), DeviceType::DEFAULT.to_vec(), 1);
    let mut f = NativeFuzzer::new(cfg).unwrap();
    let found = f.run(n, None);
    let s = f.stats();
    println!("{} execs, {} steps, corpus {}, edges {}, {} findings", s.execs, s.steps, s.corpus, s.edges, found.len());
}
