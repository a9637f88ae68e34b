"""System RAM: the anonymous memory device memory migrates from and to.

Mirrors the page allocator as far as refcounts go (``alloc_pages``: a folio
leaves the buddy allocator at refcount 1; ``__folio_put`` returns it at 0),
the anonymous faults (``do_anonymous_page``: a zeroed page mapped writable, on
the LRU; ``do_huge_pmd_anonymous_page``: a THP mapped by one PMD),
copy-on-write (``do_wp_page``: reuse an exclusive page, else copy it into
system RAM — a shared coherent page too), and the LRU flag migration isolates
(``folio_isolate_lru``, ``folio_putback_lru``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from zdfuzz_reference import folio, page, pagetable, rmap
from zdfuzz_reference.flags import PG_BUDDY, PG_LRU
from zdfuzz_reference.oracle import SAFETY
from zdfuzz_reference.pte import PMD, PTE

if TYPE_CHECKING:
    from zdfuzz_reference.machine import Machine


def ram_fit(m: Machine, order: int) -> int | None:
    """First fit of an aligned free block of ``1 << order`` RAM pages."""
    nr = 1 << order
    r = m.layout.ram_pfns()
    p = r.start
    while p + nr <= r.stop:
        if (p - r.start) % nr == 0 and all(m.s.flags[q] & PG_BUDDY for q in range(p, p + nr)):
            return p
        p += 1
    return None


def ram_alloc(m: Machine, order: int) -> int | None:
    """``alloc_pages(order)``: a folio at refcount 1 (the caller's reference)."""
    h = ram_fit(m, order)
    if h is None:
        return None
    for p in range(h, h + (1 << order)):
        m.s.flags[p] = 0
        m.s.mc[p] = 0
        m.s.content[p] = 0
    if order > 0:
        folio.prep_compound(m, h, order)
    page.page_set_count(m, h, 1)
    # page->mapping is set by whoever maps it (folio_add_new_anon_rmap, or
    # folio_migrate_mapping for a migration's destination)
    return h


def ram_free_pages(m: Machine) -> int:
    return sum(1 for p in m.layout.ram_pfns() if m.s.flags[p] & PG_BUDDY)


def do_anonymous_page(m: Machine, proc: int, addr: int) -> None:
    """A zeroed page mapped writable at (proc, addr)."""
    p = ram_alloc(m, 0)
    if p is None:
        return
    # the allocation reference becomes the mapping's (folio_add_new_anon_rmap)
    m.s.rc[p] = 0
    rmap.folio_add_new_anon_rmap(m, p, proc)
    pagetable.install_entry(m, proc, addr, PTE, pagetable.present(p, True), 0, "do_anonymous_page")
    m.s.flags[p] |= PG_LRU
    m.s.ledger.vcontent[m.layout.pte_slot(proc, addr)] = 0


def do_huge_pmd_anonymous_page(m: Machine, proc: int, addr: int) -> None:
    """A THP mapped by the PMD of addr's block."""
    h = ram_alloc(m, m.layout.order)
    if h is None:
        return
    m.s.rc[h] = 0
    rmap.folio_add_new_anon_rmap(m, h, proc)
    start = pagetable.block_start(m, addr)
    pagetable.install_entry(m, proc, start, PMD, pagetable.present(h, True), 0, "do_huge_pmd_anonymous_page")
    m.s.flags[h] |= PG_LRU
    for a in range(start, start + m.layout.nr_huge()):
        m.s.ledger.vcontent[m.layout.pte_slot(proc, a)] = 0


def write_needs_copy(m: Machine, proc: int, addr: int) -> bool:
    """Would a write need a copy-on-write of a shared anonymous page?"""
    e, _ = pagetable.entry(m, proc, addr)
    if e.kind == pagetable.PRESENT and not e.write and m.layout.is_cpu_anon(e.pfn):
        h = page.head_of(m, e.pfn)
        # do_wp_page reuses a page only it maps and nobody else holds
        return not (folio.folio_mapcount(m, h) == 1 and m.s.rc[h] == 1)
    return False


def do_wp_page(m: Machine, proc: int, addr: int, cpu: int) -> None:
    """Make (proc, addr) writable, copying a shared page."""
    e, level = pagetable.entry(m, proc, addr)
    if e.kind != pagetable.PRESENT:
        return
    p = e.pfn
    if not write_needs_copy(m, proc, addr):
        # wp_page_reuse
        if level == PTE:
            s = m.layout.pte_slot(proc, addr)
            m.s.ptes[s] = m.s.ptes[s]._replace(write=True)
        else:
            s = m.layout.pmd_slot(proc, addr)
            m.s.pmds[s] = m.s.pmds[s]._replace(write=True)
        return
    if level == PMD:
        pagetable.split_huge_pmd(m, proc, addr)  # do_huge_pmd_wp_page falls back to PTEs
    n = ram_alloc(m, 0)
    if n is None:
        return
    m.s.content[n] = m.s.content[p]
    m.s.ledger.pages[n].dirty_pte = m.s.ledger.pages[p].dirty_pte
    m.s.rc[n] = 0
    rmap.folio_add_new_anon_rmap(m, n, proc)  # wp_page_copy
    pagetable.clear_entry(m, proc, addr, PTE, cpu, "do_wp_page: put old page")
    pagetable.install_entry(m, proc, addr, PTE, pagetable.present(n, True), 0, "do_wp_page: new page")
    m.s.flags[n] |= PG_LRU
    m.trace_note(lambda: f"do_wp_page: copy of pfn {p} -> pfn {n}")


def isolate_lru(m: Machine, h: int) -> bool:
    """``folio_isolate_lru``: +1 reference, off the LRU; False if not on one."""
    if not m.s.flags[h] & PG_LRU:
        return False
    m.s.flags[h] &= ~PG_LRU
    page.page_get(m, h, 1, "folio_isolate_lru")
    return True


def add_lru(m: Machine, h: int) -> None:
    """``folio_add_lru``: ZONE_DEVICE folios are never on an LRU (I-M6)."""
    if not m.layout.is_ram(h):
        m.violate(
            "I-M6",
            SAFETY,
            [("pfn", h)],
            lambda: (f"ZONE_DEVICE pfn {h} is put on an LRU list", "never on an LRU", "on an LRU"),
        )
        return
    m.s.flags[h] |= PG_LRU
