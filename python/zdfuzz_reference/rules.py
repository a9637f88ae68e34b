"""Rules: one kernel era as data.

The reference never hard-codes an era. It reads every switch from the TOML
that the Rust side writes for a preset or user rules file
(``zdfuzz.Rules.preset(name).to_toml()``), so the two implementations share
the *data* and nothing else: the behaviour each switch selects is implemented
again here, in the module of the kernel function it changes.

The switch names and meanings are those of ``rust/core/src/rules.rs`` (see
``docs/model.md`` §3 and §9.1): per-type rows (``types.<type>.*``: initial
and free refcounts, what a put does at 2->1 and at 1->0, whether mappings hold
references) and per-subsystem tables (``private``, ``p2p``, ``dax``,
``pgmap``, ``gup``, ``migrate``, ``fault``, ``thp``). The row of
MEMORY_DEVICE_COHERENT (``types.coherent``, v6.0: "mm: add zone device
coherent type memory support") exists only in the eras that have the type
(``e3`` on); a shape naming it under an older era is a configuration error.
"""

from __future__ import annotations

import functools
import tomllib
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any, Protocol, TypeVar

from zdfuzz_reference.errors import RulesError

#: the preset files: beside this package, in the zdfuzz package's data (a
#: directory read as files: nothing of zdfuzz is imported)
PRESETS_DIR = Path(__file__).resolve().parent.parent / "zdfuzz" / "presets"
#: the order the Rust core lists them in (rust/core/src/rules.rs BUILTIN)
PRESET_FILES = (
    "e1",
    "e2",
    "e3",
    "e4",
    "e5",
    "p20",
    "v4.10",
    "v5.1",
    "v5.2",
    "v5.2-anon-mapping-reuse",
    "v5.8",
    "v6.15-rc-trylock-v1",
    "v6.15-skip-locked-entry",
    "v6.19-orig",
)
#: metadata keys of a rules file (not switches); aliases and fix are not inherited
META = ("name", "kernel", "description", "base", "aliases", "fix")


class _HasToml(Protocol):
    def to_toml(self) -> str: ...


#: the preset machines and programs use when none is named (DEFAULT_PRESET)
DEFAULT_PRESET = "e3"

#: device types in the Rust enum's order (``DeviceType::ALL``; bit ``i`` of a
#: type set is ``DEVICE_TYPES[i]``)
DEVICE_TYPES = ("private", "fsdax", "generic", "p2pdma", "coherent")
#: the types a shape has when none are named (``DeviceType::DEFAULT``): the
#: four every era has. MEMORY_DEVICE_COHERENT exists only from v6.0 on, so it
#: is asked for by name.
DEFAULT_TYPES = ("private", "fsdax", "generic", "p2pdma")
#: the types whose driver allocates and frees the pages itself
#: (``zone_device_page_init``, ``->page_free``): mm/memremap.c tests
#: ``type == MEMORY_DEVICE_PRIVATE || type == MEMORY_DEVICE_COHERENT``
DRIVER_ALLOCATED = ("private", "coherent")
#: the kernel's names of the types (``DeviceType::kernel_name``)
KERNEL_NAMES = {
    "private": "MEMORY_DEVICE_PRIVATE",
    "fsdax": "MEMORY_DEVICE_FS_DAX",
    "generic": "MEMORY_DEVICE_GENERIC",
    "p2pdma": "MEMORY_DEVICE_PCI_P2PDMA",
    "coherent": "MEMORY_DEVICE_COHERENT",
}

_ALIASES = {
    "private": "private",
    "device_private": "private",
    "priv": "private",
    "fsdax": "fsdax",
    "fs_dax": "fsdax",
    "generic": "generic",
    "devdax": "generic",
    "gen": "generic",
    "p2pdma": "p2pdma",
    "pci_p2pdma": "p2pdma",
    "p2p": "p2pdma",
    "coherent": "coherent",
    "device_coherent": "coherent",
    "coh": "coherent",
}


def device_type(name: str) -> str | None:
    """``DeviceType::from_name``: the canonical type name, or None."""
    return _ALIASES.get(name.lower())


