"""Does the AR read its text to the end when it runs free? Where its alignment head is when it stops.

    python studies/reading.py --models valle/assets/lab-valle --out lab_artifacts/reading.json
    python studies/reading.py --models valle/assets/lab-valle --top-k 50 --out lab_artifacts/reading_topk50.json

For each model, each of the built-in voices (`valle synthesize --list-voices`) says each of `TEXTS` in VALL-E
mode (the voice's recording and transcript as the prompts), sampled with `--seed`, while
`valle.alignment.free_running_reading` follows one AR head (`--layer`, `--head`: by default the built-in
model's best alignment head, `valle alignment`): 0 = the first phoneme of the text, 1 = its end. A text counts
as read to the end when the head's position over the last tenth of the output is at least `READ_TO_THE_END`;
an early stop ends far below it. The sampling is the model's generation config unless a sampling flag is given.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from valle.commands.synthesize import add_sampling_flags, sampling_kwargs  # noqa: E402  (after the path)

TEXTS = (
    "The old sailor painted a small boat beside the river.",
    "My brother found seven green apples under the table.",
    "Please call the doctor before the storm arrives tonight.",
)
READ_TO_THE_END = 0.9


def summarize(readings: list[dict]) -> dict:
    """Mean final position and how many texts were read to the end."""
    finals = [reading["final"] for reading in readings]
    return {"texts": len(finals), "mean_final": round(sum(finals) / len(finals), 2),
            "read_to_the_end": sum(final >= READ_TO_THE_END for final in finals)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="valle/assets/lab-valle", help="comma-separated model folders")
    parser.add_argument("--voices", default=None,
                        help="the model folder whose prompts/ voices say the texts (default: the built-in model's)")
    parser.add_argument("--layer", type=int, default=3, help="AR layer of the head to follow (default: 3)")
    parser.add_argument("--head", type=int, default=1, help="the head in that layer (default: 1)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed, set before each text (default: 0)")
    parser.add_argument("--out", required=True, help="JSON file for every reading and the summary")
    group = parser.add_argument_group("AR sampling (default: the model's generation config)")
    add_sampling_flags(group)
    args = parser.parse_args(argv)

    import torch

    from valle.alignment import free_running_reading
    from valle.builtin import builtin_prompts
    from valle.evaluation import effective_sampling
    from valle.synthesis import load_model_and_processor

    voices = builtin_prompts(args.voices)
    if not voices:
        parser.error(f"{args.voices or 'the built-in model'} has no prompts/ voices; give --voices a model folder "
                     "that has some.")
    sampling = sampling_kwargs(args)
    results = {}
    for path in args.models.split(","):
        model, processor = load_model_and_processor(path)
        readings = []
        for voice in voices:
            for text in TEXTS:
                torch.manual_seed(args.seed)
                reading = free_running_reading(model, processor, text, args.layer, args.head,
                                               prompt_audio=str(voice.audio_path), prompt_text=voice.text,
                                               **sampling)
                readings.append({"voice": voice.name, "text": text, "final": reading["final"],
                                 "frames": reading["frames"], "finished_with_eos": reading["finished_with_eos"]})
                print(f"{path} {voice.name} final {reading['final']:.2f} ({reading['frames']} frames)",
                      file=sys.stderr, flush=True)
        results[path] = {"sampling": effective_sampling(model, sampling), "summary": summarize(readings),
                         "readings": readings}
        summary = results[path]["summary"]
        print(f"{path}: read {summary['read_to_the_end']} of {summary['texts']} texts to the end "
              f"(final position >= {READ_TO_THE_END}), mean final position {summary['mean_final']}")
    with open(args.out, "w", encoding="utf-8") as handle:
        json.dump({"layer": args.layer, "head": args.head, "seed": args.seed, "models": results}, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
