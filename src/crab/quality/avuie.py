"""The ``validate_avuie`` stage: quality gates over the AV-UIE instruction data before training reads it.

DESIGN.md section 3: "GE suite over AV-UIE (tags parse, ranges inside duration, answers in vocab, media
exist)". Every line of ``data/avuie/<task>/<split>.jsonl`` (schema: :mod:`crab.avuie.schema`) becomes a
row; lines that are not JSON are quarantined as ``"malformed JSON line"``, lines that are JSON but break
the schema get a ``schema`` reason (and skip the other checks). The checks (the suite is here, next to
the frame it reads) cover ids (unique, ``<task>/<split>/<item_id>``), task / split / dataset against the
file the line is in, the instruction's placeholders (exactly one ``<video>`` (ARIG and SEG: ``<image>``) and one
``<audio>`` (SEG: none), each wrapped in its start / end markers), the labels (AVE
category and ``0 <= start < end <= validation.ave_duration_s``; AVVP classes in LLP's 25 and spans on its
ten 1-s segments; AVQA answer and question type, AVCAP caption; S4 / MS3 frame index, objects among S4's 23
and the mask file; Ref-AVS frame index, object among Ref-AVS's categories, expression and test subset, nothing
named in a null row; SEG mask file, category name and definition), media existence (a clip file, or a frame
folder), and that the target says what the label says. The target is parsed with the
task's own parser (``crab.tasks.TASKS[task].parse_answer``, the one evaluation uses), so the gate checks
exactly the format the model is trained and scored on.

Outputs: ``reports/validation/avuie.json`` (quarantine keyed by record ``id``, see
:func:`crab.quality.quarantine.load_quarantined_avuie`) and ``reports/validation/avuie_docs/``. The stage
fails only if a task's failure rate exceeds ``validation.max_failure_rate``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crab.avuie.build import OUT_DIR as AVUIE_DIR
from crab.config import Params, ValidationConfig
from crab.datasets.vocab import AVE_CATEGORIES, AVQA_ANSWERS
from crab.datasets.vocab_seg import (
    AVSS_CLASSES,
    LLP_CLASSES,
    LLP_NUM_SEGMENTS,
    REF_AVS_NULL_OBJECT,
    REF_AVS_OBJECTS,
    S4_CATEGORIES,
)
from crab.errors import CrabError
from crab.quality.quarantine import GroupReport, QuarantinedItem, ValidationResult, write_report
from crab.quality.runner import Gate, enforce_max_failure_rate, log_summary, open_gate
from crab.quality.suites import AVQA_TYPE_STRINGS, Check
from crab.datasets.ref_avs import REF_AVS_NUM_FRAMES
from crab.tasks import NUM_AVS_OBJECT_FRAMES, NUM_AVSS_FRAMES, TASKS, Task

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["AVUIE_DIR", "DOCS_DIR", "REPORT_PATH", "avuie_suite", "validate_avuie"]

log = logging.getLogger(__name__)

STAGE = "validate_avuie"
REPORT_PATH = Path("reports/validation/avuie.json")
DOCS_DIR = Path("reports/validation/avuie_docs")
SPLITS = ("train", "val", "test")

#: Tasks answered with the six mask tokens and an ``<object>`` tag (ARIG's mask is only the box's source).
_MASK_TASKS = ("s4", "ms3", "avss", "ref_avs")
_FRAME_SUFFIXES = (".png", ".jpg", ".jpeg")
_COLUMNS = (
    "location", "file_task", "file_split", "schema_error", "id", "canonical_id", "task", "split", "dataset",
    "item_id", "video_id", "instruction", "target", "media_error", "target_error",
    "event", "start", "end", "answer", "question_type", "caption", "events_error", "objects_error", "box_error",
)  # fmt: skip
#: Exactly one ``<video>`` in the instruction, and it sits inside its start / end markers.
_VIDEO_REGEX = r"(?s)^(?!.*<video>.*<video>).*<video_start><video><video_end>"
_AUDIO_REGEX = r"(?s)^(?!.*<audio>.*<audio>).*<audio_start><audio><audio_end>"
#: ARIG: exactly one ``<image>`` inside its markers, and no ``<video>``.
_IMAGE_REGEX = r"(?s)^(?!.*<image>.*<image>)(?!.*<video>).*<image_start><image><image_end>"


def _label_problem(task: str, label: dict[str, Any]) -> str | None:
    """Why a record's label does not fit its task's label schema (None if it does)."""
    fields: tuple[tuple[str, type], ...] = {
        "ave": (("event", str), ("start", int), ("end", int)),
        "avqa": (("answer", str), ("question", str), ("question_type", list), ("question_id", int)),
        "avvp": (("audio", list), ("visual", list)),
        "avcap": (("caption", str),),
        "s4": (("frame", int), ("mask", str)),
        "ms3": (("frame", int), ("mask", str)),
        "avss": (("frame", int), ("mask", str)),
        "ref_avs": (("frame", int), ("mask", str), ("objects", list), ("expression", str), ("subset", str)),
        "arig": (("x0", int), ("y0", int), ("x1", int), ("y1", int), ("object", str), ("frame", int), ("mask", str)),
        "seg": (("frame", int), ("mask", str), ("name", str), ("definition", str)),
    }[task]
    for key, kind in fields:
        if key not in label:
            return f"label: missing key {key!r}"
        value = label[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            return f"label.{key}: expected {kind.__name__}, got {type(value).__name__}"
    if task == "avvp":
        for modality in ("audio", "visual"):
            for index, span in enumerate(label[modality]):
                if not (isinstance(span, dict) and set(span) == {"event", "start", "end"}):
                    return f"label.{modality}[{index}]: expected {{event, start, end}}, got {span!r}"
                if not isinstance(span["event"], str) or not all(
                    isinstance(span[k], int) and not isinstance(span[k], bool) for k in ("start", "end")
                ):
                    return f"label.{modality}[{index}]: expected a str event and int start / end, got {span!r}"
    if task in ("s4", "ms3", "avss"):
        if "objects" not in label:
            return "label: missing key 'objects'"
        objects = label["objects"]
        if not (objects is None or (isinstance(objects, list) and all(isinstance(o, str) for o in objects))):
            return f"label.objects: expected a list of strings or null, got {objects!r}"
    if task == "avqa" and not (
        len(label["question_type"]) == 2 and all(isinstance(t, str) for t in label["question_type"])
    ):
        return "label.question_type: expected a list of 2 strings"
    return None


def _target_problem(task: str, target: str, label: dict[str, Any]) -> str | None:
    """Whether the target's tagged answer, parsed as evaluation parses it, says what the label says."""
    parsed = TASKS[Task(task)].parse_answer(target)
    if task == "ave":
        if parsed is None:
            return "no parsable <event> ... </event> and <range> s,e </range> tags"
        if parsed.event != label["event"]:
            return f"<event> {parsed.event!r} differs from the label {label['event']!r}"
        if (parsed.start, parsed.end) != (label["start"], label["end"]):
            return f"<range> {parsed.start},{parsed.end} differs from the label {label['start']},{label['end']}"
        return None
    if task == "avvp":
        from crab.avuie.avvp import AvvpLabel
        from crab.avuie.avvp_build import same_ground_truth

        if parsed is None:
            return "no parsable <audio_event> ... </audio_event> and <visual_event> ... </visual_event> tags"
        if not same_ground_truth(parsed, AvvpLabel.from_dict(label)):
            return "the tagged events mark other seconds than the label"
        return None
    if task == "avqa":
        from crab.avuie.avqa import answers_match

        if parsed is None:
            return "no parsable <answer> ... </answer> tag"
        if not answers_match(parsed, label["answer"]):
            return f"<answer> {parsed.answer!r} differs from the label {label['answer']!r}"
        return None
    if task == "arig":
        if parsed is None:
            return "no parsable <obj>(x0,y0)(x1,y1)</obj> tag"
        box = tuple(label[k] for k in ("x0", "y0", "x1", "y1"))
        if parsed.box != box:
            return f"<obj> {parsed.box} differs from the label {box}"
        return None
    if task in _MASK_TASKS or task == "seg":
        if parsed is None:
            return "no <mask_start><mask_0>...<mask_5><mask_end> block (exactly one is needed)"
        if task == "seg":  # the request names the object; the answer is the mask block alone
            return None
        expected = None if label["objects"] is None else tuple(label["objects"])
        if parsed.objects != expected:
            return f"<object> {parsed.objects} differs from the label {expected}"
        return None
    from crab.avuie.avcap import normalize_caption

    if parsed is None:
        return "empty caption"
    if parsed.caption != normalize_caption(label["caption"]):
        return "target is not the label's caption"
    return None


