"""Typed, strict configuration loaded from ``params.yaml`` (DESIGN.md section 3).

``params.yaml`` is the single source of experiment values. It loads into frozen dataclasses; the loader
rejects unknown keys, missing keys and wrong types with a one-line message naming the full key
(``synth.ave.num_train: expected int, got str 'ten'``), so a typo can never be silently ignored (Crab's
``--pretrain_ckpt_dir`` class of bug). Only the standard library and PyYAML are imported here: the CLI
loads this module at start-up.

Stage functions receive the whole :class:`Params`; the stage table (``crab.stages``) declares which
top-level sections each stage reads, and a contract test checks that ``dvc.yaml`` lists exactly those.
"""

from __future__ import annotations

import dataclasses
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from ruamel.yaml import YAML, YAMLError

from crab.datasets.vocab_seg import LLP_CLASSES, LLP_NUM_SEGMENTS
from crab.errors import CrabError

__all__ = [
    "ConfigError",
    "Params",
    "check_tasks",
    "load_params",
    "parse_section",
]

TaskName = Literal[
    "ave", "avvp", "avqa", "arig", "s4", "ms3", "avss", "ref_avs", "avcap", "seg"
]  # tasks the model trains on (the mask tasks as text in F1; seg: the decoder's pre-training only)
TextTaskName = Literal["ave", "avvp", "avqa", "arig"]  # tasks the `evaluate` stage scores from the answer text
#: tasks `finetune_avs` / `finetune_avss` train and `evaluate_avs` / `evaluate_avss` score from predicted masks
MaskTaskName = Literal["s4", "ms3", "ref_avs", "avss"]
AnswerForm = Literal["reasoning", "direct", "both"]  # a training phase's targets (crab.train.data.answer_forms)
DatasetName = Literal["ave", "llp", "avsbench", "music_avqa", "valor", "ref_avs", "avss", "lvis"]


class ConfigError(CrabError):
    """A params file that does not match the typed schema; the message names the offending key."""


# --------------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SynthVideoConfig:
    """Rendering of AV-Synth frames (encoded as H.264 in mp4)."""

    size: int  # frame width = height in pixels
    fps: int
    crf: int  # x264 constant rate factor: lower = larger files, sharper frames

    def __post_init__(self) -> None:
        _check_positive(self, "size", "fps")
        if self.size % 2:
            raise ConfigError(f"size: must be even (H.264 yuv420p), got {self.size}")
        if not 0 <= self.crf <= 51:
            raise ConfigError(f"crf: must be in [0, 51], got {self.crf}")


@dataclass(frozen=True)
class SynthAudioConfig:
    """Audio track of AV-Synth clips (AAC in mp4)."""

    sample_rate: int  # 16000 or 44100 like the real datasets

    def __post_init__(self) -> None:
        if self.sample_rate not in (16000, 22050, 32000, 44100, 48000):
            raise ConfigError(f"synth.audio.sample_rate: unsupported rate {self.sample_rate}")


@dataclass(frozen=True)
class DifficultyConfig:
    """Difficulty knobs of AV-Synth (DESIGN.md section 5)."""

    audio_noise: float  # background noise amplitude relative to a unit-loudness source
    visual_noise: float  # per-pixel Gaussian noise std on a 0..1 scale
    distractor_prob: float  # probability that a clip gets distractors at all
    max_distractors: int  # distractors per clip when it gets any
    offscreen_prob: float  # share of distractors that are heard but never seen (else seen but silent)
    signature_jitter: float  # per-instance relative jitter of pitch, colour and size
    motion: bool  # objects drift slowly inside their slot

    def __post_init__(self) -> None:
        _check_unit_interval(self, "distractor_prob", "offscreen_prob", "signature_jitter")
        _check_non_negative(self, "audio_noise", "visual_noise", "max_distractors")


@dataclass(frozen=True)
class SynthAveConfig:
    """AV-Synth clips in the AVE layout: one audio-visual event per clip."""

    num_train: int
    num_val: int
    num_test: int
    duration_s: int  # AVE clips are 10 s, annotated on a 10 x 1 s grid
    min_event_s: int  # shortest audio-visual event

    def __post_init__(self) -> None:
        _check_positive(self, "num_train", "num_val", "num_test", "duration_s", "min_event_s")
        if self.min_event_s > self.duration_s:
            raise ConfigError("min_event_s: longer than duration_s")


