"""The corpus directory of a campaign: findings, engine queues, databases.

Layout::

    DIR/findings/<rules>-<invariant>-<kind>-<device>.zdf   minimized reproducer
    DIR/findings/<...>.json                               metadata (signature, engine, time to find, seed, ...)
    DIR/native/<sha1>.bin, DIR/native/pack-<...>.pack     native engine corpus entries (one, or a batch)
    DIR/atheris/queue/, DIR/atheris/crashes/              libFuzzer corpus and crash artifacts
    DIR/hypothesis/                                       hypothesis example database (and its home)
    DIR/retired/                                          findings `zdfuzz corpus check --retire` set aside
    DIR/.lock                                             held by the campaign running on DIR (who: inside)

One finding per signature (invariant, action kind, device type, rules):
the file name is the signature, so deduplication survives restarts and two
campaigns' corpora merge by copying files.

Every file is written atomically (a temporary file in the same directory,
fsync, ``os.replace``, fsync of the directory): a campaign killed at any
instant leaves each file either absent or complete. A finding is written
twice: as found (``"minimized": false``) the moment it is found, then
replaced by its minimized form, so a kill during minimization loses nothing
— the next run minimizes it again.

Findings are durable at once; the native engine's corpus entries (many, and
only a speed-up for the next run) are kept in memory and written as one
pack file per checkpoint (:data:`CHECKPOINT_SECONDS`, and at the end of a
campaign): a kill loses at most the last interval's corpus growth, never a
finding, and a campaign spends two fsyncs per interval, not two per entry.

One campaign at a time: :meth:`Corpus.lock` takes an exclusive lock on
``DIR/.lock`` (released by the kernel when the process ends, however it
ends) and a second campaign on the same directory is refused with the
holder's pid. Holding it, a campaign removes the temporary files an
interrupted write left (``.NAME.*.tmp``).

The corpus directories must be directories inside DIR: a symbolic link in
their place is refused (a campaign writes only where it was asked).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import stat
import struct
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import zdfuzz
from zdfuzz import inputs

#: seconds between two writes of the native engine's new corpus entries
CHECKPOINT_SECONDS = 5.0

_PACK_MAGIC = b"ZDFPACK1"


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
    _fsync_dir(path.parent)


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


@dataclass
class Check:
    """What replaying a stored finding says about it (:meth:`Corpus.check`)."""

    #: "ok" (replays to its signature), "stale" (no longer does: clean, or
    #: another signature), "unreadable" (does not parse or does not run),
    #: "unchecked" (its rules cannot be resolved here)
    status: str
    zdf: Path
    signature: Signature | None
    detail: str


def _meta_problem(meta: Any) -> str | None:
    """Why a finding's metadata is unusable (None if it is fine)."""
    if not isinstance(meta, dict):
        return "expected a JSON object"
    sig = meta.get("signature")
    if not isinstance(sig, dict) or set(sig) != set(Signature._fields):
        return f"`signature` must be an object with {', '.join(Signature._fields)}"
    for k in Signature._fields:
        if not isinstance(sig[k], str) or not sig[k]:
            return f"`signature.{k}` must be a non-empty string, got {json.dumps(sig[k])}"
    t = meta.get("time_to_find")
    if t is not None and (isinstance(t, bool) or not isinstance(t, int | float)):
        return f"`time_to_find` must be a number of seconds, got {json.dumps(t)}"
    for k in ("engine", "message", "category"):
        if k in meta and not isinstance(meta[k], str):
            return f"`{k}` must be a string, got {json.dumps(meta[k])}"
    for k in ("actions", "original_actions"):
        if k in meta and (isinstance(meta[k], bool) or not isinstance(meta[k], int)):
            return f"`{k}` must be a whole number, got {json.dumps(meta[k])}"
    if "minimized" in meta and not isinstance(meta["minimized"], bool):
        return f"`minimized` must be true or false, got {json.dumps(meta['minimized'])}"
    return None


