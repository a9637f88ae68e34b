//! Migration between system RAM and device-private memory, as tasks.
//!
//! Mirrors mm/migrate_device.c (E1: the same functions in mm/migrate.c):
//!
//! * `migrate_vma_setup` → **collect** (`migrate_vma_collect_pmd` under the
//!   page-table lock: select by `MIGRATE_VMA_SELECT_*` and `pgmap_owner`,
//!   `folio_get` — the collect reference —, `folio_trylock` unless it is the
//!   locked fault page, copy a dirty PTE's dirty bit to the folio (v6.0),
//!   replace the entry with a read, read-exclusive or write migration entry,
//!   `folio_remove_rmap` + `folio_put`; a PMD-mapped THP is migrated whole
//!   with `MIGRATE_VMA_SELECT_COMPOUND` (E5) or split first) and **unmap**
//!   (`migrate_device_unmap`: LRU-isolate system pages, `try_to_migrate` the
//!   remaining mappings, the `migrate_vma_check_page` pre-filter
//!   `refcount - extra > mapcount`, and the restore pass for what fails);
//! * the driver's **allocation and copy** (`zone_device_page_init` /
//!   `zone_device_folio_init` for device destinations, `alloc_page` for
//!   system RAM; a COMPOUND source whose destination cannot be large is split
//!   first: `migrate_vma_split_unmapped_folio`);
//! * `migrate_vma_pages` (holes: `migrate_vma_insert_page`; otherwise the
//!   exact gate `folio_migrate_mapping`: refcount must equal
//!   `1 + extra_cnt` — E1 `migrate_page_move_mapping` adds 1 for a 1-based
//!   device-private page —, then `folio_migrate_flags`);
//! * `migrate_vma_finalize` (release failed destinations, `remove_migration_ptes`
//!   from the source to whichever page won, unlock and put the source —
//!   `folio_putback_lru` for system pages before 41cddf83d8b0 —, unlock and
//!   put the destination).
//!
//! `migrate_device_range` (driver eviction before unbind, v6.1) collects by
//! pfn instead of by address: `folio_get_nontail_page` skips free pages,
//! then trylock, then the same unmap/pages/finalize. The device-private CPU
//! fault (`fault.rs`) runs the same steps from its `migrate_to_ram`.
//!
//! The oracle checks, from the ledger: a page with references migration
//! cannot account for is never migrated (I-M2), no migration entry survives
//! finalize (I-M3), the fault page is left to the fault path (I-M4), dirty_pte
//! data arrives dirty (I-M5), no folio about to be freed goes on an LRU and
//! no ZONE_DEVICE folio ever does (I-M6), every page collect locked is
//! unlocked exactly once (I-M7), and every re-established mapping shows the
//! latest data (I-W1).

use crate::machine::{ok, Machine};
use crate::oracle::{lock_task, Obs, Warn, LOCK_NONE};
use crate::page::{is_anon_mapping, PG_DIRTY, PG_FREE_LIST, PG_LOCKED, PG_LRU};
use crate::pagetable::{Level, MigKind, Pte};
use crate::program::op::{SELECT_COMPOUND, SELECT_DEVICE_COHERENT, SELECT_DEVICE_PRIVATE, SELECT_SYSTEM, SITE_ALLOC};
use crate::rules::{AllocPgmapRef, DeviceCheck};

/// `MIGRATE_PFN_MIGRATE`
pub const MF_MIGRATE: u8 = 1 << 0;
/// `MIGRATE_PFN_WRITE`
pub const MF_WRITE: u8 = 1 << 1;
/// `MIGRATE_PFN_COMPOUND`
pub const MF_COMPOUND: u8 = 1 << 2;
/// (model) the entry was collected, i.e. has a source page to restore
pub const MF_COLLECTED: u8 = 1 << 3;
/// (model) the destination was allocated large
pub const MF_DST_COMPOUND: u8 = 1 << 4;

/// Who started a migration.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Origin {
    /// the driver's `migrate_vma_setup` on a process range
    #[default]
    Vma,
    /// the driver's `migrate_device_range` on its own pfns
    DeviceRange,
    /// `do_swap_page` → `migrate_to_ram` on a device-private entry
    Fault,
}

/// One migration's `struct migrate_vma` (and the fault's state).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct MigCtx {
    pub origin: Origin,
    pub proc: u8,
    /// the (first) address: a single page, or the start of a PMD block
    pub addr: u16,
    /// entries in use
    pub npages: u16,
    /// the device-private pgmap whose driver runs the migration (`pgmap_owner`)
    pub pgmap: u8,
    /// MIGRATE_VMA_SELECT_* bits
    pub select: u8,
    /// `fault_page` + 1 (0: none)
    pub fault_pfn: u16,
    /// the fault path's `orig_pte`
    pub orig: Pte,
    /// ... read from a PMD (`vmf->orig_pmd`): the re-check under the lock is
    /// `pmd_same`, which a split of the PMD into a page table breaks even when
    /// the new PTE for the address holds the same entry
    pub orig_pmd: bool,
    /// the fault path holds a page reference / the page lock
    pub fault_ref: bool,
    pub fault_locked: bool,
    /// refaults so far, wrapping (the drain's livelock detector only looks for a change)
    pub retries: u8,
    /// a destination allocation failed (the fault returns VM_FAULT_OOM)
    pub oom: bool,
    /// a GUP call took this fault (`faultin_page` → `handle_mm_fault`) and
    /// retries its grab when the fault returns: 0 = a CPU access, else
    /// [`GUP_FAULT`] | [`GUP_FAULT_PIN`] | the GUP flags << 2
    pub gup: u8,
}

/// `MigCtx::gup` bits: a GUP fault, and a FOLL_PIN one.
pub const GUP_FAULT: u8 = 1;
pub const GUP_FAULT_PIN: u8 = 2;

/// One `src[i]` / `dst[i]` pair: pfns + 1 (0 = none) and MIGRATE_PFN_* flags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct MigEntry {
    pub src: u16,
    pub dst: u16,
    pub flags: u8,
}

