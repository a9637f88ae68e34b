"""Compound (large) folios: geometry, ``can_split_folio`` and the split.

Mirrors ``prep_compound_page`` (every page points at the head; the refcount
lives on the head, tails stay 0), ``can_split_folio`` (splittable iff the
mapcount accounts for every reference but the caller's; the 2020 THP patch
expected one extra pin on device-private folios), and ``__split_huge_page``:
freeze, give every new order-0 folio the references of its own mappings,
run the device-private ``folio_split`` callback (E5 copies ``mapping``; the
2020 patch unfroze tails at 2 and took ``percpu_ref_get_many(ref, nr - 1)``),
unfreeze, and free any piece nobody references. Also
``free_zone_device_folio_prepare`` (restore order-0 pages, the 2026 fix) and
the PMD walkers (``mbind``'s ``queue_folios_pmd``) that must tell a
device-private PMD from a present THP (I-T3).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from zdfuzz_reference import page, pagetable, pgmap
from zdfuzz_reference.flags import anon_vma_of, is_file_mapping
from zdfuzz_reference.oracle import SAFETY

if TYPE_CHECKING:
    from zdfuzz_reference.machine import Machine


def prep_compound(m: Machine, h: int, order: int) -> None:
    """``prep_compound_page(page, order)`` on ``h .. h + nr``."""
    nr = 1 << order
    for p in range(h, h + nr):
        check_standalone(m, p, h, order)
        m.s.head[p] = h
        m.s.order[p] = 0
        m.s.pincount[p] = 0
        m.s.emc[p] = 0
        m.touch_page(p)
    m.s.order[h] = order


def check_standalone(m: Machine, p: int, h: int, order: int) -> None:
    """I-F4: a device page handed out as part of the folio (h, order) carries
    no compound metadata of an earlier folio of another shape."""
    if m.layout.is_ram(p):
        return
    oh = m.s.head[p]
    oo = m.s.order[oh]
    standalone = oh == p and oo == 0
    same_shape = oh == h and oo == order
    if not standalone and not same_shape:
        m.violate(
            "I-F4",
            SAFETY,
            [("pfn", p)],
            lambda: (
                f"pfn {p} is handed out as part of an order-{order} folio at pfn {h}, but still carries the compound "
                f"head {oh} of an earlier order-{oo} folio (the free path left stale metadata)",
                "standalone order-0 page",
                f"tail of pfn {oh}",
            ),
        )


def restore_order0(m: Machine, h: int, nr: int) -> None:
    """Make ``h .. h + nr`` standalone order-0 pages again."""
    for p in range(h, h + nr):
        m.s.head[p] = p
        m.s.order[p] = 0
        m.s.pincount[p] = 0
        m.s.emc[p] = 0
        m.touch_page(p)


def folio_mapcount(m: Machine, h: int) -> int:
    """``folio_mapcount``: the entire (PMD) mapcount plus the PTE mapcounts."""
    nr = page.folio_nr(m, h)
    return m.s.emc[h] + sum(m.s.mc[h : h + nr])


def folio_in_use(m: Machine, h: int) -> bool:
    """Is any page of the folio held by anybody (the ledger's view)?"""
    nr = page.folio_nr(m, h)
    return any(x.in_use() for x in m.s.ledger.pages[h : h + nr])


def split_walk_procs(m: Machine, h: int) -> int | None:
    """The processes the split's ``unmap_folio`` walks (a bit each), or None
    for -EBUSY: ``folio_get_anon_vma`` is NULL for an unmapped folio or a
    dead anon_vma (a safe ``atomic_inc_not_zero``, no I-M10); a file folio
    is walked through ``i_mmap`` (every process); no mapping is -EBUSY."""
    mp = m.s.mapping[h]
    av = anon_vma_of(mp)
    if av is not None:
        mask = 0
        for p in range(m.layout.procs):
            if (m.s.avc[p] >> av) & 1:
                mask |= 1 << p
        if folio_mapcount(m, h) == 0 or mask == 0:
            m.trace_note(lambda: f"split of folio {h}: folio_get_anon_vma: NULL (not mapped): -EBUSY")
            return None
        return mask
    if is_file_mapping(mp):
        return 0xFF
    m.trace_note(lambda: f"split of folio {h}: no mapping: -EBUSY")
    return None


def can_split_folio(m: Machine, h: int, caller_pins: int) -> bool:
    """Every reference is a mapping or one of the caller's."""
    extra = 1 if m.rules.thp.can_split_extra_pin and m.layout.is_private(h) else 0
    return folio_mapcount(m, h) == m.s.rc[h] - caller_pins - extra


def split_folio(m: Machine, h: int, caller_refs: int, per_piece_refs: int, cpu: int) -> bool:
    """Split the large folio at ``h`` into order-0 folios. The caller holds
    ``caller_refs`` references on the head; ``per_piece_refs`` is what each
    piece keeps of them (an unmapped split of a collected folio). False
    (-EBUSY) when ``can_split_folio`` refuses."""
    nr = page.folio_nr(m, h)
    if nr == 1:
        return True
    lay = m.layout
    # PMD mappings become PTE mappings first: unmap_folio is an rmap walk
    # (try_to_migrate with TTU_SPLIT_HUGE_PMD); an unmapped split has none
    if per_piece_refs == 0:
        mask = split_walk_procs(m, h)
        if mask is None:
            return False
        for proc in range(lay.procs):
            if not (mask >> proc) & 1:
                continue
            for b in range(lay.blocks):
                pmd = m.s.pmds[proc * lay.blocks + b]
                if pmd.has_pfn() and pmd.pfn == h:
                    pagetable.split_huge_pmd(m, proc, b << lay.order)
        # a PMD the walk missed keeps its reference: folio_ref_freeze fails
        if any(e.has_pfn() and e.pfn == h for e in m.s.pmds):
            m.trace_note(lambda: f"split of folio {h}: a PMD the rmap walk missed: -EAGAIN (folio_ref_freeze)")
            return False
    if not can_split_folio(m, h, caller_refs):
        m.trace_note(lambda: f"split of folio {h}: -EBUSY (can_split_folio)")
        return False
    t = lay.type_of(h)
    private = t == "private"
    g = lay.pgmap_of(h) if t is not None else None
    ref_before = m.s.pgmaps[g].pref.count() if g is not None else None
    rc_before = m.s.rc[h]
    tail_extra = m.rules.thp.split_tail_extra if private else 0
    restore_order0(m, h, nr)
    total = 0
    for p in range(h, h + nr):
        # each new folio is unfrozen with its own mappings' references, the
        # caller's per-piece references and (2020 patch) one more per tail
        own = m.s.mc[p] + per_piece_refs
        v = own + caller_refs - per_piece_refs if p == h else own + tail_extra
        m.s.rc[p] = v
        total += v
    if private and m.rules.thp.split_pgmap_get and g is not None:
        pgmap.pgmap_get(m, g, 0, nr - 1, "split_huge_page: percpu_ref_get_many(nr - 1)")
        m.s.split_pgmap_refs[g] += nr - 1
    # __split_huge_page_tail: page_tail->mapping = head->mapping (and
    # pgmap->ops->folio_split for a device-private folio)
    mp = m.s.mapping[h]
    for p in range(h + 1, h + nr):
        m.s.mapping[p] = mp
    m.trace_note(lambda: f"split folio {h} ({nr} pages){', folio_split callbacks' if private else ''}")
    # I-T2: a split moves references, it never creates or drops them
    expect = rc_before + (nr - 1) * per_piece_refs
    if total != expect:
        m.violate(
            "I-T2",
            SAFETY,
            [("pfn", h)],
            lambda: (
                f"the split of folio {h} leaves its {nr} pages with {total} references in all; before the split the "
                f"folio had {expect} (a split must not invent or drop references)",
                f"{expect}",
                f"{total}",
            ),
        )
    if g is not None and ref_before is not None:
        after = m.s.pgmaps[g].pref.count()
        if after != ref_before:
            m.violate(
                "I-T2",
                SAFETY,
                [("pgmap", g), ("pfn", h)],
                lambda: (
                    f"the split of folio {h} changes pgmap {g}'s ref from {ref_before} to {after}; pgmap references "
                    "are per base page and a split must leave them alone",
                    f"{ref_before}",
                    f"{after}",
                ),
            )
    # a piece nobody maps or holds is freed (__split_huge_page's own put)
    for p in range(h, h + nr):
        if m.s.rc[p] == 0 and m.violation is None:
            m.s.rc[p] = 1
            page.put_page_refs(m, p, 1, cpu, "__split_huge_page: folio_put (unreferenced piece)")
    return True


def mbind(m: Machine, proc: int, addr: int) -> None:
    """A page-table walker inspects the PMD covering (proc, addr). Before
    the 2026 fixes a device-private PMD was taken for a present THP (I-T3)."""
    pmd = m.s.pmds[m.layout.pmd_slot(proc, addr)]
    if pmd.kind == pagetable.PRESENT:
        m.trace_note(lambda: f"queue_folios_pmd: THP at pfn {pmd.pfn}")
    elif pmd.kind == pagetable.DEVICE_PRIVATE and not m.rules.thp.walkers_know_device_pmd:
        m.violate(
            "I-T3",
            SAFETY,
            [("proc", proc), ("pfn", pmd.pfn)],
            lambda: (
                f"a PMD walker reads the device-private PMD entry for pfn {pmd.pfn} (process {proc}) as a present huge "
                "page: pmd_folio() of a swap entry is a bogus folio pointer",
                "device-private entry skipped",
                "treated as present",
            ),
        )
    else:
        m.trace_note(lambda: "queue_folios_pmd: not a present THP, skipped")
