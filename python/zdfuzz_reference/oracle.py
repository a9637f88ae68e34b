"""The oracle: ground truth that never reads the rules.

Mirrors ``rust/core/src/oracle.rs``. The ledger records *who holds what* as
the actors see it (a mapping, a GUP reference or pin, a kernel user's
``get_page``, a driver allocation, a P2P allocation, a migration's collect
reference, a fault-path reference ...) and the physical events (a pgmap's
percpu_ref released, struct pages torn down). Safety and liveness properties
are judged from the ledger alone, the same for every era. Conformance checks
(I-F5, I-P1, I-G1, I-M1) compare the counters with what the preset says; a
conformance failure means the model or a preset is inconsistent, never that
the kernel design is unsafe.

The ids, classes and plain-words documentation are those of the Rust side;
``tests/test_reference.py`` checks they are identical.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

SAFETY = "safety"
LIVENESS = "liveness"
CONFORMANCE = "conformance"

# pgmap life as the oracle observes it
UNREGISTERED = "unregistered"
REGISTERED = "registered"
KILLED = "killed"
TORN_DOWN = "torn_down"

# ledger.locker values: nobody, the page's driver, or task slot t (2 + t)
LOCK_NONE = 0
LOCK_DRIVER = 1


def lock_task(slot: int) -> int:
    return 2 + slot


@dataclass
class Holders:
    """Holders of one struct page, as the actors know them."""

    maps: int = 0  # page-table entries pointing at the page
    gup_gets: int = 0  # GUP FOLL_GET references
    gup_pins: int = 0  # GUP FOLL_PIN pins
    longterm_pins: int = 0  # of which FOLL_LONGTERM
    kernel_gets: int = 0  # kernel users' get_page references
    driver: bool = False  # allocated by its driver (device-private or coherent)
    p2p_kernel: bool = False  # part of a live pci_alloc_p2pmem allocation
    fs: bool = False  # associated with a file (a DAX entry)
    collect: int = 0  # migration collect / LRU-isolation references
    fault: int = 0  # references the device-private fault path holds
    mig_dst: bool = False  # the destination of a migration in flight
    mig_entries: int = 0  # migration entries pointing at the page
    #: a dirty PTE was replaced by a migration entry (I-M5)
    dirty_pte: bool = False

    def in_use(self) -> bool:
        """Somebody uses the page: it must not be freed or torn down.
        (A file association alone does not count: the filesystem owns the
        block, not a struct page reference.)"""
        return (
            self.maps + self.gup_gets + self.gup_pins + self.kernel_gets + self.mig_entries > 0
            or self.collect + self.fault > 0
            or self.mig_dst
            or self.driver
            or self.p2p_kernel
        )

    def unexplained_for_migration(self) -> int:
        """References a migration cannot account for (I-M2)."""
        return self.gup_gets + self.gup_pins + self.kernel_gets + self.fault

    def extra_refs(self) -> int:
        """References that are not mappings: "busy" for DAX."""
        return self.gup_gets + self.gup_pins + self.kernel_gets

    def copy(self) -> Holders:
        return dataclasses.replace(self)

    def key(self) -> tuple[int | bool, ...]:
        return dataclasses.astuple(self)

    def describe(self) -> str:
        """Human-readable list of the holders, for violation messages."""
        v = []
        for c, what in (
            (self.maps, "mapping(s)"),
            (self.gup_gets, "GUP reference(s)"),
            (self.gup_pins, "GUP pin(s)"),
            (self.kernel_gets, "kernel reference(s)"),
            (self.collect, "migration collect reference(s)"),
            (self.fault, "fault-path reference(s)"),
            (self.mig_entries, "migration entr(ies)"),
        ):
            if c > 0:
                v.append(f"{c} {what}")
        if self.mig_dst:
            v.append("a migration in flight (destination)")
        if self.driver:
            v.append("its driver's allocation")
        if self.p2p_kernel:
            v.append("a live pci_alloc_p2pmem allocation")
        if self.fs:
            v.append("a filesystem block association")
        return ", ".join(v) if v else "nobody"


@dataclass
class Ledger:
    """Who holds what; what happened to each pgmap."""

    npfns: int
    npgmaps: int
    nvpages: int
    pages: list[Holders] = field(default_factory=list)
    #: the refcount each page had when memremap_pages initialised it
    init_rc: list[int] = field(default_factory=list)
    #: per pgmap: references kernel users got from get_dev_pagemap
    kernel_pgmap_refs: list[int] = field(default_factory=list)
    #: per pgmap: references passed as `cached` to a call still in flight
    inflight_pgmap_refs: list[int] = field(default_factory=list)
    #: per pgmap: live pci_alloc_p2pmem allocations
    p2p_allocs: list[int] = field(default_factory=list)
    life: list[str] = field(default_factory=list)
    released: list[bool] = field(default_factory=list)
    #: per pfn: who holds the page lock
    locker: list[int] = field(default_factory=list)
    #: per virtual page (proc x addr): the last value written to it (I-W1)
    vcontent: list[int] = field(default_factory=list)
    #: per pfn: its data was migrated away (I-M6)
    migrated_away: list[bool] = field(default_factory=list)
    #: per pfn: the virtual page + 1 the oldest live pin was taken through
    pin_vpage: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.pages = [Holders() for _ in range(self.npfns)]
        self.init_rc = [0] * self.npfns
        self.kernel_pgmap_refs = [0] * self.npgmaps
        self.inflight_pgmap_refs = [0] * self.npgmaps
        self.p2p_allocs = [0] * self.npgmaps
        self.life = [UNREGISTERED] * self.npgmaps
        self.released = [False] * self.npgmaps
        self.locker = [LOCK_NONE] * self.npfns
        self.vcontent = [0] * self.nvpages
        self.migrated_away = [False] * self.npfns
        self.pin_vpage = [0] * self.npfns

    def pgmap_users(self, g: int) -> int:
        """Users of the pgmap itself: kernel pgmap references, P2P allocations."""
        return self.kernel_pgmap_refs[g] + self.inflight_pgmap_refs[g] + self.p2p_allocs[g]

    def key(self) -> tuple[object, ...]:
        """Everything, for the livelock detector's state comparison."""
        return (
            tuple(h.key() for h in self.pages),
            tuple(self.init_rc),
            tuple(self.kernel_pgmap_refs),
            tuple(self.inflight_pgmap_refs),
            tuple(self.p2p_allocs),
            tuple(self.life),
            tuple(self.released),
            tuple(self.locker),
            tuple(self.vcontent),
            tuple(self.migrated_away),
            tuple(self.pin_vpage),
        )


