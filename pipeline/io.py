"""Atomic writes: a reader (or a killed run) never sees a half-written file."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> None:
    """Call write(tmp_path) on a temporary file next to `path`, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o644)      # mkstemp makes 0600; outputs should be readable like any file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_data(path: str | Path, data: str | bytes) -> None:
    """Text (UTF-8) or bytes, atomically."""
    raw = data.encode() if isinstance(data, str) else data
    atomic_write(path, lambda p: p.write_bytes(raw))


def write_json(path: str | Path, obj: Any) -> None:
    write_data(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")
