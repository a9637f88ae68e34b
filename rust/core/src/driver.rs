//! The device-private driver (nouveau, test_hmm, amdkfd of each era).
//!
//! Mirrors the drivers' page allocators and `zone_device_page_init`:
//! E1 drivers take a free page (refcount 1) and `get_page` + `lock_page` it;
//! E2 drivers use the free page's refcount 1 as the allocation reference;
//! E3+ `zone_device_page_init` takes a pgmap reference (`tryget_live`, WARN on
//! failure), sets the refcount to 1 and locks the page. A driver drops its
//! allocation with `unlock_page` + `put_page`. `migrate_vma_insert_page`
//! (mm/migrate_device.c) installs a driver page into an anonymous hole as a
//! writable device-private entry (+1 reference, +1 mapcount) and the
//! finalize step unlocks it and drops the driver's reference — the
//! steady state of a mapped device page is then "refcount = mapcount (+1 in E1)".

use crate::machine::Machine;
use crate::oracle::{Class, Life};
use crate::page::{Pte, MAPPING_ANON, MAPPING_NONE, PG_FREE_LIST, PG_LOCKED};
use crate::rules::AllocPgmapRef;

impl Machine {
    /// The lowest free page on pgmap `g`'s driver free list.
    pub(crate) fn driver_free_page(&self, g: usize) -> Option<usize> {
        self.layout.pfns_of(g).find(|&p| self.s.flags[p] & PG_FREE_LIST != 0)
    }

    /// The driver allocates a page.
    pub(crate) fn alloc_device_page(&mut self, g: usize, cpu: usize) {
        let Some(p) = self.driver_free_page(g) else { return };
        let pr = self.rules.private.clone();
        self.touch_page(p);
        self.s.flags[p] &= !PG_FREE_LIST;
        if self.s.mapping[p] != MAPPING_NONE {
            let m = self.s.mapping[p];
            self.violate("I-F2", Class::Safety, &[("pfn", p as u32)], || {
                (format!("pfn {p} is handed out again with a stale page->mapping from its previous life"),
                 "mapping == NULL".into(), format!("mapping {m}"))
            });
        }
        if self.s.ledger.life[g] == Life::Killed {
            self.violate("I-L5", Class::Safety, &[("pgmap", g as u32), ("pfn", p as u32)], || {
                (format!("pfn {p} is allocated after memunmap_pages killed pgmap {g}"),
                 "live pgmap".into(), "killed".into())
            });
        }
        match pr.alloc_pgmap_ref {
            AllocPgmapRef::None => {}
            AllocPgmapRef::TrygetLive => {
                if !self.pgmap_tryget_live(g, cpu, "zone_device_page_init") {
                    // WARN_ON_ONCE(!percpu_ref_tryget_live(...)): the kernel
                    // carries on, without a pgmap reference for this page.
                    self.violate("I-L5", Class::Safety, &[("pgmap", g as u32), ("pfn", p as u32)], || {
                        (format!("zone_device_page_init: tryget_live failed on pgmap {g} (allocation after kill)"),
                         "tryget_live succeeds".into(), "failed".into())
                    });
                }
            }
            AllocPgmapRef::TrygetMany => {
                self.pgmap_tryget_many(g, cpu, 1, "zone_device_folio_init");
            }
        }
        if pr.alloc_sets_rc {
            let old = self.s.rc[p];
            if old != 0 {
                self.violate("I-F1", Class::Safety, &[("pfn", p as u32)], || {
                    (format!("zone_device_page_init on pfn {p} whose refcount is {old}: the page is not free"),
                     "0".into(), format!("{old}"))
                });
            }
            self.page_set_count(p, 1);
        }
        if pr.alloc_get_page {
            self.page_get(p, 1, "alloc_device_page: get_page");
        }
        self.s.flags[p] |= PG_LOCKED;
        self.s.ledger.pages[p].driver = true;
    }

    /// The driver drops its allocation: unlock_page + put_page.
    pub(crate) fn free_device_page(&mut self, p: usize, cpu: usize) {
        self.s.ledger.pages[p].driver = false;
        self.s.flags[p] &= !PG_LOCKED;
        self.put_page_refs(p, 1, cpu, "free_device_page: put_page");
    }

    /// migrate_vma_insert_page + the finalize of a hole-fill migration.
    pub(crate) fn migrate_vma_insert_page(&mut self, proc: usize, addr: usize, p: usize, cpu: usize) {
        let slot = self.layout.pte_slot(proc, addr);
        // folio_get(dst) for the new mapping; page_add_new_anon_rmap
        self.page_get(p, 1, "migrate_vma_insert_page: folio_get");
        self.s.mc[p] += 1;
        self.s.mapping[p] = MAPPING_ANON;
        self.s.ptes[slot] = Pte::DevicePrivate { pfn: p as u16, write: true };
        self.s.ledger.pages[p].maps += 1;
        // migrate_vma_finalize: unlock + put the driver's allocation reference
        self.s.ledger.pages[p].driver = false;
        self.s.flags[p] &= !PG_LOCKED;
        self.put_page_refs(p, 1, cpu, "migrate_vma_finalize: folio_put(dst)");
    }
}
