//! The explorer (docs/model.md §10): the seed's Q1 found at its hand-derived minimum
//! length, e4 clean at small bounds, numbers independent of runs and thread
//! counts, monotone in depth, and the symmetry reduction checked against a
//! plain breadth-first search written here with nothing but the public
//! machine API.
#![cfg(not(loom))]

use std::collections::{HashMap, HashSet};
use zdfuzz_core::explore::{explore, Control, Coverage, Options, Outcome, StopReason};
use zdfuzz_core::fingerprint::{Canon, Reduction};
use zdfuzz_core::machine::State;
use zdfuzz_core::program::text::{parse_program, program_to_text};
use zdfuzz_core::{Config, DeviceType, Machine, Rules, Shape};

/// A small machine: `pages` per pgmap, 2 CPUs, one process with two
/// addresses, one file of two pages, two task slots.
fn small(types: &[DeviceType], pages: usize) -> Shape {
    Shape {
        types: types.to_vec(),
        pages,
        cpus: 2,
        procs: 1,
        addrs: 2,
        files: 1,
        file_pages: 2,
        tasks: 2,
        ram: 0,
        order: 0,
        ..Shape::default()
    }
}

fn run(preset: &str, shape: &Shape, depth: usize, threads: usize, reduction: Reduction) -> Outcome {
    let cfg = Config::with_shape(Rules::preset(preset).unwrap(), shape.clone());
    explore(&cfg, &Options { depth, threads, reduction, ..Options::default() }, &Control::new()).unwrap()
}

fn first_violation(o: &Outcome) -> Option<(usize, &'static str)> {
    o.counterexample.as_ref().map(|c| (c.program.ops.len(), c.verdict.reported().unwrap().invariant.id()))
}

/// The seed's Q1 under p20 (RFC [1]: a page reaching refcount 0 no longer
/// drops a pgmap reference; memunmap_pages drops the init references with
/// one put_many): memunmap_pages can finish while a device-dax page is still
/// referenced.
///
/// Hand-derived minimum: **10 actions**. I-L2 fires in the teardown step of
/// the memunmap_pages task, so the program holds
/// * `memremap_pages` (1) — nothing exists before it;
/// * `memunmap_pages` and its five steps: shutdown, kill, drop init refs,
///   wait, teardown (6);
/// * `rcu_grace_period` (1): p20 keeps E1's `wait_for_completion`, so the
///   wait step needs `pgmap->done`, i.e. the release; the ref starts in
///   percpu mode, so the kill leaves a switch pending that holds its own
///   reference until an RCU grace period folds the counters — no release,
///   hence no wait and no teardown, without one;
/// * a holder of a page of the pgmap at teardown. For device-dax the only
///   holders are mappings and GUP references/pins. The shutdown step zaps
///   every mapping (kill_dev_dax) and faults are refused once the pgmap is
///   unbinding, so it must be a GUP reference or pin, which needs a mapped
///   address: `dev_dax_huge_fault` + `get_user_pages` (2).
///
/// The drain cannot shorten it: it releases GUP references and exits
/// processes before it drives the remaining tasks. 1 + 6 + 1 + 2 = 10.
#[test]
fn p20_q1_counterexample_has_the_hand_derived_minimum_length() {
    const HAND_DERIVED_MINIMUM: usize = 10;
    let shape = Shape {
        types: vec![DeviceType::Generic],
        pages: 1,
        cpus: 2,
        procs: 1,
        addrs: 1,
        tasks: 1,
        ram: 0,
        order: 0,
        ..Shape::default()
    };
    let o = run("p20", &shape, 12, 2, Reduction::Symmetry);
    assert_eq!(o.stop, StopReason::Violation);
    let c = o.counterexample.as_ref().unwrap();
    assert_eq!(c.program.ops.len(), HAND_DERIVED_MINIMUM, "{}", program_to_text(&c.program));
    assert_eq!(o.depth_reached, HAND_DERIVED_MINIMUM);
    let v = c.verdict.reported().unwrap();
    assert_eq!(v.invariant.id(), "I-L2");
    assert!(v.message.contains("GUP"), "{}", v.message);
    // nothing shorter, even without the reduction: the search below the
    // minimum is exhaustive and clean
    let below = run("p20", &shape, HAND_DERIVED_MINIMUM - 1, 2, Reduction::None);
    assert_eq!((below.stop, below.depth_reached), (StopReason::Depth, HAND_DERIVED_MINIMUM - 1));
    assert!(below.counterexample.is_none());
    // the reproducer is a .zdf program that replays to the same violation
    // under p20, and is clean under e1 (the page's last put holds teardown)
    let text = program_to_text(&c.program);
    let p = parse_program(&text).unwrap();
    for (preset, broken) in [("p20", true), ("e1", false)] {
        let mut m = Machine::new(Config::with_shape(Rules::preset(preset).unwrap(), p.shape.clone())).unwrap();
        let verdict = m.run(&p.ops).unwrap();
        assert_eq!(verdict.reported().map(|v| v.invariant.id()), broken.then_some("I-L2"), "{preset}: {text}");
    }
}

