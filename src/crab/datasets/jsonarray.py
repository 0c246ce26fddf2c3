"""Loading annotation files that hold one JSON array (MUSIC-AVQA ``avqa-*.json``, VALOR ``*_samples.json``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from crab.errors import DataError

__all__ = ["load_json_array"]


def load_json_array(path: Path) -> list[Any]:
    """Load a file holding one JSON array; any other content makes the whole file unusable.

    Raises:
        DataError: the file is not UTF-8, not JSON, or not an array (names the file and the position).
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError as error:
        raise DataError(path, f"not UTF-8 text ({error.reason} at byte {error.start})") from error
    except json.JSONDecodeError as error:
        raise DataError(path, f"not valid JSON ({error.msg} at line {error.lineno} column {error.colno})") from error
    if not isinstance(data, list):
        raise DataError(path, f"expected a JSON array, got a JSON {type(data).__name__}")
    return data
