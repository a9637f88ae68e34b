//! Device-dax aligned to a PMD (`devdax_pmd=1`): `__dev_dax_pmd_fault`
//! maps a whole aligned block with one PMD, from v5.17 the pages are
//! compound folios of that order (`pgmap->vmemmap_shift`, 14606001efb4),
//! and GUP-fast reaches them through `__gup_device_huge`, which before
//! 6401c4eb57f9 (v5.15) forgot its `put_dev_pagemap` when `try_grab_page`
//! failed, so the device's unbind waited forever.
#![cfg(not(loom))]

#[path = "common/programs.rs"]
mod programs;

use programs::{machine_after_under, notes, run_as, show};
use zdfuzz_core::rules::DeviceType;
use zdfuzz_core::{Machine, Rules};

const SHAPE: &str = "config types=generic pgmaps=1 pages=4 cpus=1 procs=1 addrs=2 tasks=1 order=1 devdax_pmd=1\n";

fn after(preset: &str, body: &str) -> Machine {
    machine_after_under(&format!("{SHAPE}memremap_pages pgmap=0\n{body}"), Rules::preset(preset).unwrap())
}

#[test]
fn from_v5_17_the_pages_are_compound_folios_with_one_init_reference_each() {
    // e1 (v5.10): order-0 pages, one init reference per page
    let m = after("e1", "");
    assert_eq!((0..4).map(|p| m.s.head[p] as usize).collect::<Vec<_>>(), [0, 1, 2, 3]);
    assert_eq!(m.s.pgmaps[0].pref.count(), 1 + 4);
    for era in ["e2", "e3", "e4", "e5"] {
        let m = after(era, "");
        assert_eq!((0..4).map(|p| m.s.head[p] as usize).collect::<Vec<_>>(), [0, 0, 2, 2], "{era}");
        assert_eq!((m.s.order[0], m.s.order[2]), (1, 1), "{era}");
        // the refcount lives on the head: memmap_init_compound leaves tails at 0
        assert_eq!((m.s.rc[1], m.s.rc[3]), (0, 0), "{era}");
        assert_eq!(m.s.rc[0], m.s.rc[2], "{era}");
        // percpu_ref_get_many(ref, pfn_len): pfn_len is shifted by vmemmap_shift
        let init = if Rules::preset(era).unwrap().of(DeviceType::Generic).init_pgmap_refs { 2 } else { 0 };
        assert_eq!(m.s.pgmaps[0].pref.count(), 1 + init, "{era}: one init reference per folio");
    }
}

#[test]
fn the_fault_maps_the_aligned_block_by_one_pmd_refcounted_from_v6_15() {
    for era in ["e1", "e3", "e4", "e5"] {
        let before = after(era, "").s.rc[0];
        let m = after(era, "dev_dax_huge_fault proc=0 addr=1 pfn=2 cpu=0\n");
        assert!(m.s.ptes.iter().all(|e| e.pfn().is_none()), "{era}: no PTE");
        assert_eq!(m.s.pmds[0].pfn(), Some(2), "{era}: the block's PMD maps the folio at pfn 2");
        let refcounted = matches!(era, "e4" | "e5");
        // E1-E3 vmf_insert_pfn_pmd: a devmap PMD without a reference; E4
        // vmf_insert_folio_pmd: folio_get + the entire mapcount
        assert_eq!(m.s.rc[2] - before, refcounted as i32, "{era}");
        assert_eq!(m.s.emc[2], refcounted as i32, "{era}");
    }
    // the device's alignment decides the fault size: an unaligned pfn is
    // not something the driver maps
    let m = after("e3", "");
    let op = zdfuzz_core::program::text::parse_action("dev_dax_huge_fault proc=0 addr=0 pfn=1 cpu=0").unwrap();
    assert!(m.enabled(&op).unwrap_err().contains("aligned"));
}

