"""User-facing errors.

Every error a user can cause by what they feed the pipeline (a params file, a media file, an annotation
line) derives from :class:`CrabError`. The CLI prints such errors as one line naming the file and the
reason and exits non-zero; any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["CrabError", "DataError"]


class CrabError(Exception):
    """An error caused by user input; its message is complete and fits on one line."""


class DataError(CrabError):
    """A data file that cannot be used: names the file and the reason.

    Args:
        path: the offending file (or the annotation file holding the offending line).
        reason: why it cannot be used, e.g. ``"no audio stream"``.
    """

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")
