//! Failure injection: the error paths of kernel calls that can fail, per
//! era. The P2P mmap case is a real bug: v6.2's `p2pmem_alloc_mmap`
//! (7e9c7ef83d78) returned from a failed `vm_insert_page` without putting
//! the chunk's pgmap reference, so the device's unbind waited forever;
//! fixed by 6220694c52a5 ("PCI/P2PDMA: Release per-CPU pgmap ref when
//! vm_insert_page() fails").
#![cfg(not(loom))]

#[path = "common/programs.rs"]
mod programs;

use programs::{run_as, show};
use zdfuzz_core::program::text::{parse_program, program_to_text};
use zdfuzz_core::{Config, Machine, Rules};

/// `e4` with the 2025/2026 fixes of the mmap error path.
fn fixed(base: &str) -> Rules {
    Rules::from_toml_str(
        &format!(
            "name = \"{base}-mmap-fix\"\nbase = \"{base}\"\n[p2p]\nmmap_error_puts_ref = true\nmmap_error_resets_rc = true\n"
        ),
        "fixed.toml",
    )
    .unwrap()
}

/// The second page's vm_insert_page fails: one page was inserted, then the
/// driver unbinds.
const P2P_MMAP_FAILS: &str = "
config types=p2pdma pgmaps=1 pages=2 cpus=1 procs=1 addrs=2 tasks=1 faults=1
memremap_pages pgmap=0
fail_next site=vm_insert nth=2
p2pmem_alloc_mmap pgmap=0 proc=0 addr=0 pages=2 cpu=0
memunmap_pages pgmap=0 cpu=0
";

#[test]
fn p2pmem_mmap_error_path_leaks_the_chunk_reference_before_the_fix() {
    for era in ["e3", "e4", "e5"] {
        // only the refcount reset fixed (e3's pages are 1-based: no reset needed)
        let mut rules = Rules::preset(era).unwrap();
        rules.p2p.mmap_error_resets_rc = true;
        let v = run_as(P2P_MMAP_FAILS, rules);
        let viol = v.violation.as_ref().unwrap_or_else(|| panic!("{era}: the unbind must hang\n{}", show(&v)));
        assert_eq!(viol.invariant.id(), "I-L4", "{era}: {}", show(&v));
        assert!(
            v.trace.iter().any(|t| t.notes.iter().any(|n| n.contains("chunk reference is lost"))),
            "{era}: {}",
            show(&v)
        );
    }
}

#[test]
fn p2pmem_mmap_error_path_is_clean_with_the_fix() {
    for era in ["e3", "e4", "e5"] {
        for nth in 1..=2 {
            let text = P2P_MMAP_FAILS.replace("nth=2", &format!("nth={nth}"));
            let v = run_as(&text, fixed(era));
            assert!(v.ok(), "{era} nth={nth}: {}", show(&v));
            // the page that was inserted first was unmapped again by
            // mmap_region's error path and went back to the pool
            assert!(v.trace.iter().any(|t| t.notes.iter().any(|n| n.contains("vm_insert_page -> -ENOMEM"))));
        }
    }
}

#[test]
fn zero_based_p2p_page_left_at_refcount_one_by_the_error_path_is_a_leaked_reference() {
    // e4's pages are 0-based (mmap_sets_rc): the failing page was set to 1
    // before vm_insert_page; without the reset it goes back to the pool at
    // 1, a reference nobody holds (the kernel's next allocation of it warns)
    let text = "
config types=p2pdma pgmaps=1 pages=1 cpus=1 procs=1 addrs=1 tasks=1 faults=1
memremap_pages pgmap=0
fail_next site=vm_insert nth=1
p2pmem_alloc_mmap pgmap=0 proc=0 addr=0 pages=1 cpu=0
";
    let clean = run_as(text, fixed("e4"));
    assert!(clean.ok(), "{}", show(&clean));
    for era in ["e4", "e5"] {
        let mut only_ref = Rules::preset(era).unwrap();
        only_ref.p2p.mmap_error_puts_ref = true;
        let v = run_as(text, only_ref);
        let viol = v.violation.as_ref().unwrap_or_else(|| panic!("{era}: {}", show(&v)));
        assert_eq!(viol.invariant.id(), "I-F10", "{era}: {}", show(&v));
    }
    // e3's pages start at 1 and the error path leaves them there: clean
    let mut e3 = Rules::preset("e3").unwrap();
    e3.p2p.mmap_error_puts_ref = true;
    assert!(run_as(text, e3).ok());
}

