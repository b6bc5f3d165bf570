"""VALL-E: neural codec language models for zero-shot text-to-speech.

Wang et al., "Neural Codec Language Models are Zero-Shot Text to Speech Synthesizers"
(arXiv 2301.02111). Speech is a grid of EnCodec codes, T frames x 8 codebooks. Two
transformers model it given the phonemes of the text:

- the autoregressive (AR) decoder writes codebook 1, one frame at a time, under a prefix-LM
  mask (phonemes see each other, audio sees all phonemes and the audio before it);
- the non-autoregressive (NAR) decoder fills codebooks 2..8, one stage per codebook, each in a
  single bidirectional pass over (phonemes, acoustic prompt, the codebooks found so far),
  told which stage it is at through adaptive LayerNorm.

A 3-second prompt of an unseen speaker (its codes, and the phonemes of its transcript in front
of the target text) makes the model continue in that voice.

The file reads top to bottom: positions and masks, the transformer blocks, the model with its
training loss, then generation.
"""

from __future__ import annotations

import copy
import math
import os
from dataclasses import dataclass
from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModel, AutoModelForTextToWaveform, GenerationConfig, GenerationMixin
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.cache_utils import Cache
from transformers.generation.logits_process import (
    LogitsProcessorList,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS, PreTrainedModel
from transformers.utils import ModelOutput, logging


try:  # a package: installed as Hub remote code next to its configuration file
    from .configuration_valle import VallEConfig
except ImportError:  # a top-level module: this project installed with pip
    from configuration_valle import VallEConfig


logger = logging.get_logger(__name__)

IGNORE_INDEX = -100


# ==================================================================================================
# Positions and masks
# ==================================================================================================


def positions_from_mask(mask: torch.Tensor) -> torch.Tensor:
    """Position of every slot of a segment, counting only the valid ones (padding is skipped).

    Each segment (phonemes, audio) numbers its positions from 0 on its own. Counting valid slots
    lets a batch hold its items with padding anywhere, e.g. a right-padded prompt followed by
    frames that all items generate in the same column.
    """
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


class VallESinusoidalPositions(nn.Module):
    """Adds `alpha * PE(position)` to embeddings: sin/cos interleaved, with a (learned) scale alpha.

    The table is computed on the fly (no stored buffer), so any length works and the state dict
    holds only `alpha`, as in the open implementations.
    """

    def __init__(self, hidden_size: int, dropout: float, learned_scale: bool):
        super().__init__()
        if hidden_size % 2:
            raise ValueError(f"sinusoidal positions need an even width, got {hidden_size}")
        self.hidden_size = hidden_size
        self.alpha = nn.Parameter(torch.ones(1), requires_grad=learned_scale)
        self.dropout = nn.Dropout(dropout)

    def encoding(self, position_ids: torch.Tensor) -> torch.Tensor:
        exponent = torch.arange(0, self.hidden_size, 2, device=position_ids.device, dtype=torch.float32)
        inverse_frequency = torch.exp(exponent * (-math.log(10000.0) / self.hidden_size))
        angles = position_ids.float()[..., None] * inverse_frequency
        # (..., d/2, 2) -> (..., d): even channels sin, odd channels cos
        return torch.stack((angles.sin(), angles.cos()), dim=-1).flatten(-2)

    def forward(self, embeddings: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        encoding = self.encoding(position_ids).to(embeddings.dtype)
        return self.dropout(embeddings + self.alpha.to(embeddings.dtype) * encoding)


def prefix_lm_mask(phoneme_mask: torch.Tensor, audio_mask: torch.Tensor) -> torch.Tensor:
    """The AR attention mask over (phonemes, audio): a boolean (B, 1, S, S), True = may attend.

    Phonemes see all valid phonemes (bidirectional) and no audio; audio frame t sees all valid
    phonemes and the valid audio frames up to t. Padded slots are never seen; each padded query
    sees itself so that no row is empty (an empty row would turn softmax into NaN).
    """
    num_phonemes = phoneme_mask.shape[1]
    total = num_phonemes + audio_mask.shape[1]
    index = torch.arange(total, device=phoneme_mask.device)
    key_is_phoneme = (index < num_phonemes)[None, :]
    query_is_audio = (index >= num_phonemes)[:, None]
    causal = index[None, :] <= index[:, None]
    structure = torch.where(query_is_audio, key_is_phoneme | causal, key_is_phoneme)  # (S, S)
    key_valid = torch.cat([phoneme_mask, audio_mask], dim=1).bool()
    mask = structure[None] & key_valid[:, None, :]
    mask = mask | torch.eye(total, dtype=torch.bool, device=mask.device)[None]
    return mask[:, None]


def padding_mask(key_valid: torch.Tensor) -> torch.Tensor:
    """Bidirectional attention over the valid slots: a boolean (B, 1, 1, S) that broadcasts over queries."""
    return key_valid.bool()[:, None, None, :]


# ==================================================================================================
# Transformer blocks
# ==================================================================================================


def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs,
):
    weights = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            weights = weights.masked_fill(~attention_mask, torch.finfo(weights.dtype).min)
        else:
            weights = weights + attention_mask
    weights = F.softmax(weights, dim=-1, dtype=torch.float32).to(query.dtype)
    weights = F.dropout(weights, p=dropout, training=module.training)
    output = torch.matmul(weights, value).transpose(1, 2).contiguous()
    return output, weights


class VallEAttention(nn.Module):
    """Multi-head self-attention with biases (the layout of `nn.MultiheadAttention`, split into q/k/v)."""

    def __init__(self, config: VallEConfig, hidden_size: int, num_heads: int, layer_idx: int):
        super().__init__()
        self.config = config
        self.layer_idx = layer_idx
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.scaling = self.head_dim**-0.5
        self.attention_dropout = config.attention_dropout
        # The mask always carries the structure (prefix-LM or bidirectional): never infer causality.
        self.is_causal = False
        self.q_proj = nn.Linear(hidden_size, hidden_size)
        self.k_proj = nn.Linear(hidden_size, hidden_size)
        self.v_proj = nn.Linear(hidden_size, hidden_size)
        self.o_proj = nn.Linear(hidden_size, hidden_size)

    def forward(
        self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None, cache: Cache | None = None
    ) -> torch.Tensor:
        batch_size, length, _ = hidden_states.shape
        heads_shape = (batch_size, length, self.num_heads, self.head_dim)
        query = self.q_proj(hidden_states).view(heads_shape).transpose(1, 2)
        key = self.k_proj(hidden_states).view(heads_shape).transpose(1, 2)
        value = self.v_proj(hidden_states).view(heads_shape).transpose(1, 2)
        if cache is not None:
            key, value = cache.update(key, value, self.layer_idx)

        attention_interface: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward
        )
        output, _ = attention_interface(
            self,
            query,
            key,
            value,
            attention_mask,
            dropout=self.attention_dropout if self.training else 0.0,
            scaling=self.scaling,
        )
        return self.o_proj(output.reshape(batch_size, length, -1))


class VallEFeedForward(nn.Module):
    def __init__(self, config: VallEConfig, hidden_size: int, intermediate_size: int):
        super().__init__()
        self.fc1 = nn.Linear(hidden_size, intermediate_size)
        self.fc2 = nn.Linear(intermediate_size, hidden_size)
        self.activation = ACT2FN[config.hidden_act]
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.dropout(self.activation(self.fc1(hidden_states))))


class VallELayerNorm(nn.LayerNorm):
    """A LayerNorm that accepts (and ignores) the stage embedding, so AR and NAR blocks share one code path."""

    def forward(self, hidden_states: torch.Tensor, stage_embedding: torch.Tensor | None = None) -> torch.Tensor:
        return super().forward(hidden_states)


class AdaptiveLayerNorm(nn.Module):
    """AdaLN(h, i) = a_i * LayerNorm(h) + b_i, with (a_i, b_i) a linear projection of the stage embedding.

    The inner LayerNorm keeps its own affine weights (as in the open implementations).
    """

    def __init__(self, hidden_size: int, eps: float):
        super().__init__()
        self.norm = nn.LayerNorm(hidden_size, eps=eps)
        self.project = nn.Linear(hidden_size, 2 * hidden_size)
        self.project._is_adaptive_norm_projection = True  # see `VallEPreTrainedModel._init_weights`

    def forward(self, hidden_states: torch.Tensor, stage_embedding: torch.Tensor | None = None) -> torch.Tensor:
        if stage_embedding is None:
            raise ValueError("AdaptiveLayerNorm needs the NAR stage embedding")
        scale, shift = self.project(stage_embedding).chunk(2, dim=-1)
        return scale * self.norm(hidden_states) + shift


