"""AV-Synth: the embedded benchmark, procedurally generated clips in the public datasets' native layouts.

``world`` maps class names to visual and audio signatures, ``scene`` holds the exact ground truth of a
clip, ``render`` turns a scene into an mp4, and the writers (``ave``, ``music_avqa``, ``valor``) lay
clips and annotations out as the real releases do. :func:`synthesize` is the entry point (``crab synth``).

``synthesize`` is imported lazily: readers import ``crab.synth.scene`` and should not pay for PyAV.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from crab.synth.run import SynthResult, synthesize

__all__ = ["SynthResult", "synthesize"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from crab.synth import run

        return getattr(run, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
