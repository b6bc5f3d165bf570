"""The lab corpus: many synthetic espeak speakers reading generated English sentences.

Layout (a `datasets.DatasetDict` saved with `save_to_disk`; load it with
`datasets.load_from_disk(path)`):

    splits      train / validation / test. The three splits have disjoint speakers, and
                more: the espeak voice *variants* (which set the timbre: formants, pitch
                base, breathiness) of validation and test never occur in train, so both
                held-out splits are unseen voices, as in the paper's zero-shot protocol.
                Validation and test are disjoint from each other too (validation is for
                choosing checkpoints, test for reporting). Sentences are also disjoint
                across the three splits.
    columns     id           str    "<split>/<speaker_id>/<index>", unique
                audio        Audio(sampling_rate=24000, decode=False): {"bytes": FLAC
                             (16-bit mono, 24 kHz), "path": "<id>.flac"}. Not decoded by
                             `datasets` (that would need torchcodec); use `decode_audio`.
                text         str    exactly what espeak was asked to read
                speaker_id   str    e.g. "en-us+f3_r160_p42_g55" (voice+variant, rate, pitch, range)
                voice        str    the espeak voice name, e.g. "en-us+f3"
                variant      str    the espeak variant, e.g. "f3" (the held-out unit)
                rate, pitch, pitch_range   int   espeak prosody settings
                duration     float  seconds
    metadata    lab_corpus.json next to the splits: the arguments, seed and speaker lists.

Determinism: espeak carries state between utterances inside one process, so every
speaker is synthesised in a fresh process (seeded); the corpus is bit-identical for the
same arguments, whatever the number of workers.
"""

from __future__ import annotations

import io
import json
import multiprocessing
import os
import random
import time
from dataclasses import asdict, dataclass

import numpy as np

from .espeak import ENGLISH_VOICES, SPEECH_VARIANTS, EspeakSynthesizer, EspeakVoice
from .sentences import generate_sentences

SAMPLING_RATE = 24_000
SPLITS = ("train", "validation", "test")
ROWS_PER_TABLE = 4000  # rows per Arrow table while building (about 3 hours of audio, ~300 MB of FLAC)


@dataclass(frozen=True)
class CorpusConfig:
    """What to generate. The defaults give about 5 hours of audio from 200 speakers."""

    seed: int = 0
    train_speakers: int = 160
    validation_speakers: int = 16
    test_speakers: int = 24
    train_utterances_per_speaker: int = 40
    heldout_utterances_per_speaker: int = 20
    # Voice variants reserved for each held-out split (never used in train).
    validation_variants: int = 8
    test_variants: int = 12
    min_words: int = 3
    max_words: int = 24

    def __post_init__(self):
        for name in ("train_speakers", "validation_speakers", "test_speakers",
                     "validation_variants", "test_variants"):
            if getattr(self, name) < 1:
                raise ValueError(f"CorpusConfig: {name} must be at least 1, got {getattr(self, name)}.")
        for name in ("train_utterances_per_speaker", "heldout_utterances_per_speaker"):
            if getattr(self, name) < 2:
                raise ValueError(
                    f"CorpusConfig: {name} must be at least 2 (prompts come from another utterance of the "
                    f"same speaker), got {getattr(self, name)}."
                )
        train_variants = len(SPEECH_VARIANTS) - self.validation_variants - self.test_variants
        if train_variants < 1:
            raise ValueError(
                f"CorpusConfig: validation_variants + test_variants = {self.validation_variants + self.test_variants} "
                f"leaves no variants for train (there are {len(SPEECH_VARIANTS)}); hold out fewer."
            )

    def utterances_per_speaker(self, split: str) -> int:
        return self.train_utterances_per_speaker if split == "train" else self.heldout_utterances_per_speaker

    def speakers(self, split: str) -> int:
        return {"train": self.train_speakers, "validation": self.validation_speakers, "test": self.test_speakers}[split]


