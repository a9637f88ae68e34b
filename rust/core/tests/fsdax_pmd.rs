//! FS-DAX with PMD-sized extents (`fsdax_pmd=1`): every DAX entry is a PMD
//! entry, `dax_iomap_fault` maps it with one PMD, and from v6.15 the
//! entry's pages are one compound folio while the entry holds them
//! (`dax_folio_init` at association, `dax_folio_put` splitting it back at
//! disassociation). v6.19 as merged WARNs when such a folio is freed
//! (`VM_WARN_ON_ONCE(folio_test_large(folio))` in `free_zone_device_folio`,
//! d245f9b4ab80), until "mm/memremap: fix spurious large folio warning for
//! FS-DAX" exempted FS-DAX.
#![cfg(not(loom))]

#[path = "common/programs.rs"]
mod programs;

use programs::{machine_after_under, notes, run_as, show};
use zdfuzz_core::program::text::parse_action;
use zdfuzz_core::{Machine, Rules};

const SHAPE: &str =
    "config types=fsdax pgmaps=1 pages=4 cpus=1 procs=2 addrs=2 files=2 file_pages=1 tasks=2 order=1 fsdax_pmd=1\n";

fn after(preset: &str, body: &str) -> Machine {
    machine_after_under(&format!("{SHAPE}memremap_pages pgmap=0\n{body}"), Rules::preset(preset).unwrap())
}

fn enabled(m: &Machine, action: &str) -> Result<(), String> {
    m.enabled(&parse_action(action).unwrap()).map_err(|e| e.to_string())
}

#[test]
fn from_v6_15_an_entry_holds_a_compound_folio_and_gives_it_back_order_0() {
    let assoc = "dax_associate_entry file=0 index=0 pfn=2\n";
    for era in ["e4", "e5", "v6.19-orig"] {
        let m = after(era, assoc);
        assert_eq!((m.s.head[2], m.s.head[3], m.s.order[2]), (2, 2, 1), "{era}: dax_folio_init");
        assert_eq!((m.s.rc[2], m.s.rc[3]), (0, 0), "{era}: a free FS-DAX folio has refcount 0");
        assert_eq!(m.s.mapping[2], m.s.mapping[3], "{era}");
        // the truncate disassociates the entry: dax_folio_put splits it
        let m = after(era, &format!("{assoc}truncate file=0 index=0 cpu=0\nstep task=0\nstep task=0\n"));
        assert!(m.s.tasks.iter().all(Option::is_none), "{era}: the truncate finished");
        assert_eq!((m.s.head[2], m.s.head[3], m.s.order[2]), (2, 3, 0), "{era}: order-0 pages again");
        assert_eq!((m.s.mapping[2], m.s.mapping[3]), (0, 0), "{era}");
    }
    for era in ["e1", "e2", "e3"] {
        let m = after(era, assoc);
        assert_eq!((m.s.head[3], m.s.order[2]), (3, 0), "{era}: order-0 pages under the entry");
        assert_eq!(m.s.mapping[2], m.s.mapping[3], "{era}: for_each_mapped_pfn sets every page's mapping");
        assert_ne!(m.s.mapping[3], 0, "{era}");
    }
}

#[test]
fn the_fault_maps_the_extent_by_one_pmd_refcounted_from_v6_15() {
    let body = "dax_associate_entry file=0 index=0 pfn=2\ndax_iomap_fault proc=0 addr=1 file=0 index=0 cpu=0\n";
    for era in ["e1", "e3", "e4", "e5"] {
        let m = after(era, body);
        assert_eq!(m.s.pmds[0].pfn(), Some(2), "{era}: the block's PMD maps the extent");
        assert!(m.s.ptes.iter().all(|e| e.pfn().is_none()), "{era}: no PTE");
        let refcounted = matches!(era, "e4" | "e5");
        let idle = if refcounted { 0 } else { 1 };
        assert_eq!(m.s.rc[2], idle + refcounted as i32, "{era}");
        assert_eq!(m.s.emc[2], refcounted as i32, "{era}: the entire mapcount");
    }
    // an extent must be PMD-aligned, and the fault needs an empty block
    let m = after("e4", body);
    assert!(enabled(&m, "dax_associate_entry file=1 index=0 pfn=1").unwrap_err().contains("aligned"));
    assert!(enabled(&m, "dax_associate_entry file=1 index=0 pfn=3").unwrap_err().contains("aligned"));
    assert!(enabled(&m, "dax_associate_entry file=1 index=0 pfn=2").unwrap_err().contains("belongs to a file"));
    assert_eq!(enabled(&m, "dax_associate_entry file=1 index=0 pfn=0"), Ok(()));
    assert!(enabled(&m, "dax_iomap_fault proc=0 addr=0 file=0 index=0 cpu=0").unwrap_err().contains("mapped"));
    assert_eq!(enabled(&m, "dax_iomap_fault proc=1 addr=0 file=0 index=0 cpu=0"), Ok(()));
}

