#!/usr/bin/env bash
# Install, prepare the models, index seeds/ if there is no index yet, then start the assistant.
# Arguments are questions for a one-shot answer; with none, it asks interactively.
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/install.sh
export HF_HUB_OFFLINE=1
.venv/bin/rag prepare
.venv/bin/python app.py "$@"
