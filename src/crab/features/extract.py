"""The ``features`` stage: frozen CLIP and BEATs run once over every clip that AV-UIE references.

DESIGN.md section 3 ("frozen encoders run once over all media; sharded, resumable, atomic") and
crab-reference sections 1.2 and 1.4, which say what the encoders see:

* **video**: ``media.num_frames`` frames sampled with Crab's uniform indices (from a frame folder,
  AVSBench's, all its frames in the order of their numbers), resized straight to the processor's crop
  size (aspect ratio ignored, as decord does for Crab), normalised by the
  ``CLIPImageProcessor``; ``CLIPVisionModel(output_hidden_states=True).hidden_states[feature_layer]``
  with the CLS token dropped: raw block outputs, no post-layernorm -> ``(T, P, D)`` per clip;
* **levels** (segmentation tasks only, ``TaskSpec.masks``): the same frames at the mask decoder's CLIP
  layers (manifest ``vision.mask_feature_layers``: tiny 1, 2; paper 14, 22) -> ``(T, L, P, D)`` per clip;
* **audio**: 16 kHz mono, cut per task (:func:`crab.features.store.audio_cut`: AVE / AVCAP into
  ``media.num_audio_segments`` equal segments, AVSBench into 5, one per frame, AVQA into
  ``media.avqa_num_windows`` windows of ``media.avqa_window_s`` s), Kaldi fbank of each clip, BEATs' last
  layer -> ``(C, N, D)`` per clip.

Inputs are all AV-UIE splits of ``avuie.tasks`` minus the records ``validate_avuie`` quarantined. Media
are deduplicated into feature keys (:mod:`crab.features.store`), sorted, and cut into fixed shards of
``features.shard_size`` items, so shard ``k`` always holds the same keys. How it differs from running the
encoders inside training as Crab does: each frame and clip is encoded once; a killed run resumes at the
first unfinished shard (finished shards are recognised by their key list, fingerprint and media digest
and never recomputed, and their files are not touched); the fingerprint hashes the encoder files and the
digest the media bytes, so new weights, edited clips or changed media params never reuse stale features.
Encoders are loaded only if some shard needs computing. Frames (``features.batch_size`` per forward) and
clips are batched across the items of a shard; batches never span shards, so a resumed run gives the same
bytes as an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from crab.avuie.build import OUT_DIR as AVUIE_DIR
from crab.avuie.schema import AvuieRecord, read_jsonl
from crab.config import MediaConfig, Params
from crab.datasets.media import read_audio, read_frame_folder, read_frames, segment_audio, window_audio
from crab.errors import CrabError, DataError
from crab.features.fbank import BEATS_SAMPLE_RATE, beats_fbank, num_fbank_frames
from crab.features.store import (
    INDEX_NAME,
    levels_key,
    levels_source,
    AudioCut,
    StoreWriter,
    audio_cut,
    audio_key,
    audio_scheme,
    shard_name,
    image_key,
    video_key,
)
from crab.models.base import BaseModelPaths, load_audio, load_vision
from crab.quality.avuie import REPORT_PATH as AVUIE_REPORT
from crab.quality.quarantine import load_quarantined_avuie
from crab.tasks import TASKS, Task

__all__ = [
    "Encoders",
    "ExtractCounters",
    "FeaturesResult",
    "MediaItem",
    "compute_shard",
    "encode_clips",
    "encode_frames",
    "features",
    "load_encoders",
    "plan_items",
    "read_avuie_records",
]

log = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class MediaItem:
    """One feature to compute.

    Attributes:
        key: feature key (``video/<path>``, ``image/<path>``, ``levels/<path>`` or ``audio/<scheme>/<path>``).
        kind: ``"video"``, ``"image"`` (one frame: ARIG), ``"levels"`` (the mask decoder's CLIP levels of a
            segmentation task's frames) or ``"audio"``.
        path: the media file, as the AV-UIE record names it.
        cutting: audio only: how the clip is cut (:func:`crab.features.store.audio_cut`).
    """

    key: str
    kind: Literal["video", "image", "levels", "audio"]
    path: str
    cutting: AudioCut | None = None


@dataclass(frozen=True)
class FeaturesResult:
    """What the ``features`` stage did.

    Attributes:
        out_dir: the store folder.
        num_records: AV-UIE records whose media were featurised.
        num_excluded: records left out because ``validate_avuie`` quarantined them.
        num_video / num_levels / num_audio / num_image: feature items in the store (levels: segmentation tasks'
            frames; image: single frames, ARIG).
        num_shards / num_shards_computed: shards in the store / computed by this run (the rest were reused).
        num_frames / num_audio_clips: frames and audio clips encoded by this run.
        size_mb: size of the store on disk (shards + index), in MB (10^6 bytes).
        seconds: wall time of the stage.
        video_seconds / audio_seconds: time spent decoding + encoding video / audio in this run.
    """

    out_dir: Path
    num_records: int
    num_excluded: int
    num_video: int
    num_levels: int
    num_audio: int
    num_shards: int
    num_shards_computed: int
    num_frames: int
    num_audio_clips: int
    size_mb: float
    seconds: float
    video_seconds: float
    audio_seconds: float
    num_image: int = 0

    @property
    def frames_per_s(self) -> float:
        """Video throughput of this run (decode + preprocess + CLIP), frames per second."""
        return self.num_frames / self.video_seconds if self.video_seconds else 0.0

    @property
    def clips_per_s(self) -> float:
        """Audio throughput of this run (decode + cut + fbank + BEATs), clips per second."""
        return self.num_audio_clips / self.audio_seconds if self.audio_seconds else 0.0


class Encoders(NamedTuple):
    """The frozen encoders (``CLIPVisionModel``, ``CLIPImageProcessor``, ``BEATs``), loaded on first need."""

    vision: Any
    processor: Any
    audio: Any
    feature_layer: int  # CLIP ``hidden_states`` index kept (the base models' manifest: tiny from params, paper 23)
    mask_feature_layers: tuple[int, ...] = ()  # the mask decoder's levels (manifest: tiny 1, 2; paper 14, 22)


@dataclass
class ExtractCounters:
    """Work done so far (shards, frames, clips, seconds per modality), for the stage's log line."""

    num_shards: int = 0
    num_frames: int = 0
    num_clips: int = 0
    video_seconds: float = 0.0
    audio_seconds: float = 0.0


def read_avuie_records(
    tasks: Iterable[str], avuie_dir: Path = AVUIE_DIR, report: Path = AVUIE_REPORT
) -> tuple[list[AvuieRecord], int]:
    """All AV-UIE records of ``tasks`` (every split file) except those ``validate_avuie`` quarantined.

    Args:
        tasks: task names (``avuie.tasks``).
        avuie_dir: the AV-UIE folder (``data/avuie``).
        report: the ``validate_avuie`` report (``reports/validation/avuie.json``).

    Returns:
        The kept records (in file order) and the number excluded by the quarantine.

    Raises:
        DataError: the report is missing or invalid, a task has no split files, or a line breaks the schema.
    """
    quarantined = load_quarantined_avuie(report)
    kept: list[AvuieRecord] = []
    excluded = 0
    for task in tasks:
        files = sorted((avuie_dir / task).glob("*.jsonl"))
        if not files:
            raise DataError(avuie_dir / task, "no AV-UIE split files (*.jsonl); run `crab avuie_build`")
        for path in files:
            for record in read_jsonl(path):
                if record.id in quarantined:
                    excluded += 1
                else:
                    kept.append(record)
    return kept, excluded


def plan_items(records: Iterable[AvuieRecord], params: Params) -> list[MediaItem]:
    """The unique feature items of the records, sorted by key (this order fixes the shard assignment).

    Args:
        records: AV-UIE records.
        params: reads ``media`` (the audio scheme is part of the key).

    Returns:
        One video item per video file (or image item per image file: ARIG, SEG), one audio item per (audio
        file, scheme), one levels item per video (SEG: image) of a segmentation task (``TaskSpec.masks``).
    """
    items: dict[str, MediaItem] = {}
    for record in records:
        if "image" in record.media:
            ikey = image_key(record)
            items.setdefault(ikey, MediaItem(ikey, "image", record.media["image"]))
        else:
            vkey = video_key(record)
            items.setdefault(vkey, MediaItem(vkey, "video", record.media["video"]))
        if "audio" in record.media:  # all but the image-only segmentation pre-training (seg)
            akey = audio_key(record, params)
            cut = audio_cut(record.task, params.media)
            items.setdefault(akey, MediaItem(akey, "audio", record.media["audio"], cut))
        if TASKS[Task(record.task)].masks:
            lkey = levels_key(record)  # an image's levels: one frame (its file decodes as a one-frame clip)
            items.setdefault(lkey, MediaItem(lkey, "levels", levels_source(record)))
    return [items[key] for key in sorted(items)]


@torch.inference_mode()
def encode_frames(
    vision: Any, processor: Any, frames: np.ndarray, layer: int | Sequence[int], batch_size: int
) -> Tensor:
    """CLIP patch tokens of one layer (or of several, stacked) for a stack of frames, in batches.

    Args:
        vision: ``CLIPVisionModel`` in eval mode.
        processor: its ``CLIPImageProcessor`` (CLIP mean / std normalisation; resize and crop are no-ops
            on frames already at the crop size).
        frames: ``(F, S, S, 3)`` uint8 RGB, S = the processor's crop size.
        layer: index into ``hidden_states`` (0 = patch embedding), or a sequence of them (one forward).
        batch_size: frames per forward.

    Returns:
        ``(F, P, D)`` float32 tokens of ``hidden_states[layer]`` without CLS (P = (S / patch)^2); for a
        sequence of L layers ``(F, L, P, D)``.
    """
    layers = [layer] if isinstance(layer, int) else list(layer)
    outputs = []
    for start in range(0, len(frames), batch_size):
        batch = list(frames[start : start + batch_size])
        pixels = processor(images=batch, return_tensors="pt")["pixel_values"].to(vision.dtype)  # (b, 3, S, S)
        hidden = vision(pixel_values=pixels, output_hidden_states=True).hidden_states  # (b, 1 + P, D) each
        outputs.append(torch.stack([hidden[k][:, 1:, :].float() for k in layers], dim=1))  # drop CLS -> (b, L, P, D)
    tokens = torch.cat(outputs)  # (F, L, P, D)
    return tokens[:, 0] if isinstance(layer, int) else tokens


@torch.inference_mode()
def encode_clips(beats: Any, clips: np.ndarray, batch_size: int) -> Tensor:
    """BEATs last-layer tokens for equal-length 16 kHz clips, in batches.

    Args:
        beats: ``BEATs`` in eval mode.
        clips: ``(n, L)`` float32 waveforms at 16 kHz.
        batch_size: clips per forward.

    Returns:
        ``(n, N, C)`` float32, ``N = floor(T / 16) * 8`` for ``T`` fbank frames (1 s -> 48, 2 s -> 96).
    """
    outputs = []
    for start in range(0, len(clips), batch_size):
        fbank = beats_fbank(torch.from_numpy(clips[start : start + batch_size]))  # (b, T, 128)
        outputs.append(beats.extract_features(fbank).float())  # (b, N, C)
    return torch.cat(outputs)  # (n, N, C)


def _read_video(path: Path, num_frames: int, size: int) -> np.ndarray:
    """A clip's ``num_frames`` sampled frames, or every frame of a frame folder (AVSBench): ``(T, S, S, 3)``."""
    return read_frame_folder(path, size) if path.is_dir() else read_frames(path, num_frames, size)


def _cut_audio(item: MediaItem, media: MediaConfig, patch: int) -> np.ndarray:
    """Decode an item's audio and cut it into its clips: ``(C, L)`` float32 at 16 kHz."""
    wave = read_audio(Path(item.path), BEATS_SAMPLE_RATE)  # (L,)
    cut = item.cutting
    assert cut is not None, item.key
    try:
        if cut.kind == "segments":
            clips = segment_audio(wave, cut.count)
        else:
            clips = window_audio(wave, BEATS_SAMPLE_RATE, cut.count, cut.window_s)
    except ValueError as err:
        raise DataError(item.path, f"audio cannot be cut for {item.key.split('/')[1]} ({err})") from None
    if num_fbank_frames(clips.shape[1]) < patch:
        raise DataError(item.path, f"audio too short: {clips.shape[1]}-sample clips give < {patch} fbank frames")
    return clips  # (C, L)


def compute_shard(
    items: Sequence[MediaItem], enc: Encoders, params: Params, counters: ExtractCounters
) -> dict[str, Tensor]:
    """Decode and encode every item of one shard; feature key -> tensor in the storage dtype.

    The one path from media to features: the ``features`` stage calls it per shard and ``crab infer`` per
    request, so a user's clip is encoded exactly as the training data was.
    """
    dtype, batch_size = _DTYPES[params.features.dtype], params.features.batch_size
    out: dict[str, Tensor] = {}
    videos = [i for i in items if i.kind in ("video", "image")]  # an image is one frame, encoded alike
    if videos:
        start = time.perf_counter()
        size, layer = enc.processor.crop_size["height"], enc.feature_layer
        frames = [_read_video(Path(i.path), 1 if i.kind == "image" else params.media.num_frames, size)
                  for i in videos]  # (T_i, S, S, 3) each; T = 1 for an image  # fmt: skip
        tokens = encode_frames(enc.vision, enc.processor, np.concatenate(frames), layer, batch_size)  # (sum T_i, P, D)
        for item, chunk in zip(videos, tokens.split([len(f) for f in frames]), strict=True):
            # (T, P, D), own storage; an image (P, D)
            out[item.key] = (chunk[0] if item.kind == "image" else chunk).to(dtype, copy=True)
        counters.num_frames += len(tokens)
        counters.video_seconds += time.perf_counter() - start
    levels = [i for i in items if i.kind == "levels"]
    if levels:
        if not enc.mask_feature_layers:
            raise CrabError("the base models' manifest names no vision.mask_feature_layers; run `crab base_models`")
        start = time.perf_counter()
        size = enc.processor.crop_size["height"]
        frames = [_read_video(Path(i.path), params.media.num_frames, size) for i in levels]  # (T_i, S, S, 3) each
        tokens = encode_frames(enc.vision, enc.processor, np.concatenate(frames), enc.mask_feature_layers, batch_size)
        for item, chunk in zip(levels, tokens.split([len(f) for f in frames]), strict=True):
            out[item.key] = chunk.to(dtype, copy=True)  # (T, L, P, D)
        counters.num_frames += len(tokens)
        counters.video_seconds += time.perf_counter() - start
    audios = [i for i in items if i.kind == "audio"]
    if audios:
        start = time.perf_counter()
        clips = [_cut_audio(i, params.media, enc.audio.cfg.input_patch_size) for i in audios]  # (C_i, L_i) each
        by_length: dict[int, list[int]] = defaultdict(list)  # BEATs batches need equal lengths
        for n, item_clips in enumerate(clips):
            by_length[item_clips.shape[1]].append(n)
        for length in sorted(by_length):
            members = by_length[length]
            tokens = encode_clips(enc.audio, np.concatenate([clips[n] for n in members]), batch_size)  # (sum C, N, C)
            for n, chunk in zip(members, tokens.split([len(clips[n]) for n in members]), strict=True):
                out[audios[n].key] = chunk.to(dtype, copy=True)  # (C, N, D)
            counters.num_clips += len(tokens)
        counters.audio_seconds += time.perf_counter() - start
    return out


def load_encoders(base_dir: Path) -> Encoders:
    """The frozen CLIP (with its processor) and BEATs of ``base_dir`` in eval mode, and the CLIP layer to keep.

    Raises:
        CrabError: the manifest names no feature layer or one outside the CLIP's layers, or the processor's
            crop size differs from the model's image size.
    """
    paths = BaseModelPaths.of(base_dir)
    layer, mask_layers = _feature_layer(paths), _mask_feature_layers(paths)
    vision, processor = load_vision(paths.vision)
    for name, value in (("feature_layer", layer), *(("mask_feature_layers", k) for k in mask_layers)):
        if not 1 <= value <= (num_layers := vision.config.num_hidden_layers):
            raise CrabError(f"{paths.manifest}: vision.{name} {value} not in 1..{num_layers} for {paths.vision}")
    if processor.crop_size["height"] != vision.config.image_size:
        raise CrabError(f"{paths.vision}: processor crop size != model image size {vision.config.image_size}")
    return Encoders(vision.eval(), processor, load_audio(paths.audio).eval(), layer, mask_layers)


def _feature_layer(paths: BaseModelPaths) -> int:
    """The CLIP layer the base models' manifest names (one source for both profiles)."""
    try:
        return int(json.loads(paths.manifest.read_text(encoding="utf-8"))["vision"]["feature_layer"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise CrabError(
            f"{paths.manifest}: no vision.feature_layer ({type(err).__name__}); run `crab base_models`"
        ) from None


def _mask_feature_layers(paths: BaseModelPaths) -> tuple[int, ...]:
    """The mask decoder's CLIP levels in the manifest; () in a manifest written before segmentation existed."""
    try:
        raw = json.loads(paths.manifest.read_text(encoding="utf-8"))["vision"].get("mask_feature_layers") or ()
        return tuple(int(k) for k in raw)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise CrabError(
            f"{paths.manifest}: unreadable vision entry ({type(err).__name__}); run `crab base_models`"
        ) from None


def _file_sha256(path: Path) -> str:
    try:
        with open(path, "rb") as fh:
            return hashlib.file_digest(fh, "sha256").hexdigest()
    except FileNotFoundError:
        raise DataError(path, "file not found") from None


def _digest(parts: Iterable[str]) -> str:
    """SHA-256 of NUL-separated strings."""
    return hashlib.sha256("\0".join(parts).encode("utf-8")).hexdigest()


def _media_digest(shard: Sequence[MediaItem], cache: dict[str, str]) -> str:
    """Digest of a shard's keys and its media's bytes (``cache``: path -> file or folder hash, shared by items)."""
    for item in shard:
        if item.path not in cache:
            path = Path(item.path)
            if path.is_dir():  # a frame folder: its files' names and bytes
                files = sorted(p for p in path.iterdir() if p.is_file())
                cache[item.path] = _digest(f"{p.name}:{_file_sha256(p)}" for p in files)
            else:
                cache[item.path] = _file_sha256(path)
    return _digest(part for item in shard for part in (item.key, cache[item.path]))


def _feature_spec(params: Params) -> dict[str, Any]:
    """Everything that defines the stored features; hashed into the fingerprint and kept in the index."""
    paths = BaseModelPaths.of(params.base_models.out_dir)
    vision_files = sorted(p for p in paths.vision.glob("*") if p.suffix in (".json", ".safetensors"))
    if not vision_files or not paths.audio.is_file():
        raise CrabError(f"{paths.root}: no CLIP folder or BEATs checkpoint; run `crab base_models`")
    preprocessor = paths.vision / "preprocessor_config.json"
    crop = json.loads(preprocessor.read_text(encoding="utf-8")).get("crop_size", {}) if preprocessor.is_file() else {}
    return {
        "vision": {
            "sha256": _digest(f"{p.name}:{_file_sha256(p)}" for p in vision_files),
            "num_frames": params.media.num_frames,
            "image_size": crop.get("height"),
            "feature_layer": _feature_layer(paths),
            "mask_feature_layers": list(_mask_feature_layers(paths)),
            "tokens": "patch (CLS dropped), raw block output",
        },
        "audio": {"sha256": _file_sha256(paths.audio), "sample_rate": BEATS_SAMPLE_RATE, "tokens": "last layer"},
        "dtype": params.features.dtype,
    }


def features(params: Params) -> FeaturesResult:
    """Run the frozen encoders over all AV-UIE media into the feature store (module docstring).

    Args:
        params: reads ``avuie.tasks``, ``media``, ``base_models.out_dir`` (the manifest there names the CLIP layer)
            and ``features``.

    Returns:
        Counts, sizes and timings; the store is ``features.out_dir`` (read it with
        :class:`crab.features.store.FeatureStore`).

    Raises:
        DataError: AV-UIE or its quarantine report is missing / invalid, or a media file cannot be decoded
            or is too short (finished shards stay; a rerun after the fix resumes).
        CrabError: base models missing, or params that the encoders cannot take.
    """
    start, cfg, rate = time.perf_counter(), params.features, params.media.audio_sample_rate
    if rate != BEATS_SAMPLE_RATE:
        raise CrabError(f"media.audio_sample_rate: BEATs needs {BEATS_SAMPLE_RATE} Hz, got {rate}")
    records, num_excluded = read_avuie_records(params.avuie.tasks)
    items = plan_items(records, params)
    plan = [items[k : k + cfg.shard_size] for k in range(0, len(items), cfg.shard_size)]
    writer = StoreWriter(cfg.out_dir, _feature_spec(params))
    writer.begin()
    counters, encoders, file_hashes, inputs = ExtractCounters(), None, {}, []
    with tqdm(total=len(items), desc="features", unit="item", disable=None) as bar:
        for index, shard in enumerate(plan):
            inputs.append(_media_digest(shard, file_hashes))
            if not writer.is_done(index, [i.key for i in shard], inputs[-1]):
                encoders = encoders or load_encoders(Path(params.base_models.out_dir))
                writer.write(index, compute_shard(shard, encoders, params, counters), inputs[-1])
                counters.num_shards += 1
            bar.update(len(shard))
    schemes = {t: audio_scheme(t, params.media) for t in sorted(params.avuie.tasks)}
    writer.finish([[i.key for i in shard] for shard in plan], inputs, extra={"audio_schemes": schemes})
    out_dir = Path(cfg.out_dir)
    size = sum(f.stat().st_size for f in [out_dir / INDEX_NAME, *(out_dir / shard_name(k) for k in range(len(plan)))])
    result = FeaturesResult(
        out_dir=out_dir,
        num_records=len(records),
        num_excluded=num_excluded,
        num_video=sum(i.kind == "video" for i in items),
        num_levels=sum(i.kind == "levels" for i in items),
        num_audio=sum(i.kind == "audio" for i in items),
        num_shards=len(plan),
        num_shards_computed=counters.num_shards,
        num_frames=counters.num_frames,
        num_audio_clips=counters.num_clips,
        size_mb=size / 1e6,
        seconds=time.perf_counter() - start,
        video_seconds=counters.video_seconds,
        audio_seconds=counters.audio_seconds,
        num_image=sum(i.kind == "image" for i in items),
    )
    log.info(
        "features: %d records (%d quarantined left out) -> %d video + %d image + %d levels + %d audio items in %d shards "
        "(%d computed), %.1f MB in %s, %.1f s; video %d frames at %.1f frames/s, audio %d clips at %.1f clips/s",
        result.num_records, result.num_excluded, result.num_video, result.num_image, result.num_levels, result.num_audio,
        result.num_shards, result.num_shards_computed, result.size_mb, result.out_dir, result.seconds,
        result.num_frames, result.frames_per_s, result.num_audio_clips, result.clips_per_s,
    )  # fmt: skip
    return result
