"""Writing a file or a directory so that a kill mid-write leaves the previous version, never part of a new one.

The new content goes to a temporary name in the same folder and is moved into place with ``os.replace`` (a
rename within one filesystem, which is atomic). A kill before the move leaves the old file and a hidden
``.<name>.<random>.tmp`` beside it; that name ends in ``.tmp``, so a folder of partitions read by suffix (e.g.
``.safetensors``) does not list it.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _scratch_path(path: Path, kind: str = "") -> Path:
    # Not tempfile.mkstemp/mkdtemp: they create owner-only (0600/0700) entries, and the outputs must keep the
    # permissions the umask gives, as a plain write would (a group reading a shared project directory).
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}{kind}.tmp")


@contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """A path to write to (not yet created); it replaces ``path`` when the block completes, or goes if it fails."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = _scratch_path(path)
    try:
        yield scratch
        os.replace(scratch, path)
    except BaseException:
        scratch.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """An empty directory to fill; it replaces the directory ``path`` when the block completes, or goes if it fails.

    POSIX cannot rename a directory over a non-empty one, so the old directory is moved aside first and deleted
    once the new one is in place. A kill between those two renames leaves no ``path`` (a missing output, which
    the next run writes again) and the old directory under a hidden name: never a mix of old and new files.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch, retired = _scratch_path(path), _scratch_path(path, ".old")
    scratch.mkdir()
    try:
        yield scratch
        if path.exists():
            os.replace(path, retired)
        os.replace(scratch, path)
    except BaseException:
        if retired.exists() and not path.exists():
            os.replace(retired, path)  # the new directory did not make it: the old one goes back
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    shutil.rmtree(retired, ignore_errors=True)
