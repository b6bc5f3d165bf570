"""Tiny, offline, seeded building blocks shared by the tests (each builder is a plain function: add yours below)."""

import numpy as np
import torch


# A few sentences with numbers, abbreviations and punctuation, enough for a small English phoneme vocabulary.
TINY_CORPUS = [
    "Hello world, this is a small test.",
    "The quick brown fox jumps over the lazy dog!",
    "Dr. Smith paid $5 for 42 apples at 3 o'clock.",
    "Would you like some tea? Yes, please.",
    "She sells sea shells by the sea shore; they are lovely.",
    "Voices carry weight, rhythm and breath.",
    "Zero-shot speech synthesis needs only three seconds of audio.",
]


def tiny_tokenizer(**options):
    """A `VallEPhonemeTokenizer` whose vocabulary is built on `TINY_CORPUS` (options: any tokenizer argument)."""
    from processing_valle import VallEPhonemeTokenizer

    return VallEPhonemeTokenizer.build_vocab(TINY_CORPUS, **options)


# The random codec and the test signal live in the package, where `valle smoke` uses them too.
from valle.smoke import random_codec as tiny_codec  # noqa: E402
from valle.smoke import voiced_signal as tiny_waveform  # noqa: E402


# ------------------------------------------------------------------------------------------------
# VALL-E model builders

from configuration_valle import VallEConfig  # noqa: E402


def tiny_valle_config(**overrides) -> VallEConfig:
    """A 2-layer, 32-wide VALL-E over 4 codebooks of 16 codes, without dropout (deterministic)."""
    values = dict(
        vocab_size=40,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        num_codebooks=4,
        codebook_size=16,
        dropout=0.0,
        attention_dropout=0.0,
    )
    values.update(overrides)
    return VallEConfig(**values)


def tiny_valle_model(seed: int = 0, **overrides):
    from modeling_valle import VallEForConditionalCodecGeneration

    torch.manual_seed(seed)
    return VallEForConditionalCodecGeneration(tiny_valle_config(**overrides)).eval()


def random_valle_batch(config: VallEConfig, batch_size: int = 3, seed: int = 0, num_phonemes=(7, 5, 6), num_frames=(12, 9, 10)):
    """Right-padded phonemes and -100-padded codes of different lengths per item."""
    generator = torch.Generator().manual_seed(seed)
    num_phonemes = list(num_phonemes)[:batch_size]
    num_frames = list(num_frames)[:batch_size]
    input_ids = torch.full((batch_size, max(num_phonemes)), config.pad_token_id)
    attention_mask = torch.zeros(batch_size, max(num_phonemes), dtype=torch.long)
    labels = torch.full((batch_size, max(num_frames), config.num_codebooks), -100)
    for i, (n, t) in enumerate(zip(num_phonemes, num_frames)):
        input_ids[i, :n] = torch.randint(3, config.vocab_size, (n,), generator=generator)
        attention_mask[i, :n] = 1
        labels[i, :t] = torch.randint(0, config.codebook_size, (t, config.num_codebooks), generator=generator)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def random_prompt(config: VallEConfig, lengths=(5, 3, 4), seed: int = 1):
    generator = torch.Generator().manual_seed(seed)
    lengths = list(lengths)
    codes = torch.zeros(len(lengths), max(lengths), config.num_codebooks, dtype=torch.long)
    mask = torch.zeros(len(lengths), max(lengths), dtype=torch.long)
    for i, n in enumerate(lengths):
        codes[i, :n] = torch.randint(0, config.codebook_size, (n, config.num_codebooks), generator=generator)
        mask[i, :n] = 1
    return codes, mask
