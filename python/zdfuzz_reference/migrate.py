"""Migration between system RAM and device memory (device-private or
coherent), as tasks.

Mirrors mm/migrate_device.c (E1: the same functions in mm/migrate.c), as
``rust/core/src/migrate.rs`` models it:

* **collect** (``migrate_vma_collect_pmd`` under the page-table lock): select
  by ``MIGRATE_VMA_SELECT_*`` and owner, ``folio_get`` (the collect
  reference), ``folio_trylock`` unless it is the fault path's locked page,
  copy a dirty PTE's dirty bit to the folio (v6.0), replace the mapping with a
  migration entry; a PMD-mapped THP migrates whole with COMPOUND (E5) or is
  split first;
* **unmap** (``migrate_device_unmap``): LRU-isolate system pages,
  ``try_to_migrate`` the other mappings, the ``migrate_vma_check_page``
  pre-filter, and the restore pass for what fails;
* the driver's **allocation and copy** (a COMPOUND source without a large
  destination is split: ``migrate_vma_split_unmapped_folio``);
* **pages** (``migrate_vma_pages``: holes get ``migrate_vma_insert_page``;
  otherwise the exact gate ``folio_migrate_mapping``, then
  ``folio_migrate_flags``);
* **finalize** (``remove_migration_ptes`` to whichever page won, unlock and
  put the source — ``folio_putback_lru`` before 41cddf83d8b0 — and the
  destination).

``migrate_device_range`` collects by pfn instead of by address. A coherent
page migrates like a device-private one, but is mapped by present PTEs
(``MIGRATE_VMA_SELECT_DEVICE_COHERENT`` selects it).
``migrate_device_coherent_page`` is the one-step migration a FOLL_LONGTERM
GUP runs to move a coherent page to system RAM. The oracle checks I-M2..I-M7
and I-W1 here from the ledger.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from zdfuzz_reference import data, driver, failure, folio, page, pagetable, pgmap, ram, rmap
from zdfuzz_reference.flags import PG_DIRTY, PG_FREE_LIST, PG_LOCKED, PG_LRU, is_anon_mapping
from zdfuzz_reference.ops import (
    SELECT_COMPOUND,
    SELECT_DEVICE_COHERENT,
    SELECT_DEVICE_PRIVATE,
    SELECT_SYSTEM,
    SITE_ALLOC,
)
from zdfuzz_reference.oracle import KILLED, LOCK_DRIVER, LOCK_NONE, SAFETY, lock_task
from zdfuzz_reference.pte import EMPTY, PMD, PTE, Pte

if TYPE_CHECKING:
    from zdfuzz_reference.machine import Machine

# MIGRATE_PFN_* (and two flags of the model's own)
MF_MIGRATE = 1 << 0
MF_WRITE = 1 << 1
MF_COMPOUND = 1 << 2
MF_COLLECTED = 1 << 3  # the entry has a source page to restore
MF_DST_COMPOUND = 1 << 4  # the destination was allocated large

# who started a migration
VMA = "vma"  # the driver's migrate_vma_setup on a process range
DEVICE_RANGE = "device_range"  # the driver's migrate_device_range on its pfns
FAULT = "fault"  # do_swap_page -> migrate_to_ram

# MigCtx.gup bits: a GUP fault, and a FOLL_PIN one
GUP_FAULT = 1
GUP_FAULT_PIN = 2


@dataclass
class MigCtx:
    """One migration's ``struct migrate_vma`` (and the fault's state)."""

    origin: str = VMA
    proc: int = 0
    addr: int = 0  # a single page, or the start of a PMD block
    npages: int = 0  # entries in use
    pgmap: int = 0  # the device-private pgmap whose driver runs it
    select: int = 0  # MIGRATE_VMA_SELECT_* bits
    fault_pfn: int = 0  # fault_page + 1 (0: none)
    orig: Pte = EMPTY  # the fault path's orig_pte
    orig_pmd: bool = False  # ... read from a PMD: the re-check is pmd_same
    fault_ref: bool = False  # the fault path holds a page reference
    fault_locked: bool = False  # ... and the page lock
    retries: int = 0  # refaults so far (u8, saturating)
    oom: bool = False  # a destination allocation failed
    # a GUP call took this fault (``faultin_page`` -> ``handle_mm_fault``)
    # and retries its grab when the fault returns: 0 = a CPU access, else
    # GUP_FAULT | GUP_FAULT_PIN | the GUP flags << 2
    gup: int = 0

    def copy(self) -> MigCtx:
        return MigCtx(**self.__dict__)


class MigEntry(NamedTuple):
    """One ``src[i]`` / ``dst[i]`` pair: pfns + 1 (0 = none) and flags."""

    src: int = 0
    dst: int = 0
    flags: int = 0

    def src_pfn(self) -> int | None:
        return self.src - 1 if self.src > 0 else None

    def dst_pfn(self) -> int | None:
        return self.dst - 1 if self.dst > 0 else None

    def migrate(self) -> bool:
        return self.flags & MF_MIGRATE != 0


def mig_entry(m: Machine, slot: int, i: int) -> MigEntry:
    return m.s.mig_entries[slot * m.layout.mig_cap() + i]


def _set_mig_entry(m: Machine, slot: int, i: int, e: MigEntry) -> None:
    m.s.mig_entries[slot * m.layout.mig_cap() + i] = e


def fault_page(m: Machine, slot: int) -> int | None:
    """The migration's ``fault_page``: E1/E2 had no such argument."""
    if m.rules.fault.path == "no_ref":
        return None
    f = m.s.mig[slot].fault_pfn
    return f - 1 if f > 0 else None


