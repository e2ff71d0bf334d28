#!/usr/bin/env bash
# Install, prepare the models, then start the server (chat UI, API, widget) on http://127.0.0.1:7860/.
# It indexes seeds/ first if there is no index yet. Arguments go to app.py (--host, --port).
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/install.sh
export HF_HUB_OFFLINE=1
.venv/bin/rag prepare
exec .venv/bin/python app.py "$@"
