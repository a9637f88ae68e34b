"""The device-private CPU fault: ``do_swap_page`` -> ``pgmap->ops->migrate_to_ram``.

Mirrors ``rust/core/src/fault.rs``. A CPU touching a device-private entry
faults; the driver's ``migrate_to_ram`` migrates the page (or, with a
device-private PMD and compound migration, the folio) back to system RAM with
the migrate_vma steps of ``migrate.py``, passing the page as ``fault_page``.
The fault task's steps are where the kernel can be preempted:

1. **read**: ``orig_pte`` without the PTL (a migration entry makes the fault
   wait; anything else means there is nothing to do);
2. **lock** (E3+): ``pte_offset_map_lock``, then ``pte_same``;
3. **get** (E3+): ``get_page`` under the PTL (v6.15: only after
   ``trylock_page``; on failure unlock and refault), drop the PTL;
4. **migrate_to_ram**: the driver dereferences the page (I-D1), then
   collect, unmap, copy, pages, finalize;
5. **done**: ``put_page`` (v6.15: ``unlock_page`` first); if the page is still
   behind the same entry the access refaults.

E1/E2 skip steps 2 and 3: ``migrate_to_ram`` runs on a page nobody holds —
the race 16ce101db85d fixed (I-D1). E3 lets every faulting thread take a
reference, so two threads faulting one page can refault forever — the
livelock the v6.15 trylock fixed (I-D3, found by the drain).

GUP takes the same fault: ``__get_user_pages`` finds no present page behind a
device-private entry, so ``faultin_page`` -> ``handle_mm_fault`` ->
``do_swap_page`` runs these steps, and when the fault returns GUP looks the
address up again (:func:`_gup_retry`) and grabs the RAM page.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from zdfuzz_reference import folio, gup, migrate, page, pagetable, process, sched
from zdfuzz_reference.flags import PG_FREE_LIST, PG_LOCKED
from zdfuzz_reference.ops import SELECT_COMPOUND, SELECT_DEVICE_PRIVATE
from zdfuzz_reference.oracle import LOCK_NONE, SAFETY, TORN_DOWN, lock_task
from zdfuzz_reference.pte import PMD

if TYPE_CHECKING:
    from zdfuzz_reference.machine import Machine

# steps of a migration task (driver-initiated or inside a fault)
M_COLLECT = 0
M_UNMAP = 1
M_COPY = 2
M_PAGES = 3
M_FINALIZE = 4
#: collect's flush_tlb_range after pte_unmap_unlock (before v6.0:
#: migrate.collect_flush_after_unlock)
M_FLUSH = 5
# steps of the fault path around its migration
F_READ = 10
F_LOCK = 11
F_GET = 12
F_CALL = 13
F_DONE = 14


def spawn_fault(m: Machine, proc: int, addr: int, cpu: int) -> None:
    spawn_migration(m, migrate.MigCtx(origin=migrate.FAULT, proc=proc, addr=addr), F_READ, cpu)


def spawn_gup_fault(m: Machine, proc: int, addr: int, flags: int, pin: bool, cpu: int) -> None:
    """The fault a GUP call takes on a device-private entry
    (``__get_user_pages``: ``follow_page_mask`` finds no present page, so
    ``faultin_page`` -> ``handle_mm_fault`` -> ``do_swap_page``). When the
    fault returns, GUP looks the address up again (:func:`_gup_retry`)."""
    g = migrate.GUP_FAULT | (migrate.GUP_FAULT_PIN if pin else 0) | (flags << 2) & 0xFF
    ctx = migrate.MigCtx(origin=migrate.FAULT, proc=proc, addr=addr, gup=g)
    slot = spawn_migration(m, ctx, F_READ, cpu)
    if slot is not None:
        m.trace_note(lambda: f"GUP faults the device-private entry in: task {slot}")


def spawn_migration(m: Machine, ctx: migrate.MigCtx, pc: int, cpu: int) -> int | None:
    """Start a migration (or fault) task at step ``pc``; its slot."""
    slot = next((i for i, t in enumerate(m.s.tasks) if t is None), None)
    if slot is None:
        return None
    m.s.mig[slot] = ctx
    return sched.spawn(m, sched.Migrate(ctx.origin), cpu, pc)


def migrate_step(m: Machine, slot: int, pc: int, cpu: int) -> int | None:
    """One step of a migration or fault task; the next pc, or None when done.
    A GUP's fault that returns hands over to GUP (:func:`_gup_retry`)."""
    nxt = _migrate_step(m, slot, pc, cpu)
    ctx = m.s.mig[slot]
    if nxt is None and ctx.origin == migrate.FAULT and ctx.gup != 0 and m.violation is None:
        return _gup_retry(m, slot, cpu)
    return nxt


