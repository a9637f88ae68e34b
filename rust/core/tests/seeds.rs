//! The seed corpus (`corpus/seeds/*.zdf`): hand-written, correct lifecycles
//! of every device type, which fuzzers start from. Each seed must be clean —
//! no safety/liveness violation, no conformance failure — under every preset
//! it applies to.
//!
//! Which presets a seed applies to:
//! * a seed without a `rules` header is portable: every one of its actions
//!   must be enabled under every preset, and it must be clean everywhere;
//! * a seed whose header names preset X must run (every action enabled) and
//!   be clean under X; under another preset an action that is not enabled
//!   there (`StepError::NotEnabled`, e.g. `p2pmem_alloc_mmap` before v6.2)
//!   means "this seed does not apply to that preset" — but wherever all its
//!   actions are enabled it must be clean too.
//!
//! A seed is a complete lifecycle: it releases everything it takes and steps
//! its kernel tasks to the end, so the end-of-program drain finds nothing to
//! do (a `step` of a task blocked in one era is a no-op there; the seed then
//! releases what the task waits for and steps on).
//!
//! File names start with the device type they exercise (`private-`,
//! `fsdax-`, `generic-`, `p2pdma-`, or `mixed-` for several at once); there
//! must be at least three seeds per type.
#![cfg(not(loom))]

use std::path::{Path, PathBuf};
use zdfuzz_core::program::text::parse_program;
use zdfuzz_core::{Config, Machine, Rules, StepError, Verdict};

const PRESETS: [&str; 6] = ["e1", "e2", "e3", "e4", "e5", "p20"];
const TYPES: [&str; 4] = ["private", "fsdax", "generic", "p2pdma"];

fn seeds_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../corpus/seeds")
}

/// Every `*.zdf` file of the seed directory, sorted by name: (name, text).
fn seeds() -> Vec<(String, String)> {
    let dir = seeds_dir();
    let mut out: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read the seed directory {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "zdf"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()));
            (name, text)
        })
        .collect();
    out.sort();
    out
}

/// The preset the `rules` header names, if the text has one. (The parser
/// defaults a missing header to e3; a seed without one is portable.)
fn header_rules(text: &str) -> Option<String> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").split_whitespace().collect::<Vec<_>>())
        .find(|w| w.first() == Some(&"rules"))
        .and_then(|w| w.get(1).map(|s| s.to_string()))
}

/// A failing run, readable: the violation(s) and the trace.
fn explain(v: &Verdict) -> String {
    let mut s = String::new();
    if let Some(x) = &v.violation {
        s += &format!("  violation:   {x}\n");
    }
    if let Some(x) = &v.conformance {
        s += &format!("  conformance: {x}\n");
    }
    s += "  trace:\n";
    for t in &v.trace {
        s += &format!(
            "  {:>3}{} {} {:?} {:?}\n",
            t.step,
            if t.drain { " (drain)" } else { "" },
            t.action,
            t.changes,
            t.notes
        );
    }
    s
}

