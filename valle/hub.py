"""Sharing a saved VALL-E folder on the Hugging Face Hub as a complete, self-contained repository.

A repository is usable by someone who never installed this project when it holds:

- the weights as safetensors (never pickles: loading a pickle runs arbitrary code),
- ``config.json`` with an ``auto_map`` naming the classes to load, and ``generation_config.json``,
- the processor's files (phoneme vocabulary, processor and tokenizer configs),
- the three code files ``configuration_valle.py``, ``modeling_valle.py``, ``processing_valle.py``
  that ``trust_remote_code=True`` downloads and imports,
- a model card (README.md).

``plan_upload`` decides that file set without touching anything, ``collect_upload_files`` also
completes the folder (copies missing code files from the installed modules, writes a card),
``push_folder`` uploads exactly that set. The ``valle push`` command is a thin layer over them.
"""

from __future__ import annotations

import glob
import importlib
import importlib.util
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CODE_MODULES = ("configuration_valle", "modeling_valle", "processing_valle")
CODE_FILES = tuple(f"{module}.py" for module in CODE_MODULES)

CONFIG_FILE = "config.json"
GENERATION_CONFIG_FILE = "generation_config.json"
CARD_FILE = "README.md"
SAFETENSORS_INDEX_SUFFIX = ".safetensors.index.json"

# Files that `ProcessorMixin.save_pretrained` and tokenizers write. The tokenizer's own vocabulary
# file names (`vocab_files_names`) are added from the installed processor module when it exists.
PROCESSOR_FILES = (
    "processor_config.json",
    "preprocessor_config.json",
    "feature_extractor_config.json",
    "tokenizer_config.json",
    "tokenizer.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "chat_template.jinja",
    "chat_template.json",
)

# Weight formats that are pickles (or unknown containers) and must not be shared as they are.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")

_SAVE_FIX = (
    "load it and save it again with this project installed, e.g. "
    "`VallEForConditionalCodecGeneration.from_pretrained(folder).save_pretrained(folder)`"
)


class HubUploadError(ValueError):
    """A folder (or repository id) that cannot become a self-contained Hub repository; says what to fix."""


@dataclass
class UploadPlan:
    """What ``push_folder`` would upload from ``folder``, decided without changing anything.

    Attributes:
        folder: the folder to upload.
        files: the repository's files, relative to ``folder``, sorted. Includes the files
            that ``apply`` adds (``code_to_copy`` and, when ``write_card``, README.md).
        code_to_copy: code file name -> installed module file, for code files the folder lacks.
        write_card: whether README.md is missing and will be written.
        left_out: top-level entries of ``folder`` that are not uploaded (sub-folders end in ``/``).
        warnings: things a user should know that do not stop the upload.
    """

    folder: Path
    files: list[str]
    code_to_copy: dict[str, Path] = field(default_factory=dict)
    write_card: bool = False
    left_out: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def apply(self) -> list[str]:
        """Copy the missing code files and write the card; return ``files``, which then all exist."""
        for name, source in self.code_to_copy.items():
            target = self.folder / name
            if not target.exists():
                shutil.copyfile(source, target)
        if self.write_card and not (self.folder / CARD_FILE).exists():
            from hub_cards import write_model_card

            config = json.loads((self.folder / CONFIG_FILE).read_text(encoding="utf-8"))
            write_model_card(self.folder, config=config)
        missing = [name for name in self.files if not (self.folder / name).is_file()]
        if missing:
            raise HubUploadError(f"{self.folder}: expected files are still missing after completing it: {missing}.")
        return list(self.files)


