//! Developer tool: run a `.zdf` file under a preset or a TOML rules file and
//! print the whole trace. `cargo run --example replay FILE [RULES]`
use zdfuzz_core::program::text::parse_program;
use zdfuzz_core::{Config, Machine, Rules};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(file) = args.get(1) else {
        eprintln!("usage: replay FILE.zdf [PRESET|RULES.toml]");
        std::process::exit(2);
    };
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{file}: {e}"));
    let p = parse_program(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
    let name = args.get(2).cloned().unwrap_or_else(|| p.rules.clone());
    let rules = Rules::preset(&name)
        .or_else(|| Rules::load(std::path::Path::new(&name)).map_err(|e| eprintln!("{e}")).ok())
        .unwrap_or_else(|| panic!("no rules {name}"));
    let mut m = Machine::new(Config::with_shape(rules, p.shape.clone())).unwrap_or_else(|e| panic!("{e}"));
    m.set_tracing(true);
    match m.run(&p.ops) {
        Ok(v) => {
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
        }
        Err((i, e)) => println!("op {i} rejected: {e}"),
    }
}
