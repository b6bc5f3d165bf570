"""Batches by acoustic-token budget: the paper's "~6k acoustic tokens per GPU" as a batch sampler.

A batch's cost is what it occupies once padded: `number of utterances x longest utterance`, counted in codec
frames (one frame = one step of the AR, 8 codes at 6 kbps). Utterances are sorted by length before they are
packed, so each batch holds utterances of similar length and little of the budget goes to padding.

Under data parallelism every rank builds the same global list of batches from the same seed, then keeps its own
share: ranks never see the same utterance in an epoch, and all of them take the same number of steps (DDP needs
that, or the ranks wait for each other forever). Each utterance is used exactly once per epoch across all ranks.
"""

from __future__ import annotations

import math
from typing import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler


class TokenBudgetBatchSampler(Sampler[list[int]]):
    """
    Yields lists of dataset indices whose padded acoustic length fits `max_tokens`.

    Args:
        lengths (sequence of `int`): acoustic frames of each utterance (the `num_frames` column of prepared data).
        max_tokens (`int`): budget of a batch, `batch size x longest utterance` in frames, per device.
            The paper used ~6,000 per V100.
        num_replicas (`int`, defaults to 1): data-parallel world size.
        rank (`int`, defaults to 0): this process's rank in `[0, num_replicas)`.
        shuffle (`bool`, defaults to `True`): shuffle utterances of equal length and the order of the batches,
            differently each epoch (see `set_epoch`). `False` gives a fixed order (evaluation).
        seed (`int`, defaults to 0): the same seed and epoch give the same batches on every machine.
        max_batch_size (`int`, *optional*): cap on utterances per batch, whatever the budget.

    Every epoch has the same number of batches (utterances of equal length are what gets shuffled into the
    batches, so the packing, and with it the count, never changes), which `Trainer` needs to plan its steps and to
    skip the right number of batches when it resumes from a checkpoint.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        max_tokens: int,
        num_replicas: int = 1,
        rank: int = 0,
        shuffle: bool = True,
        seed: int = 0,
        max_batch_size: int | None = None,
    ):
        lengths = np.asarray(lengths, dtype=np.int64)
        if lengths.ndim != 1 or lengths.size == 0:
            raise ValueError("`lengths` must be a non-empty list of utterance lengths in codec frames.")
        if (lengths < 1).any():
            raise ValueError(
                f"`lengths` must all be >= 1 frame; item {int(np.argmin(lengths))} has {int(lengths.min())}. "
                "Filter empty utterances out at data preparation."
            )
        if not isinstance(max_tokens, int) or max_tokens < 1:
            raise ValueError(f"`max_tokens` must be a positive integer (frames per batch), got {max_tokens!r}.")
        too_long = np.flatnonzero(lengths > max_tokens)
        if too_long.size:
            raise ValueError(
                f"{too_long.size} utterance(s) are longer than the batch budget max_tokens={max_tokens} frames "
                f"(the longest has {int(lengths.max())} frames, e.g. item {int(too_long[0])}). Raise `max_tokens` "
                "or drop long utterances at preparation (`valle prepare --max-seconds`)."
            )
        if not isinstance(num_replicas, int) or num_replicas < 1:
            raise ValueError(f"`num_replicas` must be a positive integer, got {num_replicas!r}.")
        if not isinstance(rank, int) or not 0 <= rank < num_replicas:
            raise ValueError(f"`rank` must be in [0, num_replicas={num_replicas}), got {rank!r}.")
        if max_batch_size is not None and (not isinstance(max_batch_size, int) or max_batch_size < 1):
            raise ValueError(f"`max_batch_size` must be a positive integer or None, got {max_batch_size!r}.")
        if lengths.size < num_replicas:
            raise ValueError(
                f"{lengths.size} utterance(s) cannot feed {num_replicas} processes: every process needs at least one "
                "batch. Use more data or fewer processes."
            )
        self.lengths = lengths
        self.max_tokens = max_tokens
        self.num_replicas = num_replicas
        self.rank = rank
        self.shuffle = shuffle
        self.seed = seed
        self.max_batch_size = max_batch_size
        self.epoch = 0
        self._num_batches = len(self._global_batches(np.random.default_rng(0))) // num_replicas

    def set_epoch(self, epoch: int) -> None:
        """Called by `Trainer` (and by hand in a custom loop) before each epoch: a new epoch, a new order."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self._num_batches

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        batches = self._global_batches(rng)
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        # Round-robin: rank r takes batches r, r + W, r + 2W... so the ranks' batches are similar in length at
        # every step, and none waits long for the others.
        for batch in batches[self.rank :: self.num_replicas]:
            yield batch

    # ------------------------------------------------------------------------------------------------------------

    def _global_batches(self, rng: np.random.Generator) -> list[list[int]]:
        """All batches of one epoch, before sharding: a number divisible by `num_replicas`."""
        order = np.arange(self.lengths.size)
        if self.shuffle:
            # A random permutation, then a stable sort by length: equal lengths end up in random order while the
            # sequence of lengths (hence the packing) stays the same every epoch.
            order = rng.permutation(order)
        order = order[np.argsort(self.lengths[order], kind="stable")]
        batches: list[list[int]] = []
        current: list[int] = []
        for index in order.tolist():
            longest = int(self.lengths[index])  # sorted ascending: the newcomer is the longest
            full = self.max_batch_size is not None and len(current) >= self.max_batch_size
            if current and (full or (len(current) + 1) * longest > self.max_tokens):
                batches.append(current)
                current = []
            current.append(index)
        batches.append(current)
        return _make_divisible(batches, self.num_replicas)


def _make_divisible(batches: list[list[int]], parts: int) -> list[list[int]]:
    """Splits the largest batches in two until their number divides by `parts`. Halves of a batch fit its budget,
    so this keeps every item exactly once without going over; when every batch is a single item (fewer items than
    needed), it cycles items from the start, and the caller's error for tiny datasets makes that rare."""
    batches = list(batches)
    while len(batches) % parts:
        largest = max(range(len(batches)), key=lambda i: len(batches[i]))
        batch = batches[largest]
        if len(batch) < 2:
            missing = parts - len(batches) % parts
            batches.extend([list(batches[i % len(batches)]) for i in range(missing)])
            break
        half = math.ceil(len(batch) / 2)
        batches[largest : largest + 1] = [batch[:half], batch[half:]]
    return batches


def padded_tokens(batch: Sequence[int], lengths: Sequence[int]) -> int:
    """What a batch costs under the budget: utterances x longest (frames)."""
    return len(batch) * max(int(lengths[i]) for i in batch)


__all__ = ["TokenBudgetBatchSampler", "padded_tokens"]