impl MigEntry {
    #[inline]
    pub fn src(&self) -> Option<usize> {
        (self.src > 0).then(|| self.src as usize - 1)
    }
    #[inline]
    pub fn dst(&self) -> Option<usize> {
        (self.dst > 0).then(|| self.dst as usize - 1)
    }
    #[inline]
    pub fn migrate(&self) -> bool {
        self.flags & MF_MIGRATE != 0
    }
}

impl Machine {
    #[inline]
    pub(crate) fn mig_entry(&self, slot: usize, i: usize) -> MigEntry {
        self.s.mig_entries[slot * self.layout.mig_cap() + i]
    }

    #[inline]
    fn set_mig_entry(&mut self, slot: usize, i: usize, e: MigEntry) {
        let k = slot * self.layout.mig_cap() + i;
        self.s.mig_entries[k] = e;
    }

    /// The migration's `fault_page`, if any: the page `migrate_to_ram` was
    /// called for. E1/E2 had no such argument (it came with 16ce101db85d),
    /// so their migrations count no fault-path reference.
    #[inline]
    fn fault_page(&self, slot: usize) -> Option<usize> {
        if self.rules.fault.path == crate::rules::FaultPath::NoRef {
            return None;
        }
        self.s.mig[slot].fault_pfn.checked_sub(1).map(|p| p as usize)
    }

    /// Is `p` this migration's fault page, locked by the fault path (v6.15)?
    #[inline]
    fn prelocked_fault_page(&self, slot: usize, p: usize) -> bool {
        self.fault_page(slot) == Some(p) && self.rules.migrate.fault_page_prelocked
    }

    /// The process whose address space a migration (or fault) works on.
    pub(crate) fn mig_proc(&self, slot: usize) -> Option<usize> {
        match self.s.mig[slot].origin {
            Origin::DeviceRange => None,
            _ => Some(self.s.mig[slot].proc as usize),
        }
    }

    /// `folio_trylock` by task `slot`.
    fn trylock(&mut self, p: usize, slot: usize) -> bool {
        if self.s.flags[p] & PG_LOCKED != 0 {
            return false;
        }
        self.s.flags[p] |= PG_LOCKED;
        self.s.ledger.locker[p] = lock_task(slot);
        true
    }

    /// `folio_unlock` by the migration in task `slot` (I-M4: never the
    /// fault path's lock).
    fn mig_unlock(&mut self, p: usize, slot: usize) {
        let fault_path_lock = self.fault_path_locked(slot, p);
        self.observe(Obs::MigrationUnlocked { pfn: p, fault_path_lock });
        self.s.flags[p] &= !PG_LOCKED;
        self.s.ledger.locker[p] = LOCK_NONE;
    }

    /// Does the fault path that called this migration (task `slot`) hold
    /// the lock of `p`? Its `fault_page`, locked by the v6.15 trylock.
    fn fault_path_locked(&self, slot: usize, p: usize) -> bool {
        let m = &self.s.mig[slot];
        m.fault_locked && m.fault_pfn.checked_sub(1) == Some(p as u16)
    }

    // ------------------------------------------------------------------
    // collect
    // ------------------------------------------------------------------

    /// migrate_vma_setup's collect of the range of task `slot` (the PTL of
    /// the block is taken and released inside the step).
    pub(crate) fn migrate_collect(&mut self, slot: usize, cpu: usize) {
        let ctx = self.s.mig[slot];
        if ctx.origin == Origin::DeviceRange {
            self.migrate_device_range_collect(slot);
            return;
        }
        let proc = ctx.proc as usize;
        let compound = ctx.select & SELECT_COMPOUND as u8 != 0;
        let nr = if compound { self.layout.nr_huge() } else { 1 };
        let start = if compound { self.block_start(ctx.addr as usize) } else { ctx.addr as usize };
        self.s.mig[slot].npages = nr as u16;
        self.s.mig[slot].addr = start as u16;
        for i in 0..nr {
            self.set_mig_entry(slot, i, MigEntry::default());
        }
        if compound && self.layout.in_block(start) {
            if let (pmd @ (Pte::Present { .. } | Pte::DevicePrivate { .. }), Level::Pmd) = self.entry(proc, start) {
                let h = self.head_of(pmd.pfn().unwrap_or(0));
                if self.collect_selects(slot, h) {
                    self.collect_one(slot, proc, start, Level::Pmd, 0, cpu);
                }
                return;
            }
        }
        for i in 0..nr {
            let a = start + i;
            let (e, level) = self.entry(proc, a);
            if level == Level::Pmd {
                // not migrating the folio whole: split it first (E3/E4
                // migrate_vma_collect_pmd; E5 without SELECT_COMPOUND)
                let Some(p) = e.pfn() else { continue };
                let h = self.head_of(p);
                if e.is_migration() || !self.collect_selects(slot, h) {
                    continue;
                }
                self.split_huge_pmd(proc, a);
                if !self.split_for_collect(slot, h, cpu) {
                    continue;
                }
            }
            let (e, _) = self.entry(proc, a);
            match e {
                Pte::None => {
                    // a hole in an anonymous VMA: migrate_vma_collect_hole
                    self.set_mig_entry(slot, i, MigEntry { src: 0, dst: 0, flags: MF_MIGRATE });
                }
                Pte::Present { pfn, .. } | Pte::DevicePrivate { pfn, .. } => {
                    let p = pfn as usize;
                    let h = self.head_of(p);
                    if !self.collect_selects(slot, h) {
                        continue;
                    }
                    if self.folio_nr(h) > 1 {
                        // a PTE-mapped large folio: E3/E4 skip it ("FIXME
                        // support THP"); E5 splits it first
                        // (migrate_vma_split_folio)
                        if !self.rules.migrate.compound || !self.split_for_collect(slot, h, cpu) {
                            continue;
                        }
                    }
                    self.collect_one(slot, proc, a, Level::Pte, i, cpu);
                }
                Pte::Migration { .. } => {}
            }
        }
    }

