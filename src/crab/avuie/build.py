"""The ``avuie_build`` stage: validated raw annotations -> AV-UIE JSONL per task and split.

DESIGN.md section 3. For each task in ``avuie.tasks`` the stage reads every split of the task's dataset
with the ``crab.datasets`` reader, drops the records whose ``source`` the quality gate quarantined
(``reports/validation/raw.json``), and builds one :class:`~crab.avuie.schema.AvuieRecord` per record
with the task's builder (``crab.avuie.<task>``). Inputs beside the native annotations, both optional:

* ``<root>/avsynth_scenes.jsonl``: AV-Synth's exact scenes, the facts of the explicit reasoning;
* ``<root>/converted_label/``: Crab's released AV-UIE answers, used verbatim (``crab.avuie.schema``).

With ``avuie.release`` (null by default) the tasks whose sample lists Crab's release folder holds are imported
from it instead (:mod:`crab.avuie.released`: their own quality gate, ``data/avuie/released.json`` and
``released_docs/``; the stage fails after writing if a task quarantines more than
``validation.max_failure_rate``); the other tasks are built as above.

Outputs (repository root = working directory): ``data/avuie/<task>/<split>.jsonl`` (lines sorted by id)
and ``data/avuie/stats.json`` (counts, exclusions, target sources, mean target length, AVQA majority-answer
rates per question type: the "prior" baseline every AVQA table states). The folder is built in a temp
sibling and swapped in with renames, so a failed run never leaves half a dataset; phrasings come from an
rng seeded with ``avuie.seed`` and the task name, so the output is byte-identical across runs.
"""

from __future__ import annotations

import json
import logging
import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crab.avuie.arig_build import build_arig
from crab.avuie.avcap import build_avcap
from crab.avuie.ave import build_ave
from crab.avuie.avvp_build import build_avvp
from crab.avuie.avqa import build_avqa
from crab.avuie.avs_build import build_avs
from crab.avuie.avss_build import build_avss
from crab.avuie.ref_avs_build import avuie_split, build_ref_avs
from crab.avuie.seg_build import build_seg
from crab.atomic import replace_dir
from crab.avuie.released.importer import (
    DOCS_NAME,
    REPORT_NAME,
    ReleasedImport,
    found_tasks,
    import_released,
    released_result,
    write_report_into,
)
from crab.avuie.schema import AvuieRecord, write_jsonl
from crab.config import Params
from crab.datasets.ave import read_ave
from crab.datasets.avss import read_avss
from crab.datasets.avsbench import read_ms3, read_s4
from crab.datasets.llp import read_llp
from crab.datasets.lvis import read_lvis
from crab.datasets.music_avqa import read_music_avqa
from crab.datasets.ref_avs import REF_AVS_SPLITS, read_ref_avs
from crab.datasets.valor import read_valor
from crab.errors import DataError
from crab.quality.quarantine import load_quarantined, read_report
from crab.quality.runner import enforce_max_failure_rate
from crab.synth.scene import SCENES_FILENAME, Scene, read_scenes
from crab.tasks import TASKS, Task

__all__ = ["OUT_DIR", "RAW_REPORT", "AvuieBuildResult", "avuie_build"]

log = logging.getLogger(__name__)

RAW_REPORT = Path("reports/validation/raw.json")
OUT_DIR = Path("data/avuie")
RELEASED_DIRNAME = "converted_label"

_Builder = Callable[..., list[AvuieRecord]]


@dataclass(frozen=True)
class _TaskSource:
    """Where a task's records come from and how they become AV-UIE records."""

    read: Callable[[Path, Any], Any]  # reader(root, split) -> ReadResult
    splits: tuple[str, ...]  # the AV-UIE splits written
    build: _Builder
    group: str | None = None  # its validate_raw group when not the task's dataset (S4 / MS3 share "avsbench")
    subdir: str = ""  # folder of avsynth_scenes.jsonl under the dataset root
    read_splits: tuple[str, ...] | None = None  # the dataset's own splits, when not ``splits`` (Ref-AVS's tests)


def _read_avss_v2(root: Path, split: str) -> Any:
    """AVSBench-semantic's v2 subset (AVSS); its v1s / v1m copies of S4 / MS3 are read from AVSBench-object."""
    return read_avss(root, split, subset="v2")  # type: ignore[arg-type]


