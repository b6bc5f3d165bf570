"""The lab VALL-E recipe (decoder-only codec stage, decoder merge, prompt choice, built-in bundle) and the lab report."""

import json
import os

import pytest
import torch

from tests.test_lab import TINY
from tests.utils import tiny_valle_config
from valle.lab.codec import ResidualVQTrainer, learning_rate_at, small_encodec_config, train_codec
from valle.lab.corpus import build_corpus


@pytest.fixture(scope="module")
def tiny_lab(tmp_path_factory):
    lab = tmp_path_factory.mktemp("lab")
    build_corpus(TINY, str(lab / "corpus"), progress=False)
    return lab


def test_decoder_only_stage_keeps_every_code(tiny_lab, tmp_path):
    from transformers import EncodecModel

    torch.manual_seed(0)
    codec = EncodecModel(small_encodec_config())
    with torch.no_grad():  # codebooks as if k-means had run (k-means itself is tested in test_lab)
        for layer in ResidualVQTrainer(codec).layers:
            layer.embed.copy_(torch.randn_like(layer.embed))
            layer.embed_avg.copy_(layer.embed)
            layer.cluster_size.fill_(1.0)
        codec.encoder.layers[0].conv.bias.zero_()  # as train_codec keeps it
    checkpoint = tmp_path / "checkpoint.pt"
    torch.save({"model": codec.state_dict(), "step": 300}, checkpoint)
    before = {name: value.clone() for name, value in codec.state_dict().items()}

    trained = train_codec(str(tiny_lab / "corpus"), str(tmp_path / "decoder"), max_steps=2, batch_size=2,
                          checkpoint_every=1000, log=lambda line: None, decoder_only_from=str(checkpoint))
    after = trained.state_dict()
    frozen = [name for name in before if name.startswith(("encoder.", "quantizer."))]
    assert frozen and all(torch.equal(before[name], after[name]) for name in frozen)
    assert any(not torch.equal(before[name], after[name]) for name in before if name.startswith("decoder."))
    audio = torch.randn(1, 1, 24000) * 0.1
    with torch.no_grad():
        assert torch.equal(codec.eval().encode(audio, bandwidth=6.0).audio_codes,
                           trained.eval().encode(audio, bandwidth=6.0).audio_codes)
    assert os.path.isfile(tmp_path / "decoder" / "model" / "config.json")

    fresh = EncodecModel(small_encodec_config())
    torch.save({"model": fresh.state_dict(), "step": 10}, tmp_path / "early.pt")
    with pytest.raises(ValueError, match="before its codebooks were initialised"):
        train_codec(str(tiny_lab / "corpus"), str(tmp_path / "early"), max_steps=1,
                    decoder_only_from=str(tmp_path / "early.pt"), log=lambda line: None)
    with pytest.raises(FileNotFoundError, match="valle lab codec"):
        train_codec(str(tiny_lab / "corpus"), str(tmp_path / "missing"), max_steps=1,
                    decoder_only_from=str(tmp_path / "none.pt"), log=lambda line: None)


def test_codec_learning_rate_is_constant_then_anneals_over_the_last_steps(tmp_path):
    rates = [learning_rate_at(step, 1e-3, max_steps=100, decay_steps=40, final_fraction=0.05) for step in range(101)]
    assert rates[:61] == [1e-3] * 61
    assert all(later < earlier for earlier, later in zip(rates[60:], rates[61:]))
    assert rates[80] == pytest.approx(1e-3 * (0.05 + 0.95 * 0.5))
    assert rates[100] == pytest.approx(5e-5)
    assert learning_rate_at(10, 1e-3, max_steps=100, decay_steps=0, final_fraction=0.05) == 1e-3
    with pytest.raises(ValueError, match="decay_steps=200"):
        train_codec(str(tmp_path), str(tmp_path / "out"), max_steps=100, decay_steps=200, log=lambda line: None)