    /// `migrate_vma_split_folio`: split a mapped large folio so its pages
    /// can be collected one by one. A folio other than the fault folio is
    /// referenced and locked around the split (a trylock here: collect
    /// skips a locked folio where the kernel would sleep); the fault folio
    /// is already referenced and locked by the fault path, whose reference
    /// and lock then move to the fault page's new folio. False if the folio
    /// is locked or `can_split_folio` refuses (pins, other references).
    fn split_for_collect(&mut self, slot: usize, h: usize, cpu: usize) -> bool {
        let fault = self.fault_page(slot).filter(|&f| self.head_of(f) == h && self.s.mig[slot].fault_ref);
        if let Some(f) = fault {
            if !self.split_folio(h, 1, 0, cpu) {
                return false;
            }
            if f != h {
                // folio_get + folio_lock(new_fault_folio); unlock + put(folio)
                self.page_get(f, 1, "migrate_vma_split_folio: folio_get(new fault folio)");
                if self.s.mig[slot].fault_locked {
                    self.s.flags[f] |= PG_LOCKED;
                    self.s.ledger.locker[f] = lock_task(slot);
                    self.s.flags[h] &= !PG_LOCKED;
                    self.s.ledger.locker[h] = LOCK_NONE;
                }
                self.put_page_refs(h, 1, cpu, "migrate_vma_split_folio: folio_put(folio)");
            }
            return true;
        }
        if !self.trylock(h, slot) {
            return false;
        }
        self.page_get(h, 1, "migrate_vma_split_folio: folio_get");
        let ok = self.split_folio(h, 1, 0, cpu);
        self.mig_unlock(h, slot);
        self.put_page_refs(h, 1, cpu, "migrate_vma_split_folio: folio_put");
        ok
    }

    /// Does this migration select folio `h` (by its type and owner)?
    fn collect_selects(&self, slot: usize, h: usize) -> bool {
        let ctx = self.s.mig[slot];
        let sel = ctx.select as u16;
        if self.layout.is_ram(h) {
            sel & SELECT_SYSTEM != 0 && is_anon_mapping(self.s.mapping[h])
        } else if self.layout.is_private(h) {
            sel & SELECT_DEVICE_PRIVATE != 0 && self.layout.pgmap_of(h) == ctx.pgmap as usize
        } else if self.layout.is_coherent(h) {
            // migrate_vma_collect_pmd: a coherent page only with
            // SELECT_DEVICE_COHERENT and the caller's own pgmap (owner)
            sel & SELECT_DEVICE_COHERENT != 0 && self.layout.pgmap_of(h) == ctx.pgmap as usize
        } else {
            // FS-DAX, device-dax and P2P pages are not anonymous
            false
        }
    }

    /// Collect the folio mapped at (proc, a, level) into entry `i`.
    fn collect_one(&mut self, slot: usize, proc: usize, a: usize, level: Level, i: usize, cpu: usize) {
        let (e, _) = self.entry(proc, a);
        let p = self.head_of(e.pfn().unwrap_or(0));
        // folio_get: the collect reference
        self.page_get(p, 1, "migrate_vma_collect: folio_get");
        self.s.ledger.pages[p].collect += 1;
        if !self.prelocked_fault_page(slot, p) && !self.trylock(p, slot) {
            self.s.ledger.pages[p].collect -= 1;
            self.put_page_refs(p, 1, cpu, "migrate_vma_collect: folio_put (trylock failed)");
            self.trace_note(|| format!("collect: pfn {p} is locked, skipped"));
            return;
        }
        let (write, dirty) = match e {
            Pte::Present { write, dirty, .. } => (write, dirty),
            Pte::DevicePrivate { write, .. } => (write, false),
            _ => (false, false),
        };
        if dirty {
            self.s.ledger.pages[p].dirty_pte = true;
            if self.rules.migrate.collect_marks_dirty {
                self.s.flags[p] |= PG_DIRTY;
            }
        }
        let kind = if write {
            MigKind::Write
        } else if self.folio_mapcount(p) == 1 {
            MigKind::ReadExclusive
        } else {
            MigKind::Read
        };
        self.replace_with_migration_entry(proc, a, level, kind, cpu);
        let compound = if level == Level::Pmd { MF_COMPOUND } else { 0 };
        let w = if write { MF_WRITE } else { 0 };
        self.set_mig_entry(
            slot,
            i,
            MigEntry { src: p as u16 + 1, dst: 0, flags: MF_MIGRATE | MF_COLLECTED | w | compound },
        );
    }

    /// Replace the mapping at (proc, a, level) by a migration entry:
    /// `folio_remove_rmap_*` + `folio_put` of the mapping's reference.
    fn replace_with_migration_entry(&mut self, proc: usize, a: usize, level: Level, kind: MigKind, cpu: usize) {
        let at = if level == Level::Pmd { self.block_start(a) } else { a };
        let old = self.clear_entry(proc, at, level, cpu, "try_to_migrate: folio_put (mapping)");
        let Some(p) = old.pfn() else { return };
        self.install_entry(proc, at, level, Pte::Migration { pfn: p as u16, kind }, 0, "migration entry");
    }

    /// migrate_device_range: collect every in-use page of the pgmap.
    fn migrate_device_range_collect(&mut self, slot: usize) {
        let g = self.s.mig[slot].pgmap as usize;
        let pfns = self.layout.pfns_of(g);
        let n = pfns.len();
        self.s.mig[slot].npages = n as u16;
        for (i, p) in pfns.enumerate() {
            self.set_mig_entry(slot, i, MigEntry::default());
            // folio_get_nontail_page: skips tails and free pages (refcount 0)
            if self.head_of(p) != p || self.s.rc[p] == 0 || self.s.flags[p] & PG_FREE_LIST != 0 {
                continue;
            }
            self.page_get(p, 1, "migrate_device_range: folio_get_nontail_page");
            self.s.ledger.pages[p].collect += 1;
            if !self.trylock(p, slot) {
                self.s.ledger.pages[p].collect -= 1;
                self.put_page_refs(p, 1, 0, "migrate_device_range: folio_put (trylock failed)");
                continue;
            }
            let c = if self.folio_nr(p) > 1 { MF_COMPOUND } else { 0 };
            self.set_mig_entry(slot, i, MigEntry { src: p as u16 + 1, dst: 0, flags: MF_MIGRATE | MF_COLLECTED | c });
        }
    }

