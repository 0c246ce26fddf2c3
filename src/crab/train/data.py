"""Training data: AV-UIE records -> tokenised Crab examples with their frozen-encoder features.

Implements the data side of crab-reference sections 1.6-1.7 and 3.5: the prompt is the tokenizer's
Llama-2 chat template applied to the record's instruction (:func:`encode_prompt`); the target is the
answer text followed by EOS (:func:`encode_target`); the collator (:mod:`crab.models.collator`) expands
the ``<video>`` / ``<audio>`` placeholders to the feature sizes and puts loss on the answer tokens only
(EOS included). Features come from the feature store (the ``features`` stage ran the frozen encoders
once), looked up by the record's media keys, so a training step never touches raw media.

The training mixture of a stage is the concatenation of its tasks' train splits (Crab mixes tasks by
plain concatenation, section 3.5), minus the records quarantined by ``validate_avuie``.

How it differs from the authors' code: Crab's default random sampler draws from the global torch RNG,
so a restarted run sees another order. Here :class:`ResumableBatchSampler` derives each epoch's order
from ``(seed, epoch)`` alone, so the data position of a run is one integer, the number of micro-batches
consumed, and a resumed run continues with exactly the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from crab.avuie.build import OUT_DIR as AVUIE_DIR
from crab.avuie.schema import AvuieRecord, read_jsonl
from crab.config import AnswerForm, Params
from crab.errors import DataError
from crab.datasets.media import read_binary_mask, read_class_mask
from crab.features.store import FeatureStore, FeatureStoreError, audio_key, image_key, levels_key, video_key
from crab.models.collator import CrabExample, build_example, expand_placeholders, placeholder_counts
from crab.models.configuration_crab import CrabConfig
from crab.models.tokenizer import build_prompt
from crab.quality.avuie import REPORT_PATH as AVUIE_REPORT
from crab.quality.quarantine import load_quarantined_avuie
from crab.tasks import DIRECT_ANSWER_REQUEST, TASKS, Task

__all__ = [
    "AvuieDataset",
    "EncodedRecord",
    "ResumableBatchSampler",
    "encode_prompt",
    "encode_target",
    "feature_statistics",
    "load_records",
    "answer_forms",
    "direct_record",
    "plain_target",
    "training_dataset",
]

log = logging.getLogger(__name__)


def load_records(avuie_dir: Path, tasks: Sequence[str], split: str, quarantined: set[str]) -> list[AvuieRecord]:
    """The records of ``tasks`` in one split, in task order then file order, without quarantined ones.

    Args:
        avuie_dir: the AV-UIE folder holding ``<task>/<split>.jsonl``.
        tasks: task names (the stage's mixture).
        split: ``"train"``, ``"val"`` or ``"test"``.
        quarantined: record ids to drop (``load_quarantined_avuie``).

    Returns:
        The records.

    Raises:
        DataError: a file is missing or malformed, or a task has no record left after the quarantine.
    """
    records: list[AvuieRecord] = []
    for task in tasks:
        path = Path(avuie_dir) / task / f"{split}.jsonl"
        rows = read_jsonl(path)
        kept = [r for r in rows if r.id not in quarantined]
        if not kept:
            raise DataError(path, f"no {split} records left for task {task!r} ({len(rows)} read, all quarantined)")
        log.info("%s: %d records (%d quarantined)", path, len(kept), len(rows) - len(kept))
        records.extend(kept)
    return records


def encode_prompt(tokenizer: PreTrainedTokenizerBase, instruction: str) -> list[int]:
    """Token ids of the chat prompt of one instruction (BOS included, placeholders single).

    Args:
        tokenizer: the model's tokenizer (chat template and Crab's added tokens).
        instruction: the AV-UIE instruction, placeholders included.

    Returns:
        The ids of ``build_prompt(tokenizer, instruction)``; the template already starts with ``<s>``,
        so no special tokens are added on top.
    """
    return tokenizer(build_prompt(tokenizer, instruction), add_special_tokens=False).input_ids


def encode_target(tokenizer: PreTrainedTokenizerBase, target: str) -> list[int]:
    """Token ids of a target answer followed by EOS (crab-reference 1.7: loss includes ``</s>``).

    The text is tokenised on its own, as Crab tokenises instruction and output separately.

    Raises:
        ValueError: the tokenizer has no EOS token.
    """
    if tokenizer.eos_token_id is None:
        raise ValueError(f"{tokenizer.name_or_path or 'tokenizer'}: no EOS token")
    return tokenizer(target, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]


def plain_target(record: AvuieRecord) -> str:
    """The record's answer without its explicit reasoning: the task's w/o-ERP sentence for the same label.

    Raises:
        DataError: the target has no well-formed answer (``validate_avuie`` rejects such records).
    """
    spec = TASKS[Task(record.task)]
    label = spec.parse_answer(record.target)
    if label is None:
        raise DataError(Path(record.source), f"record {record.id}: its target has no well-formed {record.task} answer")
    if spec.masks:  # a parsed mask answer holds only the objects; its sentence also names the labelled second
        label = spec.label_from_dict(record.label)
    return spec.format_answer(label, None)


def direct_record(record: AvuieRecord) -> AvuieRecord:
    """The record asking for and giving the direct answer: instruction + :data:`~crab.tasks.DIRECT_ANSWER_REQUEST`,
    target :func:`plain_target`. A record without reasoning (captions, "w/o ERP" data) is returned as is.

    Why: the tiny profile aligns its projectors on direct answers. With the reasoning, most target tokens
    describe scenes the projectors cannot yet tell apart: on AV-Synth AVE the frozen-LLM alignment stayed at
    the class prior for 1500 steps (accuracy 0.025 with standardised features), against 0.48 on direct answers.

    Raises:
        DataError: the target has no well-formed answer.
    """
    if not record.reasoning:
        return record
    return dataclasses.replace(
        record, instruction=record.instruction + DIRECT_ANSWER_REQUEST, target=plain_target(record), reasoning=False
    )


@dataclass(frozen=True)
class EncodedRecord:
    """A record after tokenisation: ids plus the feature keys it needs (features are read lazily).

    Attributes:
        record_id: the AV-UIE record id.
        task: its task.
        prompt_ids: chat-prompt ids with single placeholders.
        answer_ids: target ids ending in EOS (empty for inference).
        video_key: feature-store key of the video, or ``None`` if the prompt has no ``<video>``.
        audio_key: feature-store key of the audio, or ``None`` if the prompt has no ``<audio>``.
        image_key: feature-store key of the image, or ``None`` if the prompt has no ``<image>`` (ARIG has one).
        mask: for a dataset that trains the decoder, a mask task's ``(levels key, frame, mask file)``; else None.
    """

    record_id: str
    task: str
    prompt_ids: tuple[int, ...]
    answer_ids: tuple[int, ...]
    video_key: str | None
    audio_key: str | None
    image_key: str | None = None
    mask: tuple[str, int, str] | None = None


class AvuieDataset(torch.utils.data.Dataset):
    """AV-UIE records as :class:`~crab.models.collator.CrabExample` objects (map-style dataset).

    Tokenisation happens once, here; features are read from the store per item (memory-mapped
    safetensors), so a paper-scale mixture never has to fit in memory.

    Args:
        records: the records (e.g. from :func:`load_records`).
        tokenizer: the model's tokenizer.
        config: the model config (placeholder ids, queries per segment, feature widths).
        store: the feature store of the ``features`` stage.
        params: the params the features were extracted with (``media`` decides the audio keys).
        with_targets: False for inference: examples carry the prompt only.
        with_masks: examples of mask tasks (``TaskSpec.masks``) also carry the decoder's CLIP levels of their
            labelled frame and its ground-truth mask at the decoder's size (``mask_features``,
            ``mask_targets``); needs a model with a mask decoder. False: those tasks train as text (Crab's
            joint fine-tuning, crab-reference 3.5).

    Raises:
        FeatureStoreError: a record's media has no features in the store (the first few keys are named)
            or their width differs from the model's feature width.
        ValueError: ``with_masks`` for a model without a mask decoder.
    """

    def __init__(
        self,
        records: Sequence[AvuieRecord],
        tokenizer: PreTrainedTokenizerBase,
        config: CrabConfig,
        store: FeatureStore,
        params: Params,
        *,
        with_targets: bool = True,
        with_masks: bool = False,
    ) -> None:
        if with_masks and config.mask_decoder_config is None:
            raise ValueError("with_masks needs a model with a mask decoder (config.mask_decoder_config)")
        self.config = config
        self.store = store
        self.with_masks = with_masks
        self.items = [self._encode(r, tokenizer, params, with_targets) for r in records]
        self._check_store()

    def _encode(
        self, record: AvuieRecord, tokenizer: PreTrainedTokenizerBase, params: Params, with_targets: bool
    ) -> EncodedRecord:
        prompt_ids = encode_prompt(tokenizer, record.instruction)
        return EncodedRecord(
            record_id=record.id,
            task=record.task,
            prompt_ids=tuple(prompt_ids),
            answer_ids=tuple(encode_target(tokenizer, record.target)) if with_targets else (),
            video_key=video_key(record) if self.config.video_token_id in prompt_ids else None,
            audio_key=audio_key(record, params) if self.config.audio_token_id in prompt_ids else None,
            image_key=image_key(record) if self.config.image_token_id in prompt_ids else None,
            mask=(levels_key(record), record.label["frame"], record.label["mask"])
            if self.with_masks and TASKS[Task(record.task)].masks
            else None,
        )

    @functools.cached_property
    def lengths(self) -> list[int]:
        """Per item, the tokens the LLM reads: prompt and answer, each placeholder expanded as
        :func:`~crab.models.collator.build_example` expands it (from the stored shapes, no tensor read); what
        ``optim.group_by_length`` batches by."""
        lengths = []
        for item in self.items:
            counts = placeholder_counts(
                self.config,
                num_frames=self.store.shape(item.video_key)[0] if item.video_key is not None else 1,
                num_audio_clips=self.store.shape(item.audio_key)[0] if item.audio_key is not None else 1,
            )  # fmt: skip
            lengths.append(len(expand_placeholders(list(item.prompt_ids), counts)) + len(item.answer_ids))
        return lengths

    def _check_store(self) -> None:
        widths = {"video": self.config.vision_hidden_size, "audio": self.config.audio_hidden_size,
                  "image": self.config.vision_hidden_size}  # fmt: skip
        keys = {m: sorted({k for i in self.items if (k := getattr(i, f"{m}_key")) is not None}) for m in widths}
        levels = sorted({i.mask[0] for i in self.items if i.mask is not None})
        missing = [k for m in widths for k in keys[m] if not self.store.has(k)] + [
            k for k in levels if not self.store.has(k)
        ]
        if missing:
            raise FeatureStoreError(
                f"{self.store.out_dir}: no features for {len(missing)} media keys ({', '.join(missing[:3])}"
                f"{', ...' if len(missing) > 3 else ''}); rerun `crab features` for the current AV-UIE and params"
            )
        for modality, width in widths.items():
            rank, layout = (2, "(tokens, ") if modality == "image" else (3, "(segments, tokens, ")
            for key in keys[modality]:
                shape = self.store.shape(key)
                if len(shape) != rank or shape[-1] != width:
                    raise FeatureStoreError(
                        f"{self.store.out_dir}: {key!r} has shape {list(shape)}, expected {layout}{width}) for the "
                        f"model's {modality} width"
                    )

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> CrabExample:
        item = self.items[index]
        example = build_example(
            item.prompt_ids,
            item.answer_ids,
            self.config,
            video_features=None if item.video_key is None else self.store.video(item.video_key),  # (T, P, Dv)
            audio_features=None if item.audio_key is None else self.store.audio(item.audio_key),  # (C, N, Da)
            image_features=None if item.image_key is None else self.store.image(item.image_key),  # (P, Dv)
        )
        if item.mask is None:
            return example
        key, frame, mask_path = item.mask
        levels = self.store.levels(key)[frame].unsqueeze(1)  # (L, 1, P, Dv): the labelled frame only
        size = self.config.mask_decoder_config.image_size
        if TASKS[Task(item.task)].mask_classes > 1:  # AVSS: class indices (the CE target)
            target = torch.from_numpy(read_class_mask(mask_path, size)).unsqueeze(0)  # (1, S, S) int64
        else:
            target = torch.from_numpy(read_binary_mask(mask_path, size)).float().unsqueeze(0)  # (1, S, S) 0 / 1
        return dataclasses.replace(example, mask_features=levels, mask_targets=target)

    def task_counts(self) -> dict[str, int]:
        """Number of examples per task, in first-seen order."""
        counts: dict[str, int] = {}
        for item in self.items:
            counts[item.task] = counts.get(item.task, 0) + 1
        return counts


def feature_statistics(dataset: AvuieDataset, min_std: float = 1e-5) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per-dimension mean and std of a dataset's feature tokens, each media item counted once.

    What :meth:`~crab.models.modeling_crab.CrabQFormerProjector.set_feature_statistics` takes when
    ``CrabConfig.standardize_features`` is on. Accumulated in float64 over every token of every segment.

    Args:
        dataset: the stage's mixture.
        min_std: floor of the std, so an (almost) constant dimension is not blown up.

    Returns:
        ``{"video": (mean, std), "audio": (mean, std)}`` as float32 ``(D,)`` tensors, for the modalities the
        dataset has.
    """
    stats = {}
    for modality in ("video", "audio"):
        keys = sorted({k for item in dataset.items if (k := getattr(item, f"{modality}_key")) is not None})
        if not keys:
            continue
        read = dataset.store.video if modality == "video" else dataset.store.audio
        total = total_sq = None
        count = 0
        for key in keys:
            tokens = read(key).to(torch.float64).flatten(0, -2)  # (segments * tokens, D)
            total = tokens.sum(0) if total is None else total + tokens.sum(0)
            total_sq = tokens.square().sum(0) if total_sq is None else total_sq + tokens.square().sum(0)
            count += tokens.shape[0]
        mean = total / count  # (D,)
        std = (total_sq / count - mean.square()).clamp_min(0.0).sqrt().clamp_min(min_std)  # (D,)
        stats[modality] = (mean.float(), std.float())
    return stats


