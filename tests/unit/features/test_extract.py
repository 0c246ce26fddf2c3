"""Tests for ``crab.features.extract``: the ``features`` stage on tiny encoders, tiny mp4s and hand-written AV-UIE.

A module fixture builds a working directory in the repository layout: ``models/base`` (a seeded tiny
``CLIPVisionModel`` + ``CLIPImageProcessor`` HF folder, ``beats/beats.pt`` in the official format, a
manifest), a few 2 s mp4s (32 px, 4 fps, 16 kHz AAC), ``data/avuie/<task>/<split>.jsonl`` and a
``validate_avuie`` report that quarantines one record. Expected shapes come from crab-reference 1.2
(P = (image / patch)^2 patch tokens, CLS dropped) and 1.4 (48 BEATs tokens per 1 s clip, 96 per 2 s).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import wave
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image
from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

import crab.features.extract as extract
from crab.avuie.schema import AvuieRecord, write_jsonl
from crab.config import Params, load_params
from crab.datasets.media import read_audio, read_frame_folder, read_frames, segment_audio, window_audio
from crab.errors import CrabError, DataError
from crab.features.extract import FeaturesResult, features, read_avuie_records
from crab.features.fbank import beats_fbank
from crab.features.store import INDEX_NAME, FeatureStore, StoreWriter, audio_key, shard_name, video_key
from crab.models.base import load_audio, load_vision, tiny_clip
from crab.models.beats import beats_tiny, save_beats_checkpoint

PARAMS_FILE = Path(__file__).resolve().parents[3] / "params.yaml"
SIZE, FPS, SECONDS, RATE = 32, 4, 2, 16000
QUARANTINED = "ave/train/a3"


def _write_mp4(path: Path, seed: int) -> None:
    """A 2 s 32x32 4 fps H.264 clip of seeded noise with a 16 kHz mono AAC tone."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format="mp4") as out:
        video = out.add_stream("libx264", rate=FPS, options={"threads": "1"})
        video.width = video.height = SIZE
        video.pix_fmt, video.thread_count = "yuv420p", 1
        audio = out.add_stream("aac", rate=RATE, layout="mono")
        for i in range(SECONDS * FPS):
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8), format="rgb24")
            frame.pts = i
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        t = np.arange(SECONDS * RATE) / RATE
        wave = (0.3 * np.sin(2 * np.pi * (300 + 100 * seed) * t) * np.linspace(0.2, 1, t.size)).astype(np.float32)
        for start in range(0, wave.size, 1024):
            chunk = av.AudioFrame.from_ndarray(wave[None, start : start + 1024].copy(), format="fltp", layout="mono")
            chunk.sample_rate, chunk.pts = RATE, start
            out.mux(audio.encode(chunk))
        out.mux(audio.encode(None))


def _record(task: str, split: str, item_id: str, path: str) -> AvuieRecord:
    return AvuieRecord(
        id=f"{task}/{split}/{item_id}", task=task, split=split, dataset=task, item_id=item_id,
        source=f"{task}.txt:{item_id}", video_id=Path(path).stem, media={"video": path, "audio": path},
        instruction="<video><audio>", target="x", reasoning=False, label={},
    )  # fmt: skip


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("features")
    params = _params("data/features")
    vision, processor = tiny_clip(params.base_models.vision, seed=0)
    vision.save_pretrained(root / "models/base/clip")
    processor.save_pretrained(root / "models/base/clip")
    beats = beats_tiny(seed=1)
    (root / "models/base/beats").mkdir(parents=True)
    save_beats_checkpoint(beats, beats.cfg, root / "models/base/beats/beats.pt")
    vision_entry = {
        "path": "clip",
        "feature_layer": params.base_models.vision.feature_layer,
        "mask_feature_layers": [1, 2],
    }
    manifest = {"vision": vision_entry, "audio": {}}
    (root / "models/base/manifest.json").write_text(json.dumps(manifest))
    clips = {
        "a1": "data/raw/ave/AVE/a1.mp4", "a2": "data/raw/ave/AVE/a2.mp4", "a3": "data/raw/ave/AVE/a3.mp4",
        "m1": "data/raw/music_avqa/video/m1.mp4", "m2": "data/raw/music_avqa/video/m2.mp4",
        "v1": "data/raw/valor/video_data/v1.mp4",
    }  # fmt: skip
    for seed, path in enumerate(clips.values()):
        _write_mp4(root / path, seed)
    avuie = root / "data/avuie"
    write_jsonl(avuie / "ave/train.jsonl", [_record("ave", "train", "a1", clips["a1"]),
                                            _record("ave", "train", "a3", clips["a3"])])  # fmt: skip
    write_jsonl(avuie / "ave/test.jsonl", [_record("ave", "test", "a2", clips["a2"])])
    write_jsonl(avuie / "avqa/train.jsonl", [_record("avqa", "train", "q1", clips["m1"]),
                                             _record("avqa", "train", "q2", clips["m1"])])  # fmt: skip
    write_jsonl(avuie / "avqa/test.jsonl", [_record("avqa", "test", "q3", clips["m2"])])
    write_jsonl(avuie / "avcap/train.jsonl", [_record("avcap", "train", "v1", clips["v1"])])
    report = {
        "stage": "validate_avuie",
        "max_failure_rate": 0.5,
        "tasks": {
            "ave": {
                "quarantined": [
                    {
                        "id": QUARANTINED,
                        "item_id": "a3",
                        "split": "train",
                        "source": "x:2",
                        "reasons": ["media missing"],
                    }
                ]
            },  # fmt: skip
            "avqa": {"quarantined": []},
            "avcap": {"quarantined": []},
        },
    }
    (root / "reports/validation").mkdir(parents=True)
    (root / "reports/validation/avuie.json").write_text(json.dumps(report))
    return root


