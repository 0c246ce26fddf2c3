"""One row of a released sample list -> its quality-gate columns and the AV-UIE records it becomes.

Each row is parsed leniently in *type* (the Hugging Face copy stores numbers as strings, lists as their string
form) and strictly in *content*: every problem goes into one column of the gate's frame (``schema_error``: not an
object, a missing field, a wrong type; ``path_error``: a path that does not rebase; ``media_error``: a file that
is not there; ``target_error``: a reasoning text whose tags do not parse to the row's label; ``label_error``: a
label our answer format or the task's vocabulary cannot hold), which :mod:`crab.quality.released` checks. The
records are built with the builders' label types, answer formatters and canonical instructions, so an imported
record has exactly the form of a built one:

* AVE ``{event, start, end}``, item ``{vid}_{start}_{end}``; AVQA ``{answer, question, question_type, question_id}``,
  item ``question_id``: the target is Crab's ``converted_label`` text verbatim (trailing whitespace removed) when
  ``use_reasoning``; a train row needs one, a test row may have one; without a text, the plain answer.
* AVVP: the train row's inline ``label`` with Crab's tag renaming (``<audio>`` -> ``<audio_event>``, ``<visual>``
  -> ``<visual_event>``; ``<audio>`` is the audio placeholder token) is the target, and its tags, parsed and made
  canonical like the dense labels (:func:`crab.avuie.avvp_build.dense_label`), the label. A train row without
  ``label`` is skipped, as Crab skips it. A test row's label comes from its ``event`` field when that holds the
  same tags (its format is unconfirmed; a row whose ``event`` does not is quarantined).
* S4 / MS3 / AVSS (AVSBench-semantic ``v1s`` / ``v1m`` / ``v2``, Crab's reading): one record per annotated frame
  (S4 train: frame 0; AVSS train: :data:`~crab.avuie.avss_build.TRAIN_FRAMES_PER_CLIP` seeded frames), the label
  :class:`~crab.avuie.avs.AvsLabel` with the frame's ``labels_semantic`` PNG (S4 / MS3 are read binary,
  ``gray > 0``, as Crab does) and ``a_obj``'s names as the objects (``a_obj`` verbatim when it is one S4 category,
  else its ``_``-joined AVSBench-semantic class names).
* ARIG: the box ``top_left`` / ``bottom_right`` as given (Crab's 224 x 224 frame); ``x1 == 1000`` (no sounding
  object) is skipped and counted.
* AVCAP: the caption, whitespace-normalised.

Crab templates the S4 / MS3 / AVSS and ARIG targets; its sentence naming ``a_obj`` ("The object making the sound
in the video is {a_obj}.", "The sounding object is {a_obj}.") is the reasoning before our tagged final sentence.
Media are the dataset's own files (the clip's mp4 for video and audio, as the readers give them); Crab's ``.mp3``
re-encodes are not needed, so AVQA's ``audio_path`` must rebase but its file need not exist.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from crab.avuie import arig, ave, avqa, avs, avvp
from crab.avuie.avcap import normalize_caption
from crab.avuie.avss_build import TRAIN_FRAMES_PER_CLIP
from crab.avuie.avs_build import train_frames
from crab.avuie.avvp_build import dense_label, same_ground_truth
from crab.avuie.released.files import AVS_SUBSETS, as_int, as_point, as_str_pair, as_text, local_path, rebase
from crab.avuie.schema import AvuieRecord, make_id, media_paths
from crab.datasets.llp import LlpEvent
from crab.datasets.vocab_seg import AVSS_CLASSES, LLP_CLASSES, LLP_NUM_SEGMENTS, S4_CATEGORIES
from crab.tasks import NUM_AVS_OBJECT_FRAMES, NUM_AVSS_FRAMES, TASKS, Task

__all__ = ["COLUMNS", "ARIG_NO_OBJECT", "Context", "ParsedRow", "Skip", "parse_row", "rename_tags"]

#: The gate frame's columns (one row per sample-list row).
COLUMNS = (
    "source", "split", "item_id", "key", "schema_error", "path_error", "media_error", "target_error", "label_error",
    "event", "answer", "question_type", "subset",
)  # fmt: skip
#: Crab's ARIG sentinel: ``top_left[0] == 1000`` marks a frame without a sounding object.
ARIG_NO_OBJECT = 1000
_AVS_NUM_FRAMES = {"s4": NUM_AVS_OBJECT_FRAMES, "ms3": NUM_AVS_OBJECT_FRAMES, "avss": NUM_AVSS_FRAMES}
_AVSS_OBJECTS = frozenset(AVSS_CLASSES[1:])
#: S4 / MS3 / ARIG object names: AVSBench-semantic names the v1 clips with its classes, AVSBench-object with S4's.
_AVS_OBJECTS = frozenset(S4_CATEGORIES) | _AVSS_OBJECTS
_TAG_RENAMES = (("<audio>", "<audio_event>"), ("</audio>", "</audio_event>"),
                ("<visual>", "<visual_event>"), ("</visual>", "</visual_event>"))  # fmt: skip


@dataclass(frozen=True)
class Context:
    """What parsing one sample list needs.

    Attributes:
        task: the task.
        split: the split of every row of the file, or None when rows carry their own (AVS lists, ARIG).
        root: the local root of the task's dataset.
        reasoning_dir: the ``converted_label/`` folder, or None.
        use_reasoning: False for the "w/o ERP" ablation (released texts unused, plain answers).
        rng: draws AVSS train frames (shared by a task's files, consumed in row order).
        clip_seconds: AVE clip length (``validation.ave_duration_s``).
    """

    task: str
    split: str | None
    root: Path
    reasoning_dir: Path | None
    use_reasoning: bool
    rng: random.Random
    clip_seconds: float


@dataclass
class ParsedRow:
    """A row's gate columns and the records it becomes if it passes (built only when no problem was found here)."""

    columns: dict[str, Any]
    records: list[AvuieRecord] = field(default_factory=list)
    target_kind: str = ""  # "released", "plain", "templated" or "caption": the tally of stats.json


@dataclass(frozen=True)
class Skip:
    """A row Crab skips too: ``no_sounding_object`` (ARIG sentinel) or ``no_label`` (AVVP train row)."""

    reason: str


def rename_tags(text: str) -> str:
    """Crab's AVVP renaming: ``<audio>``/``<visual>`` event tags -> ``<audio_event>``/``<visual_event>``."""
    for old, new in _TAG_RENAMES:
        text = text.replace(old, new)
    return text


_Parser = Callable[[Any, str], tuple[Any, "str | None"]]


def _as_string(value: Any, name: str) -> tuple[str | None, str | None]:
    """Any string, empty included (a caption's emptiness is a label problem, not a type problem)."""
    return (value, None) if isinstance(value, str) else (None, f"{name}: expected a string, got {value!r}")


def _fields(
    entry: Any, spec: Mapping[str, _Parser], optional: Mapping[str, _Parser] | None = None
) -> tuple[dict[str, Any], str | None]:
    """Parse the named fields of a row (``optional`` ones when present and not null); the values, and the first
    problem found (not an object, a missing field, a wrong type) or None."""
    optional = optional or {}
    if not isinstance(entry, dict):
        return {}, f"row is a JSON {type(entry).__name__}, not an object"
    missing = [name for name in spec if name not in entry]
    if missing:
        return {}, "missing field(s) " + ", ".join(repr(m) for m in missing)
    values = {}
    for name, parse in (*spec.items(), *((n, p) for n, p in optional.items() if entry.get(n) is not None)):
        values[name], problem = parse(entry[name], name)
        if problem:
            return {}, problem
    return values, None


def _file_name_problem(name: str, value: str) -> str | None:
    if "/" in value or "\\" in value or value in (".", ".."):
        return f"{name} {value!r} is not a file name"
    return None


def _missing(paths: list[Path]) -> str | None:
    missing = [p.as_posix() for p in paths if not p.is_file()]
    return "file(s) not found: " + ", ".join(missing) if missing else None


def _join(*problems: str | None) -> str | None:
    return "; ".join(p for p in problems if p) or None


def _released_text(ctx: Context, key: str, problem: Callable[[str], str | None]) -> tuple[str | None, str | None]:
    """Crab's reasoning text for ``key`` if it is to be used: ``(text, None)``, ``(None, None)`` (none, and none
    needed) or ``(None, reason)`` (a train row without one, an unreadable one, or one ``problem`` rejects)."""
    if not ctx.use_reasoning:
        return None, None
    path = ctx.reasoning_dir / f"{key}.txt" if ctx.reasoning_dir is not None else None
    if path is None or not path.is_file():
        if ctx.split == "train":
            return None, f"no reasoning text converted_label/{key}.txt (every train row needs one)"
        return None, None
    try:
        text = path.read_text(encoding="utf-8").rstrip()
    except UnicodeDecodeError as err:
        return None, f"{path.as_posix()}: not UTF-8 text ({err.reason})"
    found = problem(text)
    return (None, f"{path.as_posix()}: {found}") if found else (text, None)


def _record(
    ctx: Context,
    split: str,
    item_id: str,
    source: str,
    video_id: str,
    media: dict[str, str],
    instruction: str,
    target: str,
    reasoning: bool,
    label: dict[str, Any],
) -> AvuieRecord:
    task = Task(ctx.task)
    return AvuieRecord(
        id=make_id(task, split, item_id), task=task.value, split=split, dataset=TASKS[task].dataset,
        item_id=item_id, source=source, video_id=video_id, media=media, instruction=instruction, target=target,
        reasoning=reasoning, label=label,
    )  # fmt: skip


def _clean(row: dict[str, Any]) -> bool:
    return not any(row[c] for c in ("schema_error", "path_error", "media_error", "target_error", "label_error"))


# --------------------------------------------------------------------------------------------------
# AVE, AVQA: converted_label texts
# --------------------------------------------------------------------------------------------------


def _ave(ctx: Context, entry: Any, row: dict[str, Any]) -> ParsedRow:
    values, row["schema_error"] = _fields(entry, {"event": as_text, "vid": as_text, "start_time": as_int,
                                                  "end_time": as_int})  # fmt: skip
    if row["schema_error"]:
        return ParsedRow(row)
    vid, label = values["vid"], ave.AveLabel(values["event"], values["start_time"], values["end_time"])
    item_id = f"{vid}_{label.start}_{label.end}"
    video = local_path(ctx.root, ("AVE", f"{vid}.mp4"))
    row.update(
        item_id=item_id, key=f"{ctx.split}/{item_id}", event=label.event, path_error=_file_name_problem("vid", vid)
    )
    row["media_error"] = None if row["path_error"] else _missing([video])
    try:
        ave.format_answer(label, None)
        if not 0 <= label.start < label.end <= ctx.clip_seconds:
            row["label_error"] = f"range {label.start}-{label.end} s is not 0 <= start < end <= {ctx.clip_seconds:g} s"
    except ValueError as err:
        row["label_error"] = str(err)

    def problem(text: str) -> str | None:
        parsed = ave.parse_answer(text)
        if parsed is None:
            return "no parsable <event> ... </event> and <range> s,e </range> tags"
        if parsed != label:
            return f"tags say {parsed.event!r} {parsed.start},{parsed.end}, the row {label.event!r} {label.start},{label.end}"
        return None

    text, row["target_error"] = _released_text(ctx, vid, problem)
    if not _clean(row):
        return ParsedRow(row)
    target = text if text is not None else ave.format_answer(label, None)
    record = _record(ctx, ctx.split or "", item_id, row["source"], vid, media_paths(video),
                     TASKS[Task.AVE].instruction(), target, text is not None, label.to_dict())  # fmt: skip
    return ParsedRow(row, [record], "released" if text is not None else "plain")


def _avqa(ctx: Context, entry: Any, row: dict[str, Any]) -> ParsedRow:
    spec = {"video_id": as_text, "question_id": as_int, "type": as_str_pair, "video_path": as_text,
            "audio_path": as_text, "question": as_text, "answer": as_text}  # fmt: skip
    values, row["schema_error"] = _fields(entry, spec)
    if row["schema_error"]:
        return ParsedRow(row)
    qid, answer, qtype = values["question_id"], values["answer"], values["type"]
    row.update(item_id=str(qid), key=f"{ctx.split}/{qid}", answer=answer, question_type=json.dumps(list(qtype)))
    video, video_problem = rebase(values["video_path"], "music_avqa", ctx.root)
    _, audio_problem = rebase(values["audio_path"], "music_avqa", ctx.root)
    row["path_error"] = _join(
        video_problem and f"video_path: {video_problem}", audio_problem and f"audio_path: {audio_problem}"
    )
    row["media_error"] = _missing([video]) if video is not None else None
    try:
        avqa.format_answer(avqa.AvqaLabel(answer), None)
    except ValueError as err:
        row["label_error"] = str(err)

    def problem(text: str) -> str | None:
        parsed = avqa.parse_answer(text)
        if parsed is None:
            return "no parsable <answer> ... </answer> tag"
        return (
            None
            if avqa.answers_match(parsed, answer)
            else f"<answer> {parsed.answer!r} differs from the row's {answer!r}"
        )

    text, row["target_error"] = _released_text(ctx, str(qid), problem)
    if not _clean(row) or video is None:
        return ParsedRow(row)
    label = {"answer": answer, "question": values["question"], "question_type": list(qtype), "question_id": qid}
    target = text if text is not None else avqa.format_answer(avqa.AvqaLabel(answer), None)
    instruction = TASKS[Task.AVQA].instruction(question=values["question"])
    record = _record(ctx, ctx.split or "", str(qid), row["source"], values["video_id"], media_paths(video),
                     instruction, target, text is not None, label)  # fmt: skip
    return ParsedRow(row, [record], "released" if text is not None else "plain")


# --------------------------------------------------------------------------------------------------
# AVVP: inline reasoning
# --------------------------------------------------------------------------------------------------


def _avvp_events_problem(label: avvp.AvvpLabel) -> str | None:
    for modality in ("audio", "visual"):
        for event in getattr(label, modality):
            if event.name not in LLP_CLASSES:
                return f"{modality} event {event.name!r} is not one of LLP's {len(LLP_CLASSES)} classes"
            for start, end in event.intervals:
                if not 0 <= start < end <= LLP_NUM_SEGMENTS:
                    return f"{modality} event {event.name!r} spans ({start} {end}), not 0 <= start < end <= 10"
    return None


def _canonical(label: avvp.AvvpLabel, source: str) -> avvp.AvvpLabel:
    """The label as ``avuie_build`` writes dense labels: per class the maximal runs, classes by first second."""

    def events(modality: str) -> list[LlpEvent]:
        return [LlpEvent(e.name, s, t, source) for e in getattr(label, modality) for s, t in e.intervals]

    return dense_label(events("audio"), events("visual"))[0]


def _avvp(ctx: Context, entry: Any, row: dict[str, Any]) -> ParsedRow | Skip:
    optional = {"label": _as_string, "event": _as_string}
    values, row["schema_error"] = _fields(entry, {"filename": as_text, "vid": as_text}, optional)
    if row["schema_error"]:
        return ParsedRow(row)
    train = ctx.split == "train"
    if train and "label" not in values:
        return Skip("no_label")
    if not train and "event" not in values:
        row["schema_error"] = "missing field 'event' (the test reference)"
        return ParsedRow(row)
    filename, vid = values["filename"], values["vid"]
    row.update(item_id=filename, key=f"{ctx.split}/{filename}")
    row["path_error"] = _file_name_problem("vid", vid)
    video = local_path(ctx.root, ("llp_videos", f"{vid}.mp4"))
    row["media_error"] = None if row["path_error"] else _missing([video])
    text = rename_tags(values["label"]).rstrip() if train else None
    event = avvp.parse_answer(rename_tags(values["event"])) if "event" in values else None
    parsed = avvp.parse_answer(text) if text is not None else event
    if parsed is None:
        field_name = "label" if train else "event"
        row["target_error"] = (f"{field_name} has no parsable <audio>...</audio> and <visual>...</visual> tags "
                               "(events 'Name,(s e)(s e)' separated by ';')")  # fmt: skip
        return ParsedRow(row)
    if event is not None and not same_ground_truth(parsed, event):
        row["target_error"] = "the label's tags and the event field mark different seconds"
    row["label_error"] = _avvp_events_problem(parsed)
    if not _clean(row):
        return ParsedRow(row)
    label = _canonical(parsed, row["source"])
    released = ctx.use_reasoning and text is not None
    target = text if released else avvp.format_answer(label, None)
    record = _record(ctx, ctx.split or "", filename, row["source"], vid, media_paths(video),
                     TASKS[Task.AVVP].instruction(), target, released, label.to_dict())  # fmt: skip
    return ParsedRow(row, [record], "released" if released else "plain")


# --------------------------------------------------------------------------------------------------
# AVSBench-semantic: S4, MS3, AVSS, ARIG
# --------------------------------------------------------------------------------------------------


def _object_names(task: str, a_obj: str) -> tuple[tuple[str, ...], str | None]:
    """``a_obj``'s object names (module docstring) and why they are not all known names (None if they are)."""
    if task != "avss" and a_obj in S4_CATEGORIES:
        return (a_obj,), None
    names = tuple(dict.fromkeys(name for name in a_obj.split("_") if name))
    known = _AVSS_OBJECTS if task == "avss" else _AVS_OBJECTS
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        vocabulary = "AVSS's 70 object classes" if task == "avss" else "S4's 23 categories or AVSS's 70 object classes"
        return names, f"a_obj {a_obj!r} names {unknown or a_obj!r}, not among {vocabulary}"
    return names, None


def _avs(ctx: Context, entry: Any, row: dict[str, Any]) -> ParsedRow:
    spec = {"vid": as_text, "uid": as_text, "s_min": as_int, "s_sec": as_int, "a_obj": as_text, "split": as_text,
            "label": as_text}  # fmt: skip
    values, row["schema_error"] = _fields(entry, spec)
    if row["schema_error"]:
        return ParsedRow(row)
    task, uid, split, a_obj = ctx.task, values["uid"], values["split"], values["a_obj"]
    row.update(split=split, item_id=uid, key=f"{split}/{uid}", subset=values["label"])
    row["path_error"] = _file_name_problem("uid", uid)
    if row["path_error"]:
        return ParsedRow(row)
    folder = ctx.root / AVS_SUBSETS[task] / uid
    num_frames = _AVS_NUM_FRAMES[task]
    if task == "avss":
        annotated = train_frames(split, num_frames, TRAIN_FRAMES_PER_CLIP, ctx.rng)
    else:
        annotated = [0] if task == "s4" and split == "train" else list(range(num_frames))
    frames = [folder / "frames" / f"{i}.jpg" for i in range(num_frames)]
    masks = {i: folder / "labels_semantic" / f"{i}.png" for i in annotated}
    row["media_error"] = _missing([folder / "audio.wav", *frames, *masks.values()])
    objects, row["label_error"] = _object_names(task, a_obj)
    if not _clean(row):
        return ParsedRow(row)
    reasoning = f"The object making the sound in the video is {a_obj}." if ctx.use_reasoning else None
    records = []
    for frame, mask in masks.items():
        label = avs.AvsLabel(frame=frame, mask=mask.as_posix(), objects=objects)
        media = {"video": (folder / "frames").as_posix(), "audio": (folder / "audio.wav").as_posix()}
        instruction = TASKS[Task(task)].instruction(nth=avs.nth_second(frame))
        records.append(_record(ctx, split, f"{uid}_{frame + 1}", row["source"], uid, media, instruction,
                               avs.format_answer(label, reasoning), reasoning is not None, label.to_dict()))  # fmt: skip
    return ParsedRow(row, records, "templated" if reasoning else "plain")


def _arig(ctx: Context, entry: Any, row: dict[str, Any]) -> ParsedRow | Skip:
    spec = {"split": as_text, "audio_path": as_text, "frame_path": as_text, "mask_path": as_text,
            "top_left": as_point, "bottom_right": as_point, "a_obj": as_text}  # fmt: skip
    values, row["schema_error"] = _fields(entry, spec)
    if row["schema_error"]:
        return ParsedRow(row)
    (x0, y0), (x1, y1) = values["top_left"], values["bottom_right"]
    if x0 == ARIG_NO_OBJECT:
        return Skip("no_sounding_object")
    split, a_obj = values["split"], values["a_obj"]
    row["split"] = split
    paths, problems = {}, []
    for name in ("frame_path", "audio_path", "mask_path"):
        paths[name], problem = rebase(values[name], "avss", ctx.root)
        problems.append(problem and f"{name}: {problem}")
    frame_file = PurePosixPath(values["frame_path"].replace("\\", "/"))
    frame, _ = as_int(frame_file.stem, "frame") if frame_file.parent.name == "frames" else (None, None)
    if frame is None:
        problems.append(f"frame_path {values['frame_path']!r} is not .../{{uid}}/frames/{{index}}.jpg")
    row["path_error"] = _join(*problems)
    if row["path_error"]:
        return ParsedRow(row)
    uid = frame_file.parent.parent.name
    item_id = f"{uid}_{frame + 1}"
    row.update(item_id=item_id, key=f"{split}/{item_id}", media_error=_missing(list(paths.values())))
    try:
        box = arig.ArigLabel(x0, y0, x1, y1)
    except ValueError as err:
        box, row["label_error"] = None, str(err)
    if row["label_error"] is None and not 0 <= frame < NUM_AVS_OBJECT_FRAMES:
        row["label_error"] = f"frame {frame} is not one of the clip's {NUM_AVS_OBJECT_FRAMES} (0-based)"
    if row["label_error"] is None and a_obj not in _AVS_OBJECTS:
        row["label_error"] = f"a_obj {a_obj!r} is neither one of S4's 23 categories nor an AVSS object class"
    if not _clean(row) or box is None:
        return ParsedRow(row)
    reasoning = f"The sounding object is {a_obj}." if ctx.use_reasoning else None
    label = {**box.to_dict(), "object": a_obj, "frame": frame, "mask": paths["mask_path"].as_posix()}
    media = {"image": paths["frame_path"].as_posix(), "audio": paths["audio_path"].as_posix()}
    record = _record(ctx, split, item_id, row["source"], uid, media, TASKS[Task.ARIG].instruction(),
                     arig.format_answer(box, reasoning), reasoning is not None, label)  # fmt: skip
    return ParsedRow(row, [record], "templated" if reasoning else "plain")


# --------------------------------------------------------------------------------------------------
# AVCAP
# --------------------------------------------------------------------------------------------------


def _avcap(ctx: Context, entry: Any, row: dict[str, Any]) -> ParsedRow:
    values, row["schema_error"] = _fields(entry, {"video_id": as_text, "desc": _as_string})
    if row["schema_error"]:
        return ParsedRow(row)
    video_id, caption = values["video_id"], normalize_caption(values["desc"])
    row.update(item_id=video_id, key=f"{ctx.split}/{video_id}", path_error=_file_name_problem("video_id", video_id))
    video = local_path(ctx.root, ("video_data", f"{video_id}.mp4"))
    row["media_error"] = None if row["path_error"] else _missing([video])
    row["label_error"] = None if caption else "empty caption"
    if not _clean(row):
        return ParsedRow(row)
    record = _record(ctx, ctx.split or "", video_id, row["source"], video_id, media_paths(video),
                     TASKS[Task.AVCAP].instruction(), caption, False, {"caption": caption})  # fmt: skip
    return ParsedRow(row, [record], "caption")


_PARSERS: dict[str, Callable[[Context, Any, dict[str, Any]], ParsedRow | Skip]] = {
    "ave": _ave, "avqa": _avqa, "avvp": _avvp, "s4": _avs, "ms3": _avs, "avss": _avs, "arig": _arig, "avcap": _avcap,
}  # fmt: skip


def parse_row(ctx: Context, entry: Any, source: str) -> ParsedRow | Skip:
    """Parse one sample-list row (module docstring).

    Args:
        ctx: the file's context.
        entry: the row as JSON gave it.
        source: ``"<file>[<index>]"``, the quarantine key and the records' ``source``.

    Returns:
        The gate columns with the records (none if a problem was found), or a :class:`Skip`.
    """
    row: dict[str, Any] = dict.fromkeys(COLUMNS)
    row.update(source=source, split=ctx.split)
    return _PARSERS[ctx.task](ctx, entry, row)