def _prelocked_fault_page(m: Machine, slot: int, p: int) -> bool:
    return fault_page(m, slot) == p and m.rules.migrate.fault_page_prelocked


def mig_proc(m: Machine, slot: int) -> int | None:
    """The process whose address space a migration (or fault) works on."""
    return None if m.s.mig[slot].origin == DEVICE_RANGE else m.s.mig[slot].proc


def _trylock(m: Machine, p: int, slot: int) -> bool:
    """``folio_trylock`` by task ``slot``."""
    if m.s.flags[p] & PG_LOCKED:
        return False
    m.s.flags[p] |= PG_LOCKED
    m.s.ledger.locker[p] = lock_task(slot)
    return True


def _mig_unlock(m: Machine, p: int, slot: int) -> None:
    """``folio_unlock`` by the migration (I-M4: never the fault path's lock)."""
    f = fault_page(m, slot)
    if f is not None and f == p and m.s.mig[slot].fault_locked:
        m.violate(
            "I-M4",
            SAFETY,
            [("pfn", p)],
            lambda: (
                f"the migration unlocks fault page {p}, whose lock belongs to the fault path that called "
                "migrate_to_ram",
                "left locked for do_swap_page",
                "unlocked",
            ),
        )
    m.s.flags[p] &= ~PG_LOCKED
    m.s.ledger.locker[p] = LOCK_NONE


# -- collect --------------------------------------------------------------------


def migrate_collect(m: Machine, slot: int, cpu: int) -> None:
    """migrate_vma_setup's collect of the range of task ``slot``."""
    ctx = m.s.mig[slot].copy()
    if ctx.origin == DEVICE_RANGE:
        _device_range_collect(m, slot)
        return
    proc = ctx.proc
    compound = ctx.select & SELECT_COMPOUND != 0
    nr = m.layout.nr_huge() if compound else 1
    start = pagetable.block_start(m, ctx.addr) if compound else ctx.addr
    m.s.mig[slot].npages = nr
    m.s.mig[slot].addr = start
    for i in range(nr):
        _set_mig_entry(m, slot, i, MigEntry())
    if compound and m.layout.in_block(start):
        pmd, level = pagetable.entry(m, proc, start)
        if pmd.kind in (pagetable.PRESENT, pagetable.DEVICE_PRIVATE) and level == PMD:
            h = page.head_of(m, pmd.pfn)
            if _collect_selects(m, slot, h):
                _collect_one(m, slot, proc, start, PMD, 0, cpu)
            return
    for i in range(nr):
        a = start + i
        e, level = pagetable.entry(m, proc, a)
        if level == PMD:
            # not migrating the folio whole: split it first
            if not e.has_pfn():
                continue
            h = page.head_of(m, e.pfn)
            if e.is_migration() or not _collect_selects(m, slot, h):
                continue
            pagetable.split_huge_pmd(m, proc, a)
            if not _split_for_collect(m, slot, h, cpu):
                continue
        e, _ = pagetable.entry(m, proc, a)
        if e.kind == pagetable.NONE:
            # a hole in an anonymous VMA: migrate_vma_collect_hole
            _set_mig_entry(m, slot, i, MigEntry(0, 0, MF_MIGRATE))
        elif e.kind in (pagetable.PRESENT, pagetable.DEVICE_PRIVATE):
            h = page.head_of(m, e.pfn)
            if not _collect_selects(m, slot, h):
                continue
            if page.folio_nr(m, h) > 1:
                # a PTE-mapped large folio: E3/E4 skip it, E5 splits it first
                if not m.rules.migrate.compound or not _split_for_collect(m, slot, h, cpu):
                    continue
            _collect_one(m, slot, proc, a, PTE, i, cpu)


def _split_for_collect(m: Machine, slot: int, h: int, cpu: int) -> bool:
    """``migrate_vma_split_folio``: split a mapped large folio so its pages can
    be collected one by one. The fault folio's reference and lock move to the
    fault page's new folio; any other folio is trylocked (the kernel sleeps)
    and referenced around the split."""
    f = fault_page(m, slot)
    if f is not None and page.head_of(m, f) == h and m.s.mig[slot].fault_ref:
        if not folio.split_folio(m, h, 1, 0, cpu):
            return False
        if f != h:
            page.page_get(m, f, 1, "migrate_vma_split_folio: folio_get(new fault folio)")
            if m.s.mig[slot].fault_locked:
                m.s.flags[f] |= PG_LOCKED
                m.s.ledger.locker[f] = lock_task(slot)
                m.s.flags[h] &= ~PG_LOCKED
                m.s.ledger.locker[h] = LOCK_NONE
            page.put_page_refs(m, h, 1, cpu, "migrate_vma_split_folio: folio_put(folio)")
        return True
    if not _trylock(m, h, slot):
        return False
    page.page_get(m, h, 1, "migrate_vma_split_folio: folio_get")
    ok = folio.split_folio(m, h, 1, 0, cpu)
    _mig_unlock(m, h, slot)
    page.put_page_refs(m, h, 1, cpu, "migrate_vma_split_folio: folio_put")
    return ok


