"""Historical kernel bugs as a regression corpus.

Each entry of :data:`BUGS` is one bug of the catalogue in ``docs/coverage.md``
(its ``catalogue`` field names the row): the preset that has the code as it was, the device
types it needs, the invariant the oracle reports, and the preset that has the
fix. ``zdfuzz regressions find`` runs a fuzz campaign under the buggy preset
until it finds that invariant, and files the campaign's minimized reproducer
as ``corpus/regressions/<preset>/<name>.zdf`` with its metadata (engine,
seconds to find, seed, invariant, the fix); then it runs a campaign of the
same length under the fixing preset and records whether that one stayed clean
of the signature. ``zdfuzz regressions check`` (and the test suite) replay
every reproducer: under its preset it must break the recorded invariant, under
the fixing preset it must be clean.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

import zdfuzz
from zdfuzz.corpus import atomic_write

#: the regression corpus: shipped inside the package (a checkout's
#: ``corpus/regressions`` links here), so ``zdfuzz regressions check`` works
#: from a wheel
ROOT = Path(__file__).resolve().parent / "data" / "regressions"
#: the programs behind docs/answers.md (``corpus/answers`` in a checkout)
ANSWERS = Path(__file__).resolve().parent / "data" / "answers"


def display_path(p: Path) -> str:
    """``corpus/regressions/<preset>/<name>.zdf`` for the shipped corpus, else ``p``."""
    try:
        return f"corpus/regressions/{p.relative_to(ROOT)}"
    except ValueError:
        return str(p)


@dataclass(frozen=True)
class Bug:
    name: str
    preset: str
    types: tuple[str, ...]
    invariant: str
    fixed_in: str
    fix: str
    #: the row of the catalogue in docs/coverage.md that describes the bug
    catalogue: str
    #: why ``fixed_in`` is not simply the first era with the fix, if it is not
    note: str = ""
    #: shape options the campaigns turn on (``faults``, ``devdax_pmd``,
    #: ``fsdax_pmd``): the bug is on an error path, or needs a PMD-aligned
    #: device-dax device or PMD-sized FS-DAX extents
    options: tuple[str, ...] = ()


BUGS: tuple[Bug, ...] = (
    Bug(
        "gup-fast-zone-device-ref",
        "v4.10",
        ("generic",),
        "I-R1",
        "e1",
        "71389703839e mm, zone_device: Replace {get,put}_zone_device_page() with a single reference (v4.11)",
        "docs/coverage.md #1",
    ),
    Bug(
        "unbind-does-not-wait",
        "v5.1",
        ("generic",),
        "I-L2",
        "e1",
        "50f44ee7248a mm/devm_memremap_pages: fix final page put race (v5.2)",
        "docs/coverage.md #2",
    ),
    Bug(
        "anon-mapping-reuse",
        "v5.2-anon-mapping-reuse",
        ("private",),
        "I-F2",
        "e1",
        "7ab0ad0e74f8 mm/hmm: fix ZONE_DEVICE anon page mapping reuse (v5.3)",
        "docs/coverage.md #21",
        "a freed device-private page keeps its old anon_vma in page->mapping; reused for another process, "
        "__page_set_anon_rmap's PageAnon check leaves it, so rmap walks miss the new mapping: reported where "
        "folio_add_new_anon_rmap keeps it (I-F2)",
    ),
    Bug(
        "bad-subpage-pointer",
        "v5.2",
        ("private",),
        "I-M8",
        "e1",
        "1de13ee59225 mm/hmm: Fix bad subpage pointer in try_to_unmap_one (v5.3)",
        "docs/coverage.md #4",
        "the kernel computed a wild struct page pointer from the device-private entry and oopsed in the rmap "
        "removal: the model reports that pointer (I-M8) where try_to_unmap_one computes it",
    ),
    Bug(
        "fork-shares-pinned-page",
        "v5.8",
        ("private",),
        "I-W1",
        "e1",
        "mm: Do early cow for pinned pages during fork() (v5.9)",
        "docs/coverage.md #19",
    ),
    Bug(
        "gup-fast-devmap-pmd-leak",
        "e1",
        ("generic",),
        "I-L4",
        "e2",
        "6401c4eb57f9 mm/gup: fix potential pgmap refcnt leak in __gup_device_huge() (v5.15)",
        "docs/coverage.md kc extra 1",
        "the leak entered in v5.7 (3faa52c03f44 made the grab fallible) and the fix is in v5.15, so e1 (v5.10) "
        "has it and e2 (v5.18) does not; it needs a PMD-aligned device-dax device and a failing try_grab_page",
        ("faults", "devdax_pmd"),
    ),
    Bug(
        "unbind-with-mapped-device-page",
        "e2",
        ("private",),
        "I-L2",
        "e3",
        "0dc45ca1ce18 mm/memremap.c: Take a pgmap reference on page allocation (v6.1)",
        "docs/coverage.md #7",
    ),
    Bug(
        "device-fault-race",
        "e2",
        ("private",),
        "I-D1",
        "e3",
        "16ce101db85d mm/memory.c: Fix race when faulting a device private page (v6.1)",
        "docs/coverage.md #8",
    ),
    Bug(
        "collect-flushes-tlb-after-unlock",
        "e2",
        ("private",),
        "I-W2",
        "e4",
        "60bae7370896 mm/migrate_device.c: flush TLB while holding PTL (v6.0)",
        "docs/coverage.md #20",
        "e3 has the fix too (e2 stands for the code before the v6.0 fixes, as for fd35ca3d12cc), but the "
        "reproducer's migration then completes and meets the LRU putback 41cddf83d8b0 fixed (I-M6, v6.14): e4 is "
        "the first preset where it replays clean",
    ),
    Bug(
        "collect-drops-dirty-bit",
        "e2",
        ("private",),
        "I-M5",
        "e3",
        "fd35ca3d12cc mm/migrate_device.c: Copy pte dirty bit to page (v6.0)",
        "docs/coverage.md #18",
        "the loss is on the failed path, as the fix describes: the migration fails on a reference it cannot "
        "account for and the page is mapped back through a clean PTE",
    ),
    Bug(
        "migrated-folio-on-lru",
        "e3",
        ("private",),
        "I-M6",
        "e4",
        "41cddf83d8b0 mm/migrate_device: don't add folio to be freed to LRU in migrate_device_finalize() (v6.14)",
        "docs/coverage.md #11",
    ),
    Bug(
        "device-fault-livelock",
        "e3",
        ("private",),
        "I-D3",
        "e4",
        "1afaeb8293c9 mm/migrate: Trylock device page in do_swap_page (v6.15)",
        "docs/coverage.md #12",
    ),
    Bug(
        "busy-scan-skips-unmapped-file",
        "e3",
        ("fsdax",),
        "I-X2",
        "e4",
        "cee91fa13a8e fs/dax: return unmapped busy pages from dax_layout_busy_page_range() (v6.15)",
        "docs/coverage.md #15",
    ),
    Bug(
        "busy-scan-skips-locked-entry",
        "v6.15-skip-locked-entry",
        ("fsdax",),
        "I-X2",
        "e4",
        "6be3e21d25ca fs/dax: don't skip locked entries when scanning entries (v6.15)",
        "docs/coverage.md #15b",
    ),
    Bug(
        "trylock-put-before-unlock",
        "v6.15-rc-trylock-v1",
        ("private",),
        "I-D1",
        "e4",
        "review of 'mm/migrate: Trylock device page in do_swap_page' (unlock_page before put_page, v6.15)",
        "docs/coverage.md #12b",
    ),
    Bug(
        "folio-freed-without-prepare",
        "v6.19-orig",
        ("private",),
        "I-F4",
        "e5",
        "free_zone_device_folio_prepare() (2026, Fixes d245f9b4ab80)",
        "docs/coverage.md #13",
    ),
    Bug(
        "free-path-reads-reused-folio",
        "v6.19-orig",
        ("private",),
        "I-F3",
        "e5",
        "85be0a262e39 mm/zone_device: do not touch device folio after calling ->folio_free() (2026, Fixes d245f9b4ab80)",
        "docs/coverage.md #13b",
    ),
    Bug(
        "pmd-walker-reads-device-pmd",
        "v6.19-orig",
        ("private",),
        "I-T3",
        "e5",
        "mm/mempolicy, madvise: handle device-private PMD entries (2026, Fixes 368076f52ebe)",
        "docs/coverage.md #14",
    ),
    Bug(
        "fsdax-pmd-folio-free-warns",
        "v6.19-orig",
        ("fsdax",),
        "I-F11",
        "e5",
        "077d925b60c3 mm/memremap: fix spurious large folio warning for FS-DAX (v6.19-rc, Fixes d245f9b4ab80)",
        "docs/coverage.md #17",
        "needs PMD-sized FS-DAX extents (an XFS with 2 MiB stripe alignment), whose v6.15 compound folio reaches "
        "free_zone_device_folio when its last mapping goes",
        ("fsdax_pmd",),
    ),
)


def bug(name: str) -> Bug:
    for b in BUGS:
        if b.name == name:
            return b
    raise KeyError(f"no regression named {name!r}; known: {', '.join(b.name for b in BUGS)}")


def reproducer_path(b: Bug, root: Path = ROOT) -> Path:
    return root / b.preset / f"{b.name}.zdf"


def _campaign(
    rules: str,
    types: tuple[str, ...],
    seconds: float,
    seed: int,
    engine: str,
    console: Console,
    options: tuple[str, ...] = (),
) -> list[Any]:
    from zdfuzz import campaign

    with tempfile.TemporaryDirectory(prefix="zdfuzz-regression-") as tmp:
        cfg = campaign.Config(
            rules=rules,
            types=types,
            engine=engine,
            seconds=seconds,
            corpus=Path(tmp),
            seed=seed,
            faults="faults" in options,
            devdax_pmd="devdax_pmd" in options,
            fsdax_pmd="fsdax_pmd" in options,
        )
        c = campaign.run(cfg, console)
        out = []
        for f in c.found:
            text = f.path.read_text()
            meta = json.loads(f.path.with_suffix(".json").read_text())
            out.append((f, text, meta))
        return out


def replayed_message(text: str, rules: str) -> str | None:
    """The message of the violation ``text`` reports under ``rules``."""
    p = zdfuzz.Program.parse(text)
    v = zdfuzz.Machine.for_program(p, rules=rules).run(p)
    return None if v.violation is None else v.violation.message


def find(
    b: Bug,
    seconds: float = 60.0,
    seed: int = 1,
    engine: str = "native",
    root: Path = ROOT,
    console: Console | None = None,
) -> Path | None:
    """Run campaigns under the buggy preset until one finds the bug's
    invariant (up to three seeds); file the reproducer. Then run one campaign
    of the same length under the fixing preset and record whether it found
    the signature. Returns the reproducer's path, or None."""
    console = console or Console()
    for s in (seed, seed + 1, seed + 2):
        hits = [
            x
            for x in _campaign(b.preset, b.types, seconds, s, engine, console, b.options)
            if x[0].signature.invariant == b.invariant
        ]
        if hits:
            f, text, meta = min(hits, key=lambda x: x[0].seconds)
            break
    else:
        console.print(f"{b.name}: {b.invariant} not found under {b.preset}", style="red")
        return None
    # under the fix: the same campaign must not find this signature
    fixed = _campaign(b.fixed_in, b.types, seconds, s, engine, console, b.options)
    same = [
        x
        for x in fixed
        if (x[0].signature.invariant, x[0].signature.kind, x[0].signature.device)
        == (f.signature.invariant, f.signature.kind, f.signature.device)
    ]
    out = reproducer_path(b, root)
    # the finding's message names the pages of the program as found; the
    # minimizer may have renamed them, so the record states what the
    # reproducer itself reports
    message = replayed_message(text, b.preset) or f.message
    header = (
        f"# {b.name}: {b.fix}\n"
        f"# Catalogue: {b.catalogue}. Found by the {engine} engine in {f.seconds:.2f}s (seed {s}) under\n"
        f"# {b.preset}; {b.invariant}: {message}\n"
        f"# Replay: zdfuzz replay {display_path(out) if root == ROOT else out.name}"
        f"   # and with --rules {b.fixed_in}: clean\n"
    )
    body = "".join(line for line in text.splitlines(keepends=True) if not line.startswith("#"))
    atomic_write(out, header + body)
    record = {
        "name": b.name,
        "preset": b.preset,
        "types": list(b.types),
        "invariant": b.invariant,
        "signature": meta["signature"],
        "message": message,
        "engine": engine,
        "seed": s,
        "seconds_to_find": round(f.seconds, 3),
        "actions": f.actions,
        "original_actions": f.original_actions,
        "fixed_in": b.fixed_in,
        "fix": b.fix,
        "catalogue": b.catalogue,
        "note": b.note,
        **({"options": list(b.options)} if b.options else {}),
        "fixed_campaign": {
            "seconds": seconds,
            "seed": s,
            "engine": engine,
            "signature_found": bool(same),
            "other_findings": sorted(str(x[0].signature) for x in fixed if x not in same),
        },
        "zdfuzz": zdfuzz.__version__,
    }
    atomic_write(out.with_suffix(".json"), json.dumps(record, indent=2, sort_keys=True) + "\n")
    console.print(
        f"{b.name}: {out} ({f.actions} actions, {f.seconds:.2f}s); under {b.fixed_in}: "
        f"{'FOUND AGAIN' if same else 'clean'}",
        highlight=False,
    )
    return out


