//! The device-private driver (nouveau, test_hmm, amdkfd of each era).
//!
//! Mirrors the drivers' page allocators and `zone_device_page_init`:
//! E1 drivers take a free page (refcount 1) and `get_page` + `lock_page` it;
//! E2 drivers use the free page's refcount 1 as the allocation reference;
//! E3+ `zone_device_page_init` takes a pgmap reference (`tryget_live`, WARN on
//! failure), sets the refcount to 1 and locks the page; E5
//! `zone_device_folio_init` does the same for a large folio with
//! `tryget_many(1 << order)`. A driver drops its allocation with
//! `unlock_page` + `put_page`. `migrate_vma_insert_page`
//! (mm/migrate_device.c) installs a driver page into an anonymous hole as a
//! writable device-private entry (+1 reference, +1 mapcount; a PMD entry for
//! a large folio) and the finalize step unlocks it and drops the driver's
//! reference — the steady state of a mapped device page is then
//! "refcount = mapcount (+1 in E1)". The driver's migrations, eviction and
//! the CPU fault path are in `migrate.rs` and `fault.rs`.

use crate::machine::{ok, Machine};
use crate::oracle::{LOCK_DRIVER, LOCK_NONE};
use crate::page::{PG_FREE_LIST, PG_LOCKED};
use crate::pagetable::{Level, Pte};

impl Machine {
    /// The lowest free page on pgmap `g`'s driver free list.
    pub(crate) fn driver_free_page(&self, g: usize) -> Option<usize> {
        self.layout.pfns_of(g).find(|&p| self.s.flags[p] & PG_FREE_LIST != 0)
    }

    /// The driver allocates a page.
    pub(crate) fn alloc_device_page(&mut self, g: usize, cpu: usize) {
        if let Some(p) = self.driver_free_page(g) {
            self.device_alloc(g, p, 0, cpu, LOCK_DRIVER);
        }
    }

    /// The driver allocates a large folio (E5 `zone_device_folio_init`).
    pub(crate) fn alloc_device_folio(&mut self, g: usize, cpu: usize) {
        if let Some(h) = self.device_folio_fit(g) {
            self.device_alloc(g, h, self.layout.order, cpu, LOCK_DRIVER);
        }
    }

    /// The driver drops its allocation: unlock_page + put_page.
    pub(crate) fn free_device_page(&mut self, p: usize, cpu: usize) {
        self.s.ledger.pages[p].driver = false;
        self.s.flags[p] &= !PG_LOCKED;
        self.s.ledger.locker[p] = LOCK_NONE;
        self.put_page_refs(p, 1, cpu, "free_device_page: put_page");
    }

    /// The entry `migrate_vma_insert_page` writes for the driver's page `p`
    /// in a writable anonymous VMA: a device-private swap entry
    /// (`SWP_DEVICE_WRITE`), or for a coherent page an ordinary present PTE,
    /// made writable and dirty (`pte_mkwrite(pte_mkdirty(entry))`).
    pub(crate) fn device_anon_entry(&self, p: usize) -> Pte {
        if self.layout.is_coherent(p) {
            Pte::Present { pfn: p as u16, write: true, refcounted: true, dirty: true }
        } else {
            Pte::DevicePrivate { pfn: p as u16, write: true }
        }
    }

    /// migrate_vma_insert_page + the finalize of a hole-fill migration. A
    /// large folio fills the PMD block containing `addr`.
    pub(crate) fn migrate_vma_insert_page(&mut self, proc: usize, addr: usize, p: usize, cpu: usize) {
        let large = self.folio_nr(p) > 1;
        let (level, at) = if large { (Level::Pmd, self.block_start(addr)) } else { (Level::Pte, addr) };
        // folio_get(dst) for the new mapping; folio_add_new_anon_rmap
        let entry = self.device_anon_entry(p);
        self.install_entry(proc, at, level, entry, 1, "migrate_vma_insert_page: folio_get");
        self.folio_add_new_anon_rmap(p, proc);
        let n = if large { self.layout.nr_huge() } else { 1 };
        for a in at..at + n {
            let v = self.layout.pte_slot(proc, a);
            self.s.ledger.vcontent[v] = self.s.content[p + (a - at)];
        }
        // migrate_vma_finalize: unlock + put the driver's allocation reference
        self.free_device_page(p, cpu);
    }
}

// ---------------------------------------------------------------------------
// Legality: when the actors may call these kernel functions
// ---------------------------------------------------------------------------

use crate::pgmap::PgmapState;
use crate::program::op::{Op, OpKind};
use crate::rules::DeviceType;

impl Machine {
    /// Is `AllocDevicePage / AllocDeviceFolio` allowed now (the actor's contract)?
    pub(crate) fn alloc_device_page_enabled(&self, op: &Op) -> Result<(), &'static str> {
        let g = op.a(0);
        ok(
            self.layout.pgmap_type[g].driver_allocated(),
            "not a pgmap whose driver allocates pages (device-private or coherent)",
        )?;
        let bound = self.pgmap_live(g)
            || (self.rules.private.alloc_while_unbinding && self.s.pgmaps[g].state == PgmapState::Unbinding);
        ok(bound, "the driver is not bound (registered and not unbinding)")?;
        if op.kind == OpKind::AllocDeviceFolio {
            ok(self.layout.pgmap_type[g] == DeviceType::Private, "large folios are device-private only in the model")?;
            ok(self.rules.thp.device_private && self.layout.order > 0, "no large device-private folios in this era")?;
            ok(self.device_folio_fit(g).is_some(), "the driver has no free aligned block")
        } else {
            ok(self.driver_free_page(g).is_some(), "the driver has no free page")
        }
    }

    /// Is `FreeDevicePage` allowed now (the actor's contract)?
    pub(crate) fn free_device_page_enabled(&self, op: &Op) -> Result<(), &'static str> {
        ok(self.s.ledger.pages[op.a(0)].driver, "the driver does not hold this page")
    }

    /// Is `LockPage` allowed now (the actor's contract)?
    pub(crate) fn lock_page_enabled(&self, op: &Op) -> Result<(), &'static str> {
        ok(self.s.ledger.pages[op.a(0)].driver, "the driver does not hold this page")?;
        ok(self.s.flags[op.a(0)] & PG_LOCKED == 0, "the page is locked")
    }

    /// Is `UnlockPage` allowed now (the actor's contract)?
    pub(crate) fn unlock_page_enabled(&self, op: &Op) -> Result<(), &'static str> {
        ok(self.s.ledger.pages[op.a(0)].driver, "the driver does not hold this page")?;
        ok(self.s.ledger.locker[op.a(0)] == crate::oracle::LOCK_DRIVER, "the driver does not hold the page lock")
    }

    /// Is `MigrateVmaInsertPage` allowed now (the actor's contract)?
    pub(crate) fn migrate_vma_insert_page_enabled(&self, op: &Op) -> Result<(), &'static str> {
        let (proc, addr, p) = (op.a(0), op.a(1), op.a(2));
        self.mm_ok(proc, addr)?;
        ok(self.s.ledger.pages[p].driver, "the driver does not hold this page")?;
        if self.folio_nr(p) > 1 {
            ok(self.block_empty(proc, addr), "the PMD block is not empty")?;
        } else {
            ok(self.slot_is_empty(proc, addr), "the address is mapped")?;
        }
        ok(self.s.ledger.locker[p] == crate::oracle::LOCK_DRIVER, "migrate_vma needs the destination page locked")?;
        ok(self.pgmap_live(self.layout.pgmap_of(p)), "the driver is unbinding")
    }
}