class Corpus:
    """One campaign directory (see the module docstring)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.findings_dir = self.root / "findings"
        self.native_dir = self.root / "native"
        self.atheris_queue = self.root / "atheris" / "queue"
        self.atheris_crashes = self.root / "atheris" / "crashes"
        self.hypothesis_dir = self.root / "hypothesis"
        self.retired_dir = self.root / "retired"
        self.checkpoint_seconds = CHECKPOINT_SECONDS
        #: files that are no finding: unparsable .zdf without metadata, a
        #: directory where a finding's file belongs (set by findings())
        self.problems: list[tuple[Path, str]] = []
        self._pending: list[bytes] = []
        self._saved: set[str] = set()
        self._last_checkpoint = time.monotonic()
        self._lock_fd: int | None = None

    def _dirs(self) -> tuple[Path, ...]:
        return (
            self.root,
            self.findings_dir,
            self.native_dir,
            self.root / "atheris",
            self.atheris_queue,
            self.atheris_crashes,
            self.hypothesis_dir,
        )

    def check_layout(self) -> None:
        """Refuse a corpus whose directories are symbolic links or files."""
        for d in self._dirs():
            try:
                st = os.lstat(d)
            except FileNotFoundError:
                continue
            except OSError as e:
                raise CorpusError(f"{d}: cannot use: {e.strerror}") from e
            if stat.S_ISLNK(st.st_mode):
                raise CorpusError(
                    f"{d}: is a symbolic link; a corpus keeps its files inside its directory (replace the link with a directory)"
                )
            if not stat.S_ISDIR(st.st_mode):
                raise CorpusError(f"{d}: not a directory (the corpus needs a directory here)")

    def create(self) -> None:
        self.check_layout()
        for d in self._dirs():
            try:
                d.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise CorpusError(f"{d}: cannot create: {e.strerror}") from e
        self.check_layout()

    def check_writable(self) -> None:
        """Say now, not at the first finding, that the corpus cannot be written."""
        for d in (self.findings_dir, self.native_dir):
            try:
                fd, tmp = tempfile.mkstemp(dir=d, prefix=".write-test.", suffix=".tmp")
                os.close(fd)
                os.unlink(tmp)
            except OSError as e:
                raise CorpusError(f"{d}: cannot write: {e.strerror}; a campaign writes its findings here") from e

    # -- one campaign at a time -----------------------------------------------

    def lock(self, what: str) -> None:
        """Take the corpus for one campaign (``what`` says which, for the
        message another one gets). Raises ``CorpusError`` naming the holder."""
        path = self.root / ".lock"
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except OSError as e:
            raise CorpusError(f"{path}: cannot open the corpus lock: {e.strerror}") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = ""
            try:
                info = json.loads(os.pread(fd, 4096, 0) or b"{}")
                holder = f" (pid {info.get('pid')}: {info.get('what')}, since {info.get('since')})"
            except (OSError, ValueError, AttributeError):
                pass
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise CorpusError(
                    f"{self.root}: in use by another campaign{holder}; wait for it to end or use another --corpus"
                ) from e
            raise CorpusError(f"{path}: cannot lock: {e.strerror}") from e
        info = json.dumps({"pid": os.getpid(), "what": what, "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        os.ftruncate(fd, 0)
        os.pwrite(fd, info.encode() + b"\n", 0)
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def remove_temporary_files(self) -> list[Path]:
        """Remove what interrupted atomic writes left (call holding the lock)."""
        gone = []
        for d in (*self._dirs(), self.retired_dir):
            if not d.is_dir():
                continue
            for p in d.glob(".*.tmp"):
                try:
                    p.unlink()
                    gone.append(p)
                except OSError:
                    pass
        return gone

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
        self.check_layout()
        self.problems = []
        if not self.findings_dir.is_dir():
            return out
        for zdf in sorted(self.findings_dir.glob("*.zdf")):
            js = zdf.with_suffix(".json")
            meta: dict[str, Any] = {}
            sig: Signature | None = None
            if not inputs.is_regular(zdf):
                self.problems.append((zdf, "not a regular file, not a finding"))
                continue
            if js.exists() and not inputs.is_regular(js):
                raise CorpusError(f"{js}: not a regular file (a finding's metadata belongs here)")
            if js.exists():
                try:
                    raw = inputs.read_bytes(js, 1 << 20, zdfuzz.ProgramError).decode()
                    meta = json.loads(raw)
                except zdfuzz.ZdfuzzError as e:
                    raise CorpusError(f"{js}: unreadable metadata: {e.message}") from e
                except UnicodeDecodeError as e:
                    raise CorpusError(f"{js}: unreadable metadata: not UTF-8") from e
                except json.JSONDecodeError as e:
                    raise CorpusError(f"{js}:{e.lineno}:{e.colno}: unreadable metadata: {e.msg}") from e
                problem = _meta_problem(meta)
                if problem is not None:
                    raise CorpusError(f"{js}: unreadable metadata: {problem}")
                sig = Signature(**meta["signature"])
            if sig is None:
                sig = replay_signature(zdf)
                if sig is None:
                    self.problems.append((zdf, "no metadata, and it does not parse or replay to a violation"))
                    continue
                meta = {"minimized": False, "engine": "unknown"}
            out.append(StoredFinding(sig, zdf, meta))
        return out

    def check(self, rules: zdfuzz.Rules | None = None) -> list[Check]:
        """Replay every finding: does it still break its signature? Under
        ``rules`` for findings filed under that name, else under the preset
        its signature names."""
        out: list[Check] = []
        found = self.findings()
        for path, problem in self.problems:
            out.append(Check("unreadable", path, None, problem))
        for f in found:
            out.append(check_finding(f, rules))
        return sorted(out, key=lambda c: str(c.zdf))

    def retire(self, c: Check) -> Path:
        """Move a finding (its ``.zdf`` and ``.json``) to ``DIR/retired``."""
        self.retired_dir.mkdir(exist_ok=True)
        dest = self.retired_dir / c.zdf.name
        for src in (c.zdf, c.zdf.with_suffix(".json")):
            if src.exists():
                os.replace(src, self.retired_dir / src.name)
        _fsync_dir(self.retired_dir)
        _fsync_dir(self.findings_dir)
        return dest

    def known(self) -> set[Signature]:
        return {f.signature for f in self.findings()}

    # -- native engine queue ----------------------------------------------

    def save_native_entries(self, entries: list[bytes]) -> None:
        """Queue entries; they are written at the next checkpoint (at once
        when ``checkpoint_seconds`` is 0: one durable file each)."""
        for e in entries:
            h = hashlib.sha1(e).hexdigest()
            if h in self._saved:
                continue
            self._saved.add(h)
            if self.checkpoint_seconds <= 0:
                atomic_write(self.native_dir / f"{h}.bin", e)
            else:
                self._pending.append(e)
        self.checkpoint_if_due()

    def checkpoint_if_due(self) -> None:
        if self._pending and time.monotonic() - self._last_checkpoint >= self.checkpoint_seconds:
            self.checkpoint()

    def checkpoint(self) -> None:
        """Write the queued entries as one pack file (atomic, durable)."""
        self._last_checkpoint = time.monotonic()
        if not self._pending:
            return
        body = b"".join(struct.pack("<I", len(e)) + e for e in self._pending)
        name = f"pack-{time.time_ns()}-{os.getpid()}-{hashlib.sha1(body).hexdigest()[:12]}.pack"
        atomic_write(self.native_dir / name, _PACK_MAGIC + body)
        self._pending.clear()

    def native_entries(self) -> list[bytes]:
        """Every saved entry (single files and packs), each once."""
        if not self.native_dir.is_dir():
            return []
        out: dict[str, bytes] = {}
        for p in sorted(self.native_dir.iterdir()):
            if p.name.startswith(".") or not inputs.is_regular(p):
                continue
            if p.suffix == ".bin":
                data = [p.read_bytes()]
            elif p.suffix == ".pack":
                data = _unpack(p.read_bytes())
            else:
                continue
            for e in data:
                out.setdefault(hashlib.sha1(e).hexdigest(), e)
        self._saved.update(out)
        return list(out.values())


def _unpack(raw: bytes) -> list[bytes]:
    """The entries of a pack (a damaged one gives what it holds whole)."""
    if not raw.startswith(_PACK_MAGIC):
        return []
    out, pos = [], len(_PACK_MAGIC)
    while pos + 4 <= len(raw):
        (n,) = struct.unpack_from("<I", raw, pos)
        if pos + 4 + n > len(raw):
            break
        out.append(raw[pos + 4 : pos + 4 + n])
        pos += 4 + n
    return out


def _fsync_dir(d: Path) -> None:
    dfd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def check_finding(f: StoredFinding, rules: zdfuzz.Rules | None = None) -> Check:
    """Replay one stored finding against its signature (see :class:`Check`)."""
    try:
        program = load_program(f.zdf)
    except CorpusError as e:
        return Check("unreadable", f.zdf, f.signature, str(e))
    if rules is not None and rules.name == f.signature.rules:
        r = rules
    else:
        try:
            r = zdfuzz.Rules.resolve(f.signature.rules)
        except zdfuzz.RulesError:
            return Check("unchecked", f.zdf, f.signature, f"rules {f.signature.rules} are not a preset here")
    if r.name != f.signature.rules:
        return Check("unchecked", f.zdf, f.signature, f"rules {f.signature.rules} resolve to {r.name}")
    try:
        verdict = zdfuzz.Machine.for_program(program, rules=r).run(program, trace=False)
    except zdfuzz.ZdfuzzError as e:
        return Check("unreadable", f.zdf, f.signature, f"does not run under {r.name}: {inputs.error_line(e)}")
    now = Signature(*verdict.signature) if verdict.signature else None
    if now == f.signature:
        return Check("ok", f.zdf, f.signature, "replays to its signature")
    return Check(
        "stale", f.zdf, f.signature, f"no longer reproduces: now {'clean' if now is None else str(now)} under {r.name}"
    )


def corpora_under(root: Path) -> list[Corpus]:
    """Every campaign directory at or below ``root`` (one with a
    ``findings`` directory), in path order: a soak keeps one per campaign."""
    out: list[Corpus] = []
    for d in sorted([root, *(p for p in root.rglob("findings") if p.is_dir() and not p.is_symlink())]):
        base = d if d == root else d.parent
        f = base / "findings"
        # the directory asked for is a corpus whenever it has a `findings`
        # entry at all: a file or a symlink there is reported by findings()
        if (f.is_dir() or (base == root and (f.exists() or f.is_symlink()))) and all(c.root != base for c in out):
            out.append(Corpus(base))
    return out


def load_program(path: str | os.PathLike[str]) -> zdfuzz.Program:
    """Read a ``.zdf`` file; errors name the file, the line and the problem
    (raised as ``CorpusError``)."""
    p = Path(path)
    try:
        text = inputs.read_text(p)
        return zdfuzz.Program.parse(text)
    except zdfuzz.ZdfuzzError as e:
        if e.file:
            raise CorpusError(inputs.error_line(e)) from e
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
