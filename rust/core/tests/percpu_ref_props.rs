//! Properties of percpu_ref over random operation sequences.
#![cfg(not(loom))]

use proptest::prelude::*;
use std::cell::Cell;
use zdfuzz_core::stress::RealRef;
use zdfuzz_core::{init_flags, Effects, PercpuRef};

type SimRef = PercpuRef<Cell<u64>>;

#[derive(Clone, Debug)]
enum Op {
    Get(usize),
    Put(usize),
    Tryget(usize),
    TrygetLive(usize),
    Kill,
    Gp,
    SwitchAtomic,
    SwitchPercpu,
    Reinit,
    Resurrect,
    Exit,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..3usize).prop_map(Op::Get),
        4 => (0..3usize).prop_map(Op::Put),
        1 => (0..3usize).prop_map(Op::Tryget),
        2 => (0..3usize).prop_map(Op::TrygetLive),
        1 => Just(Op::Kill),
        2 => Just(Op::Gp),
        1 => Just(Op::SwitchAtomic),
        1 => Just(Op::SwitchPercpu),
        1 => Just(Op::Reinit),
        1 => Just(Op::Resurrect),
        1 => Just(Op::Exit),
    ]
}

fn apply<W: zdfuzz_core::word::Word>(r: &PercpuRef<W>, op: &Op) -> (bool, Effects) {
    match *op {
        Op::Get(c) => (true, r.get(c).unwrap()),
        Op::Put(c) => (true, r.put(c).unwrap()),
        Op::Tryget(c) => r.tryget(c).unwrap(),
        Op::TrygetLive(c) => r.tryget_live(c).unwrap(),
        Op::Kill => (true, r.kill()),
        Op::Gp => (true, r.grace_period()),
        Op::SwitchAtomic => (true, r.switch_to_atomic(false)),
        Op::SwitchPercpu => (true, r.switch_to_percpu()),
        Op::Reinit => (true, r.reinit()),
        Op::Resurrect => (true, r.resurrect()),
        Op::Exit => (true, r.exit()),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// The simulation flavour (Cell words) and the real one (padded atomics)
    /// are the same code: any sequence, misuse included, gives identical
    /// results, effects and observable state.
    #[test]
    fn sim_and_real_flavours_agree(flags in 0u32..8, ops in prop::collection::vec(op(), 0..60)) {
        let sim = SimRef::new(3, flags);
        let real = RealRef::new(3, flags);
        for o in &ops {
            prop_assert_eq!(apply(&sim, o), apply(&real, o), "op {:?}", o);
            prop_assert_eq!(sim.count(), real.count());
            prop_assert_eq!(sim.mode(), real.mode());
            prop_assert_eq!(sim.is_dying(), real.is_dying());
            prop_assert_eq!(sim.is_zero(), real.is_zero());
            prop_assert_eq!(sim.released(), real.released());
        }
    }

    /// Legal use (every put by a holder, one kill): the count always equals
    /// the references handed out, nothing is ever reported, tryget_live fails
    /// exactly after the kill, and release runs exactly once — at the first
    /// moment the count is zero *and* authoritative (killed, grace period over).
    #[test]
    fn legal_use_releases_exactly_once_at_the_right_moment(
        ops in prop::collection::vec((0u8..5, 0..3usize), 0..80)
    ) {
        let r = SimRef::new(3, 0);
        let mut holders: Vec<usize> = Vec::new(); // cpu each reference was taken on
        let mut killed = false;
        let mut folded = false;
        let mut releases = 0;
        let check = |fx: Effects, expect_release: bool, releases: &mut u32| -> Result<(), TestCaseError> {
            prop_assert!(fx.events.is_empty(), "{:?}", fx);
            prop_assert_eq!(fx.released, expect_release);
            if fx.released { *releases += 1; }
            Ok(())
        };
        for (kind, cpu) in ops {
            match kind {
                // percpu_ref_get needs a reference already held (a holder's,
                // or the owner's initial one before the kill)
                0 => if !killed || !holders.is_empty() {
                    check(r.get(cpu).unwrap(), false, &mut releases)?;
                    holders.push(cpu);
                },
                1 => if holders.pop().is_some() {
                    // a reference may be dropped on any CPU
                    let last = killed && folded && holders.is_empty();
                    check(r.put(cpu).unwrap(), last, &mut releases)?;
                },
                2 => {
                    let (ok, fx) = r.tryget_live(cpu).unwrap();
                    check(fx, false, &mut releases)?;
                    prop_assert_eq!(ok, !killed);
                    if ok { holders.push(cpu); }
                }
                3 => if !killed {
                    killed = true;
                    check(r.kill(), false, &mut releases)?;
                },
                _ => {
                    let release_now = killed && !folded && holders.is_empty();
                    check(r.grace_period(), release_now, &mut releases)?;
                    if killed { folded = true; }
                }
            }
            let expected = holders.len() as i64 + if killed { 0 } else { 1 };
            prop_assert_eq!(r.count(), expected);
        }
        if !killed { check(r.kill(), false, &mut releases)?; }
        check(r.grace_period(), holders.is_empty() && !folded, &mut releases)?;
        while let Some(cpu) = holders.pop() {
            check(r.put(cpu).unwrap(), holders.is_empty(), &mut releases)?;
        }
        prop_assert_eq!(releases, 1);
        prop_assert_eq!(r.released(), 1);
        prop_assert!(r.is_zero());
    }
}

#[test]
fn init_flags_have_the_kernel_values() {
    assert_eq!(init_flags::INIT_ATOMIC, 1);
    assert_eq!(init_flags::INIT_DEAD, 2);
    assert_eq!(init_flags::ALLOW_REINIT, 4);
}