def test_merge_decoders_takes_each_decoder_from_its_run(tmp_path):
    from modeling_valle import VallEForConditionalCodecGeneration
    from valle.lab.tts import merge_decoders

    config = tiny_valle_config()
    torch.manual_seed(0)
    VallEForConditionalCodecGeneration(config).save_pretrained(tmp_path / "ar")
    torch.manual_seed(1)
    VallEForConditionalCodecGeneration(config).save_pretrained(tmp_path / "nar")
    merged = merge_decoders(str(tmp_path / "ar"), str(tmp_path / "nar")).state_dict()
    ar = VallEForConditionalCodecGeneration.from_pretrained(tmp_path / "ar").state_dict()
    nar = VallEForConditionalCodecGeneration.from_pretrained(tmp_path / "nar").state_dict()
    assert set(merged) == set(ar)
    for name, value in merged.items():
        assert torch.equal(value, nar[name] if name.startswith("nar_") else ar[name]), name
    assert any(name.startswith("nar_") for name in merged) and any(name.startswith("ar_") for name in merged)

    config.hidden_size = config.hidden_size * 2
    config.intermediate_size = config.intermediate_size * 2
    VallEForConditionalCodecGeneration(config).save_pretrained(tmp_path / "other")
    with pytest.raises(ValueError, match="different configs"):
        merge_decoders(str(tmp_path / "ar"), str(tmp_path / "other"))


def test_train_command_runs_valle_train_with_one_decoder(tmp_path):
    from valle.lab.tts import RECIPE, has_checkpoint, train_command

    command = train_command("nar", "data", "config.json", "processor", str(tmp_path / "nar"), seed=3,
                            steps=10, resume=False)
    assert command[1:4] == ["-m", "valle", "train"]
    assert command[command.index("--mode") + 1] == "nar" and "--resume" not in command
    assert command[command.index("--max_steps") + 1] == "10"
    assert command[command.index("--max-tokens") + 1] == str(RECIPE["max_tokens"])
    assert command.index("data") < command.index("--") < command.index("--output_dir")
    assert not has_checkpoint(str(tmp_path / "nar"))
    os.makedirs(tmp_path / "nar" / "checkpoint-5")
    assert has_checkpoint(str(tmp_path / "nar"))
    assert "--resume" in train_command("ar", "d", "c", "p", str(tmp_path / "nar"), seed=0, steps=1, resume=True)
    assert "--join-same-speaker" not in command
    joined = train_command("ar", "d", "c", "p", "o", seed=0, steps=1, resume=False, join_same_speaker=1.0)
    assert joined[joined.index("--join-same-speaker") + 1] == "1.0" and joined.index("--join-same-speaker") < \
        joined.index("d")  # a `valle train` option, before DATA
    assert command[command.index("--learning_rate") + 1] == str(RECIPE["learning_rate"])
    lower = train_command("ar", "d", "c", "p", "o", seed=0, steps=1, resume=False, learning_rate=2e-4)
    assert lower[lower.index("--learning_rate") + 1] == "0.0002"


