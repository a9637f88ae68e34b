//! What GUP returns (mm/gup.c), as the trace shows it, and the pin
//! accounting of a large folio: the refusals carry the kernel's errno, and a
//! FOLL_PIN of a large folio adds one to its `_pincount` (not the bias).
#![cfg(not(loom))]

#[path = "common/programs.rs"]
mod programs;

use programs::{run_as, show};
use zdfuzz_core::fuzz::coverage::pgmap_feature;
use zdfuzz_core::program::text::parse_program;
use zdfuzz_core::{Config, Machine, Rules, Verdict};

fn gup_note(v: &Verdict, step: usize) -> String {
    v.trace.iter().find(|t| t.step == step).map(|t| t.notes.join("; ")).unwrap_or_default()
}

#[test]
fn refusals_carry_the_kernels_errno() {
    // a P2P page without FOLL_PCI_P2PDMA (v6.2+): -EREMOTEIO
    let p2p = "
config types=p2pdma pgmaps=1 pages=1 cpus=1 procs=1 addrs=1 tasks=1
memremap_pages pgmap=0
p2pmem_alloc_mmap pgmap=0 proc=0 addr=0 pages=1 cpu=0
get_user_pages proc=0 addr=0 flags=0 cpu=0
";
    let v = run_as(p2p, Rules::preset("e3").unwrap());
    assert!(gup_note(&v, 2).contains("-> -EREMOTEIO"), "{}", show(&v));
    // ... and with it: granted
    let v = run_as(&p2p.replace("flags=0", "flags=FOLL_PCI_P2PDMA"), Rules::preset("e3").unwrap());
    assert!(gup_note(&v, 2).contains("-> pfn 0"), "{}", show(&v));
    // a FOLL_LONGTERM pin of an FS-DAX page: -EOPNOTSUPP
    let fsdax = "
config types=fsdax pgmaps=1 pages=1 cpus=1 procs=1 addrs=1 files=1 file_pages=1 tasks=1
memremap_pages pgmap=0
dax_associate_entry file=0 index=0 pfn=0
dax_iomap_fault proc=0 addr=0 file=0 index=0 cpu=0
pin_user_pages proc=0 addr=0 flags=FOLL_LONGTERM cpu=0
";
    let v = run_as(fsdax, Rules::preset("e3").unwrap());
    assert!(gup_note(&v, 3).contains("-> -EOPNOTSUPP"), "{}", show(&v));
    // try_grab_folio failing (an injected failure): -ENOMEM
    let grab = "
config types=generic pgmaps=1 pages=1 cpus=1 procs=1 addrs=1 tasks=1 faults=1
memremap_pages pgmap=0
dev_dax_huge_fault proc=0 addr=0 pfn=0 cpu=0
fail_next site=try_grab nth=1
get_user_pages proc=0 addr=0 flags=0 cpu=0
";
    let v = run_as(grab, Rules::preset("e3").unwrap());
    assert!(gup_note(&v, 3).contains("-> -ENOMEM (try_grab_folio)"), "{}", show(&v));
}

#[test]
fn a_pin_of_a_large_folio_counts_in_its_pincount() {
    let text = "
config types=private pgmaps=1 pages=2 cpus=1 procs=1 addrs=2 tasks=1 ram=2 order=1
memremap_pages pgmap=0
do_huge_pmd_anonymous_page proc=0 addr=0 cpu=0
pin_user_pages proc=0 addr=0 flags=0 cpu=0
pin_user_pages proc=0 addr=1 flags=0 cpu=0
";
    let m = machine_after(text, "e4");
    let h = m.layout.ndev; // the THP is the first RAM folio
    assert_eq!(m.s.pincount[h], 2, "one per pin, on the head");
    // and each pin took one reference, not GUP_PIN_COUNTING_BIAS
    assert_eq!(m.s.rc[h], 1 + 2, "the mapping's reference and one per pin");
}

fn machine_after(text: &str, preset: &str) -> Machine {
    let p = parse_program(text).unwrap();
    let mut m = Machine::new(Config::with_shape(Rules::preset(preset).unwrap(), p.shape.clone())).unwrap();
    for op in &p.ops {
        m.step(op).unwrap();
    }
    assert!(m.violation().is_none(), "{:?}", m.violation());
    m
}