class VallEDecoderLayer(GradientCheckpointingLayer):
    """A pre-LayerNorm transformer block: x + Attn(Norm(x)), then x + FFN(Norm(x))."""

    def __init__(self, config: VallEConfig, sizes: dict, layer_idx: int, adaptive: bool):
        super().__init__()
        hidden_size = sizes["hidden_size"]

        def norm():
            if adaptive:
                return AdaptiveLayerNorm(hidden_size, config.layer_norm_eps)
            return VallELayerNorm(hidden_size, eps=config.layer_norm_eps)

        self.input_layernorm = norm()
        self.self_attn = VallEAttention(config, hidden_size, sizes["num_attention_heads"], layer_idx)
        self.post_attention_layernorm = norm()
        self.mlp = VallEFeedForward(config, hidden_size, sizes["intermediate_size"])
        self.dropout = nn.Dropout(config.dropout)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None,
        stage_embedding: torch.Tensor | None = None,
        cache: Cache | None = None,
    ) -> torch.Tensor:
        attended = self.self_attn(self.input_layernorm(hidden_states, stage_embedding), attention_mask, cache=cache)
        hidden_states = hidden_states + self.dropout(attended)
        transformed = self.mlp(self.post_attention_layernorm(hidden_states, stage_embedding))
        return hidden_states + self.dropout(transformed)


class VallEDecoder(nn.Module):
    """A stack of blocks with a final norm; adaptive norms make it the NAR decoder."""

    def __init__(self, config: VallEConfig, sizes: dict, adaptive: bool):
        super().__init__()
        self.layers = nn.ModuleList(
            [VallEDecoderLayer(config, sizes, i, adaptive) for i in range(sizes["num_hidden_layers"])]
        )
        if adaptive:
            self.norm = AdaptiveLayerNorm(sizes["hidden_size"], config.layer_norm_eps)
        else:
            self.norm = VallELayerNorm(sizes["hidden_size"], eps=config.layer_norm_eps)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None,
        stage_embedding: torch.Tensor | None = None,
        cache: Cache | None = None,
    ) -> torch.Tensor:
        for layer in self.layers:
            # Positional arguments: gradient checkpointing only replays those.
            hidden_states = layer(hidden_states, attention_mask, stage_embedding, cache=cache)
        return self.norm(hidden_states, stage_embedding)


class VallEKVCache:
    """A KV cache that preallocates room for the whole decode (it follows the `Cache.update` contract).

    transformers' `DynamicCache` concatenates at every step, copying the entire past each time (for the paper's
    model at 1,000 cached positions, ~100 MB read and written per step, beside the ~600 MB of weights a step must
    read). Here a step writes its keys and
    values in place and attention reads a view of the filled part, so the past is never copied (the buffers
    only grow, geometrically, if the decode outlives the room asked for).
    """

    def __init__(self, num_layers: int, capacity: int):
        self.capacity = capacity
        self.key_buffers: list[torch.Tensor | None] = [None] * num_layers
        self.value_buffers: list[torch.Tensor | None] = [None] * num_layers
        self.lengths = [0] * num_layers

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args, **kwargs):
        start = self.lengths[layer_idx]
        end = start + key_states.shape[-2]
        keys, values = self.key_buffers[layer_idx], self.value_buffers[layer_idx]
        if keys is None or end > keys.shape[-2]:
            room = max(end, self.capacity, 2 * (keys.shape[-2] if keys is not None else 0))
            grown_keys = key_states.new_empty(*key_states.shape[:2], room, key_states.shape[-1])
            grown_values = value_states.new_empty(*value_states.shape[:2], room, value_states.shape[-1])
            if keys is not None:
                grown_keys[:, :, :start] = keys[:, :, :start]
                grown_values[:, :, :start] = values[:, :, :start]
            keys, values = self.key_buffers[layer_idx], self.value_buffers[layer_idx] = grown_keys, grown_values
        keys[:, :, start:end] = key_states
        values[:, :, start:end] = value_states
        self.lengths[layer_idx] = end
        return keys[:, :, :end], values[:, :, :end]

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.lengths[layer_idx]


# ==================================================================================================
# Outputs
# ==================================================================================================


@dataclass
class VallEOutput(ModelOutput):
    """
    Output of [`VallEForConditionalCodecGeneration.forward`].

    Args:
        loss (`torch.FloatTensor` of shape `()`):
            `ar_loss_weight * ar_loss + nar_loss_weight * nar_loss` (the decoders with weight 0 are skipped).
        ar_loss (`torch.FloatTensor` of shape `()`):
            Mean cross-entropy of the AR's next-token prediction of codebook 1 (end-of-speech included).
        nar_loss (`torch.FloatTensor` of shape `()`):
            Mean cross-entropy of the NAR on codebook `nar_stage + 1` over the target frames (prompt excluded).
        ar_logits (`torch.FloatTensor` of shape `(batch_size, audio_length, codebook_size + 1)`):
            AR prediction scores at each audio input position (the last column is end-of-speech).
        ar_labels (`torch.LongTensor` of shape `(batch_size, audio_length)`):
            The AR targets aligned with `ar_logits` (-100 where ignored), e.g. for token accuracy.
        nar_logits (`torch.FloatTensor` of shape `(batch_size, target_length, codebook_size)`):
            NAR prediction scores for the target frames of codebook `nar_stage + 1`.
        nar_labels (`torch.LongTensor` of shape `(batch_size, target_length)`):
            The NAR targets aligned with `nar_logits` (-100 where ignored).
        nar_stage (`torch.LongTensor` of shape `(batch_size,)`):
            The 0-based codebook the NAR predicted in this step (1..num_codebooks-1), repeated per item.
    """

    loss: torch.FloatTensor | None = None
    ar_loss: torch.FloatTensor | None = None
    nar_loss: torch.FloatTensor | None = None
    ar_logits: torch.FloatTensor | None = None
    ar_labels: torch.LongTensor | None = None
    nar_logits: torch.FloatTensor | None = None
    nar_labels: torch.LongTensor | None = None
    nar_stage: torch.LongTensor | None = None


@dataclass
class VallEGenerationOutput(ModelOutput):
    """
    Output of [`VallEForConditionalCodecGeneration.generate`] and
    [`VallEForConditionalCodecGeneration.generate_ar`] with `return_dict_in_generate=True`.

    Args:
        sequences (`torch.LongTensor` of shape `(batch_size, max_length, num_codebooks)`):
            The generated codes of the target speech (the prompt is not included). Frames at or beyond an
            item's length hold -100. From `generate_ar`: codebook 1 only, shape `(batch_size, max_length)`.
        sequence_lengths (`torch.LongTensor` of shape `(batch_size,)`):
            Number of generated frames of each item.
        scores (`tuple(torch.FloatTensor)`, *optional*, with `output_scores=True`):
            The processed AR scores of each decoding step, each `(batch_size, codebook_size + 1)`.
        logits (`tuple(torch.FloatTensor)`, *optional*, with `output_logits=True`):
            The raw AR logits of each decoding step, each `(batch_size, codebook_size + 1)`.
        finished_with_eos (`torch.BoolTensor` of shape `(batch_size,)`):
            False for items stopped by the length cap instead of an end-of-speech token.
    """

    sequences: torch.LongTensor | None = None
    sequence_lengths: torch.LongTensor | None = None
    scores: tuple[torch.FloatTensor, ...] | None = None
    logits: tuple[torch.FloatTensor, ...] | None = None
    finished_with_eos: torch.BoolTensor | None = None


# ==================================================================================================
# The model
# ==================================================================================================


class VallEPreTrainedModel(PreTrainedModel):
    config: VallEConfig
    config_class = VallEConfig
    base_model_prefix = "valle"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _no_split_modules = ["VallEDecoderLayer"]
    _supports_sdpa = True
    _supports_flash_attn = False
    _supports_flex_attn = False
    # The loss is a mean over tokens per micro-batch (see `forward`); Trainer must not pass
    # `num_items_in_batch`, and divides by the accumulation steps itself.
    accepts_loss_kwargs = False

    @torch.no_grad()
    def _init_weights(self, module: nn.Module):
        super()._init_weights(module)
        if isinstance(module, VallESinusoidalPositions):
            init.ones_(module.alpha)
        elif isinstance(module, nn.Embedding):
            # Unit-variance embeddings, as PyTorch's default and the open implementations (lifeiteng/vall-e, VALL-E
            # X): the sinusoidal positions are added at amplitude ~1, and at the usual 0.02 the tokens drown in them
            # (the AR then sits at the unigram loss: measured 6.8 after 200 steps vs 5.1 after 80 at unit scale).
            # An embedding that is also a prediction layer gets 1/sqrt(width), so that the first logits have unit
            # scale (at unit variance they start ~sqrt(width) wide and the NAR's first loss is ~50).
            shared = getattr(module, "_valle_shared_with_head", False)
            init.normal_(module.weight, mean=0.0, std=module.embedding_dim**-0.5 if shared else 1.0)
        elif getattr(module, "_is_adaptive_norm_projection", False):
            # AdaLN starts as a plain LayerNorm: scale ~1, shift ~0 whatever the stage. (Set on the projection
            # itself: initialisation skips modules such as AdaptiveLayerNorm that own no parameter directly.)
            hidden_size = module.out_features // 2
            init.copy_(module.bias, torch.cat([torch.ones(hidden_size), torch.zeros(hidden_size)]))