#[test]
fn a_pin_through_the_pmd_is_a_folio_pin_and_every_era_unbinds_cleanly_after_it() {
    let body = "dev_dax_huge_fault proc=0 addr=0 pfn=0 cpu=0
pin_user_pages proc=0 addr=1 flags=0 cpu=0
get_user_pages proc=0 addr=0 flags=0 cpu=0
unpin_user_page pfn=1 cpu=0
put_page pfn=0 by=gup cpu=0
munmap proc=0 addr=1 cpu=0
memunmap_pages pgmap=0 cpu=0
";
    for era in ["e1", "e2", "e3", "e4", "e5"] {
        let m = after(era, &body[..body.find("unpin").unwrap()]);
        if era == "e1" {
            // order-0 pages under the PMD: GUP_PIN_COUNTING_BIAS on pfn 1
            assert_eq!(m.s.rc[1], 1 + 1024, "{era}");
        } else {
            // a large folio: one reference and _pincount + 1 on the head
            assert_eq!((m.s.pincount[0], m.s.rc[1]), (1, 0), "{era}");
        }
        let v = run_as(&format!("{SHAPE}memremap_pages pgmap=0\n{body}"), Rules::preset(era).unwrap());
        assert!(v.ok(), "{era}: {}", show(&v));
        // munmap of one address of the block unmapped the whole PMD
        // (dev_dax_may_split refuses a partial unmap)
        assert!(!notes(&v).contains("split_huge_pmd"), "{era}");
    }
}

#[test]
fn a_device_dax_pmd_is_never_split_or_walked() {
    let m = after("e3", "dev_dax_huge_fault proc=0 addr=0 pfn=0 cpu=0\n");
    for action in ["split_huge_pmd proc=0 addr=1 cpu=0", "mbind proc=0 addr=0 cpu=0"] {
        let op = zdfuzz_core::program::text::parse_action(action).unwrap();
        assert!(m.enabled(&op).is_err(), "{action}");
    }
}

/// The reproducer of corpus/regressions/e1: GUP-fast meets the devmap
/// PMD, `try_grab_page` fails, `__gup_device_huge` returns without
/// `put_dev_pagemap`, the slow walk retries and succeeds, and the unbind
/// then waits forever for the leaked reference.
const LEAK: &str = "config types=generic pgmaps=1 pages=2 cpus=1 procs=1 addrs=2 tasks=1 order=1 faults=1 devdax_pmd=1
fail_next site=try_grab nth=1
memremap_pages pgmap=0
dev_dax_huge_fault proc=0 addr=0 pfn=0 cpu=0
get_user_pages proc=0 addr=1 flags=GUP_FAST cpu=0
put_page pfn=1 by=gup cpu=0
memunmap_pages pgmap=0 cpu=0
";

#[test]
fn gup_fast_on_a_devmap_pmd_leaked_the_pgmap_reference_until_v5_15() {
    let v = run_as(LEAK, Rules::preset("e1").unwrap());
    let viol = v.violation.as_ref().unwrap_or_else(|| panic!("{}", show(&v)));
    assert_eq!(viol.invariant.id(), "I-L4", "{}", show(&v));
    // the leak is the kernel's, not an inconsistency of the preset: I-P1
    // accounts for it
    assert!(v.conformance.is_none(), "{}", show(&v));
    let n = notes(&v);
    assert!(n.contains("__gup_device_huge: try_grab_page failed, returns without put_dev_pagemap"), "{n}");
    assert!(n.contains("the slow walk retries"), "{n}");
    // with 6401c4eb57f9 (e2 on), or with the fix turned on in e1, clean
    let mut fixed = Rules::preset("e1").unwrap();
    fixed.gup.device_huge_grab_failure_leaks_pgmap = false;
    for rules in [fixed, Rules::preset("e2").unwrap(), Rules::preset("e3").unwrap()] {
        let name = rules.name.clone();
        let v = run_as(LEAK, rules);
        assert!(v.ok(), "{name}: {}", show(&v));
    }
}

