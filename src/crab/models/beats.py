"""BEATs audio encoder, our own implementation with the official state-dict layout (Crab's audio encoder).

Crab encodes every audio clip with Microsoft's BEATs (Chen et al., "BEATs: Audio Pre-Training with Acoustic
Tokenizers", ICML 2023; code in microsoft/unilm ``beats/BEATs.py`` and ``beats/backbone.py``), checkpoint
``BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt``, frozen, taking the last layer's tokens
(reference section 1.4). The architecture, as published:

- a 16x16 patch embedding (``Conv2d(1, 512)``) over the ``(T, 128)`` normalised fbank, LayerNorm, and a
  ``Linear(512, 768)``; tokens are ordered time-major, 8 frequency patches per time step, so
  ``N = floor(T / 16) * 8`` (1 s -> 48 tokens, 2 s -> 96);
- a weight-normalised grouped ``Conv1d`` positional embedding (wav2vec 2.0 style) then, with
  ``layer_norm_first=False``, a LayerNorm;
- post-LN Transformer layers with DeepNorm residual scaling ``alpha = (2 L) ** 0.25`` and a T5-style bucketed
  relative position bias, computed once by layer 0's embedding (shared by all layers) and rescaled in each
  layer by a query-dependent gate (``grep_linear``, ``grep_a``: "gated relative position bias").

The checkpoint is ``{"cfg": dict, "model": state_dict}``; this module reproduces the official module names so
``load_beats`` loads it with ``weights_only=True`` and strict key checking. How it differs from the official
code:

- ``encoder.pos_conv.0`` keeps the legacy ``weight_g`` / ``weight_v`` parameters of
  ``torch.nn.utils.weight_norm(dim=2)`` and computes ``weight = v * g / ||v||`` (norm over all dims but the
  kernel axis) in ``forward``; no deprecated hook and no load-time key remapping are needed;
- attention runs in ``(B, H, N, d)`` layout through ``F.scaled_dot_product_attention`` with the (gated)
  bias as an additive mask; the official fp16 trick (``q / 32``, subtract the row max, times 32) leaves the
  softmax unchanged and is omitted;
- the input is the fbank (``crab.features.fbank.beats_fbank``), not the waveform, so a batch is featurised
  without BEATs' per-clip Python loop; ``extract_features`` returns only the tokens (``feature_only``);
- a frame padding mask marks a token as padding when all 16 frames of its time patch are padding. The
  official ``forward_padding_mask`` groups consecutive frames by flat token index instead, ignoring the 8
  frequency patches per step; both agree when nothing is padded, which is how Crab calls it.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from crab.errors import CrabError

if TYPE_CHECKING:
    from crab.config import TinyAudioConfig

__all__ = [
    "BEATs",
    "BEATsConfig",
    "BeatsCheckpointError",
    "beats_iter3_plus_as2m_config",
    "beats_tiny",
    "beats_tiny_config",
    "load_beats",
    "save_beats_checkpoint",
]

logger = logging.getLogger(__name__)

_ACTIVATIONS = {
    "gelu": lambda x: F.gelu(x.float()).type_as(x),  # the official helper computes GELU in float32
    "gelu_accurate": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
    "tanh": torch.tanh,
    "linear": lambda x: x,
}


class BeatsCheckpointError(CrabError):
    """A BEATs checkpoint whose format, config or weights do not fit this implementation."""


@dataclass(frozen=True)
class BEATsConfig:
    """BEATs hyper-parameters; field names and defaults are the official ``BEATsConfig``'s.

    A checkpoint's ``cfg`` dict overrides these defaults, as the official ``BEATsConfig.update`` does. One
    default differs: ``input_patch_size`` is 16 (officially -1, "unset"; every released checkpoint uses 16).
    """

    input_patch_size: int = 16
    embed_dim: int = 512
    conv_bias: bool = False
    encoder_layers: int = 12
    encoder_embed_dim: int = 768
    encoder_ffn_embed_dim: int = 3072
    encoder_attention_heads: int = 12
    activation_fn: str = "gelu"
    layer_wise_gradient_decay_ratio: float = 1.0
    layer_norm_first: bool = False
    deep_norm: bool = False
    dropout: float = 0.1
    attention_dropout: float = 0.1
    activation_dropout: float = 0.0
    encoder_layerdrop: float = 0.0
    dropout_input: float = 0.0
    conv_pos: int = 128
    conv_pos_groups: int = 16
    relative_position_embedding: bool = False
    num_buckets: int = 320
    max_distance: int = 1280
    gru_rel_pos: bool = False
    finetuned_model: bool = False
    predictor_dropout: float = 0.1
    predictor_class: int = 527

    def __post_init__(self) -> None:
        for name in (
            "input_patch_size",
            "embed_dim",
            "encoder_layers",
            "encoder_embed_dim",
            "encoder_ffn_embed_dim",
            "encoder_attention_heads",
            "conv_pos",
            "conv_pos_groups",
            "num_buckets",
            "max_distance",
            "predictor_class",
        ):
            if not isinstance(getattr(self, name), int) or getattr(self, name) <= 0:
                raise ValueError(f"BEATsConfig.{name} must be a positive int, got {getattr(self, name)!r}")
        for name in (
            "dropout",
            "attention_dropout",
            "activation_dropout",
            "encoder_layerdrop",
            "dropout_input",
            "predictor_dropout",
        ):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"BEATsConfig.{name} must be in [0, 1), got {getattr(self, name)!r}")
        if self.encoder_embed_dim % self.encoder_attention_heads:
            raise ValueError("BEATsConfig.encoder_embed_dim must be divisible by encoder_attention_heads")
        if self.encoder_embed_dim % self.conv_pos_groups:
            raise ValueError("BEATsConfig.encoder_embed_dim must be divisible by conv_pos_groups")
        if self.deep_norm and self.layer_norm_first:
            raise ValueError("BEATsConfig.deep_norm requires layer_norm_first=False (post-LN)")
        if self.activation_fn not in _ACTIVATIONS:
            raise ValueError(
                f"BEATsConfig.activation_fn must be one of {sorted(_ACTIVATIONS)}, got {self.activation_fn!r}"
            )
        if self.relative_position_embedding and (self.num_buckets < 4 or self.max_distance <= self.num_buckets // 4):
            raise ValueError("BEATsConfig needs num_buckets >= 4 and max_distance > num_buckets // 4")

    @classmethod
    def from_dict(cls, cfg: dict[str, Any]) -> BEATsConfig:
        """Build from a checkpoint ``cfg`` dict; unknown keys are logged and ignored (officially: stored, unused).

        Args:
            cfg: the checkpoint's ``cfg`` mapping (official field names).

        Returns:
            The config, with official defaults for absent fields.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(cfg) - names)
        if unknown:
            logger.warning("BEATs cfg keys not used by this implementation: %s", ", ".join(unknown))
        return cls(**{k: v for k, v in cfg.items() if k in names})

    def to_dict(self) -> dict[str, Any]:
        """Plain dict with the official field names (what a checkpoint's ``cfg`` holds)."""
        return dataclasses.asdict(self)