    // ------------------------------------------------------------------
    // unmap
    // ------------------------------------------------------------------

    /// migrate_device_unmap: isolate, unmap the remaining mappings, the
    /// pre-filter, and the restore pass for what fails.
    pub(crate) fn migrate_unmap(&mut self, slot: usize, cpu: usize) {
        let n = self.s.mig[slot].npages as usize;
        for i in 0..n {
            let mut e = self.mig_entry(slot, i);
            let Some(p) = e.src() else { continue };
            if !e.migrate() {
                continue;
            }
            if self.layout.is_ram(p) {
                // folio_isolate_lru: the isolation reference replaces collect's
                if self.isolate_lru(p) {
                    self.put_page_refs(p, 1, cpu, "migrate_device_unmap: folio_put (collect)");
                } else {
                    e.flags &= !MF_MIGRATE;
                    self.set_mig_entry(slot, i, e);
                    continue;
                }
            }
            // try_to_migrate: every other mapping the rmap walk finds
            // becomes a migration entry
            let nr = self.folio_nr(p);
            let walk = self.try_to_migrate_procs(p);
            while let Some((proc, a, level)) = self.find_entry_in(walk, p, nr, |x| x.is_mapping()) {
                let (x, _) = self.entry(proc, a);
                let kind = if x.writable() { MigKind::Write } else { MigKind::Read };
                if !self.rules.migrate.unmap_subpage_fix
                    && matches!(x, Pte::DevicePrivate { .. })
                    && level == Level::Pte
                {
                    // the pre-v5.3 bug (fixed by 1de13ee59225 "mm/hmm: fix
                    // bad subpage pointer in try_to_unmap_one"): the subpage
                    // is computed from the swap entry as if it were a present
                    // PTE's pfn, a pointer to no struct page, which the rmap
                    // removal dereferences. After the report the model goes
                    // on with some wrong page, as a kernel that did not oops
                    // at once would.
                    self.observe(Obs::WildSubpage { pfn: p });
                    let wrong = (x.pfn().unwrap_or(0) + 1) % self.layout.npfns;
                    self.clear_entry(proc, a, level, cpu, "try_to_unmap_one: put_page (bad subpage)");
                    self.install_entry(
                        proc,
                        a,
                        level,
                        Pte::Migration { pfn: wrong as u16, kind },
                        0,
                        "migration entry",
                    );
                    continue;
                }
                if let Pte::Present { dirty: true, .. } = x {
                    // try_to_migrate_one: folio_mark_dirty (all eras)
                    self.s.ledger.pages[p].dirty_pte = true;
                    self.s.flags[p] |= PG_DIRTY;
                }
                self.replace_with_migration_entry(proc, a, level, kind, cpu);
            }
            // a mapping the walk missed is a safety violation (I-M9); the
            // program ends there, so what the kernel does next (the folio
            // is still mapped: restored) is not modelled
            self.rmap_walk_missed(walk, p, nr, |x| x.is_mapping(), "try_to_migrate");
            if !self.migrate_check_page(slot, p) {
                self.trace_note(|| format!("migrate_vma_check_page(pfn {p}) fails: restored"));
                e.flags &= !MF_MIGRATE;
                self.set_mig_entry(slot, i, e);
            }
        }
        // the restore pass
        for i in 0..n {
            let e = self.mig_entry(slot, i);
            let Some(p) = e.src() else { continue };
            if e.migrate() {
                continue;
            }
            self.restore_src(slot, p, cpu, "migrate_device_unmap (restore)");
            self.set_mig_entry(slot, i, MigEntry::default());
        }
    }

    /// `migrate_vma_check_page`: may the folio migrate? A pre-filter; the
    /// exact gate is in `migrate_vma_pages`.
    fn migrate_check_page(&self, slot: usize, h: usize) -> bool {
        let r = &self.rules.migrate;
        let device = !self.layout.is_ram(h);
        if device && r.check_device == DeviceCheck::Skip {
            // v5.10: "return is_device_private_page(page)"
            return self.layout.is_private(h);
        }
        if self.folio_nr(h) > 1 && !r.compound {
            return false;
        }
        if !device && !r.check_system {
            return true;
        }
        let mut extra = 1; // collect or isolation reference
        if self.fault_page(slot) == Some(h) {
            extra += 1;
        }
        if device {
            extra += 1;
        }
        self.s.rc[h] - extra <= self.folio_mapcount(h)
    }

    /// A failed migration maps `p` back (`remove_migration_ptes(p, p)`):
    /// the PTEs it restores are clean (`pte_mkold(mk_pte(...))`), so a dirty
    /// bit collect dropped survives only as PG_dirty. The loss
    /// fd35ca3d12cc ("mm/migrate_device.c: copy pte dirty bit to page",
    /// v6.0) fixed is on this path: "migration will fail due to unexpected
    /// references but the dirty pte bit will be lost".
    fn observe_restored(&mut self, p: usize) {
        if self.find_entry(p, self.folio_nr(p), |x| x.is_migration()).is_some() {
            let page_dirty = self.s.flags[p] & PG_DIRTY != 0;
            self.observe(Obs::Restored { pfn: p, page_dirty });
        }
    }

    /// Put a source back the way it was: its mappings restored, unlocked
    /// (unless the fault path owns the lock), its collect/isolation reference
    /// dropped (system pages back on the LRU).
    fn restore_src(&mut self, slot: usize, p: usize, cpu: usize, what: &str) {
        self.observe_restored(p);
        self.remove_migration_ptes(p, p, what);
        if !(self.fault_page(slot) == Some(p) && self.rules.migrate.finalize_skips_fault_page) {
            self.mig_unlock(p, slot);
        }
        self.s.ledger.pages[p].collect = self.s.ledger.pages[p].collect.saturating_sub(1);
        if self.layout.is_ram(p) {
            self.add_lru(p);
        }
        self.put_page_refs(p, 1, cpu, "folio_put (collect reference)");
    }

