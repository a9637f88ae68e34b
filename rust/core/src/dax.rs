//! FS-DAX filesystems and device-dax.
//!
//! Mirrors fs/dax.c and the ext4/xfs callers: `dax_associate_entry` (a block
//! of pmem becomes file data: `page->mapping`/`index`), `dax_iomap_fault`
//! (E1–E3: a devmap PTE with no page reference; E4: `folio_ref_inc` +
//! `vmf_insert_page_mkwrite` + `folio_put` = one reference and one mapcount per
//! mapping), and truncate as the filesystem does it: break layouts —
//! `dax_layout_busy_page_range` (unmap the range, then scan for a busy page:
//! E1–E3 refcount > 1, E4 refcount − mapcount > 0), wait until that page is
//! idle (`ext4_break_layouts` / `dax_wait_page_idle`), retry — and only then
//! `dax_disassociate_entry` and free the block. Faults on the file are
//! excluded meanwhile (the filesystem's invalidate lock).
//!
//! Device-dax (drivers/dax/device.c): `dev_dax_huge_fault` maps a pfn of the
//! device (E1–E3 `vmf_insert_mixed`, no reference; E4 refcounted insert).

use crate::machine::{ok, Machine};
use crate::oracle::Obs;
use crate::page::{MAPPING_FILE, MAPPING_NONE};
use crate::pagetable::{Level, Pte};
use crate::program::op::SITE_VM_INSERT;
use crate::rules::DeviceType;
use crate::sched::{TaskKind, TR_ENTRY_WAIT, TR_FREE, TR_SCAN, TR_WAIT};

impl Machine {
    /// The pfn of DAX entry (file, index), if associated.
    #[inline]
    pub(crate) fn dax_entry(&self, file: usize, index: usize) -> Option<usize> {
        let v = self.s.dax[self.layout.entry_slot(file, index)];
        (v > 0).then(|| v as usize - 1)
    }

    /// `dax_associate_entry`: the block at `p` becomes the data of (file,
    /// index): `mapping`/`index` on every page of the entry
    /// (`for_each_mapped_pfn` before v6.15). A PMD entry's pages become one
    /// compound folio from v6.15 (`dax_folio_init` → `prep_compound_page`:
    /// the head carries the refcount, the tails point at it).
    pub(crate) fn dax_associate_entry(&mut self, file: usize, index: usize, p: usize) {
        self.s.dax[self.layout.entry_slot(file, index)] = p as u16 + 1;
        let nr = self.layout.dax_entry_nr(p);
        for q in p..p + nr {
            self.touch_page(q);
            self.s.mapping[q] = MAPPING_FILE + file as u8;
            self.s.ledger.pages[q].fs = true;
        }
        if nr > 1 && self.rules.dax.fsdax_compound {
            let order = self.layout.order;
            self.trace_note(|| format!("dax_folio_init: pfn {p}..{} becomes a folio of order {order}", p + nr - 1));
            self.prep_compound(p, order);
        }
    }

