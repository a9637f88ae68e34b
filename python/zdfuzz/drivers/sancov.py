"""The coverage-instrumented build of the extension, for atheris.

libFuzzer only sees code compiled with SanitizerCoverage. Python code gets
it from atheris; the Rust core gets it from these rustc flags (what cargo
fuzz uses on stable Rust): each branch of the model becomes an inline 8-bit
counter with a PC table, and comparisons are traced, so libFuzzer's ``cov:``
counts the model's branches and its mutations can solve comparisons.

Only the model crate is instrumented (``SANCOV_CRATES``, through the wrapper
``scripts/rustc-sancov.sh``): with plain RUSTFLAGS every crate of the build
was, and a third of the counters libFuzzer scans after each execution (and
many compare hooks) were serde's, toml's and pyo3's, not the model's.

The build is kept apart from the normal one (cargo profile ``fuzz``, target
directory ``target/sancov``): its ``__sanitizer_cov_*`` symbols are
undefined until atheris's ``asan_with_fuzzer.so`` is preloaded, so the
normal ``import zdfuzz`` must never load it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SANCOV_RUSTFLAGS = [
    "-Cpasses=sancov-module",
    "-Cllvm-args=-sanitizer-coverage-level=4",
    "-Cllvm-args=-sanitizer-coverage-inline-8bit-counters",
    "-Cllvm-args=-sanitizer-coverage-pc-table",
    "-Cllvm-args=-sanitizer-coverage-trace-compares",
    "-Ccodegen-units=1",
]

#: the crates that get the flags: the model (rust/core), not its
#: dependencies nor the binding crate that only converts
SANCOV_CRATES = ["zdfuzz_core"]


class SetupError(Exception):
    """What is missing for the atheris engine, and how to get it."""


def source_root() -> Path | None:
    """The zdfuzz source checkout this package runs from (an editable
    install), or ``$ZDFUZZ_SOURCE``; None for a plain wheel install."""
    env = os.environ.get("ZDFUZZ_SOURCE")
    if env:
        c = Path(env)
        return c if (c / "Cargo.toml").is_file() and (c / "rust" / "python" / "Cargo.toml").is_file() else None
    # An editable install runs the package from <checkout>/python/zdfuzz; a
    # wheel installed into a virtualenv that happens to sit inside a checkout
    # does not count.
    package = Path(__file__).resolve().parents[1]
    root = package.parents[1]
    if package == root / "python" / "zdfuzz" and (root / "rust" / "python" / "Cargo.toml").is_file():
        return root
    return None


def check_atheris() -> Path:
    """atheris's ``asan_with_fuzzer.so`` (the libFuzzer to preload)."""
    try:
        import atheris
    except ImportError as e:
        raise SetupError(
            "the atheris engine needs the atheris package: pip install 'zdfuzz[atheris]' (atheris==3.0.0, CPython <= 3.11)"
        ) from e
    so = Path(atheris.path()) / "asan_with_fuzzer.so"
    if not so.is_file():
        raise SetupError(f"atheris is installed but {so} is missing: reinstall atheris==3.0.0")
    return so


def host_triple() -> str:
    """rustc's host target triple."""
    try:
        out = subprocess.run(["rustc", "-vV"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise SetupError("the atheris engine needs rustc (a Rust toolchain) to build the instrumented core") from e
    for line in out.splitlines():
        if line.startswith("host: "):
            return line.split(": ", 1)[1].strip()
    raise SetupError(f"cannot read the host triple from `rustc -vV`:\n{out}")


def library_path(root: Path, triple: str) -> Path:
    return root / "target" / "sancov" / triple / "fuzz" / "lib_core.so"


def build_instrumented(root: Path | None = None, quiet: bool = True) -> Path:
    """Build (or bring up to date: cargo decides) the instrumented extension
    and return its path."""
    root = root or source_root()
    if root is None:
        raise SetupError(
            "the atheris engine builds a coverage-instrumented copy of the Rust core, which needs the zdfuzz "
            "sources and cargo: run from a checkout installed with `pip install -e .`, or set ZDFUZZ_SOURCE "
            "to a checkout"
        )
    env = dict(os.environ)
    wrapper = root / "scripts" / "rustc-sancov.sh"
    if not os.access(wrapper, os.X_OK):
        raise SetupError(f"{wrapper} is missing or not executable (the instrumented build's rustc wrapper)")
    env.pop("RUSTFLAGS", None)
    env["RUSTC_WORKSPACE_WRAPPER"] = str(wrapper)
    env["ZDFUZZ_SANCOV_FLAGS"] = " ".join(SANCOV_RUSTFLAGS)
    env["ZDFUZZ_SANCOV_CRATES"] = " ".join(SANCOV_CRATES)
    env["CARGO_TARGET_DIR"] = str(root / "target" / "sancov")
    env.setdefault("PYO3_PYTHON", sys.executable)
    triple = host_triple()
    # an explicit --target keeps the build apart from host builds (build
    # scripts and proc macros run on the host and would not link with the
    # sancov symbols unresolved; the wrapper's crate list excludes them too)
    cmd = ["cargo", "build", "-p", "zdfuzz-python", "--lib", "--profile", "fuzz", "--target", triple]
    if quiet:
        cmd.append("--quiet")
    try:
        r = subprocess.run(cmd, cwd=root, env=env, capture_output=quiet, text=True)
    except FileNotFoundError as e:
        raise SetupError("the atheris engine needs cargo (a Rust toolchain) to build the instrumented core") from e
    if r.returncode != 0:
        tail = "\n".join((r.stderr or "").splitlines()[-30:]) if quiet else ""
        raise SetupError(f"building the instrumented core failed ({' '.join(cmd)}):\n{tail}")
    lib = library_path(root, triple)
    if not lib.is_file():
        raise SetupError(f"cargo finished but {lib} is missing")
    return lib
