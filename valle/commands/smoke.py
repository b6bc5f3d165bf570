"""`valle smoke`: the whole pipeline on a randomly initialised model, to check an installation."""

from __future__ import annotations

NAME = "smoke"
HELP = "Smoke test: synthesise with a RANDOMLY INITIALISED tiny VALL-E and codec (noise-like audio, no download)."


def add_arguments(parser):
    parser.add_argument("--out", default="outputs/smoke.wav", help="where to write the WAV")
    parser.add_argument("--text", default="Hello from a randomly initialised VALL-E.")
    parser.add_argument("--bundle-dir", default="outputs/smoke-model", help="where to save the random model bundle")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-seconds", type=float, default=2.0)


def run(args) -> int:
    import time

    import torch

    from valle.smoke import build_random_bundle, voiced_signal
    from valle.synthesis import load_model_and_processor, synthesize

    print("SMOKE TEST: the model and codec below are randomly initialised, not trained. The audio is noise-like;")
    print("this only checks that phonemes -> AR -> NAR -> codec -> WAV runs on this machine.")
    start = time.perf_counter()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    folder = build_random_bundle(args.bundle_dir, seed=args.seed)
    model, processor = load_model_and_processor(str(folder), device="cpu")
    prompt = voiced_signal(3.0, sampling_rate=processor.sampling_rate, seed=args.seed)  # a synthetic 3 s "voice"
    result = synthesize(
        model, processor, [args.text], [args.out], prompt_audio=prompt,
        prompt_text="A synthetic prompt of three seconds.", sampling_rate=processor.sampling_rate, seed=args.seed,
        max_new_tokens=max(1, int(args.max_seconds * processor.frame_rate)),
    )
    print(f"random model bundle: {folder}")
    print(f"wrote {result.paths[0]}  {result.seconds[0]:.2f} s of audio at {processor.sampling_rate} Hz "
          f"in {time.perf_counter() - start:.1f} s")
    return 0
