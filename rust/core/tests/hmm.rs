//! `hmm_range_fault` (mm/hmm.c, v6.1) and its callers' retry loop: the walk
//! takes no page reference, the driver checks `mmu_interval_read_retry`
//! before it maps the snapshot, and the what-if that does not (I-H1).
#![cfg(not(loom))]

#[path = "common/programs.rs"]
mod programs;

use programs::{machine_after_under as machine_after, notes, run_as, show};
use zdfuzz_core::pagetable::Pte;
use zdfuzz_core::program::text::parse_program;
use zdfuzz_core::{Config, Machine, Rules};

/// A process's anonymous page, migrated to device-private pfn 0 of pgmap 0
/// (E3+: the driver's page), mapped writable by a device-private entry.
const ON_DEVICE: &str = "
config types=private pgmaps=2 pages=1 cpus=1 procs=1 addrs=2 tasks=2 ram=2
memremap_pages pgmap=0
memremap_pages pgmap=1
do_anonymous_page proc=0 addr=0 cpu=0
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

fn whatif() -> Rules {
    let mut r = e4();
    r.private.hmm_checks_retry = false;
    r
}

#[test]
fn the_walk_takes_no_reference_and_reports_per_owner() {
    let before = machine_after(ON_DEVICE, e4());
    // the owner's driver sees its page: a task waits for the retry check
    let mine = machine_after(&format!("{ON_DEVICE}hmm_range_fault proc=0 addr=0 pgmap=0 cpu=0\n"), e4());
    assert_eq!(mine.s.rc, before.s.rc, "hmm_range_fault took a page reference");
    assert_eq!(mine.s.pgmaps[0].pref.count(), before.s.pgmaps[0].pref.count());
    assert!(mine.s.tasks[0].is_some(), "no snapshot task");
    // another device's driver sees nothing (no HMM_PFN_REQ_FAULT: no fault)
    let other = machine_after(&format!("{ON_DEVICE}hmm_range_fault proc=0 addr=0 pgmap=1 cpu=0\n"), e4());
    assert!(other.s.tasks.iter().all(|t| t.is_none()));
    assert_eq!(other.s.ptes, before.s.ptes);
    // a hole: nothing either
    let hole = machine_after(&format!("{ON_DEVICE}hmm_range_fault proc=0 addr=1 pgmap=0 cpu=0\n"), e4());
    assert!(hole.s.tasks.iter().all(|t| t.is_none()));
    // and the whole program, the snapshot used, is clean
    let v = run_as(&format!("{ON_DEVICE}hmm_range_fault proc=0 addr=0 pgmap=0 cpu=0\nstep task=0\n"), e4());
    assert!(v.ok(), "{}", show(&v));
    assert!(notes(&v).contains("hmm_range_fault -> pfn 0 write (no reference taken)"), "{}", show(&v));
}

/// Between the walk and the driver's check, the CPU faults the page back
/// to system RAM (`do_swap_page` → `migrate_to_ram`), and the device page
/// goes back to the driver.
const FAULTED_BACK: &str = "hmm_range_fault proc=0 addr=0 pgmap=0 cpu=0
do_swap_page proc=0 addr=0 cpu=0
step task=1
step task=1
step task=1
step task=1
step task=1
step task=1
step task=1
step task=1
step task=1
step task=1
";

#[test]
fn an_invalidated_snapshot_is_retried_and_the_what_if_maps_it_stale() {
    let steps = |rules: Rules| {
        // run the fault to completion, however many steps this era's takes
        let p = parse_program(&format!("{ON_DEVICE}{FAULTED_BACK}")).unwrap();
        let mut m = Machine::new(Config::with_shape(rules, p.shape.clone())).unwrap();
        m.set_tracing(true);
        for op in &p.ops {
            // the fault's steps beyond this era's last are not enabled
            if m.enabled(op).is_ok() {
                m.step(op).unwrap();
            }
        }
        assert!(m.s.tasks[1].is_none(), "the fault did not finish");
        assert!(m.s.tasks[0].is_some(), "the snapshot task is gone");
        let check = parse_program(&format!("{ON_DEVICE}step task=0\n")).unwrap().ops.pop().unwrap();
        m.step(&check).unwrap();
        m
    };
    let ok = steps(e4());
    assert!(ok.violation().is_none(), "{:?}", ok.violation());
    let bad = steps(whatif());
    let v = bad.violation().expect("the stale snapshot was not reported");
    assert_eq!(v.invariant.id(), "I-H1", "{v:?}");
    assert!(v.message.contains("from a stale hmm_range_fault snapshot"), "{}", v.message);
}

