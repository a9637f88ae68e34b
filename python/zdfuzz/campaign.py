"""Fuzz campaigns: run an engine, deduplicate, minimize, write reproducers.

``zdfuzz fuzz`` builds a :class:`Config` and calls :func:`run`. Engines:

- ``native``: the Rust engine (``zdfuzz._core.NativeFuzzer``) in batches of
  a quarter second; ``--jobs N`` runs N worker processes with seeds
  ``seed, seed+1, ...``.
- ``hypothesis``: rounds of ``zdfuzz.hypothesis.ZoneDeviceStateMachine``
  with the example database in ``DIR/hypothesis``; jobs as for native.
- ``atheris``: libFuzzer through ``drivers/atheris_harness.py`` with the
  coverage-instrumented core preloaded; ``--jobs N`` is libFuzzer's
  ``-fork=N``. A new signature crashes the harness; the campaign reads the
  crash artifact, and (without -fork) starts libFuzzer again on the same
  corpus for the time left.

Every finding passes through :meth:`Campaign.handle`: dropped if its
signature is known (from this run or the corpus), else written at once as
found, minimized in the core, and written again (see ``zdfuzz.corpus``).
A campaign killed at any moment and restarted on the same ``--corpus``
keeps every finding it had written and does not report them again.

A campaign holds the corpus lock for its whole run (a second campaign on
the same directory is refused), removes what interrupted writes left, and
replays the stored findings first: one that no longer reproduces its
signature (the rules or the model changed) is reported as stale and its
signature is open to be found again; one that does not parse is reported.

``--jobs`` workers die with the campaign (a parent-death signal, and a
check that the parent is still there), ignore Ctrl-C (the campaign stops
them and prints its summary; ``interrupted`` is set), and never write to
the corpus themselves.
"""

from __future__ import annotations

import ctypes
import json
import multiprocessing as mp
import os
import queue
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

import zdfuzz
from zdfuzz.corpus import Corpus, CorpusError, Signature, check_finding, load_program
from zdfuzz.term import styled

ALL_TYPES = tuple(zdfuzz.DEVICE_TYPES)
#: a campaign's types when none are named: the four every era has
DEFAULT_TYPES = tuple(zdfuzz.DEFAULT_DEVICE_TYPES)
ENGINES = ("native", "hypothesis", "atheris")
#: the rules a campaign fuzzes when none are named (the README's main job:
#: the 2020 proposal)
DEFAULT_CAMPAIGN_RULES = "p20"


#: the shape options a campaign can turn on (each a ``Config`` flag and a
#: ``zdfuzz.Shape`` field of the same name)
SHAPE_OPTIONS = ("faults", "devdax_pmd", "fsdax_pmd")


@dataclass
class Config:
    rules: str = DEFAULT_CAMPAIGN_RULES
    types: tuple[str, ...] = DEFAULT_TYPES
    engine: str = "native"
    seconds: float = 30.0
    jobs: int = 1
    corpus: Path = Path("zdfuzz-corpus")
    seed: int | None = None
    #: stop after this many executions (programs; hypothesis: examples;
    #: atheris: libFuzzer runs) — with ``seed``, an exactly reproducible run
    execs: int | None = None
    max_actions: int = 64
    #: failure injection (native and hypothesis engines): programs may arm `fail_next`
    faults: bool = False
    #: device-dax devices aligned to a PMD (PMD mappings, compound folios
    #: from v5.17): the ``devdax_pmd=1`` shape
    devdax_pmd: bool = False
    #: FS-DAX entries PMD-sized (PMD mappings, compound folios from v6.15):
    #: the ``fsdax_pmd=1`` shape
    fsdax_pmd: bool = False
    #: stop as soon as one of these signatures is found (after it is written):
    #: time-to-bug measurements need the first detection, not the full budget
    stop_on: frozenset[Signature] = frozenset()
    #: rules every finding is replayed under and labelled against
    #: (``zdfuzz.baseline``): "new" or "shared"; None: no labels
    baseline: str | None = None
    #: also run the same campaign on the baseline, labelling its findings
    #: "fixed" (clean under the change) or "shared"
    both: bool = False
    #: seconds between plain status lines when the console is not a terminal
    status_interval: float = 5.0
    #: append a JSON line of statistics to ``CORPUS/stats/<rules>-<engine>.jsonl``
    #: every this many seconds (0: never)
    stats_interval: float = 1.0
    #: the end of the campaign on CLOCK_MONOTONIC (the same clock in every
    #: process): set for ``--jobs`` workers, which start later than the
    #: campaign but must stop with it
    deadline: float | None = None

    #: run the workers (``jobs`` of them) on Ray: the cluster's address, or
    #: "local" (``zdfuzz.ray_backend``)
    ray: str | None = None


