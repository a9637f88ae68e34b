//! Page tables: PTEs, PMDs, and the page-table lock.
//!
//! Mirrors what the kernel keeps in a process's page tables for the memory
//! zdfuzz models: present PTEs (`set_pte_at`, with the dirty bit the hardware
//! sets), device-private swap entries (`SWP_DEVICE_READ`/`SWP_DEVICE_WRITE`,
//! `make_writable_device_private_entry`), migration entries
//! (`SWP_MIGRATION_READ`, `_READ_EXCLUSIVE`, `_WRITE`: `make_*_migration_entry`)
//! and the PMD-level forms of each (`set_pmd_migration_entry`,
//! E5's `swp_entry_to_pmd` for device-private PMDs, a present PMD mapping an
//! anonymous THP).
//!
//! A process is a flat array of `addrs` page slots; every `1 << order`
//! aligned slots form a PMD block with one PMD slot. A PMD that is not
//! `None` maps the whole block and the block's PTE slots are then `None`
//! (the kernel has no PTE table under a huge PMD). The entry kinds say what
//! each holds: a present refcounted mapping and a device-private entry hold a
//! folio reference and a mapcount; an E1–E3 devmap PTE (FS-DAX, device-dax)
//! holds neither; a migration entry holds neither either — the migrating
//! task's collect reference keeps the folio alive (mm/migrate_device.c:
//! "won't be freed as we took a reference").
//!
//! The page-table lock (`pte_offset_map_lock`, `pmd_lock`) is one lock per
//! PMD block here (split PTE locks): a task may hold it across steps, and
//! any other task that needs it is blocked until it is released.

use crate::machine::{ok, Machine};

/// The three kinds of migration entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum MigKind {
    /// `SWP_MIGRATION_READ`
    #[default]
    Read,
    /// `SWP_MIGRATION_READ_EXCLUSIVE`: an anon-exclusive page mapped read-only
    ReadExclusive,
    /// `SWP_MIGRATION_WRITE`
    Write,
}

impl MigKind {
    pub fn name(self) -> &'static str {
        match self {
            MigKind::Read => "read",
            MigKind::ReadExclusive => "read-exclusive",
            MigKind::Write => "write",
        }
    }
}

/// One page-table entry (a PTE, or a PMD mapping a whole huge folio; for a
/// PMD `pfn` is the folio's head).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Pte {
    #[default]
    None,
    /// A present entry. `refcounted` is false for the E1–E3 devmap/pfn
    /// mappings of FS-DAX and device-dax pages (`pte_devmap`: zap does not
    /// put the page, rmap does not count it). `dirty` is the hardware dirty
    /// bit, set by CPU writes through this entry.
    Present { pfn: u16, write: bool, refcounted: bool, dirty: bool },
    /// A device-private swap entry (`SWP_DEVICE_READ` / `SWP_DEVICE_WRITE`):
    /// holds a folio reference and a mapcount.
    DevicePrivate { pfn: u16, write: bool },
    /// A migration entry: no reference, no mapcount.
    Migration { pfn: u16, kind: MigKind },
}

impl Pte {
    /// A present, refcounted, clean entry (the common mapping).
    #[inline]
    pub fn present(pfn: usize, write: bool) -> Pte {
        Pte::Present { pfn: pfn as u16, write, refcounted: true, dirty: false }
    }

    #[inline]
    pub fn pfn(self) -> Option<usize> {
        match self {
            Pte::None => None,
            Pte::Present { pfn, .. } | Pte::DevicePrivate { pfn, .. } | Pte::Migration { pfn, .. } => {
                Some(pfn as usize)
            }
        }
    }

    /// Does this entry hold a page reference and a mapcount?
    #[inline]
    pub fn holds_ref(self) -> bool {
        match self {
            Pte::None | Pte::Migration { .. } => false,
            Pte::Present { refcounted, .. } => refcounted,
            Pte::DevicePrivate { .. } => true,
        }
    }

