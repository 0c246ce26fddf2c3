"""``validate_raw`` over Crab's LVIS samples: AV-Synth output passes, planted bad items are quarantined with their reasons.

Runs of the whole stage (reader -> frame -> image and mask decode -> Great Expectations -> report) over the
output of :func:`crab.synth.lvis.write_lvis` (48 px) as written, then over a copy with one bad file or field
planted per sample (and deviations within the tolerances that must pass). The name check, which the reader
never lets through, is fed hand-made records in place of the reader.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import REPO
from PIL import Image

from crab.config import Params, load_params
from crab.datasets.lvis import LvisRecord, read_lvis
from crab.datasets.records import ReadResult
from crab.quality import raw
from crab.quality.lvis import AREA_REL_TOLERANCE
from crab.quality.quarantine import GroupReport
from crab.quality.raw import validate_raw
from crab.synth.lvis import write_lvis

PARAMS = load_params(REPO / "params.yaml")
SIZE = 48
CFG = dataclasses.replace(PARAMS.synth.lvis, num_train_images=12, num_val_images=4)


def _params(lvis: Path) -> Params:
    """The real params.yaml with only ``lvis`` pointed somewhere (the other roots do not exist)."""
    absent = str(lvis.parent / "absent")
    names = ("ave", "llp", "avsbench", "music_avqa", "valor", "ref_avs", "avss")
    datasets = dataclasses.replace(PARAMS.datasets, **dict.fromkeys(names, absent), lvis=str(lvis))
    return dataclasses.replace(
        PARAMS,
        datasets=datasets,
        validation=dataclasses.replace(PARAMS.validation, max_failure_rate=1.0),
        avuie=dataclasses.replace(PARAMS.avuie, tasks=[]),
    )


def _run(lvis: Path, workdir: Path) -> GroupReport:
    workdir.mkdir(parents=True, exist_ok=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(workdir)
        result = validate_raw(_params(lvis))
    assert [name for name, group in result.groups.items() if group.present] == ["lvis"]
    return result.groups["lvis"]


@pytest.fixture(scope="module")
def synth_lvis(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth") / "lvis"
    video = dataclasses.replace(PARAMS.synth.video, size=SIZE)
    assert write_lvis(root, CFG, video, PARAMS.synth.difficulty, seed=5) == 16
    return root


def test_synth_output_passes_with_nothing_quarantined(synth_lvis: Path, tmp_path: Path) -> None:
    group = _run(synth_lvis, tmp_path)
    assert group.num_items == len(read_lvis(synth_lvis).records) > 16
    assert group.quarantined == ()
    assert all(e.success for e in group.expectations), [e for e in group.expectations if not e.success]
    assert len(group.expectations) == 12  # 9 image / mask / geometry checks + name, def, id
    assert group.root == str(synth_lvis)


def _mask(record: LvisRecord) -> np.ndarray:
    with Image.open(record.mask_path) as image:
        return np.asarray(image).copy()  # (H, W) uint8, 0 / 255


def _png(path: Path, array: np.ndarray, mode: str | None = None) -> None:
    image = Image.fromarray(array)
    (image.convert(mode) if mode else image).save(path, format="PNG")


def test_planted_bad_items_are_quarantined_with_their_reasons(synth_lvis: Path, tmp_path: Path) -> None:
    root = tmp_path / "lvis"
    shutil.copytree(synth_lvis, root)
    records = read_lvis(root).records
    files = {split: root / f"{split}_samples.json" for split in ("train", "val")}
    entries = {split: json.loads(path.read_text(encoding="utf-8")) for split, path in files.items()}

    def entry(record: LvisRecord) -> dict[str, Any]:
        return entries[record.split][int(record.source.rsplit("[", 1)[1][:-1])]

    # The first image gets a corrupt JPEG: every sample of it is quarantined. The others get one plant each.
    broken = records[0].image_path
    broken.write_bytes(b"not a jpeg")
    bad = {r.source: (f"image not decodable: {broken.name}: not an image",) for r in records if r.image_path == broken}
    rest = iter([r for r in records if r.image_path != broken])

    r = next(rest)  # a 64 x 64 mask holding the true one: only its size is wrong
    big = np.zeros((64, 64), np.uint8)
    big[:SIZE, :SIZE] = _mask(r)
    _png(r.mask_path, big)
    bad[r.source] = (
        f"mask size differs from its image's: {r.mask_path.name} is 64x64 px, image {r.image_path.name} 48x48 px",
    )
    r = next(rest)
    _png(r.mask_path, (_mask(r) // 255 * 128).astype(np.uint8))
    bad[r.source] = (f"mask values other than 0 (background) and 255 (the object): {r.mask_path.name} holds 128",)
    r = next(rest)
    _png(r.mask_path, _mask(r), mode="RGB")
    bad[r.source] = (f"mask not single-channel 8-bit (L) or 1-bit (1): {r.mask_path.name} is mode RGB",)
    r = next(rest)
    r.mask_path.write_bytes(b"not a png")
    bad[r.source] = (f"mask not decodable: {r.mask_path.name}: not an image",)
    r = next(rest)
    _png(r.mask_path, np.zeros((SIZE, SIZE), np.uint8))
    bad[r.source] = (f"empty mask: {r.mask_path.name} marks no pixel",)
    r = next(rest)  # a box past the right border is also not the mask's box
    x, y, w, h = r.bbox
    entry(r)["bbox"] = [SIZE - w + 2, y, w, h]
    box = f"[{SIZE - w + 2:g}, {y:g}, {w:g}, {h:g}]"
    bad[r.source] = (
        f"bbox leaves the image: {box} in a 48x48 px image",
        f"bbox is not the mask's bounding box (to 1 px): bbox {box}, mask {r.mask_path.name} [{x:g}, {y:g}, {w:g}, {h:g}]",
    )
    r = next(rest)
    x, y, w, h = r.bbox
    entry(r)["bbox"] = [x, y + 2, w, h]
    bad[r.source] = (
        f"bbox is not the mask's bounding box (to 1 px): bbox [{x:g}, {y + 2:g}, {w:g}, {h:g}], "
        f"mask {r.mask_path.name} [{x:g}, {y:g}, {w:g}, {h:g}]",
    )
    r = next(rest)
    entry(r)["area"] = r.area * 1.25
    allowed = max(AREA_REL_TOLERANCE * r.area, 8.0)
    bad[r.source] = (
        f"area is not the mask's pixel count: area {r.area * 1.25:g}, mask {r.mask_path.name} {r.area:g} px "
        f"(allowed +- {allowed:g})",
    )
    r = next(rest)
    entry(r)["def"] = "  "
    bad[r.source] = ("empty def",)
    # A train sample repeated in val (its image copied to val2017, so that only the id is wrong): both quarantined.
    r = next(r for r in rest if r.split == "train")
    (root / "val2017").joinpath(r.image_path.name).write_bytes(r.image_path.read_bytes())
    entries["val"].append(dict(entry(r)))
    copy = f"{files['val']}[{len(entries['val']) - 1}]"
    reason = f"id {r.item_id} occurs more than once (it names the mask file; every copy quarantined)"
    bad[r.source] = bad[copy] = (reason,)
    # The reader's rejections: a missing mask, an entry with a negative area.
    r = next(rest)
    r.mask_path.unlink()
    bad[r.source] = (f"missing media file {r.mask_path}",)
    entries["train"].append({**entry(records[1]), "id": 99_999_999, "area": -1})
    bad[f"{files['train']}[{len(entries['train']) - 1}]"] = ("negative area -1",)
    # Within the tolerances (must pass): a box edge 1 px off, an area 5 % off, a 1-bit mask.
    r = next(rest)
    entry(r)["bbox"] = [r.bbox[0], r.bbox[1], r.bbox[2] + 1, r.bbox[3]]
    r = next(rest)
    entry(r)["area"] = r.area * 1.05
    r = next(rest)
    _png(r.mask_path, _mask(r), mode="1")
    for split, path in files.items():
        path.write_text(json.dumps(entries[split], indent=2), encoding="utf-8")

    group = _run(root, tmp_path / "work")

    assert {q.source: q.reasons for q in group.quarantined} == bad
    assert group.num_items == len(records) + 2
    assert group.num_passed == len(records) + 2 - len(bad) > 3


def test_empty_name_is_quarantined_when_a_reader_lets_it_through(synth_lvis: Path, tmp_path: Path, monkeypatch) -> None:
    good = read_lvis(synth_lvis, "val").records[0]
    records = [
        dataclasses.replace(good, source="/fake.json[0]"),
        dataclasses.replace(good, source="/fake.json[1]", item_id="1", name=" "),
    ]

    def read(root: Path, split: str | None) -> ReadResult[LvisRecord]:
        return ReadResult(records=records if split == "val" else [])

    monkeypatch.setitem(raw._SPECS, "lvis", dataclasses.replace(raw._SPECS["lvis"], read=read))
    group = _run(synth_lvis, tmp_path / "work")
    assert {q.source: q.reasons for q in group.quarantined} == {"/fake.json[1]": ("empty name",)}
    assert (group.num_items, group.num_passed) == (2, 1)
