#!/usr/bin/env bash
# The test suite: formatting and lints (rustfmt, clippy, ruff, the
# import-linter layering contracts), Rust unit/integration tests, loom model
# checking, the extension built into the current Python environment, mypy
# stubtest, pytest.
# Run from anywhere inside the checkout; installs what it needs with pip.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== pip install -c constraints.txt -e .[test]"
python -m pip install -q -c constraints.txt -e ".[test]"

echo "== cargo fmt --check"
cargo fmt --all --check

echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings

echo "== ruff check, ruff format --check"
python -m ruff check python tests benchmarks
python -m ruff format --check python tests benchmarks

echo "== import-linter (layering contracts in pyproject.toml)"
lint-imports --no-cache

echo "== cargo test (workspace, the \`mutants\` profile)"
# opt-level 1 with the test profile's debug assertions and overflow checks:
# the explorer and stress tests run several times faster than at opt-level 0,
# for about the same build time, and cargo-mutants (CI's last step) reuses
# the build
cargo test --workspace --profile mutants --quiet

echo "== loom (percpu_ref interleavings)"
RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom \
    cargo test -p zdfuzz-core --test loom_percpu_ref --release --quiet

echo "== mypy stubtest"
python -m mypy.stubtest zdfuzz._core --concise
python -m mypy

echo "== pytest"
python -m pytest -q
