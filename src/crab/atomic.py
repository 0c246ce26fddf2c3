"""Atomic replacement of a stage's output folder, and atomic writing of one text file.

Every stage writes its outputs so that a reader never sees a half-written folder and a failed run
leaves the previous version in place: build everything in a temporary sibling folder (same file
system, so the final step is a rename), then swap it in; the old version is removed last.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["replace_dir", "write_text_atomic"]


@contextmanager
def replace_dir(target: str | Path) -> Iterator[Path]:
    """Yield an empty temporary sibling of ``target``; on success it becomes ``target``.

    Leftovers of an interrupted earlier run are removed first. If the body raises, the temporary
    folder is removed and ``target`` is left as it was.

    Args:
        target: the folder to (re)create.

    Yields:
        The temporary folder to write into.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    for stale in (tmp, old):
        shutil.rmtree(stale, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if target.exists():
        target.rename(old)
    try:
        tmp.rename(target)
    except BaseException:
        old.rename(target)  # put the previous version back
        raise
    shutil.rmtree(old, ignore_errors=True)


def write_text_atomic(path: Path, text: str) -> None:
    """Write UTF-8 ``text`` through a temp file in the same folder and a rename (never a half file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