    /// `remove_migration_ptes(src, dst)`: every migration entry for a page of
    /// `src` becomes a mapping of the corresponding page of `dst` — a
    /// device-private entry if `dst` is device-private, else a present PTE
    /// (PMD) — taking a reference and a mapcount; the data it shows is
    /// checked (I-W1).
    ///
    /// The walk is `rmap_walk(dst)`: it goes where `dst`'s `mapping` leads
    /// (`folio_migrate_mapping` copied the source's; a failed migration
    /// walks the source itself).
    fn remove_migration_ptes(&mut self, src: usize, dst: usize, what: &str) {
        let nr = self.folio_nr(src);
        let dst_private = self.layout.is_private(dst);
        let walk = self.rmap_walk_procs(dst, src, "remove_migration_ptes");
        while let Some((proc, a, level)) = self.find_entry_in(walk, src, nr, |x| x.is_migration()) {
            let (x, _) = self.entry(proc, a);
            let Pte::Migration { pfn, kind } = x else { break };
            let off = pfn as usize - src;
            let at = if level == Level::Pmd { self.block_start(a) } else { a };
            if level == Level::Pmd && self.folio_nr(dst) == 1 {
                // an order-0 destination under a PMD entry: remap page by page
                self.split_huge_pmd(proc, at);
                continue;
            }
            let slot_e = match level {
                Level::Pte => &mut self.s.ptes[self.layout.pte_slot(proc, at)],
                Level::Pmd => &mut self.s.pmds[self.layout.pmd_slot(proc, at)],
            };
            *slot_e = Pte::None;
            let covered = if level == Level::Pmd { nr } else { 1 };
            for q in pfn as usize..pfn as usize + covered {
                let h = &mut self.s.ledger.pages[q];
                h.mig_entries = h.mig_entries.saturating_sub(1);
            }
            let target = if level == Level::Pmd { dst } else { dst + off };
            let write = kind == MigKind::Write;
            let e = if dst_private {
                Pte::DevicePrivate { pfn: target as u16, write }
            } else {
                Pte::present(target, write)
            };
            // remove_migration_pte: folio_add_anon_rmap_pte on a folio that
            // is anonymous already (its mapping stays)
            self.install_entry(proc, at, level, e, 1, what);
            if level == Level::Pmd {
                for k in 0..nr {
                    self.check_vpage(proc, at + k, "after migration");
                }
            } else {
                self.check_vpage(proc, at, "after migration");
            }
        }
        self.rmap_walk_missed(walk, src, nr, |x| x.is_migration(), "remove_migration_ptes");
    }

    // ------------------------------------------------------------------
    // the driver: allocate destinations and copy
    // ------------------------------------------------------------------

    /// The driver allocates a destination for every entry still migrating
    /// and copies the data (device destinations for SELECT_SYSTEM, system
    /// RAM for device-private sources).
    pub(crate) fn migrate_alloc_copy(&mut self, slot: usize, cpu: usize) {
        let ctx = self.s.mig[slot];
        let to_device = ctx.origin == Origin::Vma && ctx.select as u16 & SELECT_SYSTEM != 0;
        let g = ctx.pgmap as usize;
        let mut i = 0;
        let n = ctx.npages as usize;
        while i < n {
            let mut e = self.mig_entry(slot, i);
            if !e.migrate() {
                i += 1;
                continue;
            }
            let src = e.src();
            if src.is_none() && !to_device {
                // migrate_to_ram has nothing to put in a hole
                i += 1;
                continue;
            }
            let compound = e.flags & MF_COMPOUND != 0;
            let order = if compound { self.layout.order } else { 0 };
            let dst = if self.inject(SITE_ALLOC) {
                // the driver's allocation failed: the entry is not migrated
                // (or, for a large source, split and retried page by page)
                None
            } else if to_device {
                if order > 0 && self.rules.thp.device_private {
                    self.device_folio_fit(g).and_then(|h| self.device_alloc(g, h, order, cpu, lock_task(slot)))
                } else if order == 0 {
                    self.driver_free_page(g).and_then(|h| self.device_alloc(g, h, 0, cpu, lock_task(slot)))
                } else {
                    None
                }
            } else {
                let d = self.ram_alloc(order);
                if let Some(d) = d {
                    self.s.flags[d] |= PG_LOCKED;
                    self.s.ledger.locker[d] = lock_task(slot);
                    self.s.ledger.pages[d].mig_dst = true;
                }
                d
            };
            match dst {
                Some(d) => {
                    if let Some(s) = src {
                        for k in 0..(1usize << order) {
                            self.s.content[d + k] = self.s.content[s + k];
                        }
                    } else {
                        self.s.content[d] = 0;
                    }
                    e.dst = d as u16 + 1;
                    if order > 0 {
                        e.flags |= MF_DST_COMPOUND;
                    }
                    self.set_mig_entry(slot, i, e);
                    self.trace_note(|| {
                        format!(
                            "driver: dst pfn {d} <- copy of {}",
                            src.map_or("a hole".into(), |s| format!("pfn {s}"))
                        )
                    });
                    i += 1;
                }
                None if compound && src.is_some() => {
                    // partial migration: no large destination, so the source
                    // is split and migrated page by page
                    let s = src.unwrap_or(0);
                    if !self.split_collected(slot, i, s, cpu) {
                        e.flags &= !MF_MIGRATE;
                        self.set_mig_entry(slot, i, e);
                        i += 1;
                    }
                    // on success entry i is now order-0: allocate again
                }
                None => {
                    if !to_device {
                        self.s.mig[slot].oom = true;
                    }
                    self.trace_note(|| "driver: no destination page".into());
                    i += 1;
                }
            }
        }
    }

    /// `migrate_vma_split_unmapped_folio`: split the collected COMPOUND
    /// source of entry `i` so every page becomes its own entry, locked and
    /// referenced.
    fn split_collected(&mut self, slot: usize, i: usize, h: usize, cpu: usize) -> bool {
        let nr = self.folio_nr(h);
        if i + nr > self.layout.mig_cap() || !self.split_folio(h, 1, 1, cpu) {
            return false;
        }
        let e = self.mig_entry(slot, i);
        for k in 0..nr {
            let p = h + k;
            if k > 0 {
                self.s.ledger.pages[p].collect += 1;
                self.s.flags[p] |= PG_LOCKED | (self.s.flags[h] & PG_DIRTY);
                self.s.ledger.locker[p] = lock_task(slot);
            }
            self.set_mig_entry(
                slot,
                i + k,
                MigEntry { src: p as u16 + 1, dst: 0, flags: (e.flags & !MF_COMPOUND) | MF_MIGRATE | MF_COLLECTED },
            );
        }
        // the pieces keep PG_LRU off: they are isolated like their head was
        let cap = self.s.mig[slot].npages.max((i + nr) as u16);
        self.s.mig[slot].npages = cap;
        true
    }