@dataclass(frozen=True)
class Violation:
    """A broken invariant (the Python binding's ``Violation``)."""

    invariant: str
    category: str
    #: index of the action that broke it (drain actions continue the count)
    step: int
    action: str
    message: str
    objects: list[tuple[str, int]]
    expected: str
    actual: str
    trace: list[str] = field(default_factory=list)

    @property
    def doc(self) -> str:
        return INVARIANT_DOCS.get(self.invariant, "")

    def __str__(self) -> str:
        return f"{self.invariant} ({self.category}) at step {self.step} [{self.action}]: {self.message}"


INVARIANT_DOCS: dict[str, str] = {
    "I-R1": "the pgmap's percpu_ref count never goes below zero",
    "I-R2": "percpu_ref release runs at most once per init/reinit cycle",
    "I-R3": "release never runs while a holder still owns a pgmap reference",
    "I-R4": "percpu_ref kill/reinit/resurrect/switch are used as the API requires",
    "I-R7": "no percpu_ref operation after percpu_ref_exit",
    "I-R8": "percpu_ref_exit is not called while a mode switch is pending",
    "I-P1": "pgmap->ref equals the references the preset says exist (conformance)",
    "I-L2": "memunmap_pages tears the struct pages down only when no page of the pgmap is in use",
    "I-L3": "no page, pgmap or device memory is touched after memunmap_pages tore it down",
    "I-L4": "memunmap_pages and every other kernel task terminate once all users are gone",
    "I-L5": "no device page is allocated (zone_device_page_init) after the pgmap was killed",
    "I-F1": "a page refcount never goes negative and never rises from zero outside allocation",
    "I-F2": "a folio newly mapped as anonymous names an anon_vma of the VMA that maps it (no stale page->mapping)",
    "I-F3": "after ->folio_free() returns, the free path reads nothing of the folio the driver may have reused",
    "I-F4": "a page a device-private driver hands out carries no stale compound metadata of an earlier folio",
    "I-F5": "a free page has the refcount the preset says free pages have (conformance)",
    "I-F8": "device-dax and kernel P2P pages only bounce 1->2->1; reaching 0 hits the free path's WARN",
    "I-F11": "the free path takes every folio its type makes without a WARN (a large FS-DAX folio included)",
    "I-F9": "a page is returned to its allocator only when nobody holds it, and only once",
    "I-F10": "once every holder is gone, a page's refcount is back at its initial value (no leak)",
    "I-X2": "a truncate frees a DAX block only when no DMA/GUP reference to its page remains",
    "I-X4": "no FOLL_LONGTERM pin of an FS-DAX page is granted",
    "I-G1": "pin accounting: a pinned small page carries GUP_PIN_COUNTING_BIAS per pin (conformance)",
    "I-G3": "GUP never returns a device-private page",
    "I-G4": "GUP returns P2P pages only with FOLL_PCI_P2PDMA and never for FOLL_LONGTERM",
    "I-G5": "no FOLL_LONGTERM pin of a MEMORY_DEVICE_COHERENT page is granted (it must stay evictable)",
    "I-H1": "a device maps through an HMM snapshot only what the CPU maps at that address (mmu_interval_read_retry)",
    "I-M1": "an anonymous, device-private or coherent folio's refcount equals what its holders account for (conformance)",
    "I-M2": "a page with references migration cannot account for (GUP, pins, fault path) is never migrated",
    "I-M3": "no migration entry survives migrate_vma_finalize",
    "I-M4": "the migration code neither unlocks nor releases the fault page the fault path locked",
    "I-M5": "a page whose dirty PTE a migration entry replaced is dirty when a failed migration maps it back",
    "I-M6": "no folio about to be freed goes on an LRU, and no ZONE_DEVICE folio ever does",
    "I-M7": "every page a migration locked is unlocked exactly once",
    "I-M8": "rmap walkers derive a struct page only from a present PTE (no wild page pointer from a swap entry)",
    "I-M9": "an rmap walk reaches every page-table entry of the folio it walks (try_to_migrate, remove_migration_ptes)",
    "I-M10": "an rmap walk follows only a live anon_vma (page->mapping never names a freed one)",
    "I-D1": "migrate_to_ram runs only on a page the fault path holds a reference to (no use after free)",
    "I-D2": "every exit of the fault path releases the page-table lock",
    "I-D3": "concurrent faults on one device-private page make progress (no livelock)",
    "I-T2": "a split neither invents nor drops page or pgmap references",
    "I-T3": "page-table walkers tell device-private and migration PMD entries from a present THP",
    "I-W1": "no lost write: a live mapping shows the last value written to its virtual page",
    "I-W2": "when an unmap of an address returns, no CPU can still reach its old page through a stale TLB entry",
}

#: every invariant id the machine can report, in the Rust side's order
INVARIANTS = list(INVARIANT_DOCS)
