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

/// Every trace note of a verdict, one action's notes per line.
#[allow(dead_code)] // not every test file that includes this module reads notes
pub fn notes(v: &Verdict) -> String {
    v.trace.iter().map(|t| t.notes.join("; ")).collect::<Vec<_>>().join("\n")
}

/// The machine after every action of `text` under `rules` (no drain); an
/// action that is not enabled panics with its index and the reason.
#[allow(dead_code)] // not every test file that includes this module needs it
pub fn machine_after_under(text: &str, rules: Rules) -> Machine {
    let p = parse_program(text).unwrap();
    let mut m = Machine::new(Config::with_shape(rules, p.shape.clone())).unwrap();
    for (i, op) in p.ops.iter().enumerate() {
        m.enabled(op).unwrap_or_else(|e| panic!("op {i} ({op:?}) not enabled: {e}"));
        m.step(op).unwrap();
    }
    m
}
