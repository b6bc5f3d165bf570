"""Configuration of VALL-E, the neural codec language model for zero-shot text-to-speech.

Wang et al., "Neural Codec Language Models are Zero-Shot Text to Speech Synthesizers"
(arXiv 2301.02111). The defaults are the paper's model: two transformers of 12 layers,
16 heads, width 1024 and feed-forward 4096 over EnCodec's 8 codebooks of 1024 codes at
24 kHz / 75 frames per second. Options that the paper leaves open exist so that the open
implementations (lifeiteng/vall-e, VALL-E X) can be held exactly; each says where it comes from.
"""

from __future__ import annotations

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig
from transformers.activations import ACT2FN


@strict
class VallEConfig(PreTrainedConfig):
    r"""
    Configuration of [`VallEForConditionalCodecGeneration`]: an autoregressive (AR) decoder that
    writes codebook 1 and a non-autoregressive (NAR) decoder that fills codebooks 2..`num_codebooks`.

    Args:
        vocab_size (`int`, defaults to 512):
            Size of the phoneme vocabulary (the ids produced by `VallEPhonemeTokenizer`).
        hidden_size (`int`, defaults to 1024):
            Width of the AR decoder (and of the NAR decoder unless `nar_hidden_size` is set).
        num_hidden_layers (`int`, defaults to 12):
            Layers of the AR decoder (and of the NAR decoder unless `nar_num_hidden_layers` is set).
        num_attention_heads (`int`, defaults to 16):
            Attention heads of the AR decoder (and of the NAR decoder unless overridden).
        intermediate_size (`int`, defaults to 4096):
            Feed-forward width of the AR decoder (and of the NAR decoder unless overridden).
        nar_hidden_size, nar_num_hidden_layers, nar_num_attention_heads, nar_intermediate_size (`int`, *optional*):
            Sizes of the NAR decoder when they differ from the AR decoder's. `None` means "same as the AR".
        dropout (`float`, defaults to 0.1):
            Dropout on the residual branches, inside the feed-forward block and after the positional encoding.
        attention_dropout (`float`, defaults to 0.1):
            Dropout on the attention probabilities.
        hidden_act (`str`, defaults to `"relu"`):
            Feed-forward activation (ReLU in the open implementations).
        layer_norm_eps (`float`, defaults to 1e-5):
            Epsilon of every LayerNorm.
        num_codebooks (`int`, defaults to 8):
            Number of EnCodec residual codebooks modelled (8 at 6 kbps). Codebook 1 is the AR's; the
            NAR predicts the others, one stage each.
        codebook_size (`int`, defaults to 1024):
            Codes per codebook. The AR vocabulary adds an end-of-speech token (id `codebook_size`) and,
            with `use_audio_bos`, a begin-of-speech token (id `codebook_size + 1`).
        use_audio_bos (`bool`, defaults to `False`):
            Prepend a begin-of-speech token to the AR audio input (VALL-E X does; the paper does not).
            With it, the AR can also start without any acoustic prompt.
        tie_ar_lm_head (`bool`, defaults to `True`):
            Share the AR prediction layer with the AR audio embedding, as in the paper. lifeiteng/vall-e and
            VALL-E X keep them separate. Needs `use_audio_bos=False` (the shapes must match).
        nar_head_tying (`str`, defaults to `"paper"`):
            How NAR prediction layers share weights with the NAR audio embeddings. `"paper"`: the layer that
            predicts codebook j uses the embedding of codebook j (all tied, no extra weights). `"shifted"`:
            the layer for codebook j uses the embedding of codebook j+1 and the last layer has weights of its
            own (lifeiteng/vall-e and VALL-E X do this).
        num_languages (`int`, defaults to 0):
            Size of the optional language embedding added to the phoneme embeddings (VALL-E X: 3, for
            en/zh/ja). 0 disables it.
        ar_learned_position_scale (`bool`, defaults to `True`):
            Whether the scale alpha of the AR's sinusoidal positions is learned (it starts at 1.0).
        nar_learned_position_scale (`bool`, defaults to `False`):
            Whether the NAR's position scale is learned (lifeiteng keeps it fixed at 1.0).
        nar_prompt_max_frames (`int`, defaults to 225):
            Training only: upper bound of the random prefix used as the NAR's acoustic prompt (3 s at 75 Hz).
        nar_prompt_min_ratio, nar_prompt_max_ratio (`float`, default 0.25 and 0.5):
            Training only: the random prefix's length is drawn between these fractions of the shortest
            utterance of the batch.
        ar_loss_weight, nar_loss_weight (`float`, defaults to 1.0):
            Weights of the two losses in `loss`. A weight of 0 skips that decoder in `forward` entirely
            (train the AR only or the NAR only).
        sampling_rate (`int`, defaults to 24000):
            Sampling rate of the codec's audio, reported to pipelines.
        frame_rate (`int`, defaults to 75):
            Codec frames per second (24000 / hop 320).
        initializer_range (`float`, defaults to 0.02):
            Standard deviation of the normal initialisation of linear and embedding weights.
        pad_token_id, bos_token_id, eos_token_id (`int`, defaults to 0, 1, 2):
            Special ids of the phoneme vocabulary.

    Example:

    ```python
    >>> from configuration_valle import VallEConfig
    >>> from modeling_valle import VallEForConditionalCodecGeneration

    >>> config = VallEConfig()  # the paper's model
    >>> model = VallEForConditionalCodecGeneration(config)
    ```
    """

    model_type = "valle"

    vocab_size: int = 512
    hidden_size: int = 1024
    num_hidden_layers: int = 12
    num_attention_heads: int = 16
    intermediate_size: int = 4096
    nar_hidden_size: int | None = None
    nar_num_hidden_layers: int | None = None
    nar_num_attention_heads: int | None = None
    nar_intermediate_size: int | None = None
    dropout: float | int = 0.1
    attention_dropout: float | int = 0.1
    hidden_act: str = "relu"
    layer_norm_eps: float = 1e-5
    num_codebooks: int = 8
    codebook_size: int = 1024
    use_audio_bos: bool = False
    tie_ar_lm_head: bool = True
    nar_head_tying: str = "paper"
    num_languages: int = 0
    ar_learned_position_scale: bool = True
    nar_learned_position_scale: bool = False
    nar_prompt_max_frames: int = 225
    nar_prompt_min_ratio: float | int = 0.25
    nar_prompt_max_ratio: float | int = 0.5
    ar_loss_weight: float | int = 1.0
    nar_loss_weight: float | int = 1.0
    sampling_rate: int = 24000
    frame_rate: int = 75
    initializer_range: float = 0.02
    pad_token_id: int | None = 0
    bos_token_id: int | None = 1
    eos_token_id: int | None = 2
    # Weight sharing is structural here (`tie_ar_lm_head`, `nar_head_tying`), not Transformers'
    # generic input/output embedding tying.
    tie_word_embeddings: bool = False

    # ----------------------------------------------------------------------------------------------
    # Derived values: each decoder's sizes and the AR's special audio ids.

    @property
    def ar_sizes(self) -> dict:
        """The AR decoder's sizes."""
        return {
            "hidden_size": self.hidden_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "intermediate_size": self.intermediate_size,
        }

    @property
    def nar_sizes(self) -> dict:
        """The NAR decoder's sizes, with `None` overrides resolved to the AR's values."""
        overrides = {
            "hidden_size": self.nar_hidden_size,
            "num_hidden_layers": self.nar_num_hidden_layers,
            "num_attention_heads": self.nar_num_attention_heads,
            "intermediate_size": self.nar_intermediate_size,
        }
        return {name: overrides[name] or value for name, value in self.ar_sizes.items()}

    @property
    def audio_eos_token_id(self) -> int:
        """End-of-speech id in the AR vocabulary (right after the codes)."""
        return self.codebook_size

    @property
    def audio_bos_token_id(self) -> int | None:
        """Begin-of-speech id in the AR audio embedding, or `None` when `use_audio_bos` is off."""
        return self.codebook_size + 1 if self.use_audio_bos else None

    @property
    def has_nar(self) -> bool:
        return self.num_codebooks > 1

    # ----------------------------------------------------------------------------------------------

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        # Checked here as well as by `@strict` (which wraps errors in its own exception type) so that a
        # bad value surfaces as a plain `ValueError` at construction.
        self.validate_architecture()

    def validate_architecture(self):
        """Every inconsistency raises a `ValueError` that says what to change."""
        def fail(message):
            raise ValueError(f"VallEConfig: {message}")

        positive_ints = ["vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                         "num_codebooks", "codebook_size", "sampling_rate", "frame_rate", "nar_prompt_max_frames"]
        for name in positive_ints:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                fail(f"`{name}` must be a positive integer, got {value!r}.")
        for name in ["nar_hidden_size", "nar_num_hidden_layers", "nar_num_attention_heads", "nar_intermediate_size"]:
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                fail(f"`{name}` must be a positive integer or None (= same as the AR decoder), got {value!r}.")
        if self.hidden_size % self.num_attention_heads:
            fail(
                f"`hidden_size` ({self.hidden_size}) must be divisible by `num_attention_heads` "
                f"({self.num_attention_heads}); choose a head count that divides it."
            )
        nar = self.nar_sizes
        if nar["hidden_size"] % nar["num_attention_heads"]:
            fail(
                f"the NAR decoder's width ({nar['hidden_size']}) must be divisible by its head count "
                f"({nar['num_attention_heads']}); set `nar_hidden_size` / `nar_num_attention_heads` consistently."
            )
        for name in ["dropout", "attention_dropout"]:
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                fail(f"`{name}` must be in [0, 1), got {value!r}.")
        if self.hidden_act not in ACT2FN:
            fail(f"`hidden_act` {self.hidden_act!r} is unknown; use one of {sorted(ACT2FN)}.")
        if self.layer_norm_eps <= 0:
            fail(f"`layer_norm_eps` must be positive, got {self.layer_norm_eps!r}.")
        if self.tie_ar_lm_head and self.use_audio_bos:
            fail(
                "`tie_ar_lm_head=True` needs `use_audio_bos=False`: with a begin-of-speech token the AR audio "
                "embedding has one row more than the prediction layer, so they cannot share weights. Set "
                "`tie_ar_lm_head=False` (as lifeiteng/vall-e and VALL-E X do) or drop the BOS."
            )
        if self.nar_head_tying not in ("paper", "shifted"):
            fail(f"`nar_head_tying` must be 'paper' or 'shifted', got {self.nar_head_tying!r}.")
        if self.nar_head_tying == "shifted" and self.num_codebooks < 3:
            fail("`nar_head_tying='shifted'` needs at least 3 codebooks; use 'paper' for fewer.")
        if not isinstance(self.num_languages, int) or self.num_languages < 0:
            fail(f"`num_languages` must be an integer >= 0 (0 disables language embeddings), got {self.num_languages!r}.")
        if not 0.0 <= self.nar_prompt_min_ratio <= self.nar_prompt_max_ratio < 1.0:
            fail(
                "need 0 <= `nar_prompt_min_ratio` <= `nar_prompt_max_ratio` < 1, got "
                f"{self.nar_prompt_min_ratio!r} and {self.nar_prompt_max_ratio!r}."
            )
        if self.ar_loss_weight < 0 or self.nar_loss_weight < 0 or self.ar_loss_weight + self.nar_loss_weight == 0:
            fail(
                "`ar_loss_weight` and `nar_loss_weight` must be >= 0 and not both 0, got "
                f"{self.ar_loss_weight!r} and {self.nar_loss_weight!r}."
            )
        if self.nar_loss_weight > 0 and not self.has_nar:
            fail("`nar_loss_weight` > 0 needs `num_codebooks` >= 2 (with one codebook there is no NAR stage).")
        for name in ["pad_token_id", "bos_token_id", "eos_token_id"]:
            value = getattr(self, name, None)
            if value is not None and not 0 <= value < self.vocab_size:
                fail(f"`{name}` ({value}) must be a phoneme id in [0, vocab_size={self.vocab_size}).")


__all__ = ["VallEConfig"]
