"""The offline speech lab: corpus, codec training step, judges, report helpers (tiny and fast)."""

import json
import re

import numpy as np
import pytest
import torch

from valle.lab.codec import (
    MultiResolutionMelLoss,
    ResidualVQTrainer,
    decode_codes,
    normalize_input,
    small_encodec_config,
)
from valle.lab.corpus import CorpusConfig, build_corpus, decode_audio, plan_corpus, plan_speakers
from valle.lab.espeak import ENGLISH_VOICES, EspeakSynthesizer, EspeakVoice
from valle.lab.judges import CHARACTERS, _encode_labels, build_processor, edit_distance, error_rates, recognizer_config
from valle.lab.report import _auc, markdown_table
from valle.lab.sentences import generate_sentences, normalize_transcript


# ------------------------------------------------------------------------------ sentences
def test_sentences_are_deterministic_distinct_and_speakable():
    first = generate_sentences(300, seed=1)
    assert first == generate_sentences(300, seed=1)
    assert first != generate_sentences(300, seed=2)
    assert len(set(first)) == 300
    for sentence in first:
        assert re.fullmatch(r"[A-Za-z][A-Za-z' ,]*[.?!]", sentence), sentence
        assert 3 <= len(sentence.split()) <= 24
    # Varied: many different first words and sentence endings.
    assert len({s.split()[0] for s in first}) > 20
    assert {s[-1] for s in first} == {".", "?", "!"}


def test_sentence_arguments_are_checked():
    with pytest.raises(ValueError, match="count"):
        generate_sentences(0)
    with pytest.raises(ValueError, match="min_words"):
        generate_sentences(5, min_words=10, max_words=4)


def test_normalize_transcript():
    assert normalize_transcript("Did  Anna's DOG run, today?") == "did anna's dog run today"


# ------------------------------------------------------------------------------ espeak
def test_voice_settings_are_validated():
    with pytest.raises(ValueError, match="English voices"):
        EspeakVoice("en-gb", "f3")
    with pytest.raises(ValueError, match="rate"):
        EspeakVoice("en-us", "f3", rate=20)
    with pytest.raises(ValueError, match="pitch"):
        EspeakVoice("en-us", "f3", pitch=101)


def test_espeak_synthesises_distinct_voices():
    synthesizer = EspeakSynthesizer(seed=0)
    assert synthesizer.sample_rate == 22050
    text = "The quiet farmer carried seven baskets to the market."
    female = synthesizer.synthesize(text, EspeakVoice("en-us", "f3", pitch=70))
    male = synthesizer.synthesize(text, EspeakVoice("en-gb-scotland", "m3", rate=140, pitch=30))
    for waveform in (female, male):
        assert waveform.dtype == np.float32
        assert 1.5 < len(waveform) / 22050 < 8.0  # ten words at 140-175 words per minute
        assert 0.05 < np.abs(waveform).max() <= 1.0
    assert len(male) > len(female)  # slower rate, longer audio
    with pytest.raises(ValueError, match="non-empty"):
        synthesizer.synthesize("  ", EspeakVoice("en-us", "f3"))


# ------------------------------------------------------------------------------ corpus
def test_default_plan_holds_out_voices_and_sentences():
    config = CorpusConfig()
    plan = plan_corpus(config)
    speakers = {split: {v.speaker_id for v, _ in rows} for split, rows in plan.items()}
    variants = {split: {v.variant for v, _ in rows} for split, rows in plan.items()}
    texts = {split: {t for _, sentences in rows for t in sentences} for split, rows in plan.items()}
    assert [len(speakers[s]) for s in ("train", "validation", "test")] == [160, 16, 24]
    for a, b in (("train", "validation"), ("train", "test"), ("validation", "test")):
        assert not speakers[a] & speakers[b]
        assert not variants[a] & variants[b]
        assert not texts[a] & texts[b]
    assert len(texts["train"]) == 160 * 40
    assert len(variants["test"]) == config.test_variants
    assert {v.language for v, _ in plan["train"]} == set(ENGLISH_VOICES)
    assert plan_speakers(config) == plan_speakers(CorpusConfig())


