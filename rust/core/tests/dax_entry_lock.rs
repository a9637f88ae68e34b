//! DAX entry locks held across steps (`dax_writeback_one` in fs/dax.c) and
//! the busy-page scan that meets one: before 6be3e21d25ca ("fs/dax: don't
//! skip locked entries when scanning entries", v6.15) the scan's
//! `get_unlocked_entry` looked for the next present entry, so the locked
//! entry's DMA-busy page was never tested and the filesystem freed its
//! block (I-X2); since then the scan waits for the lock and tests the page.
#![cfg(not(loom))]

#[path = "common/programs.rs"]
mod programs;

use programs::{machine_after_under as machine_after, notes, run_as, show};
use zdfuzz_core::program::text::parse_program;
use zdfuzz_core::Rules;

/// An FS-DAX page mapped by a process and held by a GUP reference (a
/// DMA in flight), its entry under writeback (task 0) when a truncate of it
/// starts (task 1) and scans.
const LOCKED_BUSY: &str = "
config types=fsdax pgmaps=1 pages=2 cpus=1 procs=1 addrs=2 files=1 file_pages=2 tasks=2 ram=0
memremap_pages pgmap=0
dax_associate_entry file=0 index=0 pfn=0
dax_iomap_fault proc=0 addr=0 file=0 index=0 cpu=0
get_user_pages proc=0 addr=0 flags=0 cpu=0
dax_writeback file=0 index=0 cpu=0
truncate file=0 index=0 cpu=0
step task=1
";

fn preset(name: &str) -> Rules {
    Rules::preset(name).unwrap()
}

#[test]
fn writeback_holds_the_entry_lock_until_its_step() {
    let m = machine_after(LOCKED_BUSY, preset("e4"));
    let op = |t: &str| parse_program(&format!("{LOCKED_BUSY}{t}\n")).unwrap().ops.pop().unwrap();
    // faults and a second writeback wait for the lock; the truncate waits
    // in its scan (e4) for the lock
    assert!(m.enabled(&op("dax_writeback file=0 index=0 cpu=0")).unwrap_err().contains("locked"));
    assert!(m.enabled(&op("dax_iomap_fault proc=0 addr=1 file=0 index=0 cpu=0")).is_err());
    assert!(m.enabled(&op("step task=1")).unwrap_err().contains("wait_entry_unlocked_exclusive"));
    // the other entry of the file is not locked
    let other = LOCKED_BUSY.replace("tasks=2", "tasks=3").replace(
        "dax_writeback file=0 index=0 cpu=0",
        "dax_associate_entry file=0 index=1 pfn=1\ndax_writeback file=0 index=0 cpu=0",
    );
    let m2 = machine_after(&other, preset("e4"));
    assert!(m2.enabled(&op("dax_writeback file=0 index=1 cpu=0")).is_ok());
    // once the writeback's step ran, the scan goes on, finds the page busy
    // and waits for it to go idle
    let after = machine_after(&format!("{LOCKED_BUSY}step task=0\nstep task=1\n"), preset("e4"));
    let blocked = after.enabled(&op("step task=1")).unwrap_err();
    assert!(blocked.contains("wait_page_idle"), "{blocked}");
}

#[test]
fn the_scan_skips_a_locked_entry_before_6be3e21d25ca_i_x2() {
    let v = run_as(&format!("{LOCKED_BUSY}step task=0\nstep task=1\n"), preset("v6.15-skip-locked-entry"));
    let bad = v.violation.as_ref().unwrap_or_else(|| panic!("no I-X2: {}", show(&v)));
    assert_eq!(bad.invariant.id(), "I-X2", "{}", show(&v));
    assert!(notes(&v).contains("entry 0 locked -> get_unlocked_entry skips it"), "{}", show(&v));
    // e3 (v6.1) has the same code
    let v = run_as(&format!("{LOCKED_BUSY}step task=0\nstep task=1\n"), preset("e3"));
    assert_eq!(v.violation.as_ref().map(|v| v.invariant.id()), Some("I-X2"), "{}", show(&v));
}

#[test]
fn before_the_fix_the_block_is_still_freed_only_after_the_unlock() {
    // dax_delete_mapping_entry waits for the lock the scan skipped
    let m = machine_after(LOCKED_BUSY, preset("v6.15-skip-locked-entry"));
    let op = parse_program(&format!("{LOCKED_BUSY}step task=1\n")).unwrap().ops.pop().unwrap();
    assert!(m.enabled(&op).unwrap_err().contains("dax_delete_mapping_entry"));
}

#[test]
fn with_the_fix_the_busy_page_is_waited_for() {
    let v = run_as(&format!("{LOCKED_BUSY}step task=0\nstep task=1\n"), preset("e4"));
    assert!(v.ok(), "{}", show(&v));
    assert!(notes(&v).contains("dax_layout_busy_page -> pfn 0 busy"), "{}", show(&v));
    assert!(notes(&v).contains("dax_writeback_one: dax_unlock_entry(file 0, index 0)"), "{}", show(&v));
}

#[test]
fn an_unlocked_entry_is_tested_in_every_era() {
    // the same program without the writeback: the scan sees the busy page
    let text = LOCKED_BUSY.replace("dax_writeback file=0 index=0 cpu=0\n", "").replace("task=1", "task=0");
    for era in ["e3", "v6.15-skip-locked-entry", "e4"] {
        let v = run_as(&text, preset(era));
        assert!(v.ok(), "{era}: {}", show(&v));
        assert!(notes(&v).contains("pfn 0 busy"), "{era}: {}", show(&v));
    }
}

/// A truncate that waited for a busy page scans again once the page is
/// idle: if a writeback locked the entry meanwhile, the rescan meets the
/// lock (and waits for it, with the fix) instead of freeing the block.
#[test]
fn the_rescan_after_an_idle_wait_meets_a_new_lock() {
    let text = "
config types=fsdax pgmaps=1 pages=2 cpus=1 procs=1 addrs=2 files=1 file_pages=2 tasks=2 ram=0
memremap_pages pgmap=0
dax_associate_entry file=0 index=0 pfn=0
dax_iomap_fault proc=0 addr=0 file=0 index=0 cpu=0
get_user_pages proc=0 addr=0 flags=0 cpu=0
truncate file=0 index=0 cpu=0
step task=0
dax_writeback file=0 index=0 cpu=0
put_page pfn=0 by=gup cpu=0
step task=0
step task=0
";
    let m = machine_after(text, preset("e4"));
    assert!(m.s.dax[0] > 0, "the block was freed under the writeback's lock");
    let op = parse_program(&format!("{text}step task=0\n")).unwrap().ops.pop().unwrap();
    assert!(m.enabled(&op).unwrap_err().contains("wait_entry_unlocked_exclusive"));
}