@dataclass(frozen=True)
class SynthMusicAvqaConfig:
    """AV-Synth clips of instruments in the MUSIC-AVQA layout, with template questions."""

    num_train_videos: int
    num_val_videos: int
    num_test_videos: int
    questions_per_video: int
    duration_s: int  # real MUSIC-AVQA clips are 60 s; the tiny profile uses shorter ones
    max_instruments: int

    def __post_init__(self) -> None:
        _check_positive(
            self,
            "num_train_videos",
            "num_val_videos",
            "num_test_videos",
            "questions_per_video",
            "duration_s",
            "max_instruments",
        )
        if not 1 <= self.max_instruments <= 3:
            raise ConfigError("max_instruments: must be 1..3 (left/middle/right)")


@dataclass(frozen=True)
class SynthValorConfig:
    """AV-Synth captioned clips in the VALOR layout (Crab's ``avcap`` pre-training data)."""

    num_train: int
    num_val: int
    duration_s: int

    def __post_init__(self) -> None:
        _check_positive(self, "num_train", "num_val", "duration_s")


@dataclass(frozen=True)
class SynthLlpConfig:
    """AV-Synth clips in the LLP layout (AVVP): several audio-only, visual-only and audio-visual events per clip.

    Attributes:
        num_train / num_val / num_test: clips per split.
        duration_s: clip length; must be 10 (LLP's grid is ten 1-s segments, and ``filename`` spans 10 s).
        max_events: most labelled events (distinct classes) per clip; each clip has 1..max_events.
        audio_only_prob: share of events heard off screen (also the fate of an event that finds no free
            slot on screen).
        visual_only_prob: share of events seen but silent; the rest are audio-visual.
    """

    num_train: int
    num_val: int
    num_test: int
    duration_s: int
    max_events: int
    audio_only_prob: float
    visual_only_prob: float

    def __post_init__(self) -> None:
        _check_positive(self, "num_train", "num_val", "num_test")
        if self.duration_s != LLP_NUM_SEGMENTS:
            raise ConfigError(f"duration_s: LLP clips are {LLP_NUM_SEGMENTS} s, got {self.duration_s}")
        if not 1 <= self.max_events <= len(LLP_CLASSES):
            raise ConfigError(f"max_events: must be in [1, {len(LLP_CLASSES)}], got {self.max_events}")
        _check_unit_interval(self, "audio_only_prob", "visual_only_prob")
        if self.audio_only_prob + self.visual_only_prob > 1.0:
            raise ConfigError(
                f"audio_only_prob + visual_only_prob: must be <= 1, got {self.audio_only_prob + self.visual_only_prob}"
            )


@dataclass(frozen=True)
class SynthAvsConfig:
    """AV-Synth clips in the AVSBench-object layout (one section each for S4 and MS3).

    Clips are always 5 s with 5 annotated frames (the format fixes both), so there is no duration field.

    Attributes:
        num_train / num_val / num_test: clips per split.
        partly_visible_prob: share of objects (sources and distractors) on screen for only part of the
            clip (a span of 1..4 s); frames outside it show no such object, and a source's mask is empty there.
        partly_audible_prob: share of sources heard for only part of the clip (1..4 s); in a frame of a
            silent second the object is a distractor and is not in the mask.
    """

    num_train: int
    num_val: int
    num_test: int
    partly_visible_prob: float
    partly_audible_prob: float

    def __post_init__(self) -> None:
        _check_positive(self, "num_train", "num_val", "num_test")
        _check_unit_interval(self, "partly_visible_prob", "partly_audible_prob")


