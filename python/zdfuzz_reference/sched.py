"""Kernel functions that can race, as tasks with explicit steps; the drain.

Mirrors ``rust/core/src/sched.rs``. A task is spawned by an action
(``memunmap_pages``, ``truncate``, ``get_dev_pagemap``, a migration, a
device-private fault) and advanced by ``step task=N``; each step ends where the
kernel function can be preempted or blocks, so every interleaving is a
deterministic, replayable sequence. A task that must wait (for
``pgmap->done``, for a DAX page to go idle, for RCU readers, for a page-table
lock) is *blocked*: its step is not enabled until the condition holds.

At the end of a program comes the drain: every actor does what it would
eventually do, in this order — lookups in flight return; GUP callers and
kernel users release; migrations and faults finish; processes exit; drivers
and kernel users free their allocations; running tasks finish; filesystems
truncate; the leak check (I-F10); every driver unbinds. Whatever is left is a
hang (I-L4). Faults that keep refaulting are watched for a livelock (I-D3).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from zdfuzz_reference import dax, fault, folio, hmm, memory_failure, migrate, page, pagetable, pgmap
from zdfuzz_reference.ops import BY_GUP, BY_KERNEL, Op
from zdfuzz_reference.oracle import LIVENESS, REGISTERED, SAFETY

if TYPE_CHECKING:
    from zdfuzz_reference.machine import Machine


@dataclass(frozen=True)
class Memunmap:
    """memunmap_pages(pgmap)"""

    pgmap: int


@dataclass(frozen=True)
class GetDevPagemap:
    """get_dev_pagemap(pfn, cached): ``cached`` 0 = none, g+1 = pgmap g;
    ``found`` is the pgmap the lookup returned (valid at pc 1)."""

    pfn: int
    cached: int
    found: int = 0


@dataclass(frozen=True)
class Truncate:
    """The filesystem truncating one DAX entry."""

    file: int
    index: int


@dataclass(frozen=True)
class Migrate:
    """A migration or a device-private fault; its arrays live in ``s.mig``."""

    origin: str  # migrate.VMA, migrate.DEVICE_RANGE or migrate.FAULT


@dataclass(frozen=True)
class MemoryFailure:
    """memory_failure(pfn) on a ZONE_DEVICE page; ``found`` is the pgmap its
    lookup returned (valid from pc 1)."""

    pfn: int
    found: int = 0


@dataclass(frozen=True)
class HmmRangeFault:
    """The driver of pgmap ``owner`` between its ``hmm_range_fault`` walk of
    (proc, addr), which saw ``pfn`` (``write``), and its
    ``mmu_interval_read_retry``."""

    proc: int
    addr: int
    owner: int
    pfn: int
    write: bool


@dataclass(frozen=True)
class FreeFolio:
    """``free_zone_device_folio`` after ``->folio_free()`` returned: its
    ``percpu_ref_put_many(&folio->pgmap->ref, nr)`` is still to run
    (page.py; only where ``thp.free_rereads_pgmap`` opens the window)."""

    pfn: int
    nr: int


@dataclass(frozen=True)
class DaxWriteback:
    """``dax_writeback_one`` between ``dax_lock_entry`` and
    ``dax_unlock_entry``: the entry is locked while this task exists."""

    file: int
    index: int


TaskKind = Memunmap | GetDevPagemap | Truncate | Migrate | MemoryFailure | HmmRangeFault | FreeFolio | DaxWriteback

# steps of the truncate task
TR_SCAN = 0
TR_WAIT = 1
TR_FREE = 2
TR_ENTRY_WAIT = 3


@dataclass(frozen=True)
class Task:
    kind: TaskKind
    pc: int  # the next step to run
    cpu: int

    def is_rcu_reader(self) -> bool:
        """Between ``xa_load`` and the tryget: inside ``rcu_read_lock()``."""
        return isinstance(self.kind, (GetDevPagemap, MemoryFailure)) and self.pc == 1

    def returns_unaided(self) -> bool:
        """Never blocks and holds nothing the drain releases before it
        returns: the drain lets it return first."""
        return isinstance(self.kind, (GetDevPagemap, MemoryFailure, HmmRangeFault, FreeFolio, DaxWriteback))

    def describe(self) -> str:
        k = self.kind
        if isinstance(k, Memunmap):
            steps = ["shut user access down", "percpu_ref_kill", "drop init refs", "wait_for_completion", "teardown"]
            return f'memunmap_pages(pgmap={k.pgmap}) at "{steps[self.pc] if self.pc < len(steps) else "?"}"'
        if isinstance(k, GetDevPagemap):
            return f'get_dev_pagemap(pfn={k.pfn}) at "{"xa_load" if self.pc == 0 else "tryget"}"'
        if isinstance(k, MemoryFailure):
            steps = ["xa_load", "tryget", "memory_failure_dev_pagemap"]
            return f'memory_failure(pfn={k.pfn}) at "{steps[self.pc] if self.pc < len(steps) else "?"}"'
        if isinstance(k, HmmRangeFault):
            return f'hmm_range_fault(proc={k.proc}, addr={k.addr}) saw pfn {k.pfn} at "mmu_interval_read_retry"'
        if isinstance(k, DaxWriteback):
            return f'dax_writeback_one(file={k.file}, index={k.index}) at "dax_flush + dax_unlock_entry"'
        if isinstance(k, FreeFolio):
            return f'free_zone_device_folio(pfn={k.pfn}, nr={k.nr}) at "percpu_ref_put_many after ->folio_free()"'
        if isinstance(k, Truncate):
            steps = ["dax_layout_busy_page", "wait for idle page", "free block", "wait for the entry lock"]
            return f'truncate(file={k.file}, index={k.index}) at "{steps[self.pc] if self.pc < len(steps) else "?"}"'
        what = {
            migrate.VMA: "migrate_vma",
            migrate.DEVICE_RANGE: "migrate_device_range",
            migrate.FAULT: "do_swap_page",
        }[k.origin]
        step = {
            fault.M_COLLECT: "collect",
            fault.M_FLUSH: "flush_tlb_range (PTL released)",
            fault.M_UNMAP: "unmap",
            fault.M_COPY: "alloc and copy",
            fault.M_PAGES: "migrate_vma_pages",
            fault.M_FINALIZE: "migrate_vma_finalize",
            fault.F_READ: "read orig_pte",
            fault.F_LOCK: "pte_offset_map_lock + pte_same",
            fault.F_GET: "get_page + unlock PTL",
            fault.F_CALL: "migrate_to_ram",
        }.get(self.pc, "put_page")
        return f'{what} at "{step}"'


def spawn(m: Machine, kind: TaskKind, cpu: int, pc: int = 0) -> int | None:
    """Start a task in the first free slot."""
    slot = next((i for i, t in enumerate(m.s.tasks) if t is None), None)
    if slot is None:
        return None
    t = Task(kind, pc, cpu)
    m.s.tasks[slot] = t
    m.trace_note(lambda: f"task {slot}: {t.describe()}")
    return slot


def free_task_slot(m: Machine) -> bool:
    return any(t is None for t in m.s.tasks)


def task_blocked(m: Machine, slot: int) -> str | None:
    """Why task ``slot`` cannot step now (None: it can, or there is none)."""
    t = m.s.tasks[slot]
    if t is None:
        return None
    k = t.kind
    if isinstance(k, Memunmap):
        return pgmap.memunmap_blocked(m, k.pgmap, t.pc)
    if isinstance(k, Truncate):
        return dax.truncate_blocked(m, k.file, k.index, t.pc)
    if isinstance(k, Migrate):
        return fault.migrate_blocked(m, slot, t.pc)
    return None


def task_step(m: Machine, slot: int) -> None:
    """Run the next step of task ``slot``."""
    t = m.s.tasks[slot]
    if t is None:
        return
    k = t.kind
    nxt: tuple[int, TaskKind] | None = None
    if isinstance(k, Memunmap):
        pc = pgmap.memunmap_step(m, k.pgmap, t.pc, t.cpu)
        nxt = None if pc is None else (pc, k)
    elif isinstance(k, GetDevPagemap):
        if t.pc == 0:
            g = pgmap.get_dev_pagemap_lookup(m, k.pfn, k.cached, t.cpu)
            nxt = None if g is None else (1, GetDevPagemap(k.pfn, k.cached, g))
        else:
            pgmap.get_dev_pagemap_tryget(m, k.found, t.cpu)
    elif isinstance(k, Truncate):
        pc = dax.truncate_step(m, k.file, k.index, t.pc, t.cpu)
        nxt = None if pc is None else (pc, k)
    elif isinstance(k, HmmRangeFault):
        hmm.hmm_commit(m, k.proc, k.addr, k.owner, k.pfn, k.write)
    elif isinstance(k, FreeFolio):
        page.free_folio_put_pgmap(m, k.pfn, k.nr, t.cpu)
    elif isinstance(k, DaxWriteback):
        dax.dax_writeback_done(m, k.file, k.index)
    elif isinstance(k, MemoryFailure):
        r = memory_failure.memory_failure_step(m, k.pfn, k.found, t.pc, t.cpu)
        nxt = None if r is None else (r[0], MemoryFailure(k.pfn, r[1]))
    else:
        pc = fault.migrate_step(m, slot, t.pc, t.cpu)
        nxt = None if pc is None else (pc, k)
    m.s.tasks[slot] = None if nxt is None else Task(nxt[1], nxt[0], t.cpu)
    if nxt is None:
        _task_finished(m, slot)


def _task_finished(m: Machine, slot: int) -> None:
    """I-D2: a kernel function returns with no page-table lock held."""
    for i, o in enumerate(m.s.ptl):
        if o == slot + 1:
            m.s.ptl[i] = 0
            m.violate(
                "I-D2",
                SAFETY,
                [("task", slot)],
                lambda: (
                    f"task {slot} returns with a page-table lock still held: every later fault, GUP or unmap of that "
                    "page table spins forever",
                    "PTL released",
                    "held",
                ),
            )
            return


# -- driving tasks ---------------------------------------------------------------

#: the drain's step budget (a terminating program needs far fewer steps)
BUDGET = 10_000
#: how many round-start states the livelock detector remembers
SEEN_CAP = 64


def _drive_tasks(m: Machine, only_migrations: bool = False) -> None:
    """Run every runnable task (or only migrations and faults) round-robin,
    with an RCU grace period when only blocked tasks remain. If the whole
    state repeats at the start of a round in which a fault refaulted, the
    rounds repeat forever under this fair, deterministic schedule: I-D3."""
    budget = BUDGET
    seen: list[tuple[object, ...]] = []
    while True:
        if m.violation is not None or budget <= 0:
            return
        retries = _fault_retries(m)
        moved = False
        for slot in range(len(m.s.tasks)):
            t = m.s.tasks[slot]
            if (
                budget > 0
                and t is not None
                and (not only_migrations or isinstance(t.kind, Migrate))
                and task_blocked(m, slot) is None
            ):
                m.drain_step(Op.new("step", slot))
                moved = True
                budget -= 1
                if m.violation is not None:
                    return
        if _fault_retries(m) != retries:
            key = _state_key(m)
            if key in seen:
                _report_livelock(m)
                return
            if len(seen) < SEEN_CAP:
                seen.append(key)
        if not moved:
            if pgmap.any_switch_pending(m) and not pgmap.rcu_reader_active(m):
                m.drain_step(Op.new("rcu_grace_period"))
                budget -= 1
                continue
            return


def _is_fault(t: Task | None) -> bool:
    return t is not None and isinstance(t.kind, Migrate) and t.kind.origin == migrate.FAULT


def _fault_retries(m: Machine) -> int:
    """Refaults so far, over every fault task."""
    return sum(m.s.mig[i].retries for i, t in enumerate(m.s.tasks) if _is_fault(t))


def _report_livelock(m: Machine) -> None:
    faults = [i for i, t in enumerate(m.s.tasks) if _is_fault(t)]
    pfns = [str(m.s.mig[i].fault_pfn - 1) for i in faults if m.s.mig[i].fault_pfn > 0]
    n = len(faults)
    m.at_label = "livelock check"
    m.violate(
        "I-D3",
        LIVENESS,
        [("task", faults[0] if faults else 0)],
        lambda: (
            f"livelock: {n} fault(s) on device-private pfn {', '.join(pfns)} refault forever under fair scheduling — "
            "each migrate_to_ram fails because of the others' references, and the state repeats",
            "one fault migrates the page",
            "every fault retries",
        ),
    )
    m.at_label = None


def _state_key(m: Machine) -> tuple[object, ...]:
    """Everything a task's next steps depend on — exactly what the Rust
    drain hashes (not the data tokens, DAX entries or P2P allocations), and
    never the refault counters, which change every round."""
    s = m.s
    migs = tuple(
        (
            i,
            c.origin,
            c.proc,
            c.addr,
            c.npages,
            c.pgmap,
            c.select,
            c.fault_pfn,
            c.orig,
            c.fault_ref,
            c.fault_locked,
            c.oom,
            c.gup,
        )
        for i, c in enumerate(s.mig)
    )
    pgmaps = tuple((p.state, p.pref.count(), p.pref.is_dying(), p.pref.switch_pending(), p.done) for p in s.pgmaps)
    return (
        tuple(s.rc),
        tuple(s.mc),
        tuple(s.flags),
        tuple(s.mapping),
        tuple(s.head),
        tuple(s.order),
        tuple(s.emc),
        tuple(s.pincount),
        tuple(s.ptes),
        tuple(s.pmds),
        tuple(s.ptl),
        tuple(s.tasks),
        tuple(s.mig_entries),
        s.ledger.key(),
        tuple(s.alive),
        tuple(s.avc),
        migs,
        pgmaps,
    )


def drain(m: Machine) -> None:
    """The end-of-program drain and the final sweep."""
    lay = m.layout
    # 0. Lookups in flight return (they never block).
    for slot in range(len(m.s.tasks)):
        while m.violation is None and _is_lookup(m.s.tasks[slot]):
            m.drain_step(Op.new("step", slot))
    # 1. GUP callers and kernel users release what they hold.
    _release_page_holders(m)
    for g in range(lay.npgmaps):
        while m.violation is None and m.s.ledger.kernel_pgmap_refs[g] > 0:
            m.drain_step(Op.new("put_dev_pagemap", g, 0))
    # 1b. Migrations and faults in flight finish.
    for c in m.s.mig:
        c.retries = 0
    _drive_tasks(m, only_migrations=True)
    #    A GUP call that faulted a device-private page in grabbed it when its
    #    fault returned: its caller releases it too.
    _release_page_holders(m)
    # 2. Processes exit.
    for proc in range(lay.procs):
        if m.violation is None and m.s.alive[proc] and proc_has_mappings(m, proc):
            m.drain_step(Op.new("exit_mmap", proc, 0))
    # 3. Drivers and kernel users free their allocations.
    for p in range(lay.npfns):
        if m.violation is None and m.s.ledger.pages[p].driver:
            m.drain_step(Op.new("free_device_page", p, 0))
        if m.violation is None and m.s.p2p_len[p] > 0:
            m.drain_step(Op.new("pci_free_p2pmem", p, 0))
    # 4. Tasks already running finish (a GUP's fault among them: its caller
    #    releases what it got).
    _drive_tasks(m)
    _release_page_holders(m)
    # 5. Filesystems truncate their files.
    for file in range(lay.nfiles):
        for index in range(lay.file_pages):
            slot = lay.entry_slot(file, index)
            if m.violation is None and m.s.dax[slot] > 0 and not dax.truncating(m, file) and free_task_slot(m):
                m.drain_step(Op.new("truncate", file, index, 0))
                _drive_tasks(m)
    if m.violation is None:
        m.at_label = "leak check"
        for g in range(lay.npgmaps):
            if m.s.ledger.life[g] == REGISTERED:
                check_pgmap_leaks(m, g)
        m.at_label = None
    # 6. Every driver unbinds.
    for g in range(lay.npgmaps):
        if m.violation is None and m.s.pgmaps[g].state == pgmap.LIVE and free_task_slot(m):
            m.drain_step(Op.new("memunmap_pages", g, 0))
            _drive_tasks(m)
    _drive_tasks(m)
    # 7. Whatever is left waits forever.
    m.at_label = "end of drain"
    if m.violation is None:
        left = next(((i, t) for i, t in enumerate(m.s.tasks) if t is not None), None)
        if left is not None:
            slot, t = left
            why = task_blocked(m, slot) or "cannot make progress"
            extra = ""
            if isinstance(t.kind, Memunmap):
                extra = f"; pgmap->ref stays at {m.s.pgmaps[t.kind.pgmap].pref.count()}"
            d = t.describe()
            m.violate(
                "I-L4",
                LIVENESS,
                [("task", slot)],
                lambda: (f"hang: {d} never completes: {why}{extra}", "completes", "blocked forever"),
            )
    m.at_label = None


def _release_page_holders(m: Machine) -> None:
    """Drain step 1: GUP callers and kernel users release the page
    references and pins they hold."""
    for p in range(m.layout.npfns):
        while m.violation is None and m.s.ledger.pages[p].gup_pins > 0:
            m.drain_step(Op.new("unpin_user_page", p, 0))
        while m.violation is None and m.s.ledger.pages[p].gup_gets > 0:
            m.drain_step(Op.new("put_page", p, BY_GUP, 0))
        while m.violation is None and m.s.ledger.pages[p].kernel_gets > 0:
            m.drain_step(Op.new("put_page", p, BY_KERNEL, 0))


def _is_lookup(t: Task | None) -> bool:
    return t is not None and t.returns_unaided()


def check_pgmap_leaks(m: Machine, g: int) -> None:
    """I-F10 for the pages of pgmap ``g``: once nobody holds a page, its
    refcount is back at the value memremap_pages left (judged on heads)."""
    for p in m.layout.pfns_of(g):
        if m.s.head[p] != p or folio.folio_in_use(m, p):
            continue
        rc, init = m.s.rc[p], m.s.ledger.init_rc[p]
        if rc != init:
            m.violate(
                "I-F10",
                LIVENESS,
                [("pfn", p)],
                lambda: (
                    f"pfn {p}'s refcount is {rc} after every holder released it; it started at {init} "
                    f"({abs(rc - init)} reference(s) {'leaked' if rc > init else 'dropped twice'})",
                    f"{init}",
                    f"{rc}",
                ),
            )
            return


def proc_has_mappings(m: Machine, proc: int) -> bool:
    return any(pagetable.entry(m, proc, a)[0] != pagetable.EMPTY for a in range(m.layout.addrs))
