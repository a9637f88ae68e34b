//! memory_failure() on ZONE_DEVICE pages (mm/memory-failure.c,
//! `memory_failure_dev_pagemap` / `mf_generic_kill_procs`, v6.1): the
//! `get_dev_pagemap` reference it holds across the handler, what the handler
//! does per device type, and the what-if without the reference.
#![cfg(not(loom))]

#[path = "common/programs.rs"]
mod programs;

use programs::{machine_after_under as machine_after, notes, run_as, show};
use zdfuzz_core::pagetable::Pte;
use zdfuzz_core::program::text::parse_program;
use zdfuzz_core::{Config, Machine, Rules};

/// The lookup and the tryget have run; task 0 is about to run the handler.
const LOOKED_UP: &str = "
config types=generic pgmaps=1 pages=1 cpus=1 procs=1 addrs=1 tasks=2 faults=1
memremap_pages pgmap=0
dev_dax_huge_fault proc=0 addr=0 pfn=0 cpu=0
memory_failure pfn=0 cpu=0
step task=0
step task=0
";

/// An unbind that runs to its wait (shutdown, kill, initial references).
const UNBIND_TO_WAIT: &str = "memunmap_pages pgmap=0 cpu=0
step task=1
step task=1
step task=1
";

#[test]
fn memory_failure_holds_a_pgmap_reference_across_the_handler() {
    for era in ["e1", "e3", "e4", "e5"] {
        let rules = Rules::preset(era).unwrap();
        let before = machine_after(
            &LOOKED_UP.replace("memory_failure pfn=0 cpu=0\nstep task=0\nstep task=0\n", ""),
            rules.clone(),
        );
        let held = machine_after(LOOKED_UP, rules.clone());
        assert_eq!(held.s.pgmaps[0].pref.count(), before.s.pgmaps[0].pref.count() + 1, "{era}: the tryget");
        // the unbind waits for it at wait_for_completion
        let mut m = machine_after(&format!("{LOOKED_UP}{UNBIND_TO_WAIT}"), rules.clone());
        // the kill's switch to atomic mode completes after a grace period
        let rcu = parse_program(&format!("{LOOKED_UP}rcu_grace_period\n")).unwrap().ops.pop().unwrap();
        if m.enabled(&rcu).is_ok() {
            m.step(&rcu).unwrap();
        }
        let wait = parse_program(&format!("{LOOKED_UP}step task=1\n")).unwrap().ops.pop().unwrap();
        assert!(m.enabled(&wait).is_err(), "{era}: memunmap_pages did not wait for memory_failure's reference");
        let handler = parse_program(&format!("{LOOKED_UP}step task=0\n")).unwrap().ops.pop().unwrap();
        m.step(&handler).unwrap();
        assert!(m.violation().is_none(), "{era}: {:?}", m.violation());
        assert!(m.enabled(&wait).is_ok(), "{era}: memory_failure's put did not let the unbind go on");
        // and the whole program, with the teardown, is clean
        let v = run_as(&format!("{LOOKED_UP}{UNBIND_TO_WAIT}step task=0\nstep task=1\nstep task=1\n"), rules);
        assert!(v.ok(), "{era}: {}", show(&v));
    }
}

#[test]
fn without_the_reference_the_handler_reads_a_torn_down_page() {
    // I-L3 fires: the what-if drops the reference, the unbind finishes
    // between the lookup and the handler
    let mut whatif = Rules::preset("e4").unwrap();
    whatif.pgmap.memory_failure_gets_pgmap = false;
    let text = format!("{LOOKED_UP}{UNBIND_TO_WAIT}rcu_grace_period\nstep task=1\nstep task=1\nstep task=0\n");
    let v = run_as(&text, whatif.clone());
    let r = v.reported().unwrap_or_else(|| panic!("no violation:\n{}", show(&v)));
    assert_eq!(r.invariant.id(), "I-L3", "{}", show(&v));
    assert_eq!(v.trace.last().unwrap().action, "step task=0", "{}", show(&v));
    // quiet: the same interleaving with the handler before the teardown
    let v = run_as(&format!("{LOOKED_UP}{UNBIND_TO_WAIT}step task=0\nstep task=1\nstep task=1\n"), whatif);
    assert!(v.ok(), "{}", show(&v));
}

#[test]
fn the_handler_unmaps_device_dax_and_fsdax_mappings() {
    for era in ["e1", "e3", "e4", "e5"] {
        let rules = Rules::preset(era).unwrap();
        let m = machine_after(&format!("{LOOKED_UP}step task=0\n"), rules.clone());
        assert_eq!(m.s.ptes[0], Pte::None, "{era}: device-dax mapping survived");
        assert!(m.s.tasks.iter().all(|t| t.is_none()), "{era}: memory_failure did not return");
        let fsdax = "
config types=fsdax pgmaps=1 pages=1 cpus=1 procs=2 addrs=1 tasks=1 files=1 file_pages=1 faults=1
memremap_pages pgmap=0
dax_associate_entry file=0 index=0 pfn=0
dax_iomap_fault proc=0 addr=0 file=0 index=0 cpu=0
dax_iomap_fault proc=1 addr=0 file=0 index=0 cpu=0
memory_failure pfn=0 cpu=0
step task=0
step task=0
step task=0
";
        let m = machine_after(fsdax, rules.clone());
        assert_eq!(m.s.ptes, vec![Pte::None, Pte::None], "{era}: FS-DAX mappings survived");
        assert_eq!(m.s.mc[0], 0, "{era}");
        assert_eq!(m.s.dax[0], 1, "{era}: the block stays the file's (only the mappings go)");
        let v = run_as(fsdax, rules);
        assert!(v.ok(), "{era}: {}", show(&v));
        assert!(notes(&v).contains("SetPageHWPoison"), "{era}: {}", show(&v));
    }
}