def beats_iter3_plus_as2m_config() -> BEATsConfig:
    """Config of ``BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt``, the checkpoint Crab uses.

    Sources: sizes (12 layers, width 768, 12 heads, FFN 3072, GELU, patch 16, patch dim 512, conv_pos
    128 / 16 groups, 320 buckets, 527 AudioSet classes) are the official ``BEATsConfig`` defaults and
    agree with the checkpoint's ``cfg``; the rest (``max_distance`` 800, not the default 1280;
    ``relative_position_embedding``, ``gru_rel_pos``, ``deep_norm`` and ``finetuned_model`` True;
    ``layer_norm_first`` and ``conv_bias`` False; ``layer_wise_gradient_decay_ratio`` 0.6;
    ``encoder_layerdrop`` 0.05; all dropouts 0) are the checkpoint's ``cfg`` as reproduced identically by
    several public users of the iter3+ AS2M checkpoints (e.g. NatureLM-audio's ``config.json``). Crab sets
    ``encoder_layerdrop=0``; it only acts in training mode, and Crab runs BEATs frozen in eval mode.
    """
    return BEATsConfig(
        input_patch_size=16,
        embed_dim=512,
        conv_bias=False,
        encoder_layers=12,
        encoder_embed_dim=768,
        encoder_ffn_embed_dim=3072,
        encoder_attention_heads=12,
        activation_fn="gelu",
        layer_wise_gradient_decay_ratio=0.6,
        layer_norm_first=False,
        deep_norm=True,
        dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        encoder_layerdrop=0.05,
        dropout_input=0.0,
        conv_pos=128,
        conv_pos_groups=16,
        relative_position_embedding=True,
        num_buckets=320,
        max_distance=800,
        gru_rel_pos=True,
        finetuned_model=True,
        predictor_dropout=0.0,
        predictor_class=527,
    )


