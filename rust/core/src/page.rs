//! struct page / folio refcounts and the put path.
//!
//! Mirrors `get_page`/`folio_get`/`page_ref_add`, `put_page`/`folio_put` with
//! their per-era ZONE_DEVICE branches — E1's 1-based `put_devmap_managed_page`
//! (2→1: `page_free` for device-private, `wake_up_var` for FS-DAX; 1→0:
//! `__put_page` → `put_dev_pagemap`), E2/E3's `free_zone_device_page`, E4's
//! `free_zone_device_folio`, E5's large-folio free (`folio_free` then
//! `percpu_ref_put_many(ref, nr)`) — the `page_free` callbacks of each type
//! (device-private drivers' free lists, `p2pdma_page_free`), and, for system
//! RAM, `__folio_put` back to the buddy allocator. Which branch runs is
//! chosen by [`TypeRules`](crate::rules::TypeRules); the code is written once.
//!
//! A reference on any page of a compound folio is a reference on its head
//! (`compound_head`, `page_folio`): the tails' own refcounts stay 0.
//!
//! Page state lives in struct-of-arrays form in [`crate::machine::State`]:
//! `rc` (`_refcount`), `mc` (per-page `_mapcount + 1`), `flags`, `mapping`,
//! `head`/`order` (compound geometry), `pincount`, `emc` (entire mapcount).

use crate::machine::Machine;
use crate::oracle::{Obs, Warn, LOCK_NONE};
use crate::rules::{AllocPgmapRef, DeviceType};
use crate::sched::TaskKind;

pub use crate::pagetable::Pte;

/// `PG_locked`.
pub const PG_LOCKED: u8 = 1; // bit 0
/// On its device-private driver's free list (the driver's view).
pub const PG_FREE_LIST: u8 = 1 << 1;
/// Allocated from the P2P gen_pool.
pub const PG_POOL: u8 = 1 << 2;
/// Still holds the pgmap reference memremap_pages took for it (E1 coupling).
pub const PG_INIT_REF: u8 = 1 << 3;
/// On an LRU list (system RAM folios only; ZONE_DEVICE folios never are).
pub const PG_LRU: u8 = 1 << 4;
/// `PG_dirty`: the folio's data must be written back before it is dropped.
pub const PG_DIRTY: u8 = 1 << 5;
/// Free in the buddy allocator (system RAM).
pub const PG_BUDDY: u8 = 1 << 6;

/// `page->mapping`: none, a DAX file (`MAPPING_FILE + file`), or an
/// `anon_vma` with `PAGE_MAPPING_ANON` set (device-private and coherent pages
/// mapped into a process, anonymous system RAM): [`anon_mapping`] of the
/// anon_vma's id. Each process's VMA has its own anon_vma, whose id is the
/// process slot (`rmap.rs`).
pub const MAPPING_NONE: u8 = 0;
pub const MAPPING_FILE: u8 = 2;
/// The `PAGE_MAPPING_ANON` bit of the model's `mapping` byte.
pub const MAPPING_ANON_BIT: u8 = 0x80;

/// `page->mapping` for anon_vma `av` (`anon_vma + PAGE_MAPPING_ANON`).
#[inline]
pub const fn anon_mapping(av: usize) -> u8 {
    MAPPING_ANON_BIT | (av as u8 & 0x7f)
}

/// `PageAnon`: the mapping names an anon_vma.
#[inline]
pub const fn is_anon_mapping(m: u8) -> bool {
    m & MAPPING_ANON_BIT != 0
}

/// The anon_vma an anonymous mapping names, if it is one.
#[inline]
pub const fn anon_vma_of(m: u8) -> Option<usize> {
    if is_anon_mapping(m) {
        Some((m & 0x7f) as usize)
    } else {
        None
    }
}

/// A DAX file's `address_space`.
#[inline]
pub const fn is_file_mapping(m: u8) -> bool {
    m >= MAPPING_FILE && !is_anon_mapping(m)
}

impl Machine {
    /// A page of a pgmap whose struct pages are gone is being touched.
    /// Returns true (and reports I-L3) in that case.
    pub(crate) fn page_torn_down(&mut self, pfn: usize, what: &str) -> bool {
        self.observe(Obs::PageTouched { pfn, what })
    }

