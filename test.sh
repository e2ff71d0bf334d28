#!/usr/bin/env bash
# Install everything the tests need, lint, run the whole suite (end-to-end tests use the real default model),
# then the eval's quality gate: a fixed subset of eval/seeds.json against the thresholds in eval/gate.toml.
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/install.sh
export HF_HUB_OFFLINE=1
.venv/bin/ruff check rag tests app.py scripts
.venv/bin/ruff format --check rag tests app.py scripts
# The models verified and converted, and the generation engine chosen for this CPU (printed), before the tests.
.venv/bin/rag prepare
# --durations: the slowest tests in the log, to keep the suite well under 45 minutes on the slowest CPU kind.
.venv/bin/python -m pytest -q --durations=25 "$@"
.venv/bin/rag eval --gate eval/gate.toml
