"""Model cards for VALL-E checkpoints.

A card is the README.md of a Hub repository: YAML metadata that the Hub indexes
(``pipeline_tag``, ``library_name``, licence, languages, datasets, base model, tags and, when
results are known, a ``model-index``) followed by the text a user reads first: what the model
is, how to run it, what it was trained on, how well it does, where it fails and how not to use
it.

The card says only what it is told. Architecture numbers come from the config, the parameter
count from the weights, and training data, recipe and results only from the caller. The
paper's results are always shown, under a heading that says they are the paper's.

Three callers write cards:

- ``VallEForConditionalCodecGeneration.save_pretrained`` (config only),
- training and ``valle convert`` (config plus datasets, recipe, metrics, base model),
- ``valle push`` when a folder has no README.md yet.

A card written here carries a digest of its own text. A later, better-informed call may
replace such a card as long as nobody edited it; any other README.md is kept unless
``overwrite=True``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import struct
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id

__all__ = [
    "BASE_TAGS",
    "REPO_ID_PLACEHOLDER",
    "TEMPLATE_PATH",
    "build_model_card",
    "count_parameters",
    "eval_results_from_metrics",
    "fill_repo_id",
    "is_unedited_generated_card",
    "write_model_card",
]

logger = logging.getLogger(__name__)

TEMPLATE_PATH = Path(__file__).with_name("model_card_template.md")

# Stands in for the repository id in the usage snippets until the card is pushed somewhere;
# `valle push` replaces it with the real id.
REPO_ID_PLACEHOLDER = "your-username/your-valle-model"

BASE_TAGS = (
    "valle",
    "text-to-speech",
    "zero-shot-tts",
    "voice-cloning",
    "neural-codec-language-model",
    "encodec",
    "custom_code",
)

DEFAULT_LICENSE = "apache-2.0"

# The marker line reads `<!-- valle-model-card given=datasets,eval_results digest=<hex>: ...`.
# `given` lists what the writer was told besides the config; the digest is the sha256 of the whole
# README with the hex left out, so that an edit anywhere changes it.
_MARKER_PATTERN = re.compile(r"valle-model-card given=([a-z_,]*) digest=([0-9a-f]{64})?")

_PLACEHOLDER_PATTERN = re.compile(r"\{\{\s*(\w+)\s*\}\}")


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def build_model_card(
    config: Any = None,
    *,
    repo_id: str | None = None,
    model_name: str | None = None,
    base_model: str | Iterable[str] | None = None,
    datasets: str | Iterable[str] | None = None,
    languages: str | Iterable[str] | None = None,
    license: str = DEFAULT_LICENSE,
    eval_results: EvalResult | Iterable[EvalResult] | None = None,
    training_info: Mapping[str, Any] | None = None,
    num_parameters: int | None = None,
    extra_tags: str | Iterable[str] | None = None,
    about: str | None = None,
    data_description: str | None = None,
    base_model_description: str | None = None,
    results_markdown: str | None = None,
) -> ModelCard:
    """Build the model card of a VALL-E checkpoint.

    Args:
        config: the model's ``VallEConfig`` (or its ``to_dict()``, or ``None``). Only read.
        repo_id: the Hub id the card will live at, used in the usage snippets. Without it the
            snippets show ``REPO_ID_PLACEHOLDER``, which ``valle push`` fills in.
        model_name: a display name (title, and the name in ``model-index``).
        base_model: Hub id(s) of the checkpoint this one was fine-tuned or converted from.
        datasets: Hub dataset id(s) the model was trained on.
        languages: ISO 639 code(s) of the languages the model speaks, e.g. ``"en"``.
        license: Hub licence identifier, e.g. ``"apache-2.0"``, ``"cc-by-4.0"``, ``"other"``.
        eval_results: ``huggingface_hub.EvalResult`` object(s) measured on THIS checkpoint;
            ``eval_results_from_metrics`` builds them from a ``{metric: value}`` dict.
        training_info: recipe facts to record, e.g. ``{"steps": 800000, "peak learning
            rate": 5e-4}``; shown as a table.
        num_parameters: number of parameters; shown when given.
        extra_tags: tags added to ``BASE_TAGS``.
        about: Markdown shown as the card's "This checkpoint" section, right after the introduction: what is
            particular to these weights and how to use them (e.g. voices shipped with the folder).
        data_description: Markdown describing training data that has no Hub id (a local or synthetic corpus);
            shown in the "Data" section, before any ``datasets`` links.
        base_model_description: Markdown naming a starting checkpoint that has no Hub id; shown on the "Base
            model" line when ``base_model`` is not given.
        results_markdown: Markdown of results measured on this checkpoint that do not fit ``model-index`` (for
            example on a dataset that is not on the Hub); shown under "Evaluation", before any ``eval_results``.

    Returns:
        A ``huggingface_hub.ModelCard``; ``str(card)`` is the README.md text.

    Raises:
        TypeError / ValueError naming the argument when an argument is malformed.
    """
    config_values = _config_as_dict(config)
    if repo_id is not None:
        _check_repo_id(repo_id, "repo_id", "model")
    if model_name is not None and (not isinstance(model_name, str) or not model_name.strip()):
        raise ValueError(f"model_name must be a non-empty string or None, got {model_name!r}.")
    base_models = _repo_id_list(base_model, "base_model", "model")
    dataset_ids = _repo_id_list(datasets, "datasets", "dataset")
    language_codes = _language_list(languages)
    if not isinstance(license, str) or not license.strip():
        raise ValueError(
            f"license must be a Hub licence identifier such as 'apache-2.0', 'cc-by-4.0' or 'other', got {license!r}."
        )
    results = _eval_result_list(eval_results)
    training = _training_info_dict(training_info)
    if num_parameters is not None and (
        isinstance(num_parameters, bool) or not isinstance(num_parameters, int) or num_parameters < 0
    ):
        raise ValueError(f"num_parameters must be a non-negative int or None, got {num_parameters!r}.")
    extra = _string_list(extra_tags, "extra_tags")
    texts = {
        name: _optional_markdown(value, name)
        for name, value in (
            ("about", about),
            ("data_description", data_description),
            ("base_model_description", base_model_description),
            ("results_markdown", results_markdown),
        )
    }
    tags = list(BASE_TAGS) + [tag for tag in extra if tag not in BASE_TAGS]
    informed = {
        "repo_id": repo_id,
        "model_name": model_name,
        "base_model": base_models,
        "datasets": dataset_ids,
        "languages": language_codes,
        "license": license != DEFAULT_LICENSE,
        "eval_results": results,
        "training_info": training,
        "extra_tags": extra,
        **texts,
    }
    given = sorted(name for name, value in informed.items() if value)

    card_data = ModelCardData(
        pipeline_tag="text-to-speech",
        library_name="transformers",
        license=license,
        language=language_codes or None,
        datasets=dataset_ids or None,
        base_model=(base_models[0] if len(base_models) == 1 else base_models) or None,
        tags=tags,
        metrics=sorted({result.metric_type for result in results}) or None,
        eval_results=results or None,
        model_name=(model_name or (repo_id.split("/")[-1] if repo_id else "valle")) if results else None,
    )

    body = _render_template(
        TEMPLATE_PATH.read_text(encoding="utf-8"),
        {
            "title": model_name or "VALL-E",
            "generated_marker": f"valle-model-card given={','.join(given)} digest=",
            "status_note": _status_note(dataset_ids, training, results, base_models, texts),
            "about": f"## This checkpoint\n\n{texts['about']}" if texts["about"] else "",
            "architecture_rows": _architecture_rows(config_values, num_parameters, language_codes),
            "license": license,
            "base_model_line": _base_model_line(base_models, texts["base_model_description"]),
            "repo_id": repo_id or REPO_ID_PLACEHOLDER,
            "training_data": _training_data_section(dataset_ids, texts["data_description"]),
            "training_recipe": _training_recipe_section(training),
            "evaluation": _evaluation_section(results, texts["results_markdown"]),
        },
    )
    card = ModelCard(f"---\n{card_data.to_yaml()}\n---\n\n{body}")
    return _with_digest(card)


def write_model_card(
    save_directory: str | Path,
    *,
    overwrite: bool = False,
    **card_kwargs: Any,
) -> Path:
    """Write ``save_directory/README.md`` from ``build_model_card(**card_kwargs)``.

    An existing README.md is kept unless ``overwrite=True``, or unless it is a card written
    here that nobody has edited since and the new card is told at least the same kinds of
    facts (so a later config-only save never replaces a card that held datasets or results).
    The parameter count is read from the folder's ``*.safetensors`` headers when not given.

    Returns:
        The path of README.md (written or kept).
    """
    folder = Path(save_directory)
    if not folder.is_dir():
        raise ValueError(
            f"save_directory {str(folder)!r} is not an existing folder; save the model there first "
            "(model.save_pretrained(save_directory)), then write its card."
        )
    readme = folder / "README.md"
    if readme.exists() and not overwrite and not is_unedited_generated_card(readme):
        logger.info("Keeping the existing %s (pass overwrite=True to replace it).", readme)
        return readme
    if card_kwargs.get("num_parameters") is None:
        card_kwargs["num_parameters"] = count_parameters(folder)
    card = build_model_card(**card_kwargs)
    if readme.exists() and not overwrite:
        old_given = _given_of(readme.read_text(encoding="utf-8"))
        if not old_given <= _given_of(str(card)):
            logger.info(
                "Keeping %s: it records %s, which this call does not give (pass overwrite=True to replace it).",
                readme,
                sorted(old_given - _given_of(str(card))),
            )
            return readme
    readme.write_text(str(card), encoding="utf-8")
    return readme


def eval_results_from_metrics(
    metrics: Mapping[str, float],
    *,
    dataset_id: str,
    dataset_name: str,
    dataset_config: str | None = None,
    dataset_split: str | None = None,
    task_name: str = "Zero-shot text-to-speech",
    source_name: str | None = None,
    source_url: str | None = None,
) -> list[EvalResult]:
    """Turn ``{"wer": 4.1, "speaker_similarity": 0.55}`` measured on one dataset into EvalResults.

    Metric names become the model-index ``type``; ``wer`` is a percentage as in the paper.
    """
    if not isinstance(metrics, Mapping) or not metrics:
        raise ValueError(f"metrics must be a non-empty mapping such as {{'wer': 4.1}}, got {metrics!r}.")
    _check_repo_id(dataset_id, "dataset_id", "dataset")
    if not isinstance(dataset_name, str) or not dataset_name.strip():
        raise ValueError(f"dataset_name must be a readable name such as 'LibriSpeech test-clean', got {dataset_name!r}.")
    results = []
    for metric, value in metrics.items():
        if not isinstance(metric, str) or not metric:
            raise ValueError(f"metric names must be non-empty strings, got {metric!r} in metrics.")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"metrics[{metric!r}] must be a number, got {type(value).__name__} {value!r}.")
        results.append(
            EvalResult(
                task_type="text-to-speech",
                task_name=task_name,
                dataset_type=dataset_id,
                dataset_name=dataset_name,
                dataset_config=dataset_config,
                dataset_split=dataset_split,
                metric_type=metric,
                metric_value=float(value),
                source_name=source_name,
                source_url=source_url,
            )
        )
    return results


def count_parameters(folder: str | Path) -> int | None:
    """Number of parameters stored in the folder's ``*.safetensors`` files, or None if there are none.

    Reads only the JSON headers (shapes), never the tensors. Weights stored once and shared
    by several modules (tied embeddings and heads) count once.
    """
    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        return None
    total = 0
    for path in files:
        for name, entry in _safetensors_header(path).items():
            if name == "__metadata__":
                continue
            count = 1
            for size in entry["shape"]:
                count *= int(size)
            total += count
    return total


def is_unedited_generated_card(readme: str | Path) -> bool:
    """True when ``readme`` is a card written by this module and unchanged since."""
    path = Path(readme)
    if not path.is_file():
        return False
    text = path.read_text(encoding="utf-8")
    match = _MARKER_PATTERN.search(text)
    if match is None or match.group(2) is None:
        return False
    stripped = text[: match.start(2)] + text[match.end(2) :]
    return hashlib.sha256(stripped.encode("utf-8")).hexdigest() == match.group(2)


def fill_repo_id(readme: str | Path, repo_id: str) -> bool:
    """Put ``repo_id`` where a generated card shows ``REPO_ID_PLACEHOLDER``; True if the file changed.

    A card that was unedited stays recognisable as unedited (its digest is renewed).
    """
    _check_repo_id(repo_id, "repo_id", "model")
    path = Path(readme)
    text = path.read_text(encoding="utf-8")
    if REPO_ID_PLACEHOLDER not in text:
        return False
    was_unedited = is_unedited_generated_card(path)
    text = text.replace(REPO_ID_PLACEHOLDER, repo_id)
    if was_unedited:
        given = ",".join(sorted(_given_of(text) | {"repo_id"}))
        text = _stamp_digest(_MARKER_PATTERN.sub(f"valle-model-card given={given} digest=", text, count=1))
    path.write_text(text, encoding="utf-8")
    return True


# --------------------------------------------------------------------------------------------
# Argument checking
# --------------------------------------------------------------------------------------------


def _config_as_dict(config: Any) -> dict[str, Any]:
    if config is None:
        return {}
    if isinstance(config, Mapping):
        return dict(config)
    to_dict = getattr(config, "to_dict", None)
    if callable(to_dict):
        values = to_dict()
        if isinstance(values, Mapping):
            return dict(values)
    raise TypeError(
        f"config must be a VallEConfig (or any PreTrainedConfig), a dict from config.to_dict(), or None; "
        f"got {type(config).__name__}."
    )


def _string_list(value: str | Iterable[str] | None, argument: str) -> list[str]:
    if value is None:
        return []
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, Iterable):
        raise TypeError(f"{argument} must be a string or a list of strings, got {type(value).__name__}.")
    result: list[str] = []
    for item in items:
        if not isinstance(item, str) or not item.strip():
            raise ValueError(f"{argument} must hold non-empty strings, got {item!r}.")
        if item not in result:
            result.append(item)
    return result


def _check_repo_id(repo_id: Any, argument: str, kind: str) -> None:
    example = "facebook/encodec_24khz" if kind == "model" else "openslr/librispeech_asr"
    if not isinstance(repo_id, str):
        raise TypeError(f"{argument} must be a Hub {kind} id string such as {example!r}, got {type(repo_id).__name__}.")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise ValueError(
            f"{argument}={repo_id!r} is not a valid Hub {kind} id (like {example!r}): {error}"
        ) from error


def _repo_id_list(value: str | Iterable[str] | None, argument: str, kind: str) -> list[str]:
    ids = _string_list(value, argument)
    for repo_id in ids:
        _check_repo_id(repo_id, argument, kind)
    return ids


_LANGUAGE_CODE = re.compile(r"^[a-z]{2,3}([-_][A-Za-z0-9]{2,8})*$")


def _language_list(languages: str | Iterable[str] | None) -> list[str]:
    codes = _string_list(languages, "languages")
    for code in codes:
        if not _LANGUAGE_CODE.match(code) and code not in ("multilingual",):
            raise ValueError(
                f"languages holds {code!r}, which is not an ISO 639 code; use codes such as 'en', 'zh', 'ja'."
            )
    return codes


def _eval_result_list(eval_results: EvalResult | Iterable[EvalResult] | None) -> list[EvalResult]:
    if eval_results is None:
        return []
    items = [eval_results] if isinstance(eval_results, EvalResult) else eval_results
    if isinstance(items, Mapping) or not isinstance(items, Iterable):
        raise TypeError(
            "eval_results must be huggingface_hub.EvalResult object(s); build them from a "
            "{metric: value} dict with hub_cards.eval_results_from_metrics(metrics, dataset_id=..., dataset_name=...)."
        )
    items = list(items)
    for item in items:
        if not isinstance(item, EvalResult):
            raise TypeError(
                f"eval_results must hold huggingface_hub.EvalResult objects, got {type(item).__name__}; "
                "use hub_cards.eval_results_from_metrics to build them."
            )
    return items


def _training_info_dict(training_info: Mapping[str, Any] | None) -> dict[str, Any]:
    if training_info is None:
        return {}
    if not isinstance(training_info, Mapping):
        raise TypeError(
            f"training_info must be a mapping such as {{'steps': 800000, 'peak learning rate': 5e-4}}, "
            f"got {type(training_info).__name__}."
        )
    return {str(key): value for key, value in training_info.items()}


# --------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------

def _config_int(config: Mapping[str, Any], name: str, fallback: str | None = None) -> int | None:
    """An integer field of the config; `None` in `name` means "same as `fallback`" (the NAR overrides)."""
    value = config.get(name)
    if value is None and fallback is not None:
        value = config.get(fallback)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return None


# (label, AR field, NAR override field); a NAR override of None means "same as the AR".
_DECODER_FIELDS = (
    ("Layers", "num_hidden_layers", "nar_num_hidden_layers"),
    ("Width (hidden size)", "hidden_size", "nar_hidden_size"),
    ("Attention heads", "num_attention_heads", "nar_num_attention_heads"),
    ("Feed-forward size", "intermediate_size", "nar_intermediate_size"),
)

_SHARED_FIELDS = (
    ("Codebooks (EnCodec residual VQ)", "num_codebooks"),
    ("Codes per codebook", "codebook_size"),
    ("Phoneme vocabulary", "vocab_size"),
    ("Language embeddings", "num_languages"),
    ("Audio sampling rate (Hz)", "sampling_rate"),
    ("Codec frames per second", "frame_rate"),
)


def _architecture_rows(config: Mapping[str, Any], num_parameters: int | None, languages: list[str]) -> str:
    rows = ["| | AR decoder (codebook 1) | NAR decoder (other codebooks) |", "|---|---|---|"]
    if not config:
        rows.append("| Configuration | not given to the card writer; see `config.json` | |")
    for label, ar_name, nar_name in _DECODER_FIELDS:
        ar_value, nar_value = _config_int(config, ar_name), _config_int(config, nar_name, ar_name)
        if ar_value is not None or nar_value is not None:
            rows.append(f"| {label} | {_format_count(ar_value)} | {_format_count(nar_value)} |")
    shared = ["| | |", "|---|---|"]
    for label, name in _SHARED_FIELDS:
        value = _config_int(config, name)
        if value is not None and not (name == "num_languages" and value == 0):
            shared.append(f"| {label} | {_format_count(value)} |")
    if num_parameters is not None:
        shared.append(f"| Parameters (both decoders) | {num_parameters:,} ({_short_count(num_parameters)}) |")
    spoken = ", ".join(f"`{code}`" for code in languages) if languages else "not stated"
    shared.append(f"| Language(s) | {spoken} |")
    return "\n".join(rows) + "\n\n" + "\n".join(shared)


def _format_count(value: int | None) -> str:
    return "?" if value is None else f"{value:,}"


def _short_count(count: int) -> str:
    for limit, suffix in ((10**9, "B"), (10**6, "M"), (10**3, "k")):
        if count >= limit:
            return f"{count / limit:.1f}{suffix}"
    return str(count)


def _optional_markdown(value: Any, argument: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"{argument} must be a Markdown string or None, got {type(value).__name__}.")
    return value.strip() or None


def _base_model_line(base_models: list[str], description: str | None = None) -> str:
    if not base_models:
        return f"- **Base model:** {description}" if description else "- **Base model:** none recorded."
    links = ", ".join(f"[`{repo_id}`](https://huggingface.co/{repo_id})" for repo_id in base_models)
    return f"- **Base model:** {links} (this checkpoint was fine-tuned or converted from it)."


def _status_note(datasets: list[str], training: dict, results: list, base_models: list[str], texts: dict) -> str:
    if datasets or training or results or base_models or any(texts.values()):
        return ""
    return (
        "> **Note:** this card was written when the checkpoint was saved, with nothing known but its\n"
        "> configuration. It does not say what, or whether, the weights were trained on: ask the\n"
        "> publisher, and listen to the output before relying on it."
    )


def _training_data_section(datasets: list[str], description: str | None = None) -> str:
    if datasets or description:
        lines = [description, ""] if description else []
        if datasets:
            lines += ["Trained on:", ""]
            lines += [f"- [`{dataset}`](https://huggingface.co/datasets/{dataset})" for dataset in datasets]
        return "\n".join(lines).strip()
    return (
        "Not recorded for this checkpoint.\n\n"
        "For reference, the paper trained on LibriLight (60k hours, about 7,000 speakers,\n"
        "transcribed by an ASR model); open reproductions often use LibriTTS (555 hours)."
    )


def _training_recipe_section(training: dict[str, Any]) -> str:
    if training:
        rows = ["| setting | value |", "|---|---|"]
        rows += [f"| {_table_cell(key)} | {_table_cell(_format_value(value))} |" for key, value in training.items()]
        return "\n".join(rows)
    return (
        "Not recorded for this checkpoint.\n\n"
        "For reference, the paper's recipe: random 10-20 s crops, about 6k acoustic tokens per GPU\n"
        "per batch on 16 V100 GPUs, 800k steps, AdamW with the learning rate warmed up over 32k\n"
        "updates to 5e-4 and then decayed linearly. The AR model learns next-token prediction of\n"
        "codebook 1; each NAR step trains one randomly drawn codebook 2-8."
    )


def _evaluation_section(results: list[EvalResult], markdown: str | None = None) -> str:
    if not results:
        return markdown or "No evaluation results were given for this checkpoint, so none are reported here."
    rows = [markdown, ""] if markdown else []
    rows += ["Measured on this checkpoint:", "", "| dataset | split | metric | value |", "|---|---|---|---|"]
    for result in results:
        dataset = result.dataset_name
        if result.dataset_config:
            dataset = f"{dataset} ({result.dataset_config})"
        rows.append(
            f"| {_table_cell(dataset)} | {_table_cell(result.dataset_split or '')} | "
            f"{_table_cell(result.metric_name or result.metric_type)} | {_table_cell(_format_value(result.metric_value))} |"
        )
    return "\n".join(rows)


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, default=str)
    return str(value)


def _table_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


def _render_template(template: str, values: Mapping[str, str]) -> str:
    used = set()

    def substitute(match: re.Match) -> str:
        name = match.group(1)
        if name not in values:
            raise KeyError(f"the card template uses {{{{{name}}}}}, which build_model_card does not fill")
        used.add(name)
        return values[name]

    text = _PLACEHOLDER_PATTERN.sub(substitute, template)
    unused = set(values) - used
    if unused:
        raise KeyError(f"the card template lacks the placeholders {sorted(unused)}")
    # An empty section value leaves blank lines behind; keep at most one.
    return re.sub(r"\n{3,}", "\n\n", text)


def _stamp_digest(text: str) -> str:
    """Fill the empty `digest=` of the marker with the sha256 of the text as it stands."""
    match = _MARKER_PATTERN.search(text)
    index = match.end()
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return text[:index] + digest + text[index:]


def _given_of(text: str) -> set[str]:
    match = _MARKER_PATTERN.search(text)
    return {name for name in match.group(1).split(",") if name} if match else set()


def _with_digest(card: ModelCard) -> ModelCard:
    # The digest covers the README exactly as it will be written, metadata included.
    return ModelCard(_stamp_digest(str(card)))


def _safetensors_header(path: Path) -> dict[str, Any]:
    # A safetensors file starts with the byte length of its JSON header (u64, little-endian).
    with open(path, "rb") as handle:
        prefix = handle.read(8)
        if len(prefix) != 8:
            raise ValueError(f"{path} is not a safetensors file (shorter than its 8-byte header length).")
        (length,) = struct.unpack("<Q", prefix)
        raw = handle.read(length)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} has an unreadable safetensors header ({error}); save the model again.") from error
    if not isinstance(header, dict):
        raise ValueError(f"{path} has a malformed safetensors header; save the model again.")
    return header
