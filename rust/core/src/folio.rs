//! Compound (large) folios: geometry, pins, `can_split_folio` and the split.
//!
//! Mirrors `prep_compound_page` (every page of the folio points at the head;
//! the refcount lives on the head only, tails stay at 0), the large-folio
//! pin accounting of `try_grab_folio` / `gup_put_folio` (`_pincount` + 1 and
//! one reference per pin, instead of `GUP_PIN_COUNTING_BIAS` for a small
//! folio), `can_split_folio` (splittable iff the mapcount accounts for every
//! reference but the page-cache ones and the caller's pins; the 2020 THP
//! patch expected one extra pin on device-private folios), and
//! `__split_huge_page` / `split_huge_page_to_list_to_order`: freeze the
//! refcount, give every new order-0 folio the references of its own
//! mappings, call the device-private `folio_split` callback (E5: the
//! default copies `pgmap` and `mapping`; the 2020 patch unfroze each tail at
//! 2 and took `percpu_ref_get_many(ref, nr - 1)`), and unfreeze. Device
//! pgmap references are per base page in E5, so a split leaves them alone.
//!
//! Also `free_zone_device_folio_prepare` (2026): a freed large device folio
//! becomes standalone order-0 pages before `folio_free`.

use crate::machine::{ok, Machine};
use crate::oracle::Obs;
use crate::page::{anon_vma_of, is_file_mapping};
use crate::pagetable::Pte;
use crate::rules::DeviceType;

impl Machine {
    /// `prep_compound_page(page, order)` on `h .. h + nr`. A page that still
    /// carries the compound head of another, differently shaped folio is
    /// stale metadata the allocation did not expect (I-F4).
    pub(crate) fn prep_compound(&mut self, h: usize, order: usize) {
        let nr = 1usize << order;
        for p in h..h + nr {
            self.check_standalone(p, h, order);
            self.s.head[p] = h as u16;
            self.s.order[p] = 0;
            self.s.pincount[p] = 0;
            self.s.emc[p] = 0;
            self.touch_page(p);
        }
        self.s.order[h] = order as u8;
    }

    /// I-F4: a page handed out by a device-private allocator as part of a
    /// folio with head `h` and `order` must not carry compound metadata of
    /// an earlier folio of another shape (`free_zone_device_folio_prepare`
    /// is what clears it).
    pub(crate) fn check_standalone(&mut self, p: usize, h: usize, order: usize) {
        let old_head = self.s.head[p] as usize;
        let old_order = self.s.order[old_head] as usize;
        self.observe(Obs::CompoundPrepared { pfn: p, head: h, order, old_head, old_order });
    }

    /// Make `h .. h + nr` standalone order-0 pages again (what a split and
    /// `free_zone_device_folio_prepare` do to the geometry).
    pub(crate) fn restore_order0(&mut self, h: usize, nr: usize) {
        for p in h..h + nr {
            self.s.head[p] = p as u16;
            self.s.order[p] = 0;
            self.s.pincount[p] = 0;
            self.s.emc[p] = 0;
            self.touch_page(p);
        }
    }

    /// `folio_mapcount`: the entire (PMD) mapcount plus every page's PTE
    /// mapcount.
    pub(crate) fn folio_mapcount(&self, h: usize) -> i32 {
        let nr = self.folio_nr(h);
        self.s.emc[h] + self.s.mc[h..h + nr].iter().sum::<i32>()
    }

    /// The processes the split's `unmap_folio` walks, a bit each, or None
    /// when `split_huge_page_to_list_to_order` returns -EBUSY before it: an
    /// anonymous folio is walked through its anon_vma, which the split first
    /// pins with `folio_get_anon_vma` (NULL, so -EBUSY, unless the folio is
    /// still mapped and its anon_vma still live: an `atomic_inc_not_zero`
    /// under RCU, never a use after free, hence no I-M10 here); a file
    /// folio through `i_mmap` (every process); a folio with no mapping is
    /// -EBUSY (mm/huge_memory.c, since the v4.5 THP refcount rework).
    pub(crate) fn split_walk_procs(&mut self, h: usize) -> Option<u8> {
        let m = self.s.mapping[h];
        if let Some(av) = anon_vma_of(m) {
            let mask =
                (0..self.layout.procs).filter(|&p| self.s.avc[p] >> av & 1 != 0).fold(0u8, |acc, p| acc | 1 << p);
            if self.folio_mapcount(h) == 0 || mask == 0 {
                self.trace_note(|| format!("split of folio {h}: folio_get_anon_vma: NULL (not mapped): -EBUSY"));
                return None;
            }
            Some(mask)
        } else if is_file_mapping(m) {
            Some(u8::MAX)
        } else {
            self.trace_note(|| format!("split of folio {h}: no mapping: -EBUSY"));
            None
        }
    }