    /// Map a page into a process the way the type's fault path does: one
    /// PTE, or on a PMD-aligned device-dax device (`__dev_dax_pmd_fault`)
    /// one PMD for the block of `addr`, mapping the `1 << order` pages from
    /// `p` (the program names the first pfn; the kernel derives it from the
    /// file offset, which decides nothing about references). E1–E3 map
    /// devmap entries without a reference (`vmf_insert_mixed`,
    /// `vmf_insert_pfn_pmd`); E4 on take one reference and a mapcount — the
    /// entire mapcount on the head for a PMD (`vmf_insert_folio_pmd`,
    /// "mm/huge_memory: add vmf_insert_folio_pmd()", v6.15, which refuses a
    /// folio that is not PMD-sized: `WARN_ON_ONCE(folio_order(folio) !=
    /// PMD_ORDER)`, VM_FAULT_SIGBUS).
    pub(crate) fn insert_device_mapping(&mut self, proc: usize, addr: usize, p: usize, what: &str) {
        let Some(t) = self.layout.type_of(p) else { return };
        if self.inject(SITE_VM_INSERT) {
            // vmf_insert_* failed before it touched the page (no page
            // table: VM_FAULT_OOM): the fault returns an error and nothing
            // is mapped or taken, in every era
            self.trace_note(|| format!("{what}: vmf_insert_* failed -> VM_FAULT_OOM, nothing mapped"));
            return;
        }
        let (level, at, nr) = if self.layout.is_dax_pmd(p) {
            (Level::Pmd, self.block_start(addr), self.layout.nr_huge())
        } else {
            (Level::Pte, addr, 1)
        };
        let refcounted = self.rules.of(t).map_refcounted;
        if refcounted && level == Level::Pmd && self.folio_nr(self.head_of(p)) != nr {
            self.trace_note(|| format!("{what}: vmf_insert_folio_pmd: folio not PMD-sized -> VM_FAULT_SIGBUS"));
            return;
        }
        if !refcounted && self.page_torn_down(p, what) {
            return;
        }
        // a 0-based page's first mapping takes its first reference: the
        // refcount memremap_pages left (observed in the ledger) is 0
        let min = if self.s.ledger.init_rc[p] == 0 { 0 } else { 1 };
        let e = Pte::Present { pfn: p as u16, write: true, refcounted, dirty: false };
        self.install_entry(proc, at, level, e, min, what);
        for i in 0..nr {
            let v = self.layout.pte_slot(proc, at + i);
            self.s.ledger.vcontent[v] = self.s.content[p + i];
        }
    }

    pub(crate) fn dax_iomap_fault(&mut self, proc: usize, addr: usize, file: usize, index: usize) {
        if let Some(p) = self.dax_entry(file, index) {
            self.insert_device_mapping(proc, addr, p, "dax_iomap_fault");
        }
    }

    pub(crate) fn dev_dax_huge_fault(&mut self, proc: usize, addr: usize, p: usize) {
        self.insert_device_mapping(proc, addr, p, "dev_dax_huge_fault");
    }

    /// `dax_busy_page` on the entry whose first page is `p`: references
    /// beyond the idle value and the counted mappings. E1–E3 test every page
    /// of the entry (`for_each_mapped_pfn`: refcount > 1); E4 tests the
    /// entry's folio (refcount − `folio_mapcount` > 0), whose one refcount
    /// a compound PMD folio keeps on its head.
    pub(crate) fn dax_busy(&self, p: usize) -> bool {
        let tr = self.rules.of(DeviceType::Fsdax);
        (p..p + self.layout.dax_entry_nr(p)).filter(|&q| self.head_of(q) == q).any(|q| {
            let mapped = if tr.map_refcounted { self.folio_mapcount(q) } else { 0 };
            self.s.rc[q] - mapped > tr.init_rc as i32
        })
    }

    /// Does any process map a page of `file`? (`mapping_mapped`)
    fn file_mapped(&self, file: usize) -> bool {
        (0..self.layout.file_pages).filter_map(|i| self.dax_entry(file, i)).any(|p| self.s.ledger.pages[p].maps > 0)
    }

    /// Is a truncate running on `file`? (faults are excluded meanwhile)
    pub(crate) fn truncating(&self, file: usize) -> bool {
        self.s
            .tasks
            .iter()
            .flatten()
            .any(|t| matches!(t.kind, TaskKind::Truncate { file: f, .. } if f as usize == file))
    }

    /// Is DAX entry (file, index) locked? Only `dax_writeback_one` holds
    /// an entry lock across steps in the model (a fault's lock is taken and
    /// dropped inside its one action), so the lock is the writeback task.
    pub(crate) fn dax_entry_locked(&self, file: usize, index: usize) -> bool {
        self.s.tasks.iter().flatten().any(
            |t| matches!(t.kind, TaskKind::DaxWriteback { file: f, index: i } if f as usize == file && i as usize == index),
        )
    }

