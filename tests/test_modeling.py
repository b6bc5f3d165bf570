"""VallEForConditionalCodecGeneration: training loss, generation, saving, attention back-ends, input checks."""

import json
import os

import pytest
import torch
from transformers import AutoConfig, AutoModel, AutoModelForTextToWaveform

from configuration_valle import VallEConfig
from modeling_valle import VallEForConditionalCodecGeneration, VallEGenerationOutput
from tests.utils import random_prompt, random_valle_batch, tiny_valle_config, tiny_valle_model


# ------------------------------------------------------------------------------------------------
# Configuration


def test_default_config_is_the_papers_model():
    config = VallEConfig()
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (1024, 12, 16)
    assert (config.intermediate_size, config.num_codebooks, config.codebook_size) == (4096, 8, 1024)
    assert config.dropout == 0.1 and config.sampling_rate == 24000 and config.frame_rate == 75
    assert config.tie_ar_lm_head and not config.use_audio_bos
    with torch.device("meta"):
        model = VallEForConditionalCodecGeneration(config)
    per_decoder = sum(p.numel() for p in model.ar_decoder.parameters())
    # 12 pre-LN blocks of width 1024 / FFN 4096 with biases: ~151M parameters per decoder.
    assert 150e6 < per_decoder < 152e6
    nar = sum(p.numel() for p in model.nar_decoder.parameters())
    assert nar > per_decoder  # AdaLN projections add 2d x d per norm


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(hidden_size=30, num_attention_heads=4), "divisible"),
        (dict(use_audio_bos=True, tie_ar_lm_head=True), "tie_ar_lm_head"),
        (dict(nar_head_tying="sideways"), "nar_head_tying"),
        (dict(num_codebooks=1), "num_codebooks"),
        (dict(dropout=1.0), "dropout"),
        (dict(pad_token_id=500), "pad_token_id"),
    ],
)
def test_inconsistent_config_raises_clear_error(overrides, message):
    with pytest.raises(ValueError, match=message):
        tiny_valle_config(**overrides)


def test_auto_classes_resolve():
    config = tiny_valle_config()
    assert isinstance(AutoConfig.for_model("valle", vocab_size=40), VallEConfig)
    assert isinstance(AutoModel.from_config(config), VallEForConditionalCodecGeneration)
    assert isinstance(AutoModelForTextToWaveform.from_config(config), VallEForConditionalCodecGeneration)


# ------------------------------------------------------------------------------------------------
# Training


def test_loss_is_finite_and_falls_when_overfitting_one_batch():
    model = tiny_valle_model().train()
    batch = random_valle_batch(model.config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(60):
        output = model(**batch)
        assert torch.isfinite(output.loss)
        output.loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(output.loss.item())
    start, end = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert end < 0.4 * start, (start, end)


def test_loss_parts_and_outputs():
    model = tiny_valle_model()
    batch = random_valle_batch(model.config)
    output = model(**batch, nar_stage=2)
    assert torch.allclose(output.loss, output.ar_loss + output.nar_loss)
    assert output.nar_stage.tolist() == [2, 2, 2]
    # AR targets: codebook 1 shifted by one, then EOS right after each item's last frame (no BOS in the paper).
    lengths = (batch["labels"][..., 0] != -100).sum(1)
    for i, n in enumerate(lengths.tolist()):
        assert output.ar_labels[i, : n - 1].tolist() == batch["labels"][i, 1:n, 0].tolist()
        assert output.ar_labels[i, n - 1].item() == model.config.audio_eos_token_id
        assert (output.ar_labels[i, n:] == -100).all()
    # NAR targets: codebook 3 after the random prompt prefix, never padding.
    assert (output.nar_labels[output.nar_labels != -100] < model.config.codebook_size).all()
    assert output.ar_logits.shape[-1] == model.config.codebook_size + 1
    assert output.nar_logits.shape[-1] == model.config.codebook_size


def test_ar_only_and_nar_only_training():
    batch = random_valle_batch(tiny_valle_config())
    ar_only = tiny_valle_model(nar_loss_weight=0.0)(**batch)
    assert ar_only.nar_loss is None and torch.allclose(ar_only.loss, ar_only.ar_loss)
    nar_only = tiny_valle_model(ar_loss_weight=0.0)(**batch)
    assert nar_only.ar_loss is None and torch.allclose(nar_only.loss, nar_only.nar_loss)


def test_nar_uses_a_prompt_from_another_utterance():
    model = tiny_valle_model()
    batch = random_valle_batch(model.config)
    prompt, prompt_mask = random_prompt(model.config)
    with_prompt = model(**batch, prompt_codes=prompt, prompt_attention_mask=prompt_mask, nar_stage=1)
    # With a separate prompt every target frame is scored.
    assert torch.equal(with_prompt.nar_labels, batch["labels"][..., 1])
    other_prompt = prompt.flip(1)
    changed = model(**batch, prompt_codes=other_prompt, prompt_attention_mask=prompt_mask, nar_stage=1)
    assert not torch.equal(with_prompt.nar_logits, changed.nar_logits)


def test_gradient_checkpointing_gives_the_same_loss_and_gradients():
    batch = random_valle_batch(tiny_valle_config())
    results = []
    for checkpointing in (False, True):
        model = tiny_valle_model().train()
        if checkpointing:
            model.gradient_checkpointing_enable() if not hasattr(model, "activation_checkpointing_enable") else model.activation_checkpointing_enable()
        torch.manual_seed(3)  # same NAR stage and prompt prefix
        loss = model(**batch).loss
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]))
    assert torch.allclose(results[0][0], results[1][0])
    assert len(results[0][1]) == len(results[1][1])
    for a, b in zip(results[0][1], results[1][1]):
        assert torch.allclose(a, b, atol=1e-6)