def _row(task: str, file_split: str, location: str, line: str, raw: Any) -> dict[str, Any]:
    """One frame row for a JSON line (``raw`` = its parsed value); schema problems leave the checked columns null."""
    from crab.avuie.schema import AvuieRecord

    row: dict[str, Any] = dict.fromkeys(_COLUMNS)
    row.update(location=location, file_task=task, file_split=file_split)
    if isinstance(raw, dict) and isinstance(raw.get("id"), str):
        row["id"] = raw["id"]
    try:
        record = AvuieRecord.from_json(line)
    except ValueError as err:
        row["schema_error"] = str(err)
        return row
    problem = _label_problem(task, record.label)
    if problem:
        row["schema_error"] = problem
        return row
    row.update(
        canonical_id=f"{record.task}/{record.split}/{record.item_id}",
        task=record.task,
        split=record.split,
        dataset=record.dataset,
        item_id=record.item_id,
        video_id=record.video_id,
        instruction=record.instruction,
        target=record.target,
        target_error=_target_problem(task, record.target, record.label),
    )
    missing = sorted({p for p in record.media.values() if not _media_exists(Path(p))})
    if task in (*_MASK_TASKS, "arig", "seg") and not Path(record.label["mask"]).is_file():
        missing.append(record.label["mask"])
    if missing:
        row["media_error"] = "media file not found: " + ", ".join(missing)
    label = record.label
    if task == "ave":
        row.update(event=label["event"], start=label["start"], end=label["end"])
    elif task == "avvp":
        row.update(events_error=_avvp_events_problem(label))
    elif task == "avqa":
        row.update(answer=label["answer"], question_type=json.dumps(label["question_type"]))
    elif task in ("s4", "ms3"):
        row.update(objects_error=_avs_objects_problem(label))
    elif task == "avss":
        row.update(objects_error=_avss_label_problem(label))
    elif task == "ref_avs":
        row.update(objects_error=_ref_avs_label_problem(label))
    elif task == "arig":
        row.update(box_error=_arig_box_problem(label))
    elif task == "seg":
        row.update(
            objects_error=None if label["name"].strip() and label["definition"].strip() else "empty name or definition"
        )
    else:
        row.update(caption=label["caption"])
    return row


