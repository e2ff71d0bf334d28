#!/usr/bin/env bash
# Sees the next break before users do: installs the newest versions pyproject.toml's ranges allow (not the
# lock) into a scratch environment and runs the fast tests there (those without the default model).
# Not part of CI's gate: run it before `bash scripts/lock.sh --upgrade` (docs/development.md).
# llama.cpp's build and the model packages are taken from .venv (run bash scripts/install.sh first);
# arguments go to pytest (default: -m "not e2e" -x -q).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/uv ] || { echo "No .venv/bin/uv: run bash scripts/install.sh first" >&2; exit 1; }
scratch=$(mktemp -d /tmp/rag-latest-XXXX)
trap 'rm -rf "$scratch"' EXIT
.venv/bin/python -m venv "$scratch"
find_links=()
for link in $(.venv/bin/python -m pip config get global.find-links 2>/dev/null || true); do find_links+=(--find-links "$link"); done
# The newest allowed of everything but llama-cpp-python, which with the model packages (and its server's own
# dependencies) resolves from .venv: a .pth puts .venv's site-packages after the scratch one's, so they are
# neither rebuilt nor downloaded again.
mapfile -t requirements < <(.venv/bin/python - <<'PY'
import tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
for requirement in project["dependencies"] + project["optional-dependencies"]["dev"]:
    if not requirement.startswith("llama-cpp-python"):
        print(requirement)
PY
)
.venv/bin/uv pip install -q --python "$scratch/bin/python" --resolution highest "${find_links[@]}" "${requirements[@]}"
.venv/bin/uv pip install -q --python "$scratch/bin/python" --no-deps -e .
site=$("$scratch/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' > "$site/zz-rag-venv.pth"
echo "Newest allowed versions that differ from requirements.lock:"
"$scratch/bin/python" scripts/venv_vs_lock.py | grep '^differs' || echo "  (none)"
[ $# -gt 0 ] || set -- -m "not e2e" -x -q
HF_HUB_OFFLINE=1 "$scratch/bin/python" -m pytest "$@"
