//! Processes: their page tables, fork, munmap and exit.
//!
//! Mirrors `zap_pte_range` / `zap_huge_pmd` (a refcounted entry drops its
//! rmap and its page reference; an E1–E3 devmap PTE and a migration entry
//! drop nothing; unmapping part of a huge page splits its PMD first),
//! `exit_mmap`, and `copy_page_range` for fork: `copy_nonpresent_pte`
//! copies a device-private entry with `get_page` + `page_dup_rmap` (+1
//! reference, +1 mapcount) and a migration entry as it is (no reference),
//! both made read-only in a COW mapping (confirmed in docs/kernel-checks.md
//! item 6); `copy_present_pte` shares an anonymous page read-only in parent
//! and child, except a page that may be DMA-pinned, which the child gets a
//! copy of at once (`page_needs_cow_for_dma`); `copy_huge_pmd` shares a huge
//! page the same way (a pinned one is split and copied by PTEs); P2P mappings
//! (VM_MIXEDMAP) are copied with a reference and a mapcount; shared DAX and
//! device-dax mappings are not copied — the child faults them in again.

use crate::fault::M_FLUSH;
use crate::machine::{ok, Machine};
use crate::migrate::MF_COMPOUND;
use crate::oracle::Obs;
use crate::page::PG_LRU;
use crate::pagetable::{Level, MigKind, Pte};
use crate::rules::DeviceType;
use crate::sched::TaskKind;

impl Machine {
    /// zap one address: its PTE, or (a whole-block unmap) the PMD covering it.
    pub(crate) fn zap_pte(&mut self, proc: usize, addr: usize, cpu: usize) {
        let (_, level) = self.entry(proc, addr);
        let (at, n) = if level == Level::Pmd { (self.block_start(addr), self.layout.nr_huge()) } else { (addr, 1) };
        for a in at..at + n {
            self.check_vpage(proc, a, "when it is unmapped");
            // the user buffer a pin was taken through is gone: its DMA now
            // writes to no virtual page
            let v = self.layout.pte_slot(proc, a) as u16 + 1;
            if let Some(p) = self.entry(proc, a).0.pfn() {
                if self.s.ledger.pin_vpage[p] == v {
                    self.s.ledger.pin_vpage[p] = 0;
                }
            }
        }
        self.clear_entry(proc, at, level, cpu, "zap_pte_range: put_page");
    }

    /// `munmap` of one page: a PMD-mapped huge page is split first. A DAX
    /// PMD is not: `dev_dax_may_split` refuses a split below the device's
    /// alignment (-EINVAL), and the split of an FS-DAX PMD (a file VMA)
    /// zaps it, so an unmap there zaps the PMD of the whole block.
    pub(crate) fn munmap(&mut self, proc: usize, addr: usize, cpu: usize) {
        let (e, level) = self.entry(proc, addr);
        if level == Level::Pmd && !self.maps_dax_block(e) {
            self.split_huge_pmd(proc, addr);
        }
        self.zap_pte(proc, addr, cpu);
    }

    /// `madvise(MADV_DONTNEED)` of one anonymous page: `zap_page_range`
    /// under the mmap *read* lock, so it runs while a migration or a fault
    /// of the process (which hold that lock too) is between steps. The zap is
    /// munmap's (a huge page is split first). A non-present entry (a
    /// migration or device-private entry) is cleared without a TLB flush of
    /// its own: nothing of it can be cached. So if a migration's collect
    /// replaced a present PTE there and has not flushed yet
    /// (`migrate.collect_flush_after_unlock`, before 60bae7370896), the call
    /// returns while a CPU may still reach the old page through its stale TLB
    /// entry (I-W2).
    pub(crate) fn madvise_dontneed(&mut self, proc: usize, addr: usize, cpu: usize) {
        self.munmap(proc, addr, cpu);
        if let Some((task, pfn)) = self.stale_translation(proc, addr) {
            self.observe(Obs::StaleTlbAfterUnmap { proc, addr, pfn, task });
        }
    }

    /// A migration task whose collect replaced the present PTE of (proc,
    /// addr) and whose `flush_tlb_range` has not run yet: (task, old pfn).
    pub(crate) fn stale_translation(&self, proc: usize, addr: usize) -> Option<(usize, usize)> {
        (0..self.s.tasks.len()).find_map(|slot| {
            let t = self.s.tasks[slot]?;
            let flushing = t.pc == M_FLUSH && matches!(t.kind, TaskKind::Migrate { .. });
            if !flushing || self.s.mig[slot].proc as usize != proc {
                return None;
            }
            self.collected_present(slot, addr).map(|p| (slot, p))
        })
    }

