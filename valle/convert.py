"""Bring existing weights: convert lifeiteng/vall-e and VALL-E X checkpoints into this project's format.

Two open implementations share one checkpoint layout (SPEC.md section 9): lifeiteng/vall-e (Apache-2.0) and
Plachtaa/VALL-E-X (MIT), which adds a language embedding for en/zh/ja and a begin-of-speech row in the AR audio
embedding. Their `torch.save` files hold `{"model": state_dict, ...}`. This module

1. loads such a file safely (`weights_only=True`; real pickles only with `trust_pickle=True`),
2. reads the architecture off the tensor shapes (`config_from_original`),
3. checks that every key is one it understands and every shape is the one the architecture implies, and lists
   every problem at once (`check_original_state_dict`),
4. renames the tensors (`original_to_hf`): the stacked q/k/v projections are split, tied prediction layers are
   checked equal and kept once, the per-stage constants are stacked into one table,
5. writes a `save_pretrained` folder: config, safetensors, generation config, processor files, model card.

`hf_to_original` is the exact inverse (bit-identical tensors, same key set), so a converted model can go back to the
original code, e.g. to compare the two.

Text: `tokenizer_from_k2_symbols` (lifeiteng's `unique_text_tokens.k2symbols`) and `vallex_tokenizer` (VALL-E X's
70-symbol character vocabulary) build `VallEPhonemeTokenizer`s whose ids are the originals' ids.
"""

from __future__ import annotations

import logging
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch

logger = logging.getLogger(__name__)

LAYOUT_LIFEITENG = "lifeiteng"
LAYOUT_VALLEX = "vallex"
LAYOUTS = (LAYOUT_LIFEITENG, LAYOUT_VALLEX)

# Where the published weights live, for the model card's `base_model`.
KNOWN_BASE_MODELS = {LAYOUT_VALLEX: "Plachta/VALL-E-X"}

# The language ids of VALL-E X's language embedding (its model's `language_ID`), keyed by the espeak voice our
# tokenizer uses for that language. NB: VALL-E X's prompt files number languages differently (zh=0, ja=1, en=2);
# the embedding uses these.
VALLEX_LANGUAGE_IDS = {"en-us": 0, "cmn": 1, "ja": 2}

# VALL-E X's text vocabulary (utils/g2p/bpe_69.json): 5 special tokens, then one symbol per character, in code point
# order, ids 5..69. The symbols are the characters of its IPA cleaners (English: eng_to_ipa with stress and dark l;
# Mandarin: IPA with tone arrows; Japanese: romaji-like IPA with pitch marks).
VALLEX_SPECIAL_TOKENS = ("[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]")
VALLEX_SYMBOLS = "!#*,-.=?NQ^_`abdefghijklmnopstuvwxyz~æçðŋɑɔəɛɥɪɫɯɸɹɾʃʊʑʒʰˈˌθ…⁼↑→↓"

# lifeiteng's TextTokenCollater puts these before the sorted symbols of the k2 table.
LIFEITENG_SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>")

# Harmless classes that training scripts leave in checkpoints next to the weights (icefall stores its
# hyper-parameters, `exp_dir` among them, as top-level entries). Allowed under `weights_only=True`.
_SAFE_EXTRA_GLOBALS = ("pathlib.PosixPath", "pathlib.WindowsPath", "pathlib.PurePosixPath", "pathlib.PureWindowsPath")

# The head count is not stored in the weights. Both published models use 16 heads at width 1024.
_PUBLISHED_HEADS = {1024: 16}


class ConversionError(ValueError):
    """A checkpoint that cannot be converted exactly; the message says what is wrong and what to do."""


# ==================================================================================================================
# Loading
# ==================================================================================================================


@dataclass
class OriginalCheckpoint:
    """What a lifeiteng / VALL-E X checkpoint file holds: the model's tensors and the entries beside them."""

    state_dict: dict[str, torch.Tensor]
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    path: str | None = None