def test_sdpa_and_eager_attention_agree():
    batch = random_valle_batch(tiny_valle_config())
    model = tiny_valle_model()
    assert model.config._attn_implementation == "sdpa"
    torch.manual_seed(0)  # the same random NAR prompt split for both
    sdpa = model(**batch, nar_stage=1)
    model.set_attn_implementation("eager")
    torch.manual_seed(0)
    eager = model(**batch, nar_stage=1)
    assert torch.allclose(sdpa.ar_logits, eager.ar_logits, atol=1e-5)
    assert torch.allclose(sdpa.nar_logits, eager.nar_logits, atol=1e-5)


def test_bf16_forward_and_generate_are_finite():
    model = tiny_valle_model().to(torch.bfloat16)
    batch = random_valle_batch(model.config)
    assert torch.isfinite(model(**batch).loss)
    prompt, prompt_mask = random_prompt(model.config)
    codes = model.generate(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], prompt_codes=prompt,
        prompt_attention_mask=prompt_mask, max_new_tokens=5,
    )
    assert codes.shape[0] == 3 and codes.shape[2] == model.config.num_codebooks


# ------------------------------------------------------------------------------------------------
# Generation


def _inputs(config, batch_size=3):
    batch = random_valle_batch(config, batch_size=batch_size)
    prompt, prompt_mask = random_prompt(config, lengths=(5, 3, 4)[:batch_size])
    return dict(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
        prompt_codes=prompt, prompt_attention_mask=prompt_mask,
    )


def test_cached_decoding_matches_full_recomputation():
    model = tiny_valle_model()
    inputs = _inputs(model.config)
    kwargs = dict(do_sample=False, max_new_tokens=8, min_new_tokens=8, return_dict_in_generate=True, output_logits=True)
    cached = model.generate(**inputs, use_cache=True, **kwargs)
    full = model.generate(**inputs, use_cache=False, **kwargs)
    assert torch.equal(cached.sequences, full.sequences)
    assert len(cached.logits) == len(full.logits) == 8
    for a, b in zip(cached.logits, full.logits):
        assert torch.allclose(a, b, atol=1e-5)


def test_generation_logits_match_teacher_forced_forward():
    # With an audio BOS the AR needs no prompt, so generation and training see the very same sequence.
    model = tiny_valle_model(use_audio_bos=True, tie_ar_lm_head=False)
    batch = random_valle_batch(model.config, batch_size=1)
    generated = model.generate(
        input_ids=batch["input_ids"], do_sample=False, max_new_tokens=6, min_new_tokens=6,
        return_dict_in_generate=True, output_logits=True,
    )
    codes = generated.sequences
    forward = model(input_ids=batch["input_ids"], labels=codes)
    for step, step_logits in enumerate(generated.logits):
        assert torch.allclose(forward.ar_logits[:, step], step_logits, atol=1e-5)


