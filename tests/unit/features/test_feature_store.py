"""Tests for ``crab.features.store``: feature keys, atomic shards, resumption checks, the index and the reader.

No encoders here: the store is exercised with hand-made tensors (``test_extract.py`` runs the stage).
"""

from __future__ import annotations

import dataclasses
import json
import pickle
from pathlib import Path

import pytest
import torch

import crab.features.store as store_module
from crab.avuie.schema import AvuieRecord
from crab.config import load_params
from crab.features.store import (
    INDEX_NAME,
    FeatureStore,
    FeatureStoreError,
    StoreWriter,
    audio_key,
    audio_scheme,
    fingerprint_of,
    shard_name,
    video_key,
)

PARAMS_FILE = Path(__file__).resolve().parents[3] / "params.yaml"
SPEC = {"vision": {"sha256": "ab", "num_frames": 2}, "audio": {"sha256": "cd"}, "dtype": "float32"}


def _tensors(seed: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {
        f"video/clip{seed}.mp4": torch.randn(2, 4, 8, generator=gen),
        f"audio/segments2/clip{seed}.mp4": torch.randn(2, 48, 8, generator=gen),
    }


def _write_store(out_dir: Path, spec: dict = SPEC) -> tuple[StoreWriter, list[dict[str, torch.Tensor]]]:
    writer = StoreWriter(out_dir, spec)
    writer.begin()
    shards = [_tensors(0), _tensors(1)]
    for index, tensors in enumerate(shards):
        writer.write(index, tensors)
    writer.finish([sorted(t) for t in shards], extra={"audio_schemes": {"ave": "segments2"}})
    return writer, shards


# --- keys -----------------------------------------------------------------------------------------


def _record(task: str, path: str) -> AvuieRecord:
    return AvuieRecord(
        id=f"{task}/train/x", task=task, split="train", dataset="ave", item_id="x", source="f:1", video_id="x",
        media={"video": path, "audio": path}, instruction="", target="", reasoning=True, label={},
    )  # fmt: skip


def test_keys_name_the_media_and_the_audio_scheme_of_the_task() -> None:
    params = load_params(PARAMS_FILE)
    media = dataclasses.replace(params.media, num_audio_segments=10, avqa_num_windows=10, avqa_window_s=2.0)
    params = dataclasses.replace(params, media=media)
    ave, avqa = _record("ave", "data/raw/ave/AVE/a.mp4"), _record("avqa", "data/raw/m/video/b.mp4")
    assert video_key(ave) == "video/data/raw/ave/AVE/a.mp4"
    assert audio_key(ave, params) == "audio/segments10/data/raw/ave/AVE/a.mp4"
    assert audio_key(avqa, params) == "audio/windows10x2.0/data/raw/m/video/b.mp4"
    assert audio_key(_record("avcap", "v.mp4"), params) == "audio/segments10/v.mp4"
    # JSON dicts (as read straight from the JSONL) give the same keys as records.
    assert audio_key(json.loads(avqa.to_json()), params) == audio_key(avqa, params)
    # A params change gives a different key, so stale features cannot be picked up silently.
    shorter = dataclasses.replace(params, media=dataclasses.replace(media, avqa_window_s=1.5))
    assert audio_key(avqa, shorter) == "audio/windows10x1.5/data/raw/m/video/b.mp4"
    assert audio_scheme("ave", dataclasses.replace(media, num_audio_segments=5)) == "segments5"


def test_fingerprint_depends_on_every_spec_value_but_not_on_key_order() -> None:
    reordered = {"dtype": "float32", "audio": {"sha256": "cd"}, "vision": {"num_frames": 2, "sha256": "ab"}}
    assert fingerprint_of(SPEC) == fingerprint_of(reordered)
    assert fingerprint_of(SPEC) != fingerprint_of({**SPEC, "dtype": "float16"})
    assert fingerprint_of(SPEC) != fingerprint_of({**SPEC, "vision": {"sha256": "ab", "num_frames": 3}})


# --- writer ---------------------------------------------------------------------------------------


def test_reader_gives_back_every_tensor_with_its_shape_from_any_shard(tmp_path: Path) -> None:
    _, shards = _write_store(tmp_path / "feats")
    store = FeatureStore(tmp_path / "feats")
    expected = {k: v for shard in shards for k, v in shard.items()}
    assert store.keys() == sorted(expected) and len(store) == 4
    for key in reversed(sorted(expected)):  # random order across shards
        assert store.has(key) and key in store
        assert store.shape(key) == tuple(expected[key].shape)
        read = store.video(key) if key.startswith("video/") else store.audio(key)
        assert torch.equal(read, expected[key]) and read.dtype == torch.float32
    assert store.spec == SPEC and store.fingerprint == fingerprint_of(SPEC)
    assert not store.has("video/nope.mp4")
    with pytest.raises(FeatureStoreError, match="video/nope.mp4"):
        store.video("video/nope.mp4")
    with pytest.raises(ValueError, match="not an audio key"):
        store.audio("video/clip0.mp4")
    # A pickled reader (DataLoader workers) reopens its shards.
    clone = pickle.loads(pickle.dumps(store))
    assert torch.equal(clone.audio("audio/segments2/clip1.mp4"), expected["audio/segments2/clip1.mp4"])


def test_index_lists_shards_shapes_and_info(tmp_path: Path) -> None:
    _write_store(tmp_path)
    index = json.loads((tmp_path / INDEX_NAME).read_text())
    assert index["shards"] == [shard_name(0), shard_name(1)]
    assert index["items"]["audio/segments2/clip1.mp4"] == {"shard": 1, "shape": [2, 48, 8], "dtype": "F32"}
    assert index["info"] == {"audio_schemes": {"ave": "segments2"}}


def test_same_tensors_give_the_same_bytes(tmp_path: Path) -> None:
    _write_store(tmp_path / "a")
    _write_store(tmp_path / "b")
    for name in (shard_name(0), shard_name(1), INDEX_NAME):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_is_done_needs_the_same_keys_fingerprint_and_media_digest(tmp_path: Path) -> None:
    writer, shards = _write_store(tmp_path)
    assert writer.is_done(0, sorted(shards[0]))
    assert not writer.is_done(0, sorted(shards[1]))  # another key set
    assert not writer.is_done(0, sorted(shards[0]), inputs="edited media")
    writer.write(0, shards[0], inputs="edited media")
    assert writer.is_done(0, sorted(shards[0]), inputs="edited media")
    assert not writer.is_done(2, [])  # no such file
    other = StoreWriter(tmp_path, {**SPEC, "dtype": "float16"})
    assert not other.is_done(0, sorted(shards[0]))  # another fingerprint
    (tmp_path / shard_name(1)).write_bytes(b"not a safetensors file")
    assert not writer.is_done(1, sorted(shards[1]))


def test_a_write_that_fails_midway_leaves_no_shard_and_no_temp_file(tmp_path: Path, monkeypatch) -> None:
    writer = StoreWriter(tmp_path, SPEC)
    writer.begin()

    def half_write(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{")  # a truncated header
        raise OSError("disk full")

    monkeypatch.setattr(store_module, "save_file", half_write)
    with pytest.raises(OSError, match="disk full"):
        writer.write(0, _tensors(0))
    assert list(tmp_path.iterdir()) == []


def test_begin_drops_leftovers_and_the_old_index_and_finish_drops_extra_shards(tmp_path: Path) -> None:
    writer, shards = _write_store(tmp_path)
    (tmp_path / f".{shard_name(2)}.tmp-12345").write_bytes(b"partial")
    writer.write(2, _tensors(2))
    writer.begin()
    assert sorted(p.name for p in tmp_path.iterdir()) == [shard_name(0), shard_name(1), shard_name(2)]
    writer.finish([sorted(shards[0])])  # a smaller plan
    assert sorted(p.name for p in tmp_path.iterdir()) == [INDEX_NAME, shard_name(0)]
    with pytest.raises(FeatureStoreError, match="missing or stale"):
        writer.finish([sorted(shards[0]), sorted(shards[1])])


def test_reader_refuses_an_unfinished_or_mixed_store(tmp_path: Path) -> None:
    with pytest.raises(FeatureStoreError, match="not found"):
        FeatureStore(tmp_path)
    _write_store(tmp_path)
    # Replace shard 1 by one written under another spec: the index no longer describes it.
    StoreWriter(tmp_path, {**SPEC, "dtype": "float16"}).write(1, _tensors(1))
    store = FeatureStore(tmp_path)
    assert torch.equal(store.video("video/clip0.mp4"), _tensors(0)["video/clip0.mp4"])
    with pytest.raises(FeatureStoreError, match="fingerprint differs"):
        store.video("video/clip1.mp4")
