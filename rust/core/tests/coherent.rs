//! MEMORY_DEVICE_COHERENT (v6.0): device memory the CPU maps with ordinary
//! present PTEs. Its driver allocates and frees pages as a device-private
//! driver does (zero-based, one pgmap reference per allocated page from v6.1,
//! `->page_free` then `put_dev_pagemap`: mm/memremap.c), anonymous memory
//! migrates into it (`migrate_vma_insert_page` writes a present, dirty PTE)
//! and back out (`MIGRATE_VMA_SELECT_DEVICE_COHERENT`), and a FOLL_LONGTERM
//! GUP moves a coherent page to system RAM before pinning it
//! (`migrate_device_coherent_page`, mm/gup.c
//! `migrate_longterm_unpinnable_pages`).
#![cfg(not(loom))]

#[path = "common/programs.rs"]
mod programs;

use programs::{notes, run_as, show};
use zdfuzz_core::program::text::parse_program;
use zdfuzz_core::{Config, Machine, Rules, Verdict};

fn note(v: &Verdict, step: usize) -> String {
    v.trace.iter().find(|t| t.step == step).map(|t| t.notes.join("; ")).unwrap_or_default()
}

/// A process's anonymous page migrated to the coherent pgmap, then pinned.
const TO_COHERENT: &str = "
config types=coherent pgmaps=1 pages=2 cpus=1 procs=1 addrs=2 tasks=1 ram=2
memremap_pages pgmap=0
do_anonymous_page proc=0 addr=0 cpu=0
cpu_write proc=0 addr=0 cpu=0
migrate_vma_setup proc=0 addr=0 pgmap=0 select=SYSTEM cpu=0
step task=0
step task=0
step task=0
step task=0
step task=0
";

fn e4() -> Rules {
    Rules::preset("e4").unwrap()
}

#[test]
fn eras_without_the_type_refuse_it_by_name() {
    let p = parse_program(TO_COHERENT).unwrap();
    for era in ["e1", "e2", "p20"] {
        let Err(e) = Machine::new(Config::with_shape(Rules::preset(era).unwrap(), p.shape.clone())) else {
            panic!("{era} accepted a coherent pgmap")
        };
        assert!(e.0.contains("no MEMORY_DEVICE_COHERENT"), "{era}: {e}");
    }
    for era in ["e3", "e4", "e5"] {
        assert!(Machine::new(Config::with_shape(Rules::preset(era).unwrap(), p.shape.clone())).is_ok(), "{era}");
    }
}