@dataclass(frozen=True)
class TypeRules:
    """One row of the per-type table (``types.<type>``)."""

    init_rc: int
    free_rc: int
    init_pgmap_refs: bool
    memunmap_put: str  # "every_page", "put_many" or "none"
    free_on_2to1: bool
    wake_on_2to1: bool
    page_free_on_zero: bool
    put_pgmap_on_zero: bool
    reset_on_zero: bool
    wake_on_zero: bool
    map_refcounted: bool
    gup_pgmap_ref: bool
    zero_warns: bool


@dataclass(frozen=True)
class PrivateRules:
    alloc_get_page: bool
    alloc_sets_rc: bool
    alloc_pgmap_ref: str  # "none", "tryget_live" or "tryget_many"
    free_clears_mapping: bool
    alloc_while_unbinding: bool
    unbind_after_eviction: bool
    #: mmu_interval_read_retry before the device maps an HMM snapshot
    hmm_checks_retry: bool


@dataclass(frozen=True)
class P2pRules:
    alloc_pgmap_ref: bool
    alloc_sets_rc: bool
    userspace_mmap: bool
    mmap_sets_rc: bool
    gup_needs_flag: bool
    kernel_get_page: bool
    mmap_error_puts_ref: bool
    mmap_error_resets_rc: bool


@dataclass(frozen=True)
class DaxRules:
    longterm_refused: bool
    unmount_waits_idle: bool
    busy_scan_needs_mapping: bool
    #: the busy scan waits for a locked entry (6be3e21d25ca); else skips it
    scan_waits_on_locked_entry: bool
    #: device-dax pages of a PMD-aligned device are compound folios
    #: (``vmemmap_shift``, 14606001efb4, v5.17); optional in a rules file
    devdax_compound: bool = False
    #: an FS-DAX PMD entry's pages are a compound folio while associated
    #: (``dax_folio_init`` / ``dax_folio_put``, v6.15); optional
    fsdax_compound: bool = False


@dataclass(frozen=True)
class PgmapRules:
    memunmap_waits: bool
    teardown_syncs_rcu: bool
    get_dev_pagemap_live: bool
    page_refs_take_pgmap_refs: bool
    #: memory_failure holds its get_dev_pagemap reference across the
    #: ZONE_DEVICE handler (false: the I-L3 what-if)
    memory_failure_gets_pgmap: bool


@dataclass(frozen=True)
class GupRules:
    pin_bias: int
    #: GUP never returns a device-private page: the entry is not present, so
    #: GUP faults the page back to system RAM (``faultin_page`` ->
    #: ``do_swap_page``) and grabs that (false: the I-G3 what-if)
    refuses_device_private: bool
    fork_copies_pinned: bool
    #: a FOLL_LONGTERM GUP moves a MEMORY_DEVICE_COHERENT page to system RAM
    #: and pins the copy (``migrate_device_coherent_page``, v6.0); optional in
    #: a rules file (false: eras without the type, or the what-if of a GUP
    #: that pins the coherent page itself)
    longterm_migrates_coherent: bool = False
    #: GUP-fast on a devmap PMD forgets ``put_dev_pagemap`` when
    #: ``try_grab_page`` fails (v5.7-v5.14; fixed by 6401c4eb57f9)
    device_huge_grab_failure_leaks_pgmap: bool = False


@dataclass(frozen=True)
class MigrateRules:
    check_device: str  # "skip" or "extra"
    check_system: bool
    exact_gate: bool
    exact_counts_device_base: bool
    collect_marks_dirty: bool
    finalize_putback_src: bool
    device_range: bool
    unmap_subpage_fix: bool
    new_anon_rmap_keeps_anon: bool
    compound: bool
    fault_page_prelocked: bool
    finalize_skips_fault_page: bool
    #: collect flushes the TLB after dropping the PTL (until 60bae7370896,
    #: v6.0): a stale-TLB window (I-W2); optional in a rules file
    collect_flush_after_unlock: bool = False


@dataclass(frozen=True)
class FaultRules:
    path: str  # "no_ref", "ref" or "trylock"
    bail_unlocks_ptl: bool
    unlock_before_put: bool


