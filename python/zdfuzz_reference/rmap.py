"""Reverse mapping of anonymous folios: ``anon_vma``,
``folio_add_new_anon_rmap`` and the rmap walk of ``try_to_migrate`` and
``remove_migration_ptes`` (mm/rmap.c).

An anonymous folio's ``page->mapping`` names its anon_vma; the walk visits
only the VMAs linked to that anon_vma. Each process has one VMA with an
anon_vma of its own (id = its slot); fork links the child to every anon_vma
of the parent's and gives it a new one; exit unlinks it. The oracle compares
the walk with the page tables afterwards (I-M9), checks that the anon_vma
the walk dereferences is still linked to some VMA (I-M10), and that a new
anonymous mapping names the mapping VMA's anon_vma (I-F2).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from zdfuzz_reference import folio, page, pagetable
from zdfuzz_reference.flags import (
    MAPPING_FILE,
    MAPPING_NONE,
    anon_mapping,
    anon_vma_of,
    is_anon_mapping,
    is_file_mapping,
)
from zdfuzz_reference.oracle import SAFETY

if TYPE_CHECKING:
    from zdfuzz_reference.machine import Machine


def mapping_name(mp: int) -> str:
    """``page->mapping`` in words."""
    av = anon_vma_of(mp)
    if av is not None:
        return f"the anon_vma of process {av}"
    if mp == MAPPING_NONE:
        return "NULL"
    return f"file {mp - MAPPING_FILE}"


def folio_add_new_anon_rmap(m: Machine, h: int, proc: int) -> None:
    """The folio at ``h`` gets its first mapping, in ``proc``'s VMA; before
    6.12 ``__page_set_anon_rmap`` kept a mapping that was already anonymous."""
    mp = m.s.mapping[h]
    if not (is_anon_mapping(mp) and m.rules.migrate.new_anon_rmap_keeps_anon):
        m.s.mapping[h] = anon_mapping(proc)
    elif anon_vma_of(mp) != proc:
        m.trace_note(lambda: f"__page_set_anon_rmap(pfn {h}): PageAnon already: page->mapping left as it was")
    mapping = m.s.mapping[h]
    av = anon_vma_of(mapping)
    if av is None or not (m.s.avc[proc] >> av) & 1:
        m.violate(
            "I-F2",
            SAFETY,
            [("pfn", h), ("proc", proc)],
            lambda: (
                f"folio_add_new_anon_rmap maps pfn {h} into process {proc}, but page->mapping still names "
                f"{mapping_name(mapping)}: the page was already PageAnon (a stale mapping from its previous life), "
                "so __page_set_anon_rmap left it, and rmap walks of the page will not find this mapping",
                f"the anon_vma of process {proc}'s VMA",
                mapping_name(mapping),
            ),
        )


def try_to_migrate_procs(m: Machine, p: int) -> int:
    """The processes ``try_to_migrate`` walks for the folio at ``p``: none
    for a folio nothing maps any more (``if (folio_mapped(folio))``)."""
    return rmap_walk_procs(m, p, p, "try_to_migrate") if folio.folio_mapcount(m, p) > 0 else 0


def rmap_walk_procs(m: Machine, h: int, pfn: int, what: str) -> int:
    """The processes ``rmap_walk(folio)`` visits for the folio at ``h``, a
    bit each (I-M10 when its anon_vma was freed, reported on ``pfn``: the
    folio whose entries the walk is for)."""
    mp = m.s.mapping[page.head_of(m, h)]
    av = anon_vma_of(mp)
    if av is not None:
        mask = 0
        for p in range(m.layout.procs):
            if (m.s.avc[p] >> av) & 1:
                mask |= 1 << p
        if mask == 0:
            m.violate(
                "I-M10",
                SAFETY,
                [("pfn", pfn)],
                lambda: (
                    f"{what}: the rmap walk for pfn {pfn} follows page->mapping to the anon_vma of process {av}, "
                    "which no VMA is linked to any more (freed: the walk's anon_vma_lock_read is a use after free)",
                    "a live anon_vma",
                    "freed anon_vma",
                ),
            )
        return mask
    if is_file_mapping(mp):
        return 0xFF
    return 0


def rmap_walk_missed(m: Machine, mask: int, h: int, nr: int, want: str, what: str) -> None:
    """Does an entry of the folio remain in a process the walk over ``mask``
    did not visit? Reported (I-M9)."""
    found = pagetable.find_entry(m, h, nr, want, procs=~mask & 0xFF)
    if found is None:
        return
    proc, addr, _ = found
    mapping = m.s.mapping[page.head_of(m, h)]
    m.violate(
        "I-M9",
        SAFETY,
        [("pfn", h), ("proc", proc), ("addr", addr)],
        lambda: (
            f"{what}: the rmap walk of pfn {h} (page->mapping {mapping_name(mapping)}) never visits process "
            f"{proc}, whose entry at address {addr} still maps it",
            "every entry of the folio visited",
            f"process {proc} missed",
        ),
    )
