//! The minimizer's output is 1-minimal and replays to its own signature.
//!
//! Findings come from the native engine under every preset (so the
//! programs are long, random and varied); each is minimized and then
//! checked the way a person editing the `.zdf` would: replay it as written,
//! drop any single action, or put any single operand to a smaller value of
//! its domain — the signature must be lost every time.
#![cfg(not(loom))]

use zdfuzz_core::fuzz::{NativeConfig, NativeFuzzer};
use zdfuzz_core::minimize::minimize;
use zdfuzz_core::program::text::{parse_program, program_to_text};
use zdfuzz_core::signature::Signature;
use zdfuzz_core::{Config, DeviceType, Machine, Op, Program, Rules};

fn sig(rules: &Rules, p: &Program, ops: &[Op]) -> Option<Signature> {
    let mut m = Machine::new(Config::with_shape(rules.clone(), p.shape.clone())).ok()?;
    let v = m.run(ops).ok()?;
    m.signature_of(&v)
}

fn assert_one_minimal(rules: &Rules, p: &Program, want: &Signature) {
    let text = program_to_text(p);
    // the text form is what gets written: parse it back
    let back = parse_program(&text).unwrap();
    assert_eq!(back, *p);
    assert_eq!(sig(rules, p, &p.ops).as_ref(), Some(want), "does not replay to its signature:\n{text}");
    for i in 0..p.ops.len() {
        let mut ops = p.ops.clone();
        ops.remove(i);
        assert_ne!(sig(rules, p, &ops).as_ref(), Some(want), "action {i} can be dropped:\n{text}");
    }
    let m = Machine::new(Config::with_shape(rules.clone(), p.shape.clone())).unwrap();
    for i in 0..p.ops.len() {
        let info = p.ops[i].kind.info();
        for (j, (name, dim)) in info.args.iter().enumerate() {
            let cur = dim.index(p.ops[i].args[j], &m.layout).unwrap();
            for smaller in 0..cur {
                let mut ops = p.ops.clone();
                ops[i].args[j] = dim.value(smaller);
                assert_ne!(sig(rules, p, &ops).as_ref(), Some(want), "action {i}: {name} can be {smaller}:\n{text}");
            }
        }
    }
}

#[test]
fn minimized_findings_are_one_minimal_under_every_preset() {
    let mut checked = 0;
    for preset in ["e1", "e2", "e3", "e4", "p20"] {
        let rules = Rules::preset(preset).unwrap();
        let mut cfg = NativeConfig::new(rules.clone(), DeviceType::DEFAULT.to_vec(), 7);
        cfg.max_actions = 48;
        let mut f = NativeFuzzer::new(cfg).unwrap();
        for finding in f.run(5000, None) {
            let r = minimize(&rules, &finding.program, Some(&finding.signature), 200_000).unwrap();
            assert_eq!(r.signature, finding.signature);
            assert!(r.program.ops.len() <= finding.program.ops.len());
            assert_one_minimal(&rules, &r.program, &r.signature);
            checked += 1;
        }
    }
    assert!(checked >= 4, "only {checked} findings checked");
}

#[test]
fn wrong_target_and_clean_programs_are_errors_not_panics() {
    let rules = Rules::preset("p20").unwrap();
    let p = parse_program("rules p20\nconfig types=generic\nmemremap_pages pgmap=0\n").unwrap();
    assert!(minimize(&rules, &p, None, 100).is_err());
    let bad = parse_program("rules p20\nconfig types=generic\nstep task=0\n").unwrap();
    assert!(minimize(&rules, &bad, None, 100).is_err());
    let q1 = parse_program(
        "rules p20\nconfig types=generic\nmemremap_pages pgmap=0\ndev_dax_huge_fault proc=0 addr=0 pfn=1 cpu=0\n\
         get_user_pages proc=0 addr=0 flags=0 cpu=1\nmemunmap_pages pgmap=0 cpu=0\nstep task=0\nstep task=0\nstep task=0\n\
         rcu_grace_period\nstep task=0\nstep task=0\n",
    )
    .unwrap();
    let other =
        Signature { invariant: "I-F9".into(), kind: "put_page".into(), device: "generic".into(), rules: "p20".into() };
    assert!(minimize(&rules, &q1, Some(&other), 100).is_err());
    // a budget of nothing still answers
    assert!(minimize(&rules, &q1, None, 0).is_err());
    let r = minimize(&rules, &q1, None, 100_000).unwrap();
    assert_one_minimal(&rules, &r.program, &r.signature);
}
