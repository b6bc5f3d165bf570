"""VallEProcessor: audio in (files, arrays, tensors, any rate), prompts, codes out, save/load, pipeline."""

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from transformers import AutoProcessor, pipeline

from processing_valle import VallEProcessor, load_audio
from tests.utils import tiny_codec, tiny_tokenizer, tiny_valle_model, tiny_waveform


torch.set_num_threads(1)

REPO_ROOT = Path(__file__).resolve().parents[1]
RATE = 24_000
HOP = 320


@pytest.fixture(scope="module")
def processor():
    return VallEProcessor(tiny_tokenizer(), codec=tiny_codec())


@pytest.fixture(scope="module")
def voice_folder(tmp_path_factory):
    """A tiny model, tokenizer and codec saved to one folder, as a user would share them."""
    folder = tmp_path_factory.mktemp("tiny-valle")
    tokenizer = tiny_tokenizer()
    processor = VallEProcessor(tokenizer, codec=tiny_codec())
    model = tiny_valle_model(vocab_size=len(tokenizer), num_codebooks=8, codebook_size=1024)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def prompt_wav(tmp_path_factory):
    path = tmp_path_factory.mktemp("audio") / "prompt.wav"
    sf.write(path, tiny_waveform(1.0, sampling_rate=16_000, seed=3), 16_000)  # not the codec's rate
    return path


# -- audio in ---------------------------------------------------------------------------------------------------------


def test_load_audio_scales_pcm_mixes_channels_and_resamples(tmp_path):
    wave = tiny_waveform(0.5, sampling_rate=RATE)
    pcm = (wave * 32767).astype(np.int16)
    np.testing.assert_allclose(load_audio(pcm, RATE, RATE), wave, atol=1e-4)

    stereo = tiny_waveform(0.5, sampling_rate=RATE, channels=2)  # (channels, samples), second channel quieter
    expected = stereo.mean(axis=0)
    np.testing.assert_allclose(load_audio(stereo, RATE, RATE), expected, atol=1e-6)
    np.testing.assert_allclose(load_audio(torch.from_numpy(stereo.T.copy()), RATE, RATE), expected, atol=1e-6)

    resampled = load_audio(tiny_waveform(1.0, sampling_rate=16_000), 16_000, RATE)
    assert resampled.dtype == np.float32 and resampled.shape == (RATE,)

    path = tmp_path / "stereo.wav"
    sf.write(path, stereo.T, RATE, subtype="PCM_16")  # files are (samples, channels)
    np.testing.assert_allclose(load_audio(str(path), None, RATE), expected, atol=1e-3)
    with open(path, "rb") as handle:  # datasets' Audio(decode=False) layout
        from_bytes = load_audio({"bytes": handle.read(), "path": None}, None, RATE)
    np.testing.assert_array_equal(from_bytes, load_audio(path, None, RATE))
    np.testing.assert_array_equal(load_audio({"array": wave, "sampling_rate": RATE}, None, RATE), wave)


@pytest.mark.parametrize(
    "audio, sampling_rate, error, message",
    [
        (tiny_waveform(0.5), None, ValueError, "pass `sampling_rate`"),
        (np.zeros(0, dtype=np.float32), RATE, ValueError, r"is empty \(0 samples\)"),
        (np.zeros(RATE, dtype=np.float32), RATE, ValueError, "is silent"),
        (np.full(RATE, np.nan, dtype=np.float32), RATE, ValueError, "NaN or infinite"),
        (np.concatenate([tiny_waveform(0.5), [np.inf]]).astype(np.float32), RATE, ValueError, "NaN or infinite"),
        (np.ones((100, 100), dtype=np.float32), RATE, ValueError, "which axis holds the channels"),
        (np.ones(RATE, dtype=np.int64), RATE, TypeError, "int8/int16/int32/uint8 PCM"),
        ([0.1, 0.2, 0.3], RATE, TypeError, "file path, a numpy array"),
    ],
)
def test_bad_audio_is_refused_with_the_argument_named(processor, audio, sampling_rate, error, message):
    with pytest.raises(error, match=message):
        processor.encode_audio(audio if not isinstance(audio, list) else [audio], sampling_rate=sampling_rate)


def test_file_rate_conflict_and_unreadable_files_are_refused(processor, prompt_wav, tmp_path):
    with pytest.raises(ValueError, match="recorded at 16000 Hz but `sampling_rate`=24000"):
        processor.encode_audio(str(prompt_wav), sampling_rate=RATE)
    broken = tmp_path / "broken.wav"
    broken.write_text("not audio")
    with pytest.raises(ValueError, match="could not read"):
        processor.encode_audio(str(broken))