    /// Is any page of the folio held by anybody (the ledger's view)?
    pub(crate) fn folio_in_use(&self, h: usize) -> bool {
        let nr = self.folio_nr(h);
        self.s.ledger.pages[h..h + nr].iter().any(|x| x.in_use())
    }

    /// `can_split_folio(folio, caller_pins)`: every reference is a mapping,
    /// a page-cache reference (none for anonymous and device memory here)
    /// or one of the caller's.
    pub(crate) fn can_split_folio(&self, h: usize, caller_pins: i32) -> bool {
        let extra = if self.rules.thp.can_split_extra_pin && self.layout.is_private(h) { 1 } else { 0 };
        self.folio_mapcount(h) == self.s.rc[h] - caller_pins - extra
    }

    /// Split the large folio at `h` into order-0 folios. The caller holds
    /// `caller_refs` references on the head (the collect reference of an
    /// unmapped split; 0 for `split_huge_page` of a mapped folio, whose PMD
    /// mappings are split first). Every new folio gets the references of its
    /// own mappings (and, for an unmapped split, the caller's reference on
    /// each piece — `migrate_vma_split_unmapped_folio` then treats each as
    /// collected). Returns false (-EBUSY) when `can_split_folio` says no.
    pub(crate) fn split_folio(&mut self, h: usize, caller_refs: i32, per_piece_refs: i32, cpu: usize) -> bool {
        let nr = self.folio_nr(h);
        if nr == 1 {
            return true;
        }
        // PMD mappings become PTE mappings first: `unmap_folio` is an rmap
        // walk, `try_to_migrate(folio, TTU_SPLIT_HUGE_PMD)`, so only the
        // VMAs the folio's anon_vma reaches are visited (a split of an
        // unmapped folio, `per_piece_refs > 0`, has no mapping to walk)
        if per_piece_refs == 0 {
            let Some(mask) = self.split_walk_procs(h) else {
                return false;
            };
            for proc in (0..self.layout.procs).filter(|&p| mask >> p & 1 != 0) {
                for b in 0..self.layout.blocks {
                    if self.s.pmds[proc * self.layout.blocks + b].pfn() == Some(h) {
                        self.split_huge_pmd(proc, b << self.layout.order);
                    }
                }
            }
            // a PMD the walk did not reach still holds its reference, so
            // `folio_ref_freeze(folio, 1 + extra_pins)` fails: -EAGAIN after
            // remap_page (only with a wrong anon_vma, which I-F2 reports
            // where it was set)
            let left = (0..self.layout.procs * self.layout.blocks).any(|i| self.s.pmds[i].pfn() == Some(h));
            if left {
                self.trace_note(|| {
                    format!("split of folio {h}: a PMD the rmap walk missed: -EAGAIN (folio_ref_freeze)")
                });
                return false;
            }
        }
        if !self.can_split_folio(h, caller_refs) {
            self.trace_note(|| format!("split of folio {h}: -EBUSY (can_split_folio)"));
            return false;
        }
        let private = self.layout.type_of(h) == Some(DeviceType::Private);
        let g = self.layout.type_of(h).map(|_| self.layout.pgmap_of(h));
        let ref_before = g.map(|g| self.s.pgmaps[g].pref.count());
        let rc_before = self.s.rc[h];
        let tail_extra = if private { self.rules.thp.split_tail_extra as i32 } else { 0 };
        self.restore_order0(h, nr);
        let mut total = 0;
        for p in h..h + nr {
            // the refcount every new folio is unfrozen with: its own mappings,
            // the caller's per-piece references, and (2020 patch) one more
            // for each tail of a device-private folio
            let own = self.s.mc[p] + per_piece_refs;
            let v = if p == h { own + caller_refs - per_piece_refs } else { own + tail_extra };
            self.s.rc[p] = v;
            total += v;
        }
        if private && self.rules.thp.split_pgmap_get {
            if let Some(g) = g {
                // the 2020 patch: percpu_ref_get_many(pgmap->ref, nr - 1)
                self.pgmap_get(g, 0, nr as u64 - 1, "split_huge_page: percpu_ref_get_many(nr - 1)");
                self.s.split_pgmap_refs[g] += nr as u32 - 1;
            }
        }
        // __split_huge_page_tail: `page_tail->mapping = head->mapping` (an
        // anonymous folio's pieces keep its anon_vma); for a device-private
        // folio pgmap->ops->folio_split(head, tail) does the same (the
        // default copies pgmap — implicit here: a pfn's pgmap is fixed — and
        // mapping)
        let m = self.s.mapping[h];
        self.s.mapping[h..h + nr].fill(m);
        self.trace_note(|| {
            format!("split folio {h} ({nr} pages){}", if private { ", folio_split callbacks" } else { "" })
        });
        // I-T2: a split moves references, it never creates or drops them;
        // pgmap references are per base page and do not change
        let expect = rc_before + (nr as i32 - 1) * per_piece_refs;
        self.observe(Obs::SplitRefs { head: h, nr, total, expect });
        if let (Some(g), Some(before)) = (g, ref_before) {
            let after = self.s.pgmaps[g].pref.count();
            self.observe(Obs::SplitPgmapRef { pgmap: g, head: h, before, after });
        }
        // a piece nobody maps or holds is freed: __split_huge_page drops
        // its own reference on every new folio (free_folio_and_swap_cache)
        for p in h..h + nr {
            if self.s.rc[p] == 0 && self.violation.is_none() {
                self.s.rc[p] = 1;
                self.put_page_refs(p, 1, cpu, "__split_huge_page: folio_put (unreferenced piece)");
            }
        }
        true
    }

