"""Tests of crab.datasets.media on the real Crab example media and on clips synthesised with PyAV.

The synthetic clip carries its frame index as an 8-bit black/white block code (robust to H.264) and a
1 kHz tone on the left channel only, so frame indices, the resampled length, the tone frequency and
the mean-of-channels downmix are all checked exactly.
"""

from __future__ import annotations

import subprocess
import sys
import wave
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from crab.datasets.media import (
    probe,
    read_audio,
    read_frames,
    read_image,
    sample_indices,
    segment_audio,
    verify_decodes,
    window_audio,
)
from crab.errors import DataError

# The authors' example media, in shared/ beside the checkout (CI lays out the same).
SAMPLES = Path(__file__).resolve().parents[4] / "shared" / "samples" / "crab-examples"
AVE_MP4 = SAMPLES / "ave" / "-67UNKFmRLk.mp4"
needs_samples = pytest.mark.skipif(not AVE_MP4.is_file(), reason="Crab example media not present")

SIZE, FPS, SECONDS, RATE, TONE_HZ, TONE_AMP = 112, 25, 10, 44100, 1000.0, 0.5
NUM_FRAMES = FPS * SECONDS
BITS = 8  # 8-bit index code: 250 frames fit


def _frame_image(index: int) -> np.ndarray:
    """(SIZE, SIZE, 3) uint8: top half = index in binary blocks, bottom half = a moving red bar."""
    img = np.zeros((SIZE, SIZE, 3), np.uint8)
    block = SIZE // BITS
    for bit in range(BITS):
        if (index >> bit) & 1:
            img[: SIZE // 2, bit * block : (bit + 1) * block] = 255
    x = index * SIZE // NUM_FRAMES
    img[SIZE // 2 :, x : x + 8] = (255, 0, 0)
    return img


def _decode_index(frame: np.ndarray) -> int:
    """Read the block code back from a decoded (H, W, 3) frame of any size."""
    h, w = frame.shape[:2]
    top = frame[: h // 2].mean(axis=2)  # (h/2, w)
    block = w / BITS
    rows = top[h // 8 : 3 * h // 8]  # the middle of the code band
    bits = [rows[:, int((b + 0.25) * block) : int((b + 0.75) * block)].mean() > 128 for b in range(BITS)]
    return sum(int(bit) << b for b, bit in enumerate(bits))


def _write_clip(path: Path, audio: bool = True, faststart: bool = True) -> None:
    """A 10 s 112x112 25 fps H.264 clip, with 44.1 kHz stereo AAC: tone on the left, silence on the right."""
    with av.open(str(path), "w", format="mp4", options={"movflags": "faststart"} if faststart else {}) as out:
        video = out.add_stream("libx264", rate=FPS)
        video.width = video.height = SIZE
        video.pix_fmt = "yuv420p"
        video.thread_count, video.options = 1, {"threads": "1"}  # byte-deterministic (stack-notes 10)
        # Every stream must exist before the first packet is muxed (that writes the header).
        stream = out.add_stream("aac", rate=RATE, layout="stereo") if audio else None
        for i in range(NUM_FRAMES):
            frame = av.VideoFrame.from_ndarray(_frame_image(i), format="rgb24")
            frame.pts = i
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
        if stream is None:
            return
        t = np.arange(SECONDS * RATE) / RATE
        left = (TONE_AMP * np.sin(2 * np.pi * TONE_HZ * t)).astype(np.float32)
        planes = np.stack([left, np.zeros_like(left)])  # (2, L)
        step = stream.codec_context.frame_size or 1024
        for start in range(0, planes.shape[1], step):
            piece = np.ascontiguousarray(planes[:, start : start + step])  # (2, step)
            chunk = av.AudioFrame.from_ndarray(piece, format="fltp", layout="stereo")
            chunk.sample_rate, chunk.pts = RATE, start
            for packet in stream.encode(chunk):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("media")
    paths = {name: root / f"{name}.mp4" for name in ("full", "silent", "moov_at_end")}
    _write_clip(paths["full"])
    _write_clip(paths["silent"], audio=False)
    _write_clip(paths["moov_at_end"], faststart=False)
    for name, source in (("truncated", "full"), ("truncated_moov_at_end", "moov_at_end")):
        data = paths[source].read_bytes()
        paths[name] = root / f"{name}.mp4"
        paths[name].write_bytes(data[: len(data) // 2])
    paths["text"] = root / "notes.mp4"
    paths["text"].write_text("this is not a video\n" * 20)
    paths["empty_wav"] = root / "empty.wav"
    with wave.open(str(paths["empty_wav"]), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(b"")
    return paths


# --- probing and full-decode checks ---------------------------------------------------------------


@needs_samples
def test_probe_reads_the_real_ave_sample_header() -> None:
    info = probe(AVE_MP4, need_video=True, need_audio=True)
    assert (info.width, info.height, info.num_frames) == (450, 360, 250)
    assert info.fps == pytest.approx(25.0)
    assert (info.audio_sample_rate, info.audio_channels) == (44100, 2)
    assert info.duration_s == pytest.approx(10.0, abs=0.05)


@needs_samples
def test_probe_reads_the_real_avvp_sample_and_an_audio_only_file() -> None:
    info = probe(SAMPLES / "avvp" / "6aV6c8mY0lg.mp4")
    assert (info.width, info.height, info.num_frames, info.fps) == (352, 288, 150, 15.0)
    mp3 = probe(SAMPLES / "avqa" / "00006835.mp3", need_audio=True)
    assert not mp3.has_video and mp3.num_frames == 0 and mp3.width is None
    assert mp3.duration_s == pytest.approx(60.0, abs=0.1)


def test_verify_decodes_counts_what_it_decoded(clips: dict[str, Path]) -> None:
    info = verify_decodes(clips["full"], need_video=True, need_audio=True)
    assert info.num_frames == NUM_FRAMES
    assert info.num_audio_samples == pytest.approx(SECONDS * RATE, rel=0.01)
    assert (info.width, info.height, info.audio_channels) == (SIZE, SIZE, 2)


@pytest.mark.parametrize(
    "call", [probe, lambda p: verify_decodes(p, True, True), lambda p: read_frames(p, 10), read_audio, read_image]
)
def test_a_missing_file_is_reported_as_such(tmp_path: Path, call) -> None:
    with pytest.raises(DataError, match="file not found") as caught:
        call(tmp_path / "absent.mp4")
    assert caught.value.path == str(tmp_path / "absent.mp4")


@pytest.mark.parametrize("name", ["text", "truncated_moov_at_end"])
def test_files_that_do_not_open_are_not_media(clips: dict[str, Path], name: str) -> None:
    with pytest.raises(DataError, match=r"not a media file / cannot open \("):
        probe(clips[name])


def test_a_half_file_opens_but_fails_the_full_decode(clips: dict[str, Path]) -> None:
    assert probe(clips["truncated"]).num_frames == NUM_FRAMES  # the header alone looks fine
    with pytest.raises(DataError, match=r"truncated or corrupt \("):
        verify_decodes(clips["truncated"], need_video=True, need_audio=True)
    with pytest.raises(DataError, match="truncated or corrupt"):
        read_frames(clips["truncated"], 10)
    with pytest.raises(DataError, match="truncated or corrupt"):
        read_audio(clips["truncated"])


def test_a_file_cut_between_packets_is_caught_by_the_count_check(clips: dict[str, Path], tmp_path: Path) -> None:
    # Cut right after a mid-file audio packet: FFmpeg then reports no error, the stream just ends.
    with av.open(str(clips["full"])) as container:
        audio = [(p.pos, p.size) for p in container.demux(audio=0) if p.size]
    pos, size = audio[len(audio) // 2]
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(clips["full"].read_bytes()[: pos + size])
    with pytest.raises(DataError, match=r"truncated or corrupt \(decoded \d+ of 250 video frames\)"):
        verify_decodes(cut, need_video=True, need_audio=True)
    with pytest.raises(DataError, match=r"truncated or corrupt \(decoded \d+ of \d+ audio samples\)"):
        read_audio(cut)


def test_missing_streams_are_named(clips: dict[str, Path]) -> None:
    with pytest.raises(DataError, match="no audio stream"):
        probe(clips["silent"], need_audio=True)
    with pytest.raises(DataError, match="no audio stream"):
        verify_decodes(clips["silent"], need_video=True, need_audio=True)
    with pytest.raises(DataError, match="no audio stream"):
        read_audio(clips["silent"])
    assert verify_decodes(clips["silent"], need_video=True, need_audio=False).num_frames == NUM_FRAMES
    with pytest.raises(DataError, match="no video stream"):
        read_frames(clips["empty_wav"], 10)
    with pytest.raises(DataError, match="no video stream"):
        probe(clips["empty_wav"], need_video=True)


def test_an_audio_stream_without_samples_is_rejected(clips: dict[str, Path]) -> None:
    # The mp4 muxer drops an audio stream that received no packets, so the empty stream is a WAV.
    assert probe(clips["empty_wav"], need_audio=True).has_audio
    with pytest.raises(DataError, match="audio stream has no samples"):
        verify_decodes(clips["empty_wav"], need_video=False, need_audio=True)
    with pytest.raises(DataError, match="audio stream has no samples"):
        read_audio(clips["empty_wav"])


# --- frames -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("vlen", "n"), [(250, 10), (250, 7), (150, 10), (60, 10), (5, 10), (1, 3), (10, 3)])
def test_sample_indices_are_crabs_formula(vlen: int, n: int) -> None:
    expected = np.arange(0, vlen, vlen / min(n, vlen)).astype(int)
    np.testing.assert_array_equal(sample_indices(vlen, n), expected)
    assert len(sample_indices(vlen, n)) == min(n, vlen)


@pytest.mark.parametrize("num_frames", [10, 7, 1, 300])
def test_read_frames_returns_exactly_the_sampled_frames(clips: dict[str, Path], num_frames: int) -> None:
    frames = read_frames(clips["full"], num_frames)
    assert frames.dtype == np.uint8 and frames.shape == (min(num_frames, NUM_FRAMES), SIZE, SIZE, 3)
    decoded = [_decode_index(f) for f in frames]
    assert decoded == sample_indices(NUM_FRAMES, num_frames).tolist()


def test_read_frames_resizes_to_a_square_and_keeps_the_frames(clips: dict[str, Path]) -> None:
    frames = read_frames(clips["full"], 10, size=224)
    assert frames.shape == (10, 224, 224, 3)
    assert [_decode_index(f) for f in frames] == list(range(0, 250, 25))


@needs_samples
def test_read_frames_on_the_real_ave_clip_matches_a_full_decode() -> None:
    indices = list(range(0, 250, 25))
    with av.open(str(AVE_MP4)) as container:
        every = list(container.decode(video=0))  # all 250 frames, in presentation order
    assert len(every) == 250
    chosen = [every[i].to_ndarray(format="rgb24") for i in indices]
    frames = read_frames(AVE_MP4, 10)
    assert frames.shape == (10, 360, 450, 3)
    np.testing.assert_array_equal(frames, np.stack(chosen))
    resized = read_frames(AVE_MP4, 10, size=224)
    expected = [np.asarray(Image.fromarray(f).resize((224, 224), Image.Resampling.BILINEAR)) for f in chosen]
    np.testing.assert_array_equal(resized, np.stack(expected))


@needs_samples
@pytest.mark.parametrize(("name", "shape"), [("s4/0.jpg", (540, 720, 3)), ("s4/0.png", None), ("avss/0.png", None)])
def test_read_image_gives_rgb_uint8(name: str, shape: tuple[int, int, int] | None) -> None:
    image = read_image(SAMPLES / name)
    with Image.open(SAMPLES / name) as raw:
        assert image.shape == (raw.height, raw.width, 3)
    assert image.dtype == np.uint8
    if shape is not None:
        assert image.shape == shape


def test_read_image_rejects_unreadable_files(tmp_path: Path) -> None:
    fake = tmp_path / "frame.jpg"
    fake.write_text("not a jpeg")
    with pytest.raises(DataError, match=r"not an image / cannot open \("):
        read_image(fake)
    buffer = tmp_path / "whole.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buffer)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(buffer.read_bytes()[:300])
    with pytest.raises(DataError, match="not an image"):
        read_image(cut)


# --- audio ------------------------------------------------------------------------------------------


def test_read_audio_resamples_downmixes_by_mean_and_keeps_the_tone(clips: dict[str, Path]) -> None:
    wave_16k = read_audio(clips["full"])
    assert wave_16k.dtype == np.float32 and wave_16k.ndim == 1
    assert len(wave_16k) == pytest.approx(SECONDS * 16000, rel=0.01)
    spectrum = np.abs(np.fft.rfft(wave_16k))
    assert np.fft.rfftfreq(len(wave_16k), 1 / 16000)[spectrum.argmax()] == pytest.approx(TONE_HZ, abs=0.5)
    # Left = 0.5 sine, right = silence: the channel mean is a 0.25 sine (RMS 0.177); FFmpeg's own
    # float downmix would give 0.354 (RMS 0.25).
    middle = wave_16k[16000:-16000]
    assert np.sqrt(np.mean(middle**2)) == pytest.approx(TONE_AMP / 2 / np.sqrt(2), rel=0.03)
    assert read_audio(clips["full"], sample_rate=8000).shape[0] == pytest.approx(SECONDS * 8000, rel=0.01)


@needs_samples
@pytest.mark.parametrize(
    ("name", "seconds"),
    [
        ("ave/-67UNKFmRLk.mp4", 10.0),
        ("ave/-67UNKFmRLk.mp3", 10.0),
        ("avqa/00006835.mp3", 60.0),
        ("s4/audio.wav", 5.02),
        ("ref-avs/audio.wav", 10.0),
    ],
)
def test_read_audio_on_real_files_gives_16k_mono(name: str, seconds: float) -> None:
    audio = read_audio(SAMPLES / name)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert len(audio) == pytest.approx(seconds * 16000, rel=0.01)
    assert np.abs(audio).max() <= 1.0 and np.abs(audio).max() > 0.01


@needs_samples
def test_read_audio_downmix_of_a_16k_wav_is_the_exact_channel_mean() -> None:
    path = SAMPLES / "s4" / "audio.wav"
    with av.open(str(path)) as container:
        pcm = np.concatenate([f.to_ndarray().reshape(-1, 2) for f in container.decode(audio=0)])  # (L, 2) s16
    expected = pcm.astype(np.float64).mean(axis=1) / 32768.0
    np.testing.assert_allclose(read_audio(path), expected, atol=1e-6)


# --- segments and windows ----------------------------------------------------------------------------


def test_segment_audio_cuts_equal_pieces_and_drops_the_remainder() -> None:
    wave_in = np.arange(16005, dtype=np.float32)
    pieces = segment_audio(wave_in, 10)
    assert pieces.shape == (10, 1600)
    np.testing.assert_array_equal(pieces[3], wave_in[4800:6400])
    assert segment_audio(np.zeros(160000, np.float32), 10).shape == (10, 16000)  # 10 s at 16 kHz: 1 s pieces
    with pytest.raises(ValueError, match="non-empty"):
        segment_audio(np.zeros(9, np.float32), 10)


def _crab_avqa_windows(audio: np.ndarray) -> np.ndarray:
    """Crab's AVQA audio cut, transcribed from unified_dataset.py (UnifiedDataset.__getitem__, avqa)."""
    tot = 60
    nums_per_second = int(len(audio) / tot)
    out = []
    for indice in range(0, 60, 6):
        start_time, end_time = max(0, indice - 0.5), min(tot, indice + 1.5)
        seg = audio[int(start_time * nums_per_second) : int(nums_per_second * end_time)]
        if indice - 0.5 < 0:
            seg = np.concatenate((np.zeros(2 * nums_per_second - len(seg)), seg))
        if indice + 1.5 > tot:
            seg = np.concatenate((seg, np.zeros(2 * nums_per_second - len(seg))))
        out.append(seg)
    return np.stack(out)


def test_window_audio_equals_crabs_avqa_cut_on_a_60_s_clip() -> None:
    audio = np.random.default_rng(0).uniform(-1, 1, 60 * 16000).astype(np.float32)
    windows = window_audio(audio, 16000, num_windows=10, window_s=2.0)
    assert windows.shape == (10, 32000)
    np.testing.assert_array_equal(windows, _crab_avqa_windows(audio).astype(np.float32))
    assert not windows[0, :8000].any()  # t = 0 starts half a second before the clip


def test_window_audio_uses_true_seconds_on_other_lengths() -> None:
    audio = np.arange(1, 10 * 1000 + 1, dtype=np.float32)  # 10 s at 1 kHz, no zeros inside
    windows = window_audio(audio, 1000, num_windows=5, window_s=2.0)
    assert windows.shape == (5, 2000)
    np.testing.assert_array_equal(windows[1], audio[1500:3500])  # t = 2 s -> [1.5 s, 3.5 s)
    np.testing.assert_array_equal(windows[0, 500:], audio[:1500])
    # Without a lead, 1 s windows at 1 s steps are segment_audio's pieces.
    np.testing.assert_array_equal(window_audio(audio, 1000, 10, 1.0, lead_s=0.0), segment_audio(audio, 10))
    short = window_audio(audio[:500], 1000, num_windows=1, window_s=2.0)
    np.testing.assert_array_equal(short[0], np.concatenate([np.zeros(500), audio[:500], np.zeros(1000)]))


def test_records_and_vocab_load_without_pyav() -> None:
    # Orchestration code and the metrics import records / vocab; that must not import PyAV.
    code = (
        "import sys, crab.datasets, crab.datasets.records, crab.datasets.vocab\n"
        "assert 'av' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_class_masks_round_trip_and_resize_with_nearest_neighbour(tmp_path):
    from crab.datasets.media import read_class_mask, write_class_mask

    classes = np.zeros((4, 6), dtype=np.int64)
    classes[1:3, 2:5] = 70  # woman
    classes[0, 0] = 1
    path = write_class_mask(tmp_path / "m.png", classes)
    assert np.array_equal(read_class_mask(path), classes) and read_class_mask(path).dtype == np.int64
    assert set(np.unique(read_class_mask(path, size=12))) == {0, 1, 70}  # no blended values
    palette = Image.fromarray(classes.astype(np.uint8), mode="L").convert("P")  # palette indices are classes
    palette.save(tmp_path / "p.png")
    assert read_class_mask(tmp_path / "p.png").shape == (4, 6)
    Image.new("RGB", (4, 4)).save(tmp_path / "rgb.png")
    with pytest.raises(DataError, match=r"rgb\.png: a class map must be single-channel \(L or P\), got mode RGB"):
        read_class_mask(tmp_path / "rgb.png")
    with pytest.raises(ValueError, match="0..255"):
        write_class_mask(tmp_path / "bad.png", np.full((2, 2), 300))
