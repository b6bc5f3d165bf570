"""The lab's two judges: who is speaking, and what is being said.

- `SpeakerSimilarityJudge`: resemblyzer's speaker encoder (a 3-layer LSTM d-vector model;
  its weights ship inside the resemblyzer wheel). Cosine similarity of utterance
  embeddings, in [-1, 1]; the paper's SPK metric, with a different speaker model.
- `IntelligibilityJudge`: a small `Wav2Vec2ForCTC` (transformers) trained here on the lab
  corpus to output characters; CER and WER against the transcript, the paper's WER
  metric with a lab recogniser. `train_recognizer` trains it (checkpointed, resumable)
  and writes a normal `save_pretrained` folder (model + `Wav2Vec2Processor`).

resemblyzer installs without its broken dependency pins (see README, "The offline speech
lab"): `pip install -e ".[lab]"` then `pip install --no-deps resemblyzer==0.1.4`.
"""

from __future__ import annotations

import json
import os
import random
import time

import numpy as np

from ..metrics import cosine, edit_distance  # noqa: F401  (edit_distance: part of this module's API)
from .sentences import normalize_transcript

RECOGNIZER_SAMPLING_RATE = 16_000
# CTC vocabulary: blank/pad first, "|" for the space between words (the Wav2Vec2 convention).
CHARACTERS = ["<pad>", "<unk>", "|", "'"] + [chr(c) for c in range(ord("a"), ord("z") + 1)]


def _resample(waveform: np.ndarray, sampling_rate: int, target: int) -> np.ndarray:
    waveform = np.asarray(waveform, dtype=np.float32)
    if waveform.ndim != 1:
        raise ValueError(f"expected a 1-D mono waveform, got shape {waveform.shape}; average the channels first.")
    if sampling_rate == target:
        return waveform
    import soxr

    return soxr.resample(waveform, sampling_rate, target).astype(np.float32)


# ----------------------------------------------------------------------------------------
# Speaker similarity
# ----------------------------------------------------------------------------------------
class SpeakerSimilarityJudge:
    """Cosine similarity of resemblyzer speaker embeddings."""

    def __init__(self, device: str = "cpu"):
        try:
            from resemblyzer import VoiceEncoder
            from resemblyzer.audio import normalize_volume, trim_long_silences
        except ImportError as error:
            raise ImportError(
                "SpeakerSimilarityJudge needs resemblyzer. Install it with: pip install -e \".[lab]\" && "
                "pip install --no-deps resemblyzer==0.1.4 (its own pins ask for webrtcvad, which no longer builds; "
                "the `lab` extra brings webrtcvad-wheels and librosa instead)."
            ) from error
        self._normalize_volume = normalize_volume
        self._trim_long_silences = trim_long_silences
        self.encoder = VoiceEncoder(device=device, verbose=False)

    def embed(self, waveform: np.ndarray, sampling_rate: int) -> np.ndarray:
        """A unit-length 256-d speaker embedding of one utterance."""
        waveform = np.asarray(waveform, dtype=np.float32)
        if waveform.ndim != 1 or len(waveform) < sampling_rate // 4:
            raise ValueError(
                f"SpeakerSimilarityJudge.embed: need a 1-D waveform of at least 0.25 s, got shape {waveform.shape} "
                f"at {sampling_rate} Hz."
            )
        # resemblyzer's own preprocessing (16 kHz, -30 dBFS, long silences cut by its voice
        # activity detector), with soxr for the resampling instead of librosa's slower path.
        resampled = _resample(waveform, sampling_rate, 16_000)
        prepared = self._trim_long_silences(self._normalize_volume(resampled, -30, increase_only=True))
        if len(prepared) < 1600:  # the detector removed nearly everything: keep the audio as it is
            prepared = self._normalize_volume(resampled, -30, increase_only=True)
        return self.encoder.embed_utterance(prepared)

    cosine = staticmethod(cosine)

    def similarity(self, a: np.ndarray, b: np.ndarray, sampling_rate: int) -> float:
        return self.cosine(self.embed(a, sampling_rate), self.embed(b, sampling_rate))


# ----------------------------------------------------------------------------------------
# Intelligibility: error rates
# ----------------------------------------------------------------------------------------
def error_rates(references: list[str], hypotheses: list[str]) -> dict[str, float]:
    """Corpus-level CER and WER (edits summed over utterances / reference length summed)."""
    if len(references) != len(hypotheses):
        raise ValueError(
            f"error_rates: {len(references)} references but {len(hypotheses)} hypotheses; pass one hypothesis per reference."
        )
    if not references:
        raise ValueError("error_rates: no utterances to score.")
    char_edits = char_total = word_edits = word_total = 0
    for reference, hypothesis in zip(references, hypotheses):
        reference, hypothesis = normalize_transcript(reference), normalize_transcript(hypothesis)
        char_edits += edit_distance(reference, hypothesis)
        char_total += max(1, len(reference))
        word_edits += edit_distance(reference.split(), hypothesis.split())
        word_total += max(1, len(reference.split()))
    return {"cer": char_edits / char_total, "wer": word_edits / word_total}


