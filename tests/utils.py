"""Tiny, offline, seeded building blocks shared by the tests (each builder is a plain function: add yours below)."""

import numpy as np
import torch
from transformers import EncodecConfig, EncodecModel


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


def tiny_codec(seed: int = 0) -> EncodecModel:
    """
    A randomly initialised EnCodec (~0.1M parameters) with the real framing: 24 kHz, hop 320 (75 frames/s) and
    8 codebooks of 1024 entries at 6 kbps. Its codebooks are randomised: transformers initialises them to zero,
    which would make every code 0.
    """
    generator = torch.Generator().manual_seed(seed)
    config = EncodecConfig(
        target_bandwidths=[1.5, 3.0, 6.0],  # the largest sets the number of quantizers: 6 kbps -> 8 codebooks
        sampling_rate=24_000,
        upsampling_ratios=[8, 5, 4, 2],  # hop 320 -> 75 Hz
        num_filters=4,
        hidden_size=16,
        codebook_dim=16,
        num_lstm_layers=1,
        codebook_size=1024,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = EncodecModel(config).eval()
    # Each codebook is drawn around the residual it will quantise (on a test signal), so that the codes of
    # speech-like audio spread over many entries instead of all landing on the same few.
    with torch.no_grad():
        signal = np.concatenate([tiny_waveform(1.0, seed=seed + k) * (0.3 + 0.3 * k) for k in range(3)])
        residual = model.encoder(torch.from_numpy(signal)[None, None])  # (1, dim, frames)
        for layer in model.quantizer.layers:
            codebook = layer.codebook
            mean = residual.mean(dim=-1)[0]
            spread = residual.std(dim=-1)[0] + 1e-6
            codebook.embed.copy_(mean + spread * torch.randn(codebook.embed.shape, generator=generator))
            codebook.embed_avg.copy_(codebook.embed)
            codebook.cluster_size.fill_(1.0)
            residual = residual - layer.decode(layer.encode(residual))
    return model


def tiny_waveform(seconds: float = 1.0, sampling_rate: int = 24_000, seed: int = 0, channels: int = 0) -> np.ndarray:
    """A voiced-sounding test signal (harmonics of a gliding pitch plus a little noise), float32 in [-1, 1].

    `channels=0` gives a 1-D mono array, `channels=n` an array of shape (n, samples)."""
    rng = np.random.default_rng(seed)
    time = np.arange(int(seconds * sampling_rate)) / sampling_rate
    pitch = 120 + 30 * np.sin(2 * np.pi * 0.7 * time)
    phase = 2 * np.pi * np.cumsum(pitch) / sampling_rate
    signal = sum(np.sin(k * phase) / k for k in range(1, 6)) * 0.3 + 0.01 * rng.standard_normal(time.shape)
    signal = signal.astype(np.float32)
    if channels:
        signal = np.stack([signal * (1.0 - 0.1 * c) for c in range(channels)])
    return signal


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