@dataclass(frozen=True)
class SynthRefAvsConfig:
    """AV-Synth clips in the Ref-AVS layout: referring expressions over 10-s clips of 2-3 objects.

    Ref-AVS's splits fix the clip length (10 s, 10 frames) and the test splits' meaning (``test_s`` seen
    categories, ``test_u`` unseen ones, ``test_n`` null expressions over the ``test_s`` clips), so only
    the sizes and shares are parameters; they are validated because a zero size or a probability
    outside [0, 1] would silently write an empty split or a degenerate one.

    Attributes:
        num_train_videos / num_val_videos / num_test_s_videos / num_test_u_videos: clips per split
            (``test_n`` has one null row per ``test_s`` clip).
        expressions_per_video: referring expressions written per clip (fewer when the clip's objects
            allow fewer unique descriptions).
        null_prob: per train / val clip, probability of one extra null row (an expression that matches
            no object, with empty masks).
        partly_visible_prob: share of objects on screen for only part of the clip (one span of 3..9 s);
            their masks are empty in the other frames.
    """

    num_train_videos: int
    num_val_videos: int
    num_test_s_videos: int
    num_test_u_videos: int
    expressions_per_video: int
    null_prob: float
    partly_visible_prob: float

    def __post_init__(self) -> None:
        _check_positive(
            self,
            "num_train_videos",
            "num_val_videos",
            "num_test_s_videos",
            "num_test_u_videos",
            "expressions_per_video",
        )
        _check_unit_interval(self, "null_prob", "partly_visible_prob")


@dataclass(frozen=True)
class SynthAvssConfig:
    """AV-Synth clips in the AVSBench-semantic v2 layout (AVSS): 10-s clips of 2-3 objects, class-index masks.

    The v2 format fixes the clip length (10 s, 10 frames, every frame annotated), so only the split sizes
    and the share of partly visible objects are parameters; they are validated because a zero size or a
    probability outside [0, 1] would silently write an empty split or a degenerate one.

    Attributes:
        num_train / num_val / num_test: clips per split.
        partly_visible_prob: share of objects on screen for only part of the clip (one span of 3..9 s);
            outside it the object is in no frame, so its class is absent from those frames' masks.
    """

    num_train: int
    num_val: int
    num_test: int
    partly_visible_prob: float

    def __post_init__(self) -> None:
        _check_positive(self, "num_train", "num_val", "num_test")
        _check_unit_interval(self, "partly_visible_prob")


@dataclass(frozen=True)
class SynthLvisConfig:
    """AV-Synth stills in Crab's LVIS sample layout (segmentation pre-training, crab-reference 3.4).

    Each image is one rendered frame of 1-3 objects with one sample (exact binary mask, box, area) per
    visible object, so only the image counts are parameters; validated because a zero count would
    silently write an empty split.

    Attributes:
        num_train_images / num_val_images: images of ``train_samples.json`` / ``val_samples.json``.
    """

    num_train_images: int
    num_val_images: int

    def __post_init__(self) -> None:
        _check_positive(self, "num_train_images", "num_val_images")


@dataclass(frozen=True)
class SynthConfig:
    """AV-Synth, the embedded benchmark written in the public datasets' native layouts."""

    seed: int
    video: SynthVideoConfig
    audio: SynthAudioConfig
    difficulty: DifficultyConfig
    ave: SynthAveConfig
    llp: SynthLlpConfig
    s4: SynthAvsConfig
    ms3: SynthAvsConfig
    music_avqa: SynthMusicAvqaConfig
    valor: SynthValorConfig
    ref_avs: SynthRefAvsConfig
    avss: SynthAvssConfig
    lvis: SynthLvisConfig


@dataclass(frozen=True)
class DatasetsConfig:
    """Where each raw dataset lives (native layout), relative to the repository root."""

    raw_root: str  # versioned by data.dvc
    ave: str
    llp: str
    avsbench: str  # AVSBench-object v1 (``avsbench_data``): S4 and MS3
    music_avqa: str
    valor: str
    ref_avs: str  # Ref-AVS (``REFAVS``): metadata.csv, media/, gt_mask/
    avss: str  # AVSBench-semantic (``AVSBench_semantic``): metadata.csv, label2idx.json, v2/
    lvis: str  # Crab's LVIS samples: {train,val}_samples.json, {train,val}2017/, binary_mask/


@dataclass(frozen=True)
class MediaConfig:
    """How readers turn a clip into model inputs (crab-reference section 1.2 and 1.4)."""

    num_frames: int  # frames sampled uniformly per clip; Crab uses 10
    audio_sample_rate: int  # everything is resampled to this mono rate; BEATs wants 16 kHz
    num_audio_segments: int  # AVE / AVCAP: the clip is cut into this many equal segments
    avqa_num_windows: int  # AVQA: windows spread over the clip (Crab: 10)
    avqa_window_s: float  # AVQA window length (Crab: 2 s, from t - 0.5 to t + 1.5)

    def __post_init__(self) -> None:
        _check_positive(self, "num_frames", "audio_sample_rate", "num_audio_segments", "avqa_num_windows")
        if self.avqa_window_s <= 0:
            raise ConfigError("avqa_window_s: must be > 0")