    /// A mapping a process or its device can reach the data through (not a
    /// hole, not a migration entry).
    #[inline]
    pub fn is_mapping(self) -> bool {
        matches!(self, Pte::Present { .. } | Pte::DevicePrivate { .. })
    }

    #[inline]
    pub fn is_migration(self) -> bool {
        matches!(self, Pte::Migration { .. })
    }

    #[inline]
    pub fn writable(self) -> bool {
        match self {
            Pte::Present { write, .. } | Pte::DevicePrivate { write, .. } => write,
            Pte::Migration { kind, .. } => kind == MigKind::Write,
            Pte::None => false,
        }
    }

    /// The same entry pointing at another pfn (PMD → PTE split, remap).
    #[inline]
    pub fn with_pfn(self, p: usize) -> Pte {
        let pfn = p as u16;
        match self {
            Pte::None => Pte::None,
            Pte::Present { write, refcounted, dirty, .. } => Pte::Present { pfn, write, refcounted, dirty },
            Pte::DevicePrivate { write, .. } => Pte::DevicePrivate { pfn, write },
            Pte::Migration { kind, .. } => Pte::Migration { pfn, kind },
        }
    }

    /// Short text for traces and snapshots.
    pub fn describe(self) -> String {
        match self {
            Pte::None => String::new(),
            Pte::Present { pfn, refcounted, write, dirty } => format!(
                "pfn {pfn}{}{}{}",
                if refcounted { "" } else { " (devmap, no ref)" },
                if write { "" } else { " (read-only)" },
                if dirty { " (dirty)" } else { "" }
            ),
            Pte::DevicePrivate { pfn, write } => {
                format!("device-private pfn {pfn}{}", if write { " (write)" } else { " (read)" })
            }
            Pte::Migration { pfn, kind } => format!("migration entry pfn {pfn} ({})", kind.name()),
        }
    }
}

/// Where an address is mapped from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Pte,
    Pmd,
}

impl Machine {
    /// The entry translating (proc, addr): the PMD if one maps the block
    /// (its pfn resolved to the subpage), else the PTE.
    #[inline]
    pub(crate) fn entry(&self, proc: usize, addr: usize) -> (Pte, Level) {
        let l = &self.layout;
        if l.in_block(addr) {
            let pmd = self.s.pmds[l.pmd_slot(proc, addr)];
            if let Some(head) = pmd.pfn() {
                let sub = head + (addr & (l.nr_huge() - 1));
                return (pmd.with_pfn(sub), Level::Pmd);
            }
        }
        (self.s.ptes[l.pte_slot(proc, addr)], Level::Pte)
    }

    /// Is the address slot free of any entry (PTE and PMD)?
    #[inline]
    pub(crate) fn slot_empty(&self, proc: usize, addr: usize) -> bool {
        self.entry(proc, addr).0 == Pte::None
    }

    /// Is the whole PMD block containing `addr` free?
    pub(crate) fn block_empty(&self, proc: usize, addr: usize) -> bool {
        let l = &self.layout;
        if !l.in_block(addr) {
            return false;
        }
        let start = addr & !(l.nr_huge() - 1);
        self.s.pmds[l.pmd_slot(proc, addr)] == Pte::None
            && (start..start + l.nr_huge()).all(|a| self.s.ptes[l.pte_slot(proc, a)] == Pte::None)
    }

    /// Does `e` map a page of a PMD-sized DAX block (a PMD-aligned
    /// device-dax device, or an FS-DAX PMD entry)? Such a PMD is never split
    /// into PTEs: device-dax refuses a split below its alignment
    /// (`dev_dax_may_split`), and `__split_huge_pmd_locked` of a file VMA
    /// zaps the PMD instead (the next fault maps what it needs) — either
    /// way an unmap of one address unmaps the block. The walkers skip DAX
    /// VMAs.
    #[inline]
    pub(crate) fn maps_dax_block(&self, e: Pte) -> bool {
        e.pfn().is_some_and(|p| self.layout.is_dax_pmd(p))
    }