    /// One step of the truncate task.
    pub(crate) fn truncate_step(&mut self, file: usize, index: usize, pc: u8, cpu: usize) -> Option<u8> {
        let p = self.dax_entry(file, index)?;
        match pc {
            TR_SCAN => {
                // dax_layout_busy_page_range
                if self.rules.dax.busy_scan_needs_mapping && !self.file_mapped(file) {
                    self.trace_note(|| "dax_layout_busy_page_range: !mapping_mapped -> NULL".into());
                    return Some(TR_FREE);
                }
                self.zap_pfn_mappings(p, cpu); // unmap_mapping_pages
                if self.dax_entry_locked(file, index) {
                    if self.rules.dax.scan_waits_on_locked_entry {
                        // wait_entry_unlocked_exclusive: the iterator stays
                        return Some(TR_ENTRY_WAIT);
                    }
                    // get_unlocked_entry looks for the next present entry
                    // (xas_find_conflict): this one's page is never tested
                    self.trace_note(|| {
                        format!("dax_layout_busy_page_range: entry {index} locked -> get_unlocked_entry skips it")
                    });
                    return Some(TR_FREE);
                }
                Some(self.truncate_test_busy(p))
            }
            TR_ENTRY_WAIT => Some(self.truncate_test_busy(p)), // runnable once unlocked
            TR_WAIT => Some(TR_SCAN),                          // runnable once the page is idle; rescan
            _ => {
                self.dax_free_block(file, index, p);
                None
            }
        }
    }

    /// `dax_busy_page` on the scanned entry's page: wait for it, or go on.
    fn truncate_test_busy(&mut self, p: usize) -> u8 {
        if self.dax_busy(p) {
            self.trace_note(|| format!("dax_layout_busy_page -> pfn {p} busy"));
            TR_WAIT
        } else {
            TR_FREE
        }
    }

    /// Why the truncate of (file, index) cannot take its step `pc` now.
    pub(crate) fn truncate_blocked(&self, file: usize, index: usize, pc: u8) -> Option<&'static str> {
        let locked = || self.dax_entry_locked(file, index);
        match pc {
            TR_WAIT => self
                .dax_entry(file, index)
                .is_some_and(|p| self.dax_busy(p))
                .then_some("wait_page_idle: waits for the DAX page to become idle"),
            TR_ENTRY_WAIT if locked() => Some("wait_entry_unlocked_exclusive: waits for the DAX entry lock"),
            // truncate_inode_pages_range -> dax_delete_mapping_entry waits
            // for the entry lock (a fresh lookup of that index)
            TR_FREE if locked() => Some("dax_delete_mapping_entry: waits for the DAX entry lock"),
            _ => None,
        }
    }

    /// `dax_writeback_one`: `dax_lock_entry`, then (the task) the flush.
    pub(crate) fn dax_writeback(&mut self, file: usize, index: usize, cpu: usize) {
        self.trace_note(|| format!("dax_writeback_one: dax_lock_entry(file {file}, index {index})"));
        let _ = self.spawn(TaskKind::DaxWriteback { file: file as u8, index: index as u8 }, cpu);
    }

    /// The rest of `dax_writeback_one`: `dax_entry_mkclean` + `dax_flush`
    /// (no page reference is taken or dropped; the data is not modelled),
    /// then `dax_unlock_entry`, which wakes the entry's waiters.
    pub(crate) fn dax_writeback_done(&mut self, file: usize, index: usize) {
        self.trace_note(|| format!("dax_writeback_one: dax_unlock_entry(file {file}, index {index})"));
    }

    /// dax_disassociate_entry + the filesystem freeing the block: the oracle
    /// checks no DMA/GUP user still holds the page (I-X2).
    fn dax_free_block(&mut self, file: usize, index: usize, p: usize) {
        for q in p..p + self.layout.dax_entry_nr(p) {
            self.observe(Obs::BlockFreed { file, index, pfn: q });
        }
        self.dax_drop_entry(file, index, p);
        // from v6.15 dax_folio_put splits a compound PMD folio back into
        // order-0 pages (ClearPageHead, clear_compound_head) once its last
        // entry lets go, so the block can be associated at any size again
        let nr = self.folio_nr(p);
        if nr > 1 {
            self.trace_note(|| format!("dax_folio_put: the folio at pfn {p} is split back into order-0 pages"));
            self.restore_order0(p, nr);
        }
    }

    /// `dax_disassociate_entry`: every page of the entry forgets its file.
    fn dax_drop_entry(&mut self, file: usize, index: usize, p: usize) {
        self.s.dax[self.layout.entry_slot(file, index)] = 0;
        let nr = self.layout.dax_entry_nr(p);
        for q in p..p + nr {
            self.touch_page(q);
            self.s.mapping[q] = MAPPING_NONE;
            self.s.ledger.pages[q].fs = false;
        }
    }

    /// The filesystem on pgmap `g` shuts down before its device goes
    /// (unmount / MF_MEM_PRE_REMOVE): its entries are dropped. Blocks are not
    /// freed — the data stays on the medium — and a compound folio is not
    /// split: in the kernel the entries stay in the dead filesystem's
    /// inodes until eviction, whose `dax_break_layout_final` waits for the
    /// pages to be idle before `dax_folio_put` splits them.
    pub(crate) fn dax_drop_filesystem(&mut self, g: usize) {
        for file in self.fs_files(g) {
            for index in 0..self.layout.file_pages {
                if let Some(p) = self.dax_entry(file, index) {
                    self.dax_drop_entry(file, index, p);
                }
            }
        }
    }

    /// The files of the filesystem on pgmap `g` (empty if it is not FS-DAX).
    fn fs_files(&self, g: usize) -> std::ops::Range<usize> {
        match self.layout.fs_pgmap.iter().position(|&x| x as usize == g) {
            Some(k) => k * self.layout.files_per_fs..(k + 1) * self.layout.files_per_fs,
            None => 0..0,
        }
    }
}

