//! PCI peer-to-peer DMA memory (drivers/pci/p2pdma.c).
//!
//! Kernel users (`pci_alloc_p2pmem` / `pci_free_p2pmem`, e.g. NVMe CMB queues)
//! get page-granular chunks from a gen_pool and hold **one pgmap reference per
//! allocation**, not per page; page refcounts stay at the idle value and a
//! kernel user's `get_page`/`put_page` only bounces 1→2→1 (the seed's remark:
//! if such a page reached 0 the per-page pgmap put would break the count).
//! v5.x allocates first, then `tryget_live`s the chunk owner's ref, freeing
//! the chunk on failure.
//!
//! User space (v6.2+, `p2pmem_alloc_mmap`): a chunk is allocated, one
//! chunk-level `tryget_live`, then per page `vm_insert_page` (+1 ref, +1
//! mapcount), `percpu_ref_get`, `put_page` (dropping the idle reference; E4
//! first sets the 0-based page to 1); finally the chunk reference is put. A
//! mapped page thus holds refcount 1 and one pgmap reference, both returned by
//! `p2pdma_page_free` when its last mapping goes.

use crate::machine::{ok, Machine};
use crate::page::PG_POOL;
use crate::pagetable::{Level, Pte};
use crate::program::op::{SITE_GEN_POOL, SITE_VM_INSERT};

impl Machine {
    /// First fit of `k` contiguous free gen_pool pages in pgmap `g`.
    pub(crate) fn p2p_pool_fit(&self, g: usize, k: usize) -> Option<usize> {
        let r = self.layout.pfns_of(g);
        (r.start..=r.end.checked_sub(k)?).find(|&s| (s..s + k).all(|p| self.s.flags[p] & PG_POOL == 0))
    }

    pub(crate) fn pci_alloc_p2pmem(&mut self, g: usize, k: usize, cpu: usize) {
        let Some(start) = self.p2p_pool_fit(g, k) else { return };
        if self.inject(SITE_GEN_POOL) {
            // gen_pool_alloc_owner returned NULL: nothing taken
            self.trace_note(|| "pci_alloc_p2pmem -> NULL (gen_pool_alloc)".into());
            return;
        }
        for p in start..start + k {
            self.s.flags[p] |= PG_POOL;
            self.touch_page(p);
        }
        if self.rules.p2p.alloc_pgmap_ref && !self.pgmap_tryget_live(g, cpu, "pci_alloc_p2pmem: percpu_ref_tryget_live")
        {
            // the device is going away: give the chunk back, return NULL
            for p in start..start + k {
                self.s.flags[p] &= !PG_POOL;
            }
            self.trace_note(|| "pci_alloc_p2pmem -> NULL (pgmap dying)".into());
            return;
        }
        self.s.p2p_len[start] = k as u8;
        self.s.ledger.p2p_allocs[g] += 1;
        for p in start..start + k {
            self.s.ledger.pages[p].p2p_kernel = true;
            if self.rules.p2p.alloc_sets_rc {
                let v = self.s.rc[p] + 1;
                self.page_set_count(p, v);
            }
        }
    }

    pub(crate) fn pci_free_p2pmem(&mut self, start: usize, cpu: usize) {
        let g = self.layout.pgmap_of(start);
        let k = self.s.p2p_len[start] as usize;
        self.s.p2p_len[start] = 0;
        self.s.ledger.p2p_allocs[g] -= 1;
        for p in start..start + k {
            self.s.ledger.pages[p].p2p_kernel = false;
        }
        if self.rules.p2p.alloc_sets_rc {
            for p in start..start + k {
                self.put_page_refs(p, 1, cpu, "pci_free_p2pmem: put_page");
            }
        }
        // gen_pool_free_owner
        for p in start..start + k {
            self.s.flags[p] &= !PG_POOL;
            self.touch_page(p);
        }
        if self.rules.p2p.alloc_pgmap_ref {
            self.pgmap_put(g, cpu, 1, "pci_free_p2pmem: percpu_ref_put");
        }
    }