def beats_tiny_config() -> BEATsConfig:
    """The real config shrunk for CPU tests: same switches, 2 layers of width 64, 2 heads, FFN 128.

    ``embed_dim`` (32) differs from the width (64) so that ``post_extract_proj`` exists as in the real
    model; the patch size stays 16 so token counts match (1 s -> 48 tokens).
    """
    return dataclasses.replace(
        beats_iter3_plus_as2m_config(),
        embed_dim=32,
        encoder_layers=2,
        encoder_embed_dim=64,
        encoder_ffn_embed_dim=128,
        encoder_attention_heads=2,
        conv_pos=16,
        conv_pos_groups=4,
        num_buckets=32,
        max_distance=64,
        encoder_layerdrop=0.0,
        predictor_class=10,
    )


class _ScaleGrad(torch.autograd.Function):
    """Identity forward, gradient times ``scale`` backward (the official ``GradMultiply``)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, scale: float) -> Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return grad * ctx.scale, None


class _WeightNormConv1d(nn.Module):
    """Grouped ``Conv1d`` with legacy weight-norm parameters ``weight_g`` (1, 1, K) and ``weight_v``.

    Equivalent to ``nn.utils.weight_norm(nn.Conv1d(...), dim=2)`` followed by fairseq's ``SamePad``: padding
    ``K // 2`` on both sides and, for even K, the last output step dropped, so the length is unchanged.
    """

    def __init__(self, channels: int, kernel_size: int, groups: int) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.groups = groups
        self.weight_g = nn.Parameter(torch.empty(1, 1, kernel_size))
        self.weight_v = nn.Parameter(torch.empty(channels, channels // groups, kernel_size))
        self.bias = nn.Parameter(torch.empty(channels))

    def reset_parameters(self) -> None:
        std = math.sqrt(4.0 / (self.kernel_size * self.weight_v.shape[0]))  # official init, dropout 0
        nn.init.normal_(self.weight_v, mean=0.0, std=std)
        nn.init.zeros_(self.bias)
        with torch.no_grad():
            self.weight_g.copy_(self.weight_v.norm(dim=(0, 1), keepdim=True))  # so weight == v at init

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, N) -> (B, C, N)."""
        weight = self.weight_v * (self.weight_g / self.weight_v.norm(dim=(0, 1), keepdim=True))  # (C, C/G, K)
        y = F.conv1d(x, weight, self.bias, padding=self.kernel_size // 2, groups=self.groups)  # (B, C, N + 1 - K % 2)
        return y[..., :-1] if self.kernel_size % 2 == 0 else y


class _Attention(nn.Module):
    """Multi-head self-attention with the gated relative position bias (official ``MultiheadAttention``)."""

    def __init__(self, cfg: BEATsConfig) -> None:
        super().__init__()
        dim, self.num_heads = cfg.encoder_embed_dim, cfg.encoder_attention_heads
        self.head_dim = dim // self.num_heads
        self.num_buckets, self.max_distance = cfg.num_buckets, cfg.max_distance
        self.dropout = cfg.attention_dropout
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.q_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)
        # Set by the encoder: layer 0's embedding, shared by every layer (a key per layer in the state dict).
        self.relative_attention_bias: nn.Embedding | None = None
        self.gru_rel_pos = cfg.gru_rel_pos
        if cfg.gru_rel_pos:
            self.grep_linear = nn.Linear(self.head_dim, 8)
            self.grep_a = nn.Parameter(torch.ones(1, self.num_heads, 1, 1))

    def _buckets(self, length: int, device: torch.device) -> Tensor:
        """T5 bidirectional log buckets of ``key - query`` offsets, (N, N) long, in the official float32 steps."""
        positions = torch.arange(length, device=device)
        relative = positions[None, :] - positions[:, None]  # (N, N)
        half = self.num_buckets // 2
        buckets = (relative > 0).long() * half
        distance = relative.abs()
        max_exact = half // 2
        log_ratio = torch.log(distance.clamp(min=1).float() / max_exact) / math.log(self.max_distance / max_exact)
        large = (max_exact + (log_ratio * (half - max_exact)).long()).clamp(max=half - 1)
        return buckets + torch.where(distance < max_exact, distance, large)

    def position_bias(self, length: int) -> Tensor:
        """Ungated relative position bias (H, N, N) from the shared embedding."""
        weight = self.relative_attention_bias.weight  # (num_buckets, H)
        return F.embedding(self._buckets(length, weight.device), weight).permute(2, 0, 1)

    def forward(
        self, x: Tensor, key_padding_mask: Tensor | None, position_bias: Tensor | None
    ) -> tuple[Tensor, Tensor | None]:
        """Self-attention over (B, N, C).

        Args:
            x: tokens, (B, N, C).
            key_padding_mask: True at padded tokens, (B, N), or None.
            position_bias: ungated bias (H, N, N) from an earlier layer, or None to compute it here.

        Returns:
            ``(out (B, N, C), position_bias (H, N, N) or None)``; the bias is passed on to the next layer.
        """
        batch, length, dim = x.shape
        q = self.q_proj(x).view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)  # (B, H, N, d)
        k = self.k_proj(x).view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)
        if position_bias is None and self.relative_attention_bias is not None:
            position_bias = self.position_bias(length)
        bias = None
        if position_bias is not None:
            bias = position_bias.unsqueeze(0).to(q.dtype)  # (1, H, N, N)
            if self.gru_rel_pos:
                # Gate from the unscaled query: 8 outputs summed in two groups of 4 -> (a, b).
                gates = torch.sigmoid(self.grep_linear(q).view(batch, self.num_heads, length, 2, 4).sum(-1))
                gate_a, gate_b = gates.chunk(2, dim=-1)  # (B, H, N, 1) each
                bias = (gate_a * (gate_b * self.grep_a - 1.0) + 2.0) * bias  # (B, H, N, N)
        if key_padding_mask is not None:
            pad = torch.zeros(batch, 1, 1, length, dtype=q.dtype, device=q.device)
            pad = pad.masked_fill(key_padding_mask[:, None, None, :], float("-inf"))  # (B, 1, 1, N)
            bias = pad if bias is None else bias + pad
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=bias, dropout_p=self.dropout if self.training else 0.0
        )  # (B, H, N, d), scale 1/sqrt(d) as officially
        return self.out_proj(out.transpose(1, 2).reshape(batch, length, dim)), position_bias


