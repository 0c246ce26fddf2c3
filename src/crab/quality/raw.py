"""The ``validate_raw`` stage: quality gates over the raw datasets before anything is built from them.

DESIGN.md section 3: "Great Expectations suites over each raw dataset's annotations and media; bad samples
are quarantined with a reason, good ones pass on". For each dataset (AVE, LLP, MUSIC-AVQA, VALOR, native
layouts of dataset-layouts.md sections 1, 2, 3 and 7) all splits are read with the ``crab.datasets``
readers into one frame (one row per annotation item; for LLP one per video, its dense events a JSON
column, so a bad event quarantines the whole video), every *distinct* media file is fully decoded once
(:func:`crab.datasets.media.verify_decodes`, requiring a video and an audio stream; AVE has several rows
per video), and the dataset's suite (:mod:`crab.quality.suites`) runs through Great Expectations.
Rows the readers could not parse are quarantined with the reader's reason.

Outputs (repository root = working directory): ``reports/validation/raw.json`` (the quarantine, keyed
by the readers' stable ``source``, which ``avuie_build`` excludes through
:func:`crab.quality.quarantine.load_quarantined`) and the data docs site ``reports/validation/raw_docs/``,
both written atomically. The stage fails only if some dataset's failure rate exceeds
``validation.max_failure_rate``: a few bad items are expected in real data and are dropped with a reason,
a high rate means a broken download or layout. A dataset folder that is absent is skipped with a warning
unless a task in ``avuie.tasks`` needs it (``TASKS[task].dataset``), which is an error naming the folder.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from crab.config import Params, ValidationConfig
from crab.datasets.ave import AVE_SPLIT_FILES, read_ave
from crab.datasets.llp import LLP_SPLIT_FILES, LlpEvent, LlpRecord, read_llp
from crab.datasets.media import verify_decodes
from crab.datasets.music_avqa import AVQA_SPLITS, read_music_avqa
from crab.datasets.records import AvqaRecord, Rejection
from crab.datasets.valor import VALOR_SPLITS, read_valor
from crab.errors import CrabError, DataError
from crab.quality.quarantine import GroupReport, QuarantinedItem, ValidationResult, write_report
from crab.quality.runner import Gate, enforce_max_failure_rate, log_summary, open_gate
from crab.quality.suites import (
    Check,
    ave_suite,
    derive_ave,
    derive_llp,
    derive_music_avqa,
    llp_suite,
    music_avqa_suite,
    valor_suite,
)
from crab.tasks import TASKS, Task

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["DOCS_DIR", "REPORT_PATH", "probe_media", "validate_raw"]

log = logging.getLogger(__name__)

STAGE = "validate_raw"
REPORT_PATH = Path("reports/validation/raw.json")
DOCS_DIR = Path("reports/validation/raw_docs")

#: Most threads decoding media at once (PyAV releases the GIL around FFmpeg's send / receive calls).
_MAX_PROBE_THREADS = 8


@dataclass(frozen=True)
class _DatasetSpec:
    """How one dataset is read and checked.

    Attributes:
        splits: the split names its reader accepts.
        read: ``read(root, split) -> ReadResult``.
        columns: the annotation columns :meth:`row` fills (media columns are added separately).
        derive: adds derived columns to the frame (or None).
        suite: the dataset's checks.
        encode: the record's structured columns as scalars (JSON strings, counts), overriding the plain
            attribute values of the same names (or None: every column is a plain attribute).
    """

    splits: tuple[str, ...]
    read: Callable[[Path, str], Any]
    columns: tuple[str, ...]
    derive: Callable[[pd.DataFrame], pd.DataFrame] | None
    suite: Callable[[ValidationConfig], list[Check]]
    encode: Callable[[Any], dict[str, Any]] | None = None

    def row(self, record: Any) -> dict[str, Any]:
        """A record's annotation columns (list-valued fields as JSON strings, as the files store them)."""
        values = {name: getattr(record, name, None) for name in self.columns}
        values["video_path"] = str(record.video_path)
        if self.encode is not None:
            values.update(self.encode(record))
        return values