@dataclass(frozen=True)
class ValidationConfig:
    """Quality gates (``validate_raw``, ``validate_avuie``)."""

    max_failure_rate: float  # the stage fails if more than this share of items is quarantined
    duration_tolerance_s: float  # allowed deviation of a clip's duration from the expected one
    ave_duration_s: float  # expected AVE clip duration
    allowed_sample_rates: list[int]  # audio sample rates accepted in raw media

    def __post_init__(self) -> None:
        _check_unit_interval(self, "max_failure_rate")
        _check_non_negative(self, "duration_tolerance_s")


@dataclass(frozen=True)
class AvuieConfig:
    """AV-UIE instruction data (answers with an explicit reasoning process)."""

    seed: int  # picks phrasings; independent of the synth seed
    use_reasoning: bool  # False = the paper's "w/o ERP" ablation: answers without the reasoning process
    tasks: list[TaskName]  # tasks written by avuie_build
    release: str | None  # Crab's released AV-UIE folder: its tasks are imported, not built (crab.avuie.released)


@dataclass(frozen=True)
class TinyVisionConfig:
    """The tiny profile's seeded random-init ``CLIPVisionModel`` (paper: CLIP ViT-L/14 at 224 px)."""

    image_size: int
    patch_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    feature_layer: int  # index into HF ``hidden_states`` (0 = patch embedding) feeding the LLM; paper: 23

    def __post_init__(self) -> None:
        _check_positive(self, "image_size", "patch_size", "hidden_size", "num_layers", "num_heads")
        if self.image_size % self.patch_size:
            raise ConfigError("image_size: must be a multiple of patch_size")
        if not 1 <= self.feature_layer <= self.num_layers:
            raise ConfigError(f"feature_layer: must be in 1..num_layers, got {self.feature_layer}")


@dataclass(frozen=True)
class TinyAudioConfig:
    """The tiny profile's seeded random-init BEATs (paper: BEATs iter3+ AS2M, patch embedding 512, width 768).

    Only the sizes differ from the released model's config (``crab.models.beats.beats_tiny_config`` keeps its
    switches); the patch size stays 16, so one second still gives 48 tokens.
    """

    embed_dim: int  # output channels of the 16x16 fbank patch embedding (BEATs ``embed_dim``)
    hidden_size: int  # transformer width (``encoder_embed_dim``); != embed_dim adds post_extract_proj, as in BEATs
    num_layers: int
    num_heads: int
    intermediate_size: int

    def __post_init__(self) -> None:
        _check_positive(self, "embed_dim", "hidden_size", "num_layers", "num_heads", "intermediate_size")
        if self.hidden_size % self.num_heads:
            raise ConfigError("hidden_size: must be a multiple of num_heads")


@dataclass(frozen=True)
class TinyLlmConfig:
    """The tiny profile's seeded random-init ``LlamaForCausalLM`` (paper: Llama-2-7b-chat)."""

    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int

    def __post_init__(self) -> None:
        _check_positive(self, "hidden_size", "num_layers", "num_heads", "intermediate_size")
        if self.hidden_size % self.num_heads:
            raise ConfigError("hidden_size: must be a multiple of num_heads")


@dataclass(frozen=True)
class TokenizerConfig:
    """The tiny profile's byte-level BPE tokenizer, trained on the AV-UIE text."""

    vocab_size: int
    min_frequency: int

    def __post_init__(self) -> None:
        _check_positive(self, "vocab_size", "min_frequency")


@dataclass(frozen=True)
class PretrainedPathsConfig:
    """The paper profile's local copies of the released weights (nothing is downloaded; the tiny profile ignores them).

    Paths, not environment variables: DVC sees params, so pointing at other weights reruns ``base_models``.
    """

    vision: str  # HF folder of openai/clip-vit-large-patch14 (config.json, preprocessor_config.json, safetensors)
    audio: str  # BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt, the official {cfg, model} checkpoint
    llm: str  # HF folder of meta-llama/Llama-2-7b-chat-hf (config.json, safetensors, tokenizer files)


