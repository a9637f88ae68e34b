"""The shape of a machine and the layout derived from it.

Mirrors ``rust/core/src/config.rs``: which device types, how many pgmaps,
pages, CPUs, processes, address slots, DAX files, task slots, RAM pages and
the huge-page order. pfns are global: pgmap ``g`` covers
``g*pages .. (g+1)*pages`` (pgmaps numbered type by type, in the order the
types were given), system RAM follows every device pfn. Each FS-DAX pgmap
carries one filesystem of ``files`` files of ``file_pages`` entries; file ids
count across filesystems. A process is ``addrs`` page slots; every
``1 << order`` aligned slots form a PMD block.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from zdfuzz_reference.errors import ConfigError
from zdfuzz_reference.rules import DEFAULT_TYPES, DEVICE_TYPES, DRIVER_ALLOCATED, device_type

MAX_CPUS = 8
MAX_PGMAPS = 16
MAX_PAGES = 1024
MAX_PROCS = 4
MAX_ADDRS = 1024
MAX_RAM = 1024
MAX_ORDER = 9
MAX_FILES = 4
MAX_FILE_PAGES = 8
MAX_TASKS = 8
#: the largest multi-page P2P allocation / mmap an action asks for
MAX_ALLOC_PAGES = 4

#: numeric shape fields, in the text header's order
FIELDS = ("pgmaps", "pages", "cpus", "procs", "addrs", "files", "file_pages", "tasks", "ram", "order")


@dataclass
class Shape:
    """How many of everything (the program's ``config`` line)."""

    types: list[str] = field(default_factory=lambda: list(DEFAULT_TYPES))
    pgmaps: int = 1
    pages: int = 4
    cpus: int = 2
    procs: int = 2
    addrs: int = 4
    files: int = 2
    file_pages: int = 2
    tasks: int = 4
    ram: int = 4
    order: int = 1
    #: 1: ``fail_next`` may make kernel calls fail (the error paths run)
    faults: int = 0
    #: 1: device-dax devices are PMD-aligned (faults map PMDs; compound
    #: folios from v5.17's ``vmemmap_shift``)
    devdax_pmd: int = 0
    #: 1: FS-DAX entries are PMD-sized (faults map PMDs; compound folios
    #: from v6.15's ``dax_folio_init``)
    fsdax_pmd: int = 0

    def fields(self) -> list[tuple[str, int]]:
        return [(k, int(getattr(self, k))) for k in FIELDS]

    def header_fields(self) -> list[tuple[str, int]]:
        """What a program header writes: ``faults``, ``devdax_pmd`` and
        ``fsdax_pmd`` only when on."""
        extra = [("faults", self.faults)] if self.faults else []
        if self.devdax_pmd:
            extra.append(("devdax_pmd", self.devdax_pmd))
        if self.fsdax_pmd:
            extra.append(("fsdax_pmd", self.fsdax_pmd))
        return self.fields() + extra

    def apply_memory_defaults(self, ram_set: bool, order_set: bool) -> None:
        """System RAM exists for the migrations of the driver-allocated types
        (device-private and coherent), huge pages for device-private ones: a
        shape without them has none unless they were set."""
        if not ram_set:
            self.ram = 4 if any(t in DRIVER_ALLOCATED for t in self.types) else 0
        if not order_set:
            self.order = 1 if "private" in self.types else 0
            if (self.devdax_pmd or self.fsdax_pmd) and self.order == 0:
                # a PMD-aligned device-dax device or FS-DAX extent needs huge pages
                self.order = 1

    def validate(self) -> None:
        """Raise ConfigError with the Rust side's message if out of range."""

        def rng(name: str, v: int, lo: int, hi: int) -> None:
            if v < lo or v > hi:
                raise ConfigError(f"{name} must be between {lo} and {hi}, got {v}")

        if not self.types:
            raise ConfigError("at least one device type is needed")
        for i, t in enumerate(self.types):
            if t in self.types[:i]:
                raise ConfigError(f'device type "{t}" given twice')
        rng("pgmaps (per type)", self.pgmaps, 1, MAX_PGMAPS // len(self.types))
        rng("pages (per pgmap)", self.pages, 1, MAX_PAGES)
        rng("cpus", self.cpus, 1, MAX_CPUS)
        rng("procs", self.procs, 1, MAX_PROCS)
        rng("addrs", self.addrs, 1, MAX_ADDRS)
        rng("files", self.files, 1, MAX_FILES)
        rng("file_pages", self.file_pages, 1, MAX_FILE_PAGES)
        rng("tasks", self.tasks, 1, MAX_TASKS)
        rng("ram", self.ram, 0, MAX_RAM)
        rng("order", self.order, 0, MAX_ORDER)
        rng("faults", self.faults, 0, 1)
        rng("devdax_pmd", self.devdax_pmd, 0, 1)
        rng("fsdax_pmd", self.fsdax_pmd, 0, 1)
        for name, on, ty, what in (
            ("devdax_pmd", self.devdax_pmd, "generic", "the generic (device-dax) type"),
            ("fsdax_pmd", self.fsdax_pmd, "fsdax", "the fsdax type"),
        ):
            if not on:
                continue
            nr = 1 << self.order
            if ty not in self.types:
                raise ConfigError(f"{name}=1 needs {what}")
            if self.order == 0 or self.addrs < nr:
                raise ConfigError(
                    f"{name}=1 needs huge pages that fit a process: order >= 1 and addrs >= 1 << order "
                    f"(order={self.order}, addrs={self.addrs})"
                )
            if self.pages % nr:
                raise ConfigError(
                    f"{name}=1 needs whole folios: pages per pgmap ({self.pages}) must be a multiple of "
                    f"1 << order ({nr})"
                )


def make_shape(types: Any = None, ram: int | None = None, order: int | None = None, **fields: int) -> Shape:
    """``Shape::build``: type names (None: the four of every era), numeric
    fields, and ``ram``/``order`` when given (else the defaults for these
    types)."""
    shape = Shape()
    if types is not None:
        shape.types = []
        for t in types:
            dt = device_type(t)
            if dt is None:
                raise ConfigError(f"unknown device type {t!r}; types: {', '.join(DEVICE_TYPES)}")
            shape.types.append(dt)
    for k, v in fields.items():
        if k not in FIELDS and k not in ("faults", "devdax_pmd", "fsdax_pmd"):
            raise ConfigError(f"unknown shape field `{k}`")
        setattr(shape, k, v)
    shape.apply_memory_defaults(ram is not None, order is not None)
    if ram is not None:
        shape.ram = ram
    if order is not None:
        shape.order = order
    shape.validate()
    return shape


def shape_of(shape: Any) -> Shape:
    """``shape=`` as ``zdfuzz.Machine`` takes it: a reference Shape, a
    mapping of its fields, anything with ``to_dict()`` (a ``zdfuzz.Shape``),
    or None (the default shape)."""
    if shape is None:
        return make_shape()
    if isinstance(shape, Shape):
        return shape
    if hasattr(shape, "to_dict"):
        shape = shape.to_dict()
    return make_shape(**dict(shape))


class Layout:
    """Derived layout: cheap lookups of what a pfn, file or slot is."""

    def __init__(self, shape: Shape) -> None:
        self.pgmap_type: list[str] = [t for t in shape.types for _ in range(shape.pgmaps)]
        self.npgmaps = len(self.pgmap_type)
        self._coherent = "coherent" in self.pgmap_type
        self.pages = shape.pages
        #: device pfns are 0 .. ndev; system RAM is ndev .. npfns
        self.ndev = self.npgmaps * shape.pages
        self.npfns = self.ndev + shape.ram
        self.order = shape.order
        #: PMD blocks per process (0 when order is 0)
        self.blocks = 0 if shape.order == 0 else shape.addrs >> shape.order
        self.cpus = shape.cpus
        self.procs = shape.procs
        self.addrs = shape.addrs
        self.tasks = shape.tasks
        self.files_per_fs = shape.files
        self.file_pages = shape.file_pages
        #: filesystem k lives on pgmap fs_pgmap[k]
        self.fs_pgmap = [g for g, t in enumerate(self.pgmap_type) if t == "fsdax"]
        self.nfiles = len(self.fs_pgmap) * shape.files
        #: failure injection is on (``fail_next`` can be enabled)
        self.faults = shape.faults != 0
        #: device-dax devices are PMD-aligned
        self.devdax_pmd = shape.devdax_pmd != 0
        #: FS-DAX entries are PMD entries
        self.fsdax_pmd = shape.fsdax_pmd != 0

    def pgmap_of(self, pfn: int) -> int:
        return pfn // self.pages

    def type_of(self, pfn: int) -> str | None:
        """The device type of a pfn; None for system RAM."""
        return self.pgmap_type[pfn // self.pages] if pfn < self.ndev else None

    def is_ram(self, pfn: int) -> bool:
        return pfn >= self.ndev

    def is_devdax_pmd(self, pfn: int) -> bool:
        """A page of a PMD-aligned device-dax device (mapped by PMDs)?"""
        return self.devdax_pmd and self.type_of(pfn) == "generic"

    def is_fsdax_pmd(self, pfn: int) -> bool:
        """A page of an FS-DAX filesystem whose entries are PMD-sized?"""
        return self.fsdax_pmd and self.type_of(pfn) == "fsdax"

    def is_dax_pmd(self, pfn: int) -> bool:
        """A DAX page mapped by PMDs (device-dax or FS-DAX)?"""
        return self.is_devdax_pmd(pfn) or self.is_fsdax_pmd(pfn)

    def dax_entry_nr(self, pfn: int) -> int:
        """Pages of one DAX entry of ``pfn``'s type."""
        return self.nr_huge() if self.is_fsdax_pmd(pfn) else 1

    def is_private(self, pfn: int) -> bool:
        return self.type_of(pfn) == "private"

    def is_coherent(self, pfn: int) -> bool:
        return self.type_of(pfn) == "coherent"

    def is_driver_allocated(self, pfn: int) -> bool:
        """A page its driver allocates and frees (device-private or
        coherent): anonymous memory migrates into it and out of it."""
        return self.type_of(pfn) in DRIVER_ALLOCATED

    def is_cpu_anon(self, pfn: int) -> bool:
        """Anonymous memory the CPU maps with present PTEs (system RAM and
        MEMORY_DEVICE_COHERENT): fork shares it copy-on-write and a write to
        a shared page copies it (``vm_normal_page`` returns coherent pages
        like any other)."""
        return self.is_ram(pfn) or self.is_coherent(pfn)

    def has_coherent(self) -> bool:
        """Does the layout have a MEMORY_DEVICE_COHERENT pgmap?"""
        return self._coherent

    def ram_pfns(self) -> range:
        return range(self.ndev, self.npfns)

    def nr_huge(self) -> int:
        """Pages per huge folio."""
        return 1 << self.order

    def mig_cap(self) -> int:
        """Entries of one migration's src/dst arrays."""
        return max(self.nr_huge(), self.pages, 1)

    def pmd_slot(self, proc: int, addr: int) -> int:
        return proc * self.blocks + (addr >> self.order)

    def in_block(self, addr: int) -> bool:
        """Is the slot covered by a PMD block (not a PTE-only tail slot)?"""
        return self.blocks > 0 and (addr >> self.order) < self.blocks

    def pfns_of(self, g: int) -> range:
        return range(g * self.pages, (g + 1) * self.pages)

    def file_pgmap(self, file: int) -> int:
        return self.fs_pgmap[file // self.files_per_fs]

    def entry_slot(self, file: int, index: int) -> int:
        return file * self.file_pages + index

    def pte_slot(self, proc: int, addr: int) -> int:
        return proc * self.addrs + addr
