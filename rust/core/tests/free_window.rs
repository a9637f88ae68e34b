//! The window between `->folio_free()` and the rest of
//! `free_zone_device_folio` (mm/memremap.c): v6.19 as merged reads
//! `folio->pgmap` for its `percpu_ref_put_many` after the driver has the
//! folio back, and the driver may already have handed the page out again
//! as a tail of a larger folio, whose first word is the compound head
//! (fixed by "mm/zone_device: do not touch device folio after calling
//! ->folio_free()", 85be0a262e39). I-F3 fires there and stays quiet when
//! the page comes back as a head, when the window is closed, and in the
//! era with the fix.
#![cfg(not(loom))]

#[path = "common/programs.rs"]
mod programs;

use programs::{machine_after_under as machine_after, notes, run_as, show};
use zdfuzz_core::program::text::parse_program;
use zdfuzz_core::sched::TaskKind;
use zdfuzz_core::Rules;

/// Two order-0 device-private pages handed out, pfn 1 freed first: its
/// free path is left after `->folio_free()` (task 0), pfn 0 freed with no
/// task slot left (at once); then the driver allocates the order-1 block
/// at pfn 0, which makes pfn 1 a tail.
const SETUP: &str = "
config types=private pgmaps=1 pages=2 cpus=1 procs=1 addrs=1 tasks=1 ram=0 order=1
memremap_pages pgmap=0
alloc_device_page pgmap=0 cpu=0
alloc_device_page pgmap=0 cpu=0
free_device_page pfn=1 cpu=0
free_device_page pfn=0 cpu=0
";

fn preset(name: &str) -> Rules {
    Rules::preset(name).unwrap()
}

#[test]
fn the_free_path_after_folio_free_is_a_task_in_v6_19_as_merged() {
    let m = machine_after(SETUP, preset("v6.19-orig"));
    let t = m.s.tasks[0].expect("no pending free path");
    assert_eq!(t.kind, TaskKind::FreeFolio { pfn: 1, nr: 1 });
    // the driver has the page back; the pgmap reference is not put yet
    let done = machine_after(&format!("{SETUP}step task=0\n"), preset("v6.19-orig"));
    assert_eq!(m.s.pgmaps[0].pref.count(), done.s.pgmaps[0].pref.count() + 1);
    assert!(done.s.tasks[0].is_none());
}

#[test]
fn a_page_reallocated_as_a_tail_is_read_as_a_pgmap_i_f3() {
    let v = run_as(&format!("{SETUP}alloc_device_folio pgmap=0 cpu=0\nstep task=0\n"), preset("v6.19-orig"));
    let bad = v.violation.as_ref().unwrap_or_else(|| panic!("no I-F3: {}", show(&v)));
    assert_eq!(bad.invariant.id(), "I-F3", "{}", show(&v));
    assert!(bad.message.contains("reallocated pfn 1 as a tail of the folio at pfn 0"), "{}", bad.message);
    assert_eq!(bad.actual, "compound_head 0");
}

#[test]
fn a_page_reallocated_as_a_head_still_holds_its_pgmap() {
    // pfn 1 handed out again as an order-0 page: its first word is its
    // pgmap, as before
    let text = "
config types=private pgmaps=1 pages=2 cpus=1 procs=1 addrs=1 tasks=1 ram=0 order=1
memremap_pages pgmap=0
alloc_device_page pgmap=0 cpu=0
alloc_device_page pgmap=0 cpu=0
free_device_page pfn=1 cpu=0
alloc_device_page pgmap=0 cpu=0
step task=0
";
    let v = run_as(text, preset("v6.19-orig"));
    assert!(v.ok(), "{}", show(&v));
    assert!(notes(&v).contains("free_zone_device_folio(pfn=1, nr=1)"), "{}", show(&v));
}

#[test]
fn the_drain_finishes_a_pending_free_path() {
    // nothing reallocates the page: the drain runs the put and the unbind
    // completes
    let v = run_as(SETUP, preset("v6.19-orig"));
    assert!(v.ok(), "{}", show(&v));
}

#[test]
fn with_the_fix_the_free_path_is_one_step() {
    for era in ["e5", "e4", "e3"] {
        let m = machine_after(SETUP, preset(era));
        assert!(m.s.tasks.iter().all(|t| t.is_none()), "{era}: a free path was left pending");
    }
    // and the same allocation is clean (there is no task to step)
    let v = run_as(&format!("{SETUP}alloc_device_folio pgmap=0 cpu=0\n"), preset("e5"));
    assert!(v.ok(), "{}", show(&v));
    // `step task=0` is not even an action there
    let p = parse_program(&format!("{SETUP}step task=0\n")).unwrap();
    let m = machine_after(SETUP, preset("e5"));
    assert!(m.enabled(p.ops.last().unwrap()).is_err());
}

#[test]
fn without_large_device_folios_the_late_read_opens_no_window() {
    // v6.1 re-reads page->pgmap too, but a page there is only ever
    // reallocated as an order-0 head
    let mut r = preset("e5");
    r.thp.free_rereads_pgmap = true;
    assert!(machine_after(SETUP, r.clone()).s.tasks[0].is_some());
    r.thp.device_private = false;
    let text = SETUP.replace(" order=1", "");
    assert!(machine_after(&text, r).s.tasks[0].is_none());
}

/// Before v6.0 a collect that replaced a present PTE stops at its TLB flush,
/// a step of its own that the task's description names; from v6.0 the flush
/// is part of collect and the next step is unmap.
#[test]
fn collects_tlb_flush_is_a_step_of_its_own_before_v6_0() {
    let text = "config types=private pgmaps=1 pages=1 cpus=1 procs=1 addrs=1 tasks=1 ram=1 order=0
memremap_pages pgmap=0
do_anonymous_page proc=0 addr=0 cpu=0
migrate_vma_setup proc=0 addr=0 pgmap=0 select=SYSTEM cpu=0
step task=0
";
    for (era, at) in [("e2", "flush_tlb_range (PTL released)"), ("e3", "unmap")] {
        let m = programs::machine_after_under(text, zdfuzz_core::Rules::preset(era).unwrap());
        let tasks = m.view().tasks;
        assert_eq!(tasks.len(), 1, "{era}");
        assert!(tasks[0].1.ends_with(&format!("at \"{at}\"")), "{era}: {}", tasks[0].1);
    }
}