def _avqa_columns(record: AvqaRecord) -> dict[str, Any]:
    """MUSIC-AVQA's list fields as the files store them (``type`` is a JSON list string)."""
    return {
        "question_type": json.dumps(list(record.question_type)),
        "templ_values": json.dumps(list(record.templ_values), ensure_ascii=False),
    }


def _llp_events(modality: str, events: tuple[LlpEvent, ...]) -> list[dict[str, Any]]:
    return [
        {"modality": modality, "label": e.label, "onset_s": e.onset_s, "offset_s": e.offset_s, "source": e.source}
        for e in events
    ]


def _llp_columns(record: LlpRecord) -> dict[str, Any]:
    """LLP's weak labels (JSON list), event counts and dense events (JSON list; None for a weak-only video)."""
    audio, visual = record.audio_events, record.visual_events
    dense = None
    if audio is not None or visual is not None:
        dense = json.dumps(_llp_events("audio", audio or ()) + _llp_events("visual", visual or ()))
    return {
        "labels": json.dumps(list(record.labels)),
        "num_audio_events": None if audio is None else len(audio),
        "num_visual_events": None if visual is None else len(visual),
        "dense_events": dense,
    }


_COMMON = ("item_id", "split", "source", "video_id", "video_path")
_MEDIA = ("media_error", "duration_s", "audio_sample_rate")


_SPECS: dict[str, _DatasetSpec] = {
    "ave": _DatasetSpec(
        splits=tuple(AVE_SPLIT_FILES),
        read=read_ave,
        columns=(*_COMMON, "category", "quality", "start_s", "end_s"),
        derive=derive_ave,
        suite=ave_suite,
    ),
    "llp": _DatasetSpec(
        splits=tuple(LLP_SPLIT_FILES),
        read=read_llp,
        columns=(*_COMMON, "labels", "num_audio_events", "num_visual_events", "dense_events"),
        derive=derive_llp,
        suite=llp_suite,
        encode=_llp_columns,
    ),
    "music_avqa": _DatasetSpec(
        splits=AVQA_SPLITS,
        read=read_music_avqa,
        columns=(*_COMMON, "question_id", "question_type", "question_content", "templ_values", "answer"),
        derive=derive_music_avqa,
        suite=music_avqa_suite,
        encode=_avqa_columns,
    ),
    "valor": _DatasetSpec(
        splits=VALOR_SPLITS, read=read_valor, columns=(*_COMMON, "caption"), derive=None, suite=valor_suite
    ),
}