def _gup_retry(m: Machine, slot: int, cpu: int) -> int | None:
    """``__get_user_pages`` once ``faultin_page`` returned: look the address
    up again. A present page now: grab it — the GUP call returns it. A
    device-private or migration entry again: fault again (the read step waits out a migration). Nothing
    mapped, the process gone, or the fault out of memory: the call fails."""
    ctx = m.s.mig[slot]
    proc, addr = ctx.proc, ctx.addr
    if ctx.oom:
        m.trace_note(lambda: "GUP -> -ENOMEM (VM_FAULT_OOM)")
        return None
    if not m.s.alive[proc]:
        m.trace_note(lambda: "GUP -> -EFAULT (the process exited)")
        return None
    e = pagetable.entry(m, proc, addr)[0]
    if e.kind in (pagetable.DEVICE_PRIVATE, pagetable.MIGRATION):
        ctx.retries = (ctx.retries + 1) % 256
        m.trace_note(lambda: "GUP: still not present: fault again")
        return F_READ
    if e.kind == pagetable.NONE:
        m.trace_note(lambda: "GUP -> -EFAULT (nothing mapped any more)")
        return None
    # a FOLL_WRITE pin started on a writable entry (the contract), and
    # nothing write-protects the address while the fault holds the mmap_lock
    # (fork takes it for writing): no COW break here
    pin = ctx.gup & migrate.GUP_FAULT_PIN != 0
    r = gup.gup(m, proc, addr, ctx.gup >> 2, pin, cpu)
    m.trace_note(lambda: f"GUP -> pfn {r}" if isinstance(r, int) else f"GUP -> {r}")
    return None


def _migrate_step(m: Machine, slot: int, pc: int, cpu: int) -> int | None:
    origin = m.s.mig[slot].origin
    if pc == M_COLLECT:
        migrate.migrate_collect(m, slot, cpu)
        # before 60bae7370896 the PTL is dropped before the TLB flush: a step
        # of its own where a present PTE was replaced
        ctx = m.s.mig[slot]
        window = (
            m.rules.migrate.collect_flush_after_unlock
            and origin != migrate.DEVICE_RANGE
            and any(process.collected_present(m, slot, a) is not None for a in range(ctx.addr, ctx.addr + ctx.npages))
        )
        return M_FLUSH if window else M_UNMAP
    if pc == M_FLUSH:
        ctx = m.s.mig[slot]
        m.trace_note(lambda: f"flush_tlb_range(proc {ctx.proc}, {ctx.addr}..{ctx.addr + ctx.npages})")
        return M_UNMAP
    if pc == M_UNMAP:
        migrate.migrate_unmap(m, slot, cpu)
        return M_COPY
    if pc == M_COPY:
        migrate.migrate_alloc_copy(m, slot, cpu)
        return M_PAGES
    if pc == M_PAGES:
        migrate.migrate_pages(m, slot)
        return M_FINALIZE
    if pc == M_FINALIZE:
        migrate.migrate_finalize(m, slot, cpu)
        return F_DONE if origin == migrate.FAULT else None
    if pc == F_READ:
        return _fault_read(m, slot)
    if pc == F_LOCK:
        return _fault_lock(m, slot)
    if pc == F_GET:
        return _fault_get(m, slot)
    if pc == F_CALL:
        return _fault_call(m, slot, cpu)
    return _fault_done(m, slot, cpu)