    // ------------------------------------------------------------------
    // migrate_vma_pages
    // ------------------------------------------------------------------

    pub(crate) fn migrate_pages(&mut self, slot: usize) {
        let ctx = self.s.mig[slot];
        let n = ctx.npages as usize;
        for i in 0..n {
            let mut e = self.mig_entry(slot, i);
            if !e.migrate() {
                continue;
            }
            let Some(d) = e.dst() else {
                e.flags &= !MF_MIGRATE;
                self.set_mig_entry(slot, i, e);
                continue;
            };
            let Some(s) = e.src() else {
                // a hole: migrate_vma_insert_page
                let proc = ctx.proc as usize;
                let a = ctx.addr as usize + i;
                let compound = e.flags & MF_DST_COMPOUND != 0;
                let free = if compound { self.block_empty(proc, a) } else { self.slot_empty(proc, a) };
                if !free || !self.s.alive[proc] {
                    e.flags &= !MF_MIGRATE;
                    self.set_mig_entry(slot, i, e);
                    continue;
                }
                let level = if compound { Level::Pmd } else { Level::Pte };
                let at = if compound { self.block_start(a) } else { a };
                let entry = self.device_anon_entry(d);
                self.install_entry(proc, at, level, entry, 1, "migrate_vma_insert_page: folio_get");
                self.folio_add_new_anon_rmap(d, proc);
                let k = if compound { self.layout.nr_huge() } else { 1 };
                for x in at..at + k {
                    let v = self.layout.pte_slot(proc, x);
                    self.s.ledger.vcontent[v] = 0;
                }
                continue;
            };
            // the exact gate: folio_migrate_mapping(NULL, dst, src, extra_cnt)
            let r = &self.rules.migrate;
            let mut expected = 1;
            if r.exact_counts_device_base && self.layout.is_private(s) {
                expected += 1;
            }
            if self.fault_page(slot) == Some(s) {
                expected += 1;
            }
            let rc = self.s.rc[s];
            if r.exact_gate && rc != expected {
                self.trace_note(|| format!("folio_migrate_mapping(pfn {s}): refcount {rc} != {expected}: -EAGAIN"));
                e.flags &= !MF_MIGRATE;
                self.set_mig_entry(slot, i, e);
                continue;
            }
            self.check_no_unexplained_refs(slot, s);
            // folio_migrate_flags
            if self.s.flags[s] & PG_DIRTY != 0 {
                self.s.flags[d] |= PG_DIRTY;
            }
            // folio_migrate_mapping(NULL, dst, src): dst->mapping = src->mapping
            self.s.mapping[d] = self.s.mapping[s];
            let nr = self.folio_nr(s);
            for k in 0..nr {
                self.s.ledger.migrated_away[s + k] = true;
            }
        }
    }

    /// I-M2: nothing the migration cannot account for holds the source.
    fn check_no_unexplained_refs(&mut self, slot: usize, s: usize) {
        let nr = self.folio_nr(s);
        let m = &self.s.mig[slot];
        let own_fault_ref = m.fault_ref && m.fault_pfn.checked_sub(1) == Some(s as u16);
        self.observe(Obs::Migrated { head: s, nr, own_fault_ref });
    }

    // ------------------------------------------------------------------
    // migrate_vma_finalize
    // ------------------------------------------------------------------

    pub(crate) fn migrate_finalize(&mut self, slot: usize, cpu: usize) {
        let n = self.s.mig[slot].npages as usize;
        for i in 0..n {
            let e = self.mig_entry(slot, i);
            let src = e.src();
            let dst = e.dst();
            let Some(s) = src else {
                if let Some(d) = dst {
                    // a hole fill: drop the driver's allocation reference
                    self.release_dst(slot, d, cpu);
                }
                continue;
            };
            let newdst = match dst {
                Some(d) if e.migrate() => d,
                Some(d) => {
                    self.release_dst(slot, d, cpu);
                    s
                }
                None => s,
            };
            if newdst != s && self.layout.is_ram(newdst) {
                self.add_lru(newdst);
            }
            if newdst == s {
                self.observe_restored(s);
            }
            self.remove_migration_ptes(s, newdst, "remove_migration_ptes");
            if newdst != s {
                // the copy's data came from a dirty PTE too; a successful
                // migration loses nothing: the destination is a new page
                // (device memory, or anonymous RAM that add_to_swap marks
                // dirty before it can be reclaimed)
                let nr = self.folio_nr(s);
                for k in 0..nr {
                    let u = self.s.ledger.pages[s + k].dirty_pte;
                    self.s.ledger.pages[newdst + k].dirty_pte |= u;
                }
            }
            if !(self.fault_page(slot) == Some(s) && self.rules.migrate.finalize_skips_fault_page) {
                self.mig_unlock(s, slot);
            }
            self.s.ledger.pages[s].collect = self.s.ledger.pages[s].collect.saturating_sub(1);
            if self.layout.is_ram(s) && (newdst == s || self.rules.migrate.finalize_putback_src) {
                // folio_putback_lru
                self.putback_lru(s, newdst != s && self.s.rc[s] == 1);
            }
            self.put_page_refs(s, 1, cpu, "migrate_vma_finalize: folio_put(src)");
            if newdst != s {
                self.release_dst(slot, newdst, cpu);
            }
        }
        self.check_finalized(slot);
    }

    /// Unlock and put a destination: the driver's allocation reference.
    fn release_dst(&mut self, slot: usize, d: usize, cpu: usize) {
        self.mig_unlock(d, slot);
        self.s.ledger.pages[d].mig_dst = false;
        self.put_page_refs(d, 1, cpu, "migrate_vma_finalize: folio_put(dst)");
    }