def test_batched_greedy_generation_equals_one_by_one():
    model = tiny_valle_model()
    inputs = _inputs(model.config)
    batched = model.generate(**inputs, do_sample=False, max_new_tokens=7, return_dict_in_generate=True)
    for i in range(3):
        phonemes = int(inputs["attention_mask"][i].sum())
        frames = int(inputs["prompt_attention_mask"][i].sum())
        single = model.generate(
            input_ids=inputs["input_ids"][i : i + 1, :phonemes],
            prompt_codes=inputs["prompt_codes"][i : i + 1, :frames],
            do_sample=False, max_new_tokens=7, return_dict_in_generate=True,
        )
        length = int(single.sequence_lengths[0])
        assert int(batched.sequence_lengths[i]) == length
        assert torch.equal(batched.sequences[i, :length], single.sequences[0, :length])


def test_generate_output_layout_and_padding():
    model = tiny_valle_model()
    inputs = _inputs(model.config)
    output = model.generate(**inputs, max_new_tokens=9, return_dict_in_generate=True)
    assert isinstance(output, VallEGenerationOutput)
    codes, lengths = output.sequences, output.sequence_lengths
    assert codes.shape == (3, int(lengths.max()), model.config.num_codebooks)
    for i, n in enumerate(lengths.tolist()):
        assert ((codes[i, :n] >= 0) & (codes[i, :n] < model.config.codebook_size)).all()
        assert (codes[i, n:] == -100).all()
    plain = model.generate(**inputs, max_new_tokens=9)
    assert torch.is_tensor(plain) and plain.dim() == 3


def test_seeded_sampling_repeats_and_differs_across_seeds():
    model = tiny_valle_model()
    inputs = _inputs(model.config)
    runs = []
    for seed in (7, 7, 8):
        torch.manual_seed(seed)
        runs.append(model.generate(**inputs, do_sample=True, top_k=0, max_new_tokens=10, min_new_tokens=10))
    assert torch.equal(runs[0], runs[1])
    assert not torch.equal(runs[0], runs[2])


def test_num_return_sequences_min_and_max_new_tokens():
    model = tiny_valle_model()
    inputs = _inputs(model.config)
    output = model.generate(
        **inputs, num_return_sequences=2, min_new_tokens=4, max_new_tokens=6, return_dict_in_generate=True
    )
    assert output.sequences.shape[0] == 6
    assert ((output.sequence_lengths >= 4) & (output.sequence_lengths <= 6)).all()


def test_generation_always_terminates_with_a_cap_proportional_to_phonemes():
    model = tiny_valle_model()
    # Forbid the end-of-speech token: only the default cap (frames per phoneme) can stop decoding.
    with torch.no_grad():
        model.ar_audio_embedding.weight[model.config.audio_eos_token_id] = -1e4 * model.ar_decoder.norm.weight.sign()
    inputs = _inputs(model.config, batch_size=2)
    output = model.generate(**inputs, do_sample=False, max_frames_per_phoneme=2, return_dict_in_generate=True)
    phonemes = inputs["attention_mask"].sum(1)
    prompt = inputs["prompt_attention_mask"].sum(1)
    assert torch.equal(output.sequence_lengths, (2 * phonemes - prompt).clamp(min=1))
    assert not output.finished_with_eos.any()


def test_output_scores_are_processed_logits():
    model = tiny_valle_model()
    inputs = _inputs(model.config, batch_size=1)
    inputs = {k: v[:1] for k, v in inputs.items()}
    output = model.generate(
        **inputs, do_sample=True, top_k=3, max_new_tokens=4, min_new_tokens=4, return_dict_in_generate=True,
        output_scores=True, output_logits=True,
    )
    assert len(output.scores) == len(output.logits) == 4
    for scores in output.scores:
        assert int(torch.isfinite(scores).sum()) == 3  # top-k keeps three candidates; EOS masked by min_new_tokens
    assert all(torch.isfinite(logits).all() for logits in output.logits)


def test_repetition_aware_sampling_redraws_repeated_codes():
    model = tiny_valle_model()
    logits = torch.full((400, 17), -2.0)
    logits[:, 3] = 0.0  # code 3 is likeliest but far from certain
    history = torch.full((400, 10), 3)
    options = model._generation_options(None, dict(do_sample=True, top_k=1))
    plain = model._select_next_code(logits, model._logits_processors(options)(history, logits.clone()), history, options)
    assert (plain == 3).all()  # top-k 1 always repeats
    options = model._generation_options(None, dict(do_sample=True, top_k=1, repetition_aware_sampling=True))
    torch.manual_seed(0)
    aware = model._select_next_code(logits, model._logits_processors(options)(history, logits.clone()), history, options)
    share = (aware == 3).float().mean().item()
    full_probability = torch.softmax(logits[0], -1)[3].item()
    assert abs(share - full_probability) < 0.1  # redrawn from the full distribution