#[test]
fn an_unchanged_range_is_mapped_in_the_what_if_too() {
    let v = run_as(&format!("{ON_DEVICE}hmm_range_fault proc=0 addr=0 pgmap=0 cpu=0\nstep task=0\n"), whatif());
    assert!(v.ok(), "{}", show(&v));
}

#[test]
fn device_dax_pages_are_snapshotted_without_a_pgmap_reference() {
    let text = "
config types=private,generic pgmaps=1 pages=1 cpus=1 procs=1 addrs=1 tasks=2 ram=0
memremap_pages pgmap=0
memremap_pages pgmap=1
dev_dax_huge_fault proc=0 addr=0 pfn=1 cpu=0
";
    let before = machine_after(text, e4());
    let m = machine_after(&format!("{text}hmm_range_fault proc=0 addr=0 pgmap=0 cpu=0\n"), e4());
    assert!(m.s.tasks[0].is_some(), "no snapshot of the device-dax page");
    assert_eq!(m.s.pgmaps[1].pref.count(), before.s.pgmaps[1].pref.count());
    assert_eq!(m.s.rc, before.s.rc);
}

/// Why the pre-v5.7 walk's `get_dev_pagemap` on devmap PTEs is not
/// modelled (068354ade5dd, "rely entirely on the notifiers"): no program
/// reaches a state where a present entry maps an FS-DAX or device-dax page
/// of a pgmap whose reference is dying — the unbind zaps those mappings before
/// its kill, and faults refuse a dying device — so that lookup could never
/// fail. Checked after every action of random programs, in every era.
#[test]
fn no_devmap_entry_outlives_its_pgmaps_liveness() {
    use zdfuzz_core::pagetable::Pte;
    use zdfuzz_core::pgmap::PgmapState;
    use zdfuzz_core::rules::DeviceType;
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut checked = 0usize;
    for era in ["e1", "e2", "e3", "e4", "e5", "p20"] {
        let p = parse_program("config types=fsdax,generic pgmaps=1 pages=2 cpus=1 procs=2 addrs=2 tasks=2\n").unwrap();
        let mut m = Machine::new(Config::with_shape(Rules::preset(era).unwrap(), p.shape.clone())).unwrap();
        for _ in 0..300 {
            m.reset();
            let data: Vec<u8> = (0..256)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect();
            let mut pos = 0;
            while m.violation().is_none() {
                let Some(op) = m.decode_op(&data, &mut pos) else { break };
                m.step(&op).unwrap();
                for e in m.s.ptes.iter().chain(m.s.pmds.iter()) {
                    if let Pte::Present { pfn, .. } = *e {
                        let pfn = pfn as usize;
                        if m.layout.is_ram(pfn) {
                            continue;
                        }
                        let g = m.layout.pgmap_of(pfn);
                        if matches!(m.layout.pgmap_type[g], DeviceType::Fsdax | DeviceType::Generic) {
                            // registered, and its ref not killed (an unbind
                            // zaps before it kills)
                            let st = m.s.pgmaps[g].state;
                            assert!(
                                matches!(st, PgmapState::Live | PgmapState::Unbinding)
                                    && !m.s.pgmaps[g].pref.is_dying(),
                                "{era}: pfn {pfn} mapped while pgmap {g} is {st:?} (dying: {}), after {op:?}",
                                m.s.pgmaps[g].pref.is_dying()
                            );
                            checked += 1;
                        }
                    }
                }
            }
        }
    }
    assert!(checked > 5_000, "{checked}");
}