enum Outcome {
    /// every action was enabled; the verdict of the run
    Ran(Box<Verdict>),
    /// action `i` is not enabled under this preset: the seed does not apply
    NotEnabled(usize, &'static str),
}

fn run_text(text: &str, preset: &str) -> Result<Outcome, String> {
    let p = parse_program(text).map_err(|e| format!("parse error: {e}"))?;
    let rules = Rules::preset(preset).ok_or_else(|| format!("no preset {preset:?}"))?;
    let mut m = Machine::new(Config::with_shape(rules, p.shape.clone())).map_err(|e| format!("bad config: {e}"))?;
    m.set_tracing(true);
    match m.run(&p.ops) {
        Ok(v) => Ok(Outcome::Ran(Box::new(v))),
        Err((i, StepError::NotEnabled(why))) => Ok(Outcome::NotEnabled(p.line_of(i).unwrap_or(0), why)),
        Err((i, e)) => Err(format!("line {}: {e}", p.line_of(i).unwrap_or(0))),
    }
}

#[test]
fn every_seed_is_clean_under_every_preset_it_applies_to() {
    let all = seeds();
    assert!(!all.is_empty(), "no seeds in {}", seeds_dir().display());
    let mut failures = Vec::new();
    let mut summary = Vec::new();
    for (name, text) in &all {
        let header = header_rules(text);
        if let Some(h) = &header {
            assert!(PRESETS.contains(&h.as_str()), "{name}: header names {h:?}, not one of the presets {PRESETS:?}");
        }
        let mut applies = Vec::new();
        for preset in PRESETS {
            match run_text(text, preset) {
                Err(e) => failures.push(format!("{name} under {preset}: {e}")),
                Ok(Outcome::NotEnabled(line, why)) => {
                    // only a seed whose header names another era may skip
                    if header.as_deref().map_or(true, |h| h == preset) {
                        failures.push(format!(
                            "{name} under {preset}: line {line} is not enabled ({why}); {}",
                            match &header {
                                None => "a seed without a `rules` header must be valid under every preset".to_string(),
                                Some(h) => format!("the seed's header names {h}"),
                            }
                        ));
                    }
                }
                Ok(Outcome::Ran(v)) => {
                    applies.push(preset);
                    // ZDF_SEED_TRACE=<substring of a file name> prints the run
                    if std::env::var("ZDF_SEED_TRACE").is_ok_and(|f| name.contains(f.as_str())) {
                        eprintln!("=== {name} under {preset}\n{}", explain(&v));
                    }
                    if !v.ok() {
                        failures.push(format!("{name} under {preset} is not clean:\n{}", explain(&v)));
                    } else if let Some(t) = v.trace.iter().find(|t| t.drain) {
                        // a seed is a complete lifecycle: it releases what it
                        // took and steps its tasks to the end itself
                        failures.push(format!(
                            "{name} under {preset} leaves work for the end-of-program drain (first: {}):\n{}",
                            t.action,
                            explain(&v)
                        ));
                    }
                }
            }
        }
        if applies.is_empty() {
            failures.push(format!("{name} applies to no preset"));
        }
        summary.push(format!("{name}: {}", applies.join(", ")));
    }
    eprintln!("seeds and the presets they apply to:\n  {}", summary.join("\n  "));
    assert!(failures.is_empty(), "{} seed run(s) failed:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn at_least_three_seeds_per_device_type() {
    let names: Vec<String> = seeds().into_iter().map(|(n, _)| n).collect();
    for t in TYPES {
        let n = names.iter().filter(|s| s.starts_with(&format!("{t}-"))).count();
        assert!(n >= 3, "only {n} seed(s) for device type {t} (file names {t}-*.zdf): {names:?}");
    }
    assert!(names.iter().any(|s| s.starts_with("mixed-")), "no mixed seed (mixed-*.zdf) using all types at once");
}

#[test]
fn every_seed_starts_with_a_comment_block() {
    for (name, text) in seeds() {
        let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
        assert!(first.trim_start().starts_with('#'), "{name} must start with a comment saying what it models");
    }
}

/// The check above can fail: a deliberately broken program (the device-private
/// driver unbinds while its page is still mapped into a process — a known
/// unsafe sequence under v5.18) is reported as not clean, and a program using
/// an action its era does not have is reported as not enabled.
#[test]
fn the_seed_check_rejects_a_broken_program() {
    const BROKEN: &str = "
# unbind while a device-private page is still mapped: not a correct lifecycle
rules e2
config types=private pgmaps=1 pages=2 cpus=2 procs=1 addrs=2 tasks=2
memremap_pages pgmap=0
alloc_device_page pgmap=0 cpu=0
migrate_vma_insert_page proc=0 addr=0 pfn=0 cpu=0
memunmap_pages pgmap=0 cpu=1
step task=0
step task=0
step task=0
rcu_grace_period
step task=0
step task=0
";
    match run_text(BROKEN, "e2").unwrap() {
        Outcome::Ran(v) => {
            assert!(!v.ok(), "the broken program must be reported:\n{}", explain(&v));
            assert_eq!(v.reported().unwrap().invariant.id(), "I-L2", "{}", explain(&v));
        }
        Outcome::NotEnabled(line, why) => panic!("line {line} unexpectedly not enabled: {why}"),
    }
    // user-space P2P mappings do not exist before v6.2
    let mmap =
        "rules e3\nconfig types=p2pdma\nmemremap_pages pgmap=0\np2pmem_alloc_mmap pgmap=0 proc=0 addr=0 pages=1\n";
    assert!(matches!(run_text(mmap, "e3").unwrap(), Outcome::Ran(ref v) if v.ok()));
    assert!(matches!(run_text(mmap, "e1").unwrap(), Outcome::NotEnabled(4, _)));
}