class _EncoderLayer(nn.Module):
    """One Transformer layer (official ``TransformerSentenceEncoderLayer``), post-LN with DeepNorm or pre-LN."""

    def __init__(self, cfg: BEATsConfig) -> None:
        super().__init__()
        dim = cfg.encoder_embed_dim
        self.layer_norm_first = cfg.layer_norm_first
        self.deep_norm_alpha = (2 * cfg.encoder_layers) ** 0.25 if cfg.deep_norm else 1.0
        self.activation = _ACTIVATIONS[cfg.activation_fn]
        self.self_attn = _Attention(cfg)
        self.dropout1 = nn.Dropout(cfg.dropout)
        self.dropout2 = nn.Dropout(cfg.activation_dropout)
        self.dropout3 = nn.Dropout(cfg.dropout)
        self.self_attn_layer_norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, cfg.encoder_ffn_embed_dim)
        self.fc2 = nn.Linear(cfg.encoder_ffn_embed_dim, dim)
        self.final_layer_norm = nn.LayerNorm(dim)

    def _ffn(self, x: Tensor) -> Tensor:
        return self.dropout3(self.fc2(self.dropout2(self.activation(self.fc1(x)))))

    def forward(
        self, x: Tensor, padding_mask: Tensor | None, position_bias: Tensor | None
    ) -> tuple[Tensor, Tensor | None]:
        """(B, N, C) -> (B, N, C), plus the position bias for the next layer."""
        if self.layer_norm_first:
            attn, position_bias = self.self_attn(self.self_attn_layer_norm(x), padding_mask, position_bias)
            x = x + self.dropout1(attn)
            return x + self._ffn(self.final_layer_norm(x)), position_bias
        attn, position_bias = self.self_attn(x, padding_mask, position_bias)
        x = self.self_attn_layer_norm(x * self.deep_norm_alpha + self.dropout1(attn))
        return self.final_layer_norm(x * self.deep_norm_alpha + self._ffn(x)), position_bias


