//! Reverse mapping of anonymous folios: `anon_vma`, `folio_add_new_anon_rmap`
//! and the rmap walk of `try_to_migrate` and `remove_migration_ptes`.
//!
//! Mirrors mm/rmap.c. An anonymous folio's `page->mapping` is its
//! `anon_vma` with `PAGE_MAPPING_ANON` set; the walk (`rmap_walk_anon`)
//! takes that anon_vma's lock and visits every VMA linked to it through the
//! `anon_vma_chain` — nothing else. Each process of the model has one VMA
//! with an anon_vma of its own (id = the process slot, `anon_vma_prepare`);
//! fork links the child's VMA to every anon_vma of the parent's and gives it
//! a new one (`anon_vma_fork`), exit unlinks it (`unlink_anon_vmas`). So a
//! page the parent mapped before the fork is found in the child too, while a
//! page the child maps later (a COW copy, a new fault) is found in the child
//! only. The kernel's reuse of an idle anon_vma at fork (`anon_vma_fork`'s
//! `reuse_anon_vma`) only links a VMA to more anon_vmas; it can make a walk
//! visit more VMAs, never fewer, and is not modelled.
//!
//! Nothing here looks at page tables to decide where to go: a folio whose
//! `mapping` names the wrong anon_vma is walked through the wrong VMAs, as in
//! the kernel. The oracle compares the walk with the page tables afterwards
//! (I-M9), checks that the anon_vma the walk dereferences is still linked to
//! some VMA (I-M10: the page holds no reference on it), and that a new
//! anonymous mapping leaves the folio naming the mapping VMA's anon_vma
//! (I-F2).

use crate::machine::Machine;
use crate::oracle::Obs;
use crate::page::{anon_mapping, anon_vma_of, is_anon_mapping, is_file_mapping};
use crate::pagetable::Pte;

impl Machine {
    /// `folio_add_new_anon_rmap(folio, vma, addr, RMAP_EXCLUSIVE)`: the folio
    /// at `h` gets its first mapping, in `proc`'s VMA. Before 6.12's
    /// `__folio_set_anon`, `__page_set_anon_rmap` returned early on a page
    /// that was already `PageAnon` (`migrate.new_anon_rmap_keeps_anon`),
    /// which keeps a stale anon_vma a free path left behind.
    pub(crate) fn folio_add_new_anon_rmap(&mut self, h: usize, proc: usize) {
        let m = self.s.mapping[h];
        if !(is_anon_mapping(m) && self.rules.migrate.new_anon_rmap_keeps_anon) {
            self.s.mapping[h] = anon_mapping(proc);
        } else if anon_vma_of(m) != Some(proc) {
            self.trace_note(|| {
                format!("__page_set_anon_rmap(pfn {h}): PageAnon already: page->mapping left as it was")
            });
        }
        let mapping = self.s.mapping[h];
        let linked = anon_vma_of(mapping).is_some_and(|av| self.s.avc[proc] >> av & 1 != 0);
        self.observe(Obs::NewAnonRmap { pfn: h, proc, mapping, linked });
    }

    /// The processes `try_to_migrate(folio)` walks for the folio at `p`:
    /// none for a folio nothing maps any more (`if (folio_mapped(folio))
    /// try_to_migrate(folio, 0)`, mm/migrate_device.c), else
    /// [`Machine::rmap_walk_procs`].
    pub(crate) fn try_to_migrate_procs(&mut self, p: usize) -> u8 {
        if self.folio_mapcount(p) > 0 {
            self.rmap_walk_procs(p, p, "try_to_migrate")
        } else {
            0
        }
    }

    /// The processes `rmap_walk(folio)` visits for the folio at `h`, a bit
    /// each: the VMAs linked to its anon_vma; every process for a DAX file
    /// (`rmap_walk_file` over `i_mmap`: any process may map the file);
    /// none without a mapping. Following a mapping to an anon_vma no VMA is
    /// linked to any more reads a freed object (I-M10, reported on `pfn`:
    /// the folio whose entries the walk is for); the walk then visits
    /// nothing.
    pub(crate) fn rmap_walk_procs(&mut self, h: usize, pfn: usize, what: &'static str) -> u8 {
        let m = self.s.mapping[self.head_of(h)];
        if let Some(av) = anon_vma_of(m) {
            let mask =
                (0..self.layout.procs).filter(|&p| self.s.avc[p] >> av & 1 != 0).fold(0u8, |acc, p| acc | 1 << p);
            if mask == 0 {
                self.observe(Obs::AnonVmaFreed { pfn, av, what });
            }
            mask
        } else if is_file_mapping(m) {
            u8::MAX
        } else {
            0
        }
    }

    /// After an rmap walk over `mask` of the folio at `h` (`nr` pages) that
    /// acted on every entry `want` accepts: does such an entry remain in a
    /// process the walk did not visit? Reported (I-M9).
    pub(crate) fn rmap_walk_missed(
        &mut self,
        mask: u8,
        h: usize,
        nr: usize,
        want: impl Fn(Pte) -> bool,
        what: &'static str,
    ) {
        if let Some((proc, addr, _)) = self.find_entry_in(!mask, h, nr, want) {
            let mapping = self.s.mapping[self.head_of(h)];
            self.observe(Obs::RmapMissed { pfn: h, proc, addr, mapping, what });
        }
    }
}