def migrate_blocked(m: Machine, slot: int, pc: int) -> str | None:
    """Why a migration or fault task cannot step now. Steps that change page
    tables wait while another task holds any page-table lock."""
    ctx = m.s.mig[slot]
    ptl_busy = any(o != 0 and o != slot + 1 for o in m.s.ptl)
    if pc in (M_COLLECT, M_UNMAP, M_PAGES, M_FINALIZE, F_LOCK, F_CALL) and ptl_busy:
        return "pte_offset_map_lock: another task holds a page-table lock"
    if pc == F_READ and pagetable.entry(m, ctx.proc, ctx.addr)[0].is_migration():
        return "migration_entry_wait: the page is being migrated"
    return None


def _fault_read(m: Machine, slot: int) -> int | None:
    """Step 1: read ``orig_pte`` (no lock)."""
    ctx = m.s.mig[slot]
    e, level = pagetable.entry(m, ctx.proc, ctx.addr)
    if e.kind != pagetable.DEVICE_PRIVATE:
        m.trace_note(lambda: "the entry is no longer device-private: nothing to do")
        return None
    ctx.orig = e
    ctx.orig_pmd = level == PMD
    # a PMD-level entry migrates its folio whole where that exists (E5)
    ctx.fault_pfn = m.s.head[e.pfn] + 1 if level == PMD else e.pfn + 1
    ctx.fault_ref = False
    ctx.fault_locked = False
    ctx.oom = False
    return F_CALL if m.rules.fault.path == "no_ref" else F_LOCK


def _fault_lock(m: Machine, slot: int) -> int | None:
    """Step 2 (E3+): take the PTL and re-check the entry."""
    ctx = m.s.mig[slot]
    pagetable.ptl_lock(m, ctx.proc, ctx.addr, slot)
    # pte_same / pmd_same (do_huge_pmd_device_private): the entry and the
    # level it was read at (a split PMD fails pmd_same even when the new PTE
    # holds the same entry)
    e, level = pagetable.entry(m, ctx.proc, ctx.addr)
    if e != ctx.orig or (level == PMD) != ctx.orig_pmd:
        m.trace_note(lambda: "pte_same fails: the entry changed")
        if m.rules.fault.bail_unlocks_ptl:
            pagetable.ptl_unlock(m, ctx.proc, ctx.addr)
        return None
    return F_GET


def _fault_get(m: Machine, slot: int) -> int | None:
    """Step 3 (E3+): reference (and v6.15 lock) the page, drop the PTL."""
    ctx = m.s.mig[slot]
    p = ctx.fault_pfn - 1
    h = page.head_of(m, p)
    if m.rules.fault.path == "trylock":
        if m.s.flags[h] & PG_LOCKED:
            pagetable.ptl_unlock(m, ctx.proc, ctx.addr)
            m.trace_note(lambda: f"trylock_page(pfn {p}) fails: refault")
            ctx.retries = (ctx.retries + 1) % 256
            return F_READ
        m.s.flags[h] |= PG_LOCKED
        m.s.ledger.locker[h] = lock_task(slot)
        ctx.fault_locked = True
    page.page_get(m, p, 1, "do_swap_page: get_page")
    m.s.ledger.pages[p].fault += 1
    ctx.fault_ref = True
    pagetable.ptl_unlock(m, ctx.proc, ctx.addr)
    return F_CALL


