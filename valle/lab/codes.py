"""How predictable are a codec's codebooks? A diagnostic for what VALL-E's NAR can learn.

The NAR predicts codebook k of a frame from codebooks 1..k-1 (and the text and prompt). If a codebook is
close to independent of the ones before it, no NAR can predict it well, and a greedy NAR then adds wrong
residuals to the audio. `codebook_statistics` measures this on prepared data (`valle prepare` output, whose
`codes` column holds one [frames, codebooks] list per utterance) with count tables, no model:

- `unigram`: held-out cross-entropy (nats) of codebook k under its own code frequencies;
- `given_first`: under P(code k | code 1 of the same frame);
- `given_previous`: under P(code k | code k-1 of the same frame);
- `given_last_frame`: under P(code k | code k of the frame before).

Tables are counted on the first part of the utterances and scored on the rest (add-one smoothing), so a
number below `unigram` is information that carries over to unseen utterances. The gap to `unigram` is a
lower bound on what a model with that context can gain; the plug-in entropy (`entropy`) is also reported.
"""

from __future__ import annotations

import numpy as np


def _cross_entropy(train_context, train_target, test_context, test_target, size: int) -> float:
    table = np.ones((size, size))
    np.add.at(table, (train_context, train_target), 1.0)
    table /= table.sum(axis=1, keepdims=True)
    return float(-np.log(table[test_context, test_target]).mean())


def codebook_statistics(codes: list, codebook_size: int, held_out_fraction: float = 0.5) -> dict:
    """Statistics per codebook (see the module docstring) from a list of [frames, codebooks] arrays."""
    if not 0.0 < held_out_fraction < 1.0:
        raise ValueError(f"codebook_statistics: held_out_fraction must be in (0, 1), got {held_out_fraction}.")
    arrays = [np.asarray(item, dtype=np.int64) for item in codes]
    if len(arrays) < 2 or any(array.ndim != 2 or len(array) < 2 for array in arrays):
        raise ValueError("codebook_statistics: need at least 2 utterances, each a [frames, codebooks] array of "
                         "2 frames or more (the `codes` column of `valle prepare` output).")
    if len({array.shape[1] for array in arrays}) != 1:
        raise ValueError("codebook_statistics: utterances have different numbers of codebooks.")
    if max(int(array.max()) for array in arrays) >= codebook_size or min(int(array.min()) for array in arrays) < 0:
        raise ValueError(f"codebook_statistics: codes must lie in [0, {codebook_size}); is codebook_size right?")
    split = min(len(arrays) - 1, max(1, int(round(len(arrays) * (1.0 - held_out_fraction)))))
    parts = {"train": arrays[:split], "test": arrays[split:]}
    frames = {name: np.concatenate(part) for name, part in parts.items()}
    # (code of the frame before, code) pairs, within utterances only.
    last = {name: (np.concatenate([a[:-1] for a in part]), np.concatenate([a[1:] for a in part]))
            for name, part in parts.items()}
    rows = []
    for k in range(frames["train"].shape[1]):
        train, test = frames["train"][:, k], frames["test"][:, k]
        counts = np.bincount(train, minlength=codebook_size).astype(np.float64)
        probabilities = counts / counts.sum()
        nonzero = probabilities[probabilities > 0]
        smoothed = (counts + 1.0) / (counts.sum() + codebook_size)
        row = {
            "codebook": k + 1,
            "codes_used": int((counts > 0).sum()),
            "entropy": round(float(-(nonzero * np.log(nonzero)).sum()), 3),
            "unigram": round(float(-np.log(smoothed[test]).mean()), 3),
            "given_last_frame": round(_cross_entropy(last["train"][0][:, k], last["train"][1][:, k],
                                                     last["test"][0][:, k], last["test"][1][:, k], codebook_size), 3),
        }
        if k > 0:
            row["given_first"] = round(_cross_entropy(frames["train"][:, 0], train, frames["test"][:, 0], test,
                                                      codebook_size), 3)
            row["given_previous"] = round(_cross_entropy(frames["train"][:, k - 1], train, frames["test"][:, k - 1],
                                                         test, codebook_size), 3)
        rows.append(row)
    return {"utterances": {name: len(part) for name, part in parts.items()},
            "frames": {name: int(len(array)) for name, array in frames.items()},
            "codebook_size": codebook_size, "nats": rows}


def markdown_table(statistics: dict) -> str:
    header = "| codebook | codes used | unigram | given codebook 1 | given codebook k-1 | given the frame before |"
    lines = [header, "|---|---|---|---|---|---|"]
    for row in statistics["nats"]:
        cells = [str(row["codebook"]), str(row["codes_used"]), f"{row['unigram']:.2f}",
                 f"{row['given_first']:.2f}" if "given_first" in row else "-",
                 f"{row['given_previous']:.2f}" if "given_previous" in row else "-",
                 f"{row['given_last_frame']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