#[test]
fn only_the_lockless_walk_of_a_pmd_leaks() {
    let e1 = || Rules::preset("e1").unwrap();
    // the slow walk (follow_devmap_pmd's ctx.pgmap) puts it back; without
    // GUP_FAST the failed GUP is -ENOMEM and nothing is held
    let slow = LEAK.replace("flags=GUP_FAST", "flags=0").replace("put_page pfn=1 by=gup cpu=0\n", "");
    let v = run_as(&slow, e1());
    assert!(v.ok(), "{}", show(&v));
    assert!(notes(&v).contains("-ENOMEM"), "{}", show(&v));
    // GUP-fast at the PTE level (gup_pte_range's pte_unmap label) puts it
    // back too: a 4 KiB-aligned device
    let pte = LEAK.replace(" devdax_pmd=1", "").replace("order=1", "order=0").replace("addr=1", "addr=0");
    let pte = pte.replace("put_page pfn=1", "put_page pfn=0");
    let v = run_as(&pte, e1());
    assert!(v.ok(), "{}", show(&v));
    assert!(notes(&v).contains("the slow walk retries"), "{}", show(&v));
}

#[test]
fn gup_fast_is_an_operand_only_where_failures_can_be_injected() {
    let text = format!("{SHAPE}memremap_pages pgmap=0\nget_user_pages proc=0 addr=0 flags=GUP_FAST cpu=0\n");
    let in_domain = |text: &str| {
        let p = zdfuzz_core::program::text::parse_program(text).unwrap();
        p.ops[1].in_domain(&zdfuzz_core::config::Layout::new(&p.shape)).map_err(|e| e.0)
    };
    let err = in_domain(&text).unwrap_err();
    assert!(err.contains("flags"), "{err}");
    assert_eq!(in_domain(&text.replace("devdax_pmd=1", "devdax_pmd=1 faults=1")), Ok(()));
}

/// `pgmap->ref` is what the preset accounts for at every step of the
/// unbind, with one init reference per folio (`pfn_len` shifted by
/// `vmemmap_shift`) taken at probe and dropped by the put_many.
#[test]
fn the_pgmap_accounting_holds_through_the_unbind_with_compound_folios() {
    for era in ["e1", "e2", "e3", "e4", "e5"] {
        let mut m = after(era, "dev_dax_huge_fault proc=0 addr=0 pfn=2 cpu=0\nexit_mmap proc=0 cpu=0\n");
        let unbind = zdfuzz_core::program::text::parse_action("memunmap_pages pgmap=0 cpu=0").unwrap();
        m.step(&unbind).unwrap();
        let step = zdfuzz_core::program::text::parse_action("step task=0").unwrap();
        let grace = zdfuzz_core::program::text::parse_action("rcu_grace_period").unwrap();
        let mut checked = 0;
        for _ in 0..8 {
            if m.s.pgmaps[0].done {
                break;
            }
            assert_eq!(m.expected_pgmap_refs(0), m.s.pgmaps[0].pref.count(), "{era} after {checked} step(s)");
            checked += 1;
            if m.enabled(&step).is_ok() {
                m.step(&step).unwrap();
            } else {
                m.step(&grace).unwrap();
            }
        }
        assert!(m.s.pgmaps[0].done, "{era}: the unbind's wait completes");
        assert!(checked >= 3, "{era}");
    }
}

/// The slow walk a `_fast` caller falls back to keeps the caller's other
/// flags (a P2P page needs FOLL_PCI_P2PDMA there too) and is not fast.
#[test]
fn the_fallback_keeps_the_callers_flags() {
    let text = "config types=p2pdma pgmaps=1 pages=1 cpus=1 procs=1 addrs=1 tasks=1 faults=1
memremap_pages pgmap=0
p2pmem_alloc_mmap pgmap=0 proc=0 addr=0 pages=1 cpu=0
fail_next site=try_grab nth=1
get_user_pages proc=0 addr=0 flags=FOLL_PCI_P2PDMA|GUP_FAST cpu=0
";
    let m = machine_after_under(text, Rules::preset("e3").unwrap());
    assert_eq!(m.s.ledger.pages[0].gup_gets, 1, "the slow walk granted the page");
    let v = run_as(text, Rules::preset("e3").unwrap());
    let n = notes(&v);
    assert!(n.contains("the slow walk retries") && n.contains("-> pfn 0"), "{n}");
    assert_eq!(n.matches("the slow walk retries").count(), 1, "{n}");
}

