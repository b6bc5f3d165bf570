"""Can the AR go on from one sentence into another? Its teacher-forced loss on an utterance alone and after another.

    python studies/joint_loss.py runs/lab24/tts/data/test --models valle/assets/lab-valle,runs/lab24j/tts/model \
        --pairs 40 --out lab_artifacts/joint_loss.json

For `--pairs` held-out utterances B (at least 4 s, as the evaluation's targets), each with another utterance A of
the same speaker (2-4 s, like a 3 s prompt), the AR's cross-entropy on B's codebook-1 codes and end token:
- `alone`: B by itself, as in training (phonemes of B, codes of B);
- `after_other`: A then B as one sequence (phonemes of A, a word boundary, phonemes of B; codes of A then of B),
  which is what VALL-E mode asks of the AR (a prompt from another utterance, then a new sentence);
and the same two after B's first 3 s (`*_after_3s`), where the AR must already know where it is in B's text.
A model that has only seen single utterances loses its place after the joint: `after_other` well above `alone`.
DATA is prepared data (`valle prepare`) with a speaker column.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PROMPT_FRAMES = (150, 300)  # A: 2-4 s at 75 Hz
MIN_TARGET_FRAMES = 300  # B: at least 4 s
AFTER_FRAMES = 225  # 3 s


def draw_pairs(dataset, count: int, seed: int = 0) -> list[tuple[int, int]]:
    """`count` (A, B) row pairs of one speaker: B at least 4 s, A another utterance of 2-4 s."""
    import numpy as np

    rng = np.random.default_rng(seed)
    speakers, frames = np.asarray(dataset["speaker"]), np.asarray(dataset["num_frames"])
    pairs = []
    for second in rng.permutation(len(dataset)):
        if frames[second] < MIN_TARGET_FRAMES:
            continue
        firsts = np.flatnonzero((speakers == speakers[second]) & (frames >= PROMPT_FRAMES[0])
                                & (frames <= PROMPT_FRAMES[1]))
        firsts = firsts[firsts != second]
        if firsts.size:
            pairs.append((int(rng.choice(firsts)), int(second)))
        if len(pairs) == count:
            break
    return pairs


def losses(model, input_ids, codes, target_frames: int):
    """Per-position AR cross-entropy on the last `target_frames` codes and the end token."""
    import torch
    import torch.nn.functional as F

    output = model(input_ids=torch.tensor([input_ids]), labels=torch.tensor([codes]))
    labels = output.ar_labels[0]
    keep = labels != -100
    values = F.cross_entropy(output.ar_logits[0][keep].float(), labels[keep], reduction="none")
    return values[-(target_frames + 1):]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data")
    parser.add_argument("--models", required=True, help="comma-separated model folders")
    parser.add_argument("--pairs", type=int, default=40)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)

    import datasets
    import numpy as np
    import torch

    from modeling_valle import VallEForConditionalCodecGeneration
    from processing_valle import VallEProcessor
    from valle.data import join_phoneme_ids, joining_ids

    data = datasets.load_from_disk(args.data)
    pairs = draw_pairs(data, args.pairs)
    if not pairs:
        parser.error(f"{args.data}: no utterance of >= 4 s with another of 2-4 s by the same speaker")
    results = {}
    for path in args.models.split(","):
        tokenizer = VallEProcessor.from_pretrained(path).tokenizer
        joining = joining_ids(tokenizer)  # joined as `valle train --join-same-speaker` joins them
        first_row = data[0]["input_ids"]
        if (first_row[0], first_row[-1]) != (tokenizer.bos_token_id, tokenizer.eos_token_id):
            parser.error(f"{args.data}: the phonemes are not wrapped in {path}'s begin and end tokens")
        model = VallEForConditionalCodecGeneration.from_pretrained(path).eval()
        model.config.nar_loss_weight = 0.0  # the AR alone
        sums = {name: [] for name in ("alone", "after_other", "alone_after_3s", "after_other_after_3s")}
        with torch.no_grad():
            for first, second in pairs:
                a, b = data[first], data[second]
                frames = b["num_frames"]
                for name, ids, codes in (
                    ("alone", b["input_ids"], b["codes"]),
                    ("after_other", join_phoneme_ids(a["input_ids"], b["input_ids"], **joining),
                     a["codes"] + b["codes"]),
                ):
                    values = losses(model, ids, codes, frames)
                    sums[name].append(values.mean().item())
                    sums[f"{name}_after_3s"].append(values[AFTER_FRAMES:].mean().item())
        results[path] = {name: round(float(np.mean(values)), 3) for name, values in sums.items()}
        print(path, results[path], flush=True)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as handle:
            json.dump({"data": args.data, "pairs": len(pairs), "results": results}, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
