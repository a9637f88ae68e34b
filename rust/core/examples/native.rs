//! The native engine on p20, all four types: programs/s, and when each
//! signature was first found. `native [SECONDS] [SEED] [MAX_ACTIONS]`
use zdfuzz_core::fuzz::{NativeConfig, NativeFuzzer};
use zdfuzz_core::{DeviceType, Rules};
fn main() {
    let a: Vec<String> = std::env::args().collect();
    let secs: f64 = a.get(1).and_then(|s| s.parse().ok()).unwrap_or(5.0);
    let seed: u64 = a.get(2).and_then(|s| s.parse().ok()).unwrap_or(1);
    let max: usize = a.get(3).and_then(|s| s.parse().ok()).unwrap_or(64);
    let preset = std::env::var("ZD_RULES").unwrap_or_else(|_| "p20".into());
    let mut cfg = NativeConfig::new(Rules::preset(&preset).unwrap(), DeviceType::DEFAULT.to_vec(), seed);
    cfg.max_actions = max;
    cfg.swarm = std::env::var("ZD_NOSWARM").is_err();
    let mut f = NativeFuzzer::new(cfg).unwrap();
    let t0 = std::time::Instant::now();
    let found = f.run(u64::MAX, Some(t0 + std::time::Duration::from_secs_f64(secs)));
    let dt = t0.elapsed().as_secs_f64();
    let s = f.stats();
    println!(
        "{} execs in {dt:.1}s: {:.0} programs/s, {:.2} M steps/s, corpus {}, edges {}",
        s.execs,
        s.execs as f64 / dt,
        s.steps as f64 / dt / 1e6,
        s.corpus,
        s.edges
    );
    for x in found {
        println!("{:>8.3}s exec {:>8}  {}  ({} actions)", x.seconds, x.exec, x.signature, x.program.ops.len());
    }
}