/// `munmap` of one address of a THP of RAM splits the PMD and unmaps that
/// page only; of a device-dax block it unmaps the block (no split below the
/// device's alignment).
#[test]
fn munmap_splits_a_thp_but_unmaps_a_device_dax_block_whole() {
    let thp = "config types=private pgmaps=1 pages=2 cpus=1 procs=1 addrs=2 tasks=1 ram=2 order=1
memremap_pages pgmap=0
do_huge_pmd_anonymous_page proc=0 addr=0 cpu=0
munmap proc=0 addr=1 cpu=0
";
    let m = machine_after_under(thp, Rules::preset("e3").unwrap());
    assert!(m.s.pmds[0].pfn().is_none(), "the PMD was split");
    assert!(m.s.ptes[0].pfn().is_some() && m.s.ptes[1].pfn().is_none(), "only address 1 is unmapped");
    let m = after("e3", "dev_dax_huge_fault proc=0 addr=0 pfn=0 cpu=0\nmunmap proc=0 addr=1 cpu=0\n");
    assert!(m.s.pmds[0].pfn().is_none() && m.s.ptes.iter().all(|e| e.pfn().is_none()), "the block is unmapped");
}

/// A rules file may give compound device-dax pages E1's per-page init
/// references (one `put_page` per folio at unbind, each dropping the
/// folio's pgmap reference at zero): the accounting counts one per folio.
#[test]
fn per_folio_init_references_with_the_e1_unbind() {
    let rules = Rules::from_toml_str(
        "name = \"e2-devdax-every-page\"\nbase = \"e2\"\n[types.generic]\nmemunmap_put = \"every_page\"\n\
         put_pgmap_on_zero = true\nzero_warns = false\nreset_on_zero = false\n",
        "every-page.toml",
    )
    .unwrap();
    let text = format!(
        "{SHAPE}memremap_pages pgmap=0\ndev_dax_huge_fault proc=0 addr=0 pfn=2 cpu=0\nmemunmap_pages pgmap=0 cpu=0\n"
    );
    let v = run_as(&text, rules);
    assert!(v.ok(), "{}", show(&v));
    assert!(notes(&v).contains("complete(&pgmap->done)"), "{}", show(&v));
}

/// `vmf_insert_folio_pmd` refuses a folio that is not PMD-sized
/// (`WARN_ON_ONCE(folio_order(folio) != PMD_ORDER)`, VM_FAULT_SIGBUS): a
/// rules file that keeps the v6.15 refcounted fault but gives the device
/// order-0 pages gets a fault that maps nothing; the same pages behind a
/// PTE-aligned device are mapped one by one.
#[test]
fn a_refcounted_pmd_fault_on_order_0_pages_is_sigbus() {
    let mut rules = Rules::preset("e4").unwrap();
    rules.dax.devdax_compound = false;
    let v = run_as(
        &format!("{SHAPE}memremap_pages pgmap=0\ndev_dax_huge_fault proc=0 addr=0 pfn=2 cpu=0\n"),
        rules.clone(),
    );
    assert!(v.ok(), "{}", show(&v));
    assert!(notes(&v).contains("folio not PMD-sized -> VM_FAULT_SIGBUS"), "{}", show(&v));
    let m = machine_after_under(
        &format!("{SHAPE}memremap_pages pgmap=0\ndev_dax_huge_fault proc=0 addr=0 pfn=2 cpu=0\n"),
        rules.clone(),
    );
    assert!(m.s.pmds[0].pfn().is_none() && m.s.ptes.iter().all(|e| e.pfn().is_none()), "nothing mapped");
    // with the v5.17 compound folios the same fault maps the block
    let m = after("e4", "dev_dax_huge_fault proc=0 addr=0 pfn=2 cpu=0\n");
    assert_eq!(m.s.pmds[0].pfn(), Some(2));
    // a PTE-aligned device under the same rules maps an order-0 page by PTE
    let pte = SHAPE.replace(" devdax_pmd=1", "").replace("order=1", "order=0");
    let m = machine_after_under(
        &format!("{pte}memremap_pages pgmap=0\ndev_dax_huge_fault proc=0 addr=0 pfn=2 cpu=0\n"),
        rules,
    );
    assert_eq!(m.s.ptes[0].pfn(), Some(2), "one PTE, refcounted");
    assert_eq!(m.s.mc[2], 1);
}
