"""Reader of LLP (Look, Listen and Parse; Tian et al., ECCV'20), the dataset of AVVP (audio-visual video parsing).

Layout (dataset-layouts.md section 2, from YapengTian/AVVP-ECCV20 ``data/``, ``dataloader.py``,
``main_avvp.py``)::

    llp/                                 # the repo's data/ folder
    ├── AVVP_train.csv  AVVP_val_pd.csv  AVVP_test_pd.csv    # weak, video-level labels
    ├── AVVP_eval_audio.csv  AVVP_eval_visual.csv            # dense events of the val + test videos
    ├── AVVP_train_dense_audio.csv  AVVP_train_dense_visual.csv  # AV-Synth only: dense events of train
    └── LLP_dataset/video/{ytid}.mp4     # Crab's tree calls the folder llp_videos/ (used if video/ is absent)

Format facts (2.2, 2.3, verified on the files):

- every CSV is **TAB-separated** with a header: weak files ``filename<TAB>event_labels``, dense files
  ``filename<TAB>onset<TAB>offset<TAB>event_labels``; a header that differs (a comma-separated re-export)
  makes the whole file unusable, with an error saying so;
- ``filename`` is ``{ytid}_{start}_{end}``; the id is taken with ``rsplit`` from the right (ids may hold
  ``_`` and start with ``-``), which equals the official ``filename[:11]`` for YouTube ids;
- weak ``event_labels`` are class names joined by ``,`` (no spaces); dense rows hold one event each,
  ``[onset, offset)`` in whole seconds on the 10 x 1 s grid (official: ``GT[cls, onset:offset] = 1``);
  the audio-visual ground truth is audio AND visual per segment (no file; :func:`event_grid` builds the
  matrices);
- quirks: three audio rows are empty spans (one ``onset = 10``, two ``offset = 0``). They add nothing to
  the ground truth, so such a row is rejected *alone* and its video kept. Any other bad dense row
  (unknown class, time off the grid, not a number) rejects its *video*: the video's ground truth would
  otherwise be silently incomplete.

**AV-Synth extension.** The real release annotates train only weakly. AV-Synth (:mod:`crab.synth.llp`)
knows the exact events of its train clips too and writes them in two extra files with the eval files'
format, :data:`LLP_TRAIN_DENSE_FILES`. When both are present, train records carry dense events exactly as
val / test records do (same checks, same rejections; a dense row of a video that is not in the train file
is rejected); when both are absent (the real release), train events are ``None``; one without the other
is an error.

Like the AVVP metric, the reader checks classes against :data:`LLP_CLASSES` and times against the grid,
and (``check_media``) that the clip exists; decoding is the quality gate's job.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from crab.datasets.tables import file_name_problem, missing_media, read_csv_rows
from crab.datasets.records import ReadResult, Rejection, Split
from crab.datasets.vocab_seg import LLP_CLASSES, LLP_NUM_SEGMENTS
from crab.errors import DataError

__all__ = [
    "LLP_EVAL_FILES",
    "LLP_SPLIT_FILES",
    "LLP_TRAIN_DENSE_FILES",
    "LlpEvent",
    "LlpRecord",
    "event_grid",
    "read_llp",
]

logger = logging.getLogger(__name__)

#: Split name -> weak-label file under the dataset root.
LLP_SPLIT_FILES: dict[str, str] = {"train": "AVVP_train.csv", "val": "AVVP_val_pd.csv", "test": "AVVP_test_pd.csv"}
#: Modality -> dense-event file (val and test videos together).
LLP_EVAL_FILES: dict[str, str] = {"audio": "AVVP_eval_audio.csv", "visual": "AVVP_eval_visual.csv"}
#: Modality -> dense-event file of the train videos: an AV-Synth extension, absent from the real release.
LLP_TRAIN_DENSE_FILES: dict[str, str] = {
    "audio": "AVVP_train_dense_audio.csv",
    "visual": "AVVP_train_dense_visual.csv",
}

_WEAK_HEADER = ["filename", "event_labels"]
_DENSE_HEADER = ["filename", "onset", "offset", "event_labels"]
_FILENAME = re.compile(r"^(?P<video_id>.+)_(?P<start>\d+)_(?P<end>\d+)$", re.ASCII)
_CLASS_SET = frozenset(LLP_CLASSES)


@dataclass(frozen=True)
class LlpEvent:
    """One dense event: class ``label`` during segments ``[onset_s, offset_s)``; ``source`` = its CSV line."""

    label: str
    onset_s: int
    offset_s: int
    source: str


@dataclass(frozen=True)
class LlpRecord:
    """One LLP video: weak labels, and (val / test, or AV-Synth train) its dense audio and visual events.

    Attributes:
        item_id: ``filename`` (``{ytid}_{start}_{end}``), unique per split.
        video_id: the YouTube id, the media file stem.
        labels: the weak video-level classes in file order.
        audio_events: dense audio events in file order; None for a train split without dense files (the
            real release annotates train only weakly).
        visual_events: dense visual events; None when ``audio_events`` is, else possibly empty.
        split: ``"train"``, ``"val"`` or ``"test"``.
        video_path: the 10-s clip.
        source: ``"<weak csv>:<line>"``.
    """

    item_id: str
    video_id: str
    labels: tuple[str, ...]
    audio_events: tuple[LlpEvent, ...] | None
    visual_events: tuple[LlpEvent, ...] | None
    split: Split
    video_path: Path
    source: str


def event_grid(events: Iterable[LlpEvent]) -> np.ndarray:
    """The official ground-truth matrix of some events: ``grid[class, onset:offset] = 1``.

    Returns:
        ``(25, 10)`` uint8, rows in :data:`LLP_CLASSES` order, columns the 1-s segments. The
        audio-visual matrix is ``event_grid(audio) & event_grid(visual)``.
    """
    grid = np.zeros((len(LLP_CLASSES), LLP_NUM_SEGMENTS), dtype=np.uint8)  # (C, T)
    for event in events:
        grid[LLP_CLASSES.index(event.label), event.onset_s : event.offset_s] = 1
    return grid


def _read_table(path: Path, header: list[str]) -> list[tuple[int, list[str]]]:
    """The body rows of a TAB-separated LLP file whose header must be ``header``."""
    rows = read_csv_rows(path, delimiter="\t")
    found = [field.strip() for field in rows[0][1]] if rows else []
    if found != header:
        hint = " (the LLP files are TAB-separated)" if len(found) == 1 and "," in found[0] else ""
        raise DataError(path, f"expected the header {'<TAB>'.join(header)!r}, got {'<TAB>'.join(found)!r}{hint}")
    return rows[1:]


def _video_id(filename: str) -> tuple[str, str]:
    """``(video_id, "")`` for a well-formed ``{ytid}_{start}_{end}``, else ``("", reason)``."""
    match = _FILENAME.match(filename)
    if match is None:
        return "", f"filename {filename!r} is not {{ytid}}_{{start}}_{{end}}"
    video_id = match["video_id"]
    return video_id, file_name_problem("video id", video_id)


def _class_problem(name: str) -> str:
    return "" if name in _CLASS_SET else f"unknown class {name!r} (not one of LLP's {len(LLP_CLASSES)})"


def _parse_weak(fields: list[str]) -> tuple[str, tuple[str, ...], str]:
    """``(video_id, labels, "")`` or ``(_, _, reason)`` for one weak-label row."""
    if len(fields) != len(_WEAK_HEADER):
        return "", (), f"expected {len(_WEAK_HEADER)} TAB-separated fields (filename, event_labels), got {len(fields)}"
    video_id, problem = _video_id(fields[0])
    if problem:
        return "", (), problem
    labels = tuple(label.strip() for label in fields[1].split(","))
    if labels == ("",):
        return "", (), "empty event_labels"
    for label in labels:
        problem = _class_problem(label)
        if problem:
            return "", (), problem
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        return "", (), f"class {repeated[0]!r} listed twice"
    return video_id, labels, ""


def _parse_dense(fields: list[str], source: str) -> tuple[LlpEvent | None, str]:
    """``(event, "")`` or ``(None, reason)`` for one dense row."""
    if len(fields) != len(_DENSE_HEADER):
        return (
            None,
            f"expected {len(_DENSE_HEADER)} TAB-separated fields ({', '.join(_DENSE_HEADER)}), got {len(fields)}",
        )
    _, onset_text, offset_text, label = fields
    times: list[int] = []
    for name, text in (("onset", onset_text), ("offset", offset_text)):
        try:
            value = int(text)
        except ValueError:
            return None, f"{name} {text!r} is not a whole number of seconds"
        if not 0 <= value <= LLP_NUM_SEGMENTS:
            return None, f"{name} {value} is off the 0..{LLP_NUM_SEGMENTS} s grid"
        times.append(value)
    problem = _class_problem(label)
    if problem:
        return None, problem
    return LlpEvent(label=label, onset_s=times[0], offset_s=times[1], source=source), ""


def _filenames(path: Path) -> set[str]:
    """The ``filename`` column of a weak-label file (empty if the file is absent)."""
    if not path.is_file():
        return set()
    return {fields[0].strip() for _, fields in _read_table(path, _WEAK_HEADER)}


def _dense_files(root: Path, split: Split) -> dict[str, Path]:
    """Modality -> dense file of ``split``; ``{}`` for a train split without AV-Synth's dense files.

    Raises:
        DataError: only one of the two train dense files exists (a half-written tree).
    """
    if split != "train":
        return {modality: root / name for modality, name in LLP_EVAL_FILES.items()}
    paths = {modality: root / name for modality, name in LLP_TRAIN_DENSE_FILES.items()}
    present = [path for path in paths.values() if path.is_file()]
    if present and len(present) != len(paths):
        (missing,) = (path for path in paths.values() if not path.is_file())
        raise DataError(missing, f"file not found, but {present[0].name} is there (AV-Synth writes both)")
    return paths if present else {}


def read_llp(root: Path, split: Split, check_media: bool = True) -> ReadResult[LlpRecord]:
    """Read one LLP split: weak labels, and the dense events joined by ``filename``.

    Dense events come from the eval files for val / test, and for train from AV-Synth's
    :data:`LLP_TRAIN_DENSE_FILES` when they exist (the real release has none: train events are ``None``).

    Args:
        root: the folder holding the ``AVVP_*.csv`` files and ``LLP_dataset/``.
        split: ``"train"``, ``"val"`` or ``"test"``.
        check_media: reject videos whose clip is not a file.

    Returns:
        One :class:`LlpRecord` per usable video and one :class:`Rejection` (dataset ``"llp"``) per
        unusable weak row (wrong field count, malformed filename, empty / unknown / repeated class,
        duplicate filename, missing clip), per video made unusable by its dense rows (``source`` is the
        weak row, the reason names the dense row), per empty-span dense row (``source`` is that row), and,
        when reading ``"test"``, per dense row whose video is in neither the val nor the test file (when
        reading ``"train"``, per train dense row whose video is not in the train file).

    Raises:
        ValueError: unknown split.
        DataError: a needed file is missing (including one train dense file without the other), is not
            UTF-8, or has another header.
    """
    if split not in LLP_SPLIT_FILES:
        raise ValueError(f"unknown LLP split {split!r}; expected one of {sorted(LLP_SPLIT_FILES)}")
    root = Path(root)
    path = root / LLP_SPLIT_FILES[split]
    video_dir = root / "LLP_dataset" / "video"
    if not video_dir.is_dir() and (root / "llp_videos").is_dir():
        video_dir = root / "llp_videos"

    result: ReadResult[LlpRecord] = ReadResult()
    weak: dict[str, tuple[str, tuple[str, ...], str]] = {}  # filename -> (video_id, labels, source) of good rows
    first_line: dict[str, int] = {}
    for lineno, fields in _read_table(path, _WEAK_HEADER):
        source = f"{path}:{lineno}"
        fields = [field.strip() for field in fields]
        filename = fields[0]
        video_id, labels, problem = _parse_weak(fields)
        if not problem and filename in first_line:
            problem = f"duplicate filename (first at line {first_line[filename]})"
        first_line.setdefault(filename, lineno)
        if problem:
            result.rejected.append(Rejection("llp", filename, source, problem))
        else:
            weak[filename] = (video_id, labels, source)

    events: dict[str, dict[str, list[LlpEvent]]] = {name: {"audio": [], "visual": []} for name in weak}
    broken: dict[str, list[str]] = {}  # filename -> reasons from its dense rows
    dense_files = _dense_files(root, split)
    # Videos a dense row may belong to besides this split's: val and test share the eval files, so a val
    # read skips the test rows silently (None) and a test read reports the rows of neither; the train
    # files hold train videos only.
    elsewhere: set[str] | None = None
    orphan = ""
    if split == "test":
        elsewhere = _filenames(root / LLP_SPLIT_FILES["val"])
        orphan = f"is in neither {LLP_SPLIT_FILES['val']} nor {path.name}"
    elif split == "train":
        elsewhere, orphan = set(), f"is not in {path.name}"
    for modality, dense_path in dense_files.items():
        for lineno, fields in _read_table(dense_path, _DENSE_HEADER):
            source = f"{dense_path}:{lineno}"
            fields = [field.strip() for field in fields]
            filename = fields[0]
            if filename not in first_line:  # a video of the other eval split, or of none
                if elsewhere is not None and filename not in elsewhere:
                    result.rejected.append(Rejection("llp", filename, source, f"video {filename!r} {orphan}"))
                continue
            event, problem = _parse_dense(fields, source)
            if event is None:
                broken.setdefault(filename, []).append(f"{source}: {problem}")
            elif event.onset_s >= event.offset_s:
                reason = f"empty span: onset {event.onset_s} >= offset {event.offset_s} (adds nothing; row ignored)"
                result.rejected.append(Rejection("llp", filename, source, reason))
            elif filename in events:
                events[filename][modality].append(event)

    for filename, (video_id, labels, source) in weak.items():
        video_path = video_dir / f"{video_id}.mp4"
        problem = "; ".join(broken.get(filename, [])) or (missing_media([video_path]) if check_media else "")
        if problem:
            result.rejected.append(Rejection("llp", filename, source, problem))
            continue
        dense = events[filename]
        result.records.append(
            LlpRecord(
                item_id=filename,
                video_id=video_id,
                labels=labels,
                audio_events=tuple(dense["audio"]) if dense_files else None,
                visual_events=tuple(dense["visual"]) if dense_files else None,
                split=split,
                video_path=video_path,
                source=source,
            )
        )
    logger.info("LLP %s: %d videos read, %d rejected (%s)", split, len(result.records), len(result.rejected), path)
    return result