def _collect_selects(m: Machine, slot: int, h: int) -> bool:
    """Does this migration select folio ``h`` (by type and owner)?"""
    ctx = m.s.mig[slot]
    if m.layout.is_ram(h):
        return ctx.select & SELECT_SYSTEM != 0 and is_anon_mapping(m.s.mapping[h])
    if m.layout.is_private(h):
        return ctx.select & SELECT_DEVICE_PRIVATE != 0 and m.layout.pgmap_of(h) == ctx.pgmap
    if m.layout.is_coherent(h):
        # migrate_vma_collect_pmd: a coherent page only with
        # SELECT_DEVICE_COHERENT and the caller's own pgmap (owner)
        return ctx.select & SELECT_DEVICE_COHERENT != 0 and m.layout.pgmap_of(h) == ctx.pgmap
    return False  # FS-DAX, device-dax and P2P pages are not anonymous


def _collect_one(m: Machine, slot: int, proc: int, a: int, level: str, i: int, cpu: int) -> None:
    """Collect the folio mapped at (proc, a, level) into entry ``i``."""
    e, _ = pagetable.entry(m, proc, a)
    p = page.head_of(m, e.pfn)
    page.page_get(m, p, 1, "migrate_vma_collect: folio_get")
    m.s.ledger.pages[p].collect += 1
    if not _prelocked_fault_page(m, slot, p) and not _trylock(m, p, slot):
        m.s.ledger.pages[p].collect -= 1
        page.put_page_refs(m, p, 1, cpu, "migrate_vma_collect: folio_put (trylock failed)")
        m.trace_note(lambda: f"collect: pfn {p} is locked, skipped")
        return
    if e.kind == pagetable.PRESENT:
        write, dirty = e.write, e.dirty
    elif e.kind == pagetable.DEVICE_PRIVATE:
        write, dirty = e.write, False
    else:
        write, dirty = False, False
    if dirty:
        m.s.ledger.pages[p].dirty_pte = True
        if m.rules.migrate.collect_marks_dirty:
            m.s.flags[p] |= PG_DIRTY
    if write:
        kind = pagetable.MIG_WRITE
    elif folio.folio_mapcount(m, p) == 1:
        kind = pagetable.MIG_READ_EXCLUSIVE
    else:
        kind = pagetable.MIG_READ
    _replace_with_migration_entry(m, proc, a, level, kind, cpu)
    flags = MF_MIGRATE | MF_COLLECTED | (MF_WRITE if write else 0) | (MF_COMPOUND if level == PMD else 0)
    _set_mig_entry(m, slot, i, MigEntry(p + 1, 0, flags))


def _replace_with_migration_entry(m: Machine, proc: int, a: int, level: str, kind: str, cpu: int) -> None:
    """The mapping becomes a migration entry: rmap removed, reference put."""
    at = pagetable.block_start(m, a) if level == PMD else a
    old = pagetable.clear_entry(m, proc, at, level, cpu, "try_to_migrate: folio_put (mapping)")
    if not old.has_pfn():
        return
    pagetable.install_entry(m, proc, at, level, pagetable.migration(old.pfn, kind), 0, "migration entry")


def _device_range_collect(m: Machine, slot: int) -> None:
    """migrate_device_range: collect every in-use page of the pgmap
    (``folio_get_nontail_page`` skips tails and free pages)."""
    g = m.s.mig[slot].pgmap
    pfns = m.layout.pfns_of(g)
    m.s.mig[slot].npages = len(pfns)
    for i, p in enumerate(pfns):
        _set_mig_entry(m, slot, i, MigEntry())
        if m.s.head[p] != p or m.s.rc[p] == 0 or m.s.flags[p] & PG_FREE_LIST:
            continue
        page.page_get(m, p, 1, "migrate_device_range: folio_get_nontail_page")
        m.s.ledger.pages[p].collect += 1
        if not _trylock(m, p, slot):
            m.s.ledger.pages[p].collect -= 1
            page.put_page_refs(m, p, 1, 0, "migrate_device_range: folio_put (trylock failed)")
            continue
        c = MF_COMPOUND if page.folio_nr(m, p) > 1 else 0
        _set_mig_entry(m, slot, i, MigEntry(p + 1, 0, MF_MIGRATE | MF_COLLECTED | c))


# -- unmap ------------------------------------------------------------------------


