//! Scenarios from the seed message (docs/model.md §2) and the model's docs, as text programs.
#![cfg(not(loom))]

#[path = "common/programs.rs"]
mod programs;

use programs::{run_as, show};
use zdfuzz_core::program::text::parse_program;
use zdfuzz_core::{Config, Machine, Rules, Verdict};

fn run(text: &str, preset: &str) -> Verdict {
    run_as(text, Rules::preset(preset).unwrap())
}

/// The seed's Q1: with RFC [1] (p20) memunmap_pages no longer waits for a
/// page a GUP user still holds; in E1 it does (the page's final put drops the
/// pgmap reference).
const Q1_GENERIC: &str = "
config types=generic
memremap_pages pgmap=0
dev_dax_huge_fault proc=0 addr=0 pfn=1 cpu=0
get_user_pages proc=0 addr=0 flags=0 cpu=1
memunmap_pages pgmap=0 cpu=0
step task=0  # shut user access down (kill_dev_dax)
step task=0  # percpu_ref_kill
step task=0  # drop init refs
rcu_grace_period  # the kill's switch to atomic completes
step task=0  # wait_for_completion
step task=0  # teardown
";

#[test]
fn q1_p20_memunmap_finishes_under_a_gup_reference() {
    let v = run(Q1_GENERIC, "p20");
    let viol = v.violation.as_ref().expect("p20 must violate");
    assert_eq!(viol.invariant.id(), "I-L2", "{}", show(&v));
    assert!(viol.message.contains("GUP reference"), "{}", viol.message);
    assert!(v.conformance.is_none(), "{}", show(&v));
}

#[test]
fn q1_same_program_is_clean_under_e1() {
    let v = run(Q1_GENERIC, "e1");
    assert!(v.ok(), "{}", show(&v));
    // the task really waited: the wait step was a no-op, teardown came in the drain
    assert!(v.trace.iter().any(|t| t.notes.iter().any(|n| n.contains("still waiting"))), "{}", show(&v));
}

/// E2: unbinding while a device-private page is mapped lets memunmap_pages
/// finish with the page in use (fixed by 0dc45ca1ce18 in v6.1).
const E2_UNBIND_MAPPED: &str = "
config types=private
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

#[test]
fn e2_unbind_while_device_private_page_mapped() {
    let v = run(E2_UNBIND_MAPPED, "e2");
    let viol = v.violation.as_ref().expect("e2 must violate");
    assert_eq!(viol.invariant.id(), "I-L2", "{}", show(&v));
    assert!(viol.message.contains("mapping"), "{}", viol.message);
}

#[test]
fn e3_same_program_is_clean() {
    let v = run(E2_UNBIND_MAPPED, "e3");
    assert!(v.ok(), "{}", show(&v));
}

/// The seed's P2P remark as a preset: pages counted per page while a page
/// reaching zero still drops a pgmap reference and pci_alloc_p2pmem still
/// takes one per allocation.
const P2P_PER_PAGE: &str = r#"
name = "p2p-per-page"
base = "p20"
description = "the seed's P2P remark: P2P pages refcounted per page, pgmap refs per allocation"
[types.p2pdma]
init_rc = 0
free_rc = 0
put_pgmap_on_zero = true
[p2p]
alloc_sets_rc = true
"#;

#[test]
fn p2p_per_page_variant_breaks_pgmap_accounting() {
    let rules = Rules::from_toml_str(P2P_PER_PAGE, "p2p-per-page.toml").unwrap();
    let prog = "
config types=p2pdma
memremap_pages pgmap=0
pci_alloc_p2pmem pgmap=0 pages=2 cpu=0
pci_free_p2pmem pfn=0 cpu=1
";
    let v = run_as(prog, rules.clone());
    let c = v.conformance.as_ref().expect("accounting mismatch");
    assert_eq!(c.invariant.id(), "I-P1", "{}", show(&v));
    let viol = v.violation.as_ref().expect("the unbind in the drain underflows");
    assert_eq!(viol.invariant.id(), "I-R1", "{}", show(&v));
    // a one-page allocation is fine: the page's put and the allocation's put
    // are both... not: one get, two puts. Still broken, by one.
    let one = run_as(
        "config types=p2pdma\nmemremap_pages pgmap=0\npci_alloc_p2pmem pgmap=0 pages=1\npci_free_p2pmem pfn=0\n",
        rules,
    );
    assert!(!one.ok());
    // and the same two-page program under e1 is clean
    let e1 = run(prog, "e1");
    assert!(e1.ok(), "{}", show(&e1));
}

/// `private.unbind_after_eviction`: the driver contract the seed asks for
/// ("memunmap_pages' put has to be the last"). With it, unbinding while a
/// device-private page is still mapped is outside the contract and refused;
/// without it the same unbind is allowed (and breaks I-L2 under E2).
#[test]
fn unbind_after_eviction_refuses_unbind_with_a_page_in_use() {
    let p = parse_program(E2_UNBIND_MAPPED).unwrap();
    let unbind = p.ops.iter().position(|o| o.kind == zdfuzz_core::OpKind::MemunmapPages).unwrap();
    let mut rules = Rules::preset("e2").unwrap();
    rules.private.unbind_after_eviction = true;
    let mut m = Machine::new(Config::with_shape(rules, p.shape.clone())).unwrap();
    match m.run(&p.ops) {
        Err((i, zdfuzz_core::StepError::NotEnabled(why))) => {
            assert_eq!(i, unbind);
            assert!(why.contains("unbind_after_eviction"), "{why}");
        }
        other => panic!("expected the unbind to be refused, got {:?}", other.map(|v| v.ok())),
    }
    // the switch off (the preset as shipped): the unbind runs
    let mut m = Machine::new(Config::with_shape(Rules::preset("e2").unwrap(), p.shape.clone())).unwrap();
    assert!(m.run(&p.ops).is_ok());
}

/// A `step` of a slot whose task already returned is accepted and does
/// nothing, so a program written for an era with more steps in a kernel
/// function replays under an era with fewer.
#[test]
fn step_of_a_finished_task_is_a_no_op() {
    let base = "
config types=generic
memremap_pages pgmap=0
dev_dax_huge_fault proc=0 addr=0 pfn=1 cpu=0
";
    let extra = format!("{base}step task=0\nstep task=1\n");
    let a = run(base, "e1");
    let b = run(&extra, "e1");
    assert!(a.ok() && b.ok(), "{}{}", show(&a), show(&b));
    // out of domain is still an error, not a no-op
    let bad = parse_program(&format!("{base}step task=99\n"));
    let rejected = match bad {
        Err(_) => true,
        Ok(p) => {
            let mut m = Machine::new(Config::with_shape(Rules::preset("e1").unwrap(), p.shape.clone())).unwrap();
            matches!(m.run(&p.ops), Err((_, zdfuzz_core::StepError::Domain(_))))
        }
    };
    assert!(rejected);
}
