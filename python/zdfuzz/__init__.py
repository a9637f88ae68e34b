"""zdfuzz: an executable model of Linux ZONE_DEVICE reference counting.

The Rust core (``zdfuzz._core``) models the kernel's ``pgmap->ref`` percpu_ref,
struct page refcounts, mapcounts and pins for the four ZONE_DEVICE types
(device-private, FS-DAX, device-dax, PCI P2PDMA) under each kernel era's rules;
this package drives it.

    >>> import zdfuzz
    >>> m = zdfuzz.Machine(rules="p20", types=("generic",))
    >>> p = zdfuzz.Program.parse(open("corpus/seeds/generic-01.zdf").read())  # doctest: +SKIP
    >>> m.run(p).ok  # doctest: +SKIP
    True
"""

from zdfuzz._core import (
    Action,
    ExploreResult,
    Finding,
    InvariantViolation,
    Machine,
    Minimized,
    NativeFuzzer,
    PercpuRef,
    PercpuRefEvent,
    Program,
    ProgramError,
    Rules,
    Verdict,
    Violation,
    __version__,
    action_kinds,
    explore,
    invariants,
    minimize,
)

__all__ = [
    "Action",
    "ExploreResult",
    "Finding",
    "InvariantViolation",
    "Machine",
    "Minimized",
    "NativeFuzzer",
    "PercpuRef",
    "PercpuRefEvent",
    "Program",
    "ProgramError",
    "Rules",
    "Verdict",
    "Violation",
    "__version__",
    "action_kinds",
    "explore",
    "invariants",
    "minimize",
]
