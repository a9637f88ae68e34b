"""Where the lab keeps what it downloads and builds.

``$ZDFUZZ_LAB_CACHE``, else ``$XDG_CACHE_HOME/zdfuzz/lab``, else
``~/.cache/zdfuzz/lab``. Everything under it is keyed by content (the
SHA-256 of a downloaded package, of the inputs of an initramfs), written to a
temporary name and renamed into place, so two lab runs can share it and a
killed run leaves at worst a stray ``*.tmp*`` file that the next run ignores.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path


def cache_dir() -> Path:
    env = os.environ.get("ZDFUZZ_LAB_CACHE")
    if env:
        base = Path(env)
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = (Path(xdg) if xdg else Path.home() / ".cache") / "zdfuzz" / "lab"
    base.mkdir(parents=True, exist_ok=True)
    return base


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same
    directory and a rename: readers see the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
