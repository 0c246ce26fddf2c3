"""Import Crab's released AV-UIE sample lists: read, gate, and write them in our AV-UIE layout.

:func:`import_released` reads every sample list of the wanted tasks (:mod:`crab.avuie.released.files`), parses
each row (:mod:`crab.avuie.released.rows`), validates the rows with the Great Expectations suite of
:mod:`crab.quality.released` (stage name ``import_avuie``) and keeps the records of the rows that pass; each row
that fails is quarantined with its file, index and reasons. :func:`write_released` writes the result in
``avuie_build``'s layout: ``<out>/<task>/<split>.jsonl`` (the splits ``avuie_build`` writes, lines sorted by id),
``<out>/stats.json`` (``avuie_build``'s per-task shape, plus ``source: "release"``, the files read, the skipped
rows and the quarantine count), ``<out>/released.json`` (the quarantine, in the quality gates' report shape) and
``<out>/released_docs/`` (the data docs). ``crab import-avuie`` and ``avuie_build`` (with ``avuie.release``) are
the two callers; both fail after writing when a task's failure rate exceeds ``validation.max_failure_rate``.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crab.atomic import replace_dir
from crab.avuie.released.files import (
    DATASET_ROOTS,
    RELEASED_TASKS,
    SAMPLE_LISTS,
    TASK_SPLITS,
    find_reasoning_dir,
    find_sample_list,
)
from crab.avuie.released.rows import COLUMNS, Context, ParsedRow, Skip, parse_row
from crab.avuie.schema import AvuieRecord, write_jsonl
from crab.datasets.jsonarray import load_json_array
from crab.errors import CrabError, DataError
from crab.quality.quarantine import GroupReport, QuarantinedItem, ValidationResult, write_report
from crab.quality.runner import Gate, log_summary, open_gate
from crab.tasks import TASKS, Task

if TYPE_CHECKING:
    from crab.config import DatasetsConfig, ValidationConfig

__all__ = [
    "DOCS_NAME",
    "REPORT_NAME",
    "STAGE",
    "ReleasedImport",
    "found_tasks",
    "import_released",
    "released_result",
    "write_released",
    "write_report_into",
]

log = logging.getLogger(__name__)

STAGE = "import_avuie"
REPORT_NAME = "released.json"
DOCS_NAME = "released_docs"


@dataclass(frozen=True)
class ReleasedImport:
    """What :func:`import_released` read.

    Attributes:
        release: the release folder.
        records: task -> split -> records, lines sorted by id (every split ``avuie_build`` writes, possibly empty).
        stats: task -> its ``stats.json`` entry.
        groups: task -> its gate report (rows, quarantine with reasons, one outcome per check).
        docs_dir: where the data docs were built (moved into the output by :func:`write_released`).
        max_failure_rate: the threshold the gate applies.
    """

    release: Path
    records: dict[str, dict[str, list[AvuieRecord]]]
    stats: dict[str, dict[str, Any]]
    groups: dict[str, GroupReport]
    docs_dir: Path
    max_failure_rate: float


def _dataset_root(task: str, datasets: DatasetsConfig) -> Path:
    return Path(getattr(datasets, DATASET_ROOTS[RELEASED_TASKS[task]].datasets_key))


def found_tasks(release: Path, datasets: DatasetsConfig) -> list[str]:
    """The tasks (in :data:`RELEASED_TASKS` order) with at least one sample list in the release."""
    return [
        task
        for task in RELEASED_TASKS
        if any(find_sample_list(Path(release), s, _dataset_root(task, datasets))[0] for s in SAMPLE_LISTS[task])
    ]


def import_released(
    release: Path,
    datasets: DatasetsConfig,
    validation: ValidationConfig,
    docs_dir: Path,
    tasks: Sequence[str] | None = None,
    seed: int = 0,
    use_reasoning: bool = True,
) -> ReleasedImport:
    """Read, parse and gate the sample lists of ``tasks`` (module docstring).

    Args:
        release: the folder holding Crab's files (``ave_data/``, ``music_avqa_data/``, ``avvp_data/``, ``AVS/``,
            ``valor/``, or the flat Hugging Face names).
        datasets: the local dataset roots the media paths rebase onto.
        validation: ``max_failure_rate`` and the AVE clip length.
        docs_dir: folder for the data docs (replaced).
        tasks: the tasks to import; None = every task with a sample list in the release.
        seed: picks AVSS train frames (``random.Random(f"{seed}/{task}")``, as ``avuie_build``).
        use_reasoning: False for the "w/o ERP" ablation: plain answers, released texts unused.

    Returns:
        The records, stats and gate reports per task.

    Raises:
        CrabError: the release folder is missing, a task is not one the release covers, a wanted task has no
            sample list (names every place tried), or no task has one.
        DataError: a sample list is not a JSON array.
    """
    release = Path(release)
    if not release.is_dir():
        raise DataError(release, "release folder not found")
    unknown = [t for t in tasks or () if t not in RELEASED_TASKS]
    if unknown:
        raise CrabError(f"{STAGE}: tasks {unknown} have no released sample lists (released: {list(RELEASED_TASKS)})")
    wanted = list(tasks) if tasks else found_tasks(release, datasets)
    if not wanted:
        raise CrabError(f"{STAGE}: {release}: no sample list of any task found (dataset-layouts.md section 7)")
    records: dict[str, dict[str, list[AvuieRecord]]] = {}
    stats: dict[str, dict[str, Any]] = {}
    groups: dict[str, GroupReport] = {}
    with open_gate(STAGE, docs_dir) as gate:
        for task in wanted:
            records[task], stats[task], groups[task] = _import_task(
                gate, task, release, _dataset_root(task, datasets), validation, seed, use_reasoning
            )
    return ReleasedImport(release, records, stats, groups, docs_dir, validation.max_failure_rate)


def _read_rows(
    task: str, release: Path, root: Path, validation: ValidationConfig, seed: int, use_reasoning: bool
) -> tuple[list[ParsedRow], Counter[str], list[str]]:
    """Every row of a task's sample lists, parsed; the skipped rows by reason; the files read."""
    rng = random.Random(f"{seed}/{task}")  # str seeds hash with SHA-512: stable across runs
    parsed: list[ParsedRow] = []
    skipped: Counter[str] = Counter()
    files: list[str] = []
    for sample_list in SAMPLE_LISTS[task]:
        path, tried = find_sample_list(release, sample_list, root)
        if path is None:
            log.warning("%s: %s: no %s (tried %s)", STAGE, task, sample_list.crab_path, ", ".join(map(str, tried)))
            continue
        files.append(path.as_posix())
        reasoning_dir = find_reasoning_dir(release, sample_list, root)
        ctx = Context(task, sample_list.split, root, reasoning_dir, use_reasoning, rng, validation.ave_duration_s)
        for index, entry in enumerate(load_json_array(path)):
            item = parse_row(ctx, entry, f"{path.as_posix()}[{index}]")
            if isinstance(item, Skip):
                skipped[item.reason] += 1
            else:
                parsed.append(item)
    if not files:
        tried = [str(p) for s in SAMPLE_LISTS[task] for p in find_sample_list(release, s, root)[1]]
        raise CrabError(f"{STAGE}: no sample list for task {task} (tried {', '.join(tried)})")
    return parsed, skipped, files