#: seconds the parent waits past the deadline for its workers' last words
WORKER_GRACE = 2.0


def worker_deadline(cfg: Config) -> float:
    """When a worker stops: the campaign's deadline, not its own start + time."""
    return cfg.deadline if cfg.deadline is not None else time.monotonic() + cfg.seconds


def worker_config(c: Campaign) -> Config:
    """The configuration ``--jobs`` workers get: the campaign's deadline."""
    from dataclasses import replace

    return replace(c.cfg, deadline=c.start + c.cfg.seconds)


class StopCampaign(Exception):
    """Raised by :meth:`Campaign.handle` when a ``stop_on`` signature is found."""


@dataclass
class Found:
    """A new finding of this campaign."""

    signature: Signature
    path: Path
    engine: str
    seconds: float
    actions: int
    original_actions: int
    message: str
    category: str
    #: against the baseline: "new", "shared" or "fixed"; None without one
    label: str | None = None
    #: what the reproducer does under the other rules
    other: str | None = None


@dataclass
class Campaign:
    cfg: Config
    console: Console
    rules: zdfuzz.Rules = field(init=False)
    corpus: Corpus = field(init=False)
    known: set[Signature] = field(init=False)
    found: list[Found] = field(default_factory=list)
    earlier: int = 0
    stats: dict[str, dict[str, float]] = field(default_factory=dict)
    start: float = field(default_factory=time.monotonic)
    live: Live | None = None
    #: rules each finding is replayed under (``Config.baseline``, or the
    #: change when this campaign runs on the baseline for ``--both``)
    judge: zdfuzz.Rules | None = None
    #: this campaign runs on the baseline: a finding clean under ``judge`` is "fixed"
    of_baseline: bool = False
    stats_path: Path | None = None
    #: with ``Config.both``: the campaign on the baseline
    baseline_run: Campaign | None = None
    _drawn: float = 0.0
    #: Ctrl-C ended the campaign (the CLI exits 130)
    interrupted: bool = False
    #: stored findings that no longer reproduce their signature
    stale: list[Signature] = field(default_factory=list)
    _status: float = 0.0
    _logged: float = -1e9

    def __post_init__(self) -> None:
        self.rules = zdfuzz.Rules.resolve(self.cfg.rules)
        if self.judge is None and self.cfg.baseline is not None:
            self.judge = zdfuzz.Rules.resolve(self.cfg.baseline)
        self.corpus = Corpus(self.cfg.corpus)
        self.corpus.create()
        self.corpus.check_writable()
        self.corpus.lock(f"zdfuzz fuzz --engine {self.cfg.engine} --rules {self.rules.name}")
        try:
            self._open()
        except BaseException:
            self.corpus.unlock()
            raise

    def _open(self) -> None:
        self.corpus.remove_temporary_files()
        if self.cfg.stats_interval > 0:
            stamp = time.strftime("%Y%m%dT%H%M%S")
            self.stats_path = (
                self.corpus.root / "stats" / f"{self.rules.name}-{self.cfg.engine}-{stamp}-seed{self.cfg.seed}.jsonl"
            )
            self.stats_path.parent.mkdir(parents=True, exist_ok=True)
        stored = self.corpus.findings()
        for path, problem in self.corpus.problems:
            self.console.print(f"unreadable: {path}: {problem}", style="yellow", highlight=False, soft_wrap=True)
        live = []
        for f in stored:
            c = check_finding(f, self.rules)
            if c.status in ("stale", "unreadable"):
                self.stale.append(f.signature)
                self.console.print(
                    f"{c.status}: {f.signature} ({f.zdf}): {c.detail}; it will be found again if it can be "
                    f"(`zdfuzz corpus check {self.corpus.root} --retire` sets it aside)",
                    style="yellow",
                    highlight=False,
                    soft_wrap=True,
                )
            else:
                live.append(f)
        self.known = {f.signature for f in live}
        self.earlier = sum(1 for f in live if f.signature.rules == self.rules.name)
        # a kill during minimization left a finding as found: finish it
        for f in live:
            if not f.minimized:
                try:
                    program = load_program(f.zdf)
                except CorpusError:
                    continue
                self._minimize_and_write(f.signature, program, dict(f.meta))

    # -- findings -----------------------------------------------------------

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def handle(
        self,
        sig: Signature,
        program: zdfuzz.Program,
        engine: str,
        message: str,
        category: str,
        extra: dict[str, Any] | None = None,
        detected: float | None = None,
    ) -> None:
        """``detected``: when the engine found it (``time.monotonic()``), if
        it reports findings in batches; else now."""
        if sig in self.known:
            return
        self.known.add(sig)
        found_after = (time.monotonic() if detected is None else detected) - self.start
        meta: dict[str, Any] = {
            "engine": engine,
            "time_to_find": round(found_after, 3),
            "seed": self.cfg.seed,
            "message": message,
            "category": category,
            "types": list(self.cfg.types),
            "zdfuzz": zdfuzz.__version__,
            "found_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "original_actions": len(program),
            "minimized": False,
            **(extra or {}),
        }
        # as found, at once: a kill from here on loses nothing
        self.corpus.write_finding(sig, program, meta)
        path, n = self._minimize_and_write(sig, program, meta)
        f = Found(sig, path, engine, meta["time_to_find"], n, len(program), message, category)
        f.label, f.other = meta.get("label"), meta.get("baseline_replay")
        self.found.append(f)
        self.log_stats(force=True)
        other = f" ({f.other})" if f.other else ""
        self.console.print(
            styled(f.label or "found", {"new": "bold red", "fixed": "bold green"}.get(f.label or "", "bold")),
            f"{sig}{other} after {f.seconds:.1f}s: {f.original_actions} -> {f.actions} actions -> {path}",
            highlight=False,
            soft_wrap=True,
        )
        if sig in self.cfg.stop_on:
            # unwinds out of the engine loop into run(); everything is written
            raise StopCampaign(str(sig))

    def _minimize_and_write(self, sig: Signature, program: zdfuzz.Program, meta: dict[str, Any]) -> tuple[Path, int]:
        t0 = time.monotonic()
        try:
            m = zdfuzz.minimize(program, rules=self.rules, signature=sig)
            small = m.program
            meta["minimize_runs"] = m.runs
        except zdfuzz.MinimizeError as e:
            # keep the program as found; say why
            meta["minimize_error"] = str(e)
            small = program
        meta["minimized"] = "minimize_error" not in meta
        meta["minimize_seconds"] = round(time.monotonic() - t0, 3)
        meta["actions"] = len(small)
        # the message of the reproducer as written (pfn and pgmap numbers change)
        v = zdfuzz.Machine.for_program(small, rules=self.rules).run(small, trace=False).violation
        if v is not None and v.message != meta.get("message"):
            meta.setdefault("original_message", meta.get("message"))
            meta["message"] = v.message
        if self.judge is not None:
            from zdfuzz.baseline import label

            lab, r = label(sig, small, self.judge, of_baseline=self.of_baseline)
            meta["label"] = lab
            meta["baseline"] = self.judge.name
            meta["baseline_replay"] = r.describe()
        return self.corpus.write_finding(sig, small, meta), len(small)

    # -- statistics -------------------------------------------------------------

    def totals(self) -> dict[str, float]:
        """The campaign's counters now, summed over its engines' processes."""
        el = max(self.elapsed(), 1e-9)
        execs = sum(s.get("execs", 0) for s in self.stats.values())
        return {
            "elapsed": round(el, 3),
            "execs": execs,
            "execs_per_s": round(execs / el, 1),
            "coverage": sum(s.get("edges", s.get("cov", 0)) for s in self.stats.values()),
            "corpus": sum(s.get("corpus", 0) for s in self.stats.values()),
            "findings": len(self.found),
        }

    def log_stats(self, force: bool = False) -> None:
        """Append a line to the campaign's stats file (JSON lines: elapsed
        seconds, wall time, executions, coverage, corpus size, findings), at
        most every ``stats_interval`` seconds unless ``force``."""
        if self.stats_path is None:
            return
        now = time.monotonic()
        if not force and now - self._logged < self.cfg.stats_interval:
            return
        self._logged = now
        line = {
            "schema": "zdfuzz.stats/1",
            "time": round(time.time(), 3),
            "rules": self.rules.name,
            "engine": self.cfg.engine,
            **self.totals(),
        }
        with open(self.stats_path, "a") as out:
            out.write(json.dumps(line, sort_keys=True) + "\n")

    # -- display --------------------------------------------------------------

    def update(self, source: str, stats: dict[str, Any]) -> None:
        self.stats[source] = {k: float(v) for k, v in stats.items() if isinstance(v, int | float)}
        self.tick()

    def status_line(self) -> str:
        t = self.totals()
        return (
            f"{t['elapsed']:.0f}/{self.cfg.seconds:.0f}s  {t['execs']:.0f} execs  {t['execs_per_s']:.0f}/s  "
            f"coverage {t['coverage']:.0f}  corpus {t['corpus']:.0f}  new findings {len(self.found)}"
        )

    def tick(self) -> None:
        """Redraw the live display, at most 4 times a second, from the main
        thread only: a refresh thread could run Python's garbage collector
        and drop a Machine, which must die on the thread that made it. Not
        on a terminal (a log), a plain status line every
        ``status_interval`` seconds instead."""
        if threading.current_thread() is not threading.main_thread():
            return
        self.log_stats()
        now = time.monotonic()
        if self.live is None:
            if now - self._status >= self.cfg.status_interval and self.cfg.status_interval > 0:
                self._status = now
                self.console.print(self.status_line(), highlight=False, markup=False, soft_wrap=True)
            return
        if now - self._drawn >= 0.25:
            self._drawn = now
            self.live.update(self.render(), refresh=True)

    def render(self) -> Group:
        el = max(self.elapsed(), 1e-9)
        execs = sum(s.get("execs", 0) for s in self.stats.values())
        t = Table(title=f"zdfuzz fuzz --engine {self.cfg.engine} --rules {self.rules.name}", expand=False)
        for col in ("elapsed", "execs", "execs/s", "coverage", "corpus", "new findings", "known before"):
            t.add_column(col, justify="right")
        cov = sum(s.get("edges", s.get("cov", 0)) for s in self.stats.values())
        corp = sum(s.get("corpus", 0) for s in self.stats.values())
        t.add_row(
            f"{el:.0f}/{self.cfg.seconds:.0f}s",
            f"{execs:.0f}",
            f"{execs / el:.0f}",
            f"{cov:.0f}",
            f"{corp:.0f}",
            str(len(self.found)),
            str(self.earlier),
        )
        by = Counter(f.signature.invariant for f in self.found)
        line = Text("findings by invariant: " + (", ".join(f"{k} x{v}" for k, v in sorted(by.items())) or "none yet"))
        return Group(t, line)

    def summary(self) -> None:
        if not self.found:
            self.console.print(
                f"no new finding in {self.elapsed():.1f}s (corpus {self.corpus.root}: "
                f"{self.earlier} earlier finding(s) under {self.rules.name})",
                highlight=False,
                soft_wrap=True,
            )
            return
        from zdfuzz.baseline import LABEL_ORDER

        found = sorted(self.found, key=lambda f: (LABEL_ORDER.get(f.label or "", 0), f.seconds))
        judge = self.judge.name if self.judge is not None else None
        titles = {
            "new": f"new under {self.rules.name}: not in {judge}",
            "shared": f"shared with {judge}: pre-existing",
            "fixed": f"fixed: found under {self.rules.name}, clean under {judge}",
            None: "found",
        }
        if self.of_baseline:
            titles["shared"] = f"shared with {judge}: still there"
        groups: dict[str | None, list[Found]] = {}
        for f in found:
            groups.setdefault(f.label, []).append(f)
        n = len(self.found)
        counts = ", ".join(f"{len(v)} {k}" for k, v in groups.items() if k is not None)
        self.console.print(
            f"{n} finding(s) in {self.elapsed():.1f}s" + (f" against {judge}: {counts}" if judge else ""),
            highlight=False,
            soft_wrap=True,
        )
        wide = self.console.is_terminal and self.console.width >= 120
        for lab, fs in groups.items():
            if not wide:
                self.console.print(f"{len(fs)} {titles[lab]}:", highlight=False, markup=False, soft_wrap=True)
                for f in fs:
                    self.console.print(
                        f"  {f.signature}  {f.category}  after {f.seconds:.1f}s  "
                        f"{f.original_actions} -> {f.actions} actions",
                        highlight=False,
                        markup=False,
                        soft_wrap=True,
                    )
                continue
            t = plain_table(title=f"{len(fs)} {titles[lab]}")
            for col in ("invariant", "action", "type", "rules", "class", "found after", "actions"):
                t.add_column(col, no_wrap=col in ("invariant", "action", "type", "rules"))
            for f in fs:
                s = f.signature
                t.add_row(
                    s.invariant,
                    s.kind,
                    s.device,
                    s.rules,
                    f.category,
                    f"{f.seconds:.1f}s",
                    f"{f.original_actions} -> {f.actions}",
                )
            self.console.print(t)
        self.console.print("reproducers written (each with its .json metadata):", highlight=False)
        for f in found:
            tag = f"{f.label}: " if f.label else ""
            self.console.print(f"  {tag}{f.path}", highlight=False, soft_wrap=True, markup=False)
        self.console.print(
            "replay one with `zdfuzz replay FILE`, read it with `zdfuzz explain FILE`", highlight=False, soft_wrap=True
        )