def test_bundle_has_fp16_weights_prompts_and_a_card(tiny_lab, tmp_path):
    from modeling_valle import VallEForConditionalCodecGeneration
    from processing_valle import VallEProcessor
    from valle.lab.tts import build_bundle, pick_prompts
    from valle.smoke import build_random_bundle

    with pytest.raises(FileNotFoundError, match="valle lab tts"):
        build_bundle(str(tiny_lab), str(tmp_path / "bundle"))
    build_random_bundle(tiny_lab / "tts" / "model")
    chosen = pick_prompts(str(tiny_lab / "corpus"), count=1, min_seconds=0.1, max_seconds=60)
    assert len(chosen) == 1 and chosen[0]["id"].startswith("test/")
    with pytest.raises(ValueError, match="only 1 held-out speakers"):
        pick_prompts(str(tiny_lab / "corpus"), count=2, min_seconds=0.1, max_seconds=60)

    # The lab's codec, then its decoder-only stage: the bundle carries the latter (same codes, better audio).
    from transformers import EncodecModel

    for seed, stage in ((0, "codec"), (1, "codec_decoder")):
        torch.manual_seed(seed)
        codec = EncodecModel(small_encodec_config())
        codec.encoder.layers[0].conv.bias.data.zero_()  # as train_codec keeps it (scale-free export)
        codec.save_pretrained(tiny_lab / stage / "model")
    summary = build_bundle(str(tiny_lab), str(tmp_path / "bundle"), training={"steps": 7}, prompts=1)
    bundle = tmp_path / "bundle"
    assert summary["training"] == {"steps": 7}
    (prompt,) = summary["prompts"]
    assert (bundle / "prompts" / f"{prompt['name']}.wav").is_file()
    assert (bundle / "prompts" / f"{prompt['name']}.txt").read_text().strip() == prompt["text"].strip()
    assert json.load(open(bundle / "config.json"))["dtype"] == "float32"
    model = VallEForConditionalCodecGeneration.from_pretrained(bundle)
    assert next(model.parameters()).dtype == torch.float32
    original_model = VallEForConditionalCodecGeneration.from_pretrained(tiny_lab / "tts" / "model")
    for (name, a), b in zip(model.state_dict().items(), original_model.state_dict().values()):
        torch.testing.assert_close(a, b.half().float(), rtol=0, atol=0, msg=name)
    processor = VallEProcessor.from_pretrained(bundle)
    from valle.lab.codec import load_for_processor

    decoder_stage = load_for_processor(str(tiny_lab / "codec_decoder" / "model")).state_dict()
    for name, value in processor.codec.state_dict().items():
        torch.testing.assert_close(value, decoder_stage[name].half().float(), rtol=0, atol=0, msg=name)
    card = (bundle / "README.md").read_text()
    assert "VALL-E lab" in card and "espeak" in card
    assert f"`{prompt['name']}`" in card and "Not recorded for this checkpoint" not in card.split("### Data")[1]
    assert summary["sampling"]["top_k"] == 50 and "sampling top-k 50" in card  # the trained model's default

    # A default sampling of its own: written to generation_config.json, on the card; results sampled otherwise
    # are refused before anything is replaced.
    summary = build_bundle(str(tiny_lab), str(bundle), prompts=1, sampling={"top_k": 10})
    assert json.load(open(bundle / "generation_config.json"))["top_k"] == 10 and summary["sampling"]["top_k"] == 10
    assert "the AR's default is sampling top-k 10, temperature 1.0" in (bundle / "README.md").read_text()
    before = sorted(path.name for path in bundle.iterdir())
    results = {"table": [], "settings": {"sampling": {**summary["sampling"], "top_k": 50}}}
    with pytest.raises(ValueError, match="measured with AR sampling top-k 50.*bundle would default to "
                                         "sampling top-k 10"):
        build_bundle(str(tiny_lab), str(bundle), prompts=1, sampling={"top_k": 10}, results=results)
    with pytest.raises(ValueError, match="top_k must be >= 0"):
        build_bundle(str(tiny_lab), str(bundle), prompts=1, sampling={"top_k": -1})
    with pytest.raises(ValueError, match="temperature must be positive"):
        build_bundle(str(tiny_lab), str(bundle), prompts=1, sampling={"temperature": 0.0})
    with pytest.raises(ValueError, match=r"\['beam_width'\] are not sampling options"):
        build_bundle(str(tiny_lab), str(bundle), prompts=1, sampling={"beam_width": 4})
    assert sorted(path.name for path in bundle.iterdir()) == before