#[test]
fn a_dax_pmd_is_unmapped_whole_and_neither_split_copied_nor_walked() {
    let body = "dax_associate_entry file=0 index=0 pfn=0\ndax_iomap_fault proc=0 addr=0 file=0 index=0 cpu=0\n";
    let m = after("e4", body);
    for action in ["split_huge_pmd proc=0 addr=1 cpu=0", "mbind proc=0 addr=0 cpu=0"] {
        assert!(enabled(&m, action).is_err(), "{action}");
    }
    // munmap of one address zaps the PMD and drops its reference
    let m = after("e4", &format!("{body}munmap proc=0 addr=1 cpu=0\n"));
    assert!(m.s.pmds.iter().all(|e| e.pfn().is_none()) && m.s.ptes.iter().all(|e| e.pfn().is_none()));
    assert_eq!((m.s.rc[0], m.s.emc[0]), (0, 0));
    // fork does not copy a shared DAX mapping: the child faults it in
    let text = format!("{SHAPE}memremap_pages pgmap=0\n{body}exit_mmap proc=1 cpu=0\nfork proc=0 child=1\n");
    let m = machine_after_under(&text, Rules::preset("e4").unwrap());
    assert_eq!(m.s.pmds[1].pfn(), None, "the child's block is empty");
    assert_eq!(m.s.rc[0], 1, "one mapping, one reference");
}

/// The busy-page scan tests every page of the entry before v6.15 (a GUP
/// reference on a tail page is a reference on that page) and the folio
/// after; either way the truncate waits for the DMA and frees the extent
/// only once it is idle.
#[test]
fn a_gup_reference_on_a_tail_page_keeps_the_truncate_waiting() {
    let body = "dax_associate_entry file=0 index=0 pfn=0
dax_iomap_fault proc=0 addr=0 file=0 index=0 cpu=0
get_user_pages proc=0 addr=1 flags=0 cpu=0
truncate file=0 index=0 cpu=0
step task=0
";
    for era in ["e1", "e3", "e4", "e5"] {
        let m = after(era, body);
        let waiting = enabled(&m, "step task=0");
        assert!(waiting.as_ref().is_err_and(|e| e.contains("idle")), "{era}: {waiting:?}");
        assert_eq!(m.s.ledger.pages[..2].iter().map(|h| h.gup_gets).sum::<u16>(), 1, "{era}");
        // the scan unmapped the extent; the GUP reference is what is left:
        // E1-E3 on the tail page itself (above its idle 1), E4 on the head
        let (on, rc) = if matches!(era, "e4" | "e5") { (0, 1) } else { (1, 2) };
        assert_eq!(m.s.rc[on], rc, "{era}");
        let text = format!(
            "{SHAPE}memremap_pages pgmap=0\n{body}put_page pfn=1 by=gup cpu=0\nstep task=0\nstep task=0\nstep task=0\n"
        );
        let v = run_as(&text, Rules::preset(era).unwrap());
        assert!(v.ok(), "{era}: {}", show(&v));
        assert!(notes(&v).contains("dax_layout_busy_page -> pfn"), "{era}: {}", show(&v));
    }
}

/// v6.19 as merged WARNs when the last unmap frees a PMD-sized FS-DAX folio
/// (a spurious WARN: the folio is legitimately large); the fix and v6.15
/// are quiet.
#[test]
fn the_v6_19_free_path_warns_on_a_large_fs_dax_folio() {
    let text = format!(
        "{SHAPE}memremap_pages pgmap=0\ndax_associate_entry file=0 index=0 pfn=0\n\
         dax_iomap_fault proc=0 addr=0 file=0 index=0 cpu=0\nexit_mmap proc=0 cpu=0\n"
    );
    let v = run_as(&text, Rules::preset("v6.19-orig").unwrap());
    let viol = v.violation.as_ref().unwrap_or_else(|| panic!("{}", show(&v)));
    assert_eq!((viol.invariant.id(), viol.step), ("I-F11", 3), "{}", show(&v));
    let mut fixed = Rules::preset("v6.19-orig").unwrap();
    fixed.thp.free_warns_large_file_folio = false;
    for rules in [fixed, Rules::preset("e5").unwrap(), Rules::preset("e4").unwrap()] {
        let name = rules.name.clone();
        let v = run_as(&text, rules);
        assert!(v.ok(), "{name}: {}", show(&v));
    }
    // an order-0 FS-DAX page (a PTE-sized entry) never warned
    let pte = text.replace(" fsdax_pmd=1", "");
    let v = run_as(&pte, Rules::preset("v6.19-orig").unwrap());
    assert!(v.ok(), "{}", show(&v));
}

