"""results.json: strict JSON, written atomically, with the provenance of the numbers in it.

Every result records where it came from: the code version (git commit,
``+dirty`` when the checkout has changes), the library versions, the platform and the time.
Files are written to a temporary name in the target folder, flushed to disk and renamed into
place, so a reader (or a killed run) never sees half a file. JSON has no inf or NaN: non-finite
numbers are written as ``null`` (a diverged run also says ``"diverged": true``).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np


def jsonable(obj: Any) -> Any:
    """Strict-JSON form: non-finite floats -> None, tuples -> lists, numpy scalars -> Python."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically: a temporary file in the same folder, fsync, rename.
    A crash leaves either the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it 0600; a result file is as any other
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(data: Any, path: str | Path) -> Path:
    """Write ``data`` as strict JSON atomically (``write_text_atomic``)."""
    return write_text_atomic(path, json.dumps(jsonable(data), indent=1, allow_nan=False))


def write_results(report: Any, path: str | Path) -> Path:
    """Write an evaluation ``Report`` (its ``to_dict()``) to ``path``, atomically."""
    return write_json(report.to_dict(), path)


def code_version() -> str:
    """The git commit of this checkout (``+dirty`` if modified), else the package version."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                              text=True, timeout=10)
        if head.returncode == 0:
            dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                   cwd=root, capture_output=True, text=True,
                                   timeout=10).stdout.strip()
            return head.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    from importlib import metadata

    try:
        return "optforge " + metadata.version("optforge")
    except metadata.PackageNotFoundError:
        return "unknown (no git commit, package not installed)"


def provenance(started: _dt.datetime) -> dict:
    """Code version, library versions, platform and start time of a run."""
    import torch

    return {"code_version": code_version(), "created": started.isoformat(timespec="seconds"),
            "python": platform.python_version(), "torch": torch.__version__,
            "numpy": np.__version__, "platform": platform.platform()}