/// The same minimum on a bigger machine (more pages, processes, tasks):
/// more room cannot make the race shorter.
#[test]
fn p20_q1_minimum_does_not_shrink_on_a_bigger_machine() {
    let shape = Shape {
        types: vec![DeviceType::Generic],
        pages: 2,
        cpus: 2,
        procs: 2,
        addrs: 1,
        tasks: 2,
        ram: 0,
        order: 0,
        ..Shape::default()
    };
    let o = run("p20", &shape, 10, 0, Reduction::Symmetry);
    assert_eq!(first_violation(&o), Some((10, "I-L2")));
}

#[test]
fn e4_is_clean_at_small_bounds() {
    let o = run("e4", &small(&DeviceType::DEFAULT, 2), 5, 2, Reduction::Symmetry);
    assert_eq!((o.stop, o.depth_reached), (StopReason::Depth, 5), "{}", o.summary());
    assert!(o.counterexample.is_none());
    assert!(o.summary().starts_with("no violation reachable within depth 5"), "{}", o.summary());
    for t in [DeviceType::Fsdax, DeviceType::P2pdma] {
        let o = run("e4", &small(&[t], 2), 8, 2, Reduction::Symmetry);
        assert!(o.counterexample.is_none() && o.stop == StopReason::Depth, "{t:?}: {}", o.summary());
    }
    // device-private: the eviction's remove_migration_ptes walks the
    // anon_vma a process exit freed (docs/findings.md), in 6 actions; past
    // it, clean
    let shape = small(&[DeviceType::Private], 2);
    let o = run("e4", &shape, 8, 2, Reduction::Symmetry);
    assert_eq!(first_violation(&o), Some((6, "I-M10")), "{}", o.summary());
    let cx = o.counterexample.as_ref().unwrap();
    let m = zdfuzz_core::Machine::new(Config::with_shape(Rules::preset("e4").unwrap(), shape.clone())).unwrap();
    let sig = m.signature_of(&cx.verdict).unwrap();
    let cfg = Config::with_shape(Rules::preset("e4").unwrap(), shape);
    let opts =
        Options { depth: 8, threads: 2, reduction: Reduction::Symmetry, ignore: vec![sig], ..Options::default() };
    let o = explore(&cfg, &opts, &Control::new()).unwrap();
    assert!(o.counterexample.is_none() && o.stop == StopReason::Depth, "{}", o.summary());
    // device-dax under e4 is *not* clean (docs/model.md §7.3): a sanity
    // check that "clean" above is not the explorer missing things
    let o = run("e4", &small(&[DeviceType::Generic], 1), 10, 2, Reduction::Symmetry);
    assert_eq!(first_violation(&o), Some((10, "I-L2")));
}

