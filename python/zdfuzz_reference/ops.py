"""Actions: one action of one actor, with explicit operands.

Mirrors ``rust/core/src/program/op.rs``. Each kind is named after the kernel
function or event it models; :data:`KINDS` lists them in the byte encoding's
order with their operands and each operand's domain. An :class:`Op` is a kind
plus operand values (unused slots 0), exactly like the Rust ``Op``.
"""

from __future__ import annotations

from typing import NamedTuple

from zdfuzz_reference.config import MAX_ALLOC_PAGES, Layout

# GUP flag bits as operands
FOLL_LONGTERM = 1
FOLL_PCI_P2PDMA = 2
#: the ``_fast`` GUP API (lockless walk, then the slow walk); an operand only
#: in shapes with failure injection
GUP_FAST = 4

# MIGRATE_VMA_SELECT_* as operands
SELECT_SYSTEM = 1
SELECT_DEVICE_PRIVATE = 2
SELECT_COMPOUND = 4
#: ``MIGRATE_VMA_SELECT_DEVICE_COHERENT`` (v6.0): collect the driver's
#: coherent pages, to move them back to system RAM
SELECT_DEVICE_COHERENT = 8
#: the select values an operand can take, in domain order; the last is in the
#: domain only of layouts with a MEMORY_DEVICE_COHERENT pgmap, so the byte
#: encoding of every other layout is what it was before the type
SELECT_VALUES = (
    SELECT_SYSTEM,
    SELECT_DEVICE_PRIVATE,
    SELECT_SYSTEM | SELECT_COMPOUND,
    SELECT_DEVICE_PRIVATE | SELECT_COMPOUND,
    SELECT_DEVICE_COHERENT,
)

# failure sites ``fail_next`` can arm (SITE_NAMES in op.rs)
SITE_VM_INSERT = 0
SITE_TRY_GRAB = 1
SITE_ALLOC = 2
SITE_GEN_POOL = 3
SITE_NAMES = ("vm_insert", "try_grab", "alloc", "gen_pool")

# who drops a put_page
BY_GUP = 0
BY_KERNEL = 1

MAX_ARGS = 5

# Operand domains (Dim in Rust).
PGMAP, CPU, TASK, PFN, PROC, ADDR, FILE, INDEX, PAGES, FLAGS, CACHED, BY, SELECT, SITE = (
    "pgmap",
    "cpu",
    "task",
    "pfn",
    "proc",
    "addr",
    "file",
    "index",
    "pages",
    "flags",
    "cached",
    "by",
    "select",
    "site",
)


def dim_size(dim: str, lay: Layout) -> int:
    """How many values an operand of domain ``dim`` can take."""
    return {
        PGMAP: lay.npgmaps,
        CPU: lay.cpus,
        TASK: lay.tasks,
        PFN: lay.npfns,
        PROC: lay.procs,
        ADDR: lay.addrs,
        FILE: lay.nfiles,
        INDEX: lay.file_pages,
        PAGES: MAX_ALLOC_PAGES,
        FLAGS: 8 if lay.faults else 4,
        CACHED: lay.npgmaps + 1,
        BY: 2,
        SELECT: len(SELECT_VALUES) - (not lay.has_coherent()),
        SITE: len(SITE_NAMES),
    }[dim]


def dim_value(dim: str, i: int) -> int:
    """The i-th value of a domain (dense from 0, except pages and select)."""
    if dim == PAGES:
        return i + 1
    if dim == SELECT:
        return SELECT_VALUES[i] if i < len(SELECT_VALUES) else SELECT_SYSTEM
    return i


def dim_index(dim: str, v: int, lay: Layout) -> int | None:
    """Inverse of :func:`dim_value`; None outside the domain."""
    if dim == PAGES:
        i = v - 1
    elif dim == SELECT:
        if v not in SELECT_VALUES:
            return None
        i = SELECT_VALUES.index(v)
    else:
        i = v
    return i if 0 <= i < dim_size(dim, lay) else None


class KindInfo(NamedTuple):
    name: str
    args: tuple[tuple[str, str], ...]  # (operand name, domain)


def _k(name: str, *args: str) -> KindInfo:
    """A kind whose operands are given as "name:domain" (domain defaults to name)."""
    parsed = []
    for a in args:
        n, _, d = a.partition(":")
        parsed.append((n, d or n))
    return KindInfo(name, tuple(parsed))


