"""Model cards (hub_cards) and sharing on the Hub (valle.hub, `valle push`), all offline.

Uploads are checked by the exact file set and by a mocked `HfApi`; the remote-code test copies
that file set alone into a temporary folder and loads it in a Python process that cannot
import this project.
"""

from __future__ import annotations

import json
from pathlib import Path
from unittest import mock

import pytest
import torch
from huggingface_hub import ModelCard
from safetensors.torch import save_file

import hub_cards
from configuration_valle import VallEConfig
from hub_cards import (
    REPO_ID_PLACEHOLDER,
    build_model_card,
    count_parameters,
    eval_results_from_metrics,
    fill_repo_id,
    is_unedited_generated_card,
    write_model_card,
)
from tests.utils import tiny_valle_config
from valle.cli import main as valle_main
from valle.hub import CODE_FILES, HubUploadError, collect_upload_files, plan_upload, push_folder


def tiny_config(**overrides) -> VallEConfig:
    """Sizes distinct from each other (and a NAR depth of its own) so the card's architecture table is checkable."""
    values = dict(vocab_size=37, hidden_size=48, num_hidden_layers=3, num_attention_heads=6, intermediate_size=96,
                  nar_num_hidden_layers=2, codebook_size=24)
    values.update(overrides)
    return tiny_valle_config(**values)


def librispeech_results():
    return eval_results_from_metrics(
        {"wer": 4.25, "speaker_similarity": 0.512},
        dataset_id="openslr/librispeech_asr",
        dataset_name="LibriSpeech test-clean",
        dataset_config="clean",
        dataset_split="test",
    )


# ------------------------------------------------------------------------------------------
# Cards
# ------------------------------------------------------------------------------------------


def test_card_metadata_is_what_the_hub_needs_and_nothing_unasked():
    card = build_model_card(tiny_config())
    data = ModelCard(str(card)).data.to_dict()
    assert data["pipeline_tag"] == "text-to-speech"
    assert data["library_name"] == "transformers"
    assert data["license"] == "apache-2.0"
    assert {"valle", "text-to-speech", "voice-cloning"} <= set(data["tags"])
    # Nothing was given about data, languages, origin or results: the card must not invent them.
    for key in ("language", "datasets", "base_model", "model-index", "metrics"):
        assert key not in data


def test_card_metadata_carries_everything_given():
    card = build_model_card(
        tiny_config(),
        repo_id="alice/valle-tiny",
        base_model="bob/valle-base",
        datasets=["mythicinfinity/libritts", "openslr/librispeech_asr"],
        languages="en",
        license="cc-by-4.0",
        eval_results=librispeech_results(),
        extra_tags=["libritts", "valle"],
    )
    data = ModelCard(str(card)).data
    assert data.base_model == "bob/valle-base"
    assert data.datasets == ["mythicinfinity/libritts", "openslr/librispeech_asr"]
    assert data.language == ["en"]
    assert data.license == "cc-by-4.0"
    assert data.tags.count("valle") == 1 and "libritts" in data.tags
    values = {result.metric_type: result.metric_value for result in data.eval_results}
    assert values == {"wer": 4.25, "speaker_similarity": 0.512}
    assert {result.dataset_type for result in data.eval_results} == {"openslr/librispeech_asr"}
    assert data.model_name == "valle-tiny"
    assert 'repo_id = "alice/valle-tiny"' in card.text and REPO_ID_PLACEHOLDER not in card.text


def test_card_reads_the_architecture_from_the_config():
    text = build_model_card(tiny_config(), num_parameters=123_456).text
    assert "| Layers | 3 | 2 |" in text  # AR 3 layers, NAR override 2
    assert "| Width (hidden size) | 48 | 48 |" in text  # NAR width falls back to the AR's
    assert "| Attention heads | 6 | 6 |" in text
    assert "| Feed-forward size | 96 | 96 |" in text
    assert "| Codebooks (EnCodec residual VQ) | 4 |" in text
    assert "| Codes per codebook | 24 |" in text
    assert "| Phoneme vocabulary | 37 |" in text
    assert "123,456" in text
    # A plain dict (config.json as read from disk) gives the same numbers.
    assert "| Layers | 3 | 2 |" in build_model_card(tiny_config().to_dict()).text