/// A block truncated out of one file is associated with another as a
/// fresh folio: the split left no stale compound metadata behind (I-F4
/// stays quiet) and the pgmap's accounting holds through the unbind.
#[test]
fn a_freed_extent_is_reused_and_the_device_unbinds_cleanly() {
    let text = format!(
        "{SHAPE}memremap_pages pgmap=0
dax_associate_entry file=0 index=0 pfn=0
dax_iomap_fault proc=0 addr=0 file=0 index=0 cpu=0
truncate file=0 index=0 cpu=0
step task=0
step task=0
dax_associate_entry file=1 index=0 pfn=0
dax_iomap_fault proc=1 addr=0 file=1 index=0 cpu=0
munmap proc=1 addr=0 cpu=0
memunmap_pages pgmap=0 cpu=0
"
    );
    for era in ["e1", "e2", "e3", "e4", "e5", "v6.19-orig"] {
        let mut rules = Rules::preset(era).unwrap();
        rules.thp.free_warns_large_file_folio = false;
        let v = run_as(&text, rules);
        assert!(v.ok(), "{era}: {}", show(&v));
    }
}

/// `dax_folio_put` splits only a compound folio: an order-0 entry (a PTE-sized
/// one, or a PMD entry of E1-E3's order-0 pages) is dropped without it.
#[test]
fn only_a_compound_folio_is_split_when_its_entry_goes() {
    let body = "dax_associate_entry file=0 index=0 pfn=0\ntruncate file=0 index=0 cpu=0\nstep task=0\nstep task=0\n";
    let split = |text: &str, era: &str| notes(&run_as(text, Rules::preset(era).unwrap())).contains("dax_folio_put");
    let pmd = format!("{SHAPE}memremap_pages pgmap=0\n{body}");
    assert!(split(&pmd, "e4"), "v6.15: the compound folio is split");
    assert!(!split(&pmd, "e3"), "E1-E3: order-0 pages under the PMD entry");
    let pte = pmd.replace(" fsdax_pmd=1", "");
    assert!(!split(&pte, "e4"), "a PTE-sized entry's page is order-0");
}

/// A block in one file's entry is not given to another: every page of the
/// extent is checked, whatever its position on the device.
#[test]
fn a_block_of_a_file_is_not_associated_again() {
    for shape in [SHAPE.to_string(), SHAPE.replace(" fsdax_pmd=1", "").replace("order=1", "order=0")] {
        for pfn in [0, 2] {
            let m = machine_after_under(
                &format!("{shape}memremap_pages pgmap=0\ndax_associate_entry file=0 index=0 pfn={pfn}\n"),
                Rules::preset("e4").unwrap(),
            );
            let again = enabled(&m, &format!("dax_associate_entry file=1 index=0 pfn={pfn}"));
            assert!(again.as_ref().is_err_and(|e| e.contains("belongs to a file")), "{shape} pfn {pfn}: {again:?}");
        }
    }
}

/// `__gup_device_huge` served every devmap PMD, FS-DAX's too: before
/// 6401c4eb57f9 (v5.15) a failed grab there leaked the pgmap reference, and
/// the unbind hangs (I-L4), as it does through a device-dax PMD.
#[test]
fn the_gup_fast_pgmap_leak_is_reached_through_an_fs_dax_pmd_too() {
    let text = "config types=fsdax pgmaps=1 pages=2 cpus=1 procs=1 addrs=2 files=1 file_pages=1 tasks=1 order=1 faults=1 fsdax_pmd=1
memremap_pages pgmap=0
dax_associate_entry file=0 index=0 pfn=0
dax_iomap_fault proc=0 addr=0 file=0 index=0 cpu=0
fail_next site=try_grab nth=1
get_user_pages proc=0 addr=1 flags=GUP_FAST cpu=0
";
    let v = run_as(text, Rules::preset("e1").unwrap());
    let viol = v.violation.as_ref().unwrap_or_else(|| panic!("{}", show(&v)));
    assert_eq!(viol.invariant.id(), "I-L4", "{}", show(&v));
    assert!(notes(&v).contains("__gup_device_huge: try_grab_page failed"), "{}", show(&v));
    let v = run_as(text, Rules::preset("e2").unwrap());
    assert!(v.ok(), "{}", show(&v));
}