def test_prompts_too_short_to_encode_or_far_too_long_are_refused(processor):
    with pytest.raises(ValueError, match=r"`prompt_audio\[1\]` lasts .* shorter than one codec frame"):
        processor("Hello.", prompt_audio=[tiny_waveform(0.5), tiny_waveform(0.01)], sampling_rate=RATE)
    short_limit = VallEProcessor(processor.tokenizer, codec=processor.codec, max_prompt_seconds=0.5)
    with pytest.raises(ValueError, match=r"lasts 1.0 s, beyond `max_prompt_seconds`=0.5"):
        short_limit("Hello.", prompt_audio=tiny_waveform(1.0), sampling_rate=RATE)


# -- the codec --------------------------------------------------------------------------------------------------------


def test_encode_audio_gives_8_codebooks_at_75_hz_for_any_input_kind(processor, prompt_wav):
    assert (processor.sampling_rate, processor.hop_length, processor.frame_rate, processor.num_codebooks) == (
        RATE, HOP, 75.0, 8,
    )
    wave = tiny_waveform(1.0, seed=5)
    codes = processor.encode_audio(wave, sampling_rate=RATE)
    assert codes.dtype == torch.long and codes.shape == (75, 8)
    assert codes.min() >= 0 and codes.max() < 1024 and codes[:, 0].unique().numel() > 10  # randomised codebooks
    batch = processor.encode_audio([wave, torch.from_numpy(wave[: RATE // 3])], sampling_rate=RATE)
    assert [item.shape[0] for item in batch] == [75, 25]
    torch.testing.assert_close(batch[0], codes)  # the same clip gives the same codes, alone or in a batch
    assert processor.encode_audio(str(prompt_wav)).shape == (75, 8)  # 16 kHz file resampled to 24 kHz


def test_batch_decode_trims_each_item_and_returns_float32_waveforms(processor):
    codes = torch.randint(0, 1024, (2, 6, 8))
    codes[1, 4:] = -100  # what generate() writes past an item's end
    waveforms = processor.batch_decode(codes)
    assert [w.shape for w in waveforms] == [(6 * HOP,), (4 * HOP,)]
    assert all(isinstance(w, np.ndarray) and w.dtype == np.float32 and np.isfinite(w).all() for w in waveforms)
    np.testing.assert_allclose(waveforms[1], processor.batch_decode(codes[1:, :4])[0], atol=1e-6)

    # the generate output: sequence_lengths win over scanning for -100
    from modeling_valle import VallEGenerationOutput

    output = VallEGenerationOutput(sequences=codes, sequence_lengths=torch.tensor([3, 4]))
    assert [w.shape[0] for w in processor.batch_decode(output)] == [3 * HOP, 4 * HOP]
    tensors = processor.batch_decode(codes, return_tensors="pt")
    assert isinstance(tensors[0], torch.Tensor) and tensors[0].dtype == torch.float32

    single = processor.decode(codes[1:])
    assert isinstance(single, torch.Tensor) and single.shape == (4 * HOP,)
    with pytest.raises(ValueError, match="use batch_decode"):
        processor.decode(codes)
    with pytest.raises(ValueError, match="outside \\[0, 1024\\)"):
        processor.batch_decode(torch.full((1, 2, 8), 1024))
    with pytest.raises(ValueError, match="has 4 codebooks; the codec expects 8"):
        processor.batch_decode(torch.zeros(1, 2, 4, dtype=torch.long))


def test_save_audio_writes_wav_files_at_the_codec_rate(processor, tmp_path):
    waveforms = processor.batch_decode(torch.randint(0, 1024, (2, 5, 8)))
    paths = processor.save_audio(waveforms, [tmp_path / "a.wav", tmp_path / "sub" / "b.wav"])
    for path, waveform in zip(paths, waveforms):
        data, rate = sf.read(path)
        assert rate == RATE and data.shape == waveform.shape
    with pytest.raises(ValueError, match="2 waveforms for 1 paths"):
        processor.save_audio(waveforms, [tmp_path / "c.wav"])


# -- text + prompt -> model inputs ------------------------------------------------------------------------------------


def test_call_builds_the_valle_prompt(processor):
    tokenizer = processor.tokenizer
    prompt_a, prompt_b = tiny_waveform(1.0, seed=1), tiny_waveform(0.4, seed=2)
    inputs = processor(
        text=["Hello world.", "Would you like some tea?"],
        prompt_audio=[prompt_a, prompt_b],
        prompt_text=["Yes, please.", "The lazy dog!"],
        sampling_rate=RATE,
    )
    assert set(inputs) == {"input_ids", "attention_mask", "prompt_codes", "prompt_attention_mask"}
    # input_ids = <bos> prompt phonemes _ target phonemes <eos>, right-padded
    expected = tokenizer(tokenizer.phonemize("Yes, please.") + " _ " + tokenizer.phonemize("Hello world."),
                         do_phonemize=False)["input_ids"]
    assert inputs["input_ids"][0, : len(expected)].tolist() == expected
    lengths = inputs["attention_mask"].sum(-1).tolist()
    assert lengths[0] == len(expected) and inputs["input_ids"][0, lengths[0]:].eq(tokenizer.pad_token_id).all()
    # prompt codes: the clip's codes, zero-padded, with a mask of real frames
    assert inputs["prompt_codes"].shape == (2, 75, 8) and inputs["prompt_codes"].dtype == torch.long
    assert inputs["prompt_attention_mask"].sum(-1).tolist() == [75, 30]
    torch.testing.assert_close(inputs["prompt_codes"][1, :30], processor.encode_audio(prompt_b, sampling_rate=RATE))
    assert inputs["prompt_codes"][1, 30:].eq(0).all()


def test_one_prompt_serves_every_text_and_continual_mode_needs_no_transcript(processor):
    prompt = tiny_waveform(0.5, seed=4)
    shared = processor(["Hello.", "Yes, please."], prompt_audio=prompt, prompt_text="Hi there.", sampling_rate=RATE)
    assert torch.equal(shared["prompt_codes"][0], shared["prompt_codes"][1])
    # VALL-E-continual: the whole transcript as text, its first seconds as the prompt, no prompt_text
    continual = processor("Hello world.", prompt_audio=prompt, sampling_rate=RATE)
    assert continual["input_ids"][0].tolist() == processor.tokenizer("Hello world.")["input_ids"]
    text_only = processor("Hello world.")
    assert set(text_only) == {"input_ids", "attention_mask"}


def test_call_errors_name_the_argument(processor):
    prompt = tiny_waveform(0.5)
    with pytest.raises(ValueError, match="`prompt_text` was given without `prompt_audio`"):
        processor("Hello.", prompt_text="Hi.")
    with pytest.raises(ValueError, match="`prompt_audio` has 2 items for 3 texts"):
        processor(["a b", "c d", "e f"], prompt_audio=[prompt, prompt], sampling_rate=RATE)
    with pytest.raises(ValueError, match=r"`prompt_text\[0\]` is empty"):
        processor("Hello.", prompt_audio=prompt, prompt_text=" ", sampling_rate=RATE)
    with pytest.raises(ValueError, match=r"`text\[1\]` = '\.\.\.' yields no phonemes"):
        processor(["Hello.", "..."])
    with pytest.raises(TypeError, match="`text` must be a string or a non-empty list"):
        processor([])
    with pytest.raises(ValueError, match="PyTorch tensors only"):
        processor("Hello.", return_tensors="np")


def test_language_ids_are_emitted_when_the_model_has_language_embeddings(processor):
    multilingual = VallEProcessor(processor.tokenizer, codec=processor.codec, language_ids={"en-us": 0, "fr-fr": 2})
    assert multilingual(["Hello.", "Hi."])["language_ids"].tolist() == [0, 0]
    french = multilingual("Bonjour.", language="fr-fr")
    assert french["language_ids"].tolist() == [2]
    assert french["input_ids"][0].tolist() != multilingual("Bonjour.")["input_ids"][0].tolist()
    with pytest.raises(ValueError, match="`language`='de' has no id"):
        multilingual("Hallo.", language="de")
    assert "language_ids" not in processor("Hello.")


# -- saving, loading, Auto classes, pipeline --------------------------------------------------------------------------


def test_local_codec_is_saved_with_the_processor_and_reloads_identically(processor, tmp_path):
    processor.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "processor_config.json").read_text())
    assert config["codec_name_or_path"] is None and config["codec_subfolder"] == "codec"
    assert config["auto_map"]["AutoProcessor"] == "processing_valle.VallEProcessor"
    assert (tmp_path / "codec" / "model.safetensors").exists() and (tmp_path / "vocab.json").exists()

    reloaded = AutoProcessor.from_pretrained(tmp_path)
    assert type(reloaded) is VallEProcessor
    wave = tiny_waveform(0.5, seed=8)
    torch.testing.assert_close(reloaded.encode_audio(wave, RATE), processor.encode_audio(wave, RATE))
    assert reloaded("Hello world.")["input_ids"].tolist() == processor("Hello world.")["input_ids"].tolist()


def test_hub_codec_is_saved_as_a_reference_and_loaded_only_when_audio_is_used(processor, tmp_path):
    lazy = VallEProcessor(processor.tokenizer, codec_name_or_path="facebook/encodec_24khz", codec_bandwidth=6.0)
    assert lazy("Hello.")["input_ids"].shape[0] == 1  # text needs no codec, so nothing was downloaded
    lazy.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "processor_config.json").read_text())
    assert config["codec_name_or_path"] == "facebook/encodec_24khz" and config["codec_bandwidth"] == 6.0
    assert not (tmp_path / "codec").exists()
    with pytest.raises(OSError, match="could not load its codec from facebook/encodec_24khz"):
        VallEProcessor.from_pretrained(tmp_path).encode_audio(tiny_waveform(0.5), RATE)  # offline in tests

    with pytest.raises(ValueError, match="has no codec"):
        VallEProcessor(processor.tokenizer, codec_name_or_path=None).sampling_rate
    with pytest.raises(ValueError, match=r"`codec_bandwidth`=12.0 is not one of the codec's bandwidths"):
        VallEProcessor(processor.tokenizer, codec=processor.codec, codec_bandwidth=12.0)
    with pytest.raises(TypeError, match="`codec` must be a transformers EncodecModel"):
        VallEProcessor(processor.tokenizer, codec="facebook/encodec_24khz")


