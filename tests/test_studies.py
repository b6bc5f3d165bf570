"""The studies behind the README's "Joined utterances (stages 3 to 7)" and "What the NAR adds": their pieces on
tiny data and a tiny model."""

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


def test_nar_codebooks_unigram_is_a_smoothed_code_distribution_per_codebook():
    study = load_study("nar_codebooks")
    data = datasets.Dataset.from_dict({"codes": [[[0, 3], [0, 3], [1, 3]], [[0, 2]]]})
    log_probs = study.unigram_log_probs(data, num_codebooks=2, codebook_size=4)
    assert log_probs.shape == (2, 4)
    assert np.allclose(np.exp(log_probs).sum(axis=1), 1.0)
    # add-one counts: codebook 1 (0: 3+1, 1: 1+1, 2: 1, 3: 1), codebook 2 (0: 1, 1: 1, 2: 1+1, 3: 3+1).
    assert np.allclose(np.exp(log_probs[0]), [4 / 8, 2 / 8, 1 / 8, 1 / 8])
    assert np.allclose(np.exp(log_probs[1]), [1 / 8, 1 / 8, 2 / 8, 4 / 8])


def test_nar_codebooks_teacher_forced_scores_every_nar_codebook_on_every_target_frame():
    from tests.test_training import tiny_prepared

    study = load_study("nar_codebooks")
    model = tiny_valle_model()
    data = tiny_prepared(7, speakers=2)  # same-speaker prompts for all
    unigram = study.unigram_log_probs(data, model.config.num_codebooks, model.config.codebook_size)
    scores = study.teacher_forced(model, data, unigram, batch_size=3)
    assert sorted(scores) == list(range(2, model.config.num_codebooks + 1))
    frames = sum(data["num_frames"])
    for row in scores.values():
        assert np.isfinite(row["nar_loss_below_shuffled"])
        assert row["tokens"] == frames  # prompts come from other utterances: no frame of the target is left out
        assert 0.0 <= row["nar_accuracy"] <= 1.0 and np.isfinite(row["nar_loss"])
        # the unigram model, scored on the data it counted, beats a uniform guess
        assert row["unigram_loss"] < np.log(model.config.codebook_size)
    assert study.teacher_forced(model, data, unigram, batch_size=3) == scores  # same prompts, same numbers


def test_nar_codebooks_shuffles_only_the_codebooks_below_within_each_item():
    study = load_study("nar_codebooks")
    labels = torch.arange(2 * 6 * 4).reshape(2, 6, 4)
    labels[1, 4:] = -100  # the second item has 4 frames
    shuffled = study.shuffle_below(labels, 2, torch.Generator().manual_seed(0))
    assert torch.equal(shuffled[..., 2:], labels[..., 2:])  # the codebook predicted and those above: untouched
    assert torch.equal(shuffled[1, 4:], labels[1, 4:])  # padding stays padding
    for item, length in ((0, 6), (1, 4)):
        frames = {tuple(row) for row in shuffled[item, :length, :2].tolist()}
        assert frames == {tuple(row) for row in labels[item, :length, :2].tolist()}  # frames move whole
    assert not torch.equal(shuffled[0, :, :2], labels[0, :, :2])


def test_nar_codebooks_needs_both_data_flags(capsys):
    study = load_study("nar_codebooks")
    with pytest.raises(SystemExit) as stop:
        study.main(["--data", "held_out", "--out", "unused.json"])
    assert stop.value.code == 2 and "--train-data" in capsys.readouterr().err


def test_reading_follows_a_head_for_every_voice_and_text(tmp_path, capsys):
    import json

    import soundfile

    from valle.smoke import build_random_bundle

    study = load_study("reading")
    model_dir = build_random_bundle(tmp_path / "model", num_layers=2)
    voices = tmp_path / "voices" / "prompts"
    voices.mkdir(parents=True)
    soundfile.write(voices / "one.wav", np.random.default_rng(0).normal(0, 0.1, 24000).astype(np.float32), 24000)
    (voices / "one.txt").write_text("The old man sat down.\n")
    out = tmp_path / "reading.json"
    assert study.main(["--models", str(model_dir), "--voices", str(tmp_path / "voices"), "--layer", "1",
                       "--head", "0", "--top-k", "5", "--out", str(out)]) == 0
    result = json.loads(out.read_text())["models"][str(model_dir)]
    assert result["sampling"]["top_k"] == 5  # the flag over the model's generation config
    assert [r["text"] for r in result["readings"]] == list(study.TEXTS)
    assert result["summary"]["texts"] == 3 and result["summary"]["read_to_the_end"] == sum(
        r["final"] >= study.READ_TO_THE_END for r in result["readings"])
    assert "read " in capsys.readouterr().out
    with pytest.raises(SystemExit):  # a folder without voices is named
        study.main(["--models", str(model_dir), "--voices", str(tmp_path), "--out", str(out)])
    assert "has no prompts/ voices" in capsys.readouterr().err


def test_nar_codebooks_expected_vectors_are_the_greedy_decode_for_sure_codes(tmp_path):
    from valle.smoke import build_random_bundle
    from valle.synthesis import load_model_and_processor

    study = load_study("nar_codebooks")
    model, processor = load_model_and_processor(str(build_random_bundle(tmp_path / "bundle", hidden_size=32)),
                                                device="cpu")
    rng = np.random.default_rng(0)
    inputs = processor(text="a short sentence", prompt_audio=rng.uniform(-0.3, 0.3, 24000).astype(np.float32),
                       prompt_text="the prompt", sampling_rate=24000)
    first = torch.from_numpy(rng.integers(0, model.config.codebook_size, (1, 9)))
    codes, probabilities = study.nar_with_probabilities(model, inputs, first)
    assert torch.equal(codes, model.generate_nar(**inputs, first_codebook=first)[0])  # the same passes
    levels = model.config.num_codebooks
    assert sorted(probabilities) == list(range(1, levels))
    for level, p in probabilities.items():
        assert p.shape == (9, model.config.codebook_size) and torch.allclose(p.sum(-1), torch.ones(9))
        assert torch.equal(p.argmax(-1), codes[:, level])
    # One-hot distributions decode to the codec's own waveform of those codes, for any number of codebooks.
    one_hot = {level: torch.nn.functional.one_hot(codes[:, level], model.config.codebook_size).float()
               for level in range(1, levels)}
    for k in (1, 2, levels):
        assert torch.allclose(study.decode_expected(processor.codec, codes[:, 0], one_hot, k),
                              processor._decode_codes(codes[:, :k]), atol=1e-5)
    # Uniform distributions add each codebook's mean vector.
    uniform = {level: torch.full((9, model.config.codebook_size), 1 / model.config.codebook_size)
               for level in range(1, levels)}
    layers = processor.codec.quantizer.layers
    latent = layers[0].codebook.embed[codes[:, 0]] + layers[1].codebook.embed.mean(0)
    with torch.no_grad():
        expected = processor.codec.decoder(latent.T[None]).reshape(-1)
    assert torch.allclose(study.decode_expected(processor.codec, codes[:, 0], uniform, 2), expected, atol=1e-5)