const TWO_PINS: &str = "
config types=generic pgmaps=1 pages=1 cpus=1 procs=1 addrs=2 tasks=1
memremap_pages pgmap=0
dev_dax_huge_fault proc=0 addr=0 pfn=0 cpu=0
dev_dax_huge_fault proc=0 addr=1 pfn=0 cpu=0
pin_user_pages proc=0 addr=0 flags=FOLL_LONGTERM cpu=0
pin_user_pages proc=0 addr=1 flags=0 cpu=0
";

#[test]
fn a_longterm_pin_is_counted_until_the_pins_are_gone() {
    // FOLL_LONGTERM on a device-dax page is allowed (only FS-DAX refuses it)
    let m = machine_after(TWO_PINS, "e4");
    let h = m.s.ledger.pages[0];
    assert_eq!((h.gup_pins, h.longterm_pins), (2, 1));
    // the native engine's coverage sees the longterm pin (bit 13)
    assert_ne!(pgmap_feature(&m, 0) & 1 << 13, 0);
    let m = machine_after(&format!("{TWO_PINS}unpin_user_page pfn=0 cpu=0\n"), "e4");
    assert_eq!((m.s.ledger.pages[0].gup_pins, m.s.ledger.pages[0].longterm_pins), (1, 1));
    let m = machine_after(&format!("{TWO_PINS}unpin_user_page pfn=0 cpu=0\nunpin_user_page pfn=0 cpu=0\n"), "e4");
    assert_eq!((m.s.ledger.pages[0].gup_pins, m.s.ledger.pages[0].longterm_pins), (0, 0));
    assert_eq!(pgmap_feature(&m, 0) & 1 << 13, 0);
}

#[test]
fn the_buffer_a_pin_was_taken_through_is_forgotten_with_the_last_pin() {
    // DMA through a pin writes to the virtual page the first pin came
    // through (addr 0: slot 0, stored as 1) while any pin remains
    let m = machine_after(TWO_PINS, "e4");
    assert_eq!(m.s.ledger.pin_vpage[0], 1);
    let m = machine_after(&format!("{TWO_PINS}unpin_user_page pfn=0 cpu=0\n"), "e4");
    assert_eq!(m.s.ledger.pin_vpage[0], 1, "one pin is left");
    let m = machine_after(&format!("{TWO_PINS}unpin_user_page pfn=0 cpu=0\nunpin_user_page pfn=0 cpu=0\n"), "e4");
    assert_eq!(m.s.ledger.pin_vpage[0], 0, "no pin is left");
    // a new pin through addr 1 (slot 1) then owns the DMA
    let again = format!("{TWO_PINS}unpin_user_page pfn=0 cpu=0\nunpin_user_page pfn=0 cpu=0\npin_user_pages proc=0 addr=1 flags=0 cpu=0\n");
    assert_eq!(machine_after(&again, "e4").s.ledger.pin_vpage[0], 2);
}

/// A device-private page mapped into a process, then pinned through GUP: no
/// present PTE, so GUP faults it back to system RAM (`faultin_page` →
/// `do_swap_page` → `migrate_to_ram`) and pins the RAM page when the fault
/// returns.
const GUP_ON_DEVICE_PRIVATE: &str = "
config types=private pgmaps=1 pages=1 cpus=2 procs=1 addrs=1 tasks=1 ram=1 order=0
memremap_pages pgmap=0
alloc_device_page pgmap=0 cpu=0
migrate_vma_insert_page proc=0 addr=0 pfn=0 cpu=0
pin_user_pages proc=0 addr=0 flags=0 cpu=1
";