#[test]
fn pages_without_a_dax_mapping_are_refused_with_ebusy() {
    let cases = [
        // an FS-DAX block no file owns
        "config types=fsdax pgmaps=1 pages=1 cpus=1 procs=1 addrs=1 tasks=1 files=1 file_pages=1 faults=1
memremap_pages pgmap=0
",
        // a device-private page mapped by a process (an anonymous mapping)
        "config types=private pgmaps=1 pages=1 cpus=1 procs=1 addrs=1 tasks=1 ram=1 faults=1
memremap_pages pgmap=0
do_anonymous_page proc=0 addr=0 cpu=0
migrate_vma_setup proc=0 addr=0 pgmap=0 select=SYSTEM cpu=0
step task=0
step task=0
step task=0
step task=0
step task=0
",
        // a P2P page in use by the kernel
        "config types=p2pdma pgmaps=1 pages=1 cpus=1 procs=1 addrs=1 tasks=1 faults=1
memremap_pages pgmap=0
pci_alloc_p2pmem pgmap=0 pages=1 cpus=0
",
    ];
    for case in cases {
        let case = case.replace("cpus=0\n", "cpu=0\n");
        let mf = "memory_failure pfn=0 cpu=0\nstep task=0\nstep task=0\nstep task=0\n";
        let before = machine_after(&case, Rules::preset("e4").unwrap());
        let after = machine_after(&format!("{case}{mf}"), Rules::preset("e4").unwrap());
        assert_eq!(after.s.ptes, before.s.ptes, "{case}");
        assert_eq!((&after.s.rc, &after.s.mc), (&before.s.rc, &before.s.mc), "{case}");
        assert_eq!(after.s.pgmaps[0].pref.count(), before.s.pgmaps[0].pref.count(), "{case}: reference not put back");
        let v = run_as(&format!("{case}{mf}"), Rules::preset("e4").unwrap());
        assert!(v.ok(), "{case}: {}", show(&v));
        // which: page->mapping NULL, or an anonymous one (the migrated page)
        let why = if case.contains("types=private") { "not a DAX mapping" } else { "NULL" };
        assert!(notes(&v).contains(&format!("page->mapping {why} -> -EBUSY")), "{case}: {}", show(&v));
    }
}

#[test]
fn a_dying_pgmap_gives_enxio_and_no_handler() {
    let text = "
config types=generic pgmaps=1 pages=1 cpus=1 procs=1 addrs=1 tasks=2 faults=1
memremap_pages pgmap=0
dev_dax_huge_fault proc=0 addr=0 pfn=0 cpu=0
memory_failure pfn=0 cpu=0
step task=0
memunmap_pages pgmap=0 cpu=0
step task=1
step task=1
step task=0
";
    let m = machine_after(text, Rules::preset("e4").unwrap());
    assert!(m.s.tasks[0].is_none(), "memory_failure went on after a failed tryget_live");
    let v = run_as(text, Rules::preset("e4").unwrap());
    assert!(v.ok(), "{}", show(&v));
    assert!(notes(&v).contains("(dying) -> -ENXIO"), "{}", show(&v));
}

#[test]
fn memory_failure_needs_faults_a_device_pfn_and_mf_mutex() {
    let m = machine_after(&LOOKED_UP.replace("step task=0\nstep task=0\n", ""), Rules::preset("e4").unwrap());
    let again = parse_program(&format!("{LOOKED_UP}memory_failure pfn=0 cpu=0\n")).unwrap().ops.pop().unwrap();
    assert_eq!(m.enabled(&again), Err("mf_mutex: one memory_failure at a time"));
    let no_faults = LOOKED_UP.replace(" faults=1", "");
    let p = parse_program(&no_faults).unwrap();
    let mut m = Machine::new(Config::with_shape(Rules::preset("e4").unwrap(), p.shape.clone())).unwrap();
    m.step(&p.ops[0]).unwrap();
    assert!(m.enabled(&p.ops[2]).unwrap_err().contains("faults=1"));
    let ram =
        "config types=private pgmaps=1 pages=1 cpus=1 procs=1 addrs=1 tasks=1 ram=1 faults=1\nmemremap_pages pgmap=0\n";
    let p = parse_program(&format!("{ram}memory_failure pfn=1 cpu=0\n")).unwrap();
    let mut m = Machine::new(Config::with_shape(Rules::preset("e4").unwrap(), p.shape.clone())).unwrap();
    m.step(&p.ops[0]).unwrap();
    assert!(m.enabled(&p.ops[1]).unwrap_err().contains("system RAM"));
}
