"""AV-Synth clips in the native LLP layout, the dataset of AVVP (audio-visual video parsing; Tian et al.
ECCV'20; dataset-layouts section 2).

AVVP asks which of LLP's 25 classes are *heard* and which are *seen*, and in which of a clip's ten 1-s
segments; the audio-visual events are the segments where a class is both. The scenes here have what makes
that task non-trivial in real LLP videos:

- several events per clip (1..``max_events`` distinct classes), each of one of three kinds: audio-only
  (heard off screen), visual-only (on screen, silent) or audio-visual (on screen and heard, either in
  exactly the same seconds or in a visible span that only partly overlaps its sound, so an AV event also
  has audio-only or visual-only seconds around it);
- spans of varied length on the 1-s grid: whole-clip, any single span, or two disjoint spans (which give
  two rows of one class in a dense file, as in the real ones);
- unlabelled distractors (``difficulty.distractor_prob`` / ``max_distractors`` / ``offscreen_prob``, as for
  AVE): AVE events that are no LLP class, seen but silent or heard off screen, which a parser must ignore.

Class signatures. The renderer draws a class from its *name* (:mod:`crab.synth.world`). A scene object of
class ``c`` is named :data:`LLP_SCENE_NAMES` ``[c]``: the AudioSet display name whose underscore spelling
``c`` is (``"Violin, fiddle"`` for ``Violin_fiddle``), so the ten concepts LLP shares with AVE look and sound
the same in both datasets, as real violins do. The LLP spellings themselves cannot be used: with the world's
pinned hash ``Car`` and ``Frying_(food)`` would look identical. One exception: ``Singing`` is rendered as
``"Vocal music"`` (an AudioSet class above it), because ``"Singing"`` would sound exactly like ``"Frying
(food)"``. With this table every two LLP classes differ in at least two attributes and each modality alone
determines the class (tested). :func:`llp_label` maps a scene name back; the CSVs hold LLP labels only.

Written files (dataset-layouts 2.1-2.3: TAB-separated, header row, LF, trailing newline)::

    root/LLP_dataset/video/{ytid}.mp4                     # 10-s clips, H.264 + AAC
    root/AVVP_train.csv  AVVP_val_pd.csv  AVVP_test_pd.csv  AVVP_dataset_full.csv    # filename, event_labels
    root/AVVP_eval_audio.csv  AVVP_eval_visual.csv        # dense rows of the val + test videos
    root/AVVP_train_dense_audio.csv  AVVP_train_dense_visual.csv   # AV-Synth extension, see below
    root/avsynth_scenes.jsonl                             # exact ground truth (crab.synth.scene)

The two ``AVVP_train_dense_*`` files are **not** part of the real release (whose train split is only weakly
labelled); they hold the train clips' exact events with the eval files' columns, so that the AV-UIE
builder can write explicit-reasoning answers for train (``crab.datasets.llp`` reads them when present).
``filename`` is ``{ytid}_{start}_{start + 10}`` with a random start second in the imagined source video.
Classes are balanced inside each split (events are dealt from successive permutations of the 25 classes).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from crab.config import DifficultyConfig, SynthAudioConfig, SynthLlpConfig, SynthVideoConfig
from crab.datasets.llp import LLP_EVAL_FILES, LLP_SPLIT_FILES, LLP_TRAIN_DENSE_FILES
from crab.datasets.vocab_seg import LLP_CLASSES
from crab.synth.render import _Settings, render_clips
from crab.synth.scene import SCENES_FILENAME, Interval, Scene, SceneObject, Slot, scene_lines
from crab.synth.world import audio_signature, item_seeds, split_rng, youtube_id

__all__ = [
    "LLP_DISTRACTORS",
    "LLP_FULL_FILE",
    "LLP_SCENE_NAMES",
    "llp_events",
    "llp_label",
    "llp_scene",
    "write_llp",
]

logger = logging.getLogger(__name__)

#: Weak labels of every video (train, val, test), as in the release.
LLP_FULL_FILE = "AVVP_dataset_full.csv"
_WEAK_HEADER = "filename\tevent_labels"
_DENSE_HEADER = "filename\tonset\toffset\tevent_labels"

#: LLP class -> name of its scene objects (the key of its visual and audio signature; module docstring).
LLP_SCENE_NAMES: dict[str, str] = {
    "Speech": "Speech",
    "Car": "Car",
    "Cheering": "Cheering",
    "Dog": "Dog",
    "Cat": "Cat",
    "Frying_(food)": "Frying (food)",
    "Basketball_bounce": "Basketball bounce",
    "Fire_alarm": "Fire alarm",
    "Chainsaw": "Chainsaw",
    "Cello": "Cello",
    "Banjo": "Banjo",
    "Singing": "Vocal music",
    "Chicken_rooster": "Chicken, rooster",
    "Violin_fiddle": "Violin, fiddle",
    "Vacuum_cleaner": "Vacuum cleaner",
    "Baby_laughter": "Baby laughter",
    "Accordion": "Accordion",
    "Lawn_mower": "Lawn mower",
    "Motorcycle": "Motorcycle",
    "Helicopter": "Helicopter",
    "Acoustic_guitar": "Acoustic guitar",
    "Telephone_bell_ringing": "Telephone bell ringing",
    "Baby_cry_infant_cry": "Baby cry, infant cry",
    "Blender": "Blender",
    "Clapping": "Clapping",
}
_LABELS = {scene_name: label for label, scene_name in LLP_SCENE_NAMES.items()}

#: Unlabelled distractors: AVE events that are no LLP class (speech, barking and race cars would be one).
LLP_DISTRACTORS: tuple[str, ...] = (
    "Church bell",
    "Fixed-wing aircraft, airplane",
    "Flute",
    "Ukulele",
    "Truck",
    "Shofar",
    "Train horn",
    "Clock",
    "Goat",
    "Bus",
    "Horse",
    "Toilet flush",
    "Rodents, rats, mice",
    "Mandolin",
)

_SLOTS: tuple[Slot, ...] = ("left", "middle", "right")
_WHOLE_CLIP_PROB = 0.25  # an event span covers the whole clip
_TWO_SPANS_PROB = 0.2  # an event has two disjoint spans in a modality
_SYNC_PROB = 0.5  # an audio-visual event is seen exactly while it is heard
_MAX_START_S = 290  # start second of a clip in its imagined source video


def llp_label(scene_name: str) -> str | None:
    """The LLP class of a scene object name, or None for a distractor (no LLP class)."""
    return _LABELS.get(scene_name)


# --------------------------------------------------------------------------------------------------
# Scenes
# --------------------------------------------------------------------------------------------------


def _spans(rng: np.random.Generator, duration: int) -> tuple[Interval, ...]:
    """Sorted disjoint spans with at least 1 s between them: whole clip, one span, or two spans."""
    draw = rng.random()
    if draw < _WHOLE_CLIP_PROB:
        return ((0, duration),)
    if draw < _WHOLE_CLIP_PROB + _TWO_SPANS_PROB:
        s1, e1, s2, e2 = (int(t) for t in np.sort(rng.choice(duration + 1, size=4, replace=False)))
        return (s1, e1), (s2, e2)
    length = int(rng.integers(1, duration + 1))
    start = int(rng.integers(0, duration - length + 1))
    return ((start, start + length),)


def _overlapping_span(rng: np.random.Generator, spans: tuple[Interval, ...], duration: int) -> Interval:
    """A span that shares at least one second with ``spans``: any span around one of their seconds."""
    seconds = [t for s, e in spans for t in range(s, e)]
    anchor = seconds[int(rng.integers(len(seconds)))]
    return int(rng.integers(0, anchor + 1)), int(rng.integers(anchor + 1, duration + 1))


def llp_scene(
    rng: np.random.Generator,
    *,
    video_id: str,
    split: str,
    classes: list[str],
    config: SynthLlpConfig,
    difficulty: DifficultyConfig,
    render_seed: int,
) -> Scene:
    """One LLP scene: an event of each of ``classes``, then unlabelled distractors.

    Args:
        rng: the item's scene generator.
        video_id: the clip's 11-character id.
        split: ``"train"``, ``"val"`` or ``"test"``.
        classes: distinct LLP classes, one event each.
        config: duration and the shares of audio-only / visual-only events.
        difficulty: distractor and off-screen probabilities.
        render_seed: seed of the rendering noise and jitter.

    Returns:
        The scene; its first ``len(classes)`` objects are the events, named by :data:`LLP_SCENE_NAMES`.
    """
    duration = config.duration_s
    slots = [_SLOTS[i] for i in rng.permutation(len(_SLOTS))]
    objects = []
    for label in classes:
        draw = rng.random()
        heard = draw < config.audio_only_prob or draw >= config.audio_only_prob + config.visual_only_prob
        seen = draw >= config.audio_only_prob and bool(slots)  # no free slot: heard off screen instead
        heard = heard or not seen
        audible = _spans(rng, duration) if heard else ()
        visible: tuple[Interval, ...] = ()
        if seen and not heard:
            visible = _spans(rng, duration)
        elif seen:
            visible = audible if rng.random() < _SYNC_PROB else (_overlapping_span(rng, audible, duration),)
        name = LLP_SCENE_NAMES[label]
        objects.append(
            SceneObject(
                name=name,
                slot=slots.pop() if seen else None,
                visible=visible,
                audible=audible,
                loudness=round(float(rng.uniform(0.6, 1.0)), 3),
                rhythm=audio_signature(name).rhythm,
            )
        )
    if difficulty.max_distractors > 0 and rng.random() < difficulty.distractor_prob:
        count = int(rng.integers(1, difficulty.max_distractors + 1))
        for name in rng.choice(LLP_DISTRACTORS, size=min(count, len(LLP_DISTRACTORS)), replace=False):
            offscreen = not slots or rng.random() < difficulty.offscreen_prob
            spans = _spans(rng, duration)
            objects.append(
                SceneObject(
                    name=str(name),
                    slot=None if offscreen else slots.pop(),
                    visible=() if offscreen else spans,
                    audible=spans if offscreen else (),
                    loudness=round(float(rng.uniform(0.4, 0.9)), 3),
                    rhythm=audio_signature(str(name)).rhythm,
                )
            )
    return Scene(
        video_id=video_id,
        dataset="llp",
        split=split,
        duration_s=duration,
        background="indoor" if rng.random() < 0.5 else "outdoor",
        objects=tuple(objects),
        render_seed=render_seed,
    )


def llp_events(scene: Scene) -> dict[str, list[tuple[str, int, int]]]:
    """The dense LLP events of a scene: ``{"audio": [(label, onset, offset), ...], "visual": [...]}``.

    One entry per span of a labelled object (distractors have no label), ordered by class index, then onset:
    exactly the rows of the dense CSVs.
    """
    events: dict[str, list[tuple[str, int, int]]] = {"audio": [], "visual": []}
    for obj in scene.objects:
        label = llp_label(obj.name)
        if label is None:
            continue
        events["audio"] += [(label, s, e) for s, e in obj.audible]
        events["visual"] += [(label, s, e) for s, e in obj.visible]
    for rows in events.values():
        rows.sort(key=lambda row: (LLP_CLASSES.index(row[0]), row[1]))
    return events


# --------------------------------------------------------------------------------------------------
# Writer
# --------------------------------------------------------------------------------------------------


def _class_stream(seed: int, split: str) -> Iterator[str]:
    """Successive permutations of the 25 classes, from the split's own stream (world's ``split_rng``)."""
    rng = split_rng(seed, "llp", split)
    while True:
        yield from (LLP_CLASSES[i] for i in rng.permutation(len(LLP_CLASSES)))


def _deal(stream: Iterator[str], pending: list[str], count: int) -> list[str]:
    """The next ``count`` distinct classes of the stream; a repeat waits (in ``pending``) for a later clip."""
    chosen: list[str] = []
    i = 0
    while len(chosen) < count:
        if i == len(pending):
            pending.append(next(stream))
        if pending[i] in chosen:
            i += 1
        else:
            chosen.append(pending.pop(i))
    return chosen


def _split_scenes(
    cfg: SynthLlpConfig, difficulty: DifficultyConfig, seed: int, split: str, count: int, used_ids: set[str]
) -> list[tuple[str, Scene]]:
    """``count`` ``(filename, scene)`` pairs of one split."""
    stream, pending = _class_stream(seed, split), []
    out = []
    for index in range(count):
        rng, render_seed = item_seeds(seed, "llp", split, index)
        video_id = youtube_id(rng)
        start = int(rng.integers(0, _MAX_START_S + 1))
        classes = _deal(stream, pending, int(rng.integers(1, cfg.max_events + 1)))
        scene = llp_scene(
            rng,
            video_id=video_id,
            split=split,
            classes=classes,
            config=cfg,
            difficulty=difficulty,
            render_seed=render_seed,
        )
        while scene.video_id in used_ids:  # astronomically rare; resolved deterministically
            scene = dataclasses.replace(scene, video_id=youtube_id(rng))
        used_ids.add(scene.video_id)
        out.append((f"{scene.video_id}_{start}_{start + cfg.duration_s}", scene))
    return out


def _write_tsv(path: Path, header: str, rows: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in [header, *rows]), encoding="utf-8", newline="\n")


def _weak_row(filename: str, scene: Scene) -> str:
    events = llp_events(scene)
    labels = {label for rows in events.values() for label, _, _ in rows}
    return f"{filename}\t{','.join(c for c in LLP_CLASSES if c in labels)}"


def _dense_rows(items: list[tuple[str, Scene]], modality: str) -> list[str]:
    return [
        f"{filename}\t{onset}\t{offset}\t{label}"
        for filename, scene in items
        for label, onset, offset in llp_events(scene)[modality]
    ]


def write_llp(
    root: Path,
    cfg: SynthLlpConfig,
    video: SynthVideoConfig,
    audio: SynthAudioConfig,
    difficulty: DifficultyConfig,
    seed: int,
) -> int:
    """Write the LLP-layout AV-Synth dataset under ``root`` (created if missing), byte-deterministically.

    Args:
        root: the dataset root (the folder holding ``AVVP_*.csv`` and ``LLP_dataset/``).
        cfg: sizes, events per clip and the shares of event kinds (``synth.llp``).
        video / audio / difficulty: rendering settings (``synth.video`` / ``synth.audio`` / ``synth.difficulty``).
        seed: ``synth.seed``; items draw from ``SeedSequence(seed, spawn_key=(3, split, item))``.

    Returns:
        The number of clips written.
    """
    root = Path(root)
    video_dir = root / "LLP_dataset" / "video"
    video_dir.mkdir(parents=True, exist_ok=True)
    sizes = {"train": cfg.num_train, "val": cfg.num_val, "test": cfg.num_test}
    used_ids: set[str] = set()
    items = {split: _split_scenes(cfg, difficulty, seed, split, n, used_ids) for split, n in sizes.items()}
    every = [scene for split in sizes for _, scene in items[split]]
    jobs = [(scene, video_dir / f"{scene.video_id}.mp4") for scene in every]
    render_clips(jobs, _Settings(video, audio, difficulty), "synth llp")

    weak = {split: [_weak_row(filename, scene) for filename, scene in items[split]] for split in sizes}
    for split, file_name in LLP_SPLIT_FILES.items():
        _write_tsv(root / file_name, _WEAK_HEADER, weak[split])
    _write_tsv(root / LLP_FULL_FILE, _WEAK_HEADER, [row for split in sizes for row in weak[split]])
    evaluated = items["val"] + items["test"]
    for modality in ("audio", "visual"):
        _write_tsv(root / LLP_EVAL_FILES[modality], _DENSE_HEADER, _dense_rows(evaluated, modality))
        _write_tsv(root / LLP_TRAIN_DENSE_FILES[modality], _DENSE_HEADER, _dense_rows(items["train"], modality))
    (root / SCENES_FILENAME).write_text(scene_lines(every), encoding="utf-8", newline="\n")
    logger.info("llp: wrote %d clips (%s) under %s", len(every), ", ".join(f"{k} {v}" for k, v in sizes.items()), root)
    return len(every)
