"""Beyond one machine: the explorer and fuzz campaigns on a Ray cluster.

Optional: ``pip install 'zdfuzz[ray]'``. Without Ray, :func:`require_ray`
raises :class:`RayMissing`, which the CLI reports with exit status 2.

**Explorer** (``zdfuzz explore --ray``). Level-synchronous breadth-first
search, sharded by fingerprint: worker ``i`` of ``n`` owns the states whose
fingerprint is ``i`` modulo ``n`` — their slice of the visited set and of the
frontier. Each level, every worker expands its frontier states with the
core's :class:`zdfuzz._core.Expander` and sends each successor to its owner
(worker to worker, as Ray object references, not through the driver); each
owner keeps the new ones and drains them. A state is named by its *path*, the
action ordinals from the initial state; per fingerprint the state with the
smallest path (lexicographic) wins. The single-process explorer orders states
by (parent's place in its level, action ordinal), which is the same order, so
both keep the same concrete states and count exactly the same states and
transitions, and both pick the same counterexample.

**Campaigns** (``zdfuzz fuzz --ray --workers N``). Each worker is a native
engine with its own seed (``seed + worker``) that runs in slices of about a
second and returns what it found: findings, new corpus entries, statistics.
The driver is an ordinary :class:`zdfuzz.campaign.Campaign`: findings are
deduplicated by signature across workers and against the corpus, written at
once and atomically to the one corpus directory, then minimized; the engines'
corpus entries are saved there too. Workers get the rules as TOML, the known
signatures and the saved corpus entries from the driver, so they need no
shared filesystem; a campaign restarted on the same corpus directory
(after the driver was killed, too) resumes with everything written so far.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any

import zdfuzz
from zdfuzz.campaign import campaign_shape
from zdfuzz.corpus import Signature

if TYPE_CHECKING:
    from zdfuzz.campaign import Campaign

INSTALL_HINT = "Ray is not installed: pip install 'zdfuzz[ray]'"

#: the address that starts a local cluster instead of joining one
LOCAL = "local"


class RayMissing(Exception):
    """Ray is not installed (the ``ray`` extra)."""


def require_ray() -> Any:
    try:
        import ray
    except ImportError as e:
        raise RayMissing(INSTALL_HINT) from e
    return ray


def connect(address: str = LOCAL, num_cpus: int | None = None) -> Any:
    """Join the cluster at ``address`` (``"auto"``: the one this machine
    belongs to), or start a local one (``"local"``); reuse a connection
    already made (tests start their own cluster)."""
    ray = require_ray()
    if not ray.is_initialized():
        if address == LOCAL:
            ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
    return ray


def _ordinal(o: int) -> bytes:
    # big-endian: byte order is numeric order, so paths of one level compare
    # lexicographically as the explorer's keys do
    return struct.pack(">I", o)


def _ordinals(path: bytes) -> list[int]:
    return [v for (v,) in struct.iter_unpack(">I", path)]


# ---------------------------------------------------------------------------
# the explorer
# ---------------------------------------------------------------------------


class ExploreShard:
    """One worker's slice of the search: the states whose fingerprint is
    ``index`` modulo ``workers``."""

    def __init__(self, rules_toml: str, shape: dict[str, Any], symmetry: bool, index: int, workers: int) -> None:
        rules = zdfuzz.Rules.from_toml(rules_toml)
        self.x = zdfuzz._core.Expander(rules, shape=zdfuzz.Shape(**shape), symmetry=symmetry)
        self.index, self.workers = index, workers
        self.seen: set[int] = set()
        #: this level's states: (path, state), sorted by path
        self.frontier: list[tuple[bytes, bytes]] = []

    def seed(self, fp: int, state: bytes) -> int:
        self.seen.add(fp)
        self.frontier = [(b"", state)]
        return 1

    def expand(self) -> tuple[Any, ...]:
        """Expand the frontier: one dict per owner {fingerprint: (path,
        state)} (the smallest path of each), then (transitions, the smallest
        path of a transition that breaks an invariant)."""
        buckets: list[dict[int, tuple[bytes, bytes]]] = [{} for _ in range(self.workers)]
        transitions = 0
        broke: bytes | None = None
        for path, state in self.frontier:
            successors, n, bad = self.x.expand(state)
            transitions += n
            if bad is not None:
                p = path + _ordinal(bad)
                broke = p if broke is None or p < broke else broke
            for ordinal, fp, succ in successors:
                owner = fp % self.workers
                if owner == self.index and fp in self.seen:
                    continue
                p = path + _ordinal(ordinal)
                best = buckets[owner].get(fp)
                if best is None or p < best[0]:
                    buckets[owner][fp] = (p, succ)
        return (*buckets, (transitions, broke))

    def absorb(self, *buckets: dict[int, tuple[bytes, bytes]]) -> tuple[int, bytes | None]:
        """Keep the new states sent to this owner (smallest path per
        fingerprint); they are the next frontier. Returns (new states, the
        smallest path of one whose drain breaks an invariant)."""
        best: dict[int, tuple[bytes, bytes]] = {}
        for bucket in buckets:
            for fp, (p, state) in bucket.items():
                if fp in self.seen:
                    continue
                cur = best.get(fp)
                if cur is None or p < cur[0]:
                    best[fp] = (p, state)
        self.seen.update(best)
        self.frontier = sorted(best.values())
        # sorted by path: the first one that breaks is the smallest (and the
        # search ends with this level, so the rest need no drain)
        for p, state in self.frontier:
            if self.x.drain_breaks(state):
                return len(self.frontier), p
        return len(self.frontier), None


@cache
def _remote_shard() -> Any:
    ray = require_ray()
    return ray.remote(num_cpus=1)(ExploreShard)


@dataclass
class RayExploreResult:
    """What ``zdfuzz.explore`` returns, for the sharded search (the fields the
    CLI and the tests read)."""

    stop: str
    states: int
    transitions: int
    depth_reached: int
    depth_limit: int
    seconds: float
    workers: int
    reduction: str
    levels: list[tuple[int, int, int, int]] = field(default_factory=list)
    counterexample: zdfuzz.Program | None = None
    violation: zdfuzz.Violation | None = None
    slept: int = 0
    #: not measured: the search's memory is the workers', across the cluster
    peak_memory: int | None = None

    @property
    def threads(self) -> int:
        return self.workers

    @property
    def complete(self) -> bool:
        return self.stop in ("depth", "exhausted", "violation")

    def summary(self) -> str:
        counts = f"{self.states} distinct states, {self.transitions} transitions, {self.seconds:.2f} seconds"
        if self.counterexample is not None and self.violation is not None:
            v = self.violation
            head = f"{v.invariant} ({v.category}) reachable in {len(self.counterexample)} actions (shortest) — {counts}"
        elif self.stop == "exhausted":
            head = f"no violation reachable at any depth: no new state after depth {self.depth_reached} — {counts}"
        else:
            head = f"no violation reachable within depth {self.depth_reached} — {counts}"
        bound = self.states * self.states / 2.0**65
        return f"{head}\n(Ray, {self.workers} workers; 64-bit state fingerprints: P(a collision hid a state) ≤ {bound:.1e})"


def explore(
    rules: str | zdfuzz.Rules,
    shape: zdfuzz.Shape | None = None,
    depth: int = 8,
    *,
    symmetry: bool = True,
    workers: int = 2,
    address: str = LOCAL,
) -> RayExploreResult:
    """:func:`zdfuzz.explore` sharded across ``workers`` Ray actors: the same
    states, transitions, verdict and counterexample."""
    if workers < 1:
        raise ValueError("workers must be at least 1")
    ray = connect(address, num_cpus=workers if address == LOCAL else None)
    r = rules if isinstance(rules, zdfuzz.Rules) else zdfuzz.Rules.resolve(rules)
    shape = shape or zdfuzz.Shape(ram=0, order=0)
    t0 = time.monotonic()
    here = zdfuzz._core.Expander(r, shape=shape, symmetry=symmetry)
    fields = shape.to_dict()
    cls = _remote_shard()
    shards = [cls.remote(r.to_toml(), fields, symmetry, i, workers) for i in range(workers)]
    fp, state, initial_breaks = here.initial()
    ray.get(shards[fp % workers].seed.remote(fp, state))
    states, transitions, frontier = 1, 0, 1
    levels = [(0, 1, 1, 0)]
    found: bytes | None = b"" if initial_breaks else None
    stop, d = "depth", 0
    while found is None:
        if frontier == 0:
            stop, d = "exhausted", max(d - 1, 0)
            break
        if d >= depth:
            break
        outs = [s.expand.options(num_returns=workers + 1).remote() for s in shards]
        stats = ray.get([o[workers] for o in outs])
        absorbed = ray.get([shards[j].absorb.remote(*[o[j] for o in outs]) for j in range(workers)])
        new = sum(n for n, _ in absorbed)
        d += 1
        states += new
        transitions += sum(t for t, _ in stats)
        frontier = new
        levels.append((d, new, states, transitions))
        bad = [p for _, p in stats if p is not None] + [p for _, p in absorbed if p is not None]
        if bad:
            found = min(bad)
    program = violation = None
    if found is not None:
        stop = "violation"
        program, violation, _verdict = here.counterexample(_ordinals(found))
    for s in shards:
        ray.kill(s)
    return RayExploreResult(
        stop=stop,
        states=states,
        transitions=transitions,
        depth_reached=d,
        depth_limit=depth,
        seconds=time.monotonic() - t0,
        workers=workers,
        reduction="symmetry" if symmetry else "none",
        levels=levels,
        counterexample=program,
        violation=violation,
    )


def explore_cli(
    rules: zdfuzz.Rules, shape: zdfuzz.Shape, depth: int, *, symmetry: bool, por: bool, address: str, workers: int
) -> RayExploreResult:
    """``zdfuzz explore --ray`` (the CLI has checked the options)."""
    if por:
        raise ValueError("partial-order reduction is not available on Ray (the sharded search has no sleep sets)")
    return explore(rules, shape, depth, symmetry=symmetry, workers=workers, address=address)


# ---------------------------------------------------------------------------
# campaigns
# ---------------------------------------------------------------------------


class FuzzWorker:
    """One native engine of a campaign, with its own seed."""

    def __init__(
        self,
        rules_toml: str,
        shape: dict[str, Any],
        seed: int,
        max_actions: int,
        known: list[tuple[str, str, str, str]],
        entries: list[bytes],
    ) -> None:
        self.f = zdfuzz.NativeFuzzer(
            zdfuzz.Rules.from_toml(rules_toml),
            shape=zdfuzz.Shape(**shape),
            seed=seed,
            max_actions=max_actions,
        )
        for sig in known:
            self.f.add_known(sig)
        # resume: the saved corpus brings its coverage back
        for e in entries:
            self.f.add_entry(e)
        self.f.take_new_entries()
        self.base = self.f.stats()["execs"]

    def run(
        self, seconds: float, max_execs: int | None, known: list[tuple[str, str, str, str]]
    ) -> tuple[list[tuple[tuple[str, ...], str, str, str, int]], list[bytes], dict[str, Any]]:
        """Fuzz for about ``seconds``: (findings as (signature, program text,
        message, category, execs)), new corpus entries, statistics)."""
        for sig in known:
            self.f.add_known(sig)
        found = [
            (tuple(x.signature), x.program.to_text(), x.message, x.category, x.execs)
            for x in self.f.run(max_execs=max_execs, seconds=seconds)
        ]
        st: dict[str, Any] = dict(self.f.stats())
        st["campaign_execs"] = st.get("execs", 0) - self.base
        return found, self.f.take_new_entries(), st


@cache
def _remote_fuzzer() -> Any:
    ray = require_ray()
    return ray.remote(num_cpus=1)(FuzzWorker)


@dataclass
class RayCampaignStats:
    #: findings the workers reported, and how many of them were already
    #: known (found by another worker, or earlier): dropped
    reported: int = 0
    duplicates: int = 0


def run_campaign(c: Campaign, slice_seconds: float = 1.0) -> None:
    """The engine loop of a campaign on Ray (``c.cfg.ray``: the address;
    ``c.cfg.jobs``: workers). ``c.stats["ray"]`` counts the findings the
    workers reported and those dropped as already known."""
    cfg = c.cfg
    if cfg.engine != "native":
        raise ValueError(f"--ray runs the native engine only (not {cfg.engine})")
    assert cfg.seed is not None
    ray = connect(cfg.ray or LOCAL, num_cpus=cfg.jobs if (cfg.ray or LOCAL) == LOCAL else None)
    cls = _remote_fuzzer()
    known = sorted((s.invariant, s.kind, s.device, s.rules) for s in c.known)
    entries = c.corpus.native_entries()
    toml = c.rules.to_toml()
    shape = campaign_shape(cfg).to_dict()
    workers = [
        cls.remote(
            toml,
            shape,
            cfg.seed + j,
            cfg.max_actions,
            known,
            entries,
        )
        for j in range(cfg.jobs)
    ]
    per_worker = None if cfg.execs is None else -(-cfg.execs // cfg.jobs)
    done_execs = [0] * cfg.jobs
    told = [set(c.known) for _ in workers]
    deadline = c.start + cfg.seconds
    stats = RayCampaignStats()

    def submit(j: int) -> Any:
        left = None if per_worker is None else per_worker - done_execs[j]
        if time.monotonic() >= deadline or (left is not None and left <= 0):
            return None
        news = sorted((s.invariant, s.kind, s.device, s.rules) for s in c.known - told[j])
        told[j] |= c.known
        seconds = max(0.0, min(slice_seconds, deadline - time.monotonic()))
        return workers[j].run.remote(seconds, left, news)

    pending: dict[Any, int] = {}
    for j in range(len(workers)):
        ref = submit(j)
        if ref is not None:
            pending[ref] = j
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
            c.tick()
            for ref in ready:
                j = pending.pop(ref)
                found, new_entries, st = ray.get(ref)
                done_execs[j] = int(st.get("campaign_execs", 0))
                for sig, text, message, category, execs in found:
                    stats.reported += 1
                    signature = Signature(*sig)
                    if signature in c.known:
                        stats.duplicates += 1
                        continue
                    c.handle(
                        signature,
                        zdfuzz.Program.parse(text),
                        "native",
                        message,
                        category,
                        {"job": j, "execs": execs, "job_seed": cfg.seed + j, "ray": True},
                    )
                if new_entries:
                    c.corpus.save_native_entries(new_entries)
                c.update(f"ray-{j}", st)
                nxt = submit(j)
                if nxt is not None:
                    pending[nxt] = j
    finally:
        for w in workers:
            ray.kill(w)
        c.stats["ray"] = {"reported": stats.reported, "duplicates": stats.duplicates}