def _media_exists(path: Path) -> bool:
    """A clip file, or a frame folder holding PNG or JPEG frames (AVSBench's ``visual_frames/.../{name}/``,
    Ref-AVS's ``media/{vid}/frames/``)."""
    return path.is_file() or (path.is_dir() and any(p.suffix.lower() in _FRAME_SUFFIXES for p in path.iterdir()))


#: Object names of S4 / MS3 / ARIG labels: S4's categories (AVSBench-object, ``avuie_build``) or AVSBench-semantic's
#: object classes (its ``v1s`` / ``v1m`` copy names the same clips with them; Crab's release, ``crab.avuie.released``).
_AVS_OBJECT_NAMES = frozenset(S4_CATEGORIES) | frozenset(AVSS_CLASSES[1:])
_AVS_OBJECT_VOCABULARY = f"neither one of S4's {len(S4_CATEGORIES)} categories nor an AVSS object class"


def _arig_box_problem(label: dict[str, Any]) -> str | None:
    """Why an ARIG label does not fit (box empty, reversed or outside the 224x224 frame, frame outside the clip,
    object outside S4's 23 and AVSS's 70 object classes), or None."""
    from crab.avuie.arig import ArigLabel

    try:
        ArigLabel(label["x0"], label["y0"], label["x1"], label["y1"])
    except ValueError as err:
        return str(err)
    if not 0 <= label["frame"] < NUM_AVS_OBJECT_FRAMES:
        return f"frame {label['frame']} is not one of the clip's {NUM_AVS_OBJECT_FRAMES} (0-based)"
    if label["object"] not in _AVS_OBJECT_NAMES:
        return f"object {label['object']!r} is {_AVS_OBJECT_VOCABULARY}"
    return None