class _Encoder(nn.Module):
    """Positional convolution plus the layer stack (official ``TransformerEncoder``)."""

    def __init__(self, cfg: BEATsConfig) -> None:
        super().__init__()
        self.cfg = cfg
        dim = cfg.encoder_embed_dim
        self.pos_conv = nn.Sequential(_WeightNormConv1d(dim, cfg.conv_pos, cfg.conv_pos_groups), nn.GELU())
        self.layers = nn.ModuleList(_EncoderLayer(cfg) for _ in range(cfg.encoder_layers))
        if cfg.relative_position_embedding:
            shared = nn.Embedding(cfg.num_buckets, cfg.encoder_attention_heads)
            for layer in self.layers:
                layer.self_attn.relative_attention_bias = shared
        self.layer_norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor, padding_mask: Tensor | None) -> Tensor:
        """(B, N, C) tokens -> (B, N, C) last-layer output."""
        if padding_mask is not None:
            x = x.masked_fill(padding_mask.unsqueeze(-1), 0.0)
        x = x + self.pos_conv(x.transpose(1, 2)).transpose(1, 2)  # (B, N, C)
        if not self.cfg.layer_norm_first:
            x = self.layer_norm(x)
        x = F.dropout(x, p=self.cfg.dropout, training=self.training)
        position_bias = None
        for layer in self.layers:
            if self.cfg.layer_wise_gradient_decay_ratio != 1.0:
                x = _ScaleGrad.apply(x, self.cfg.layer_wise_gradient_decay_ratio)
            if self.training and self.cfg.encoder_layerdrop > 0 and torch.rand(()).item() < self.cfg.encoder_layerdrop:
                continue
            x, position_bias = layer(x, padding_mask, position_bias)
        return self.layer_norm(x) if self.cfg.layer_norm_first else x