def plan_upload(folder: str | Path) -> UploadPlan:
    """Decide which files of ``folder`` form the Hub repository; raise ``HubUploadError`` listing every problem."""
    root = Path(folder)
    if not root.is_dir():
        raise HubUploadError(
            f"{str(root)!r} is not a folder. Pass the folder written by `model.save_pretrained(folder)` "
            "(and `processor.save_pretrained(folder)`)."
        )
    present = sorted(entry.name for entry in root.iterdir() if entry.is_file())
    problems: list[str] = []
    warnings: list[str] = []
    chosen: set[str] = set()

    # Weights.
    safetensors = [name for name in present if name.endswith(".safetensors")]
    indexes = [name for name in present if name.endswith(SAFETENSORS_INDEX_SUFFIX)]
    pickles = [name for name in present if name.endswith(PICKLE_SUFFIXES)]
    if not safetensors:
        if pickles:
            problems.append(
                f"the weights are only in pickle files ({', '.join(pickles)}); the Hub repository must hold "
                f"safetensors. For a Transformers folder, {_SAVE_FIX} (safetensors is the default); for a "
                "lifeiteng/vall-e or VALL-E X checkpoint, run `valle convert` first."
            )
        else:
            problems.append(f"no weights (*.safetensors) found; save the model into it first: `model.save_pretrained({str(root)!r})`.")
    for index in indexes:
        shards = _shards_of_index(root / index, problems)
        missing_shards = sorted(shard for shard in shards if shard not in present)
        if missing_shards:
            problems.append(f"{index} lists weight shards that are not in the folder: {missing_shards}; copy them in or save again.")
        stray = sorted(name for name in safetensors if name not in shards and _index_prefix(index) in name)
        if stray:
            warnings.append(f"{stray} are not listed in {index} and look stale; they are uploaded but never loaded.")
    chosen.update(safetensors, indexes)

    # Configs.
    config = None
    if CONFIG_FILE not in present:
        problems.append(f"{CONFIG_FILE} is missing; save the model with `model.save_pretrained(folder)`, which writes it.")
    else:
        config = _read_json(root / CONFIG_FILE, problems)
        chosen.add(CONFIG_FILE)
    if GENERATION_CONFIG_FILE in present:
        chosen.add(GENERATION_CONFIG_FILE)
    else:
        warnings.append(
            f"{GENERATION_CONFIG_FILE} is missing, so users get Transformers' generic sampling defaults; "
            "save `model.generation_config` into the folder to share VALL-E's."
        )

    # Processor.
    processor_names = _processor_file_names()
    processor_files = [name for name in present if name in processor_names]
    chosen.update(processor_files)
    if "processor_config.json" in processor_files:
        processor_config = _read_json(root / "processor_config.json", problems) or {}
        chosen.update(_embedded_codec_files(root, processor_config, problems))
    if not processor_files:
        warnings.append(
            "no processor files (processor_config.json, tokenizer files): AutoProcessor and pipeline() will not "
            "work from this repository; add them with `processor.save_pretrained(folder)`."
        )

    # Code: the folder's own copies (they match its weights), else the installed modules.
    code_to_copy: dict[str, Path] = {}
    for module, name in zip(CODE_MODULES, CODE_FILES):
        if name in present:
            chosen.add(name)
            continue
        source = _installed_module_file(module)
        if source is not None:
            code_to_copy[name] = source
            chosen.add(name)
    for name in _relative_imports_of(root, [n for n in CODE_FILES if n in present]):
        if name in present:
            chosen.add(name)
        else:
            problems.append(f"the code files import {name!r}, which is neither in the folder nor installed.")

    # auto_map: without it `trust_remote_code=True` has nothing to load.
    code_modules = {Path(name).stem for name in chosen if name.endswith(".py")}
    if config is not None:
        auto_map = config.get("auto_map")
        if not isinstance(auto_map, dict) or "AutoConfig" not in auto_map or not any(
            key.startswith("AutoModel") for key in auto_map
        ):
            problems.append(
                f"{CONFIG_FILE} has no `auto_map` with AutoConfig and an AutoModel class (found {auto_map!r}), so "
                f"`trust_remote_code=True` cannot find the code; {_SAVE_FIX}, which writes it."
            )
        else:
            problems += _check_auto_map(auto_map, CONFIG_FILE, code_modules)
    if processor_files:
        processor_auto_map = None
        for name in ("processor_config.json", "preprocessor_config.json", "tokenizer_config.json"):
            if name in processor_files:
                values = _read_json(root / name, problems) or {}
                candidate = values.get("auto_map")
                if isinstance(candidate, dict) and "AutoProcessor" in candidate:
                    processor_auto_map = candidate
                    problems += _check_auto_map(candidate, name, code_modules)
                    break
        if processor_auto_map is None and not (isinstance(config, dict) and "AutoProcessor" in (config.get("auto_map") or {})):
            problems.append(
                "the processor files have no `auto_map` entry for AutoProcessor, so "
                "`AutoProcessor.from_pretrained(repo, trust_remote_code=True)` cannot find the code; save the "
                "processor again with this project installed: `VallEProcessor.from_pretrained(folder).save_pretrained(folder)`."
            )

    if problems:
        listing = "\n".join(f"  - {problem}" for problem in problems)
        raise HubUploadError(f"{root} cannot be shared as a Hub repository yet:\n{listing}")

    write_card = CARD_FILE not in present
    chosen.add(CARD_FILE)
    left_out = sorted(name for name in present if name not in chosen and not name.startswith("."))
    uploaded_dirs = {name.split("/", 1)[0] for name in chosen if "/" in name}
    left_out += sorted(
        f"{entry.name}/"
        for entry in root.iterdir()
        if entry.is_dir() and not entry.name.startswith(".") and entry.name not in uploaded_dirs
    )
    return UploadPlan(
        folder=root,
        files=sorted(chosen),
        code_to_copy=code_to_copy,
        write_card=write_card,
        left_out=left_out,
        warnings=warnings,
    )


