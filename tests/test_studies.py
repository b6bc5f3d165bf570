"""The studies behind the README's "Joined utterances (stage 3)": their pieces on tiny data and a tiny model."""

import importlib.util
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch

from tests.utils import tiny_valle_model

STUDIES = Path(__file__).resolve().parents[1] / "studies"


def load_study(name):
    spec = importlib.util.spec_from_file_location(f"study_{name}", STUDIES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_joint_loss_pairs_a_prompt_length_utterance_with_a_long_one_of_the_same_speaker():
    study = load_study("joint_loss")
    frames = [400, 200, 100, 350, 250, 320, 180, 90]
    data = datasets.Dataset.from_dict({"speaker": ["a", "a", "a", "b", "b", "c", "d", "d"], "num_frames": frames})
    pairs = study.draw_pairs(data, count=10, seed=1)
    assert sorted(second for _, second in pairs) == [0, 3]  # c has no partner, d no long utterance
    for first, second in pairs:
        assert data[first]["speaker"] == data[second]["speaker"] and first != second
        assert 150 <= frames[first] <= 300 and frames[second] >= 300
    assert study.draw_pairs(data, count=10, seed=1) == pairs


def test_joint_loss_scores_the_last_utterance_and_its_end_token():
    study = load_study("joint_loss")
    model = tiny_valle_model()
    model.config.nar_loss_weight = 0.0
    config = model.config
    rng = np.random.default_rng(0)
    ids = [config.bos_token_id or 1, *rng.integers(3, config.vocab_size, 9).tolist(), config.eos_token_id or 2]
    codes = rng.integers(0, config.codebook_size, (14, config.num_codebooks)).tolist()
    with torch.no_grad():
        values = study.losses(model, ids, codes, target_frames=6)
        whole = study.losses(model, ids, codes, target_frames=13)
    assert values.shape == (7,) and torch.isfinite(values).all()
    assert torch.equal(values, whole[-7:])  # the same positions, whatever the window


def test_valle_mode_prompts_refuses_an_unknown_variant(capsys):
    study = load_study("valle_mode_prompts")
    with pytest.raises(SystemExit) as stop:
        study.main(["--variants", "crop_recognized,nonsense", "--out", "unused.json"])
    assert stop.value.code == 2 and "nonsense" in capsys.readouterr().err
