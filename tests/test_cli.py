"""The command line."""

from __future__ import annotations

from click.testing import CliRunner

import zdfuzz
from zdfuzz.cli import main


def test_version() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert zdfuzz.__version__ in result.output


def test_demo_reaches_release() -> None:
    result = CliRunner().invoke(main, ["demo", "--cpus", "3"])
    assert result.exit_code == 0, result.output
    assert "release ran exactly once" in result.output
    assert "misuse" not in result.output


def test_demo_rejects_one_cpu() -> None:
    result = CliRunner().invoke(main, ["demo", "--cpus", "1"])
    assert result.exit_code == 2
    assert "at least 2 CPUs" in result.output