_SOURCES: dict[Task, _TaskSource] = {
    Task.AVE: _TaskSource(read_ave, ("train", "val", "test"), build_ave),
    Task.AVVP: _TaskSource(read_llp, ("train", "val", "test"), build_avvp),
    Task.AVQA: _TaskSource(read_music_avqa, ("train", "val", "test"), build_avqa),
    Task.ARIG: _TaskSource(read_s4, ("train", "val", "test"), build_arig, "s4", "Single-source"),  # S4's frames
    Task.S4: _TaskSource(read_s4, ("train", "val", "test"), build_avs, "s4", "Single-source"),
    Task.MS3: _TaskSource(read_ms3, ("train", "val", "test"), build_avs, "ms3", "Multi-sources"),
    Task.AVSS: _TaskSource(_read_avss_v2, ("train", "val", "test"), build_avss),  # v1s / v1m: S4 / MS3 elsewhere
    # test_s / test_u / test_n -> test, the subset kept in the label (crab.avuie.ref_avs_build)
    Task.REF_AVS: _TaskSource(read_ref_avs, ("train", "val", "test"), build_ref_avs, read_splits=REF_AVS_SPLITS),
    Task.AVCAP: _TaskSource(read_valor, ("train", "val"), build_avcap),  # Crab: train, and val for testing
    Task.SEG: _TaskSource(read_lvis, ("train", "val"), build_seg),  # the decoder's pre-training (LVIS layout)
}


@dataclass(frozen=True)
class AvuieBuildResult:
    """What ``avuie_build`` wrote.

    Attributes:
        out_dir: ``data/avuie``.
        num_records: task -> split -> records written.
        num_excluded: task -> raw records dropped because the quality gate quarantined them.
        stats: the content of ``stats.json``.
    """

    out_dir: Path
    num_records: dict[str, dict[str, int]]
    num_excluded: dict[str, int]
    stats: dict[str, Any]


def avuie_build(params: Params) -> AvuieBuildResult:
    """Build the AV-UIE JSONL files of ``params.avuie.tasks`` (module docstring).

    Args:
        params: reads ``datasets`` (roots), ``avuie`` (tasks, seed, use_reasoning, release) and, with a release,
            ``validation`` (the import gate's threshold and the AVE clip length).

    Returns:
        Counts per task and split, exclusions and the stats written to ``data/avuie/stats.json``.

    Raises:
        DataError: ``reports/validation/raw.json`` is missing, is not a ``validate_raw`` report or does not
            cover a needed dataset (run ``crab validate_raw`` first); an annotation file is missing.
    """
    quarantined = load_quarantined(RAW_REPORT)
    validated = read_report(RAW_REPORT)["datasets"]
    released = _import_release(params)
    outputs: dict[str, dict[str, list[AvuieRecord]]] = {}
    task_stats: dict[str, Any] = {}
    for name in params.avuie.tasks:
        task = Task(name)
        spec, source = TASKS[task], _SOURCES[task]
        if released is not None and name in released.records:  # imported from Crab's release, gated there
            outputs[name], task_stats[name] = released.records[name], released.stats[name]
            continue
        group = source.group or spec.dataset
        if group not in validated or not validated[group].get("present", True):
            reason = f"dataset {group} (task {task}) was not validated; run `crab validate_raw`"
            raise DataError(RAW_REPORT, reason)
        root = Path(getattr(params.datasets, spec.dataset))
        raw, num_rejected = [], 0
        for split in source.read_splits or source.splits:
            result = source.read(root, split)
            raw.extend(result.records)
            num_rejected += len(result.rejected)
        excluded = [r for r in raw if r.source in quarantined[group]]
        kept, duplicates = _drop_duplicates([r for r in raw if r.source not in quarantined[group]])
        tally: Counter[str] = Counter()
        records = source.build(
            kept,
            _load_scenes(root / source.subdir),
            _released_dir(root),
            params.avuie.use_reasoning,
            random.Random(f"{params.avuie.seed}/{task}"),  # str seeds hash with SHA-512: stable across runs
            tally,
        )
        by_split = {s: sorted((r for r in records if r.split == s), key=lambda r: r.id) for s in source.splits}
        outputs[task.value] = by_split
        task_stats[task.value] = {
            "dataset": spec.dataset,
            "num_read": len(raw),
            "num_rejected_by_reader": num_rejected,
            "num_excluded": len(excluded),
            "num_duplicates": len(duplicates),
            "duplicates": duplicates,
            "targets": dict(sorted(tally.items())),
            "splits": {
                s: _split_stats(task, rs, sum(_avuie_split(task, r.split) == s for r in excluded))
                for s, rs in by_split.items()
            },
        }
    stats = {"seed": params.avuie.seed, "use_reasoning": params.avuie.use_reasoning, "tasks": task_stats}
    if released is not None:
        stats["release"] = released.release.as_posix()
    _write_atomically(OUT_DIR, outputs, stats, released)
    _log_summary(stats)
    if released is not None:  # after writing: released.json names every quarantined row
        enforce_max_failure_rate(released_result(released, OUT_DIR / REPORT_NAME))
    return AvuieBuildResult(
        out_dir=OUT_DIR,
        num_records={t: {s: len(rs) for s, rs in splits.items()} for t, splits in outputs.items()},
        num_excluded={t: s["num_excluded"] for t, s in task_stats.items()},
        stats=stats,
    )


