"""Training a small EnCodec on the lab corpus, as a plain transformers `EncodecModel`.

The result is shaped exactly like `facebook/encodec_24khz` at 6 kbps (24 kHz mono, hop 320
so 75 frames/s, 8 codebooks x 1024 codes), so everything downstream (VallEProcessor,
`valle prepare`, the VALL-E model) sees the same shapes as with the real codec.

transformers' quantizer is inference-only (nearest neighbour, codebooks start at zero), so
training brings its own residual vector quantisation step, `ResidualVQTrainer`, which
writes into the model's own `embed` / `embed_avg` / `cluster_size` buffers:

- a warm-up without quantisation, then k-means initialisation of each codebook on the
  residuals it will see;
- straight-through estimator (the decoder's gradient flows unchanged to the encoder) and a
  commitment loss pulling the encoder output towards its codes;
- exponential-moving-average codebook updates (no gradients for the codebooks);
- replacement of codes unused for a while by residual vectors from the current batch
  (this and k-means keep every codebook alive; usage is logged);
- quantizer dropout: each batch uses 2, 4 or 8 codebooks (1.5 / 3 / 6 kbps), so the first
  codebooks carry the most, as VALL-E's AR model (codebook 1) assumes.

Choices that differ from the stock 24 kHz EnCodec, and why:
- `norm_type="time_group_norm"`: with weight norm the encoder output drifted as a whole and
  all codebooks collapsed to one or two codes (ENVIRONMENT.md's trial).
- `normalize=True`: with time_group_norm the decoder's last layer is a GroupNorm over the
  whole clip, so its output has a fixed RMS; only with input normalisation (the clip's RMS
  is divided out before encoding and multiplied back after decoding) is that harmless.
  Consequence downstream: `encode` returns `audio_scales` (the input's RMS) and decoding
  codes needs a scale too. Generated codes have none of their own; use the prompt's scale,
  or `decode_codes(model, codes)` which applies `TARGET_RMS` (about -22 dBFS).

Long runs are checkpointed (atomically) and resume from the last checkpoint.
"""

from __future__ import annotations

import json
import math
import os
import random
import time

import numpy as np
import torch
import torch.nn.functional as F

SAMPLING_RATE = 24_000
HOP_LENGTH = 320
TARGET_RMS = 0.08  # about -22 dBFS: the level the codec is trained to reproduce


def small_encodec_config(**overrides):
    """A 2.9M-parameter EnCodec: 24 kHz, hop 320 (75 Hz), 8 x 1024 codebooks at 6 kbps."""
    from transformers import EncodecConfig

    settings = dict(
        sampling_rate=SAMPLING_RATE,
        audio_channels=1,
        num_filters=16,
        hidden_size=128,
        codebook_dim=128,
        codebook_size=1024,
        num_lstm_layers=1,
        upsampling_ratios=[8, 5, 4, 2],
        target_bandwidths=[1.5, 3.0, 6.0],
        norm_type="time_group_norm",
        normalize=True,
        use_causal_conv=True,
    )
    settings.update(overrides)
    return EncodecConfig(**settings)


