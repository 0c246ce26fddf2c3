"""Conversion of the authors' released Crab checkpoints into our model folders (``crab convert-crab-weights``).

Modules: :mod:`.keymap` (the key map: reference key pattern -> our key, or dropped / skipped with a reason;
which file may hold what), :mod:`.mapping` (applies it to loaded dicts with shape and completeness checks,
stacks the I-LoRA heads), :mod:`.writer` (reads the files, builds the model around a local Llama-2 folder,
writes the pre-trained Crab folder, the IA-LoRA adapter and ``conversion_report.json``).
"""

from crab.convert.keymap import CHECKPOINT_FILES, RULES, ConversionError, FileReport
from crab.convert.mapping import CrabWeights, TargetShapes, map_checkpoints, target_shapes
from crab.convert.writer import ConversionResult, convert_crab_weights, read_checkpoints

__all__ = [
    "CHECKPOINT_FILES",
    "RULES",
    "ConversionError",
    "ConversionResult",
    "CrabWeights",
    "FileReport",
    "TargetShapes",
    "convert_crab_weights",
    "map_checkpoints",
    "read_checkpoints",
    "target_shapes",
]