@dataclass(frozen=True)
class BaseModelsConfig:
    """``base_models`` stage: the frozen encoders, the LLM and the tokenizer every later stage starts from."""

    out_dir: str
    seed: int
    vision: TinyVisionConfig
    audio: TinyAudioConfig
    llm: TinyLlmConfig
    tokenizer: TokenizerConfig
    pretrained: PretrainedPathsConfig


@dataclass(frozen=True)
class FeaturesConfig:
    """``features`` stage: frozen encoders run once over all media referenced by AV-UIE."""

    out_dir: str
    shard_size: int  # media items per safetensors shard (the unit of resumption)
    batch_size: int  # frames / audio clips per encoder forward
    dtype: Literal["float32", "float16", "bfloat16"]  # storage dtype of the features

    def __post_init__(self) -> None:
        _check_positive(self, "shard_size", "batch_size")


@dataclass(frozen=True)
class OptimConfig:
    """Optimisation of one training stage: AdamW, linear warmup then cosine decay, accumulation."""

    epochs: float  # passes over the stage's training mixture (fractions allowed)
    batch_size: int  # samples per micro-batch
    grad_accum: int  # micro-batches per optimizer step
    lr: float
    weight_decay: float
    warmup_ratio: float  # share of optimizer steps spent warming up
    max_grad_norm: float
    mixed_precision: Literal["no", "bf16", "fp16"]  # used only where the device supports it
    log_every_steps: int
    save_every_steps: int  # checkpoint (model, optimizer, scheduler, RNG, data position) period
    # Recompute the LLM's layer activations in the backward pass: the paper model's finetune step at 2 x 1024
    # tokens needs 15.1 instead of 31.9 GiB on an H200, at 2.1x the time (benchmarks/README.md). Same math.
    gradient_checkpointing: bool = False
    # Batch examples of similar length together (crab.train.data.ResumableBatchSampler): the tiny fine-tuning
    # mixture's random batches were 32 % padding, grouped 4 %. Changes which examples share a batch (mostly one
    # task), not the epoch; off in both profiles: on in every tiny stage, the text tasks came out worse (params.yaml).
    group_by_length: bool = False

    def __post_init__(self) -> None:
        _check_positive(self, "epochs", "batch_size", "grad_accum", "lr", "log_every_steps", "save_every_steps")
        _check_unit_interval(self, "warmup_ratio")
        _check_non_negative(self, "weight_decay", "max_grad_norm")


@dataclass(frozen=True)
class PretrainSegmentationConfig:
    """``pretrain``'s segmentation phase (crab-reference 3.4, :mod:`crab.train.seg_pretrain`): the binary mask
    decoder alone on ``tasks``' train records, every other weight frozen."""

    tasks: list[TaskName]  # binary-head mask tasks (seg: LVIS or its AV-Synth stand-in); checked by check_tasks
    loss: SegLossConfig  # the finetune_avs objective's weights (lm: no trainable weight sees it here)
    optim: OptimConfig


@dataclass(frozen=True)
class PretrainGroundingConfig:
    """``pretrain``'s grounding phase (tiny profile), after alignment: the LLM, full, trains together with the
    aligned projectors on ``tasks``' train records, so that the random-init LLM learns to read the media tokens
    (Llama-2 arrives at fine-tuning able to; the tiny LLM, taught on text alone, cannot)."""

    tasks: list[TaskName]
    # reasoning targets, direct answers, or each record in both forms (crab.train.data.answer_forms); tiny: both
    # (direct alone made the LLM forget the reasoning, and the fine-tuned model then ignored the media)
    answers: AnswerForm
    optim: OptimConfig
    # task -> copies of its train records in the mixture (a task not named: 1). Why: the mixture's share is
    # proportional to a task's clips, and AVVP (400 clips, the longest answers) learns only with steps of its
    # own (benchmarks/README.md, learning_curve.py: segment Event@AV 0.019 -> 0.137 after 600 AVVP steps).
    repeat: dict[TaskName, int] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        for task, copies in self.repeat.items():
            if task not in self.tasks:
                raise ConfigError(f"repeat.{task}: not one of tasks {self.tasks}")
            if copies < 1:
                raise ConfigError(f"repeat.{task}: must be >= 1, got {copies}")


