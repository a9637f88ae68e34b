"""``hmm_range_fault``: a device-private driver snapshots a process's page
table for its device's mirror, without taking page references.

Mirrors ``rust/core/src/hmm.rs`` (mm/hmm.c, v6.1, and its callers' loop:
``mmu_interval_read_begin``, the walk, the driver's mutex and
``mmu_interval_read_retry``). The walk (at the action) reports a present
entry's pfn and write bit, a device-private entry's only to the driver of its
pgmap, and nothing for a hole or a migration entry; a snapshot with a pfn
leaves a task whose step is the driver's retry check and its use of the
snapshot. A changed entry means the notifier invalidated the range: the
driver retries. The what-if ``private.hmm_checks_retry = false`` uses the
snapshot anyway (I-H1). ``hmm_fault`` is the walk with HMM_PFN_REQ_FAULT: a
hole is faulted in (``do_anonymous_page``) and then reported, another
owner's device-private entry takes the fault task (``do_swap_page``) and the
call returns -EBUSY, a migration entry is waited out (-EBUSY).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from zdfuzz_reference import fault, pagetable, pgmap, ram, sched
from zdfuzz_reference.oracle import SAFETY

if TYPE_CHECKING:
    from zdfuzz_reference.machine import Machine

#: what the walk reports for one address: (pfn, writable), or None
Snapshot = tuple[int, bool] | None


def hmm_range_fault_enabled(m: Machine, proc: int, g: int) -> str | None:
    if m.layout.pgmap_type[g] != "private":
        return "not a device-private pgmap (HMM mirrors)"
    if m.s.pgmaps[g].state != pgmap.LIVE:
        return "the driver is not bound"
    if not m.s.alive[proc]:
        return "no such process"
    if not sched.free_task_slot(m):
        return "no free task slot"
    return None


def hmm_fault_enabled(m: Machine, proc: int, addr: int, g: int) -> str | None:
    why = hmm_range_fault_enabled(m, proc, g)
    if why is not None:
        return why
    if pagetable.entry(m, proc, addr)[0].kind == pagetable.NONE:
        # the hole is faulted in where the CPU's anonymous fault could run
        return fault.mm_ok(m, proc, addr)
    return None


def hmm_fault(m: Machine, proc: int, addr: int, owner: int, cpu: int) -> None:
    """``hmm_range_fault`` with HMM_PFN_REQ_FAULT (``hmm_vma_fault``)."""
    e = pagetable.entry(m, proc, addr)[0]
    if e.kind == pagetable.NONE:
        m.trace_note(lambda: "hmm_vma_fault: handle_mm_fault on the hole -> do_anonymous_page")
        if ram.ram_fit(m, 0) is None:
            m.trace_note(lambda: "no free system RAM: VM_FAULT_OOM -> -EFAULT")
            return
        ram.do_anonymous_page(m, proc, addr)
        hmm_range_fault(m, proc, addr, owner, cpu)
    elif e.kind == pagetable.DEVICE_PRIVATE and m.layout.pgmap_of(e.pfn) != owner:
        m.trace_note(
            lambda: (
                "hmm_vma_fault: another owner's device-private page -> do_swap_page; "
                "migrate_to_ram invalidates the range, so hmm_range_fault returns -EBUSY and the driver retries"
            )
        )
        fault.spawn_fault(m, proc, addr, cpu)
    elif e.kind == pagetable.MIGRATION:
        m.trace_note(lambda: "migration_entry_wait, then -EBUSY (retry)")
    else:
        hmm_range_fault(m, proc, addr, owner, cpu)


def hmm_view(m: Machine, proc: int, addr: int, owner: int) -> Snapshot:
    """What ``hmm_vma_handle_pte``/``_pmd`` report for (proc, addr) to the
    driver of pgmap ``owner``."""
    e = pagetable.entry(m, proc, addr)[0]
    if e.kind == pagetable.PRESENT:
        return (e.pfn, e.write)
    if e.kind == pagetable.DEVICE_PRIVATE:
        return (e.pfn, e.write) if m.layout.pgmap_of(e.pfn) == owner else None
    return None


def hmm_range_fault(m: Machine, proc: int, addr: int, owner: int, cpu: int) -> None:
    seen = hmm_view(m, proc, addr, owner)
    if seen is None:
        m.trace_note(lambda: "hmm_range_fault: no valid pfn (hole, migration entry or another owner's page)")
        return
    p, write = seen
    m.touch_page(p)
    m.trace_note(lambda: f"hmm_range_fault -> pfn {p}{' write' if write else ''} (no reference taken)")
    sched.spawn(m, sched.HmmRangeFault(proc, addr, owner, p, write), cpu)


def hmm_commit(m: Machine, proc: int, addr: int, owner: int, p: int, write: bool) -> None:
    """The driver's ``mmu_interval_read_retry`` under its mutex, then the
    device's page table programmed from the snapshot."""
    now = hmm_view(m, proc, addr, owner)
    if now != (p, write):
        if m.rules.private.hmm_checks_retry:
            m.trace_note(lambda: "mmu_interval_read_retry: the range was invalidated -> -EBUSY (retry)")
            return
        page = "still in use elsewhere" if m.s.ledger.pages[p].in_use() else "no longer held by anyone"
        cpu_view = "nothing" if now is None else f"pfn {now[0]}{' writable' if now[1] else ' read-only'}"
        m.violate(
            "I-H1",
            SAFETY,
            [("proc", proc), ("addr", addr), ("pfn", p)],
            lambda: (
                f"the device maps pfn {p}{' writable' if write else ''} at proc {proc} addr {addr} from a stale "
                f"hmm_range_fault snapshot: the CPU now maps {cpu_view} there, and pfn {p} is {page} "
                "(no reference was taken)",
                "the driver retries (mmu_interval_read_retry)",
                "stale snapshot used",
            ),
        )