def test_generate_without_prompt_needs_an_audio_bos():
    model = tiny_valle_model()
    batch = random_valle_batch(model.config)
    with pytest.raises(ValueError, match="prompt_codes"):
        model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    bos_model = tiny_valle_model(use_audio_bos=True, tie_ar_lm_head=False)
    codes = bos_model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], max_new_tokens=4)
    assert codes.shape[0] == 3


def _forbid_end_of_speech(model):
    """Only the length cap can then stop the AR (the NAR's weights are untouched)."""
    with torch.no_grad():
        model.ar_audio_embedding.weight[model.config.audio_eos_token_id] = -1e4 * model.ar_decoder.norm.weight.sign()
    return model


def test_generate_nar_on_generates_first_codebook_reproduces_generate():
    model = _forbid_end_of_speech(tiny_valle_model())
    inputs = _inputs(model.config)
    # The cap of 2 frames per phoneme, prompt included, gives each item its own length: 14-5, 10-3, 12-4 frames.
    output = model.generate(**inputs, do_sample=False, max_frames_per_phoneme=2, return_dict_in_generate=True)
    assert output.sequence_lengths.tolist() == [9, 7, 8]
    codes = output.sequences
    nar = model.generate_nar(**inputs, first_codebook=codes[..., 0])
    assert nar.dtype == codes.dtype and torch.equal(nar, codes)
    # The AR stage alone gives generate's codebook 1, padding included; chained, the two stages are generate.
    first = model.generate_ar(**inputs, do_sample=False, max_frames_per_phoneme=2)
    assert torch.equal(first, codes[..., 0])
    assert torch.equal(model.generate_nar(**inputs, first_codebook=first), codes)
    # int32 codes are accepted; padding frames of the prompt do not matter.
    prompt = inputs["prompt_codes"].masked_fill(~inputs["prompt_attention_mask"].bool()[..., None], 7)
    assert torch.equal(model.generate_nar(**dict(inputs, prompt_codes=prompt), first_codebook=first.int()), codes)


def test_generate_ar_samples_what_generate_samples():
    model = tiny_valle_model()
    inputs = _inputs(model.config)
    kwargs = dict(do_sample=True, top_k=0, max_new_tokens=10, num_return_sequences=2)
    torch.manual_seed(5)
    codes = model.generate(**inputs, **kwargs)
    torch.manual_seed(5)
    first = model.generate_ar(**inputs, return_dict_in_generate=True, output_logits=True, **kwargs)
    assert isinstance(first, VallEGenerationOutput) and first.sequences.shape == codes.shape[:2] == (6, 10)
    assert torch.equal(first.sequences, codes[..., 0])
    assert torch.equal(first.sequence_lengths, (codes[..., 0] != -100).sum(1))
    assert len(first.logits) == int(first.sequence_lengths.max())
    repeated = {k: v.repeat_interleave(2, dim=0) for k, v in inputs.items()}
    assert torch.equal(model.generate_nar(**repeated, first_codebook=first.sequences), codes)