#[test]
fn gup_faults_a_device_private_page_back_and_pins_the_ram_page() {
    for (era, steps) in [("e1", 7), ("e3", 9), ("e4", 9)] {
        let text = format!("{GUP_ON_DEVICE_PRIVATE}{}", "step task=0\n".repeat(steps));
        let v = run_as(&text, Rules::preset(era).unwrap());
        assert!(v.reported().is_none(), "{era}: {}", show(&v));
        assert!(gup_note(&v, 3).contains("GUP faults the device-private entry in: task 0"), "{era}: {}", show(&v));
        let last = v.trace.iter().rfind(|t| !t.drain).unwrap();
        assert!(last.notes.iter().any(|n| n == "GUP -> pfn 1"), "{era}: {}", show(&v));
        // the pin is on the RAM page (pfn 1): the drain's unpin releases it
        assert!(
            v.trace.iter().any(|t| t.drain && t.action.starts_with("unpin_user_page pfn=1")),
            "{era}: {}",
            show(&v)
        );
    }
}

#[test]
fn a_gup_fault_in_flight_at_the_end_is_finished_and_released_by_the_drain() {
    let v = run_as(GUP_ON_DEVICE_PRIVATE, Rules::preset("e4").unwrap());
    assert!(v.reported().is_none(), "{}", show(&v));
    assert!(v.trace.iter().any(|t| t.drain && t.notes.iter().any(|n| n == "GUP -> pfn 1")), "{}", show(&v));
    assert!(v.trace.iter().any(|t| t.drain && t.action.starts_with("unpin_user_page pfn=1")), "{}", show(&v));
}

#[test]
fn a_gup_fault_reaches_the_pre_v6_1_fault_race() {
    // E2's fault path holds no page reference across migrate_to_ram: the
    // GUP's fault reads the entry, a CPU fault on the same page migrates it
    // to RAM and the driver frees it, and the GUP's fault then calls
    // migrate_to_ram on the free page (I-D1, fixed by 16ce101db85d)
    let race = |cpu_fault_steps: usize| {
        format!(
            "{}do_swap_page proc=0 addr=0 cpu=0\nstep task=0\n{}step task=0\nstep task=0\n",
            GUP_ON_DEVICE_PRIVATE.replace("tasks=1", "tasks=2"),
            "step task=1\n".repeat(cpu_fault_steps)
        )
    };
    let v = run_as(&race(7), Rules::preset("e2").unwrap());
    assert_eq!(v.reported().map(|x| x.invariant.id()), Some("I-D1"), "{}", show(&v));
    // E3 re-checks the entry under the PTL: the GUP's fault sees the RAM
    // page the other fault mapped, and GUP pins that
    let v = run_as(&race(9), Rules::preset("e3").unwrap());
    assert!(v.reported().is_none(), "{}", show(&v));
    assert!(v.trace.iter().any(|t| t.notes.iter().any(|n| n == "pte_same fails: the entry changed")), "{}", show(&v));
    assert!(v.trace.iter().any(|t| !t.drain && t.notes.iter().any(|n| n == "GUP -> pfn 1")), "{}", show(&v));
}

#[test]
fn a_pin_of_a_read_only_device_private_entry_waits_for_the_cow_break() {
    // after fork both entries are read-only: a FOLL_GET may fault the page
    // in, a FOLL_WRITE pin needs the process's write (do_swap_page, then
    // cpu_write) first
    let text = "
config types=private pgmaps=1 pages=1 cpus=1 procs=2 addrs=1 tasks=1 ram=1 order=0
memremap_pages pgmap=0
alloc_device_page pgmap=0 cpu=0
migrate_vma_insert_page proc=0 addr=0 pfn=0 cpu=0
exit_mmap proc=1 cpu=0
fork proc=0 child=1
";
    let p = parse_program(text).unwrap();
    let mut m = Machine::new(Config::with_shape(Rules::preset("e4").unwrap(), p.shape.clone())).unwrap();
    for op in &p.ops {
        m.step(op).unwrap();
    }
    let pin = parse_program("pin_user_pages proc=0 addr=0 flags=0 cpu=0\n").unwrap().ops[0];
    let e = m.step(&pin).unwrap_err();
    assert!(format!("{e:?}").contains("a FOLL_WRITE pin of a read-only entry"), "{e:?}");
    let get = parse_program("get_user_pages proc=0 addr=0 flags=0 cpu=0\n").unwrap().ops[0];
    m.step(&get).unwrap();
}
