"""Tests for ``crab.synth.render``: determinism, and that pixels and samples follow the scene's timing."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import av
import numpy as np
import pytest

from crab.config import SynthAudioConfig, SynthVideoConfig, load_params
from crab.datasets.vocab import AVE_CATEGORIES, AVQA_INSTRUMENTS
from crab.errors import CrabError
from crab.synth.render import SOURCE_GAIN, render_audio, render_clip, render_clips, render_frames, slot_bounds
from crab.synth.scene import Scene, SceneObject
from crab.synth.world import audio_signature, visual_signature

PARAMS = load_params(Path(__file__).parents[3] / "params.yaml")
VIDEO = SynthVideoConfig(size=32, fps=2, crf=23)
AUDIO = SynthAudioConfig(sample_rate=16000)
DIFFICULTY = PARAMS.synth.difficulty  # the real knobs: noise, jitter, motion
STILL = dataclasses.replace(DIFFICULTY, signature_jitter=0.0)


def _scene(objects, seed=7, duration=3, background="outdoor") -> Scene:
    return Scene("abcdefghijk", "ave", "train", duration, background, tuple(objects), seed)


def _obj(name, slot, visible, audible, loudness=1.0, rhythm=0.0) -> SceneObject:
    return SceneObject(name, slot, tuple(visible), tuple(audible), loudness, rhythm)


SCENE = _scene(
    [
        _obj("Church bell", "left", [(0, 2)], [(1, 3)], rhythm=2.0),
        _obj("violin", None, [], [(0, 1)], loudness=0.6),
        _obj("Bark", "right", [(1, 3)], []),
    ],
    duration=2,
)


def test_clip_is_byte_deterministic_and_depends_on_the_seed(tmp_path):
    paths = [tmp_path / "a.mp4", tmp_path / "b.mp4", tmp_path / "c.mp4"]
    render_clip(SCENE, VIDEO, AUDIO, DIFFICULTY, paths[0])
    render_clip(SCENE, VIDEO, AUDIO, DIFFICULTY, paths[1])
    render_clip(dataclasses.replace(SCENE, render_seed=8), VIDEO, AUDIO, DIFFICULTY, paths[2])
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert paths[0].read_bytes() != paths[2].read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4", "b.mp4", "c.mp4"]  # no temp files left


def test_clip_has_the_configured_streams(tmp_path):
    path = tmp_path / "clip.mp4"
    render_clip(SCENE, VIDEO, AUDIO, DIFFICULTY, path)
    with av.open(str(path)) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        assert video.codec_context.name == "h264" and video.format.name == "yuv420p"
        assert (video.width, video.height) == (32, 32)
        assert audio.codec_context.name == "aac" and audio.rate == 16000 and audio.channels == 1
        assert sum(1 for _ in container.decode(video=0)) == SCENE.duration_s * VIDEO.fps
        container.seek(0)
        samples = sum(f.samples for f in container.decode(audio=0))
    assert abs(samples - SCENE.duration_s * 16000) <= 2048  # AAC priming / padding


def test_odd_frame_size_is_rejected(tmp_path):
    with pytest.raises(CrabError, match="even"):
        render_clip(SCENE, dataclasses.replace(VIDEO, size=33), AUDIO, DIFFICULTY, tmp_path / "x.mp4")


def test_render_clips_renders_every_job_in_parallel(tmp_path):
    jobs = [(dataclasses.replace(SCENE, render_seed=s), tmp_path / f"{s}.mp4") for s in range(3)]
    synth = dataclasses.replace(PARAMS.synth, video=VIDEO, audio=AUDIO)
    render_clips(jobs, synth, "test")
    solo = tmp_path / "solo.mp4"
    render_clip(jobs[1][0], VIDEO, AUDIO, DIFFICULTY, solo)
    assert (tmp_path / "1.mp4").read_bytes() == solo.read_bytes()  # same bytes in a worker process


def _band_energy(samples: np.ndarray, sr: int, f0: float) -> np.ndarray:
    """(seconds,) energy within +-12 % of f0 per second, skipping 50 ms at each edge (fades)."""
    per_second = samples.reshape(-1, sr)[:, int(0.05 * sr) : int(0.95 * sr)]
    spectrum = np.abs(np.fft.rfft(per_second, axis=1)) ** 2
    freqs = np.fft.rfftfreq(per_second.shape[1], 1.0 / sr)
    band = (freqs > f0 * 0.88) & (freqs < f0 * 1.12)
    return spectrum[:, band].sum(axis=1)


@pytest.mark.parametrize("name", ["Church bell", "violin", "Frying (food)", "tuba"])
def test_audio_is_louder_in_the_audible_seconds(name):
    scene = _scene([_obj(name, "middle", [(0, 4)], [(1, 3)], rhythm=audio_signature(name).rhythm)], duration=4)
    samples = render_audio(scene, AUDIO, DIFFICULTY)
    assert samples.shape == (4 * 16000,) and samples.dtype == np.float32
    assert np.abs(samples).max() <= 1.0
    energy = _band_energy(samples, 16000, audio_signature(name).pitch_hz)
    assert min(energy[1], energy[2]) > 20 * max(energy[0], energy[3]), energy


def test_loudness_scales_the_source_and_rhythm_pulses_it():
    quiet = dataclasses.replace(DIFFICULTY, audio_noise=0.0)
    one = render_audio(_scene([_obj("violin", None, [], [(0, 3)], loudness=1.0)]), AUDIO, quiet)
    half = render_audio(_scene([_obj("violin", None, [], [(0, 3)], loudness=0.5)]), AUDIO, quiet)
    assert np.sqrt(np.mean(one**2)) / np.sqrt(np.mean(half**2)) == pytest.approx(2.0, rel=1e-3)

    def envelope_spread(rhythm: float) -> float:
        samples = render_audio(_scene([_obj("violin", None, [], [(0, 3)], rhythm=rhythm)]), AUDIO, quiet)
        rms = np.sqrt(np.mean(samples.reshape(-1, 400) ** 2, axis=1))  # 25 ms frames
        return float(rms.std() / rms.mean())

    assert envelope_spread(3.0) > 3 * envelope_spread(0.0)


def test_silent_scene_has_only_background_noise():
    samples = render_audio(_scene([_obj("violin", "left", [(0, 3)], [])]), AUDIO, DIFFICULTY)
    rms = float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))
    assert rms == pytest.approx(SOURCE_GAIN * DIFFICULTY.audio_noise, rel=0.05)


def _colour_share(frames: np.ndarray, name: str, columns: tuple[int, int]) -> np.ndarray:
    """(T,) share of pixels in ``columns`` within 0.2 (RGB, 0..1) of the class's primary colour.

    Only the primary tone is counted: the texture's dark tone can be as dull as a backdrop on purpose.
    """
    region = frames[:, :, columns[0] : columns[1]].astype(np.float32) / 255.0  # (T, H, w, 3)
    distance = np.linalg.norm(region - np.asarray(visual_signature(name).rgb, np.float32), axis=-1)
    return (distance < 0.2).mean(axis=(1, 2))


@pytest.mark.parametrize("background", ["indoor", "outdoor"])
def test_object_colour_shows_in_its_slot_only_while_visible(background):
    video = SynthVideoConfig(size=48, fps=4, crf=23)
    visible = (np.arange(16) // 4 >= 1) & (np.arange(16) // 4 < 3)  # frames of seconds 1 and 2
    for name in AVE_CATEGORIES + AVQA_INSTRUMENTS:
        scene = _scene([_obj(name, "middle", [(1, 3)], [])], duration=4, background=background)
        frames = render_frames(scene, video, STILL)
        assert frames.shape == (16, 48, 48, 3) and frames.dtype == np.uint8
        share = _colour_share(frames, name, slot_bounds("middle", 48))
        # The primary tone covers 2-13 % of the slot (shape and texture); noise alone reaches ~0.1 %.
        assert share[visible].min() > 0.012, (name, share)
        assert share[~visible].max() < 0.004, (name, share)
        for slot in ("left", "right"):
            assert _colour_share(frames, name, slot_bounds(slot, 48)).max() < 0.004, (name, slot)


def test_objects_stay_in_their_slots_while_drifting():
    video = SynthVideoConfig(size=64, fps=8, crf=23)
    scene = _scene([_obj("Bark", "left", [(0, 3)], []), _obj("tuba", "right", [(0, 3)], [])])
    frames = render_frames(scene, video, DIFFICULTY)
    for name, own, other in (("Bark", "left", "right"), ("tuba", "right", "left")):
        assert _colour_share(frames, name, slot_bounds(own, 64)).min() > 0.03
        assert _colour_share(frames, name, slot_bounds(other, 64)).max() < 0.003
    assert not np.array_equal(frames[0], frames[-1])  # noise and drift change the frames
