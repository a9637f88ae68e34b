//! Minimizer speed: a violating program of N actions (default 200) from the
//! native engine's decoder, minimized. `minimize200 [N] [SEED]`
use zdfuzz_core::fuzz::Rng;
use zdfuzz_core::minimize::minimize;
use zdfuzz_core::program::text::program_to_text;
use zdfuzz_core::{Config, DeviceType, Machine, Program, Rules, Shape};
fn main() {
    let a: Vec<String> = std::env::args().collect();
    let n: usize = a.get(1).and_then(|s| s.parse().ok()).unwrap_or(200);
    let seed: u64 = a.get(2).and_then(|s| s.parse().ok()).unwrap_or(1);
    let rules = Rules::preset("p20").unwrap();
    let shape = Shape { types: DeviceType::DEFAULT.to_vec(), ..Shape::default() };
    let mut m = Machine::new(Config::with_shape(rules.clone(), shape.clone())).unwrap();
    let mut rng = Rng::new(seed);
    // a program of exactly n actions whose violation comes at its end
    let p = loop {
        let data: Vec<u8> = (0..n * 8).map(|_| rng.byte()).collect();
        let ops = m.decode_program(&data);
        if ops.len() == n && m.violation().is_some() {
            break Program::new("p20", shape.clone(), ops);
        }
    };
    let t0 = std::time::Instant::now();
    let r = minimize(&rules, &p, None, 1_000_000).unwrap();
    println!(
        "{} actions -> {} in {:.3}s ({} runs): {}",
        r.original_len,
        r.program.ops.len(),
        t0.elapsed().as_secs_f64(),
        r.runs,
        r.signature
    );
    print!("{}", program_to_text(&r.program));
}