def test_generate_nar_edge_cases_and_the_papers_nar_ablation():
    model = tiny_valle_model()
    inputs = _inputs(model.config)
    first = torch.randint(0, model.config.codebook_size, (3, 6))
    first[1, 2:] = -100
    first[2] = -100  # an item without a single frame
    codes = model.generate_nar(**inputs, first_codebook=first)
    assert codes.shape == (3, 6, model.config.num_codebooks)
    assert torch.equal(codes[..., 0], first)
    assert ((codes[0] >= 0) & (codes[0] < model.config.codebook_size)).all()
    assert (codes[1, 2:] == -100).all() and (codes[1, :2] >= 0).all() and (codes[2] == -100).all()
    # Each item depends on its own inputs only: the batch gives what one-by-one calls give.
    for i, frames in enumerate([6, 2]):
        phonemes, prompt = int(inputs["attention_mask"][i].sum()), int(inputs["prompt_attention_mask"][i].sum())
        single = model.generate_nar(input_ids=inputs["input_ids"][i : i + 1, :phonemes],
                                    prompt_codes=inputs["prompt_codes"][i : i + 1, :prompt],
                                    first_codebook=first[i : i + 1, :frames])
        assert torch.equal(single[0], codes[i, :frames])
    # No prompt at all (the paper's "NAR with ground-truth codebook 1 and no prompts"), whatever the BOS setting.
    no_prompt = model.generate_nar(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                                   first_codebook=first)
    assert no_prompt.shape == codes.shape and torch.equal(no_prompt == -100, codes == -100)
    assert model.generate_nar(**inputs, first_codebook=first[:, :0]).shape == (3, 0, model.config.num_codebooks)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda first: None, "`first_codebook` is required"),
        (lambda first: first.float(), "integer tensor"),
        (lambda first: first[..., None].expand(-1, -1, 4), r"codes\[\.\.\., 0\]"),
        (lambda first: first[:2], "batch size 2"),
        (lambda first: torch.cat([torch.full_like(first[:, :1], -100), first], dim=1), "padding .* after"),
        (lambda first: first.masked_fill(first == first[0, 0], 16), r"outside \[0, 16\).*end-of-speech"),
        (lambda first: torch.where(first >= 0, -first - 1, first), "outside"),  # negative codes, never -100
    ],
)
def test_generate_nar_refuses_malformed_first_codebooks(change, message):
    model = tiny_valle_model()
    inputs = _inputs(model.config)
    first = torch.randint(0, model.config.codebook_size, (3, 5))
    with pytest.raises(ValueError, match=message):
        model.generate_nar(**inputs, first_codebook=change(first))


def test_generate_nar_checks_its_other_inputs():
    model = tiny_valle_model()
    inputs = _inputs(model.config)
    first = torch.randint(0, model.config.codebook_size, (3, 5))
    with pytest.raises(ValueError, match="codebooks"):
        model.generate_nar(**dict(inputs, prompt_codes=inputs["prompt_codes"][..., :2]), first_codebook=first)
    with pytest.raises(ValueError, match="input_ids"):
        model.generate_nar(first_codebook=first)
    with pytest.raises(TypeError):
        model.generate_nar(**inputs, first_codebook=first, do_sample=False)  # the NAR has no generation options
    one_codebook = tiny_valle_model(num_codebooks=1, nar_loss_weight=0.0)
    with pytest.raises(ValueError, match="no NAR decoder"):
        one_codebook.generate_nar(input_ids=inputs["input_ids"], first_codebook=first)


def test_ar_without_acoustic_prompt_then_nar_with_it():
    """The paper's ablation "AR without the acoustic prompt": the AR reads the text alone and starts from the audio
    BOS; the NAR then gets the prompt transcript + text and the 3 s prompt as usual."""
    batch = random_valle_batch(tiny_valle_config())
    text_only = dict(input_ids=batch["input_ids"][:, 2:], attention_mask=batch["attention_mask"][:, 2:])
    model = tiny_valle_model()
    with pytest.raises(ValueError, match="use_audio_bos"):
        model.generate_ar(**text_only, max_new_tokens=4)
    bos_model = tiny_valle_model(use_audio_bos=True, tie_ar_lm_head=False)
    inputs = _inputs(bos_model.config)
    first = bos_model.generate_ar(**text_only, do_sample=False, max_new_tokens=6)
    assert first.shape[0] == 3 and first.dim() == 2
    lengths = (first != -100).sum(1)
    for i, n in enumerate(lengths.tolist()):
        assert ((first[i, :n] >= 0) & (first[i, :n] < bos_model.config.codebook_size)).all()
        assert (first[i, n:] == -100).all()
    codes = bos_model.generate_nar(**inputs, first_codebook=first)
    assert torch.equal(codes[..., 0], first)


def test_generation_options_are_checked():
    model = tiny_valle_model()
    inputs = _inputs(model.config)
    with pytest.raises(ValueError, match="max_new_tokens"):
        model.generate(**inputs, max_length=20)
    with pytest.raises(ValueError, match="beam search"):
        model.generate(**inputs, num_beams=4)
    with pytest.raises(ValueError, match="unknown arguments"):
        model.generate(**inputs, temprature=0.7)