def replay(path: Path, rules: str) -> zdfuzz.Verdict:
    program = zdfuzz.Program.parse(path.read_text())
    return zdfuzz.Machine.for_program(program, rules=zdfuzz.Rules.preset(rules)).run(program)


def entries(root: Path = ROOT) -> list[tuple[Path, dict[str, Any]]]:
    """Every reproducer in the regression corpus with its metadata."""
    out = []
    for zdf in sorted(root.glob("*/*.zdf")):
        meta = zdf.with_suffix(".json")
        if not meta.is_file():
            raise ValueError(f"{zdf}: no metadata file {meta.name}")
        out.append((zdf, json.loads(meta.read_text())))
    return out


def check(root: Path = ROOT) -> list[str]:
    """Replay every reproducer under its preset and its fixing preset;
    returns the problems (empty when all is well)."""
    problems = []
    for zdf, meta in entries(root):
        v = replay(zdf, meta["preset"])
        got = v.violation.invariant if v.violation is not None else None
        if got != meta["invariant"]:
            problems.append(f"{zdf}: under {meta['preset']} expected {meta['invariant']}, got {got}")
        fixed = replay(zdf, meta["fixed_in"])
        if not fixed.ok:
            problems.append(
                f"{zdf}: under the fixing preset {meta['fixed_in']} not clean: {fixed.violation or fixed.conformance}"
            )
    return problems