class ResidualVQTrainer:
    """Training-time residual VQ over an `EncodecModel`'s quantizer buffers.

    Call `quantize(embeddings, num_quantizers)` in place of `model.quantizer`; it returns the
    straight-through quantized embeddings, the commitment loss and the codes, and (in
    training) updates the codebooks by EMA. `initialize(embeddings)` runs k-means.
    """

    def __init__(self, model, decay: float = 0.99, epsilon: float = 1e-5, dead_after: float = 0.1):
        self.layers = [layer.codebook for layer in model.quantizer.layers]
        self.codebook_size = model.config.codebook_size
        self.decay = decay
        self.epsilon = epsilon
        # A code whose EMA count falls below this (in vectors per batch) is replaced.
        self.dead_after = dead_after
        self.usage = torch.zeros(len(self.layers), self.codebook_size)

    @property
    def initialized(self) -> bool:
        """True once k-means has run (the `inited` buffers are 1 and every codebook is non-zero)."""
        return all(layer.inited.item() > 0.5 and bool(layer.embed.abs().sum() > 0) for layer in self.layers)

    def mark_uninitialized(self) -> None:
        for layer in self.layers:
            layer.inited.fill_(0.0)

    @staticmethod
    def _flatten(embeddings: torch.Tensor) -> torch.Tensor:
        # (batch, dim, frames) -> (batch * frames, dim)
        return embeddings.permute(0, 2, 1).reshape(-1, embeddings.shape[1])

    @staticmethod
    def _nearest(vectors: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
        distances = vectors.pow(2).sum(1, keepdim=True) - 2 * vectors @ codebook.t() + codebook.pow(2).sum(1)[None]
        return distances.argmin(dim=1)

    @torch.no_grad()
    def initialize(self, embeddings: torch.Tensor, iterations: int = 15, generator: torch.Generator | None = None):
        """k-means on the residual each codebook sees, codebook by codebook."""
        residual = self._flatten(embeddings.detach().float())
        if residual.shape[0] < 2 * self.codebook_size:
            raise ValueError(
                f"ResidualVQTrainer.initialize: k-means needs at least {2 * self.codebook_size} vectors, got "
                f"{residual.shape[0]}; pass more (longer or more) audio."
            )
        for layer in self.layers:
            pick = torch.randperm(residual.shape[0], generator=generator)[: self.codebook_size]
            centroids = residual[pick].clone()
            for _ in range(iterations):
                assignment = self._nearest(residual, centroids)
                counts = torch.bincount(assignment, minlength=self.codebook_size).float()
                sums = torch.zeros_like(centroids).index_add_(0, assignment, residual)
                filled = counts > 0
                centroids[filled] = sums[filled] / counts[filled, None]
                # Empty clusters restart on random vectors.
                empty = (~filled).nonzero().flatten()
                if len(empty):
                    centroids[empty] = residual[torch.randint(0, residual.shape[0], (len(empty),), generator=generator)]
            assignment = self._nearest(residual, centroids)
            counts = torch.bincount(assignment, minlength=self.codebook_size).float()
            layer.embed.copy_(centroids)
            layer.cluster_size.copy_(counts)
            layer.embed_avg.copy_(centroids * counts[:, None])
            layer.inited.fill_(1.0)
            residual = residual - centroids[assignment]

    def quantize(self, embeddings: torch.Tensor, num_quantizers: int, update: bool = True):
        """(batch, dim, frames) -> (straight-through quantized, commitment loss, codes (n_q, batch, frames))."""
        if not 1 <= num_quantizers <= len(self.layers):
            raise ValueError(f"num_quantizers must be in 1..{len(self.layers)}, got {num_quantizers}.")
        batch, dim, frames = embeddings.shape
        residual = self._flatten(embeddings)
        quantized_total = torch.zeros_like(residual)
        commitment = embeddings.new_zeros(())
        codes = []
        for index, layer in enumerate(self.layers[:num_quantizers]):
            codebook = layer.embed
            assignment = self._nearest(residual.detach(), codebook)
            quantized = codebook[assignment]
            commitment = commitment + F.mse_loss(residual, quantized.detach())
            if update:
                self._ema_update(index, layer, residual.detach(), assignment)
            quantized_total = quantized_total + quantized
            residual = residual - quantized.detach()
            codes.append(assignment.view(batch, frames))
        flat = self._flatten(embeddings)
        straight_through = flat + (quantized_total - flat).detach()
        straight_through = straight_through.view(batch, frames, dim).permute(0, 2, 1)
        return straight_through, commitment / num_quantizers, torch.stack(codes)

    @torch.no_grad()
    def _ema_update(self, index: int, layer, vectors: torch.Tensor, assignment: torch.Tensor):
        counts = torch.bincount(assignment, minlength=self.codebook_size).float()
        sums = torch.zeros_like(layer.embed).index_add_(0, assignment, vectors)
        layer.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        layer.embed_avg.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        total = layer.cluster_size.sum()
        smoothed = (layer.cluster_size + self.epsilon) / (total + self.codebook_size * self.epsilon) * total
        layer.embed.copy_(layer.embed_avg / smoothed[:, None])
        self.usage[index].mul_(0.9).add_(counts, alpha=0.1)
        dead = (layer.cluster_size < self.dead_after).nonzero().flatten()
        if len(dead):
            # Restart dead codes on vectors this codebook actually sees now.
            replacement = vectors[torch.randint(0, vectors.shape[0], (len(dead),), device=vectors.device)]
            layer.embed[dead] = replacement
            layer.embed_avg[dead] = replacement
            layer.cluster_size[dead] = 1.0

    def codes_in_use(self) -> list[int]:
        """How many codes of each codebook were used recently (EMA count above 0.01)."""
        return [int((usage > 0.01).sum()) for usage in self.usage]


class MultiResolutionMelLoss(torch.nn.Module):
    """Mean L1 distance between log-mel spectrograms at several STFT resolutions."""

    def __init__(self, sampling_rate: int = SAMPLING_RATE, fft_sizes=(256, 512, 1024, 2048), n_mels: int = 64):
        super().__init__()
        from transformers.audio_utils import mel_filter_bank

        self.fft_sizes = tuple(fft_sizes)
        for n_fft in self.fft_sizes:
            bank = mel_filter_bank(
                num_frequency_bins=n_fft // 2 + 1, num_mel_filters=min(n_mels, n_fft // 8),
                min_frequency=0.0, max_frequency=sampling_rate / 2, sampling_rate=sampling_rate,
                norm="slaney", mel_scale="slaney",
            )
            self.register_buffer(f"mel_{n_fft}", torch.tensor(bank, dtype=torch.float32).t(), persistent=False)
            self.register_buffer(f"window_{n_fft}", torch.hann_window(n_fft), persistent=False)

    def log_mel(self, waveform: torch.Tensor, n_fft: int) -> torch.Tensor:
        spectrum = torch.stft(
            waveform, n_fft, hop_length=n_fft // 4, window=getattr(self, f"window_{n_fft}"),
            return_complex=True, center=True,
        ).abs()
        mel = getattr(self, f"mel_{n_fft}") @ spectrum
        return torch.log(mel.clamp(min=1e-5))

    def forward(self, predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        predicted = predicted.reshape(-1, predicted.shape[-1])
        target = target.reshape(-1, target.shape[-1])
        total = predicted.new_zeros(())
        for n_fft in self.fft_sizes:
            total = total + (self.log_mel(predicted, n_fft) - self.log_mel(target, n_fft)).abs().mean()
        return total / len(self.fft_sizes)


def normalize_loudness(waveform: np.ndarray, target_rms: float = TARGET_RMS) -> np.ndarray:
    """Scale a whole utterance to `target_rms` (silence stays silence)."""
    rms = float(np.sqrt(np.mean(np.square(waveform, dtype=np.float64)))) if len(waveform) else 0.0
    if rms < 1e-6:
        return waveform.astype(np.float32)
    return (waveform * (target_rms / rms)).astype(np.float32)


class CropSampler:
    """Random fixed-length crops from a list of int16 utterances (loudness-normalised)."""

    def __init__(self, utterances: list[np.ndarray], crop_samples: int, seed: int):
        long_enough = [u for u in utterances if len(u) >= crop_samples]
        if not long_enough:
            raise ValueError(f"CropSampler: no utterance is at least {crop_samples} samples long; use shorter crops.")
        self.utterances = long_enough
        self.crop_samples = crop_samples
        self.rng = np.random.default_rng(seed)

    def batch(self, batch_size: int) -> torch.Tensor:
        rows = []
        for index in self.rng.integers(0, len(self.utterances), batch_size):
            utterance = self.utterances[index]
            start = self.rng.integers(0, len(utterance) - self.crop_samples + 1)
            rows.append(utterance[start : start + self.crop_samples].astype(np.float32) / 32767.0)
        return torch.from_numpy(np.stack(rows))[:, None, :]


def load_utterances(corpus_path: str, split: str, limit: int | None = None) -> list[np.ndarray]:
    """Decode one split's audio, loudness-normalised, as int16 arrays (compact in memory)."""
    from tqdm.auto import tqdm

    from .corpus import decode_audio, load_corpus

    dataset = load_corpus(corpus_path)[split]
    if limit is not None:
        dataset = dataset.select(range(min(limit, len(dataset))))
    utterances = []
    for example in tqdm(dataset, desc=f"decoding {split}", mininterval=10):
        waveform, sampling_rate = decode_audio(example["audio"])
        if sampling_rate != SAMPLING_RATE:
            raise ValueError(f"load_utterances: {example['id']} is at {sampling_rate} Hz, the codec needs {SAMPLING_RATE}.")
        utterances.append((np.clip(normalize_loudness(waveform), -1, 1) * 32767).astype(np.int16))
    return utterances


def normalize_input(waveform: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """What `EncodecModel` does when `normalize=True`: divide each clip by its RMS."""
    scale = waveform.mean(dim=1, keepdim=True).pow(2).mean(dim=-1, keepdim=True).sqrt() + 1e-8
    return waveform / scale, scale


def decode_codes(model, codes: torch.Tensor, scale: float | torch.Tensor | None = None) -> torch.Tensor:
    """Codes (batch, n_q, frames) -> waveform (batch, 1, frames * 320).

    With a `normalize=True` codec the output level comes from `scale` (the RMS the audio
    should have): the prompt's scale for generated speech, else `TARGET_RMS`.
    """
    if codes.dim() != 3:
        raise ValueError(f"decode_codes: codes must be (batch, codebooks, frames), got shape {tuple(codes.shape)}.")
    scales = [None]
    if model.config.normalize:
        value = TARGET_RMS if scale is None else scale
        scales = [torch.as_tensor(value, dtype=torch.float32).reshape(-1, 1).expand(codes.shape[0], 1)]
    with torch.no_grad():
        return model.decode(codes[None], scales).audio_values


def export_for_processor(model, input_rms: float = 0.1, output_rms: float = TARGET_RMS):
    """A copy of a trained `normalize=True` codec that needs no scales: `normalize=False`.

    VallEProcessor (like any user of `facebook/encodec_24khz`) decodes codes with no scale.
    Training keeps the encoder's first convolution bias-free and a group norm follows it, so
    the encoder ignores the input level and normalisation can be dropped; the first
    convolution is scaled by 1/`input_rms` only to keep typical inputs far above the group
    norm's epsilon. The output level `output_rms` is folded into the decoder's last norm
    (a group norm over the whole clip, so every decoded clip comes out at a fixed RMS), so
    `decode(codes, [None])` gives speech at about -22 dBFS.
    """
    from transformers import EncodecModel

    if not model.config.normalize:
        raise ValueError("export_for_processor: the codec already has normalize=False; it needs no export.")
    if float(model.encoder.layers[0].conv.bias.detach().abs().max()) > 0:
        raise ValueError(
            "export_for_processor: the encoder's first convolution has a bias, so the codes depend on the input "
            "level and normalisation cannot be dropped; train with valle.lab.codec.train_codec (bias-free)."
        )
    config = model.config.__class__.from_dict({**model.config.to_dict(), "normalize": False})
    exported = EncodecModel(config)
    exported.load_state_dict(model.state_dict())
    with torch.no_grad():
        exported.encoder.layers[0].conv.weight.div_(input_rms)
        last_norm = exported.decoder.layers[-1].norm
        last_norm.weight.mul_(output_rms)
        last_norm.bias.mul_(output_rms)
    return exported.eval()


def load_for_processor(folder: str):
    """A trained lab codec folder as `VallEProcessor` needs it: `export_for_processor` applied when the folder holds
    the as-trained (`normalize=True`) codec, loaded as it is otherwise."""
    from transformers import EncodecModel

    codec = EncodecModel.from_pretrained(folder).eval()
    return export_for_processor(codec) if codec.config.normalize else codec


def codec_round_trip(model, waveform: torch.Tensor, bandwidth: float = 6.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(batch, 1, samples) -> (codes (batch, n_q, frames), resynthesis trimmed to the input length)."""
    with torch.no_grad():
        encoded = model.encode(waveform, bandwidth=bandwidth)
        decoded = model.decode(encoded.audio_codes, encoded.audio_scales).audio_values
    return encoded.audio_codes[0], decoded[..., : waveform.shape[-1]]


def learning_rate_at(step: int, peak: float, max_steps: int, decay_steps: int, final_fraction: float) -> float:
    """`peak` until the last `decay_steps` steps before `max_steps`, then a half cosine from `peak` down to
    `final_fraction * peak` at `max_steps`."""
    decay_start = max_steps - decay_steps
    if decay_steps <= 0 or step < decay_start:
        return peak
    progress = min(1.0, (step - decay_start) / decay_steps)
    return peak * (final_fraction + (1.0 - final_fraction) * 0.5 * (1.0 + math.cos(math.pi * progress)))


def train_codec(
    corpus_path: str,
    output_dir: str,
    max_steps: int = 200_000,
    batch_size: int = 12,
    crop_seconds: float = 0.5,
    learning_rate: float = 1e-3,
    warmup_steps: int = 300,
    commitment_weight: float = 0.5,
    waveform_weight: float = 1.0,
    mel_weight: float = 1.0,
    checkpoint_every: int = 250,
    log_every: int = 50,
    seed: int = 0,
    max_minutes: float | None = None,
    train_limit: int | None = None,
    decoder_only_from: str | None = None,
    decay_steps: int = 0,
    final_lr_fraction: float = 0.05,
    log=print,
):
    """Train (or resume training of) the small EnCodec; writes `output_dir/{checkpoint.pt, model/, for_processor/}`.

    `output_dir/model` (as trained, `normalize=True`) and `output_dir/for_processor` (the same
    codec exported to need no scales: what VallEProcessor should load) are plain
    `EncodecModel.save_pretrained` folders, refreshed at every checkpoint. Stops after `max_steps` steps or
    `max_minutes` minutes, whichever comes first.

    The learning rate is constant after warm-up, except over the last `decay_steps` steps before `max_steps`, where
    it follows a half cosine down to `final_lr_fraction * learning_rate` (by step, so a resumed run decays the same).
    """
    from transformers import EncodecModel

    crop_samples = int(round(crop_seconds * SAMPLING_RATE / HOP_LENGTH)) * HOP_LENGTH
    if decay_steps < 0 or decay_steps > max_steps:
        raise ValueError(f"train_codec: decay_steps={decay_steps} must be between 0 and max_steps={max_steps}.")
    if crop_samples < HOP_LENGTH * 8:
        raise ValueError(f"train_codec: crop_seconds={crop_seconds} is too short; use at least 0.15 s.")
    os.makedirs(output_dir, exist_ok=True)
    checkpoint_path = os.path.join(output_dir, "checkpoint.pt")
    torch.manual_seed(seed)
    model = EncodecModel(small_encodec_config())
    if decoder_only_from is not None:
        if not os.path.isfile(decoder_only_from):
            raise FileNotFoundError(f"train_codec: decoder_only_from={decoder_only_from!r} is not a codec "
                                    "checkpoint.pt; train the codec first (`valle lab codec`).")
        model.load_state_dict(torch.load(decoder_only_from, map_location="cpu", weights_only=False)["model"])
        for module in (model.encoder, model.quantizer):
            module.requires_grad_(False)
        warmup_steps = 0
    trained = [parameter for parameter in model.parameters() if parameter.requires_grad]
    optimizer = torch.optim.AdamW(trained, lr=learning_rate, betas=(0.8, 0.99), weight_decay=0.0)
    step = 0
    seconds_trained = 0.0
    if os.path.exists(checkpoint_path):
        state = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step = state["step"]
        seconds_trained = state.get("seconds_trained", 0.0)
        log(f"resumed from {checkpoint_path} at step {step}")
    elif decoder_only_from is not None:
        log(f"training the decoder of {decoder_only_from} (encoder and codebooks frozen)")
    # The first convolution has no bias, so with the group norm after it the encoder is
    # blind to the input level: codes are the same whether or not the input is normalised,
    # which lets `export_for_processor` drop the normalisation (see there).
    first_conv = model.encoder.layers[0].conv
    with torch.no_grad():
        first_conv.bias.zero_()
    first_conv.bias.requires_grad_(False)
    vq = ResidualVQTrainer(model)
    if step == 0 and decoder_only_from is None:
        vq.mark_uninitialized()
    if decoder_only_from is not None and not vq.initialized:
        raise ValueError(f"train_codec: {decoder_only_from} stopped before its codebooks were initialised (during "
                         "warm-up); train the codec further before training its decoder alone.")
    mel_loss = MultiResolutionMelLoss()
    utterances = load_utterances(corpus_path, "train", limit=train_limit)
    sampler = CropSampler(utterances, crop_samples, seed=seed * 1_000_003 + step)
    validation = CropSampler(load_utterances(corpus_path, "validation", limit=64), crop_samples * 4, seed=seed)
    validation_batch = validation.batch(16)
    quantizer_choices = [model.quantizer.get_num_quantizers_for_bandwidth(b) for b in model.config.target_bandwidths]
    choice_rng = random.Random(seed * 7 + step)
    model.train()
    started = last_log = time.time()
    window = {"loss": 0.0, "wave": 0.0, "mel": 0.0, "commit": 0.0, "n": 0}

    def save_checkpoint():
        temporary = checkpoint_path + ".tmp"
        torch.save(
            {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
             "seconds_trained": seconds_trained + time.time() - started,
             "settings": {"batch_size": batch_size, "crop_samples": crop_samples, "learning_rate": learning_rate,
                          "seed": seed}},
            temporary,
        )
        os.replace(temporary, checkpoint_path)
        if vq.initialized:
            model.save_pretrained(os.path.join(output_dir, "model"))
            export_for_processor(model).save_pretrained(os.path.join(output_dir, "for_processor"))

    while step < max_steps:
        if max_minutes is not None and time.time() - started > max_minutes * 60:
            log(f"stopping after {max_minutes} minutes at step {step}")
            break
        target = sampler.batch(batch_size)
        normalized, scale = normalize_input(target)
        with torch.set_grad_enabled(decoder_only_from is None):
            embeddings = model.encoder(normalized)
        if step < warmup_steps:
            quantized, commitment = embeddings, embeddings.new_zeros(())
        else:
            if not vq.initialized:
                with torch.no_grad():
                    # About 16 vectors per code, so that k-means leaves residuals for the later codebooks.
                    crops = -(-16 * model.config.codebook_size // (crop_samples // HOP_LENGTH))
                    init_embeddings = torch.cat([
                        model.encoder(normalize_input(sampler.batch(64))[0]) for _ in range(-(-crops // 64))
                    ])
                    vq.initialize(init_embeddings, generator=torch.Generator().manual_seed(seed))
                log(f"step {step}: codebooks initialised by k-means")
            quantized, commitment, _ = vq.quantize(embeddings, choice_rng.choice(quantizer_choices),
                                                   update=decoder_only_from is None)
        reconstruction = model.decoder(quantized)[..., :crop_samples] * scale
        wave_term = F.l1_loss(reconstruction, target)
        mel_term = mel_loss(reconstruction, target)
        loss = waveform_weight * wave_term + mel_weight * mel_term + commitment_weight * commitment
        if not torch.isfinite(loss):
            raise FloatingPointError(f"train_codec: loss is {loss.item()} at step {step}; lower the learning rate.")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trained, 1.0)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate_at(step, learning_rate, max_steps, decay_steps, final_lr_fraction)
        optimizer.step()
        step += 1
        for key, value in (("loss", loss), ("wave", wave_term), ("mel", mel_term), ("commit", commitment)):
            window[key] += float(value.detach())
        window["n"] += 1
        if step % log_every == 0:
            now = time.time()
            n = window.pop("n")
            line = {"step": step, **{k: round(v / n, 4) for k, v in window.items()}}
            line["minutes"] = round((now - started) / 60, 1)
            line["audio_seconds_per_second"] = round(batch_size * crop_samples / SAMPLING_RATE * n / (now - last_log), 2)
            if vq.initialized and step > warmup_steps and decoder_only_from is None:
                line["codes_in_use"] = vq.codes_in_use()
            log(json.dumps(line))
            window = {"loss": 0.0, "wave": 0.0, "mel": 0.0, "commit": 0.0, "n": 0}
            last_log = now
        if step % checkpoint_every == 0:
            if vq.initialized:
                model.eval()
                _, resynthesis = codec_round_trip(model, validation_batch)
                model.train()
                log(json.dumps({"step": step, "validation_mel_distance": round(float(mel_loss(resynthesis, validation_batch)), 4)}))
            save_checkpoint()
    save_checkpoint()
    return model

