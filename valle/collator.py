"""Turns prepared utterances (`input_ids`, `codes`) into the padded tensors `VallEForConditionalCodecGeneration`
trains on, optionally with an acoustic prompt taken from another utterance of the same speaker."""

from __future__ import annotations

import zlib
from collections import defaultdict
from typing import Any, Sequence

import numpy as np
import torch

IGNORE_INDEX = -100


class VallEDataCollator:
    """
    Pads a list of prepared utterances into a batch.

    Each feature is a mapping with `input_ids` (phoneme ids) and `codes` (EnCodec codes, `frames x codebooks`),
    and optionally `language_ids` (one int), `speaker` and `id` (used for prompts). The batch has:

    - `input_ids`, `attention_mask`: phonemes right-padded with `pad_token_id`, mask 1 on real phonemes;
    - `labels`: the codes, `(batch, frames, codebooks)`, -100 on padding frames;
    - `language_ids` when the features have them;
    - with `prompt_dataset`: `prompt_codes` / `prompt_attention_mask`, a crop of at most `prompt_max_frames` from
      another utterance of the same speaker (the NAR's acoustic prompt, as in the paper). An utterance whose speaker
      has no other utterance gets an empty prompt (mask all 0) and is counted in `prompt_missing`.

    Args:
        pad_token_id (`int`, defaults to 0): the tokenizer's padding id (`config.pad_token_id`).
        num_codebooks (`int`, *optional*): keep only the first codebooks when the data has more than the model.
        prompt_dataset (`datasets.Dataset`, *optional*): the prepared dataset the prompts are drawn from, with
            `speaker_column` and `codes` (usually the training set itself).
        speaker_column (`str`, defaults to `"speaker"`).
        prompt_max_frames (`int`, defaults to 225): longest prompt (3 s at 75 Hz, the paper's prompt length).
        seed (`int`, defaults to 0): prompts are drawn from the seed and the batch's utterances, so the same batch
            always gets the same prompts (a resumed run sees what an uninterrupted one would).
    """

    def __init__(
        self,
        pad_token_id: int = 0,
        num_codebooks: int | None = None,
        prompt_dataset=None,
        speaker_column: str = "speaker",
        prompt_max_frames: int = 225,
        seed: int = 0,
    ):
        if not isinstance(pad_token_id, int):
            raise TypeError(f"`pad_token_id` must be an int, got {pad_token_id!r}.")
        if prompt_max_frames < 1:
            raise ValueError(f"`prompt_max_frames` must be >= 1, got {prompt_max_frames}.")
        self.pad_token_id = pad_token_id
        self.num_codebooks = num_codebooks
        self.prompt_dataset = prompt_dataset
        self.speaker_column = speaker_column
        self.prompt_max_frames = prompt_max_frames
        self.seed = seed
        self.prompt_missing = 0
        self._rows_by_speaker: dict[Any, list[int]] | None = None
        if prompt_dataset is not None:
            for column in (speaker_column, "codes", "id"):
                if column not in prompt_dataset.column_names:
                    raise ValueError(
                        f"`prompt_dataset` has no {column!r} column (it has {prompt_dataset.column_names}). Prompts "
                        "come from other utterances of the same speaker: prepare the data with a speaker column "
                        "(`valle prepare --speaker-column ...`) or leave `prompt_dataset` out."
                    )
            self._ids = prompt_dataset["id"]
            self._rows_by_speaker = defaultdict(list)
            for row, speaker in enumerate(prompt_dataset[speaker_column]):
                self._rows_by_speaker[speaker].append(row)

    def __call__(self, features: Sequence[dict]) -> dict[str, torch.Tensor]:
        if not features:
            raise ValueError("VallEDataCollator got an empty batch.")
        for key in ("input_ids", "codes"):
            if key not in features[0]:
                raise ValueError(
                    f"Each feature needs {key!r} (got keys {sorted(features[0])}). Prepare the data with "
                    "`valle prepare` (or `valle.data.prepare_dataset`), and train with remove_unused_columns=False."
                )
        phonemes = [torch.as_tensor(f["input_ids"], dtype=torch.long).reshape(-1) for f in features]
        codes = [self._codes(f["codes"], i) for i, f in enumerate(features)]
        batch_size = len(features)

        input_ids = torch.full((batch_size, max(p.numel() for p in phonemes)), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros(input_ids.shape, dtype=torch.long)
        labels = torch.full((batch_size, max(c.shape[0] for c in codes), codes[0].shape[1]), IGNORE_INDEX)
        for i, (p, c) in enumerate(zip(phonemes, codes)):
            if p.numel() == 0:
                raise ValueError(f"feature {i} has no phonemes (`input_ids` is empty); drop it at preparation.")
            if c.shape[1] != codes[0].shape[1]:
                raise ValueError(
                    f"feature {i} has {c.shape[1]} codebooks, feature 0 has {codes[0].shape[1]}: the data was encoded "
                    "at different codec bandwidths. Prepare it again with one bandwidth."
                )
            input_ids[i, : p.numel()] = p
            attention_mask[i, : p.numel()] = 1
            labels[i, : c.shape[0]] = c
        batch = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
        if "language_ids" in features[0] and features[0]["language_ids"] is not None:
            batch["language_ids"] = torch.as_tensor([int(f["language_ids"]) for f in features], dtype=torch.long)
        if self.prompt_dataset is not None:
            batch.update(self._prompts(features, labels.shape[2]))
        return batch

    def _codes(self, value, index: int) -> torch.Tensor:
        codes = torch.as_tensor(np.asarray(value), dtype=torch.long)
        if codes.dim() != 2 or codes.shape[0] == 0:
            raise ValueError(
                f"feature {index}: `codes` must be a non-empty (frames, codebooks) array, got shape "
                f"{tuple(codes.shape)}."
            )
        if self.num_codebooks is not None:
            if codes.shape[1] < self.num_codebooks:
                raise ValueError(
                    f"feature {index} has {codes.shape[1]} codebooks but {self.num_codebooks} are needed; encode the "
                    "audio at a higher codec bandwidth (6 kbps = 8 codebooks)."
                )
            codes = codes[:, : self.num_codebooks]
        return codes

    def _prompts(self, features, num_codebooks: int) -> dict[str, torch.Tensor]:
        # One generator per batch, from the seed and the batch's own utterances: reproducible in any worker.
        key = "|".join(str(f.get("id", f.get("input_ids"))) for f in features)
        rng = np.random.default_rng([self.seed, zlib.crc32(key.encode())])
        crops = []
        for feature in features:
            if self.speaker_column not in feature:
                raise ValueError(
                    f"Prompts need the {self.speaker_column!r} of each utterance; the features lack it. Train with "
                    "remove_unused_columns=False."
                )
            if "id" not in feature:
                raise ValueError(
                    "Prompts need each utterance's `id` (so that an utterance is never its own prompt); the features "
                    "lack it. Train with remove_unused_columns=False on data from `valle prepare`."
                )
            rows = self._rows_by_speaker.get(feature[self.speaker_column], [])
            candidates = [row for row in rows if self._ids[row] != feature["id"]]
            if not candidates:
                self.prompt_missing += 1
                crops.append(torch.zeros(0, num_codebooks, dtype=torch.long))
                continue
            row = candidates[int(rng.integers(len(candidates)))]
            codes = self._codes(self.prompt_dataset[row]["codes"], row)[:, :num_codebooks]
            length = min(self.prompt_max_frames, codes.shape[0])
            start = int(rng.integers(codes.shape[0] - length + 1))
            crops.append(codes[start : start + length])
        width = max(1, max(c.shape[0] for c in crops))
        prompt_codes = torch.zeros(len(crops), width, num_codebooks, dtype=torch.long)
        prompt_mask = torch.zeros(len(crops), width, dtype=torch.long)
        for i, crop in enumerate(crops):
            prompt_codes[i, : crop.shape[0]] = crop
            prompt_mask[i, : crop.shape[0]] = 1
        return {"prompt_codes": prompt_codes, "prompt_attention_mask": prompt_mask}


__all__ = ["VallEDataCollator", "IGNORE_INDEX"]