def migrate_unmap(m: Machine, slot: int, cpu: int) -> None:
    """migrate_device_unmap: isolate, unmap the remaining mappings, the
    pre-filter, and the restore pass for what fails."""
    n = m.s.mig[slot].npages
    for i in range(n):
        e = mig_entry(m, slot, i)
        p = e.src_pfn()
        if p is None or not e.migrate():
            continue
        if m.layout.is_ram(p):
            # folio_isolate_lru: the isolation reference replaces collect's
            if ram.isolate_lru(m, p):
                page.put_page_refs(m, p, 1, cpu, "migrate_device_unmap: folio_put (collect)")
            else:
                _set_mig_entry(m, slot, i, e._replace(flags=e.flags & ~MF_MIGRATE))
                continue
        # try_to_migrate (only on a mapped folio): every other mapping the
        # rmap walk finds becomes a migration entry
        nr = page.folio_nr(m, p)
        walk = rmap.try_to_migrate_procs(m, p)
        while (found := pagetable.find_entry(m, p, nr, "mapping", walk)) is not None:
            proc, a, level = found
            x, _ = pagetable.entry(m, proc, a)
            kind = pagetable.MIG_WRITE if x.writable() else pagetable.MIG_READ
            if not m.rules.migrate.unmap_subpage_fix and x.kind == pagetable.DEVICE_PRIVATE and level == PTE:
                # the pre-v5.3 bug (1de13ee59225): the subpage is computed
                # from the swap entry as if it were a present PTE's pfn: a
                # wild struct page pointer the rmap removal dereferences
                m.violate(
                    "I-M8",
                    SAFETY,
                    [("pfn", p)],
                    lambda: (
                        f"try_to_unmap_one computed the subpage of device-private pfn {p} from its swap entry as if "
                        "it were a present PTE (page - page_to_pfn(page) + pte_pfn(pte)): a wild struct page "
                        "pointer, which the rmap removal dereferences (the kernel oopses)",
                        "subpage = page",
                        "wild pointer",
                    ),
                )
                wrong = (x.pfn + 1) % m.layout.npfns
                pagetable.clear_entry(m, proc, a, level, cpu, "try_to_unmap_one: put_page (bad subpage)")
                pagetable.install_entry(m, proc, a, level, pagetable.migration(wrong, kind), 0, "migration entry")
                continue
            if x.kind == pagetable.PRESENT and x.dirty:
                # try_to_migrate_one: folio_mark_dirty (all eras)
                m.s.ledger.pages[p].dirty_pte = True
                m.s.flags[p] |= PG_DIRTY
            _replace_with_migration_entry(m, proc, a, level, kind, cpu)
        # a mapping the walk missed is a safety violation (I-M9): the program ends there
        rmap.rmap_walk_missed(m, walk, p, nr, "mapping", "try_to_migrate")
        if not _migrate_check_page(m, slot, p):
            m.trace_note(lambda: f"migrate_vma_check_page(pfn {p}) fails: restored")
            _set_mig_entry(m, slot, i, e._replace(flags=e.flags & ~MF_MIGRATE))
    # the restore pass
    for i in range(n):
        e = mig_entry(m, slot, i)
        p = e.src_pfn()
        if p is None or e.migrate():
            continue
        _restore_src(m, slot, p, cpu, "migrate_device_unmap (restore)")
        _set_mig_entry(m, slot, i, MigEntry())


def _migrate_check_page(m: Machine, slot: int, h: int) -> bool:
    """``migrate_vma_check_page``: the pre-filter (the exact gate is later)."""
    r = m.rules.migrate
    device = not m.layout.is_ram(h)
    if device and r.check_device == "skip":
        return m.layout.is_private(h)  # v5.10: "return is_device_private_page(page)"
    if page.folio_nr(m, h) > 1 and not r.compound:
        return False
    if not device and not r.check_system:
        return True
    extra = 1  # collect or isolation reference
    if fault_page(m, slot) == h:
        extra += 1
    if device:
        extra += 1
    return m.s.rc[h] - extra <= folio.folio_mapcount(m, h)


def _check_restored(m: Machine, p: int) -> None:
    """I-M5: a failed migration maps ``p`` back through clean PTEs, so a
    dirty bit collect dropped survives only as PG_dirty (fd35ca3d12cc: the
    loss is on the failed path)."""
    if pagetable.find_entry(m, p, page.folio_nr(m, p), "migration") is None:
        return
    if m.s.ledger.pages[p].dirty_pte and m.s.flags[p] & PG_DIRTY == 0:
        m.violate(
            "I-M5",
            SAFETY,
            [("pfn", p)],
            lambda: (
                f"a dirty PTE of pfn {p} was replaced by a migration entry; the migration failed and pfn {p} is "
                "mapped back through a clean PTE without PG_dirty: the dirty bit was lost at collect, so a clean "
                "copy in the swap cache is dropped at reclaim without writeback",
                "dirty",
                "clean",
            ),
        )


def _restore_src(m: Machine, slot: int, p: int, cpu: int, what: str) -> None:
    """Put a source back: mappings restored, unlocked (unless the fault path
    owns the lock), its collect reference dropped (RAM back on the LRU)."""
    _check_restored(m, p)
    _remove_migration_ptes(m, p, p, what)
    if not (fault_page(m, slot) == p and m.rules.migrate.finalize_skips_fault_page):
        _mig_unlock(m, p, slot)
    h = m.s.ledger.pages[p]
    h.collect = max(h.collect - 1, 0)
    if m.layout.is_ram(p):
        ram.add_lru(m, p)
    page.put_page_refs(m, p, 1, cpu, "folio_put (collect reference)")


