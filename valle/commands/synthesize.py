"""`valle synthesize`: text (+ a voice prompt) -> WAV, with any VALL-E folder or Hub id."""

from __future__ import annotations

NAME = "synthesize"
HELP = "Say a text in the voice of a ~3 s prompt and write a WAV file."


def add_sampling_arguments(parser):
    group = parser.add_argument_group("sampling (AR decoder; the NAR is always greedy)")
    group.add_argument("--greedy", action="store_true", help="greedy AR decoding instead of sampling")
    group.add_argument("--top-k", type=int, default=None)
    group.add_argument("--top-p", type=float, default=None)
    group.add_argument("--temperature", type=float, default=None)
    group.add_argument("--repetition-aware", action="store_true", help="VALL-E 2 repetition-aware sampling")
    group.add_argument("--max-seconds", type=float, default=None, help="stop each output after this much audio")
    group.add_argument("--seed", type=int, default=None, help="seed for reproducible sampling")


def generation_kwargs(args, frame_rate: float) -> dict:
    kwargs = {}
    if args.greedy:
        kwargs["do_sample"] = False
    for name in ("top_k", "top_p", "temperature"):
        if getattr(args, name) is not None:
            kwargs[name] = getattr(args, name)
    if args.repetition_aware:
        kwargs["repetition_aware_sampling"] = True
    if args.max_seconds is not None:
        if args.max_seconds <= 0:
            raise SystemExit("--max-seconds must be positive")
        kwargs["max_new_tokens"] = max(1, int(args.max_seconds * frame_rate))
    return kwargs


def add_arguments(parser):
    parser.add_argument("--model", required=True, help="a folder written by save_pretrained, or a Hub model id")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", help="what to say")
    source.add_argument("--text-file", help="a text file: one utterance per non-empty line (batch synthesis)")
    parser.add_argument("--prompt-audio", help="a recording of the voice to clone (about 3 s is best)")
    parser.add_argument("--prompt-text", help="what the prompt recording says (VALL-E mode)")
    parser.add_argument(
        "--continual", action="store_true",
        help="VALL-E-continual: --text is the whole transcript of --prompt-audio, whose first 3 s are continued",
    )
    parser.add_argument("--prompt-seconds", type=float, default=None, help="use only the first N s of the prompt")
    parser.add_argument("--language", default=None, help="espeak language of the text (default: the tokenizer's)")
    parser.add_argument("--out", default="outputs/valle.wav", help="output WAV (numbered when there are several)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default=None)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
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
            raise SystemExit("--text is empty: give something to say.")
        return [args.text]
    with open(args.text_file, encoding="utf-8") as handle:
        texts = [line.strip() for line in handle if line.strip()]
    if not texts:
        raise SystemExit(f"--text-file {args.text_file} has no non-empty lines.")
    return texts


def run(args) -> int:
    from valle.synthesis import load_model_and_processor, synthesize

    if args.prompt_text and not args.prompt_audio:
        raise SystemExit("--prompt-text needs --prompt-audio (the recording it transcribes).")
    texts = read_texts(args)
    model, processor = load_model_and_processor(args.model, device=args.device, dtype=args.dtype)
    result = synthesize(
        model, processor, texts, output_paths(args.out, len(texts)),
        prompt_audio=args.prompt_audio, prompt_text=args.prompt_text, continual=args.continual,
        prompt_seconds=args.prompt_seconds, language=args.language, seed=args.seed, batch_size=args.batch_size,
        **generation_kwargs(args, processor.frame_rate),
    )
    for path, seconds, capped in zip(result.paths, result.seconds, result.reached_cap):
        note = "  (stopped by the length cap, no end-of-speech)" if capped else ""
        print(f"wrote {path}  {seconds:.2f} s{note}")
    return 0