#[test]
fn counts_are_identical_across_runs_and_thread_counts() {
    let shape = small(&DeviceType::DEFAULT, 2);
    let base = run("e3", &shape, 5, 1, Reduction::Symmetry);
    for threads in [1, 2, 3, 5] {
        let o = run("e3", &shape, 5, threads, Reduction::Symmetry);
        assert_eq!(o.levels, base.levels, "{threads} threads");
        assert_eq!((o.states, o.transitions), (base.states, base.transitions));
    }
    let exact1 = run("e3", &shape, 4, 1, Reduction::None);
    let exact3 = run("e3", &shape, 4, 3, Reduction::None);
    assert_eq!(exact1.levels, exact3.levels);
    // and the counterexample itself
    let shape = small(&[DeviceType::Private], 2);
    let programs: Vec<String> = [1, 2, 4]
        .iter()
        .map(|&t| program_to_text(&run("e1", &shape, 8, t, Reduction::Symmetry).counterexample.unwrap().program))
        .collect();
    assert!(programs.iter().all(|p| *p == programs[0]), "{programs:?}");
}

#[test]
fn depth_limited_numbers_grow_monotonically() {
    let shape = small(&DeviceType::DEFAULT, 2);
    let runs: Vec<Outcome> = (0..=5).map(|d| run("e4", &shape, d, 2, Reduction::Symmetry)).collect();
    for (d, o) in runs.iter().enumerate() {
        assert_eq!(o.depth_reached, d);
        assert_eq!(o.levels.len(), d + 1);
        assert_eq!(o.levels.last().map(|l| (l.states, l.transitions)), Some((o.states, o.transitions)));
    }
    for w in runs.windows(2) {
        assert!(w[1].states > w[0].states, "{} then {}", w[0].states, w[1].states);
        assert!(w[1].transitions > w[0].transitions);
        assert_eq!(w[1].levels[..w[0].levels.len()], w[0].levels[..], "a deeper run extends the shallower one");
    }
    for l in &runs[5].levels[1..] {
        assert!(l.new_states > 0);
    }
}

/// A plain BFS over exact states with the public API only (clone the state,
/// `enabled_actions`, `step`): the explorer's exact counts must match it
/// level by level, and its symmetry-reduced counts must equal the number of
/// symmetry classes among the plain BFS's states at each depth.
#[test]
fn symmetry_reduction_agrees_with_a_plain_bfs() {
    // a PMD-aligned device-dax device: its pages are not interchangeable
    // (PMD mappings, compound folios), the FS-DAX pages beside it still are
    let devdax_pmd = Shape { order: 1, devdax_pmd: 1, ..small(&[DeviceType::Generic, DeviceType::Fsdax], 2) };
    // PMD-sized FS-DAX extents: the same, the other way round
    let fsdax_pmd = Shape { order: 1, fsdax_pmd: 1, ..small(&[DeviceType::Generic, DeviceType::Fsdax], 2) };
    for (preset, shape, depth, factor) in [
        ("e4", small(&DeviceType::DEFAULT, 2), 4, 4),
        ("e1", small(&[DeviceType::Generic, DeviceType::Fsdax], 2), 5, 4),
        ("p20", small(&[DeviceType::Private, DeviceType::P2pdma], 2), 5, 4),
        ("e3", devdax_pmd, 5, 1),
        ("e4", fsdax_pmd, 5, 1),
    ] {
        let cfg = Config::with_shape(Rules::preset(preset).unwrap(), shape.clone());
        let mut m = Machine::new(cfg.clone()).unwrap();
        let mut canon = Canon::new();
        let mut seen: HashSet<u64> = HashSet::new();
        let mut classes: HashSet<u64> = HashSet::new();
        let mut frontier: Vec<State> = vec![m.s.clone()];
        seen.insert(canon.fingerprint(&m.s, &m.layout, Reduction::None));
        classes.insert(canon.fingerprint(&m.s, &m.layout, Reduction::Symmetry));
        let (mut exact_counts, mut class_counts, mut transitions) = (vec![1u64], vec![1u64], vec![0u64]);
        for _ in 0..depth {
            let mut next = Vec::new();
            let mut t = *transitions.last().unwrap();
            for st in &frontier {
                m.reset();
                m.s = st.clone();
                for op in m.enabled_actions() {
                    m.reset();
                    m.s = st.clone();
                    m.step(&op).unwrap();
                    t += 1;
                    if m.stopped() {
                        continue;
                    }
                    if seen.insert(canon.fingerprint(&m.s, &m.layout, Reduction::None)) {
                        classes.insert(canon.fingerprint(&m.s, &m.layout, Reduction::Symmetry));
                        next.push(m.s.clone());
                    }
                }
            }
            frontier = next;
            exact_counts.push(seen.len() as u64);
            class_counts.push(classes.len() as u64);
            transitions.push(t);
        }
        let exact = run(preset, &shape, depth, 2, Reduction::None);
        let sym = run(preset, &shape, depth, 2, Reduction::Symmetry);
        assert!(exact.counterexample.is_none() && sym.counterexample.is_none(), "{preset}: pick a clean bound");
        let cum = |o: &Outcome| o.levels.iter().map(|l| l.states).collect::<Vec<_>>();
        assert_eq!(cum(&exact), exact_counts, "{preset}: exact states per depth");
        assert_eq!(
            exact.levels.iter().map(|l| l.transitions).collect::<Vec<_>>(),
            transitions,
            "{preset}: transitions"
        );
        assert_eq!(cum(&sym), class_counts, "{preset}: one state per symmetry class per depth");
        assert!(
            sym.states * factor < exact.states,
            "{preset}: the reduction reduces ({} vs {})",
            sym.states,
            exact.states
        );
    }
}