def collect_upload_files(folder: str | Path) -> list[str]:
    """The exact files (relative to ``folder``) of the Hub repository, after completing the folder.

    Missing code files are copied in from the installed modules and a model card is written
    when README.md is missing. Raises ``HubUploadError`` naming each problem and its fix.
    """
    return plan_upload(folder).apply()


def push_folder(
    folder: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    api: Any = None,
):
    """Upload the self-contained file set of ``folder`` to the Hub model repository ``repo_id``.

    Creates the repository if needed (``private`` applies only then) and the branch
    ``revision`` if given, fills the repository id into a generated card, and uploads exactly
    ``collect_upload_files(folder)``; other files in the folder stay local. Files already in
    the repository that are not in the set are left as they are.

    Returns:
        The ``CommitInfo`` of the upload.
    """
    validate_hub_repo_id(repo_id)
    files = collect_upload_files(folder)
    from hub_cards import fill_repo_id

    fill_repo_id(Path(folder) / CARD_FILE, repo_id)
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi()
    api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    if revision is not None:
        api.create_branch(repo_id, branch=revision, repo_type="model", exist_ok=True)
    return api.upload_folder(
        repo_id=repo_id,
        repo_type="model",
        folder_path=str(folder),
        allow_patterns=[glob.escape(name) for name in files],
        revision=revision,
        commit_message=commit_message or "Upload VALL-E model, processor, code and card with `valle push`",
    )


