#!/usr/bin/env bash
# Writes requirements.lock: every dependency of the package and its dev extra, direct and transitive, at an
# exact version with its hashes, resolved from pyproject.toml's ranges for CPython 3.11 on x86-64 Linux.
# llama-cpp-python is left out (scripts/install.sh compiles it for the CPU), and so are the model packages.
#   bash scripts/lock.sh             keep every pin that still fits the ranges (after editing pyproject.toml)
#   bash scripts/lock.sh --upgrade   the newest versions the ranges allow (run scripts/check-latest.sh first)
# Extra arguments go to `uv pip compile` (e.g. --upgrade-package openai).
set -euo pipefail
cd "$(dirname "$0")/.."
uv=${UV:-.venv/bin/uv}
[ -x "$uv" ] || { echo "No $uv: run bash scripts/install.sh first" >&2; exit 1; }
# Where pip is told to look for wheels on this machine (the local CPU build of torch) is where uv looks too.
find_links=()
for link in $(python3 -m pip config get global.find-links 2>/dev/null || true); do find_links+=(--find-links "$link"); done
"$uv" pip compile pyproject.toml --extra dev --generate-hashes --python-version 3.11 \
  --python-platform x86_64-manylinux_2_28 --no-emit-package llama-cpp-python "${find_links[@]}" \
  --custom-compile-command "bash scripts/lock.sh" -o requirements.lock "$@"
