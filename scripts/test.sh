#!/usr/bin/env bash
# The test suite: formatting and lints (rustfmt, clippy, ruff, the
# import-linter layering contracts), Rust unit/integration tests, loom model
# checking, the extension built into the current Python environment, mypy
# stubtest, pytest.
# Run from anywhere inside the checkout; installs what it needs with pip.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== [${SECONDS}s] pip install -c constraints.txt -e .[test]"
python -m pip install -q -c constraints.txt -e ".[test]"

echo "== [${SECONDS}s] cargo fmt --check"
cargo fmt --all --check

echo "== [${SECONDS}s] cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings

echo "== [${SECONDS}s] ruff check, ruff format --check"
python -m ruff check python tests benchmarks
python -m ruff format --check python tests benchmarks

echo "== [${SECONDS}s] import-linter (layering contracts in pyproject.toml)"
lint-imports --no-cache

echo "== [${SECONDS}s] cargo test (workspace, the \`mutants\` profile)"
# opt-level 1 with the test profile's debug assertions and overflow checks:
# the explorer and stress tests run several times faster than at opt-level 0,
# for about the same build time, and cargo-mutants (CI's last step) reuses
# the build
cargo test --workspace --profile mutants --quiet

echo "== [${SECONDS}s] loom (percpu_ref interleavings)"
RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom \
    cargo test -p zdfuzz-core --test loom_percpu_ref --release --quiet

echo "== [${SECONDS}s] mypy stubtest"
python -m mypy.stubtest zdfuzz._core --concise
python -m mypy

echo "== [${SECONDS}s] pytest (pytest-xdist, ${ZDFUZZ_TEST_WORKERS:-2} workers)"
# Two workers halve the suite's wall time on a 2-core machine (518 s -> 269 s
# measured); tests sharing a module fixture (the local Ray cluster) carry
# `xdist_group` and stay in one worker. ZDFUZZ_TEST_WORKERS=0 runs it in one
# process.
python -m pytest -q -n "${ZDFUZZ_TEST_WORKERS:-2}" --dist loadgroup --durations=15
echo "== [${SECONDS}s] scripts/test.sh done"
