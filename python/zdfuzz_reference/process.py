"""Processes: their page tables, fork, munmap and exit.

Mirrors ``zap_pte_range`` / ``zap_huge_pmd`` (a refcounted entry drops its
rmap and its reference; a devmap PTE and a migration entry drop nothing;
unmapping part of a huge page splits its PMD first), ``exit_mmap``, and
``copy_page_range`` for fork: ``copy_nonpresent_pte`` copies a device-private
or migration entry (+1 reference and mapcount for a device-private one), both
made read-only; ``copy_present_pte`` shares an anonymous page (system RAM or
MEMORY_DEVICE_COHERENT) read-only, except a page that may be DMA-pinned,
which the child gets a copy of at once (``page_needs_cow_for_dma``);
``copy_huge_pmd`` likewise (a pinned THP is split); P2P mappings
(VM_MIXEDMAP) are copied with a reference; shared DAX and device-dax mappings
are not copied (the child faults them in again).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from zdfuzz_reference import data, page, pagetable, ram, rmap
from zdfuzz_reference.flags import PG_LRU
from zdfuzz_reference.oracle import SAFETY
from zdfuzz_reference.pte import PMD, PTE

if TYPE_CHECKING:
    from zdfuzz_reference.machine import Machine


def zap_pte(m: Machine, proc: int, addr: int, cpu: int) -> None:
    """Zap one address: its PTE, or (a whole-block unmap) the PMD covering it."""
    lay = m.layout
    level = pagetable.entry(m, proc, addr)[1]
    at, n = (pagetable.block_start(m, addr), lay.nr_huge()) if level == PMD else (addr, 1)
    for a in range(at, at + n):
        data.check_vpage(m, proc, a, "when it is unmapped")
        # the user buffer a pin was taken through is gone
        v = lay.pte_slot(proc, a) + 1
        e = pagetable.entry(m, proc, a)[0]
        if e.has_pfn() and m.s.ledger.pin_vpage[e.pfn] == v:
            m.s.ledger.pin_vpage[e.pfn] = 0
    pagetable.clear_entry(m, proc, at, level, cpu, "zap_pte_range: put_page")


def munmap(m: Machine, proc: int, addr: int, cpu: int) -> None:
    """``munmap`` of one page: a PMD-mapped huge page is split first; a
    device-dax PMD is not (``dev_dax_may_split``: the unmap is of the whole
    aligned range, and zaps the PMD)."""
    e, level = pagetable.entry(m, proc, addr)
    if level == PMD and not pagetable.maps_dax_block(m, e):
        pagetable.split_huge_pmd(m, proc, addr)
    zap_pte(m, proc, addr, cpu)


def madvise_dontneed(m: Machine, proc: int, addr: int, cpu: int) -> None:
    """``madvise(MADV_DONTNEED)`` of one anonymous page: munmap's zap, under
    the mmap read lock. A non-present entry is cleared without a TLB flush of
    its own, so if a migration's collect replaced a present PTE there and has
    not flushed yet (before 60bae7370896), the call returns while a CPU may
    still reach the old page through its stale TLB entry (I-W2)."""
    munmap(m, proc, addr, cpu)
    stale = stale_translation(m, proc, addr)
    if stale is not None:
        task, pfn = stale
        m.violate(
            "I-W2",
            SAFETY,
            [("proc", proc), ("addr", addr), ("pfn", pfn)],
            lambda: (
                f"madvise(MADV_DONTNEED) of process {proc} address {addr} returns while task {task}'s collect has "
                f"replaced its PTE for pfn {pfn} and not flushed the TLB yet: a CPU can still write pfn {pfn} through "
                "its stale TLB entry after the call returned",
                "TLB flushed before the PTL is released",
                "stale TLB entry",
            ),
        )


def stale_translation(m: Machine, proc: int, addr: int) -> tuple[int, int] | None:
    """(task, old pfn) of a migration whose collect replaced the present PTE
    of (proc, addr) and whose flush_tlb_range has not run yet."""
    from zdfuzz_reference import fault, sched

    for slot, t in enumerate(m.s.tasks):
        if t is None or t.pc != fault.M_FLUSH or not isinstance(t.kind, sched.Migrate):
            continue
        if m.s.mig[slot].proc != proc:
            continue
        p = collected_present(m, slot, addr)
        if p is not None:
            return slot, p
    return None


def collected_present(m: Machine, slot: int, addr: int) -> int | None:
    """The page whose present PTE at ``addr`` the collect of task ``slot``
    replaced with a migration entry, if it did."""
    from zdfuzz_reference import migrate

    ctx = m.s.mig[slot]
    i = addr - ctx.addr
    if i < 0 or i >= ctx.npages:
        return None
    # a PMD collected whole is entry 0 for the whole block; right after collect
    # an entry has a source exactly when collect took its page
    e0 = migrate.mig_entry(m, slot, 0)
    e, off = (e0, i) if e0.flags & migrate.MF_COMPOUND else (migrate.mig_entry(m, slot, i), 0)
    src = e.src_pfn()
    if src is None:
        return None
    src += off
    # only a present PTE can be cached in a TLB
    return src if m.layout.is_cpu_anon(src) else None


def exit_mmap(m: Machine, proc: int, cpu: int) -> None:
    for addr in range(m.layout.addrs):
        if m.violation is not None:
            return
        if pagetable.entry(m, proc, addr)[0] != pagetable.EMPTY:
            zap_pte(m, proc, addr, cpu)
    m.s.alive[proc] = False
    m.s.avc[proc] = 0  # unlink_anon_vmas


def _maybe_pinned(m: Machine, p: int) -> bool:
    """``folio_maybe_dma_pinned`` (for fork's copy decision)."""
    h = page.head_of(m, p)
    return any(x.gup_pins > 0 for x in m.s.ledger.pages[h : h + page.folio_nr(m, h)])


def fork_copies_needed(m: Machine, parent: int) -> int:
    """Pinned anonymous pages the child would need copies of."""
    n = 0
    for a in range(m.layout.addrs):
        e = pagetable.entry(m, parent, a)[0]
        if (
            e.kind == pagetable.PRESENT
            and m.layout.is_cpu_anon(e.pfn)
            and _maybe_pinned(m, e.pfn)
            and m.rules.gup.fork_copies_pinned
        ):
            n += 1
    return n


def fork(m: Machine, parent: int, child: int) -> None:
    lay = m.layout
    m.s.alive[child] = True
    # anon_vma_fork: linked to the parent's anon_vmas, and one of its own
    m.s.avc[child] = m.s.avc[parent] | 1 << child
    # huge PMDs: share write-protected unless pinned, then split
    for b in range(lay.blocks):
        a = b << lay.order
        ps = lay.pmd_slot(parent, a)
        pmd = m.s.pmds[ps]
        if not pmd.has_pfn():
            continue
        if lay.is_dax_pmd(pmd.pfn):
            continue  # a shared DAX mapping is not copied (vma_needs_copy)
        if pmd.kind == pagetable.PRESENT and _maybe_pinned(m, pmd.pfn) and m.rules.gup.fork_copies_pinned:
            pagetable.split_huge_pmd(m, parent, a)
            continue
        ro = pagetable.make_readonly(pmd)
        m.s.pmds[ps] = ro
        pagetable.install_entry(m, child, a, PMD, ro, 1, "copy_huge_pmd: folio_get")
        for k in range(lay.nr_huge()):
            m.s.ledger.vcontent[lay.pte_slot(child, a + k)] = m.s.ledger.vcontent[lay.pte_slot(parent, a + k)]
    for addr in range(lay.addrs):
        ps = lay.pte_slot(parent, addr)
        cs = lay.pte_slot(child, addr)
        pte = m.s.ptes[ps]
        if not pte.has_pfn():
            continue
        p = pte.pfn
        m.s.ledger.vcontent[cs] = m.s.ledger.vcontent[ps]
        if pte.kind in (pagetable.DEVICE_PRIVATE, pagetable.MIGRATION):
            ro = pagetable.make_readonly(pte)
            m.s.ptes[ps] = ro
            pagetable.install_entry(m, child, addr, PTE, ro, 1, "copy_nonpresent_pte: get_page")
        elif pte.kind == pagetable.PRESENT and lay.is_cpu_anon(p):
            # system RAM and coherent pages: vm_normal_page returns both
            if _maybe_pinned(m, p) and m.rules.gup.fork_copies_pinned:
                # copy_present_page: the child gets its own copy now
                n = ram.ram_alloc(m, 0)
                if n is None:
                    continue
                m.s.content[n] = m.s.content[p]
                m.s.ledger.pages[n].dirty_pte = m.s.ledger.pages[p].dirty_pte
                m.s.rc[n] = 0
                rmap.folio_add_new_anon_rmap(m, n, child)
                # the new PTE is made dirty (pte_mkdirty): the copy exists only
                # in memory, so reclaim or migration must not treat it as clean
                pagetable.install_entry(
                    m, child, addr, PTE, pagetable.present(n, True, dirty=True), 0, "copy_present_page"
                )
                m.s.flags[n] |= PG_LRU
            else:
                ro = pagetable.make_readonly(pte)
                m.s.ptes[ps] = ro
                pagetable.install_entry(m, child, addr, PTE, ro, 1, "copy_present_pte: folio_get")
        elif pte.kind == pagetable.PRESENT and lay.type_of(p) == "p2pdma":
            pagetable.install_entry(m, child, addr, PTE, pte, 1, "copy_page_range: get_page")


def zap_pfn_mappings(m: Machine, p: int, cpu: int) -> None:
    """Zap every user mapping of pfn ``p`` (``unmap_mapping_pages``): a PTE
    that maps it, or the whole PMD of a device-dax block it is part of."""
    lay = m.layout
    for proc in range(lay.procs):
        for addr in range(lay.addrs):
            e = pagetable.entry(m, proc, addr)[0]
            if e.has_pfn() and e.pfn == p:
                zap_pte(m, proc, addr, cpu)


def zap_pgmap_mappings(m: Machine, g: int, cpu: int) -> None:
    """Zap every user mapping of any page of pgmap ``g`` (PTEs and PMDs)."""
    lay = m.layout
    pfns = lay.pfns_of(g)
    for proc in range(lay.procs):
        for addr in range(lay.addrs):
            e = pagetable.entry(m, proc, addr)[0]
            if e.has_pfn() and e.pfn in pfns:
                zap_pte(m, proc, addr, cpu)
