"""Hypothesis support: a state machine and a program strategy over the model.

``ZoneDeviceStateMachine`` is a ``RuleBasedStateMachine`` with one rule per
action kind of the core (generated from the core's table, so new kinds
appear without editing this file), Bundles of the objects actions create —
registered pgmaps, pages somebody holds, pinned pages, running kernel tasks
— and the core's oracle as its invariant. Subclass it in your own pytest
suite::

    from zdfuzz.hypothesis import ZoneDeviceStateMachine

    class P20Generic(ZoneDeviceStateMachine):
        preset = "p20"
        types = ("generic",)

    TestP20Generic = P20Generic.TestCase

A rule only ever issues an *enabled* action (the actors' contracts hold;
Bundles steer which object it acts on), so a failure is a property of the
refcount design under test, never of the test. ``programs(rules=...,
types=...)`` is a strategy of whole ``zdfuzz.Program`` values built the same
way.

``run_campaign`` is what ``zdfuzz fuzz --engine hypothesis`` runs: rounds of
the state machine with an example database under the corpus directory; a
signature already found is not a failure, so the campaign goes on after
each finding.
"""

from __future__ import annotations

import contextlib
import os
import random
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, ClassVar

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.database import DirectoryBasedExampleDatabase
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

import zdfuzz
from zdfuzz.corpus import Signature

ALL_TYPES: tuple[str, ...] = tuple(zdfuzz.DEVICE_TYPES)
#: the types when none are named: the four every era has
DEFAULT_TYPES: tuple[str, ...] = tuple(zdfuzz.DEFAULT_DEVICE_TYPES)

# Which operand domains a Bundle can steer (domain -> bundles, in order).
_STEERED: dict[str, tuple[str, ...]] = {
    "pgmap": ("pgmaps",),
    "pfn": ("pins", "pages"),
    "task": ("tasks",),
}


class Finding(AssertionError):
    """A violation with a signature the run did not already know."""

    def __init__(self, signature: Signature, program: zdfuzz.Program, message: str, category: str) -> None:
        super().__init__(f"{signature}: {message}\n{program.to_text()}")
        self.signature = signature
        self.program = program
        self.message = message
        self.category = category


class ZoneDeviceStateMachine(RuleBasedStateMachine):
    """The model as a hypothesis state machine (see the module docstring).

    Class attributes to override: ``preset`` (preset name, TOML path or
    ``zdfuzz.Rules``; ``rules`` is taken by hypothesis), ``types``, ``shape``
    (other ``zdfuzz.Shape`` fields, such as ``{"pages": 2}``), ``known``
    (signatures that are not failures).

    Each step is one call, ``Machine.act``: it returns the violation (as
    data), the objects the action brought into use (they go into the
    Bundles) and the actions enabled next (the rules' preconditions)."""

    preset: ClassVar[str | zdfuzz.Rules] = "p20"
    types: ClassVar[tuple[str, ...]] = DEFAULT_TYPES
    shape: ClassVar[dict[str, int]] = {}
    known: ClassVar[frozenset[Signature]] = frozenset()
    #: steps run by all instances (for campaign statistics)
    steps_run: ClassVar[int] = 0

    pgmaps = Bundle("pgmaps")
    pages = Bundle("pages")
    pins = Bundle("pins")
    tasks = Bundle("tasks")

    def __init__(self) -> None:
        super().__init__()
        self.machine = zdfuzz.Machine(rules=self.preset, shape=zdfuzz.Shape(types=self.types, **self.shape))
        self.actions: list[zdfuzz.Action] = []
        self.violation: zdfuzz.Violation | None = None
        self._enabled = _by_kind(self.machine.enabled_actions())
        self._seen: dict[str, set[int]] = {"pgmaps": set(), "pages": set(), "pins": set()}

    # -- helpers ----------------------------------------------------------

    def enabled(self) -> dict[str, list[zdfuzz.Action]]:
        """Enabled actions by kind (as the last step left them)."""
        return self._enabled

    def program(self) -> zdfuzz.Program:
        """The actions run so far, as a program that replays them."""
        return zdfuzz.Program(self.actions, rules=self.machine.rules.name, shape=self.machine.shape)

    def _produced(self, r: zdfuzz.StepResult) -> None:
        """Put the objects the last action brought into use into their Bundles
        (a pgmap, page or pin once; a task each time a slot gets a new one)."""
        new = {"pgmaps": r.pgmaps, "pages": r.pages, "pins": r.pins, "tasks": r.tasks}
        for name, values in new.items():
            if name in self._seen:
                values = [v for v in values if v not in self._seen[name]]
                self._seen[name].update(values)
            if values:
                # hypothesis has no public way for one rule to feed several
                # Bundles; this is the call its own `target=` uses (the
                # dependency is pinned exactly)
                self._add_results_to_targets([name], values)  # type: ignore[no-untyped-call]

    def _apply(self, action: zdfuzz.Action) -> None:
        self.actions.append(action)
        type(self).steps_run += 1
        r = self.machine.act(action)
        self.violation = r.violation
        self._enabled = {} if r.violation is not None else _by_kind(r.enabled)
        if r.violation is None:
            self._produced(r)

    def _check(self, verdict_signature: tuple[str, str, str, str] | None, v: zdfuzz.Violation | None) -> None:
        if v is None or verdict_signature is None:
            return
        sig = Signature(*verdict_signature)
        if sig in self.known:
            return
        raise Finding(sig, self.program(), v.message, v.category)

    @initialize()
    def probe(self) -> None:
        """Drivers probe first: every pgmap starts registered (a program may
        still unbind and register again). Without this, most examples
        spend their steps on machines with nothing to act on."""
        for a in list(self.enabled().get("memremap_pages", [])):
            self._apply(a)

    # -- the oracle -------------------------------------------------------

    @invariant()
    def oracle(self) -> None:
        """The core's safety checks: no invariant broken by the last action."""
        if self.violation is not None:
            # finishing a stopped machine runs no drain: it only hands back
            # the verdict, with the signature
            verdict = self.machine.finish()
            self._check(verdict.signature, verdict.violation)

    def teardown(self) -> None:
        """The end of the program: the drain (every actor releases what it
        holds, drivers unbind) and the liveness checks (hangs, leaks)."""
        if self.violation is None:
            verdict = self.machine.finish()
            self._check(verdict.signature, verdict.violation)

    @precondition(lambda self: self.violation is not None or not self.enabled())
    @rule()
    def idle(self) -> None:
        """Nothing left to do (the machine stopped at a known violation)."""


