"""Text (+ a voice prompt) -> WAV files, through the public API: processor -> generate -> codec.

One function serves `valle synthesize` (any model folder or Hub id) and `valle smoke` (a randomly
initialised model built on the spot).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch


@dataclass
class SynthesisResult:
    paths: list[str]
    seconds: list[float]
    reached_cap: list[bool]
    spectrogram_paths: list[str] = field(default_factory=list)  # one PNG per WAV when asked for, else empty


def load_model_and_processor(model_name_or_path: str, device: str | None = None, dtype: str = "float32"):
    """Loads `VallEForConditionalCodecGeneration` and `VallEProcessor` from one folder or Hub id."""
    from modeling_valle import VallEForConditionalCodecGeneration
    from processing_valle import VallEProcessor

    if not os.path.isdir(model_name_or_path):
        if os.path.exists(model_name_or_path):
            raise ValueError(f"--model {model_name_or_path!r} is a file; give the folder written by save_pretrained or a Hub id.")
        if model_name_or_path.startswith((".", os.sep, "~")) or model_name_or_path.count("/") > 1:
            raise ValueError(
                f"--model {model_name_or_path!r}: no such folder. Give a folder written by save_pretrained "
                "(model and processor) or a Hub id such as 'user/valle-model'."
            )
    torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    model = VallEForConditionalCodecGeneration.from_pretrained(model_name_or_path, dtype=torch_dtype).eval()
    processor = VallEProcessor.from_pretrained(model_name_or_path)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    processor.codec.to(device)  # the codec decodes every output: keep it beside the model
    return model.to(device), processor


def crop_prompt(audio, seconds: float | None, processor, sampling_rate: int | None = None):
    """The first `seconds` of a prompt (VALL-E-continual uses the first 3 s of the utterance)."""
    from processing_valle import load_audio

    samples = load_audio(audio, sampling_rate=sampling_rate, target_sampling_rate=processor.sampling_rate)
    if seconds is not None:
        samples = samples[: int(seconds * processor.sampling_rate)]
    return samples


def synthesize(
    model,
    processor,
    texts: list[str],
    out_paths: list[str],
    prompt_audio=None,
    prompt_text: str | None = None,
    continual: bool = False,
    prompt_seconds: float | None = None,
    sampling_rate: int | None = None,
    language: str | None = None,
    seed: int | None = None,
    batch_size: int = 8,
    spectrogram_paths: list[str] | None = None,
    **generation_kwargs,
) -> SynthesisResult:
    """Says each text in the prompt's voice and writes one WAV per text.

    VALL-E mode: `prompt_audio` (~3 s) with its transcript `prompt_text`. VALL-E-continual (`continual=True`):
    each text is the WHOLE transcript of the prompt recording, of which the first `prompt_seconds` (default 3)
    are given; the model continues the utterance. `sampling_rate` is the rate of an array/tensor prompt
    (files carry their own).

    `spectrogram_paths` (one per text): also write a PNG of the log-mel spectrograms there, the prompt as the model
    heard it (cropped, at the codec's rate) above the output (see `valle.spectrogram.write_spectrogram_png`).
    """
    if len(texts) != len(out_paths):
        raise ValueError(f"got {len(texts)} texts but {len(out_paths)} output paths; give one path per text.")
    if not texts:
        raise ValueError("nothing to synthesise: give at least one text.")
    if spectrogram_paths is not None and len(spectrogram_paths) != len(texts):
        raise ValueError(f"got {len(texts)} texts but {len(spectrogram_paths)} spectrogram paths; give one per text.")
    if continual and prompt_audio is None:
        raise ValueError("VALL-E-continual continues a recording: pass --prompt-audio (the utterance to continue).")
    if continual and prompt_text is not None:
        raise ValueError(
            "In VALL-E-continual the text is the whole transcript of the prompt recording; do not pass --prompt-text."
        )
    if prompt_seconds is not None and prompt_text is not None:
        raise ValueError(
            "--prompt-seconds would cut the prompt recording but --prompt-text describes all of it: the transcript "
            "must say exactly what the prompt audio says. Trim the recording yourself and transcribe the trimmed "
            "part, or use --continual (the text is then the whole transcript)."
        )
    if prompt_audio is not None and (continual or prompt_seconds is not None):
        prompt_audio = crop_prompt(prompt_audio, prompt_seconds or 3.0, processor, sampling_rate)
        sampling_rate = processor.sampling_rate  # the crop is resampled to the codec's rate
    shown_prompt = None  # the prompt panel of the spectrograms
    if spectrogram_paths is not None and prompt_audio is not None:
        from processing_valle import load_audio

        shown_prompt = load_audio(prompt_audio, sampling_rate, processor.sampling_rate, name="prompt_audio")
    if seed is not None:
        torch.manual_seed(seed)

    device = next(model.parameters()).device
    paths, durations, capped = [], [], []
    for start in range(0, len(texts), batch_size):
        chunk = texts[start : start + batch_size]
        inputs = processor(
            text=chunk,
            prompt_audio=prompt_audio,
            prompt_text=None if prompt_text is None else [prompt_text] * len(chunk),
            sampling_rate=sampling_rate,
            language=language,
        ).to(device)
        output = model.generate(**inputs, return_dict_in_generate=True, **generation_kwargs)
        waveforms = processor.batch_decode(output)
        chunk_paths = [str(Path(p)) for p in out_paths[start : start + batch_size]]
        for path in chunk_paths:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        processor.save_audio(waveforms, chunk_paths)
        if spectrogram_paths is not None:
            from valle.spectrogram import write_spectrogram_png

            for waveform, png in zip(waveforms, spectrogram_paths[start : start + batch_size]):
                samples = _as_numpy(waveform)
                if samples.size == 0:  # no frame was generated: an empty (dark) panel rather than an error
                    samples = np.zeros(1, dtype=np.float32)
                panels = [] if shown_prompt is None else [(shown_prompt, processor.sampling_rate)]
                write_spectrogram_png(png, panels + [(samples, processor.sampling_rate)])
        paths += chunk_paths
        durations += [len(w) / processor.sampling_rate for w in waveforms]
        capped += (~output.finished_with_eos).tolist()
    return SynthesisResult(
        paths=paths, seconds=durations, reached_cap=capped,
        spectrogram_paths=[str(Path(p)) for p in spectrogram_paths] if spectrogram_paths is not None else [],
    )


def _as_numpy(waveform) -> np.ndarray:
    if isinstance(waveform, torch.Tensor):
        return waveform.detach().cpu().float().numpy()
    return np.asarray(waveform, dtype=np.float32)
