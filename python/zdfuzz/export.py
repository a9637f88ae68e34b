"""Reproducers into other people's files: ``zdfuzz export``.

- ``as_pytest``: a standalone pytest module that replays the reproducer and
  asserts its verdict (the signature it breaks, or clean).
- ``as_kernel_comment``: the steps as a C comment block, each with the
  kernel function it models, to paste into a patch review.
"""

from __future__ import annotations

import re

import zdfuzz
from zdfuzz.report import explain


def _expected(program: zdfuzz.Program, rules: zdfuzz.Rules) -> tuple[str, str, str] | None:
    v = zdfuzz.Machine.for_program(program, rules=rules).run(program, trace=False)
    return (v.signature[0], v.signature[1], v.signature[2]) if v.signature else None


def as_pytest(program: zdfuzz.Program, rules: zdfuzz.Rules, source: str) -> str:
    """A pytest module asserting what ``program`` does under ``rules`` now."""
    expected = _expected(program, rules)
    name = re.sub(r"[^0-9a-zA-Z_]+", "_", source.rsplit("/", 1)[-1].removesuffix(".zdf")).strip("_").lower()
    what = "breaks " + " ".join(expected) if expected else "is clean"
    text = program.to_text()
    body = f'"""\\\n{text}"""' if '"""' not in text and "\\" not in text else repr(text)
    return f'''"""Exported by zdfuzz {zdfuzz.__version__} from {source}: under {rules.name} it {what}."""

import zdfuzz

PROGRAM = {body}
RULES = {rules.name!r}
#: (invariant, action kind, device type) the program breaks, or None: clean
EXPECTED = {expected!r}


def test_{name or "reproducer"}() -> None:
    program = zdfuzz.Program.parse(PROGRAM)
    verdict = zdfuzz.Machine.for_program(program, rules=RULES).run(program)
    if EXPECTED is None:
        assert verdict.ok, verdict.violation.message if verdict.violation else verdict
    else:
        assert verdict.signature is not None, f"clean under {{RULES}}, expected {{EXPECTED}}"
        assert tuple(verdict.signature[:3]) == EXPECTED, verdict.violation.message if verdict.violation else verdict
'''


def as_kernel_comment(program: zdfuzz.Program, rules: zdfuzz.Rules, source: str) -> str:
    """The steps of ``program`` as a ``/* ... */`` block for a patch review."""
    e = explain(program, rules)
    r = rules
    lines = [f"zdfuzz reproducer ({source}), rules {r.name} ({r.kernel}):"]
    shape = program.shape.to_dict()
    lines.append(
        "machine: " + ", ".join(shape["types"]) + " " + " ".join(f"{k}={v}" for k, v in shape.items() if k != "types")
    )
    lines.append("")
    for s in e.steps:
        if s.drain:
            continue
        lines.append(f"{s.step + 1:>3}. CPU{s.cpu}: {s.action}")
        lines.append(f"       {s.models}")
    v = e.violation
    lines.append("")
    if v is None:
        lines.append(f"No invariant breaks under {r.name}.")
    else:
        lines.append(f"{v.invariant} ({v.category}) at step {v.step + 1}: {v.action}")
        lines.append(v.message)
    lines.append(f"Replay: zdfuzz replay {source}" + ("" if program.rules == r.name else f" --rules {r.name}"))
    body = "\n".join((" * " + line).rstrip() for line in lines)
    return "/*\n" + body.replace("*/", "* /") + "\n */\n"