def _remove_migration_ptes(m: Machine, src: int, dst: int, what: str) -> None:
    """``remove_migration_ptes(src, dst)``: every migration entry for a page of
    ``src`` becomes a mapping of the same page of ``dst`` — device-private if
    ``dst`` is, else present — with a reference and a mapcount; the data it
    shows is checked (I-W1)."""
    nr = page.folio_nr(m, src)
    dst_private = m.layout.is_private(dst)
    # rmap_walk(dst): where dst's mapping leads (folio_migrate_mapping copied the source's)
    walk = rmap.rmap_walk_procs(m, dst, src, "remove_migration_ptes")
    while (found := pagetable.find_entry(m, src, nr, "migration", walk)) is not None:
        proc, a, level = found
        x, _ = pagetable.entry(m, proc, a)
        if x.kind != pagetable.MIGRATION:
            break
        off = x.pfn - src
        at = pagetable.block_start(m, a) if level == PMD else a
        if level == PMD and page.folio_nr(m, dst) == 1:
            # an order-0 destination under a PMD entry: remap page by page
            pagetable.split_huge_pmd(m, proc, at)
            continue
        if level == PTE:
            m.s.ptes[m.layout.pte_slot(proc, at)] = EMPTY
        else:
            m.s.pmds[m.layout.pmd_slot(proc, at)] = EMPTY
        covered = nr if level == PMD else 1
        for q in range(x.pfn, x.pfn + covered):
            h = m.s.ledger.pages[q]
            h.mig_entries = max(h.mig_entries - 1, 0)
        target = dst if level == PMD else dst + off
        write = x.mig == pagetable.MIG_WRITE
        e = pagetable.device_private(target, write) if dst_private else pagetable.present(target, write)
        pagetable.install_entry(m, proc, at, level, e, 1, what)
        if level == PMD:
            for k in range(nr):
                data.check_vpage(m, proc, at + k, "after migration")
        else:
            data.check_vpage(m, proc, at, "after migration")
    rmap.rmap_walk_missed(m, walk, src, nr, "migration", "remove_migration_ptes")


# -- the driver: allocate destinations and copy ---------------------------------------


def migrate_alloc_copy(m: Machine, slot: int, cpu: int) -> None:
    """The driver allocates a destination for every entry still migrating and
    copies the data (device destinations for SELECT_SYSTEM, RAM otherwise)."""
    ctx = m.s.mig[slot].copy()
    to_device = ctx.origin == VMA and ctx.select & SELECT_SYSTEM != 0
    g = ctx.pgmap
    i = 0
    n = ctx.npages
    while i < n:
        e = mig_entry(m, slot, i)
        if not e.migrate():
            i += 1
            continue
        src = e.src_pfn()
        if src is None and not to_device:
            i += 1  # migrate_to_ram has nothing to put in a hole
            continue
        compound = e.flags & MF_COMPOUND != 0
        order = m.layout.order if compound else 0
        dst: int | None = None
        if failure.inject(m, SITE_ALLOC):
            pass  # the driver's allocation failed: not migrated (or split and retried)
        elif to_device:
            if order > 0 and m.rules.thp.device_private:
                h = device_folio_fit(m, g)
                dst = None if h is None else device_alloc(m, g, h, order, cpu, lock_task(slot))
            elif order == 0:
                h = driver.driver_free_page(m, g)
                dst = None if h is None else device_alloc(m, g, h, 0, cpu, lock_task(slot))
        else:
            dst = ram.ram_alloc(m, order)
            if dst is not None:
                m.s.flags[dst] |= PG_LOCKED
                m.s.ledger.locker[dst] = lock_task(slot)
                m.s.ledger.pages[dst].mig_dst = True
        if dst is not None:
            d = dst
            if src is not None:
                for k in range(1 << order):
                    m.s.content[d + k] = m.s.content[src + k]
            else:
                m.s.content[d] = 0
            e = e._replace(dst=d + 1, flags=e.flags | (MF_DST_COMPOUND if order > 0 else 0))
            _set_mig_entry(m, slot, i, e)
            m.trace_note(lambda: f"driver: dst pfn {d} <- copy of {'a hole' if src is None else f'pfn {src}'}")
            i += 1
        elif compound and src is not None:
            # partial migration: split the source, migrate page by page
            if not _split_collected(m, slot, i, src, cpu):
                _set_mig_entry(m, slot, i, e._replace(flags=e.flags & ~MF_MIGRATE))
                i += 1
            # on success entry i is now order-0: allocate again
        else:
            if not to_device:
                m.s.mig[slot].oom = True
            m.trace_note(lambda: "driver: no destination page")
            i += 1


def _split_collected(m: Machine, slot: int, i: int, h: int, cpu: int) -> bool:
    """``migrate_vma_split_unmapped_folio``: every page of the collected
    COMPOUND source becomes its own entry, locked and referenced."""
    nr = page.folio_nr(m, h)
    if i + nr > m.layout.mig_cap() or not folio.split_folio(m, h, 1, 1, cpu):
        return False
    e = mig_entry(m, slot, i)
    for k in range(nr):
        p = h + k
        if k > 0:
            m.s.ledger.pages[p].collect += 1
            m.s.flags[p] |= PG_LOCKED | (m.s.flags[h] & PG_DIRTY)
            m.s.ledger.locker[p] = lock_task(slot)
        _set_mig_entry(m, slot, i + k, MigEntry(p + 1, 0, (e.flags & ~MF_COMPOUND) | MF_MIGRATE | MF_COLLECTED))
    m.s.mig[slot].npages = max(m.s.mig[slot].npages, i + nr)
    return True