def _params(out_dir: str, **features_changes) -> Params:
    params = load_params(PARAMS_FILE)
    base = params.base_models
    return dataclasses.replace(
        params,
        avuie=dataclasses.replace(params.avuie, tasks=["ave", "avqa", "avcap"]),
        media=dataclasses.replace(
            params.media, num_frames=3, audio_sample_rate=16000, num_audio_segments=2, avqa_num_windows=2,
            avqa_window_s=2.0,
        ),
        base_models=dataclasses.replace(
            base, out_dir="models/base",
            vision=dataclasses.replace(
                base.vision, image_size=SIZE, patch_size=16, hidden_size=32, num_layers=2, num_heads=2,
                intermediate_size=64, feature_layer=1,
            ),
        ),
        features=dataclasses.replace(
            params.features, out_dir=out_dir, **{"shard_size": 3, "batch_size": 4, "dtype": "float32",
                                                 **features_changes}
        ),
    )  # fmt: skip


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def baseline(workdir: Path) -> FeaturesResult:
    """One uninterrupted run into ``data/f_base`` that the tests compare against."""
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(workdir)
        return features(_params("data/f_base"))


def test_store_holds_one_feature_per_media_with_the_papers_shapes(workdir: Path, baseline: FeaturesResult) -> None:
    result = baseline
    # 7 records minus the quarantined one; m1 is shared by two AVQA questions.
    assert (result.num_records, result.num_excluded) == (6, 1)
    assert (result.num_video, result.num_audio, result.num_shards, result.num_shards_computed) == (5, 5, 4, 4)
    assert result.num_frames == 5 * 3 and result.num_audio_clips == 5 * 2
    assert result.size_mb > 0 and result.frames_per_s > 0 and result.clips_per_s > 0
    store = FeatureStore(workdir / "data/f_base")
    assert store.keys() == sorted(
        [f"video/{p}" for p in ("data/raw/ave/AVE/a1.mp4", "data/raw/ave/AVE/a2.mp4",
                                "data/raw/music_avqa/video/m1.mp4", "data/raw/music_avqa/video/m2.mp4",
                                "data/raw/valor/video_data/v1.mp4")]
        + [f"audio/segments2/{p}" for p in ("data/raw/ave/AVE/a1.mp4", "data/raw/ave/AVE/a2.mp4",
                                            "data/raw/valor/video_data/v1.mp4")]
        + [f"audio/windows2x2.0/{p}" for p in ("data/raw/music_avqa/video/m1.mp4", "data/raw/music_avqa/video/m2.mp4")]
    )  # fmt: skip
    assert not any("a3.mp4" in key for key in store.keys())  # only the quarantined record used it
    num_patches, clip_dim, beats_dim = (SIZE // 16) ** 2, 32, 64
    assert store.video("video/data/raw/ave/AVE/a1.mp4").shape == (3, num_patches, clip_dim)
    assert store.audio("audio/segments2/data/raw/ave/AVE/a1.mp4").shape == (2, 48, beats_dim)  # 1 s segments
    assert store.audio("audio/windows2x2.0/data/raw/music_avqa/video/m1.mp4").shape == (2, 96, beats_dim)  # 2 s
    index = json.loads((workdir / "data/f_base" / INDEX_NAME).read_text())
    assert index["spec"]["vision"]["feature_layer"] == 1 and index["spec"]["vision"]["num_frames"] == 3
    assert index["info"]["audio_schemes"] == {"avcap": "segments2", "ave": "segments2", "avqa": "windows2x2.0"}


def test_stored_features_equal_direct_encoder_calls(workdir: Path, baseline: FeaturesResult, monkeypatch) -> None:
    monkeypatch.chdir(workdir)
    params = _params("data/f_base")
    store = FeatureStore("data/f_base")
    vision, processor = load_vision("models/base/clip")
    beats = load_audio("models/base/beats/beats.pt")
    avqa = _record("avqa", "test", "q3", "data/raw/music_avqa/video/m2.mp4")
    ave = _record("ave", "test", "a2", "data/raw/ave/AVE/a2.mp4")
    with torch.no_grad():
        frames = read_frames(avqa.media["video"], 3, SIZE)  # (3, 32, 32, 3)
        pixels = processor(images=list(frames), return_tensors="pt")["pixel_values"]
        # The processor only normalises frames already at the model size (resize / crop are no-ops).
        mean, std = torch.tensor(OPENAI_CLIP_MEAN)[:, None, None], torch.tensor(OPENAI_CLIP_STD)[:, None, None]
        manual = (torch.from_numpy(frames).permute(0, 3, 1, 2) / 255 - mean) / std
        torch.testing.assert_close(pixels, manual, atol=1e-6, rtol=0)
        direct = vision(pixel_values=pixels, output_hidden_states=True).hidden_states[1][:, 1:, :]
        torch.testing.assert_close(store.video(video_key(avqa)), direct, atol=1e-6, rtol=0)
        for record, clips in (
            (avqa, window_audio(read_audio(avqa.media["audio"]), 16000, 2, 2.0)),
            (ave, segment_audio(read_audio(ave.media["audio"]), 2)),
        ):
            one_by_one = torch.cat([beats.extract_features(beats_fbank(torch.from_numpy(c)[None])) for c in clips])
            torch.testing.assert_close(store.audio(audio_key(record, params)), one_by_one, atol=1e-6, rtol=0)


def test_a_killed_run_resumes_without_touching_finished_shards(
    workdir: Path, baseline: FeaturesResult, monkeypatch
) -> None:
    monkeypatch.chdir(workdir)
    real_write = StoreWriter.write
    calls = []

    def dies_on_second_shard(self, index, *args):
        calls.append(index)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the process is killed while shard 1 is being written
        return real_write(self, index, *args)

    monkeypatch.setattr(StoreWriter, "write", dies_on_second_shard)
    with pytest.raises(KeyboardInterrupt):
        features(_params("data/f_killed"))
    killed = Path("data/f_killed")
    assert sorted(p.name for p in killed.iterdir()) == [shard_name(0)]  # no index, no half shard
    before = (killed / shard_name(0)).stat()
    monkeypatch.setattr(StoreWriter, "write", real_write)
    result = features(_params("data/f_killed"))
    after = (killed / shard_name(0)).stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert result.num_shards_computed == 3
    assert _files(killed) == _files(Path("data/f_base"))  # bit for bit, index included


def test_a_rerun_computes_nothing_and_a_params_change_recomputes(
    workdir: Path, baseline: FeaturesResult, monkeypatch
) -> None:
    monkeypatch.chdir(workdir)
    shutil.copytree("data/f_base", "data/f_rerun")
    first = _files(Path("data/f_rerun"))
    calls = {"frames": 0, "clips": 0}

    def counting(name, real):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return real(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(extract, "encode_frames", counting("frames", extract.encode_frames))
    monkeypatch.setattr(extract, "encode_clips", counting("clips", extract.encode_clips))
    result = features(_params("data/f_rerun"))
    assert calls == {"frames": 0, "clips": 0} and result.num_shards_computed == 0
    assert _files(Path("data/f_rerun")) == first
    # Another storage dtype changes the fingerprint: every shard is recomputed.
    result = features(_params("data/f_rerun", dtype="float16"))
    assert result.num_shards_computed == 4 and calls == {"frames": 3, "clips": 2}  # video in shards 1-3
    assert FeatureStore("data/f_rerun").video("video/data/raw/ave/AVE/a1.mp4").dtype == torch.float16
    # A larger shard size gives one shard, and the files of the old plan go.
    result = features(_params("data/f_rerun", dtype="float16", shard_size=100))
    assert result.num_shards_computed == 1 and calls == {"frames": 4, "clips": 4}  # clips: 1 s and 2 s groups
    assert sorted(_files(Path("data/f_rerun"))) == [INDEX_NAME, shard_name(0)]


def test_an_edited_clip_recomputes_only_the_shards_that_use_it(
    workdir: Path, baseline: FeaturesResult, tmp_path: Path, monkeypatch
) -> None:
    copy = tmp_path / "work"
    shutil.copytree(workdir, copy)
    monkeypatch.chdir(copy)
    _write_mp4(copy / "data/raw/ave/AVE/a1.mp4", seed=9)
    result = features(_params("data/f_base"))
    # a1's audio is in shard 0 (segments of a1, a2, v1), its video in shard 1 (m1 / m2 windows, video a1).
    assert result.num_shards_computed == 2
    edited = _files(copy / "data/f_base")
    original = _files(workdir / "data/f_base")
    assert [name for name in original if edited[name] != original[name]] == [shard_name(0), shard_name(1)]


def test_read_avuie_records_needs_the_quarantine_report(workdir: Path) -> None:
    records, excluded = read_avuie_records(["ave"], workdir / "data/avuie", workdir / "reports/validation/avuie.json")
    assert [r.id for r in records] == ["ave/test/a2", "ave/train/a1"] and excluded == 1
    with pytest.raises(DataError, match="file not found"):
        read_avuie_records(["ave"], workdir / "data/avuie", workdir / "reports/nothing.json")
    with pytest.raises(DataError, match="no AV-UIE split files"):
        read_avuie_records(["avcap", "ave"], workdir / "data", workdir / "reports/validation/avuie.json")


def test_avsbench_frame_folder_and_five_audio_segments(workdir: Path, monkeypatch) -> None:
    """S4 / MS3 media: all PNG frames of the folder in number order (``_10`` after ``_9``), audio cut into 5."""
    monkeypatch.chdir(workdir)
    params = _params("data/f_avs")
    rng = np.random.default_rng(3)
    folder = Path("data/raw/avsbench/frames/v")
    folder.mkdir(parents=True)
    images = {i: rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8) for i in (1, 2, 3, 9, 10)}
    for i, image in images.items():
        Image.fromarray(image).save(folder / f"v_{i}.png")
    samples = (0.3 * np.sin(2 * np.pi * 440 * np.arange(5 * 16000) / 16000) * 32767).astype(np.int16)
    with wave.open("data/raw/avsbench/v.wav", "wb") as out:
        out.setnchannels(1), out.setsampwidth(2), out.setframerate(16000)
        out.writeframes(samples.tobytes())
    record = dataclasses.replace(
        _record("s4", "test", "v_1", "data/raw/avsbench/v.wav"),
        media={"video": folder.as_posix(), "audio": "data/raw/avsbench/v.wav"},
    )
    items = extract.plan_items([record], params)
    vkey, lkey, akey = (
        f"video/{folder.as_posix()}",
        f"levels/{folder.as_posix()}",
        "audio/segments5/data/raw/avsbench/v.wav",
    )
    assert [i.key for i in items] == [akey, lkey, vkey]
    encoders = extract.load_encoders(Path("models/base"))
    assert (encoders.feature_layer, encoders.mask_feature_layers) == (1, (1, 2))
    out = extract.compute_shard(items, encoders, params, extract.ExtractCounters())
    assert out[vkey].shape == (5, (SIZE // 16) ** 2, 32)  # every frame, not media.num_frames
    assert out[lkey].shape == (5, 2, (SIZE // 16) ** 2, 32)  # the decoder's two levels
    assert out[akey].shape == (5, 48, 64)  # five 1-s clips
    frames = read_frame_folder(folder)
    assert [f.tobytes() for f in frames] == [images[i].tobytes() for i in sorted(images)]
    vision, processor = load_vision("models/base/clip")
    with torch.no_grad():
        pixels = processor(images=list(frames), return_tensors="pt")["pixel_values"]
        hidden = vision(pixel_values=pixels, output_hidden_states=True).hidden_states
    torch.testing.assert_close(out[vkey], hidden[1][:, 1:, :], atol=1e-6, rtol=0)
    torch.testing.assert_close(out[lkey], torch.stack([hidden[1][:, 1:], hidden[2][:, 1:]], dim=1), atol=1e-6, rtol=0)
    # a manifest without the decoder's levels (written before segmentation) cannot encode levels
    no_levels = encoders._replace(mask_feature_layers=())
    with pytest.raises(CrabError, match="names no vision.mask_feature_layers"):
        extract.compute_shard(items, no_levels, params, extract.ExtractCounters())
    # a shard's media digest covers the folder's frames, so an edited frame recomputes the shard
    digest = extract._media_digest(items, {})
    Image.fromarray(images[9][::-1].copy()).save(folder / "v_9.png")
    assert extract._media_digest(items, {}) != digest


def test_arig_image_is_one_frame_sharing_the_s4_audio(workdir: Path, monkeypatch) -> None:
    """ARIG media: one PNG frame as an ``image/`` item ``(P, D)``, the same CLIP layer as video frames."""
    monkeypatch.chdir(workdir)
    params = _params("data/f_arig")
    folder = Path("data/raw/avsbench/arig")
    folder.mkdir(parents=True)
    image = np.random.default_rng(5).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    Image.fromarray(image).save(folder / "v_2.png")
    samples = (0.3 * np.sin(2 * np.pi * 330 * np.arange(5 * 16000) / 16000) * 32767).astype(np.int16)
    with wave.open(str(folder / "v.wav"), "wb") as out:
        out.setnchannels(1), out.setsampwidth(2), out.setframerate(16000)
        out.writeframes(samples.tobytes())
    record = dataclasses.replace(
        _record("s4", "test", "v_2", (folder / "v.wav").as_posix()),
        task="arig", media={"image": (folder / "v_2.png").as_posix(), "audio": (folder / "v.wav").as_posix()},
    )  # fmt: skip
    items = extract.plan_items([record], params)
    ikey, akey = f"image/{folder.as_posix()}/v_2.png", f"audio/segments5/{folder.as_posix()}/v.wav"
    assert [(i.key, i.kind) for i in items] == [(akey, "audio"), (ikey, "image")]  # no video, no levels
    encoders = extract.load_encoders(Path("models/base"))
    out = extract.compute_shard(items, encoders, params, extract.ExtractCounters())
    assert out[ikey].shape == ((SIZE // 16) ** 2, 32) and out[akey].shape == (5, 48, 64)
    vision, processor = load_vision("models/base/clip")
    with torch.no_grad():
        pixels = processor(images=[image], return_tensors="pt")["pixel_values"]
        hidden = vision(pixel_values=pixels, output_hidden_states=True).hidden_states
    torch.testing.assert_close(out[ikey], hidden[1][0, 1:, :], atol=1e-6, rtol=0)


def test_frame_folder_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="frame folder not found"):
        read_frame_folder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no PNG / JPEG frames"):
        read_frame_folder(tmp_path / "empty")
    odd = tmp_path / "odd"
    odd.mkdir()
    Image.new("RGB", (4, 4)).save(odd / "v_1.png")
    Image.new("RGB", (4, 4)).save(odd / "cover.png")
    with pytest.raises(DataError, match=r"cover\.png: frame file name does not end with its frame number"):
        read_frame_folder(odd)
    sizes = tmp_path / "sizes"
    sizes.mkdir()
    Image.new("RGB", (4, 4)).save(sizes / "v_1.png")
    Image.new("RGB", (6, 4)).save(sizes / "v_2.png")
    with pytest.raises(DataError, match=r"v_2\.png: frame is \(4, 6\), the folder's first is \(4, 4\)"):
        read_frame_folder(sizes)
    (sizes / "v_2.png").unlink()
    (sizes / "x_01.png").write_bytes((sizes / "v_1.png").read_bytes())
    with pytest.raises(DataError, match="two frames numbered 1"):
        read_frame_folder(sizes)