def test_card_without_results_claims_none_and_labels_the_paper_table():
    text = build_model_card(tiny_config()).text
    evaluation = text.split("## Evaluation", 1)[1].split("## Limitations", 1)[0]
    own, paper = evaluation.split("### Reference", 1)
    assert "No evaluation results were given" in own
    assert "|" not in own  # no table of numbers for this checkpoint
    assert "not this model's" in paper and "not this checkpoint" in paper
    assert "| VALL-E | 5.9 | 0.580 |" in paper
    assert "| VALL-E-continual | 3.8 | 0.508 |" in paper
    # Training facts were not given either: the card says so and labels the paper's recipe.
    assert text.count("Not recorded for this checkpoint.") == 2
    assert "> **Note:** this card was written when the checkpoint was saved" in text


def test_card_with_results_shows_exactly_those():
    text = build_model_card(
        tiny_config(), eval_results=librispeech_results(), training_info={"steps": 1200, "peak learning rate": 5e-4}
    ).text
    own = text.split("### This checkpoint", 1)[1].split("### Reference", 1)[0]
    assert "| LibriSpeech test-clean (clean) | test | wer | 4.25 |" in own
    assert "| LibriSpeech test-clean (clean) | test | speaker_similarity | 0.512 |" in own
    assert "| steps | 1200 |" in text and "| peak learning rate | 0.0005 |" in text
    assert "> **Note:**" not in text


def test_card_shows_free_text_facts_that_have_no_hub_id():
    text = build_model_card(
        tiny_config(),
        about="Trained offline on *synthetic* voices; `prompts/` holds four.",
        data_description="A synthetic corpus, 24 h; not on the Hub.",
        base_model_description="an earlier local stage; not on the Hub.",
        results_markdown="| system | CER |\n|---|---|\n| VALL-E | 34.1 |",
    ).text
    about = text.split("## This checkpoint", 1)[1].split("## Model details", 1)[0]
    assert "*synthetic* voices" in about
    assert "- **Base model:** an earlier local stage; not on the Hub." in text
    data = text.split("### Data", 1)[1].split("### Recipe", 1)[0]
    assert "A synthetic corpus, 24 h" in data and "Not recorded" not in data
    own = text.split("### This checkpoint", 1)[1].split("### Reference", 1)[0]
    assert "| VALL-E | 34.1 |" in own and "No evaluation results" not in own
    assert "> **Note:**" not in text  # facts were given
    # Nothing of it goes into the metadata, which only takes Hub ids.
    data = ModelCard(text).data.to_dict()
    for key in ("datasets", "base_model", "model-index"):
        assert key not in data
    with pytest.raises(TypeError, match="about"):
        build_model_card(tiny_config(), about=["not", "text"])


def test_card_has_usage_limitations_and_responsible_use():
    text = build_model_card(tiny_config()).text
    for heading in ("## How to use", "### Pipeline", "### Command line", "## Limitations", "## Responsible use"):
        assert heading in text
    assert text.count("trust_remote_code=True") >= 3
    assert "valle synthesize" in text
    assert "impersonate" in text and "consent" in text
    assert "Do not use it to" in text
    assert "prompt audio can leak" in text.lower() or "audio from the prompt can leak" in text


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        (dict(datasets=["not a dataset id"]), ValueError, "datasets"),
        (dict(base_model=42), TypeError, "base_model"),
        (dict(languages="English"), ValueError, "ISO 639"),
        (dict(eval_results={"wer": 4.0}), TypeError, "eval_results_from_metrics"),
        (dict(training_info=["steps", 3]), TypeError, "training_info"),
        (dict(num_parameters=-1), ValueError, "num_parameters"),
        (dict(license=""), ValueError, "license"),
        (dict(config="config.json"), TypeError, "config"),
    ],
)
def test_card_rejects_bad_arguments_by_name(kwargs, error, words):
    kwargs.setdefault("config", tiny_config())
    config = kwargs.pop("config")
    with pytest.raises(error, match=words):
        build_model_card(config, **kwargs)