def probe_media(paths: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Fully decode each distinct media file once and return its media columns.

    Args:
        paths: media files (duplicates are probed once).

    Returns:
        path -> ``{"media_error": reason | None, "duration_s": float | nan, "audio_sample_rate": float | nan}``;
        the reason is the :class:`crab.errors.DataError` reason of a file that does not decode with a
        video and an audio stream.
    """

    def one(path: str) -> dict[str, Any]:
        try:
            info = verify_decodes(path, need_video=True, need_audio=True)
        except DataError as err:
            return {"media_error": err.reason, "duration_s": math.nan, "audio_sample_rate": math.nan}
        return {
            "media_error": None,
            "duration_s": float(info.duration_s) if info.duration_s is not None else math.nan,
            "audio_sample_rate": float(info.audio_sample_rate) if info.audio_sample_rate else math.nan,
        }

    unique = sorted(set(paths))
    with ThreadPoolExecutor(max_workers=min(_MAX_PROBE_THREADS, os.cpu_count() or 1)) as pool:
        columns = list(tqdm(pool.map(one, unique), total=len(unique), desc="decode media", unit="file", disable=None))
    return dict(zip(unique, columns, strict=True))


def _validate_dataset(
    gate: Gate, name: str, spec: _DatasetSpec, root: Path, validation: ValidationConfig
) -> GroupReport:
    """Read, probe and check one dataset; return its report."""
    import pandas as pd

    started = time.perf_counter()
    records: list[Any] = []
    rejected: list[tuple[str, Rejection]] = []
    for split in spec.splits:
        result = spec.read(root, split)
        records.extend(result.records)
        rejected.extend((split, r) for r in result.rejected)

    rows = [spec.row(r) for r in records]
    read_s = time.perf_counter() - started
    media = probe_media([row["video_path"] for row in rows])
    probe_s = time.perf_counter() - started - read_s
    for row in rows:
        row.update(media[row["video_path"]])
    frame = pd.DataFrame(rows, columns=[*spec.columns, *_MEDIA])  # one row per record, in file order
    frame["duration_s"] = frame["duration_s"].astype(float)
    frame["audio_sample_rate"] = frame["audio_sample_rate"].astype(float)
    if spec.derive is not None:
        frame = spec.derive(frame)
    run = gate.validate(name, frame, spec.suite(validation))

    quarantined = [
        QuarantinedItem(item_id=r.item_id, split=split, source=r.source, reasons=(r.reason,)) for split, r in rejected
    ]
    for label, reasons in run.reasons.items():
        row = frame.loc[label]
        quarantined.append(
            QuarantinedItem(
                item_id=str(row["item_id"]), split=str(row["split"]), source=str(row["source"]), reasons=tuple(reasons)
            )
        )
    report = GroupReport(
        name=name,
        root=str(root),
        present=True,
        num_items=len(records) + len(rejected),
        quarantined=tuple(sorted(quarantined, key=lambda q: q.source)),
        expectations=tuple(run.outcomes),
    )
    log.info(
        "%s: %s: %d items, %d media files checked in %.1f s (read %.1f s, decode %.1f s, suite %.1f s)",
        STAGE,
        name,
        report.num_items,
        len(media),
        time.perf_counter() - started,
        read_s,
        probe_s,
        time.perf_counter() - started - read_s - probe_s,
    )
    return report


def validate_raw(params: Params) -> ValidationResult:
    """Run the quality gates over every raw dataset; write the report and the data docs.

    Args:
        params: reads ``datasets`` (roots), ``validation`` (thresholds) and ``avuie.tasks`` (which
            datasets are required).

    Returns:
        The per-dataset reports (also written to ``reports/validation/raw.json``).

    Raises:
        CrabError: a dataset folder needed by ``avuie.tasks`` is absent, or a dataset's failure rate
            exceeds ``validation.max_failure_rate`` (the report is written first).
        DataError: an annotation file of a present dataset is missing or unreadable as a whole.
    """
    roots: dict[str, str] = {name: getattr(params.datasets, name) for name in _SPECS}  # fields named by dataset
    needed: dict[str, list[str]] = {}
    for task in params.avuie.tasks:
        needed.setdefault(TASKS[Task(task)].dataset, []).append(task)
    for name, root in roots.items():
        if not Path(root).is_dir() and name in needed:
            raise CrabError(
                f"{STAGE}: dataset folder {root} ({name}) not found; avuie.tasks {needed[name]} need it "
                "(run `crab synth` or add the dataset there)"
            )

    groups: dict[str, GroupReport] = {}
    with open_gate(STAGE, DOCS_DIR) as gate:
        for name, root in roots.items():
            if not Path(root).is_dir():
                log.warning("%s: dataset folder %s (%s) is absent; skipped (no task needs it)", STAGE, root, name)
                groups[name] = GroupReport(name=name, root=root, present=False, num_items=0)
                continue
            groups[name] = _validate_dataset(gate, name, _SPECS[name], Path(root), params.validation)

    result = ValidationResult(
        stage=STAGE,
        max_failure_rate=params.validation.max_failure_rate,
        groups=groups,
        report_path=REPORT_PATH,
        docs_path=DOCS_DIR,
    )
    write_report(result, REPORT_PATH)
    log_summary(result)
    enforce_max_failure_rate(result)
    return result
