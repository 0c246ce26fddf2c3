"""A small synthetic copy of Crab's released AV-UIE files, over tiny native media, for the importer's tests.

:func:`write_release` writes, under the current directory, the sample lists in Crab's exact formats (the authors'
absolute ``/group/40061/cserdu/data/...`` paths, numbers stored as strings in some rows as the Hugging Face copy does,
``converted_label/*.txt`` texts with a trailing newline) into ``release/``, and the media they name into the default
dataset roots of ``params.yaml`` (``data/raw/<dataset>``): placeholder mp4s (the importer decodes nothing), and real
tiny JPEG frames and PNG masks for AVSBench-semantic. Every row written here is good; tests plant bad rows with
:func:`add_rows`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

CRAB = "/group/40061/cserdu/data"
RELEASE = Path("release")
AVE_ROOT, AVQA_ROOT, LLP_ROOT = Path("data/raw/ave"), Path("data/raw/music_avqa"), Path("data/raw/llp")
AVS_ROOT, VALOR_ROOT = Path("data/raw/avss"), Path("data/raw/valor")

#: The ARIG box of the S4 train clip's mask (end-exclusive, 224 x 224 frame).
ARIG_BOX = (10, 20, 50, 60)

AVE_TEXT = {
    "aveA0000001": "A dog is seen from the start; its barking is heard from second 2 to second 6. So the audible and "
    "visible event in the video is <event> Bark </event>, and the time range is <range> 2,6 </range>.\n",
    "aveA0000002": "A church bell rings throughout. So the audible and visible event in the video is <event> Church "
    "bell </event>, and the time range is <range> 0,10 </range>.\n",
}
AVQA_TEXT = {
    11: "A violin is played on the left, and it is heard. So the answer is <answer> yes </answer>.\n",
    12: "The violin starts first, then the piano. So the answer is <answer> violin </answer>.\n",
}
AVVP_LABEL = (
    "Speech is heard at the start and end, a dog barks from second 2 to 6, and a dog is visible all along. "
    "Therefore, visual and audio events are: <visual>Dog,(0 10)</visual> and <audio>Speech,(0 4)(6 10); Dog,(2 6)</audio>"
)

AVE_ROWS = {
    "train": [
        {"event": "Bark", "vid": "aveA0000001", "start_time": "2", "end_time": "6"},  # strings, as on Hugging Face
        {"event": "Church bell", "vid": "aveA0000002", "start_time": 0, "end_time": 10},
    ],
    "test": [{"event": "Cat", "vid": "aveA0000003", "start_time": 1, "end_time": 5}],
}


def avqa_row(qid: Any, vid: str, qtype: Any, question: str, answer: str) -> dict[str, Any]:
    return {
        "video_id": vid, "question_id": qid, "type": qtype,
        "video_path": f"{CRAB}/music-avqa/video_data/{vid}.mp4", "audio_path": f"{CRAB}/music-avqa/audio_data/{vid}.mp3",
        "question": question, "answer": answer,
    }  # fmt: skip


AVQA_ROWS = {
    "train": [
        avqa_row(11, "00000001", ["Audio", "Counting"], "Is there a violin sound?", "yes"),
        avqa_row(
            "12", "00000001", "['Audio-Visual', 'Temporal']", "What is the first instrument that comes in?", "violin"
        ),
    ],
    "test": [avqa_row(13, "00000002", ["Visual", "Location"], "Where is the performance?", "indoor")],
}
AVVP_ROWS = {
    "train": [
        {"filename": "llpA0000001_30_40", "vid": "llpA0000001", "event": "Speech, Dog", "label": AVVP_LABEL},
        {"filename": "llpA0000004_0_10", "vid": "llpA0000004", "event": "Cat"},  # no label: Crab skips it
    ],
    "test": [
        {
            "filename": "llpA0000002_0_10",
            "vid": "llpA0000002",
            "event": "<visual>Cat,(0 5)</visual> and <audio>Cat,(3 8)</audio>",
        }
    ],
}


def avs_row(uid: str, a_obj: str, split: str, subset: str) -> dict[str, str]:
    return {"vid": uid[:11], "uid": uid, "s_min": "0", "s_sec": "0", "a_obj": a_obj, "split": split, "label": subset}


AVS_ROWS = {
    "s4": [avs_row("s4vid000001_0_5000", "dog", "train", "v1s"), avs_row("s4vid000002_0_5000", "dog_barking", "test", "v1s")],
    "ms3": [avs_row("ms3vid00001_1", "man_guitar", "train", "v1m")],
    "avss": [avs_row("avssvid0001_0_10000", "woman_piano", "train", "v2"), avs_row("avssvid0002_0_10000", "dog", "test", "v2")],
}  # fmt: skip


def arig_row(uid: str, index: int, top_left: Any, bottom_right: Any, a_obj: str, split: str = "train") -> dict:
    folder = f"{CRAB}/AVS/v1s/{uid}"
    return {
        "split": split, "audio_path": f"{folder}/audio.wav", "frame_path": f"{folder}/frames/{index}.jpg",
        "mask_path": f"{folder}/labels_semantic/{index}.png", "top_left": top_left, "bottom_right": bottom_right,
        "a_obj": a_obj,
    }  # fmt: skip


ARIG_ROWS = [
    arig_row("s4vid000001_0_5000", 0, list(ARIG_BOX[:2]), list(ARIG_BOX[2:]), "dog_barking"),
    arig_row("s4vid000002_0_5000", 3, "[5, 6]", "[100, 120]", "dog", split="test"),  # points as strings
    arig_row("s4vid000002_0_5000", 4, [1000, 1000], [1000, 1000], "dog", split="test"),  # sentinel: skipped
]
VALOR_ROWS = {"train": [{"video_id": "valor001", "desc": "A man  plays a violin.\n"}],
              "val": [{"video_id": "valor002", "desc": "Rain falls on a roof."}]}  # fmt: skip


def touch(path: Path, data: bytes = b"\x00") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def write_json(path: Path, rows: list[Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows, indent=1), encoding="utf-8")


def add_rows(path: Path, rows: list[Any]) -> list[str]:
    """Append rows to a sample list; return their sources ``"<file>[<index>]"``."""
    existing = json.loads(path.read_text(encoding="utf-8"))
    write_json(path, existing + rows)
    return [f"{path.as_posix()}[{i}]" for i in range(len(existing), len(existing) + len(rows))]


def _avs_clip(folder: Path, num_frames: int, mask_value: int) -> None:
    """``audio.wav``, ``frames/{i}.jpg`` and ``labels_semantic/{i}.png`` (the ARIG box marked with ``mask_value``)."""
    touch(folder / "audio.wav")
    mask = np.zeros((224, 224), dtype=np.uint8)  # (H, W)
    x0, y0, x1, y1 = ARIG_BOX
    mask[y0:y1, x0:x1] = mask_value
    for i in range(num_frames):
        (folder / "frames").mkdir(parents=True, exist_ok=True)
        (folder / "labels_semantic").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((8, 8, 3), 40 * i % 256, dtype=np.uint8)).save(folder / "frames" / f"{i}.jpg")
        Image.fromarray(mask).save(folder / "labels_semantic" / f"{i}.png")


def write_release() -> None:
    """Write the release under ``release/`` and its media under ``data/raw/`` (module docstring)."""
    for split, name in (("train", "valid_train_samples.json"), ("test", "test_samples.json")):
        write_json(RELEASE / "ave_data" / name, AVE_ROWS[split])
        write_json(RELEASE / "music_avqa_data" / name, AVQA_ROWS[split])
    for split in ("train", "test"):
        write_json(RELEASE / "avvp_data" / f"{split}_samples.json", AVVP_ROWS[split])
    for task, rows in AVS_ROWS.items():
        write_json(RELEASE / "AVS" / f"{task}_samples.json", rows)
    write_json(RELEASE / "AVS" / "v1s_grounding_samples.json", ARIG_ROWS)
    for split, rows in VALOR_ROWS.items():
        write_json(RELEASE / "valor" / f"{split}_samples.json", rows)

    for vid, text in AVE_TEXT.items():
        touch(AVE_ROOT / "converted_label" / f"{vid}.txt", text.encode())
    for qid, text in AVQA_TEXT.items():
        touch(AVQA_ROOT / "converted_label" / f"{qid}.txt", text.encode())
    for rows in AVE_ROWS.values():
        for row in rows:
            touch(AVE_ROOT / "AVE" / f"{row['vid']}.mp4")
    for vid in ("00000001", "00000002"):
        touch(AVQA_ROOT / "video_data" / f"{vid}.mp4")
    for vid in ("llpA0000001", "llpA0000002", "llpA0000004"):
        touch(LLP_ROOT / "llp_videos" / f"{vid}.mp4")
    for row in AVS_ROWS["s4"]:
        _avs_clip(AVS_ROOT / "v1s" / row["uid"], 5, 17)  # 17 = "dog" in labels_semantic
    for row in AVS_ROWS["ms3"]:
        _avs_clip(AVS_ROOT / "v1m" / row["uid"], 5, 41)
    for row in AVS_ROWS["avss"]:
        _avs_clip(AVS_ROOT / "v2" / row["uid"], 10, 70)
    for rows in VALOR_ROWS.values():
        for row in rows:
            touch(VALOR_ROOT / "video_data" / f"{row['video_id']}.mp4")
