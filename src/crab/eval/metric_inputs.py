"""The input encoding our ``evaluate`` modules share: parsed predictions that may be ``None``.

Arrow cannot hold ``None`` in the first row of a struct column, and our predictions are label objects or
dicts, so each module encodes every prediction as a flat dict with a ``parsed`` flag and every reference
as a flat dict before ``evaluate`` stores them; ``_compute`` turns unparsed rows back into ``None``. This
mixin holds the ``add`` / ``add_batch`` half of that contract once; a module names its two encoders.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["EncodedInputsMixin"]


class EncodedInputsMixin:
    """``add`` / ``add_batch`` that run ``encode_prediction`` / ``encode_reference`` on every input.

    Use as the first base: ``class AveAccuracy(EncodedInputsMixin, evaluate.Metric)`` with
    ``encode_prediction = staticmethod(...)`` and ``encode_reference = staticmethod(...)``.
    """

    encode_prediction: Callable[[Any], dict[str, Any]]
    encode_reference: Callable[[Any], dict[str, Any]]

    def add_batch(self, *, predictions: Sequence[Any] | None = None, references: Sequence[Any] | None = None, **kw):
        """Add a batch; accepts label objects, dicts and ``None`` predictions like the pure function."""
        if predictions is not None:
            predictions = [self.encode_prediction(p) for p in predictions]
        if references is not None:
            references = [self.encode_reference(r) for r in references]
        return super().add_batch(predictions=predictions, references=references, **kw)  # type: ignore[misc]

    def add(self, *, prediction: Any = None, reference: Any = None, **kw):
        """Add one prediction (``None`` = parse failure) and its reference."""
        return self.add_batch(predictions=[prediction], references=[reference], **kw)