@dataclass(frozen=True)
class ThpRules:
    device_private: bool
    split_tail_extra: int
    split_pgmap_get: bool
    can_split_extra_pin: bool
    free_prepare: bool
    walkers_know_device_pmd: bool
    #: free_zone_device_folio reads folio->pgmap after ->folio_free()
    #: (until 85be0a262e39); with large device folios a task (page.py)
    free_rereads_pgmap: bool = False
    #: free_zone_device_folio WARNs on a large FS-DAX folio (v6.19 as merged,
    #: until "mm/memremap: fix spurious large folio warning for FS-DAX")
    free_warns_large_file_folio: bool = False


T = TypeVar("T")


def _table(cls: type[T], data: Any, where: str) -> T:
    """Build one switch table, insisting on exactly the known switches (a
    switch with a default may be left out, as serde's ``default``)."""
    if not isinstance(data, dict):
        raise RulesError(f"rules: [{where}] must be a table")
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    required = {f.name for f in fields(cls) if f.default is MISSING}  # type: ignore[arg-type]
    missing = required - data.keys()
    extra = data.keys() - names
    if missing or extra:
        raise RulesError(f"rules: [{where}] missing {sorted(missing)}, unknown {sorted(extra)}")
    return cls(**data)


@dataclass(frozen=True)
class Rules:
    """One era's rules, read from TOML."""

    name: str
    #: the types the era has, each with its row (``coherent`` only from v6.0)
    types: dict[str, TypeRules]
    private: PrivateRules
    p2p: P2pRules
    dax: DaxRules
    pgmap: PgmapRules
    gup: GupRules
    migrate: MigrateRules
    fault: FaultRules
    thp: ThpRules
    #: the kernel version the preset stands for (e.g. "v5.10")
    kernel: str = ""

    def of(self, t: str) -> TypeRules:
        """The per-type row of device type ``t``."""
        return self.types[t]

    def has(self, t: str) -> bool:
        """Does the era have device type ``t``?"""
        return t in self.types

    def check_types(self, types: list[str]) -> str | None:
        """None if every type of ``types`` exists in this era, else the
        error naming the first that does not (``Rules::check_types``)."""
        for t in types:
            if not self.has(t):
                return (
                    f"rules {self.name} ({self.kernel}) have no {KERNEL_NAMES[t]}: it arrived in v6.0 "
                    '("mm: add zone device coherent type memory support"); use e3 or a later era, or drop '
                    f'"{t}" from the types'
                )
        return None

    @staticmethod
    def from_toml(text: str) -> Rules:
        """Complete rules (every switch) from TOML text."""
        return Rules.from_table(tomllib.loads(text))

    @staticmethod
    def from_table(d: dict[str, Any]) -> Rules:
        types = d.get("types", {})
        extra = types.keys() - set(DEVICE_TYPES) if isinstance(types, dict) else set()
        if extra:
            raise RulesError(f"rules: [types] has unknown rows {sorted(extra)}")
        return Rules(
            name=str(d.get("name", "")),
            kernel=str(d.get("kernel", "")),
            # the four rows every era has; MEMORY_DEVICE_COHERENT's when present
            types={
                t: _table(TypeRules, types.get(t), f"types.{t}")
                for t in DEVICE_TYPES
                if t in DEFAULT_TYPES or types.get(t) is not None
            },
            private=_table(PrivateRules, d.get("private"), "private"),
            p2p=_table(P2pRules, d.get("p2p"), "p2p"),
            dax=_table(DaxRules, d.get("dax"), "dax"),
            pgmap=_table(PgmapRules, d.get("pgmap"), "pgmap"),
            gup=_table(GupRules, d.get("gup"), "gup"),
            migrate=_table(MigrateRules, d.get("migrate"), "migrate"),
            fault=_table(FaultRules, d.get("fault"), "fault"),
            thp=_table(ThpRules, d.get("thp"), "thp"),
        )

    @staticmethod
    def load(rules: str | _HasToml | Rules) -> Rules:
        """A preset name or alias, a regression preset, a ``.toml`` path (a
        user preset over a base), anything with ``to_toml()`` (a
        ``zdfuzz.Rules``) or already-loaded reference rules."""
        if isinstance(rules, Rules):
            return rules
        if not isinstance(rules, str):
            return Rules.from_table(_resolve_table(tomllib.loads(rules.to_toml()), "<rules>"))
        name = _canonical(rules)
        if name is not None:
            return _preset(name)
        if rules.endswith(".toml") or Path(rules).is_file():
            try:
                text = Path(rules).read_text()
            except OSError as e:
                raise RulesError(f"cannot read: {e}", file=rules) from None
            return Rules.from_table(_resolve_table(_parse(text, rules), rules))
        names = [n for n, t in _files().items() if "fix" not in t]
        regs = [n for n, t in _files().items() if "fix" in t]
        raise RulesError(
            f"unknown rules {rules!r}: not a preset ({', '.join(names)}), not a regression preset "
            f"({', '.join(regs)}) and not a .toml file"
        )