class VallEForConditionalCodecGeneration(VallEPreTrainedModel, GenerationMixin):
    r"""
    VALL-E: the AR decoder (codebook 1) and the NAR decoder (codebooks 2..K) over EnCodec codes, with a
    training loss for both and a `generate` that runs them in turn (each stage also runs alone: `generate_ar`,
    `generate_nar`).

    Weight sharing is structural: a tied prediction layer has no weights of its own and reads the
    embedding matrix it shares, so ties survive any save, load, conversion or dtype change.
    """

    def __init__(self, config: VallEConfig):
        super().__init__(config)
        hidden = config.hidden_size
        num_audio_rows = config.codebook_size + (2 if config.use_audio_bos else 1)  # codes, EOS (, BOS)

        # --- AR: phonemes + codebook 1 -> next code of codebook 1 (or end of speech)
        self.ar_phoneme_embedding = nn.Embedding(config.vocab_size, hidden)
        self.ar_audio_embedding = nn.Embedding(num_audio_rows, hidden)
        self.ar_language_embedding = nn.Embedding(config.num_languages, hidden) if config.num_languages else None
        self.ar_phoneme_position = VallESinusoidalPositions(hidden, config.dropout, config.ar_learned_position_scale)
        self.ar_audio_position = VallESinusoidalPositions(hidden, config.dropout, config.ar_learned_position_scale)
        self.ar_decoder = VallEDecoder(config, config.ar_sizes, adaptive=False)
        self.ar_lm_head = None if config.tie_ar_lm_head else nn.Linear(hidden, config.codebook_size + 1, bias=False)

        # --- NAR: phonemes + prompt (all codebooks) + codebooks < i of the target -> codebook i
        if config.has_nar:
            nar = config.nar_sizes
            nar_hidden = nar["hidden_size"]
            self.nar_phoneme_embedding = nn.Embedding(config.vocab_size, nar_hidden)
            # Codebook 1's table keeps an extra row (the EOS id, used as padding by the open implementations).
            self.nar_audio_embeddings = nn.ModuleList(
                [nn.Embedding(config.codebook_size + (1 if i == 0 else 0), nar_hidden) for i in range(config.num_codebooks)]
            )
            self.nar_language_embedding = (
                nn.Embedding(config.num_languages, nar_hidden) if config.num_languages else None
            )
            self.nar_phoneme_position = VallESinusoidalPositions(
                nar_hidden, config.dropout, config.nar_learned_position_scale
            )
            self.nar_audio_position = VallESinusoidalPositions(
                nar_hidden, config.dropout, config.nar_learned_position_scale
            )
            self.nar_stage_embedding = nn.Embedding(config.num_codebooks - 1, nar_hidden)  # row i-1 = stage i
            self.nar_decoder = VallEDecoder(config, nar, adaptive=True)
            # "shifted" tying leaves the last codebook's prediction layer without an embedding to share.
            self.nar_last_lm_head = (
                nn.Linear(nar_hidden, config.codebook_size, bias=False) if config.nar_head_tying == "shifted" else None
            )

        # Embeddings that are also prediction layers get a smaller initial scale (see `_init_weights`).
        if config.tie_ar_lm_head:
            self.ar_audio_embedding._valle_shared_with_head = True
        if config.has_nar:
            # The heads of codebooks 2..K read embedding i ("paper") or i + 1 ("shifted"; the last head has its own).
            offset = 0 if config.nar_head_tying == "paper" else 1
            for index in range(1 + offset, config.num_codebooks):
                self.nar_audio_embeddings[index]._valle_shared_with_head = True
        self.post_init()
        self._set_generation_defaults()

    def _set_generation_defaults(self):
        """Sampling defaults of VALL-E (the AR samples; the paper saw beam search loop forever)."""
        if self.generation_config is None:
            return
        audio_bos = self.config.audio_bos_token_id
        self.generation_config.update(
            do_sample=True,
            top_k=50,
            top_p=1.0,
            temperature=1.0,
            # In generation the tokens are audio codes: its special ids are the AR's, not the phonemes'.
            eos_token_id=self.config.audio_eos_token_id,
            pad_token_id=self.config.audio_eos_token_id,
            bos_token_id=audio_bos,
        )
        for name, value in GENERATION_DEFAULTS.items():
            if getattr(self.generation_config, name, None) is None:
                setattr(self.generation_config, name, value)
        # These are deliberate defaults, not values copied from the model config: keep them when reloading.
        self.generation_config._from_model_config = False

    def get_input_embeddings(self) -> nn.Module:
        return self.ar_phoneme_embedding

    def set_input_embeddings(self, value: nn.Module):
        self.ar_phoneme_embedding = value

    def resize_token_embeddings(self, new_num_tokens: int | None = None, *args, **kwargs) -> nn.Embedding:
        """Resizes the phoneme vocabulary of both decoders (the AR's table and the NAR's)."""
        embeddings = super().resize_token_embeddings(new_num_tokens, *args, **kwargs)
        if self.config.has_nar and self.nar_phoneme_embedding.num_embeddings != embeddings.num_embeddings:
            self.nar_phoneme_embedding = self._get_resized_embeddings(
                self.nar_phoneme_embedding, embeddings.num_embeddings
            )
        return embeddings

    # ----------------------------------------------------------------------------------------------
    # Building blocks shared by training and generation

    def _ar_logits(self, hidden_states: torch.Tensor) -> torch.Tensor:
        if self.ar_lm_head is None:  # the paper: the prediction layer shares the audio embedding
            return F.linear(hidden_states, self.ar_audio_embedding.weight)
        return self.ar_lm_head(hidden_states)

    def _nar_head_weight(self, codebook: int) -> torch.Tensor:
        """Prediction weights for 0-based `codebook` (1..K-1), shared with an audio embedding where tied."""
        if self.config.nar_head_tying == "paper":
            return self.nar_audio_embeddings[codebook].weight
        if codebook + 1 < self.config.num_codebooks:
            return self.nar_audio_embeddings[codebook + 1].weight
        return self.nar_last_lm_head.weight

    def _embed_phonemes(self, branch: str, input_ids, phoneme_mask, language_ids) -> torch.Tensor:
        embedding = getattr(self, f"{branch}_phoneme_embedding")
        hidden = embedding(input_ids.masked_fill(~phoneme_mask, 0))
        language_embedding = getattr(self, f"{branch}_language_embedding")
        if language_embedding is not None:
            per_token = language_ids if language_ids.dim() == 2 else language_ids[:, None].expand_as(input_ids)
            hidden = hidden + language_embedding(per_token)
        position = getattr(self, f"{branch}_phoneme_position")
        return position(hidden, positions_from_mask(phoneme_mask))

    def _ar_forward(self, phoneme_hidden, phoneme_mask, audio_ids, audio_mask, cache=None) -> torch.Tensor:
        """Runs the AR decoder over (phonemes, audio) and returns the hidden states of the audio part."""
        audio_hidden = self.ar_audio_position(self.ar_audio_embedding(audio_ids), positions_from_mask(audio_mask))
        hidden = torch.cat([phoneme_hidden, audio_hidden], dim=1)
        hidden = self.ar_decoder(hidden, prefix_lm_mask(phoneme_mask, audio_mask), cache=cache)
        return hidden[:, phoneme_hidden.shape[1] :]

    def _nar_embed_codes(self, codes: torch.Tensor, num_codebooks: int) -> torch.Tensor:
        """Sum of the NAR embeddings of the first `num_codebooks` codebooks of `codes` (B, T, >= num_codebooks)."""
        summed = self.nar_audio_embeddings[0](codes[..., 0])
        for j in range(1, num_codebooks):
            summed = summed + self.nar_audio_embeddings[j](codes[..., j])
        return summed

    def _nar_forward(self, phoneme_hidden, phoneme_mask, audio_embeds, audio_mask, codebook: int) -> torch.Tensor:
        """One NAR pass for 0-based `codebook`; returns logits over the codes at every audio slot."""
        audio_hidden = self.nar_audio_position(audio_embeds, positions_from_mask(audio_mask))
        hidden = torch.cat([phoneme_hidden, audio_hidden], dim=1)
        key_valid = torch.cat([phoneme_mask, audio_mask], dim=1)
        stage_embedding = self.nar_stage_embedding.weight[codebook - 1]
        hidden = self.nar_decoder(hidden, padding_mask(key_valid), stage_embedding)
        return F.linear(hidden[:, phoneme_hidden.shape[1] :], self._nar_head_weight(codebook))

    # ----------------------------------------------------------------------------------------------
    # Training

    def forward(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        prompt_codes: torch.LongTensor | None = None,
        prompt_attention_mask: torch.Tensor | None = None,
        language_ids: torch.LongTensor | None = None,
        nar_stage: int | None = None,
        return_dict: bool | None = None,
    ) -> VallEOutput | tuple:
        r"""
        Computes the VALL-E training losses of both decoders on a batch.

        Args:
            input_ids (`torch.LongTensor` of shape `(batch_size, num_phonemes)`):
                Phoneme ids of each utterance's transcript, right-padded.
            attention_mask (`torch.Tensor` of shape `(batch_size, num_phonemes)`, *optional*):
                1 for real phonemes, 0 for padding. Default: all real.
            labels (`torch.LongTensor` of shape `(batch_size, num_frames, num_codebooks)`):
                The utterances' EnCodec codes, -100 on the padding frames (at the end of each item).
            prompt_codes (`torch.LongTensor` of shape `(batch_size, prompt_frames, num_codebooks)`, *optional*):
                Codes of another utterance of the same speaker, used as the NAR's acoustic prompt. Without
                them the NAR's prompt is a random prefix (at most `nar_prompt_max_frames`) of the utterance
                itself, and its loss excludes that prefix. The AR never uses them: it is trained on plain
                next-token prediction of codebook 1, where any prefix acts as a prompt.
            prompt_attention_mask (`torch.Tensor` of shape `(batch_size, prompt_frames)`, *optional*):
                1 for real prompt frames, 0 for padding. Default: all real.
            language_ids (`torch.LongTensor` of shape `(batch_size,)` or `(batch_size, num_phonemes)`, *optional*):
                Language of each utterance (or of each phoneme); required when `config.num_languages > 0`.
            nar_stage (`int`, *optional*):
                The 0-based codebook (1..num_codebooks-1) the NAR learns in this step. Default: drawn uniformly.

        Returns a [`VallEOutput`]. `loss = ar_loss_weight * ar_loss + nar_loss_weight * nar_loss`; each part is
        the mean cross-entropy over the tokens of this batch that carry a label.

        Gradient accumulation: the model declares `accepts_loss_kwargs = False`, so `Trainer` divides each
        micro-batch's mean loss by the number of accumulation steps; the update is then the average of the
        micro-batches' mean losses. With the acoustic-token budget batching of `valle train`, micro-batches hold
        nearly equal numbers of tokens, so this equals the token-level mean of the whole accumulated batch.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if labels is None:
            raise ValueError(
                "`labels` (the target codes, shape (batch, frames, num_codebooks), -100 on padding) are required "
                "by `forward`, which computes the training losses. To synthesise speech, call `generate`."
            )
        attention_mask = _check_phonemes(self.config, input_ids, attention_mask)
        frame_mask = _check_codes(self.config, labels, "labels", input_ids.shape[0])
        if not bool(frame_mask.any(dim=1).all()):
            raise ValueError("`labels`: every item needs at least one frame of codes (found an item that is all -100).")
        if prompt_codes is not None:
            prompt_attention_mask = _check_prompt(self.config, prompt_codes, prompt_attention_mask, input_ids.shape[0])
        language_ids = _check_languages(self.config, language_ids, input_ids)
        input_ids, codes = input_ids.long(), labels.long().masked_fill(~frame_mask[..., None], 0)
        if prompt_codes is not None:
            prompt_codes = prompt_codes.long()

        ar_loss = nar_loss = ar_logits = ar_labels = nar_logits = nar_labels = stage = None
        if self.config.ar_loss_weight > 0:
            ar_logits, ar_labels = self._ar_training_logits(input_ids, attention_mask, language_ids, codes, frame_mask)
            ar_loss = F.cross_entropy(
                ar_logits.flatten(0, 1).float(), ar_labels.flatten(), ignore_index=IGNORE_INDEX
            )
        if self.config.nar_loss_weight > 0:
            stage = self._draw_nar_stage(nar_stage)
            nar_logits, nar_labels = self._nar_training_logits(
                input_ids, attention_mask, language_ids, codes, frame_mask, prompt_codes, prompt_attention_mask, stage
            )
            nar_loss = F.cross_entropy(
                nar_logits.flatten(0, 1).float(), nar_labels.flatten(), ignore_index=IGNORE_INDEX
            )
            if self.nar_last_lm_head is not None and stage != self.config.num_codebooks - 1:
                # The untied last head only serves the last stage. A zero-weighted term keeps it in every step's
                # graph, so DDP without `find_unused_parameters` (Trainer's choice with checkpointing) still works.
                nar_loss = nar_loss + 0.0 * self.nar_last_lm_head.weight.sum()

        loss = 0.0
        if ar_loss is not None:
            loss = loss + self.config.ar_loss_weight * ar_loss
        if nar_loss is not None:
            loss = loss + self.config.nar_loss_weight * nar_loss
        output = VallEOutput(
            loss=loss,
            ar_loss=ar_loss,
            ar_logits=ar_logits,
            ar_labels=ar_labels,
            nar_loss=nar_loss,
            nar_logits=nar_logits,
            nar_labels=nar_labels,
            nar_stage=None if stage is None else torch.full((input_ids.shape[0],), stage, device=input_ids.device),
        )
        return output if return_dict else output.to_tuple()

    def _ar_training_logits(self, input_ids, attention_mask, language_ids, codes, frame_mask):
        """Teacher-forced AR: inputs (BOS,) c_1..c_T, targets c_1..c_T, EOS (the first frame is a given
        without a BOS). Returns the logits and the aligned targets."""
        lengths = frame_mask.sum(dim=1)
        eos = self.config.audio_eos_token_id
        first_codebook = codes[..., 0].masked_fill(~frame_mask, eos)
        frame_index = torch.arange(first_codebook.shape[1] + 1, device=codes.device)[None, :]
        targets = F.pad(first_codebook, (0, 1), value=eos)
        targets = targets.masked_fill(frame_index > lengths[:, None], IGNORE_INDEX)  # EOS stays at index == length
        if self.config.use_audio_bos:
            bos = torch.full_like(first_codebook[:, :1], self.config.audio_bos_token_id)
            audio_ids = torch.cat([bos, first_codebook], dim=1)
            audio_mask = frame_index <= lengths[:, None]
        else:
            audio_ids, audio_mask, targets = first_codebook, frame_mask, targets[:, 1:]
        phoneme_hidden = self._embed_phonemes("ar", input_ids, attention_mask, language_ids)
        hidden = self._ar_forward(phoneme_hidden, attention_mask, audio_ids, audio_mask)
        return self._ar_logits(hidden), targets

    def _draw_nar_stage(self, nar_stage: int | None) -> int:
        if nar_stage is None:
            return int(torch.randint(1, self.config.num_codebooks, ()).item())
        if not isinstance(nar_stage, int) or not 1 <= nar_stage < self.config.num_codebooks:
            raise ValueError(
                f"`nar_stage` must be a 0-based codebook index in [1, {self.config.num_codebooks - 1}] (codebook 0 "
                f"is the AR's), got {nar_stage!r}."
            )
        return nar_stage

    def _nar_training_logits(
        self, input_ids, attention_mask, language_ids, codes, frame_mask, prompt_codes, prompt_mask, stage
    ):
        """One NAR stage: predicts codebook `stage` of the target from the prompt and the codebooks below it."""
        phoneme_hidden = self._embed_phonemes("nar", input_ids, attention_mask, language_ids)
        targets = codes[..., stage].masked_fill(~frame_mask, IGNORE_INDEX)
        below = self._nar_embed_codes(codes, stage)
        if prompt_codes is None:
            # The prompt is a random prefix of each utterance: all its codebooks are given, and it is not scored.
            prefix = self._draw_prefix_length(frame_mask.sum(dim=1))
            full = below
            for j in range(stage, self.config.num_codebooks):
                full = full + self.nar_audio_embeddings[j](codes[..., j])
            is_prompt = torch.arange(codes.shape[1], device=codes.device)[None, :, None] < prefix
            audio_embeds = torch.where(is_prompt, full, below)
            logits = self._nar_forward(phoneme_hidden, attention_mask, audio_embeds, frame_mask, stage)
            return logits[:, prefix:], targets[:, prefix:]
        prompt = prompt_codes.masked_fill(~prompt_mask[..., None], 0)
        audio_embeds = torch.cat([self._nar_embed_codes(prompt, self.config.num_codebooks), below], dim=1)
        audio_mask = torch.cat([prompt_mask, frame_mask], dim=1)
        logits = self._nar_forward(phoneme_hidden, attention_mask, audio_embeds, audio_mask, stage)
        return logits[:, prompt_codes.shape[1] :], targets

    def _draw_prefix_length(self, lengths: torch.Tensor) -> int:
        """Length of the NAR's in-utterance prompt: between `nar_prompt_min_ratio` and `nar_prompt_max_ratio`
        of the batch's shortest item, at most `nar_prompt_max_frames`, and always leaving one target frame."""
        shortest = int(lengths.min())
        low = int(shortest * self.config.nar_prompt_min_ratio)
        high = int(shortest * self.config.nar_prompt_max_ratio)
        prefix = low if high <= low else int(torch.randint(low, high + 1, ()).item())
        return max(0, min(prefix, self.config.nar_prompt_max_frames, shortest - 1))

    # ----------------------------------------------------------------------------------------------
    # Saving

    def save_pretrained(self, save_directory, *args, push_to_hub: bool = False, **kwargs):
        """Saves as usual, adds the `AutoModelForTextToWaveform` entry to `auto_map` when saving the code, and
        writes a model card (`README.md`) when the project's `hub_cards` package is available and none exists.

        With `push_to_hub=True` the upload happens after the card is written, so the card travels with the
        weights. The processor is a separate object: to publish a complete repository (model, processor, code and
        card) save both into one folder and run `valle push FOLDER REPO_ID`.
        """
        if self._auto_class is not None:
            module = self.__class__.__module__.split(".")[-1]
            auto_map = dict(getattr(self.config, "auto_map", None) or {})
            auto_map["AutoModelForTextToWaveform"] = f"{module}.{self.__class__.__name__}"
            self.config.auto_map = auto_map
        hub_kwargs = {name: kwargs.pop(name) for name in ("repo_id", "token", "commit_message", "private") if name in kwargs}
        result = super().save_pretrained(save_directory, *args, **kwargs)
        try:
            from hub_cards import write_model_card
        except ImportError:  # remote code on a machine without this project: no card, nothing else missing
            write_model_card = None
        is_main_process = kwargs.get("is_main_process", True)
        if write_model_card is not None and is_main_process:
            write_model_card(save_directory, config=self.config)
        if push_to_hub and is_main_process:
            repo_id = hub_kwargs.pop("repo_id", None) or os.path.basename(os.path.abspath(str(save_directory)))
            self.push_to_hub(repo_id, **hub_kwargs)
        return result

    # ----------------------------------------------------------------------------------------------
    # Generation

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        prompt_codes: torch.LongTensor | None = None,
        prompt_attention_mask: torch.Tensor | None = None,
        language_ids: torch.LongTensor | None = None,
        generation_config: GenerationConfig | None = None,
        **kwargs,
    ) -> torch.LongTensor | VallEGenerationOutput:
        r"""
        Synthesises the codes of the target speech: the AR samples codebook 1 frame by frame (with a KV
        cache), then the NAR fills each further codebook greedily in one pass per codebook. Batched.

        The two stages are also public on their own: [`~VallEForConditionalCodecGeneration.generate_ar`] (codebook 1
        only, same arguments) and [`~VallEForConditionalCodecGeneration.generate_nar`] (codebooks 2..K from a given
        codebook 1). `generate` is exactly `generate_ar` followed by `generate_nar` on the same inputs; the stages
        apart let each see different inputs, as in the paper's ablations (e.g. the AR without the acoustic prompt).

        Args:
            input_ids (`torch.LongTensor` of shape `(batch_size, num_phonemes)`):
                Phonemes of the prompt's transcript followed by those of the text to say (VALL-E), or of a whole
                utterance whose beginning is the prompt (VALL-E-continual); right-padded.
            attention_mask (`torch.Tensor` of shape `(batch_size, num_phonemes)`, *optional*):
                1 for real phonemes, 0 for padding.
            prompt_codes (`torch.LongTensor` of shape `(batch_size, prompt_frames, num_codebooks)`, *optional*):
                EnCodec codes of the voice prompt (about 3 s), right-padded. Required unless the model has an
                audio BOS (`config.use_audio_bos`), which lets it start from nothing.
            prompt_attention_mask (`torch.Tensor` of shape `(batch_size, prompt_frames)`, *optional*):
                1 for real prompt frames, 0 for padding.
            language_ids (`torch.LongTensor`, *optional*):
                As in `forward`, for models with language embeddings.
            generation_config ([`~transformers.GenerationConfig`], *optional*):
                Defaults to `model.generation_config`; keyword arguments override its fields.
            kwargs:
                Generation options: `do_sample`, `temperature`, `top_k`, `top_p`, `repetition_penalty`,
                `max_new_tokens` (frames to generate at most), `min_new_tokens`, `num_return_sequences`,
                `use_cache`, `return_dict_in_generate`, `output_scores`, `output_logits`; and VALL-E's own:
                `max_frames_per_phoneme` (the cap on prompt + generated frames per input phoneme when
                `max_new_tokens` is not given, 16 by default), `repetition_aware_sampling` (VALL-E 2: resample
                from the full distribution when the drawn code fills more than `repetition_threshold` of the last
                `repetition_window` codes; defaults 10 and 0.1).

        Returns:
            `torch.LongTensor` of shape `(batch_size * num_return_sequences, frames, num_codebooks)` with -100
            after each item's end, or a [`VallEGenerationOutput`] with `return_dict_in_generate=True`.
        """
        options, inputs = self._prepare_generation(
            input_ids, attention_mask, prompt_codes, prompt_attention_mask, language_ids, generation_config, kwargs
        )
        first_codebook, lengths, finished_with_eos, scores, logits = self._generate_first_codebook(*inputs, options)
        codes = self._nar_stage(inputs, first_codebook, lengths)
        return self._generation_output(codes, lengths, finished_with_eos, scores, logits, options)

    @torch.no_grad()
    def generate_ar(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        prompt_codes: torch.LongTensor | None = None,
        prompt_attention_mask: torch.Tensor | None = None,
        language_ids: torch.LongTensor | None = None,
        generation_config: GenerationConfig | None = None,
        **kwargs,
    ) -> torch.LongTensor | VallEGenerationOutput:
        r"""
        The AR stage of [`~VallEForConditionalCodecGeneration.generate`] alone: samples codebook 1 and stops there.
        Feed its output to [`~VallEForConditionalCodecGeneration.generate_nar`] for the other codebooks.

        Takes exactly `generate`'s arguments and generation options, decodes exactly as `generate` does (under the
        same seed, `generate_ar(...)` equals `generate(...)[..., 0]`), and is what a stage-wise pipeline or an
        ablation needs. The AR without an acoustic prompt (the paper's ablation: pass `input_ids` of the text to
        say only, and no `prompt_codes`) starts from the audio begin-of-speech token, so it needs a model with
        `config.use_audio_bos=True`; models without it (the paper's layout, converted lifeiteng/vall-e and VALL-E X
        checkpoints) raise a `ValueError`.

        Returns:
            `torch.LongTensor` of shape `(batch_size * num_return_sequences, frames)`: the codebook-1 codes, -100
            after each item's end; or, with `return_dict_in_generate=True`, a [`VallEGenerationOutput`] whose
            `sequences` is that tensor (with `sequence_lengths`, `finished_with_eos` and the optional
            `scores` / `logits`).
        """
        options, inputs = self._prepare_generation(
            input_ids, attention_mask, prompt_codes, prompt_attention_mask, language_ids, generation_config, kwargs
        )
        first_codebook, lengths, finished_with_eos, scores, logits = self._generate_first_codebook(*inputs, options)
        first_codebook = _pad_frames(first_codebook, lengths)
        return self._generation_output(first_codebook, lengths, finished_with_eos, scores, logits, options)

    @torch.no_grad()
    def generate_nar(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        prompt_codes: torch.LongTensor | None = None,
        prompt_attention_mask: torch.Tensor | None = None,
        first_codebook: torch.LongTensor | None = None,
        language_ids: torch.LongTensor | None = None,
    ) -> torch.LongTensor:
        r"""
        The NAR stage of [`~VallEForConditionalCodecGeneration.generate`] alone: given codebook 1 of the target
        speech, fills codebooks 2..K greedily, one batched pass per codebook (deterministic; no generation options).

        `generate` runs this very code on the AR's output, so `generate_nar(**inputs,
        first_codebook=generate(**inputs)[..., 0])` reproduces `generate(**inputs)` exactly (greedy or sampled:
        only the AR samples). With the stages apart, the NAR can get other inputs than the AR: e.g. the AR
        without the acoustic prompt (see [`~VallEForConditionalCodecGeneration.generate_ar`]) followed by the NAR
        with it, or the NAR on ground-truth codebook-1 codes with or without prompts (the paper's NAR ablations).

        Args:
            input_ids (`torch.LongTensor` of shape `(batch_size, num_phonemes)`):
                The NAR's phonemes, right-padded: as for `generate` (prompt transcript + text to say, or the whole
                utterance for VALL-E-continual).
            attention_mask (`torch.Tensor` of shape `(batch_size, num_phonemes)`, *optional*):
                1 for real phonemes, 0 for padding.
            prompt_codes (`torch.LongTensor` of shape `(batch_size, prompt_frames, num_codebooks)`, *optional*):
                The acoustic prompt (all codebooks), right-padded. Optional whatever `config.use_audio_bos`: without
                it the NAR sees only the phonemes and codebook 1.
            prompt_attention_mask (`torch.Tensor` of shape `(batch_size, prompt_frames)`, *optional*):
                1 for real prompt frames, 0 for padding.
            first_codebook (`torch.LongTensor` of shape `(batch_size, frames)`):
                Codebook-1 codes of the target speech (in `[0, codebook_size)`), -100 after each item's end: the
                output of `generate_ar`, or `codes[..., 0]` of `generate`'s output or of a `labels` tensor. An
                item may have no frame at all. With `num_return_sequences` > 1 in `generate_ar`, repeat the NAR's
                inputs to match (`repeat_interleave(num_return_sequences, dim=0)`).
            language_ids (`torch.LongTensor`, *optional*):
                As in `forward`, for models with language embeddings.

        Returns:
            `torch.LongTensor` of shape `(batch_size, frames, num_codebooks)`: codebook 1 as given, then the NAR's
            codebooks; -100 after each item's end (exactly where `first_codebook` has it).
        """
        if not self.config.has_nar:
            raise ValueError(
                f"this model has no NAR decoder (`config.num_codebooks={self.config.num_codebooks}`): codebook 1 is "
                "all there is. Use `generate_ar`."
            )
        inputs = self._check_generation_inputs(
            input_ids, attention_mask, prompt_codes, prompt_attention_mask, language_ids, for_ar=False
        )
        lengths = _check_first_codebook(self.config, first_codebook, input_ids.shape[0])
        return self._nar_stage(inputs, first_codebook.long(), lengths)

    def _check_generation_inputs(
        self, input_ids, attention_mask, prompt_codes, prompt_attention_mask, language_ids, for_ar: bool
    ) -> _GenerationInputs:
        """Checks the inputs of either stage and returns them ready for it: boolean masks, long codes, padding
        frames of the prompt set to code 0. The AR must start from a real prompt frame unless the model has an
        audio BOS; the NAR may do without a prompt."""
        config = self.config
        attention_mask = _check_phonemes(config, input_ids, attention_mask)
        batch_size = input_ids.shape[0]
        if prompt_codes is not None:
            prompt_attention_mask = _check_prompt(config, prompt_codes, prompt_attention_mask, batch_size)
            if for_ar and not config.use_audio_bos and not bool(prompt_attention_mask.any(dim=1).all()):
                raise ValueError(
                    "every item needs at least one real prompt frame (`prompt_codes` is empty or an item's "
                    "`prompt_attention_mask` is all 0): this model has no audio BOS, so the AR starts from the prompt."
                )
            prompt_codes = prompt_codes.long()
        elif for_ar and not config.use_audio_bos:
            raise ValueError(
                "`prompt_codes` are required: this model has no audio BOS token (`config.use_audio_bos=False`, as in "
                "the paper), so the AR needs at least one frame of a voice prompt to start from. Encode a few seconds "
                "of speech with `VallEProcessor` (prompt_audio=...). Generating without any acoustic prompt needs a "
                "model trained with `use_audio_bos=True`."
            )
        else:
            prompt_codes = input_ids.new_zeros(batch_size, 0, config.num_codebooks, dtype=torch.long)
            prompt_attention_mask = attention_mask.new_zeros(batch_size, 0)
        language_ids = _check_languages(config, language_ids, input_ids)
        prompt_codes = prompt_codes.masked_fill(~prompt_attention_mask[..., None], 0)
        return _GenerationInputs(input_ids, attention_mask, language_ids, prompt_codes, prompt_attention_mask)

    def _prepare_generation(
        self, input_ids, attention_mask, prompt_codes, prompt_attention_mask, language_ids, generation_config, kwargs
    ) -> tuple[GenerationConfig, _GenerationInputs]:
        """The options and the checked inputs of the AR stage, each item repeated `num_return_sequences` times."""
        options = self._generation_options(generation_config, kwargs)
        inputs = self._check_generation_inputs(
            input_ids, attention_mask, prompt_codes, prompt_attention_mask, language_ids, for_ar=True
        )
        copies = options.num_return_sequences
        if copies > 1:
            inputs = _GenerationInputs(
                *(None if t is None else t.repeat_interleave(copies, dim=0) for t in inputs)
            )
        return options, inputs

    def _nar_stage(self, inputs: _GenerationInputs, first_codebook, lengths) -> torch.LongTensor:
        """All codebooks (B, T, K) from codebook 1 and its lengths, -100 after each item's end: the NAR stage of
        both `generate` and `generate_nar`."""
        codes = self._generate_other_codebooks(*inputs, first_codebook, lengths)
        return _pad_frames(codes, lengths)

    @staticmethod
    def _generation_output(sequences, lengths, finished_with_eos, scores, logits, options):
        if not options.return_dict_in_generate:
            return sequences
        return VallEGenerationOutput(
            sequences=sequences,
            sequence_lengths=lengths,
            scores=tuple(scores) if options.output_scores else None,
            logits=tuple(logits) if options.output_logits else None,
            finished_with_eos=finished_with_eos,
        )

    def _generation_options(self, generation_config: GenerationConfig | None, kwargs: dict) -> GenerationConfig:
        """Resolves the generation options: the given or the model's config, updated with `kwargs`."""
        if "max_length" in kwargs:
            raise ValueError(
                "`max_length` is not used by VALL-E (there is no single token sequence): pass `max_new_tokens`, the "
                "number of audio frames to generate at most (75 per second with EnCodec 24 kHz)."
            )
        options = copy.deepcopy(generation_config if generation_config is not None else self.generation_config)
        for name, default in GENERATION_DEFAULTS.items():  # VALL-E's own options, also on plain configs
            setattr(options, name, kwargs.pop(name, getattr(options, name, default)))
        unused = options.update(**kwargs)
        if unused:
            raise ValueError(
                f"`generate` (or `generate_ar`) got unknown arguments {sorted(unused)}. It takes input_ids, "
                "attention_mask, prompt_codes, prompt_attention_mask, language_ids, generation_config and generation "
                "options (see its docstring)."
            )
        if (options.num_beams or 1) > 1:
            raise ValueError(
                "beam search is not supported: VALL-E decodes by sampling (the paper found beam search loops "
                "forever). Use do_sample=True, or do_sample=False for greedy decoding."
            )
        for name in ("max_new_tokens", "min_new_tokens", "num_return_sequences", "repetition_window"):
            value = getattr(options, name, None)
            if value is not None and (not isinstance(value, int) or value < (0 if name == "min_new_tokens" else 1)):
                raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
        options.num_return_sequences = options.num_return_sequences or 1
        if options.max_frames_per_phoneme <= 0:
            raise ValueError(f"`max_frames_per_phoneme` must be positive, got {options.max_frames_per_phoneme!r}.")
        if options.do_sample and options.temperature is not None and options.temperature <= 0:
            raise ValueError(f"`temperature` must be positive when sampling, got {options.temperature!r}.")
        return options

    def _logits_processors(self, options: GenerationConfig) -> LogitsProcessorList:
        processors = LogitsProcessorList()
        if options.repetition_penalty is not None and options.repetition_penalty != 1.0:
            processors.append(RepetitionPenaltyLogitsProcessor(options.repetition_penalty))
        if options.do_sample:
            if options.temperature is not None and options.temperature != 1.0:
                processors.append(TemperatureLogitsWarper(options.temperature))
            if options.top_k is not None and options.top_k > 0:
                processors.append(TopKLogitsWarper(options.top_k))
            if options.top_p is not None and options.top_p < 1.0:
                processors.append(TopPLogitsWarper(options.top_p))
        return processors

    def _generate_first_codebook(self, input_ids, phoneme_mask, language_ids, prompt_codes, prompt_mask, options):
        """AR decoding of codebook 1. Returns the codes (B, T) with EOS after each end, the lengths, whether each
        item ended with EOS, and the per-step scores and logits."""
        config = self.config
        batch_size = input_ids.shape[0]
        device = input_ids.device
        eos = config.audio_eos_token_id

        audio_ids = prompt_codes[..., 0]
        audio_mask = prompt_mask
        if config.use_audio_bos:
            audio_ids = torch.cat([audio_ids.new_full((batch_size, 1), config.audio_bos_token_id), audio_ids], dim=1)
            audio_mask = torch.cat([audio_mask.new_ones((batch_size, 1)), audio_mask], dim=1)
        audio_so_far = audio_mask.sum(dim=1)  # BOS and prompt frames already in place

        # Each item stops at EOS or at its cap: `max_new_tokens`, else `max_frames_per_phoneme` frames per phoneme
        # for prompt and output together (always at least one frame).
        if options.max_new_tokens is not None:
            caps = torch.full((batch_size,), options.max_new_tokens, device=device)
        else:
            budget = (phoneme_mask.sum(dim=1) * options.max_frames_per_phoneme).long()
            caps = (budget - prompt_mask.sum(dim=1)).clamp(min=1)
        min_new = options.min_new_tokens or 0
        processors = self._logits_processors(options)

        phoneme_hidden = self._embed_phonemes("ar", input_ids, phoneme_mask, language_ids)
        cache = None
        if options.use_cache is not False:  # cached unless asked otherwise
            room = phoneme_mask.shape[1] + audio_mask.shape[1] + int(caps.max())
            cache = VallEKVCache(config.num_hidden_layers, capacity=room)
        hidden = self._ar_forward(phoneme_hidden, phoneme_mask, audio_ids, audio_mask, cache=cache)
        last_valid = (audio_so_far - 1).clamp(min=0)
        next_logits = self._ar_logits(hidden[torch.arange(batch_size, device=device), last_valid])
        key_valid = torch.cat([phoneme_mask, audio_mask], dim=1)

        generated = input_ids.new_zeros(batch_size, 0)
        finished = torch.zeros(batch_size, dtype=torch.bool, device=device)
        ended_with_eos = torch.zeros_like(finished)
        lengths = torch.zeros(batch_size, dtype=torch.long, device=device)
        all_scores, all_logits = [], []
        step = 0
        while True:
            logits = next_logits.float()
            allowed = logits
            if step < min_new:
                allowed = logits.clone()
                allowed[:, eos] = -float("inf")
            scores = processors(generated, allowed.clone())
            token = self._select_next_code(allowed, scores, generated, options)
            if options.output_scores:
                all_scores.append(scores)
            if options.output_logits:
                all_logits.append(logits)

            is_eos = (token == eos) & ~finished
            ended_with_eos |= is_eos
            finished |= is_eos
            token = token.masked_fill(finished, eos)
            lengths += (~finished).long()
            generated = torch.cat([generated, token[:, None]], dim=1)
            step += 1
            finished |= lengths >= caps
            if bool(finished.all()):
                break

            # Feed the new frame (its position continues the item's own audio numbering).
            position = (audio_so_far + step - 1)[:, None]
            if cache is not None:
                new_hidden = self.ar_audio_position(self.ar_audio_embedding(token[:, None]), position)
                key_valid = torch.cat([key_valid, torch.ones_like(key_valid[:, :1])], dim=1)
                hidden = self.ar_decoder(new_hidden, padding_mask(key_valid), cache=cache)
                next_logits = self._ar_logits(hidden[:, -1])
            else:  # recompute the whole sequence, as the open implementations do
                audio_ids = torch.cat([audio_ids, token[:, None]], dim=1)
                audio_mask = torch.cat([audio_mask, torch.ones_like(audio_mask[:, :1])], dim=1)
                hidden = self._ar_forward(phoneme_hidden, phoneme_mask, audio_ids, audio_mask)
                next_logits = self._ar_logits(hidden[:, -1])

        capped = ~ended_with_eos
        if options.max_new_tokens is None and bool(capped.any()):
            logger.warning(
                f"{int(capped.sum())} of {batch_size} item(s) reached the length cap without an end-of-speech token "
                "(raise `max_new_tokens` / `max_frames_per_phoneme`, or check the prompt: a runaway AR often means "
                "a prompt unlike the training data)."
            )
        codes = generated[:, : int(lengths.max())] if generated.shape[1] else generated
        return codes, lengths, ended_with_eos, all_scores, all_logits

    def _select_next_code(self, logits, scores, generated, options) -> torch.Tensor:
        """Draws (or takes the best of) the processed scores; with repetition-aware sampling (VALL-E 2), a code
        that already fills too much of the recent window is redrawn from the full, unfiltered distribution."""
        if options.do_sample:
            token = torch.multinomial(F.softmax(scores, dim=-1), num_samples=1)[:, 0]
        else:
            token = scores.argmax(dim=-1)
        if options.repetition_aware_sampling and generated.shape[1] > 0:
            window = generated[:, -options.repetition_window :]
            repetition = (window == token[:, None]).sum(dim=1).float() / options.repetition_window
            redraw = repetition > options.repetition_threshold
            temperature = options.temperature if options.do_sample and options.temperature else 1.0
            full = torch.multinomial(F.softmax(logits / temperature, dim=-1), num_samples=1)[:, 0]
            token = torch.where(redraw, full, token)  # drawn for every row: no host sync in the decoding loop
        return token

    def _generate_other_codebooks(
        self, input_ids, phoneme_mask, language_ids, prompt_codes, prompt_mask, first_codebook, lengths
    ) -> torch.LongTensor:
        """The NAR's greedy passes, one per codebook 2..K, batched. Returns all codes (B, T, K)."""
        config = self.config
        batch_size, num_frames = first_codebook.shape
        codes = first_codebook.new_zeros(batch_size, num_frames, config.num_codebooks)
        target_mask = torch.arange(num_frames, device=codes.device)[None, :] < lengths[:, None]
        codes[..., 0] = first_codebook.masked_fill(~target_mask, 0)
        if not config.has_nar or num_frames == 0:
            return codes

        # Computed once for all passes: the phonemes, the prompt (all codebooks) and the running target sum.
        phoneme_hidden = self._embed_phonemes("nar", input_ids, phoneme_mask, language_ids)
        prompt_embeds = self._nar_embed_codes(prompt_codes, config.num_codebooks)
        target_embeds = self.nar_audio_embeddings[0](codes[..., 0])
        audio_mask = torch.cat([prompt_mask, target_mask], dim=1)
        prompt_length = prompt_codes.shape[1]
        for codebook in range(1, config.num_codebooks):
            audio_embeds = torch.cat([prompt_embeds, target_embeds], dim=1)
            logits = self._nar_forward(phoneme_hidden, phoneme_mask, audio_embeds, audio_mask, codebook)
            predicted = logits[:, prompt_length:].argmax(dim=-1).masked_fill(~target_mask, 0)
            codes[..., codebook] = predicted
            if codebook + 1 < config.num_codebooks:
                target_embeds = target_embeds + self.nar_audio_embeddings[codebook](predicted)
        return codes


