"""Conversion of lifeiteng/vall-e and VALL-E X checkpoints (valle.convert, `valle convert`).

The checkpoints here are built key by key from SPEC.md section 9 (random values, tiny width, 2 layers), so the
tests check the mapping against the documented layout, not against our own inverse alone.
"""

import json

import pytest
import torch

from valle.convert import (
    ConversionError,
    config_from_original,
    convert_checkpoint,
    detect_layout,
    hf_to_original,
    lifeiteng_vocab,
    load_original_checkpoint,
    original_to_hf,
    read_k2_symbols,
    tokenizer_from_k2_symbols,
    vallex_tokenizer,
)

D, LAYERS, HEADS, CODES, QUANTIZERS, TEXT = 16, 2, 2, 12, 4, 20


def original_state_dict(*, vallex=False, bos=None, seed=0, d=D, layers=LAYERS, codes=CODES, quantizers=QUANTIZERS):
    """An original state dict with SPEC section 9's names and shapes; tied NAR heads are the same tensor objects.
    VALL-E X's text table has room for its 70 symbols (2048 rows in the real one)."""
    bos = vallex if bos is None else bos
    text = 80 if vallex else TEXT
    generator = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.randn(*shape, generator=generator)

    sd = {
        "ar_text_embedding.word_embeddings.weight": rand(text, d),
        "nar_text_embedding.word_embeddings.weight": rand(text, d),
        "ar_audio_embedding.word_embeddings.weight": rand(codes + (2 if bos else 1), d),
        "ar_text_position.alpha": rand(1),
        "ar_audio_position.alpha": rand(1),
        "nar_text_position.alpha": torch.ones(1),
        "nar_audio_position.alpha": torch.ones(1),
        "ar_predict_layer.weight": rand(codes + 1, d),
    }
    for branch in ("ar", "nar"):
        adaptive = branch == "nar"
        for layer in range(layers):
            p = f"{branch}_decoder.layers.{layer}."
            sd[p + "self_attn.in_proj_weight"] = rand(3 * d, d)
            sd[p + "self_attn.in_proj_bias"] = rand(3 * d)
            sd[p + "self_attn.out_proj.weight"] = rand(d, d)
            sd[p + "self_attn.out_proj.bias"] = rand(d)
            sd[p + "linear1.weight"] = rand(4 * d, d)
            sd[p + "linear1.bias"] = rand(4 * d)
            sd[p + "linear2.weight"] = rand(d, 4 * d)
            sd[p + "linear2.bias"] = rand(d)
            for norm in ("norm1", "norm2"):
                sd.update(_norm(f"{p}{norm}.", d, adaptive, rand))
        sd.update(_norm(f"{branch}_decoder.norm.", d, adaptive, rand))
    for i in range(quantizers):
        sd[f"nar_audio_embeddings.{i}.word_embeddings.weight"] = rand(codes + (1 if i == 0 else 0), d)
    for j in range(quantizers - 1):
        sd[f"nar_stage_embeddings.{j}.word_embeddings.weight"] = rand(1, d)
        if j < quantizers - 2:
            sd[f"nar_predict_layers.{j}.weight"] = sd[f"nar_audio_embeddings.{j + 2}.word_embeddings.weight"]
        else:
            sd[f"nar_predict_layers.{j}.weight"] = rand(codes, d)
    if vallex:
        sd["ar_language_embedding.word_embeddings.weight"] = rand(3, d)
        sd["nar_language_embedding.word_embeddings.weight"] = rand(3, d)
    return sd


def _norm(prefix, d, adaptive, rand):
    if not adaptive:
        return {prefix + "weight": 1 + 0.1 * rand(d), prefix + "bias": 0.1 * rand(d)}
    return {
        prefix + "project_layer.weight": 0.1 * rand(2 * d, d),
        prefix + "project_layer.bias": torch.cat([1 + 0.1 * rand(d), 0.1 * rand(d)]),
        prefix + "norm.weight": 1 + 0.1 * rand(d),
        prefix + "norm.bias": 0.1 * rand(d),
    }