def test_corpus_config_is_checked():
    with pytest.raises(ValueError, match="heldout_utterances_per_speaker"):
        CorpusConfig(heldout_utterances_per_speaker=1)
    with pytest.raises(ValueError, match="no variants for train"):
        CorpusConfig(validation_variants=50, test_variants=50)


TINY = CorpusConfig(seed=3, train_speakers=1, validation_speakers=1, test_speakers=1,
                    train_utterances_per_speaker=2, heldout_utterances_per_speaker=2,
                    validation_variants=1, test_variants=1)


def test_tiny_corpus_is_deterministic_with_disjoint_speakers(tmp_path, monkeypatch):
    first = build_corpus(TINY, str(tmp_path / "a"), progress=False)
    # Built as one Arrow table per row (large corpora are built in blocks): the same dataset.
    monkeypatch.setattr("valle.lab.corpus.ROWS_PER_TABLE", 1)
    second = build_corpus(TINY, str(tmp_path / "b"), workers=2, progress=False)
    assert {split: len(first[split]) for split in first} == {"train": 2, "validation": 2, "test": 2}
    plan = plan_corpus(TINY)
    for split in ("train", "validation", "test"):
        assert first[split]["text"] == plan[split][0][1]  # exact transcripts
        assert first[split]["audio"] == second[split]["audio"]  # bit-identical audio
        assert first[split].features["audio"].sampling_rate == 24000
        assert first[split].features["audio"].decode is False
        for example in first[split]:
            waveform, rate = decode_audio(example["audio"])
            assert rate == 24000 and waveform.ndim == 1
            assert abs(len(waveform) / 24000 - example["duration"]) < 1e-3
            assert np.abs(waveform).max() > 0.05
            assert example["id"].startswith(f"{split}/{example['speaker_id']}/")
    speakers = [set(first[s]["speaker_id"]) for s in ("train", "validation", "test")]
    assert len(set.union(*speakers)) == 3 and all(len(s) == 1 for s in speakers)
    summary = json.load(open(tmp_path / "a" / "lab_corpus.json"))
    assert summary["config"]["seed"] == 3 and summary["sampling_rate"] == 24000
    with pytest.raises(FileExistsError, match="not empty"):
        build_corpus(TINY, str(tmp_path / "a"), progress=False)


def test_decode_audio_rejects_bad_cells():
    with pytest.raises(ValueError, match="bytes"):
        decode_audio(np.zeros(10))


# ------------------------------------------------------------------------------ codec
def _tiny_codec():
    from transformers import EncodecModel

    config = small_encodec_config(num_filters=4, hidden_size=16, codebook_dim=16, codebook_size=32)
    return EncodecModel(config)


def test_small_codec_has_the_real_codecs_shape():
    config = small_encodec_config()
    assert config.sampling_rate == 24000 and config.frame_rate == 75
    assert config.codebook_size == 1024
    from transformers import EncodecModel

    model = EncodecModel(config)
    assert model.quantizer.get_num_quantizers_for_bandwidth(6.0) == 8
    assert 2_000_000 < sum(p.numel() for p in model.parameters()) < 4_000_000


