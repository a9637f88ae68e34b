"""The layering the project relies on, checked (with the import-linter
contracts in pyproject.toml for the Python side):

* the Python reference model stands on its own: importing it, and running
  it, never loads the Rust extension (run in a subprocess where
  ``zdfuzz._core`` cannot be imported);
* the core crate never depends on the binding (its manifest and sources name
  no PyO3 and no zdfuzz-python);
* the oracle never reads the rules: `oracle.rs` names no `rules` module,
  type or field — a preset can change what the modelled kernel does, never
  whether the oracle looks.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORE = ROOT / "rust" / "core"

BLOCKED = """
import sys

class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "zdfuzz._core" or name == "zdfuzz":
            raise ImportError(f"{name} is blocked in this test")
        return None

sys.meta_path.insert(0, Block())
"""


def run_blocked(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", BLOCKED + code], capture_output=True, text=True, timeout=300, cwd=ROOT)


def test_the_blocker_blocks() -> None:
    r = run_blocked("import zdfuzz")
    assert r.returncode != 0 and "blocked in this test" in r.stderr


def test_the_reference_runs_without_the_extension() -> None:
    r = run_blocked("""
import zdfuzz_reference as ref
import zdfuzz_reference.diff  # the differential runner loads zdfuzz only when it compares
from zdfuzz_reference.rules import Rules, preset_names
assert preset_names() == ["e1", "e2", "e3", "e4", "e5", "p20"]
m = ref.Machine.for_program(open("corpus/answers/q1-generic.zdf").read())
v = m.run(open("corpus/answers/q1-generic.zdf").read())
assert v.violation is not None and v.violation.invariant == "I-L2", v
assert Rules.load("v6.1").name == "e3" and Rules.load("corpus/answers/p20-evict.toml").name
try:
    ref.Machine(rules="e9")
except ref.RulesError as e:
    assert "unknown rules" in e.message
else:
    raise AssertionError("no RulesError")
try:
    ref.Machine(shape={"pages": 0})
except ref.ConfigError as e:
    assert "pages" in e.message
else:
    raise AssertionError("no ConfigError")
assert "zdfuzz._core" not in sys.modules and "zdfuzz" not in sys.modules
print("ok")
""")
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-3000:]


def test_the_reference_reads_the_presets_the_core_embeds() -> None:
    import zdfuzz
    from zdfuzz_reference import rules as ref_rules

    assert ref_rules.preset_names() == zdfuzz.Rules.presets()
    assert ref_rules.aliases() == zdfuzz.Rules.aliases()
    assert ref_rules.regression_names() == [n for n, _, _ in zdfuzz.Rules.regressions()]
    assert list(ref_rules.DEVICE_TYPES) == zdfuzz.DEVICE_TYPES
    assert ref_rules.DEFAULT_PRESET == zdfuzz.DEFAULT_PRESET
    embedded = re.findall(
        r'include_str!\("../../../python/zdfuzz/presets/([^"]+)\.toml"\)', (CORE / "src" / "rules.rs").read_text()
    )
    assert embedded == list(ref_rules.PRESET_FILES)
    assert sorted(p.stem for p in ref_rules.PRESETS_DIR.glob("*.toml")) == sorted(embedded)


def test_the_core_crate_never_depends_on_the_binding() -> None:
    manifest = (CORE / "Cargo.toml").read_text()
    assert "pyo3" not in manifest and "zdfuzz-python" not in manifest
    for src in (CORE / "src").rglob("*.rs"):
        text = src.read_text()
        assert not re.search(r"\bpyo3\b|zdfuzz_python", text), src


def test_the_oracle_never_reads_the_rules() -> None:
    oracle = (CORE / "src" / "oracle.rs").read_text()
    code = "\n".join(line.split("//")[0] for line in oracle.splitlines())
    for pattern in (r"\brules\b", r"\bRules\b", r"\bTypeRules\b", r"crate::rules", r"\.rules\."):
        assert not re.search(pattern, code), f"oracle.rs uses {pattern}"
    # and the machine reaches the oracle's verdicts only through observations
    machine = (CORE / "src" / "machine.rs").read_text()
    assert "oracle::judge(" in machine
    callers = [p.name for p in (CORE / "src").rglob("*.rs") if re.search(r"self\.violate\(", p.read_text())]
    assert callers == ["conformance.rs"], callers