def save_checkpoint(tmp_path, state_dict, name="checkpoint.pt", **extra):
    path = tmp_path / name
    torch.save({"model": state_dict, **extra}, path)
    return path


def tiny_config(state_dict, **kwargs):
    return config_from_original(state_dict, num_attention_heads=HEADS, dropout=0.0, attention_dropout=0.0, **kwargs)


LAYOUT_CASES = [
    pytest.param(dict(vallex=False, bos=False), id="lifeiteng"),
    pytest.param(dict(vallex=False, bos=True), id="lifeiteng-bos"),
    pytest.param(dict(vallex=True, bos=True), id="vallex"),
]


@pytest.mark.parametrize("case", LAYOUT_CASES)
def test_mapping_uses_every_key_loads_strictly_and_round_trips_bit_identically(case):
    from valle.convert import build_model

    original = original_state_dict(**case)
    layout = detect_layout(original)
    assert layout == ("vallex" if case["vallex"] else "lifeiteng")
    config = tiny_config(original)
    assert config.use_audio_bos is case["bos"]
    assert config.num_languages == (3 if case["vallex"] else 0)
    assert (config.vocab_size, config.hidden_size, config.num_hidden_layers) == (80 if case["vallex"] else TEXT, D, LAYERS)
    assert (config.num_codebooks, config.codebook_size, config.intermediate_size) == (QUANTIZERS, CODES, 4 * D)
    assert not config.tie_ar_lm_head and config.nar_head_tying == "shifted"

    converted = original_to_hf(original, config)
    model = build_model(converted, config)  # strict: raises on any missing / unexpected key
    assert set(model.state_dict()) == set(converted)

    # every original tensor landed somewhere: each value appears in the model
    sd = model.state_dict()
    q, k, v = original["ar_decoder.layers.1.self_attn.in_proj_weight"].chunk(3)
    assert torch.equal(sd["ar_decoder.layers.1.self_attn.q_proj.weight"], q)
    assert torch.equal(sd["ar_decoder.layers.1.self_attn.k_proj.weight"], k)
    assert torch.equal(sd["ar_decoder.layers.1.self_attn.v_proj.weight"], v)
    assert torch.equal(sd["nar_stage_embedding.weight"][2], original["nar_stage_embeddings.2.word_embeddings.weight"][0])
    assert torch.equal(
        sd["nar_decoder.layers.0.post_attention_layernorm.project.weight"],
        original["nar_decoder.layers.0.norm2.project_layer.weight"],
    )
    assert torch.equal(sd["nar_last_lm_head.weight"], original[f"nar_predict_layers.{QUANTIZERS - 2}.weight"])
    assert torch.equal(sd["ar_lm_head.weight"], original["ar_predict_layer.weight"])
    assert torch.equal(model.ar_audio_position.alpha, original["ar_audio_position.alpha"])

    # ties: the model's NAR head for codebook c reads the original embedding c+1, which was the original head c-1
    for codebook in range(1, QUANTIZERS - 1):
        head = model._nar_head_weight(codebook)
        assert head.data_ptr() == model.nar_audio_embeddings[codebook + 1].weight.data_ptr()
        assert torch.equal(head, original[f"nar_predict_layers.{codebook - 1}.weight"])

    back = hf_to_original(model.state_dict(), config)
    assert set(back) == set(original)
    for name, tensor in original.items():
        assert back[name].dtype == tensor.dtype and torch.equal(back[name], tensor), name
    for j in range(QUANTIZERS - 2):  # the ties are restored as shared tensors
        assert back[f"nar_predict_layers.{j}.weight"] is back[f"nar_audio_embeddings.{j + 2}.word_embeddings.weight"]