def load_original_checkpoint(path: str | Path, *, key: str | None = "model", trust_pickle: bool = False) -> OriginalCheckpoint:
    """
    Reads a lifeiteng/vall-e or VALL-E X `.pt` file.

    Args:
        path: the checkpoint (`torch.save` of a dict with a `"model"` state dict).
        key: the entry holding the state dict (`"model"`; lifeiteng's averaged weights are in `"model_avg"`), or
            `None` for a file that is a bare state dict.
        trust_pickle: load with `weights_only=False`, which runs arbitrary code stored in the file. Only for files
            from a source you trust, and only when the safe load fails (the error says why it failed).

    Returns:
        An [`OriginalCheckpoint`]: the state dict, and the plain (int/float/str/bool) entries beside it, such as
        icefall's hyper-parameters (`nhead`, `prefix_mode`, ...), which the conversion checks when present.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist (or is not a file).")
    if trust_pickle:
        logger.warning("Loading %s with weights_only=False (--trust-pickle): code in the file may run.", path)
        loaded = torch.load(path, map_location="cpu", weights_only=False)
    else:
        try:
            with torch.serialization.safe_globals(_safe_globals()):
                loaded = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as error:
            found = re.findall(r"GLOBAL ([\w.]+)", str(error))
            what = f" It stores Python objects of type {', '.join(sorted(set(found)))}" if found else ""
            raise ConversionError(
                f"{path} cannot be loaded safely (torch.load with weights_only=True).{what} - typically the "
                "optimizer, scheduler, sampler or hyper-parameter objects a training script saves next to the "
                "weights. Loading it fully runs code stored in the file. If you trust its source, convert with "
                "`--trust-pickle` (Python: trust_pickle=True). Better: once loaded in a trusted place, keep only "
                "`{'model': checkpoint['model']}` and convert that file safely.\n"
                f"torch said: {str(error).splitlines()[0]}"
            ) from error
    return _split_checkpoint(loaded, key, str(path))


def _safe_globals() -> list:
    import pathlib

    return [getattr(pathlib, name.split(".")[1]) for name in _SAFE_EXTRA_GLOBALS]


def _split_checkpoint(loaded: Any, key: str | None, where: str) -> OriginalCheckpoint:
    if key is None:
        if not isinstance(loaded, Mapping):
            raise ConversionError(f"{where} holds a {type(loaded).__name__}, not a state dict.")
        return OriginalCheckpoint(state_dict=_tensors_only(loaded, where), path=where)
    if not isinstance(loaded, Mapping) or key not in loaded:
        entries = sorted(map(str, loaded.keys()))[:20] if isinstance(loaded, Mapping) else []
        looks_bare = any(str(name).startswith(("ar_", "nar_")) for name in entries)
        hint = (
            " It looks like a bare state dict: pass key=None (CLI: --state-dict-key '')."
            if looks_bare
            else " lifeiteng/vall-e and VALL-E X save {'model': state_dict, ...}; check that this is such a file."
        )
        found = f"its entries are {entries}" if isinstance(loaded, Mapping) else f"it holds a {type(loaded).__name__}"
        raise ConversionError(f"{where} has no {key!r} entry ({found}).{hint}")
    hyperparameters = {
        str(name): value
        for name, value in loaded.items()
        if name != key and isinstance(value, (int, float, str, bool)) and not isinstance(value, torch.Tensor)
    }
    return OriginalCheckpoint(state_dict=_tensors_only(loaded[key], where), hyperparameters=hyperparameters, path=where)


def _tensors_only(state_dict: Any, where: str) -> dict[str, torch.Tensor]:
    if not isinstance(state_dict, Mapping):
        raise ConversionError(f"the state dict in {where} is a {type(state_dict).__name__}, not a mapping of tensors.")
    not_tensors = [name for name, value in state_dict.items() if not isinstance(value, torch.Tensor)]
    if not_tensors:
        raise ConversionError(f"the state dict in {where} has entries that are not tensors: {not_tensors[:10]}.")
    return {str(name): value for name, value in state_dict.items()}


# ==================================================================================================================
# Layout and architecture, read off the shapes
# ==================================================================================================================


def detect_layout(state_dict: Mapping[str, torch.Tensor]) -> str:
    """`"vallex"` when the checkpoint has VALL-E X's language embeddings, else `"lifeiteng"` (same names otherwise)."""
    if "ar_text_embedding.word_embeddings.weight" not in state_dict:
        sample = sorted(state_dict)[:8]
        raise ConversionError(
            "this is not a lifeiteng/vall-e or VALL-E X state dict: `ar_text_embedding.word_embeddings.weight` is "
            f"missing (first keys: {sample}). A folder saved by this project loads with from_pretrained as it is."
        )
    if "ar_language_embedding.word_embeddings.weight" in state_dict:
        return LAYOUT_VALLEX
    return LAYOUT_LIFEITENG