def _avs_objects_problem(label: dict[str, Any]) -> str | None:
    """Why an S4 / MS3 label does not fit AVSBench (frame outside the clip, object outside S4's 23 and AVSS's 70
    object classes), or None."""
    if not 0 <= label["frame"] < NUM_AVS_OBJECT_FRAMES:
        return f"frame {label['frame']} is not one of the clip's {NUM_AVS_OBJECT_FRAMES} (0-based)"
    unknown = [o for o in label["objects"] or () if o not in _AVS_OBJECT_NAMES]
    if unknown:
        return f"object {unknown[0]!r} is {_AVS_OBJECT_VOCABULARY}"
    return None


def _avss_label_problem(label: dict[str, Any]) -> str | None:
    """Why an AVSS label does not fit AVSBench-semantic v2 (frame outside the ten, object outside its 70 object
    classes), or None."""
    if not 0 <= label["frame"] < NUM_AVSS_FRAMES:
        return f"frame {label['frame']} is not one of the clip's {NUM_AVSS_FRAMES} (0-based)"
    unknown = [o for o in label["objects"] or () if o not in AVSS_CLASSES[1:]]
    if unknown:
        return f"object {unknown[0]!r} is not one of AVSS's {len(AVSS_CLASSES) - 1} object classes"
    return None


def _ref_avs_label_problem(label: dict[str, Any]) -> str | None:
    """Why a Ref-AVS label does not fit (frame outside the ten, object outside Ref-AVS's categories, more than
    one object, empty expression, unknown subset, a null row that names an object), or None."""
    from crab.avuie.ref_avs import REF_AVS_TEST_SUBSETS

    if not 0 <= label["frame"] < REF_AVS_NUM_FRAMES:
        return f"frame {label['frame']} is not one of the clip's {REF_AVS_NUM_FRAMES} (0-based)"
    objects = label["objects"]
    if len(objects) > 1 or not all(isinstance(o, str) for o in objects):
        return f"objects {objects!r}: a referring expression names at most one object"
    if objects and (objects[0] not in REF_AVS_OBJECTS or objects[0] == REF_AVS_NULL_OBJECT):
        return f"object {objects[0]!r} is not one of Ref-AVS's {len(REF_AVS_OBJECTS) - 1} categories"
    if not label["expression"].strip():
        return "empty referring expression"
    subsets = ("train", "val", *REF_AVS_TEST_SUBSETS.values())
    if label["subset"] not in subsets:
        return f"subset {label['subset']!r} is not one of {list(subsets)}"
    if label["subset"] == "null" and objects:
        return f"a null-subset row names the object {objects[0]!r}"
    return None


def _avvp_events_problem(label: dict[str, Any]) -> str | None:
    """Why an AVVP label's spans do not fit LLP (class outside its 25, span off the 1-s grid), or None."""
    for modality in ("audio", "visual"):
        for span in label[modality]:
            if span["event"] not in LLP_CLASSES:
                return f"{modality} event {span['event']!r} is not one of LLP's {len(LLP_CLASSES)} classes"
            if not 0 <= span["start"] < span["end"] <= LLP_NUM_SEGMENTS:
                return (
                    f"{modality} event {span['event']!r} spans ({span['start']} {span['end']}), "
                    f"not inside the 0..{LLP_NUM_SEGMENTS} s grid"
                )
    return None