@dataclass(frozen=True)
class PretrainConfig:
    """``pretrain`` stage: align the projectors (tiny profile: the random-init LLM first learns language)."""

    out_dir: str
    seed: int
    tasks: list[TaskName]  # training mixture (avcap captions + task data in the tiny profile)
    # tiny: the random-init LLM first learns the AV-UIE language on the mixture's train targets alone (text, no
    # features), standing in for Llama-2's pre-training; paper: null (Llama-2-chat already speaks).
    language: OptimConfig | None
    train_llm: bool  # whether the LLM also trains while the projectors align (Crab and both profiles: False)
    # tiny: align on direct answers (instruction + "answer directly" request, answer without reasoning); the
    # language phase then learns both forms. paper: False (align on the mixture as it is).
    direct_answers: bool
    # tiny: one learned position embedding per CLIP patch in the visual projector, so that its queries can tell
    # the left object from the right one; paper: False (Crab has none; CLIP ViT-L's features keep positions).
    visual_feature_positions: bool
    optim: OptimConfig
    # Crab's segmentation pre-training (P3), after alignment: the binary mask decoder alone; null = none (the
    # segmentation stages then start from a seeded decoder).
    segmentation: PretrainSegmentationConfig | None = None
    # tiny: after alignment, the LLM and the projectors train together on task data (PretrainGroundingConfig);
    # paper: null (Crab's pre-training never trains the LLM).
    grounding: PretrainGroundingConfig | None = None


@dataclass(frozen=True)
class LoraParams:
    """Adapter hyper-parameters (crab-reference section 2.2)."""

    r: int
    alpha: float
    dropout: float
    num_heads: int  # IA-LoRA B heads (Crab: 3)
    router_aux_loss_coef: float  # optional router load-balance loss; 0 = off, as in Crab

    def __post_init__(self) -> None:
        _check_positive(self, "r", "alpha", "num_heads")
        _check_unit_interval(self, "dropout")
        _check_non_negative(self, "router_aux_loss_coef")


@dataclass(frozen=True)
class FinetuneConfig:
    """``finetune`` stage: multi-task instruction tuning, LLM frozen, adapter + projectors trained."""

    out_dir: str
    seed: int
    tasks: list[TaskName]
    adapter: Literal["ia_lora", "lora", "lora_moe", "single_task"]  # single_task: a plain LoRA per task
    lora: LoraParams
    optim: OptimConfig


@dataclass(frozen=True)
class SegLossConfig:
    """Weights of the ``finetune_avs`` loss: LM + BCE + Dice (binary head) or LM + CE (AVSS's class head)."""

    lm: float  # the answer text, mask tokens included
    bce: float  # Crab: bce_loss_weight 1.0
    dice: float
    ce: float

    def __post_init__(self) -> None:
        _check_non_negative(self, "lm", "bce", "dice", "ce")


@dataclass(frozen=True)
class FinetuneAvsConfig:
    """``finetune_avs`` / ``finetune_avss`` stage: the mask decoder, embeddings and LM head on segmentation tasks
    (crab-ref 3.6); the ``finetune`` adapter and projectors stay frozen. One decoder has one head, so a section's
    tasks share their head size (``TaskSpec.mask_classes``): ``finetune_avs`` the binary tasks, ``finetune_avss``
    AVSS's 71 classes (Crab released the two as separate weights)."""

    out_dir: str
    seed: int
    tasks: list[MaskTaskName]  # each must be among finetune.tasks (F1 learns their answers as text first)
    loss: SegLossConfig
    optim: OptimConfig


@dataclass(frozen=True)
class FinetuneAvssConfig(FinetuneAvsConfig):
    """``finetune_avss``: :class:`FinetuneAvsConfig` and the kind of its class head."""

    # "softmax": Crab's head, one softmax over background and the 70 classes; "factorized": a sounding-object
    # logit (started from the pre-trained binary head) times a softmax over the classes
    # (crab.models.mask_decoder.factorized_class_log_probs).
    class_head: Literal["softmax", "factorized"]


