"""get_user_pages / pin_user_pages (mm/gup.c).

FOLL_GET adds one reference; FOLL_PIN adds ``GUP_PIN_COUNTING_BIAS`` to a
small folio, or one reference and ``_pincount`` + 1 to a large one;
``unpin_user_page`` undoes exactly that through the put path. In E1-E3 a
devmap PTE is followed only after ``get_dev_pagemap`` succeeds
(``tryget_live``: fails once the pgmap is killed), and that pgmap reference
is dropped again before GUP returns. A device-private entry is not
present: GUP faults it back to system RAM (``faultin_page`` ->
``do_swap_page`` -> ``migrate_to_ram``, a task of its own: ``fault.py``) and
grabs the RAM page when the fault returns. Refusals, in order: a P2P page
without FOLL_PCI_P2PDMA (-EREMOTEIO) or with FOLL_LONGTERM (-EOPNOTSUPP,
v6.2+), an FS-DAX page with FOLL_LONGTERM (-EOPNOTSUPP). A
MEMORY_DEVICE_COHERENT page must stay evictable: from v6.0 a FOLL_LONGTERM
GUP moves it to system RAM first (``check_and_migrate_movable_pages`` ->
``migrate_device_coherent_page``) and pins the copy, or fails with -EBUSY.
The oracle re-checks each grant from the ledger (I-X4, I-G3, I-G4, I-G5),
whatever the rules allowed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from zdfuzz_reference import failure, migrate, page, pagetable, pgmap
from zdfuzz_reference.ops import FOLL_LONGTERM, FOLL_PCI_P2PDMA, GUP_FAST, SITE_TRY_GRAB
from zdfuzz_reference.oracle import SAFETY
from zdfuzz_reference.pte import PMD

if TYPE_CHECKING:
    from zdfuzz_reference.machine import Machine

# what GUP returns on refusal (as the trace shows it)
EFAULT = "-EFAULT"
EOPNOTSUPP = "-EOPNOTSUPP"
EREMOTEIO = "-EREMOTEIO"
EPGMAP_DYING = "-EFAULT (get_dev_pagemap: pgmap dying)"
ENOMEM = "-ENOMEM (try_grab_folio)"
EBUSY = "-EBUSY (migrate_device_coherent_page)"


def _grab_failed(m: Machine, proc: int, addr: int, flags: int, pin: bool, cpu: int) -> int | str:
    """After a failed ``try_grab_folio``: the slow walk returns -ENOMEM; the
    lockless walk of a ``_fast`` caller took nothing and hands the address to
    the slow walk, which tries again."""
    if not flags & GUP_FAST:
        return ENOMEM
    m.trace_note(lambda: "GUP-fast: the lockless walk took nothing, the slow walk retries")
    return gup(m, proc, addr, flags & ~GUP_FAST, pin, cpu)


def gup(m: Machine, proc: int, addr: int, flags: int, pin: bool, cpu: int) -> int | str:
    """GUP one address: the pfn granted (the caller now holds a reference or
    pin), or the errno string of the refusal."""
    longterm = flags & FOLL_LONGTERM != 0
    p2pdma = flags & FOLL_PCI_P2PDMA != 0
    fast = flags & GUP_FAST != 0
    pte, level = pagetable.entry(m, proc, addr)
    if pte.kind in (pagetable.NONE, pagetable.MIGRATION):
        return EFAULT
    if pte.kind == pagetable.DEVICE_PRIVATE and m.rules.gup.refuses_device_private:
        return EFAULT  # the caller faults the page in first (fault.spawn_gup_fault)
    p = pte.pfn
    t = m.layout.type_of(p)
    if t is None:
        if failure.inject(m, SITE_TRY_GRAB):
            return _grab_failed(m, proc, addr, flags, pin, cpu)
        return _grab(m, proc, addr, p, pin, longterm)  # an ordinary anonymous page
    if t == "p2pdma" and m.rules.p2p.gup_needs_flag:
        if not p2pdma:
            return EREMOTEIO
        if longterm:
            return EOPNOTSUPP
    elif t == "fsdax" and longterm and m.rules.dax.longterm_refused:
        return EOPNOTSUPP
    devmap = pte.kind == pagetable.PRESENT and not pte.refcounted
    g = m.layout.pgmap_of(p)
    walk_ref = m.rules.of(t).gup_pgmap_ref and devmap
    if walk_ref and not pgmap.pgmap_tryget_live(m, g, cpu, "GUP: get_dev_pagemap"):
        return EPGMAP_DYING
    if failure.inject(m, SITE_TRY_GRAB):
        # try_grab_folio failed: the slow walk and GUP-fast's PTE level put
        # the pgmap reference back; GUP-fast's devmap PMD (__gup_device_huge)
        # did not until 6401c4eb57f9
        if walk_ref:
            if fast and level == PMD and m.rules.gup.device_huge_grab_failure_leaks_pgmap:
                m.trace_note(
                    lambda: f"__gup_device_huge: try_grab_page failed, returns without put_dev_pagemap (pgmap {g})"
                )
                m.s.lost_pgmap_refs[g] += 1
            else:
                pgmap.pgmap_put(m, g, cpu, 1, "GUP: put_dev_pagemap (try_grab_folio failed)")
        return _grab_failed(m, proc, addr, flags, pin, cpu)
    if t == "coherent" and longterm and m.rules.gup.longterm_migrates_coherent:
        # check_and_migrate_movable_pages: not longterm-pinnable, so the grab
        # becomes a reference the migration to RAM consumes, and GUP retries
        # on the page it moved to (-EAGAIN) or fails
        moved = migrate.migrate_device_coherent_page(m, p, cpu)
        if walk_ref:
            pgmap.pgmap_put(m, g, cpu, 1, "GUP: put_dev_pagemap")
        if not moved:
            return EBUSY
        return gup(m, proc, addr, flags, pin, cpu)
    _grab(m, proc, addr, p, pin, longterm)
    if walk_ref:
        pgmap.pgmap_put(m, g, cpu, 1, "GUP: put_dev_pagemap")
    _check_grant(m, p, t, longterm, p2pdma)
    return p


def _grab(m: Machine, proc: int, addr: int, p: int, pin: bool, longterm: bool) -> int:
    """``try_grab_folio``."""
    h = page.head_of(m, p)
    large = page.folio_nr(m, h) > 1
    n = m.rules.gup.pin_bias if pin and not large else 1
    m.in_gup_grab = True  # GUP-fast's page_ref_add is not get_page
    page.page_get(m, p, n, "pin_user_pages" if pin else "get_user_pages")
    m.in_gup_grab = False
    if pin and large:
        m.s.pincount[h] += 1
    hold = m.s.ledger.pages[p]
    if pin:
        hold.gup_pins += 1
        if longterm:
            hold.longterm_pins += 1
        if m.s.ledger.pin_vpage[p] == 0:
            m.s.ledger.pin_vpage[p] = m.layout.pte_slot(proc, addr) + 1
    else:
        hold.gup_gets += 1
    return p


def _check_grant(m: Machine, p: int, t: str, longterm: bool, p2pdma: bool) -> None:
    obj = [("pfn", p)]
    if t == "fsdax" and longterm:
        m.violate(
            "I-X4",
            SAFETY,
            obj,
            lambda: (f"a FOLL_LONGTERM pin of FS-DAX pfn {p} was granted", "-EOPNOTSUPP", "granted"),
        )
    elif t == "private":
        m.violate(
            "I-G3", SAFETY, obj, lambda: (f"GUP returned device-private pfn {p}", "-EFAULT (fault, migrate)", "granted")
        )
    elif t == "p2pdma" and (not p2pdma or longterm):
        why = "for FOLL_LONGTERM" if longterm else "without FOLL_PCI_P2PDMA"
        m.violate("I-G4", SAFETY, obj, lambda: (f"GUP returned P2P pfn {p} {why}", "refused", "granted"))
    elif t == "coherent" and longterm:
        m.violate(
            "I-G5",
            SAFETY,
            obj,
            lambda: (
                f"a FOLL_LONGTERM pin of coherent pfn {p} was granted",
                "migrated to system RAM first (migrate_device_coherent_page)",
                "granted",
            ),
        )


def unpin_user_page(m: Machine, p: int, cpu: int) -> None:
    hold = m.s.ledger.pages[p]
    hold.gup_pins -= 1
    hold.longterm_pins = min(hold.longterm_pins, hold.gup_pins)
    if hold.gup_pins == 0:
        m.s.ledger.pin_vpage[p] = 0
    # gup_put_folio
    h = page.head_of(m, p)
    if page.folio_nr(m, h) > 1:
        m.s.pincount[h] -= 1
        n = 1
    else:
        n = m.rules.gup.pin_bias
    page.put_page_refs(m, p, n, cpu, "unpin_user_page")


def put_user_page(m: Machine, p: int, cpu: int) -> None:
    m.s.ledger.pages[p].gup_gets -= 1
    page.put_page_refs(m, p, 1, cpu, "put_page")
