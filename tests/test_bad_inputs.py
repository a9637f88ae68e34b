"""Bad input, one line and exit status 2: every case of tests/bad_inputs/cases.toml."""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from zdfuzz.cli import main

HERE = Path(__file__).resolve().parent / "bad_inputs"
CASES = tomllib.loads((HERE / "cases.toml").read_text())["case"]


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "bad_inputs"
    shutil.copytree(HERE, d, symlinks=True)
    monkeypatch.chdir(d)
    return d


@pytest.mark.parametrize("case", CASES, ids=[" ".join(c["args"][:3]) for c in CASES])
def test_bad_input_is_one_line_and_exit_2(workdir: Path, case: dict[str, object]) -> None:
    args = case["args"]
    assert isinstance(args, list)
    r = CliRunner().invoke(main, [str(a) for a in args])
    assert r.exit_code == case.get("status", 2), (args, r.output, r.exception)
    # SystemExit only: an exception means a traceback for the user
    assert r.exception is None or isinstance(r.exception, SystemExit), (args, r.exception)
    lines = [line for line in r.output.splitlines() if line.strip()]
    assert len(lines) == 1, (args, r.output)
    assert str(case["message"]) in lines[0], (args, lines[0])
    assert "Traceback" not in r.output and "Invalid value for '--rules'" not in r.output or "--rules" in args


def test_no_case_escapes_its_directory(workdir: Path) -> None:
    """The symlinked-findings case must not have written through the link."""
    for case in CASES:
        CliRunner().invoke(main, [str(a) for a in case["args"]])  # type: ignore[union-attr]
    assert sorted(p.name for p in (workdir / "outside").iterdir()) == [".keep"]