def _by_kind(actions: list[zdfuzz.Action]) -> dict[str, list[zdfuzz.Action]]:
    by: dict[str, list[zdfuzz.Action]] = {}
    for a in actions:
        by.setdefault(a.name, []).append(a)
    return by


def _make_rule(kind: str, operands: list[tuple[str, str]]) -> Callable[..., None]:
    steered = [(i, name, _STEERED[dim]) for i, (name, dim) in enumerate(operands) if dim in _STEERED]

    def act(self: ZoneDeviceStateMachine, data: st.DataObject) -> None:
        cands = self.enabled()[kind]
        # steer by the Bundles: keep the actions on an object some earlier
        # action produced, when there is one
        for _i, name, bundles in steered:
            for b in bundles:
                if not self.bundle(b):
                    continue
                v = data.draw(getattr(type(self), b), label=f"{name} from {b}")
                narrowed = [a for a in cands if a.args.get(name) == v]
                if narrowed:
                    cands = narrowed
                    break
        self._apply(data.draw(st.sampled_from(cands), label=kind))

    # named before decorating: hypothesis keys rules (and its per-example
    # swarm of enabled rules) by the function's name
    act.__name__ = act.__qualname__ = kind
    act.__doc__ = f"Issue an enabled `{kind}` action."
    decorated: Callable[..., None] = rule(data=st.data())(act)
    return precondition(lambda self: kind in self.enabled())(decorated)


for _kind, _operands in zdfuzz.kind_operands():
    setattr(ZoneDeviceStateMachine, _kind, _make_rule(_kind, _operands))


@st.composite
def _programs(
    draw: st.DrawFn,
    rules: str | zdfuzz.Rules,
    types: tuple[str, ...],
    max_actions: int,
    kinds: frozenset[str] | None,
    shape: dict[str, int],
) -> zdfuzz.Program:
    m = zdfuzz.Machine(rules=rules, shape=zdfuzz.Shape(types=types, **shape))
    actions: list[zdfuzz.Action] = []
    enabled_now = m.enabled_actions()
    n = draw(st.integers(0, max_actions), label="length")
    for _ in range(n):
        enabled = [a for a in enabled_now if kinds is None or a.name in kinds]
        if not enabled:
            break
        a = draw(st.sampled_from(enabled))
        actions.append(a)
        r = m.act(a)
        if r.violation is not None:
            break
        enabled_now = r.enabled
    name = rules.name if isinstance(rules, zdfuzz.Rules) else m.rules.name
    return zdfuzz.Program(actions, rules=name, shape=m.shape)


def programs(
    rules: str | zdfuzz.Rules = "p20",
    types: Iterable[str] = DEFAULT_TYPES,
    max_actions: int = 40,
    kinds: Iterable[str] | None = None,
    **shape: int,
) -> st.SearchStrategy[zdfuzz.Program]:
    """Programs of up to ``max_actions`` enabled actions (of ``kinds`` only,
    when given) on a machine of ``types``; each action is chosen among those
    enabled after the previous ones, so every program replays as is. A
    program stops at its first violation."""
    known = {k for k, _ in zdfuzz.kind_operands()}
    ks = None if kinds is None else frozenset(kinds)
    if ks is not None and not ks <= known:
        raise ValueError(f"unknown action kinds: {sorted(ks - known)}")
    return _programs(rules, tuple(types), max_actions, ks, dict(shape))


