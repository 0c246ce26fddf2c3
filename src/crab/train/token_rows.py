"""Train some rows of the token embeddings and the LM head, and keep every other row bit-for-bit.

The AVS fine-tuning (crab-reference 3.6) must teach the model its mask block: the input embeddings of Crab's
added tokens (``<mask_start>``, ``<mask_0..5>``, ``<mask_end>``, the modality wrappers; left at their random
init by F1) and the LM-head rows that emit them. Crab trains the whole ``embed_tokens`` and ``lm_head``
matrices instead, which moves every token of the vocabulary on mask-task data only (and saves 2 x 32017 x 4096
floats per checkpoint at 7B). Here the two matrices stay ``requires_grad`` (one GEMM, no gather/scatter in the
forward) and :func:`train_rows_only` zeroes the gradient of every other row with a hook. With zero gradients
AdamW leaves a row exactly where it was, provided the matrix is not weight-decayed: :func:`crab.train.loop.
build_optimizer` puts a matrix marked here in its no-decay group.

:func:`row_weights` / :func:`load_row_weights` store and restore only the trained rows.

Not for FSDP: a flattened parameter does not keep the ``(vocab, width)`` shape the hook masks by row.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from crab.errors import CrabError

__all__ = ["ROWS_ATTR", "ROW_KEYS", "load_row_weights", "row_weights", "train_rows_only", "trained_rows"]

#: Attribute set on a row-trained parameter: the trained row indices (``(K,)`` int64).
ROWS_ATTR = "crab_trained_rows"
#: Keys of the stored rows: the token ids, and the rows of the input embeddings and of the LM head.
ROW_KEYS = ("token_rows.ids", "token_rows.embed_tokens", "token_rows.lm_head")


def train_rows_only(param: nn.Parameter, rows: Sequence[int]) -> None:
    """Make only ``rows`` of the 2-D ``param`` trainable: its gradient is masked to them on every backward.

    Raises:
        CrabError: ``param`` is not 2-D, or a row is out of range.
    """
    if param.ndim != 2:
        raise CrabError(f"row training needs a (vocab, width) matrix, got shape {tuple(param.shape)}")
    index = torch.as_tensor(list(rows), dtype=torch.long)  # (K,)
    if index.numel() and (int(index.min()) < 0 or int(index.max()) >= param.shape[0]):
        raise CrabError(f"token rows {index.tolist()} out of range for {param.shape[0]} rows")
    mask = torch.zeros(param.shape[0], 1, dtype=param.dtype, device=param.device)  # (V, 1)
    mask[index] = 1
    param.requires_grad_(True)
    param.register_hook(lambda grad: grad * mask.to(grad.device, grad.dtype))  # (V, D): other rows 0
    setattr(param, ROWS_ATTR, index)


def trained_rows(param: nn.Parameter) -> torch.Tensor | None:
    """The row indices :func:`train_rows_only` marked on ``param`` (``None`` for a fully trained parameter)."""
    return getattr(param, ROWS_ATTR, None)


def row_weights(model: nn.Module, rows: Sequence[int]) -> dict[str, torch.Tensor]:
    """The ``rows`` of ``model``'s input embeddings and LM head, under :data:`ROW_KEYS` (for a safetensors file)."""
    index = torch.as_tensor(list(rows), dtype=torch.long)  # (K,)
    embed = model.get_input_embeddings().weight.detach()  # (V, D)
    head = model.get_output_embeddings().weight.detach()  # (V, D)
    return dict(zip(ROW_KEYS, (index, embed[index].contiguous(), head[index].contiguous()), strict=True))


def load_row_weights(model: nn.Module, weights: dict[str, torch.Tensor], source: str) -> None:
    """Write stored rows (:func:`row_weights`) into ``model``'s input embeddings and LM head, in place.

    Raises:
        CrabError: a key is missing, or the rows do not fit the model (``source`` names the file).
    """
    missing = [k for k in ROW_KEYS if k not in weights]
    if missing:
        raise CrabError(f"{source}: no token rows ({', '.join(missing)} missing)")
    index, embed_rows, head_rows = (weights[k] for k in ROW_KEYS)
    top = int(index.max()) if index.numel() else -1
    with torch.no_grad():
        for module, values in ((model.get_input_embeddings(), embed_rows), (model.get_output_embeddings(), head_rows)):
            matrix = module.weight  # (V, D)
            if values.shape != (index.numel(), matrix.shape[1]) or top >= matrix.shape[0]:
                raise CrabError(
                    f"{source}: token rows {tuple(values.shape)} at ids up to {top} do not fit a "
                    f"{tuple(matrix.shape)} matrix"
                )
            matrix[index.long()] = values.to(matrix.dtype)