// ---------------------------------------------------------------------------
// Legality: when the actors may call these kernel functions
// ---------------------------------------------------------------------------

use crate::program::op::Op;

impl Machine {
    /// Is `DevDaxFault` allowed now (the actor's contract)?
    pub(crate) fn dev_dax_fault_enabled(&self, op: &Op) -> Result<(), &'static str> {
        let (proc, addr, p) = (op.a(0), op.a(1), op.a(2));
        ok(self.layout.type_of(p) == Some(DeviceType::Generic), "not a device-dax page")?;
        ok(self.pgmap_live(self.layout.pgmap_of(p)), "the device-dax device is not bound")?;
        self.mm_ok(proc, addr)?;
        if self.layout.is_devdax_pmd(p) {
            // the device's alignment decides the fault size: a PMD-aligned
            // device maps whole aligned blocks (check_vma, dev_dax's align)
            ok(p % self.layout.nr_huge() == 0, "the pfn is not aligned to the device's alignment")?;
            ok(self.layout.in_block(addr), "the address is not in a PMD-sized block")?;
            return ok(self.block_empty(proc, addr), "the block is mapped");
        }
        ok(self.slot_is_empty(proc, addr), "the address is mapped")
    }

    /// Is `DaxAssociateEntry` allowed now (the actor's contract)?
    pub(crate) fn dax_associate_entry_enabled(&self, op: &Op) -> Result<(), &'static str> {
        let (f, i, p) = (op.a(0), op.a(1), op.a(2));
        let g = self.layout.file_pgmap(f);
        ok(self.pgmap_live(g), "the filesystem's device is not bound")?;
        ok(self.is_device_pfn(p) && self.layout.pgmap_of(p) == g, "the block is not on this filesystem's device")?;
        ok(self.dax_entry(f, i).is_none(), "the file offset already has a block")?;
        let nr = self.layout.dax_entry_nr(p);
        // a PMD entry needs a PMD-aligned extent (the filesystem's stripe
        // alignment; an unaligned one would fall back to PTEs)
        ok(p % nr == 0, "the extent is not aligned to a PMD")?;
        ok(!self.s.ledger.pages[p..p + nr].iter().any(|h| h.fs), "the block belongs to a file")?;
        ok(!self.truncating(f), "the file is being truncated")
    }

    /// Is `DaxIomapFault` allowed now (the actor's contract)?
    pub(crate) fn dax_iomap_fault_enabled(&self, op: &Op) -> Result<(), &'static str> {
        let (proc, addr, f, i) = (op.a(0), op.a(1), op.a(2), op.a(3));
        self.mm_ok(proc, addr)?;
        let p = self.dax_entry(f, i).ok_or("the file offset has no block")?;
        if self.layout.is_fsdax_pmd(p) {
            // dax_iomap_pmd_fault: the PMD-sized extent at the block of addr
            ok(self.layout.in_block(addr), "the address is not in a PMD-sized block")?;
            ok(self.block_empty(proc, addr), "the block is mapped")?;
        } else {
            ok(self.slot_is_empty(proc, addr), "the address is mapped")?;
        }
        ok(self.pgmap_live(self.layout.file_pgmap(f)), "the filesystem's device is not bound")?;
        ok(!self.truncating(f), "faults wait while the file is truncated")?;
        // grab_mapping_entry sleeps on a locked entry
        ok(!self.dax_entry_locked(f, i), "the fault waits for the locked DAX entry")
    }

    /// Is `DaxWriteback` allowed now (the actor's contract)?
    pub(crate) fn dax_writeback_enabled(&self, op: &Op) -> Result<(), &'static str> {
        let (f, i) = (op.a(0), op.a(1));
        ok(self.dax_entry(f, i).is_some(), "the file offset has no block")?;
        ok(self.pgmap_live(self.layout.file_pgmap(f)), "the filesystem's device is not bound")?;
        // a second writeback of the entry waits for the first
        ok(!self.dax_entry_locked(f, i), "the DAX entry is locked")?;
        ok(self.free_task_slot(), "no free task slot")
    }

    /// Is `Truncate` allowed now (the actor's contract)?
    pub(crate) fn truncate_enabled(&self, op: &Op) -> Result<(), &'static str> {
        ok(self.dax_entry(op.a(0), op.a(1)).is_some(), "the file offset has no block")?;
        ok(!self.truncating(op.a(0)), "the file is already being truncated")?;
        ok(self.free_task_slot(), "no free task slot")
    }
}

