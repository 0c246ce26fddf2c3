"""Fixtures for the quality-gate tests: tiny real mp4s, and raw datasets with planted bad items.

The media are written once per session with PyAV (10 s, 32x32, 2 fps H.264 + AAC 16 kHz mono; single
encoder thread). Good clips are byte copies of one encode. :func:`raw_datasets` writes AVE, MUSIC-AVQA and
VALOR in their native layouts (dataset-layouts.md sections 1, 3 and 7) and returns, per dataset, the
``source`` of every good item and, for every planted bad item, a piece of the reason it must be
quarantined with.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np
import pytest

from crab.config import Params, load_params

REPO = Path(__file__).resolve().parents[3]


def write_mp4(
    path: Path, duration_s: int = 10, sample_rate: int = 16000, audio: str | None = "tone", fragmented: bool = False
) -> None:
    """Write a 32x32, 2 fps H.264 mp4 with an AAC mono track.

    Args:
        audio: ``"tone"`` (a 440 Hz sine), ``"empty"`` (an audio stream without samples; needs
            ``fragmented`` so the muxer keeps the empty track) or None (no audio stream).
        fragmented: write a fragmented mp4 (moov first, empty tracks kept); else ``faststart``.
    """
    options = {"movflags": "frag_keyframe+empty_moov" if fragmented else "faststart"}
    with av.open(str(path), "w", format="mp4", options=options) as out:
        video = out.add_stream("libx264", rate=2, options={"threads": "1", "preset": "ultrafast"})
        video.width = video.height = 32
        video.pix_fmt = "yuv420p"
        sound = out.add_stream("aac", rate=sample_rate, layout="mono") if audio else None
        for i in range(duration_s * 2):
            image = np.full((32, 32, 3), (i * 20) % 256, dtype=np.uint8)  # (H, W, 3)
            out.mux(video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        out.mux(video.encode(None))
        if sound is not None and audio == "tone":
            n = duration_s * sample_rate
            wave = (0.3 * np.sin(2 * np.pi * 440 * np.arange(n) / sample_rate)).astype(np.float32)  # (n,)
            for offset in range(0, n, 1024):
                frame = av.AudioFrame.from_ndarray(wave[None, offset : offset + 1024], format="fltp", layout="mono")
                frame.sample_rate = sample_rate
                frame.pts = offset
                out.mux(sound.encode(frame))
        if sound is not None:
            out.mux(sound.encode(None))


@dataclass(frozen=True)
class MediaKit:
    """One file per kind of clip; ``place(kind, dest)`` copies it into a dataset."""

    files: dict[str, Path]

    def place(self, kind: str, dest: Path) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        if kind != "missing":
            shutil.copyfile(self.files[kind], dest)


@pytest.fixture(scope="session")
def media_kit(tmp_path_factory: pytest.TempPathFactory) -> MediaKit:
    folder = tmp_path_factory.mktemp("media")
    files = {kind: folder / f"{kind}.mp4" for kind in ("good", "short", "noaudio", "emptyaudio", "rate8k", "truncated")}
    write_mp4(files["good"])
    write_mp4(files["short"], duration_s=5)
    write_mp4(files["noaudio"], audio=None)
    write_mp4(files["emptyaudio"], audio="empty", fragmented=True)
    write_mp4(files["rate8k"], sample_rate=8000)
    data = files["good"].read_bytes()
    files["truncated"].write_bytes(data[: len(data) // 2])
    return MediaKit(files)


@dataclass
class Planted:
    """Expected verdicts for one dataset: good sources, and bad source -> a piece of its reason."""

    good: list[str] = field(default_factory=list)
    bad: dict[str, str] = field(default_factory=dict)


# AVE rows: (split, category, video_id, quality, start, end, media kind, expected reason or None = good).
AVE_ROWS = [
    ("train", "Church bell", "aveGood0001", "good", 0, 10, "good", None),
    ("train", "Bark", "aveMulti001", "good", 0, 4, "good", None),  # multi-event video, disjoint ranges
    ("train", "Banjo", "aveMulti001", "good", 6, 10, "good", None),
    ("train", "Race car, auto racing", "-aveGood002", "good", 2, 7, "good", None),
    ("train", "Goat", "aveWarn0001", "unsure", 1, 5, "good", None),  # quality is a warning only
    ("train", "Flute", "aveDup00001", "good", 3, 8, "good", None),
    ("train", "Flute", "aveDup00001", "good", 3, 8, "good", "duplicate row"),
    ("train", "Clock", "aveTrunc001", "good", 0, 10, "truncated", "truncated or corrupt"),
    ("train", "Clock", "aveNoAud001", "good", 0, 10, "noaudio", "no audio stream"),
    ("train", "Clock", "aveEmptyA01", "good", 0, 10, "emptyaudio", "audio stream has no samples"),
    ("train", "Clock", "aveMissing1", "good", 0, 10, "missing", "file not found"),
    ("val", "Truck", "aveShort001", "good", 0, 4, "short", "clip lasts 5.00 s, expected 10 +- 0.5 s"),
    ("val", "Truck", "aveRate8k01", "good", 0, 10, "rate8k", "audio sample rate 8000 Hz is not one of"),
    ("val", "Dog", "aveUnknown1", "good", 0, 10, "good", "unknown category 'Dog'"),
    ("val", "Bus", "aveGood0003", "good", 1, 9, "good", None),
    ("test", "Bark", "aveReverse1", "good", 7, 3, "good", "reversed or empty range: start 7 s, end 3 s"),
    ("test", "Bark", "avePastEnd1", "good", 5, 12, "good", "range ends at 12 s, past the clip's end (10 s)"),
    ("test", "Horse", "aveConflict", "good", 0, 6, "good", "conflicting annotations"),
    ("test", "Cat", "aveConflict", "good", 4, 10, "good", "conflicting annotations"),
    ("test", "Mandolin", "aveGood0004", "good", 0, 3, "good", None),
]
AVE_UNPARSABLE = ("test", "Bark&aveUnparse1&good&x&5", "StartTime 'x' is not a number")


def _q(qid: int, vid: str, qtype: list[str] | str, content: str, values: list[str] | str, answer: str) -> dict:
    return {
        "video_id": vid,
        "question_id": qid,
        "type": qtype if isinstance(qtype, str) else json.dumps(qtype),
        "question_content": content,
        "templ_values": values if isinstance(values, str) else json.dumps(values),
        "question_deleted": 0,
        "anser": answer,
    }


# MUSIC-AVQA entries per split: (entry, media kind of its video, expected reason or None = good).
AVQA_ENTRIES = {
    "train": [
        (_q(1, "00000001", ["Audio", "Counting"], "Are there <Object> and <Object> sound? ", ["piano", "violin"], "yes"), "good", None),
        (_q(2, "00000001", ["Audio-Visual", "Counting"], "How many sounding <Object> in the video\uff1f", ["violin"], "two"), "good", None),
        (_q(3, "00000002", ["Audio-Visual", "Counting"], "How many sounding <Object> in the video?", ["cello"], "one"), "good", None),
        (_q(4, "00000002", ["Visual", "Location"], "What is the instrument on the <LR> of <Object>?", ["left", "cello"], "piano"), "good", None),
        (_q(100, "00000002", ["Audio", "Counting"], "Is there a <Object> sound?", ["cello"], "yes"), "good", "question_id 100 occurs more than once"),
        (_q(5, "00000002", "Audio, Counting", "Is there a <Object> sound?", ["cello"], "yes"), "good", "is not a list literal"),
        (_q(6, "00000002", ["Audio", "Location"], "Where is the performance?", [], "indoor"), "good", "unknown question type"),
        (_q(7, "00000002", ["Audio", "Counting"], "Where is the performance?", [], "indoor"), "good", "is not a [\"Audio\", \"Counting\"] template"),
        (_q(8, "00000002", ["Audio", "Counting"], "Is the <Object> purple?", ["cello"], "no"), "good", "unknown question template"),
        (_q(9, "00000002", ["Audio", "Counting"], "Is there a <Object> sound?", ["kazoo"], "no"), "good", "'kazoo' is not a <Object> value"),
        (_q(10, "00000002", ["Audio", "Counting"], "Is there a <Object> sound?", ["cello"], "maybe"), "good", "answer 'maybe' is not in"),
        (_q(11, "00000002", ["Audio", "Counting"], "Are there <Object> and <Object> sound? ", ["cello"], "no"), "good", "1 value(s) for 2 placeholder(s)"),
        (_q(12, "00000003", ["Audio", "Counting"], "Is there a <Object> sound?", ["cello"], "yes"), "truncated", "truncated or corrupt"),
    ],
    "val": [
        (_q(20, "00000004", ["Audio-Visual", "Temporal"], "Which <Object> makes the sound <FL>?", ["violin", "first"], "left"), "good", None),
    ],
    "test": [
        (_q(30, "00000005", ["Audio-Visual", "Existential"], "Is there a voiceover?", [], "no"), "good", None),
        (_q(100, "00000005", ["Audio", "Counting"], "Is there a <Object> sound?", ["cello"], "no"), "good", "question_id 100 occurs more than once"),
    ],
}  # fmt: skip

# VALOR entries per split: (video_id, desc, media kind, expected reason or None = good).
VALOR_ENTRIES = {
    "train": [
        ("valorGood01", "A man plays a guitar while a dog barks.", "good", None),
        ("valorGood02", "Rain falls on a roof.", "good", None),
        ("valorDup001", "A train passes by.", "good", "occurs more than once"),
        ("valorEmpty1", "   ", "good", "empty desc"),
        ("valorMiss01", "A cat meows.", "missing", "file not found"),
        ("valorNoAud1", "A bird sings.", "noaudio", "no audio stream"),
    ],
    "val": [
        ("valorGood03", "Children laugh in a park.", "good", None),
        ("valorDup001", "A train passes by, loudly.", "good", "occurs more than once"),
    ],
}


def write_raw_datasets(root: Path, kit: MediaKit) -> dict[str, Planted]:
    """Write the three datasets under ``root`` (ave/, music_avqa/, valor/) with the planted items."""
    planted = {name: Planted() for name in ("ave", "music_avqa", "valor")}
    ave = root / "ave"
    lines: dict[str, list[str]] = {s: ["Category&VideoID&Quality&StartTime&EndTime"] for s in ("train", "val", "test")}
    files = {"train": "trainSet.txt", "val": "valSet.txt", "test": "testSet.txt"}
    for split, category, vid, quality, start, end, kind, reason in AVE_ROWS:
        lines[split].append(f"{category}&{vid}&{quality}&{start}&{end}")
        source = f"{ave / files[split]}:{len(lines[split])}"
        (planted["ave"].good.append(source) if reason is None else planted["ave"].bad.__setitem__(source, reason))
        if not (ave / "AVE" / f"{vid}.mp4").exists():
            kit.place(kind, ave / "AVE" / f"{vid}.mp4")
    split, line, reason = AVE_UNPARSABLE
    lines[split].append(line)
    planted["ave"].bad[f"{ave / files[split]}:{len(lines[split])}"] = reason
    for split, rows in lines.items():
        (ave / files[split]).write_text("\n".join(rows) + "\n", encoding="utf-8")

    avqa = root / "music_avqa"
    (avqa / "json_update").mkdir(parents=True)
    for split, entries in AVQA_ENTRIES.items():
        path = avqa / "json_update" / f"avqa-{split}.json"
        path.write_text(json.dumps([e for e, _, _ in entries], indent=2, ensure_ascii=False), encoding="utf-8")
        for index, (entry, kind, reason) in enumerate(entries):
            source = f"{path}[{index}]"
            (
                planted["music_avqa"].good.append(source)
                if reason is None
                else planted["music_avqa"].bad.__setitem__(source, reason)
            )
            if not (avqa / "video" / f"{entry['video_id']}.mp4").exists():
                kit.place(kind, avqa / "video" / f"{entry['video_id']}.mp4")

    valor = root / "valor"
    valor.mkdir()
    for split, entries in VALOR_ENTRIES.items():
        path = valor / f"{split}_samples.json"
        path.write_text(json.dumps([{"video_id": v, "desc": d} for v, d, _, _ in entries], indent=2), encoding="utf-8")
        for index, (vid, _, kind, reason) in enumerate(entries):
            source = f"{path}[{index}]"
            (
                planted["valor"].good.append(source)
                if reason is None
                else planted["valor"].bad.__setitem__(source, reason)
            )
            if not (valor / "video_data" / f"{vid}.mp4").exists():
                kit.place(kind, valor / "video_data" / f"{vid}.mp4")
    return planted


@pytest.fixture(scope="session")
def raw_datasets(tmp_path_factory: pytest.TempPathFactory, media_kit: MediaKit) -> tuple[Path, dict[str, Planted]]:
    """(root holding ave/, music_avqa/, valor/; planted verdicts per dataset)."""
    root = tmp_path_factory.mktemp("raw")
    return root, write_raw_datasets(root, media_kit)


def make_params(raw_root: Path, tasks: list[str], max_failure_rate: float, **roots: str) -> Params:
    """The real params.yaml, pointed at ``raw_root`` (absolute paths), with the given tasks and threshold."""
    params = load_params(REPO / "params.yaml")
    datasets = dataclasses.replace(
        params.datasets,
        raw_root=str(raw_root),
        ave=roots.get("ave", str(raw_root / "ave")),
        llp=roots.get("llp", str(raw_root / "llp")),
        avsbench=roots.get("avsbench", str(raw_root / "avsbench")),
        music_avqa=roots.get("music_avqa", str(raw_root / "music_avqa")),
        valor=roots.get("valor", str(raw_root / "valor")),
        ref_avs=roots.get("ref_avs", str(raw_root / "ref_avs")),
        avss=roots.get("avss", str(raw_root / "avss")),
        lvis=roots.get("lvis", str(raw_root / "lvis")),
    )
    return dataclasses.replace(
        params,
        datasets=datasets,
        validation=dataclasses.replace(params.validation, max_failure_rate=max_failure_rate),
        avuie=dataclasses.replace(params.avuie, tasks=tasks),
    )