def _count_indexed(state_dict, prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    indices = {int(match.group(1)) for name in state_dict if (match := pattern.match(name))}
    return max(indices) + 1 if indices else 0


def config_from_original(
    state_dict: Mapping[str, torch.Tensor],
    layout: str = "auto",
    *,
    num_attention_heads: int | None = None,
    nar_num_attention_heads: int | None = None,
    hyperparameters: Mapping[str, Any] | None = None,
    accept_inexact: bool = False,
    **config_overrides,
):
    """
    The [`VallEConfig`] that holds this checkpoint exactly: sizes from the shapes, `use_audio_bos` from the AR audio
    embedding's rows (1026 = codes + EOS + BOS), languages from the language embedding, untied AR head, "shifted" NAR
    head tying, learned AR / fixed NAR position scales, no dropout changes (0.1, as trained).

    The head count is not in the weights: it comes from `num_attention_heads`, else the checkpoint's `nhead`
    hyper-parameter, else 16 for width 1024 (both published models).
    """
    from configuration_valle import VallEConfig

    hyperparameters = dict(hyperparameters or {})
    layout = detect_layout(state_dict) if layout == "auto" else layout
    if layout not in LAYOUTS:
        raise ConversionError(f"`layout` must be 'auto' or one of {LAYOUTS}, got {layout!r}.")
    _check_hyperparameters(hyperparameters, accept_inexact)

    def shape(name):
        if name not in state_dict:
            raise ConversionError(f"the checkpoint lacks `{name}`, which every {layout} checkpoint has.")
        return tuple(state_dict[name].shape)

    vocab_size, hidden_size = shape("ar_text_embedding.word_embeddings.weight")
    audio_rows = shape("ar_audio_embedding.word_embeddings.weight")[0]
    codebook_size = shape("ar_predict_layer.weight")[0] - 1
    if audio_rows not in (codebook_size + 1, codebook_size + 2):
        raise ConversionError(
            f"`ar_audio_embedding` has {audio_rows} rows; with {codebook_size} codes it must have {codebook_size + 1} "
            f"(codes + EOS) or {codebook_size + 2} (codes + EOS + BOS)."
        )
    num_layers = _count_indexed(state_dict, "ar_decoder.layers.")
    intermediate_size = shape("ar_decoder.layers.0.linear1.weight")[0] if num_layers else None
    if not num_layers:
        raise ConversionError("the checkpoint has no `ar_decoder.layers.*`: it is not a VALL-E checkpoint.")

    num_codebooks = _count_indexed(state_dict, "nar_audio_embeddings.")
    if num_codebooks < 3:
        raise ConversionError(
            f"the checkpoint has {num_codebooks} NAR audio embeddings; this converter handles the NAR of 3 or more "
            "codebooks (8 in the published models). An AR-only or 2-codebook model cannot be held exactly."
        )
    nar_vocab, nar_hidden = shape("nar_text_embedding.word_embeddings.weight")
    if nar_vocab != vocab_size:
        raise ConversionError(
            f"the AR and NAR text embeddings have {vocab_size} and {nar_vocab} rows; the model has one vocab_size."
        )
    nar_layers = _count_indexed(state_dict, "nar_decoder.layers.")
    nar_intermediate = shape("nar_decoder.layers.0.linear1.weight")[0] if nar_layers else None

    if num_attention_heads is None:
        num_attention_heads = hyperparameters.get("nhead") or _PUBLISHED_HEADS.get(hidden_size)
        if num_attention_heads is None:
            raise ConversionError(
                f"the number of attention heads is not stored in the weights, and width {hidden_size} is not one "
                "of the published models (1024 -> 16 heads). Pass num_attention_heads (CLI: --num-heads)."
            )
    if nar_num_attention_heads is None:
        # lifeiteng scales the NAR's heads with its width (nar_scale_factor).
        nar_num_attention_heads = max(1, int(num_attention_heads * nar_hidden / hidden_size))

    num_languages = 0
    if layout == LAYOUT_VALLEX:
        num_languages = shape("ar_language_embedding.word_embeddings.weight")[0]

    values = dict(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_attention_heads,
        intermediate_size=intermediate_size,
        nar_hidden_size=None if nar_hidden == hidden_size else nar_hidden,
        nar_num_hidden_layers=None if nar_layers == num_layers else nar_layers,
        nar_num_attention_heads=None if nar_num_attention_heads == num_attention_heads else nar_num_attention_heads,
        nar_intermediate_size=None if nar_intermediate == intermediate_size else nar_intermediate,
        num_codebooks=num_codebooks,
        codebook_size=codebook_size,
        use_audio_bos=audio_rows == codebook_size + 2,
        tie_ar_lm_head=False,
        nar_head_tying="shifted",
        num_languages=num_languages,
        ar_learned_position_scale=True,
        nar_learned_position_scale=False,
        layer_norm_eps=1e-5,
        hidden_act="relu",
    )
    if layout == LAYOUT_VALLEX:
        # Its ids: [UNK] [CLS] [SEP] [PAD] [MASK]; no BOS/EOS around utterances.
        values.update(pad_token_id=3, bos_token_id=None, eos_token_id=None)
    else:
        values.update(pad_token_id=0, bos_token_id=1, eos_token_id=2)
    values.update(config_overrides)
    try:
        return VallEConfig(**values)
    except (ValueError, TypeError) as error:
        raise ConversionError(f"the shapes of this checkpoint give an invalid configuration: {error}") from error


def _check_hyperparameters(hyperparameters: Mapping[str, Any], accept_inexact: bool):
    """lifeiteng's trainer stores its options next to the weights. Those that change the computation without
    leaving a trace in the shapes are checked here."""
    problems = []
    prefix_mode = hyperparameters.get("prefix_mode")
    if prefix_mode is not None and prefix_mode != 1:
        problems.append(
            f"prefix_mode={prefix_mode}: this model's NAR always reads all codebooks of the acoustic prompt and the "
            "whole phoneme prompt (prefix_mode=1, as VALL-E X); mode 0 adds the prompt's codebooks stage by stage and "
            "modes 2/4 drop the prompt's phonemes, so NAR outputs would differ from the original's"
        )
    if hyperparameters.get("norm_first") is False:
        problems.append("norm_first=False (post-LayerNorm blocks): this model is pre-LayerNorm only")
    if hyperparameters.get("add_prenet"):
        problems.append("add_prenet=True: this model has no pre-nets")
    if hyperparameters.get("model_name", "valle").lower() not in ("valle", "vall-e"):
        problems.append(f"model_name={hyperparameters['model_name']!r}: only VALL-E (not VALL-F) is supported")
    if not problems:
        return
    message = "the checkpoint's stored hyper-parameters describe a model this one cannot reproduce: " + "; ".join(
        problems
    )
    if accept_inexact and all(problem.startswith("prefix_mode") for problem in problems):
        logger.warning("%s. Converting anyway (accept_inexact=True).", message)
        return
    raise ConversionError(
        message + ". (prefix_mode alone may be overridden with accept_inexact=True / --accept-inexact, knowing that "
        "the NAR then behaves like prefix_mode=1.)"
    )


# ==================================================================================================================
# The key map
# ==================================================================================================================


def _decoder_layer_shapes(prefix: str, hidden: int, intermediate: int, adaptive: bool) -> dict[str, tuple]:
    shapes = {
        f"{prefix}self_attn.in_proj_weight": (3 * hidden, hidden),
        f"{prefix}self_attn.in_proj_bias": (3 * hidden,),
        f"{prefix}self_attn.out_proj.weight": (hidden, hidden),
        f"{prefix}self_attn.out_proj.bias": (hidden,),
        f"{prefix}linear1.weight": (intermediate, hidden),
        f"{prefix}linear1.bias": (intermediate,),
        f"{prefix}linear2.weight": (hidden, intermediate),
        f"{prefix}linear2.bias": (hidden,),
    }
    for norm in ("norm1", "norm2"):
        shapes.update(_norm_shapes(f"{prefix}{norm}.", hidden, adaptive))
    return shapes


def _norm_shapes(prefix: str, hidden: int, adaptive: bool) -> dict[str, tuple]:
    if not adaptive:
        return {f"{prefix}weight": (hidden,), f"{prefix}bias": (hidden,)}
    return {
        f"{prefix}project_layer.weight": (2 * hidden, hidden),
        f"{prefix}project_layer.bias": (2 * hidden,),
        f"{prefix}norm.weight": (hidden,),
        f"{prefix}norm.bias": (hidden,),
    }


def original_key_shapes(config, layout: str) -> dict[str, tuple]:
    """Every key of an original checkpoint of this architecture, with its shape (SPEC.md section 9)."""
    d = config.hidden_size
    nar = config.nar_sizes
    nd = nar["hidden_size"]
    codes = config.codebook_size
    shapes = {
        "ar_text_embedding.word_embeddings.weight": (config.vocab_size, d),
        "ar_audio_embedding.word_embeddings.weight": (codes + (2 if config.use_audio_bos else 1), d),
        "ar_text_position.alpha": (1,),
        "ar_audio_position.alpha": (1,),
        "ar_decoder.norm.weight": (d,),
        "ar_decoder.norm.bias": (d,),
        "ar_predict_layer.weight": (codes + 1, d),
        "nar_text_embedding.word_embeddings.weight": (config.vocab_size, nd),
        "nar_text_position.alpha": (1,),
        "nar_audio_position.alpha": (1,),
    }
    for layer in range(config.num_hidden_layers):
        shapes.update(_decoder_layer_shapes(f"ar_decoder.layers.{layer}.", d, config.intermediate_size, False))
    for layer in range(nar["num_hidden_layers"]):
        shapes.update(_decoder_layer_shapes(f"nar_decoder.layers.{layer}.", nd, nar["intermediate_size"], True))
    shapes.update(_norm_shapes("nar_decoder.norm.", nd, True))
    for codebook in range(config.num_codebooks):
        shapes[f"nar_audio_embeddings.{codebook}.word_embeddings.weight"] = (codes + (1 if codebook == 0 else 0), nd)
    for stage in range(config.num_codebooks - 1):
        shapes[f"nar_predict_layers.{stage}.weight"] = (codes, nd)
        shapes[f"nar_stage_embeddings.{stage}.word_embeddings.weight"] = (1, nd)
    if layout == LAYOUT_VALLEX:
        shapes["ar_language_embedding.word_embeddings.weight"] = (config.num_languages, d)
        # VALL-E X builds its NAR language table with the AR width (the two are equal in its model).
        shapes["nar_language_embedding.word_embeddings.weight"] = (config.num_languages, nd)
    return shapes


_HINTS = (
    ("prenet", "the checkpoint was trained with add_prenet=True; this model has no pre-nets"),
    ("multihead_attn", "cross-attention layers belong to lifeiteng's VALL-F, not VALL-E"),
    ("norm3", "cross-attention layers belong to lifeiteng's VALL-F, not VALL-E"),
    ("module.", "keys start with 'module.': the model was saved wrapped in DistributedDataParallel; strip the prefix"),
)


def check_original_state_dict(state_dict: Mapping[str, torch.Tensor], config, layout: str) -> None:
    """Raises one `ConversionError` listing every unknown key, missing key, wrong shape and broken tie."""
    expected = original_key_shapes(config, layout)
    unknown = sorted(set(state_dict) - set(expected))
    missing = sorted(set(expected) - set(state_dict))
    wrong = [
        f"{name}: {tuple(state_dict[name].shape)}, expected {expected[name]}"
        for name in sorted(set(expected) & set(state_dict))
        if tuple(state_dict[name].shape) != expected[name]
    ]
    untied = []
    if not wrong:
        for head, embedding in _nar_ties(config):
            if head in state_dict and embedding in state_dict and not torch.equal(state_dict[head], state_dict[embedding]):
                untied.append(f"{head} != {embedding}")
    if not (unknown or missing or wrong or untied):
        return
    lines = [f"cannot convert this {layout} checkpoint exactly:"]
    if unknown:
        lines.append(f"- {len(unknown)} key(s) this converter does not understand: {_listing(unknown)}")
        for needle, hint in _HINTS:
            if any(needle in name for name in unknown):
                lines.append(f"  ({hint})")
    if missing:
        lines.append(f"- {len(missing)} key(s) missing: {_listing(missing)}")
        if any(name.startswith("ar_decoder.norm") for name in missing):
            lines.append("  (no final norm: the model was trained with norm_first=False; this one is pre-LayerNorm)")
    if wrong:
        lines.append(f"- {len(wrong)} shape(s) that do not match the architecture read off the checkpoint: {_listing(wrong)}")
    if untied:
        lines.append(
            f"- NAR prediction layers that should share weights with audio embeddings do not: {_listing(untied)}. The "
            "checkpoint was trained with share_embedding=False, which this model cannot hold (its NAR heads are "
            "tied, 'shifted' like lifeiteng's share_embedding=True)."
        )
    raise ConversionError("\n".join(lines))


def _listing(items: list[str], limit: int = 12) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


def _nar_ties(config) -> list[tuple[str, str]]:
    """(original head, original embedding) pairs that are one tensor: head j predicts 0-based codebook j+1 and reads
    the embedding of codebook j+2; the last head has weights of its own."""
    return [
        (f"nar_predict_layers.{j}.weight", f"nar_audio_embeddings.{j + 2}.word_embeddings.weight")
        for j in range(config.num_codebooks - 2)
    ]


def _renames(config, layout: str) -> list[tuple[str, str]]:
    """(original, ours) for every tensor that maps one to one."""
    pairs = [
        ("ar_text_embedding.word_embeddings.weight", "ar_phoneme_embedding.weight"),
        ("ar_audio_embedding.word_embeddings.weight", "ar_audio_embedding.weight"),
        ("ar_text_position.alpha", "ar_phoneme_position.alpha"),
        ("ar_audio_position.alpha", "ar_audio_position.alpha"),
        ("ar_decoder.norm.weight", "ar_decoder.norm.weight"),
        ("ar_decoder.norm.bias", "ar_decoder.norm.bias"),
        ("ar_predict_layer.weight", "ar_lm_head.weight"),
        ("nar_text_embedding.word_embeddings.weight", "nar_phoneme_embedding.weight"),
        ("nar_text_position.alpha", "nar_phoneme_position.alpha"),
        ("nar_audio_position.alpha", "nar_audio_position.alpha"),
        ("nar_decoder.norm.project_layer.weight", "nar_decoder.norm.project.weight"),
        ("nar_decoder.norm.project_layer.bias", "nar_decoder.norm.project.bias"),
        ("nar_decoder.norm.norm.weight", "nar_decoder.norm.norm.weight"),
        ("nar_decoder.norm.norm.bias", "nar_decoder.norm.norm.bias"),
        (f"nar_predict_layers.{config.num_codebooks - 2}.weight", "nar_last_lm_head.weight"),
    ]
    if layout == LAYOUT_VALLEX:
        pairs += [
            ("ar_language_embedding.word_embeddings.weight", "ar_language_embedding.weight"),
            ("nar_language_embedding.word_embeddings.weight", "nar_language_embedding.weight"),
        ]
    for codebook in range(config.num_codebooks):
        pairs.append((f"nar_audio_embeddings.{codebook}.word_embeddings.weight", f"nar_audio_embeddings.{codebook}.weight"))
    layer_parts = [
        ("self_attn.out_proj.weight", "self_attn.o_proj.weight"),
        ("self_attn.out_proj.bias", "self_attn.o_proj.bias"),
        ("linear1.weight", "mlp.fc1.weight"),
        ("linear1.bias", "mlp.fc1.bias"),
        ("linear2.weight", "mlp.fc2.weight"),
        ("linear2.bias", "mlp.fc2.bias"),
    ]
    norms = (("norm1", "input_layernorm"), ("norm2", "post_attention_layernorm"))
    for layer in range(config.num_hidden_layers):
        theirs, ours = f"ar_decoder.layers.{layer}.", f"ar_decoder.layers.{layer}."
        pairs += [(theirs + a, ours + b) for a, b in layer_parts]
        for norm, our_norm in norms:
            pairs += [(f"{theirs}{norm}.{p}", f"{ours}{our_norm}.{p}") for p in ("weight", "bias")]
    for layer in range(config.nar_sizes["num_hidden_layers"]):
        theirs, ours = f"nar_decoder.layers.{layer}.", f"nar_decoder.layers.{layer}."
        pairs += [(theirs + a, ours + b) for a, b in layer_parts]
        for norm, our_norm in norms:
            for p in ("weight", "bias"):
                pairs.append((f"{theirs}{norm}.project_layer.{p}", f"{ours}{our_norm}.project.{p}"))
                pairs.append((f"{theirs}{norm}.norm.{p}", f"{ours}{our_norm}.norm.{p}"))
    return pairs


def _attention_layers(config) -> list[tuple[str, str]]:
    """(original prefix, our prefix) of every self-attention block, whose q/k/v are stacked in the original."""
    return [(f"ar_decoder.layers.{i}.self_attn.", f"ar_decoder.layers.{i}.self_attn.") for i in range(config.num_hidden_layers)] + [
        (f"nar_decoder.layers.{i}.self_attn.", f"nar_decoder.layers.{i}.self_attn.")
        for i in range(config.nar_sizes["num_hidden_layers"])
    ]


def original_to_hf(state_dict: Mapping[str, torch.Tensor], config, layout: str = "auto") -> dict[str, torch.Tensor]:
    """
    Renames an original state dict into this model's names (after checking every key and shape).

    q/k/v are split from `in_proj_weight` / `in_proj_bias` (stacked q, k, v); the NAR heads tied to audio embeddings
    are checked equal and dropped (the model reads the embeddings); the per-stage constants become the rows of
    `nar_stage_embedding.weight`. Tensors keep their dtype and values bit for bit.
    """
    layout = detect_layout(state_dict) if layout == "auto" else layout
    check_original_state_dict(state_dict, config, layout)
    converted = {ours: state_dict[theirs] for theirs, ours in _renames(config, layout)}
    for theirs, ours in _attention_layers(config):
        for part in ("weight", "bias"):
            q, k, v = state_dict[f"{theirs}in_proj_{part}"].chunk(3, dim=0)
            converted[f"{ours}q_proj.{part}"] = q.clone()
            converted[f"{ours}k_proj.{part}"] = k.clone()
            converted[f"{ours}v_proj.{part}"] = v.clone()
    converted["nar_stage_embedding.weight"] = torch.cat(
        [state_dict[f"nar_stage_embeddings.{stage}.word_embeddings.weight"] for stage in range(config.num_codebooks - 1)]
    )
    return converted


def hf_to_original(state_dict: Mapping[str, torch.Tensor], config, layout: str | None = None) -> dict[str, torch.Tensor]:
    """
    The inverse of [`original_to_hf`]: this model's state dict back in the original names, with the tied NAR heads
    restored as the same tensors as their embeddings (as `torch.save` of the original model stores them).
    `layout` defaults to "vallex" for models with language embeddings, else "lifeiteng".
    """
    if layout is None:
        layout = LAYOUT_VALLEX if config.num_languages else LAYOUT_LIFEITENG
    if layout == LAYOUT_VALLEX and not config.num_languages:
        raise ConversionError("the VALL-E X layout needs language embeddings; this config has num_languages=0.")
    if layout == LAYOUT_LIFEITENG and config.num_languages:
        raise ConversionError("lifeiteng's layout has no language embeddings; use layout='vallex' for this model.")
    if config.tie_ar_lm_head or config.nar_head_tying != "shifted" or not config.ar_learned_position_scale:
        raise ConversionError(
            "only models with the original implementations' options convert back: tie_ar_lm_head=False, "
            "nar_head_tying='shifted', ar_learned_position_scale=True."
        )
    original = {theirs: state_dict[ours] for theirs, ours in _renames(config, layout)}
    for theirs, ours in _attention_layers(config):
        for part in ("weight", "bias"):
            original[f"{theirs}in_proj_{part}"] = torch.cat(
                [state_dict[f"{ours}{name}_proj.{part}"] for name in ("q", "k", "v")]
            )
    stages = state_dict["nar_stage_embedding.weight"]
    for stage in range(config.num_codebooks - 1):
        original[f"nar_stage_embeddings.{stage}.word_embeddings.weight"] = stages[stage : stage + 1].clone()
    for head, embedding in _nar_ties(config):
        original[head] = original[embedding]
    expected = original_key_shapes(config, layout)
    assert set(original) == set(expected), sorted(set(original) ^ set(expected))
    return original


# ==================================================================================================================
# Tokenizers
# ==================================================================================================================


def read_k2_symbols(path: str | Path) -> list[str]:
    """The symbols of a k2 / icefall symbol table (`symbol id` per line), as lifeiteng's SymbolTable reads it: id 0
    is `<eps>` unless the file names another symbol for it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"symbol table {str(path)!r} does not exist; lifeiteng/vall-e writes it as "
            "data/tokenized/unique_text_tokens.k2symbols."
        )
    by_id, by_symbol = {}, {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or not fields[1].lstrip("-").isdigit():
            raise ConversionError(f"{path}, line {number}: expected 'symbol id', got {line!r}.")
        symbol, index = fields[0], int(fields[1])
        if symbol in by_symbol or index in by_id:
            raise ConversionError(f"{path}, line {number}: symbol {symbol!r} or id {index} appears twice.")
        by_symbol[symbol], by_id[index] = index, symbol
    if not by_symbol:
        raise ConversionError(f"{path} holds no symbols.")
    if 0 not in by_id:
        by_id[0] = "<eps>"
    return list(by_id.values())


def lifeiteng_vocab(symbols: list[str]) -> dict[str, int]:
    """lifeiteng's text ids: `<pad> <bos> <eos>` then the table's symbols sorted (its TextTokenCollater)."""
    clash = [symbol for symbol in symbols if symbol in LIFEITENG_SPECIAL_TOKENS]
    if clash:
        raise ConversionError(f"the symbol table itself contains {clash}, which lifeiteng's collater adds again.")
    return {token: index for index, token in enumerate(list(LIFEITENG_SPECIAL_TOKENS) + sorted(symbols))}


def tokenizer_from_k2_symbols(path: str | Path, **options):
    """
    A `VallEPhonemeTokenizer` with lifeiteng/vall-e's ids and phonemizer settings: espeak `en-us`, phones as tokens,
    `_` between words, punctuation kept, no stress, `<bos>`/`<eos>` around each utterance, no unknown token.
    `options` override any tokenizer argument (e.g. `language`).
    """
    from processing_valle import VallEPhonemeTokenizer

    settings = dict(
        pad_token="<pad>",
        bos_token="<bos>",
        eos_token="<eos>",
        unk_token=None,
        language="en-us",
        add_bos_eos=True,
        word_separator="_",
        with_stress=False,
        preserve_punctuation=True,
        unit="phone",
    )
    settings.update(options)
    return VallEPhonemeTokenizer(vocab=lifeiteng_vocab(read_k2_symbols(path)), **settings)


def vallex_vocab() -> dict[str, int]:
    vocab = {token: index for index, token in enumerate(VALLEX_SPECIAL_TOKENS)}
    vocab.update({symbol: len(VALLEX_SPECIAL_TOKENS) + index for index, symbol in enumerate(VALLEX_SYMBOLS)})
    return vocab


def vallex_tokenizer(**options):
    """
    A `VallEPhonemeTokenizer` with VALL-E X's 70 ids: one token per IPA character, `_` for spaces, no BOS/EOS,
    `[PAD]` = 3, unknown characters -> `[UNK]` = 0 (as its tokenizer does). Phonemes come from espeak (with stress,
    as VALL-E X's English front end writes it), which approximates VALL-E X's own cleaners; feed the output of those
    cleaners with `do_phonemize=False` (characters separated by spaces) for its exact input.
    """
    from processing_valle import VallEPhonemeTokenizer

    settings = dict(
        pad_token="[PAD]",
        unk_token="[UNK]",
        bos_token=None,
        eos_token=None,
        extra_special_tokens=["[CLS]", "[SEP]", "[MASK]"],
        language="en-us",
        add_bos_eos=False,
        word_separator="_",
        with_stress=True,
        preserve_punctuation=True,
        unit="char",
    )
    settings.update(options)
    return VallEPhonemeTokenizer(vocab=vallex_vocab(), **settings)


# ==================================================================================================================
# The whole conversion
# ==================================================================================================================


def build_model(state_dict: Mapping[str, torch.Tensor], config):
    """A `VallEForConditionalCodecGeneration` holding exactly these tensors (strict: no missing or extra key).
    Built on the meta device and filled by assignment, so no memory or time goes into a random initialisation."""
    from modeling_valle import VallEForConditionalCodecGeneration

    with torch.device("meta"):
        model = VallEForConditionalCodecGeneration(config)
    expected = {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    wrong = [f"{n}: {tuple(state_dict[n].shape)} vs {expected[n]}" for n in expected if n in state_dict and tuple(state_dict[n].shape) != expected[n]]
    if missing or unexpected or wrong:
        raise ConversionError(
            f"the converted tensors do not fit the model: missing {_listing(missing)}; unexpected {_listing(unexpected)}; "
            f"wrong shapes {_listing(wrong)}."
        )
    model.load_state_dict(dict(state_dict), strict=True, assign=True)
    # `alpha` is a parameter whether learned or not; keep the config's requires_grad choice after assignment.
    for branch, learned in (("ar", config.ar_learned_position_scale), ("nar", config.nar_learned_position_scale)):
        for part in ("phoneme", "audio"):
            getattr(model, f"{branch}_{part}_position").alpha.requires_grad_(learned)
    return model.eval()


def convert_checkpoint(
    checkpoint: str | Path,
    output_dir: str | Path,
    *,
    layout: str = "auto",
    symbols: str | Path | None = None,
    key: str | None = "model",
    trust_pickle: bool = False,
    num_attention_heads: int | None = None,
    accept_inexact: bool = False,
    dtype: torch.dtype | None = None,
    base_model: str | None = None,
    license: str = "other",
    codec: str = "facebook/encodec_24khz",
    overwrite: bool = False,
):
    """
    Converts a lifeiteng/vall-e or VALL-E X checkpoint into a folder that `from_pretrained` and the Auto classes load.

    Args:
        checkpoint: the original `.pt` file.
        output_dir: the folder to write (config.json, model.safetensors, generation_config.json, tokenizer and
            processor files when a vocabulary is known, README.md model card).
        layout: "auto" (VALL-E X when it has language embeddings), "lifeiteng" or "vallex".
        symbols: lifeiteng's `unique_text_tokens.k2symbols`, to write a tokenizer with its ids. VALL-E X's vocabulary
            is built in. Without it, a lifeiteng conversion writes no tokenizer (and says so).
        key, trust_pickle: see [`load_original_checkpoint`].
        num_attention_heads: the head count, when neither the checkpoint nor the width (1024 -> 16) tells it.
        accept_inexact: convert even when a stored `prefix_mode` other than 1 makes the NAR differ.
        dtype: cast the weights (e.g. `torch.float16`); default: keep the checkpoint's.
        base_model: Hub id the weights come from, for the model card (VALL-E X: "Plachta/VALL-E-X" by default).
        license: the weights' licence for the card ("other" unless you know it).
        codec: where the processor loads EnCodec from.
        overwrite: replace the files of an existing non-empty `output_dir`.

    Returns:
        The loaded, converted model (in eval mode).
    """
    output_dir = Path(output_dir)
    if output_dir.exists() and any(output_dir.iterdir()) and not overwrite:
        raise ConversionError(
            f"{str(output_dir)!r} exists and is not empty; pick a new folder or pass overwrite=True (--overwrite)."
        )
    original = load_original_checkpoint(checkpoint, key=key, trust_pickle=trust_pickle)
    state_dict = original.state_dict
    layout = detect_layout(state_dict) if layout == "auto" else layout
    if layout not in LAYOUTS:
        raise ConversionError(f"`layout` must be 'auto', 'lifeiteng' or 'vallex', got {layout!r}.")
    if layout == LAYOUT_VALLEX and "ar_language_embedding.word_embeddings.weight" not in state_dict:
        raise ConversionError("layout='vallex' but the checkpoint has no language embeddings (a lifeiteng checkpoint?).")
    if layout == LAYOUT_LIFEITENG and "ar_language_embedding.word_embeddings.weight" in state_dict:
        raise ConversionError("layout='lifeiteng' but the checkpoint has VALL-E X's language embeddings; use 'vallex'.")
    config = config_from_original(
        state_dict,
        layout,
        num_attention_heads=num_attention_heads,
        hyperparameters=original.hyperparameters,
        accept_inexact=accept_inexact,
    )
    tokenizer = None
    if layout == LAYOUT_VALLEX:
        if symbols is not None:
            raise ConversionError("`symbols` is lifeiteng's symbol table; VALL-E X's vocabulary is built in.")
        tokenizer = vallex_tokenizer()
    elif symbols is not None:
        tokenizer = tokenizer_from_k2_symbols(symbols)
    if tokenizer is not None and len(tokenizer) > config.vocab_size:
        raise ConversionError(
            f"the tokenizer has {len(tokenizer)} ids but the checkpoint's text embedding only {config.vocab_size} rows: "
            "the symbol table does not belong to this checkpoint."
        )

    converted = original_to_hf(state_dict, config, layout)
    if dtype is not None:
        converted = {name: tensor.to(dtype) for name, tensor in converted.items()}
    model = build_model(converted, config)

    output_dir.mkdir(parents=True, exist_ok=True)
    if overwrite:
        # Only now, with the new conversion ready to write: a previous conversion's tokenizer, processor or card
        # must not survive next to other weights (a lifeiteng conversion without --symbols writes no tokenizer).
        _remove_previous_conversion(output_dir)
    model.save_pretrained(output_dir)
    if tokenizer is not None:
        from processing_valle import VallEProcessor

        processor = VallEProcessor(
            tokenizer,
            codec_name_or_path=codec,
            language_ids=dict(VALLEX_LANGUAGE_IDS) if layout == LAYOUT_VALLEX else None,
        )
        processor.save_pretrained(output_dir)
    else:
        logger.warning(
            "No tokenizer written: lifeiteng's text ids depend on the symbol table the model was trained with. Pass "
            "symbols='.../unique_text_tokens.k2symbols' (--symbols) to write one."
        )
    _write_card(output_dir, model.config, layout, base_model or KNOWN_BASE_MODELS.get(layout), license, original)
    return model


# Everything `convert_checkpoint` may write into its folder (model, generation config, code, processor, card).
CONVERSION_OUTPUTS = (
    "README.md", "config.json", "generation_config.json", "model.safetensors", "model.safetensors.index.json",
    "configuration_valle.py", "modeling_valle.py", "processing_valle.py", "processor_config.json",
    "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "vocab.json", "codec",
)


def _remove_previous_conversion(output_dir: Path):
    import shutil

    for name in CONVERSION_OUTPUTS:
        path = output_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    for shard in output_dir.glob("model-*-of-*.safetensors"):
        shard.unlink()


def _write_card(output_dir: Path, config, layout, base_model, license, original: OriginalCheckpoint):
    try:
        from hub_cards import write_model_card
    except ImportError:
        return
    source = "VALL-E X (Plachtaa/VALL-E-X)" if layout == LAYOUT_VALLEX else "lifeiteng/vall-e"
    info = {"converted from": f"{source} checkpoint `{Path(original.path).name}`" if original.path else source}
    for name in ("nhead", "prefix_mode", "num_quantizers", "batch_idx_train", "cur_epoch", "best_train_loss"):
        if name in original.hyperparameters:
            info[f"original {name}"] = original.hyperparameters[name]
    kwargs = dict(
        config=config,
        base_model=base_model,
        license=license,
        languages=["en", "zh", "ja"] if layout == LAYOUT_VALLEX else "en",
        training_info=info,
    )
    try:
        write_model_card(output_dir, overwrite=True, **kwargs)  # the card save_pretrained just wrote knew less
    except TypeError:  # an older card writer without some of these arguments: the config-only card stays
        logger.warning("hub_cards.write_model_card did not accept the conversion details; kept the basic card.")


__all__ = [
    "ConversionError",
    "LAYOUTS",
    "OriginalCheckpoint",
    "VALLEX_LANGUAGE_IDS",
    "build_model",
    "check_original_state_dict",
    "config_from_original",
    "convert_checkpoint",
    "detect_layout",
    "hf_to_original",
    "lifeiteng_vocab",
    "load_original_checkpoint",
    "original_key_shapes",
    "original_to_hf",
    "read_k2_symbols",
    "tokenizer_from_k2_symbols",
    "vallex_tokenizer",
    "vallex_vocab",
]