# -- migrate_vma_pages -------------------------------------------------------------


def migrate_pages(m: Machine, slot: int) -> None:
    ctx = m.s.mig[slot].copy()
    for i in range(ctx.npages):
        e = mig_entry(m, slot, i)
        if not e.migrate():
            continue
        d = e.dst_pfn()
        if d is None:
            _set_mig_entry(m, slot, i, e._replace(flags=e.flags & ~MF_MIGRATE))
            continue
        s = e.src_pfn()
        if s is None:
            # a hole: migrate_vma_insert_page
            proc = ctx.proc
            a = ctx.addr + i
            compound = e.flags & MF_DST_COMPOUND != 0
            free = pagetable.block_empty(m, proc, a) if compound else pagetable.slot_empty(m, proc, a)
            if not free or not m.s.alive[proc]:
                _set_mig_entry(m, slot, i, e._replace(flags=e.flags & ~MF_MIGRATE))
                continue
            level = PMD if compound else PTE
            at = pagetable.block_start(m, a) if compound else a
            entry = driver.device_anon_entry(m, d)
            pagetable.install_entry(m, proc, at, level, entry, 1, "migrate_vma_insert_page: folio_get")
            rmap.folio_add_new_anon_rmap(m, d, proc)
            k = m.layout.nr_huge() if compound else 1
            for x in range(at, at + k):
                m.s.ledger.vcontent[m.layout.pte_slot(proc, x)] = 0
            continue
        # the exact gate: folio_migrate_mapping(NULL, dst, src, extra_cnt)
        r = m.rules.migrate
        expected = 1
        if r.exact_counts_device_base and m.layout.is_private(s):
            expected += 1
        if fault_page(m, slot) == s:
            expected += 1
        rc = m.s.rc[s]
        if r.exact_gate and rc != expected:
            m.trace_note(lambda: f"folio_migrate_mapping(pfn {s}): refcount {rc} != {expected}: -EAGAIN")
            _set_mig_entry(m, slot, i, e._replace(flags=e.flags & ~MF_MIGRATE))
            continue
        _check_no_unexplained_refs(m, slot, s)
        # folio_migrate_flags
        if m.s.flags[s] & PG_DIRTY:
            m.s.flags[d] |= PG_DIRTY
        m.s.mapping[d] = m.s.mapping[s]  # folio_migrate_mapping
        for k in range(page.folio_nr(m, s)):
            m.s.ledger.migrated_away[s + k] = True


def _check_no_unexplained_refs(m: Machine, slot: int, s: int) -> None:
    """I-M2: nothing the migration cannot account for holds the source."""
    _check_migrated(m, s, fault_page(m, slot) == s and m.s.mig[slot].fault_ref)


def _check_migrated(m: Machine, s: int, own_fault: bool) -> None:
    """I-M2 for folio ``s``, migrated: every reference on it is one the
    migration accounts for (``own_fault``: one fault-path reference is the
    migration's own)."""
    for p in range(s, s + page.folio_nr(m, s)):
        h = m.s.ledger.pages[p]
        n = h.unexplained_for_migration()
        if own_fault and p == s:
            n = max(n - 1, 0)
        if n > 0:
            m.violate(
                "I-M2",
                SAFETY,
                [("pfn", p)],
                lambda: (
                    f"migrate_vma_pages migrates pfn {p} while it is held by {h.describe()}: that holder keeps using "
                    "the old page",
                    "migration refused",
                    "migrated",
                ),
            )
            return


# -- migrate_vma_finalize ----------------------------------------------------------


def migrate_finalize(m: Machine, slot: int, cpu: int) -> None:
    n = m.s.mig[slot].npages
    for i in range(n):
        e = mig_entry(m, slot, i)
        s = e.src_pfn()
        d = e.dst_pfn()
        if s is None:
            if d is not None:
                _release_dst(m, slot, d, cpu)  # a hole fill: the allocation reference
            continue
        if d is not None and e.migrate():
            newdst = d
        else:
            if d is not None:
                _release_dst(m, slot, d, cpu)
            newdst = s
        if newdst != s and m.layout.is_ram(newdst):
            ram.add_lru(m, newdst)
        if newdst == s:
            _check_restored(m, s)
        _remove_migration_ptes(m, s, newdst, "remove_migration_ptes")
        if newdst != s:
            for k in range(page.folio_nr(m, s)):
                if m.s.ledger.pages[s + k].dirty_pte:
                    m.s.ledger.pages[newdst + k].dirty_pte = True
        if not (fault_page(m, slot) == s and m.rules.migrate.finalize_skips_fault_page):
            _mig_unlock(m, s, slot)
        h = m.s.ledger.pages[s]
        h.collect = max(h.collect - 1, 0)
        if m.layout.is_ram(s) and (newdst == s or m.rules.migrate.finalize_putback_src):
            # folio_putback_lru
            if newdst != s and m.s.rc[s] == 1:
                m.violate(
                    "I-M6",
                    SAFETY,
                    [("pfn", s)],
                    lambda: (
                        f"migrate_vma_finalize puts pfn {s} back on the LRU although its data was migrated away and "
                        "this put frees it (its memcg data is already gone)",
                        "freed without the LRU",
                        "put on the LRU",
                    ),
                )
            ram.add_lru(m, s)
        page.put_page_refs(m, s, 1, cpu, "migrate_vma_finalize: folio_put(src)")
        if newdst != s:
            _release_dst(m, slot, newdst, cpu)
    _check_finalized(m, slot)