#[test]
fn gup_try_grab_failure_puts_the_pgmap_reference_back_in_every_era() {
    let text = "
config types=generic pgmaps=1 pages=1 cpus=1 procs=1 addrs=1 tasks=1 faults=1
memremap_pages pgmap=0
dev_dax_huge_fault proc=0 addr=0 pfn=0 cpu=0
fail_next site=try_grab nth=1
get_user_pages proc=0 addr=0 flags=0 cpu=0
munmap proc=0 addr=0 cpu=0
memunmap_pages pgmap=0 cpu=0
";
    for era in ["e1", "e2", "e3", "e4", "e5", "p20"] {
        let v = run_as(text, Rules::preset(era).unwrap());
        assert!(v.ok(), "{era}: {}", show(&v));
        assert!(v.trace.iter().any(|t| t.notes.iter().any(|n| n.contains("injected failure: try_grab"))), "{era}");
    }
    // the failed GUP holds nothing: a put of its reference is not allowed
    let p = parse_program(
        &format!("{text}put_page pfn=0 by=gup cpu=0\n")
            .replace("munmap proc=0 addr=0 cpu=0\nmemunmap_pages pgmap=0 cpu=0\n", ""),
    )
    .unwrap();
    let mut m = Machine::new(Config::with_shape(Rules::preset("e3").unwrap(), p.shape.clone())).unwrap();
    let err = m.run(&p.ops).unwrap_err();
    assert_eq!(err.0, 4, "{err:?}");
}

#[test]
fn a_failed_device_dax_fault_maps_nothing_and_takes_nothing() {
    let text = "
config types=generic pgmaps=1 pages=1 cpus=1 procs=1 addrs=1 tasks=1 faults=1
memremap_pages pgmap=0
fail_next site=vm_insert nth=1
dev_dax_huge_fault proc=0 addr=0 pfn=0 cpu=0
dev_dax_huge_fault proc=0 addr=0 pfn=0 cpu=0
get_user_pages proc=0 addr=0 flags=0 cpu=0
put_page pfn=0 by=gup cpu=0
memunmap_pages pgmap=0 cpu=0
";
    for era in ["e1", "e3", "e4", "e5"] {
        let v = run_as(text, Rules::preset(era).unwrap());
        assert!(v.ok(), "{era}: {}", show(&v));
    }
    // after the failed fault the address is still empty: GUP there is refused
    let p =
        parse_program(&text.replace("dev_dax_huge_fault proc=0 addr=0 pfn=0 cpu=0\nget_user_pages", "get_user_pages"))
            .unwrap();
    let mut m = Machine::new(Config::with_shape(Rules::preset("e3").unwrap(), p.shape.clone())).unwrap();
    assert_eq!(m.run(&p.ops).unwrap_err().0, 3);
}

#[test]
fn fail_next_needs_a_shape_with_faults_and_one_armed_failure_per_site() {
    let off = P2P_MMAP_FAILS.replace(" faults=1", "");
    let p = parse_program(&off).unwrap();
    assert_eq!(p.shape.faults, 0);
    let mut m = Machine::new(Config::with_shape(Rules::preset("e4").unwrap(), p.shape.clone())).unwrap();
    let (i, why) = m.run(&p.ops).unwrap_err();
    assert_eq!(i, 1);
    assert!(why.to_string().contains("faults=1"), "{why}");
    let twice = P2P_MMAP_FAILS.replace(
        "fail_next site=vm_insert nth=2\n",
        "fail_next site=vm_insert nth=2\nfail_next site=vm_insert nth=1\n",
    );
    let p = parse_program(&twice).unwrap();
    let mut m = Machine::new(Config::with_shape(Rules::preset("e4").unwrap(), p.shape.clone())).unwrap();
    assert_eq!(m.run(&p.ops).unwrap_err().0, 2);
}