def plain_table(title: str | None = None) -> Table:
    """A table that keeps its columns' words whole at 80 columns."""
    return Table(title=title, expand=False)


def run(cfg: Config, console: Console | None = None) -> Campaign:
    """Run a campaign; returns it (``.found`` holds the new findings). With
    ``cfg.both``, the same campaign then runs on the baseline, and the
    baseline's campaign is ``.baseline_run`` of the result."""
    console = console or Console()
    if cfg.engine not in ENGINES:
        raise ValueError(f"unknown engine {cfg.engine!r}; engines: {', '.join(ENGINES)}")
    if cfg.seed is None:
        cfg.seed = random.SystemRandom().randrange(1 << 32)
    c = _run_one(cfg, console)
    if cfg.both and c.judge is not None:
        from dataclasses import replace

        assert cfg.baseline is not None
        bcfg = replace(cfg, rules=cfg.baseline, baseline=None, both=False)
        console.print()
        console.print(f"the same campaign on the baseline {c.judge.name}:", highlight=False)
        b = _run_one(bcfg, console, judge=c.rules)
        c.baseline_run = b
    return c


def _run_one(cfg: Config, console: Console, judge: zdfuzz.Rules | None = None) -> Campaign:
    c = Campaign(cfg, console, judge=judge, of_baseline=judge is not None)
    against = f", judged against {c.judge.name}" if c.judge is not None else ""
    console.print(
        f"zdfuzz {zdfuzz.__version__}: {cfg.engine} engine, rules {c.rules.name}{against}, types {','.join(cfg.types)}, "
        f"{cfg.seconds:g}s, {cfg.jobs} job(s), seed {cfg.seed} (rerun with --seed {cfg.seed}), corpus {cfg.corpus}",
        highlight=False,
        soft_wrap=True,
    )
    engine = {"native": run_native, "hypothesis": run_hypothesis, "atheris": run_atheris}[cfg.engine]
    if cfg.ray is not None:
        from zdfuzz import ray_backend

        engine = ray_backend.run_campaign
    live = Live(c.render(), console=console, auto_refresh=False, transient=False) if console.is_terminal else None
    c._status = time.monotonic()
    try:
        if live is not None:
            live.start()
        c.live = live
        try:
            engine(c)
        except KeyboardInterrupt:
            # everything found so far is on disk already; say what it is
            c.interrupted = True
            console.print("interrupted", highlight=False)
        except StopCampaign as e:
            console.print(f"stopped: found {e}", highlight=False)
        finally:
            c.log_stats(force=True)
            if live is not None:
                live.update(c.render(), refresh=True)
                live.stop()
            else:
                console.print(c.status_line(), highlight=False, markup=False, soft_wrap=True)
            c.live = None
        console.print()
        c.summary()
    except KeyboardInterrupt:
        # a second Ctrl-C while the summary is written
        c.interrupted = True
    finally:
        # the native engine's last corpus growth, then the corpus is free
        try:
            c.corpus.checkpoint()
        finally:
            c.corpus.unlock()
    return c