GENERATION_DEFAULTS = {
    "max_frames_per_phoneme": 16,
    "repetition_aware_sampling": False,
    "repetition_window": 10,
    "repetition_threshold": 0.1,
}


class _GenerationInputs(NamedTuple):
    """Checked generation inputs, in the order the two stages take them."""

    input_ids: torch.LongTensor
    phoneme_mask: torch.BoolTensor
    language_ids: torch.LongTensor | None
    prompt_codes: torch.LongTensor  # (B, P, K), code 0 on the padding frames
    prompt_mask: torch.BoolTensor


def _pad_frames(codes: torch.LongTensor, lengths: torch.LongTensor) -> torch.LongTensor:
    """-100 in every frame at or beyond each item's length; `codes` is (B, T) or (B, T, K)."""
    beyond = torch.arange(codes.shape[1], device=codes.device)[None, :] >= lengths[:, None]
    return codes.masked_fill(beyond[..., None] if codes.dim() == 3 else beyond, IGNORE_INDEX)


# ==================================================================================================
# Input checks: every malformed input gets a message that names it and says what to pass instead
# ==================================================================================================


def _check_phonemes(config: VallEConfig, input_ids, attention_mask) -> torch.Tensor:
    if input_ids is None:
        raise ValueError("`input_ids` (phoneme ids, shape (batch, num_phonemes)) are required.")
    if not torch.is_tensor(input_ids) or input_ids.dim() != 2 or input_ids.dtype not in (torch.long, torch.int):
        raise ValueError(
            "`input_ids` must be an integer tensor of shape (batch, num_phonemes); got "
            f"{_describe(input_ids)}. Use `VallEProcessor(text=...)` to make them."
        )
    if input_ids.shape[0] == 0 or input_ids.shape[1] == 0:
        raise ValueError(f"`input_ids` is empty (shape {tuple(input_ids.shape)}): give at least one phoneme per item.")
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids, dtype=torch.bool)
    elif attention_mask.shape != input_ids.shape:
        raise ValueError(
            f"`attention_mask` has shape {tuple(attention_mask.shape)} but `input_ids` has {tuple(input_ids.shape)}; "
            "they must match."
        )
    attention_mask = attention_mask.bool()
    if not bool(attention_mask.any(dim=1).all()):
        raise ValueError("`attention_mask` masks every phoneme of some item: each item needs at least one phoneme.")
    real = input_ids[attention_mask]
    if bool(((real < 0) | (real >= config.vocab_size)).any()):
        raise ValueError(
            f"`input_ids` holds ids outside the phoneme vocabulary [0, {config.vocab_size}) "
            f"(min {int(real.min())}, max {int(real.max())}): the tokenizer and the model do not match."
        )
    return attention_mask


