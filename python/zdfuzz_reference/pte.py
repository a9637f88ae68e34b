"""Page-table entry values: a present PTE, a device-private swap entry, a
migration entry (a leaf module: the page-table code is in ``pagetable``).
"""

from __future__ import annotations

from typing import NamedTuple

# entry kinds
NONE = 0
PRESENT = 1
DEVICE_PRIVATE = 2
MIGRATION = 3

# migration entry kinds (their text as traces show it)
MIG_READ = "read"
MIG_READ_EXCLUSIVE = "read-exclusive"
MIG_WRITE = "write"

PTE = "pte"
PMD = "pmd"


class Pte(NamedTuple):
    """One page-table entry; for a PMD ``pfn`` is the folio's head. Fields a
    kind does not use stay at their defaults, so equality is the Rust enum's."""

    kind: int = NONE
    pfn: int = 0
    write: bool = False
    #: False for the E1-E3 devmap mappings of FS-DAX and device-dax pages
    refcounted: bool = False
    #: the hardware dirty bit (present entries)
    dirty: bool = False
    #: the migration entry kind
    mig: str = ""

    def has_pfn(self) -> bool:
        return self.kind != NONE

    def holds_ref(self) -> bool:
        """Does this entry hold a page reference and a mapcount?"""
        return (self.kind == PRESENT and self.refcounted) or self.kind == DEVICE_PRIVATE

    def is_mapping(self) -> bool:
        """A mapping the process or its device reads the data through."""
        return self.kind in (PRESENT, DEVICE_PRIVATE)

    def is_migration(self) -> bool:
        return self.kind == MIGRATION

    def writable(self) -> bool:
        if self.kind == MIGRATION:
            return self.mig == MIG_WRITE
        return self.write

    def with_pfn(self, p: int) -> Pte:
        """The same entry pointing at another pfn."""
        return self if self.kind == NONE else self._replace(pfn=p)

    def describe(self) -> str:
        if self.kind == PRESENT:
            return (
                f"pfn {self.pfn}{'' if self.refcounted else ' (devmap, no ref)'}"
                f"{'' if self.write else ' (read-only)'}{' (dirty)' if self.dirty else ''}"
            )
        if self.kind == DEVICE_PRIVATE:
            return f"device-private pfn {self.pfn}{' (write)' if self.write else ' (read)'}"
        if self.kind == MIGRATION:
            return f"migration entry pfn {self.pfn} ({self.mig})"
        return ""


EMPTY = Pte()


def present(pfn: int, write: bool, refcounted: bool = True, dirty: bool = False) -> Pte:
    return Pte(PRESENT, pfn, write, refcounted, dirty)


def device_private(pfn: int, write: bool) -> Pte:
    return Pte(DEVICE_PRIVATE, pfn, write)


def migration(pfn: int, kind: str) -> Pte:
    return Pte(MIGRATION, pfn, mig=kind)


def make_readonly(e: Pte) -> Pte:
    """The entry as fork leaves it in a COW mapping: no write permission."""
    if e.kind in (PRESENT, DEVICE_PRIVATE):
        return e._replace(write=False)
    if e.kind == MIGRATION and e.mig == MIG_WRITE:
        return e._replace(mig=MIG_READ)
    return e
