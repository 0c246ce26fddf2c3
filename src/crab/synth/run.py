"""``synthesize``: write the embedded AV-Synth benchmark into ``data/raw`` (DESIGN.md sections 3 and 5).

This is the body of ``crab synth``, which bootstraps the tiny profile's raw data outside ``dvc.yaml``
(``data.dvc`` versions the result). Each dataset (AVE, LLP, AVSBench S4 + MS3, MUSIC-AVQA, VALOR, Ref-AVS,
AVSBench-semantic v2 for AVSS, Crab's LVIS samples for segmentation pre-training) is written into a
temporary sibling folder and renamed into place when complete, so an interrupted run never leaves a half-written dataset that looks finished. Existing non-empty dataset folders are never overwritten without ``force``,
because they may hold a user's real data. Every clip is byte-deterministic from ``synth.seed`` (seeds per
dataset, split and item, :func:`crab.synth.world.item_seeds`), so the output matches what ``data.dvc``
records on any machine with the same stack.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from crab.atomic import replace_dir
from crab.config import Params
from crab.errors import CrabError
from crab.synth.ave import write_ave
from crab.synth.avsbench import write_ms3, write_s4
from crab.synth.avss import write_avss
from crab.synth.llp import write_llp
from crab.synth.lvis import write_lvis
from crab.synth.music_avqa import write_music_avqa
from crab.synth.ref_avs import write_ref_avs
from crab.synth.valor import write_valor

__all__ = ["SynthResult", "synthesize"]

logger = logging.getLogger(__name__)

Writer = Callable[[Params, Path], int]


@dataclass(frozen=True)
class SynthResult:
    """What :func:`synthesize` wrote.

    Attributes:
        num_clips: clips written per dataset (``"ave"``, ``"llp"``, ``"avsbench"``, ``"music_avqa"``, ``"valor"``,
            ``"ref_avs"``, ``"avss"``; ``"lvis"`` counts images); a dataset that was skipped is absent.
        seconds: wall-clock time of the whole run.
    """

    num_clips: dict[str, int]
    seconds: float


def _write_llp(params: Params, root: Path) -> int:
    """``write_llp`` takes its sections explicitly (its tests build them without a params file)."""
    synth = params.synth
    return write_llp(root, synth.llp, synth.video, synth.audio, synth.difficulty, synth.seed)


def _write_avsbench(params: Params, root: Path) -> int:
    """S4 and MS3 share one ``avsbench_data`` root (``Single-source/``, ``Multi-sources/``): one swap for both."""
    synth = params.synth
    sections = (synth.video, synth.audio, synth.difficulty, synth.seed)
    return write_s4(root, synth.s4, *sections) + write_ms3(root, synth.ms3, *sections)


def _write_ref_avs(params: Params, root: Path) -> int:
    """``write_ref_avs`` takes its sections explicitly, as ``write_llp``."""
    synth = params.synth
    return write_ref_avs(root, synth.ref_avs, synth.video, synth.audio, synth.difficulty, synth.seed)


def _write_avss(params: Params, root: Path) -> int:
    """``write_avss`` takes its sections explicitly, as ``write_llp``."""
    synth = params.synth
    return write_avss(root, synth.avss, synth.video, synth.audio, synth.difficulty, synth.seed)


def _write_lvis(params: Params, root: Path) -> int:
    """``write_lvis`` takes its sections explicitly (stills: no audio section); counts images, not clips."""
    synth = params.synth
    return write_lvis(root, synth.lvis, synth.video, synth.difficulty, synth.seed)


def _is_non_empty(path: Path) -> bool:
    return path.exists() and (not path.is_dir() or any(path.iterdir()))


def _write_atomically(name: str, writer: Writer, params: Params, target: Path) -> int:
    """Run ``writer`` into a temporary sibling of ``target``, then swap it into place."""
    with replace_dir(target) as tmp:  # the previous data stays until the new one is complete
        count = writer(params, tmp)
    logger.info("synth: %s -> %s (%d clips)", name, target, count)
    return count


def synthesize(params: Params, force: bool = False) -> SynthResult:
    """Write AV-Synth's AVE, LLP, AVSBench (S4, MS3), MUSIC-AVQA, VALOR, Ref-AVS, AVSS and LVIS datasets into ``params.datasets`` paths.

    Args:
        params: ``synth`` (seed, sizes, rendering, difficulty) and ``datasets`` (target folders, relative to
            the working directory).
        force: replace existing dataset folders.

    Returns:
        Clips per dataset and the elapsed time.

    Raises:
        CrabError: a target folder exists and is not empty, and ``force`` is False (nothing is written).
    """
    start = time.perf_counter()
    writers: dict[str, Writer | None] = {
        "ave": write_ave,
        "llp": _write_llp,
        "avsbench": _write_avsbench,
        "music_avqa": write_music_avqa,
        "valor": write_valor,
        "ref_avs": _write_ref_avs,
        "avss": _write_avss,
        "lvis": _write_lvis,
    }
    jobs = {name: (w, Path(getattr(params.datasets, name))) for name, w in writers.items()}
    occupied = [str(target) for _, target in jobs.values() if _is_non_empty(target)]
    if occupied and not force:
        raise CrabError(
            f"refusing to overwrite existing dataset folder(s) {', '.join(occupied)}; "
            "move them away or rerun with `crab synth --force`"
        )
    counts = {name: _write_atomically(name, w, params, target) for name, (w, target) in jobs.items()}
    seconds = time.perf_counter() - start
    logger.info("synth: wrote %s in %.1f s", ", ".join(f"{name} {n} clips" for name, n in counts.items()), seconds)
    return SynthResult(num_clips=counts, seconds=seconds)
