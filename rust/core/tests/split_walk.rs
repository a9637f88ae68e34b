//! The THP split's `unmap_folio` as an rmap walk (mm/huge_memory.c,
//! `split_huge_page_to_list_to_order`): the anon_vma is pinned with
//! `folio_get_anon_vma` (-EBUSY for an unmapped folio), then only the VMAs
//! linked to it have their PMDs split, and a PMD the walk missed makes the
//! refcount freeze fail.
#![cfg(not(loom))]

use zdfuzz_core::program::text::parse_program;
use zdfuzz_core::{Config, Machine, Rules, Verdict};

const SHAPE: &str = "config types=private pgmaps=1 pages=2 cpus=1 procs=2 addrs=2 tasks=2 ram=2 order=1";
/// the RAM THP's head: RAM follows the device pages
const THP: usize = 2;

fn machine(body: &str) -> (Machine, Vec<zdfuzz_core::Op>) {
    let text = format!("{SHAPE}\nmemremap_pages pgmap=0\ndo_huge_pmd_anonymous_page proc=0 addr=0 cpu=0\n{body}");
    let p = parse_program(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let mut m = Machine::new(Config::with_shape(Rules::preset("e4").unwrap(), p.shape.clone())).unwrap();
    m.set_tracing(true);
    (m, p.ops)
}

fn steps(m: &mut Machine, ops: &[zdfuzz_core::Op]) -> Verdict {
    m.reset();
    for (i, op) in ops.iter().enumerate() {
        m.step(op).unwrap_or_else(|e| panic!("op {i} ({op:?}): {e}"));
    }
    m.verdict()
}

fn notes(v: &Verdict) -> String {
    v.trace.iter().flat_map(|t| t.notes.iter().cloned()).collect::<Vec<_>>().join("\n")
}

#[test]
fn a_split_after_fork_splits_the_pmd_in_both_processes() {
    let (mut m, ops) = machine("exit_mmap proc=1 cpu=0\nfork proc=0 child=1\nsplit_huge_page pfn=2 cpu=0\n");
    let v = steps(&mut m, &ops);
    assert!(v.ok(), "{}", notes(&v));
    assert_eq!(m.s.order[THP], 0, "the folio is split:\n{}", notes(&v));
    assert!(m.s.pmds.iter().all(|e| e.pfn() != Some(THP)), "no PMD maps it any more");
    // each process maps both pages by PTE now
    assert_eq!(m.s.mc[THP], 2);
    assert_eq!(m.s.mc[THP + 1], 2);
}

#[test]
fn an_unmapped_anonymous_folio_is_not_split() {
    // pinned, then unmapped: folio_get_anon_vma returns NULL for a folio
    // nothing maps, so split_huge_page is -EBUSY before it looks at the
    // references (can_split_folio would refuse the pin too: the note says
    // which check the kernel makes first)
    let (mut m, ops) = machine(
        "pin_user_pages proc=0 addr=0 flags=0 cpu=0\nmunmap proc=0 addr=0 cpu=0\nmunmap proc=0 addr=1 cpu=0\nsplit_huge_page pfn=2 cpu=0\n",
    );
    let v = steps(&mut m, &ops);
    assert!(v.ok(), "{}", notes(&v));
    assert_eq!(m.s.order[THP], 1, "the folio stays large:\n{}", notes(&v));
    assert!(notes(&v).contains("folio_get_anon_vma: NULL"), "{}", notes(&v));
}

#[test]
fn a_pmd_the_walk_misses_keeps_the_folio_whole() {
    // both processes map the folio after the fork, but its page->mapping is
    // set by hand to the child's own anon_vma, which process 0 is not linked
    // to (a wrong anon_vma: I-F2 reports where one is set): the walk visits
    // process 1 only, and process 0's PMD keeps its reference
    let (mut m, ops) = machine("exit_mmap proc=1 cpu=0\nfork proc=0 child=1\n");
    steps(&mut m, &ops);
    m.s.mapping[THP] = zdfuzz_core::page::anon_mapping(1);
    let split = parse_program(&format!("{SHAPE}\nsplit_huge_page pfn=2 cpu=0\n")).unwrap();
    m.step(&split.ops[0]).unwrap();
    let v = m.verdict();
    assert_eq!(m.s.order[THP], 1, "the folio stays large:\n{}", notes(&v));
    assert!(notes(&v).contains("-EAGAIN (folio_ref_freeze)"), "{}", notes(&v));
    // process 1's PMD was split, process 0's was not
    assert!(m.s.pmds.iter().filter(|e| e.pfn() == Some(THP)).count() == 1);
}