def avuie_suite(task: str, validation: ValidationConfig) -> list[Check]:
    """The AV-UIE checks for one task's records."""
    visual = TASKS[Task(task)].visual  # ARIG: one frame as <image>
    regex = _IMAGE_REGEX if visual == "image" else _VIDEO_REGEX
    checks = [
        Check("schema_valid", "ExpectColumnValuesToBeNull", {"column": "schema_error"}, "schema: {schema_error}"),
        Check("id_unique", "ExpectColumnValuesToBeUnique", {"column": "id"}, "duplicate id {id!r}"),
        Check(
            "id_is_task_split_item",
            "ExpectColumnPairValuesToBeEqual",
            {"column_A": "id", "column_B": "canonical_id", "ignore_row_if": "either_value_is_missing"},
            "id {id!r} is not <task>/<split>/<item_id> ({canonical_id!r})",
        ),
        Check("task_matches_folder", "ExpectColumnValuesToBeInSet", {"column": "task", "value_set": [task]},
              "task {task!r} in the {file_task}/ folder"),
        Check("split_known", "ExpectColumnValuesToBeInSet", {"column": "split", "value_set": list(SPLITS)},
              "unknown split {split!r}"),
        Check(
            "split_matches_file",
            "ExpectColumnPairValuesToBeEqual",
            {"column_A": "split", "column_B": "file_split", "ignore_row_if": "either_value_is_missing"},
            "split {split!r} in the file {file_split}.jsonl",
        ),
        Check("dataset_matches_task", "ExpectColumnValuesToBeInSet",
              {"column": "dataset", "value_set": [TASKS[Task(task)].dataset]}, "dataset {dataset!r} for task {task!r}"),
        Check(f"{visual}_placeholder", "ExpectColumnValuesToMatchRegex", {"column": "instruction", "regex": regex},
              f"instruction needs exactly one <{visual}>, as <{visual}_start><{visual}><{visual}_end>"),
        Check("target_not_empty", "ExpectColumnValuesToMatchRegex", {"column": "target", "regex": r"\S"},
              "empty target"),
        Check("media_exist", "ExpectColumnValuesToBeNull", {"column": "media_error"}, "{media_error}"),
        Check("target_matches_label", "ExpectColumnValuesToBeNull", {"column": "target_error"},
              "target: {target_error}"),
    ]  # fmt: skip
    if "<audio>" in TASKS[Task(task)].prompt:  # every task but the image-only segmentation pre-training (seg)
        checks.append(Check("audio_placeholder", "ExpectColumnValuesToMatchRegex",
                            {"column": "instruction", "regex": _AUDIO_REGEX},
                            "instruction needs exactly one <audio>, as <audio_start><audio><audio_end>"))  # fmt: skip
    if task == "ave":
        duration = validation.ave_duration_s
        checks += [
            Check("event_in_vocabulary", "ExpectColumnValuesToBeInSet",
                  {"column": "event", "value_set": list(AVE_CATEGORIES)}, "unknown event {event!r} (not one of AVE's 28)"),
            Check("start_not_negative", "ExpectColumnValuesToBeBetween", {"column": "start", "min_value": 0},
                  "range starts before the clip: start {start:g}"),
            Check("start_before_end", "ExpectColumnPairValuesAToBeGreaterThanB",
                  {"column_A": "end", "column_B": "start", "or_equal": False, "ignore_row_if": "either_value_is_missing"},
                  "reversed or empty range: start {start:g}, end {end:g}"),
            Check("end_within_clip", "ExpectColumnValuesToBeBetween", {"column": "end", "max_value": duration},
                  f"range ends at {{end:g}} s, past the clip's end ({duration:g} s)"),
        ]  # fmt: skip
    elif task == "avvp":
        checks.append(Check("events_valid", "ExpectColumnValuesToBeNull", {"column": "events_error"}, "{events_error}"))
    elif task in (*_MASK_TASKS, "seg"):
        checks.append(
            Check("objects_valid", "ExpectColumnValuesToBeNull", {"column": "objects_error"}, "{objects_error}")
        )
    elif task == "arig":
        checks.append(Check("box_valid", "ExpectColumnValuesToBeNull", {"column": "box_error"}, "{box_error}"))
    elif task == "avqa":
        checks += [
            Check("answer_in_vocabulary", "ExpectColumnValuesToBeInSet",
                  {"column": "answer", "value_set": list(AVQA_ANSWERS)}, "answer {answer!r} is not in the answer vocabulary"),
            Check("question_type_known", "ExpectColumnValuesToBeInSet",
                  {"column": "question_type", "value_set": list(AVQA_TYPE_STRINGS)}, "unknown question type {question_type}"),
        ]  # fmt: skip
    else:
        checks.append(
            Check("caption_not_empty", "ExpectColumnValuesToMatchRegex", {"column": "caption", "regex": r"\S"},
                  "empty caption")
        )  # fmt: skip
    return checks


