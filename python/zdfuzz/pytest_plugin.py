"""The pytest plugin (entry point ``pytest11``): reproducers as test items.

``pytest --zdfuzz-corpus DIR [--zdfuzz-rules R]`` adds one test item per
``.zdf`` under DIR (findings of campaigns, soak corpora, the regression
corpus), each asserting the verdict its ``.json`` metadata expects:

- under the rules it was found under (the default): it breaks the same
  signature (invariant, action kind, device type) — the bug is still there;
- ``--zdfuzz-rules R`` where the metadata names R as the baseline: the same
  signature when it was labelled ``shared``, not that signature when
  ``new``;
- where R is the regression's fixing preset (``fixed_in``): clean.

For any other R the item is skipped, saying so. A program R cannot run
(an action it does not have) fails the item, unless it was labelled new
against R (that is why it is new).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import zdfuzz

SAME, NOT_SAME, CLEAN = "same", "not-same", "clean"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("zdfuzz", "zdfuzz reproducers as tests")
    group.addoption(
        "--zdfuzz-corpus",
        action="append",
        default=[],
        metavar="DIR",
        help="Add a test item per .zdf reproducer under DIR (repeatable).",
    )
    group.addoption(
        "--zdfuzz-rules",
        default=None,
        metavar="RULES",
        help="Replay the reproducers under these rules (preset or TOML); default: each one's own.",
    )


def expectation(meta: dict[str, Any], rules: str) -> tuple[str | None, str]:
    """What a reproducer should do under ``rules``: (SAME | NOT_SAME | CLEAN,
    why), or (None, why) when its metadata does not say."""
    sig = meta.get("signature") or {}
    own = sig.get("rules")
    if rules == own:
        return SAME, f"found under {own}"
    if rules == meta.get("baseline"):
        if meta.get("label") == "shared":
            return SAME, f"labelled shared with {rules}"
        if meta.get("label") == "new":
            return NOT_SAME, f"labelled new against {rules}"
        if meta.get("label") == "fixed":
            return NOT_SAME, f"labelled fixed by {rules}"
    if rules == meta.get("fixed_in"):
        return CLEAN, f"fixed in {rules}"
    return None, f"its metadata says nothing about {rules}"


class ReproducerItem(pytest.Item):
    def __init__(self, *, zdf: Path, rules_name: str | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.zdf = zdf
        self.rules_name = rules_name

    def runtest(self) -> None:
        meta_path = self.zdf.with_suffix(".json")
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        program = zdfuzz.Program.parse(self.zdf.read_text(), filename=str(self.zdf))
        if not meta.get("signature"):
            v = zdfuzz.Machine.for_program(program).run(program, trace=False)
            if v.signature is None:
                pytest.skip(f"{self.zdf}: no metadata, and clean under {program.rules}")
            meta["signature"] = dict(zip(("invariant", "kind", "device", "rules"), v.signature))
        rules = zdfuzz.Rules.resolve(self.rules_name or meta["signature"]["rules"])
        want, why = expectation(meta, rules.name)
        if want is None:
            pytest.skip(f"{self.zdf.name}: {why}")
        try:
            v = zdfuzz.Machine.for_program(program, rules=rules).run(program, trace=False)
        except zdfuzz.ProgramError:
            if want == NOT_SAME:
                return  # labelled new because the baseline cannot run it
            raise
        expected = tuple(meta["signature"][k] for k in ("invariant", "kind", "device"))
        got = tuple(v.signature[:3]) if v.signature else None
        message = v.violation.message if v.violation else "no violation"
        if want == SAME:
            assert got == expected, f"expected {' '.join(expected)} under {rules.name} ({why}), got {got}: {message}"
        elif want == NOT_SAME:
            assert got != expected, f"{' '.join(expected)} under {rules.name}, but {why}: {message}"
        else:
            assert got is None, f"expected clean under {rules.name} ({why}), got {' '.join(got or ())}: {message}"

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, AssertionError | zdfuzz.ZdfuzzError):
            hint = f"zdfuzz replay {self.zdf}" + (f" --rules {self.rules_name}" if self.rules_name else "")
            return f"{excinfo.value}\n  replay: {hint}"
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.zdf, None, f"zdfuzz reproducer {self.zdf.name}"


def _reproducers(root: Path) -> Iterator[Path]:
    # hidden directories below the corpus are skipped (a campaign's own
    # state), not hidden directories above it (a `.venv` the corpus ships in)
    yield from sorted(
        p for p in root.rglob("*.zdf") if not any(part.startswith(".") for part in p.relative_to(root).parts)
    )


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    dirs = config.getoption("zdfuzz_corpus")
    if not dirs:
        return
    rules = config.getoption("zdfuzz_rules")
    for d in dirs:
        root = Path(d)
        if not root.is_dir():
            raise pytest.UsageError(f"--zdfuzz-corpus {d}: not a directory")
        for zdf in _reproducers(root):
            name = str(zdf.relative_to(root)) + (f"[{rules}]" if rules else "")
            items.append(ReproducerItem.from_parent(session, name=name, zdf=zdf, rules_name=rules))