def test_text_and_prompt_wav_to_wav_file_through_processor_and_model(voice_folder, prompt_wav, tmp_path):
    from modeling_valle import VallEForConditionalCodecGeneration

    processor = VallEProcessor.from_pretrained(voice_folder)
    model = VallEForConditionalCodecGeneration.from_pretrained(voice_folder)
    inputs = processor(["Hello world.", "Yes, please."], prompt_audio=str(prompt_wav), prompt_text="The lazy dog!")
    generated = model.generate(**inputs, do_sample=True, top_k=50, max_new_tokens=12, return_dict_in_generate=True)
    waveforms = processor.batch_decode(generated)
    lengths = generated.sequence_lengths.tolist()
    assert [w.shape[0] for w in waveforms] == [n * HOP for n in lengths]
    assert [w.shape[0] for w in processor.batch_decode(generated.sequences)] == [n * HOP for n in lengths]
    paths = processor.save_audio(waveforms, [tmp_path / "0.wav", tmp_path / "1.wav"])
    assert sf.info(paths[0]).samplerate == RATE and sf.info(paths[0]).frames == lengths[0] * HOP


def test_pipeline_text_to_speech_with_a_voice_prompt(voice_folder, prompt_wav):
    synthesiser = pipeline("text-to-speech", model=str(voice_folder))
    assert isinstance(synthesiser.processor, VallEProcessor)
    voice = {"prompt_audio": str(prompt_wav), "prompt_text": "The lazy dog!"}
    speech = synthesiser("Hello world.", preprocess_params=voice, generate_kwargs={"max_new_tokens": 12})
    assert speech["sampling_rate"] == RATE
    audio = speech["audio"]
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert 0 < audio.shape[0] <= 12 * HOP and audio.shape[0] % HOP == 0

    array_voice = {"prompt_audio": tiny_waveform(0.5), "sampling_rate": RATE}  # continual mode, array input
    outputs = synthesiser(["Hello.", "Yes."], preprocess_params=array_voice, generate_kwargs={"max_new_tokens": 5})
    assert len(outputs) == 2 and all(out["audio"].shape[0] % HOP == 0 for out in outputs)


