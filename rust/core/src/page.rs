//! struct page refcounts and the put path.
//!
//! Mirrors `get_page`/`page_ref_inc`, `put_page` with its per-era ZONE_DEVICE
//! branches — E1's 1-based `put_devmap_managed_page` (2→1: `page_free` for
//! device-private, `wake_up_var` for FS-DAX; 1→0: `__put_page` →
//! `put_dev_pagemap`), E2/E3's `free_zone_device_page`, E4's
//! `free_zone_device_folio` — and the `page_free` callbacks of each type
//! (device-private drivers' free lists, `p2pdma_page_free`). Which branch runs
//! is chosen by [`TypeRules`](crate::rules::TypeRules); the code is written once.
//!
//! Page state lives in struct-of-arrays form in [`crate::machine::State`]:
//! `rc` (`_refcount`), `mc` (`_mapcount + 1`), `flags`, `mapping`.

use crate::machine::Machine;
use crate::oracle::{Class, Life};
use crate::rules::DeviceType;

/// `PG_locked`.
pub const PG_LOCKED: u8 = 1 << 0;
/// On its device-private driver's free list (the driver's view).
pub const PG_FREE_LIST: u8 = 1 << 1;
/// Allocated from the P2P gen_pool.
pub const PG_POOL: u8 = 1 << 2;
/// Still holds the pgmap reference memremap_pages took for it (E1 coupling).
pub const PG_INIT_REF: u8 = 1 << 3;

/// `page->mapping`: none, anonymous (device-private pages mapped into a
/// process), or a DAX file (`MAPPING_FILE + file`).
pub const MAPPING_NONE: u8 = 0;
pub const MAPPING_ANON: u8 = 1;
pub const MAPPING_FILE: u8 = 2;

/// One page-table entry of the model.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Pte {
    #[default]
    None,
    /// A present PTE. `refcounted` is false for the E1–E3 devmap/pfn
    /// mappings of FS-DAX and device-dax pages (`pte_devmap`: zap does not
    /// put the page, rmap does not count it).
    Present { pfn: u16, write: bool, refcounted: bool },
    /// A device-private swap entry (`SWP_DEVICE_READ` / `SWP_DEVICE_WRITE`):
    /// holds a page reference and a mapcount.
    DevicePrivate { pfn: u16, write: bool },
}

impl Pte {
    #[inline]
    pub fn pfn(self) -> Option<usize> {
        match self {
            Pte::None => None,
            Pte::Present { pfn, .. } | Pte::DevicePrivate { pfn, .. } => Some(pfn as usize),
        }
    }

    /// Does this entry hold a page reference and a mapcount?
    #[inline]
    pub fn holds_ref(self) -> bool {
        match self {
            Pte::None => false,
            Pte::Present { refcounted, .. } => refcounted,
            Pte::DevicePrivate { .. } => true,
        }
    }
}

impl Machine {
    /// A page of a pgmap whose struct pages are gone is being touched.
    /// Returns true (and reports I-L3) in that case.
    pub(crate) fn page_torn_down(&mut self, pfn: usize, what: &str) -> bool {
        let g = self.layout.pgmap_of(pfn);
        if self.s.ledger.life[g] == Life::TornDown {
            let what = what.to_string();
            self.violate("I-L3", Class::Safety, &[("pgmap", g as u32), ("pfn", pfn as u32)], || {
                (format!("{what} touches pfn {pfn} after memunmap_pages tore pgmap {g} down (use after free)"),
                 "struct pages present".into(), "torn down".into())
            });
            return true;
        }
        false
    }

    /// `get_page` / `page_ref_add`: `n` references on a page that already
    /// has one (a page at refcount 0 is free: raising it is a use after free).
    pub(crate) fn page_get(&mut self, pfn: usize, n: i32, what: &str) {
        self.page_get_from(pfn, n, 1, what)
    }

    /// `page_get` where the refcount may legitimately start at `min`: the
    /// E4 FS-DAX / P2P insert paths take the first reference of a 0-based page.
    pub(crate) fn page_get_from(&mut self, pfn: usize, n: i32, min: i32, what: &str) {
        if self.page_torn_down(pfn, what) {
            return;
        }
        self.touch_page(pfn);
        let old = self.s.rc[pfn];
        if old < min {
            let what = what.to_string();
            self.violate("I-F1", Class::Safety, &[("pfn", pfn as u32)], || {
                (format!("{what} takes a reference on pfn {pfn} whose refcount is {old}: the page is free"),
                 "refcount > 0".into(), format!("{old}"))
            });
        }
        self.s.rc[pfn] = old + n;
    }