def test_eval_results_from_metrics_rejects_non_numbers():
    with pytest.raises(TypeError, match="wer"):
        eval_results_from_metrics({"wer": "low"}, dataset_id="openslr/librispeech_asr", dataset_name="LibriSpeech")
    with pytest.raises(ValueError, match="non-empty"):
        eval_results_from_metrics({}, dataset_id="openslr/librispeech_asr", dataset_name="LibriSpeech")


def test_write_model_card_keeps_a_readme_written_by_a_person(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# My own card\n")
    assert write_model_card(tmp_path, config=tiny_config()) == readme
    assert readme.read_text() == "# My own card\n"
    write_model_card(tmp_path, config=tiny_config(), overwrite=True)
    assert "## Responsible use" in readme.read_text()


def test_write_model_card_upgrades_only_an_unedited_generated_card(tmp_path):
    readme = write_model_card(tmp_path, config=tiny_config())
    assert is_unedited_generated_card(readme)
    # A later call that knows more (training, conversion) replaces the config-only card ...
    write_model_card(tmp_path, config=tiny_config(), datasets="mythicinfinity/libritts")
    assert "mythicinfinity/libritts" in readme.read_text()
    # ... and a later config-only save (model.save_pretrained) does not take that back.
    write_model_card(tmp_path, config=tiny_config())
    assert "mythicinfinity/libritts" in readme.read_text()
    # ... but once someone edits the card, it is theirs.
    readme.write_text(readme.read_text().replace("# VALL-E", "# VALL-E, tuned by Alice"))
    assert not is_unedited_generated_card(readme)
    write_model_card(tmp_path, config=tiny_config(), languages="fr")
    assert "tuned by Alice" in readme.read_text() and "`fr`" not in readme.read_text()


def test_write_model_card_counts_parameters_from_the_safetensors_headers(tmp_path):
    save_file({"a": torch.zeros(3, 4), "b": torch.zeros(5)}, tmp_path / "model-00001-of-00002.safetensors")
    save_file({"c": torch.zeros(2, 2, 2)}, tmp_path / "model-00002-of-00002.safetensors")
    assert count_parameters(tmp_path) == 12 + 5 + 8
    assert count_parameters(tmp_path / "nothing-here") is None
    text = write_model_card(tmp_path, config=tiny_config()).read_text()
    assert "| Parameters (both decoders) | 25 (25) |" in text
    with pytest.raises(ValueError, match="save_directory"):
        write_model_card(tmp_path / "missing", config=tiny_config())


def test_fill_repo_id_keeps_a_generated_card_recognisable(tmp_path):
    readme = write_model_card(tmp_path, config=tiny_config())
    assert fill_repo_id(readme, "alice/valle-tiny")
    text = readme.read_text()
    assert REPO_ID_PLACEHOLDER not in text and text.count("alice/valle-tiny") >= 3
    assert is_unedited_generated_card(readme)
    assert not fill_repo_id(readme, "alice/valle-tiny")  # nothing left to fill


def test_template_ships_with_the_package():
    assert hub_cards.TEMPLATE_PATH.is_file()
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["hub_cards"]
    assert any(Path(hub_cards.TEMPLATE_PATH.name).match(pattern) for pattern in patterns)


# ------------------------------------------------------------------------------------------
# The Hub file set
# ------------------------------------------------------------------------------------------

MODEL_AUTO_MAP = {
    "AutoConfig": "configuration_valle.VallEConfig",
    "AutoModel": "modeling_valle.VallEForConditionalCodecGeneration",
}


def make_saved_folder(folder: Path, *, code_files=CODE_FILES) -> Path:
    """A folder shaped like model.save_pretrained + processor.save_pretrained, plus training leftovers."""
    folder.mkdir(parents=True, exist_ok=True)
    config = tiny_config().to_dict()
    config["auto_map"] = dict(MODEL_AUTO_MAP)
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "generation_config.json").write_text(json.dumps({"do_sample": True, "top_k": 50}))
    save_file({"weight": torch.zeros(4, 8)}, folder / "model.safetensors")
    (folder / "processor_config.json").write_text(
        json.dumps({"processor_class": "VallEProcessor", "auto_map": {"AutoProcessor": "processing_valle.VallEProcessor"}})
    )
    (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "VallEPhonemeTokenizer"}))
    (folder / "vocab.json").write_text(json.dumps({"<pad>": 0}))
    for name in code_files:
        (folder / name).write_text("# stand-in for the model code\n")
    # Training leftovers that must stay local.
    torch.save({"step": 1}, folder / "optimizer.pt")
    (folder / "trainer_state.json").write_text("{}")
    (folder / "pytorch_model.bin").write_bytes(b"pickle")
    (folder / "runs").mkdir()
    (folder / "runs" / "events.out").write_text("log")
    return folder