def test_vq_training_step_updates_the_models_own_buffers():
    torch.manual_seed(0)
    model = _tiny_codec()
    vq = ResidualVQTrainer(model)
    vq.mark_uninitialized()
    assert not vq.initialized
    audio = torch.randn(4, 1, 320 * 40) * 0.1
    normalized, scale = normalize_input(audio)
    with torch.no_grad():
        vq.initialize(model.encoder(normalized), generator=torch.Generator().manual_seed(0))
    assert vq.initialized
    codebook = model.quantizer.layers[0].codebook
    before = (codebook.embed.clone(), codebook.embed_avg.clone(), codebook.cluster_size.clone())

    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    mel = MultiResolutionMelLoss(fft_sizes=(256, 512))
    audio = torch.randn(4, 1, 320 * 40) * 0.1  # a new batch: k-means saw the previous one
    normalized, scale = normalize_input(audio)
    embeddings = model.encoder(normalized)
    quantized, commitment, codes = vq.quantize(embeddings, num_quantizers=8)
    reconstruction = model.decoder(quantized)[..., : audio.shape[-1]] * scale
    loss = torch.nn.functional.l1_loss(reconstruction, audio) + mel(reconstruction, audio) + commitment
    assert torch.isfinite(loss) and commitment > 0
    optimizer.zero_grad()
    loss.backward()
    encoder_grad = sum(p.grad.abs().sum() for p in model.encoder.parameters() if p.grad is not None)
    assert encoder_grad > 0  # straight-through: the encoder learns through the quantizer
    optimizer.step()
    assert codes.shape == (8, 4, 40)
    for old, new in zip(before, (codebook.embed, codebook.embed_avg, codebook.cluster_size)):
        assert not torch.equal(old, new)  # EMA wrote into the EncodecModel's buffers

    # The stock (inference) quantizer picks exactly the codes the training step picked.
    with torch.no_grad():
        embeddings = model.encoder(normalized)
        _, _, trainer_codes = vq.quantize(embeddings, num_quantizers=8, update=False)
        # The tiny config's 32-code books hold 5 bits: 3 kbps is 8 of them.
        stock_codes = model.quantizer.encode(embeddings, bandwidth=3.0)
    assert torch.equal(trainer_codes, stock_codes)


def test_trained_codec_saves_as_a_plain_encodec_model(tmp_path):
    from transformers import EncodecModel

    torch.manual_seed(0)
    model = _tiny_codec().eval()
    vq = ResidualVQTrainer(model)
    with torch.no_grad():
        vq.initialize(model.encoder(normalize_input(torch.randn(4, 1, 320 * 40))[0]))
    model.save_pretrained(tmp_path)
    loaded = EncodecModel.from_pretrained(tmp_path).eval()
    audio = torch.randn(1, 1, 320 * 30) * 0.1
    with torch.no_grad():
        a = model.encode(audio, bandwidth=6.0)
        b = loaded.encode(audio, bandwidth=6.0)
    assert torch.equal(a.audio_codes, b.audio_codes)
    assert len(a.audio_codes.unique()) > 1  # not the all-zero codebooks of a fresh model
    waveform = decode_codes(loaded, a.audio_codes[0])
    assert waveform.shape == (1, 1, 320 * 30)
    assert abs(float(waveform.pow(2).mean().sqrt()) - 0.08) < 0.04  # decoded at TARGET_RMS
    with pytest.raises(ValueError, match="batch, codebooks, frames"):
        decode_codes(loaded, a.audio_codes[0, 0])


def test_export_for_processor_needs_no_scales_and_ignores_input_level():
    from valle.lab.codec import export_for_processor

    torch.manual_seed(0)
    model = _tiny_codec().eval()
    with pytest.raises(ValueError, match="bias"):
        export_for_processor(model)  # a fresh first convolution has a bias: level-dependent codes
    with torch.no_grad():
        model.encoder.layers[0].conv.bias.zero_()
        ResidualVQTrainer(model).initialize(model.encoder(normalize_input(torch.randn(4, 1, 320 * 40))[0]))
    exported = export_for_processor(model)
    assert exported.config.normalize is False
    audio = torch.randn(1, 1, 320 * 30) * 0.1
    with torch.no_grad():
        reference = model.encode(audio, bandwidth=3.0).audio_codes
        for gain in (0.2, 1.0, 5.0):
            codes = exported.encode(audio * gain, bandwidth=3.0).audio_codes
            assert (codes == reference).float().mean() > 0.99
        decoded = exported.decode(reference, [None]).audio_values  # what VallEProcessor does
    assert float(decoded.pow(2).mean().sqrt()) == pytest.approx(0.08, rel=0.05)
    with pytest.raises(ValueError, match="already has normalize=False"):
        export_for_processor(exported)