    /// After finalize: no migration entry of this migration survives (I-M3)
    /// and no page it locked stays locked (I-M7). A migration entry is
    /// legitimate only while a migration holds its page collected; one that
    /// no running migration holds is left over.
    fn check_finalized(&mut self, slot: usize) {
        let nptes = self.layout.procs * self.layout.addrs;
        // PTEs, then PMDs: the first entry the oracle finds stale is reported
        for k in 0..nptes + self.s.pmds.len() {
            let e = if k < nptes { self.s.ptes[k] } else { self.s.pmds[k - nptes] };
            if !e.is_migration() {
                continue;
            }
            let pfn = e.pfn().unwrap_or(0);
            if self.observe(Obs::MigrationEntryLeft { pfn, head: self.head_of(pfn), entry: e }) {
                return;
            }
        }
        let n = self.s.mig[slot].npages as usize;
        for i in 0..n {
            let e = self.mig_entry(slot, i);
            let span = if e.flags & (MF_COMPOUND | MF_DST_COMPOUND) != 0 { self.layout.nr_huge() } else { 1 };
            for p in [e.src(), e.dst()].into_iter().flatten() {
                for q in p..(p + span).min(self.layout.npfns) {
                    let fault_path_lock = self.fault_path_locked(slot, q);
                    if self.observe(Obs::LockedAfterFinalize { pfn: q, slot, fault_path_lock }) {
                        return;
                    }
                }
            }
        }
    }

    // ------------------------------------------------------------------
    // migrate_device_coherent_page (GUP's FOLL_LONGTERM path)
    // ------------------------------------------------------------------

    /// `migrate_device_coherent_page` (mm/migrate_device.c, v6.0), as
    /// `migrate_longterm_unpinnable_pages` (mm/gup.c) calls it for a
    /// coherent page a FOLL_LONGTERM GUP grabbed: a coherent page must stay
    /// evictable ("Coherent device memory must always allow eviction",
    /// `is_longterm_pinnable_page`), so GUP moves it to system RAM and
    /// retries there. GUP's pin has become the caller's plain reference
    /// (`folio_get` + `gup_put_folio`), which the migration consumes on
    /// both paths. The page is locked for the whole step (a page another
    /// migration holds locked fails at once, see below; the model does not
    /// record a lock taken and dropped inside one step), unmapped to migration entries
    /// (`migrate_device_unmap`: `try_to_migrate`, then the pre-filter
    /// `migrate_vma_check_page`), copied to a fresh RAM page
    /// (`alloc_page`), moved if the exact gate (`folio_migrate_mapping`)
    /// sees no reference beyond the caller's, and finalized: mappings
    /// restored to the destination (or back to the source), the source
    /// unlocked and put — its last put frees it to the driver
    /// (`->page_free` + `put_dev_pagemap`). True if the page moved.
    ///
    /// One step: the kernel's windows between unmap, copy and finalize are
    /// not modelled here.
    pub(crate) fn migrate_device_coherent_page(&mut self, p: usize, cpu: usize) -> bool {
        if self.s.flags[p] & PG_LOCKED != 0 {
            // a migration holds the page locked (between its collect and
            // finalize steps). lock_page would sleep until it unlocks; its
            // finalize unlocks before it puts its own reference, so the
            // check below can still see that reference and refuse: the
            // model takes that outcome at once (GUP does not sleep inside
            // one action)
            self.trace_note(|| format!("migrate_device_coherent_page(pfn {p}): locked by a migration: -EBUSY"));
            return false;
        }
        // the caller's reference (accounted as the migration's, like collect's)
        self.page_get(p, 1, "migrate_longterm_unpinnable_pages: folio_get");
        self.s.ledger.pages[p].collect += 1;
        self.trace_note(|| format!("migrate_device_coherent_page(pfn {p})"));
        // migrate_device_unmap: try_to_migrate every mapping the rmap walk finds
        let walk = self.try_to_migrate_procs(p);
        while let Some((proc, a, level)) = self.find_entry_in(walk, p, 1, |x| x.is_mapping()) {
            let (x, _) = self.entry(proc, a);
            let kind = if x.writable() { MigKind::Write } else { MigKind::Read };
            if let Pte::Present { dirty: true, .. } = x {
                self.s.ledger.pages[p].dirty_pte = true;
                self.s.flags[p] |= PG_DIRTY;
            }
            self.replace_with_migration_entry(proc, a, level, kind, cpu);
        }
        self.rmap_walk_missed(walk, p, 1, |x| x.is_mapping(), "try_to_migrate");
        // migrate_vma_check_page: the caller's reference and the ZONE_DEVICE
        // extra one are expected
        let checked = self.s.rc[p] - 2 <= self.folio_mapcount(p);
        let dst = if !checked {
            self.trace_note(|| format!("migrate_vma_check_page(pfn {p}) fails: -EBUSY"));
            None
        } else if self.inject(SITE_ALLOC) {
            self.trace_note(|| "alloc_page failed".into());
            None
        } else {
            self.ram_alloc(0)
        };
        // migrate_device_pages: the exact gate
        let moved = match dst {
            Some(_) if self.rules.migrate.exact_gate && self.s.rc[p] != 1 => {
                let rc = self.s.rc[p];
                self.trace_note(|| format!("folio_migrate_mapping(pfn {p}): refcount {rc} != 1: -EAGAIN"));
                false
            }
            Some(_) => true,
            None => false,
        };
        match dst {
            Some(d) if moved => {
                self.observe(Obs::Migrated { head: p, nr: 1, own_fault_ref: false });
                self.s.content[d] = self.s.content[p];
                if self.s.flags[p] & PG_DIRTY != 0 {
                    self.s.flags[d] |= PG_DIRTY;
                }
                self.s.ledger.migrated_away[p] = true;
                self.s.ledger.pages[d].mig_dst = true;
                self.add_lru(d);
                // folio_migrate_mapping: dst->mapping = src->mapping
                self.s.mapping[d] = self.s.mapping[p];
                self.remove_migration_ptes(p, d, "remove_migration_ptes");
                let u = self.s.ledger.pages[p].dirty_pte;
                self.s.ledger.pages[d].dirty_pte |= u;
                self.s.ledger.pages[d].mig_dst = false;
                self.put_page_refs(d, 1, cpu, "migrate_device_finalize: folio_put(dst)");
            }
            _ => {
                if let Some(d) = dst {
                    // the destination was not used: back to the buddy
                    self.put_page_refs(d, 1, cpu, "migrate_device_finalize: folio_put(dst)");
                }
                self.observe_restored(p);
                self.remove_migration_ptes(p, p, "migrate_device_coherent_page (restore)");
            }
        }
        self.s.ledger.pages[p].collect -= 1;
        self.put_page_refs(p, 1, cpu, "migrate_device_finalize: folio_put(src)");
        moved
    }