/// Where violations exist, the reduced search finds one at the same depth
/// as the exact search (and none where there is none).
#[test]
fn symmetry_reduction_keeps_the_shortest_counterexample_length() {
    let mut found = HashMap::new();
    for (preset, t) in [
        ("e1", DeviceType::Private),
        ("e1", DeviceType::P2pdma),
        ("p20", DeviceType::Fsdax),
        ("e4", DeviceType::Fsdax),
        ("e3", DeviceType::Generic),
    ] {
        let shape = small(&[t], 2);
        let sym = run(preset, &shape, 8, 2, Reduction::Symmetry);
        let exact = run(preset, &shape, 8, 2, Reduction::None);
        let len = |o: &Outcome| o.counterexample.as_ref().map(|c| c.program.ops.len());
        assert_eq!(len(&sym), len(&exact), "{preset} {t:?}");
        found.insert((preset, t), len(&sym));
    }
    // the device-private fault of v5.10 takes no reference: a MADV_DONTNEED
    // between its read of the entry and migrate_to_ram frees the page
    // (I-D1, docs/model.md §9.7), one action shorter than §7.1's I-F9
    assert_eq!(found[&("e1", DeviceType::Private)], Some(6), "docs/model.md §9.7: I-D1 after 6 actions");
    assert_eq!(found[&("e4", DeviceType::Fsdax)], None);
}

#[test]
fn bitstate_mode_states_its_coverage() {
    let shape = small(&DeviceType::DEFAULT, 2);
    let cfg = Config::with_shape(Rules::preset("e4").unwrap(), shape);
    let exact = explore(&cfg, &Options { depth: 5, threads: 2, ..Options::default() }, &Control::new()).unwrap();
    // roomy: 8 MiB of bits for a few thousand states — nothing lost
    let roomy = Options { depth: 5, threads: 2, bitstate_bytes: Some(8 << 20), ..Options::default() };
    let o = explore(&cfg, &roomy, &Control::new()).unwrap();
    assert_eq!(o.levels, exact.levels);
    let Coverage::Bitstate { expected_missed, fill, .. } = o.coverage else { panic!("{:?}", o.coverage) };
    assert!(expected_missed < 1.0 && fill < 0.01, "{expected_missed} {fill}");
    // cramped: 512 bytes — states are lost and the result says so
    let cramped = Options { depth: 5, threads: 2, bitstate_bytes: Some(512), ..Options::default() };
    let o = explore(&cfg, &cramped, &Control::new()).unwrap();
    assert!(o.states < exact.states, "{} vs {}", o.states, exact.states);
    let Coverage::Bitstate { expected_missed, .. } = o.coverage else { panic!() };
    assert!(expected_missed > 1.0);
    assert!(o.summary().contains("NOT a proof"), "{}", o.summary());
    assert!(exact.summary().contains("collision"), "{}", exact.summary());
}