    /// `compound_head(page)`.
    #[inline]
    pub(crate) fn head_of(&self, pfn: usize) -> usize {
        self.s.head[pfn] as usize
    }

    /// `folio_nr_pages` of the folio whose head is `h`.
    #[inline]
    pub(crate) fn folio_nr(&self, h: usize) -> usize {
        1 << self.s.order[h]
    }

    /// `get_page` / `folio_get` / `page_ref_add`: `n` references on a page
    /// that already has one (a page at refcount 0 is free: raising it is a
    /// use after free).
    pub(crate) fn page_get(&mut self, pfn: usize, n: i32, what: &str) {
        self.page_get_from(pfn, n, 1, what)
    }

    /// `page_get` where the refcount may legitimately start at `min`: the
    /// E4 FS-DAX / P2P insert paths take the first reference of a 0-based page.
    pub(crate) fn page_get_from(&mut self, pfn: usize, n: i32, min: i32, what: &str) {
        if self.page_torn_down(pfn, what) {
            return;
        }
        let h = self.head_of(pfn);
        self.touch_page(h);
        let old = self.s.rc[h];
        if self.rules.pgmap.page_refs_take_pgmap_refs && !self.layout.is_ram(h) && !self.in_gup_grab {
            // get_zone_device_page (before v4.11)
            let g = self.layout.pgmap_of(h);
            self.s.page_pgmap_refs[g] += n as i64;
            self.pgmap_get(g, 0, n as u64, "get_zone_device_page");
        }
        self.observe(Obs::RefTaken { pfn: h, old, min, what });
        self.s.rc[h] = old + n;
    }

    /// Set the refcount of a page being handed out by its allocator
    /// (`set_page_count(page, 1)` in zone_device_page_init / p2pdma).
    pub(crate) fn page_set_count(&mut self, pfn: usize, v: i32) {
        self.touch_page(pfn);
        self.s.rc[pfn] = v;
    }

