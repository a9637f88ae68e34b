//! Run the explorer from the command line (profiling, quick numbers):
//! `cargo run --release --example explore -- PRESET TYPES DEPTH [THREADS] [sym|exact] [SHAPE] [MAX_MIB]`
//! where SHAPE is `pages=4,cpus=2,...` (Shape field names), e.g.
//! `... -- e4 private,fsdax,generic,p2pdma 5 1 sym pages=4`.
use zdfuzz_core::explore::{explore, Control, Options};
use zdfuzz_core::fingerprint::Reduction;
use zdfuzz_core::program::text::program_to_text;
use zdfuzz_core::{Config, DeviceType, Rules, Shape};

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let arg = |i: usize, d: &str| a.get(i).cloned().unwrap_or_else(|| d.to_string());
    let rules = Rules::preset(&arg(1, "e4")).expect("preset");
    let types =
        arg(2, "private,fsdax,generic,p2pdma").split(',').map(|t| DeviceType::from_name(t).expect("type")).collect();
    // no system RAM and no THPs unless asked for (SHAPE ram=..,order=..)
    let mut shape = Shape { types, ram: 0, order: 0, ..Shape::default() };
    for kv in arg(6, "").split(',').filter(|s| !s.is_empty()) {
        let (k, v) = kv.split_once('=').expect("SHAPE is name=value,...");
        assert!(shape.set(k, v.parse().expect("a number")), "no shape field {k}");
    }
    let opts = Options {
        depth: arg(3, "4").parse().unwrap_or(4),
        threads: arg(4, "1").parse().unwrap_or(1),
        reduction: if arg(5, "sym") == "exact" { Reduction::None } else { Reduction::Symmetry },
        max_memory: arg(7, "4096").parse::<u64>().unwrap_or(4096) << 20,
        ..Options::default()
    };
    let o = explore(&Config::with_shape(rules, shape), &opts, &Control::new()).expect("explore");
    for l in &o.levels {
        println!(
            "depth {:>2}: {:>10} new, {:>10} states, {:>12} transitions",
            l.depth, l.new_states, l.states, l.transitions
        );
    }
    println!("{}", o.summary());
    println!(
        "{:.0} states/s/thread, peak memory {} MiB",
        o.states as f64 / o.seconds / o.threads as f64,
        o.peak_memory >> 20
    );
    if let Some(c) = &o.counterexample {
        print!("{}", program_to_text(&c.program));
        println!("{:?}", c.verdict.reported());
    }
}
