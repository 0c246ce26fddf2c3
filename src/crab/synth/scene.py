"""The scene model of AV-Synth: what is where, when it is seen and when it is heard.

A :class:`Scene` is the exact ground truth of one synthetic clip. Writers render it to media in a
public dataset's native layout and derive that dataset's annotations from it; the AV-UIE builder reads
it back (``avsynth_scenes.jsonl`` beside the native files) to write explicit reasoning ("the violin on
the left starts at second 2 and is the loudest ..."). Times are whole seconds on the clip's 1 s grid,
intervals are half-open ``[start, end)``, as in AVE and LLP annotations.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Literal

__all__ = ["SCENES_FILENAME", "Interval", "Scene", "SceneObject", "Slot", "read_scenes", "scene_lines"]

Slot = Literal["left", "middle", "right"]
Interval = tuple[int, int]

#: Name of the side file a writer puts next to the native annotations (one JSON scene per line).
SCENES_FILENAME = "avsynth_scenes.jsonl"


@dataclass(frozen=True)
class SceneObject:
    """One sound source / visual object of a scene.

    Attributes:
        name: class name in the dataset's vocabulary (e.g. ``"Church bell"``, ``"violin"``), or
            ``"voiceover"`` for a narrator heard off screen.
        slot: horizontal position on screen, or ``None`` for an object that is never seen (off screen).
        visible: seconds it is on screen, as sorted disjoint ``[start, end)`` intervals.
        audible: seconds it is heard, as sorted disjoint ``[start, end)`` intervals.
        loudness: linear gain of its sound (1.0 = reference loudness).
        rhythm: pulses per second of its sound envelope; 0 means a sustained tone.
    """

    name: str
    slot: Slot | None
    visible: tuple[Interval, ...]
    audible: tuple[Interval, ...]
    loudness: float
    rhythm: float

    def is_visible_at(self, second: int) -> bool:
        return any(s <= second < e for s, e in self.visible)

    def is_audible_at(self, second: int) -> bool:
        return any(s <= second < e for s, e in self.audible)

    @property
    def onset(self) -> int | None:
        """First audible second, or None if it never sounds."""
        return self.audible[0][0] if self.audible else None

    @property
    def audible_seconds(self) -> int:
        return sum(e - s for s, e in self.audible)


@dataclass(frozen=True)
class Scene:
    """The exact ground truth of one AV-Synth clip.

    Attributes:
        video_id: the clip's id in its dataset (file stem of the media).
        dataset: ``"ave"``, ``"music_avqa"`` or ``"valor"``.
        split: ``"train"``, ``"val"`` or ``"test"``.
        duration_s: clip length in seconds.
        background: ``"indoor"`` or ``"outdoor"`` (drawn as two families of backdrops).
        objects: every source in the clip, on screen or not.
        render_seed: seed of the per-instance jitter and noise used when rendering the media.
    """

    video_id: str
    dataset: str
    split: str
    duration_s: int
    background: Literal["indoor", "outdoor"]
    objects: tuple[SceneObject, ...]
    render_seed: int

    def to_json(self) -> str:
        """One JSON line with sorted keys (byte-deterministic)."""
        return json.dumps(asdict(self), sort_keys=True, ensure_ascii=False)

    @classmethod
    def from_json(cls, line: str) -> Scene:
        raw = json.loads(line)
        objects = tuple(
            SceneObject(
                name=o["name"],
                slot=o["slot"],
                visible=tuple((int(s), int(e)) for s, e in o["visible"]),
                audible=tuple((int(s), int(e)) for s, e in o["audible"]),
                loudness=float(o["loudness"]),
                rhythm=float(o["rhythm"]),
            )
            for o in raw["objects"]
        )
        return cls(
            video_id=raw["video_id"],
            dataset=raw["dataset"],
            split=raw["split"],
            duration_s=int(raw["duration_s"]),
            background=raw["background"],
            objects=objects,
            render_seed=int(raw["render_seed"]),
        )

    @property
    def on_screen(self) -> tuple[SceneObject, ...]:
        """Objects with a slot, ordered left to right."""
        order = {"left": 0, "middle": 1, "right": 2}
        return tuple(sorted((o for o in self.objects if o.slot is not None), key=lambda o: order[o.slot]))


def scene_lines(scenes: list[Scene]) -> str:
    """The content of an ``avsynth_scenes.jsonl`` file, sorted by video id."""
    return "".join(s.to_json() + "\n" for s in sorted(scenes, key=lambda s: s.video_id))


def read_scenes(text: str) -> dict[str, Scene]:
    """Parse an ``avsynth_scenes.jsonl`` file into ``{video_id: Scene}``."""
    scenes = (Scene.from_json(line) for line in text.splitlines() if line.strip())
    return {s.video_id: s for s in scenes}
