//! Actions per second in run_bytes for programs of a given action count.
use zdfuzz_core::{Config, Machine, Rules};
fn main() {
    let target: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(64);
    for preset in ["e1", "e3", "e4"] {
        let mut m = Machine::new(Config::new(Rules::preset(preset).unwrap())).unwrap();
        let mut seed = 42u64;
        // build byte programs that decode to exactly `target` actions
        let mut progs = Vec::new();
        while progs.len() < 2000 {
            let data: Vec<u8> = (0..target * 6)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    (seed >> 24) as u8
                })
                .collect();
            let ops = m.decode_program(&data);
            if ops.len() >= target {
                progs.push(m.encode_program(&ops[..target]));
            }
        }
        let t0 = std::time::Instant::now();
        let (mut actions, mut steps, mut runs) = (0usize, 0usize, 0usize);
        while t0.elapsed().as_secs_f64() < 2.0 {
            for p in &progs {
                let v = m.run_bytes(p);
                steps += v.steps;
                actions += target.min(v.steps);
                runs += 1;
            }
        }
        let dt = t0.elapsed().as_secs_f64();
        println!(
            "{preset}: {:.0} programs/s, {:.2} M program actions/s, {:.2} M steps/s (with drain), {:.0} ns/step",
            runs as f64 / dt,
            actions as f64 / dt / 1e6,
            steps as f64 / dt / 1e6,
            dt * 1e9 / steps as f64
        );
    }
}
