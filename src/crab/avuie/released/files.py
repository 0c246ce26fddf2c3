"""The file contract of Crab's released AV-UIE annotations: where each sample list is, how paths rebase.

dataset-layouts.md section 7. Crab reads one JSON array per task and split (``*_samples.json``); the ones that
hold media paths hold the authors' absolute paths (``/group/40061/cserdu/data/<dataset root>/...``). A path
is rebased by finding the dataset root's folder component(s) in it (``music-avqa/``, ``ave/AVE_Dataset/``,
``avvp/``, ``AVS/``, ``valor/``) and joining what follows onto the local root of that dataset
(``params.datasets``); whatever comes before is ignored, so any prefix works. A path without the component, or
with ``..`` after it, does not rebase.

Where the sample lists are looked for, in order (the first file found is read):

1. ``<release>/<crab folder>/<file>`` (Crab's tree: ``ave_data/valid_train_samples.json``, ``AVS/s4_samples.json``);
2. ``<release>/<alias>-<file>`` (the Hugging Face copy ``ahsgdxhs/AVUIE`` is flat: ``ave-valid_train_samples.json``
   is confirmed, the other names are presumed to follow ``{task}-{crab file}``);
3. for the lists Crab keeps inside a dataset root (``AVS/*_samples.json``, ``valor/*_samples.json``), that local
   root.

The per-sample reasoning texts (``converted_label/{question_id}.txt`` for AVQA, ``{vid}.txt`` for AVE) are
looked for in ``<release>/<crab folder>/converted_label/`` and then in ``<dataset root>/converted_label/``
(Crab's place, and where ``avuie_build`` reads them).

Only the standard library is imported here (``crab.quality.raw`` and ``crab.avuie.build`` read the constants).
"""

from __future__ import annotations

import ast
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

__all__ = [
    "AVS_SUBSETS",
    "CRAB_PREFIX",
    "DATASET_ROOTS",
    "RELEASED_TASKS",
    "SAMPLE_LISTS",
    "SampleList",
    "TASK_SPLITS",
    "as_int",
    "as_point",
    "as_str_pair",
    "as_text",
    "find_reasoning_dir",
    "find_sample_list",
    "local_path",
    "rebase",
]

#: The authors' data root (every absolute path in the release starts with it).
CRAB_PREFIX = "/group/40061/cserdu/data/"


@dataclass(frozen=True)
class DatasetRoot:
    """One of Crab's dataset roots: its folder component(s) in the authors' paths and its ``params.datasets`` key."""

    parts: tuple[str, ...]
    datasets_key: str

    @property
    def name(self) -> str:
        return "/".join(self.parts)


#: Crab's dataset roots (dataset-layouts 7.1). Crab reads S4, MS3, AVSS and ARIG from AVSBench-semantic (``AVS/``).
DATASET_ROOTS: dict[str, DatasetRoot] = {
    "music_avqa": DatasetRoot(("music-avqa",), "music_avqa"),
    "ave": DatasetRoot(("ave", "AVE_Dataset"), "ave"),
    "llp": DatasetRoot(("avvp",), "llp"),
    "avss": DatasetRoot(("AVS",), "avss"),
    "valor": DatasetRoot(("valor",), "valor"),
}

#: The tasks the release covers -> the dataset root their media live in. Ref-AVS has no sample list: Crab reads
#: its native ``metadata.csv``, which ``avuie_build`` reads too.
RELEASED_TASKS: dict[str, str] = {
    "ave": "ave",
    "avqa": "music_avqa",
    "avvp": "llp",
    "s4": "avss",
    "ms3": "avss",
    "avss": "avss",
    "arig": "avss",
    "avcap": "valor",
}


#: The AVSBench-semantic subset (folder and ``label`` value) of each AVS task: Crab reads S4 from ``v1s/``, MS3 from
#: ``v1m/`` and every AVSS row from ``v2/``.
AVS_SUBSETS: dict[str, str] = {"s4": "v1s", "ms3": "v1m", "avss": "v2"}


@dataclass(frozen=True)
class SampleList:
    """One of Crab's sample-list files.

    Attributes:
        folder: its folder in Crab's tree (``ave_data``, ``AVS``, ...).
        name: its file name.
        split: the split of all its rows, or None when each row has a ``split`` field (AVS lists, ARIG).
        aliases: prefixes of its flat Hugging Face name ``<alias>-<name>``.
        in_dataset_root: Crab keeps it inside the task's dataset root (``AVS/``, ``valor/``).
    """

    folder: str
    name: str
    split: str | None
    aliases: tuple[str, ...] = ()
    in_dataset_root: bool = False

    @property
    def crab_path(self) -> str:
        return f"{self.folder}/{self.name}"


def _lists(
    folder: str, aliases: tuple[str, ...], *names: tuple[str, str | None], in_root: bool = False
) -> tuple[SampleList, ...]:
    return tuple(SampleList(folder, name, split, aliases, in_root) for name, split in names)


#: Each task's sample lists (dataset-layouts 7.2).
SAMPLE_LISTS: dict[str, tuple[SampleList, ...]] = {
    "avqa": _lists("music_avqa_data", ("avqa", "music_avqa"), ("valid_train_samples.json", "train"),
                   ("test_samples.json", "test")),
    "ave": _lists("ave_data", ("ave",), ("valid_train_samples.json", "train"), ("test_samples.json", "test")),
    "avvp": _lists("avvp_data", ("avvp",), ("train_samples.json", "train"), ("test_samples.json", "test")),
    "s4": _lists("AVS", ("s4",), ("s4_samples.json", None), in_root=True),
    "ms3": _lists("AVS", ("ms3",), ("ms3_samples.json", None), in_root=True),
    "avss": _lists("AVS", ("avss",), ("avss_samples.json", None), in_root=True),
    "arig": _lists("AVS", ("arig",), ("v1s_grounding_samples.json", None), in_root=True),
    "avcap": _lists("valor", ("avcap", "valor"), ("train_samples.json", "train"), ("val_samples.json", "val"),
                    in_root=True),
}  # fmt: skip