def test_language_embeddings():
    model = tiny_valle_model(num_languages=3)
    batch = random_valle_batch(model.config)
    with pytest.raises(ValueError, match="language_ids"):
        model(**batch)
    english = model(**batch, language_ids=torch.tensor([0, 0, 0]), nar_stage=1)
    chinese = model(**batch, language_ids=torch.tensor([1, 1, 1]), nar_stage=1)
    assert not torch.allclose(english.ar_logits, chinese.ar_logits)
    per_token = torch.zeros_like(batch["input_ids"])
    assert torch.allclose(model(**batch, language_ids=per_token, nar_stage=1).ar_logits, english.ar_logits)
    prompt, prompt_mask = random_prompt(model.config)
    codes = model.generate(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], prompt_codes=prompt,
        prompt_attention_mask=prompt_mask, language_ids=torch.tensor([0, 1, 2]), max_new_tokens=3,
    )
    assert codes.shape[0] == 3


# ------------------------------------------------------------------------------------------------
# Weight sharing and saving


@pytest.mark.parametrize("tying", ["paper", "shifted"])
def test_save_load_round_trip_is_exact_and_ties_survive(tmp_path, tying):
    model = tiny_valle_model(nar_head_tying=tying)
    model.save_pretrained(tmp_path)
    files = set(os.listdir(tmp_path))
    assert {"config.json", "generation_config.json", "model.safetensors"} <= files
    assert {"configuration_valle.py", "modeling_valle.py"} <= files
    auto_map = json.loads((tmp_path / "config.json").read_text())["auto_map"]
    assert auto_map["AutoModel"] == "modeling_valle.VallEForConditionalCodecGeneration"
    assert auto_map["AutoModelForTextToWaveform"] == "modeling_valle.VallEForConditionalCodecGeneration"
    assert auto_map["AutoConfig"] == "configuration_valle.VallEConfig"

    loaded = VallEForConditionalCodecGeneration.from_pretrained(tmp_path)
    original, restored = model.state_dict(), loaded.state_dict()
    assert original.keys() == restored.keys()
    for name in original:
        assert torch.equal(original[name], restored[name]), name
    # Ties are structural: the heads read the embedding tensors themselves.
    assert loaded.ar_lm_head is None
    for codebook in range(1, loaded.config.num_codebooks):
        expected = codebook if tying == "paper" else codebook + 1
        if expected < loaded.config.num_codebooks:
            assert loaded._nar_head_weight(codebook) is loaded.nar_audio_embeddings[expected].weight
    assert (loaded.nar_last_lm_head is None) == (tying == "paper")
    inputs = _inputs(model.config)
    assert torch.equal(
        model.generate(**inputs, do_sample=False, max_new_tokens=5),
        loaded.generate(**inputs, do_sample=False, max_new_tokens=5),
    )
    assert loaded.generation_config.do_sample and loaded.generation_config.max_frames_per_phoneme == 16


def test_open_implementation_layout_options():
    # lifeiteng / VALL-E X: untied AR head, BOS row, shifted NAR ties, language embeddings.
    model = tiny_valle_model(use_audio_bos=True, tie_ar_lm_head=False, nar_head_tying="shifted", num_languages=3)
    config = model.config
    assert model.ar_audio_embedding.weight.shape[0] == config.codebook_size + 2
    assert model.ar_lm_head.weight.shape[0] == config.codebook_size + 1
    assert model.nar_audio_embeddings[0].weight.shape[0] == config.codebook_size + 1
    assert all(e.weight.shape[0] == config.codebook_size for e in model.nar_audio_embeddings[1:])
    assert model.nar_stage_embedding.weight.shape[0] == config.num_codebooks - 1
    assert model.ar_language_embedding.weight.shape[0] == 3
    assert model.ar_audio_position.alpha.requires_grad and not model.nar_audio_position.alpha.requires_grad


# ------------------------------------------------------------------------------------------------
# Malformed inputs


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda b: b.update(labels=b["labels"][..., :2]), "codebooks"),
        (lambda b: b.update(labels=b["labels"][:, :, 0]), "shape"),
        (lambda b: b["labels"].__setitem__((0, 0, 0), 99), "outside"),
        (lambda b: b.update(labels=b["labels"][:2]), "batch size"),
        (lambda b: b.update(input_ids=b["input_ids"][:, :0], attention_mask=b["attention_mask"][:, :0]), "empty"),
        (lambda b: b["input_ids"].__setitem__((0, 0), 1000), "vocabulary"),
        (lambda b: b.update(attention_mask=b["attention_mask"][:, :-1]), "attention_mask"),
        (lambda b: b["labels"].__setitem__((0, 0), -100), "padding"),
        (lambda b: b["labels"].__setitem__((0, 3, 1), -100), "whole frames"),
        (lambda b: b.pop("labels"), "labels"),
    ],
)
def test_malformed_training_inputs_raise_clear_errors(change, message):
    model = tiny_valle_model()
    batch = random_valle_batch(model.config)
    change(batch)
    with pytest.raises(ValueError, match=message):
        model(**batch)