# ---------------------------------------------------------------------------
# native
# ---------------------------------------------------------------------------


def _native_fuzzer(cfg: Config, seed: int, known: set[Signature], corpus: Corpus) -> zdfuzz.NativeFuzzer:
    f = zdfuzz.NativeFuzzer(
        cfg.rules,
        shape=campaign_shape(cfg),
        seed=seed,
        max_actions=cfg.max_actions,
    )
    for sig in known:
        f.add_known(sig)
    # resume: the saved corpus brings its coverage back
    for e in corpus.native_entries():
        f.add_entry(e)
    f.take_new_entries()
    return f


def _native_loop(
    cfg: Config,
    seed: int,
    known: set[Signature],
    corpus: Corpus,
    deadline: float,
    execs: int | None,
    emit: Callable[[str, Any], None],
    alive: Callable[[], bool],
) -> None:
    # the engine times its findings from its creation; with this, a finding
    # keeps its own time, not the end of the batch that reported it
    born = time.monotonic()
    f = _native_fuzzer(cfg, seed, known, corpus)
    base = f.stats()["execs"]
    while time.monotonic() < deadline and alive():
        left = None if execs is None else execs - (f.stats()["execs"] - base)
        if left is not None and left <= 0:
            break
        for x in f.run(max_execs=left, seconds=min(0.25, max(0.0, deadline - time.monotonic()))):
            emit("finding", (x.signature, x.program.to_text(), x.message, x.category, x.execs, born + x.seconds))
        entries = f.take_new_entries()
        if entries:
            emit("entries", entries)
        emit("stats", f.stats())