#[test]
fn limits_stop_the_search_with_a_partial_result() {
    let cfg = Config::with_shape(Rules::preset("e4").unwrap(), small(&DeviceType::DEFAULT, 2));
    let o =
        explore(&cfg, &Options { depth: 6, threads: 2, max_memory: 1, ..Options::default() }, &Control::new()).unwrap();
    assert_eq!(o.stop, StopReason::MemoryCap);
    assert!(!o.stop.complete());
    assert!(o.depth_reached < 6 && o.partial.is_some());
    assert!(o.summary().contains("memory cap"), "{}", o.summary());
    let o =
        explore(&cfg, &Options { depth: 6, threads: 2, max_seconds: Some(0.0), ..Options::default() }, &Control::new())
            .unwrap();
    assert_eq!(o.stop, StopReason::TimeLimit);
    assert!(o.summary().contains("time limit"), "{}", o.summary());
}

fn run_por(preset: &str, shape: &Shape, depth: usize, reduction: Reduction, por: bool) -> Outcome {
    let cfg = Config::with_shape(Rules::preset(preset).unwrap(), shape.clone());
    let opts = Options { depth, threads: 2, reduction, por, ..Options::default() };
    explore(&cfg, &opts, &Control::new()).unwrap()
}

/// Sleep sets prune transitions, never states: on every preset, with and
/// without the symmetry reduction, the explorer with partial-order reduction
/// finds the same number of new states at every depth, stops for the same
/// reason, and reports a counterexample of the same length breaking the
/// same invariant. Without symmetry, explored + slept transitions are the
/// unreduced search's transitions exactly.
#[test]
fn partial_order_reduction_keeps_states_depths_and_verdicts() {
    let mut pruned = 0u64;
    let mut counterexamples = 0;
    let all = &DeviceType::DEFAULT[..];
    let two = &[DeviceType::Generic, DeviceType::P2pdma][..];
    for preset in Rules::preset_names() {
        let mut runs = vec![(all, 4, Reduction::Symmetry), (all, 3, Reduction::None), (two, 5, Reduction::Symmetry)];
        if preset == "e1" {
            // a counterexample within reach: I-F9 after 7 actions (§7.1)
            runs.push((&[DeviceType::Private][..], 7, Reduction::Symmetry));
        }
        for (types, depth, reduction) in runs {
            let shape = small(types, 2);
            {
                let plain = run_por(preset, &shape, depth, reduction, false);
                let por = run_por(preset, &shape, depth, reduction, true);
                let new = |o: &Outcome| o.levels.iter().map(|l| l.new_states).collect::<Vec<_>>();
                let ctx = format!("{preset} {types:?} {reduction:?}");
                assert_eq!(new(&por), new(&plain), "{ctx}: states per depth");
                assert_eq!((por.stop, por.depth_reached), (plain.stop, plain.depth_reached), "{ctx}");
                assert_eq!(first_violation(&por), first_violation(&plain), "{ctx}: counterexample");
                assert_eq!(plain.slept, 0);
                assert!(por.transitions <= plain.transitions, "{ctx}");
                if reduction == Reduction::None && plain.counterexample.is_none() {
                    assert_eq!(por.transitions + por.slept, plain.transitions, "{ctx}");
                }
                pruned += por.slept;
                counterexamples += usize::from(por.counterexample.is_some());
            }
        }
    }
    assert!(pruned > 0, "the sleep sets never pruned anything");
    assert!(counterexamples > 0, "no counterexample was compared");
}

/// The reduced search is as deterministic as the plain one.
#[test]
fn partial_order_reduction_counts_do_not_depend_on_threads() {
    let cfg = Config::with_shape(Rules::preset("e4").unwrap(), small(&DeviceType::DEFAULT, 2));
    let mut seen = None;
    for threads in [1, 2, 3] {
        let opts = Options { depth: 5, threads, por: true, ..Options::default() };
        let o = explore(&cfg, &opts, &Control::new()).unwrap();
        let got = (o.states, o.transitions, o.slept);
        assert_eq!(*seen.get_or_insert(got), got, "threads={threads}");
    }
}
