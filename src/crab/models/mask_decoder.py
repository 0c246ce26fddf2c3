"""Crab's segmentation branch: a multi-scale SAM-style mask decoder prompted by the LLM's six mask tokens.

Implements crab-reference section 1.8. The LLM's final hidden states that predict ``<mask_0>`` ... ``<mask_5>``
(:func:`gather_mask_token_hidden`) are projected to the decoder width and fused into one prompt per feature
level (2 levels x 3 tokens). Per level, learned queries are conditioned on that prompt by a query generator
(self-attention, cross-attention to the prompt, FFN), then a SAM two-way transformer runs between the queries
and the neck-projected CLIP patch grid of that level (layer 14 for level 0; layer 22, upsampled 2x and gated by
level 0's mask, for level 1). Every query dots with the upscaled image embedding, a 1x1 MLP mixes the query maps
and a 1x1 classifier gives 1 (S4, MS3, Ref-AVS) or C (AVSS: 71) logit maps; the levels are resized to
``low_res_mask_size``, summed with learned scale weights and resized to ``image_size``.

How it differs from the authors' ``SegModule`` / ``MaskDecoderMultiScale``:

- The query-generator layers are chained (each takes the previous layer's output); Crab feeds every layer the
  original queries, so only its last layer mattered (crab-ref 7.8).
- The token and scale fusion weights are registered ``nn.Parameter`` s (Crab kept them in Python lists: never
  trained, never saved) and the random-Fourier positional matrices are persistent buffers (Crab re-drew them
  from the global RNG at every construction because checkpoints held parameters only).
- Batched over samples and frames (Crab looped over samples in Python); a sample may carry T frames that share
  its prompt, and the query generator runs once per sample and level, not once per frame.
- One head per decoder (``num_classes``), chosen by config, instead of two heads picked by a task-name string.
- A class head may be ``factorized`` (``class_head``; Crab's is ``softmax``, one softmax over background and the
  classes): channel 0 is a "sounding object here" logit ``f``, channels 1..C-1 score the object classes ``g``,
  and the decoder returns the log-probabilities ``log sigmoid(-f)`` (background) and ``log sigmoid(f) +
  log_softmax(g)`` (class c) of one C-way distribution (:func:`factorized_class_log_probs`). Why: on AV-Synth's 60
  AVSS train clips the tiny decoder with Crab's head learned the background prior and predicted background
  everywhere (benchmarks/README.md); factorized, where the object is (the part the binary pre-training already
  learned, whose head initialises ``f``) no longer competes with which object it is.
- The two-way transformer, neck, layer norm and MLPs are transformers' SAM modules (``SamTwoWayTransformer``,
  ``SamVisionNeck``, ``SamLayerNorm``, ``SamFeedForward``). The positional encoding is our own: transformers'
  ``SamPositionalEmbedding`` holds its Gaussian matrix as a trainable ``nn.Parameter`` and encodes points only,
  while SAM and Crab use a fixed buffer evaluated on the whole grid.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import nn
from transformers import PreTrainedConfig
from transformers import initialization as init
from transformers.models.sam.configuration_sam import SamMaskDecoderConfig, SamVisionConfig
from transformers.models.sam.modeling_sam import SamFeedForward, SamLayerNorm, SamTwoWayTransformer, SamVisionNeck

#: Kinds of class head (``num_classes > 1``): Crab's one softmax, or "sounding here" x "which class".
ClassHead = Literal["softmax", "factorized"]
CLASS_HEADS: tuple[str, ...] = get_args(ClassHead)

__all__ = [
    "CLASS_HEADS",
    "ClassHead",
    "CrabMaskDecoder",
    "CrabMaskDecoderConfig",
    "CrabQueryGenerator",
    "CrabRandomFourierPositionalEncoding",
    "class_map",
    "factorized_class_log_probs",
    "factorized_sounding_logits",
    "gather_mask_token_hidden",
    "init_mask_decoder_weights",
    "mask_decoder_paper_config",
    "mask_decoder_tiny_config",
]


class CrabMaskDecoderConfig(PreTrainedConfig):
    """Sizes of :class:`CrabMaskDecoder`; the class defaults are the paper's (crab-reference 1.8 and 8).

    Args:
        llm_hidden_size: width of the LLM hidden states of the mask tokens (must equal the LLM's hidden size).
        vision_hidden_size: width of the CLIP patch tokens of every level.
        vision_feature_layers: CLIP ``hidden_states`` indices of the levels, low level first (recorded for the
            ``features`` stage; one per level).
        hidden_size: decoder width (Crab's ``prompt_embed_dim``).
        num_mask_tokens: mask tokens in the answer, ``num_levels`` groups of equal size.
        num_levels: feature levels (image scales).
        num_queries: learned queries per level (300 in fine-tuning; Crab's segmentation pre-training used 128).
        num_query_generator_layers: chained layers of the query generator.
        query_generator_intermediate_size: FFN width of the query generator.
        num_hidden_layers: depth of each level's two-way transformer.
        num_attention_heads: heads of the two-way transformers and of the query generator.
        mlp_dim: MLP width of the two-way transformers.
        attention_downsample_rate: width reduction of the two-way transformers' cross-attentions.
        mask_embedding_size: channels of the upscaled image embedding and of the per-query hypernetwork output.
        image_size: side of CLIP's input image and of the output masks.
        patch_size: CLIP's patch size; the feature grid is ``image_size // patch_size`` per side.
        low_res_mask_size: side at which the levels' logits are resized and summed.
        num_classes: 1 (binary: S4, MS3, Ref-AVS) or the class count (AVSS: 71, background included).
        positional_encoding_scale: std of the random-Fourier Gaussian matrices.
        class_head: how a class head (``num_classes > 1``) turns its channels into class scores: ``softmax``
            (Crab's: the channels are the classes' logits, background first) or ``factorized`` (channel 0 a
            sounding-object logit, the rest the object classes' logits; :func:`factorized_class_log_probs`).
            Unused by a binary head.

    Raises:
        ValueError: on a non-positive size, ``num_mask_tokens`` not divisible by ``num_levels``, ``image_size``
            not divisible by ``patch_size``, heads not dividing the (downsampled) width, an odd ``hidden_size``,
            a ``vision_feature_layers`` length other than ``num_levels`` or an unknown ``class_head``.
    """

    model_type = "crab_mask_decoder"
    base_config_key = "mask_decoder_config"

    llm_hidden_size: int = 4096
    vision_hidden_size: int = 1024
    vision_feature_layers: list[int] | tuple[int, ...] = (14, 22)
    hidden_size: int = 256
    num_mask_tokens: int = 6
    num_levels: int = 2
    num_queries: int = 300
    num_query_generator_layers: int = 2
    query_generator_intermediate_size: int = 2048
    num_hidden_layers: int = 2
    num_attention_heads: int = 8
    mlp_dim: int = 2048
    attention_downsample_rate: int = 2
    mask_embedding_size: int = 32
    image_size: int = 224
    patch_size: int = 14
    low_res_mask_size: int = 112
    num_classes: int = 1
    positional_encoding_scale: float = 1.0
    class_head: str = "softmax"

    def __post_init__(self, **kwargs) -> None:
        super().__post_init__(**kwargs)
        self.vision_feature_layers = list(self.vision_feature_layers)  # JSON round trip gives a list
        sizes = (
            "llm_hidden_size", "vision_hidden_size", "hidden_size", "num_mask_tokens", "num_levels", "num_queries",
            "num_query_generator_layers", "query_generator_intermediate_size", "num_hidden_layers",
            "num_attention_heads", "mlp_dim", "attention_downsample_rate", "mask_embedding_size", "image_size",
            "patch_size", "low_res_mask_size", "num_classes",
        )  # fmt: skip
        for name in sizes:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.num_mask_tokens % self.num_levels:
            raise ValueError(
                f"num_mask_tokens={self.num_mask_tokens} is not a multiple of num_levels={self.num_levels}"
            )
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size={self.image_size} is not a multiple of patch_size={self.patch_size}")
        if self.hidden_size % 2:
            raise ValueError(f"hidden_size={self.hidden_size} must be even (sin and cos halves of the encoding)")
        cross_width = self.hidden_size // self.attention_downsample_rate
        if self.hidden_size % self.num_attention_heads or cross_width % self.num_attention_heads:
            raise ValueError(
                f"num_attention_heads={self.num_attention_heads} must divide hidden_size={self.hidden_size} and "
                f"hidden_size // attention_downsample_rate={cross_width}"
            )
        if len(self.vision_feature_layers) != self.num_levels:
            raise ValueError(f"vision_feature_layers={self.vision_feature_layers} needs {self.num_levels} entries")
        if self.class_head not in CLASS_HEADS:
            raise ValueError(f"class_head must be one of {CLASS_HEADS}, got {self.class_head!r}")

    @property
    def factorized(self) -> bool:
        """Whether the head is a factorized class head (a binary head never is)."""
        return self.num_classes > 1 and self.class_head == "factorized"

    @property
    def grid_size(self) -> int:
        """Side of the CLIP patch grid (16 for ViT-L/14 at 224 px)."""
        return self.image_size // self.patch_size

    @property
    def num_tokens_per_level(self) -> int:
        """Mask tokens fused into one level's prompt (3 in the paper)."""
        return self.num_mask_tokens // self.num_levels


def mask_decoder_paper_config(
    *,
    llm_hidden_size: int = 4096,
    num_classes: int = 1,
    vision_hidden_size: int = 1024,
    class_head: ClassHead = "softmax",
) -> CrabMaskDecoderConfig:
    """The paper's decoder: width 256, depth 2, 8 heads, MLP 2048, 300 queries, CLIP ViT-L/14 layers 14 and 22.

    Args:
        llm_hidden_size: the LLM width (Llama-2-7B: 4096).
        num_classes: 1 for S4 / MS3 / Ref-AVS, 71 for AVSS.
        vision_hidden_size: the CLIP width (ViT-L/14: 1024).
        class_head: a class head's kind (Crab's: ``softmax``).
    """
    return CrabMaskDecoderConfig(
        llm_hidden_size=llm_hidden_size,
        num_classes=num_classes,
        vision_hidden_size=vision_hidden_size,
        class_head=class_head,
    )


def mask_decoder_tiny_config(
    *,
    llm_hidden_size: int = 128,
    vision_hidden_size: int = 64,
    vision_feature_layers: Sequence[int] = (1, 2),
    image_size: int = 112,
    patch_size: int = 16,
    num_classes: int = 1,
    class_head: ClassHead = "softmax",
) -> CrabMaskDecoderConfig:
    """The CPU-sized decoder of the ``tiny`` profile: width 64, 4 heads, 16 queries, 7x7 grid -> 112 px masks.

    The defaults match the tiny LLM (128 wide) and tiny CLIP (64 wide, 112 px, patch 16) of ``params.yaml``.

    Args:
        llm_hidden_size: the tiny LLM's width.
        vision_hidden_size: the tiny CLIP's width.
        vision_feature_layers: the tiny CLIP's ``hidden_states`` indices of the two levels.
        image_size: the tiny CLIP's input size, also the mask size.
        patch_size: the tiny CLIP's patch size.
        num_classes: 1 for binary tasks, 71 for AVSS.
        class_head: a class head's kind.
    """
    return CrabMaskDecoderConfig(
        llm_hidden_size=llm_hidden_size,
        vision_hidden_size=vision_hidden_size,
        vision_feature_layers=list(vision_feature_layers),
        hidden_size=64,
        num_queries=16,
        query_generator_intermediate_size=128,
        num_attention_heads=4,
        mlp_dim=128,
        mask_embedding_size=8,
        image_size=image_size,
        patch_size=patch_size,
        low_res_mask_size=image_size // 2,
        num_classes=num_classes,
        class_head=class_head,
    )


class CrabRandomFourierPositionalEncoding(nn.Module):
    """SAM's random-Fourier encoding of a feature grid; the Gaussian matrix is a fixed, *persistent* buffer.

    Args:
        num_features: frequencies; the encoding has ``2 * num_features`` channels (sin, cos).
        scale: std of the Gaussian matrix.
    """

    def __init__(self, num_features: int, scale: float) -> None:
        super().__init__()
        self.scale = scale
        self.register_buffer("gaussian_matrix", scale * torch.randn(2, num_features), persistent=True)

    def forward(self, height: int, width: int) -> torch.Tensor:
        """Encode the pixel centres of a ``height x width`` grid.

        Returns:
            (2 * num_features, height, width).
        """
        matrix = self.gaussian_matrix
        ys = (torch.arange(height, device=matrix.device, dtype=matrix.dtype) + 0.5) / height
        xs = (torch.arange(width, device=matrix.device, dtype=matrix.dtype) + 0.5) / width
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        coords = 2 * torch.stack([grid_x, grid_y], dim=-1) - 1  # (H, W, 2) in [-1, 1], x first as in SAM
        angles = 2 * math.pi * (coords @ matrix)  # (H, W, F)
        return torch.cat([angles.sin(), angles.cos()], dim=-1).permute(2, 0, 1)  # (2F, H, W)


class CrabQueryGeneratorLayer(nn.Module):
    """Self-attention over the queries, cross-attention to the prompt, GELU FFN; each post-norm residual."""

    def __init__(self, hidden_size: int, num_heads: int, intermediate_size: int) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(hidden_size, num_heads, batch_first=True)
        self.norm1 = nn.LayerNorm(hidden_size)
        self.cross_attn = nn.MultiheadAttention(hidden_size, num_heads, batch_first=True)
        self.norm2 = nn.LayerNorm(hidden_size)
        self.ffn = nn.Sequential(
            nn.Linear(hidden_size, intermediate_size), nn.GELU(), nn.Linear(intermediate_size, hidden_size)
        )
        self.norm3 = nn.LayerNorm(hidden_size)

    def forward(self, queries: torch.Tensor, prompts: torch.Tensor) -> torch.Tensor:
        """(N, Q, D) queries attending to (N, K, D) prompts -> (N, Q, D)."""
        queries = self.norm1(queries + self.self_attn(queries, queries, queries, need_weights=False)[0])
        queries = self.norm2(queries + self.cross_attn(queries, prompts, prompts, need_weights=False)[0])
        return self.norm3(queries + self.ffn(queries))


class CrabQueryGenerator(nn.Module):
    """Learned queries conditioned on a prompt by a stack of *chained* :class:`CrabQueryGeneratorLayer` s."""

    def __init__(self, num_layers: int, hidden_size: int, num_heads: int, intermediate_size: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            CrabQueryGeneratorLayer(hidden_size, num_heads, intermediate_size) for _ in range(num_layers)
        )

    def forward(self, queries: torch.Tensor, prompts: torch.Tensor) -> torch.Tensor:
        """(N, Q, D) queries, (N, K, D) prompts -> (N, Q, D)."""
        for layer in self.layers:
            queries = layer(queries, prompts)  # chained; Crab passed the original queries to every layer
        return queries


class CrabMaskDecoder(nn.Module):
    """Mask tokens' hidden states + multi-level CLIP patch tokens -> mask logits (crab-reference 1.8).

    Args:
        config: the decoder's sizes.
    """

    def __init__(self, config: CrabMaskDecoderConfig) -> None:
        super().__init__()
        self.config = config
        width, llm_width, embed = config.hidden_size, config.llm_hidden_size, config.mask_embedding_size
        self.prompt_projection = nn.Sequential(  # Crab's text_hidden_fcs (its Dropout(0) dropped)
            nn.Linear(llm_width, llm_width), nn.ReLU(), nn.Linear(llm_width, width)
        )
        k = config.num_tokens_per_level
        self.token_weights = nn.Parameter(torch.full((k,), 1.0 / k))  # fuse a level's tokens; Crab multiseg_scalar
        self.scale_weights = nn.Parameter(torch.full((config.num_levels,), 1.0 / config.num_levels))  # sum levels
        self.neck = SamVisionNeck(SamVisionConfig(hidden_size=config.vision_hidden_size, output_channels=width))
        self.no_mask_embed = nn.Embedding(1, width)  # SAM's dense prompt when no mask is given
        self.positional_encodings = nn.ModuleList(
            CrabRandomFourierPositionalEncoding(width // 2, config.positional_encoding_scale)
            for _ in range(config.num_levels)
        )
        self.query_embed = nn.Embedding(config.num_queries, width)
        self.query_generator = CrabQueryGenerator(
            config.num_query_generator_layers,
            width,
            config.num_attention_heads,
            config.query_generator_intermediate_size,
        )
        self.level_embed = nn.Embedding(config.num_levels, width)
        self.upsample = nn.Sequential(  # levels >= 1 run at twice the grid
            nn.ConvTranspose2d(width, width, kernel_size=2, stride=2),
            SamLayerNorm(width, data_format="channels_first"),
            nn.GELU(),
        )
        transformer_config = SamMaskDecoderConfig(
            hidden_size=width,
            hidden_act="relu",
            mlp_dim=config.mlp_dim,
            num_hidden_layers=config.num_hidden_layers,
            num_attention_heads=config.num_attention_heads,
            attention_downsample_rate=config.attention_downsample_rate,
            layer_norm_eps=1e-5,  # SAM's / Crab's nn.LayerNorm default
            attn_implementation="sdpa",
        )
        self.transformers = nn.ModuleList(SamTwoWayTransformer(transformer_config) for _ in range(config.num_levels))
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(width, embed, kernel_size=2, stride=2),
            SamLayerNorm(embed, data_format="channels_first"),
            nn.GELU(),
        )
        self.query_mlp = SamFeedForward(width, width, embed, num_layers=3)  # Crab's hyper_mlp
        self.query_map_mlp = SamFeedForward(config.num_queries, width, embed, num_layers=3)  # hyper_mlp_out (1x1)
        self.classifier = nn.Linear(embed, config.num_classes, bias=False)  # a 1x1 convolution without bias
        # A factorized head also reads the object class off each pixel's image embedding (what is seen there); the
        # query maps above carry the prompt (what sounds).
        self.appearance_classifier = (
            nn.Conv2d(width, config.num_classes - 1, kernel_size=1) if config.factorized else None
        )
        init_mask_decoder_weights(self)

    def forward(self, mask_token_hidden: torch.Tensor, level_features: Sequence[torch.Tensor]) -> torch.Tensor:
        """Predict mask logits for every frame of every sample.

        Args:
            mask_token_hidden: (B, num_mask_tokens, llm_hidden_size) hidden states from
                :func:`gather_mask_token_hidden`, in ``<mask_0..5>`` order (level-major).
            level_features: ``num_levels`` CLIP patch-token tensors (CLS dropped), low level first, each
                (B, T, P, vision_hidden_size) or frame-flattened (B*T, P, vision_hidden_size), P = grid_size**2.
                All T frames of a sample share its prompt.

        Returns:
            (B, T, num_classes, image_size, image_size) logits (a factorized class head: class log-probabilities).

        Raises:
            ValueError: on a wrong number of mask tokens or levels, or a feature tensor whose shape does not fit.
        """
        config = self.config
        batch = mask_token_hidden.shape[0]
        expected = (config.num_mask_tokens, config.llm_hidden_size)
        if mask_token_hidden.ndim != 3 or mask_token_hidden.shape[1:] != expected:
            raise ValueError(
                f"mask_token_hidden must be (B, {config.num_mask_tokens}, {config.llm_hidden_size}), "
                f"got {tuple(mask_token_hidden.shape)}"
            )
        grids, num_frames = self._feature_grids(level_features, batch)  # each (B*T, D, g, g)
        dtype = self.token_weights.dtype
        prompts = self.prompt_projection(mask_token_hidden.to(dtype))  # (B, 6, D)
        prompts = prompts.unflatten(1, (config.num_levels, config.num_tokens_per_level))  # (B, L, k, D)
        prompts = torch.einsum("blkd,k->bld", prompts, self.token_weights)  # (B, L, D)

        # The queries depend on the sample's prompt only: generate them per (sample, level), then share over frames.
        queries = self.query_embed.weight.expand(batch * config.num_levels, -1, -1)  # (B*L, Q, D)
        queries = self.query_generator(queries, prompts.flatten(0, 1).unsqueeze(1))  # (B*L, Q, D)
        queries = queries.unflatten(0, (batch, config.num_levels)) + self.level_embed.weight[:, None]  # (B, L, Q, D)
        queries = queries.repeat_interleave(num_frames, dim=0)  # (B*T, L, Q, D)

        summed: torch.Tensor | None = None
        previous: torch.Tensor | None = None
        for level, grid in enumerate(grids):
            if level > 0:
                grid = self.upsample(grid)  # (N, D, 2g, 2g)
                # Gate with the previous level's mask: x (1 + sigmoid), as in Crab (mean over classes; a factorized
                # head has the mask itself, its sounding channel).
                gate = previous[:, :1] if config.factorized else previous.mean(dim=1, keepdim=True)  # (N, 1, h', w')
                if gate.shape[-2:] != grid.shape[-2:]:
                    gate = F.interpolate(gate, size=grid.shape[-2:], mode="bilinear", align_corners=False)
                grid = grid * (gate.sigmoid() + 1)
            logits = self._decode_level(level, grid, queries[:, level])  # (N, C, 2h, 2w)
            previous = logits
            low_res = F.interpolate(logits, size=config.low_res_mask_size, mode="bilinear", align_corners=False)
            weighted = self.scale_weights[level] * low_res  # (N, C, s, s)
            summed = weighted if summed is None else summed + weighted
        masks = F.interpolate(summed, size=config.image_size, mode="bilinear", align_corners=False)  # (N, C, S, S)
        if config.factorized:
            masks = factorized_class_log_probs(masks)
        return masks.unflatten(0, (batch, num_frames))  # (B, T, C, S, S)

    def _feature_grids(self, level_features: Sequence[torch.Tensor], batch: int) -> tuple[list[torch.Tensor], int]:
        """Check every level's features and run the shared neck: ([(B*T, D, g, g)] * L, T)."""
        config = self.config
        if len(level_features) != config.num_levels:
            raise ValueError(f"expected {config.num_levels} feature levels, got {len(level_features)}")
        g = config.grid_size
        grids, num_frames = [], None
        for level, features in enumerate(level_features):
            if features.ndim == 4:
                if features.shape[0] != batch:
                    raise ValueError(f"level {level} features have {features.shape[0]} samples, mask tokens {batch}")
                frames = features.shape[1]
                features = features.flatten(0, 1)  # (B*T, P, Dc)
            elif features.ndim == 3 and features.shape[0] % batch == 0:
                frames = features.shape[0] // batch
            else:
                raise ValueError(
                    f"level {level} features must be (B, T, P, D) or (B*T, P, D) with B={batch}, "
                    f"got {tuple(features.shape)}"
                )
            if features.shape[1:] != (g * g, config.vision_hidden_size):
                raise ValueError(
                    f"level {level} features must have {g * g} patches of width {config.vision_hidden_size}, "
                    f"got {tuple(features.shape[1:])}"
                )
            if num_frames is not None and frames != num_frames:
                raise ValueError(f"level {level} has {frames} frames per sample, level 0 has {num_frames}")
            num_frames = frames
            features = features.to(self.token_weights.dtype).unflatten(1, (g, g))  # (N, g, g, Dc), row-major
            grids.append(self.neck(features))  # (N, D, g, g)
        return grids, num_frames

    def _decode_level(self, level: int, grid: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
        """One level: (N, D, h, w) image embedding, (N, Q, D) queries -> (N, C, 2h, 2w) logits."""
        n, width, h, w = grid.shape
        grid = grid + self.no_mask_embed.weight.view(1, width, 1, 1)  # dense prompt (constant at every size)
        position = self.positional_encodings[level](h, w).unsqueeze(0).expand(n, -1, -1, -1)  # (N, D, h, w)
        # transformers' SAM carries a point-batch axis: queries (N, 1, Q, D); they are also their own PE.
        queries, keys = self.transformers[level](
            point_embeddings=queries.unsqueeze(1),
            image_embeddings=grid,
            image_positional_embeddings=position,
            attention_similarity=None,
        )  # (N, 1, Q, D), (N, 1, h*w, D)
        hyper = self.query_mlp(queries.squeeze(1))  # (N, Q, E)
        keys = keys.squeeze(1).transpose(1, 2).reshape(n, width, h, w)  # (N, D, h, w)
        upscaled = self.output_upscaling(keys)  # (N, E, 2h, 2w)
        maps = hyper @ upscaled.flatten(2)  # (N, Q, 4hw): one map per query
        maps = maps.unflatten(2, upscaled.shape[-2:]).permute(0, 2, 3, 1)  # (N, 2h, 2w, Q)
        logits = self.classifier(self.query_map_mlp(maps)).permute(0, 3, 1, 2)  # (N, C, 2h, 2w)
        if self.appearance_classifier is not None:  # factorized: + the classes' logits of the pixel's embedding
            appearance = self.appearance_classifier(keys)  # (N, C-1, h, w)
            appearance = F.interpolate(appearance, size=logits.shape[-2:], mode="bilinear", align_corners=False)
            logits = torch.cat([logits[:, :1], logits[:, 1:] + appearance], dim=1)
        return logits


def factorized_class_log_probs(channels: torch.Tensor) -> torch.Tensor:
    """A factorized class head's channels -> the log-probabilities of one distribution over background + classes.

    ``p(background) = sigmoid(-f)`` and ``p(c) = sigmoid(f) * softmax(g)_c``: cross-entropy on these is the BCE of
    "sounding object here" plus, on object pixels only, the cross-entropy of "which object"; their argmax is the
    most probable class, as for Crab's head, so the evaluation reads both alike.

    Args:
        channels: (N, C, ...) with channel 0 the sounding-object logit ``f`` and channels 1..C-1 the object
            classes' logits ``g``.

    Returns:
        (N, C, ...) log-probabilities (``logsumexp`` over dim 1 is 0).
    """
    sounding, classes = channels[:, :1], channels[:, 1:]  # (N, 1, ...), (N, C-1, ...)
    background = F.logsigmoid(-sounding)  # (N, 1, ...)
    objects = F.logsigmoid(sounding) + classes.log_softmax(dim=1)  # (N, C-1, ...)
    return torch.cat([background, objects], dim=1)


def factorized_sounding_logits(log_probs: torch.Tensor) -> torch.Tensor:
    """The sounding logit ``f`` back from a factorized head's (N, C, ...) log-probabilities: (N, ...).

    Exact: ``logsumexp`` of the object classes is ``log sigmoid(f)``, and ``log sigmoid(f) - log sigmoid(-f) = f``.
    """
    return log_probs[:, 1:].logsumexp(dim=1) - log_probs[:, 0]


def class_map(logits: torch.Tensor, class_head: ClassHead = "softmax") -> torch.Tensor:
    """A class head's prediction: ``(T, C, H, W)`` decoder output -> ``(T, H, W)`` class indices.

    ``softmax`` (Crab's): the argmax class, as the official AVSBench code. ``factorized``: the head's two answers
    in turn, as it was trained. Where an object sounds (sounding probability > 0.5, the binary tasks' threshold)
    is the mask; each connected region of it is one object, labelled with the class most likely for all of its
    pixels together (the largest sum of their class log-probabilities); elsewhere background. Why regions: the
    AVSS metric scores every class a frame shows, so the per-pixel argmax of an uncertain class head, a few
    pixels of many classes on one object, adds a zero score for each of them (AV-Synth, benchmarks/README.md).

    Raises:
        ValueError: ``logits`` is not 4-D.
    """
    if logits.ndim != 4:
        raise ValueError(f"class logits must be (T, C, H, W), got shape {tuple(logits.shape)}")
    if class_head == "softmax":
        return logits.argmax(dim=1)
    objects = logits[:, 1:]  # (T, C-1, H, W) object classes' log-probabilities
    sounding = factorized_sounding_logits(logits) > 0  # (T, H, W): p(object) > p(background)
    out = torch.zeros(sounding.shape, dtype=torch.long, device=logits.device)
    for t, mask in enumerate(sounding.cpu().numpy()):
        regions, count = ndimage.label(mask)  # (H, W) region ids 1..count (4-connected), 0 = background
        if count == 0:
            continue
        regions = torch.from_numpy(regions).to(logits.device).flatten()  # (H*W,)
        evidence = torch.zeros(count + 1, objects.shape[1], dtype=objects.dtype, device=logits.device)
        evidence.index_add_(0, regions, objects[t].flatten(1).T)  # (count + 1, C-1): summed log-probabilities
        labels = evidence.argmax(dim=1) + 1  # (count + 1,)
        labels[0] = 0
        out[t] = labels[regions].view(mask.shape)
    return out


def init_mask_decoder_weights(decoder: CrabMaskDecoder) -> None:
    """(Re-)initialise a whole decoder the way Crab's (and SAM's) code does.

    Linears, convolutions and embeddings get PyTorch's default init (Crab never overrides it): Kaiming-uniform
    with ``a=sqrt(5)`` and biases U(+-1/sqrt(fan_in)), embeddings N(0, 1); layer norms (1, 0); the query generator
    Xavier-uniform on every matrix with zero attention biases (Crab's ``_reset_parameters``); the positional
    matrices N(0, scale); the fusion weights 1/k and 1/L. Under transformers' N(0, 0.02) convention the tiny
    decoder's logits start at |x| <= 1e-7 (eight stacked small layers; 0.1 with this scheme), so it keeps its own.

    It uses ``transformers.initialization``, which skips tensors already loaded from a checkpoint, so
    ``CrabPreTrainedModel._init_weights`` may call it on the decoder module (visited after its children, it
    overrides the generic init of the decoder's sub-modules).

    Args:
        decoder: the decoder to initialise in place.
    """
    for module in decoder.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            init.kaiming_uniform_(module.weight, a=math.sqrt(5))
            if module.bias is not None:
                fan_in, _ = nn.init._calculate_fan_in_and_fan_out(module.weight)
                bound = 1 / math.sqrt(fan_in)
                init.uniform_(module.bias, -bound, bound)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight)
        elif isinstance(module, nn.LayerNorm):  # SamLayerNorm included
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, CrabRandomFourierPositionalEncoding):
            init.normal_(module.gaussian_matrix, std=module.scale)
    for parameter in decoder.query_generator.parameters():
        if parameter.ndim > 1:
            init.xavier_uniform_(parameter)
    for module in decoder.query_generator.modules():
        if isinstance(module, nn.MultiheadAttention):
            init.zeros_(module.in_proj_bias)
            init.zeros_(module.out_proj.bias)
    init.constant_(decoder.token_weights, 1.0 / decoder.token_weights.numel())
    init.constant_(decoder.scale_weights, 1.0 / decoder.scale_weights.numel())


def gather_mask_token_hidden(
    hidden_states: torch.Tensor, input_ids: torch.Tensor, mask_token_ids: Sequence[int]
) -> torch.Tensor:
    """The decoder's input: the hidden state *one position before* each ``<mask_i>``, i.e. the state that predicts it.

    This is Crab's training choice (states of ``<mask_start>, <mask_0>, ..., <mask_4>``). At inference, run a
    teacher-forced forward over prompt + generated answer and call this too, so both paths take the same states
    (Crab's ``generate_avs`` took them one token earlier, crab-reference 5.1).

    Args:
        hidden_states: (B, L, H) final-layer (post-norm) LLM hidden states.
        input_ids: (B, L) ids of the same sequence.
        mask_token_ids: ids of ``<mask_0>`` ... ``<mask_{K-1}>``, in order.

    Returns:
        (B, K, H).

    Raises:
        ValueError: if a row lacks a mask token, has it twice, or has it at position 0.
    """
    ids = torch.as_tensor(list(mask_token_ids), device=input_ids.device)
    matches = input_ids.unsqueeze(-1) == ids  # (B, L, K)
    counts = matches.sum(dim=1)  # (B, K)
    if (counts != 1).any():
        row, token = (counts != 1).nonzero()[0].tolist()
        raise ValueError(f"sample {row}: mask token id {ids[token].item()} occurs {counts[row, token].item()} times")
    positions = matches.int().argmax(dim=1) - 1  # (B, K): the state predicting <mask_i>
    if (positions < 0).any():
        row = int((positions < 0).nonzero()[0, 0])
        raise ValueError(f"sample {row}: a mask token is at position 0, no hidden state precedes it")
    index = positions.unsqueeze(-1).expand(-1, -1, hidden_states.shape[-1])  # (B, K, H)
    return hidden_states.gather(1, index)