def _check_code_shape(config: VallEConfig, codes, name: str, batch_size: int):
    if not torch.is_tensor(codes) or codes.dim() != 3 or codes.dtype not in (torch.long, torch.int):
        raise ValueError(
            f"`{name}` must be an integer tensor of shape (batch, frames, num_codebooks={config.num_codebooks}); "
            f"got {_describe(codes)}."
        )
    if codes.shape[0] != batch_size:
        raise ValueError(f"`{name}` has batch size {codes.shape[0]} but `input_ids` has {batch_size}.")
    if codes.shape[2] != config.num_codebooks:
        raise ValueError(
            f"`{name}` has {codes.shape[2]} codebooks in its last dimension but the model has "
            f"{config.num_codebooks}; pass codes shaped (batch, frames, {config.num_codebooks}) (EnCodec 24 kHz at "
            "6 kbps gives 8)."
        )


def _check_codes(config: VallEConfig, codes, name: str, batch_size: int) -> torch.Tensor:
    """Checks a (B, T, K) code tensor with -100 padding at the end; returns the frame mask (B, T)."""
    _check_code_shape(config, codes, name, batch_size)
    padding = codes == IGNORE_INDEX
    frame_mask = ~padding[..., 0]
    if bool((padding != ~frame_mask[..., None]).any()):
        raise ValueError(f"`{name}`: a frame is -100 in some codebooks but not in others; pad whole frames.")
    if bool((frame_mask[:, 1:] & ~frame_mask[:, :-1]).any()):
        raise ValueError(f"`{name}`: padding (-100) must come after the real frames of each item, not before.")
    real = codes[~padding]
    if bool(((real < 0) | (real >= config.codebook_size)).any()):
        raise ValueError(
            f"`{name}` holds codes outside [0, {config.codebook_size}) (min {int(real.min())}, max {int(real.max())}); "
            "use -100 for padding only."
        )
    return frame_mask


