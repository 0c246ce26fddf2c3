"""Media decoding with PyAV: probing, full-decode checks, Crab's frame sampling and audio cutting.

Crab (GeWu-Lab/Crab ``dataset/unified_dataset.py``; crab-reference.md sections 1.2 and 1.4) reads video
with decord and audio with librosa. Neither is usable beside our CPU torch, and the FFmpeg command-line
tool is not a dependency, so everything here goes through PyAV's bundled FFmpeg (stack-notes.md
section 7). What we keep from Crab, exactly:

- **Frames**: ``n = min(N, vlen)`` frames at indices ``np.arange(0, vlen, vlen / n).astype(int)``
  (uniform, starting at frame 0), decoded in one sequential pass (no seeking, so every index is exact),
  optionally resized straight to ``size x size`` ignoring the aspect ratio (Crab: decord at 224x224;
  we use PIL bilinear). ``vlen`` is the container's frame count, as decord's ``len(VideoReader)``.
- **Audio**: 16 kHz mono float32. The downmix is the channel mean, as ``librosa.load(mono=True)``.
  We resample with ``av.AudioResampler`` but keep the channels and average them ourselves, because
  FFmpeg's float downmix to mono weights each channel by 1/sqrt(2) (a sum, measured 1.414x louder than
  the mean on the sample clips), not by 1/2.
- **Clips**: :func:`segment_audio` is Crab's AVE / AVVP / AVCAP / AVS cut (N equal pieces of
  ``len // N`` samples); :func:`window_audio` generalises Crab's AVQA windows to any clip length.

A bad file raises :class:`~crab.errors.DataError` naming it and a reason ("file not found", "no audio
stream", "truncated or corrupt (...)", ...).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from PIL import Image

from crab.errors import DataError

__all__ = [
    "MediaInfo",
    "probe",
    "read_audio",
    "read_binary_mask",
    "read_class_mask",
    "read_frame_folder",
    "read_frames",
    "read_image",
    "sample_indices",
    "segment_audio",
    "verify_decodes",
    "window_audio",
    "write_binary_mask",
    "write_class_mask",
]

#: Share of the header's frame / sample count a full decode may miss before the file counts as
#: truncated. Real files decode a few samples more or less than their header says (AAC priming,
#: edit lists); a truncated one misses far more. Only packet-indexed streams (mp4 / mov: the header
#: counts the packets) are checked; mp3 / wav headers estimate the length from the file size.
_TRUNCATION_TOLERANCE = 0.02


@dataclass(frozen=True)
class MediaInfo:
    """What a media file holds, from its header (:func:`probe`) or a full decode (:func:`verify_decodes`).

    Fields of a missing stream are ``None`` (sizes, rates) or 0 (counts).

    Attributes:
        duration_s: seconds (container, else longest stream; ``None`` if unknown and nothing decoded).
        has_video / has_audio: whether the file has such a stream.
        width / height / fps: first video stream's frame size and average frame rate.
        num_frames: video frames: header count (or duration x fps) after :func:`probe`, decoded count
            after :func:`verify_decodes`.
        audio_sample_rate / audio_channels: first audio stream's native rate (Hz) and channel count.
        num_audio_samples: samples per channel at the native rate (header estimate, or decoded count).
    """

    duration_s: float | None
    has_video: bool
    width: int | None
    height: int | None
    fps: float | None
    num_frames: int
    has_audio: bool
    audio_sample_rate: int | None
    audio_channels: int | None
    num_audio_samples: int


def _ffmpeg_reason(error: Exception) -> str:
    """FFmpeg's own words for an error, without the file name PyAV appends."""
    return getattr(error, "strerror", None) or str(error)


@contextmanager
def _decode_errors(path: Path) -> Iterator[None]:
    """Turn an FFmpeg failure in the middle of a decode into a :class:`DataError`."""
    try:
        yield
    except (av.FFmpegError, ValueError) as error:
        raise DataError(path, f"truncated or corrupt ({_ffmpeg_reason(error)})") from error


@contextmanager
def _open(path: Path) -> Iterator[av.container.InputContainer]:
    """Open a media file for reading, turning every failure into a :class:`DataError`."""
    if not path.exists():
        raise DataError(path, "file not found")
    if not path.is_file():
        raise DataError(path, "not a media file / cannot open (not a regular file)")
    try:
        container = av.open(str(path), mode="r")
    except (av.FFmpegError, OSError, ValueError) as error:
        raise DataError(path, f"not a media file / cannot open ({_ffmpeg_reason(error)})") from error
    try:
        yield container
    finally:
        container.close()


