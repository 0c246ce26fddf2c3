"""The ``crab infer`` command: one input from the flags or a batch file in, JSON out, one line per error.

A single input prints one indented JSON object; a batch prints one JSON line per answered entry. With
``--out`` the records go to a JSONL file instead, written atomically (temp file + rename). A bad single
input raises its :class:`~crab.errors.CrabError`, which the CLI prints as one line with exit status 1; in a
batch each bad entry prints ``crab: error: <file>: <reason>`` on stderr, is skipped, and the exit status is
1 when any entry failed.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from crab.config import Params
from crab.errors import CrabError
from crab.infer.requests import InferRequest, read_batch
from crab.infer.run import infer

__all__ = ["infer_command"]

log = logging.getLogger(__name__)


def _write_jsonl_atomic(path: Path, records: Sequence[Mapping[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def infer_command(
    params: Params,
    *,
    task: str | None = None,
    video: str | None = None,
    audio: str | None = None,
    question: str | None = None,
    second: int | None = None,
    expression: str | None = None,
    batch: str | None = None,
    out: str | None = None,
    masks_dir: str = "masks",
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Run ``crab infer`` (module docstring).

    Args:
        params: the loaded params (model folders, ``media``, ``features``, ``evaluate``).
        task / video / audio / question / second / expression: one input (``--task``, ``--video``, ...); ``audio``
            defaults to the video, ``second`` (mask tasks) to 1; ``expression`` is Ref-AVS's.
        batch: a batch file instead of one input.
        out: a JSONL file to write the records to, instead of stdout.
        masks_dir: where S4 / MS3 masks are written as PNG.
        stdout / stderr: streams (default: the process's).

    Returns:
        The exit status: 0, or 1 when any batch entry failed.

    Raises:
        CrabError: a bad single input, flags that do not fit together, a bad batch file, or no trained model.
    """
    stdout, stderr = stdout or sys.stdout, stderr or sys.stderr
    if (batch is None) == (video is None):
        raise CrabError("give either --video (with --task) or --batch")
    if batch is not None:
        if task or audio or question or expression or second is not None:
            raise CrabError(
                "--task, --audio, --question, --second and --expression describe one input; a --batch file holds "
                "them per entry"
            )
        requests = read_batch(batch)
    else:
        if task is None:
            raise CrabError("--task is required with --video")
        requests = [InferRequest.create(task, video, audio, question, second, expression)]
    outcomes = infer(params, requests, masks_dir=masks_dir)
    if batch is None and isinstance(outcomes[0], CrabError):
        raise outcomes[0]
    errors = [o for o in outcomes if isinstance(o, CrabError)]
    for error in errors:
        stderr.write(f"crab: error: {error}\n")
    records = [o for o in outcomes if not isinstance(o, CrabError)]
    if out is not None:
        _write_jsonl_atomic(Path(out), records)
        log.info("infer: wrote %d results to %s", len(records), out)
    elif batch is None:
        stdout.write(json.dumps(records[0], indent=2, ensure_ascii=False) + "\n")
    else:
        stdout.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    if errors:
        log.error("infer: %d of %d inputs failed", len(errors), len(outcomes))
    return 1 if errors else 0
