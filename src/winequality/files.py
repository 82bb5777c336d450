"""Small file helpers shared by the stage commands: the one atomic file write and the one file lock.

Every file a stage, a download or a cache writes goes through ``atomic_path``: the content is
written to a unique sibling, flushed to disk, then renamed over the destination in one step, so a
reader (or a crash) sees the old file or the new one, never half of one. Directories are swapped
by ``artifacts.replaced_atomically``; this module and that one are the only places that rename.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write; on success it replaces ``path``.

    On failure the temporary file is removed and ``path`` is left as it was.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        tmp.chmod(0o644)  # mkstemp makes it owner-only; readers may run as another user
        with tmp.open("rb") as written:
            os.fsync(written.fileno())  # the rename must not reach the disk before the data
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: Path, text: str, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding=encoding)


def write_json(path: Path, data: object, *, sort_keys: bool = True) -> None:
    """Write ``data`` as indented JSON, atomically (a reader never sees half a file)."""
    write_text(path, json.dumps(data, indent=2, sort_keys=sort_keys) + "\n")


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` (created if needed), released on exit or process death:
    parallel processes (test workers, two commands) must not fill one cache folder at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
