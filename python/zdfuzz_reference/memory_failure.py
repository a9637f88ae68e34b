"""memory_failure() on a ZONE_DEVICE page: a hardware memory error on
device memory.

Mirrors ``rust/core/src/memory_failure.rs`` (mm/memory-failure.c, v6.1):
``get_dev_pagemap(pfn, NULL)`` (an ``xa_load`` under ``rcu_read_lock()``,
then ``percpu_ref_tryget_live``; -ENXIO without one), then
``mf_generic_kill_procs`` — ``dax_lock_page`` through ``page->mapping``
(-EBUSY when it is not a DAX mapping), ``unmap_mapping_range`` of every user
mapping — and ``put_dev_pagemap``. The what-if
``pgmap.memory_failure_gets_pgmap = false`` runs the handler with no
reference on the pgmap (I-L3 if an unbind tore it down meanwhile). Shapes
with ``faults=1`` only; one call at a time (``mf_mutex``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from zdfuzz_reference import page, pgmap, process, sched
from zdfuzz_reference.flags import MAPPING_NONE, is_file_mapping

if TYPE_CHECKING:
    from zdfuzz_reference.machine import Machine

MF_LOOKUP = 0
MF_TRYGET = 1
MF_HANDLE = 2


def running(m: Machine) -> bool:
    return any(t is not None and isinstance(t.kind, sched.MemoryFailure) for t in m.s.tasks)


def memory_failure_enabled(m: Machine, pfn: int) -> str | None:
    if not m.layout.faults:
        return "this shape injects no faults (config faults=1 turns them on)"
    if pfn >= m.layout.ndev:
        return "memory_failure on system RAM is not modelled (only the ZONE_DEVICE path)"
    if not sched.free_task_slot(m):
        return "no free task slot"
    if running(m):
        return "mf_mutex: one memory_failure at a time"
    return None


def memory_failure_step(m: Machine, p: int, found: int, pc: int, cpu: int) -> tuple[int, int] | None:
    """Step ``pc`` of memory_failure(pfn): the next step and the pgmap
    found, or None when it returns."""
    if pc == MF_LOOKUP:
        g = pgmap.get_dev_pagemap_lookup(m, p, 0, cpu)
        if g is None:
            m.trace_note(lambda: "memory_failure: memory outside kernel control -> -ENXIO")
            return None
        return (MF_TRYGET, g)
    if pc == MF_TRYGET:
        if not m.rules.pgmap.memory_failure_gets_pgmap:
            m.trace_note(lambda: f"memory_failure: pgmap {found} without a reference (what-if)")
            return (MF_HANDLE, found)
        if pgmap.get_dev_pagemap_ref(m, found, cpu, "memory_failure: get_dev_pagemap"):
            m.s.ledger.inflight_pgmap_refs[found] += 1
            return (MF_HANDLE, found)
        m.trace_note(lambda: "memory_failure: get_dev_pagemap -> NULL (dying) -> -ENXIO")
        return None
    _dev_pagemap(m, p, found, cpu)
    if m.rules.pgmap.memory_failure_gets_pgmap:
        m.s.ledger.inflight_pgmap_refs[found] -= 1
        pgmap.pgmap_put(m, found, cpu, 1, "memory_failure: put_dev_pagemap")
    return None


def _dev_pagemap(m: Machine, p: int, g: int, cpu: int) -> None:
    """mf_generic_kill_procs: ``dax_lock_page``, then unmap every mapping."""
    if page.page_torn_down(m, p, "memory_failure_dev_pagemap"):
        return
    m.touch_page(p)
    # a device-dax page's mapping is its device's inode (set at the first
    # fault, never cleared before v6.15); an FS-DAX page has one while a file
    # owns its block; nothing else has a DAX mapping
    t = m.layout.pgmap_type[g]
    if not (t == "generic" or (t == "fsdax" and is_file_mapping(m.s.mapping[p]))):
        why = "NULL" if m.s.mapping[p] == MAPPING_NONE else "not a DAX mapping"
        m.trace_note(lambda: f"dax_lock_page: page->mapping {why} -> -EBUSY")
        return
    m.trace_note(lambda: f"memory_failure: SetPageHWPoison(pfn {p}), unmap_mapping_range, SIGBUS")
    process.zap_pfn_mappings(m, p, cpu)