def _check_prompt(config: VallEConfig, prompt_codes, prompt_mask, batch_size: int) -> torch.Tensor:
    _check_code_shape(config, prompt_codes, "prompt_codes", batch_size)
    if prompt_mask is None:
        prompt_mask = torch.ones(prompt_codes.shape[:2], dtype=torch.bool, device=prompt_codes.device)
    elif prompt_mask.shape != prompt_codes.shape[:2]:
        raise ValueError(
            f"`prompt_attention_mask` has shape {tuple(prompt_mask.shape)} but `prompt_codes` has "
            f"{tuple(prompt_codes.shape)}; it must be (batch, frames)."
        )
    prompt_mask = prompt_mask.bool()
    if bool((prompt_mask[:, 1:] & ~prompt_mask[:, :-1]).any()):
        raise ValueError("`prompt_attention_mask`: padding must come after the real prompt frames (right padding).")
    real = prompt_codes[prompt_mask]
    if real.numel() and bool(((real < 0) | (real >= config.codebook_size)).any()):
        raise ValueError(
            f"`prompt_codes` holds codes outside [0, {config.codebook_size}) where `prompt_attention_mask` is 1 "
            f"(min {int(real.min())}, max {int(real.max())})."
        )
    return prompt_mask


def _check_first_codebook(config: VallEConfig, first_codebook, batch_size: int) -> torch.LongTensor:
    """Checks codebook-1 codes (B, T) with -100 padding at the end; returns each item's number of frames."""
    if first_codebook is None:
        raise ValueError(
            "`first_codebook` is required: the codebook-1 codes of the target speech, shape (batch, frames), -100 "
            "after each item's end (the output of `generate_ar`, or `codes[..., 0]`)."
        )
    if not torch.is_tensor(first_codebook) or first_codebook.dtype not in (torch.long, torch.int):
        raise ValueError(
            f"`first_codebook` must be an integer tensor of shape (batch, frames); got {_describe(first_codebook)}."
        )
    if first_codebook.dim() != 2:
        hint = " Of codes shaped (batch, frames, codebooks), pass `codes[..., 0]`." if first_codebook.dim() == 3 else ""
        raise ValueError(f"`first_codebook` must have shape (batch, frames); got {_describe(first_codebook)}.{hint}")
    if first_codebook.shape[0] != batch_size:
        raise ValueError(f"`first_codebook` has batch size {first_codebook.shape[0]} but `input_ids` has {batch_size}.")
    frame_mask = first_codebook != IGNORE_INDEX
    if bool((frame_mask[:, 1:] & ~frame_mask[:, :-1]).any()):
        raise ValueError("`first_codebook`: padding (-100) must come after the real frames of each item, not before.")
    real = first_codebook[frame_mask]
    if real.numel() and bool(((real < 0) | (real >= config.codebook_size)).any()):
        raise ValueError(
            f"`first_codebook` holds codes outside [0, {config.codebook_size}) (min {int(real.min())}, max "
            f"{int(real.max())}); use -100 after each item's end (the AR's end-of-speech id "
            f"{config.audio_eos_token_id} is not a code)."
        )
    return frame_mask.sum(dim=1)