class BEATs(nn.Module):
    """The BEATs encoder with the official state-dict key names.

    Args:
        cfg: hyper-parameters (``beats_iter3_plus_as2m_config()`` for Crab's checkpoint).
    """

    def __init__(self, cfg: BEATsConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.patch_embedding = nn.Conv2d(
            1, cfg.embed_dim, kernel_size=cfg.input_patch_size, stride=cfg.input_patch_size, bias=cfg.conv_bias
        )
        self.layer_norm = nn.LayerNorm(cfg.embed_dim)
        self.post_extract_proj = (
            nn.Linear(cfg.embed_dim, cfg.encoder_embed_dim) if cfg.embed_dim != cfg.encoder_embed_dim else None
        )
        self.dropout_input = nn.Dropout(cfg.dropout_input)
        self.encoder = _Encoder(cfg)
        if cfg.finetuned_model:
            self.predictor_dropout = nn.Dropout(cfg.predictor_dropout)
            self.predictor = nn.Linear(cfg.encoder_embed_dim, cfg.predictor_class)
        else:
            self.predictor = None
        self._init_encoder()

    @torch.no_grad()
    def _init_encoder(self) -> None:
        """The official encoder init: BERT normal(0.02) for linears/embedding, then DeepNorm xavier gains."""
        for module in self.encoder.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)
        self.encoder.pos_conv[0].reset_parameters()
        if self.cfg.deep_norm:
            beta = (8 * self.cfg.encoder_layers) ** -0.25
            for layer in self.encoder.layers:
                attn = layer.self_attn
                for linear, gain in (
                    (attn.k_proj, 1.0),
                    (attn.v_proj, beta),
                    (attn.q_proj, 1.0),
                    (attn.out_proj, beta),
                    (layer.fc1, beta),
                    (layer.fc2, beta),
                ):
                    nn.init.xavier_normal_(linear.weight, gain=gain)

    def num_tokens(self, num_frames: int, num_mel_bins: int = 128) -> int:
        """Tokens for a ``(num_frames, num_mel_bins)`` fbank: ``floor(T / 16) * floor(128 / 16)``."""
        patch = self.cfg.input_patch_size
        return (num_frames // patch) * (num_mel_bins // patch)

    def token_padding_mask(self, frame_padding_mask: Tensor, num_mel_bins: int = 128) -> Tensor:
        """Map a frame padding mask to tokens: a token is padding when all frames of its time patch are.

        Args:
            frame_padding_mask: True at padded fbank frames, (B, T).
            num_mel_bins: mel bins of the fbank (sets the frequency patches per time step).

        Returns:
            (B, N) bool, N = ``num_tokens(T)``, time-major like the tokens.
        """
        batch, frames = frame_padding_mask.shape
        patch = self.cfg.input_patch_size
        steps, per_step = frames // patch, num_mel_bins // patch
        per_time = frame_padding_mask[:, : steps * patch].reshape(batch, steps, patch).all(-1)  # (B, T/16)
        return per_time.repeat_interleave(per_step, dim=1)  # (B, N)

    def extract_features(self, fbank: Tensor, padding_mask: Tensor | None = None) -> Tensor:
        """Last-layer tokens of a batch of normalised fbanks (``feature_only``: the predictor is not applied).

        Args:
            fbank: ``beats_fbank`` output, (B, T, F) with F = 128 for real checkpoints.
            padding_mask: True at padded fbank frames, (B, T), or None (all valid, as in Crab).

        Returns:
            (B, N, encoder_embed_dim) with ``N = floor(T / 16) * floor(F / 16)`` (1 s -> 48, 2 s -> 96).

        Raises:
            ValueError: if ``fbank`` is not 3-D or is shorter than one patch.
        """
        patch = self.cfg.input_patch_size
        if fbank.dim() != 3 or fbank.shape[1] < patch or fbank.shape[2] < patch:
            raise ValueError(f"expected a (B, T, F) fbank with T, F >= {patch}, got {tuple(fbank.shape)}")
        features = self.patch_embedding(fbank.unsqueeze(1))  # (B, E, T/16, F/16)
        features = features.flatten(2).transpose(1, 2)  # (B, N, E), time-major
        features = self.layer_norm(features)
        token_mask = None if padding_mask is None else self.token_padding_mask(padding_mask.bool(), fbank.shape[2])
        if self.post_extract_proj is not None:
            features = self.post_extract_proj(features)  # (B, N, C)
        return self.encoder(self.dropout_input(features), token_mask)

    def forward(self, fbank: Tensor, padding_mask: Tensor | None = None) -> Tensor:
        """Alias of :meth:`extract_features`: (B, T, F) -> (B, N, C)."""
        return self.extract_features(fbank, padding_mask)

    def classify(self, fbank: Tensor, padding_mask: Tensor | None = None) -> Tensor:
        """AudioSet tag probabilities of a fine-tuned model (the official non-``feature_only`` output).

        Args:
            fbank: (B, T, F) normalised fbank.
            padding_mask: True at padded frames, (B, T), or None.

        Returns:
            (B, predictor_class) sigmoid of the token-averaged logits (padded tokens excluded).

        Raises:
            ValueError: if the model has no predictor (``finetuned_model=False``).
        """
        if self.predictor is None:
            raise ValueError("this BEATs config has no predictor (finetuned_model=False)")
        logits = self.predictor(self.predictor_dropout(self.extract_features(fbank, padding_mask)))  # (B, N, K)
        if padding_mask is None:
            return torch.sigmoid(logits.mean(dim=1))
        valid = (~self.token_padding_mask(padding_mask.bool(), fbank.shape[2])).unsqueeze(-1).to(logits.dtype)
        return torch.sigmoid((logits * valid).sum(dim=1) / valid.sum(dim=1))


def beats_tiny(seed: int = 0, sizes: TinyAudioConfig | None = None) -> BEATs:
    """A randomly initialised ``beats_tiny_config()`` model, deterministic in ``seed``, in eval mode.

    Args:
        seed: seed for a forked RNG (the global RNG state is left untouched).
        sizes: the tiny profile's sizes (``base_models.audio``) in place of ``beats_tiny_config()``'s.

    Returns:
        The model (about 0.1 M parameters with the default sizes).
    """
    cfg = beats_tiny_config()
    if sizes is not None:
        cfg = dataclasses.replace(
            cfg, embed_dim=sizes.embed_dim, encoder_embed_dim=sizes.hidden_size, encoder_layers=sizes.num_layers,
            encoder_attention_heads=sizes.num_heads, encoder_ffn_embed_dim=sizes.intermediate_size,
        )  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return BEATs(cfg).eval()


def save_beats_checkpoint(model: BEATs, cfg: BEATsConfig, path: str | Path) -> None:
    """Write ``{"cfg": dict, "model": state_dict}``, the official checkpoint format.

    Args:
        model: the encoder to save.
        cfg: its config (stored as a plain dict with the official field names).
        path: destination file.
    """
    torch.save({"cfg": cfg.to_dict(), "model": model.state_dict()}, Path(path))


def load_beats(path: str | Path, map_location: str | torch.device = "cpu") -> BEATs:
    """Load an official-format BEATs checkpoint with ``weights_only=True`` and strict keys, in eval mode.

    Args:
        path: a ``.pt`` file holding ``{"cfg": dict, "model": state_dict}``.
        map_location: where to load the tensors.

    Returns:
        The model in eval mode (the caller decides about ``requires_grad``).

    Raises:
        BeatsCheckpointError: if the file is not in that format or needs more than ``weights_only``, or
            keys are missing or unexpected (all named), or a tensor's shape does not match the config.
    """
    try:
        checkpoint = torch.load(Path(path), map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:  # holds objects beyond tensors and plain containers
        raise BeatsCheckpointError(f"{path}: not loadable with weights_only=True: {error}") from error
    if not isinstance(checkpoint, dict) or not {"cfg", "model"} <= checkpoint.keys():
        raise BeatsCheckpointError(f"{path}: expected a dict with 'cfg' and 'model'")
    try:
        cfg = BEATsConfig.from_dict(dict(checkpoint["cfg"]))
    except (TypeError, ValueError) as error:
        raise BeatsCheckpointError(f"{path}: bad cfg: {error}") from error
    model = BEATs(cfg)
    try:
        result = model.load_state_dict(checkpoint["model"], strict=False)
    except RuntimeError as error:  # shape mismatches
        raise BeatsCheckpointError(f"{path}: {' '.join(str(error).split())}") from error
    if result.missing_keys or result.unexpected_keys:
        raise BeatsCheckpointError(
            f"{path}: missing keys {sorted(result.missing_keys)}; unexpected keys {sorted(result.unexpected_keys)}"
        )
    return model.eval()