# ----------------------------------------------------------------------------------------
# Intelligibility: the recogniser
# ----------------------------------------------------------------------------------------
def recognizer_config(**overrides):
    """A 1.35M-parameter Wav2Vec2ForCTC: 4 narrow strided conv layers (x320: 50 frames/s at 16 kHz), 4 transformer layers.

    Fewer, wider-strided conv layers than wav2vec 2.0's seven: half the compute on CPU for
    the same frame rate.
    """
    from transformers import Wav2Vec2Config

    settings = dict(
        vocab_size=len(CHARACTERS),
        pad_token_id=0,
        conv_dim=[64, 64, 96, 96],
        conv_stride=[5, 4, 4, 4],
        conv_kernel=[10, 8, 8, 8],
        feat_extract_norm="layer",
        do_stable_layer_norm=True,
        hidden_size=160,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=512,
        num_conv_pos_embeddings=32,
        num_conv_pos_embedding_groups=8,
        hidden_dropout=0.05,
        attention_dropout=0.05,
        activation_dropout=0.05,
        feat_proj_dropout=0.05,
        final_dropout=0.05,
        layerdrop=0.0,
        mask_time_prob=0.05,
        mask_time_length=5,
        ctc_loss_reduction="mean",
        ctc_zero_infinity=True,
    )
    settings.update(overrides)
    return Wav2Vec2Config(**settings)


def build_processor(output_dir: str | None = None):
    """A Wav2Vec2Processor (character CTC tokenizer + 16 kHz feature extractor)."""
    import tempfile

    from transformers import Wav2Vec2CTCTokenizer, Wav2Vec2FeatureExtractor, Wav2Vec2Processor

    with tempfile.TemporaryDirectory() as folder:
        vocab_path = os.path.join(folder, "vocab.json")
        with open(vocab_path, "w") as handle:
            json.dump({symbol: index for index, symbol in enumerate(CHARACTERS)}, handle)
        tokenizer = Wav2Vec2CTCTokenizer(
            vocab_path, unk_token="<unk>", pad_token="<pad>", word_delimiter_token="|",
            bos_token=None, eos_token=None,
        )
    extractor = Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=RECOGNIZER_SAMPLING_RATE, padding_value=0.0,
        do_normalize=True, return_attention_mask=True,
    )
    processor = Wav2Vec2Processor(feature_extractor=extractor, tokenizer=tokenizer)
    if output_dir:
        processor.save_pretrained(output_dir)
    return processor


class IntelligibilityJudge:
    """Transcribes speech with the lab recogniser and scores it (CER / WER)."""

    def __init__(self, model_dir: str):
        from transformers import Wav2Vec2ForCTC, Wav2Vec2Processor

        if not os.path.isfile(os.path.join(model_dir, "config.json")):
            raise FileNotFoundError(
                f"IntelligibilityJudge: {model_dir} holds no recogniser (no config.json); train one with "
                f"`valle lab judge --corpus CORPUS --out {model_dir}`."
            )
        self.processor = Wav2Vec2Processor.from_pretrained(model_dir)
        self.model = Wav2Vec2ForCTC.from_pretrained(model_dir).eval()

    def transcribe(self, waveforms: list[np.ndarray], sampling_rate: int, batch_size: int = 8) -> list[str]:
        import torch

        texts: list[str] = []
        for start in range(0, len(waveforms), batch_size):
            chunk = [_resample(w, sampling_rate, RECOGNIZER_SAMPLING_RATE) for w in waveforms[start : start + batch_size]]
            inputs = self.processor(
                chunk, sampling_rate=RECOGNIZER_SAMPLING_RATE, return_tensors="pt", padding=True, return_attention_mask=True
            )
            with torch.no_grad():
                logits = self.model(inputs.input_values, attention_mask=inputs.attention_mask).logits
            texts.extend(self.processor.batch_decode(logits.argmax(-1)))
        return [text.strip() for text in texts]

    def score(self, waveforms: list[np.ndarray], sampling_rate: int, references: list[str]) -> dict:
        hypotheses = self.transcribe(waveforms, sampling_rate)
        return {**error_rates(references, hypotheses), "hypotheses": hypotheses}


def _encode_labels(processor, text: str) -> list[int]:
    normalized = normalize_transcript(text).replace(" ", "|")
    return [processor.tokenizer.convert_tokens_to_ids(c) for c in normalized]