    /// Set the refcount of a page being handed out by its allocator
    /// (`set_page_count(page, 1)` in zone_device_page_init / p2pdma).
    pub(crate) fn page_set_count(&mut self, pfn: usize, v: i32) {
        self.touch_page(pfn);
        self.s.rc[pfn] = v;
    }

    /// `put_page` of `n` references, with the era's ZONE_DEVICE hooks.
    pub(crate) fn put_page_refs(&mut self, pfn: usize, n: i32, cpu: usize, what: &str) {
        if self.page_torn_down(pfn, what) {
            return;
        }
        self.touch_page(pfn);
        let t = self.layout.type_of(pfn);
        let tr = self.rules.of(t).clone();
        let old = self.s.rc[pfn];
        let new = old - n;
        self.s.rc[pfn] = new;
        if new < 0 {
            let what = what.to_string();
            self.violate("I-F1", Class::Safety, &[("pfn", pfn as u32)], || {
                (format!("{what} drops pfn {pfn}'s refcount below zero ({old} - {n})"), ">= 0".into(), format!("{new}"))
            });
            return;
        }
        if new == 1 && old > 1 {
            // E1 put_devmap_managed_page: "the page is idle again"
            if tr.free_on_2to1 {
                self.page_free(pfn, cpu);
            }
            if tr.wake_on_2to1 {
                self.note_wake(pfn);
            }
        }
        if new == 0 && old > 0 {
            if tr.zero_warns {
                self.violate("I-F8", Class::Safety, &[("pfn", pfn as u32)], || {
                    (format!("{what} takes pfn {pfn} ({}) to refcount 0: the free path WARNs (this type has no \
                              page_free) and the page is left at 0", t.name()), "refcount stays >= 1".into(), "0".into())
                });
            }
            if tr.page_free_on_zero {
                self.page_free(pfn, cpu);
            }
            if tr.put_pgmap_on_zero {
                let g = self.layout.pgmap_of(pfn);
                self.s.flags[pfn] &= !PG_INIT_REF;
                self.pgmap_put(g, cpu, 1, "put_dev_pagemap (page refcount reached 0)");
            }
            if tr.reset_on_zero {
                self.s.rc[pfn] = 1;
            }
            if tr.wake_on_zero {
                self.note_wake(pfn);
            }
        }
    }

    /// FS-DAX `wake_up_var`: layout waiters re-check on their next step.
    fn note_wake(&mut self, pfn: usize) {
        self.trace_note(|| format!("wake_up_var(pfn {pfn})"));
    }

    /// `pgmap->ops->page_free(page)`: the page goes back to its allocator.
    /// The oracle checks that nobody holds it (I-F9) and that it carries no
    /// stale mapping into its next life (I-F2 is checked at reuse).
    pub(crate) fn page_free(&mut self, pfn: usize, cpu: usize) {
        let g = self.layout.pgmap_of(pfn);
        let h = self.s.ledger.pages[pfn];
        self.trace_note(|| format!("page_free(pfn {pfn})"));
        if h.in_use() {
            self.violate("I-F9", Class::Safety, &[("pgmap", g as u32), ("pfn", pfn as u32)], || {
                (format!("page_free returns pfn {pfn} to its allocator while it is held by {}", h.describe()),
                 "no holder".into(), h.describe())
            });
        }
        match self.layout.type_of(pfn) {
            DeviceType::Private => {
                if self.rules.private.free_clears_mapping {
                    self.s.mapping[pfn] = MAPPING_NONE;
                }
                if self.s.flags[pfn] & PG_FREE_LIST != 0 {
                    self.violate("I-F9", Class::Safety, &[("pfn", pfn as u32)], || {
                        (format!("page_free of pfn {pfn}, which is already on its driver's free list (double free)"),
                         "allocated".into(), "free".into())
                    });
                }
                self.s.flags[pfn] |= PG_FREE_LIST;
                self.s.flags[pfn] &= !PG_LOCKED;
            }
            DeviceType::P2pdma => {
                // p2pdma_page_free: gen_pool_free_owner(page) + percpu_ref_put
                if self.s.flags[pfn] & PG_POOL == 0 || h.p2p_kernel {
                    self.violate("I-F9", Class::Safety, &[("pfn", pfn as u32)], || {
                        (format!("p2pdma_page_free returns pfn {pfn} to the gen_pool, but it is not a user-space \
                                  allocation of its own"), "user-space P2P page".into(), "other".into())
                    });
                }
                self.s.flags[pfn] &= !PG_POOL;
                self.s.mapping[pfn] = MAPPING_NONE;
                self.pgmap_put(g, cpu, 1, "p2pdma_page_free");
            }
            // pmem and device-dax have no page_free of their own
            DeviceType::Fsdax | DeviceType::Generic => {}
        }
    }
}
