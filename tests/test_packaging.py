"""Dependencies: compatible ranges in pyproject.toml, exact versions in
constraints.txt (what CI installs), the one inside the other."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def pins() -> dict[str, Version]:
    out = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            out[re.sub(r"[-_.]+", "-", name).lower()] = Version(version)
    return out


def requirements() -> list[Requirement]:
    reqs = [Requirement(r) for r in PROJECT["dependencies"]]
    for extra in PROJECT["optional-dependencies"].values():
        reqs += [Requirement(r) for r in extra]
    return reqs


def test_dependencies_are_compatible_ranges_not_pins() -> None:
    for req in requirements():
        specs = {s.operator: Version(s.version) for s in req.specifier}
        assert set(specs) == {">=", "<"}, f"{req}: wants >=tested,<next major"
        low, high = specs[">="], specs["<"]
        # the next major (for 0.x, the next minor: ruff's breaking releases)
        want = Version(f"0.{low.minor + 1}") if low.major == 0 else Version(f"{low.major + 1}")
        assert high == want, f"{req}: upper bound {high}, expected {want}"


def test_constraints_pin_a_version_inside_every_range() -> None:
    pinned = pins()
    for req in requirements():
        name = re.sub(r"[-_.]+", "-", req.name).lower()
        assert name in pinned, f"{req.name} is not in constraints.txt"
        spec = req.specifier
        assert pinned[name] in spec, f"constraints.txt pins {name}=={pinned[name]}, outside {spec}"
        low = next(Version(s.version) for s in spec if s.operator == ">=")
        assert pinned[name] == low, f"{name}: the range's floor should be the tested version {pinned[name]}"


def test_the_pytest_plugin_and_the_cli_are_entry_points() -> None:
    assert PROJECT["scripts"]["zdfuzz"] == "zdfuzz.cli:main"
    assert PROJECT["entry-points"]["pytest11"]["zdfuzz"] == "zdfuzz.pytest_plugin"