    /// A kernel user's `get_page` on a page of its allocation.
    pub(crate) fn kernel_get_page(&mut self, p: usize) {
        self.page_get(p, 1, "get_page");
        self.s.ledger.pages[p].kernel_gets += 1;
    }

    pub(crate) fn kernel_put_page(&mut self, p: usize, cpu: usize) {
        self.s.ledger.pages[p].kernel_gets -= 1;
        self.put_page_refs(p, 1, cpu, "put_page");
    }

    /// Is the kernel allocation starting at `start` the one covering `p`?
    pub(crate) fn p2p_alloc_of(&self, p: usize) -> Option<usize> {
        if self.layout.is_ram(p) {
            return None;
        }
        let g = self.layout.pgmap_of(p);
        (self.layout.pfns_of(g).start..=p)
            .rev()
            .find(|&s| self.s.p2p_len[s] > 0)
            .filter(|&s| p < s + self.s.p2p_len[s] as usize)
    }

    pub(crate) fn p2pmem_alloc_mmap(&mut self, g: usize, proc: usize, addr: usize, k: usize, cpu: usize) {
        let Some(start) = self.p2p_pool_fit(g, k) else { return };
        if self.inject(SITE_GEN_POOL) {
            // gen_pool_alloc_owner returned NULL: -ENOMEM, nothing taken
            self.trace_note(|| "p2pmem_alloc_mmap -> -ENOMEM (gen_pool_alloc)".into());
            return;
        }
        for p in start..start + k {
            self.s.flags[p] |= PG_POOL;
            self.touch_page(p);
        }
        // the chunk-level reference, so rcu_read_unlock can precede the inserts
        if !self.pgmap_tryget_live(g, cpu, "p2pmem_alloc_mmap: percpu_ref_tryget_live_rcu") {
            for p in start..start + k {
                self.s.flags[p] &= !PG_POOL;
            }
            self.trace_note(|| "p2pmem_alloc_mmap -> -ENODEV".into());
            return;
        }
        for (i, p) in (start..start + k).enumerate() {
            if self.rules.p2p.mmap_sets_rc {
                self.page_set_count(p, 1);
            }
            if self.inject(SITE_VM_INSERT) {
                self.p2pmem_alloc_mmap_unwind(g, proc, addr, start, k, i, cpu);
                return;
            }
            // vm_insert_page: +1 reference, +1 mapcount
            self.install_entry(
                proc,
                addr + i,
                Level::Pte,
                Pte::present(p, true),
                1,
                "p2pmem_alloc_mmap: vm_insert_page",
            );
            let v = self.layout.pte_slot(proc, addr + i);
            self.s.ledger.vcontent[v] = self.s.content[p];
            self.pgmap_get(g, cpu, 1, "p2pmem_alloc_mmap: percpu_ref_get");
            self.put_page_refs(p, 1, cpu, "p2pmem_alloc_mmap: put_page");
        }
        self.pgmap_put(g, cpu, 1, "p2pmem_alloc_mmap: percpu_ref_put (chunk)");
    }

