"""Quality-gate reports: what was validated, which expectations failed, which items are quarantined.

Both gates (``validate_raw`` over the native datasets, ``validate_avuie`` over the AV-UIE JSONL) write
one JSON report in the same shape (DESIGN.md section 3, "bad samples are quarantined with a reason,
good ones pass on")::

    {"stage": ..., "max_failure_rate": ..., "<datasets | tasks>": {name: {num_items, num_passed,
     num_quarantined, failure_rate, present, root, quarantined: [...], expectations: [...]}}}

Quarantine entries are keyed by ``source`` (raw: the reader's stable ``"<file>:<line>"`` /
``"<file>[<index>]"``; AV-UIE: the JSONL ``"<file>:<line>"``) and sorted by it, and the report holds no
timestamps, so the file is byte-identical across runs on the same data (a stable DVC output). The
downstream stages read only the quarantine sets, through :func:`load_quarantined` (the AV-UIE builder
drops those raw records) and :func:`load_quarantined_avuie` (record ids). Only the standard library is
imported here.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from crab.errors import DataError

__all__ = [
    "ExpectationOutcome",
    "GroupReport",
    "QuarantinedItem",
    "Severity",
    "ValidationResult",
    "load_quarantined",
    "load_quarantined_avuie",
    "read_report",
    "write_json_atomic",
    "write_report",
]

Severity = Literal["critical", "warning"]


@dataclass(frozen=True)
class QuarantinedItem:
    """One item that failed a critical expectation or could not be read.

    Attributes:
        item_id: the raw record's id (``""`` if the reader could not get that far).
        split: ``"train"``, ``"val"`` or ``"test"`` (as far as known).
        source: where the item lives, ``"<file>:<line>"`` or ``"<file>[<index>]"``; the quarantine key.
        reasons: one line per failed check, human readable.
        record_id: the AV-UIE record id (``validate_avuie`` only; ``""`` for an unparsable line).
    """

    item_id: str
    split: str
    source: str
    reasons: tuple[str, ...]
    record_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "item_id": self.item_id,
            "split": self.split,
            "source": self.source,
            "reasons": list(self.reasons),
        }
        if self.record_id is not None:
            out["id"] = self.record_id
        return out


@dataclass(frozen=True)
class ExpectationOutcome:
    """The result of one expectation over one dataset (or task).

    Attributes:
        expectation: the Great Expectations type, e.g. ``"expect_column_values_to_be_in_set"``.
        column: the column it checks (``"a>b"`` style for column-pair expectations).
        success: whether every row met it.
        unexpected_count: rows that did not.
        severity: ``"critical"`` (failing rows are quarantined) or ``"warning"`` (only reported).
        reason: the human reason template the failing rows get.
    """

    expectation: str
    column: str
    success: bool
    unexpected_count: int
    severity: Severity
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "expectation": self.expectation,
            "column": self.column,
            "success": self.success,
            "unexpected_count": self.unexpected_count,
            "severity": self.severity,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class GroupReport:
    """The verdict on one dataset (``validate_raw``) or one AV-UIE task (``validate_avuie``).

    Attributes:
        name: dataset or task name.
        root: the folder that was validated, as configured.
        present: False if the folder is absent and not needed (then nothing was validated).
        num_items: annotation items seen, including those the reader rejected.
        quarantined: items that fail, sorted by ``source``.
        expectations: one outcome per expectation of the suite, in suite order.
    """

    name: str
    root: str
    present: bool
    num_items: int
    quarantined: tuple[QuarantinedItem, ...] = ()
    expectations: tuple[ExpectationOutcome, ...] = ()

    @property
    def num_quarantined(self) -> int:
        return len(self.quarantined)

    @property
    def num_passed(self) -> int:
        return self.num_items - self.num_quarantined

    @property
    def failure_rate(self) -> float:
        return self.num_quarantined / self.num_items if self.num_items else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "root": self.root,
            "present": self.present,
            "num_items": self.num_items,
            "num_passed": self.num_passed,
            "num_quarantined": self.num_quarantined,
            "failure_rate": round(self.failure_rate, 6),
            "quarantined": [q.to_dict() for q in sorted(self.quarantined, key=lambda q: q.source)],
            "expectations": [e.to_dict() for e in self.expectations],
        }


@dataclass(frozen=True)
class ValidationResult:
    """What a quality-gate stage returns (and writes as its JSON report).

    Attributes:
        stage: ``"validate_raw"`` or ``"validate_avuie"``.
        max_failure_rate: the threshold the stage applied.
        groups: one report per dataset (raw) or task (AV-UIE), by name.
        report_path: where the JSON report was written.
        docs_path: the Great Expectations data docs folder (``index.html`` inside).
    """

    stage: str
    max_failure_rate: float
    groups: dict[str, GroupReport] = field(default_factory=dict)
    report_path: Path | None = None
    docs_path: Path | None = None

    @property
    def group_key(self) -> str:
        """``"datasets"`` for the raw gate, ``"tasks"`` for the AV-UIE gate."""
        return "datasets" if self.stage == "validate_raw" else "tasks"

    @property
    def failed_groups(self) -> list[GroupReport]:
        """Groups whose failure rate exceeds the threshold, in name order."""
        return [g for _, g in sorted(self.groups.items()) if g.failure_rate > self.max_failure_rate]

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "max_failure_rate": self.max_failure_rate,
            self.group_key: {name: g.to_dict() for name, g in sorted(self.groups.items())},
        }


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write ``payload`` as JSON (indent 2, sorted keys, UTF-8) through a temp file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(payload, fh, indent=2, sort_keys=True, ensure_ascii=False)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_report(result: ValidationResult, path: Path) -> None:
    """Write a gate's report atomically (temp file + rename)."""
    write_json_atomic(path, result.to_dict())


def read_report(path: Path) -> dict[str, Any]:
    """Read a gate's JSON report.

    Raises:
        DataError: the file is missing or is not a report of either gate.
    """
    try:
        payload = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(path, "file not found (run the quality gate first)") from None
    except json.JSONDecodeError as err:
        raise DataError(path, f"not valid JSON ({err})") from None
    if not isinstance(payload, dict) or payload.get("stage") not in ("validate_raw", "validate_avuie"):
        raise DataError(path, "not a quality-gate report (no 'stage' of validate_raw / validate_avuie)")
    return payload


def load_quarantined(path: Path) -> dict[str, set[str]]:
    """The raw items to exclude downstream, from ``reports/validation/raw.json``.

    Returns:
        dataset name -> set of quarantined ``source`` strings (every dataset of the report, possibly empty).

    Raises:
        DataError: the file is missing or is not a ``validate_raw`` report.
    """
    payload = read_report(path)
    if payload["stage"] != "validate_raw":
        raise DataError(path, f"expected a validate_raw report, got {payload['stage']}")
    return {name: {q["source"] for q in group["quarantined"]} for name, group in payload["datasets"].items()}


def load_quarantined_avuie(path: Path) -> set[str]:
    """The AV-UIE record ids to exclude, from ``reports/validation/avuie.json``.

    Lines that were not parsable JSON have no id and are not in the set (no loader can read them).

    Raises:
        DataError: the file is missing or is not a ``validate_avuie`` report.
    """
    payload = read_report(path)
    if payload["stage"] != "validate_avuie":
        raise DataError(path, f"expected a validate_avuie report, got {payload['stage']}")
    return {q["id"] for group in payload["tasks"].values() for q in group["quarantined"] if q.get("id")}
