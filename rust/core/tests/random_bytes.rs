//! Random inputs never make the core panic: random bytes through the byte
//! decoder under every preset (eras and regression presets) and a range of
//! shapes, and random text through the `.zdf` and TOML parsers.
//!
//! A bounded run is part of the test suite. The long job (ten million
//! inputs, a few minutes in release mode):
//!
//! ```text
//! ZDFUZZ_RANDOM_INPUTS=10000000 cargo test --release -p zdfuzz-core --test random_bytes
//! ```

use zdfuzz_core::program::text::parse_program;
use zdfuzz_core::rules::DeviceType;
use zdfuzz_core::{Config, Machine, Rules, Shape};

/// xorshift64*: a fixed, dependency-free stream (a failure names its input
/// number, and the same number gives the same input)
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let n = self.below(max + 1);
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn shapes() -> Vec<Shape> {
    let mut out = Vec::new();
    for mask in 1..16usize {
        let types: Vec<DeviceType> =
            DeviceType::DEFAULT.iter().enumerate().filter(|(i, _)| mask >> i & 1 == 1).map(|(_, t)| *t).collect();
        for (pages, cpus, order) in [(1, 1, 0), (4, 2, 1), (8, 4, 0)] {
            let mut s = Shape { types: types.clone(), pages, cpus, ..Shape::default() };
            if types.contains(&DeviceType::Private) {
                s.ram = 4;
                s.order = order;
            }
            if s.validate().is_ok() {
                out.push(s);
            }
        }
    }
    out
}

#[test]
fn random_inputs_never_panic() {
    let n: u64 = std::env::var("ZDFUZZ_RANDOM_INPUTS").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000);
    let presets = Rules::builtin();
    assert!(presets.len() >= 12);
    let shapes = shapes();
    let mut machines: Vec<Machine> = Vec::new();
    for r in presets {
        for s in &shapes {
            machines.push(Machine::new(Config::with_shape(r.clone(), s.clone())).unwrap());
        }
    }
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut violations, mut parsed) = (0u64, 0u64);
    for i in 0..n {
        match i % 16 {
            // text: mostly-valid words, so the parser gets past the first line
            14 => {
                let words = [
                    "rules",
                    "e3",
                    "config",
                    "types=generic",
                    "pages=3",
                    "memremap_pages",
                    "pgmap=0",
                    "\n",
                    "#",
                    "=",
                    "\r",
                ];
                let text: String =
                    (0..rng.below(40)).map(|_| words[rng.below(words.len())]).collect::<Vec<_>>().join(" ");
                parsed += parse_program(&text).is_ok() as u64;
            }
            15 => {
                let raw = rng.bytes(256);
                let _ = Rules::from_toml_str(&String::from_utf8_lossy(&raw), "random.toml");
            }
            _ => {
                let k = rng.below(machines.len());
                let data = rng.bytes(512);
                violations += machines[k].run_bytes(&data).violation.is_some() as u64;
            }
        }
    }
    // the inputs exercised something (the count is not a rate)
    assert!(n < 1000 || violations > 0, "no random byte program broke an invariant in {n} inputs");
    assert!(n < 1000 || parsed > 0, "no random text parsed");
}
