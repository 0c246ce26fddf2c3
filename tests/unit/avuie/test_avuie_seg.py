"""SEG (segmentation pre-training) records: answer format and the LVIS builder."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

from PIL import Image

from crab.avuie.avs import MASK_BLOCK
from crab.avuie.schema import AvuieRecord
from crab.avuie.seg import SegAnswer, SegLabel, format_answer, label_from_dict, parse_answer
from crab.avuie.seg_build import MIN_AREA_FRACTION, build_seg
from crab.datasets.lvis import LvisRecord
from crab.tasks import TASKS, Task


def _instance(tmp_path: Path, item_id: str, area: float, name: str = "baseball_bat", split: str = "train"):
    mask = tmp_path / "binary_mask" / f"{item_id}.png"
    mask.parent.mkdir(exist_ok=True)
    Image.new("L", (100, 50)).save(mask)  # 5000 px: the minimum is MIN_AREA_FRACTION * 5000 ~ 16 px
    return LvisRecord(
        item_id=item_id, image_id=7, category_id=3, name=name, definition="a club used in baseball.",
        bbox=(1.0, 2.0, 10.0, 5.0), area=area, split=split, image_path=tmp_path / "train2017" / "000000000007.jpg",
        mask_path=mask, source=f"train_samples.json[{item_id}]",
    )  # fmt: skip


def test_answer_is_crabs_mask_sentence_and_parses() -> None:
    label = SegLabel(mask="m.png", name="dog", definition="a pet")
    assert format_answer(label, "ignored reasoning") == f"It is {MASK_BLOCK}."
    assert parse_answer(format_answer(label, None)) == SegAnswer()
    assert parse_answer("It is.") is None and parse_answer(f"{MASK_BLOCK} {MASK_BLOCK}") is None
    assert label_from_dict(label.to_dict()) == label


def test_builder_keeps_large_instances_and_names_the_category(tmp_path: Path) -> None:
    minimum = MIN_AREA_FRACTION * 100 * 50
    tally: Counter[str] = Counter()
    records = build_seg(
        [_instance(tmp_path, "1", minimum + 1), _instance(tmp_path, "2", minimum - 1), _instance(tmp_path, "3", 900)],
        {}, None, True, random.Random(0), tally,
    )  # fmt: skip
    assert [r.item_id for r in records] == ["1", "3"] and tally == {"generated": 2, "too_small": 1}
    record = records[0]
    assert (
        record.id == "seg/train/1"
        and record.dataset == "lvis"
        and record.media == {"image": (tmp_path / "train2017" / "000000000007.jpg").as_posix()}
    )
    assert record.instruction == TASKS[Task.SEG].instruction(name="baseball bat", definition="a club used in baseball")
    assert "<audio>" not in record.instruction and record.instruction.count("<image>") == 1
    assert record.label == {"frame": 0, "mask": (tmp_path / "binary_mask" / "1.png").as_posix(),
                            "name": "baseball bat", "definition": "a club used in baseball"}  # fmt: skip
    assert not record.reasoning and record.target == f"It is {MASK_BLOCK}."
    assert AvuieRecord.from_json(record.to_json()) == record
