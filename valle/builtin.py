"""The model that ships with the package, and the voice prompts that come with a model folder.

`valle synthesize` without `--model` uses the folder `valle/assets/lab-valle/`: a VALL-E model and its processor
(written by `save_pretrained`) plus `prompts/`, where each voice is a recording `<name>.wav` and its transcript
`<name>.txt`. Any model folder may carry such a `prompts/` folder; the first voice by name is the default.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

BUILTIN_MODEL_DIR = Path(__file__).parent / "assets" / "lab-valle"
PROMPTS_SUBFOLDER = "prompts"


@dataclass(frozen=True)
class Prompt:
    """A voice: a recording and what it says."""

    name: str
    audio_path: Path
    text: str


def builtin_model_dir() -> Path:
    """The built-in model's folder; raises `FileNotFoundError` (saying what to do) when it is not installed."""
    folder = Path(BUILTIN_MODEL_DIR)  # looked up at call time: tests and embedders may point it elsewhere
    if not (folder / "config.json").is_file():
        what = "does not exist" if not folder.exists() else "has no config.json"
        raise FileNotFoundError(
            f"The built-in VALL-E model is missing from this installation: {folder} {what}. "
            "Pass --model with a folder written by save_pretrained (model and processor) or a Hub model id."
        )
    return folder


def builtin_prompts(model_dir: str | Path | None = None) -> list[Prompt]:
    """The voices in `<model_dir>/prompts/` (default: the built-in model's), sorted by name; [] without that folder.

    Raises `FileNotFoundError` for a recording without its transcript and `ValueError` for an empty transcript."""
    folder = builtin_model_dir() if model_dir is None else Path(model_dir)
    prompts_dir = folder / PROMPTS_SUBFOLDER
    if not prompts_dir.is_dir():
        return []
    prompts = []
    for audio_path in sorted(p for p in prompts_dir.glob("*.wav") if p.is_file()):
        text_path = audio_path.with_suffix(".txt")
        if not text_path.is_file():
            raise FileNotFoundError(
                f"Voice prompt {audio_path} has no transcript: write what it says into {text_path.name} beside it."
            )
        text = " ".join(text_path.read_text(encoding="utf-8").split())
        if not text:
            raise ValueError(f"The transcript {text_path} of voice prompt {audio_path.name} is empty.")
        prompts.append(Prompt(name=audio_path.stem, audio_path=audio_path, text=text))
    return sorted(prompts, key=lambda prompt: prompt.name)


def default_prompt(model_dir: str | Path | None = None) -> Prompt | None:
    """The first voice by name in `<model_dir>/prompts/` (default: the built-in model's), or None if it has none."""
    prompts = builtin_prompts(model_dir)
    return prompts[0] if prompts else None


def find_prompt(name: str, model_dir: str | Path | None = None) -> Prompt:
    """The voice called `name`; raises `ValueError` naming the voices there are."""
    prompts = builtin_prompts(model_dir)
    folder = builtin_model_dir() if model_dir is None else Path(model_dir)
    if not prompts:
        raise ValueError(
            f"{folder} has no voices ({PROMPTS_SUBFOLDER}/ with <name>.wav and <name>.txt); "
            "give a recording with --prompt-audio and --prompt-text instead of --voice."
        )
    for prompt in prompts:
        if prompt.name == name:
            return prompt
    names = ", ".join(prompt.name for prompt in prompts)
    raise ValueError(f"Unknown voice {name!r}; the voices of {folder} are: {names} (see --list-voices).")