#[test]
fn hmm_needs_a_bound_device_private_driver() {
    let m = machine_after(ON_DEVICE, e4());
    let op = |t: &str| parse_program(&format!("{ON_DEVICE}{t}\n")).unwrap().ops.pop().unwrap();
    assert!(m.enabled(&op("hmm_range_fault proc=0 addr=0 pgmap=0 cpu=0")).is_ok());
    let dax = machine_after("config types=generic pgmaps=1 pages=1 procs=1 addrs=1\nmemremap_pages pgmap=0\n", e4());
    let p = parse_program(
        "config types=generic pgmaps=1 pages=1 procs=1 addrs=1\nhmm_range_fault proc=0 addr=0 pgmap=0 cpu=0\n",
    )
    .unwrap();
    assert!(dax.enabled(&p.ops[0]).unwrap_err().contains("device-private"));
}

/// What (proc 0, addr) maps: the pfn of a present PTE, if any.
fn present_at(m: &Machine, addr: usize) -> Option<usize> {
    match m.s.ptes[m.layout.pte_slot(0, addr)] {
        Pte::Present { pfn, .. } => Some(pfn as usize),
        _ => None,
    }
}

fn op_of(t: &str) -> zdfuzz_core::program::op::Op {
    parse_program(&format!("{ON_DEVICE}{t}\n")).unwrap().ops.pop().unwrap()
}

/// HMM_PFN_REQ_FAULT on a hole: `hmm_vma_fault` → `handle_mm_fault` gives
/// the process an anonymous page, and the walk goes on and reports it (the
/// snapshot task), where the snapshot-only walk reports nothing.
#[test]
fn a_faulting_walk_fills_a_hole_and_reports_the_new_page() {
    let snap = machine_after(&format!("{ON_DEVICE}hmm_range_fault proc=0 addr=1 pgmap=0 cpu=0\n"), e4());
    assert_eq!(present_at(&snap, 1), None);
    let m = machine_after(&format!("{ON_DEVICE}hmm_fault proc=0 addr=1 pgmap=0 cpu=0\n"), e4());
    let p = present_at(&m, 1).expect("the hole was not faulted in");
    assert!(m.layout.is_ram(p));
    assert!(m.s.tasks[0].is_some(), "the walk did not report the faulted page");
    let v = run_as(&format!("{ON_DEVICE}hmm_fault proc=0 addr=1 pgmap=0 cpu=0\nstep task=0\n"), e4());
    assert!(v.ok(), "{}", show(&v));
    assert!(notes(&v).contains("handle_mm_fault on the hole -> do_anonymous_page"), "{}", show(&v));
    assert!(notes(&v).contains(&format!("hmm_range_fault -> pfn {p} write")), "{}", show(&v));
}

/// HMM_PFN_REQ_FAULT on another device's page: the CPU's device-private
/// fault (`do_swap_page` → that driver's `migrate_to_ram`) brings it to
/// RAM; the call returns -EBUSY (no snapshot), and the retry reports the RAM
/// page. The owner's own page is reported as it is, without a fault.
#[test]
fn a_faulting_walk_migrates_another_owners_page_back_and_retries() {
    let own = machine_after(&format!("{ON_DEVICE}hmm_fault proc=0 addr=0 pgmap=0 cpu=0\n"), e4());
    let kinds: Vec<_> = own.s.tasks.iter().flatten().map(|t| t.kind).collect();
    assert!(
        matches!(kinds[..], [zdfuzz_core::sched::TaskKind::HmmRangeFault { pfn: 0, write: true, .. }]),
        "the owner's page is snapshotted, not faulted: {kinds:?}"
    );
    assert_eq!(present_at(&own, 0), None, "the owner's page was faulted");

    let mut m = machine_after(&format!("{ON_DEVICE}hmm_fault proc=0 addr=0 pgmap=1 cpu=0\n"), e4());
    assert!(
        matches!(m.s.tasks[0].map(|t| t.kind), Some(zdfuzz_core::sched::TaskKind::Migrate { .. })),
        "no fault task: {:?}",
        m.s.tasks[0]
    );
    assert_eq!(present_at(&m, 0), None);
    let step = op_of("step task=0");
    while m.s.tasks[0].is_some() {
        m.step(&step).unwrap();
    }
    assert!(m.violation().is_none(), "{:?}", m.violation());
    let p = present_at(&m, 0).expect("the fault did not bring the page to RAM");
    assert!(m.layout.is_ram(p));
    assert!(m.s.tasks.iter().all(|t| t.is_none()), "-EBUSY: nothing was snapshotted");
    m.step(&op_of("hmm_fault proc=0 addr=0 pgmap=1 cpu=0")).unwrap();
    assert!(m.s.tasks[0].is_some(), "the retry did not report the RAM page");
}