@pytest.mark.parametrize("case", LAYOUT_CASES)
def test_convert_command_writes_a_folder_that_loads_and_generates(tmp_path, case):
    from transformers import AutoConfig, AutoModel

    from modeling_valle import VallEForConditionalCodecGeneration
    from valle.cli import main

    original = original_state_dict(**case)
    checkpoint = save_checkpoint(tmp_path, original, nhead=HEADS, prefix_mode=1, exp_dir="exp/valle")
    symbols = tmp_path / "unique_text_tokens.k2symbols"
    symbols.write_text("<eps> 0\n_ 1\na 2\nb 3\nh 4\nə 5\n.\t6\n", encoding="utf-8")
    out = tmp_path / "converted"
    argv = ["convert", str(checkpoint), str(out)] + ([] if case["vallex"] else ["--symbols", str(symbols)])
    assert main(argv) == 0

    for name in ("config.json", "model.safetensors", "generation_config.json", "README.md", "vocab.json",
                 "processor_config.json", "tokenizer_config.json"):
        assert (out / name).is_file(), name
    saved = json.loads((out / "config.json").read_text())
    assert saved["use_audio_bos"] is case["bos"] and saved["num_attention_heads"] == HEADS
    assert "converted from" in (out / "README.md").read_text()

    model = VallEForConditionalCodecGeneration.from_pretrained(out).eval()
    assert type(AutoModel.from_pretrained(out)) is VallEForConditionalCodecGeneration
    assert AutoConfig.from_pretrained(out).num_languages == (3 if case["vallex"] else 0)
    back = hf_to_original(model.state_dict(), model.config)
    assert all(torch.equal(back[name], tensor) for name, tensor in original.items())

    input_ids = torch.tensor([[1, 5, 7, 9, 2]])
    prompt = torch.randint(0, CODES, (1, 4, QUANTIZERS))
    languages = {"language_ids": torch.tensor([0])} if case["vallex"] else {}
    codes = model.generate(input_ids, prompt_codes=prompt, do_sample=False, max_new_tokens=3, **languages)
    assert codes.shape[0] == 1 and codes.shape[2] == QUANTIZERS and 1 <= codes.shape[1] <= 3