@contextlib.contextmanager
def _fixed_local_constants() -> Iterator[None]:
    """Hypothesis draws, now and then, integers and strings it found in the
    source of "local" modules: every module loaded from outside
    site-packages, which includes zdfuzz itself when it is installed from a
    checkout, and whatever else the process has imported. Which modules a
    process happens to hold would then change what a seeded campaign
    explores (importing the lab's modules alone made the same seed find the
    seed's Q1 at another step, or not within the test's budget), and a wheel
    install (nothing local) would search differently from a checkout. A
    campaign is a search of the model whose result must follow from its
    seed, so it runs with one fixed pool: the constants of the modules
    ``import zdfuzz.hypothesis`` loads (zdfuzz, zdfuzz.corpus and this
    module), whatever else is loaded and however zdfuzz is installed. The
    hook is hypothesis's own (``_get_local_constants`` in
    ``hypothesis.internal.conjecture.providers``; hypothesis is pinned);
    without it nothing is patched."""
    try:
        from hypothesis.internal.conjecture import providers
        from hypothesis.internal.constants_ast import Constants, constants_from_module
    except ImportError:  # pragma: no cover - a hypothesis without the feature
        yield
        return
    original = getattr(providers, "_get_local_constants", None)
    if original is None:  # pragma: no cover
        yield
        return
    pool = Constants()
    for module in (zdfuzz, sys.modules["zdfuzz.corpus"], sys.modules[__name__]):
        pool |= constants_from_module(module)
    providers._get_local_constants = lambda: pool
    providers.CONSTANTS_CACHE.cache.clear()
    try:
        yield
    finally:
        providers._get_local_constants = original
        providers.CONSTANTS_CACHE.cache.clear()


@contextlib.contextmanager
def _home(directory: str) -> Iterator[None]:
    """Hypothesis's own files (its home, ``./.hypothesis`` by default) in
    ``directory`` while a campaign runs: a campaign writes under its corpus,
    not in the current directory."""
    from hypothesis import configuration

    previous = getattr(configuration, "__hypothesis_home_directory", None)
    configuration.set_hypothesis_home_dir(directory)
    try:
        yield
    finally:
        configuration.set_hypothesis_home_dir(previous)


def run_campaign(
    rules: str,
    types: tuple[str, ...],
    seconds: float,
    seed: int,
    database: str,
    known: Iterable[Signature],
    on_finding: Callable[[Finding, float], None],
    on_stats: Callable[[dict[str, Any]], None] | None = None,
    max_examples: int | None = None,
    steps_per_example: int = 30,
    examples_per_round: int = 100,
    shape: dict[str, int] | None = None,
    alive: Callable[[], bool] | None = None,
) -> None:
    """Run the state machine in rounds until ``seconds`` pass (or
    ``max_examples`` examples ran, or ``alive()`` turns false between rounds). Each round has its own seed derived from
    ``seed`` and at most ``examples_per_round`` examples, fewer when the time
    left is short (a round cannot be interrupted); a finding is reported
    through ``on_finding(finding, seconds_since_start)`` and then known, so
    the next round looks for something else.

    With several device types, each round runs on a random non-empty
    subset of them (swarm testing over types, as the native engine does):
    a rule is picked uniformly among those enabled, so on a machine with
    every type a story about one pgmap gets a quarter of the steps.

    Hypothesis's own shrinking is off: the campaign minimizes every finding
    in the core, faster and keeping the signature."""

    class Campaign(ZoneDeviceStateMachine):
        pass

    Campaign.preset = rules
    Campaign.shape = dict(shape or {})
    Campaign.known = frozenset(known)
    Campaign.steps_run = 0
    start = time.monotonic()
    db = DirectoryBasedExampleDatabase(database)
    with _home(os.path.join(database, "home")):
        examples = 0
        round_ = 0
        per_example = 0.05  # seconds; learnt from each round
        while (
            time.monotonic() - start < seconds
            and (max_examples is None or examples < max_examples)
            and (alive is None or alive())
        ):
            left = seconds - (time.monotonic() - start)
            n = max(1, min(examples_per_round, int(left / per_example)))
            if max_examples is not None:
                n = min(n, max_examples - examples)
            t0 = time.monotonic()
            s = settings(
                max_examples=n,
                stateful_step_count=steps_per_example,
                database=db,
                deadline=None,
                # the campaign seeds every round itself (below); hypothesis's
                # "ci" profile (loaded when CI is set) would otherwise change
                # how a seeded campaign searches
                derandomize=False,
                suppress_health_check=list(HealthCheck),
                report_multiple_bugs=False,
                print_blob=False,
                phases=(Phase.reuse, Phase.generate),
            )
            Campaign._hypothesis_internal_use_seed = seed + round_ * 1_000_003
            if len(types) > 1:
                pick = random.Random(seed * 7919 + round_).randrange(1, 1 << len(types))
                Campaign.types = tuple(t for i, t in enumerate(types) if pick >> i & 1)
            else:
                Campaign.types = types
            try:
                with _fixed_local_constants():
                    run_state_machine_as_test(Campaign, settings=s)
            except Finding as f:
                Campaign.known = Campaign.known | {f.signature}
                on_finding(f, time.monotonic() - start)
            examples += n
            round_ += 1
            per_example = max(0.001, (time.monotonic() - t0) / n)
            if on_stats is not None:
                on_stats({"execs": examples, "steps": Campaign.steps_run, "rounds": round_})