def answer_forms(records: Sequence[AvuieRecord], answers: AnswerForm) -> list[AvuieRecord]:
    """The records in the answer form a phase trains on: as built (``"reasoning"``), :func:`direct_record`
    (``"direct"``), or every record in both forms (``"both"``: the records, then their direct forms).

    Why ``"both"``: the tiny profile's grounding phase on direct answers alone made the LLM forget the reasoning
    it learned from text (3.0 nats a reasoning token), and the fine-tuned model then answered without reading
    the media (``benchmarks/media_reliance.py``); on reasoning alone it learned the media more slowly.
    """
    if answers == "reasoning":
        return list(records)
    if answers == "direct":
        return [direct_record(r) for r in records]
    if answers == "both":
        return [*records, *(direct_record(r) for r in records if r.reasoning)]
    raise ValueError(f"answers must be 'reasoning', 'direct' or 'both', got {answers!r}")


def training_dataset(
    params: Params,
    tasks: Sequence[str],
    tokenizer: PreTrainedTokenizerBase,
    config: CrabConfig,
    split: str = "train",
    *,
    answers: AnswerForm = "reasoning",
    with_masks: bool = False,
    repeat: Mapping[str, int] | None = None,
) -> AvuieDataset:
    """A stage's mixture: ``tasks``' records of ``split`` from ``data/avuie`` minus the quarantine, with features.

    Args:
        params: reads ``features.out_dir`` and ``media`` (feature keys).
        tasks: the stage's tasks.
        tokenizer: the model's tokenizer.
        config: the model config.
        split: the split to read.
        answers: the records' answer form (:func:`answer_forms`): as built, direct, or both.
        with_masks: mask tasks' examples carry the decoder's inputs and targets (:class:`AvuieDataset`).
        repeat: task -> copies of each of its records (others: one), before the answer forms.

    Returns:
        The dataset (records in task order, then file order, a repeated record's copies side by side; the
        sampler shuffles).

    Raises:
        DataError: an AV-UIE file or the ``validate_avuie`` report is missing or malformed.
        FeatureStoreError: the feature store is missing, unfinished or lacks a record's media.
    """
    records = load_records(AVUIE_DIR, tasks, split, load_quarantined_avuie(AVUIE_REPORT))
    if repeat:
        records = [copy for r in records for copy in [r] * repeat.get(r.task, 1)]
    records = answer_forms(records, answers)
    store = FeatureStore(params.features.out_dir)
    return AvuieDataset(records, tokenizer, config, store, params, with_masks=with_masks)


