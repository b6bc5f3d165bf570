"""The built-in model that ships with the package (valle/assets/lab-valle): it loads, and it speaks."""

import json

import numpy as np
import pytest
import soundfile
import torch

from valle.builtin import builtin_model_dir, builtin_prompts
from valle.metrics import edit_distance

SENTENCE = "The old sailor painted a small boat beside the river."


@pytest.fixture(scope="module")
def loaded():
    from valle.synthesis import load_model_and_processor

    return load_model_and_processor(str(builtin_model_dir()))


def test_bundle_is_small_complete_and_loads_as_float32(loaded):
    folder = builtin_model_dir()
    model, processor = loaded
    size = sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())
    assert size < 60e6
    assert next(model.parameters()).dtype == torch.float32
    assert model.config.use_audio_bos  # the AR can start without a prompt (the ablation)
    assert processor.sampling_rate == 24000 and processor.num_codebooks == 8 and processor.codebook_size == 1024
    voices = builtin_prompts()
    assert len(voices) >= 3
    training = json.loads((folder / "lab_bundle.json").read_text())
    assert {voice.name for voice in voices} == {prompt["name"] for prompt in training["prompts"]}
    for voice in voices:
        assert voice.text.strip() and voice.audio_path.is_file()
    assert "VALL-E lab" in (folder / "README.md").read_text()


def test_builtin_model_says_the_text(loaded, tmp_path):
    """Seeded synthesis with the default voice and sampling settings (greedy decoding loops, as the paper
    found), heard by the lab's committed recogniser."""
    from valle.lab.judges import IntelligibilityJudge
    from valle.synthesis import synthesize

    model, processor = loaded
    voice = builtin_prompts()[0]
    torch.manual_seed(0)
    result = synthesize(model, processor, [SENTENCE], [str(tmp_path / "out.wav")], prompt_audio=str(voice.audio_path),
                        prompt_text=voice.text, seed=0)
    waveform, rate = soundfile.read(result.paths[0], dtype="float32")
    assert rate == 24000
    assert 1.0 < len(waveform) / rate < 8.0  # the sentence takes ~3 s; a model that cannot stop hits the cap
    assert float(np.sqrt(np.mean(waveform**2))) > 0.01
    judge = IntelligibilityJudge(str(builtin_model_dir().parents[2] / "lab_artifacts" / "judge"))
    (heard,) = judge.transcribe([waveform], rate)
    reference = SENTENCE.lower().replace(".", "")
    cer = edit_distance(list(reference), list(heard)) / len(reference)
    assert cer < CER_BOUND, f"the built-in model said {heard!r} (CER {cer:.2f})"


# The committed model (stage 6, sampling with its default top-k 10) scores 0.17 / 0.15 / 0.17 on this sentence
# with this voice and seeds 0 / 1 / 2 (this test's synthesis and recogniser, one seed each, run by hand when the
# default changed); with top-k 50 0.17-0.25; stage 4 0.17-0.31, after the first joined-utterance stage
# 0.21-0.23, before it 0.35-0.48, before the 24 h stage 0.75-0.83, all with top-k 50. README "Lab results" has
# the full picture.
CER_BOUND = 0.4


def test_bundle_code_files_are_the_projects():
    """The folder carries the model code for trust_remote_code loading; it must be today's code, not a stale copy
    (rebuild with `valle lab bundle --dir runs/lab`, or copy the three files, after changing them)."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    for name in ("configuration_valle.py", "modeling_valle.py", "processing_valle.py"):
        assert (builtin_model_dir() / name).read_text() == (root / name).read_text(), name