    /// The page whose present PTE at `addr` (in the migration's process)
    /// the collect of task `slot` replaced with a migration entry, if it did.
    pub(crate) fn collected_present(&self, slot: usize, addr: usize) -> Option<usize> {
        let ctx = self.s.mig[slot];
        let i = (0..ctx.npages as usize).find(|&i| ctx.addr as usize + i == addr)?;
        // a PMD collected whole is entry 0 for the whole block; right after
        // collect an entry has a source exactly when collect took its page
        let (e, off) = match self.mig_entry(slot, 0) {
            e0 if e0.flags & MF_COMPOUND != 0 => (e0, i),
            _ => (self.mig_entry(slot, i), 0),
        };
        let src = e.src()? + off;
        // only a present PTE can be cached in a TLB
        self.layout.is_cpu_anon(src).then_some(src)
    }

    pub(crate) fn exit_mmap(&mut self, proc: usize, cpu: usize) {
        for addr in 0..self.layout.addrs {
            if self.violation.is_some() {
                return;
            }
            if self.entry(proc, addr).0 != Pte::None {
                self.zap_pte(proc, addr, cpu);
            }
        }
        self.s.alive[proc] = false;
        // unlink_anon_vmas: the VMA leaves every anon_vma it was linked to
        self.s.avc[proc] = 0;
    }

    /// Pinned anonymous pages the child would need copies of.
    pub(crate) fn fork_copies_needed(&self, parent: usize) -> usize {
        (0..self.layout.addrs)
            .filter(|&a| match self.entry(parent, a).0 {
                Pte::Present { pfn, .. } => {
                    self.layout.is_cpu_anon(pfn as usize)
                        && self.maybe_pinned(pfn as usize)
                        && self.rules.gup.fork_copies_pinned
                }
                _ => false,
            })
            .count()
    }

    /// `folio_maybe_dma_pinned` (for the copy decision of fork).
    fn maybe_pinned(&self, p: usize) -> bool {
        self.s.ledger.pages[self.head_of(p)..self.head_of(p) + self.folio_nr(self.head_of(p))]
            .iter()
            .any(|h| h.gup_pins > 0)
    }

    pub(crate) fn fork(&mut self, parent: usize, child: usize) {
        self.s.alive[child] = true;
        // anon_vma_fork: the child's VMA is linked to every anon_vma of the
        // parent's (anon_vma_clone), so a walk from a page the parent mapped
        // finds the child's copies, and gets an anon_vma of its own for the
        // pages it maps from now on
        self.s.avc[child] = self.s.avc[parent] | 1 << child;
        // huge PMDs: share (write-protected) unless pinned, then split
        for b in 0..self.layout.blocks {
            let a = b << self.layout.order;
            let ps = self.layout.pmd_slot(parent, a);
            let pmd = self.s.pmds[ps];
            let Some(h) = pmd.pfn() else { continue };
            if self.layout.is_dax_pmd(h) {
                // a shared DAX mapping is not copied (vma_needs_copy): the
                // child faults it in again
                continue;
            }
            if matches!(pmd, Pte::Present { .. }) && self.maybe_pinned(h) && self.rules.gup.fork_copies_pinned {
                self.split_huge_pmd(parent, a);
                continue;
            }
            let ro = make_readonly(pmd);
            self.s.pmds[ps] = ro;
            self.install_entry(child, a, Level::Pmd, ro, 1, "copy_huge_pmd: folio_get");
            for k in 0..self.layout.nr_huge() {
                let (pv, cv) = (self.layout.pte_slot(parent, a + k), self.layout.pte_slot(child, a + k));
                self.s.ledger.vcontent[cv] = self.s.ledger.vcontent[pv];
            }
        }
        for addr in 0..self.layout.addrs {
            let ps = self.layout.pte_slot(parent, addr);
            let cs = self.layout.pte_slot(child, addr);
            let pte = self.s.ptes[ps];
            let Some(p) = pte.pfn() else { continue };
            self.s.ledger.vcontent[cs] = self.s.ledger.vcontent[ps];
            match pte {
                Pte::DevicePrivate { .. } | Pte::Migration { .. } => {
                    let ro = make_readonly(pte);
                    self.s.ptes[ps] = ro;
                    self.install_entry(child, addr, Level::Pte, ro, 1, "copy_nonpresent_pte: get_page");
                }
                Pte::Present { .. } if self.layout.is_cpu_anon(p) => {
                    if self.maybe_pinned(p) && self.rules.gup.fork_copies_pinned {
                        // copy_present_page: the child gets its own copy now
                        let Some(n) = self.ram_alloc(0) else { continue };
                        self.s.content[n] = self.s.content[p];
                        self.s.ledger.pages[n].dirty_pte = self.s.ledger.pages[p].dirty_pte;
                        self.s.rc[n] = 0;
                        self.folio_add_new_anon_rmap(n, child);
                        // the new PTE is made dirty (pte_mkdirty): the copy exists
                        // only in memory, so reclaim or migration must not treat it
                        // as clean
                        let pte = Pte::Present { pfn: n as u16, write: true, refcounted: true, dirty: true };
                        self.install_entry(child, addr, Level::Pte, pte, 0, "copy_present_page");
                        self.s.flags[n] |= PG_LRU;
                    } else {
                        let ro = make_readonly(pte);
                        self.s.ptes[ps] = ro;
                        self.install_entry(child, addr, Level::Pte, ro, 1, "copy_present_pte: folio_get");
                    }
                }
                Pte::Present { .. } if self.layout.type_of(p) == Some(DeviceType::P2pdma) => {
                    self.install_entry(child, addr, Level::Pte, pte, 1, "copy_page_range: get_page");
                }
                _ => {}
            }
        }
    }