def _import_task(
    gate: Gate, task: str, release: Path, root: Path, validation: ValidationConfig, seed: int, use_reasoning: bool
) -> tuple[dict[str, list[AvuieRecord]], dict[str, Any], GroupReport]:
    """One task: read its rows, gate them, keep the records of the rows that pass."""
    import pandas as pd

    from crab.quality.released import released_suite

    parsed, skipped, files = _read_rows(task, release, root, validation, seed, use_reasoning)
    frame = pd.DataFrame([p.columns for p in parsed], columns=list(COLUMNS))
    reasons: dict[Any, list[str]] = {}
    outcomes: tuple = ()
    if len(frame):
        run = gate.validate(task, frame, released_suite(task))
        reasons, outcomes = run.reasons, tuple(run.outcomes)
    kept: list[AvuieRecord] = []
    quarantined: list[QuarantinedItem] = []
    tally: Counter[str] = Counter()
    for label, item in zip(frame.index, parsed, strict=True):
        columns = item.columns
        if label in reasons:
            split = columns["split"] if isinstance(columns["split"], str) else ""
            item_id = columns["item_id"] if isinstance(columns["item_id"], str) else ""
            quarantined.append(QuarantinedItem(item_id, split, columns["source"], tuple(reasons[label])))
        elif not item.records:  # the gate passed a row whose parsing found a problem: a suite / parser mismatch
            raise RuntimeError(f"{STAGE}/{task}: {columns['source']} passed the gate but built no record")
        else:
            kept.extend(item.records)
            tally[item.target_kind] += 1
    group = GroupReport(
        name=task,
        root=release.as_posix(),
        present=True,
        num_items=len(parsed),
        quarantined=tuple(sorted(quarantined, key=lambda q: q.source)),
        expectations=outcomes,
    )
    by_split = {s: sorted((r for r in kept if r.split == s), key=lambda r: r.id) for s in TASK_SPLITS[task]}
    stats = _task_stats(task, by_split, parsed, group, skipped, tally, files)
    return by_split, stats, group


