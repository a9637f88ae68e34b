"""The corpus directory of a campaign: findings, engine queues, databases.

Layout::

    DIR/findings/<rules>-<invariant>-<kind>-<device>.zdf   minimized reproducer
    DIR/findings/<...>.json                               metadata (signature, engine, time to find, seed, ...)
    DIR/native/<sha1>.bin                                 native engine corpus entries
    DIR/atheris/queue/, DIR/atheris/crashes/              libFuzzer corpus and crash artifacts
    DIR/hypothesis/                                       hypothesis example database

One finding per signature (invariant, action kind, device type, rules):
the file name is the signature, so deduplication survives restarts and two
campaigns' corpora merge by copying files.

Every file is written atomically (a temporary file in the same directory,
fsync, ``os.replace``, fsync of the directory): a campaign killed at any
instant leaves each file either absent or complete. A finding is written
twice: as found (``"minimized": false``) the moment it is found, then
replaced by its minimized form, so a kill during minimization loses nothing
— the next run minimizes it again.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import zdfuzz


class Signature(NamedTuple):
    """What "the same bug" means: campaigns keep one reproducer per signature."""

    invariant: str
    kind: str
    device: str
    rules: str

    def slug(self) -> str:
        def clean(s: str) -> str:
            return "".join(c if c.isalnum() or c in "-_." else "_" for c in s)

        return "-".join(clean(x) for x in (self.rules, self.invariant, self.kind, self.device))

    def __str__(self) -> str:
        return f"{self.invariant} {self.kind} {self.device} {self.rules}"


def atomic_write(path: Path, data: bytes | str) -> None:
    """Write ``path`` so that it is either its old content or all of ``data``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


@dataclass
class StoredFinding:
    """A finding on disk."""

    signature: Signature
    zdf: Path
    meta: dict[str, Any]

    @property
    def minimized(self) -> bool:
        return bool(self.meta.get("minimized", False))


class CorpusError(Exception):
    """A corpus file that cannot be read (names the file and the problem)."""


class Corpus:
    """One campaign directory (see the module docstring)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.findings_dir = self.root / "findings"
        self.native_dir = self.root / "native"
        self.atheris_queue = self.root / "atheris" / "queue"
        self.atheris_crashes = self.root / "atheris" / "crashes"
        self.hypothesis_dir = self.root / "hypothesis"

    def create(self) -> None:
        for d in (self.findings_dir, self.native_dir, self.atheris_queue, self.atheris_crashes, self.hypothesis_dir):
            d.mkdir(parents=True, exist_ok=True)

    # -- findings ---------------------------------------------------------

    def finding_paths(self, sig: Signature) -> tuple[Path, Path]:
        # not with_suffix: a preset name may contain dots (v4.10, v6.19-orig)
        slug = sig.slug()
        return self.findings_dir / f"{slug}.zdf", self.findings_dir / f"{slug}.json"

    def write_finding(self, sig: Signature, program: zdfuzz.Program, meta: dict[str, Any]) -> Path:
        """Write (or replace) the reproducer of ``sig`` and its metadata."""
        zdf, js = self.finding_paths(sig)
        header = f"# {sig}: {meta.get('message', '')}\n".replace("\n", " ").rstrip() + "\n"
        header += (
            f"# found by {meta.get('engine', '?')} (seed {meta.get('seed')}) after {meta.get('time_to_find', 0):.2f}s"
        )
        header += "; minimized\n" if meta.get("minimized") else "; not minimized yet\n"
        atomic_write(zdf, header + program.to_text())
        full = {"signature": sig._asdict(), **meta, "reproducer": zdf.name}
        atomic_write(js, json.dumps(full, indent=2, sort_keys=True) + "\n")
        return zdf

    def findings(self) -> list[StoredFinding]:
        """Every finding on disk, in file-name order. A ``.zdf`` without its
        metadata (a kill between the two writes) is still a finding: its
        signature comes from replaying it."""
        out: list[StoredFinding] = []
        if not self.findings_dir.is_dir():
            return out
        for zdf in sorted(self.findings_dir.glob("*.zdf")):
            js = zdf.with_suffix(".json")
            meta: dict[str, Any] = {}
            sig: Signature | None = None
            if js.is_file():
                try:
                    meta = json.loads(js.read_text())
                    sig = Signature(**meta["signature"])
                except (ValueError, KeyError, TypeError) as e:
                    raise CorpusError(f"{js}: unreadable metadata: {e}") from e
            if sig is None:
                sig = replay_signature(zdf)
                if sig is None:
                    continue
                meta = {"minimized": False, "engine": "unknown"}
            out.append(StoredFinding(sig, zdf, meta))
        return out

    def known(self) -> set[Signature]:
        return {f.signature for f in self.findings()}

    # -- native engine queue ----------------------------------------------

    def save_native_entries(self, entries: list[bytes]) -> None:
        for e in entries:
            name = hashlib.sha1(e).hexdigest() + ".bin"
            p = self.native_dir / name
            if not p.exists():
                atomic_write(p, e)

    def native_entries(self) -> list[bytes]:
        if not self.native_dir.is_dir():
            return []
        return [p.read_bytes() for p in sorted(self.native_dir.glob("*.bin"))]


def corpora_under(root: Path) -> list[Corpus]:
    """Every campaign directory at or below ``root`` (one with a
    ``findings`` directory), in path order: a soak keeps one per campaign."""
    out: list[Corpus] = []
    for d in sorted([root, *(p for p in root.rglob("findings") if p.is_dir())]):
        base = d if d == root else d.parent
        if (base / "findings").is_dir() and all(c.root != base for c in out):
            out.append(Corpus(base))
    return out


def load_program(path: str | os.PathLike[str]) -> zdfuzz.Program:
    """Read a ``.zdf`` file; errors name the file, the line and the problem
    (raised as ``CorpusError``)."""
    p = Path(path)
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise CorpusError(f"{p}: cannot read: {e}") from e
    try:
        return zdfuzz.Program.parse(text)
    except zdfuzz.ProgramError as e:
        raise CorpusError(f"{p}:{e.line}:{e.col}: {e.message}") from e


def replay_signature(path: Path, rules: str | zdfuzz.Rules | None = None) -> Signature | None:
    """The signature a ``.zdf`` replays to (None if clean or unreadable)."""
    try:
        program = load_program(path)
        machine = zdfuzz.Machine.for_program(program, rules=rules)
        verdict = machine.run(program, trace=False)
    except (CorpusError, ValueError):
        return None
    return Signature(*verdict.signature) if verdict.signature else None


def merge(dest: Corpus, sources: list[Corpus]) -> list[tuple[Signature, Path, str]]:
    """Copy into ``dest`` every finding of ``sources`` whose signature it
    lacks, or whose reproducer is shorter than the one it has. Returns
    (signature, path, "added" | "replaced" | "kept")."""
    dest.create()
    have = {f.signature: f for f in dest.findings()}
    report: list[tuple[Signature, Path, str]] = []
    for src in sources:
        for f in src.findings():
            program = load_program(f.zdf)
            mine = have.get(f.signature)
            if mine is not None:
                if len(load_program(mine.zdf)) <= len(program):
                    report.append((f.signature, mine.zdf, "kept"))
                    continue
                what = "replaced"
            else:
                what = "added"
            meta = {k: v for k, v in f.meta.items() if k not in ("signature", "reproducer")}
            meta["merged_from"] = str(f.zdf)
            path = dest.write_finding(f.signature, program, meta)
            have[f.signature] = StoredFinding(f.signature, path, meta)
            report.append((f.signature, path, what))
    return report