#[test]
fn anonymous_memory_migrates_into_coherent_pages_as_present_ptes() {
    let v = run_as(TO_COHERENT, e4());
    assert!(v.reported().is_none(), "{}", show(&v));
    let m = final_machine(TO_COHERENT);
    // the process now maps coherent pfn 0 with a present, writable PTE: one
    // reference (the mapping; the driver's allocation reference was put by
    // finalize) and one pgmap reference for the allocated page
    assert_eq!(pte(&m, 0, 0), "pfn 0");
    assert_eq!(m.view().pages[0].refcount, 1);
    assert_eq!(m.view().pgmaps[0].r#ref, 2, "the pgmap's own reference + one per allocated page");
    // the data came along: a CPU write through it shows on the page
    let text = format!("{TO_COHERENT}cpu_write proc=0 addr=0 cpu=0\nmunmap proc=0 addr=0 cpu=0\n");
    let v = run_as(&text, e4());
    assert!(v.reported().is_none(), "{}", show(&v));
    // munmap drops the last reference: ->page_free, put_dev_pagemap
    assert!(note(&v, 10).contains("page_free(pfn 0)"), "{}", show(&v));
    assert!(v.trace[10].changes.contains(&"pgmap 0 ref 2 -> 1".to_string()), "put_dev_pagemap: {}", show(&v));
}

#[test]
fn a_longterm_pin_moves_the_page_to_system_ram_first() {
    let text = format!("{TO_COHERENT}pin_user_pages proc=0 addr=0 flags=FOLL_LONGTERM cpu=0\n");
    let v = run_as(&text, e4());
    assert!(v.reported().is_none(), "{}", show(&v));
    let n = note(&v, 9);
    assert!(n.contains("migrate_device_coherent_page(pfn 0)"), "{}", show(&v));
    assert!(n.contains("page_free(pfn 0)"), "the coherent page went back to its driver: {}", show(&v));
    let m = final_machine(&text);
    assert_eq!(pte(&m, 0, 0), "pfn 2", "the process now maps a RAM page");
    assert_eq!(m.view().pages[2].refcount, 1 + 1024, "the mapping and the pin");
    assert_eq!(m.view().pgmaps[0].r#ref, 1, "the coherent page is free again");
    // a short-term pin stays on the coherent page
    let short = format!("{TO_COHERENT}pin_user_pages proc=0 addr=0 flags=0 cpu=0\n");
    let v = run_as(&short, e4());
    assert!(v.reported().is_none() && !notes(&v).contains("migrate_device_coherent_page"), "{}", show(&v));
    assert!(note(&v, 9).contains("-> pfn 0"), "{}", show(&v));
}

#[test]
fn a_longterm_pin_of_a_pinned_coherent_page_fails_with_ebusy() {
    // a short-term pin is a reference migration cannot account for: the
    // pre-filter refuses, the page is mapped back, GUP returns -EBUSY
    let text = format!(
        "{TO_COHERENT}pin_user_pages proc=0 addr=0 flags=0 cpu=0\npin_user_pages proc=0 addr=0 flags=FOLL_LONGTERM cpu=0\n"
    );
    let v = run_as(&text, e4());
    assert!(v.reported().is_none(), "{}", show(&v));
    assert!(note(&v, 10).contains("-> -EBUSY"), "{}", show(&v));
    let m = final_machine(&text);
    assert_eq!(pte(&m, 0, 0), "pfn 0", "mapped back");
    assert_eq!(
        m.view().pages[0].refcount,
        1 + 1024,
        "the mapping and the short-term pin; the migration's reference is gone"
    );
}

#[test]
fn i_g5_fires_when_gup_pins_a_coherent_page_for_long() {
    // the what-if of a GUP that forgot coherent pages are not longterm-pinnable
    let mut r = e4();
    r.gup.longterm_migrates_coherent = false;
    let text = format!("{TO_COHERENT}pin_user_pages proc=0 addr=0 flags=FOLL_LONGTERM cpu=0\n");
    let v = run_as(&text, r);
    assert_eq!(v.reported().map(|x| x.invariant.id()), Some("I-G5"), "{}", show(&v));
    // and stays quiet when GUP migrates
    assert!(run_as(&text, e4()).reported().is_none());
}

#[test]
fn the_driver_migrates_coherent_pages_back_with_select_device_coherent() {
    let text = format!(
        "{TO_COHERENT}migrate_vma_setup proc=0 addr=0 pgmap=0 select=DEVICE_COHERENT cpu=0\n{}",
        "step task=0\n".repeat(5)
    );
    let v = run_as(&text, e4());
    assert!(v.reported().is_none(), "{}", show(&v));
    assert!(notes(&v).matches("page_free(pfn 0)").count() == 1, "{}", show(&v));
    let m = final_machine(&text);
    assert_eq!(m.view().pgmaps[0].r#ref, 1, "no page allocated any more");
    // a device-private selection does not collect coherent pages
    let wrong = TO_COHERENT.to_string() + "migrate_vma_setup proc=0 addr=0 pgmap=0 select=DEVICE_PRIVATE cpu=0\n";
    let p = parse_program(&wrong).unwrap();
    let mut m = Machine::new(Config::with_shape(e4(), p.shape.clone())).unwrap();
    let err = m.run(&p.ops).unwrap_err();
    assert!(format!("{:?}", err.1).contains("SELECT_DEVICE_PRIVATE needs a device-private pgmap"), "{err:?}");
}

#[test]
fn unbind_waits_while_a_coherent_page_is_in_use() {
    // memunmap_pages puts no init references for a coherent pgmap and waits
    // for the per-allocation ones: the mapped page keeps it waiting
    let text = format!("{TO_COHERENT}memunmap_pages pgmap=0 cpu=0\n{}", "step task=0\n".repeat(3));
    let m = final_machine(&text);
    assert_eq!(m.tasks_view().len(), 1, "memunmap_pages still waits: {:?}", m.tasks_view());
    // the page's last put (munmap) lets it finish
    let text = format!("{text}munmap proc=0 addr=0 cpu=0\nrcu_grace_period\n{}", "step task=0\n".repeat(3));
    let m = final_machine(&text);
    assert!(m.tasks_view().is_empty(), "{:?}", m.tasks_view());
    assert!(run_as(&text, e4()).reported().is_none());
    // migrate_device_range evicts coherent pages as well as private ones
    let evict = format!("{TO_COHERENT}migrate_device_range pgmap=0 cpu=0\n{}", "step task=0\n".repeat(5));
    let m = final_machine(&evict);
    assert_eq!(pte(&m, 0, 0), "pfn 2", "back in system RAM");
    assert_eq!(m.view().pgmaps[0].r#ref, 1);
}

/// The machine after the program's actions, before the end-of-run drain.
fn final_machine(text: &str) -> Machine {
    let p = parse_program(text).unwrap();
    let mut m = Machine::new(Config::with_shape(e4(), p.shape.clone())).unwrap();
    m.reset();
    for op in &p.ops {
        m.step(op).unwrap();
    }
    m
}

fn pte(m: &Machine, proc: usize, addr: usize) -> String {
    m.view().procs[proc].ptes[addr].clone()
}

#[test]
fn a_longterm_pin_of_a_page_another_migration_holds_locked_fails_with_ebusy() {
    // migrate_device_range's collect locked the page and left it mapped
    // until its unmap step: GUP's FOLL_LONGTERM path fails at once, and the
    // action is enabled whatever the flags (the byte decoders rely on it)
    let text = format!(
        "{TO_COHERENT}migrate_device_range pgmap=0 cpu=0\nstep task=0\npin_user_pages proc=0 addr=0 flags=FOLL_LONGTERM cpu=0\n"
    );
    let m = final_machine(&text);
    assert!(m.view().pages[0].locked);
    let v = run_as(&text, e4());
    assert!(v.reported().is_none(), "{}", show(&v));
    let n = note(&v, 11);
    assert!(n.contains("locked by a migration: -EBUSY") && n.contains("-> -EBUSY"), "{}", show(&v));
    assert!(v.trace[11].changes.is_empty(), "nothing changed: {}", show(&v));
}
