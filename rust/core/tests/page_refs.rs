//! Page references and the pgmap reference they carry (mm/memremap.c,
//! include/linux/mm.h): before v4.11 every page reference was also a pgmap
//! reference (`get_zone_device_page` / `put_zone_device_page`), except the
//! ones GUP-fast took directly; a device-private folio reaching 0 gives
//! back the pgmap references its allocation took: one (`tryget_live`, v6.1)
//! or one per page (`percpu_ref_tryget_many` / `percpu_ref_put_many`, E5).
#![cfg(not(loom))]

use zdfuzz_core::program::text::parse_program;
use zdfuzz_core::{Config, Machine, Rules};

fn machine(text: &str, rules: Rules) -> Machine {
    let p = parse_program(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    Machine::new(Config::with_shape(rules, p.shape)).unwrap()
}

/// Step through `text`, returning pgmap 0's reference count after each action.
fn pgmap_refs(text: &str, rules: Rules) -> Vec<i64> {
    let p = parse_program(text).unwrap();
    let mut m = machine(text, rules);
    let mut refs = Vec::new();
    for op in &p.ops {
        m.step(op).unwrap();
        assert!(m.violation().is_none(), "{:?}", m.violation());
        refs.push(m.s.pgmaps[0].pref.count());
    }
    // the preset's own accounting agrees at every step (I-P1), drain included
    let v = m.verdict();
    assert!(v.ok(), "{:?}", v.reported());
    refs
}

const V410_KERNEL_GET_PAGE: &str = r#"
name = "v410-kernel-get-page"
base = "v4.10"
description = "v4.10 with kernel users taking P2P page references"
[p2p]
kernel_get_page = true
"#;

#[test]
fn before_v4_11_a_page_reference_is_a_pgmap_reference() {
    let rules = Rules::from_toml_str(V410_KERNEL_GET_PAGE, "v410.toml").unwrap();
    let text = "
config types=p2pdma pgmaps=1 pages=1 cpus=1 procs=1 addrs=1 tasks=1
memremap_pages pgmap=0
pci_alloc_p2pmem pgmap=0 pages=1 cpu=0
get_page pfn=0
get_page pfn=0
put_page pfn=0 by=kernel cpu=0
put_page pfn=0 by=kernel cpu=0
";
    // get_zone_device_page / put_zone_device_page move pgmap->ref with the
    // page's count, and the preset's accounting (I-P1) follows
    let r = pgmap_refs(text, rules);
    assert_eq!(&r[1..], &[r[1], r[1] + 1, r[1] + 2, r[1] + 1, r[1]]);
}

#[test]
fn before_v4_11_gup_fast_takes_no_pgmap_reference() {
    let text = "
config types=generic pgmaps=1 pages=1 cpus=1 procs=1 addrs=1 tasks=1
memremap_pages pgmap=0
dev_dax_huge_fault proc=0 addr=0 pfn=0 cpu=0
get_user_pages proc=0 addr=0 flags=0 cpu=0
";
    let r = pgmap_refs(text, Rules::preset("v4.10").unwrap());
    assert_eq!(r[2], r[1], "GUP-fast's page_ref_add skipped get_zone_device_page (71389703839e)");
}

#[test]
fn a_device_private_folio_at_zero_puts_the_pgmap_references_it_took() {
    // E5: percpu_ref_tryget_many(1 << order) at allocation, and
    // percpu_ref_put_many(nr) when the folio's refcount reaches 0
    let text = "
config types=private pgmaps=1 pages=2 cpus=1 procs=1 addrs=1 tasks=1 ram=2 order=1
memremap_pages pgmap=0
alloc_device_folio pgmap=0 cpu=0
free_device_page pfn=0 cpu=0
";
    let r = pgmap_refs(text, Rules::preset("e5").unwrap());
    assert_eq!(r[1] - r[0], 2, "{r:?}");
    assert_eq!(r[2], r[0], "the free gives back what the allocation took: {r:?}");
}
