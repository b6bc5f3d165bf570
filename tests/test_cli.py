"""The `valle` command line: discovery, `valle smoke`, `valle synthesize` (VALL-E, continual, batch)."""

import soundfile as sf
import pytest

from valle.cli import build_parser, main


def test_every_command_is_discovered():
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    assert {"smoke", "synthesize"} <= set(commands)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    from valle.smoke import build_random_bundle

    return build_random_bundle(tmp_path_factory.mktemp("bundle") / "model")


def test_smoke_writes_audio(tmp_path, capsys):
    out = tmp_path / "smoke.wav"
    assert main(["smoke", "--out", str(out), "--bundle-dir", str(tmp_path / "m"), "--max-seconds", "0.2"]) == 0
    audio, rate = sf.read(out)
    assert rate == 24000 and 0 < len(audio) <= int(0.2 * 24000) + 320
    assert "randomly initialised" in capsys.readouterr().out


def test_synthesize_vall_e_mode_and_batch(tmp_path, bundle, capsys):
    from valle.smoke import voiced_signal

    prompt = tmp_path / "prompt.wav"
    sf.write(prompt, voiced_signal(2.0, sampling_rate=16000), 16000)  # another rate: resampled to the codec's
    texts = tmp_path / "texts.txt"
    texts.write_text("Hello there.\n\nSecond line, please.\n")
    code = main([
        "synthesize", "--model", str(bundle), "--text-file", str(texts), "--prompt-audio", str(prompt),
        "--prompt-text", "A prompt.", "--out", str(tmp_path / "out.wav"), "--max-seconds", "0.2", "--seed", "3",
    ])
    assert code == 0
    for index in range(2):
        audio, rate = sf.read(tmp_path / f"out_{index:03d}.wav")
        assert rate == 24000 and len(audio) > 0
    printed = capsys.readouterr().out
    for index in range(2):
        assert f"out_{index:03d}.wav  " in printed  # each WAV, then its spectrogram (prompt above, output below)
        assert f"wrote {tmp_path / f'out_{index:03d}.png'} (spectrogram: prompt above, output below)" in printed
    assert "voice prompt: " in printed and "A prompt." in printed


def test_synthesize_continual_and_errors(tmp_path, bundle, capsys):
    from valle.smoke import voiced_signal

    prompt = tmp_path / "utterance.wav"
    sf.write(prompt, voiced_signal(4.0), 24000)
    out = tmp_path / "continued.wav"
    assert main([
        "synthesize", "--model", str(bundle), "--text", "The whole transcript of the utterance.", "--continual",
        "--prompt-audio", str(prompt), "--out", str(out), "--max-seconds", "0.2", "--greedy",
    ]) == 0
    assert sf.read(out)[0].size > 0
    from .test_spectrogram import read_png

    assert read_png(out.with_suffix(".png").read_bytes()).shape[1] == 300  # the 3 s the model heard, at 100 px/s
    assert main(["synthesize", "--model", str(bundle), "--text", "x y", "--continual", "--prompt-audio", str(prompt),
                 "--prompt-text", "x"]) == 2
    assert "whole transcript" in capsys.readouterr().err
    assert main(["synthesize", "--model", str(tmp_path / "missing"), "--text", "Hi."]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert main(["synthesize", "--model", str(bundle), "--text", "Hi.", "--prompt-text", "x"]) == 2
    assert "valle synthesize: error: --prompt-text needs --prompt-audio" in capsys.readouterr().err
    assert main(["synthesize", "--model", str(bundle), "--text", "   "]) == 2
    assert "--text is empty" in capsys.readouterr().err


def test_synthesize_api_array_prompts_and_cropping(tmp_path, bundle):
    from valle.smoke import voiced_signal
    from valle.synthesis import load_model_and_processor, synthesize

    model, processor = load_model_and_processor(str(bundle), device="cpu")
    heard = []
    original = processor.__class__.__call__

    def spy(self, *args, **kwargs):
        heard.append((len(kwargs["prompt_audio"]), kwargs["sampling_rate"]))
        return original(self, *args, **kwargs)

    prompt = voiced_signal(4.0, sampling_rate=16000)
    processor.__class__.__call__ = spy
    try:
        synthesize(model, processor, ["Hi."], [str(tmp_path / "a.wav")], prompt_audio=prompt, prompt_text="x",
                   sampling_rate=16000, max_new_tokens=3)
        synthesize(model, processor, ["Hi there."], [str(tmp_path / "b.wav")], prompt_audio=prompt, continual=True,
                   sampling_rate=16000, max_new_tokens=3)
    finally:
        processor.__class__.__call__ = original
    assert heard[0] == (64000, 16000)  # the array keeps its own rate (resampled by the processor)
    assert heard[1] == (3 * 24000, 24000)  # cropped to 3 s, already at the codec's rate
    with pytest.raises(ValueError, match="must say exactly"):
        synthesize(model, processor, ["Hi."], [str(tmp_path / "c.wav")], prompt_audio=prompt, prompt_text="x",
                   prompt_seconds=1.0, sampling_rate=16000)