def _check_languages(config: VallEConfig, language_ids, input_ids):
    if config.num_languages == 0:
        if language_ids is not None:
            raise ValueError(
                "`language_ids` were given but this model has no language embedding (`config.num_languages=0`)."
            )
        return None
    if language_ids is None:
        raise ValueError(
            f"this model has {config.num_languages} language embeddings: pass `language_ids` (shape (batch,) or "
            "(batch, num_phonemes)); the processor adds them when its `language_ids` mapping is set."
        )
    if language_ids.shape not in (input_ids.shape[:1], input_ids.shape):
        raise ValueError(
            f"`language_ids` must have shape (batch,) or (batch, num_phonemes) = {tuple(input_ids.shape)}; got "
            f"{tuple(language_ids.shape)}."
        )
    if bool(((language_ids < 0) | (language_ids >= config.num_languages)).any()):
        raise ValueError(f"`language_ids` must lie in [0, {config.num_languages}).")
    return language_ids.long()


def _describe(value) -> str:
    if torch.is_tensor(value):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    return f"{type(value).__name__}"


# ==================================================================================================
# Registration: Auto classes in this process, and `auto_map` + code files when saving
# ==================================================================================================

AutoConfig.register("valle", VallEConfig, exist_ok=True)
AutoModel.register(VallEConfig, VallEForConditionalCodecGeneration, exist_ok=True)
AutoModelForTextToWaveform.register(VallEConfig, VallEForConditionalCodecGeneration, exist_ok=True)
VallEConfig.register_for_auto_class()
VallEForConditionalCodecGeneration.register_for_auto_class("AutoModel")

__all__ = ["VallEForConditionalCodecGeneration", "VallEPreTrainedModel", "VallEOutput", "VallEGenerationOutput"]
