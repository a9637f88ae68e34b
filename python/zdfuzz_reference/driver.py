"""The drivers that allocate their device pages themselves: device-private
(nouveau, test_hmm, amdkfd of each era) and, from v6.0, coherent (amdkfd on
MI200, test_hmm's coherent mode).

Mirrors the drivers' page allocators: E1 drivers take a free page (refcount
1) and ``get_page`` + ``lock_page`` it; E2 drivers use the free page's
refcount 1 as the allocation reference; E3+ ``zone_device_page_init`` takes a
pgmap reference, sets the refcount to 1 and locks the page; E5
``zone_device_folio_init`` does the same for a large folio (the shared code is
``migrate.device_alloc``). A driver drops its allocation with ``unlock_page``
+ ``put_page``. A coherent driver shares that code (mm/memremap.c tests
``PRIVATE || COHERENT``); large folios are device-private only in the model.
``migrate_vma_insert_page`` installs a driver page into an anonymous hole as
a writable device-private entry — a coherent page as an ordinary present,
writable, dirty PTE — and the finalize step unlocks it and drops the
driver's reference.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from zdfuzz_reference import migrate, page, pagetable, rmap
from zdfuzz_reference.flags import PG_FREE_LIST, PG_LOCKED
from zdfuzz_reference.oracle import LOCK_DRIVER, LOCK_NONE
from zdfuzz_reference.pte import PMD, PTE, Pte

if TYPE_CHECKING:
    from zdfuzz_reference.machine import Machine


def driver_free_page(m: Machine, g: int) -> int | None:
    """The lowest free page on pgmap ``g``'s driver free list."""
    return next((p for p in m.layout.pfns_of(g) if m.s.flags[p] & PG_FREE_LIST), None)


def alloc_device_page(m: Machine, g: int, cpu: int) -> None:
    p = driver_free_page(m, g)
    if p is not None:
        migrate.device_alloc(m, g, p, 0, cpu, LOCK_DRIVER)


def alloc_device_folio(m: Machine, g: int, cpu: int) -> None:
    """E5 ``zone_device_folio_init`` of an aligned free block."""
    h = migrate.device_folio_fit(m, g)
    if h is not None:
        migrate.device_alloc(m, g, h, m.layout.order, cpu, LOCK_DRIVER)


def free_device_page(m: Machine, p: int, cpu: int) -> None:
    """The driver drops its allocation: unlock_page + put_page."""
    m.s.ledger.pages[p].driver = False
    m.s.flags[p] &= ~PG_LOCKED
    m.s.ledger.locker[p] = LOCK_NONE
    page.put_page_refs(m, p, 1, cpu, "free_device_page: put_page")


def device_anon_entry(m: Machine, p: int) -> Pte:
    """The entry ``migrate_vma_insert_page`` writes for the driver's page
    ``p`` in a writable anonymous VMA: a device-private swap entry
    (``SWP_DEVICE_WRITE``), or for a coherent page an ordinary present PTE,
    made writable and dirty (``pte_mkwrite(pte_mkdirty(entry))``)."""
    if m.layout.is_coherent(p):
        return pagetable.present(p, True, dirty=True)
    return pagetable.device_private(p, True)


def migrate_vma_insert_page(m: Machine, proc: int, addr: int, p: int, cpu: int) -> None:
    """migrate_vma_insert_page + the finalize of a hole-fill migration; a
    large folio fills the PMD block containing ``addr``."""
    large = page.folio_nr(m, p) > 1
    level, at = (PMD, pagetable.block_start(m, addr)) if large else (PTE, addr)
    pagetable.install_entry(m, proc, at, level, device_anon_entry(m, p), 1, "migrate_vma_insert_page: folio_get")
    rmap.folio_add_new_anon_rmap(m, p, proc)
    n = m.layout.nr_huge() if large else 1
    for a in range(at, at + n):
        m.s.ledger.vcontent[m.layout.pte_slot(proc, a)] = m.s.content[p + (a - at)]
    free_device_page(m, p, cpu)  # finalize: unlock + put the allocation reference