EXPECTED_FILES = sorted(
    [
        "README.md",
        "config.json",
        "configuration_valle.py",
        "generation_config.json",
        "model.safetensors",
        "modeling_valle.py",
        "processing_valle.py",
        "processor_config.json",
        "tokenizer_config.json",
        "vocab.json",
    ]
)


def test_collect_upload_files_is_exactly_the_self_contained_set(tmp_path):
    folder = make_saved_folder(tmp_path / "model")
    plan = plan_upload(folder)
    assert plan.files == EXPECTED_FILES
    assert plan.write_card and not (folder / "README.md").exists()  # planning changes nothing
    assert plan.left_out == ["optimizer.pt", "pytorch_model.bin", "trainer_state.json", "runs/"]
    assert collect_upload_files(folder) == EXPECTED_FILES
    card = ModelCard.load(folder / "README.md")
    assert card.data.pipeline_tag == "text-to-speech"
    assert "| Phoneme vocabulary | 37 |" in card.text  # filled from the folder's config.json


def test_missing_code_files_are_copied_from_the_installed_modules(tmp_path):
    import configuration_valle

    folder = make_saved_folder(tmp_path / "model", code_files=("modeling_valle.py", "processing_valle.py"))
    plan = plan_upload(folder)
    assert plan.code_to_copy == {"configuration_valle.py": Path(configuration_valle.__file__)}
    assert "configuration_valle.py" in plan.files
    plan.apply()
    assert (folder / "configuration_valle.py").read_bytes() == Path(configuration_valle.__file__).read_bytes()
    # A code file the folder already has is kept as it is (it matches these weights).
    assert (folder / "modeling_valle.py").read_text() == "# stand-in for the model code\n"


def _problems_of(folder: Path) -> str:
    with pytest.raises(HubUploadError) as caught:
        plan_upload(folder)
    return str(caught.value)


def test_upload_validation_names_each_problem_and_its_fix(tmp_path):
    no_weights = make_saved_folder(tmp_path / "no_weights")
    (no_weights / "model.safetensors").unlink()
    (no_weights / "pytorch_model.bin").unlink()
    (no_weights / "optimizer.pt").unlink()
    assert "no weights (*.safetensors)" in _problems_of(no_weights)

    pickle_only = make_saved_folder(tmp_path / "pickle_only")
    (pickle_only / "model.safetensors").unlink()
    message = _problems_of(pickle_only)
    assert "pickle" in message and "pytorch_model.bin" in message and "save_pretrained" in message

    no_config = make_saved_folder(tmp_path / "no_config")
    (no_config / "config.json").unlink()
    assert "config.json is missing" in _problems_of(no_config)

    no_auto_map = make_saved_folder(tmp_path / "no_auto_map")
    config = json.loads((no_auto_map / "config.json").read_text())
    del config["auto_map"]
    (no_auto_map / "config.json").write_text(json.dumps(config))
    message = _problems_of(no_auto_map)
    assert "auto_map" in message and "trust_remote_code" in message and "save_pretrained(folder)" in message

    no_processor_map = make_saved_folder(tmp_path / "no_processor_map")
    (no_processor_map / "processor_config.json").write_text(json.dumps({"processor_class": "VallEProcessor"}))
    assert "AutoProcessor" in _problems_of(no_processor_map)

    assert "not a folder" in _problems_of(tmp_path / "nowhere")


