//! Running a text program in the tests: parse, build the machine with its
//! shape, run with tracing, and show a verdict with its trace.

use zdfuzz_core::program::text::parse_program;
use zdfuzz_core::{Config, Machine, Rules, Verdict};

/// Run `text` under `rules`; an action that is not enabled panics with its index.
pub fn run_as(text: &str, rules: Rules) -> Verdict {
    let p = parse_program(text).unwrap();
    let mut m = Machine::new(Config::with_shape(rules, p.shape.clone())).unwrap();
    m.set_tracing(true);
    m.run(&p.ops).unwrap_or_else(|(i, e)| panic!("op {i} ({:?}): {e}", p.ops[i]))
}

/// The reported violation and the trace, one line per step.
pub fn show(v: &Verdict) -> String {
    let mut s = format!("{:?}\n", v.reported());
    for t in &v.trace {
        s += &format!("{:>3} {} {:?} {:?}\n", t.step, t.action, t.changes, t.notes);
    }
    s
}
