"""`valle synthesize`: text (+ a voice prompt) -> WAV (+ a spectrogram PNG), with the built-in model or any VALL-E
folder or Hub id; a model folder's `prompts/` supplies the default voice."""

from __future__ import annotations

import os
from pathlib import Path

NAME = "synthesize"
HELP = "Say a text in a built-in voice or that of a ~3 s recording; write a WAV file and its spectrogram (PNG)."


def add_sampling_flags(group) -> None:
    """The AR's sampling flags, shared by `valle synthesize` and `valle evaluate` (read back by `sampling_kwargs`)."""
    group.add_argument("--top-k", type=int, default=None,
                       help="sample among the k likeliest codes (default: the model's generation config; "
                            "10 for the built-in model, 50 for a new one)")
    group.add_argument("--top-p", type=float, default=None,
                       help="nucleus sampling: the fewest codes holding this probability (default: the model's; 1 = off)")
    group.add_argument("--temperature", type=float, default=None,
                       help="below 1 sharpens the AR's distribution, above 1 flattens it (default: the model's; 1)")
    group.add_argument("--repetition-aware", action="store_true", help="VALL-E 2 repetition-aware sampling")


def sampling_kwargs(args) -> dict:
    """`generate()` keyword arguments for the flags of `add_sampling_flags` that were given."""
    names = ("top_k", "top_p", "temperature")
    kwargs = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    if args.repetition_aware:
        kwargs["repetition_aware_sampling"] = True
    return kwargs


def add_sampling_arguments(parser):
    group = parser.add_argument_group("sampling (AR decoder; the NAR is always greedy)")
    group.add_argument("--greedy", action="store_true", help="greedy AR decoding instead of sampling")
    add_sampling_flags(group)
    group.add_argument("--max-seconds", type=float, default=None, help="stop each output after this much audio")
    group.add_argument("--seed", type=int, default=None, help="seed for reproducible sampling")


def generation_kwargs(args, frame_rate: float) -> dict:
    kwargs = sampling_kwargs(args)
    if args.greedy:
        kwargs["do_sample"] = False
    if args.max_seconds is not None:
        if args.max_seconds <= 0:
            raise ValueError("--max-seconds must be positive")
        kwargs["max_new_tokens"] = max(1, int(args.max_seconds * frame_rate))
    return kwargs