def test_report_scores_codebook_one_alone_and_every_bandwidth(tmp_path):
    pytest.importorskip("resemblyzer", reason="the lab extra: pip install -e '.[lab]' && pip install --no-deps resemblyzer")
    from transformers import EncodecModel, Wav2Vec2ForCTC

    from valle.lab.corpus import CorpusConfig
    from valle.lab.judges import build_processor, recognizer_config
    from valle.lab.report import build_report, markdown_table

    config = CorpusConfig(seed=3, train_speakers=1, validation_speakers=1, test_speakers=2,
                          train_utterances_per_speaker=2, heldout_utterances_per_speaker=2,
                          validation_variants=1, test_variants=2)
    build_corpus(config, str(tmp_path / "corpus"), progress=False)
    torch.manual_seed(0)
    codec = EncodecModel(small_encodec_config())
    with torch.no_grad():
        for layer in ResidualVQTrainer(codec).layers:
            layer.embed.copy_(torch.randn_like(layer.embed))
        codec.encoder.layers[0].conv.bias.zero_()  # as train_codec keeps it
    codec.save_pretrained(tmp_path / "codec")
    build_processor(str(tmp_path / "judge"))
    Wav2Vec2ForCTC(recognizer_config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=64, conv_dim=[16] * 4)).save_pretrained(tmp_path / "judge")

    report = build_report(str(tmp_path / "corpus"), str(tmp_path / "codec"), str(tmp_path / "judge"),
                          str(tmp_path / "report"), per_speaker=2, log=lambda line: None)
    rows = report["codec_round_trip"]
    assert list(rows) == ["0.75kbps", "1.5kbps", "3kbps", "6kbps"]
    assert [row["codebooks"] for row in rows.values()] == [1, 2, 4, 8]
    # Random codebooks: every extra codebook changes the audio, so the rows measure different things.
    assert len({row["log_mel_distance"] for row in rows.values()}) == 4
    assert report["utterances"] == 4 and report["judges_on_ground_truth"]["pairs"] == {"same": 2, "different": 4}
    assert json.load(open(tmp_path / "report" / "report.json"))["codec_round_trip"] == rows
    assert "| codec resynthesis, 0.75kbps (1 codebooks) |" in markdown_table(report)


def test_recipe_init_from_checks_the_model_and_its_vocabulary(tiny_lab, tmp_path):
    import shutil

    from valle.lab.tts import run_recipe, training_summary
    from valle.smoke import build_random_bundle

    with pytest.raises(FileNotFoundError, match="not a model folder"):
        run_recipe(str(tiny_lab), init_from=str(tmp_path / "nothing"), log=lambda line: None)
    # 0 steps keeps a decoder of --init-from: without one, or with nothing left to train, refused at once.
    with pytest.raises(ValueError, match="needs --init-from"):
        run_recipe(str(tiny_lab), steps={"nar": 0}, log=lambda line: None)
    with pytest.raises(ValueError, match="learning rate must be positive"):
        run_recipe(str(tiny_lab), learning_rate=0.0, log=lambda line: None)
    with pytest.raises(ValueError, match="trains nothing"):
        run_recipe(str(tiny_lab), steps={"ar": 0, "nar": 0}, init_from=str(tmp_path / "nothing"), log=lambda line: None)
    model_dir = tmp_path / "model"
    build_random_bundle(str(model_dir))
    lab = tmp_path / "lab"
    (lab / "tts").mkdir(parents=True)
    os.symlink(tiny_lab / "corpus", lab / "corpus")
    # A processor whose vocabulary is not the model's: refused before any data is prepared.
    shutil.copytree(model_dir, lab / "tts" / "processor")
    config = json.loads((model_dir / "config.json").read_text())
    config["vocab_size"] += 1
    (model_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="phoneme vocabulary"):
        run_recipe(str(lab), init_from=str(model_dir), log=lambda line: None)
    # Same size, other ids: refused too.
    config["vocab_size"] -= 1
    (model_dir / "config.json").write_text(json.dumps(config))
    vocab_path = lab / "tts" / "processor" / "vocab.json"
    vocab = json.loads(vocab_path.read_text())
    first, second = sorted(vocab, key=vocab.get)[-2:]
    vocab[first], vocab[second] = vocab[second], vocab[first]
    vocab_path.write_text(json.dumps(vocab))
    with pytest.raises(ValueError, match="phoneme vocabulary"):
        run_recipe(str(lab), init_from=str(model_dir), log=lambda line: None)
    assert not (lab / "tts" / "data").exists()

    (lab / "tts" / "init_from.json").write_text(json.dumps({"init_from": "valle/assets/lab-valle"}))
    summary = training_summary(str(lab))
    assert summary["recipe"].endswith("--init-from valle/assets/lab-valle")
    assert summary["initialised from"] == {"init_from": "valle/assets/lab-valle"}
    (lab / "tts" / "options.json").write_text(
        json.dumps({"steps": {"ar": 10, "nar": 0}, "join_same_speaker": 1.0, "seed": 2}))
    summary = training_summary(str(lab))
    assert summary["recipe"].startswith(f"valle lab tts --dir {lab} (seed 2; the AR alone)")
    assert summary["recipe"].endswith("--init-from valle/assets/lab-valle, --join-same-speaker 1.0, --nar-steps 0")
    assert summary["NAR"] == "kept from the initial model" and summary["joined rows per utterance (AR)"] == 1.0
    assert summary["peak learning rate"] == 1e-3  # recorded before the option existed: the recipe's
    (lab / "tts" / "options.json").write_text(
        json.dumps({"steps": {"ar": 10, "nar": 0}, "join_same_speaker": 1.0, "seed": 5, "learning_rate": 2e-4}))
    summary = training_summary(str(lab))
    assert summary["peak learning rate"] == 2e-4
    assert summary["recipe"].endswith("--init-from valle/assets/lab-valle, --learning-rate 0.0002, "
                                      "--join-same-speaker 1.0, --nar-steps 0")


