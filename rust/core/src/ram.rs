//! System RAM: the anonymous memory that device-private memory migrates
//! from and back to.
//!
//! Mirrors the page allocator as far as refcounts go (`alloc_pages`: a folio
//! comes out of the buddy allocator with refcount 1, `__folio_put` returns
//! it at 0), the anonymous fault paths (`do_anonymous_page`: a zeroed page
//! mapped writable, on the LRU; `do_huge_pmd_anonymous_page`: a THP mapped by
//! one PMD), copy-on-write (`do_wp_page`: reuse an exclusive page, else copy
//! it), and the LRU flag that migration isolates (`folio_isolate_lru`,
//! `folio_putback_lru`).

use crate::machine::{ok, Machine};
use crate::oracle::Obs;
use crate::page::{PG_BUDDY, PG_LRU};
use crate::pagetable::{Level, Pte};

impl Machine {
    /// First fit of an aligned free block of `1 << order` RAM pages.
    pub(crate) fn ram_fit(&self, order: usize) -> Option<usize> {
        let nr = 1usize << order;
        let r = self.layout.ram_pfns();
        let mut p = r.start;
        while p + nr <= r.end {
            if (p - r.start) % nr == 0 && (p..p + nr).all(|q| self.s.flags[q] & PG_BUDDY != 0) {
                return Some(p);
            }
            p += 1;
        }
        None
    }

    /// `alloc_pages(order)`: a folio at refcount 1 (the caller's reference).
    pub(crate) fn ram_alloc(&mut self, order: usize) -> Option<usize> {
        let h = self.ram_fit(order)?;
        let nr = 1usize << order;
        for p in h..h + nr {
            self.s.flags[p] = 0;
            self.s.mc[p] = 0;
            self.s.content[p] = 0;
        }
        if order > 0 {
            self.prep_compound(h, order);
        }
        self.page_set_count(h, 1);
        // page->mapping is set by whoever maps it: folio_add_new_anon_rmap
        // (a fault, a COW copy), or folio_migrate_mapping for a migration's
        // destination (the source's anon_vma)
        Some(h)
    }

    /// Free RAM pages (for contracts that need an allocation to succeed).
    pub(crate) fn ram_free_pages(&self) -> usize {
        self.layout.ram_pfns().filter(|&p| self.s.flags[p] & PG_BUDDY != 0).count()
    }

    /// `do_anonymous_page`: a zeroed page mapped writable at (proc, addr).
    pub(crate) fn do_anonymous_page(&mut self, proc: usize, addr: usize) {
        let Some(p) = self.ram_alloc(0) else { return };
        // the allocation reference becomes the mapping's (folio_add_new_anon_rmap)
        self.s.rc[p] = 0;
        self.folio_add_new_anon_rmap(p, proc);
        self.install_entry(proc, addr, Level::Pte, Pte::present(p, true), 0, "do_anonymous_page");
        self.s.flags[p] |= PG_LRU;
        let v = self.layout.pte_slot(proc, addr);
        self.s.ledger.vcontent[v] = 0;
    }

    /// `do_huge_pmd_anonymous_page`: a THP mapped by the PMD of addr's block.
    pub(crate) fn do_huge_pmd_anonymous_page(&mut self, proc: usize, addr: usize) {
        let Some(h) = self.ram_alloc(self.layout.order) else { return };
        self.s.rc[h] = 0;
        self.folio_add_new_anon_rmap(h, proc);
        let start = self.block_start(addr);
        self.install_entry(proc, start, Level::Pmd, Pte::present(h, true), 0, "do_huge_pmd_anonymous_page");
        self.s.flags[h] |= PG_LRU;
        for a in start..start + self.layout.nr_huge() {
            let v = self.layout.pte_slot(proc, a);
            self.s.ledger.vcontent[v] = 0;
        }
    }

    /// Would a write to (proc, addr) need a new page (a copy-on-write of a
    /// shared anonymous page)?
    pub(crate) fn write_needs_copy(&self, proc: usize, addr: usize) -> bool {
        match self.entry(proc, addr).0 {
            Pte::Present { pfn, write: false, .. } if self.layout.is_cpu_anon(pfn as usize) => {
                let h = self.head_of(pfn as usize);
                // do_wp_page reuses a page only it maps and nobody else holds
                !(self.folio_mapcount(h) == 1 && self.s.rc[h] == 1)
            }
            _ => false,
        }
    }