#[test]
fn the_faults_field_is_written_only_when_on() {
    let on = parse_program(P2P_MMAP_FAILS).unwrap();
    let text = program_to_text(&on);
    assert!(text.contains(" faults=1\n"), "{text}");
    assert!(text.contains("fail_next site=vm_insert nth=2"), "{text}");
    assert_eq!(parse_program(&text).unwrap().ops, on.ops);
    let off = parse_program("config types=generic\nmemremap_pages pgmap=0\n").unwrap();
    assert!(!program_to_text(&off).contains("faults"));
    let e = parse_program("config types=generic faults=2\n").unwrap_err();
    assert!(e.message.contains("faults must be between 0 and 1"), "{e}");
    assert_eq!(e.line, 1);
}

/// The migration's destination allocation fails for a written page: the
/// page is mapped back (the failed path of fd35ca3d12cc), so before v6.0 the
/// dirty bit collect dropped is lost (I-M5) — no unexpected reference needed.
const DIRTY_ALLOC_FAILS: &str = "
config types=private pgmaps=1 pages=2 cpus=1 procs=1 addrs=1 tasks=1 ram=1 order=0 faults=1
memremap_pages pgmap=0
do_anonymous_page proc=0 addr=0 cpu=0
cpu_write proc=0 addr=0 cpu=0
fail_next site=alloc nth=1
migrate_vma_setup proc=0 addr=0 pgmap=0 select=SYSTEM cpu=0
";

#[test]
fn a_failed_destination_allocation_restores_the_page_and_e2_loses_its_dirty_bit() {
    let v = run_as(DIRTY_ALLOC_FAILS, Rules::preset("e2").unwrap());
    assert_eq!(v.violation.as_ref().map(|x| x.invariant.id()), Some("I-M5"), "{}", show(&v));
    assert!(v.trace.iter().any(|t| t.notes.iter().any(|n| n.contains("injected failure: alloc"))));
    for era in ["e3", "e4", "e5"] {
        let v = run_as(DIRTY_ALLOC_FAILS, Rules::preset(era).unwrap());
        assert!(v.ok(), "{era}: {}", show(&v));
        // nothing migrated: the page is still system RAM, mapped
        assert!(v.trace.iter().any(|t| t.notes.iter().any(|n| n.contains("driver: no destination page"))));
    }
}

#[test]
fn a_failed_gen_pool_allocation_takes_nothing() {
    let text = "
config types=p2pdma pgmaps=1 pages=2 cpus=1 procs=1 addrs=2 tasks=1 faults=1
memremap_pages pgmap=0
fail_next site=gen_pool nth=1
pci_alloc_p2pmem pgmap=0 pages=1 cpu=0
fail_next site=gen_pool nth=1
p2pmem_alloc_mmap pgmap=0 proc=0 addr=0 pages=1 cpu=0
pci_alloc_p2pmem pgmap=0 pages=1 cpu=0
pci_free_p2pmem pfn=0 cpu=0
memunmap_pages pgmap=0 cpu=0
";
    for era in ["e3", "e4", "e5"] {
        let v = run_as(text, Rules::preset(era).unwrap());
        assert!(v.ok(), "{era}: {}", show(&v));
    }
    // after the failed mmap nothing is mapped: GUP there is refused
    let p = parse_program(&text.replace(
        "pci_alloc_p2pmem pgmap=0 pages=1 cpu=0\npci_free",
        "get_user_pages proc=0 addr=0 flags=FOLL_PCI_P2PDMA cpu=0\npci_free",
    ))
    .unwrap();
    let mut m = Machine::new(Config::with_shape(Rules::preset("e4").unwrap(), p.shape.clone())).unwrap();
    assert_eq!(m.run(&p.ops).unwrap_err().0, 5);
}
