//! Processes: their page tables, fork, munmap and exit.
//!
//! Mirrors `zap_pte_range` (a refcounted entry drops its rmap and its page
//! reference; an E1–E3 devmap PTE drops nothing), `exit_mmap`, and
//! `copy_page_range` for fork: a device-private entry is copied with
//! `get_page` + `page_dup_rmap` (+1 reference, +1 mapcount) and, in a COW
//! mapping, made read-only in parent and child (`copy_nonpresent_pte`,
//! confirmed in docs/kernel-checks.md item 6); P2P mappings (VM_MIXEDMAP) are
//! copied with a reference and a mapcount; shared DAX and device-dax
//! mappings are not copied — the child faults them in again.

use crate::machine::Machine;
use crate::page::Pte;
use crate::rules::DeviceType;

impl Machine {
    /// zap one PTE.
    pub(crate) fn zap_pte(&mut self, proc: usize, addr: usize, cpu: usize) {
        let slot = self.layout.pte_slot(proc, addr);
        let pte = self.s.ptes[slot];
        self.s.ptes[slot] = Pte::None;
        let Some(p) = pte.pfn() else { return };
        self.touch_page(p);
        self.s.ledger.pages[p].maps -= 1;
        if pte.holds_ref() {
            self.s.mc[p] -= 1; // page_remove_rmap
            self.put_page_refs(p, 1, cpu, "zap_pte_range: put_page");
        } else {
            self.page_torn_down(p, "zap_pte_range");
        }
    }

    pub(crate) fn munmap(&mut self, proc: usize, addr: usize, cpu: usize) {
        self.zap_pte(proc, addr, cpu);
    }

    pub(crate) fn exit_mmap(&mut self, proc: usize, cpu: usize) {
        for addr in 0..self.layout.addrs {
            if self.violation.is_some() {
                return;
            }
            self.zap_pte(proc, addr, cpu);
        }
        self.s.alive[proc] = false;
    }

    pub(crate) fn fork(&mut self, parent: usize, child: usize) {
        self.s.alive[child] = true;
        for addr in 0..self.layout.addrs {
            let ps = self.layout.pte_slot(parent, addr);
            let cs = self.layout.pte_slot(child, addr);
            let copy = match self.s.ptes[ps] {
                Pte::DevicePrivate { pfn, .. } => {
                    // writable entries become readable in both (COW)
                    self.s.ptes[ps] = Pte::DevicePrivate { pfn, write: false };
                    Some(Pte::DevicePrivate { pfn, write: false })
                }
                pte @ Pte::Present { pfn, .. } if self.layout.type_of(pfn as usize) == DeviceType::P2pdma => Some(pte),
                _ => None,
            };
            if let Some(pte) = copy {
                let p = pte.pfn().unwrap_or(0);
                if pte.holds_ref() {
                    self.page_get(p, 1, "copy_page_range: get_page");
                    self.s.mc[p] += 1;
                }
                self.s.ptes[cs] = pte;
                self.s.ledger.pages[p].maps += 1;
            }
        }
    }

    /// Zap every user mapping of pfn `p` (unmap_mapping_pages).
    pub(crate) fn zap_pfn_mappings(&mut self, p: usize, cpu: usize) {
        for proc in 0..self.layout.procs {
            for addr in 0..self.layout.addrs {
                if self.s.ptes[self.layout.pte_slot(proc, addr)].pfn() == Some(p) {
                    self.zap_pte(proc, addr, cpu);
                }
            }
        }
    }

    /// Zap every user mapping of any page of pgmap `g`.
    pub(crate) fn zap_pgmap_mappings(&mut self, g: usize, cpu: usize) {
        for proc in 0..self.layout.procs {
            for addr in 0..self.layout.addrs {
                if let Some(p) = self.s.ptes[self.layout.pte_slot(proc, addr)].pfn() {
                    if self.layout.pgmap_of(p) == g {
                        self.zap_pte(proc, addr, cpu);
                    }
                }
            }
        }
    }
}
