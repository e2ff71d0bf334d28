"""The environment the tests run in is requirements.lock exactly (what scripts/install.sh installs).

Beside the lock only this package, llama.cpp's native build and the model packages may be installed;
a package missing, at another version or left from an earlier lock fails here, naming it.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from venv_vs_lock import differences, locked  # noqa: E402


def test_the_environment_is_the_lock() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "venv_vs_lock.py")], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_lock_pins_every_dependency_with_hashes_and_leaves_out_the_native_build() -> None:
    text = (ROOT / "requirements.lock").read_text()
    pins = locked()
    assert {"torch", "transformers", "openai", "httpx", "uv"} <= pins.keys()
    assert "llama-cpp-python" not in pins  # compiled for the CPU by install.sh
    hashed = re.findall(r"^\S+==\S+ \\\n(?:    --hash=sha256:[0-9a-f]{64}(?: \\)?\n)+", text, re.MULTILINE)
    assert len(hashed) == len(pins)  # every pin carries its hashes


def test_a_missing_changed_or_extra_package_is_named() -> None:
    pins = {"openai": "3.63.0", "httpx": "0.29.0"}
    present = {"openai": "1.99.0", "rag": "0.1.0", "leftover": "2.0", "llama-cpp-python": "0.3.36"}
    assert differences(pins, present) == [
        "missing httpx==0.29.0",
        "differs openai: locked 3.63.0, installed 1.99.0",
        "extra leftover==2.0",
    ]
