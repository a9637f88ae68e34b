"""Page tables: PTEs, PMDs, and the page-table lock.

Mirrors ``rust/core/src/pagetable.rs``: what the kernel keeps in a process's
page tables for the memory zdfuzz models — present PTEs (``set_pte_at``, with
the hardware dirty bit), device-private swap entries (``SWP_DEVICE_READ`` /
``SWP_DEVICE_WRITE``), migration entries (``SWP_MIGRATION_READ``,
``_READ_EXCLUSIVE``, ``_WRITE``) and the PMD-level form of each.

A process is a flat array of address slots; every ``1 << order`` aligned
slots form a PMD block with one PMD slot. A PMD that is not empty maps the
whole block and the block's PTE slots are then empty. A present refcounted
mapping and a device-private entry hold a folio reference and a mapcount; an
E1-E3 devmap PTE (FS-DAX, device-dax) and a migration entry hold neither.

The page-table lock (``pte_offset_map_lock``, ``pmd_lock``) is one lock per
PMD block (split PTE locks): a task may hold it across steps.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from zdfuzz_reference import page

if TYPE_CHECKING:
    from zdfuzz_reference.machine import Machine

from zdfuzz_reference.pte import (
    DEVICE_PRIVATE,
    EMPTY,
    MIG_READ,
    MIG_READ_EXCLUSIVE,
    MIG_WRITE,
    MIGRATION,
    NONE,
    PMD,
    PRESENT,
    PTE,
    Pte,
    device_private,
    make_readonly,
    migration,
    present,
)

# the entry values are re-exported: callers say pagetable.PRESENT, ...
__all__ = [
    "DEVICE_PRIVATE",
    "EMPTY",
    "MIG_READ",
    "MIG_READ_EXCLUSIVE",
    "MIG_WRITE",
    "MIGRATION",
    "NONE",
    "PMD",
    "PRESENT",
    "PTE",
    "Pte",
    "block_empty",
    "block_start",
    "clear_entry",
    "device_private",
    "entry",
    "find_entry",
    "install_entry",
    "make_readonly",
    "maps_dax_block",
    "migration",
    "present",
    "ptl_count",
    "ptl_lock",
    "ptl_owner",
    "ptl_slot",
    "ptl_unlock",
    "slot_empty",
    "split_huge_pmd",
]


# -- lookups -------------------------------------------------------------------


def entry(m: Machine, proc: int, addr: int) -> tuple[Pte, str]:
    """The entry translating (proc, addr): the PMD if one maps the block (its
    pfn resolved to the subpage), else the PTE."""
    lay = m.layout
    if lay.in_block(addr):
        pmd = m.s.pmds[lay.pmd_slot(proc, addr)]
        if pmd.has_pfn():
            return pmd.with_pfn(pmd.pfn + (addr & (lay.nr_huge() - 1))), PMD
    return m.s.ptes[lay.pte_slot(proc, addr)], PTE


def slot_empty(m: Machine, proc: int, addr: int) -> bool:
    return entry(m, proc, addr)[0] == EMPTY


def block_empty(m: Machine, proc: int, addr: int) -> bool:
    """Is the whole PMD block containing ``addr`` free?"""
    lay = m.layout
    if not lay.in_block(addr):
        return False
    start = addr & ~(lay.nr_huge() - 1)
    return m.s.pmds[lay.pmd_slot(proc, addr)] == EMPTY and all(
        m.s.ptes[lay.pte_slot(proc, a)] == EMPTY for a in range(start, start + lay.nr_huge())
    )


def maps_dax_block(m: Machine, e: Pte) -> bool:
    """Does ``e`` map a page of a PMD-sized DAX block (a PMD-aligned
    device-dax device, or an FS-DAX PMD entry)? Such a PMD is never split
    into PTEs (device-dax refuses; the split of a file VMA's PMD zaps it),
    and the walkers skip DAX VMAs."""
    return e.has_pfn() and m.layout.is_dax_pmd(e.pfn)


def block_start(m: Machine, addr: int) -> int:
    return addr & ~(m.layout.nr_huge() - 1)


# -- the page-table lock ---------------------------------------------------------


def ptl_locks_per_proc(m: Machine) -> int:
    lay = m.layout
    huge = max(lay.nr_huge(), 1)
    return max((lay.addrs + huge - 1) // huge, 1)


def ptl_count(m: Machine) -> int:
    return m.layout.procs * ptl_locks_per_proc(m)


def ptl_slot(m: Machine, proc: int, addr: int) -> int:
    """One lock per PMD block; slots past the last block share the last lock."""
    per = ptl_locks_per_proc(m)
    return proc * per + min(addr >> m.layout.order, per - 1)


def ptl_owner(m: Machine, proc: int, addr: int) -> int | None:
    """The task slot holding the lock of (proc, addr)'s block."""
    v = m.s.ptl[ptl_slot(m, proc, addr)]
    return v - 1 if v > 0 else None


def ptl_lock(m: Machine, proc: int, addr: int, task: int) -> None:
    m.s.ptl[ptl_slot(m, proc, addr)] = task + 1


def ptl_unlock(m: Machine, proc: int, addr: int) -> None:
    m.s.ptl[ptl_slot(m, proc, addr)] = 0


# -- installing and clearing entries -----------------------------------------------


def _covered(m: Machine, e: Pte, level: str) -> range:
    """The pages an entry covers: its pfn for a PTE, the folio for a PMD."""
    return range(e.pfn, e.pfn + (1 if level == PTE else m.layout.nr_huge()))


def _set_slot(m: Machine, proc: int, addr: int, level: str, e: Pte) -> None:
    if level == PTE:
        m.s.ptes[m.layout.pte_slot(proc, addr)] = e
    else:
        m.s.pmds[m.layout.pmd_slot(proc, addr)] = e


def _get_slot(m: Machine, proc: int, addr: int, level: str) -> Pte:
    if level == PTE:
        return m.s.ptes[m.layout.pte_slot(proc, addr)]
    return m.s.pmds[m.layout.pmd_slot(proc, addr)]


def install_entry(m: Machine, proc: int, addr: int, level: str, e: Pte, minimum: int, what: str) -> None:
    """Write an entry into an empty slot with its accounting: a mapping that
    holds a reference takes one (``folio_get``) and a mapcount (per page for a
    PTE, the entire mapcount for a PMD); a migration entry takes neither.
    ``minimum`` is the lowest refcount the folio may have (0 for the first
    mapping of a 0-based page)."""
    if not e.has_pfn():
        return
    p = e.pfn
    if e.holds_ref():
        page.page_get_from(m, p, 1, minimum, what)
        if level == PTE:
            m.s.mc[p] += 1
        else:
            m.s.emc[p] += 1
    else:
        m.touch_page(p)
    for q in _covered(m, e, level):
        if e.is_migration():
            m.s.ledger.pages[q].mig_entries += 1
        else:
            m.s.ledger.pages[q].maps += 1
    _set_slot(m, proc, addr, level, e)


def clear_entry(m: Machine, proc: int, addr: int, level: str, cpu: int, what: str) -> Pte:
    """Clear a slot with its accounting (``zap_pte_range`` / ``zap_huge_pmd``):
    a mapping that holds a reference drops its mapcount and puts it."""
    old = _get_slot(m, proc, addr, level)
    _set_slot(m, proc, addr, level, EMPTY)
    if not old.has_pfn():
        return old
    p = old.pfn
    for q in _covered(m, old, level):
        h = m.s.ledger.pages[q]
        if old.is_migration():
            h.mig_entries = max(h.mig_entries - 1, 0)
        else:
            h.maps = max(h.maps - 1, 0)
    if old.holds_ref():
        if level == PTE:
            m.s.mc[p] -= 1
        else:
            m.s.emc[p] -= 1
        page.put_page_refs(m, p, 1, cpu, what)
    elif not old.is_migration():
        page.page_torn_down(m, p, what)  # a devmap PTE: touching a freed memmap?
    else:
        m.touch_page(p)
    return old


def split_huge_pmd(m: Machine, proc: int, addr: int) -> None:
    """``split_huge_pmd``: the PMD becomes one PTE per page. A mapping PMD
    gives the folio ``nr - 1`` more references and turns the entire mapcount
    into per-page mapcounts; a PMD migration or device-private entry becomes
    PTE entries of the same kind."""
    lay = m.layout
    if not lay.in_block(addr):
        return
    slot = lay.pmd_slot(proc, addr)
    pmd = m.s.pmds[slot]
    if not pmd.has_pfn():
        return
    h = pmd.pfn
    nr = lay.nr_huge()
    start = addr & ~(nr - 1)
    m.s.pmds[slot] = EMPTY
    if pmd.holds_ref():
        m.s.emc[h] -= 1
        m.s.rc[h] += nr - 1
    for i in range(nr):
        p = h + i
        if pmd.holds_ref():
            m.s.mc[p] += 1
        m.s.ptes[lay.pte_slot(proc, start + i)] = pmd.with_pfn(p)
        m.touch_page(p)
    m.trace_note(lambda: f"split_huge_pmd(proc {proc}, block at {start}): pfn {h}..{h + nr} by PTEs")


def find_entry(m: Machine, h: int, nr: int, want: str, procs: int = 0xFF) -> tuple[int, int, str] | None:
    """The first slot (proc, addr, level) whose entry points into the folio
    ``h .. h + nr`` and is a mapping (``want == "mapping"``) or a migration
    entry (``want == "migration"``); PMDs of a process before its PTEs."""
    lay = m.layout

    def inside(e: Pte) -> bool:
        if not e.has_pfn() or not h <= e.pfn < h + nr:
            return False
        return e.is_mapping() if want == "mapping" else e.is_migration()

    for proc in range(lay.procs):
        if not (procs >> proc) & 1:
            continue
        for b in range(lay.blocks):
            if inside(m.s.pmds[proc * lay.blocks + b]):
                return proc, b << lay.order, PMD
        for a in range(lay.addrs):
            if inside(m.s.ptes[lay.pte_slot(proc, a)]):
                return proc, a, PTE
    return None