def _parse(text: str, file: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise RulesError(str(e), file=file, line=getattr(e, "lineno", 0), col=getattr(e, "colno", 0)) from None


@functools.cache
def _files() -> dict[str, dict[str, Any]]:
    """Every preset file, parsed (not yet merged onto its base)."""
    out = {}
    for n in PRESET_FILES:
        path = PRESETS_DIR / f"{n}.toml"
        out[n] = _parse(path.read_text(), str(path))
    return out


def _canonical(name: str) -> str | None:
    """The preset file a name or alias names."""
    for n, t in _files().items():
        if n == name or name in t.get("aliases", []):
            return n
    return None


def _merge(base: dict[str, Any], user: dict[str, Any], path: str, file: str) -> None:
    """Overlay ``user`` onto ``base``: only switches the base has, of its types."""
    for k, v in user.items():
        where = f"{path}.{k}" if path else k
        if not path and k in META:
            continue
        if k not in base and where == "types.coherent" and isinstance(v, dict):
            # an era gains MEMORY_DEVICE_COHERENT: the row is new, so it names
            # every switch (a missing one is reported when the table is read)
            base[k] = dict(v)
            continue
        if k not in base:
            raise RulesError(f"unknown switch `{where}`; known here: {', '.join(sorted(base))}", file=file)
        if isinstance(base[k], dict) != isinstance(v, dict) or type(base[k]) is not type(v):
            raise RulesError(f"`{where}` must be a {type(base[k]).__name__}, got {type(v).__name__}", file=file)
        if isinstance(v, dict):
            _merge(base[k], v, where, file)
        else:
            base[k] = v


def _resolve_table(user: dict[str, Any], file: str) -> dict[str, Any]:
    """A rules file with its ``base`` merged in: every switch."""
    if "name" not in user:
        raise RulesError('missing `name = "..."` for the new rules', file=file)
    base_name = user.get("base")
    if base_name is None:
        return user
    canon = _canonical(str(base_name))
    if canon is None:
        raise RulesError(f"unknown base preset {base_name!r}", file=file)
    merged = _resolved(canon)
    for own in ("aliases", "fix"):
        merged.pop(own, None)
    _merge(merged, user, "", file)
    for k in META:
        if k in user:
            merged[k] = user[k]
    return merged


def _resolved(name: str) -> dict[str, Any]:
    """Preset file ``name`` merged onto its bases (a fresh copy)."""
    import copy

    return _resolve_table(copy.deepcopy(_files()[name]), str(PRESETS_DIR / f"{name}.toml"))


@functools.cache
def _preset(name: str) -> Rules:
    """A built-in preset (frozen, so one copy serves every machine)."""
    return Rules.from_table(_resolved(name))


def preset_names() -> list[str]:
    """The era presets, in the core's order."""
    return [n for n, t in _files().items() if "fix" not in t]


def regression_names() -> list[str]:
    return [n for n, t in _files().items() if "fix" in t]


def aliases() -> list[tuple[str, list[str]]]:
    return [(n, list(t.get("aliases", []))) for n, t in _files().items() if "fix" not in t]