#[cfg(test)]
mod tests {
    use crate::program::text::parse_program;
    use crate::{Config, Machine, Rules};

    fn machine(preset: &str, text: &str) -> Machine {
        let p = parse_program(text).unwrap();
        let mut m = Machine::new(Config::with_shape(Rules::preset(preset).unwrap(), p.shape.clone())).unwrap();
        for op in &p.ops {
            m.step(op).unwrap();
        }
        m
    }

    /// `dax_busy_page`'s test on its own: a mapping is not a reason to wait
    /// (E4 subtracts the mapcount from the refcount; E1-E3's devmap mapping
    /// takes no reference), a GUP reference is. (The truncate unmaps the
    /// file before it tests, so its own runs never see a mapped page.)
    #[test]
    fn a_mapping_is_not_busy_a_gup_reference_is() {
        let text = "config types=fsdax pgmaps=1 pages=1 cpus=1 procs=1 addrs=1 files=1 file_pages=1 tasks=1
memremap_pages pgmap=0
dax_associate_entry file=0 index=0 pfn=0
dax_iomap_fault proc=0 addr=0 file=0 index=0 cpu=0
";
        for era in ["e3", "e4"] {
            let m = machine(era, text);
            assert!(!m.dax_busy(0), "{era}: mapped only");
            let m = machine(era, &format!("{text}get_user_pages proc=0 addr=0 flags=0 cpu=0\n"));
            assert!(m.dax_busy(0), "{era}: a GUP reference");
        }
    }
}
