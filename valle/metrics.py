"""Metric primitives shared by `valle evaluate` and the offline lab's judges."""

from __future__ import annotations

import numpy as np


def edit_distance(reference, hypothesis) -> int:
    """Levenshtein distance (substitutions, insertions, deletions) between two sequences (characters or words)."""
    row = list(range(len(hypothesis) + 1))
    for i, wanted in enumerate(reference, start=1):
        diagonal, row[0] = row[0], i
        for j, got in enumerate(hypothesis, start=1):
            diagonal, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, diagonal + (wanted != got))
    return row[-1]


def cosine(a, b) -> float:
    """Cosine similarity of two embeddings (flattened, in float64), in [-1, 1]."""
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))