def _fault_call(m: Machine, slot: int, cpu: int) -> int | None:
    """Step 4: ``migrate_to_ram`` — the driver dereferences the page, then
    ``migrate_vma_setup`` collects."""
    ctx = m.s.mig[slot]
    p = ctx.fault_pfn - 1
    g = m.layout.pgmap_of(p)
    # I-D1: the driver reads page->pgmap->ops and zone_device_data
    if m.s.ledger.life[g] == TORN_DOWN:
        m.violate(
            "I-D1",
            SAFETY,
            [("pgmap", g), ("pfn", p)],
            lambda: (
                f"migrate_to_ram runs for pfn {p} after memunmap_pages freed pgmap {g}: page->pgmap->ops is freed "
                "memory",
                "pgmap alive",
                "freed",
            ),
        )
        return None
    if not ctx.fault_ref and (m.s.flags[p] & PG_FREE_LIST or not folio.folio_in_use(m, page.head_of(m, p))):
        m.violate(
            "I-D1",
            SAFETY,
            [("pfn", p)],
            lambda: (
                f"migrate_to_ram runs for pfn {p}, which was freed after the fault read its entry: the fault path "
                "took no reference under the page-table lock (use after free of page->zone_device_data)",
                "a reference held",
                "page freed",
            ),
        )
        return None
    # migrate_vma_setup: fault_page must be locked by the caller (v6.15)
    if m.rules.migrate.fault_page_prelocked and not ctx.fault_locked:
        m.trace_note(lambda: "migrate_vma_setup: fault_page not locked: -EINVAL")
        return F_DONE
    compound = pagetable.entry(m, ctx.proc, ctx.addr)[1] == PMD and m.rules.migrate.compound
    ctx.pgmap = g
    ctx.select = SELECT_DEVICE_PRIVATE | (SELECT_COMPOUND if compound else 0)
    migrate.migrate_collect(m, slot, cpu)
    return M_UNMAP


def _fault_done(m: Machine, slot: int, cpu: int) -> int | None:
    """Step 5: drop the fault path's reference (and lock); refault if the
    page is still on the device."""
    ctx = m.s.mig[slot].copy()
    live = m.s.mig[slot]
    p = ctx.fault_pfn - 1

    def unlock() -> None:
        # the fault folio (after a split in collect, the fault page's own)
        h = page.head_of(m, p)
        m.s.flags[h] &= ~PG_LOCKED
        m.s.ledger.locker[h] = LOCK_NONE
        live.fault_locked = False

    if ctx.fault_locked and m.rules.fault.unlock_before_put:
        unlock()
    if ctx.fault_ref:
        m.s.ledger.pages[p].fault -= 1
        live.fault_ref = False
        page.put_page_refs(m, p, 1, cpu, "do_swap_page: put_page")
    if ctx.fault_locked and not m.rules.fault.unlock_before_put:
        if not folio.folio_in_use(m, page.head_of(m, p)):
            m.violate(
                "I-D1",
                SAFETY,
                [("pfn", p)],
                lambda: (
                    f"do_swap_page unlocks pfn {p} after its put_page freed it (use after free)",
                    "unlock before the final put",
                    "unlock after",
                ),
            )
        unlock()
    e, _ = pagetable.entry(m, ctx.proc, ctx.addr)
    if e == ctx.orig and not ctx.oom and m.s.alive[ctx.proc]:
        # migrate_to_ram gave up on a busy page: the access refaults
        live.retries = (live.retries + 1) % 256
        m.trace_note(lambda: "the page is still on the device: refault")
        return F_READ
    return None


def mm_busy(m: Machine, proc: int) -> bool:
    """Does a fault or migrate_vma task hold ``proc``'s mmap_lock?"""
    return any(
        t is not None and isinstance(t.kind, sched.Migrate) and migrate.mig_proc(m, i) == proc
        for i, t in enumerate(m.s.tasks)
    )


def mm_ok(m: Machine, proc: int, addr: int) -> str | None:
    """A process's own page-table changes need its mmap_lock free of faults
    and driver migrations, and the address's PTL free (``Machine::mm_ok``)."""
    if not m.s.alive[proc]:
        return "no such process"
    if mm_busy(m, proc):
        return "a fault or a migration holds the process's mmap_lock"
    if pagetable.ptl_owner(m, proc, addr) is not None:
        return "a task holds the page-table lock"
    return None


def driver_migrating(m: Machine, g: int) -> bool:
    """Does a migration of the driver of pgmap ``g`` run?"""
    return any(
        t is not None and isinstance(t.kind, sched.Migrate) and t.kind.origin != migrate.FAULT and m.s.mig[i].pgmap == g
        for i, t in enumerate(m.s.tasks)
    )