@dataclass(frozen=True)
class EvaluateConfig:
    """``evaluate`` stage: greedy generation with KV cache, answer parsing, official metrics.

    ``tasks`` are the text tasks of the ``evaluate`` stage (a DVC ``foreach``); the mask tasks of
    ``finetune_avs.tasks`` are scored by ``evaluate_avs`` with the same settings and the ``finetune_avs`` model.
    """

    tasks: list[TextTaskName]  # each must be among finetune.tasks (the single-task ablation needs its adapter)
    split: Literal["val", "test"]
    batch_size: int
    max_new_tokens: int
    num_examples: int  # predictions shown in the report
    # KV cache of the decoding loop: "static" preallocates it, and on a GPU transformers then compiles the decoding
    # step (CUDA graphs): 12.6 vs 71 ms per token for the 7B IA-LoRA model on an H200 (benchmarks/README.md).
    # On the CPU nothing is compiled, so "dynamic" is the faster choice there.
    cache: Literal["dynamic", "static"] = "dynamic"

    def __post_init__(self) -> None:
        _check_positive(self, "batch_size", "max_new_tokens")


@dataclass(frozen=True)
class AblationRow:
    """One row of Table 4: its ``dvc exp run -S`` overrides (``finetune.seed`` comes from ``ablate.seeds``)."""

    name: str  # experiment-name stem, e.g. "crab"
    label: str  # the paper's row label, e.g. "Crab(Ours)"
    set: dict[str, Any]  # dotted params key -> scalar value

    def __post_init__(self) -> None:
        if not self.name.replace("_", "").isalnum():
            raise ConfigError(f"name: letters, digits and '_' only (a DVC experiment name), got {self.name!r}")


@dataclass(frozen=True)
class AblateConfig:
    """``crab ablate``: the Table 4 rows run as DVC experiments, each at every seed (not a DVC stage)."""

    seeds: list[int]
    jobs: int  # experiments run at a time (`dvc exp run --run-all --jobs`)
    rows: list[AblationRow]

    def __post_init__(self) -> None:
        _check_positive(self, "jobs")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"seeds: a non-empty list of distinct seeds, got {self.seeds}")
        names = [row.name for row in self.rows]
        if not names or len(set(names)) != len(names):
            raise ConfigError(f"rows: a non-empty list with distinct names, got {names}")


@dataclass(frozen=True)
class Params:
    """The whole ``params.yaml``."""

    profile: Literal["tiny", "paper"]
    synth: SynthConfig
    datasets: DatasetsConfig
    media: MediaConfig
    validation: ValidationConfig
    avuie: AvuieConfig
    base_models: BaseModelsConfig
    features: FeaturesConfig
    pretrain: PretrainConfig
    finetune: FinetuneConfig
    finetune_avs: FinetuneAvsConfig
    finetune_avss: FinetuneAvssConfig
    evaluate: EvaluateConfig
    ablate: AblateConfig


# --------------------------------------------------------------------------------------------------
# Strict loading
# --------------------------------------------------------------------------------------------------


