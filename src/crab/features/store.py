"""The feature store: frozen-encoder features in sharded safetensors files with a JSON index.

Crab runs CLIP and BEATs inside every training step (crab-reference section 7, "fbank + BEATs + CLIP
recomputed every epoch"); we run them once in the ``features`` stage (DESIGN.md section 3) and training
and evaluation read this store, never raw media. Layout of ``features.out_dir``::

    shard-00000.safetensors   tensors named by feature key; metadata {"crab": {"fingerprint", "inputs", "keys"}}
    shard-00001.safetensors
    ...
    index.json                written last: spec, fingerprint, shard names, key -> shard / shape / dtype

Feature keys name *media*, not records, so a clip shared by several records (AVQA's questions on one
video) is stored once:

* ``"video/<path>"``: ``(T, P, D)`` CLIP patch tokens of the ``T`` sampled frames (CLS dropped); the path is
  a clip file, or a frame folder whose frames are all taken (AVSBench);
* ``"image/<path>"``: ``(P, D)`` CLIP patch tokens of one image (ARIG's frame);
* ``"levels/<path>"``: ``(T, L, P, D)`` the mask decoder's L CLIP levels of the same frames, for the
  segmentation tasks' videos only;
* ``"audio/<scheme>/<path>"``: ``(C, N, D)`` BEATs last-layer tokens of the ``C`` audio clips, where the
  scheme (``"segments10"``, ``"windows10x2.0"``) comes from the task's audio cutting and the ``media``
  params, so a params change gives new keys instead of silently reusing stale features.

Why it is built this way: a shard is the unit of resumption. It is written to a temp name in the same
folder and renamed (``os.replace``), so a file named ``shard-*.safetensors`` is always complete; its
metadata carries its key list, the *fingerprint* (a hash of everything that defines the features:
encoder weights, frames, image size, CLIP layer, dtype, ...) and a digest of its media files' content, so
a rerun can tell a finished shard from a stale one by reading a few header bytes. The index is written
last, so a folder without ``index.json`` is an unfinished run. Nothing in a file carries a timestamp: the
same inputs give the same bytes. Readers use ``safe_open`` (memory-mapped, one tensor read per lookup),
which gives cheap random access from DataLoader workers.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor

from crab.config import MediaConfig, Params
from crab.errors import CrabError
from crab.tasks import TASKS, AudioCutting, Task

__all__ = [
    "FORMAT_VERSION",
    "INDEX_NAME",
    "FeatureStore",
    "FeatureStoreError",
    "AudioCut",
    "StoreWriter",
    "audio_cut",
    "audio_key",
    "audio_scheme",
    "fingerprint_of",
    "image_key",
    "levels_key",
    "levels_source",
    "shard_name",
    "video_key",
]

#: Bumped whenever the meaning of stored tensors or of the index changes.
FORMAT_VERSION = 1
INDEX_NAME = "index.json"
_META_KEY = "crab"  # one metadata entry holding sorted JSON, so the header bytes are deterministic
_TMP_MARK = ".tmp-"


class FeatureStoreError(CrabError):
    """A feature store that is missing, unfinished, inconsistent, or lacks a requested key."""


# --------------------------------------------------------------------------------------------------
# Keys
# --------------------------------------------------------------------------------------------------


def _field(record: Any, name: str) -> Any:
    """``record.name`` for an ``AvuieRecord``, ``record[name]`` for a plain JSON dict."""
    return record[name] if isinstance(record, Mapping) else getattr(record, name)


class AudioCut(NamedTuple):
    """How one task's audio is cut into encoder clips (``kind`` from ``crab.tasks.TASKS[task].audio_cutting``).

    Attributes:
        kind: ``"segments"`` (``count`` equal consecutive pieces) or ``"windows"`` (``count`` windows of
            ``window_s`` seconds spread over the clip).
        count: clips per item.
        window_s: window length (``"windows"`` only).
    """

    kind: AudioCutting
    count: int
    window_s: float | None = None

    @property
    def scheme(self) -> str:
        """The key part: ``"segments<N>"`` or ``"windows<N>x<seconds>"``."""
        return f"segments{self.count}" if self.kind == "segments" else f"windows{self.count}x{self.window_s}"


def audio_cut(task: str, media: MediaConfig) -> AudioCut:
    """The audio cut of a task under the given media params (the one place that decides it).

    Args:
        task: canonical task name (``crab.tasks.Task``).
        media: the ``media`` params section (a task's own segment count, AVSBench's 5, takes precedence).

    Raises:
        ValueError: the task is not in the task table.
    """
    spec = TASKS[Task(task)]
    if spec.audio_cutting == "segments":
        return AudioCut("segments", spec.num_audio_segments or media.num_audio_segments)
    return AudioCut("windows", media.avqa_num_windows, media.avqa_window_s)


def audio_scheme(task: str, media: MediaConfig) -> str:
    """``audio_cut(task, media).scheme``: ``"segments<N>"`` (AVE, AVCAP, AVSBench) or ``"windows<N>x<s>"`` (AVQA)."""
    return audio_cut(task, media).scheme


def video_key(record: Any) -> str:
    """Feature key of a record's video: ``"video/<media.video>"``.

    Args:
        record: an ``AvuieRecord`` or its JSON dict.
    """
    return f"video/{_field(record, 'media')['video']}"


def image_key(record: Any) -> str:
    """Feature key of a record's single image (ARIG's frame): ``"image/<media.image>"``.

    Args:
        record: an ``AvuieRecord`` or its JSON dict.
    """
    return f"image/{_field(record, 'media')['image']}"


def levels_key(record: Any) -> str:
    """Feature key of the mask decoder's CLIP levels of a record's frames: ``"levels/<media.video>"``, or
    ``"levels/<media.image>"`` for an image (the segmentation pre-training's one-frame clip).

    Args:
        record: an ``AvuieRecord`` or its JSON dict (of a segmentation task, ``TaskSpec.masks``).
    """
    return f"levels/{levels_source(record)}"


def levels_source(record: Any) -> str:
    """The media whose frames give a segmentation record's levels: its video (frame folder), or its image."""
    media = _field(record, "media")
    return media["video"] if "video" in media else media["image"]


def audio_key(record: Any, params: Params) -> str:
    """Feature key of a record's audio: ``"audio/<scheme>/<media.audio>"`` (scheme from :func:`audio_scheme`).

    Args:
        record: an ``AvuieRecord`` or its JSON dict.
        params: the params the features were extracted with (reads ``media``).
    """
    return f"audio/{audio_scheme(_field(record, 'task'), params.media)}/{_field(record, 'media')['audio']}"


def shard_name(index: int) -> str:
    """``shard-00007.safetensors`` for shard 7."""
    return f"shard-{index:05d}.safetensors"


def fingerprint_of(spec: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the canonical JSON of a feature spec (with the format version folded in)."""
    text = json.dumps({"format": FORMAT_VERSION, **spec}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------------


def _atomic_target(path: Path) -> Path:
    return path.with_name(f".{path.name}{_TMP_MARK}{os.getpid()}")


def _fsync(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def _shard_meta(path: Path) -> dict[str, Any] | None:
    """The ``crab`` metadata of a shard, or None if the file is absent or not a readable shard."""
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = json.loads((fh.metadata() or {})[_META_KEY])
            names = set(fh.keys())
    except (OSError, KeyError, ValueError, TypeError, SafetensorError):  # absent, foreign or corrupt file
        return None
    if not isinstance(meta, dict) or set(meta.get("keys", ())) != names:
        return None
    return meta


class StoreWriter:
    """Writes one feature store folder: atomic shards, resumption checks, the index last.

    Args:
        out_dir: the store folder (created if missing).
        spec: the JSON-able parameters that define the features (stored in the index).

    Usage: :meth:`begin` (drops temp files of a killed run and the old index), then per shard either
    :meth:`is_done` or :meth:`write`, then :meth:`finish` with the full shard plan.
    """

    def __init__(self, out_dir: str | Path, spec: Mapping[str, Any]) -> None:
        self.out_dir = Path(out_dir)
        self.spec = dict(spec)
        self.fingerprint = fingerprint_of(self.spec)

    def begin(self) -> None:
        """Create the folder, remove leftovers of an interrupted write and the (now stale) index."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for leftover in self.out_dir.glob(f".*{_TMP_MARK}*"):
            leftover.unlink(missing_ok=True)
        (self.out_dir / INDEX_NAME).unlink(missing_ok=True)

    def is_done(self, index: int, keys: Sequence[str], inputs: str = "") -> bool:
        """Whether shard ``index`` already holds exactly ``keys``, computed under this fingerprint from ``inputs``.

        Args:
            index: shard number.
            keys: the shard's planned feature keys, sorted.
            inputs: a digest of the shard's media content (so an edited clip is never served stale).
        """
        meta = _shard_meta(self.out_dir / shard_name(index))
        return meta is not None and meta == {"fingerprint": self.fingerprint, "inputs": inputs, "keys": list(keys)}

    def write(self, index: int, tensors: Mapping[str, Tensor], inputs: str = "") -> Path:
        """Write shard ``index`` atomically (temp file in the same folder, fsync, ``os.replace``).

        Args:
            index: shard number.
            tensors: feature key -> tensor; made contiguous (safetensors needs it).
            inputs: the digest of the shard's media content (see :meth:`is_done`).

        Returns:
            The shard path.
        """
        path = self.out_dir / shard_name(index)
        keys = sorted(tensors)
        meta = json.dumps({"fingerprint": self.fingerprint, "inputs": inputs, "keys": keys}, sort_keys=True)
        tmp = _atomic_target(path)
        try:
            save_file({k: tensors[k].contiguous() for k in keys}, str(tmp), metadata={_META_KEY: meta})
            _fsync(tmp)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path

    def finish(
        self,
        shard_keys: Sequence[Sequence[str]],
        shard_inputs: Sequence[str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Check every planned shard, drop shard files beyond the plan, and write ``index.json`` atomically.

        Args:
            shard_keys: the plan: keys of shard 0, 1, ...; every shard must be done.
            shard_inputs: the media digest of each shard (default: ``""`` for all).
            extra: JSON-able facts for readers that are not part of the fingerprint (stored under ``info``).

        Returns:
            The index (also written to ``<out_dir>/index.json``).

        Raises:
            FeatureStoreError: a planned shard is missing or stale.
        """
        items: dict[str, Any] = {}
        inputs = list(shard_inputs) if shard_inputs is not None else [""] * len(shard_keys)
        for index, keys in enumerate(shard_keys):
            if not self.is_done(index, keys, inputs[index]):
                raise FeatureStoreError(f"{self.out_dir / shard_name(index)}: missing or stale shard")
            with safe_open(str(self.out_dir / shard_name(index)), framework="pt") as fh:
                for key in keys:
                    view = fh.get_slice(key)
                    items[key] = {"shard": index, "shape": list(view.get_shape()), "dtype": view.get_dtype()}
        for path in self.out_dir.glob("shard-*.safetensors"):
            stem = path.name.removeprefix("shard-").removesuffix(".safetensors")
            if not stem.isdigit() or int(stem) >= len(shard_keys):
                path.unlink()  # from an earlier, larger plan
        index_doc = {
            "format": FORMAT_VERSION,
            "fingerprint": self.fingerprint,
            "spec": self.spec,
            "shards": [shard_name(i) for i in range(len(shard_keys))],
            "items": items,
            "info": dict(extra or {}),
        }
        _write_json_atomic(self.out_dir / INDEX_NAME, index_doc)
        return index_doc


def _write_json_atomic(path: Path, payload: Any) -> None:
    tmp = _atomic_target(path)  # a plain open: the umask decides the mode (mkstemp would force 0600)
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(payload, fh, indent=1, sort_keys=True)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------------


class FeatureStore:
    """Random-access reader of a finished feature store (training and evaluation read only this).

    Shards are opened lazily with ``safe_open`` and kept open; each lookup reads one tensor from the
    memory map. The reader pickles without its open handles, so it can go to DataLoader workers.

    Args:
        out_dir: the store folder (``features.out_dir``).

    Raises:
        FeatureStoreError: no ``index.json`` (the ``features`` stage has not finished) or an index of
            another format version.
    """

    def __init__(self, out_dir: str | Path) -> None:
        self.out_dir = Path(out_dir)
        index_path = self.out_dir / INDEX_NAME
        try:
            index = json.loads(index_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise FeatureStoreError(f"{index_path}: not found; run `crab features` (or it did not finish)") from None
        except json.JSONDecodeError as err:
            raise FeatureStoreError(f"{index_path}: not valid JSON ({err.msg})") from None
        if not isinstance(index, dict) or index.get("format") != FORMAT_VERSION:
            raise FeatureStoreError(f"{index_path}: not a feature index of format {FORMAT_VERSION}")
        self.fingerprint: str = index["fingerprint"]
        self.spec: dict[str, Any] = index["spec"]
        self._shards: list[str] = index["shards"]
        self._items: dict[str, dict[str, Any]] = index["items"]
        self._handles: dict[int, Any] = {}

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))

    def has(self, key: str) -> bool:
        """Whether the store holds ``key``."""
        return key in self._items

    def keys(self) -> list[str]:
        """All feature keys, sorted."""
        return sorted(self._items)

    def shape(self, key: str) -> tuple[int, ...]:
        """The stored shape of ``key`` (from the index; reads no tensor data)."""
        return tuple(self._entry(key)["shape"])

    def get(self, key: str) -> Tensor:
        """The tensor stored under ``key``, in the stored dtype (a fresh CPU tensor)."""
        entry = self._entry(key)
        return self._handle(entry["shard"]).get_tensor(key)

    def video(self, key: str) -> Tensor:
        """CLIP patch tokens of a video key (:func:`video_key`): ``(T, P, D)``."""
        if not key.startswith("video/"):
            raise ValueError(f"not a video key: {key!r}")
        return self.get(key)

    def image(self, key: str) -> Tensor:
        """CLIP patch tokens of an image key (:func:`image_key`): ``(P, D)``."""
        if not key.startswith("image/"):
            raise ValueError(f"not an image key: {key!r}")
        return self.get(key)

    def levels(self, key: str) -> Tensor:
        """The mask decoder's CLIP levels of a levels key (:func:`levels_key`): ``(T, L, P, D)``."""
        if not key.startswith("levels/"):
            raise ValueError(f"not a levels key: {key!r}")
        return self.get(key)

    def audio(self, key: str) -> Tensor:
        """BEATs tokens of an audio key (:func:`audio_key`): ``(C, N, D)``, one row per clip."""
        if not key.startswith("audio/"):
            raise ValueError(f"not an audio key: {key!r}")
        return self.get(key)

    def close(self) -> None:
        """Drop the open shard handles (they are reopened on demand)."""
        self._handles.clear()

    def __enter__(self) -> FeatureStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_handles"] = {}  # safe_open handles cannot be pickled; workers reopen them
        return state

    def _entry(self, key: str) -> dict[str, Any]:
        try:
            return self._items[key]
        except KeyError:
            raise FeatureStoreError(
                f"{self.out_dir}: no features for {key!r}; rerun `crab features` for the current AV-UIE and params"
            ) from None

    def _handle(self, shard: int) -> Any:
        handle = self._handles.get(shard)
        if handle is None:
            path = self.out_dir / self._shards[shard]
            try:
                handle = safe_open(str(path), framework="pt", device="cpu")
            except (OSError, SafetensorError) as err:
                raise FeatureStoreError(f"{path}: cannot open shard ({err})") from None
            meta = json.loads((handle.metadata() or {}).get(_META_KEY, "{}"))
            if meta.get("fingerprint") != self.fingerprint:
                raise FeatureStoreError(f"{path}: shard fingerprint differs from the index; rerun `crab features`")
            self._handles[shard] = handle
        return handle