    /// `p2pmem_alloc_mmap`'s error path when `vm_insert_page` fails on page
    /// `i` of the chunk (`start .. start + k`): `gen_pool_free` of the pages
    /// not yet inserted, the chunk reference, then `mmap_region`'s own
    /// error path (the VMA is unmapped: the pages already inserted go
    /// through the normal zap, `p2pdma_page_free` and the per-page
    /// `percpu_ref_put`). What the original v6.2 code forgot
    /// (7e9c7ef83d78): the chunk's `percpu_ref_put` (fixed by 6220694c52a5;
    /// until then the device's unbind waits forever) and, with 0-based
    /// pages, resetting the failed page's refcount to 0 (a free pool page
    /// left at 1: the next allocation's check warns).
    #[allow(clippy::too_many_arguments)] // the kernel function's locals, as they are at the failure
    fn p2pmem_alloc_mmap_unwind(
        &mut self,
        g: usize,
        proc: usize,
        addr: usize,
        start: usize,
        k: usize,
        i: usize,
        cpu: usize,
    ) {
        let p = start + i;
        self.trace_note(|| "p2pmem_alloc_mmap: vm_insert_page -> -ENOMEM".into());
        if self.rules.p2p.mmap_sets_rc && self.rules.p2p.mmap_error_resets_rc {
            self.page_set_count(p, 0);
        }
        for q in p..start + k {
            self.s.flags[q] &= !PG_POOL;
        }
        if self.rules.p2p.mmap_error_puts_ref {
            self.pgmap_put(g, cpu, 1, "p2pmem_alloc_mmap: percpu_ref_put (chunk, error path)");
        } else {
            self.trace_note(|| "p2pmem_alloc_mmap: returns without percpu_ref_put: the chunk reference is lost".into());
        }
        for j in 0..i {
            self.zap_pte(proc, addr + j, cpu);
        }
    }
}

// ---------------------------------------------------------------------------
// Legality: when the actors may call these kernel functions
// ---------------------------------------------------------------------------

use crate::oracle::Life;
use crate::program::op::Op;
use crate::rules::DeviceType;

impl Machine {
    /// Is `PciAllocP2pmem` allowed now (the actor's contract)?
    pub(crate) fn pci_alloc_p2pmem_enabled(&self, op: &Op) -> Result<(), &'static str> {
        let g = op.a(0);
        ok(self.layout.pgmap_type[g] == DeviceType::P2pdma, "not a P2P pgmap")?;
        ok(matches!(self.s.ledger.life[g], Life::Registered | Life::Killed), "the P2P device is not registered")?;
        ok(self.p2p_pool_fit(g, op.a(1)).is_some(), "no free chunk that large")
    }

    /// Is `PciFreeP2pmem` allowed now (the actor's contract)?
    pub(crate) fn pci_free_p2pmem_enabled(&self, op: &Op) -> Result<(), &'static str> {
        let p = op.a(0);
        let k = self.s.p2p_len[p] as usize;
        ok(k > 0, "no kernel P2P allocation starts at this pfn")?;
        ok(
            (p..p + k).all(|q| self.s.ledger.pages[q].kernel_gets == 0),
            "the kernel user puts its page references before freeing",
        )
    }

    /// Is `GetPage` allowed now (the actor's contract)?
    pub(crate) fn get_page_enabled(&self, op: &Op) -> Result<(), &'static str> {
        ok(self.rules.p2p.kernel_get_page, "kernel users take no page references on P2P memory in this era")?;
        ok(self.p2p_alloc_of(op.a(0)).is_some(), "the kernel user has no allocation covering this page")
    }

    /// Is `P2pmemAllocMmap` allowed now (the actor's contract)?
    pub(crate) fn p2pmem_alloc_mmap_enabled(&self, op: &Op) -> Result<(), &'static str> {
        let (g, proc, addr, k) = (op.a(0), op.a(1), op.a(2), op.a(3));
        ok(self.layout.pgmap_type[g] == DeviceType::P2pdma, "not a P2P pgmap")?;
        ok(self.rules.p2p.userspace_mmap, "no user-space P2P mappings in this era (v6.2+)")?;
        ok(self.pgmap_live(g), "the sysfs p2pmem/allocate file is gone (not registered or unbinding)")?;
        self.mm_ok(proc, addr)?;
        ok(
            addr + k <= self.layout.addrs && (addr..addr + k).all(|x| self.slot_is_empty(proc, x)),
            "the address range is not free",
        )?;
        ok(self.p2p_pool_fit(g, k).is_some(), "no free chunk that large")
    }
}
