"""The command line."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

import zdfuzz
from zdfuzz.cli import main

ROOT = Path(__file__).resolve().parent.parent


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


def _write(tmp_path, name: str, text: str) -> str:  # type: ignore[no-untyped-def]
    p = tmp_path / name
    p.write_text(text)
    return str(p)


from programs import Q1  # noqa: E402


def test_replay_exit_codes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    f = _write(tmp_path, "q1.zdf", Q1)
    r = CliRunner().invoke(main, ["replay", f])
    assert r.exit_code == 1, r.output
    assert "I-L2" in r.output and "GUP reference" in r.output
    assert "get_user_pages proc=0 addr=0" in r.output  # the trace
    r = CliRunner().invoke(main, ["replay", f, "--rules", "e1"])
    assert r.exit_code == 0, r.output
    assert "clean under e1" in r.output


def test_replay_bad_input_is_exit_2_with_file_and_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    f = _write(tmp_path, "bad.zdf", "rules e3\nmemremap_pages pgmap=0\nfork proc=0\n")
    r = CliRunner().invoke(main, ["replay", f])
    assert r.exit_code == 2
    assert f"{f}:3:1: `fork` needs operand `child`" in r.output.replace("\n", "")
    f = _write(tmp_path, "bad2.zdf", "rules e3\nfree_device_page pfn=0\n")
    r = CliRunner().invoke(main, ["replay", f])
    assert r.exit_code == 2
    assert f"{f}:2:" in r.output and "not enabled" in r.output
    r = CliRunner().invoke(main, ["replay", str(tmp_path / "missing.zdf")])
    assert r.exit_code == 2 and "cannot read" in r.output
    f = _write(tmp_path, "q.zdf", Q1)
    r = CliRunner().invoke(main, ["replay", f, "--rules", "e9"])
    assert r.exit_code == 2


def test_replay_with_toml_rules(tmp_path) -> None:  # type: ignore[no-untyped-def]
    rules = _write(
        tmp_path,
        "fix.toml",
        'name = "p20-fixed"\nbase = "p20"\ndescription = "x"\n'
        '[types.generic]\nmemunmap_put = "every_page"\nput_pgmap_on_zero = true\n',
    )
    f = _write(tmp_path, "q1.zdf", Q1)
    r = CliRunner().invoke(main, ["replay", f, "--rules", rules])
    assert r.exit_code == 0, r.output


def test_rules_list_and_show() -> None:
    r = CliRunner().invoke(main, ["rules", "list"])
    assert r.exit_code == 0
    for name in ("e1", "e2", "e3", "e4", "p20", "v6.15"):
        assert name in r.output
    r = CliRunner().invoke(main, ["rules", "show", "e4"])
    assert r.exit_code == 0
    assert "types.fsdax.init_rc" in r.output
    r = CliRunner().invoke(main, ["rules", "show", "e2", "--toml"])
    assert 'name = "e2"' in r.output
    r = CliRunner().invoke(main, ["rules", "show", "nope"])
    assert r.exit_code != 0


def test_kinds_lists_every_action() -> None:
    r = CliRunner().invoke(main, ["kinds"])
    assert r.exit_code == 0
    assert "memunmap_pages" in r.output and "pin_user_pages" in r.output


@pytest.mark.parametrize("bad", ["missing", "invalid"])
def test_bad_rules_are_one_line_and_exit_2_in_every_command(tmp_path: Path, bad: str) -> None:
    """A missing or invalid --rules file is bad input: one line, exit 2 (not
    1, "violation found", and never a traceback)."""
    rules = tmp_path / "x.toml"
    if bad == "invalid":
        rules.write_text('name = "x"\nbase = "e1"\n[types.private]\ninit_rcc = 0\n')
    program = str(ROOT / "corpus" / "answers" / "q1-generic.zdf")
    commands = [
        ["replay", program, "--rules", str(rules)],
        ["explain", program, "--rules", str(rules)],
        ["minimize", program, "--rules", str(rules)],
        ["explore", "--rules", str(rules), "--depth", "1", "--quiet"],
        ["fuzz", "--rules", str(rules), "--time", "1", "--corpus", str(tmp_path / "c")],
        ["rules", "show", str(rules)],
        ["soak", "--presets", str(rules), "--minutes", "0.01", "--corpus", str(tmp_path / "s")],
    ]
    for cmd in commands:
        r = CliRunner().invoke(main, cmd)
        assert r.exit_code == 2, (cmd, r.output, r.exception)
        assert not isinstance(r.exception, Exception) or isinstance(r.exception, SystemExit), (cmd, r.exception)
        lines = [line for line in r.output.splitlines() if line.strip()]
        assert len(lines) == 1 and str(rules) in lines[0], (cmd, r.output)
        if bad == "invalid":
            assert ":4:1: unknown switch `types.private.init_rcc`" in lines[0], (cmd, r.output)


def test_the_error_hierarchy() -> None:
    for cls in (zdfuzz.ProgramError, zdfuzz.RulesError, zdfuzz.ConfigError, zdfuzz.MinimizeError):
        assert issubclass(cls, zdfuzz.ZdfuzzError) and issubclass(cls, ValueError)
    with pytest.raises(zdfuzz.RulesError) as e:
        zdfuzz.Rules.from_toml('name = "x"\nbase = "e1"\n[p2p]\nalloc_sets_rc = 3\n', "f.toml")
    assert (e.value.file, e.value.line, e.value.col) == ("f.toml", 4, 1)
    with pytest.raises(zdfuzz.ProgramError) as p:
        zdfuzz.Program.parse("rules e1\nfork proc=0\n", filename="p.zdf")
    assert (p.value.file, p.value.line, p.value.col) == ("p.zdf", 2, 1) and "needs operand" in p.value.message
    with pytest.raises(zdfuzz.ConfigError):
        zdfuzz.Shape(pages=0)
    clean = zdfuzz.Program.parse("rules e1\nconfig types=generic\nmemremap_pages pgmap=0\n")
    with pytest.raises(zdfuzz.MinimizeError, match="breaks no invariant"):
        zdfuzz.minimize(clean)