    /// The first address slot of the PMD block containing `addr`.
    #[inline]
    pub(crate) fn block_start(&self, addr: usize) -> usize {
        addr & !(self.layout.nr_huge() - 1)
    }

    /// Who holds the page-table lock of (proc, addr)'s block: a task slot.
    #[inline]
    pub(crate) fn ptl_owner(&self, proc: usize, addr: usize) -> Option<usize> {
        let v = self.s.ptl[self.ptl_slot(proc, addr)];
        (v > 0).then(|| v as usize - 1)
    }

    #[inline]
    pub(crate) fn ptl_slot(&self, proc: usize, addr: usize) -> usize {
        // one lock per PMD block; slots past the last block share the last lock
        let per = self.layout.addrs.div_ceil(self.layout.nr_huge().max(1)).max(1);
        proc * per + (addr >> self.layout.order).min(per - 1)
    }

    pub(crate) fn ptl_lock(&mut self, proc: usize, addr: usize, task: usize) {
        let s = self.ptl_slot(proc, addr);
        self.s.ptl[s] = task as u8 + 1;
    }

    pub(crate) fn ptl_unlock(&mut self, proc: usize, addr: usize) {
        let s = self.ptl_slot(proc, addr);
        self.s.ptl[s] = 0;
    }

    /// Number of page-table locks (for sizing `State::ptl`).
    pub(crate) fn ptl_count(l: &crate::config::Layout) -> usize {
        l.procs * l.addrs.div_ceil(l.nr_huge().max(1)).max(1)
    }
}

impl Machine {
    /// The pages an entry at `level` covers: its pfn for a PTE, the whole
    /// folio for a PMD.
    #[inline]
    fn covered(&self, e: Pte, level: Level) -> std::ops::Range<usize> {
        let p = e.pfn().unwrap_or(0);
        match level {
            Level::Pte => p..p + 1,
            Level::Pmd => p..p + self.layout.nr_huge(),
        }
    }

    #[inline]
    fn slot_of(&mut self, proc: usize, addr: usize, level: Level) -> &mut Pte {
        match level {
            Level::Pte => {
                let s = self.layout.pte_slot(proc, addr);
                &mut self.s.ptes[s]
            }
            Level::Pmd => {
                let s = self.layout.pmd_slot(proc, addr);
                &mut self.s.pmds[s]
            }
        }
    }

    /// Write an entry into an empty slot with its accounting: a mapping that
    /// holds a reference takes one (`folio_get`) and a mapcount (`mc` for a
    /// PTE, the entire mapcount for a PMD); a migration entry takes neither.
    /// For a PMD `e`'s pfn is the folio head. `min` is the lowest refcount the
    /// folio may have (0 for the first mapping of a 0-based page).
    pub(crate) fn install_entry(&mut self, proc: usize, addr: usize, level: Level, e: Pte, min: i32, what: &str) {
        let Some(p) = e.pfn() else { return };
        if e.holds_ref() {
            self.page_get_from(p, 1, min, what);
            match level {
                Level::Pte => self.s.mc[p] += 1,
                Level::Pmd => self.s.emc[p] += 1,
            }
        } else {
            self.touch_page(p);
        }
        for q in self.covered(e, level) {
            if e.is_migration() {
                self.s.ledger.pages[q].mig_entries += 1;
            } else {
                self.s.ledger.pages[q].maps += 1;
            }
        }
        *self.slot_of(proc, addr, level) = e;
    }

    /// Clear a slot with its accounting (`zap_pte_range` / `zap_huge_pmd`,
    /// or the unmap half of installing a migration entry): a mapping that
    /// holds a reference drops its mapcount and `put`s its reference.
    /// Returns the old entry.
    pub(crate) fn clear_entry(&mut self, proc: usize, addr: usize, level: Level, cpu: usize, what: &str) -> Pte {
        let old = std::mem::take(self.slot_of(proc, addr, level));
        let Some(p) = old.pfn() else { return old };
        for q in self.covered(old, level) {
            let h = &mut self.s.ledger.pages[q];
            if old.is_migration() {
                h.mig_entries = h.mig_entries.saturating_sub(1);
            } else {
                h.maps = h.maps.saturating_sub(1);
            }
        }
        if old.holds_ref() {
            match level {
                Level::Pte => self.s.mc[p] -= 1,
                Level::Pmd => self.s.emc[p] -= 1,
            }
            self.put_page_refs(p, 1, cpu, what);
        } else if !old.is_migration() {
            self.page_torn_down(p, what);
        } else {
            self.touch_page(p);
        }
        old
    }