def test_bundle_card_lists_the_stages_voices_and_lab_results():
    from valle.lab.tts import bundle_card_texts, training_stages

    first = {"recipe": "valle lab tts --dir runs/lab (seed 0; AR and NAR as two processes sharing the CPU)",
             "AR steps": 2400, "AR epochs": 4.2, "NAR steps": 1500}
    second = {"recipe": "valle lab tts --dir runs/b (seed 1; the AR alone), --init-from runs/b/init, "
                        "--join-same-speaker 1.0, --nar-steps 0", "AR steps": 500, "NAR": "kept from the initial model",
              "joined rows per utterance (AR)": 1.0,
              "initialised from": {"init_from": "runs/b/init", "its_training": first}}
    assert training_stages(second) == [first, {k: v for k, v in second.items() if k != "initialised from"}]
    assert training_stages(None) == []
    summary = {"table": [{"title": "VALL-E", "wer": 70.0, "cer": 34.1, "spk": 0.858, "seeds": [0],
                          "wer_spread": 0, "cer_spread": 0, "spk_spread": 0}],
               "settings": {"lab": True, "data": "lab corpus /somewhere/local, test split", "seeds": [0],
                            "sampling": {"do_sample": True, "top_k": 10, "temperature": 1.0}},
               "test_set": {"utterances": 16, "speakers": 16, "hours": 0.03}}
    texts = bundle_card_texts(24.2, 160, [{"name": "voice-a"}, {"name": "voice-b"}], second, summary)
    assert "| 1 | `valle lab tts --dir runs/lab --seed 0` | 2400 (4.2 epochs) | 1500 | none |" in texts["about"]
    assert ("| 2 | `valle lab tts --dir runs/b --seed 1 --init-from runs/b/init --join-same-speaker 1.0 "
            "--nar-steps 0` | 500 | kept | 1.0 |") in texts["about"]
    assert "`voice-a`, `voice-b`" in texts["about"] and "not a natural-sounding voice" in texts["about"]
    assert "160 training speakers, 24.2 h" in texts["data_description"]
    assert "stage before" in texts["base_model_description"]
    assert "| system | WER | CER | SPK |" in texts["results_markdown"] and "/somewhere" not in texts["results_markdown"]
    assert "| VALL-E | 70.0 | 34.1 | 0.858 |" in texts["results_markdown"]
    assert "sampled rows (sampling top-k 10, temperature 1.0) averaged over 1 seeds" in texts["results_markdown"]
    # One stage and no evaluation: no base model, no results.
    texts = bundle_card_texts(6.0, 160, [{"name": "voice-a"}], first)
    assert texts["base_model_description"] is None and "results_markdown" not in texts
