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
``pgmap``, ``gup``, ``migrate``, ``fault``, ``thp``).
"""

from __future__ import annotations

import functools
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

import zdfuzz

#: device types in the Rust enum's order
DEVICE_TYPES = ("private", "fsdax", "generic", "p2pdma")

_ALIASES = {
    "private": "private", "device_private": "private", "priv": "private",
    "fsdax": "fsdax", "fs_dax": "fsdax",
    "generic": "generic", "devdax": "generic", "gen": "generic",
    "p2pdma": "p2pdma", "pci_p2pdma": "p2pdma", "p2p": "p2pdma",
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


@dataclass(frozen=True)
class P2pRules:
    alloc_pgmap_ref: bool
    alloc_sets_rc: bool
    userspace_mmap: bool
    mmap_sets_rc: bool
    gup_needs_flag: bool
    kernel_get_page: bool


@dataclass(frozen=True)
class DaxRules:
    longterm_refused: bool
    unmount_waits_idle: bool
    busy_scan_needs_mapping: bool


@dataclass(frozen=True)
class PgmapRules:
    memunmap_waits: bool
    teardown_syncs_rcu: bool
    get_dev_pagemap_live: bool
    page_refs_take_pgmap_refs: bool


@dataclass(frozen=True)
class GupRules:
    pin_bias: int
    refuses_device_private: bool
    fork_copies_pinned: bool


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
    compound: bool
    fault_page_prelocked: bool
    finalize_skips_fault_page: bool


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


T = TypeVar("T")


def _table(cls: type[T], data: Any, where: str) -> T:
    """Build one switch table, insisting on exactly the known switches."""
    if not isinstance(data, dict):
        raise ValueError(f"rules: [{where}] must be a table")
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    missing = names - data.keys()
    extra = data.keys() - names
    if missing or extra:
        raise ValueError(f"rules: [{where}] missing {sorted(missing)}, unknown {sorted(extra)}")
    return cls(**data)


@dataclass(frozen=True)
class Rules:
    """One era's rules, read from TOML."""

    name: str
    types: dict[str, TypeRules]
    private: PrivateRules
    p2p: P2pRules
    dax: DaxRules
    pgmap: PgmapRules
    gup: GupRules
    migrate: MigrateRules
    fault: FaultRules
    thp: ThpRules

    def of(self, t: str) -> TypeRules:
        """The per-type row of device type ``t``."""
        return self.types[t]

    @staticmethod
    def from_toml(text: str) -> Rules:
        d = tomllib.loads(text)
        types = d.get("types", {})
        return Rules(
            name=str(d.get("name", "")),
            types={t: _table(TypeRules, types.get(t), f"types.{t}") for t in DEVICE_TYPES},
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
    def load(rules: str | zdfuzz.Rules | Rules) -> Rules:
        """A preset name or alias, a ``.toml`` path (a user preset over a
        base), a ``zdfuzz.Rules`` or already-loaded reference rules. The Rust
        side resolves names and merges user files onto their base; the
        reference reads the complete result."""
        if isinstance(rules, Rules):
            return rules
        if isinstance(rules, zdfuzz.Rules):
            return Rules.from_toml(rules.to_toml())
        if rules in zdfuzz.Rules.presets() or any(rules in a for _, a in zdfuzz.Rules.aliases()) \
                or any(rules == n for n, _, _ in zdfuzz.Rules.regressions()):
            return _preset(rules)
        if rules.endswith(".toml") or Path(rules).is_file():
            return Rules.from_toml(zdfuzz.Rules.load(rules).to_toml())
        raise ValueError(
            f"unknown rules {rules!r}: not a preset ({', '.join(zdfuzz.Rules.presets())}), "
            f"not a regression preset and not a .toml file"
        )


@functools.lru_cache(maxsize=None)
def _preset(name: str) -> Rules:
    """A built-in preset (frozen, so one copy serves every machine)."""
    return Rules.from_toml(zdfuzz.Rules.preset(name).to_toml())