def add_arguments(parser):
    parser.add_argument(
        "--model", default=None,
        help="a folder written by save_pretrained, or a Hub model id (default: the built-in model, "
        "valle/assets/lab-valle)",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--text", help="what to say")
    source.add_argument("--text-file", help="a text file: one utterance per non-empty line (batch synthesis)")
    parser.add_argument(
        "--prompt-audio",
        help="a recording of the voice to clone (about 3 s is best); default: the model folder's first voice "
        "in prompts/, if it has one",
    )
    parser.add_argument("--voice", help="a voice of the model folder's prompts/ by name, instead of --prompt-audio")
    parser.add_argument("--list-voices", action="store_true", help="print the model folder's voices and exit")
    parser.add_argument("--prompt-text", help="what the prompt recording says (VALL-E mode)")
    parser.add_argument(
        "--continual", action="store_true",
        help="VALL-E-continual: --text is the whole transcript of --prompt-audio, whose first 3 s are continued",
    )
    parser.add_argument(
        "--prompt-seconds", type=float, default=None,
        help="use only the first N s of --prompt-audio (with --continual, where the default is 3; without "
        "--prompt-text otherwise, since a transcript describes the whole recording)",
    )
    parser.add_argument("--language", default=None, help="espeak language of the text (default: the tokenizer's)")
    parser.add_argument("--out", default="outputs/valle.wav",
                        help="output WAV (default: outputs/valle.wav; numbered _000, _001... when there are several)")
    parser.add_argument("--batch-size", type=int, default=8, help="texts generated together (default: 8)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1... (default: cuda when available)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument(
        "--no-spectrogram", action="store_true",
        help="do not write the spectrogram PNG (out.png beside out.wav: the prompt above, the output below)",
    )
    add_sampling_arguments(parser)


def output_paths(out: str, count: int) -> list[str]:
    if count == 1:
        return [out]
    stem, dot, suffix = out.rpartition(".")
    if not dot:
        stem, suffix = out, "wav"
    return [f"{stem}_{index:03d}.{suffix}" for index in range(count)]


def read_texts(args) -> list[str]:
    if args.text is not None:
        if not args.text.strip():
            raise ValueError("--text is empty: give something to say.")
        return [args.text]
    with open(args.text_file, encoding="utf-8") as handle:
        texts = [line.strip() for line in handle if line.strip()]
    if not texts:
        raise ValueError(f"--text-file {args.text_file} has no non-empty lines.")
    return texts


def spectrogram_path(wav_path: str) -> str:
    """`out.wav` -> `out.png` (and `out` -> `out.png`; a WAV path that already ends in .png gets `.png` added)."""
    png = Path(wav_path).with_suffix(".png")
    return str(png) if png != Path(wav_path) else f"{wav_path}.png"


def resolve_model(args) -> tuple[str, Path | None]:
    """(what to load, the local folder or None for a Hub id); the built-in model when --model is not given."""
    from valle.builtin import builtin_model_dir

    if args.model is None:
        folder = builtin_model_dir()
        return str(folder), folder
    return args.model, Path(args.model) if os.path.isdir(args.model) else None


def list_voices(folder: Path | None, model: str) -> int:
    from valle.builtin import builtin_prompts

    if folder is None:
        raise ValueError(f"--list-voices reads the prompts/ folder of a local model folder; {model!r} is not one.")
    prompts = builtin_prompts(folder)
    if not prompts:
        print(f"{folder} has no voices (no prompts/ folder with <name>.wav and <name>.txt pairs); "
              "give a recording with --prompt-audio and --prompt-text.")
        return 0
    print(f"voices of {folder} (the first is the default):")
    width = max(len(prompt.name) for prompt in prompts)
    for prompt in prompts:
        print(f"  {prompt.name:<{width}}  \"{prompt.text}\"")
    return 0


def choose_prompt(args, folder: Path | None):
    """The model folder's voice to use (--voice, else its default) when no --prompt-audio is given, else None."""
    from valle.builtin import default_prompt, find_prompt

    if args.prompt_audio is not None:
        if args.voice is not None:
            raise ValueError("--voice and --prompt-audio both choose the voice; give one of them.")
        return None
    if args.continual:
        raise ValueError(
            "--continual needs --prompt-audio: it continues a recording of yours, and --text is that recording's "
            "whole transcript. Without --continual, the model folder's voice (if it has one) says --text."
        )
    if args.voice is not None:
        if folder is None:
            raise ValueError(f"--voice picks a voice from a local model folder's prompts/; {args.model!r} is not one.")
        prompt = find_prompt(args.voice, folder)
    else:
        prompt = None if folder is None else default_prompt(folder)
    if prompt is not None and args.prompt_seconds is not None:
        raise ValueError(
            "--prompt-seconds cuts --prompt-audio; the model folder's voices are used whole with their transcripts."
        )
    return prompt


def run(args) -> int:
    model_name, folder = resolve_model(args)
    if args.list_voices:
        return list_voices(folder, model_name)

    from valle.synthesis import load_model_and_processor, synthesize

    if args.text is None and args.text_file is None:
        raise ValueError("give what to say: --text TEXT or --text-file FILE (or --list-voices to see the voices).")
    if args.prompt_text and not args.prompt_audio:
        raise ValueError("--prompt-text needs --prompt-audio (the recording it transcribes).")
    voice = choose_prompt(args, folder)
    texts = read_texts(args)
    prompt_audio, prompt_text = args.prompt_audio, args.prompt_text
    print(f"model: {model_name}" + ("  (built-in)" if args.model is None else ""))
    if voice is not None:
        prompt_audio, prompt_text = str(voice.audio_path), voice.text
        print(f"voice: {voice.name}  (prompt {voice.audio_path}: \"{voice.text}\")")
    elif prompt_audio is not None:
        used = ""
        if args.continual or args.prompt_seconds is not None:
            used = f"  (its first {args.prompt_seconds or 3.0:g} s" + (", VALL-E-continual)" if args.continual else ")")
        print(f"voice prompt: {prompt_audio}{used}" + (f': "{prompt_text}"' if prompt_text else ""))
    else:
        print("voice prompt: none (give --prompt-audio and --prompt-text to clone a voice)")
    model, processor = load_model_and_processor(model_name, device=args.device, dtype=args.dtype)
    wav_paths = output_paths(args.out, len(texts))
    result = synthesize(
        model, processor, texts, wav_paths,
        prompt_audio=prompt_audio, prompt_text=prompt_text, continual=args.continual,
        prompt_seconds=args.prompt_seconds, language=args.language, seed=args.seed, batch_size=args.batch_size,
        spectrogram_paths=None if args.no_spectrogram else [spectrogram_path(path) for path in wav_paths],
        **generation_kwargs(args, processor.frame_rate),
    )
    layout = "prompt above, output below" if prompt_audio is not None else "output only, no prompt"
    for index, (path, seconds, capped) in enumerate(zip(result.paths, result.seconds, result.reached_cap)):
        note = "  (stopped by the length cap, no end-of-speech)" if capped else ""
        print(f"wrote {path}  {seconds:.2f} s{note}")
        if result.spectrogram_paths:
            print(f"wrote {result.spectrogram_paths[index]} (spectrogram: {layout})")
    return 0
