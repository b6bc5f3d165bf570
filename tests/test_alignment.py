"""`valle.alignment` and `valle alignment`: text-to-audio attention statistics of the AR heads."""

import json

import pytest
import torch

from tests.utils import random_valle_batch, tiny_valle_model
from valle.alignment import _head_statistics, ar_alignment, markdown_table, record_attention


def _examples(model, count=3):
    batch = random_valle_batch(model.config, batch_size=3, num_phonemes=(7, 5, 6), num_frames=(12, 9, 10))
    examples = []
    for i in range(count):
        phonemes = int(batch["attention_mask"][i].sum())
        frames = int((batch["labels"][i, :, 0] != -100).sum())
        examples.append({"input_ids": batch["input_ids"][i, :phonemes].tolist(),
                         "codes": batch["labels"][i, :frames].tolist()})
    return examples


def test_head_statistics_of_a_diagonal_and_a_uniform_head():
    phonemes = frames = 8
    weights = torch.zeros(2, phonemes + 1 + frames, phonemes + 1 + frames)  # (heads, queries, keys)
    for t in range(frames):  # head 0 reads phoneme t at frame t, one-hot; head 1 spreads over all phonemes
        weights[0, phonemes + 1 + t, t] = 1.0
        weights[1, phonemes + 1 + t, :phonemes] = 0.5 / phonemes
        weights[1, phonemes + 1 + t, phonemes] = 0.5  # and half of its attention on the audio
    stats = _head_statistics(weights, phonemes, frames)
    assert stats[0].tolist() == pytest.approx([1.0, 1.0, 1.0], abs=1e-6)
    mass, monotonicity, sharpness = stats[1].tolist()
    assert mass == pytest.approx(0.5) and monotonicity == pytest.approx(0.0, abs=1e-6)
    assert sharpness == pytest.approx(1 / phonemes)


@pytest.mark.parametrize("use_audio_bos", [False, True])
def test_ar_alignment_reports_every_ar_head_and_restores_the_model(use_audio_bos):
    model = tiny_valle_model(use_audio_bos=use_audio_bos, tie_ar_lm_head=not use_audio_bos)
    before = {name: value.clone() for name, value in model.state_dict().items()}
    implementation = model.config._attn_implementation
    result = ar_alignment(model, _examples(model))
    assert result["examples"] == 3
    config = model.config
    assert len(result["heads"]) == config.num_hidden_layers * config.num_attention_heads
    for head in result["heads"]:
        assert 0.0 <= head["text_mass"] <= 1.0 and -1.0 <= head["monotonicity"] <= 1.0
        assert 0.0 < head["sharpness"] <= 1.0
        assert head["alignment_head"] == (head["monotonicity"] >= 0.9 and head["text_mass"] >= 0.5)
    assert result["best"] in result["heads"]
    assert model.config._attn_implementation == implementation
    assert all(torch.equal(before[name], value) for name, value in model.state_dict().items())
    table = markdown_table(result)
    assert table.count("\n| ") == config.num_hidden_layers and "over 3 examples" in table


def test_recorded_attention_is_the_attention_the_model_uses():
    model = tiny_valle_model()
    batch = random_valle_batch(model.config, batch_size=1, num_phonemes=(7,), num_frames=(12,))
    expected = model(**batch, nar_stage=1).ar_logits
    with record_attention(model) as records:
        recorded = model(**batch, nar_stage=1).ar_logits
    torch.testing.assert_close(recorded, expected, rtol=1e-4, atol=1e-5)
    ar_weights = records[model.ar_decoder.layers[0].self_attn][0]
    length = 7 + int(model.config.use_audio_bos) + 12  # phonemes, (audio BOS,) frames
    assert ar_weights.shape == (1, model.config.num_attention_heads, length, length)
    torch.testing.assert_close(ar_weights.sum(dim=-1), torch.ones(1, model.config.num_attention_heads, length))


def test_ar_alignment_refuses_a_model_without_the_ar_and_empty_input():
    model = tiny_valle_model(ar_loss_weight=0.0)
    with pytest.raises(ValueError, match="ar_loss_weight"):
        ar_alignment(model, _examples(model))
    model = tiny_valle_model()
    with pytest.raises(ValueError, match="at least 2 frames"):
        ar_alignment(model, [{"input_ids": [5, 6], "codes": [[1, 2, 3, 4]]}])


def test_cli_alignment_on_a_prepared_dataset(tmp_path, capsys):
    import datasets

    from valle.cli import main

    model = tiny_valle_model()
    model.save_pretrained(tmp_path / "model")
    datasets.Dataset.from_list(_examples(model)).save_to_disk(str(tmp_path / "data"))
    assert main(["alignment", str(tmp_path / "data"), "--model", str(tmp_path / "model"), "--limit", "2",
                 "--json", str(tmp_path / "alignment.json"), "--device", "cpu"]) == 0
    assert "over 2 examples" in capsys.readouterr().out
    saved = json.loads((tmp_path / "alignment.json").read_text())
    assert saved["examples"] == 2 and saved["model"] == str(tmp_path / "model")
    datasets.Dataset.from_list([{"text": "no codes"}]).save_to_disk(str(tmp_path / "raw"))
    assert main(["alignment", str(tmp_path / "raw"), "--model", str(tmp_path / "model")]) == 2
    assert "no codes, input_ids column" in capsys.readouterr().err


def test_free_running_reading_follows_a_head_through_the_decode(tmp_path):
    import soundfile

    from processing_valle import VallEProcessor
    from tests.utils import tiny_codec, tiny_tokenizer, tiny_waveform
    from valle.alignment import free_running_reading

    tokenizer = tiny_tokenizer()
    processor = VallEProcessor(tokenizer, codec=tiny_codec())
    model = tiny_valle_model(vocab_size=len(tokenizer), num_codebooks=8, codebook_size=1024)
    soundfile.write(tmp_path / "prompt.wav", tiny_waveform(1.0, sampling_rate=16_000, seed=3), 16_000)
    torch.manual_seed(0)
    result = free_running_reading(model, processor, "Hello world.", layer=1, head=2,
                                  prompt_audio=str(tmp_path / "prompt.wav"), prompt_text="The lazy dog!",
                                  max_new_tokens=12)
    assert 1 <= result["frames"] <= 12
    # one decoding step per generated frame, plus the one that chose end-of-speech when there was one
    assert len(result["positions"]) == result["frames"] + int(result["finished_with_eos"])
    # positions are inside the phoneme sequence: the prompt's transcript starts well below 0, the text ends at 1
    assert all(-10 < p <= 1.0 + 1e-6 for p in result["positions"])
    assert min(result["positions"]) <= result["final"] <= max(result["positions"])
    assert model.training is False and model.config._attn_implementation != "valle_alignment_recorder"
    with pytest.raises(ValueError, match="layers 0-1"):
        free_running_reading(model, processor, "Hello.", layer=2, head=0)
    with pytest.raises(ValueError, match="prompt_text"):
        free_running_reading(model, processor, "Hello.", layer=0, head=0, prompt_audio=str(tmp_path / "prompt.wav"))