def plan_speakers(config: CorpusConfig) -> dict[str, list[EspeakVoice]]:
    """The speakers of each split: variants split first, then voices drawn per split."""
    rng = random.Random(f"speakers-{config.seed}")
    variants = list(SPEECH_VARIANTS)
    rng.shuffle(variants)
    pools = {
        "test": variants[: config.test_variants],
        "validation": variants[config.test_variants : config.test_variants + config.validation_variants],
        "train": variants[config.test_variants + config.validation_variants :],
    }
    taken: set[str] = set()
    speakers: dict[str, list[EspeakVoice]] = {}
    for split in SPLITS:
        pool = pools[split]
        chosen: list[EspeakVoice] = []
        attempts = 0
        while len(chosen) < config.speakers(split):
            attempts += 1
            if attempts > 1000 * config.speakers(split):
                raise ValueError(
                    f"could not draw {config.speakers(split)} distinct {split} speakers from the espeak voices: ask "
                    f"for fewer (--{split}-speakers)."
                )
            # Cycle through the pool so every variant is used before any repeats.
            variant = pool[len(chosen) % len(pool)]
            voice = EspeakVoice(
                language=rng.choice(ENGLISH_VOICES),
                variant=variant,
                rate=rng.randrange(135, 216, 5),
                pitch=rng.randrange(20, 81, 2),
                pitch_range=rng.randrange(20, 91, 5),
            )
            if voice.speaker_id in taken:
                continue
            taken.add(voice.speaker_id)
            chosen.append(voice)
        speakers[split] = chosen
    return speakers


def plan_corpus(config: CorpusConfig) -> dict[str, list[tuple[EspeakVoice, list[str]]]]:
    """For each split: (speaker, sentences) pairs. Sentences are never shared across splits."""
    speakers = plan_speakers(config)
    total = sum(config.speakers(s) * config.utterances_per_speaker(s) for s in SPLITS)
    sentences = generate_sentences(total, seed=config.seed, min_words=config.min_words, max_words=config.max_words)
    plan: dict[str, list[tuple[EspeakVoice, list[str]]]] = {}
    start = 0
    for split in SPLITS:
        per_speaker = config.utterances_per_speaker(split)
        plan[split] = []
        for voice in speakers[split]:
            plan[split].append((voice, sentences[start : start + per_speaker]))
            start += per_speaker
    return plan


def encode_flac(waveform: np.ndarray, sampling_rate: int = SAMPLING_RATE) -> bytes:
    import soundfile

    buffer = io.BytesIO()
    soundfile.write(buffer, np.clip(waveform, -1.0, 1.0), sampling_rate, format="FLAC", subtype="PCM_16")
    return buffer.getvalue()


def decode_audio(audio) -> tuple[np.ndarray, int]:
    """A corpus `audio` cell ({"bytes", "path"}) -> (float32 mono waveform, sampling rate)."""
    import soundfile

    if not isinstance(audio, dict) or not (audio.get("bytes") or audio.get("path")):
        raise ValueError(
            "decode_audio: expected a corpus audio cell, a dict with 'bytes' (or 'path'); got "
            f"{type(audio).__name__}. Load the corpus with datasets.load_from_disk and pass example['audio']."
        )
    source = io.BytesIO(audio["bytes"]) if audio.get("bytes") else audio["path"]
    waveform, sampling_rate = soundfile.read(source, dtype="float32", always_2d=False)
    if waveform.ndim > 1:
        waveform = waveform.mean(axis=1)
    return waveform, sampling_rate


def _synthesize_speaker(job) -> list[dict]:
    """Runs in a fresh process: one speaker's utterances as corpus rows."""
    split, speaker_index, voice, sentences, seed = job
    import soxr

    synthesizer = EspeakSynthesizer(seed=seed)
    rows = []
    for index, text in enumerate(sentences):
        native = synthesizer.synthesize(text, voice)
        waveform = soxr.resample(native, synthesizer.sample_rate, SAMPLING_RATE, quality="HQ").astype(np.float32)
        row_id = f"{split}/{voice.speaker_id}/{index:04d}"
        rows.append({
            "id": row_id,
            "audio": {"bytes": encode_flac(waveform), "path": f"{row_id.replace('/', '_')}.flac"},
            "text": text,
            "speaker_id": voice.speaker_id,
            "voice": voice.name,
            "variant": voice.variant,
            "rate": voice.rate,
            "pitch": voice.pitch,
            "pitch_range": voice.pitch_range,
            "duration": len(waveform) / SAMPLING_RATE,
        })
    return rows


