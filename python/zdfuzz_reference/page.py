"""struct page / folio refcounts and the put path.

Mirrors ``get_page`` / ``folio_get`` / ``page_ref_add`` and ``put_page`` /
``folio_put_refs`` with each era's ZONE_DEVICE branch, chosen by the type's
rules row: E1's 1-based ``put_devmap_managed_page`` (2->1: ``page_free`` for
device-private, ``wake_up_var`` for FS-DAX; 1->0: ``__put_page`` ->
``put_dev_pagemap``), E2/E3's ``free_zone_device_page``, E4's
``free_zone_device_folio``, E5's large-folio free (``folio_free`` then
``percpu_ref_put_many(ref, nr)``); the ``page_free`` callbacks (the
device-private or coherent driver's free list, ``p2pdma_page_free``); and
for system RAM ``__folio_put`` back to the buddy allocator.

A reference on any page of a compound folio is a reference on its head
(``compound_head``): tails' own refcounts stay 0.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from zdfuzz_reference import folio, pgmap, sched
from zdfuzz_reference.flags import (
    MAPPING_NONE,
    PG_BUDDY,
    PG_DIRTY,
    PG_FREE_LIST,
    PG_INIT_REF,
    PG_LOCKED,
    PG_POOL,
)
from zdfuzz_reference.oracle import LOCK_NONE, SAFETY, TORN_DOWN
from zdfuzz_reference.rules import DRIVER_ALLOCATED

if TYPE_CHECKING:
    from zdfuzz_reference.machine import Machine


def page_torn_down(m: Machine, pfn: int, what: str) -> bool:
    """A page of a torn-down pgmap is touched: I-L3 (use after free)."""
    if m.layout.is_ram(pfn):
        return False
    g = m.layout.pgmap_of(pfn)
    if m.s.ledger.life[g] == TORN_DOWN:
        m.violate(
            "I-L3",
            SAFETY,
            [("pgmap", g), ("pfn", pfn)],
            lambda: (
                f"{what} touches pfn {pfn} after memunmap_pages tore pgmap {g} down (use after free)",
                "struct pages present",
                "torn down",
            ),
        )
        return True
    return False


def head_of(m: Machine, pfn: int) -> int:
    """``compound_head(page)``."""
    return m.s.head[pfn]


def folio_nr(m: Machine, h: int) -> int:
    """``folio_nr_pages`` of the folio whose head is ``h``."""
    return 1 << m.s.order[h]


def page_get(m: Machine, pfn: int, n: int, what: str) -> None:
    """``get_page``: ``n`` references on a page that already has one."""
    page_get_from(m, pfn, n, 1, what)


def page_get_from(m: Machine, pfn: int, n: int, minimum: int, what: str) -> None:
    """``page_get`` where the refcount may legitimately start at ``minimum``
    (the E4 insert paths take the first reference of a 0-based page). Raising
    a page below that is raising a free page: I-F1."""
    if page_torn_down(m, pfn, what):
        return
    h = head_of(m, pfn)
    m.touch_page(h)
    old = m.s.rc[h]
    if m.rules.pgmap.page_refs_take_pgmap_refs and not m.layout.is_ram(h) and not m.in_gup_grab:
        # get_zone_device_page (before v4.11); GUP-fast grabs around get_page
        g = m.layout.pgmap_of(h)
        m.s.page_pgmap_refs[g] += n
        pgmap.pgmap_get(m, g, 0, n, "get_zone_device_page")
    if old < minimum:
        m.violate(
            "I-F1",
            SAFETY,
            [("pfn", h)],
            lambda: (
                f"{what} takes a reference on pfn {h} whose refcount is {old}: the page is free",
                "refcount > 0",
                f"{old}",
            ),
        )
    m.s.rc[h] = old + n


def page_set_count(m: Machine, pfn: int, v: int) -> None:
    """``set_page_count``: an allocator hands the page out."""
    m.touch_page(pfn)
    m.s.rc[pfn] = v


def put_page_refs(m: Machine, pfn: int, n: int, cpu: int, what: str) -> None:
    """``put_page`` / ``folio_put_refs`` of ``n`` references, with the era's
    ZONE_DEVICE hooks at 2->1 and 1->0."""
    if page_torn_down(m, pfn, what):
        return
    pfn = head_of(m, pfn)
    m.touch_page(pfn)
    old = m.s.rc[pfn]
    new = old - n
    m.s.rc[pfn] = new
    if m.rules.pgmap.page_refs_take_pgmap_refs and not m.layout.is_ram(pfn):
        # put_zone_device_page (before v4.11)
        g = m.layout.pgmap_of(pfn)
        m.s.page_pgmap_refs[g] -= n
        pgmap.pgmap_put(m, g, cpu, n, "put_zone_device_page")
    if new < 0:
        m.violate(
            "I-F1",
            SAFETY,
            [("pfn", pfn)],
            lambda: (f"{what} drops pfn {pfn}'s refcount below zero ({old} - {n})", ">= 0", f"{new}"),
        )
        return
    t = m.layout.type_of(pfn)
    if t is None:
        # system RAM: the last put frees the folio to the buddy allocator
        if new == 0 and old > 0:
            free_ram_folio(m, pfn)
        return
    tr = m.rules.of(t)
    if new == 1 and old > 1:
        # E1 put_devmap_managed_page: "the page is idle again"
        if tr.free_on_2to1:
            page_free(m, pfn, cpu)
        if tr.wake_on_2to1:
            _note_wake(m, pfn)
    if new == 0 and old > 0:
        if tr.zero_warns:
            m.violate(
                "I-F8",
                SAFETY,
                [("pfn", pfn)],
                lambda: (
                    f"{what} takes pfn {pfn} ({t}) to refcount 0: the free path WARNs (this type has no page_free) "
                    "and the page is left at 0",
                    "refcount stays >= 1",
                    "0",
                ),
            )
        # the folio's size is read before the callback in every era
        nr = folio_nr(m, pfn)
        # v6.19: VM_WARN_ON_ONCE(folio_test_large(folio)) for a folio that is
        # not anonymous, FS-DAX PMD folios included until the fix
        if nr > 1 and t == "fsdax" and m.rules.thp.free_warns_large_file_folio:
            m.violate(
                "I-F11",
                SAFETY,
                [("pfn", pfn)],
                lambda: (
                    f"{what} takes the {nr}-page {t} folio at pfn {pfn} to refcount 0: free_zone_device_folio WARNs "
                    "(VM_WARN_ON_ONCE(folio_test_large(folio)) for a folio that is not anonymous)",
                    "no WARN",
                    "WARN",
                ),
            )
        if tr.page_free_on_zero:
            page_free(m, pfn, cpu)
        if tr.put_pgmap_on_zero:
            g = m.layout.pgmap_of(pfn)
            for p in range(pfn, pfn + nr):
                m.s.flags[p] &= ~PG_INIT_REF
            # E3: put_dev_pagemap; E5: percpu_ref_put_many(ref, nr)
            refs = nr if (m.rules.private.alloc_pgmap_ref == "tryget_many" and t in DRIVER_ALLOCATED) else 1
            # where folio->pgmap is read only after ->folio_free() and the
            # driver can hand pages out inside larger folios, the rest of the
            # free path is a task (coherent pages are order-0: never a tail)
            window = (
                t == "private"
                and tr.page_free_on_zero
                and m.rules.thp.free_rereads_pgmap
                and m.rules.thp.device_private
            )
            if window and sched.spawn(m, sched.FreeFolio(pfn, refs), cpu) is not None:
                m.s.ledger.inflight_pgmap_refs[g] += refs
            else:
                pgmap.pgmap_put(m, g, cpu, refs, "put_dev_pagemap (page refcount reached 0)")
        if tr.reset_on_zero:
            m.s.rc[pfn] = 1
        if tr.wake_on_zero:
            _note_wake(m, pfn)


def free_folio_put_pgmap(m: Machine, pfn: int, nr: int, cpu: int) -> None:
    """The rest of ``free_zone_device_folio`` once ``->folio_free()`` has
    returned: ``percpu_ref_put_many(&folio->pgmap->ref, nr)`` with
    ``folio->pgmap`` read now. A page reallocated as a tail holds its
    compound head in that word (I-F3)."""
    head = m.s.head[pfn]
    if head != pfn:
        m.violate(
            "I-F3",
            SAFETY,
            [("pfn", pfn)],
            lambda: (
                f"free_zone_device_folio reads folio->pgmap of pfn {pfn} after ->folio_free() returned, but the driver "
                f"has reallocated pfn {pfn} as a tail of the folio at pfn {head}: the word holds that compound head, "
                "and percpu_ref_put_many goes through it",
                "the pgmap read before ->folio_free()",
                f"compound_head {head}",
            ),
        )
        return
    g = m.layout.pgmap_of(pfn)
    m.s.ledger.inflight_pgmap_refs[g] -= nr
    pgmap.pgmap_put(m, g, cpu, nr, "percpu_ref_put_many (folio->pgmap read after ->folio_free())")


def _note_wake(m: Machine, pfn: int) -> None:
    """FS-DAX ``wake_up_var``: layout waiters re-check on their next step."""
    m.trace_note(lambda: f"wake_up_var(pfn {pfn})")


def page_free(m: Machine, pfn: int, cpu: int) -> None:
    """``pgmap->ops->page_free`` / ``folio_free``: the folio goes back to its
    allocator. Nobody may hold any of its pages (I-F9)."""
    g = m.layout.pgmap_of(pfn)
    nr = folio_nr(m, pfn)
    m.trace_note(lambda: f"folio_free(pfn {pfn}, {nr} pages)" if nr > 1 else f"page_free(pfn {pfn})")
    for p in range(pfn, pfn + nr):
        h = m.s.ledger.pages[p]
        if h.in_use():
            m.violate(
                "I-F9",
                SAFETY,
                [("pgmap", g), ("pfn", p)],
                lambda: (
                    f"page_free returns pfn {p} to its allocator while it is held by {h.describe()}",
                    "no holder",
                    h.describe(),
                ),
            )
    t = m.layout.type_of(pfn)
    if t in DRIVER_ALLOCATED:
        # device-private and coherent pages go back to their driver's free list
        if nr > 1 and m.rules.thp.free_prepare:
            # free_zone_device_folio_prepare: standalone order-0 pages
            folio.restore_order0(m, pfn, nr)
        for p in range(pfn, pfn + nr):
            if m.rules.private.free_clears_mapping:
                m.s.mapping[p] = MAPPING_NONE
            if m.s.flags[p] & PG_FREE_LIST:
                m.violate(
                    "I-F9",
                    SAFETY,
                    [("pfn", p)],
                    lambda: (
                        f"page_free of pfn {p}, which is already on its driver's free list (double free)",
                        "allocated",
                        "free",
                    ),
                )
            m.s.flags[p] |= PG_FREE_LIST
            m.s.flags[p] &= ~(PG_LOCKED | PG_DIRTY)
            m.s.ledger.locker[p] = LOCK_NONE
            m.s.ledger.migrated_away[p] = False
            m.s.ledger.pages[p].dirty_pte = False
    elif t == "p2pdma":
        # p2pdma_page_free: gen_pool_free_owner(page) + percpu_ref_put
        h = m.s.ledger.pages[pfn]
        if m.s.flags[pfn] & PG_POOL == 0 or h.p2p_kernel:
            m.violate(
                "I-F9",
                SAFETY,
                [("pfn", pfn)],
                lambda: (
                    f"p2pdma_page_free returns pfn {pfn} to the gen_pool, but it is not a user-space allocation of "
                    "its own",
                    "user-space P2P page",
                    "other",
                ),
            )
        m.s.flags[pfn] &= ~PG_POOL
        m.s.mapping[pfn] = MAPPING_NONE
        pgmap.pgmap_put(m, g, cpu, 1, "p2pdma_page_free")
    # pmem and device-dax have no page_free of their own


def free_ram_folio(m: Machine, h: int) -> None:
    """``__folio_put`` of a system RAM folio: back to the buddy allocator."""
    nr = folio_nr(m, h)
    m.trace_note(lambda: f"free_unref_folio(pfn {h}{f', {nr} pages' if nr > 1 else ''})")
    for p in range(h, h + nr):
        hold = m.s.ledger.pages[p]
        if hold.in_use():
            m.violate(
                "I-F9",
                SAFETY,
                [("pfn", p)],
                lambda: (
                    f"system RAM pfn {p} is freed to the buddy allocator while it is held by {hold.describe()}",
                    "no holder",
                    hold.describe(),
                ),
            )
        if m.s.ledger.locker[p] != LOCK_NONE:
            m.violate(
                "I-M7",
                SAFETY,
                [("pfn", p)],
                lambda: (f"system RAM pfn {p} is freed while still locked", "unlocked", "locked"),
            )
    folio.restore_order0(m, h, nr)
    for p in range(h, h + nr):
        m.s.flags[p] = PG_BUDDY
        m.s.mapping[p] = MAPPING_NONE
        m.s.mc[p] = 0
        m.s.ledger.locker[p] = LOCK_NONE
        m.s.ledger.migrated_away[p] = False
        m.s.ledger.pages[p].dirty_pte = False