def test_vallE_processor_loads_the_exported_lab_codec(tmp_path):
    from processing_valle import VallEProcessor
    from tests.utils import tiny_tokenizer
    from valle.lab.codec import export_for_processor

    torch.manual_seed(0)
    model = _tiny_codec().eval()
    with torch.no_grad():
        model.encoder.layers[0].conv.bias.zero_()
        ResidualVQTrainer(model).initialize(model.encoder(normalize_input(torch.randn(4, 1, 320 * 40))[0]))
    export_for_processor(model).save_pretrained(tmp_path / "codec")
    processor = VallEProcessor(tiny_tokenizer(), codec_name_or_path=str(tmp_path / "codec"), codec_bandwidth=3.0)
    assert processor.sampling_rate == 24000 and processor.frame_rate == 75
    waveform = (np.random.default_rng(0).standard_normal(24000) * 0.05).astype(np.float32)
    codes = processor.encode_audio(waveform, sampling_rate=24000)
    assert codes.shape == (75, 8)
    decoded = processor.batch_decode([codes])[0]
    assert decoded.shape == (24000,) and 0.04 < float(np.sqrt(np.mean(decoded**2))) < 0.12


def test_save_fp16_halves_the_file_and_loads_as_float32(tmp_path):
    from safetensors import safe_open
    from transformers import EncodecModel

    from valle.lab.artifacts import save_fp16

    model = _tiny_codec().eval()
    size = save_fp16(model, str(tmp_path))
    with safe_open(str(tmp_path / "model.safetensors"), "pt") as handle:
        assert all(handle.get_tensor(k).dtype == torch.float16 for k in handle.keys())
    assert next(model.parameters()).dtype == torch.float32  # the caller's model is left as it was
    loaded = EncodecModel.from_pretrained(tmp_path)
    assert next(loaded.parameters()).dtype == torch.float32
    assert size < 0.6 * sum(p.numel() * 4 for p in model.state_dict().values())


def test_initialize_needs_enough_vectors():
    vq = ResidualVQTrainer(_tiny_codec())
    with pytest.raises(ValueError, match="at least 64 vectors"):
        vq.initialize(torch.randn(1, 16, 10))


# ------------------------------------------------------------------------------ judges
def test_error_rates():
    assert edit_distance("kitten", "sitting") == 3
    rates = error_rates(["The cat sat.", "a dog"], ["the cat sad", "a dog"])
    assert rates["wer"] == pytest.approx(1 / 5)
    assert rates["cer"] == pytest.approx(1 / (len("the cat sat") + len("a dog")))
    with pytest.raises(ValueError, match="one hypothesis per reference"):
        error_rates(["a"], [])


def test_recognizer_processor_and_tiny_ctc_step():
    from transformers import Wav2Vec2ForCTC

    processor = build_processor()
    ids = processor.tokenizer("hello world").input_ids
    assert processor.tokenizer.decode(ids, group_tokens=False) == "hello world"
    assert ids == _encode_labels(processor, "Hello, world!")  # training labels = tokenizer ids
    assert processor.tokenizer.pad_token_id == 0 and len(processor.tokenizer) == len(CHARACTERS)
    model = Wav2Vec2ForCTC(recognizer_config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                             intermediate_size=64, conv_dim=[16] * 4))
    inputs = processor([np.random.randn(16000).astype(np.float32)], sampling_rate=16000, return_tensors="pt")
    labels = torch.tensor([ids])
    loss = model(inputs.input_values, labels=labels).loss
    assert torch.isfinite(loss) and loss > 0
    assert model(inputs.input_values).logits.shape[1] == 48  # about 50 frames per second (x320 minus kernel edges)