    /// Zap every user mapping of pfn `p` (unmap_mapping_pages): a PTE
    /// that maps it, or the whole PMD of a device-dax block it is part of.
    pub(crate) fn zap_pfn_mappings(&mut self, p: usize, cpu: usize) {
        for proc in 0..self.layout.procs {
            for addr in 0..self.layout.addrs {
                if self.entry(proc, addr).0.pfn() == Some(p) {
                    self.zap_pte(proc, addr, cpu);
                }
            }
        }
    }

    /// Zap every user mapping of any page of pgmap `g` (PTEs and PMDs).
    pub(crate) fn zap_pgmap_mappings(&mut self, g: usize, cpu: usize) {
        let pfns = self.layout.pfns_of(g);
        for proc in 0..self.layout.procs {
            for addr in 0..self.layout.addrs {
                if self.entry(proc, addr).0.pfn().is_some_and(|p| pfns.contains(&p)) {
                    self.zap_pte(proc, addr, cpu);
                }
            }
        }
    }
}

/// The entry as fork leaves it in a COW mapping: no write permission.
fn make_readonly(e: Pte) -> Pte {
    match e {
        Pte::Present { pfn, refcounted, dirty, .. } => Pte::Present { pfn, write: false, refcounted, dirty },
        Pte::DevicePrivate { pfn, .. } => Pte::DevicePrivate { pfn, write: false },
        Pte::Migration { pfn, kind: MigKind::Write } => Pte::Migration { pfn, kind: MigKind::Read },
        other => other,
    }
}

// ---------------------------------------------------------------------------
// Legality: when the actors may call these kernel functions
// ---------------------------------------------------------------------------

use crate::program::op::Op;

impl Machine {
    /// Is `Fork` allowed now (the actor's contract)?
    pub(crate) fn fork_enabled(&self, op: &Op) -> Result<(), &'static str> {
        ok(self.s.alive[op.a(0)], "no such process")?;
        ok(!self.s.alive[op.a(1)], "the child slot is taken")?;
        ok(!self.mm_busy(op.a(0)), "a fault or a migration holds the parent's mmap_lock")?;
        ok(!self.s.ptl.iter().any(|&o| o != 0), "a task holds a page-table lock")?;
        ok(self.fork_copies_needed(op.a(0)) <= self.ram_free_pages(), "no memory for the copies of pinned pages")
    }

    /// Is `ExitMmap` allowed now (the actor's contract)?
    pub(crate) fn exit_mmap_enabled(&self, op: &Op) -> Result<(), &'static str> {
        ok(self.s.alive[op.a(0)], "no such process")?;
        ok(!self.mm_busy(op.a(0)), "a thread of the process is in a fault or a migration holds its mmap_lock")?;
        ok(!self.s.ptl.iter().any(|&o| o != 0), "a task holds a page-table lock")
    }

    /// Is `MadviseDontneed` allowed now (the actor's contract)? Not on a
    /// mapping of file or device memory (DAX, device-dax, P2P): the model
    /// offers MADV_DONTNEED for anonymous memory, where it races migration.
    pub(crate) fn madvise_dontneed_enabled(&self, op: &Op) -> Result<(), &'static str> {
        let (proc, addr) = (op.a(0), op.a(1));
        ok(self.s.alive[proc], "no such process")?;
        // the read side of the mmap_lock: a migration or fault of the
        // process does not exclude it, only the page-table lock does
        ok(self.ptl_owner(proc, addr).is_none(), "a task holds the page-table lock")?;
        let anon = match self.entry(proc, addr).0 {
            Pte::None => return Err("nothing is mapped there"),
            Pte::Present { pfn, .. } => self.layout.is_cpu_anon(pfn as usize),
            Pte::DevicePrivate { .. } | Pte::Migration { .. } => true,
        };
        ok(anon, "not anonymous memory (MADV_DONTNEED is modelled on anonymous mappings)")
    }

    /// Is `Munmap` allowed now (the actor's contract)?
    pub(crate) fn munmap_enabled(&self, op: &Op) -> Result<(), &'static str> {
        self.mm_ok(op.a(0), op.a(1))?;
        ok(!self.slot_is_empty(op.a(0), op.a(1)), "nothing is mapped there")
    }
}