def run_native(c: Campaign) -> None:
    cfg = c.cfg
    assert cfg.seed is not None
    deadline = c.start + cfg.seconds
    if cfg.jobs <= 1:

        def emit(what: str, data: Any) -> None:
            if what == "finding":
                sig, text, message, category, execs, detected = data
                c.handle(
                    Signature(*sig), zdfuzz.Program.parse(text), "native", message, category, {"execs": execs}, detected
                )
            elif what == "entries":
                c.corpus.save_native_entries(data)
            else:
                c.update("native", data)

        _native_loop(cfg, cfg.seed, c.known, c.corpus, deadline, cfg.execs, emit, lambda: True)
        return
    _run_workers(c, _native_worker)


def _worker_setup(parent: int) -> None:
    """In a ``--jobs`` worker: die with the campaign, leave Ctrl-C to it."""
    # Ctrl-C reaches the whole process group: the campaign stops the workers
    # (SIGINT came blocked from the campaign: ignore it, then unblock)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    if sys.platform.startswith("linux"):
        # PR_SET_PDEATHSIG: SIGKILL when the parent dies (kill -9 included)
        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:
        # the parent died before the signal was armed
        os._exit(0)


def _native_worker(cfg: Config, job: int, known: list[Signature], q: Any, parent: int, stop: Any) -> None:
    _worker_setup(parent)
    assert cfg.seed is not None
    execs = None if cfg.execs is None else -(-cfg.execs // cfg.jobs)
    deadline = worker_deadline(cfg)

    def emit(what: str, data: Any) -> None:
        q.put((job, what, data))

    try:
        _native_loop(
            cfg,
            cfg.seed + job,
            set(map(Signature._make, known)),
            Corpus(cfg.corpus),
            deadline,
            execs,
            emit,
            lambda: os.getppid() == parent and not stop.is_set(),
        )
    finally:
        q.put((job, "done", None))


def _run_workers(c: Campaign, target: Callable[..., None]) -> None:
    """``--jobs`` for native and hypothesis: worker processes with seeds
    seed+job; this process deduplicates, minimizes and writes."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    # set on Ctrl-C (or a stop_on finding): the workers ignore SIGINT and
    # would otherwise fuzz on, and report, until the campaign's deadline
    stop = ctx.Event()
    wcfg = worker_config(c)
    assert wcfg.deadline is not None
    procs = [
        ctx.Process(target=target, args=(wcfg, j, sorted(c.known), q, os.getpid(), stop), daemon=True)
        for j in range(c.cfg.jobs)
    ]
    running = len(procs)
    stop_at = wcfg.deadline + WORKER_GRACE
    stopped = False

    def one(job: int, what: str, data: Any) -> None:
        if what == "finding":
            # CLOCK_MONOTONIC: the workers' clock is this process's
            sig, text, message, category, execs, detected = data
            c.handle(
                Signature(*sig),
                zdfuzz.Program.parse(text),
                c.cfg.engine,
                message,
                category,
                {"job": job, "execs": execs, "job_seed": (c.cfg.seed or 0) + job},
                detected,
            )
        elif what == "entries":
            c.corpus.save_native_entries(data)
        elif what == "stats":
            c.update(f"{c.cfg.engine}-{job}", data)

    try:
        # the workers are born with SIGINT blocked (the mask survives fork
        # and exec) until they ignore it (_worker_setup): a Ctrl-C while
        # they start is the campaign's alone, and it is not lost here (it
        # stays pending until the mask is restored)
        blocked = threading.current_thread() is threading.main_thread()
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT}) if blocked else None
        try:
            for p in procs:
                p.start()
        finally:
            if old_mask is not None:
                signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        while running and time.monotonic() < stop_at:
            try:
                job, what, data = q.get(timeout=max(0.01, min(0.5, stop_at - time.monotonic())))
            except queue.Empty:
                c.tick()
                if not any(p.is_alive() for p in procs):
                    break
                continue
            if what == "done":
                running -= 1
            else:
                one(job, what, data)
    except BaseException:
        # Ctrl-C (or a stop_on finding): stop the workers now
        stopped = True
        raise
    finally:
        # past the deadline, or on Ctrl-C: every worker stops at its next
        # check (native: a quarter second; hypothesis: its round); take what
        # they sent (a finding is never dropped), then stop any straggler
        stop.set()
        last_words = time.monotonic() + WORKER_GRACE
        while running:
            try:
                job, what, data = q.get(timeout=0.5)
            except queue.Empty:
                if time.monotonic() < last_words and any(p.is_alive() for p in procs):
                    continue
                break
            except Exception:  # a worker died mid-message
                break
            if what == "done":
                running -= 1
            else:
                one(job, what, data)
        for p in procs:
            if p.pid is None:
                continue  # never started
            if stopped or p.is_alive():
                p.terminate()
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
                p.join(timeout=5)


# ---------------------------------------------------------------------------
# hypothesis
# ---------------------------------------------------------------------------


def _hypothesis_loop(
    cfg: Config,
    seed: int,
    known: set[Signature],
    deadline: float,
    execs: int | None,
    emit: Callable[[str, Any], None],
    alive: Callable[[], bool] | None = None,
) -> None:
    from zdfuzz.hypothesis import Finding, run_campaign

    def on_finding(f: Finding, _seconds: float) -> None:
        emit("finding", (tuple(f.signature), f.program.to_text(), f.message, f.category, None, None))

    run_campaign(
        cfg.rules,
        cfg.types,
        max(0.0, deadline - time.monotonic()),
        seed,
        str(Corpus(cfg.corpus).hypothesis_dir),
        known,
        on_finding,
        lambda s: emit("stats", s),
        max_examples=execs,
        shape=_shape_extras(cfg),
        alive=alive,
    )


def _shape_extras(cfg: Config) -> dict[str, int] | None:
    """The shape fields a campaign turns on beyond the types (None: none)."""
    extras = {k: 1 for k in SHAPE_OPTIONS if getattr(cfg, k)}
    return extras or None


def campaign_shape(cfg: Config) -> zdfuzz.Shape:
    """The shape of a native engine of the campaign: its types and options."""
    return zdfuzz.Shape(types=list(cfg.types), **(_shape_extras(cfg) or {}))


def run_hypothesis(c: Campaign) -> None:
    cfg = c.cfg
    assert cfg.seed is not None
    if cfg.jobs <= 1:

        def emit(what: str, data: Any) -> None:
            if what == "finding":
                sig, text, message, category, _, _ = data
                c.handle(Signature(*sig), zdfuzz.Program.parse(text), "hypothesis", message, category)
            else:
                c.update("hypothesis", data)

        _hypothesis_loop(cfg, cfg.seed, c.known, c.start + cfg.seconds, cfg.execs, emit)
        return
    _run_workers(c, _hypothesis_worker)


def _hypothesis_worker(cfg: Config, job: int, known: list[Signature], q: Any, parent: int, stop: Any) -> None:
    _worker_setup(parent)
    assert cfg.seed is not None
    execs = None if cfg.execs is None else -(-cfg.execs // cfg.jobs)
    try:
        _hypothesis_loop(
            cfg,
            cfg.seed + job,
            set(map(Signature._make, known)),
            worker_deadline(cfg),
            execs,
            lambda what, data: q.put((job, what, data)),
            lambda: os.getppid() == parent and not stop.is_set(),
        )
    finally:
        q.put((job, "done", None))


# ---------------------------------------------------------------------------
# atheris
# ---------------------------------------------------------------------------

_STATS = re.compile(r"#(\d+).*?cov: (\d+).*?corp: (\d+)")
_EXECS = re.compile(r"exec/s:? (\d+)")
_MODULES = re.compile(r"Loaded (\d+) modules\s+\((\d+) inline 8-bit counters\)")


def harness_command(c: Campaign, known_file: Path, lib: Path | None, preload: Path) -> tuple[list[str], dict[str, str]]:
    """The libFuzzer command line and environment (without time budget)."""
    harness = Path(__file__).parent / "drivers" / "atheris_harness.py"
    if not os.access(harness, os.X_OK):
        # libFuzzer's fork mode re-executes argv[0]: it must be executable
        copy = c.corpus.root / "atheris" / "atheris_harness.py"
        shutil.copyfile(harness, copy)
        copy.chmod(0o755)
        harness = copy
    env = dict(os.environ)
    env["LD_PRELOAD"] = str(preload)
    # the preloaded runtime is ASan's: its exit-time leak report would fail
    # every run on Python's own allocations
    env["ASAN_OPTIONS"] = "detect_leaks=0:" + env.get("ASAN_OPTIONS", "")
    if lib is not None:
        env["ZDFUZZ_SANCOV_CORE"] = str(lib)
    env["ZDFUZZ_HARNESS"] = json.dumps({"rules": c.cfg.rules, "types": list(c.cfg.types), "known": str(known_file)})
    # the shebang finds this interpreter (a virtualenv's python)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    cmd = [
        str(harness),
        str(c.corpus.atheris_queue),
        f"-artifact_prefix={c.corpus.atheris_crashes}/",
        "-detect_leaks=0",
        "-rss_limit_mb=4096",
        "-max_len=512",
        "-len_control=0",
        "-print_final_stats=1",
    ]
    return cmd, env


def _process_crashes(c: Campaign) -> None:
    from zdfuzz.drivers.atheris_harness import decode

    done = c.corpus.atheris_crashes / "done"
    done.mkdir(exist_ok=True)
    for p in sorted(c.corpus.atheris_crashes.glob("crash-*")):
        data = p.read_bytes()
        program = decode(data, c.cfg.rules, list(c.cfg.types))
        verdict = zdfuzz.Machine.for_program(program, rules=c.rules).run(program, trace=False)
        if verdict.signature is not None and verdict.violation is not None:
            v = verdict.violation
            # libFuzzer wrote the artifact when it found the input; this
            # process may see it up to a poll interval later
            written = time.monotonic() - max(0.0, time.time() - p.stat().st_mtime)
            c.handle(
                Signature(*verdict.signature),
                program,
                "atheris",
                v.message,
                v.category,
                {"artifact": str(done / p.name)},
                written if written >= c.start else None,
            )
        os.replace(p, done / p.name)


def run_atheris(c: Campaign, instrumented: bool = True) -> None:
    from zdfuzz.drivers.sancov import build_instrumented, check_atheris

    preload = check_atheris()
    lib = None
    if instrumented:
        c.console.print("building the coverage-instrumented core (cargo, profile fuzz, target/sancov) ...")
        lib = build_instrumented()
        # the budget is fuzzing time: the build does not count
        c.start = time.monotonic()
    known_file = c.corpus.root / "atheris" / "known.json"
    cmd, env = harness_command(c, known_file, lib, preload)
    runs_left = c.cfg.execs
    launch = 0
    while True:
        left = c.cfg.seconds - c.elapsed()
        if left < 1 or (runs_left is not None and runs_left <= 0):
            break
        from zdfuzz.corpus import atomic_write

        atomic_write(known_file, json.dumps(sorted(c.known)))
        args = cmd + [f"-max_total_time={int(left)}", f"-seed={(c.cfg.seed or 0) + launch}"]
        if runs_left is not None:
            args.append(f"-runs={runs_left}")
        if c.cfg.jobs > 1:
            args += [f"-fork={c.cfg.jobs}", "-ignore_crashes=1"]
        log = c.corpus.root / "atheris" / f"libfuzzer-{launch}.log"
        execs_done = _run_libfuzzer(c, args, env, log)
        _process_crashes(c)
        if runs_left is not None:
            runs_left -= max(execs_done, 1)
        launch += 1


def _run_libfuzzer(c: Campaign, args: list[str], env: dict[str, str], log: Path) -> int:
    """Run libFuzzer once, following its status lines; returns its executions."""
    last = 0
    with open(log, "w") as out:
        p = subprocess.Popen(
            args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, errors="replace"
        )
        assert p.stderr is not None
        stats: dict[str, Any] = {}

        def follow() -> None:
            nonlocal last
            assert p.stderr is not None
            for line in p.stderr:
                out.write(line)
                m = _STATS.search(line)
                if m:
                    last = int(m.group(1))
                    stats.update(execs=last, cov=int(m.group(2)), corpus=int(m.group(3)))
                    e = _EXECS.search(line)
                    if e:
                        stats["execs_per_s"] = int(e.group(1))
                    c.update("atheris", stats)
                mm = _MODULES.search(line)
                if mm:
                    stats["modules"] = int(mm.group(1))
                    stats["counters"] = int(mm.group(2))

        t = threading.Thread(target=follow, daemon=True)
        t.start()
        try:
            while p.poll() is None:
                time.sleep(0.25)
                c.tick()
                # fork mode keeps going after crashes: pick them up as they come
                if c.cfg.jobs > 1:
                    _process_crashes(c)
        finally:
            if p.poll() is None:
                p.terminate()
                p.wait(timeout=10)
            t.join(timeout=5)
    return last