def _header_info(path: Path, container: av.container.InputContainer) -> MediaInfo:
    """Read :class:`MediaInfo` from the container and stream headers, decoding nothing."""
    video = container.streams.video[0] if container.streams.video else None
    audio = container.streams.audio[0] if container.streams.audio else None
    for stream in (video, audio):
        # A header cut short can leave a stream without codec parameters.
        if stream is not None and stream.codec_context is None:
            raise DataError(path, f"truncated or corrupt ({stream.type} stream has no codec parameters)")
    durations = [float(s.duration * s.time_base) for s in (video, audio) if s is not None and s.duration]
    duration_s = container.duration / av.time_base if container.duration else max(durations, default=None)

    width = height = fps = None
    num_frames = 0
    if video is not None:
        width, height = video.codec_context.width, video.codec_context.height
        rate = video.average_rate or video.guessed_rate
        fps = float(rate) if rate else None
        num_frames = video.frames
        if num_frames <= 0 and fps and duration_s:
            num_frames = round(duration_s * fps)

    sample_rate = channels = None
    num_samples = 0
    if audio is not None:
        sample_rate = audio.codec_context.sample_rate or None
        channels = audio.codec_context.channels or None
        if sample_rate:
            stream_s = float(audio.duration * audio.time_base) if audio.duration else duration_s
            num_samples = round((stream_s or 0.0) * sample_rate)
    has_video, has_audio = video is not None, audio is not None
    return MediaInfo(
        duration_s, has_video, width, height, fps, num_frames, has_audio, sample_rate, channels, num_samples
    )


def _check_complete(path: Path, stream: av.stream.Stream | None, decoded: int, announced: int) -> None:
    """Raise if a packet-indexed stream decoded well short of its header (a silently truncated body)."""
    if stream is None or stream.frames <= 0:
        return
    what, slack = ("video frames", 1) if stream.type == "video" else ("audio samples", 2048)
    if decoded < announced * (1 - _TRUNCATION_TOLERANCE) - slack:
        raise DataError(path, f"truncated or corrupt (decoded {decoded} of {announced} {what})")


def _require(path: Path, info: MediaInfo, need_video: bool, need_audio: bool) -> None:
    if need_video and not info.has_video:
        raise DataError(path, "no video stream")
    if need_audio and not info.has_audio:
        raise DataError(path, "no audio stream")


def probe(path: str | Path, need_video: bool = False, need_audio: bool = False) -> MediaInfo:
    """Read a media file's header (fast; decodes nothing).

    Args:
        path: video (mp4, ...) or audio (mp3, wav, ...) file.
        need_video / need_audio: raise if the file has no such stream.

    Returns:
        The header's :class:`MediaInfo`.

    Raises:
        DataError: the file is missing, cannot be opened as media, or lacks a required stream.
    """
    path = Path(path)
    with _open(path) as container:
        info = _header_info(path, container)
    _require(path, info, need_video, need_audio)
    return info


def verify_decodes(path: str | Path, need_video: bool, need_audio: bool) -> MediaInfo:
    """Decode every audio and video packet of a file, catching files whose header opens but body fails.

    A file counts as truncated when FFmpeg reports a decode error, or when the decode yields less
    than 98 % of the frames / samples that a packet-indexed (mp4, mov) header announces.

    Args:
        path: media file.
        need_video / need_audio: require such a stream with at least one frame / sample.

    Returns:
        :class:`MediaInfo` with the *decoded* ``num_frames`` and ``num_audio_samples`` (and a duration
        computed from them when the header has none).

    Raises:
        DataError: missing / unopenable file, missing or empty stream, decode failure or truncation.
    """
    path = Path(path)
    with _open(path) as container:
        info = _header_info(path, container)
        _require(path, info, need_video, need_audio)
        streams = [*container.streams.video[:1], *container.streams.audio[:1]]
        num_frames = num_samples = 0
        with _decode_errors(path):
            for packet in container.demux(*streams) if streams else ():
                for frame in packet.decode():
                    if isinstance(frame, av.VideoFrame):
                        num_frames += 1
                    else:
                        num_samples += frame.samples
        if need_video and num_frames == 0:
            raise DataError(path, "video stream has no frames")
        if need_audio and num_samples == 0:
            raise DataError(path, "audio stream has no samples")
        # Streams must be read while the container is open (PyAV crashes otherwise).
        _check_complete(path, next(iter(container.streams.video), None), num_frames, info.num_frames)
        _check_complete(path, next(iter(container.streams.audio), None), num_samples, info.num_audio_samples)
    duration_s = info.duration_s
    if duration_s is None:
        duration_s = max(num_frames / (info.fps or 1.0), num_samples / (info.audio_sample_rate or 1))
    return dataclasses.replace(info, duration_s=duration_s, num_frames=num_frames, num_audio_samples=num_samples)


