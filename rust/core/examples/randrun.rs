//! Random byte programs against every preset: throughput, and the first
//! program per invariant. `randrun N LEN [PRESET INDEX]` dumps one program.
use std::collections::BTreeMap;
use zdfuzz_core::program::text::program_to_text;
use zdfuzz_core::{Config, Machine, Program, Rules, Shape};

fn gen(seed: &mut u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|_| {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            (*seed >> 24) as u8
        })
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(20000);
    let len: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(200);
    if let (Some(preset), Some(idx)) = (args.get(3), args.get(4).and_then(|s| s.parse::<usize>().ok())) {
        let mut shape = Shape::default();
        if let Some(t) = std::env::var("ZD_TYPE").ok().and_then(|t| zdfuzz_core::DeviceType::from_name(&t)) {
            shape.types = vec![t];
        }
        let mut m = Machine::new(Config::with_shape(Rules::preset(preset).unwrap(), shape.clone())).unwrap();
        let mut seed: u64 = 0x9E3779B97F4A7C15;
        let mut data = Vec::new();
        for _ in 0..=idx {
            data = gen(&mut seed, len);
        }
        let ops = m.decode_program(&data);
        println!("{}", program_to_text(&Program::new(preset, shape, ops)));
        m.set_tracing(true);
        let v = m.run_bytes(&data);
        for t in &v.trace {
            println!(
                "{:>3} {}{} {:?} {:?}",
                t.step,
                if t.drain { "drain: " } else { "" },
                t.action,
                t.changes,
                t.notes
            );
        }
        println!("violation: {:?}\nconformance: {:?}", v.violation, v.conformance);
        return;
    }
    let only: Option<zdfuzz_core::DeviceType> =
        std::env::var("ZD_TYPE").ok().and_then(|t| zdfuzz_core::DeviceType::from_name(&t));
    for preset in ["e1", "e2", "e3", "e4", "e5", "p20"] {
        let mut shape = Shape::default();
        if let Some(t) = only {
            shape.types = vec![t];
        }
        let mut m = Machine::new(Config::with_shape(Rules::preset(preset).unwrap(), shape)).unwrap();
        let mut seed: u64 = 0x9E3779B97F4A7C15;
        let mut found: BTreeMap<String, (usize, String)> = BTreeMap::new();
        let mut conf: BTreeMap<String, (usize, String)> = BTreeMap::new();
        let mut steps = 0usize;
        let t0 = std::time::Instant::now();
        for i in 0..n {
            let data = gen(&mut seed, len);
            let v = m.run_bytes(&data);
            steps += v.steps;
            if let Some(x) = &v.violation {
                found.entry(x.invariant.to_string()).or_insert((i, x.message.clone()));
            }
            if let Some(x) = &v.conformance {
                conf.entry(x.invariant.to_string()).or_insert((i, x.message.clone()));
            }
        }
        let dt = t0.elapsed().as_secs_f64();
        println!("== {preset}: {n} programs, {:.0} steps/s, {:.0} programs/s", steps as f64 / dt, n as f64 / dt);
        for (k, (i, msg)) in &found {
            println!("  safety {k} (#{i}): {msg}");
        }
        for (k, (i, msg)) in &conf {
            println!("  CONFORMANCE {k} (#{i}): {msg}");
        }
    }
}
