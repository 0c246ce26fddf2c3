"""The expectation suites of the quality gates, defined in code, each check with its human reason.

DESIGN.md section 3 (``validate_raw``, ``validate_avuie``): every item of a raw dataset or of AV-UIE is
one row of a pandas frame; a suite is a list of :class:`Check` s over its columns. A check names a
Great Expectations 1.x expectation class and its arguments, plus the reason an item failing it gets in
the quarantine report (a ``str.format`` template over the row, so the reason says what is wrong with
*that* item: ``"unknown category 'Dog'"``). Row-wise checks use GE's column-map expectations directly;
rules that involve several rows (AVE's conflicting annotations, exact duplicates) or parsed structure
(templates, placeholders) are computed here into derived columns (``duplicate_of``, ``conflicts_with``,
``templ_values_error``, ...) that a null / in-set expectation then checks, so that every verdict still
goes through GE and shows in the data docs.

The raw frames are built by ``crab.quality.raw``; the ``derive_*`` functions here add the derived
columns (columns that take I/O, such as AVSBench's per-PNG findings, are filled there). The AV-UIE suite lives next to its frame in ``crab.quality.avuie`` (its checks read parsed
JSONL, not reader records). Nothing here imports great_expectations (the
runner does, lazily), so defining suites is free.

Decisions (the briefs left them open): AVE's ``Quality`` column is a *warning*. Every row of the public
release says ``good``; another value marks an annotator's doubt, not an unusable item, so it is
reported (and logged) but not quarantined. So is LLP's "every dense class is a weak label" rule
(:func:`llp_suite` says why).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

from crab.datasets.avsbench import AVSBENCH_SPLITS, NUM_AVS_OBJECT_FRAMES
from crab.datasets.music_avqa import count_placeholders
from crab.datasets.ref_avs import REF_AVS_NUM_FRAMES, REF_AVS_SPLITS
from crab.datasets.vocab import (
    AVE_CATEGORIES,
    AVQA_ANSWERS,
    AVQA_PLACEHOLDER_VALUES,
    AVQA_QUESTION_TYPES,
    AVQA_TEMPLATES,
)
from crab.datasets.vocab_seg import AVSS_CLASSES, LLP_CLASSES, LLP_NUM_SEGMENTS, REF_AVS_OBJECTS, S4_CATEGORIES
from crab.quality.quarantine import Severity

if TYPE_CHECKING:
    import pandas as pd

    from crab.config import ValidationConfig

__all__ = [
    "AVQA_TYPE_STRINGS",
    "BINARY_MASK_MODES",
    "BINARY_MASK_VALUES",
    "AVS_ALL_MASK_FRAMES",
    "Check",
    "ave_suite",
    "avss_suite",
    "derive_ave",
    "derive_avss",
    "derive_llp",
    "derive_music_avqa",
    "llp_suite",
    "media_checks",
    "ms3_suite",
    "music_avqa_suite",
    "normalize_template",
    "ref_avs_suite",
    "s4_suite",
    "valor_suite",
]

#: Modes a binary mask PNG may have (AVSBench's "single-channel 8-bit PNG", LVIS's masks): 8-bit grey, and
#: 1-bit (binary by construction).
BINARY_MASK_MODES = ("L", "1")
#: The values an 8-bit grey binary mask may hold: 0 = background, 255 = the object (dataset-layouts 4.3).
BINARY_MASK_VALUES = frozenset({0, 255})

#: A media file name stem: YouTube ids (11 chars of [A-Za-z0-9_-], may start with '-'), MUSIC-AVQA's
#: 8-digit / synthetic ids, AV-Synth ids. No path separators, no spaces.
VIDEO_ID_REGEX = r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*$"

#: The 9 question types as stored in MUSIC-AVQA's ``type`` field (``json.dumps`` of the pair).
AVQA_TYPE_STRINGS: tuple[str, ...] = tuple(json.dumps(list(t)) for t in AVQA_QUESTION_TYPES)


@dataclass(frozen=True)
class Check:
    """One expectation of a suite and the reason an item failing it gets.

    Attributes:
        name: short stable name (``"category_in_vocabulary"``).
        expectation: class name in ``great_expectations.expectations`` (``"ExpectColumnValuesToBeInSet"``).
        kwargs: the expectation's arguments (``column`` or ``column_A`` / ``column_B``, value sets, ...).
        reason: ``str.format`` template over the failing row's columns.
        severity: ``"critical"`` quarantines failing items; ``"warning"`` only reports them.
    """

    name: str
    expectation: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    reason: str = ""
    severity: Severity = "critical"

    @property
    def columns(self) -> tuple[str, ...]:
        if "column" in self.kwargs:
            return (self.kwargs["column"],)
        return (self.kwargs["column_A"], self.kwargs["column_B"])

    @property
    def column_label(self) -> str:
        """The column, or ``"A,B"`` for a column-pair expectation."""
        return ",".join(self.columns)

    def describe(self, row: Mapping[str, Any]) -> str:
        """The reason for one failing row."""
        return self.reason.format_map(row)


# --------------------------------------------------------------------------------------------------
# Shared checks
# --------------------------------------------------------------------------------------------------


def media_checks(
    validation: ValidationConfig, expected_duration_s: float | None, media_column: str = "video_path"
) -> list[Check]:
    """Checks on the probed media columns ``media_error``, ``duration_s``, ``audio_sample_rate``.

    ``media_error`` holds the :class:`crab.errors.DataError` reason of a full decode requiring the
    dataset's streams (a video and an audio stream for an mp4, audio for AVSBench's wav: missing file, no
    audio stream, no samples, truncation ...); rows whose media failed have null durations and rates,
    which the other checks skip.

    Args:
        validation: thresholds (sample rates, duration tolerance).
        expected_duration_s: the clip length every file must have (AVE, LLP), or None for "any positive length".
        media_column: the column holding the probed file's path (named in the decode reason).
    """
    rates = sorted(validation.allowed_sample_rates)
    if expected_duration_s is None:
        duration = Check(
            "duration_positive",
            "ExpectColumnValuesToBeBetween",
            {"column": "duration_s", "min_value": 0, "strict_min": True},
            "clip has no duration ({duration_s} s)",
        )
    else:
        tol = validation.duration_tolerance_s
        duration = Check(
            "clip_duration",
            "ExpectColumnValuesToBeBetween",
            {"column": "duration_s", "min_value": expected_duration_s - tol, "max_value": expected_duration_s + tol},
            f"clip lasts {{duration_s:.2f}} s, expected {expected_duration_s:g} +- {tol:g} s",
        )
    return [
        Check(
            "media_decodes",
            "ExpectColumnValuesToBeNull",
            {"column": "media_error"},
            f"media {{{media_column}}}: {{media_error}}",
        ),
        duration,
        Check(
            "audio_sample_rate_allowed",
            "ExpectColumnValuesToBeInSet",
            {"column": "audio_sample_rate", "value_set": rates},
            f"audio sample rate {{audio_sample_rate:.0f}} Hz is not one of {rates}",
        ),
        Check(
            "video_id_is_file_stem",
            "ExpectColumnValuesToMatchRegex",
            {"column": "video_id", "regex": VIDEO_ID_REGEX},
            "video_id {video_id!r} is not a plain file name",
        ),
    ]


# --------------------------------------------------------------------------------------------------
# AVE
# --------------------------------------------------------------------------------------------------


def derive_ave(frame: pd.DataFrame) -> pd.DataFrame:
    """Add AVE's derived columns to a frame of AVE rows (in file order within each split).

    Adds ``clip_seconds`` (probed duration rounded to the 1 s grid), ``duplicate_of`` (for the 2nd and
    later copies of an exact duplicate row in a split: the first copy's source) and ``conflicts_with``
    (sources of the other rows of the same video and split whose ``[start, end)`` overlaps this row's:
    two events cannot both hold the same seconds, so all involved rows are suspect). Exact duplicates
    are left out of the overlap test (they are the same annotation, not a conflict).

    Args:
        frame: columns ``split, video_id, category, quality, start_s, end_s, source, duration_s``.

    Returns:
        The same frame (modified in place) with the three columns added.
    """
    frame["clip_seconds"] = frame["duration_s"].round()
    key = ["split", "video_id", "category", "quality", "start_s", "end_s"]
    first_source = frame.groupby(key, sort=False)["source"].transform("first")
    is_copy = frame.duplicated(subset=key, keep="first")
    frame["duplicate_of"] = first_source.where(is_copy, None).astype(object)

    conflicts: dict[Any, str] = {}
    originals = frame[~is_copy]
    for _, group in originals.groupby(["split", "video_id"], sort=False):
        if len(group) < 2:
            continue
        rows = list(group[["start_s", "end_s", "source"]].itertuples())
        for label, start, end, _src in rows:
            others = [src for other, s, e, src in rows if other != label and start < e and s < end]
            if others:
                conflicts[label] = ", ".join(others)
    frame["conflicts_with"] = [conflicts.get(label) for label in frame.index]
    return frame


def ave_suite(validation: ValidationConfig) -> list[Check]:
    """The AVE suite (dataset-layouts.md section 1): media, vocabulary, ranges on the 1 s grid, duplicates."""
    return [
        *media_checks(validation, validation.ave_duration_s),
        Check(
            "category_in_vocabulary",
            "ExpectColumnValuesToBeInSet",
            {"column": "category", "value_set": list(AVE_CATEGORIES)},
            "unknown category {category!r} (not one of AVE's 28)",
        ),
        Check(
            "quality_is_good",
            "ExpectColumnValuesToBeInSet",
            {"column": "quality", "value_set": ["good"]},
            "quality {quality!r} is not 'good'",
            severity="warning",
        ),
        Check(
            "start_not_negative",
            "ExpectColumnValuesToBeBetween",
            {"column": "start_s", "min_value": 0},
            "range starts before the clip: start {start_s} s",
        ),
        Check(
            "start_before_end",
            "ExpectColumnPairValuesAToBeGreaterThanB",
            {"column_A": "end_s", "column_B": "start_s", "or_equal": False},
            "reversed or empty range: start {start_s} s, end {end_s} s",
        ),
        Check(
            "end_within_clip",
            "ExpectColumnPairValuesAToBeGreaterThanB",
            {
                "column_A": "clip_seconds",
                "column_B": "end_s",
                "or_equal": True,
                "ignore_row_if": "either_value_is_missing",
            },
            "range ends at {end_s} s, past the clip's end ({clip_seconds:.0f} s)",
        ),
        Check(
            "not_a_duplicate_row",
            "ExpectColumnValuesToBeNull",
            {"column": "duplicate_of"},
            "duplicate row (same as {duplicate_of})",
        ),
        Check(
            "no_conflicting_annotation",
            "ExpectColumnValuesToBeNull",
            {"column": "conflicts_with"},
            "conflicting annotations: range {start_s}-{end_s} s overlaps {conflicts_with} (same video and split)",
        ),
    ]


# --------------------------------------------------------------------------------------------------
# MUSIC-AVQA
# --------------------------------------------------------------------------------------------------


def normalize_template(text: str) -> str:
    """A template without the release's quirks: U+FF1F -> ``?``, trailing whitespace removed.

    The public files keep two trailing spaces and one full-width question mark (dataset-layouts 3.3);
    writers may or may not copy them, so templates are compared in this normal form.
    """
    return text.replace("\uff1f", "?").rstrip()


_TEMPLATE_TYPES: dict[str, str] = {}  # normalized template -> its type string
for _qtype, _templates in AVQA_TEMPLATES.items():
    for _template in _templates:
        _TEMPLATE_TYPES[normalize_template(_template)] = json.dumps(list(_qtype))
_PLACEHOLDER = re.compile(r"<[^<>]*>")


def _templ_values_error(content: str, values: list[str]) -> str | None:
    """Why ``values`` cannot fill ``content``'s placeholders (None if they can or the count differs)."""
    placeholders = _PLACEHOLDER.findall(content)
    if len(placeholders) != len(values):
        return None  # reported by the count check
    problems = []
    for slot, value in zip(placeholders, values, strict=True):
        allowed = AVQA_PLACEHOLDER_VALUES.get(slot)
        if allowed is None:
            problems.append(f"unknown placeholder {slot}")
        elif value not in allowed:
            problems.append(f"{value!r} is not a {slot} value")
    return "; ".join(problems) or None


def derive_music_avqa(frame: pd.DataFrame) -> pd.DataFrame:
    """Add MUSIC-AVQA's derived columns (templates, placeholder counts and values).

    Adds ``template`` (normal form, :func:`normalize_template`), ``type_and_template`` (``"<type> |
    <template>"`` for a known template, else null so that only the unknown-template check reports it),
    ``num_placeholders`` (words holding ``<``, the reader's rule), ``num_templ_values`` and
    ``templ_values_error``.

    Args:
        frame: columns ``question_type`` (stored type string), ``question_content``, ``templ_values``
            (JSON list string).

    Returns:
        The same frame (modified in place).
    """
    frame["template"] = [normalize_template(t) for t in frame["question_content"]]
    frame["type_and_template"] = [
        f"{qtype} | {template}" if template in _TEMPLATE_TYPES else None
        for qtype, template in zip(frame["question_type"], frame["template"], strict=True)
    ]
    values = [json.loads(v) for v in frame["templ_values"]]
    frame["num_placeholders"] = [count_placeholders(c) for c in frame["question_content"]]
    frame["num_templ_values"] = [len(v) for v in values]
    frame["templ_values_error"] = [
        _templ_values_error(c, v) for c, v in zip(frame["question_content"], values, strict=True)
    ]
    return frame


def music_avqa_suite(validation: ValidationConfig) -> list[Check]:
    """The MUSIC-AVQA suite (dataset-layouts.md section 3): ids, types, templates, values, answers, media."""
    type_and_template = sorted(f"{qtype} | {template}" for template, qtype in _TEMPLATE_TYPES.items())
    return [
        *media_checks(validation, None),
        Check(
            "question_id_unique",
            "ExpectColumnValuesToBeUnique",
            {"column": "question_id"},
            "question_id {question_id} occurs more than once across the splits "
            "(every copy quarantined: duplicates carry conflicting answers)",
        ),
        Check(
            "question_type_known",
            "ExpectColumnValuesToBeInSet",
            {"column": "question_type", "value_set": list(AVQA_TYPE_STRINGS)},
            "unknown question type {question_type}",
        ),
        Check(
            "template_known",
            "ExpectColumnValuesToBeInSet",
            {"column": "template", "value_set": sorted(_TEMPLATE_TYPES)},
            "unknown question template {question_content!r}",
        ),
        Check(
            "template_matches_type",
            "ExpectColumnValuesToBeInSet",
            {"column": "type_and_template", "value_set": type_and_template},
            "template {question_content!r} is not a {question_type} template",
        ),
        Check(
            "templ_values_count",
            "ExpectColumnPairValuesToBeEqual",
            {"column_A": "num_templ_values", "column_B": "num_placeholders"},
            "{num_templ_values} templ_values for {num_placeholders} placeholders",
        ),
        Check(
            "templ_values_allowed",
            "ExpectColumnValuesToBeNull",
            {"column": "templ_values_error"},
            "templ_values {templ_values}: {templ_values_error}",
        ),
        Check(
            "answer_in_vocabulary",
            "ExpectColumnValuesToBeInSet",
            {"column": "answer", "value_set": list(AVQA_ANSWERS)},
            "answer {answer!r} is not in the 42-word answer vocabulary",
        ),
    ]


# --------------------------------------------------------------------------------------------------
# VALOR
# --------------------------------------------------------------------------------------------------


def valor_suite(validation: ValidationConfig) -> list[Check]:
    """The VALOR suite (dataset-layouts.md section 7.2): one caption per video, media."""
    return [
        *media_checks(validation, None),
        Check(
            "video_id_unique",
            "ExpectColumnValuesToBeUnique",
            {"column": "video_id"},
            "video_id {video_id!r} occurs more than once across the splits (every copy quarantined)",
        ),
        Check(
            "caption_not_empty",
            "ExpectColumnValuesToMatchRegex",
            {"column": "caption", "regex": r"\S"},
            "empty caption",
        ),
    ]


# --------------------------------------------------------------------------------------------------
# LLP (AVVP)
# --------------------------------------------------------------------------------------------------

#: (split, has dense events) pairs LLP allows: val and test are densely annotated in the release
#: (dataset-layouts 2.3); train is weak-only there and dense in AV-Synth (``crab.datasets.llp``).
_LLP_DENSE_STATES: list[tuple[str, bool]] = [("train", False), ("train", True), ("val", True), ("test", True)]
_LLP_CLASS_SET = frozenset(LLP_CLASSES)


def _event_name(event: Mapping[str, Any]) -> str:
    """``"audio 'Dog' 2-6 s (AVVP_eval_audio.csv:12)"``: one dense event, named for a reason."""
    where = PurePath(str(event["source"])).name  # file name and line; the report has the full source
    return f"{event['modality']} {event['label']!r} {event['onset_s']}-{event['offset_s']} s ({where})"


def _on_grid(event: Mapping[str, Any]) -> bool:
    """Whether a dense event is a non-empty span of whole seconds on the 10 x 1-s grid."""
    onset, offset = event["onset_s"], event["offset_s"]
    whole = all(isinstance(t, int) and not isinstance(t, bool) for t in (onset, offset))
    return whole and 0 <= onset < offset <= LLP_NUM_SEGMENTS


def _joined(items: list[str]) -> str | None:
    return "; ".join(items) or None


def _weak_labels_problem(labels: list[str]) -> str | None:
    """Why a video's weak labels are unusable (None if they are fine)."""
    if not labels:
        return "no weak label"
    unknown = [repr(label) for label in labels if label not in _LLP_CLASS_SET]
    return f"{', '.join(unknown)} not among LLP's {len(LLP_CLASSES)} classes" if unknown else None


def derive_llp(frame: pd.DataFrame) -> pd.DataFrame:
    """Add LLP's derived columns to a frame of LLP rows (one row per video and split).

    Adds ``split_item_id`` (``"<split>/<item_id>"``: ``filename`` is a key within a split),
    ``has_dense_events``, and, each null when there is nothing to report: ``unknown_labels`` (weak labels
    outside LLP's 25 classes, or "no weak label"), ``unknown_event_labels`` and ``off_grid_events`` (dense
    events with an unknown class, or whose ``[onset, offset)`` is not a non-empty span of whole seconds in
    0..10) and ``events_not_in_weak`` (classes with a dense event that the weak labels do not list).

    Args:
        frame: columns ``split``, ``item_id``, ``labels`` (JSON list of weak classes) and ``dense_events``
            (JSON list of ``{"modality", "label", "onset_s", "offset_s", "source"}``, or null for a
            weak-only video).

    Returns:
        The same frame (modified in place).
    """
    weak = [json.loads(labels) for labels in frame["labels"]]
    dense = [json.loads(events) if isinstance(events, str) else None for events in frame["dense_events"]]
    frame["split_item_id"] = [f"{s}/{i}" for s, i in zip(frame["split"], frame["item_id"], strict=True)]
    frame["has_dense_events"] = [events is not None for events in dense]
    frame["unknown_labels"] = [_weak_labels_problem(labels) for labels in weak]
    frame["unknown_event_labels"] = [
        _joined([_event_name(e) for e in events or [] if e["label"] not in _LLP_CLASS_SET]) for events in dense
    ]
    frame["off_grid_events"] = [_joined([_event_name(e) for e in events or [] if not _on_grid(e)]) for events in dense]
    frame["events_not_in_weak"] = [
        _joined(sorted({repr(e["label"]) for e in events or [] if e["label"] not in labels}))
        for labels, events in zip(weak, dense, strict=True)
    ]
    return frame


def llp_suite(validation: ValidationConfig) -> list[Check]:
    """The LLP suite (dataset-layouts.md section 2): 10-s media, vocabulary, dense spans, annotation coverage.

    Rows are videos, so a bad dense event quarantines its video (its ground truth would be incomplete),
    as :func:`crab.datasets.llp.read_llp` does. The rule that a dense class is one of the video's weak
    labels is a *warning*: AVVP's formulation assumes it (a video's weak labels are the union of its audio
    and visual events) and AV-Synth writes it by construction, but dataset-layouts.md does not verify it on
    the release, and the AVVP metric reads the dense events only, so a violation is worth seeing but does
    not make the item unusable.
    """
    return [
        *media_checks(validation, float(LLP_NUM_SEGMENTS)),
        Check(
            "item_id_unique_in_split",
            "ExpectColumnValuesToBeUnique",
            {"column": "split_item_id"},
            "filename {item_id!r} occurs more than once in {split} (every copy quarantined)",
        ),
        Check(
            "labels_in_vocabulary",
            "ExpectColumnValuesToBeNull",
            {"column": "unknown_labels"},
            "weak labels {labels}: {unknown_labels}",
        ),
        Check(
            "event_labels_in_vocabulary",
            "ExpectColumnValuesToBeNull",
            {"column": "unknown_event_labels"},
            f"dense event class not one of LLP's {len(LLP_CLASSES)}: {{unknown_event_labels}}",
        ),
        Check(
            "events_on_grid",
            "ExpectColumnValuesToBeNull",
            {"column": "off_grid_events"},
            f"dense event not a whole-second span with 0 <= onset < offset <= {LLP_NUM_SEGMENTS}: {{off_grid_events}}",
        ),
        Check(
            "eval_split_has_dense_events",
            "ExpectColumnPairValuesToBeInSet",
            {"column_A": "split", "column_B": "has_dense_events", "value_pairs_set": _LLP_DENSE_STATES},
            "{split} video without dense events (val and test are densely annotated)",
        ),
        Check(
            "event_classes_in_weak_labels",
            "ExpectColumnValuesToBeNull",
            {"column": "events_not_in_weak"},
            "dense events of {events_not_in_weak}, which the weak labels {labels} do not list",
            severity="warning",
        ),
    ]


# --------------------------------------------------------------------------------------------------
# AVSBench-object v1 (S4, MS3)
# --------------------------------------------------------------------------------------------------

#: ``mask_frames`` of a video whose 5 frames all have a mask (``"1,2,3,4,5"``).
AVS_ALL_MASK_FRAMES = ",".join(str(i) for i in range(1, NUM_AVS_OBJECT_FRAMES + 1))
#: (split, mask_frames) pairs the release allows: S4 train annotates frame 1 only (dataset-layouts 4.3).
_S4_MASK_STATES: list[tuple[str, str]] = [("train", "1"), ("val", AVS_ALL_MASK_FRAMES), ("test", AVS_ALL_MASK_FRAMES)]
_MS3_MASK_STATES: list[tuple[str, str]] = [(split, AVS_ALL_MASK_FRAMES) for split in AVSBENCH_SPLITS]


def _image_checks(foreground: str) -> tuple[list[Check], list[Check]]:
    """The frame / mask checks AVSBench and Ref-AVS share, over ``crab.quality.raw``'s image columns: the
    frames decode (first list); the masks decode, are single-channel, binary and the frame's size (second).
    ``foreground`` names what the 255 pixels mark in the quarantine reason."""
    frames = [
        Check("frames_decode", "ExpectColumnValuesToBeNull", {"column": "frame_problems"},
              "frame not decodable: {frame_problems}"),
    ]  # fmt: skip
    masks = [
        Check("masks_decode", "ExpectColumnValuesToBeNull", {"column": "mask_problems"},
              "mask not decodable: {mask_problems}"),
        Check("masks_single_channel", "ExpectColumnValuesToBeNull", {"column": "mask_mode_problems"},
              "mask not single-channel 8-bit (L) or 1-bit (1): {mask_mode_problems}"),
        Check("masks_binary", "ExpectColumnValuesToBeNull", {"column": "mask_value_problems"},
              f"mask values other than 0 (background) and 255 ({foreground}): {{mask_value_problems}}"),
        Check("mask_size_is_frame_size", "ExpectColumnValuesToBeNull", {"column": "mask_size_problems"},
              "mask size differs from its frame's: {mask_size_problems}"),
    ]  # fmt: skip
    return frames, masks


def _avs_object_checks(
    validation: ValidationConfig, mask_states: list[tuple[str, str]], mask_reason: str
) -> list[Check]:
    """The checks S4 and MS3 share: the wav, the name, the frames and the masks.

    The image columns are filled by ``crab.quality.raw`` (one decode of every PNG): ``frame_problems`` /
    ``mask_problems`` (files that do not decode), ``mask_mode_problems``, ``mask_value_problems``,
    ``mask_size_problems`` (masks that decode but break a rule), each null when there is nothing to report,
    and ``mask_frames`` (the frame numbers that have a mask file on disk, ``"1,2,3,4,5"``).

    Masks must be what the release holds (dataset-layouts 4.3): single-channel PNG, 8-bit grey (mode
    ``L``) with only the values 0 (background) and 255 (sounding object), or 1-bit (mode ``1``, which is
    binary by construction); a 0/1 mask would read as nearly empty after the loaders' division by 255, and
    a palette or colour mask is not what the layout describes, so both are quarantined rather than guessed at.
    """
    frames, masks = _image_checks("sounding object")
    return [
        *media_checks(validation, float(NUM_AVS_OBJECT_FRAMES), media_column="audio_path"),
        Check(
            "name_unique",
            "ExpectColumnValuesToBeUnique",
            {"column": "item_id"},
            "name {item_id!r} occurs more than once (every copy quarantined)",
        ),
        *frames,
        Check(
            "mask_frames_as_annotated",
            "ExpectColumnPairValuesToBeInSet",
            {"column_A": "split", "column_B": "mask_frames", "value_pairs_set": mask_states},
            mask_reason,
        ),
        *masks,
    ]


def s4_suite(validation: ValidationConfig) -> list[Check]:
    """The S4 suite (dataset-layouts.md section 4): a 5-s wav, 5 frames, masks of frame 1 (train) or all 5, category.

    A name must be unique across *all* splits, not only within one: the reader treats it as the video's
    key in the release and rejects a repeat in any split, and MS3 stores frames and videos in flat folders
    without a split level, where two rows of one name would share files.
    """
    return [
        *_avs_object_checks(
            validation,
            _S4_MASK_STATES,
            "{split} video has masks for frames [{mask_frames}]; S4 annotates frame 1 of a train video, "
            "all 5 of a val / test one",
        ),
        Check(
            "category_in_vocabulary",
            "ExpectColumnValuesToBeInSet",
            {"column": "category", "value_set": list(S4_CATEGORIES)},
            f"unknown category {{category!r}} (not one of S4's {len(S4_CATEGORIES)})",
        ),
    ]


def ms3_suite(validation: ValidationConfig) -> list[Check]:
    """The MS3 suite (dataset-layouts.md section 4): as :func:`s4_suite`, all 5 frames masked, no category."""
    return _avs_object_checks(
        validation, _MS3_MASK_STATES, "{split} video has masks for frames [{mask_frames}]; MS3 annotates all 5"
    )


# --------------------------------------------------------------------------------------------------
# Ref-AVS
# --------------------------------------------------------------------------------------------------


def ref_avs_suite(validation: ValidationConfig) -> list[Check]:
    """The Ref-AVS suite (dataset-layouts.md section 6): a 10-s wav, 10 frames, 10 binary masks, the row's fields.

    The image columns are filled by ``crab.quality.raw`` (each distinct JPEG frame and PNG mask decoded once):
    as for AVSBench (:func:`s4_suite`), plus ``num_frame_files`` (``{i}.jpg`` files in the clip's ``frames``
    folder: the release has exactly 10, one per second), ``null_mask_problems`` (masks of a null row, whose
    expression matches no object, that mark pixels) and ``empty_mask_problems`` (a row referring to an
    object whose 10 masks are all empty: the object is never marked, so the row cannot be scored by IoU).
    Masks may be 8-bit grey with values 0 / 255 (dataset-layouts 6.5) or 1-bit. Split, object and a
    non-empty expression are checked too, though the reader already rejects rows that break them, so a
    frame built another way is held to the same rules.
    """
    frames, masks = _image_checks("referred object")
    return [
        *media_checks(validation, float(REF_AVS_NUM_FRAMES), media_column="audio_path"),
        *frames,
        Check(
            "ten_frames",
            "ExpectColumnValuesToBeInSet",
            {"column": "num_frame_files", "value_set": [REF_AVS_NUM_FRAMES]},
            f"{{num_frame_files}} frame files in {{video_path}}/frames, expected {REF_AVS_NUM_FRAMES}",
        ),
        *masks,
        Check(
            "null_masks_empty",
            "ExpectColumnValuesToBeNull",
            {"column": "null_mask_problems"},
            "null row (no object matches) has non-empty masks: {null_mask_problems}",
        ),
        Check(
            "referred_object_masked",
            "ExpectColumnValuesToBeNull",
            {"column": "empty_mask_problems"},
            "the referred object {object_name!r} is never marked: {empty_mask_problems}",
        ),
        Check(
            "expression_not_empty",
            "ExpectColumnValuesToMatchRegex",
            {"column": "expression", "regex": r"\S"},
            "empty expression",
        ),
        Check(
            "split_known",
            "ExpectColumnValuesToBeInSet",
            {"column": "split", "value_set": list(REF_AVS_SPLITS)},
            f"unknown split {{split!r}} (expected one of {list(REF_AVS_SPLITS)})",
        ),
        Check(
            "object_in_vocabulary",
            "ExpectColumnValuesToBeInSet",
            {"column": "object_name", "value_set": list(REF_AVS_OBJECTS)},
            f"unknown object {{object_name!r}} (not one of Ref-AVS's {len(REF_AVS_OBJECTS)} categories)",
        ),
    ]


# --------------------------------------------------------------------------------------------------
# AVSS (AVSBench-semantic v2)
# --------------------------------------------------------------------------------------------------

#: Frames (and annotated frames) of a v2 clip (dataset-layouts 5.1).
_AVSS_NUM_FRAMES = 10
#: The names ``a_obj`` may hold: the 70 object classes (background is no sounding object).
_AVSS_OBJECTS = frozenset(AVSS_CLASSES[1:])


def derive_avss(frame: pd.DataFrame) -> pd.DataFrame:
    """Add AVSS's derived columns to a frame of v2 clips (``crab.quality.raw`` filled the image columns).

    Adds, each null when there is nothing to report: ``unknown_objects`` (``a_obj`` names, ``_``-separated,
    that are no AVSS object class) and ``unnamed_classes`` (classes a semantic map marks that ``a_obj``
    does not name; not computed when ``semantic_classes`` is null, i.e. some map is unusable, which its
    own check reports).

    Args:
        frame: columns ``sounding_object`` (``a_obj`` verbatim) and ``semantic_classes`` (``_``-joined
            class names present in the clip's semantic maps, or null).

    Returns:
        The same frame (modified in place).
    """
    named = [str(a_obj).split("_") for a_obj in frame["sounding_object"]]
    frame["unknown_objects"] = [_joined([repr(name) for name in names if name not in _AVSS_OBJECTS]) for names in named]
    frame["unnamed_classes"] = [
        _joined([repr(c) for c in classes.split("_") if c and c not in names]) if isinstance(classes, str) else None
        for names, classes in zip(named, frame["semantic_classes"], strict=True)
    ]
    return frame


def avss_suite(validation: ValidationConfig) -> list[Check]:
    """The AVSS suite (dataset-layouts.md section 5, subset v2): a 10-s wav, 10 frames, 10 semantic and 10
    colour masks that agree, and sounding objects named by ``a_obj``.

    The image columns are filled by ``crab.quality.raw`` (:func:`crab.quality.raw.inspect_avss_images`, every
    frame and mask decoded once). Masks must be what the release holds (5.4): ``labels_semantic`` 8-bit grey
    (mode ``L``) whose values are class indices (< 71), ``labels_rgb`` 8-bit RGB whose colours are palette
    colours, both the frame's size; the colour mask must be the palette colour of the semantic map pixel for
    pixel (the official loader reads the colours, Crab the indices: a disagreement means two different
    ground truths, so the clip is quarantined). Every class a semantic map marks must be named in ``a_obj``
    (the target text is built from it), and ``a_obj`` may name only AVSS object classes: the reader keeps
    unknown names with a warning only, so both are checked here.
    """
    frames, masks = _image_checks("sounding object")
    decode_and_size = [c for c in masks if c.name in ("masks_decode", "mask_size_is_frame_size")]
    num_classes = len(AVSS_CLASSES)
    return [
        *media_checks(validation, float(_AVSS_NUM_FRAMES), media_column="audio_path"),
        *frames,
        Check(
            "ten_frames",
            "ExpectColumnValuesToBeInSet",
            {"column": "num_frame_files", "value_set": [_AVSS_NUM_FRAMES]},
            f"{{num_frame_files}} frame files in {{video_path}}/frames, expected {_AVSS_NUM_FRAMES}",
        ),
        *decode_and_size,
        Check(
            "semantic_masks_grey",
            "ExpectColumnValuesToBeNull",
            {"column": "semantic_mode_problems"},
            "labels_semantic mask not 8-bit grey (L): {semantic_mode_problems}",
        ),
        Check(
            "semantic_values_are_classes",
            "ExpectColumnValuesToBeNull",
            {"column": "semantic_value_problems"},
            f"labels_semantic values that are no AVSS class index (0..{num_classes - 1}): {{semantic_value_problems}}",
        ),
        Check(
            "rgb_masks_rgb",
            "ExpectColumnValuesToBeNull",
            {"column": "rgb_mode_problems"},
            "labels_rgb mask not 8-bit RGB: {rgb_mode_problems}",
        ),
        Check(
            "rgb_colours_in_palette",
            "ExpectColumnValuesToBeNull",
            {"column": "rgb_colour_problems"},
            f"labels_rgb colours outside the {num_classes}-colour AVSS palette: {{rgb_colour_problems}}",
        ),
        Check(
            "rgb_agrees_with_semantic",
            "ExpectColumnValuesToBeNull",
            {"column": "rgb_semantic_problems"},
            "labels_rgb is not the palette colouring of labels_semantic: {rgb_semantic_problems}",
        ),
        Check(
            "masked_classes_named_in_a_obj",
            "ExpectColumnValuesToBeNull",
            {"column": "unnamed_classes"},
            "classes {unnamed_classes} are marked in labels_semantic but a_obj {sounding_object!r} does not name them",
        ),
        Check(
            "a_obj_names_are_classes",
            "ExpectColumnValuesToBeNull",
            {"column": "unknown_objects"},
            f"a_obj {{sounding_object!r}} names {{unknown_objects}}, not among the {num_classes - 1} AVSS object classes",
        ),
    ]