    /// A page-table walker that inspects the PMD covering (proc, addr):
    /// mbind's `queue_folios_pmd`, MADV_COLD/PAGEOUT, MADV_FREE. Before the
    /// 2026 fixes for 368076f52ebe they took any non-none PMD that was not a
    /// migration entry for a present THP; a device-private PMD (E5) then
    /// yields a bogus folio pointer (I-T3).
    pub(crate) fn mbind(&mut self, proc: usize, addr: usize) {
        let pmd = self.s.pmds[self.layout.pmd_slot(proc, addr)];
        // what the walker takes the entry for is the modelled kernel's code;
        // whether that was right is the oracle's judgement (I-T3)
        let taken_for_thp = match pmd {
            Pte::Present { .. } => true,
            Pte::DevicePrivate { .. } => !self.rules.thp.walkers_know_device_pmd,
            _ => false,
        };
        match pmd {
            Pte::Present { pfn, .. } => self.trace_note(|| format!("queue_folios_pmd: THP at pfn {pfn}")),
            _ if taken_for_thp => {}
            _ => self.trace_note(|| "queue_folios_pmd: not a present THP, skipped".into()),
        }
        self.observe(Obs::PmdWalked { proc, pmd, taken_for_thp });
    }
}

// ---------------------------------------------------------------------------
// Legality: when the actors may call these kernel functions
// ---------------------------------------------------------------------------

use crate::page::PG_LOCKED;
use crate::pagetable::Level;
use crate::program::op::Op;

impl Machine {
    /// Is `SplitHugePage` allowed now (the actor's contract)?
    pub(crate) fn split_huge_page_enabled(&self, op: &Op) -> Result<(), &'static str> {
        let p = op.a(0);
        let h = self.head_of(p);
        ok(self.folio_nr(h) > 1, "not part of a large folio")?;
        // a DAX folio is neither anonymous nor in a page cache the split
        // knows: nothing splits it but dax_folio_put when its entry goes
        ok(!self.layout.is_dax_pmd(h), "a DAX folio is not split (only dax_folio_put undoes it)")?;
        ok(self.s.rc[h] > 0, "the folio is free")?;
        ok(self.s.flags[h] & PG_LOCKED == 0, "the folio is locked")?;
        ok(!self.s.ledger.pages[h].driver, "the driver holds the folio")?;
        ok(self.s.ptl.iter().all(|&o| o == 0), "a task holds a page-table lock")
    }

    /// Is `Mbind` allowed now (the actor's contract)?
    pub(crate) fn mbind_enabled(&self, op: &Op) -> Result<(), &'static str> {
        self.mm_ok(op.a(0), op.a(1))?;
        let (e, level) = self.entry(op.a(0), op.a(1));
        ok(level == Level::Pmd, "no PMD entry here")?;
        ok(!self.maps_dax_block(e), "the walkers skip a DAX VMA (vma_migratable is false for it)")
    }
}
