"""A randomly initialised VALL-E bundle (model + tokenizer + codec in one folder) for smoke runs and tests.

It proves that every stage runs (phonemes -> AR -> NAR -> codec -> WAV) on a new machine without any
download. Its output is noise-like: nothing here is trained.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

SMOKE_SENTENCES = [
    "Hello world, this is a smoke test of the whole pipeline.",
    "The quick brown fox jumps over the lazy dog!",
    "Dr. Smith paid $5 for 42 apples at 3 o'clock.",
    "Would you like some tea? Yes, please.",
    "She sells sea shells by the sea shore; they are lovely.",
    "Zero-shot speech synthesis needs only three seconds of audio.",
    "Every voice carries rhythm, pitch, breath and a little noise.",
]


def voiced_signal(seconds: float = 1.0, sampling_rate: int = 24_000, seed: int = 0, channels: int = 0) -> np.ndarray:
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


def random_codec(seed: int = 0):
    """
    A randomly initialised EnCodec (~0.2M parameters) with the real framing: 24 kHz, hop 320 (75 frames/s) and
    8 codebooks of 1024 entries at 6 kbps. transformers initialises codebooks to zero (every code would be 0),
    so each codebook is drawn around the residual it will quantise on a test signal: the codes of speech-like
    audio then spread over many entries.
    """
    from transformers import EncodecConfig, EncodecModel

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
    with torch.no_grad():
        signal = np.concatenate([voiced_signal(1.0, seed=seed + k) * (0.3 + 0.3 * k) for k in range(3)])
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


def build_random_bundle(folder: str | Path, seed: int = 0, hidden_size: int = 64, num_layers: int = 2) -> Path:
    """Writes a small random VALL-E, its phoneme tokenizer and a random codec into `folder` (loadable with
    `from_pretrained`, including the code files for `trust_remote_code`). Returns the folder."""
    from configuration_valle import VallEConfig
    from modeling_valle import VallEForConditionalCodecGeneration
    from processing_valle import VallEPhonemeTokenizer, VallEProcessor

    folder = Path(folder)
    tokenizer = VallEPhonemeTokenizer.build_vocab(SMOKE_SENTENCES)
    config = VallEConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        intermediate_size=4 * hidden_size,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    model = VallEForConditionalCodecGeneration(config).eval()
    processor = VallEProcessor(tokenizer=tokenizer, codec=random_codec(seed))
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
