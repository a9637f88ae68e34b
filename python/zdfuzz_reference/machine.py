"""The machine: state, the actors' contracts, one action at a time.

Mirrors ``rust/core/src/machine.rs``. :meth:`Machine.enabled` is the actors'
contract: an action is offered only when the actor issuing it may legally do
so (only a holder puts, only the pinner unpins, a driver frees only what it
allocated and stops allocating once it unbinds, ...), so a violation is a
defect of the refcount design under test, never of the caller.
:meth:`Machine.step` applies one action through the kernel functions of the
concept modules; safety checks run inside them, conformance checks (I-F5,
I-G1, I-M1, I-P1) after each action on what it touched. The API is that of
``zdfuzz.Machine``: ``run``, ``run_bytes``, ``step``, ``finish``, ``reset``,
``enabled_actions``, ``why_not``, and a verdict with the trace.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from zdfuzz_reference import (
    data,
    dax,
    decode,
    driver,
    failure,
    fault,
    folio,
    gup,
    hmm,
    memory_failure,
    migrate,
    p2pdma,
    page,
    pagetable,
    pgmap,
    process,
    ram,
    sched,
)
from zdfuzz_reference.config import Layout, Shape, shape_of
from zdfuzz_reference.errors import ConfigError, InvariantViolation
from zdfuzz_reference.flags import PG_BUDDY, PG_FREE_LIST, PG_INIT_REF, PG_LOCKED, PG_POOL
from zdfuzz_reference.migrate import MigCtx, MigEntry
from zdfuzz_reference.ops import (
    BY_GUP,
    KINDS,
    SELECT_COMPOUND,
    SELECT_DEVICE_COHERENT,
    SELECT_DEVICE_PRIVATE,
    SITE_NAMES,
    Op,
    dim_size,
    dim_value,
)
from zdfuzz_reference.oracle import (
    CONFORMANCE,
    KILLED,
    LOCK_DRIVER,
    REGISTERED,
    Ledger,
    Violation,
)
from zdfuzz_reference.pgmap import LIVE, UNBINDING, UNUSED, Pgmap
from zdfuzz_reference.pte import EMPTY, PMD, Pte
from zdfuzz_reference.rules import DEFAULT_PRESET, DRIVER_ALLOCATED, Rules, _HasToml
from zdfuzz_reference.text import ProgramError, op_to_text, parse_action, parse_program

#: touched pages remembered per action; beyond that every page is checked
TOUCH_CAP = 24
#: GUP_PIN_COUNTING_BIAS (include/linux/mm.h): I-G1 checks the preset against it
GUP_PIN_COUNTING_BIAS = 1024


class State:
    """Everything that changes while a program runs."""

    def __init__(self, lay: Layout, nptl: int) -> None:
        n = lay.npfns
        self.pgmaps = [Pgmap(lay.cpus) for _ in range(lay.npgmaps)]
        self.rc = [0] * n  # _refcount
        self.mc = [0] * n  # mapcount (refcounted mappings only)
        self.flags = [0] * n
        self.mapping = [0] * n
        self.head = list(range(n))  # compound head of each pfn
        self.order = [0] * n  # folio order, on heads
        self.pincount = [0] * n  # _pincount of a large folio, on its head
        self.emc = [0] * n  # entire (PMD) mapcount, on the head
        self.content = [0] * n  # the data token each page holds
        self.next_token = 1
        self.ptes: list[Pte] = [EMPTY] * (lay.procs * lay.addrs)
        self.pmds: list[Pte] = [EMPTY] * (lay.procs * lay.blocks)
        self.ptl = [0] * nptl  # page-table locks: owner task + 1
        self.mig = [MigCtx() for _ in range(lay.tasks)]
        self.mig_entries = [MigEntry()] * (lay.tasks * lay.mig_cap())
        self.split_pgmap_refs = [0] * lay.npgmaps
        #: per pgmap: references a kernel error path took and never put (a
        #: modelled bug's leak); I-P1 counts them, nothing ever puts them
        self.lost_pgmap_refs = [0] * lay.npgmaps
        # pgmap references taken by get_page minus those put_page dropped
        # (before v4.11, pgmap.page_refs_take_pgmap_refs)
        self.page_pgmap_refs = [0] * lay.npgmaps
        self.alive = [True] * lay.procs
        #: per process: the anon_vmas its VMA is linked to (anon_vma_chain), a bit each
        self.avc = [1 << p for p in range(lay.procs)]
        self.dax = [0] * (lay.nfiles * lay.file_pages)  # DAX entries: pfn + 1
        self.p2p_len = [0] * n  # pci_alloc_p2pmem: length at the start pfn
        self.armed = [0] * len(SITE_NAMES)  # fail_next: 0, or the n-th next call fails
        self.tasks: list[sched.Task | None] = [None] * lay.tasks
        self.ledger = Ledger(n, lay.npgmaps, lay.procs * lay.addrs)
        for p in lay.ram_pfns():
            self.flags[p] = PG_BUDDY  # system RAM starts free, in the buddy allocator


@dataclass
class Verdict:
    """The outcome of a program (``zdfuzz.Verdict``'s fields)."""

    safety: Violation | None
    conformance: Violation | None
    steps: int
    trace: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.safety is None and self.conformance is None

    @property
    def violation(self) -> Violation | None:
        """The first safety/liveness violation, else the first conformance one."""
        return self.safety if self.safety is not None else self.conformance

    def trace_lines(self) -> list[str]:
        return [trace_line(t) for t in self.trace]

    def __bool__(self) -> bool:
        return self.ok


def trace_line(t: dict[str, Any]) -> str:
    """One trace entry as the Python binding prints it."""
    s = f"{t['step']:>4}  {'(drain) ' if t['drain'] else ''}{t['action']}"
    if t["changes"]:
        s += f"   [{', '.join(t['changes'])}]"
    if t["notes"]:
        s += f"   {'; '.join(t['notes'])}"
    return s


def _with_trace(v: Violation | None, trace: list[dict[str, Any]]) -> Violation | None:
    if v is None:
        return None
    return Violation(
        v.invariant,
        v.category,
        v.step,
        v.action,
        v.message,
        v.objects,
        v.expected,
        v.actual,
        [trace_line(t) for t in trace if t["step"] <= v.step],
    )


class Machine:
    """The reference model: same constructor and methods as ``zdfuzz.Machine``."""

    def __init__(
        self, rules: str | _HasToml | Rules | None = None, shape: Shape | dict[str, Any] | None = None
    ) -> None:
        self._init(Rules.load(DEFAULT_PRESET if rules is None else rules), shape_of(shape))

    def _init(self, rules: Rules, shape: Shape) -> None:
        shape.validate()
        # a type the era does not have (MEMORY_DEVICE_COHERENT before v6.0)
        bad = rules.check_types(shape.types)
        if bad is not None:
            raise ConfigError(bad)
        self.rules = rules
        self.shape = shape
        self.layout = Layout(shape)
        self.tracing = False
        self.reset()

    @staticmethod
    def for_program(program: Any, rules: str | _HasToml | Rules | None = None) -> Machine:
        """A machine shaped for ``program`` (text, a reference Program or a
        ``zdfuzz.Program``), under its own rules or ``rules``."""
        p = _program(program)
        return Machine.with_shape(p.rules if rules is None else rules, p.shape)

    @staticmethod
    def with_shape(rules: str | _HasToml | Rules, shape: Shape) -> Machine:
        """A machine of the given shape."""
        m = Machine.__new__(Machine)
        m._init(Rules.load(rules), shape)
        return m

    def reset(self) -> None:
        """Back to the initial state."""
        self.s = State(self.layout, pagetable.ptl_count(self))
        self.violation: Violation | None = None
        self.conformance: Violation | None = None
        self.at = 0  # index of the action being applied
        self.at_op: Op | None = None
        self.at_label: str | None = None  # a drain phase that is not an action
        self.in_drain = False
        self.in_drain_step = False
        self.in_gup_grab = False  # GUP is grabbing a page reference (not get_page)
        self.touched_pages: list[int] = []
        self.touched_pgmaps: set[int] = set()
        self.trace: list[dict[str, Any]] = []
        self.notes: list[str] = []
        self._before: tuple[list[int], list[int], list[int], list[int]] = ([], [], [], [])

    @property
    def steps(self) -> int:
        return self.at

    # -- oracle plumbing ----------------------------------------------------------

    def violate(
        self, invariant: str, category: str, objects: list[tuple[str, int]], f: Callable[[], tuple[str, str, str]]
    ) -> None:
        """Report a broken invariant: the first safety/liveness one stops the
        program; the first conformance one is kept and the program goes on."""
        if (self.conformance if category == CONFORMANCE else self.violation) is not None:
            return
        message, expected, actual = f()
        if self.at_label is not None:
            action = f"drain: {self.at_label}"
        elif self.at_op is not None:
            action = f"drain: {op_to_text(self.at_op)}" if self.in_drain_step else op_to_text(self.at_op)
        else:
            action = ""
        v = Violation(invariant, category, self.at, action, message, list(objects), expected, actual)
        if category == CONFORMANCE:
            self.conformance = v
        else:
            self.violation = v

    def touch_page(self, pfn: int) -> None:
        self.touched_pages.append(pfn)
        if not self.layout.is_ram(pfn):
            self.touched_pgmaps.add(self.layout.pgmap_of(pfn))

    def touch_pgmap(self, g: int) -> None:
        self.touched_pgmaps.add(g)

    def trace_note(self, f: Callable[[], str]) -> None:
        """A kernel event worth showing in a trace (built only when tracing)."""
        if self.tracing:
            self.notes.append(f())

    # -- the actors' contracts -------------------------------------------------------

    def enabled(self, op: Op) -> str | None:
        """None if ``op`` is allowed now, else why not."""
        s = self.s
        lay = self.layout
        a = op.a
        k = op.kind

        def live(g: int) -> bool:
            return s.pgmaps[g].state == LIVE

        def entry(proc: int, addr: int) -> Pte:
            return pagetable.entry(self, proc, addr)[0]

        def mm_ok(proc: int, addr: int) -> str | None:
            return fault.mm_ok(self, proc, addr)

        def first(*checks: tuple[bool | Callable[[], bool], str]) -> str | None:
            """The reason of the first failing check (checks run lazily, in order)."""
            for cond, why in checks:
                if not (cond() if callable(cond) else cond):
                    return why
            return None

        any_ptl = any(o != 0 for o in s.ptl)
        if k == "memremap_pages":
            return first((s.pgmaps[a(0)].state == UNUSED, "the pgmap is already registered"))
        if k == "memunmap_pages":
            g = a(0)
            return first(
                (live(g), "the pgmap is not registered, or already unbinding"),
                (lambda: sched.free_task_slot(self), "no free task slot"),
                (lambda: not fault.driver_migrating(self, g), "the driver finishes its migrations before it unbinds"),
                (
                    lambda: not any(s.ledger.pages[p].driver for p in lay.pfns_of(g)),
                    "the driver frees the pages it still holds before it unbinds",
                ),
                (
                    lambda: (
                        not (lay.pgmap_type[g] in DRIVER_ALLOCATED and self.rules.private.unbind_after_eviction)
                        or not any(s.ledger.pages[p].in_use() for p in lay.pfns_of(g))
                    ),
                    "the driver migrates its pages back before it unbinds (private.unbind_after_eviction)",
                ),
            )
        if k == "step":
            if s.tasks[a(0)] is None:
                return "no such task"
            return sched.task_blocked(self, a(0))
        if k == "rcu_grace_period":
            return first(
                (lambda: pgmap.any_switch_pending(self), "no RCU callback is pending"),
                (lambda: not pgmap.rcu_reader_active(self), "a get_dev_pagemap lookup is inside rcu_read_lock()"),
            )
        if k == "get_dev_pagemap":
            c = a(1)
            return first(
                (lambda: sched.free_task_slot(self), "no free task slot"),
                (
                    lambda: c == 0 or s.ledger.kernel_pgmap_refs[c - 1] > 0,
                    "the kernel user holds no reference on the cached pgmap",
                ),
            )
        if k == "put_dev_pagemap":
            return first((s.ledger.kernel_pgmap_refs[a(0)] > 0, "the kernel user holds no reference on this pgmap"))
        if k in ("alloc_device_page", "alloc_device_folio"):
            g = a(0)
            if lay.pgmap_type[g] not in DRIVER_ALLOCATED:
                return "not a pgmap whose driver allocates pages (device-private or coherent)"
            bound = live(g) or (self.rules.private.alloc_while_unbinding and s.pgmaps[g].state == UNBINDING)
            if not bound:
                return "the driver is not bound (registered and not unbinding)"
            if k == "alloc_device_folio":
                return first(
                    (lay.pgmap_type[g] == "private", "large folios are device-private only in the model"),
                    (self.rules.thp.device_private and lay.order > 0, "no large device-private folios in this era"),
                    (lambda: migrate.device_folio_fit(self, g) is not None, "the driver has no free aligned block"),
                )
            return first((lambda: driver.driver_free_page(self, g) is not None, "the driver has no free page"))
        if k == "free_device_page":
            return first((s.ledger.pages[a(0)].driver, "the driver does not hold this page"))
        if k == "lock_page":
            return first(
                (s.ledger.pages[a(0)].driver, "the driver does not hold this page"),
                (s.flags[a(0)] & PG_LOCKED == 0, "the page is locked"),
            )
        if k == "unlock_page":
            return first(
                (s.ledger.pages[a(0)].driver, "the driver does not hold this page"),
                (s.ledger.locker[a(0)] == LOCK_DRIVER, "the driver does not hold the page lock"),
            )
        if k == "migrate_vma_insert_page":
            proc, addr, p = a(0), a(1), a(2)
            why = mm_ok(proc, addr)
            if why:
                return why
            if not s.ledger.pages[p].driver:
                return "the driver does not hold this page"
            if page.folio_nr(self, p) > 1:
                if not pagetable.block_empty(self, proc, addr):
                    return "the PMD block is not empty"
            elif entry(proc, addr) != EMPTY:
                return "the address is mapped"
            return first(
                (s.ledger.locker[p] == LOCK_DRIVER, "migrate_vma needs the destination page locked"),
                (lambda: live(lay.pgmap_of(p)), "the driver is unbinding"),
            )
        if k == "pci_alloc_p2pmem":
            g = a(0)
            return first(
                (lay.pgmap_type[g] == "p2pdma", "not a P2P pgmap"),
                (lambda: s.ledger.life[g] in (REGISTERED, KILLED), "the P2P device is not registered"),
                (lambda: p2pdma.p2p_pool_fit(self, g, a(1)) is not None, "no free chunk that large"),
            )
        if k == "pci_free_p2pmem":
            p = a(0)
            n = s.p2p_len[p]
            return first(
                (n > 0, "no kernel P2P allocation starts at this pfn"),
                (
                    lambda: all(s.ledger.pages[q].kernel_gets == 0 for q in range(p, p + n)),
                    "the kernel user puts its page references before freeing",
                ),
            )
        if k == "get_page":
            return first(
                (self.rules.p2p.kernel_get_page, "kernel users take no page references on P2P memory in this era"),
                (
                    lambda: p2pdma.p2p_alloc_of(self, a(0)) is not None,
                    "the kernel user has no allocation covering this page",
                ),
            )
        if k == "put_page":
            h = s.ledger.pages[a(0)]
            if op.args[1] == BY_GUP:
                return first((h.gup_gets > 0, "no GUP reference on this page"))
            return first((h.kernel_gets > 0, "no kernel reference on this page"))
        if k == "p2pmem_alloc_mmap":
            g, proc, addr, n = a(0), a(1), a(2), a(3)
            why = first(
                (lay.pgmap_type[g] == "p2pdma", "not a P2P pgmap"),
                (self.rules.p2p.userspace_mmap, "no user-space P2P mappings in this era (v6.2+)"),
                (lambda: live(g), "the sysfs p2pmem/allocate file is gone (not registered or unbinding)"),
            )
            return (
                why
                or mm_ok(proc, addr)
                or first(
                    (
                        lambda: addr + n <= lay.addrs and all(entry(proc, x) == EMPTY for x in range(addr, addr + n)),
                        "the address range is not free",
                    ),
                    (lambda: p2pdma.p2p_pool_fit(self, g, n) is not None, "no free chunk that large"),
                )
            )
        if k == "dev_dax_huge_fault":
            proc, addr, p = a(0), a(1), a(2)
            why = first(
                (lay.type_of(p) == "generic", "not a device-dax page"),
                (lambda: live(lay.pgmap_of(p)), "the device-dax device is not bound"),
            )
            if why or (why := mm_ok(proc, addr)):
                return why
            if lay.is_devdax_pmd(p):
                # the device's alignment decides the fault size
                return first(
                    (p % lay.nr_huge() == 0, "the pfn is not aligned to the device's alignment"),
                    (lay.in_block(addr), "the address is not in a PMD-sized block"),
                    (lambda: pagetable.block_empty(self, proc, addr), "the block is mapped"),
                )
            return first((lambda: entry(proc, addr) == EMPTY, "the address is mapped"))
        if k == "dax_associate_entry":
            f, i, p = a(0), a(1), a(2)
            g = lay.file_pgmap(f)
            return first(
                (live(g), "the filesystem's device is not bound"),
                (not lay.is_ram(p) and lay.pgmap_of(p) == g, "the block is not on this filesystem's device"),
                (lambda: dax.dax_entry(self, f, i) is None, "the file offset already has a block"),
                (lambda: p % lay.dax_entry_nr(p) == 0, "the extent is not aligned to a PMD"),
                (
                    lambda: not any(s.ledger.pages[q].fs for q in range(p, p + lay.dax_entry_nr(p))),
                    "the block belongs to a file",
                ),
                (lambda: not dax.truncating(self, f), "the file is being truncated"),
            )
        if k == "dax_iomap_fault":
            proc, addr, f, i = a(0), a(1), a(2), a(3)
            if why := mm_ok(proc, addr):
                return why
            blk = dax.dax_entry(self, f, i)
            if blk is None:
                return "the file offset has no block"
            if lay.is_fsdax_pmd(blk):
                # dax_iomap_pmd_fault: the PMD-sized extent at the block of addr
                why = first(
                    (lay.in_block(addr), "the address is not in a PMD-sized block"),
                    (lambda: pagetable.block_empty(self, proc, addr), "the block is mapped"),
                )
            else:
                why = first((lambda: entry(proc, addr) == EMPTY, "the address is mapped"))
            return why or first(
                (lambda: live(lay.file_pgmap(f)), "the filesystem's device is not bound"),
                (lambda: not dax.truncating(self, f), "faults wait while the file is truncated"),
                (lambda: not dax.dax_entry_locked(self, f, i), "the fault waits for the locked DAX entry"),
            )
        if k == "dax_writeback":
            f, i = a(0), a(1)
            return first(
                (dax.dax_entry(self, f, i) is not None, "the file offset has no block"),
                (lambda: live(lay.file_pgmap(f)), "the filesystem's device is not bound"),
                (lambda: not dax.dax_entry_locked(self, f, i), "the DAX entry is locked"),
                (lambda: sched.free_task_slot(self), "no free task slot"),
            )
        if k == "truncate":
            return first(
                (dax.dax_entry(self, a(0), a(1)) is not None, "the file offset has no block"),
                (lambda: not dax.truncating(self, a(0)), "the file is already being truncated"),
                (lambda: sched.free_task_slot(self), "no free task slot"),
            )
        if k == "fork":
            return first(
                (s.alive[a(0)], "no such process"),
                (not s.alive[a(1)], "the child slot is taken"),
                (lambda: not fault.mm_busy(self, a(0)), "a fault or a migration holds the parent's mmap_lock"),
                (not any_ptl, "a task holds a page-table lock"),
                (
                    lambda: process.fork_copies_needed(self, a(0)) <= ram.ram_free_pages(self),
                    "no memory for the copies of pinned pages",
                ),
            )
        if k == "exit_mmap":
            return first(
                (s.alive[a(0)], "no such process"),
                (
                    lambda: not fault.mm_busy(self, a(0)),
                    "a thread of the process is in a fault or a migration holds its mmap_lock",
                ),
                (not any_ptl, "a task holds a page-table lock"),
            )
        if k == "munmap":
            return mm_ok(a(0), a(1)) or first((lambda: entry(a(0), a(1)) != EMPTY, "nothing is mapped there"))
        if k == "madvise_dontneed":
            proc, addr = a(0), a(1)
            if not s.alive[proc]:
                return "no such process"
            # the read side of the mmap_lock: only the page-table lock excludes it
            if pagetable.ptl_owner(self, proc, addr) is not None:
                return "a task holds the page-table lock"
            e = entry(proc, addr)
            if e == EMPTY:
                return "nothing is mapped there"
            anon = lay.is_cpu_anon(e.pfn) if e.kind == pagetable.PRESENT else True
            return None if anon else "not anonymous memory (MADV_DONTNEED is modelled on anonymous mappings)"
        if k in ("get_user_pages", "pin_user_pages"):
            why = mm_ok(a(0), a(1))
            if why:
                return why
            e = entry(a(0), a(1))
            faults = e.kind == pagetable.DEVICE_PRIVATE and self.rules.gup.refuses_device_private
            return first(
                (e != EMPTY, "nothing is mapped there"),
                (not e.is_migration(), "GUP waits for the migration to finish"),
                # GUP faults a device-private page back to system RAM: a task
                # of its own
                (lambda: not faults or sched.free_task_slot(self), "no free task slot for the fault"),
                (
                    not (faults and k == "pin_user_pages" and not e.writable()),
                    "a FOLL_WRITE pin of a read-only entry breaks COW after the fault (do_swap_page, then cpu_write)",
                ),
                (
                    not (k == "pin_user_pages" and e.has_pfn() and lay.is_cpu_anon(e.pfn) and not e.writable()),
                    "a FOLL_WRITE pin of a read-only anonymous page breaks COW first (use cpu_write)",
                ),
            )
        if k == "unpin_user_page":
            return first((s.ledger.pages[a(0)].gup_pins > 0, "no GUP pin on this page"))
        if k == "do_anonymous_page":
            return mm_ok(a(0), a(1)) or first(
                (lambda: entry(a(0), a(1)) == EMPTY, "the address is mapped"),
                (lambda: ram.ram_fit(self, 0) is not None, "no free system RAM"),
            )
        if k == "do_huge_pmd_anonymous_page":
            return mm_ok(a(0), a(1)) or first(
                (
                    lambda: lay.order > 0 and pagetable.block_empty(self, a(0), a(1)),
                    "the PMD block is not empty (or there is none)",
                ),
                (lambda: ram.ram_fit(self, lay.order) is not None, "no free aligned system RAM block"),
            )
        if k == "cpu_write":
            return mm_ok(a(0), a(1)) or first(
                (
                    lambda: entry(a(0), a(1)).kind == pagetable.PRESENT,
                    "no present mapping (a device-private entry faults: use do_swap_page)",
                ),
                (
                    lambda: not ram.write_needs_copy(self, a(0), a(1)) or ram.ram_fit(self, 0) is not None,
                    "no memory for the COW copy",
                ),
            )
        if k == "device_write":
            p = a(0)
            if not lay.is_private(p):
                return "not a device-private page"
            mapped_w = any(
                e.kind == pagetable.DEVICE_PRIVATE and e.write and e.pfn == p
                for proc in range(lay.procs)
                for e in (entry(proc, x) for x in range(lay.addrs))
            )
            return first(
                (
                    mapped_w or s.ledger.pages[page.head_of(self, p)].driver,
                    "the device reaches the page only through a writable device-private mapping or its own allocation",
                )
            )
        if k == "dma_write":
            return first((s.ledger.pages[a(0)].gup_pins > 0, "no GUP pin on this page"))
        if k == "migrate_vma_setup":
            proc, addr, g, sel = a(0), a(1), a(2), op.args[3]
            t = lay.pgmap_type[g]
            return first(
                (t in DRIVER_ALLOCATED, "not a device-private or coherent pgmap"),
                (
                    sel & SELECT_DEVICE_COHERENT == 0 or t == "coherent",
                    "MIGRATE_VMA_SELECT_DEVICE_COHERENT needs a coherent pgmap",
                ),
                (
                    sel & SELECT_DEVICE_PRIVATE == 0 or t == "private",
                    "MIGRATE_VMA_SELECT_DEVICE_PRIVATE needs a device-private pgmap",
                ),
                (
                    sel & SELECT_COMPOUND == 0 or t == "private",
                    "coherent folios are order-0 in the model (no COMPOUND)",
                ),
                (lambda: live(g), "the driver is not bound"),
                (lambda: s.alive[proc], "no such process"),
                (lambda: pagetable.ptl_owner(self, proc, addr) is None, "a task holds the page-table lock"),
                (lambda: sched.free_task_slot(self), "no free task slot"),
                (
                    lambda: sel & SELECT_COMPOUND == 0 or (self.rules.migrate.compound and lay.in_block(addr)),
                    "MIGRATE_VMA_SELECT_COMPOUND is not supported in this era (or no PMD block here)",
                ),
            )
        if k == "do_swap_page":
            return first(
                (s.alive[a(0)], "no such process"),
                (lambda: entry(a(0), a(1)).kind == pagetable.DEVICE_PRIVATE, "not a device-private entry"),
                (lambda: sched.free_task_slot(self), "no free task slot"),
            )
        if k == "migrate_device_range":
            g = a(0)
            return first(
                (lay.pgmap_type[g] in DRIVER_ALLOCATED, "not a device-private or coherent pgmap"),
                (self.rules.migrate.device_range, "no migrate_device_range in this era (v6.1+)"),
                (lambda: live(g), "the driver is not bound"),
                (
                    lambda: not any(s.ledger.pages[p].driver for p in lay.pfns_of(g)),
                    "the driver frees its own pages first",
                ),
                (lambda: sched.free_task_slot(self), "no free task slot"),
            )
        if k == "split_huge_pmd":
            return mm_ok(a(0), a(1)) or first(
                (lambda: pagetable.entry(self, a(0), a(1))[1] == PMD, "no PMD mapping here"),
                (
                    lambda: not pagetable.maps_dax_block(self, pagetable.entry(self, a(0), a(1))[0]),
                    "a DAX PMD is not split into PTEs (device-dax: dev_dax_may_split -EINVAL; FS-DAX: the split zaps "
                    "it, as munmap does)",
                ),
            )
        if k == "split_huge_page":
            hd = page.head_of(self, a(0))
            return first(
                (page.folio_nr(self, hd) > 1, "not part of a large folio"),
                (not lay.is_dax_pmd(hd), "a DAX folio is not split (only dax_folio_put undoes it)"),
                (s.rc[hd] > 0, "the folio is free"),
                (s.flags[hd] & PG_LOCKED == 0, "the folio is locked"),
                (not s.ledger.pages[hd].driver, "the driver holds the folio"),
                (not any_ptl, "a task holds a page-table lock"),
            )
        if k == "fail_next":
            return failure.fail_next_enabled(self, a(0))
        if k == "memory_failure":
            return memory_failure.memory_failure_enabled(self, a(0))
        if k == "hmm_range_fault":
            return hmm.hmm_range_fault_enabled(self, a(0), a(2))
        if k == "hmm_fault":
            return hmm.hmm_fault_enabled(self, a(0), a(1), a(2))
        if k == "mbind":
            return mm_ok(a(0), a(1)) or first(
                (lambda: pagetable.entry(self, a(0), a(1))[1] == PMD, "no PMD entry here"),
                (
                    lambda: not pagetable.maps_dax_block(self, pagetable.entry(self, a(0), a(1))[0]),
                    "the walkers skip a DAX VMA (vma_migratable is false for it)",
                ),
            )
        raise ValueError(f"unknown action kind {k!r}")

    def enabled_ops(self, kinds: Iterable[str] | None = None) -> list[Op]:
        """Every action enabled now, in canonical order (kind, then operands,
        first operand most significant); only ``kinds`` if given."""
        want = None if kinds is None else set(kinds)
        out = []
        for info in KINDS:
            if want is not None and info.name not in want:
                continue
            sizes = [dim_size(d, self.layout) for _, d in info.args]
            total = 1
            for n in sizes:
                total *= n
            for idx in range(total):
                args = [0] * len(sizes)
                for i in range(len(sizes) - 1, -1, -1):
                    args[i] = dim_value(info.args[i][1], idx % sizes[i])
                    idx //= sizes[i]
                op = Op.new(info.name, *args)
                if self.enabled(op) is None:
                    out.append(op)
        return out

    def enabled_actions(self) -> list[str]:
        """Every action the actors may take now, as text."""
        return [op_to_text(op) for op in self.enabled_ops()]

    def why_not(self, action: Any) -> str | None:
        op = _op(action)
        return op.in_domain(self.layout) or self.enabled(op)

    # -- applying actions -------------------------------------------------------------

    def step_op(self, op: Op) -> None:
        """Apply one action after checking its operands and its contract. A
        ``step`` of a blocked task, a ``step`` of a slot whose task already
        returned and an ``rcu_grace_period`` that cannot run are accepted and
        do nothing (so one program replays under eras where a task blocks and
        eras where it does not, or has fewer steps)."""
        if self.violation is not None:
            raise ProgramError(0, 0, "the machine stopped at a violation")
        bad = op.in_domain(self.layout)
        if bad is not None:
            raise ProgramError(0, 0, f"bad operand: {bad}")
        idle = None
        if op.kind == "step" and self.s.tasks[op.a(0)] is not None:
            idle = sched.task_blocked(self, op.a(0))
        elif op.kind == "step":
            idle = "no task in this slot: it already returned"
        elif op.kind == "rcu_grace_period":
            idle = self.enabled(op)
        if idle is not None:
            self.at_op = op
            if self.tracing:
                self._begin_trace()
                self.notes.append(f"still waiting: {idle}")
                self._end_trace(op_to_text(op), 0, False)
            self.at += 1
            return
        why = self.enabled(op)
        if why is not None:
            raise ProgramError(0, 0, f"not enabled: {why}")
        self.apply_traced(op)

    def apply_traced(self, op: Op) -> None:
        """Apply an action known to be enabled (the decoder's path)."""
        self.at_op = op
        if self.tracing:
            self._begin_trace()
        self._apply(op)
        self._after_action()
        if self.tracing:
            self._end_trace(op_to_text(op), op.cpu(), False)
        self.at += 1

    def drain_step(self, op: Op) -> None:
        """A drain action: applied without the contract check (the drain
        decides what is due)."""
        self.at_op = op
        self.in_drain_step = True
        if self.tracing:
            self._begin_trace()
        self._apply(op)
        self._after_action()
        if self.tracing:
            self._end_trace(op_to_text(op), op.cpu(), True)
        self.in_drain_step = False
        self.at += 1

    def _apply(self, op: Op) -> None:
        a = op.a
        cpu = op.cpu()
        k = op.kind
        s = self.s
        if k == "memremap_pages":
            pgmap.memremap_pages(self, a(0))
        elif k == "memunmap_pages":
            pgmap.spawn_memunmap(self, a(0), cpu)
        elif k == "step":
            sched.task_step(self, a(0))
        elif k == "rcu_grace_period":
            pgmap.rcu_grace_period(self)
        elif k == "get_dev_pagemap":
            if a(1) > 0:
                # the caller hands its cached reference to the call
                s.ledger.kernel_pgmap_refs[a(1) - 1] -= 1
                s.ledger.inflight_pgmap_refs[a(1) - 1] += 1
            sched.spawn(self, sched.GetDevPagemap(a(0), a(1)), cpu)
        elif k == "put_dev_pagemap":
            pgmap.put_dev_pagemap(self, a(0), cpu)
        elif k == "alloc_device_page":
            driver.alloc_device_page(self, a(0), cpu)
        elif k == "free_device_page":
            driver.free_device_page(self, a(0), cpu)
        elif k == "lock_page":
            s.flags[a(0)] |= PG_LOCKED
        elif k == "unlock_page":
            s.flags[a(0)] &= ~PG_LOCKED
        elif k == "migrate_vma_insert_page":
            driver.migrate_vma_insert_page(self, a(0), a(1), a(2), cpu)
        elif k == "pci_alloc_p2pmem":
            p2pdma.pci_alloc_p2pmem(self, a(0), a(1), cpu)
        elif k == "pci_free_p2pmem":
            p2pdma.pci_free_p2pmem(self, a(0), cpu)
        elif k == "get_page":
            p2pdma.kernel_get_page(self, a(0))
        elif k == "put_page":
            if op.args[1] == BY_GUP:
                gup.put_user_page(self, a(0), cpu)
            else:
                p2pdma.kernel_put_page(self, a(0), cpu)
        elif k == "p2pmem_alloc_mmap":
            p2pdma.p2pmem_alloc_mmap(self, a(0), a(1), a(2), a(3), cpu)
        elif k == "dev_dax_huge_fault":
            dax.dev_dax_huge_fault(self, a(0), a(1), a(2))
        elif k == "dax_associate_entry":
            dax.dax_associate_entry(self, a(0), a(1), a(2))
        elif k == "dax_iomap_fault":
            dax.dax_iomap_fault(self, a(0), a(1), a(2), a(3))
        elif k == "truncate":
            sched.spawn(self, sched.Truncate(a(0), a(1)), cpu)
        elif k == "fork":
            process.fork(self, a(0), a(1))
        elif k == "exit_mmap":
            process.exit_mmap(self, a(0), cpu)
        elif k == "munmap":
            process.munmap(self, a(0), a(1), cpu)
        elif k == "madvise_dontneed":
            process.madvise_dontneed(self, a(0), a(1), cpu)
        elif (
            k in ("get_user_pages", "pin_user_pages")
            and pagetable.entry(self, a(0), a(1))[0].kind == pagetable.DEVICE_PRIVATE
            and self.rules.gup.refuses_device_private
        ):
            fault.spawn_gup_fault(self, a(0), a(1), op.args[2], k == "pin_user_pages", cpu)
        elif k in ("get_user_pages", "pin_user_pages"):
            r = gup.gup(self, a(0), a(1), op.args[2], k == "pin_user_pages", cpu)
            self.trace_note(lambda: f"-> pfn {r}" if isinstance(r, int) else f"-> {r}")
        elif k == "unpin_user_page":
            gup.unpin_user_page(self, a(0), cpu)
        elif k == "alloc_device_folio":
            driver.alloc_device_folio(self, a(0), cpu)
        elif k == "do_anonymous_page":
            ram.do_anonymous_page(self, a(0), a(1))
        elif k == "do_huge_pmd_anonymous_page":
            ram.do_huge_pmd_anonymous_page(self, a(0), a(1))
        elif k == "cpu_write":
            data.cpu_write(self, a(0), a(1), cpu)
        elif k == "device_write":
            data.device_write(self, a(0))
        elif k == "dma_write":
            data.dma_write(self, a(0))
        elif k == "migrate_vma_setup":
            ctx = MigCtx(origin=migrate.VMA, proc=a(0), addr=a(1), pgmap=a(2), select=a(3))
            fault.spawn_migration(self, ctx, fault.M_COLLECT, cpu)
        elif k == "do_swap_page":
            fault.spawn_fault(self, a(0), a(1), cpu)
        elif k == "migrate_device_range":
            fault.spawn_migration(self, MigCtx(origin=migrate.DEVICE_RANGE, pgmap=a(0)), fault.M_COLLECT, cpu)
        elif k == "split_huge_pmd":
            pagetable.split_huge_pmd(self, a(0), a(1))
        elif k == "split_huge_page":
            h = page.head_of(self, a(0))
            # the caller's reference and lock around split_huge_page
            s.flags[h] |= PG_LOCKED
            folio.split_folio(self, h, 0, 0, cpu)
            s.flags[h] &= ~PG_LOCKED
        elif k == "mbind":
            folio.mbind(self, a(0), a(1))
        elif k == "fail_next":
            failure.fail_next(self, a(0), a(1))
        elif k == "memory_failure":
            sched.spawn(self, sched.MemoryFailure(a(0)), cpu)
        elif k == "hmm_range_fault":
            hmm.hmm_range_fault(self, a(0), a(1), a(2), cpu)
        elif k == "hmm_fault":
            hmm.hmm_fault(self, a(0), a(1), a(2), cpu)
        elif k == "dax_writeback":
            dax.dax_writeback(self, a(0), a(1), cpu)
        else:
            raise ValueError(f"unknown action kind {k!r}")

    # -- conformance on what the action touched -----------------------------------------

    def _after_action(self) -> None:
        if self.violation is None and self.conformance is None:
            pages = range(self.layout.npfns) if len(self.touched_pages) > TOUCH_CAP else self.touched_pages
            for p in pages:
                self._check_page_conformance(p)
            for g in sorted(self.touched_pgmaps):
                self._check_pgmap_conformance(g)
        self.touched_pages = []
        self.touched_pgmaps = set()

    def _check_page_conformance(self, p: int) -> None:
        lay = self.layout
        t = lay.type_of(p)
        if t is not None and self.s.ledger.life[lay.pgmap_of(p)] != REGISTERED:
            return
        h = page.head_of(self, p)
        if h != p:
            return  # a tail: its refcount lives on the head
        nr = page.folio_nr(self, h)
        rc = self.s.rc[h]
        in_use = folio.folio_in_use(self, h)
        free_rc = 0 if t is None else self.rules.of(t).free_rc
        if not in_use and rc != free_rc:
            what = "system RAM" if t is None else t
            self.violate(
                "I-F5",
                CONFORMANCE,
                [("pfn", p)],
                lambda: (
                    f"pfn {p} ({what}) is free but its refcount is {rc}; the preset says free pages of this type have "
                    f"{free_rc}",
                    f"{free_rc}",
                    f"{rc}",
                ),
            )
        pins = sum(x.gup_pins for x in self.s.ledger.pages[h : h + nr])
        if nr > 1:
            pc = self.s.pincount[h]
            if pc != pins:
                self.violate(
                    "I-G1",
                    CONFORMANCE,
                    [("pfn", p)],
                    lambda: (f"the large folio at pfn {p} has {pins} pin(s) but _pincount {pc}", f"{pins}", f"{pc}"),
                )
        elif pins > 0 and rc < GUP_PIN_COUNTING_BIAS * pins:
            self.violate(
                "I-G1",
                CONFORMANCE,
                [("pfn", p)],
                lambda: (
                    f"pfn {p} has {pins} pin(s) but refcount {rc} < {pins} x GUP_PIN_COUNTING_BIAS",
                    f">= {GUP_PIN_COUNTING_BIAS * pins}",
                    f"{rc}",
                ),
            )
        if in_use and (t is None or t in DRIVER_ALLOCATED):
            expected = self.expected_folio_refs(h)
            if rc != expected:
                self.violate(
                    "I-M1",
                    CONFORMANCE,
                    [("pfn", p)],
                    lambda: (
                        f"pfn {p}'s refcount is {rc} but its holders account for {expected} (mappings, collect, fault, "
                        "GUP and driver references)",
                        f"{expected}",
                        f"{rc}",
                    ),
                )

    def expected_folio_refs(self, h: int) -> int:
        """I-M1: the references the holders of an anonymous, device-private or
        coherent folio account for (+1 for an E1 1-based device page)."""
        nr = page.folio_nr(self, h)
        bias = 1 if nr > 1 else self.rules.gup.pin_bias
        r = folio.folio_mapcount(self, h)
        for x in self.s.ledger.pages[h : h + nr]:
            r += x.collect + x.fault + x.gup_gets + x.kernel_gets + bias * x.gup_pins
            r += 1 if (x.driver or x.mig_dst) else 0
        if self.layout.is_private(h) and self.rules.types["private"].free_on_2to1:
            r += 1  # E1: an allocated 1-based page keeps its idle reference
        return r

    def expected_pgmap_refs(self, g: int) -> int:
        """I-P1: what pgmap->ref should be by the preset's own accounting."""
        lay = self.layout
        t = lay.pgmap_type[g]
        tr = self.rules.of(t)
        pg = self.s.pgmaps[g]
        pfns = lay.pfns_of(g)
        r = 0 if pg.pref.is_dying() else 1
        if tr.init_pgmap_refs:
            if tr.memunmap_put == "every_page" and tr.put_pgmap_on_zero:
                r += sum(1 for p in pfns if self.s.flags[p] & PG_INIT_REF)
            elif not pg.init_dropped:
                r += pgmap.init_pgmap_refs(self, g)
        if t in DRIVER_ALLOCATED and self.rules.private.alloc_pgmap_ref != "none":
            r += sum(1 for p in pfns if self.s.flags[p] & PG_FREE_LIST == 0)
        r += self.s.split_pgmap_refs[g] + self.s.lost_pgmap_refs[g] + self.s.page_pgmap_refs[g]
        if t == "p2pdma":
            if self.rules.p2p.alloc_pgmap_ref:
                r += self.s.ledger.p2p_allocs[g]
            r += sum(1 for p in pfns if self.s.flags[p] & PG_POOL and not self.s.ledger.pages[p].p2p_kernel)
        return r + self.s.ledger.kernel_pgmap_refs[g] + self.s.ledger.inflight_pgmap_refs[g]

    def _check_pgmap_conformance(self, g: int) -> None:
        if self.s.ledger.life[g] != REGISTERED:
            return
        actual = self.s.pgmaps[g].pref.count()
        expected = self.expected_pgmap_refs(g)
        if actual != expected:
            self.violate(
                "I-P1",
                CONFORMANCE,
                [("pgmap", g)],
                lambda: (
                    f"pgmap {g}'s ref is {actual} but the references the preset accounts for add up to {expected}",
                    f"{expected}",
                    f"{actual}",
                ),
            )

    # -- traces ---------------------------------------------------------------------------

    def _begin_trace(self) -> None:
        self._before = (list(self.s.rc), list(self.s.mc), list(self.s.emc), [p.pref.count() for p in self.s.pgmaps])
        self.notes = []

    def _end_trace(self, action: str, cpu: int, drain: bool) -> None:
        rc, mc, emc, refs = self._before
        changes = []
        for p in range(self.layout.npfns):
            if rc[p] != self.s.rc[p]:
                changes.append(f"pfn {p} refcount {rc[p]} -> {self.s.rc[p]}")
            if mc[p] != self.s.mc[p]:
                changes.append(f"pfn {p} mapcount {mc[p]} -> {self.s.mc[p]}")
            if emc[p] != self.s.emc[p]:
                changes.append(f"pfn {p} entire mapcount {emc[p]} -> {self.s.emc[p]}")
        for g, pg in enumerate(self.s.pgmaps):
            now = pg.pref.count()
            if refs[g] != now:
                changes.append(f"pgmap {g} ref {refs[g]} -> {now}")
        self.trace.append(
            {"step": self.at, "action": action, "cpu": cpu, "drain": drain, "changes": changes, "notes": self.notes}
        )
        self.notes = []

    # -- the public API ---------------------------------------------------------------------

    def step(self, action: Any) -> None:
        """Apply one action (an Op, a ``zdfuzz.Action`` or a line of text).
        Raises ProgramError if its actor may not take it now,
        ``InvariantViolation`` if it breaks an invariant."""
        self.step_op(_op(action))
        if self.violation is not None:
            err = InvariantViolation(str(self.violation))
            err.violation = self.violation
            raise err

    def finish(self) -> Verdict:
        """The drain (once), then the verdict."""
        if not self.in_drain:
            self.in_drain = True
            sched.drain(self)
        trace, self.trace = self.trace, []
        return Verdict(_with_trace(self.violation, trace), _with_trace(self.conformance, trace), self.at, trace)

    def run(self, program: Any, trace: bool = True) -> Verdict:
        """Reset, apply every action (stopping at the first violation), drain.
        ``program``: ``.zdf`` text, a reference Program or a ``zdfuzz.Program``
        whose shape is this machine's."""
        p = _program(program)
        if p.shape != self.shape:
            raise ProgramError(
                0,
                0,
                "the program was written for another machine shape (see its `config` line); use Machine.for_program",
            )
        self.tracing = trace
        try:
            self.reset()
            for i, op in enumerate(p.ops):
                try:
                    self.step_op(op)
                except ProgramError as e:
                    line = p.lines[i] if i < len(p.lines) else 0
                    raise ProgramError(
                        line, 1 if line > 0 else 0, f"action {i} `{op_to_text(op)}`: {e.message}"
                    ) from None
                if self.violation is not None:
                    break
            return self.finish()
        finally:
            self.tracing = False

    def run_bytes(self, data: bytes, trace: bool = False, kinds: Iterable[str] | None = None) -> Verdict:
        """Decode and run a byte program (the total decoder); ``kinds``
        restricts the decoder to a subset of action kinds."""
        self.tracing = trace
        try:
            self.reset()
            mask = decode.kind_mask(kinds)
            pos = 0
            while self.violation is None:
                op, pos = decode.decode_op(self, data, pos, mask)
                if op is None:
                    break
                self.apply_traced(op)
            return self.finish()
        finally:
            self.tracing = False

    def decode_program(self, data: bytes, kinds: Iterable[str] | None = None) -> list[Op]:
        """The actions a byte program decodes to (run to follow the state)."""
        self.reset()
        mask = decode.kind_mask(kinds)
        ops: list[Op] = []
        pos = 0
        while self.violation is None:
            op, pos = decode.decode_op(self, data, pos, mask)
            if op is None:
                break
            self.apply_traced(op)
            ops.append(op)
        return ops


def _op(action: Any) -> Op:
    if isinstance(action, Op):
        return action
    return parse_action(str(action))


def _program(program: Any) -> Any:
    """A reference Program from text, a reference Program or a zdfuzz.Program."""
    from zdfuzz_reference.text import Program

    if isinstance(program, Program):
        return program
    if hasattr(program, "to_text"):  # a zdfuzz.Program (duck-typed: no import of zdfuzz)
        return parse_program(program.to_text())
    return parse_program(str(program))