def _features():
    import datasets

    # Built with a plain struct and cast to Audio afterwards: writing an Audio column
    # directly makes `datasets` import torchcodec even for ready-made bytes.
    return datasets.Features({
        "id": datasets.Value("string"),
        "audio": {"bytes": datasets.Value("binary"), "path": datasets.Value("string")},
        "text": datasets.Value("string"),
        "speaker_id": datasets.Value("string"),
        "voice": datasets.Value("string"),
        "variant": datasets.Value("string"),
        "rate": datasets.Value("int32"),
        "pitch": datasets.Value("int32"),
        "pitch_range": datasets.Value("int32"),
        "duration": datasets.Value("float32"),
    })


def build_corpus(config: CorpusConfig, output_dir: str, workers: int = 1, progress: bool = True):
    """Synthesise the corpus and save it to `output_dir` (a `DatasetDict` folder); returns it."""
    import datasets
    from tqdm.auto import tqdm

    if workers < 1:
        raise ValueError(f"build_corpus: workers must be at least 1, got {workers}.")
    if os.path.exists(output_dir) and os.listdir(output_dir):
        raise FileExistsError(
            f"build_corpus: {output_dir} exists and is not empty; pass a new folder or delete it first."
        )
    started = time.time()
    plan = plan_corpus(config)
    jobs = [
        (split, i, voice, sentences, config.seed * 100_003 + i + 7919 * SPLITS.index(split))
        for split in SPLITS
        for i, (voice, sentences) in enumerate(plan[split])
    ]
    rows: dict[str, list[dict]] = {split: [] for split in SPLITS}
    # A fresh process per speaker: espeak's state must start clean for reproducibility.
    context = multiprocessing.get_context("spawn")
    total_utterances = sum(len(job[3]) for job in jobs)
    with context.Pool(workers, maxtasksperchild=1) as pool, tqdm(
        total=total_utterances, unit="utt", desc="espeak corpus", disable=not progress
    ) as bar:
        for job, speaker_rows in zip(jobs, pool.imap(_synthesize_speaker, jobs)):
            rows[job[0]].extend(speaker_rows)
            bar.update(len(speaker_rows))
    splits = {}
    for split in SPLITS:
        # One Arrow table per block of rows: a single binary column holds at most 2 GB (about 20 hours of FLAC),
        # so a large corpus is built as several tables and concatenated.
        tables = []
        for start in range(0, len(rows[split]), ROWS_PER_TABLE):
            block = rows[split][start : start + ROWS_PER_TABLE]
            columns = {name: [row[name] for row in block] for name in _features()}
            tables.append(datasets.Dataset.from_dict(columns, features=_features()))
        dataset = datasets.concatenate_datasets(tables) if len(tables) > 1 else tables[0]
        splits[split] = dataset.cast_column("audio", datasets.Audio(sampling_rate=SAMPLING_RATE, decode=False))
        rows[split] = []  # free memory as we go
    corpus = datasets.DatasetDict(splits)
    corpus.save_to_disk(output_dir)
    summary = {
        "config": asdict(config),
        "sampling_rate": SAMPLING_RATE,
        "seconds_to_build": round(time.time() - started, 1),
        "splits": {
            split: {
                "utterances": len(corpus[split]),
                "speakers": sorted(set(corpus[split]["speaker_id"])),
                "variants": sorted(set(corpus[split]["variant"])),
                "hours": round(float(np.sum(corpus[split]["duration"])) / 3600, 3),
            }
            for split in SPLITS
        },
    }
    with open(os.path.join(output_dir, "lab_corpus.json"), "w") as handle:
        json.dump(summary, handle, indent=1)
    return corpus


def load_corpus(path: str):
    """The saved corpus `DatasetDict`, with a clear error when the folder is not one."""
    import datasets

    if not os.path.isfile(os.path.join(path, "dataset_dict.json")):
        raise FileNotFoundError(
            f"load_corpus: {path} is not a lab corpus folder (no dataset_dict.json); build one with "
            f"`valle lab corpus --out {path}`."
        )
    return datasets.load_from_disk(path)
