"""The built-in model location, a model folder's voices (prompts/), and `valle synthesize` without --model."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import valle.builtin
from valle.builtin import Prompt, builtin_model_dir, builtin_prompts, default_prompt, find_prompt
from valle.cli import main

from .test_spectrogram import read_png


def write_voice(prompts_dir: Path, name: str, text: str, seconds: float, seed: int, rate: int = 24_000):
    from tests.utils import tiny_waveform

    prompts_dir.mkdir(parents=True, exist_ok=True)
    sf.write(prompts_dir / f"{name}.wav", tiny_waveform(seconds, sampling_rate=rate, seed=seed), rate)
    (prompts_dir / f"{name}.txt").write_text(text + "\n", encoding="utf-8")


@pytest.fixture(scope="module")
def builtin_folder(tmp_path_factory):
    """A stand-in for valle/assets/lab-valle: a random model bundle with two voices."""
    from valle.smoke import build_random_bundle

    folder = build_random_bundle(tmp_path_factory.mktemp("assets") / "lab-valle")
    write_voice(folder / "prompts", "bob", "Would you like some tea?", 0.6, seed=2, rate=16_000)
    write_voice(folder / "prompts", "alice", "Hello world, this is a test.", 1.0, seed=1)
    return folder


@pytest.fixture
def installed(builtin_folder, monkeypatch):
    monkeypatch.setattr(valle.builtin, "BUILTIN_MODEL_DIR", builtin_folder)
    return builtin_folder


def test_missing_builtin_model_says_what_to_do(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(valle.builtin, "BUILTIN_MODEL_DIR", tmp_path / "lab-valle")
    with pytest.raises(FileNotFoundError, match="missing from this installation.*does not exist.*--model"):
        builtin_model_dir()
    (tmp_path / "lab-valle").mkdir()
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        builtin_prompts()
    assert main(["synthesize", "--text", "Hi.", "--out", str(tmp_path / "x.wav")]) == 2
    error = capsys.readouterr().err
    assert "built-in VALL-E model is missing from this installation" in error and "--model" in error
    assert main(["synthesize", "--list-voices"]) == 2
    assert not (tmp_path / "x.wav").exists()


def test_prompts_are_read_sorted_with_transcripts(installed, tmp_path):
    prompts = builtin_prompts()
    assert [p.name for p in prompts] == ["alice", "bob"]
    assert prompts[0] == Prompt("alice", installed / "prompts" / "alice.wav", "Hello world, this is a test.")
    assert default_prompt() == prompts[0] == default_prompt(installed)
    assert find_prompt("bob").text == "Would you like some tea?"
    with pytest.raises(ValueError, match="Unknown voice 'carol'.*alice, bob"):
        find_prompt("carol")
    # Another folder: no prompts/ -> no voices; a recording without transcript or with an empty one is refused.
    assert builtin_prompts(tmp_path) == [] and default_prompt(tmp_path) is None
    with pytest.raises(ValueError, match="has no voices"):
        find_prompt("alice", tmp_path)
    (tmp_path / "prompts").mkdir()
    sf.write(tmp_path / "prompts" / "x.wav", np.zeros(100, dtype=np.float32), 24_000)
    with pytest.raises(FileNotFoundError, match="no transcript.*x.txt"):
        builtin_prompts(tmp_path)
    (tmp_path / "prompts" / "x.txt").write_text("  \n")
    with pytest.raises(ValueError, match="empty"):
        builtin_prompts(tmp_path)


def test_list_voices(installed, capsys):
    assert main(["synthesize", "--list-voices"]) == 0
    out = capsys.readouterr().out
    assert out.index("alice") < out.index("bob")
    assert '"Hello world, this is a test."' in out and '"Would you like some tea?"' in out
    assert main(["synthesize", "--list-voices", "--model", str(installed.parent)]) == 0  # a folder without voices
    assert "has no voices" in capsys.readouterr().out


def test_synthesize_defaults_to_the_builtin_model_and_its_first_voice(installed, tmp_path, capsys):
    out = tmp_path / "out" / "x.wav"
    assert main(["synthesize", "--text", "Hello there.", "--out", str(out), "--max-seconds", "0.2", "--seed", "0"]) == 0
    printed = capsys.readouterr().out
    assert f"model: {installed}  (built-in)" in printed
    assert "voice: alice" in printed and "Hello world, this is a test." in printed
    audio, rate = sf.read(out)
    assert rate == 24_000 and len(audio) > 0
    png = out.with_suffix(".png")
    assert f"wrote {out}  " in printed
    assert f"wrote {png} (spectrogram: prompt above, output below)" in printed
    pixels = read_png(png.read_bytes())
    # Two panels (the 1 s prompt above, the output below) at 100 px/s: as wide as the longer, the prompt.
    assert pixels.shape == (2 * 160 + 2 + 8, 100, 3)


def test_voice_picks_another_prompt_and_no_spectrogram(installed, tmp_path, capsys, monkeypatch):
    import valle.synthesis

    heard = []
    original = valle.synthesis.synthesize
    monkeypatch.setattr(valle.synthesis, "synthesize",
                        lambda *args, **kwargs: heard.append(kwargs) or original(*args, **kwargs))
    out = tmp_path / "bob.wav"
    assert main(["synthesize", "--voice", "bob", "--text", "Hi.", "--out", str(out), "--max-seconds", "0.1",
                 "--no-spectrogram"]) == 0
    assert heard[0]["prompt_audio"] == str(installed / "prompts" / "bob.wav")
    assert heard[0]["prompt_text"] == "Would you like some tea?"
    assert heard[0]["spectrogram_paths"] is None
    printed = capsys.readouterr().out
    assert "voice: bob" in printed and ".png" not in printed
    assert out.exists() and not out.with_suffix(".png").exists()


def test_voice_errors_exit_2_with_a_clear_message(installed, tmp_path, capsys):
    prompt = tmp_path / "mine.wav"
    sf.write(prompt, np.random.default_rng(0).uniform(-0.3, 0.3, 24_000).astype(np.float32), 24_000)
    cases = [
        (["--voice", "carol"], "Unknown voice 'carol'"),
        (["--voice", "bob", "--prompt-audio", str(prompt)], "--voice and --prompt-audio"),
        (["--continual"], "--continual needs --prompt-audio"),
        (["--voice", "bob", "--prompt-seconds", "0.5"], "--prompt-seconds cuts --prompt-audio"),
        (["--voice", "bob", "--model", str(installed.parent)], "has no voices"),
        ([], "--text TEXT or --text-file FILE"),
    ]
    for extra, words in cases:
        text = [] if not extra else ["--text", "Hi."]
        assert main(["synthesize", *text, *extra, "--out", str(tmp_path / "x.wav")]) == 2, extra
        assert words in capsys.readouterr().err, extra
    assert not (tmp_path / "x.wav").exists()


def test_own_prompt_and_a_model_without_voices_keep_working(builtin_folder, tmp_path, capsys, monkeypatch):
    """--model with a folder that has no prompts/ and no --prompt-audio: no prompt, as before (this model, without an
    audio BOS token, then refuses, saying why). --prompt-audio with the built-in model: that recording, not a voice."""
    import shutil

    plain = tmp_path / "plain"
    shutil.copytree(builtin_folder, plain, ignore=shutil.ignore_patterns("prompts"))
    out = tmp_path / "plain.wav"
    assert main(["synthesize", "--model", str(plain), "--text", "Hi.", "--out", str(out), "--max-seconds", "0.1"]) == 2
    assert "voice prompt: none" in capsys.readouterr().out
    assert not out.exists()

    monkeypatch.setattr(valle.builtin, "BUILTIN_MODEL_DIR", builtin_folder)
    from tests.utils import tiny_waveform

    prompt = tmp_path / "mine.wav"
    sf.write(prompt, tiny_waveform(0.5, sampling_rate=24_000, seed=5), 24_000)
    assert main(["synthesize", "--text", "Hi.", "--prompt-audio", str(prompt), "--prompt-text", "Mine.",
                 "--out", str(tmp_path / "own.wav"), "--max-seconds", "0.1"]) == 0
    printed = capsys.readouterr().out
    assert f"voice prompt: {prompt}" in printed and "voice: alice" not in printed
    assert read_png((tmp_path / "own.png").read_bytes()).shape[0] == 2 * 160 + 2 + 8


def test_package_data_ships_the_builtin_folder():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["valle"]
    relative = valle.builtin.BUILTIN_MODEL_DIR.relative_to(Path(valle.builtin.__file__).parent)
    for name in ("config.json", "model.safetensors", "README.md", "modeling_valle.py", "prompts/alice.wav",
                 "prompts/alice.txt", "codec/config.json", "codec/model.safetensors"):
        assert any((relative / name).match(pattern) for pattern in patterns), name