    /// `split_huge_pmd`: the PMD mapping the block of (proc, addr) becomes
    /// one PTE per page (`__split_huge_pmd_locked`: the folio gets `nr - 1`
    /// more references and per-page mapcounts replace the entire mapcount;
    /// a PMD migration or device-private entry becomes PTE entries of the
    /// same kind).
    pub(crate) fn split_huge_pmd(&mut self, proc: usize, addr: usize) {
        let l = &self.layout;
        if !l.in_block(addr) {
            return;
        }
        let slot = l.pmd_slot(proc, addr);
        let pmd = self.s.pmds[slot];
        let Some(h) = pmd.pfn() else { return };
        let nr = l.nr_huge();
        let start = addr & !(nr - 1);
        self.s.pmds[slot] = Pte::None;
        if pmd.holds_ref() {
            self.s.emc[h] -= 1;
            self.s.rc[h] += nr as i32 - 1;
        }
        for i in 0..nr {
            let p = h + i;
            if pmd.holds_ref() {
                self.s.mc[p] += 1;
            }
            let s = self.layout.pte_slot(proc, start + i);
            self.s.ptes[s] = pmd.with_pfn(p);
            self.touch_page(p);
        }
        self.trace_note(|| format!("split_huge_pmd(proc {proc}, block at {start}): pfn {h}..{} by PTEs", h + nr));
    }

    /// Every slot (proc, addr, level) whose entry points into the folio
    /// `h .. h + nr`, PMDs included. `want` filters by entry.
    pub(crate) fn find_entry(&self, h: usize, nr: usize, want: impl Fn(Pte) -> bool) -> Option<(usize, usize, Level)> {
        self.find_entry_in(u8::MAX, h, nr, want)
    }

    /// [`Machine::find_entry`] over the processes in `procs` (a bit each):
    /// what an rmap walk that visits those VMAs finds.
    pub(crate) fn find_entry_in(
        &self,
        procs: u8,
        h: usize,
        nr: usize,
        want: impl Fn(Pte) -> bool,
    ) -> Option<(usize, usize, Level)> {
        let l = &self.layout;
        let inside = |e: Pte| e.pfn().is_some_and(|p| p >= h && p < h + nr) && want(e);
        for proc in (0..l.procs).filter(|&p| procs >> p & 1 != 0) {
            for b in 0..l.blocks {
                if inside(self.s.pmds[proc * l.blocks + b]) {
                    return Some((proc, b << l.order, Level::Pmd));
                }
            }
            for a in 0..l.addrs {
                if inside(self.s.ptes[l.pte_slot(proc, a)]) {
                    return Some((proc, a, Level::Pte));
                }
            }
        }
        None
    }
}

// ---------------------------------------------------------------------------
// Legality: when the actors may call these kernel functions
// ---------------------------------------------------------------------------

use crate::program::op::Op;

impl Machine {
    /// Is `SplitHugePmd` allowed now (the actor's contract)?
    pub(crate) fn split_huge_pmd_enabled(&self, op: &Op) -> Result<(), &'static str> {
        self.mm_ok(op.a(0), op.a(1))?;
        let (e, level) = self.entry(op.a(0), op.a(1));
        ok(level == Level::Pmd, "no PMD mapping here")?;
        ok(
            !self.maps_dax_block(e),
            "a DAX PMD is not split into PTEs (device-dax: dev_dax_may_split -EINVAL; FS-DAX: the split zaps it, as munmap does)",
        )
    }
}