def _release_dst(m: Machine, slot: int, d: int, cpu: int) -> None:
    """Unlock and put a destination: the driver's allocation reference."""
    _mig_unlock(m, d, slot)
    m.s.ledger.pages[d].mig_dst = False
    page.put_page_refs(m, d, 1, cpu, "migrate_vma_finalize: folio_put(dst)")


def _check_finalized(m: Machine, slot: int) -> None:
    """After finalize no migration entry is left that no running migration
    holds collected (I-M3), and nothing this migration locked stays locked
    (I-M7)."""
    lay = m.layout

    def stale(e: Pte) -> bool:
        if not e.is_migration():
            return False
        h = page.head_of(m, e.pfn)
        return m.s.ledger.pages[h].collect == 0 and m.s.ledger.pages[e.pfn].collect == 0

    left = next((e for e in list(m.s.ptes[: lay.procs * lay.addrs]) + list(m.s.pmds) if stale(e)), None)
    if left is not None:
        q = left.pfn
        m.violate(
            "I-M3",
            SAFETY,
            [("pfn", q)],
            lambda: (
                f"a migration entry for pfn {q} survives migrate_vma_finalize with no migration holding the page: a "
                "process touching it waits forever, or maps a page that is freed and reused",
                "no migration entry",
                left.describe(),
            ),
        )
        return
    for i in range(m.s.mig[slot].npages):
        e = mig_entry(m, slot, i)
        span = lay.nr_huge() if e.flags & (MF_COMPOUND | MF_DST_COMPOUND) else 1
        for p in (e.src_pfn(), e.dst_pfn()):
            if p is None:
                continue
            for q in range(p, min(p + span, lay.npfns)):
                if m.s.ledger.locker[q] == lock_task(slot) and not (
                    fault_page(m, slot) == q and m.s.mig[slot].fault_locked
                ):
                    m.violate(
                        "I-M7",
                        SAFETY,
                        [("pfn", q)],
                        lambda: (
                            f"pfn {q} was locked by this migration and is still locked after finalize: every later "
                            "lock_page on it sleeps forever",
                            "unlocked",
                            "locked",
                        ),
                    )
                    return


# -- migrate_device_coherent_page (GUP's FOLL_LONGTERM path) ----------------------------


def migrate_device_coherent_page(m: Machine, p: int, cpu: int) -> bool:
    """``migrate_device_coherent_page`` (mm/migrate_device.c, v6.0), as
    ``migrate_longterm_unpinnable_pages`` (mm/gup.c) calls it for a coherent
    page a FOLL_LONGTERM GUP grabbed: a coherent page must stay evictable
    (``is_longterm_pinnable_page``), so GUP moves it to system RAM and
    retries there. GUP's grab has become the caller's plain reference
    (``folio_get`` + ``gup_put_folio``), which the migration consumes on both
    paths: the mappings become migration entries (``migrate_device_unmap``:
    ``try_to_migrate``, then the pre-filter ``migrate_vma_check_page``), the
    data is copied to a fresh RAM page (``alloc_page``) and moved if the exact
    gate (``folio_migrate_mapping``) sees no reference beyond the caller's,
    and finalize maps the destination (or the source again) and puts the
    source — its last put frees it to the driver (``->page_free`` +
    ``put_dev_pagemap``). True if the page moved. One step: the windows
    between unmap, copy and finalize are not modelled."""
    if m.s.flags[p] & PG_LOCKED:
        # a migration holds the page locked (between its collect and finalize
        # steps); its finalize unlocks before it puts its own reference, so
        # the check below can still refuse: that outcome, at once
        m.trace_note(lambda: f"migrate_device_coherent_page(pfn {p}): locked by a migration: -EBUSY")
        return False
    # the caller's reference (accounted as the migration's, like collect's)
    page.page_get(m, p, 1, "migrate_longterm_unpinnable_pages: folio_get")
    m.s.ledger.pages[p].collect += 1
    m.trace_note(lambda: f"migrate_device_coherent_page(pfn {p})")
    # migrate_device_unmap: try_to_migrate every mapping the rmap walk finds
    walk = rmap.try_to_migrate_procs(m, p)
    while (found := pagetable.find_entry(m, p, 1, "mapping", walk)) is not None:
        proc, a, level = found
        x, _ = pagetable.entry(m, proc, a)
        kind = pagetable.MIG_WRITE if x.writable() else pagetable.MIG_READ
        if x.kind == pagetable.PRESENT and x.dirty:
            m.s.ledger.pages[p].dirty_pte = True
            m.s.flags[p] |= PG_DIRTY
        _replace_with_migration_entry(m, proc, a, level, kind, cpu)
    # migrate_vma_check_page: the caller's reference and the ZONE_DEVICE
    # extra one are expected
    rmap.rmap_walk_missed(m, walk, p, 1, "mapping", "try_to_migrate")
    dst: int | None = None
    if m.s.rc[p] - 2 > folio.folio_mapcount(m, p):
        m.trace_note(lambda: f"migrate_vma_check_page(pfn {p}) fails: -EBUSY")
    elif failure.inject(m, SITE_ALLOC):
        m.trace_note(lambda: "alloc_page failed")
    else:
        dst = ram.ram_alloc(m, 0)
    # migrate_device_pages: the exact gate
    moved = False
    if dst is not None:
        rc = m.s.rc[p]
        if m.rules.migrate.exact_gate and rc != 1:
            m.trace_note(lambda: f"folio_migrate_mapping(pfn {p}): refcount {rc} != 1: -EAGAIN")
        else:
            moved = True
    if dst is not None and moved:
        d = dst
        _check_migrated(m, p, False)
        m.s.content[d] = m.s.content[p]
        if m.s.flags[p] & PG_DIRTY:
            m.s.flags[d] |= PG_DIRTY
        m.s.ledger.migrated_away[p] = True
        m.s.ledger.pages[d].mig_dst = True
        ram.add_lru(m, d)
        m.s.mapping[d] = m.s.mapping[p]  # folio_migrate_mapping
        _remove_migration_ptes(m, p, d, "remove_migration_ptes")
        if m.s.ledger.pages[p].dirty_pte:
            m.s.ledger.pages[d].dirty_pte = True
        m.s.ledger.pages[d].mig_dst = False
        page.put_page_refs(m, d, 1, cpu, "migrate_device_finalize: folio_put(dst)")
    else:
        if dst is not None:
            # the destination was not used: back to the buddy allocator
            page.put_page_refs(m, dst, 1, cpu, "migrate_device_finalize: folio_put(dst)")
        _check_restored(m, p)
        _remove_migration_ptes(m, p, p, "migrate_device_coherent_page (restore)")
    m.s.ledger.pages[p].collect -= 1
    page.put_page_refs(m, p, 1, cpu, "migrate_device_finalize: folio_put(src)")
    return moved