def test_folder_runs_with_trust_remote_code_where_the_project_is_not_installed(voice_folder, prompt_wav, tmp_path):
    # A fresh interpreter that cannot import this project's modules: only the folder's own copies can serve.
    script = textwrap.dedent(
        f"""
        import importlib.abc, sys
        BLOCKED = {{"processing_valle", "modeling_valle", "configuration_valle", "valle", "tests"}}
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ImportError(f"{{name}} is not installed here")
        sys.meta_path.insert(0, Block())
        sys.path = [p for p in sys.path if p not in ("", {str(REPO_ROOT)!r})]

        import soundfile as sf
        import torch
        from transformers import AutoProcessor, pipeline

        torch.set_num_threads(1)
        folder = {str(voice_folder)!r}
        processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
        assert type(processor).__module__.startswith("transformers_modules"), type(processor).__module__
        synthesiser = pipeline("text-to-speech", model=folder, trust_remote_code=True)
        voice = {{"prompt_audio": {str(prompt_wav)!r}, "prompt_text": "The lazy dog!"}}
        speech = synthesiser("Hello world.", preprocess_params=voice, generate_kwargs={{"max_new_tokens": 8}})
        processor.save_audio(speech["audio"], {str(tmp_path / "remote.wav")!r})
        print("frames", sf.info({str(tmp_path / "remote.wav")!r}).frames)
        """
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules")}
    env.pop("PYTHONPATH", None)
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    frames = int(result.stdout.split("frames")[-1])
    assert 0 < frames <= 8 * HOP and frames % HOP == 0


def test_processor_alone_loads_a_model_folder_without_asking_for_remote_code(voice_folder):
    # Importing only processing_valle must be enough: the tokenizer's loading reads config.json (with its auto_map)
    # through AutoConfig, which would otherwise ask on stdin whether to run the folder's code.
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(REPO_ROOT)!r})
        from processing_valle import VallEProcessor
        assert "modeling_valle" not in sys.modules
        print(type(VallEProcessor.from_pretrained({str(voice_folder)!r}).tokenizer).__name__)
        """
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                            stdin=subprocess.DEVNULL, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "VallEPhonemeTokenizer"
    assert "custom code" not in result.stdout + result.stderr


class PackageStyleCodec(torch.nn.Module):
    """Speaks the API of the original `encodec` package's EncodecModel (encodec/model.py), around the tiny codec."""

    __module__ = "encodec.model"  # how the processor recognises a model of that package

    def __init__(self, inner):
        super().__init__()
        from types import SimpleNamespace

        self.inner, self.sample_rate, self.channels, self.name = inner, RATE, 1, "unset"
        self.target_bandwidths, self.bandwidth, self.frame_rate = [1.5, 3.0, 6.0], None, 75
        self.encoder = SimpleNamespace(ratios=[8, 5, 4, 2])
        self.quantizer = SimpleNamespace(bins=1024, get_num_quantizers_for_bandwidth=lambda rate, kbps: 8)

    def set_target_bandwidth(self, bandwidth):
        self.bandwidth = bandwidth

    def encode(self, x):
        return [(self.inner.encode(x, bandwidth=self.bandwidth).audio_codes[0], None)]

    def decode(self, frames):
        return self.inner.decode(frames[0][0][None], [None]).audio_values