    /// `put_page` / `folio_put_refs` of `n` references, with the era's
    /// ZONE_DEVICE hooks.
    pub(crate) fn put_page_refs(&mut self, pfn: usize, n: i32, cpu: usize, what: &str) {
        if self.page_torn_down(pfn, what) {
            return;
        }
        let pfn = self.head_of(pfn);
        self.touch_page(pfn);
        let old = self.s.rc[pfn];
        let new = old - n;
        self.s.rc[pfn] = new;
        if self.rules.pgmap.page_refs_take_pgmap_refs && !self.layout.is_ram(pfn) {
            // put_zone_device_page (before v4.11)
            let g = self.layout.pgmap_of(pfn);
            self.s.page_pgmap_refs[g] -= n as i64;
            self.pgmap_put(g, cpu, n as u64, "put_zone_device_page");
        }
        if self.observe(Obs::RefDropped { pfn, old, n, what }) {
            return;
        }
        let Some(t) = self.layout.type_of(pfn) else {
            // system RAM: the last put frees the folio to the buddy allocator
            if new == 0 && old > 0 {
                self.free_ram_folio(pfn);
            }
            return;
        };
        let tr = *self.rules.of(t);
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
                // E2/E3 free_zone_device_page: WARN_ON_ONCE(!pgmap->ops->page_free)
                self.observe(Obs::Warned { warn: Warn::FreeWithoutPageFree { pfn, ty: t }, what });
            }
            // free_zone_device_folio: the folio's size is read before the
            // callback in every era (`nr = folio_nr_pages(folio)` at the top)
            let nr = self.folio_nr(pfn);
            // v6.19 (d245f9b4ab80): an anonymous folio clears AnonExclusive
            // on every page; any other large folio is not expected
            // (`VM_WARN_ON_ONCE(folio_test_large(folio))`), and an FS-DAX
            // PMD folio is one, until "mm/memremap: fix spurious large folio
            // warning for FS-DAX" exempted FS-DAX. (The same test would see
            // a large device-private folio its driver frees before it was
            // ever mapped; docs/findings.md says why that is not modelled.)
            if nr > 1 && t == DeviceType::Fsdax && self.rules.thp.free_warns_large_file_folio {
                self.observe(Obs::Warned { warn: Warn::LargeFolioNotAnon { pfn, ty: t, nr }, what });
            }
            if tr.page_free_on_zero {
                self.page_free(pfn, cpu);
            }
            if tr.put_pgmap_on_zero {
                let g = self.layout.pgmap_of(pfn);
                for p in pfn..pfn + nr {
                    self.s.flags[p] &= !PG_INIT_REF;
                }
                // E3: put_dev_pagemap; E5: percpu_ref_put_many(ref, nr)
                let refs = if self.rules.private.alloc_pgmap_ref == AllocPgmapRef::TrygetMany && t.driver_allocated() {
                    nr
                } else {
                    1
                };
                // Where the era reads folio->pgmap only now, after the
                // driver got the folio back, and the driver can hand its
                // pages out as parts of larger folios, the rest of the free
                // path is a task: the driver may reallocate the page before
                // it runs. Without a free task slot it runs at once (the
                // shape's `tasks` bounds what can be in flight).
                // (Coherent pages are order-0 in the model: never a tail.)
                let window = t == DeviceType::Private
                    && tr.page_free_on_zero
                    && self.rules.thp.free_rereads_pgmap
                    && self.rules.thp.device_private;
                let kind = TaskKind::FreeFolio { pfn: pfn as u16, nr: refs as u16 };
                if window && self.spawn(kind, cpu).is_some() {
                    // the task holds those references until it puts them
                    self.s.ledger.inflight_pgmap_refs[g] += refs as u16;
                } else {
                    self.pgmap_put(g, cpu, refs as u64, "put_dev_pagemap (page refcount reached 0)");
                }
            }
            if tr.reset_on_zero {
                self.s.rc[pfn] = 1;
            }
            if tr.wake_on_zero {
                self.note_wake(pfn);
            }
        }
    }

    /// The rest of `free_zone_device_folio` once `->folio_free()` has
    /// returned, as a task (the window `thp.free_rereads_pgmap` opens):
    /// `percpu_ref_put_many(&folio->pgmap->ref, nr)` with `nr` read before
    /// the callback and `folio->pgmap` read now. `pgmap` shares its word
    /// with `compound_head` (struct folio overlays it on the head page's
    /// `lru`; a tail page keeps its head there, bit 0 set), so if the driver
    /// reallocated the page as a tail of a larger folio in the meantime the
    /// read returns that head, not a pgmap (I-F3), and the put goes through
    /// a wild pointer. A page reallocated as a head still holds its pgmap:
    /// a page never changes pgmap.
    pub(crate) fn free_folio_put_pgmap(&mut self, pfn: usize, nr: usize, cpu: usize) {
        let head = self.head_of(pfn);
        if self.observe(Obs::PgmapReadAfterFree { pfn, head }) {
            return;
        }
        let g = self.layout.pgmap_of(pfn);
        self.s.ledger.inflight_pgmap_refs[g] -= nr as u16;
        self.pgmap_put(g, cpu, nr as u64, "percpu_ref_put_many (folio->pgmap read after ->folio_free())");
    }

    /// FS-DAX `wake_up_var`: layout waiters re-check on their next step.
    fn note_wake(&mut self, pfn: usize) {
        self.trace_note(|| format!("wake_up_var(pfn {pfn})"));
    }

    /// `pgmap->ops->page_free(page)` / `folio_free(folio)`: the folio goes
    /// back to its allocator. The oracle checks that nobody holds any of its
    /// pages (I-F9) and that it carries no stale mapping into its next life
    /// (I-F2 is checked at reuse).
    pub(crate) fn page_free(&mut self, pfn: usize, cpu: usize) {
        let g = self.layout.pgmap_of(pfn);
        let nr = self.folio_nr(pfn);
        self.trace_note(|| {
            if nr > 1 {
                format!("folio_free(pfn {pfn}, {nr} pages)")
            } else {
                format!("page_free(pfn {pfn})")
            }
        });
        // the driver's free list is the driver's view: a page already on
        // it is freed twice
        let already_free = if self.layout.is_driver_allocated(pfn) {
            (pfn..pfn + nr).find(|&p| self.s.flags[p] & PG_FREE_LIST != 0)
        } else {
            None
        };
        self.observe(Obs::ReturnedToAllocator { pgmap: g, head: pfn, nr, already_free });
        match self.layout.type_of(pfn) {
            Some(DeviceType::Private | DeviceType::Coherent) => {
                if nr > 1 && self.rules.thp.free_prepare {
                    // free_zone_device_folio_prepare: standalone order-0 pages
                    self.restore_order0(pfn, nr);
                }
                for p in pfn..pfn + nr {
                    if self.rules.private.free_clears_mapping {
                        self.s.mapping[p] = MAPPING_NONE;
                    }
                    self.s.flags[p] |= PG_FREE_LIST;
                    self.s.flags[p] &= !(PG_LOCKED | PG_DIRTY);
                    self.s.ledger.locker[p] = LOCK_NONE;
                    self.s.ledger.migrated_away[p] = false;
                    self.s.ledger.pages[p].dirty_pte = false;
                }
            }
            Some(DeviceType::P2pdma) => {
                // p2pdma_page_free: gen_pool_free_owner(page) + percpu_ref_put
                self.observe(Obs::ReturnedToP2pPool { pfn, mmap_page: self.s.flags[pfn] & PG_POOL != 0 });
                self.s.flags[pfn] &= !PG_POOL;
                self.s.mapping[pfn] = MAPPING_NONE;
                self.pgmap_put(g, cpu, 1, "p2pdma_page_free");
            }
            // pmem and device-dax have no page_free of their own
            _ => {}
        }
    }

    /// `__folio_put` of a system RAM folio: back to the buddy allocator.
    pub(crate) fn free_ram_folio(&mut self, h: usize) {
        let nr = self.folio_nr(h);
        self.trace_note(|| {
            format!("free_unref_folio(pfn {h}{})", if nr > 1 { format!(", {nr} pages") } else { String::new() })
        });
        self.observe(Obs::ReturnedToBuddy { head: h, nr });
        self.restore_order0(h, nr);
        for p in h..h + nr {
            self.s.flags[p] = PG_BUDDY;
            self.s.mapping[p] = MAPPING_NONE;
            self.s.mc[p] = 0;
            self.s.ledger.locker[p] = LOCK_NONE;
            self.s.ledger.migrated_away[p] = false;
            self.s.ledger.pages[p].dirty_pte = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oracle::{Invariant, Life};
    use crate::program::text::parse_program;
    use crate::{Config, Rules};

    fn machine(preset: &str, text: &str) -> Machine {
        let p = parse_program(text).unwrap();
        let mut m = Machine::new(Config::with_shape(Rules::preset(preset).unwrap(), p.shape.clone())).unwrap();
        m.set_tracing(true);
        for op in &p.ops {
            m.step(op).unwrap();
        }
        assert!(m.violation().is_none(), "{:?}", m.violation());
        m
    }

    const ONE_PRIVATE: &str = "
config types=private pgmaps=1 pages=1 cpus=1 procs=1 addrs=1 tasks=1
memremap_pages pgmap=0
";

    /// E1: the put that takes a page to 0 gives back that page's init
    /// reference (`__put_page` -> `put_dev_pagemap`): the page no longer
    /// counts among those `memunmap_pages` still owes a reference for, and
    /// only that page.
    #[test]
    fn an_e1_page_reaching_zero_gives_back_its_own_init_reference() {
        let two = ONE_PRIVATE.replace("pages=1", "pages=2");
        let mut m = machine("e1", &two);
        assert!((0..2).all(|p| m.s.flags[p] & PG_INIT_REF != 0));
        let before = m.s.pgmaps[0].pref.count();
        m.put_page_refs(1, 1, 0, "put_page");
        assert_eq!(m.s.rc[1], 0);
        assert_eq!(m.s.flags[1] & PG_INIT_REF, 0, "pfn 1 gave its init reference back");
        assert_ne!(m.s.flags[0] & PG_INIT_REF, 0, "pfn 0 still owes one");
        assert_eq!(m.s.pgmaps[0].pref.count(), before - 1);
    }

    /// A page of a torn-down pgmap is not touched: the get or put is I-L3
    /// and the refcount stays as it was.
    #[test]
    fn a_page_of_a_torn_down_pgmap_is_left_alone() {
        for get in [true, false] {
            let mut m = machine("e3", ONE_PRIVATE);
            let rc = m.s.rc[0];
            m.s.ledger.life[0] = Life::TornDown;
            if get {
                m.page_get_from(0, 1, 0, "get_page");
            } else {
                m.put_page_refs(0, 1, 0, "put_page");
            }
            assert_eq!(m.violation().map(|v| v.invariant), Some(Invariant::L3));
            assert_eq!(m.s.rc[0], rc);
        }
    }

    /// The driver's free list is its own view: a device-private page already
    /// on it is freed twice (I-F9).
    #[test]
    fn a_private_page_freed_twice_is_i_f9() {
        let mut m = machine("e3", ONE_PRIVATE);
        assert_ne!(m.s.flags[0] & PG_FREE_LIST, 0, "a fresh page is on the driver's free list");
        m.page_free(0, 0);
        let v = m.violation().expect("freed twice");
        assert_eq!(v.invariant, Invariant::F9);
        assert!(v.message.contains("already"), "{}", v.message);
    }

    /// A device-private page goes back to its driver unlocked and clean.
    #[test]
    fn a_freed_private_page_is_unlocked_and_clean() {
        let mut m = machine("e3", &format!("{ONE_PRIVATE}alloc_device_page pgmap=0 cpu=0\n"));
        assert_eq!(m.s.flags[0] & PG_FREE_LIST, 0);
        m.s.flags[0] |= PG_DIRTY;
        m.page_free(0, 0);
        assert_eq!(m.s.flags[0] & (PG_LOCKED | PG_DIRTY), 0, "flags {:#x}", m.s.flags[0]);
        assert_ne!(m.s.flags[0] & PG_FREE_LIST, 0);
    }

    /// Only a page a user-space mapping took from the P2P pool goes back to
    /// it through `p2pdma_page_free` (I-F9 otherwise).
    #[test]
    fn a_p2p_page_outside_the_pool_is_not_freed_to_it() {
        let mut m = machine(
            "e3",
            "config types=p2pdma pgmaps=1 pages=1 cpus=1 procs=1 addrs=1 tasks=1\nmemremap_pages pgmap=0\n",
        );
        assert_eq!(m.s.flags[0] & PG_POOL, 0);
        m.page_free(0, 0);
        assert_eq!(m.violation().map(|v| v.invariant), Some(Invariant::F9));
    }

    /// `page_free` / `folio_free` and FS-DAX wake-ups show in the trace.
    #[test]
    fn frees_and_wake_ups_are_traced() {
        let notes =
            |mut m: Machine| m.verdict().trace.iter().flat_map(|t| t.notes.clone()).collect::<Vec<_>>().join("; ");
        // E5: a large device-private folio goes back as one folio_free
        let m = machine(
            "e5",
            "
config types=private pgmaps=1 pages=2 cpus=1 procs=1 addrs=1 tasks=1 ram=2 order=1
memremap_pages pgmap=0
alloc_device_folio pgmap=0 cpu=0
free_device_page pfn=0 cpu=0
",
        );
        let n = notes(m);
        assert!(n.contains("folio_free(pfn 0, 2 pages)"), "{n}");
        let m = machine(
            "e3",
            "
config types=private pgmaps=1 pages=1 cpus=1 procs=1 addrs=1 tasks=1
memremap_pages pgmap=0
alloc_device_page pgmap=0 cpu=0
free_device_page pfn=0 cpu=0
",
        );
        let n = notes(m);
        assert!(n.contains("page_free(pfn 0)"), "{n}");
        // E4 FS-DAX: the last reference wakes the layout waiters
        let m = machine(
            "e4",
            "
config types=fsdax pgmaps=1 pages=1 cpus=1 procs=1 addrs=1 files=1 file_pages=1 tasks=1
memremap_pages pgmap=0
dax_associate_entry file=0 index=0 pfn=0
dax_iomap_fault proc=0 addr=0 file=0 index=0 cpu=0
get_user_pages proc=0 addr=0 flags=0 cpu=0
put_page pfn=0 by=gup cpu=0
munmap proc=0 addr=0 cpu=0
",
        );
        let n = notes(m);
        assert!(n.contains("wake_up_var(pfn 0)"), "{n}");
    }
}