# -- device-private allocation (shared with the driver's own actions) -------------------


def device_folio_fit(m: Machine, g: int) -> int | None:
    """An aligned block of free pages for a large device folio."""
    nr = m.layout.nr_huge()
    r = m.layout.pfns_of(g)
    for h in range(r.start, r.stop, nr):
        if h + nr <= r.stop and all(m.s.flags[p] & PG_FREE_LIST for p in range(h, h + nr)):
            return h
    return None


def device_alloc(m: Machine, g: int, h: int, order: int, cpu: int, locker: int) -> int:
    """``zone_device_page_init`` / ``zone_device_folio_init`` on the free
    page(s) at ``h``: a pgmap reference per base page (E3 ``tryget_live``, E5
    ``tryget_many(1 << order)``), refcount 1, locked by ``locker`` (the
    driver, or the migration task that allocated it)."""
    nr = 1 << order
    pr = m.rules.private
    for p in range(h, h + nr):
        m.touch_page(p)
        m.s.flags[p] &= ~PG_FREE_LIST
    if m.s.ledger.life[g] == KILLED:
        m.violate(
            "I-L5",
            SAFETY,
            [("pgmap", g), ("pfn", h)],
            lambda: (f"pfn {h} is allocated after memunmap_pages killed pgmap {g}", "live pgmap", "killed"),
        )
    if pr.alloc_pgmap_ref == "tryget_live":
        if not pgmap.pgmap_tryget_live(m, g, cpu, "zone_device_page_init"):
            # WARN_ON_ONCE(!percpu_ref_tryget_live()): the kernel carries on
            m.violate(
                "I-L5",
                SAFETY,
                [("pgmap", g), ("pfn", h)],
                lambda: (
                    f"zone_device_page_init: tryget_live failed on pgmap {g} (allocation after kill)",
                    "tryget_live succeeds",
                    "failed",
                ),
            )
    elif pr.alloc_pgmap_ref == "tryget_many":
        pgmap.pgmap_tryget_many(m, g, cpu, nr, "zone_device_folio_init: tryget_many(1 << order)")
    if order > 0:
        folio.prep_compound(m, h, order)
    else:
        folio.check_standalone(m, h, h, 0)
    if pr.alloc_sets_rc:
        old = m.s.rc[h]
        if old != 0:
            m.violate(
                "I-F1",
                SAFETY,
                [("pfn", h)],
                lambda: (
                    f"zone_device_page_init on pfn {h} whose refcount is {old}: the page is not free",
                    "0",
                    f"{old}",
                ),
            )
        page.page_set_count(m, h, 1)
    if pr.alloc_get_page:
        page.page_get(m, h, 1, "alloc_device_page: get_page")
    m.s.flags[h] |= PG_LOCKED
    m.s.flags[h] &= ~PG_LRU
    m.s.ledger.locker[h] = locker
    if locker == LOCK_DRIVER:
        m.s.ledger.pages[h].driver = True
    else:
        m.s.ledger.pages[h].mig_dst = True
    return h