def validate_hub_repo_id(repo_id: str) -> None:
    """Raise ``HubUploadError`` unless ``repo_id`` looks like ``user-or-org/model-name``."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    if not isinstance(repo_id, str) or repo_id.count("/") != 1:
        raise HubUploadError(f"repository id {repo_id!r} must be 'user-or-org/model-name', e.g. 'alice/valle-libritts'.")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise HubUploadError(f"repository id {repo_id!r} is not valid: {error}") from error


# --------------------------------------------------------------------------------------------


def _read_json(path: Path, problems: list[str]) -> dict | None:
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        problems.append(f"{path.name} is not valid JSON ({error}); save it again.")
        return None
    if not isinstance(values, dict):
        problems.append(f"{path.name} must hold a JSON object; save it again.")
        return None
    return values


def _shards_of_index(index: Path, problems: list[str]) -> set[str]:
    values = _read_json(index, problems)
    if values is None:
        return set()
    weight_map = values.get("weight_map")
    if not isinstance(weight_map, dict):
        problems.append(f"{index.name} has no `weight_map`; save the model again.")
        return set()
    return {str(shard) for shard in weight_map.values()}


def _embedded_codec_files(root: Path, processor_config: dict, problems: list[str]) -> list[str]:
    """The codec files a processor saved inside the folder, or [] when it names a codec on the Hub.

    `VallEProcessor.save_pretrained` writes `codec_name_or_path: null` plus `codec_subfolder` when the
    codec has no Hub id to point at (a local folder, a model built in memory) and saves its weights
    there; those files must travel with the repository. A local path left in the config would not.
    """
    reference = processor_config.get("codec_name_or_path")
    subfolder = processor_config.get("codec_subfolder")
    if reference is None and subfolder:
        codec_dir = root / str(subfolder)
        if not codec_dir.is_dir():
            problems.append(
                f"processor_config.json says the codec's weights are in {subfolder}/, which is not in the folder; "
                "save the processor again with `processor.save_pretrained(folder)`."
            )
            return []
        files = sorted(path.relative_to(root).as_posix() for path in codec_dir.rglob("*") if path.is_file())
        weights = [name for name in files if name.endswith(".safetensors")]
        if f"{subfolder}/config.json" not in files or not weights:
            problems.append(
                f"the codec in {subfolder}/ needs config.json and *.safetensors weights (found {files}); save the "
                "processor again with `processor.save_pretrained(folder)`."
            )
        return [name for name in files if not name.endswith(PICKLE_SUFFIXES) and not Path(name).name.startswith(".")]
    if isinstance(reference, str) and not reference.startswith("encodec:"):
        looks_local = Path(reference).is_absolute() or reference.startswith((".", "~")) or Path(reference).exists()
        if looks_local:
            problems.append(
                f"processor_config.json points at the codec by the local path {reference!r}, which does not exist on "
                "other machines; save the processor again (it then embeds a local codec in codec/) or use the Hub id "
                "'facebook/encodec_24khz'."
            )
    return []


def _index_prefix(index_name: str) -> str:
    # "model.safetensors.index.json" -> "model": the shards of that index start with it.
    return index_name[: -len(SAFETENSORS_INDEX_SUFFIX)]


def _installed_module_file(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin)


def _processor_file_names() -> set[str]:
    names = set(PROCESSOR_FILES)
    if importlib.util.find_spec("processing_valle") is not None:
        processing = importlib.import_module("processing_valle")
        for obj in vars(processing).values():
            vocab_files = getattr(obj, "vocab_files_names", None) if isinstance(obj, type) else None
            if isinstance(vocab_files, dict):
                names.update(str(name) for name in vocab_files.values())
    return names


def _relative_imports_of(root: Path, code_files: list[str]) -> list[str]:
    """Files that the folder's code files import relatively (recursively), as transformers will look for them."""
    if not code_files:
        return []
    from transformers.dynamic_module_utils import get_relative_import_files

    needed: set[str] = set()
    for name in code_files:
        needed.update(Path(path).name for path in get_relative_import_files(root / name))
    return sorted(needed)


def _check_auto_map(auto_map: dict, file_name: str, code_modules: set[str]) -> list[str]:
    problems = []
    for auto_class, reference in auto_map.items():
        references = reference if isinstance(reference, (list, tuple)) else [reference]
        for ref in references:
            if ref is None:
                continue
            if not isinstance(ref, str) or "." not in ref:
                problems.append(f"{file_name}: auto_map[{auto_class!r}] = {ref!r} is not 'module.ClassName'.")
                continue
            if "--" in ref:  # code that lives in another Hub repository
                continue
            module = ref.rsplit(".", 1)[0]
            if module not in code_modules:
                problems.append(
                    f"{file_name}: auto_map[{auto_class!r}] points at {module}.py, which is neither in the folder "
                    "nor installed; install the project (pip install -e .) or copy the file in."
                )
    return problems