def test_sharded_weights_need_every_shard_of_the_index(tmp_path):
    folder = make_saved_folder(tmp_path / "model")
    (folder / "model.safetensors").unlink()
    index = {"metadata": {}, "weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    save_file({"a": torch.zeros(2)}, folder / "model-00001-of-00002.safetensors")
    assert "model-00002-of-00002.safetensors" in _problems_of(folder)
    save_file({"b": torch.zeros(2)}, folder / "model-00002-of-00002.safetensors")
    files = plan_upload(folder).files
    assert {"model.safetensors.index.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"} <= set(files)


# ------------------------------------------------------------------------------------------
# Pushing (HfApi mocked: no network)
# ------------------------------------------------------------------------------------------


def test_push_folder_creates_the_repo_and_uploads_exactly_the_file_set(tmp_path):
    folder = make_saved_folder(tmp_path / "model")
    api = mock.Mock()
    push_folder(folder, "alice/valle-tiny", private=True, revision="v1", commit_message="first", api=api)
    api.create_repo.assert_called_once_with("alice/valle-tiny", repo_type="model", private=True, exist_ok=True)
    api.create_branch.assert_called_once_with("alice/valle-tiny", branch="v1", repo_type="model", exist_ok=True)
    api.upload_folder.assert_called_once_with(
        repo_id="alice/valle-tiny",
        repo_type="model",
        folder_path=str(folder),
        allow_patterns=EXPECTED_FILES,
        revision="v1",
        commit_message="first",
    )
    # The card written on the way names the repository in its usage snippets.
    assert 'repo_id = "alice/valle-tiny"' in (folder / "README.md").read_text()


def test_push_folder_rejects_a_bad_repo_id_before_touching_anything(tmp_path):
    folder = make_saved_folder(tmp_path / "model")
    api = mock.Mock()
    with pytest.raises(HubUploadError, match="user-or-org/model-name"):
        push_folder(folder, "valle-tiny", api=api)
    assert api.mock_calls == [] and not (folder / "README.md").exists()


def test_cli_dry_run_lists_the_files_and_changes_nothing(tmp_path, capsys):
    folder = make_saved_folder(tmp_path / "model", code_files=("modeling_valle.py", "processing_valle.py"))
    before = sorted(path.name for path in folder.iterdir())
    with mock.patch("huggingface_hub.HfApi") as api_class:
        assert valle_main(["push", str(folder), "alice/valle-tiny", "--dry-run"]) == 0
    api_class.assert_not_called()
    assert sorted(path.name for path in folder.iterdir()) == before
    out = capsys.readouterr().out
    listed = [line.split()[0] for line in out.splitlines() if line.startswith("  ")]
    assert listed == EXPECTED_FILES
    assert "README.md  (model card written first)" in out
    assert "configuration_valle.py  (copied in first from" in out
    assert "Left out (stay local): optimizer.pt, pytorch_model.bin, trainer_state.json, runs/" in out


def test_cli_push_uploads_with_the_given_options(tmp_path, capsys):
    folder = make_saved_folder(tmp_path / "model")
    with mock.patch("huggingface_hub.HfApi") as api_class:
        api_class.return_value.upload_folder.return_value = mock.Mock(commit_url="https://hf.co/alice/valle-tiny/commit/1")
        assert valle_main(["push", str(folder), "alice/valle-tiny", "--private", "--commit-message", "hello"]) == 0
    api = api_class.return_value
    api.create_repo.assert_called_once_with("alice/valle-tiny", repo_type="model", private=True, exist_ok=True)
    api.create_branch.assert_not_called()
    kwargs = api.upload_folder.call_args.kwargs
    assert kwargs["allow_patterns"] == EXPECTED_FILES and kwargs["revision"] is None and kwargs["commit_message"] == "hello"
    assert "https://hf.co/alice/valle-tiny/commit/1" in capsys.readouterr().out


def test_cli_push_reports_folder_problems_without_a_traceback(tmp_path, capsys):
    folder = make_saved_folder(tmp_path / "model")
    (folder / "config.json").unlink()
    with mock.patch("huggingface_hub.HfApi") as api_class:
        assert valle_main(["push", str(folder), "alice/valle-tiny"]) == 2
    api_class.assert_not_called()
    assert "config.json is missing" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------
# The uploaded file set alone loads with trust_remote_code=True where the project is not installed
# ------------------------------------------------------------------------------------------

# The project is installed editable: a .pth file in site-packages installs an import finder that
# maps `modeling_valle`, `valle`, ... to this repository. The child below runs with `-I` (no
# PYTHON* variables, no user site, no script or working directory on sys.path) and `-S` (the
# `site` module is not run, so no .pth file is processed and that finder never exists), then puts
# the venv's site-packages on sys.path by hand: torch, transformers etc. import as usual, this
# project does not. It checks that before loading anything. The cwd is a temporary folder and
# HF_MODULES_CACHE a fresh one, so the classes can only come from the copied repository files.
REMOTE_CHILD = r"""
import importlib, json, sys
sys.path.append(SITE_PACKAGES)
for name in ("configuration_valle", "modeling_valle", "processing_valle", "valle", "hub_cards"):
    try:
        importlib.import_module(name)
    except ModuleNotFoundError:
        continue
    raise SystemExit(f"isolation failed: {name} is importable in the child")

import numpy as np
import torch
from transformers import AutoModel, AutoModelForTextToWaveform, AutoProcessor

result = {}
model = AutoModel.from_pretrained(REPO, trust_remote_code=True).eval()
result["model_module"] = type(model).__module__
result["tts_class"] = type(AutoModelForTextToWaveform.from_pretrained(REPO, trust_remote_code=True)).__name__
if WITH_PROCESSOR:
    processor = AutoProcessor.from_pretrained(REPO, trust_remote_code=True)
    result["processor_module"] = type(processor).__module__
    prompt = np.random.default_rng(0).uniform(-0.5, 0.5, 4800).astype(np.float32)
    inputs = processor(text="a b c d", prompt_audio=prompt, sampling_rate=24000, prompt_text="e f")
    codes = model.generate(**inputs, do_sample=False, max_new_tokens=6)
    result["waveform_samples"] = int(processor.batch_decode(codes)[0].shape[0])
    # The pipeline as the model card shows it: the prompt goes through `preprocess_params`.
    from transformers import pipeline

    tts = pipeline("text-to-speech", model=REPO, trust_remote_code=True)
    speech = tts(
        "a b c d",
        preprocess_params={"prompt_audio": prompt, "sampling_rate": 24000, "prompt_text": "e f"},
        generate_kwargs={"do_sample": False, "max_new_tokens": 6},
    )
    result["pipeline_samples"] = int(speech["audio"].shape[0])
    result["pipeline_rate"] = speech["sampling_rate"]
    # The model card's own Python and pipeline snippets, run as a reader would (prompt.wav is in the cwd).
    # They sample, and a random tiny model may sample end-of-audio first: a fixed seed keeps the check exact.
    torch.manual_seed(0)
    for snippet in CARD_SNIPPETS:
        namespace = {}
        exec(compile(snippet, "README.md snippet", "exec"), namespace)
    result["card_snippet_audio"] = int(namespace["speech"]["audio"].shape[0])
else:
    torch.manual_seed(0)
    inputs = dict(
        input_ids=torch.randint(3, model.config.vocab_size, (1, 6)),
        prompt_codes=torch.randint(0, model.config.codebook_size, (1, 4, model.config.num_codebooks)),
    )
    codes = model.generate(**inputs, do_sample=False, max_new_tokens=6)
result["codes"] = codes.tolist()
print("RESULT " + json.dumps(result))
"""


def _tiny_processor(codebooks: int):
    from transformers import EncodecConfig, EncodecModel

    from processing_valle import VallEPhonemeTokenizer, VallEProcessor

    # 75 frames/s of 16-code (4-bit) codebooks: 0.3 kbps per codebook.
    codec_config = EncodecConfig(
        num_filters=4, upsampling_ratios=[8, 5, 4, 2], codebook_size=16, codebook_dim=8, hidden_size=8,
        num_lstm_layers=1, target_bandwidths=[0.3 * codebooks],
    )
    torch.manual_seed(0)
    codec = EncodecModel(codec_config).eval()
    vocab = {"<pad>": 0, "<bos>": 1, "<eos>": 2, "<unk>": 3, **{symbol: 4 + i for i, symbol in enumerate("abcdefgh_")}}
    tokenizer = VallEPhonemeTokenizer(vocab=vocab, do_phonemize=False)
    return VallEProcessor(tokenizer, codec=codec, codec_bandwidth=0.3 * codebooks)


def test_uploaded_file_set_alone_loads_with_trust_remote_code(tmp_path):
    import importlib.util
    import os
    import shutil
    import subprocess
    import sys
    import sysconfig

    from tests.utils import tiny_valle_model

    with_processor = importlib.util.find_spec("processing_valle") is not None
    folder = tmp_path / "saved"
    model = tiny_valle_model()
    model.save_pretrained(folder)
    if with_processor:
        processor = _tiny_processor(model.config.num_codebooks)
        processor.save_pretrained(folder)
    files = collect_upload_files(folder)
    assert {"model.safetensors", "config.json", "generation_config.json", "README.md", *CODE_FILES} <= set(files)
    if with_processor:
        assert {"processor_config.json", "tokenizer_config.json", "vocab.json", "codec/config.json"} <= set(files)

    repo = tmp_path / "repo"
    for name in files:
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(folder / name, repo / name)

    # What the installed classes produce, for the child to reproduce from the copied files.
    if with_processor:
        import numpy as np

        prompt = np.random.default_rng(0).uniform(-0.5, 0.5, 4800).astype(np.float32)
        inputs = processor(text="a b c d", prompt_audio=prompt, sampling_rate=24000, prompt_text="e f")
    else:
        torch.manual_seed(0)
        inputs = dict(
            input_ids=torch.randint(3, model.config.vocab_size, (1, 6)),
            prompt_codes=torch.randint(0, model.config.codebook_size, (1, 4, model.config.num_codebooks)),
        )
    expected_codes = model.generate(**inputs, do_sample=False, max_new_tokens=6).tolist()

    snippets = []
    if with_processor:
        import soundfile

        soundfile.write(tmp_path / "prompt.wav", prompt, 24000)
        card = (repo / "README.md").read_text()
        for heading in ("### Python", "### Pipeline"):
            block = card.split(heading, 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
            snippets.append(block.replace(REPO_ID_PLACEHOLDER, str(repo)))
    script = (
        f"SITE_PACKAGES = {sysconfig.get_paths()['purelib']!r}\nREPO = {str(repo)!r}\n"
        f"WITH_PROCESSOR = {with_processor!r}\nCARD_SNIPPETS = {snippets!r}\n" + REMOTE_CHILD
    )
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "HF_HOME": str(tmp_path / "hf_home"),
        "HF_MODULES_CACHE": str(tmp_path / "hf_modules"),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    child = subprocess.run(
        [sys.executable, "-I", "-S", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert child.returncode == 0, child.stdout + child.stderr
    result = json.loads(child.stdout.split("RESULT ", 1)[1])
    assert result["model_module"].startswith("transformers_modules.")  # the copied code, not an installed one
    assert result["tts_class"] == "VallEForConditionalCodecGeneration"
    assert result["codes"] == expected_codes  # same weights, same code: same greedy output
    if with_processor:
        assert result["processor_module"].startswith("transformers_modules.")
        assert result["waveform_samples"] > 0
        # Greedy decoding of the same input through the pipeline gives the same audio length.
        assert (result["pipeline_samples"], result["pipeline_rate"]) == (result["waveform_samples"], 24000)
        assert (tmp_path / "out.wav").is_file() and result["card_snippet_audio"] > 0


def test_save_pretrained_writes_a_card_and_keeps_a_richer_one(tmp_path):
    from tests.utils import tiny_valle_model

    model = tiny_valle_model()
    model.save_pretrained(tmp_path)
    card = ModelCard.load(tmp_path / "README.md")
    assert card.data.pipeline_tag == "text-to-speech"
    assert f"| Layers | {model.config.num_hidden_layers} |" in card.text
    assert count_parameters(tmp_path) == model.num_parameters()  # tied weights are stored, and counted, once
    assert f"| Parameters (both decoders) | {count_parameters(tmp_path):,}" in card.text
    # Training then records its data and results; the next checkpoint save keeps them.
    write_model_card(tmp_path, config=model.config, datasets="mythicinfinity/libritts", eval_results=librispeech_results())
    model.save_pretrained(tmp_path)
    data = ModelCard.load(tmp_path / "README.md").data
    assert data.datasets == ["mythicinfinity/libritts"] and data.eval_results[0].metric_value == 4.25