def test_malformed_prompts_raise_clear_errors():
    model = tiny_valle_model()
    inputs = _inputs(model.config)
    bad = dict(inputs, prompt_codes=inputs["prompt_codes"][..., :2])
    with pytest.raises(ValueError, match="codebooks"):
        model.generate(**bad)
    bad = dict(inputs, prompt_codes=inputs["prompt_codes"] + 100)
    with pytest.raises(ValueError, match="outside"):
        model.generate(**bad)
    bad = dict(inputs, prompt_attention_mask=inputs["prompt_attention_mask"].flip(1))
    with pytest.raises(ValueError, match="right padding"):
        model.generate(**bad)


def test_kv_cache_grows_past_its_capacity_without_losing_the_past():
    from modeling_valle import VallEKVCache

    cache = VallEKVCache(num_layers=1, capacity=2)
    steps = [torch.randn(1, 2, 1, 4) for _ in range(5)]
    for step in steps:
        keys, values = cache.update(step, -step, 0)
    assert torch.equal(keys, torch.cat(steps, dim=2)) and torch.equal(values, -torch.cat(steps, dim=2))
    assert cache.get_seq_length() == 5


def test_adaptive_layer_norm_starts_as_a_plain_layer_norm():
    model = tiny_valle_model()
    hidden = model.config.hidden_size
    for name, module in model.named_modules():
        if name.endswith("project"):
            assert torch.equal(module.bias[:hidden], torch.ones(hidden)), name
            assert torch.equal(module.bias[hidden:], torch.zeros(hidden)), name


def test_every_trainable_parameter_gets_a_gradient_at_every_stage():
    # DDP without find_unused_parameters needs every parameter in every step's graph.
    batch = random_valle_batch(tiny_valle_config())
    for tying in ("paper", "shifted"):
        model = tiny_valle_model(nar_head_tying=tying).train()
        for stage in range(1, model.config.num_codebooks):
            model.zero_grad()
            model(**batch, nar_stage=stage).loss.backward()
            missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
            assert not missing, (tying, stage, missing)


def test_int32_inputs_are_accepted():
    model = tiny_valle_model()
    batch = random_valle_batch(model.config)
    torch.manual_seed(0)  # the same random NAR prompt split for both
    as_long = model(**batch, nar_stage=1)
    torch.manual_seed(0)
    as_int = model(**{k: v.int() for k, v in batch.items()}, nar_stage=1)
    assert torch.allclose(as_long.loss, as_int.loss)


def test_prompt_without_real_frames_is_refused():
    model = tiny_valle_model()
    inputs = _inputs(model.config)
    with pytest.raises(ValueError, match="real prompt frame"):
        model.generate(**dict(inputs, prompt_codes=inputs["prompt_codes"][:, :0], prompt_attention_mask=None))
    mask = inputs["prompt_attention_mask"].clone()
    mask[1] = 0
    with pytest.raises(ValueError, match="real prompt frame"):
        model.generate(**dict(inputs, prompt_attention_mask=mask))


def test_repetition_aware_sampling_respects_min_new_tokens():
    model = tiny_valle_model()
    with torch.no_grad():  # make end-of-speech very likely
        model.ar_audio_embedding.weight[model.config.audio_eos_token_id] = 1e3 * model.ar_decoder.norm.weight.sign()
    inputs = _inputs(model.config)
    output = model.generate(
        **inputs, repetition_aware_sampling=True, min_new_tokens=6, max_new_tokens=8, return_dict_in_generate=True
    )
    assert (output.sequence_lengths >= 6).all()


def test_resizing_the_phoneme_vocabulary_resizes_both_decoders():
    model = tiny_valle_model()
    model.resize_token_embeddings(50)
    assert model.ar_phoneme_embedding.num_embeddings == model.nar_phoneme_embedding.num_embeddings == 50
    batch = random_valle_batch(model.config)
    batch["input_ids"][0, 0] = 45
    assert torch.isfinite(model(**batch).loss)