def _task_stats(
    task: str,
    by_split: dict[str, list[AvuieRecord]],
    parsed: list[ParsedRow],
    group: GroupReport,
    skipped: Counter[str],
    tally: Counter[str],
    files: list[str],
) -> dict[str, Any]:
    """The task's ``stats.json`` entry, in ``avuie_build``'s shape (so reports read both alike)."""
    from crab.avuie.build import _split_stats  # one definition of the per-split numbers (lazy: build imports us)

    keys = Counter(p.columns["key"] for p in parsed if p.columns["key"] is not None)
    duplicates = sorted(p.columns["source"] for p in parsed if keys.get(p.columns["key"], 0) > 1)
    excluded = Counter(q.split for q in group.quarantined)
    return {
        "dataset": TASKS[Task(task)].dataset,
        "source": "release",
        "files": files,
        "num_read": len(parsed) + sum(skipped.values()),
        "num_rejected_by_reader": 0,
        "num_excluded": group.num_quarantined,
        "num_duplicates": len(duplicates),
        "duplicates": duplicates,
        "num_skipped": dict(sorted(skipped.items())),
        "targets": dict(sorted(tally.items())),
        "splits": {s: _split_stats(Task(task), rs, excluded.get(s, 0)) for s, rs in by_split.items()},
    }


def released_result(imported: ReleasedImport, report_path: Path) -> ValidationResult:
    """The import's quarantine as a quality-gate result (what ``released.json`` holds)."""
    return ValidationResult(
        stage=STAGE,
        max_failure_rate=imported.max_failure_rate,
        groups=imported.groups,
        report_path=report_path,
        docs_path=report_path.with_name(DOCS_NAME),
    )


def write_released(out_dir: Path, imported: ReleasedImport, seed: int, use_reasoning: bool) -> ValidationResult:
    """Write an import in ``avuie_build``'s layout (module docstring), replacing ``out_dir`` atomically.

    Returns:
        The quarantine report written to ``<out>/released.json`` (enforce its failure rate with
        :func:`crab.quality.runner.enforce_max_failure_rate`).
    """
    out_dir = Path(out_dir)
    stats = {"release": imported.release.as_posix(), "seed": seed, "use_reasoning": use_reasoning,
             "tasks": imported.stats}  # fmt: skip
    with replace_dir(out_dir) as tmp:
        for task, splits in imported.records.items():
            for split, records in splits.items():
                write_jsonl(tmp / task / f"{split}.jsonl", records)
        (tmp / "stats.json").write_text(json.dumps(stats, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
        write_report_into(tmp, imported)
    result = released_result(imported, out_dir / REPORT_NAME)
    log_summary(result)
    return result


def write_report_into(folder: Path, imported: ReleasedImport) -> None:
    """Write ``released.json`` into ``folder`` and move the data docs there (``released_docs/``)."""
    write_report(released_result(imported, folder / REPORT_NAME), folder / REPORT_NAME)
    if imported.docs_dir.is_dir():
        shutil.move(str(imported.docs_dir), str(folder / DOCS_NAME))