def _count_video_packets(path: Path) -> int:
    """Count the first video stream's packets without decoding (for containers whose header has no count)."""
    with _open(path) as container, _decode_errors(path):
        return sum(1 for packet in container.demux(container.streams.video[0]) if packet.size > 0)


def sample_indices(vlen: int, num_frames: int) -> np.ndarray:
    """Crab's frame indices ``arange(0, vlen, vlen / n).astype(int)``, ``n = min(num_frames, vlen)``.

    Returns:
        ``(n,)`` int64, increasing from 0. (A float-step ``arange`` can round to ``n + 1`` values, which
        would give Crab an extra frame; we keep ``n``.)
    """
    n = min(num_frames, vlen)
    return np.arange(0, vlen, vlen / n).astype(np.int64)[:n]


def read_frames(path: str | Path, num_frames: int, size: int | None = None) -> np.ndarray:
    """Decode Crab's uniformly sampled frames in one sequential pass.

    Args:
        path: video file.
        num_frames: frames wanted (N); fewer come back when the video is shorter.
        size: if given, resize every frame to ``size x size`` (PIL bilinear, aspect ratio ignored).

    Returns:
        ``(n, H, W, 3)`` uint8 RGB with ``n = min(num_frames, vlen)`` (H = W = size when resized).

    Raises:
        DataError: missing / unopenable file, no video stream or frames, a sampled frame undecodable.
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    path = Path(path)
    with _open(path) as container:
        if not container.streams.video:
            raise DataError(path, "no video stream")
        stream = container.streams.video[0]
        vlen = stream.frames if stream.frames > 0 else _count_video_packets(path)
        if vlen == 0:
            raise DataError(path, "video stream has no frames")
        indices = sample_indices(vlen, num_frames)  # (n,)
        wanted = set(indices.tolist())
        frames: list[np.ndarray] = []
        with _decode_errors(path):
            for index, frame in enumerate(container.decode(stream)):  # presentation order
                if index not in wanted:
                    continue
                if size is None:
                    frames.append(frame.to_ndarray(format="rgb24"))  # (H, W, 3)
                else:
                    image = frame.to_image().resize((size, size), Image.Resampling.BILINEAR)
                    frames.append(np.asarray(image, dtype=np.uint8))  # (size, size, 3)
                if len(frames) == len(indices):
                    break
    if len(frames) < len(indices):
        missing = int(indices[len(frames)])
        raise DataError(path, f"truncated or corrupt (frame {missing} of {vlen} announced could not be decoded)")
    return np.stack(frames)  # (n, H, W, 3)


def _decode_image(path: str | Path, mode: str) -> Image.Image:
    """The whole image converted to PIL ``mode`` (the conversion forces the full decode, so truncated files fail).

    Raises:
        DataError: the file is missing or is not a readable image.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(path, "file not found")
    try:
        with Image.open(path) as image:
            return image.convert(mode)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise DataError(path, f"not an image / cannot open ({error})") from error


def read_image(path: str | Path) -> np.ndarray:
    """Read a still image (JPEG, PNG, ...) as ``(H, W, 3)`` uint8 RGB (grey / palette expanded).

    Raises:
        DataError: the file is missing or is not a readable image.
    """
    return np.asarray(_decode_image(path, "RGB"), dtype=np.uint8)


def read_binary_mask(path: str | Path, size: int | None = None) -> np.ndarray:
    """A ground-truth mask as ``(H, W)`` bool: any non-zero grey level is the object (AVSBench's 0 / 255 PNGs).

    As Crab loads them (crab-reference 3.6: ``gray > 0``, nearest resize), so a resized mask stays binary.

    Args:
        path: the mask image.
        size: if given, resize to ``size x size`` with nearest neighbour.

    Raises:
        DataError: the file is missing or is not a readable image.
    """
    grey = _decode_image(path, "L")
    if size is not None and grey.size != (size, size):
        grey = grey.resize((size, size), Image.Resampling.NEAREST)
    return np.asarray(grey) > 0  # (H, W)