#: Global batches sorted together by :class:`ResumableBatchSampler` with lengths (transformers uses 50). Fewer
#: mix the tasks of a mixture more (lengths differ mostly by task); 16 left 4 % padding on the tiny finetune mixture.
LENGTH_GROUP_BATCHES = 16


class ResumableBatchSampler:
    """Deterministic micro-batch order: epoch ``e`` is a permutation drawn from ``(seed, e)`` alone.

    Micro-batch ``position`` (counted over the whole run, across epochs) is slice
    ``position % batches_per_epoch`` of epoch ``position // batches_per_epoch``'s permutation, so a run's
    data position is the number of micro-batches it consumed. With several processes, each global batch
    of ``batch_size * num_replicas`` indices is split into one ``batch_size`` slice per rank, and each
    epoch's permutation is padded by wrapping around so every rank gets a full slice; a single process
    gets the epoch exactly once, with a smaller last batch when ``batch_size`` does not divide it.

    With ``lengths`` (``optim.group_by_length``), examples of similar length share a batch, as transformers'
    ``LengthGroupedSampler`` does: the epoch's permutation is cut into groups of :data:`LENGTH_GROUP_BATCHES`
    global batches, each group is sorted by length (longest first), and the order of the full global batches
    is then permuted again (a smaller last batch stays last). Why: a batch is padded to its longest example,
    and AV-UIE's answers range from a few tokens (AVQA) to 350 (AVVP reasoning), so random batches of the tiny
    fine-tuning mixture (batch 8) were 32 % padding; grouped, 4 % (the grounding mixture: 27 % and 2 %).

    Args:
        num_examples: dataset size (> 0).
        batch_size: examples per micro-batch and process (> 0).
        seed: the stage's seed.
        lengths: per-example length (tokens) to group batches by; ``None``: plain random batches.
        num_replicas: number of data-parallel processes.
        rank: this process's index.

    Raises:
        ValueError: on a non-positive size, a rank outside ``[0, num_replicas)`` or ``lengths`` of another size.
    """

    def __init__(
        self, num_examples: int, batch_size: int, seed: int, *, lengths: Sequence[int] | None = None,
        num_replicas: int = 1, rank: int = 0,
    ) -> None:  # fmt: skip
        if num_examples < 1 or batch_size < 1 or num_replicas < 1:
            raise ValueError(f"need num_examples, batch_size, num_replicas >= 1, got {num_examples, batch_size}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} outside [0, {num_replicas})")
        if lengths is not None and len(lengths) != num_examples:
            raise ValueError(f"{len(lengths)} lengths for {num_examples} examples")
        self.num_examples = num_examples
        self.batch_size = batch_size
        self.seed = seed
        self.lengths = None if lengths is None else np.asarray(lengths)
        self.num_replicas = num_replicas
        self.rank = rank
        self._cached: tuple[int, np.ndarray] | None = None

    @property
    def batches_per_epoch(self) -> int:
        """Micro-batches per epoch (per process)."""
        return -(-self.num_examples // (self.batch_size * self.num_replicas))

    def epoch_order(self, epoch: int) -> np.ndarray:
        """The permutation of epoch ``epoch`` (padded by wrap-around with several processes)."""
        if self._cached is None or self._cached[0] != epoch:
            rng = np.random.default_rng([self.seed, epoch])
            order = rng.permutation(self.num_examples)  # (n,)
            if self.num_replicas > 1:
                order = np.resize(order, self.batches_per_epoch * self.batch_size * self.num_replicas)
            if self.lengths is not None:
                order = self._group_by_length(order, rng)
            self._cached = (epoch, order)
        return self._cached[1]

    def _group_by_length(self, order: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``order`` with each group of global batches sorted by length, then its full batches shuffled."""
        global_size = self.batch_size * self.num_replicas
        group = global_size * LENGTH_GROUP_BATCHES
        grouped = np.concatenate([
            chunk[np.argsort(-self.lengths[chunk], kind="stable")] for chunk in np.split(order, range(group, len(order), group))
        ])  # fmt: skip
        num_full = len(grouped) // global_size
        batches = grouped[: num_full * global_size].reshape(num_full, global_size)[rng.permutation(num_full)]
        return np.concatenate([batches.reshape(-1), grouped[num_full * global_size :]])

    def batch(self, position: int) -> list[int]:
        """Example indices of this process's micro-batch number ``position`` (0-based, over the run)."""
        epoch, index = divmod(position, self.batches_per_epoch)
        global_size = self.batch_size * self.num_replicas
        start = index * global_size + self.rank * self.batch_size
        return self.epoch_order(epoch)[start : start + self.batch_size].tolist()

    def epoch_at(self, position: int) -> float:
        """Fractional epoch reached after ``position`` micro-batches."""
        return position / self.batches_per_epoch
