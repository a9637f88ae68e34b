"""zdfuzz_reference: a plain, readable, pure-Python model of the same machine.

A second implementation of the Rust core (``rust/core/src``), written for
clarity rather than speed, with the same presets (the same TOML files, read
with ``tomllib``), the same actions, the same oracle and invariant ids, the same
drain, and the same ``Machine`` API as ``zdfuzz.Machine``. Differential tests
run random programs on both and require identical verdicts and traces
(``python -m zdfuzz_reference.diff``).

One module per concept, each named after what it models:

==============  ===========================================================
percpu_ref      ``pgmap->ref`` (lib/percpu-refcount.c)
pgmap           memremap_pages / memunmap_pages / get_dev_pagemap
page            struct page refcounts and each era's put path
folio           compound folios, can_split_folio, the split, PMD walkers
pagetable       PTEs, PMDs, migration entries, the page-table lock
process         munmap, exit_mmap, fork
gup             get_user_pages / pin_user_pages / unpin
driver          the device-private and coherent drivers' allocators
p2pdma          pci_alloc_p2pmem and p2pmem_alloc_mmap
dax             FS-DAX (associate, fault, truncate) and device-dax faults
ram             system RAM: anonymous faults, COW, the LRU
data            the data oracle (I-W1)
migrate         migrate_vma_* and migrate_device_range as tasks
fault           the device-private CPU fault (do_swap_page)
sched           tasks, steps, the drain, livelock and leak checks
oracle          the ledger of holders, violations, invariant ids
rules, config   the era as data, the machine shape
ops, text,      actions, the .zdf text format, the byte decoder
decode
machine         the contracts, action dispatch, conformance, traces, API
diff            the differential harness (python -m zdfuzz_reference.diff)
errors          the reference's own exceptions
==============  ===========================================================

It lives beside the ``zdfuzz`` package, not in it, and never imports it:
``import zdfuzz`` loads the Rust extension, and the reference must stand on
its own (``tests/test_layering.py`` runs it with the extension made
unimportable). Only the differential harness loads ``zdfuzz``, inside the
functions that run the Rust side.
"""

from zdfuzz_reference.config import Shape, make_shape
from zdfuzz_reference.errors import ConfigError, InvariantViolation, ReferenceError_, RulesError
from zdfuzz_reference.machine import Machine, Verdict
from zdfuzz_reference.ops import KINDS, Op
from zdfuzz_reference.oracle import INVARIANTS, Violation
from zdfuzz_reference.text import Program, ProgramError, parse_program

#: The action kinds the reference implements: all of them. The differential
#: harness generates programs from this set only, so a partial reference
#: would be tested on what it covers.
SUPPORTED_KINDS: frozenset[str] = frozenset(k.name for k in KINDS)

__all__ = [
    "INVARIANTS",
    "KINDS",
    "ConfigError",
    "InvariantViolation",
    "Machine",
    "Op",
    "Program",
    "ProgramError",
    "ReferenceError_",
    "RulesError",
    "SUPPORTED_KINDS",
    "Shape",
    "Verdict",
    "Violation",
    "make_shape",
    "parse_program",
]
