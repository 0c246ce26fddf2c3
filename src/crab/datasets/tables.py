"""Helpers the table-driven dataset readers share (LLP, AVSBench S4 / MS3, AVSBench-semantic, Ref-AVS).

CSV rows with their line numbers (so every rejection names its line), split / subset selection that
reports unknown values once, and the media and file-name checks of a record made of several files.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TypeVar

from crab.datasets.records import ReadResult, Rejection
from crab.errors import DataError

__all__ = ["file_name_problem", "header_column", "missing_media", "read_csv_rows", "select_rows"]

logger = logging.getLogger(__name__)

R = TypeVar("R")
K = TypeVar("K")


def read_csv_rows(path: Path, delimiter: str = ",") -> list[tuple[int, list[str]]]:
    """The non-blank rows of a CSV file, each with the 1-based line it starts on (header row included).

    Standard CSV quoting applies (a quoted field may hold the delimiter or a line break; a malformed
    quote is an error, since it shifts every later row boundary). LF and CRLF endings and a byte-order
    mark are accepted; line breaks inside fields are read as LF.

    Raises:
        DataError: the file is missing, is not UTF-8, or is not parsable as CSV (names the line).
    """
    if not path.is_file():
        raise DataError(path, "file not found")
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: tolerate a byte-order mark
    except UnicodeDecodeError as error:
        raise DataError(path, f"not UTF-8 text ({error.reason} at byte {error.start})") from error
    # strict: a stray quote raises instead of silently swallowing the rest of the file into one field
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    rows: list[tuple[int, list[str]]] = []
    last_line = 0
    try:
        for fields in reader:
            start, last_line = last_line + 1, reader.line_num
            if any(field.strip() for field in fields):
                rows.append((start, fields))
    except csv.Error as error:
        raise DataError(path, f"line {reader.line_num}: not parsable as CSV ({error})") from error
    return rows


def file_name_problem(name: str, value: str) -> str:
    """Why ``value`` (the field ``name``) cannot be a file or folder name ("" if it can)."""
    if not value:
        return f"empty {name}"
    if "/" in value or "\\" in value or value in {".", ".."}:
        return f"{name} {value!r} is not a file name"
    return ""


def missing_media(paths: Iterable[Path]) -> str:
    """``""`` if every path is a file, else a reason naming the first missing one and how many more."""
    missing = [path for path in paths if not path.is_file()]
    if not missing:
        return ""
    more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
    return f"missing media file {missing[0]}{more}"


def select_rows(
    parsed: Sequence[tuple[K | None, R | Rejection]],
    wanted: Callable[[K], bool] | None,
    path: Path,
) -> ReadResult[R]:
    """Keep the parsed rows of one selection (a split, a subset) of a file that holds every split.

    Args:
        parsed: per row, its selection key (``None`` if the row's split / subset is unknown or could not
            be read) and its record or rejection.
        wanted: which keys to keep; ``None`` keeps everything, unknown-key rows included.
        path: the file, for the log.

    Returns:
        The kept records and rejections. Rows with an unknown key are reported only when ``wanted`` is
        None, so that reading every split of a file reports each bad row exactly once; a selective read
        logs how many it left out.
    """
    result: ReadResult[R] = ReadResult()
    num_unknown = 0
    for key, item in parsed:
        if key is None and wanted is not None:
            num_unknown += 1
            continue
        if key is not None and wanted is not None and not wanted(key):
            continue
        if isinstance(item, Rejection):
            result.rejected.append(item)
        else:
            result.records.append(item)
    if num_unknown:
        logger.warning(
            "%s: %d row(s) have no usable split/subset and are left out; read without a filter to see why",
            path,
            num_unknown,
        )
    return result


def header_column(path: Path, header: list[str], name: str) -> int:
    """The position of column ``name`` in a CSV header.

    Raises:
        DataError: the header has no such column (most likely the file has no header row or another separator).
    """
    stripped = [field.strip() for field in header]
    if name not in stripped:
        raise DataError(path, f"no {name!r} column in the header {header!r} (no header row, or not comma-separated?)")
    return stripped.index(name)


# --------------------------------------------------------------------------------------------------
# S4 and MS3
# --------------------------------------------------------------------------------------------------