def _avuie_split(task: Task, split: str) -> str:
    """The AV-UIE split a raw record of ``split`` lands in (Ref-AVS's test splits are one ``test``)."""
    return avuie_split(split)[0] if task is Task.REF_AVS else split


def _drop_duplicates(records: Sequence[Any]) -> tuple[list[Any], list[str]]:
    """Keep the first record per (split, item_id); return the kept ones and the dropped sources.

    Record ids must be unique; the quality gate quarantines duplicates, so this only guards the contract.
    """
    seen: set[tuple[str, str]] = set()
    kept, dropped = [], []
    for rec in records:
        key = (rec.split, rec.item_id)
        if key in seen:
            dropped.append(rec.source)
            log.warning("%s: duplicate item %s in split %s; dropped", rec.source, rec.item_id, rec.split)
            continue
        seen.add(key)
        kept.append(rec)
    return kept, dropped


def _load_scenes(root: Path) -> dict[str, Scene]:
    path = root / SCENES_FILENAME
    if not path.is_file():
        return {}
    try:
        return read_scenes(path.read_text(encoding="utf-8"))
    except (ValueError, KeyError, TypeError) as err:
        raise DataError(path, f"not a valid scenes file ({err})") from None


def _released_dir(root: Path) -> Path | None:
    path = root / RELEASED_DIRNAME
    return path if path.is_dir() else None


def _split_stats(task: Task, records: Sequence[AvuieRecord], num_excluded: int) -> dict[str, Any]:
    words = [len(r.target.split()) for r in records]
    out: dict[str, Any] = {
        "num_records": len(records),
        "num_excluded": num_excluded,
        "num_with_reasoning": sum(r.reasoning for r in records),
        "avg_target_words": round(sum(words) / len(words), 3) if words else 0.0,
    }
    if task is Task.AVQA:
        out["majority_answer"] = _majority_answers(records)
    return out


def _majority_answers(records: Sequence[AvuieRecord]) -> dict[str, dict[str, Any]]:
    """Per question type ``"<modality>/<kind>"``: the most frequent answer and its share (ties: alphabetical)."""
    by_type: dict[str, Counter[str]] = {}
    for r in records:
        by_type.setdefault("/".join(r.label["question_type"]), Counter())[r.label["answer"]] += 1
    out = {}
    for qtype, counts in sorted(by_type.items()):
        answer, count = min(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        total = sum(counts.values())
        out[qtype] = {"answer": answer, "rate": round(count / total, 6), "num_questions": total}
    return out


def _write_atomically(
    out_dir: Path,
    outputs: dict[str, dict[str, list[AvuieRecord]]],
    stats: dict[str, Any],
    released: ReleasedImport | None = None,
) -> None:
    """Write every split file and ``stats.json`` (and an import's ``released.json`` and data docs) into a temp
    sibling folder, then swap it in."""
    with replace_dir(out_dir) as tmp:
        for task, splits in outputs.items():
            for split, records in splits.items():
                write_jsonl(tmp / task / f"{split}.jsonl", records)
        text = json.dumps(stats, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        (tmp / "stats.json").write_text(text, encoding="utf-8")
        if released is not None:
            write_report_into(tmp, released)


def _import_release(params: Params) -> ReleasedImport | None:
    """With ``avuie.release``: the tasks of ``avuie.tasks`` whose sample lists the release holds, imported and gated
    (:mod:`crab.avuie.released`); the other tasks are built. None without a release.

    Raises:
        DataError: the release folder is missing or holds no sample list of a task in ``avuie.tasks``.
    """
    if params.avuie.release is None:
        return None
    release = Path(params.avuie.release)
    if not release.is_dir():
        raise DataError(release, "avuie.release: folder not found")
    tasks = [t for t in found_tasks(release, params.datasets) if t in params.avuie.tasks]
    if not tasks:
        raise DataError(release, f"avuie.release holds no sample list of avuie.tasks {list(params.avuie.tasks)}")
    log.info("avuie_build: importing %s from Crab's release %s; building the other tasks", tasks, release)
    docs_dir = OUT_DIR.with_name(f".{OUT_DIR.name}.{DOCS_NAME}")
    a = params.avuie
    return import_released(release, params.datasets, params.validation, docs_dir, tasks, a.seed, a.use_reasoning)


def _log_summary(stats: dict[str, Any]) -> None:
    rows = [f"{'task':<6} {'split':<5} {'records':>7} {'reasoning':>9} {'avg words':>9} {'excluded':>8}"]
    for task, ts in stats["tasks"].items():
        for split, ss in ts["splits"].items():
            rows.append(
                f"{task:<6} {split:<5} {ss['num_records']:>7} {ss['num_with_reasoning']:>9} "
                f"{ss['avg_target_words']:>9.1f} {ss['num_excluded']:>8}"
            )
    log.info("avuie_build (use_reasoning=%s) wrote %s:\n%s", stats["use_reasoning"], OUT_DIR, "\n".join(rows))