def write_binary_mask(path: str | Path, mask: np.ndarray) -> Path:
    """Write an ``(H, W)`` bool mask as AVSBench writes its ground truth: a grey PNG, 255 object / 0 background.

    :func:`read_binary_mask` reads it back unchanged, so predicted masks can be scored or shown like the
    ground truth. PIL's PNG encoder adds no timestamp: the same mask gives the same bytes.

    Raises:
        ValueError: ``mask`` is not two-dimensional.
    """
    if mask.ndim != 2:
        raise ValueError(f"{path}: a mask must be (H, W), got shape {tuple(mask.shape)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.where(mask, 255, 0).astype(np.uint8)).save(path, format="PNG")  # uint8 (H, W): grey "L"
    return path


def read_class_mask(path: str | Path, size: int | None = None) -> np.ndarray:
    """A semantic label map as ``(H, W)`` int64 class indices (AVSBench-semantic's ``labels_semantic`` PNGs).

    The pixel values are the indices (mode ``L``, or ``P`` whose palette indices are the classes, as the
    release's palette-coloured maps store them); nothing is converted, so no colour lookup can shift a class.

    Args:
        path: the label map.
        size: if given, resize to ``size x size`` with nearest neighbour (classes stay classes).

    Raises:
        DataError: the file is missing, not a readable image, or not single-channel (``L`` / ``P``).
    """
    path = Path(path)
    if not path.exists():
        raise DataError(path, "file not found")
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode not in ("L", "P"):
                raise DataError(path, f"a class map must be single-channel (L or P), got mode {image.mode}")
            classes = image.copy()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise DataError(path, f"not an image / cannot open ({error})") from error
    if size is not None and classes.size != (size, size):
        classes = classes.resize((size, size), Image.Resampling.NEAREST)
    return np.asarray(classes).astype(np.int64)  # (H, W)


def write_class_mask(path: str | Path, classes: np.ndarray) -> Path:
    """Write ``(H, W)`` class indices (0..255) as a grey PNG, as ``labels_semantic``; :func:`read_class_mask`
    reads it back unchanged. PIL's PNG encoder adds no timestamp: the same map gives the same bytes.

    Raises:
        ValueError: ``classes`` is not two-dimensional or holds values outside 0..255.
    """
    if classes.ndim != 2:
        raise ValueError(f"{path}: a class map must be (H, W), got shape {tuple(classes.shape)}")
    if classes.size and (classes.min() < 0 or classes.max() > 255):
        raise ValueError(f"{path}: class indices must be in 0..255, got {classes.min()}..{classes.max()}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(classes.astype(np.uint8)).save(path, format="PNG")
    return path


_TRAILING_NUMBER = re.compile(r"(\d+)$")


def read_frame_folder(folder: str | Path, size: int | None = None) -> np.ndarray:
    """Every PNG / JPEG frame of a frame folder in time order (AVSBench's ``visual_frames/.../{name}/``).

    Frames are ordered by the number that ends their stem (``{name}_1.png`` ... ``{name}_5.png``, MS3's
    ``{name}.mp4_1.png``, Crab's ``frames/0.jpg``), so ``_10`` sorts after ``_9``; the folder's frames are
    all read, as the masks label each of them.

    Args:
        folder: the frame folder.
        size: if given, resize every frame to ``size x size`` (PIL bilinear, aspect ratio ignored, as
            :func:`read_frames`).

    Returns:
        ``(n, H, W, 3)`` uint8 RGB.

    Raises:
        DataError: the folder is missing, holds no frames, a frame stem has no trailing number, two frames
            share one, or a frame is unreadable / of another size than the first.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(folder, "frame folder not found")
    numbered = {}
    for path in folder.iterdir():
        if path.suffix.lower() not in (".png", ".jpg", ".jpeg"):
            continue
        match = _TRAILING_NUMBER.search(path.stem)
        if match is None:
            raise DataError(path, "frame file name does not end with its frame number")
        if int(match.group(1)) in numbered:
            raise DataError(path, f"two frames numbered {int(match.group(1))} in one folder")
        numbered[int(match.group(1))] = path
    if not numbered:
        raise DataError(folder, "no PNG / JPEG frames in the folder")
    frames, first_shape = [], None
    for number in sorted(numbered):
        image = read_image(numbered[number])  # (H, W, 3)
        first_shape = first_shape or image.shape
        if image.shape != first_shape:
            raise DataError(numbered[number], f"frame is {image.shape[:2]}, the folder's first is {first_shape[:2]}")
        if size is not None:
            image = np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR))
        frames.append(image)
    return np.stack(frames)  # (n, H, W, 3)


def read_audio(path: str | Path, sample_rate: int = 16000) -> np.ndarray:
    """Decode a file's first audio stream to mono float32 at ``sample_rate``, downmixed by channel mean.

    Args:
        path: any file with an audio stream (mp4 / AAC, mp3, wav, ...).
        sample_rate: output rate in Hz.

    Returns:
        ``(L,)`` float32 in ``[-1, 1]``, ``L`` about ``duration_s * sample_rate``.

    Raises:
        DataError: missing / unopenable file, no audio stream, decode failure, no samples.
    """
    path = Path(path)
    with _open(path) as container:
        if not container.streams.audio:
            raise DataError(path, "no audio stream")
        info = _header_info(path, container)
        stream = container.streams.audio[0]
        # layout=None keeps the input channels; we average them below.
        resampler = av.AudioResampler(format="fltp", layout=None, rate=sample_rate)
        chunks: list[np.ndarray] = []
        num_samples = 0  # at the native rate, to compare with the header
        with _decode_errors(path):
            for frame in container.decode(stream):
                num_samples += frame.samples
                chunks.extend(out.to_ndarray() for out in resampler.resample(frame))  # (C, l) each
            chunks.extend(out.to_ndarray() for out in resampler.resample(None))
        if num_samples == 0 or not chunks:
            raise DataError(path, "audio stream has no samples")
        _check_complete(path, stream, num_samples, info.num_audio_samples)
    wave = np.concatenate(chunks, axis=1).mean(axis=0)  # (C, L) -> (L,)
    return np.clip(wave, -1.0, 1.0).astype(np.float32, copy=False)


def segment_audio(wave: np.ndarray, num_segments: int) -> np.ndarray:
    """Cut a waveform into ``num_segments`` equal consecutive pieces (Crab's AVE / AVVP / AVCAP / AVS cut).

    Piece ``i`` is ``wave[i * nps : (i + 1) * nps]``, ``nps = len(wave) // N``; the remainder is dropped.
    Crab calls a piece a "second": it is ``len / N`` samples, exactly 1 s for a 10 s clip at 16 kHz and
    N = 10, not for other lengths. Crab's zero padding of short pieces cannot trigger with this ``nps``.

    Args:
        wave: ``(L,)`` waveform.
        num_segments: N.

    Returns:
        ``(num_segments, L // num_segments)``, same dtype as ``wave`` (a copy).

    Raises:
        ValueError: a non-1-D wave, ``num_segments < 1`` or ``L < num_segments`` (empty pieces).
    """
    nps = len(wave) // num_segments if num_segments >= 1 else 0
    if wave.ndim != 1 or nps == 0:
        raise ValueError(f"a wave of shape {wave.shape} cannot be cut into {num_segments} non-empty segments")
    return wave[: nps * num_segments].reshape(num_segments, nps).copy()  # (N, nps)


def window_audio(
    wave: np.ndarray, sample_rate: int, num_windows: int, window_s: float, lead_s: float = 0.5
) -> np.ndarray:
    """Cut ``num_windows`` evenly spaced windows, zero-padded outside the clip (Crab's AVQA audio, generalised).

    With ``D = len(wave) / sample_rate`` seconds and ``t_k = k * D / N``, window ``k`` starts at
    ``t_k - lead_s`` and lasts ``window_s`` seconds; samples outside the clip are zeros. Crab
    (``unified_dataset.py``, AVQA) assumes 60 s, calls ``len / 60`` samples a "second" and takes
    ``[t - 0.5, t + 1.5]`` at ``t = 0, 6, ..., 54``: for ``D = 60, N = 10, window_s = 2`` this is exactly
    that; for other lengths we keep true seconds and spread the windows over the real duration.

    Args:
        wave: ``(L,)`` waveform.
        sample_rate: Hz.
        num_windows: N.
        window_s: window length in seconds.
        lead_s: how far a window starts before its time point, in seconds.

    Returns:
        ``(num_windows, round(window_s * sample_rate))``, dtype of ``wave``.

    Raises:
        ValueError: non-positive ``num_windows`` / ``window_s`` / ``sample_rate`` or a non-1-D wave.
    """
    if num_windows < 1 or window_s <= 0 or sample_rate <= 0 or wave.ndim != 1:
        raise ValueError(f"bad window request: wave {wave.shape}, {num_windows} x {window_s} s at {sample_rate} Hz")
    length = len(wave)
    win = round(window_s * sample_rate)
    out = np.zeros((num_windows, win), dtype=wave.dtype)  # (N, win)
    for k in range(num_windows):
        # t_k * sr = k * L / N samples: exact in samples, no rounding through seconds.
        start = round(k * length / num_windows - lead_s * sample_rate)
        lo, hi = max(start, 0), min(start + win, length)
        if hi > lo:
            out[k, lo - start : hi - start] = wave[lo:hi]
    return out