/// Process 0's anonymous page at addr 0 being migrated to pgmap 0: the
/// migration task is spawned (it holds the process's mmap_lock) and has not
/// run a step yet; addr 1 is a hole.
const MIGRATING: &str = "
config types=private pgmaps=2 pages=1 cpus=1 procs=1 addrs=2 tasks=2 ram=2
memremap_pages pgmap=0
memremap_pages pgmap=1
do_anonymous_page proc=0 addr=0 cpu=0
migrate_vma_setup proc=0 addr=0 pgmap=0 select=SYSTEM cpu=0
";

/// No RAM for the hole: VM_FAULT_OOM, -EFAULT, nothing mapped or reported;
/// and the hole is faulted only where the CPU's fault could run.
#[test]
fn a_faulting_walk_fails_without_ram_and_waits_for_the_mmap_lock() {
    let full = "
config types=private pgmaps=2 pages=1 cpus=1 procs=1 addrs=2 tasks=2 ram=1
memremap_pages pgmap=0
memremap_pages pgmap=1
do_anonymous_page proc=0 addr=0 cpu=0
hmm_fault proc=0 addr=1 pgmap=0 cpu=0
";
    let m = machine_after(full, e4());
    assert_eq!(present_at(&m, 1), None);
    assert!(m.s.tasks.iter().all(|t| t.is_none()));
    assert!(notes(&run_as(full, e4())).contains("VM_FAULT_OOM -> -EFAULT"));
    // a migration of the process holds its mmap_lock: the hole waits
    let busy = machine_after(MIGRATING, e4());
    let why = busy.enabled(&op_of("hmm_fault proc=0 addr=1 pgmap=0 cpu=0")).unwrap_err();
    assert!(why.contains("mmap_lock"), "{why}");
    // the snapshot-only walk does not fault, so it does not wait
    assert!(busy.enabled(&op_of("hmm_range_fault proc=0 addr=1 pgmap=0 cpu=0")).is_ok());
}

/// A migration entry (a migration of the process between collect and
/// finalize): the faulting walk waits it out and returns -EBUSY, reporting
/// nothing; no fault is taken.
#[test]
fn a_faulting_walk_waits_out_a_migration_entry() {
    // its collect step: the address holds a migration entry
    let collected = format!("{MIGRATING}step task=0\n");
    let m = machine_after(&collected, e4());
    assert!(
        matches!(m.s.ptes[m.layout.pte_slot(0, 0)], Pte::Migration { .. }),
        "{:?}",
        m.s.ptes[m.layout.pte_slot(0, 0)]
    );
    let faulted = format!("{collected}hmm_fault proc=0 addr=0 pgmap=1 cpu=0\n");
    let after = machine_after(&faulted, e4());
    assert_eq!(after.s.tasks.iter().flatten().count(), 1, "only the migration's task");
    assert_eq!(after.s.ptes, m.s.ptes);
    assert!(notes(&run_as(&faulted, e4())).contains("migration_entry_wait, then -EBUSY"));
}