def test_converted_model_computes_what_the_original_layout_prescribes():
    """An independent re-computation of one AR step and one NAR stage from the ORIGINAL tensors (SPEC section 3 and 9:
    prefix-LM, pre-LN, AdaLN, sin/cos interleaved positions scaled by alpha, head j tied to embedding j+2)."""
    from valle.convert import build_model

    original = original_state_dict(vallex=True, bos=True)
    config = tiny_config(original)
    model = build_model(original_to_hf(original, config), config)
    o = original
    ids = torch.tensor([[3, 4, 5, 6]])
    language = torch.tensor([1])
    prompt = torch.randint(0, CODES, (1, 3, QUANTIZERS))

    def positions(x, alpha):
        n, d = x.shape[1], x.shape[2]
        pe = torch.zeros(n, d)
        pos = torch.arange(n, dtype=torch.float32)[:, None]
        div = torch.exp(torch.arange(0, d, 2, dtype=torch.float32) * -(torch.log(torch.tensor(10000.0)) / d))
        pe[:, 0::2], pe[:, 1::2] = torch.sin(pos * div), torch.cos(pos * div)
        return x + alpha * pe

    def block(x, p, mask, stage=None):
        def norm(h, name):
            if stage is None:
                return torch.nn.functional.layer_norm(h, (D,), o[f"{p}{name}.weight"], o[f"{p}{name}.bias"])
            scale, shift = torch.nn.functional.linear(stage, o[f"{p}{name}.project_layer.weight"], o[f"{p}{name}.project_layer.bias"]).split(D, -1)
            return scale * torch.nn.functional.layer_norm(h, (D,), o[f"{p}{name}.norm.weight"], o[f"{p}{name}.norm.bias"]) + shift

        h = norm(x, "norm1")
        qkv = torch.nn.functional.linear(h, o[p + "self_attn.in_proj_weight"], o[p + "self_attn.in_proj_bias"])
        q, k, v = (t.view(1, -1, HEADS, D // HEADS).transpose(1, 2) for t in qkv.chunk(3, -1))
        att = (q @ k.transpose(-1, -2)) / (D // HEADS) ** 0.5
        att = att.masked_fill(~mask, float("-inf")).softmax(-1)
        a = (att @ v).transpose(1, 2).reshape(1, -1, D)
        x = x + torch.nn.functional.linear(a, o[p + "self_attn.out_proj.weight"], o[p + "self_attn.out_proj.bias"])
        h = norm(x, "norm2")
        f = torch.nn.functional.linear(torch.relu(torch.nn.functional.linear(h, o[p + "linear1.weight"], o[p + "linear1.bias"])), o[p + "linear2.weight"], o[p + "linear2.bias"])
        return x + f

    # AR: logits after (BOS, prompt codebook 1)
    x = o["ar_text_embedding.word_embeddings.weight"][ids] + o["ar_language_embedding.word_embeddings.weight"][language]
    x = positions(x, o["ar_text_position.alpha"])
    y_ids = torch.cat([torch.tensor([[CODES + 1]]), prompt[..., 0]], dim=1)
    y = positions(o["ar_audio_embedding.word_embeddings.weight"][y_ids], o["ar_audio_position.alpha"])
    h = torch.cat([x, y], 1)
    n, t = x.shape[1], y.shape[1]
    mask = torch.zeros(n + t, n + t, dtype=torch.bool)
    mask[:, :n] = True
    mask[n:, n:] = torch.tril(torch.ones(t, t, dtype=torch.bool))
    for layer in range(LAYERS):
        h = block(h, f"ar_decoder.layers.{layer}.", mask)
    h = torch.nn.functional.layer_norm(h, (D,), o["ar_decoder.norm.weight"], o["ar_decoder.norm.bias"])
    expected_ar = h[:, -1] @ o["ar_predict_layer.weight"].T
    out = model.generate(ids, prompt_codes=prompt, language_ids=language, do_sample=False, max_new_tokens=1,
                         return_dict_in_generate=True, output_logits=True)
    torch.testing.assert_close(out.logits[0], expected_ar, rtol=1e-5, atol=1e-5)

    # NAR stage for 0-based codebook 2 with the whole prompt and the target's codebooks 0..1 given
    target = torch.randint(0, CODES, (1, 2, QUANTIZERS))
    stage = 2
    x = o["nar_text_embedding.word_embeddings.weight"][ids] + o["nar_language_embedding.word_embeddings.weight"][language]
    x = positions(x, o["nar_text_position.alpha"])
    emb = [o[f"nar_audio_embeddings.{i}.word_embeddings.weight"] for i in range(QUANTIZERS)]
    prompt_sum = sum(emb[i][prompt[..., i]] for i in range(QUANTIZERS))
    target_sum = sum(emb[i][target[..., i]] for i in range(stage))
    y = positions(torch.cat([prompt_sum, target_sum], 1), o["nar_audio_position.alpha"])
    h = torch.cat([x, y], 1)
    full = torch.ones(h.shape[1], h.shape[1], dtype=torch.bool)
    stage_embedding = o[f"nar_stage_embeddings.{stage - 1}.word_embeddings.weight"]
    for layer in range(LAYERS):
        h = block(h, f"nar_decoder.layers.{layer}.", full, stage_embedding)
    scale, shift = torch.nn.functional.linear(stage_embedding, o["nar_decoder.norm.project_layer.weight"], o["nar_decoder.norm.project_layer.bias"]).split(D, -1)
    h = scale * torch.nn.functional.layer_norm(h, (D,), o["nar_decoder.norm.norm.weight"], o["nar_decoder.norm.norm.bias"]) + shift
    expected_nar = h[:, -2:] @ o[f"nar_predict_layers.{stage - 1}.weight"].T

    with torch.no_grad():
        phonemes = model._embed_phonemes("nar", ids, torch.ones_like(ids, dtype=torch.bool), language)
        audio = torch.cat([model._nar_embed_codes(prompt, QUANTIZERS), model._nar_embed_codes(target, stage)], 1)
        logits = model._nar_forward(phonemes, torch.ones_like(ids, dtype=torch.bool), audio,
                                    torch.ones(1, 5, dtype=torch.bool), stage)
    torch.testing.assert_close(logits[:, -2:], expected_nar, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------------------------
# Errors: every refusal names the problem


def test_unknown_keys_missing_keys_and_wrong_shapes_are_listed_together():
    original = original_state_dict()
    config = tiny_config(original)
    broken = dict(original)
    broken["ar_text_prenet.1.weight"] = torch.zeros(D, D, 5)
    del broken["nar_decoder.layers.1.norm2.norm.bias"]
    broken["ar_decoder.layers.0.linear2.bias"] = torch.zeros(D + 1)
    with pytest.raises(ConversionError) as error:
        original_to_hf(broken, config)
    message = str(error.value)
    assert "ar_text_prenet.1.weight" in message and "add_prenet=True" in message
    assert "missing: nar_decoder.layers.1.norm2.norm.bias" in message
    assert "ar_decoder.layers.0.linear2.bias: (17,), expected (16,)" in message


def test_untied_nar_heads_are_refused():
    original = original_state_dict()
    original["nar_predict_layers.0.weight"] = original["nar_predict_layers.0.weight"] + 1
    with pytest.raises(ConversionError, match="share_embedding=False"):
        original_to_hf(original, tiny_config(original))


def test_missing_model_entry_and_bare_state_dicts(tmp_path):
    path = tmp_path / "bare.pt"
    torch.save(original_state_dict(), path)
    with pytest.raises(ConversionError, match="no 'model' entry.*bare state dict"):
        load_original_checkpoint(path)
    assert len(load_original_checkpoint(path, key=None).state_dict) == len(original_state_dict())
    torch.save({"optimizer": {}}, path)
    with pytest.raises(ConversionError, match="no 'model' entry"):
        load_original_checkpoint(path)
    with pytest.raises(FileNotFoundError):
        load_original_checkpoint(tmp_path / "nothing.pt")


class Unsafe:  # stands for the optimizer / sampler objects training scripts pickle
    pass


def test_pickled_objects_need_trust_pickle(tmp_path):
    path = save_checkpoint(tmp_path, original_state_dict(), sampler=Unsafe())
    with pytest.raises(ConversionError, match="--trust-pickle"):
        load_original_checkpoint(path)
    assert load_original_checkpoint(path, trust_pickle=True).state_dict
    # Paths among icefall's hyper-parameters are harmless and load safely.
    from pathlib import PosixPath

    path = save_checkpoint(tmp_path, original_state_dict(), name="paths.pt", exp_dir=PosixPath("exp"), nhead=2)
    assert load_original_checkpoint(path).hyperparameters["nhead"] == 2


def test_stored_hyperparameters_are_checked(tmp_path):
    original = original_state_dict()
    with pytest.raises(ConversionError, match="prefix_mode=0"):
        tiny_config(original, hyperparameters={"prefix_mode": 0})
    assert tiny_config(original, hyperparameters={"prefix_mode": 0}, accept_inexact=True)
    with pytest.raises(ConversionError, match="VALL-F"):
        tiny_config(original, hyperparameters={"model_name": "VALL-F"})
    with pytest.raises(ConversionError, match="--num-heads"):
        config_from_original(original)  # width 16: the head count is unknown
    assert config_from_original(original, hyperparameters={"nhead": 4}).num_attention_heads == 4


def test_cli_reports_errors_without_a_traceback(tmp_path, capsys):
    from valle.cli import main

    path = tmp_path / "bad.pt"
    torch.save({"optimizer": {}}, path)
    assert main(["convert", str(path), str(tmp_path / "out")]) == 2
    assert "no 'model' entry" in capsys.readouterr().err
    good = save_checkpoint(tmp_path, original_state_dict(), nhead=HEADS)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    assert main(["convert", str(good), str(tmp_path / "full")]) == 2
    assert "not empty" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------------
# Tokenizers


def test_k2_symbol_table_gives_lifeitengs_ids(tmp_path):
    path = tmp_path / "unique_text_tokens.k2symbols"
    path.write_text("<eps> 0\nˈ 1\n_ 2\nɐ 3\n, 4\na 5\naɪ 6\n", encoding="utf-8")
    symbols = read_k2_symbols(path)
    vocab = lifeiteng_vocab(symbols)
    # TextTokenCollater: <pad> <bos> <eos> + sorted(SymbolTable.symbols), <eps> included
    assert list(vocab) == ["<pad>", "<bos>", "<eos>", ",", "<eps>", "_", "a", "aɪ", "ɐ", "ˈ"]
    assert list(vocab.values()) == list(range(10))
    tokenizer = tokenizer_from_k2_symbols(path)
    ids = tokenizer("a _ aɪ , ɐ", do_phonemize=False)["input_ids"]
    assert ids == [1, 6, 5, 7, 3, 8, 2]  # <bos> a _ aɪ , ɐ <eos>
    assert tokenizer.pad_token_id == 0 and tokenizer.unk_token is None
    assert (tokenizer.language, tokenizer.word_separator, tokenizer.with_stress, tokenizer.unit) == ("en-us", "_", False, "phone")

    bad = tmp_path / "bad.k2symbols"
    bad.write_text("a 1\nb\n", encoding="utf-8")
    with pytest.raises(ConversionError, match="line 2"):
        read_k2_symbols(bad)


def test_vallex_vocabulary_has_its_70_ids():
    tokenizer = vallex_tokenizer()
    vocab = tokenizer.get_vocab()
    assert len(vocab) == 70 and sorted(vocab.values()) == list(range(70))
    assert [vocab[t] for t in ("[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]")] == [0, 1, 2, 3, 4]
    assert (vocab["!"], vocab["_"], vocab["a"], vocab["ə"], vocab["ˈ"], vocab["↓"]) == (5, 16, 18, 48, 62, 69)
    ids = tokenizer("h ə l o ʊ _ w ɜ ː l d", do_phonemize=False)["input_ids"]
    assert ids[:3] == [24, 48, 28] and 0 in ids  # ː is not in VALL-E X's vocabulary: [UNK], as its tokenizer does
    assert tokenizer.pad_token_id == 3 and tokenizer.bos_token is None and not tokenizer.add_bos_eos


def test_overwrite_leaves_nothing_of_the_previous_conversion(tmp_path):
    from valle.cli import main

    vallex = save_checkpoint(tmp_path, original_state_dict(vallex=True, bos=True), name="x.pt", nhead=HEADS,
                             prefix_mode=1)
    lifeiteng = save_checkpoint(tmp_path, original_state_dict(vallex=False, bos=False), name="l.pt", nhead=HEADS,
                                prefix_mode=1)
    out = tmp_path / "converted"
    assert main(["convert", str(vallex), str(out)]) == 0
    assert (out / "vocab.json").is_file() and "Plachta" in (out / "README.md").read_text()
    assert main(["convert", str(lifeiteng), str(out)]) == 2  # refuses a non-empty folder without --overwrite
    assert main(["convert", str(lifeiteng), str(out), "--overwrite"]) == 0
    # No symbols given: no tokenizer, and none of VALL-E X's files or card is left beside the new weights.
    assert not (out / "vocab.json").exists() and not (out / "processor_config.json").exists()
    card = (out / "README.md").read_text()
    assert "l.pt" in card and "Plachta" not in card and "x.pt" not in card
