//! Fixed work for instruction counting (`valgrind --tool=callgrind`):
//! run N random 64-action byte programs per preset.
use zdfuzz_core::{Config, Machine, Rules};
fn main() {
    let n: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(2000);
    let mut total = 0usize;
    for preset in ["e1", "e3", "e5"] {
        let mut m = Machine::new(Config::new(Rules::preset(preset).unwrap())).unwrap();
        let mut seed = 42u64;
        for _ in 0..n {
            let data: Vec<u8> = (0..64 * 4)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    (seed >> 24) as u8
                })
                .collect();
            total += m.run_bytes(&data).steps;
        }
    }
    println!("{total} steps");
}