    /// `do_wp_page`: make (proc, addr) writable, copying a shared page.
    pub(crate) fn do_wp_page(&mut self, proc: usize, addr: usize, cpu: usize) {
        let (e, level) = self.entry(proc, addr);
        let Pte::Present { pfn, .. } = e else { return };
        let p = pfn as usize;
        if !self.write_needs_copy(proc, addr) {
            // wp_page_reuse
            match level {
                Level::Pte => {
                    let s = self.layout.pte_slot(proc, addr);
                    if let Pte::Present { write, .. } = &mut self.s.ptes[s] {
                        *write = true;
                    }
                }
                Level::Pmd => {
                    let s = self.layout.pmd_slot(proc, addr);
                    if let Pte::Present { write, .. } = &mut self.s.pmds[s] {
                        *write = true;
                    }
                }
            }
            return;
        }
        if level == Level::Pmd {
            // do_huge_pmd_wp_page falls back to the PTE level
            self.split_huge_pmd(proc, addr);
        }
        let Some(n) = self.ram_alloc(0) else { return };
        self.s.content[n] = self.s.content[p];
        self.s.ledger.pages[n].dirty_pte = self.s.ledger.pages[p].dirty_pte;
        self.s.rc[n] = 0;
        // wp_page_copy
        self.folio_add_new_anon_rmap(n, proc);
        self.clear_entry(proc, addr, Level::Pte, cpu, "do_wp_page: put old page");
        self.install_entry(proc, addr, Level::Pte, Pte::present(n, true), 0, "do_wp_page: new page");
        self.s.flags[n] |= PG_LRU;
        self.trace_note(|| format!("do_wp_page: copy of pfn {p} -> pfn {n}"));
    }

    /// `folio_isolate_lru`: +1 reference, off the LRU. False if the folio is
    /// not on an LRU (somebody else isolated it).
    pub(crate) fn isolate_lru(&mut self, h: usize) -> bool {
        if self.s.flags[h] & PG_LRU == 0 {
            return false;
        }
        self.s.flags[h] &= !PG_LRU;
        self.page_get(h, 1, "folio_isolate_lru");
        true
    }

    /// Put a folio on an LRU list (`folio_add_lru`, `folio_putback_lru`'s
    /// first half). ZONE_DEVICE folios are never on an LRU (I-M6).
    pub(crate) fn add_lru(&mut self, h: usize) {
        self.putback_lru(h, false);
    }

    /// `folio_putback_lru`: on an LRU again; `freeing` when the folio's data
    /// was migrated away and the caller's put is its last (I-M6).
    pub(crate) fn putback_lru(&mut self, h: usize, freeing: bool) {
        if self.observe(Obs::LruAdded { pfn: h, freeing }) && !self.layout.is_ram(h) {
            return;
        }
        self.s.flags[h] |= PG_LRU;
    }
}

// ---------------------------------------------------------------------------
// Legality: when the actors may call these kernel functions
// ---------------------------------------------------------------------------

use crate::program::op::Op;

impl Machine {
    /// Is `DoAnonymousPage` allowed now (the actor's contract)?
    pub(crate) fn do_anonymous_page_enabled(&self, op: &Op) -> Result<(), &'static str> {
        self.mm_ok(op.a(0), op.a(1))?;
        ok(self.slot_is_empty(op.a(0), op.a(1)), "the address is mapped")?;
        ok(self.ram_fit(0).is_some(), "no free system RAM")
    }

    /// Is `DoHugePmdAnonymousPage` allowed now (the actor's contract)?
    pub(crate) fn do_huge_pmd_anonymous_page_enabled(&self, op: &Op) -> Result<(), &'static str> {
        self.mm_ok(op.a(0), op.a(1))?;
        ok(
            self.layout.order > 0 && self.block_empty(op.a(0), op.a(1)),
            "the PMD block is not empty (or there is none)",
        )?;
        ok(self.ram_fit(self.layout.order).is_some(), "no free aligned system RAM block")
    }
}
