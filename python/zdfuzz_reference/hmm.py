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
snapshot anyway (I-H1).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from zdfuzz_reference import pagetable, pgmap, sched
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
