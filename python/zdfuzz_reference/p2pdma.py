"""PCI peer-to-peer DMA memory (drivers/pci/p2pdma.c).

Kernel users (``pci_alloc_p2pmem`` / ``pci_free_p2pmem``) get page-granular
chunks from a gen_pool and hold one pgmap reference per *allocation*; page
refcounts stay at the idle value and a kernel user's ``get_page``/``put_page``
only bounces 1->2->1. v5.x allocates first, then ``tryget_live``s, giving the
chunk back on failure.

User space (v6.2+, ``p2pmem_alloc_mmap``): a chunk, one chunk-level
``tryget_live``, then per page ``vm_insert_page`` (+1 ref, +1 mapcount),
``percpu_ref_get``, ``put_page`` (E4 first sets the 0-based page to 1); the
chunk reference is put at the end. A mapped page holds refcount 1 and one
pgmap reference, both returned by ``p2pdma_page_free`` at its last unmap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from zdfuzz_reference import failure, page, pagetable, pgmap, process
from zdfuzz_reference.flags import PG_POOL
from zdfuzz_reference.ops import SITE_GEN_POOL, SITE_VM_INSERT
from zdfuzz_reference.pte import PTE

if TYPE_CHECKING:
    from zdfuzz_reference.machine import Machine


def p2p_pool_fit(m: Machine, g: int, k: int) -> int | None:
    """First fit of ``k`` contiguous free gen_pool pages in pgmap ``g``."""
    r = m.layout.pfns_of(g)
    for s in range(r.start, r.stop - k + 1):
        if all(m.s.flags[p] & PG_POOL == 0 for p in range(s, s + k)):
            return s
    return None


def pci_alloc_p2pmem(m: Machine, g: int, k: int, cpu: int) -> None:
    start = p2p_pool_fit(m, g, k)
    if start is None:
        return
    if failure.inject(m, SITE_GEN_POOL):
        m.trace_note(lambda: "pci_alloc_p2pmem -> NULL (gen_pool_alloc)")
        return
    for p in range(start, start + k):
        m.s.flags[p] |= PG_POOL
        m.touch_page(p)
    if m.rules.p2p.alloc_pgmap_ref and not pgmap.pgmap_tryget_live(
        m, g, cpu, "pci_alloc_p2pmem: percpu_ref_tryget_live"
    ):
        # the device is going away: give the chunk back, return NULL
        for p in range(start, start + k):
            m.s.flags[p] &= ~PG_POOL
        m.trace_note(lambda: "pci_alloc_p2pmem -> NULL (pgmap dying)")
        return
    m.s.p2p_len[start] = k
    m.s.ledger.p2p_allocs[g] += 1
    for p in range(start, start + k):
        m.s.ledger.pages[p].p2p_kernel = True
        if m.rules.p2p.alloc_sets_rc:
            page.page_set_count(m, p, m.s.rc[p] + 1)


def pci_free_p2pmem(m: Machine, start: int, cpu: int) -> None:
    g = m.layout.pgmap_of(start)
    k = m.s.p2p_len[start]
    m.s.p2p_len[start] = 0
    m.s.ledger.p2p_allocs[g] -= 1
    for p in range(start, start + k):
        m.s.ledger.pages[p].p2p_kernel = False
    if m.rules.p2p.alloc_sets_rc:
        for p in range(start, start + k):
            page.put_page_refs(m, p, 1, cpu, "pci_free_p2pmem: put_page")
    for p in range(start, start + k):  # gen_pool_free_owner
        m.s.flags[p] &= ~PG_POOL
        m.touch_page(p)
    if m.rules.p2p.alloc_pgmap_ref:
        pgmap.pgmap_put(m, g, cpu, 1, "pci_free_p2pmem: percpu_ref_put")


def kernel_get_page(m: Machine, p: int) -> None:
    """A kernel user's ``get_page`` on a page of its allocation."""
    page.page_get(m, p, 1, "get_page")
    m.s.ledger.pages[p].kernel_gets += 1


def kernel_put_page(m: Machine, p: int, cpu: int) -> None:
    m.s.ledger.pages[p].kernel_gets -= 1
    page.put_page_refs(m, p, 1, cpu, "put_page")


def p2p_alloc_of(m: Machine, p: int) -> int | None:
    """The start of the kernel allocation covering ``p``, if any."""
    if m.layout.is_ram(p):
        return None
    g = m.layout.pgmap_of(p)
    for s in range(p, m.layout.pfns_of(g).start - 1, -1):
        if m.s.p2p_len[s] > 0:
            return s if p < s + m.s.p2p_len[s] else None
    return None


def p2pmem_alloc_mmap(m: Machine, g: int, proc: int, addr: int, k: int, cpu: int) -> None:
    start = p2p_pool_fit(m, g, k)
    if start is None:
        return
    if failure.inject(m, SITE_GEN_POOL):
        m.trace_note(lambda: "p2pmem_alloc_mmap -> -ENOMEM (gen_pool_alloc)")
        return
    for p in range(start, start + k):
        m.s.flags[p] |= PG_POOL
        m.touch_page(p)
    # the chunk-level reference, so rcu_read_unlock can precede the inserts
    if not pgmap.pgmap_tryget_live(m, g, cpu, "p2pmem_alloc_mmap: percpu_ref_tryget_live_rcu"):
        for p in range(start, start + k):
            m.s.flags[p] &= ~PG_POOL
        m.trace_note(lambda: "p2pmem_alloc_mmap -> -ENODEV")
        return
    for i, p in enumerate(range(start, start + k)):
        if m.rules.p2p.mmap_sets_rc:
            page.page_set_count(m, p, 1)
        if failure.inject(m, SITE_VM_INSERT):
            _alloc_mmap_unwind(m, g, proc, addr, start, k, i, cpu)
            return
        pagetable.install_entry(
            m, proc, addr + i, PTE, pagetable.present(p, True), 1, "p2pmem_alloc_mmap: vm_insert_page"
        )
        m.s.ledger.vcontent[m.layout.pte_slot(proc, addr + i)] = m.s.content[p]
        pgmap.pgmap_get(m, g, cpu, 1, "p2pmem_alloc_mmap: percpu_ref_get")
        page.put_page_refs(m, p, 1, cpu, "p2pmem_alloc_mmap: put_page")
    pgmap.pgmap_put(m, g, cpu, 1, "p2pmem_alloc_mmap: percpu_ref_put (chunk)")


def _alloc_mmap_unwind(m: Machine, g: int, proc: int, addr: int, start: int, k: int, i: int, cpu: int) -> None:
    """``p2pmem_alloc_mmap``'s error path when ``vm_insert_page`` fails on
    page ``i``: gen_pool_free of the rest, the chunk reference (forgotten
    before 6220694c52a5), the failed page's refcount (with 0-based pages),
    then mmap_region's unmap of the pages already inserted."""
    p = start + i
    m.trace_note(lambda: "p2pmem_alloc_mmap: vm_insert_page -> -ENOMEM")
    if m.rules.p2p.mmap_sets_rc and m.rules.p2p.mmap_error_resets_rc:
        page.page_set_count(m, p, 0)
    for q in range(p, start + k):
        m.s.flags[q] &= ~PG_POOL
    if m.rules.p2p.mmap_error_puts_ref:
        pgmap.pgmap_put(m, g, cpu, 1, "p2pmem_alloc_mmap: percpu_ref_put (chunk, error path)")
    else:
        m.trace_note(lambda: "p2pmem_alloc_mmap: returns without percpu_ref_put: the chunk reference is lost")
    for j in range(i):
        process.zap_pte(m, proc, addr + j, cpu)