def test_speaker_judge_tells_voices_apart():
    pytest.importorskip("resemblyzer", reason="the lab extra: pip install -e '.[lab]' && pip install --no-deps resemblyzer")
    from valle.lab.judges import SpeakerSimilarityJudge

    synthesizer = EspeakSynthesizer(seed=0)
    voice_a = EspeakVoice("en-us", "f2", pitch=70)
    voice_b = EspeakVoice("en-gb-scotland", "m7", pitch=25, rate=140)
    a1 = synthesizer.synthesize("The brave sailor painted a small wooden boat near the harbour.", voice_a)
    a2 = synthesizer.synthesize("Did those quiet children find the golden key last night?", voice_a)
    b1 = synthesizer.synthesize("Did those quiet children find the golden key last night?", voice_b)
    judge = SpeakerSimilarityJudge()
    same = judge.similarity(a1, a2, 22050)
    different = judge.similarity(a1, b1, 22050)
    assert same > different + 0.1
    assert judge.similarity(a1, a1, 22050) == pytest.approx(1.0, abs=1e-4)


# ------------------------------------------------------------------------------ report, CLI
def test_auc_and_table():
    assert _auc([0.9, 0.8], [0.1, 0.2]) == 1.0
    assert _auc([0.5], [0.5]) == 0.5
    report = {
        "judges_on_ground_truth": {"cer": 0.05, "wer": 0.1, "speaker_similarity_same_speaker": 0.9,
                                   "speaker_similarity_different_speakers": 0.6, "speaker_similarity_auc": 0.99},
        "judges_on_bad_audio_white_noise_0db": {"cer": 0.6, "wer": 0.9, "similarity_to_clean_original": 0.5},
        "codec_round_trip": {"6kbps": {"codebooks": 8, "cer": 0.1, "wer": 0.2, "similarity_to_original": 0.8,
                                       "log_mel_distance": 0.4}},
    }
    table = markdown_table(report)
    assert "| codec resynthesis, 6kbps (8 codebooks) | 0.100 | 0.200 | 0.800 | 0.400 |" in table
    assert "AUC 0.990" in table


def test_cli_report_without_models_says_what_to_run(tmp_path, capsys):
    from valle.cli import main

    assert main(["lab", "report", "--dir", str(tmp_path)]) == 2
    assert "valle lab codec" in capsys.readouterr().err


# ------------------------------------------------------------------------------ codebook statistics
def test_codebook_statistics_find_what_predicts_a_codebook():
    from valle.lab.codes import codebook_statistics, markdown_table as codes_table

    rng = np.random.default_rng(0)
    utterances = []
    for _ in range(200):
        first = np.repeat(rng.integers(0, 16, size=20), 5)          # held for 5 frames: the frame before tells it
        copied = (first + 3) % 16                                    # a function of codebook 1
        noise = rng.integers(0, 16, size=len(first))                 # independent of everything
        utterances.append(np.stack([first, copied, noise], axis=1).tolist())
    stats = codebook_statistics(utterances, codebook_size=16)
    first, copied, noise = stats["nats"]
    assert stats["utterances"] == {"train": 100, "test": 100} and stats["frames"]["test"] == 100 * 100
    assert first["unigram"] == pytest.approx(np.log(16), abs=0.05)
    assert first["given_last_frame"] < 0.5 * first["unigram"] and "given_first" not in first
    assert copied["given_first"] < 0.1 and copied["given_previous"] < 0.1
    assert noise["given_first"] > noise["unigram"] - 0.05 and noise["given_previous"] > noise["unigram"] - 0.05
    assert noise["codes_used"] == 16
    assert "| 2 | 16 |" in codes_table(stats)

    with pytest.raises(ValueError, match="codebook_size"):
        codebook_statistics(utterances, codebook_size=8)
    with pytest.raises(ValueError, match="at least 2 utterances"):
        codebook_statistics(utterances[:1], codebook_size=16)
    with pytest.raises(ValueError, match="held_out_fraction"):
        codebook_statistics(utterances, codebook_size=16, held_out_fraction=1.0)


def test_cli_codes_without_data_says_what_to_run(tmp_path, capsys):
    from valle.cli import main

    assert main(["lab", "codes", "--dir", str(tmp_path)]) == 2
    assert "valle lab tts" in capsys.readouterr().err
