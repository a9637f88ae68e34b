"""zdfuzz: an executable model of Linux ZONE_DEVICE reference counting.

The Rust core (``zdfuzz._core``) models the kernel's ``pgmap->ref`` percpu_ref,
struct page refcounts, mapcounts and pins for the four ZONE_DEVICE types
(device-private, FS-DAX, device-dax, PCI P2PDMA) under each kernel era's rules;
this package drives it.

    >>> import zdfuzz
    >>> m = zdfuzz.Machine(rules="p20", shape=zdfuzz.Shape(types=("generic",)))
    >>> p = zdfuzz.Program.parse(open("corpus/seeds/generic-01.zdf").read())  # doctest: +SKIP
    >>> m.run(p).ok  # doctest: +SKIP
    True
"""

from zdfuzz._core import (
    DEFAULT_DEVICE_TYPES,
    DEFAULT_PRESET,
    DEVICE_TYPES,
    Action,
    ConfigError,
    ExploreResult,
    Finding,
    InvariantViolation,
    Machine,
    Minimized,
    MinimizeError,
    NativeFuzzer,
    PercpuRef,
    PercpuRefEvent,
    Program,
    ProgramError,
    Rules,
    RulesError,
    Shape,
    StepResult,
    Verdict,
    Violation,
    ZdfuzzError,
    __version__,
    action_kinds,
    explore,
    invariants,
    kind_operands,
    minimize,
)

__all__ = [
    "DEFAULT_DEVICE_TYPES",
    "DEFAULT_PRESET",
    "DEVICE_TYPES",
    "Action",
    "ConfigError",
    "ExploreResult",
    "Finding",
    "InvariantViolation",
    "Machine",
    "MinimizeError",
    "Minimized",
    "NativeFuzzer",
    "PercpuRef",
    "PercpuRefEvent",
    "Program",
    "ProgramError",
    "Rules",
    "RulesError",
    "Shape",
    "StepResult",
    "Verdict",
    "Violation",
    "ZdfuzzError",
    "__version__",
    "action_kinds",
    "explore",
    "invariants",
    "kind_operands",
    "minimize",
]