#: The split files ``avuie_build`` writes per task (empty files included), so an import has the same layout.
TASK_SPLITS: dict[str, tuple[str, ...]] = {task: ("train", "val", "test") for task in RELEASED_TASKS} | {
    "avcap": ("train", "val")
}

#: Crab's folder names -> the native layouts' names, tried when Crab's folder is absent (the readers do the same).
_FOLDER_ALIASES: dict[str, tuple[str, ...]] = {"video_data": ("video",), "llp_videos": ("LLP_dataset", "video")}


def find_sample_list(release: Path, sample_list: SampleList, dataset_root: Path) -> tuple[Path | None, list[Path]]:
    """The first existing copy of a sample list (module docstring), and every place that was tried."""
    tried = [release / sample_list.folder / sample_list.name]
    tried += [release / f"{alias}-{sample_list.name}" for alias in sample_list.aliases]
    if sample_list.in_dataset_root:
        tried.append(dataset_root / sample_list.name)
    return next((path for path in tried if path.is_file()), None), tried


def find_reasoning_dir(release: Path, sample_list: SampleList, dataset_root: Path) -> Path | None:
    """The ``converted_label/`` folder of a task's reasoning texts (module docstring), or None."""
    for path in (release / sample_list.folder / "converted_label", dataset_root / "converted_label"):
        if path.is_dir():
            return path
    return None


def local_path(root: Path, parts: Sequence[str]) -> Path:
    """``root/parts``, with Crab's folder name swapped for the native one when only the native folder exists."""
    path = root.joinpath(*parts)
    if parts and parts[0] in _FOLDER_ALIASES and not (root / parts[0]).is_dir():
        native = root.joinpath(*_FOLDER_ALIASES[parts[0]])
        if native.is_dir():
            return native.joinpath(*parts[1:])
    return path


def rebase(text: str, dataset: str, root: Path) -> tuple[Path | None, str | None]:
    """Rebase one of the authors' paths onto the local root of ``dataset`` (a :data:`DATASET_ROOTS` key).

    Returns:
        ``(local path, None)``, or ``(None, reason)`` when the path does not contain the dataset's root folder, ends
        there, or climbs out of it with ``..``.
    """
    spec = DATASET_ROOTS[dataset]
    normalised = text.replace("\\", "/")
    if normalised.startswith(CRAB_PREFIX):  # the authors' root: the dataset folder comes right after it
        normalised = normalised[len(CRAB_PREFIX) :]
    parts = PurePosixPath(normalised).parts
    width = len(spec.parts)
    start = next((i + width for i in range(len(parts) - width + 1) if parts[i : i + width] == spec.parts), None)
    if start is None:
        return None, f"path {text!r} is not under a {spec.name}/ folder"
    rest = parts[start:]
    if not rest or any(part in ("..", ".", "/") for part in rest):
        return None, f"path {text!r} does not name a file under {spec.name}/"
    return local_path(root, rest), None


# --------------------------------------------------------------------------------------------------
# Values: the Hugging Face copy stores every value as a string ("s_min": "0")
# --------------------------------------------------------------------------------------------------


def as_text(value: Any, name: str) -> tuple[str | None, str | None]:
    """A non-empty string field; ``(value, None)`` or ``(None, reason)``."""
    if not isinstance(value, str):
        return None, f"{name}: expected a string, got {type(value).__name__} {value!r}"
    if not value.strip():
        return None, f"{name}: empty string"
    return value, None


def as_int(value: Any, name: str) -> tuple[int | None, str | None]:
    """A whole number given as a JSON number or a string (``3``, ``"3"``, ``3.0``, ``"3.0"``)."""
    if isinstance(value, bool):
        return None, f"{name}: expected a whole number, got {value!r}"
    if isinstance(value, str):
        try:
            value = float(value.strip()) if value.strip() else None
        except ValueError:
            return None, f"{name}: expected a whole number, got {value!r}"
    if isinstance(value, int):
        return value, None
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value), None
    return None, f"{name}: expected a whole number, got {type(value).__name__} {value!r}"


def _literal(value: Any) -> Any:
    """A list given as JSON or as the string of a JSON / Python list literal (``"['Audio', 'Counting']"``)."""
    if not isinstance(value, str):
        return value
    for parse in (json.loads, ast.literal_eval):
        try:
            return parse(value)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
    return value


def as_str_pair(value: Any, name: str) -> tuple[tuple[str, str] | None, str | None]:
    """A list of two strings (MUSIC-AVQA's ``type``), given as a list or as the string of one."""
    parsed = _literal(value)
    if not (isinstance(parsed, (list, tuple)) and len(parsed) == 2 and all(isinstance(v, str) for v in parsed)):
        return None, f"{name}: expected a list of 2 strings, got {value!r}"
    return (parsed[0], parsed[1]), None


def as_point(value: Any, name: str) -> tuple[tuple[int, int] | None, str | None]:
    """An ``[x, y]`` point of whole numbers (ARIG's ``top_left`` / ``bottom_right``), numbers or strings."""
    parsed = _literal(value)
    if not (isinstance(parsed, (list, tuple)) and len(parsed) == 2):
        return None, f"{name}: expected [x, y], got {value!r}"
    coords = [as_int(v, name)[0] for v in parsed]
    if any(c is None for c in coords):
        return None, f"{name}: expected [x, y] whole numbers, got {value!r}"
    return (coords[0], coords[1]), None  # type: ignore[return-value]