def check_tasks(params: Params) -> None:
    """Cross-section checks of the task lists: a task evaluated or segmentation-tuned must have been fine-tuned,
    and the segmentation pre-training trains the binary head.

    Why: the single-task ablation evaluates each task with its own adapter, and F2 (``finetune_avs`` /
    ``finetune_avss``) starts from the F1 model that learned the mask tasks' answers as text (crab-reference 3.5,
    3.6). A segmentation stage trains one decoder head: ``finetune_avs`` the binary one (S4, MS3, Ref-AVS),
    ``finetune_avss`` the class head (AVSS), so each list holds only its head's tasks. Run by
    :func:`load_params` on the user's file; tests that build ``Params`` in code may narrow one list alone.

    Raises:
        ConfigError: names the list and the tasks missing from ``finetune.tasks``, or the tasks of a segmentation
            stage that need the other head.
    """
    from crab.tasks import TASKS, Task

    trained = set(params.finetune.tasks)
    lists = (("evaluate.tasks", params.evaluate.tasks), ("finetune_avs.tasks", params.finetune_avs.tasks),
             ("finetune_avss.tasks", params.finetune_avss.tasks))  # fmt: skip
    for key, tasks in lists:
        missing = [t for t in tasks if t not in trained]
        if missing:
            raise ConfigError(f"{key}: {missing} not in finetune.tasks {sorted(trained)}")
    if params.pretrain.segmentation is not None:  # the decoder pre-trained there is binary
        wrong = [t for t in params.pretrain.segmentation.tasks
                 if not TASKS[Task(t)].masks or TASKS[Task(t)].mask_classes > 1]  # fmt: skip
        if wrong:
            raise ConfigError(f"pretrain.segmentation.tasks: {wrong} are not binary mask tasks (seg, s4, ms3, ref_avs)")
    for (key, tasks), class_head in zip(lists[1:], (False, True), strict=True):
        wrong = [t for t in tasks if (TASKS[Task(t)].mask_classes > 1) != class_head]
        if wrong:
            head, other = ("the class head", "finetune_avs") if class_head else ("the binary head", "finetune_avss")
            raise ConfigError(f"{key}: {wrong} need another decoder head; this stage trains {head} (use {other})")


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read ``params.yaml`` into :class:`Params`.

    The file is parsed as YAML 1.2 with ruamel.yaml, the parser DVC reads and writes params with: ``dvc exp
    run -S`` rewrites the file and writes the string ``"no"`` unquoted, which a YAML 1.1 parser (PyYAML)
    would read as ``False``.

    Raises:
        ConfigError: the file is missing or unreadable YAML, a key is unknown, missing or of the wrong type,
            or the task lists disagree (:func:`check_tasks`); the message starts with the file name and names
            the key.
    """
    path = Path(path)
    try:
        raw = YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err})".replace("\n", " ")) from None
    try:
        params = parse_section(Params, raw, "")
        check_tasks(params)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
    return params


def parse_section(cls: type, raw: Any, key: str) -> Any:
    """Build dataclass ``cls`` from a mapping, strictly (no unknown, missing or mistyped keys)."""
    return _convert(cls, raw, key)


def _convert(tp: Any, value: Any, key: str) -> Any:
    origin = get_origin(tp)
    where = key or "<top level>"
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {_describe(value)}")
        hints = get_type_hints(tp)
        names = [f.name for f in dataclasses.fields(tp)]
        unknown = sorted(set(value) - set(names))
        if unknown:
            raise ConfigError(f"{_join(key, str(unknown[0]))}: unknown key")
        missing = [n for n in names if n not in value]
        if missing:
            raise ConfigError(f"{_join(key, missing[0])}: missing key")
        kwargs = {n: _convert(hints[n], value[n], _join(key, n)) for n in names}
        try:
            return tp(**kwargs)
        except ConfigError as err:
            # __post_init__ messages name the field relative to its section; make the key absolute.
            raise ConfigError(_join(key, str(err))) from None
    if origin is Literal:
        choices = get_args(tp)
        if value not in choices:
            raise ConfigError(f"{where}: expected one of {list(choices)}, got {_describe(value)}")
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _convert(arg, value, key)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if errors else f"{where}: unexpected {_describe(value)}")
    if origin in (list, tuple):
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {_describe(value)}")
        (item_tp, *_) = get_args(tp) or (Any,)
        items = [_convert(item_tp, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {_describe(value)}")
        key_tp, val_tp = get_args(tp)
        return {_convert(key_tp, k, where): _convert(val_tp, v, _join(key, str(k))) for k, v in value.items()}
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {_describe(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected int, got {_describe(value)}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected float, got {_describe(value)}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected str, got {_describe(value)}")
        return value
    raise TypeError(f"config schema uses an unsupported type at {where}: {tp!r}")  # a schema bug, not user error


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _describe(value: Any) -> str:
    text = repr(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{type(value).__name__} {text}"


def _check_positive(obj: object, *names: str) -> None:
    for name in names:
        if getattr(obj, name) <= 0:
            raise ConfigError(f"{name}: must be > 0, got {getattr(obj, name)}")


def _check_non_negative(obj: object, *names: str) -> None:
    for name in names:
        if getattr(obj, name) < 0:
            raise ConfigError(f"{name}: must be >= 0, got {getattr(obj, name)}")


def _check_unit_interval(obj: object, *names: str) -> None:
    for name in names:
        if not 0.0 <= getattr(obj, name) <= 1.0:
            raise ConfigError(f"{name}: must be in [0, 1], got {getattr(obj, name)}")