def _validate_task(gate: Gate, task: str, task_dir: Path, validation: ValidationConfig) -> GroupReport:
    """Read every JSONL file of one task and check its records; return the task's report."""
    import pandas as pd

    rows: list[dict[str, Any]] = []
    malformed: list[QuarantinedItem] = []
    files = sorted(task_dir.glob("*.jsonl"))
    if not files:
        log.warning("%s: %s holds no .jsonl files", STAGE, task_dir)
    for path in files:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            location = f"{path.as_posix()}:{number}"
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as err:
                reason = f"malformed JSON line ({location}: {err.msg})"
                malformed.append(QuarantinedItem("", path.stem, location, (reason,), record_id=""))
                continue
            rows.append(_row(task, path.stem, location, line, raw))

    frame: pd.DataFrame = pd.DataFrame(rows, columns=list(_COLUMNS))
    for column in ("start", "end"):
        frame[column] = frame[column].astype(float)  # nullable: rows with schema errors have none
    run = gate.validate(task, frame, avuie_suite(task, validation))
    quarantined = list(malformed)
    for label, reasons in run.reasons.items():
        row = frame.loc[label]
        quarantined.append(
            QuarantinedItem(
                item_id=row["item_id"] if isinstance(row["item_id"], str) else "",
                split=row["split"] if isinstance(row["split"], str) else row["file_split"],
                source=row["location"],
                reasons=tuple(reasons),
                record_id=row["id"] if isinstance(row["id"], str) else "",
            )
        )
    return GroupReport(
        name=task,
        root=task_dir.as_posix(),
        present=True,
        num_items=len(rows) + len(malformed),
        quarantined=tuple(sorted(quarantined, key=lambda q: q.source)),
        expectations=tuple(run.outcomes),
    )


def validate_avuie(params: Params) -> ValidationResult:
    """Run the quality gate over ``data/avuie/<task>/*.jsonl`` for every task in ``avuie.tasks``.

    Args:
        params: reads ``avuie.tasks`` and ``validation`` (thresholds, AVE clip duration).

    Returns:
        The per-task reports (also written to ``reports/validation/avuie.json``).

    Raises:
        CrabError: a task folder is missing (run ``crab avuie_build``), or a task's failure rate
            exceeds ``validation.max_failure_rate`` (the report is written first).
    """
    for task in params.avuie.tasks:
        if not (AVUIE_DIR / task).is_dir():
            raise CrabError(f"{STAGE}: {AVUIE_DIR / task}: folder not found (run `crab avuie_build` first)")
    groups: dict[str, GroupReport] = {}
    with open_gate(STAGE, DOCS_DIR) as gate:
        for task in params.avuie.tasks:
            groups[task] = _validate_task(gate, task, AVUIE_DIR / task, params.validation)
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