#: Every action, in the byte encoding's order (append only, never reorder).
KINDS: tuple[KindInfo, ...] = (
    _k("memremap_pages", "pgmap"),
    _k("memunmap_pages", "pgmap", "cpu"),
    _k("step", "task"),
    _k("rcu_grace_period"),
    _k("get_dev_pagemap", "pfn", "cached", "cpu"),
    _k("put_dev_pagemap", "pgmap", "cpu"),
    _k("alloc_device_page", "pgmap", "cpu"),
    _k("free_device_page", "pfn", "cpu"),
    _k("lock_page", "pfn"),
    _k("unlock_page", "pfn"),
    _k("migrate_vma_insert_page", "proc", "addr", "pfn", "cpu"),
    _k("pci_alloc_p2pmem", "pgmap", "pages", "cpu"),
    _k("pci_free_p2pmem", "pfn", "cpu"),
    _k("get_page", "pfn"),
    _k("put_page", "pfn", "by", "cpu"),
    _k("p2pmem_alloc_mmap", "pgmap", "proc", "addr", "pages", "cpu"),
    _k("dev_dax_huge_fault", "proc", "addr", "pfn", "cpu"),
    _k("dax_associate_entry", "file", "index", "pfn"),
    _k("dax_iomap_fault", "proc", "addr", "file", "index", "cpu"),
    _k("truncate", "file", "index", "cpu"),
    _k("fork", "proc", "child:proc"),
    _k("exit_mmap", "proc", "cpu"),
    _k("munmap", "proc", "addr", "cpu"),
    _k("get_user_pages", "proc", "addr", "flags", "cpu"),
    _k("pin_user_pages", "proc", "addr", "flags", "cpu"),
    _k("unpin_user_page", "pfn", "cpu"),
    _k("do_anonymous_page", "proc", "addr", "cpu"),
    _k("do_huge_pmd_anonymous_page", "proc", "addr", "cpu"),
    _k("cpu_write", "proc", "addr", "cpu"),
    _k("device_write", "pfn"),
    _k("dma_write", "pfn"),
    _k("migrate_vma_setup", "proc", "addr", "pgmap", "select", "cpu"),
    _k("do_swap_page", "proc", "addr", "cpu"),
    _k("migrate_device_range", "pgmap", "cpu"),
    _k("alloc_device_folio", "pgmap", "cpu"),
    _k("split_huge_pmd", "proc", "addr", "cpu"),
    _k("split_huge_page", "pfn", "cpu"),
    _k("mbind", "proc", "addr", "cpu"),
    _k("fail_next", "site", "nth:pages"),
    _k("hmm_range_fault", "proc", "addr", "pgmap", "cpu"),
    _k("memory_failure", "pfn", "cpu"),
    _k("dax_writeback", "file", "index", "cpu"),
    _k("madvise_dontneed", "proc", "addr", "cpu"),
    _k("hmm_fault", "proc", "addr", "pgmap", "cpu"),
)

KIND_INDEX = {k.name: i for i, k in enumerate(KINDS)}


class Op(NamedTuple):
    """One action: a kind and its operand values (unused slots are 0)."""

    kind: str
    args: tuple[int, int, int, int, int]

    @staticmethod
    def new(kind: str, *args: int) -> Op:
        a = list(args) + [0] * (MAX_ARGS - len(args))
        return Op(kind, (a[0], a[1], a[2], a[3], a[4]))

    def info(self) -> KindInfo:
        return KINDS[KIND_INDEX[self.kind]]

    def a(self, i: int) -> int:
        return self.args[i]

    def arg(self, name: str) -> int | None:
        for i, (n, _) in enumerate(self.info().args):
            if n == name:
                return self.args[i]
        return None

    def cpu(self) -> int:
        """The CPU the action runs on (0 for actions without one)."""
        c = self.arg("cpu")
        return 0 if c is None else c

    def in_domain(self, lay: Layout) -> str | None:
        """None if every operand is inside its domain, else why not."""
        info = self.info()
        for i, (name, dim) in enumerate(info.args):
            v = self.args[i]
            if dim_index(dim, v, lay) is None:
                size = dim_size(dim, lay)
                if dim == PAGES:
                    return f"{name}={v} out of range (1..={size})"
                if dim == CACHED:
                    return f"{name}={(v - 1) & 0xFFFF} names no pgmap (there are {size - 1})"
                if size == 0:
                    return f"{name}: this configuration has none"
                return f"{name}={v} out of range (0..{size})"
        for i in range(len(info.args), MAX_ARGS):
            if self.args[i] != 0:
                return f"operand slot {i} set on {info.name} which takes {len(info.args)} operands"
        return None