def train_recognizer(
    corpus_path: str,
    output_dir: str,
    max_steps: int = 100_000,
    batch_seconds: float = 20.0,
    learning_rate: float = 1e-3,
    warmup_steps: int = 300,
    checkpoint_every: int = 250,
    log_every: int = 50,
    seed: int = 0,
    max_minutes: float | None = None,
    train_limit: int | None = None,
    log=print,
):
    """Train (or resume) the character CTC recogniser; writes `output_dir/{checkpoint.pt, model/}`.

    Batches hold utterances of similar length, up to `batch_seconds` of audio. Half of the
    batches get light noise and a random gain, so the judge is not thrown by small codec
    artefacts. Validation CER is logged at every checkpoint.
    """
    import torch
    from transformers import Wav2Vec2ForCTC

    from .corpus import decode_audio, load_corpus

    os.makedirs(output_dir, exist_ok=True)
    checkpoint_path = os.path.join(output_dir, "checkpoint.pt")
    torch.manual_seed(seed)
    processor = build_processor()
    model = Wav2Vec2ForCTC(recognizer_config())
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.01)
    step = 0
    if os.path.exists(checkpoint_path):
        state = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step = state["step"]
        log(f"resumed from {checkpoint_path} at step {step}")

    corpus = load_corpus(corpus_path)

    def load_split(split, limit=None):
        dataset = corpus[split]
        if limit is not None:
            dataset = dataset.select(range(min(limit, len(dataset))))
        items = []
        for example in dataset:
            waveform, sampling_rate = decode_audio(example["audio"])
            items.append((_resample(waveform, sampling_rate, RECOGNIZER_SAMPLING_RATE), example["text"]))
        return items

    train_items = load_split("train", train_limit)
    validation_items = load_split("validation", 64)
    log(f"loaded {len(train_items)} training utterances")
    order = sorted(range(len(train_items)), key=lambda i: len(train_items[i][0]))
    batches, current, current_samples = [], [], 0
    for index in order:
        length = len(train_items[index][0])
        if current and (len(current) + 1) * length > batch_seconds * RECOGNIZER_SAMPLING_RATE:
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    rng = random.Random(seed * 1_000_003 + step)

    def make_inputs(items, augment: bool):
        waveforms = []
        for waveform, _ in items:
            if augment and rng.random() < 0.5:
                waveform = waveform * rng.uniform(0.3, 1.5)
                noise_level = np.sqrt(np.mean(waveform**2)) * 10 ** (-rng.uniform(15, 40) / 20)
                waveform = waveform + np.random.default_rng(rng.randrange(2**31)).normal(0, noise_level, len(waveform))
            waveforms.append(waveform.astype(np.float32))
        inputs = processor(waveforms, sampling_rate=RECOGNIZER_SAMPLING_RATE, return_tensors="pt", padding=True,
                           return_attention_mask=True)
        labels = [_encode_labels(processor, text) for _, text in items]
        width = max(len(label) for label in labels)
        label_tensor = torch.full((len(labels), width), -100, dtype=torch.long)
        for row, label in enumerate(labels):
            label_tensor[row, : len(label)] = torch.tensor(label)
        return inputs, label_tensor

    def validate() -> dict:
        model.eval()
        hypotheses = []
        with torch.no_grad():
            for start in range(0, len(validation_items), 8):
                chunk = validation_items[start : start + 8]
                inputs, _ = make_inputs(chunk, augment=False)
                logits = model(inputs.input_values, attention_mask=inputs.attention_mask).logits
                hypotheses.extend(processor.batch_decode(logits.argmax(-1)))
        model.train()
        return error_rates([text for _, text in validation_items], hypotheses)

    def save_checkpoint():
        temporary = checkpoint_path + ".tmp"
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step}, temporary)
        os.replace(temporary, checkpoint_path)
        model.save_pretrained(os.path.join(output_dir, "model"))
        processor.save_pretrained(os.path.join(output_dir, "model"))

    model.train()
    started = last_log = time.time()
    running_loss, running_n = 0.0, 0
    while step < max_steps:
        if max_minutes is not None and time.time() - started > max_minutes * 60:
            log(f"stopping after {max_minutes} minutes at step {step}")
            break
        batch = [train_items[i] for i in rng.choice(batches)]
        inputs, labels = make_inputs(batch, augment=True)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate * min(1.0, (step + 1) / warmup_steps)
        loss = model(inputs.input_values, attention_mask=inputs.attention_mask, labels=labels).loss
        if not torch.isfinite(loss):
            raise FloatingPointError(f"train_recognizer: loss is {loss.item()} at step {step}; lower the learning rate.")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        step += 1
        running_loss += float(loss.detach())
        running_n += 1
        if step % log_every == 0:
            now = time.time()
            log(json.dumps({"step": step, "ctc_loss": round(running_loss / running_n, 4),
                            "seconds_per_step": round((now - last_log) / running_n, 3),
                            "minutes": round((now - started) / 60, 1)}))
            running_loss, running_n, last_log = 0.0, 0, now
        if step % checkpoint_every == 0:
            log(json.dumps({"step": step, "validation": validate()}))
            save_checkpoint()
    save_checkpoint()
    return model, processor
