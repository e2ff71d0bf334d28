"""Disk faults in the user's words: which disk is full or read-only, and how much room it has.

An `OSError` from deep inside FAISS, numpy or safetensors says "No space left on device" and
nothing else; the user needs to know which mount to clear or which setting moves the files.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
from pathlib import Path

import numpy as np

FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
READ_ONLY = (errno.EROFS, errno.EACCES, errno.EPERM)
_RUST_OS_ERROR = re.compile(r"\(os error (\d+)\)")  # how std::io::Error shows an errno


def mount_point(path: Path) -> Path:
    """The mount `path` is on: the highest existing folder above it on the same device."""
    path = path.resolve()
    while not path.exists():
        path = path.parent
    device = path.stat().st_dev
    while path != path.parent and path.parent.stat().st_dev == device:
        path = path.parent
    return path


def describe(exc: BaseException, path: Path, setting: str) -> str | None:
    """A message naming the disk under `path` for a full or read-only disk; None for any other error.

    `exc` is an `OSError`, or an error of a Rust library (safetensors) that says "(os error 28)".
    `setting` is the one that puts these files elsewhere (say `RAG_INDEX_DIR`).
    """
    code = exc.errno if isinstance(exc, OSError) else None
    if code is None and (match := _RUST_OS_ERROR.search(str(exc))):
        code = int(match.group(1))
    if code in FULL:
        mount = mount_point(path)
        usage = shutil.disk_usage(mount)
        return (
            f"the disk holding {path} is full (mount {mount}: {_size(usage.free)} free of {_size(usage.total)}); "
            f"free some space there or set {setting} to a folder on another disk"
        )
    if code in READ_ONLY:
        mount = mount_point(path)
        read_only = bool(os.statvfs(mount).f_flag & os.ST_RDONLY)
        why = f"the disk {mount} is mounted read-only" if read_only else f"it is not writable ({os.strerror(code)})"
        return f"cannot write to {path}: {why}; set {setting} to a writable folder"
    return None


def _size(count: float) -> str:
    if count < 1024:
        return f"{count:.0f} bytes"
    for unit in ("KB", "MB"):
        count /= 1024
        if count < 1024:
            return f"{count:.1f} {unit}"
    return f"{count / 1024:.1f} GB"


def save_array(path: Path, array: np.ndarray) -> None:
    """`np.save`, written through Python's file object: numpy's own fwrite drops errno, so a full disk
    would read "12288 requested and 5088 written" instead of ENOSPC."""
    array = np.ascontiguousarray(array)
    with open(path, "wb") as handle:
        np.lib.format.write_array_header_1_0(handle, np.lib.format.header_data_from_array_1_0(array))
        handle.write(memoryview(array).cast("B"))


def write_bytes(path: Path, data: np.ndarray) -> None:
    """A uint8 array (FAISS's `serialize_index`) to a file, through Python's file object for the same reason."""
    with open(path, "wb") as handle:
        handle.write(memoryview(np.ascontiguousarray(data)).cast("B"))