    // ------------------------------------------------------------------
    // device-private allocation (shared with the driver's own actions)
    // ------------------------------------------------------------------

    /// An aligned block of free pages for a large device folio.
    pub(crate) fn device_folio_fit(&self, g: usize) -> Option<usize> {
        let nr = self.layout.nr_huge();
        let r = self.layout.pfns_of(g);
        (r.start..r.end)
            .step_by(nr)
            .find(|&h| h + nr <= r.end && (h..h + nr).all(|p| self.s.flags[p] & PG_FREE_LIST != 0))
    }

    /// `zone_device_page_init` / `zone_device_folio_init` on the driver's
    /// free page(s) at `h`: a pgmap reference per base page (E3
    /// `tryget_live`, E5 `tryget_many(1 << order)`), refcount 1, locked.
    /// Returns the folio, owned by the driver and locked by `locker` (the
    /// driver, or the migration task that allocated it).
    pub(crate) fn device_alloc(&mut self, g: usize, h: usize, order: usize, cpu: usize, locker: u8) -> Option<usize> {
        let nr = 1usize << order;
        let pr = self.rules.private.clone();
        for p in h..h + nr {
            self.touch_page(p);
            self.s.flags[p] &= !PG_FREE_LIST;
        }
        self.observe(Obs::DeviceAllocated { pgmap: g, pfn: h });
        match pr.alloc_pgmap_ref {
            AllocPgmapRef::None => {}
            AllocPgmapRef::TrygetLive => {
                if !self.pgmap_tryget_live(g, cpu, "zone_device_page_init") {
                    // WARN_ON_ONCE(!percpu_ref_tryget_live(...)): the kernel
                    // carries on, without a pgmap reference for this page.
                    let warn = Warn::TrygetLiveFailed { pgmap: g, pfn: h };
                    self.observe(Obs::Warned { warn, what: "zone_device_page_init" });
                }
            }
            AllocPgmapRef::TrygetMany => {
                self.pgmap_tryget_many(g, cpu, nr as u64, "zone_device_folio_init: tryget_many(1 << order)");
            }
        }
        if order > 0 {
            self.prep_compound(h, order);
        } else {
            self.check_standalone(h, h, 0);
        }
        if pr.alloc_sets_rc {
            self.observe(Obs::RefInitialised { pfn: h, old: self.s.rc[h] });
            self.page_set_count(h, 1);
        }
        if pr.alloc_get_page {
            self.page_get(h, 1, "alloc_device_page: get_page");
        }
        self.s.flags[h] |= PG_LOCKED;
        self.s.flags[h] &= !PG_LRU;
        self.s.ledger.locker[h] = locker;
        if locker == crate::oracle::LOCK_DRIVER {
            self.s.ledger.pages[h].driver = true;
        } else {
            self.s.ledger.pages[h].mig_dst = true;
        }
        Some(h)
    }
}

// ---------------------------------------------------------------------------
// Legality: when the actors may call these kernel functions
// ---------------------------------------------------------------------------

use crate::program::op::Op;
use crate::rules::DeviceType;

impl Machine {
    /// Is `MigrateVmaSetup` allowed now (the actor's contract)?
    pub(crate) fn migrate_vma_setup_enabled(&self, op: &Op) -> Result<(), &'static str> {
        let (proc, addr, g, sel) = (op.a(0), op.a(1), op.a(2), op.args[3]);
        let t = self.layout.pgmap_type[g];
        ok(t.driver_allocated(), "not a device-private or coherent pgmap")?;
        ok(
            sel & SELECT_DEVICE_COHERENT == 0 || t == DeviceType::Coherent,
            "MIGRATE_VMA_SELECT_DEVICE_COHERENT needs a coherent pgmap",
        )?;
        ok(
            sel & SELECT_DEVICE_PRIVATE == 0 || t == DeviceType::Private,
            "MIGRATE_VMA_SELECT_DEVICE_PRIVATE needs a device-private pgmap",
        )?;
        ok(
            sel & SELECT_COMPOUND == 0 || t == DeviceType::Private,
            "coherent folios are order-0 in the model (no COMPOUND)",
        )?;
        ok(self.pgmap_live(g), "the driver is not bound")?;
        // the driver takes mmap_read_lock: it runs beside faults and
        // other migrations, not beside a task holding the PTL
        ok(self.s.alive[proc], "no such process")?;
        ok(self.ptl_owner(proc, addr).is_none(), "a task holds the page-table lock")?;
        ok(self.free_task_slot(), "no free task slot")?;
        ok(
            sel & SELECT_COMPOUND == 0 || (self.rules.migrate.compound && self.layout.in_block(addr)),
            "MIGRATE_VMA_SELECT_COMPOUND is not supported in this era (or no PMD block here)",
        )
    }

    /// Is `MigrateDeviceRange` allowed now (the actor's contract)?
    pub(crate) fn migrate_device_range_enabled(&self, op: &Op) -> Result<(), &'static str> {
        let g = op.a(0);
        ok(self.layout.pgmap_type[g].driver_allocated(), "not a device-private or coherent pgmap")?;
        ok(self.rules.migrate.device_range, "no migrate_device_range in this era (v6.1+)")?;
        ok(self.pgmap_live(g), "the driver is not bound")?;
        ok(!self.layout.pfns_of(g).any(|p| self.s.ledger.pages[p].driver), "the driver frees its own pages first")?;
        ok(self.free_task_slot(), "no free task slot")
    }
}