def test_an_encodec_package_model_works_like_the_transformers_one(processor):
    package_style = VallEProcessor(processor.tokenizer, codec=PackageStyleCodec(processor.codec))
    wave = tiny_waveform(0.5, seed=6)
    codes = package_style.encode_audio(wave, RATE)
    torch.testing.assert_close(codes, processor.encode_audio(wave, RATE))
    np.testing.assert_allclose(package_style.batch_decode(codes[None])[0], processor.batch_decode(codes[None])[0])
    with pytest.raises(ValueError, match="not one of the package's pretrained models"):
        package_style.save_pretrained("unused")
    missing = VallEProcessor(processor.tokenizer, codec_name_or_path="encodec:encodec_model_24khz")
    if importlib.util.find_spec("encodec") is None:
        with pytest.raises(ImportError, match="needs the optional `encodec` package"):
            missing.encode_audio(wave, RATE)


def test_cross_lingual_prompt_gets_per_phoneme_language_ids():
    from processing_valle import VallEProcessor
    from tests.utils import tiny_codec, tiny_tokenizer, tiny_waveform

    processor = VallEProcessor(tokenizer=tiny_tokenizer(), codec=tiny_codec(), language_ids={"en-us": 0, "fr-fr": 1})
    same = processor(text="Hello world.", prompt_audio=tiny_waveform(1.0), sampling_rate=24000, prompt_text="Tea.")
    assert same["language_ids"].tolist() == [0]
    inputs = processor(
        text=["Hello world.", "Hi."], prompt_audio=tiny_waveform(1.0), sampling_rate=24000,
        prompt_text="Merci.", prompt_language="fr-fr",
    )
    languages = inputs["language_ids"]
    assert languages.shape == inputs["input_ids"].shape
    prompt_only = processor(text="Merci.", language="fr-fr")["input_ids"]
    # BOS, then the prompt transcript and the word separator in French, then the text in English.
    prompt_phonemes = prompt_only.shape[1] - 2
    for row in languages.tolist():
        assert row[0] == 0 and row[1 : 2 + prompt_phonemes] == [1] * (prompt_phonemes + 1)
        assert set(row[2 + prompt_phonemes :]) == {0}
