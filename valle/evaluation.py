"""The paper's evaluation (SPEC section 6) as a harness: `valle evaluate`.

For every test utterance of 4-10 s:

- ground truth: the recording itself;
- codec resynthesis: the recording encoded and decoded by the model's own codec (the ceiling for any codec LM);
- VALL-E: the utterance's text said in the voice of a 3 s crop of ANOTHER utterance of the same speaker, whose
  transcript is the phoneme prompt;
- VALL-E-continual: the first 3 s of the same utterance with its whole transcript; the model continues it;
- VALL-E, AR without acoustic prompt (the paper's ablation, SPK 0.585 -> 0.236): the AR reads the utterance's text
  alone (no prompt codes, no prompt transcript) and starts from the audio begin-of-speech token, then the NAR gets
  exactly the VALL-E row's inputs (prompt transcript + text, the same 3 s crop). Only models with
  `config.use_audio_bos=True` can run it; for others (the paper's layout, converted lifeiteng / VALL-E X
  checkpoints) the row is skipped with a message. Computed by default in the lab, on request (`--systems`) at
  full scale;
- NAR on ground-truth codebook 1 (the paper's NAR ablation with both prompts, WER 2.8 / SPK 0.732 there): codebook
  1 is the recording's own, the NAR fills the others with the VALL-E row's prompts. Deterministic (scored once),
  it shows what the NAR can do when the AR is perfect; in the lab by default, on request at full scale.

Two judges score each output:

- WER: a CTC recogniser transcribes the audio; word edits against the reference text after `normalize_text`,
  summed over utterances and divided by the reference words (corpus-level, as is usual);
- SPK: cosine similarity of speaker embeddings between the prompt and the output. For the synthetic systems the
  prompt is the codec-decoded prompt (what the model heard, as in the paper); for ground truth it is the
  original crop, for codec resynthesis the codec-decoded crop.

The sampled systems run once per seed (3 by default) and are averaged, with the spread across seeds. Every
per-utterance result is appended to `results.jsonl` in the output folder as it is produced, so an interrupted run
picks up where it stopped; `summary.json` holds the table, the per-seed numbers and every per-utterance record.

Full scale: LibriSpeech test-clean, `facebook/hubert-large-ls960-ft` (ASR) and `microsoft/wavlm-base-plus-sv`
(speaker verification). Offline lab: the lab corpus's held-out test speakers with the lab judges
(`valle.lab.judges`).
"""

from __future__ import annotations

import io
import json
import math
import os
import random
import re
import sys
import unicodedata
import zlib
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .metrics import cosine, edit_distance  # noqa: F401  (part of this module's API)

DEFAULT_DATASET = "openslr/librispeech_asr"
DEFAULT_DATASET_CONFIG = "clean"
DEFAULT_SPLIT = "test"
DEFAULT_ASR_MODEL = "facebook/hubert-large-ls960-ft"
DEFAULT_SPEAKER_MODEL = "microsoft/wavlm-base-plus-sv"
DEFAULT_LAB_DIR = "runs/lab"
# The trained lab recogniser as committed in the repository, used when the lab folder has none of its own.
PUBLISHED_JUDGE = str(Path(__file__).resolve().parents[1] / "lab_artifacts" / "judge")

GROUND_TRUTH, CODEC, VALLE, CONTINUAL = "ground_truth", "codec_resynthesis", "valle", "valle_continual"
VALLE_NO_AR_PROMPT = "valle_no_ar_prompt"  # ablation: the AR without the acoustic prompt (needs an audio BOS)
NAR_GROUND_TRUTH_FIRST = "nar_ground_truth_first"  # ablation: the NAR alone, on the recording's own codebook 1
CODEC_FIRST_CODEBOOK = "codec_first_codebook"  # reference for the NAR: the recording's codebook 1 decoded alone
SYSTEMS = (GROUND_TRUTH, CODEC, VALLE, CONTINUAL, VALLE_NO_AR_PROMPT, NAR_GROUND_TRUTH_FIRST, CODEC_FIRST_CODEBOOK)
SYSTEM_TITLES = {
    GROUND_TRUTH: "ground truth",
    CODEC: "codec resynthesis",
    VALLE: "VALL-E",
    CONTINUAL: "VALL-E-continual",
    VALLE_NO_AR_PROMPT: "VALL-E, AR without acoustic prompt (ablation)",
    NAR_GROUND_TRUTH_FIRST: "NAR on ground-truth codebook 1, both prompts (ablation)",
    CODEC_FIRST_CODEBOOK: "codec, ground-truth codebook 1 alone (no NAR)",
}
# The rows computed unless `systems` says otherwise: the paper's Table 2 at full scale, plus the ablations in the
# lab (cheap there; they tell whether the AR takes the voice from the prompt, and what the NAR adds on its own).
DEFAULT_SYSTEMS = (GROUND_TRUTH, CODEC, VALLE, CONTINUAL)
DEFAULT_LAB_SYSTEMS = SYSTEMS
SAMPLED_SYSTEMS = (VALLE, CONTINUAL, VALLE_NO_AR_PROMPT)  # the others are deterministic: scored once, not per seed
# The VALL-E mode systems: the 3 s crop of another utterance as the prompt, its transcript as the phoneme prompt.
CROP_PROMPT_SYSTEMS = (VALLE, VALLE_NO_AR_PROMPT, NAR_GROUND_TRUTH_FIRST)
# Below this an output cannot be judged (the recognisers' conv stacks and the speaker models need some audio);
# such an output counts as all words deleted and gets no similarity.
MIN_JUDGED_SECONDS = 0.25
RESULTS_FILE, SETTINGS_FILE, SUMMARY_FILE, TABLE_FILE = "results.jsonl", "settings.json", "summary.json", "table.md"
# Settings that change what a per-utterance result means; a resumed run must agree on all of them. Seeds, systems
# and the number of utterances may grow between runs: the results already there stay valid.
RESUME_KEYS = ("model", "data", "asr_model", "speaker_model", "min_seconds", "max_seconds", "prompt_seconds",
               "selection_seed", "generation", "sampling")
# The AR's sampling options that change its outputs; recorded as they took effect (the model's generation config
# with the run's overrides), so a table says how it was sampled even when no flag was given.
SAMPLING_KEYS = ("do_sample", "top_k", "top_p", "temperature", "repetition_aware_sampling")


# ---------------------------------------------------------------------------------------------------------------------
# Text normalisation and error counts
# ---------------------------------------------------------------------------------------------------------------------
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'"})


def normalize_text(text: str) -> str:
    """
    The English normaliser both sides of WER go through: Unicode compatibility form, lower case, typographic
    apostrophes made plain, punctuation (hyphens and dashes included) turned into word breaks, apostrophes kept only
    inside words ("don't", not quotes), single spaces.

    Numbers, abbreviations and symbols are NOT spelled out ("42" stays "42", "Dr." becomes "dr", "$" is dropped),
    while a recogniser writes what it hears ("forty two", "doctor"): references with digits or abbreviations
    therefore count as errors. LibriSpeech transcripts are already spelled out, so the paper's protocol is not
    affected; for other data, spell the transcripts out first.
    """
    if not isinstance(text, str):
        raise TypeError(f"normalize_text: expected a string, got {type(text).__name__}.")
    text = unicodedata.normalize("NFKC", text).translate(_APOSTROPHES).lower()
    text = re.sub(r"[^\w\s']|_", " ", text)
    text = re.sub(r"(?<!\w)'|'(?!\w)", " ", text)
    return " ".join(text.split())


def error_counts(reference: str, hypothesis: str) -> dict:
    """Word and character edits of `hypothesis` against `reference`, both normalised, with the reference sizes."""
    reference, hypothesis = normalize_text(reference), normalize_text(hypothesis)
    return {
        "word_errors": edit_distance(reference.split(), hypothesis.split()),
        "reference_words": len(reference.split()),
        "char_errors": edit_distance(reference, hypothesis),
        "reference_chars": len(reference),
    }


# ---------------------------------------------------------------------------------------------------------------------
# Test data: utterances and the test cases built from them
# ---------------------------------------------------------------------------------------------------------------------
@dataclass
class Utterance:
    id: str
    speaker_id: str
    text: str
    seconds: float
    audio: Callable[[], Any] = field(repr=False)  # returns what `processing_valle.load_audio` reads

    def load(self, sampling_rate: int) -> np.ndarray:
        from processing_valle import load_audio

        return load_audio(self.audio(), None, sampling_rate, name=f"utterance {self.id}")


@dataclass
class TestCase:
    utterance: Utterance
    prompt: Utterance  # another utterance of the same speaker (VALL-E mode)
    prompt_start: float  # where its 3 s crop starts, in seconds


def _audio_seconds(cell) -> float:
    import soundfile

    if isinstance(cell, dict):
        if cell.get("array") is not None:
            return len(cell["array"]) / float(cell["sampling_rate"])
        cell = io.BytesIO(cell["bytes"]) if cell.get("bytes") else cell.get("path")
    info = soundfile.info(cell)
    return info.frames / float(info.samplerate)


def _librispeech_folder(folder: Path) -> list[Utterance]:
    """LibriSpeech's own layout: SPEAKER/CHAPTER/SPEAKER-CHAPTER.trans.txt lines "ID TEXT" beside ID.flac."""
    utterances = []
    for transcripts in sorted(folder.rglob("*.trans.txt")):
        for line in transcripts.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            utterance_id, _, text = line.strip().partition(" ")
            path = transcripts.parent / f"{utterance_id}.flac"
            if not path.is_file():
                raise FileNotFoundError(f"{transcripts} names {utterance_id}, but {path} does not exist.")
            utterances.append(Utterance(
                id=utterance_id, speaker_id=utterance_id.split("-")[0], text=text, seconds=_audio_seconds(str(path)),
                audio=lambda path=str(path): path,
            ))
    return utterances


def load_utterances(
    source: str,
    config: str | None = None,
    split: str = DEFAULT_SPLIT,
    audio_column: str = "audio",
    text_column: str = "text",
    speaker_column: str = "speaker_id",
    id_column: str = "id",
) -> list[Utterance]:
    """
    Every utterance of a test set, from a 🤗 datasets Hub name (with `config` and `split`), a folder written by
    `save_to_disk` (a `DatasetDict`, whose `split` is taken, or a single `Dataset`), or a folder in LibriSpeech's
    own layout (`*.trans.txt` beside the `.flac` files). Audio stays on disk until a test case needs it.
    """
    import datasets

    path = Path(source)
    if path.is_dir():
        if (path / "dataset_dict.json").is_file():
            splits = datasets.load_from_disk(str(path))
            if split not in splits:
                raise ValueError(f"{source} has no split {split!r}; it has {sorted(splits)}. Pass --split.")
            dataset = splits[split]
        elif (path / "state.json").is_file():
            dataset = datasets.load_from_disk(str(path))
        else:
            utterances = _librispeech_folder(path)
            if not utterances:
                raise ValueError(
                    f"{source} is neither a datasets folder (save_to_disk) nor LibriSpeech's layout (no *.trans.txt "
                    "files under it). Give one of those, or a Hub dataset name."
                )
            return utterances
    elif path.exists():
        raise ValueError(f"{source} is a file; give a datasets folder, a LibriSpeech folder or a Hub dataset name.")
    else:
        try:
            dataset = datasets.load_dataset(source, config, split=split)
        except Exception as error:  # unreachable Hub, unknown name or config: say which and what to do
            raise ValueError(
                f"could not load the dataset {source!r} (config {config!r}, split {split!r}): {error}. Give a local "
                "folder (save_to_disk or LibriSpeech layout) when the Hub is out of reach."
            ) from error

    missing = [name for name in (audio_column, text_column, speaker_column) if name not in dataset.column_names]
    if missing:
        raise ValueError(
            f"the dataset lacks the column(s) {missing}; it has {dataset.column_names}. Name the right ones with "
            "--audio-column / --text-column / --speaker-column."
        )
    if isinstance(dataset.features[audio_column], datasets.Audio):
        # Keep the file bytes: decoding is ours (soundfile + soxr), and datasets' decoder needs torchcodec.
        dataset = dataset.cast_column(audio_column, datasets.Audio(decode=False))
    texts, speakers = dataset[text_column], dataset[speaker_column]
    ids = dataset[id_column] if id_column in dataset.column_names else [str(i) for i in range(len(dataset))]
    if "duration" in dataset.column_names:
        durations = [float(d) for d in dataset["duration"]]
    else:
        durations = [_audio_seconds(row[audio_column]) for row in dataset.select_columns([audio_column])]
    return [
        Utterance(id=str(ids[i]), speaker_id=str(speakers[i]), text=texts[i], seconds=durations[i],
                  audio=lambda i=i: dataset[i][audio_column])
        for i in range(len(dataset))
    ]


def select_test_cases(
    utterances: list[Utterance],
    min_seconds: float = 4.0,
    max_seconds: float = 10.0,
    prompt_seconds: float = 3.0,
    seed: int = 0,
    limit: int | None = None,
) -> tuple[list[TestCase], dict]:
    """
    The paper's test cases: utterances of `min_seconds`-`max_seconds`, each with a random `prompt_seconds` crop of
    another utterance of the same speaker (at least `prompt_seconds` long). The draw depends only on `seed` and the
    utterance ids, so it is the same in every run. `limit` keeps that many cases taken in turn from each speaker
    (a larger limit keeps every case of a smaller one). Returns the cases and the counts of utterances left out.
    """
    if not 0 < prompt_seconds < min_seconds <= max_seconds:
        raise ValueError(
            f"need 0 < prompt_seconds < min_seconds <= max_seconds, got {prompt_seconds}, {min_seconds}, "
            f"{max_seconds}: VALL-E-continual keeps the first prompt_seconds of each test utterance as its prompt."
        )
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}.")
    seen = set()
    by_speaker: dict[str, list[Utterance]] = defaultdict(list)
    for utterance in utterances:
        if utterance.id in seen:
            raise ValueError(f"utterance id {utterance.id!r} occurs twice; ids must be unique (see --id-column).")
        seen.add(utterance.id)
        by_speaker[utterance.speaker_id].append(utterance)
    skipped = {"outside_duration_range": 0, "no_other_utterance_for_prompt": 0}
    cases_by_speaker: dict[str, list[TestCase]] = defaultdict(list)
    for utterance in utterances:
        if not min_seconds <= utterance.seconds <= max_seconds:
            skipped["outside_duration_range"] += 1
            continue
        candidates = [other for other in by_speaker[utterance.speaker_id]
                      if other.id != utterance.id and other.seconds >= prompt_seconds]
        if not candidates:
            skipped["no_other_utterance_for_prompt"] += 1
            continue
        rng = random.Random(f"{seed}:{utterance.id}")
        prompt = rng.choice(candidates)
        start = math.floor(rng.uniform(0.0, prompt.seconds - prompt_seconds) * 100) / 100
        cases_by_speaker[utterance.speaker_id].append(TestCase(utterance, prompt, start))
    cases, queues = [], [list(q) for q in cases_by_speaker.values()]
    while any(queues) and (limit is None or len(cases) < limit):
        for queue in queues:
            if queue and (limit is None or len(cases) < limit):
                cases.append(queue.pop(0))
    if not cases:
        raise ValueError(
            f"no test case: none of the {len(utterances)} utterances lasts {min_seconds}-{max_seconds} s with another "
            f"utterance of the same speaker of at least {prompt_seconds} s ({skipped}). Check the data or the "
            "--min-seconds / --max-seconds range."
        )
    return cases, skipped


# ---------------------------------------------------------------------------------------------------------------------
# Judges (full scale). Any object with `transcribe(waveforms, sampling_rate) -> list[str]`, or with
# `embed(waveform, sampling_rate) -> vector`, serves; the lab's judges have the same two methods.
# ---------------------------------------------------------------------------------------------------------------------
def _resample(waveform: np.ndarray, rate: int, target: int) -> np.ndarray:
    if rate == target:
        return np.asarray(waveform, dtype=np.float32)
    import soxr

    return soxr.resample(np.asarray(waveform, dtype=np.float32), rate, target, quality="HQ").astype(np.float32)


def _load_pretrained(loader, name_or_path: str, what: str, flag: str):
    try:
        return loader(name_or_path)
    except Exception as error:
        raise ValueError(
            f"could not load the {what} {name_or_path!r}: {error}. Pass a local folder with {flag} (written by "
            "save_pretrained), or run where the Hugging Face Hub is reachable."
        ) from error


class CTCRecognizer:
    """A transformers CTC model (HuBERT, wav2vec 2.0, ...) and its processor, greedy decoding without an LM."""

    def __init__(self, name_or_path: str = DEFAULT_ASR_MODEL, device: str = "cpu"):
        from transformers import AutoModelForCTC, AutoProcessor

        self.name = name_or_path
        self.processor = _load_pretrained(AutoProcessor.from_pretrained, name_or_path, "ASR processor", "--asr-model")
        if not hasattr(self.processor, "feature_extractor") or not hasattr(self.processor, "tokenizer"):
            raise ValueError(
                f"{name_or_path!r} has no CTC processor (feature extractor + tokenizer, e.g. Wav2Vec2Processor); "
                f"AutoProcessor gave a {type(self.processor).__name__}."
            )
        self.model = _load_pretrained(AutoModelForCTC.from_pretrained, name_or_path, "ASR model", "--asr-model")
        self.model.eval().to(device)
        self.device = device
        self.sampling_rate = self.processor.feature_extractor.sampling_rate

    def transcribe(self, waveforms: list[np.ndarray], sampling_rate: int) -> list[str]:
        import torch

        texts = []
        for waveform in waveforms:  # one at a time: padding would change what a normalising extractor sees
            audio = _resample(waveform, sampling_rate, self.sampling_rate)
            inputs = self.processor.feature_extractor(audio, sampling_rate=self.sampling_rate, return_tensors="pt")
            with torch.no_grad():
                logits = self.model(inputs.input_values.to(self.device)).logits
            texts.append(self.processor.tokenizer.batch_decode(logits.argmax(-1))[0].strip())
        return texts


class XVectorSpeakerJudge:
    """Speaker embeddings from a transformers x-vector model (WavLMForXVector and the like)."""

    def __init__(self, name_or_path: str = DEFAULT_SPEAKER_MODEL, device: str = "cpu"):
        from transformers import AutoFeatureExtractor, AutoModelForAudioXVector

        self.name = name_or_path
        self.feature_extractor = _load_pretrained(
            AutoFeatureExtractor.from_pretrained, name_or_path, "speaker model's feature extractor", "--speaker-model"
        )
        self.model = _load_pretrained(
            AutoModelForAudioXVector.from_pretrained, name_or_path, "speaker model", "--speaker-model"
        )
        self.model.eval().to(device)
        self.device = device
        self.sampling_rate = self.feature_extractor.sampling_rate

    def embed(self, waveform: np.ndarray, sampling_rate: int) -> np.ndarray:
        import torch

        audio = _resample(waveform, sampling_rate, self.sampling_rate)
        inputs = self.feature_extractor(audio, sampling_rate=self.sampling_rate, return_tensors="pt")
        with torch.no_grad():
            embedding = self.model(inputs.input_values.to(self.device)).embeddings[0]
        return embedding.float().cpu().numpy()


# ---------------------------------------------------------------------------------------------------------------------
# The offline lab
# ---------------------------------------------------------------------------------------------------------------------
class LabNotReady(RuntimeError):
    """The lab's artefacts or optional packages are missing; the message says what to run or install."""


def lab_recognizer_dir(lab_dir: str = DEFAULT_LAB_DIR) -> str:
    """The lab folder's own recogniser (`valle lab judge`), else the copy committed with the project
    (`lab_artifacts/judge`, written by `valle lab publish`)."""
    own = os.path.join(lab_dir, "judge", "model")
    if not os.path.isfile(os.path.join(own, "config.json")) and os.path.isfile(
        os.path.join(PUBLISHED_JUDGE, "config.json")
    ):
        return PUBLISHED_JUDGE
    return own


def lab_setup(lab_dir: str = DEFAULT_LAB_DIR):
    """The lab corpus folder and the lab judges (recogniser, speaker similarity), or `LabNotReady` naming the fix."""
    corpus = os.path.join(lab_dir, "corpus")
    recognizer = lab_recognizer_dir(lab_dir)
    if not os.path.isfile(os.path.join(corpus, "dataset_dict.json")):
        judge_hint = (
            "" if recognizer == PUBLISHED_JUDGE else f" (then `valle lab judge --dir {lab_dir}` for the recogniser)"
        )
        raise LabNotReady(
            f"the lab corpus {corpus} does not exist yet; build it with `valle lab corpus --dir {lab_dir}`{judge_hint}, "
            f"or `valle lab all --dir {lab_dir}`."
        )
    if not os.path.isfile(os.path.join(recognizer, "config.json")):
        raise LabNotReady(
            f"the lab recogniser {recognizer} does not exist yet; train it with `valle lab judge --dir {lab_dir}`."
        )
    try:
        from valle.lab.judges import IntelligibilityJudge, SpeakerSimilarityJudge

        speaker_judge = SpeakerSimilarityJudge()
    except ImportError as error:
        raise LabNotReady(f"the lab judges' optional packages are missing: {error}") from error
    return corpus, IntelligibilityJudge(recognizer), speaker_judge


# ---------------------------------------------------------------------------------------------------------------------
# Running and resuming
# ---------------------------------------------------------------------------------------------------------------------
def result_key(system: str, utterance_id: str, seed: int | None) -> str:
    return f"{system}|{utterance_id}|{'-' if seed is None else seed}"


def read_results(path: str | Path) -> dict[str, dict]:
    """The records already in a results file, by key. A last line cut off by an interruption is dropped (that
    result is simply redone); a broken line elsewhere means the file was edited and is refused."""
    records: dict[str, dict] = {}
    path = Path(path)
    if not path.is_file():
        return records
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            records[result_key(record["system"], record["utterance_id"], record["seed"])] = record
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            if number == len(lines):
                break
            raise ValueError(
                f"{path} line {number} is not a result record ({error}); the file was changed by hand. Remove that "
                "line, or start over with a new --out."
            ) from error
    return records


def repair_results(path: str | Path) -> None:
    """If the last write to a results file was cut off, keeps its complete records only, so that new ones start on
    a line of their own."""
    path = Path(path)
    if path.is_file() and path.stat().st_size and not path.read_bytes().endswith(b"\n"):
        done = read_results(path)
        temporary = path.with_suffix(".tmp")
        temporary.write_text("".join(json.dumps(record) + "\n" for record in done.values()), encoding="utf-8")
        os.replace(temporary, path)


def worker_results_path(folder: str | Path, number: int) -> Path:
    """Where worker `number` of `valle evaluate --workers` appends its results (merged into `results.jsonl` by
    `merge_worker_results`): one writer per file, so that a write cut off by a crash is always a file's last line."""
    return Path(folder) / f"results.worker{number}.jsonl"


def worker_results_files(folder: str | Path) -> list[Path]:
    """The workers' results files in `folder` (see `worker_results_path`), in order; none if it does not exist."""
    folder = Path(folder)
    return sorted(folder.glob("results.worker*.jsonl")) if folder.is_dir() else []


def merge_worker_results(folder: str | Path) -> int:
    """Appends to `results.jsonl` the records of the workers' files that it lacks, then deletes those files (a cut-off
    last line of any file is dropped: that result is redone). Safe to run again after an interruption at any point.
    Returns how many records were added."""
    parts = worker_results_files(folder)
    if not parts:
        return 0
    results = Path(folder) / RESULTS_FILE
    repair_results(results)
    done = read_results(results)
    added = 0
    with open(results, "a", encoding="utf-8") as handle:
        for part in parts:
            for key, record in read_results(part).items():
                if key not in done:
                    handle.write(json.dumps(record) + "\n")
                    done[key] = record
                    added += 1
    for part in parts:
        part.unlink()
    return added


def _check_settings(folder: Path, settings: dict) -> None:
    path = folder / SETTINGS_FILE
    if path.is_file():
        before = json.loads(path.read_text())
        changed = [k for k in RESUME_KEYS if k in before and before.get(k) != settings.get(k)]
        if changed:
            details = "; ".join(f"{k}: {before.get(k)!r} then, {settings.get(k)!r} now" for k in changed)
            raise ValueError(
                f"{folder} holds results of a different evaluation ({details}). Pass a new --out, or delete {folder} "
                "to start over."
            )
    folder.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(f".{os.getpid()}.tmp")  # the workers of one run write the same settings at once
    temporary.write_text(json.dumps(settings, indent=1, sort_keys=True))
    os.replace(temporary, path)


def effective_sampling(model, generation_kwargs: dict | None = None) -> dict:
    """The AR sampling options a `generate()` call with `generation_kwargs` uses: the model's generation config,
    overridden by the call's keywords (`SAMPLING_KEYS` only)."""
    config = getattr(model, "generation_config", None)
    kwargs = generation_kwargs or {}
    return {key: kwargs[key] if key in kwargs else getattr(config, key, None) for key in SAMPLING_KEYS}


def describe_sampling(sampling: dict) -> str:
    """`effective_sampling` in words, e.g. "sampling top-k 10, temperature 1.0" or "greedy"."""
    if sampling.get("do_sample") is False:
        return "greedy"
    parts = []
    if sampling.get("top_k"):
        parts.append(f"top-k {sampling['top_k']}")
    if sampling.get("top_p") is not None and sampling["top_p"] < 1.0:
        parts.append(f"top-p {sampling['top_p']}")
    if sampling.get("temperature") is not None:
        parts.append(f"temperature {sampling['temperature']}")
    if sampling.get("repetition_aware_sampling"):
        parts.append("repetition-aware")
    return "sampling " + (", ".join(parts) if parts else "from the full distribution")


def _generation_seed(seed: int, utterance_id: str, system: str) -> int:
    # One seed per (seed, utterance, system): a resumed run draws exactly what an uninterrupted one would.
    return zlib.crc32(f"{seed}|{utterance_id}|{system}".encode()) & 0x7FFFFFFF


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", text)


class _Case:
    """One test case's audio, codec round trips and prompt embeddings, each computed at most once."""

    def __init__(self, case: TestCase, processor, speaker_judge, prompt_seconds: float, recognizer=None):
        self.case, self.processor, self.speaker_judge = case, processor, speaker_judge
        self.recognizer = recognizer
        self.rate = processor.sampling_rate
        self.prompt_samples = int(round(prompt_seconds * self.rate))
        self._cache: dict[str, Any] = {}

    def _once(self, name, compute):
        if name not in self._cache:
            self._cache[name] = compute()
        return self._cache[name]

    def target(self):
        return self._once("target", lambda: self.case.utterance.load(self.rate))

    def prompt(self):  # VALL-E: the crop of another utterance
        def crop():
            audio = self.case.prompt.load(self.rate)
            start = int(round(self.case.prompt_start * self.rate))
            return audio[start : start + self.prompt_samples]
        return self._once("prompt", crop)

    def prompt_transcript(self) -> str:
        """What the VALL-E crop says. The crop cuts an utterance at an arbitrary point, so the utterance's own
        transcript would describe words the audio does not hold (the model would say them first). As the paper
        transcribed its training data with ASR, the crop is transcribed by the evaluation's recogniser."""
        def transcribe():
            if self.recognizer is None:
                raise ValueError("the VALL-E system needs a recogniser to transcribe its 3 s prompt crop")
            return self.recognizer.transcribe([self.prompt()], self.rate)[0].strip()
        return self._once("prompt_transcript", transcribe)

    def continual_prompt(self):  # VALL-E-continual: the first seconds of the utterance itself
        return self._once("continual_prompt", lambda: self.target()[: self.prompt_samples])

    def codes(self, name: str):
        """The codec's codes of `target`, `prompt` or `continual_prompt`, shape (frames, codebooks)."""
        source = getattr(self, name)
        return self._once(f"codes_{name}", lambda: self.processor.encode_audio(source(), sampling_rate=self.rate))

    def codec(self, name: str, codebooks: int | None = None) -> np.ndarray:
        """`name` through the codec; with `codebooks`, only the first ones decoded (the others left out)."""
        length = len(getattr(self, name)())
        if codebooks is None:
            return self._once(f"codec_{name}", lambda: self.processor.batch_decode([self.codes(name)])[0][:length])
        # batch_decode insists on every codebook (what generate returns); the codec itself sums what it is given.
        return self._once(f"codec_{name}_{codebooks}",
                          lambda: self.processor._decode_codes(self.codes(name)[:, :codebooks]).numpy()[:length])

    def embedding(self, name: str, audio: Callable[[], np.ndarray]):
        return self._once(f"embedding_{name}", lambda: self.speaker_judge.embed(audio(), self.rate))


def _synthesize(model, processor, case: _Case, system: str, generation_kwargs: dict):
    """One output of a sampled system: (audio scored for WER, audio scored for SPK, seconds generated, capped)."""
    import torch

    utterance = case.case.utterance
    if system in CROP_PROMPT_SYSTEMS:
        transcript = case.prompt_transcript()
        inputs = processor(text=utterance.text, prompt_audio=case.prompt(), prompt_text=transcript or None,
                           sampling_rate=case.rate)
    else:
        inputs = processor(text=utterance.text, prompt_audio=case.continual_prompt(), sampling_rate=case.rate)
    device = next(model.parameters()).device
    with torch.no_grad():
        if system == NAR_GROUND_TRUTH_FIRST:
            # The paper's NAR ablation: codebook 1 is the recording's own, the NAR (greedy, deterministic) fills the
            # others with the VALL-E row's prompts. What the NAR can do when the AR is perfect.
            first = case.codes("target")[None, :, 0].to(device)
            sequences = model.generate_nar(**inputs.to(device), first_codebook=first)
            synthesis = processor.batch_decode([sequences[0].cpu()])[0]
            return synthesis, synthesis, len(synthesis) / case.rate, False
        if system == VALLE_NO_AR_PROMPT:
            # The AR reads the text alone (its phoneme prompt goes with the acoustic one: the transcript of a prompt
            # it does not hear would only make it say those words first) and starts from the audio BOS; the NAR
            # gets the VALL-E row's inputs, prompt included.
            text_only = processor(text=utterance.text)
            output = model.generate_ar(**text_only.to(device), return_dict_in_generate=True, **generation_kwargs)
            sequences = model.generate_nar(**inputs.to(device), first_codebook=output.sequences)
        else:
            output = model.generate(**inputs.to(device), return_dict_in_generate=True, **generation_kwargs)
            sequences = output.sequences
    generated = sequences[0, : int(output.sequence_lengths[0])].cpu()
    capped = not bool(output.finished_with_eos[0])
    synthesis = processor.batch_decode([generated])[0]
    if system in CROP_PROMPT_SYSTEMS:
        return synthesis, synthesis, len(synthesis) / case.rate, capped
    # VALL-E-continual says the whole transcript only with its prompt in front: WER scores prompt + continuation
    # (decoded together), SPK the continuation alone (the prompt against itself would say nothing).
    prompt_codes = inputs["prompt_codes"][0, : int(inputs["prompt_attention_mask"][0].sum())].cpu()
    whole = processor.batch_decode([torch.cat([prompt_codes, generated])])[0]
    return whole, synthesis, len(synthesis) / case.rate, capped


def _score(case: _Case, system: str, seed, recognizer, wer_audio, spk_audio, prompt_embedding) -> dict:
    utterance = case.case.utterance
    record = {
        "system": system, "utterance_id": utterance.id, "speaker_id": utterance.speaker_id, "seed": seed,
        "prompt_id": utterance.id if system == CONTINUAL else case.case.prompt.id,
        "prompt_start": 0.0 if system == CONTINUAL else case.case.prompt_start,
        "prompt_text": case.prompt_transcript() if system in CROP_PROMPT_SYSTEMS else None,
        "reference": utterance.text, "hypothesis": "", "spk": None, "error": None,
    }
    if len(wer_audio) >= MIN_JUDGED_SECONDS * case.rate:
        record["hypothesis"] = recognizer.transcribe([wer_audio], case.rate)[0]
    else:
        record["error"] = f"output lasts {len(wer_audio) / case.rate:.3f} s, too short to transcribe"
        record["wer_unjudged"] = True
    if len(spk_audio) >= MIN_JUDGED_SECONDS * case.rate:
        record["spk"] = cosine(prompt_embedding(), case.speaker_judge.embed(spk_audio, case.rate))
    else:
        record["error"] = "; ".join(filter(None, [
            record["error"], f"output lasts {len(spk_audio) / case.rate:.3f} s, too short to judge its speaker"]))
        record["spk_unjudged"] = True
    record.update(error_counts(utterance.text, record["hypothesis"]))
    record["wer"] = record["word_errors"] / max(1, record["reference_words"])
    record["cer"] = record["char_errors"] / max(1, record["reference_chars"])
    return record


def _runnable_systems(model, systems) -> tuple[list[str], dict[str, str]]:
    """The requested systems this model can run, and why the others cannot (the AR without an acoustic prompt
    starts from the audio BOS, which the paper's layout and converted lifeiteng / VALL-E X checkpoints lack)."""
    systems = list(dict.fromkeys(systems))
    skipped = {}
    if VALLE_NO_AR_PROMPT in systems and not getattr(getattr(model, "config", None), "use_audio_bos", False):
        skipped[VALLE_NO_AR_PROMPT] = "the model has no audio BOS token (config.use_audio_bos=False)"
        systems.remove(VALLE_NO_AR_PROMPT)
        print(f"valle evaluate: skipping the row {SYSTEM_TITLES[VALLE_NO_AR_PROMPT]!r} ({VALLE_NO_AR_PROMPT}): "
              f"{skipped[VALLE_NO_AR_PROMPT]}, so its AR cannot start without an acoustic prompt. Only models "
              "trained with use_audio_bos=True can run this ablation.", file=sys.stderr)
        if not systems:
            raise ValueError(f"nothing to evaluate: {VALLE_NO_AR_PROMPT} is the only system asked for, and "
                             f"{skipped[VALLE_NO_AR_PROMPT]}. Choose other --systems.")
    return systems, skipped


def run_evaluation(
    model,
    processor,
    cases: list[TestCase],
    recognizer,
    speaker_judge,
    output_dir: str | Path,
    seeds: list[int] = (0, 1, 2),
    systems: list[str] = DEFAULT_SYSTEMS,
    prompt_seconds: float = 3.0,
    generation_kwargs: dict | None = None,
    settings: dict | None = None,
    save_audio: bool = False,
    progress: bool = True,
    shard: tuple[int, int] | None = None,
) -> dict | None:
    """
    Scores every (system, test case, seed) not yet in `output_dir/results.jsonl`, appending each result as it
    comes, then writes `summary.json` and `table.md` and returns the summary (see `summarize`).

    `shard=(number, count)` makes this one of `count` workers sharing the run (`valle evaluate --workers`): it
    scores only the test cases whose index is `number` modulo `count`, skips those already in `results.jsonl`,
    appends to a results file of its own (`worker_results_path`) and returns None. The caller merges the workers'
    files once they are done (`merge_worker_results`; a run without `shard` merges any it finds first) and
    summarises: that run finds every result and computes nothing again. Each output is seeded from its seed,
    utterance and system alone, so the results do not depend on how the cases were shared.

    `recognizer` needs `transcribe(waveforms, sampling_rate) -> list[str]`, `speaker_judge` needs
    `embed(waveform, sampling_rate) -> vector`. `settings` describes the run (model, data, judges, ranges,
    generation options); a folder holding results of other settings is refused rather than mixed.

    `systems` defaults to the paper's Table 2 rows (`DEFAULT_SYSTEMS`). The ablation `VALLE_NO_AR_PROMPT` needs a
    model with `config.use_audio_bos=True`; for any other it is skipped with a message on stderr (recorded as
    `skipped_systems` in the settings and noted under the table), and only a request for nothing else is an error.
    """
    from tqdm.auto import tqdm

    unknown = [s for s in systems if s not in SYSTEMS]
    if unknown or not systems:
        raise ValueError(f"unknown system(s) {unknown or systems}; choose from {list(SYSTEMS)}.")
    if shard is not None and not 0 <= shard[0] < shard[1]:
        raise ValueError(f"shard must be (number, count) with 0 <= number < count, got {shard}.")
    systems, skipped_systems = _runnable_systems(model, systems)
    seeds = list(seeds)
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be a non-empty list of distinct integers, got {seeds}.")
    if not cases:
        raise ValueError("no test cases to evaluate.")
    generation_kwargs = dict(generation_kwargs or {})
    folder = Path(output_dir)
    settings = {**(settings or {}), "prompt_seconds": prompt_seconds, "generation": generation_kwargs,
                "sampling": effective_sampling(model, generation_kwargs),
                "seeds": seeds, "systems": list(systems), "skipped_systems": skipped_systems,
                "test_cases": len(cases)}
    _check_settings(folder, settings)
    results_path = folder / RESULTS_FILE
    if shard is None:
        merge_worker_results(folder)  # what the workers of an interrupted `--workers` run had written
        repair_results(results_path)
        done = read_results(results_path)
        write_path = results_path
    else:  # a worker reads the merged results and appends to a file of its own
        write_path = worker_results_path(folder, shard[0])
        repair_results(write_path)
        done = {**read_results(results_path), **read_results(write_path)}

    work = [
        (index, system, seed)
        for index, case in enumerate(cases)
        for system in systems
        for seed in (seeds if system in SAMPLED_SYSTEMS else [None])
    ]
    if shard is not None:
        work = [item for item in work if item[0] % shard[1] == shard[0]]
    todo = [item for item in work if result_key(item[1], cases[item[0]].utterance.id, item[2]) not in done]
    if len(todo) < len(work):
        print(f"resuming: {len(work) - len(todo)} of {len(work)} results already in {results_path}")
    bar = tqdm(total=len(work), initial=len(work) - len(todo), unit="result", desc="valle evaluate",
               disable=not progress)
    current: _Case | None = None
    import torch

    with open(write_path, "a", encoding="utf-8") as handle:
        for index, system, seed in todo:
            if current is None or current.case is not cases[index]:
                current = _Case(cases[index], processor, speaker_judge, prompt_seconds, recognizer)
            case = current
            extra = {}
            if system == GROUND_TRUTH:
                audio = case.target()
                record = _score(case, system, seed, recognizer, audio, audio,
                                lambda: case.embedding("prompt", case.prompt))
            elif system in (CODEC, CODEC_FIRST_CODEBOOK):
                audio = case.codec("target", codebooks=1 if system == CODEC_FIRST_CODEBOOK else None)
                record = _score(case, system, seed, recognizer, audio, audio,
                                lambda: case.embedding("codec_prompt", lambda: case.codec("prompt")))
            else:
                prompt_name = "prompt" if system in CROP_PROMPT_SYSTEMS else "continual_prompt"
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(_generation_seed(seed, case.case.utterance.id, system))
                    if torch.cuda.is_available():
                        torch.cuda.manual_seed_all(_generation_seed(seed, case.case.utterance.id, system))
                    audio, spk_audio, seconds, capped = _synthesize(model, processor, case, system, generation_kwargs)
                record = _score(case, system, seed, recognizer, audio, spk_audio,
                                lambda: case.embedding(f"codec_{prompt_name}", lambda: case.codec(prompt_name)))
                extra = {"generated_seconds": round(seconds, 3), "reached_cap": capped}
            record.update(extra)
            record["audio_seconds"] = round(len(audio) / case.rate, 3)
            if save_audio:
                path = folder / "audio" / system / ("" if seed is None else f"seed{seed}") / (
                    _safe_name(case.case.utterance.id) + ".wav")
                processor.save_audio(audio, str(path))
                record["audio_path"] = str(path.relative_to(folder))
            handle.write(json.dumps(record) + "\n")
            handle.flush()
            done[result_key(system, case.case.utterance.id, seed)] = record
            bar.update(1)
    bar.close()
    if shard is not None:
        return None

    wanted = {result_key(system, cases[index].utterance.id, seed) for index, system, seed in work}
    records = [record for key, record in done.items() if key in wanted]
    summary = summarize(records, settings)
    summary["test_set"] = {
        "utterances": len(cases),
        "speakers": len({case.utterance.speaker_id for case in cases}),
        "hours": round(sum(case.utterance.seconds for case in cases) / 3600, 3),
    }
    (folder / SUMMARY_FILE).write_text(json.dumps(summary, indent=1))
    (folder / TABLE_FILE).write_text(markdown_table(summary) + "\n")
    return summary


# ---------------------------------------------------------------------------------------------------------------------
# Summaries and the table
# ---------------------------------------------------------------------------------------------------------------------
def _spread(values: list[float]) -> float:
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def corpus_error_rate(records: list[dict], unit: str) -> float:
    """Corpus-level error rate in % of `records` (from `error_counts`): all their `word` or `char` edits over all
    their reference words or characters (not the mean of per-utterance rates)."""
    if unit not in ("word", "char"):
        raise ValueError(f"`unit` must be 'word' or 'char', got {unit!r}.")
    return 100.0 * sum(r[f"{unit}_errors"] for r in records) / max(1, sum(r[f"reference_{unit}s"] for r in records))


def summarize(records: list[dict], settings: dict | None = None) -> dict:
    """Per system and seed: corpus WER / CER (edits over reference size, in %) and mean SPK; then the mean over
    seeds and the spread (sample standard deviation across seeds; 0 for the deterministic systems)."""
    groups: dict[str, dict] = defaultdict(lambda: defaultdict(list))
    for record in records:
        groups[record["system"]][record["seed"]].append(record)
    rows = []
    for system in SYSTEMS:
        if system not in groups:
            continue
        per_seed = []
        for seed, items in sorted(groups[system].items(), key=lambda kv: (kv[0] is not None, kv[0] or 0)):
            similarities = [r["spk"] for r in items if r["spk"] is not None]
            per_seed.append({
                "seed": seed,
                "utterances": len(items),
                "wer": corpus_error_rate(items, "word"),
                "cer": corpus_error_rate(items, "char"),
                "spk": float(np.mean(similarities)) if similarities else None,
                "unjudged": sum(r["error"] is not None for r in items),
                "wer_unjudged": sum(bool(r.get("wer_unjudged")) for r in items),
                "spk_unjudged": sum(bool(r.get("spk_unjudged")) for r in items),
                "reached_cap": sum(bool(r.get("reached_cap")) for r in items),
            })
        row = {"system": system, "title": SYSTEM_TITLES[system], "seeds": [s["seed"] for s in per_seed],
               "utterances": max(s["utterances"] for s in per_seed), "per_seed": per_seed}
        for metric in ("wer", "cer", "spk"):
            values = [s[metric] for s in per_seed if s[metric] is not None]
            row[metric] = float(np.mean(values)) if values else None
            row[f"{metric}_spread"] = _spread(values) if values else None
        row["unjudged"] = sum(s["unjudged"] for s in per_seed)
        row["wer_unjudged"] = sum(s["wer_unjudged"] for s in per_seed)
        row["spk_unjudged"] = sum(s["spk_unjudged"] for s in per_seed)
        rows.append(row)
    return {
        "by_speaker": errors_by_speaker(records),
        "protocol": {
            "wer": "corpus-level word error rate in %, after valle.evaluation.normalize_text (numbers not spelled out)",
            "spk": "mean cosine of speaker embeddings: prompt (codec-decoded for the synthetic systems) vs output",
            "valle": "prompt = a prompt_seconds crop of another utterance of the same speaker; phoneme prompt = the "
                     "crop's transcript by the evaluation's recogniser (the utterance's own transcript would name "
                     "words cut off by the crop)",
            "valle_continual": "prompt = the first prompt_seconds of the same utterance, its whole transcript; WER on "
                               "prompt + continuation, SPK on the continuation",
            "valle_no_ar_prompt": "ablation: the AR reads the utterance's text alone (no acoustic prompt, no prompt "
                                  "transcript) from the audio BOS; the NAR gets the valle row's inputs (crop "
                                  "transcript + text, the same crop); scored as the valle row",
            "nar_ground_truth_first": "ablation (the paper's NAR with both prompts): codebook 1 of the recording's own "
                                      "codes, codebooks 2-8 by the NAR (greedy) with the valle row's prompts; scored "
                                      "once, as the valle row",
            "codec_first_codebook": "the recording's own codebook 1 decoded alone, codebooks 2-8 left out: the "
                                    "reference for nar_ground_truth_first (an NAR that adds nothing); scored as "
                                    "codec_resynthesis",
            "spread": "sample standard deviation across seeds",
        },
        "settings": settings or {},
        "table": rows,
        "results": sorted(records, key=lambda r: (SYSTEMS.index(r["system"]), r["utterance_id"], r["seed"] or 0)),
    }


def errors_by_speaker(records: list[dict]) -> dict:
    """Per system, per speaker: corpus-level WER and CER in % of that speaker's outputs, seeds pooled, and how many
    outputs that is. Where a gap sits: in a few voices (the recogniser's, or the prompt's) or in all of them."""
    groups: dict[str, dict] = defaultdict(lambda: defaultdict(list))
    for record in records:
        groups[record["system"]][record["speaker_id"]].append(record)
    return {
        system: {speaker: {"wer": corpus_error_rate(items, "word"), "cer": corpus_error_rate(items, "char"),
                           "outputs": len(items)}
                 for speaker, items in sorted(groups[system].items())}
        for system in SYSTEMS if system in groups
    }


def speaker_table(summary: dict, metric: str = "cer") -> str:
    """`errors_by_speaker` as markdown: one row per speaker, one column per system (`metric`: "cer" or "wer")."""
    if metric not in ("wer", "cer"):
        raise ValueError(f"`metric` must be 'wer' or 'cer', got {metric!r}.")
    by_speaker = summary.get("by_speaker") or {}
    systems = [system for system in SYSTEMS if system in by_speaker]
    speakers = sorted({speaker for system in systems for speaker in by_speaker[system]})
    lines = [f"| speaker ({metric.upper()} %, seeds pooled) | " + " | ".join(systems) + " |",  # --systems names
             "|---|" + "---|" * len(systems)]
    for speaker in speakers:
        cells = [f"{by_speaker[s][speaker][metric]:.1f}" if speaker in by_speaker[s] else "" for s in systems]
        lines.append(f"| {speaker} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown_table(summary: dict, include_cer: bool | None = None, caption: str | None = None,
                   notes: bool = True) -> str:
    """The paper's Table 2 layout (system | WER | SPK), mean ± spread over seeds; CER too when asked (the lab).
    `caption`: what the first column's header names in brackets (default: the data, as the settings give it; ""
    for none). `notes=False` leaves out the line under the table (test set, seeds, judges)."""
    if include_cer is None:
        include_cer = bool(summary.get("settings", {}).get("lab"))

    def cell(row, metric, digits):
        if row[metric] is None:
            return "n/a"
        text = f"{row[metric]:.{digits}f}"
        return text + (f" ± {row[f'{metric}_spread']:.{digits}f}" if len(row["seeds"]) > 1 else "")

    if caption is None:
        caption = summary.get("settings", {}).get("data", "the test set")
    header = f"| system{f' ({caption})' if caption else ''} | WER |" + (" CER |" if include_cer else "") + " SPK |"
    lines = [header, "|---|---|" + ("---|" if include_cer else "") + "---|"]
    for row in summary["table"]:
        cer = f" {cell(row, 'cer', 1)} |" if include_cer else ""
        lines.append(f"| {row['title']} | {cell(row, 'wer', 1)} |{cer} {cell(row, 'spk', 3)} |")
    test_set = summary.get("test_set")
    settings = summary.get("settings", {})
    remarks = []
    if test_set:
        remarks.append(f"{test_set['utterances']} test utterances of {test_set['speakers']} speakers "
                     f"({test_set['hours']} h)")
    seeds = settings.get("seeds")
    if seeds:
        remarks.append(f"VALL-E rows: mean ± spread over seeds {', '.join(map(str, seeds))}")
    if any(value is not None for value in settings.get("sampling", {}).values()):
        remarks.append(f"AR {describe_sampling(settings['sampling'])}")
    if settings.get("asr_model"):
        remarks.append(f"ASR: {settings['asr_model']}")
    if settings.get("speaker_model"):
        remarks.append(f"speaker model: {settings['speaker_model']}")
    not_transcribed = sum(row.get("wer_unjudged", 0) for row in summary["table"])
    no_speaker = sum(row.get("spk_unjudged", 0) for row in summary["table"])
    if not_transcribed:
        remarks.append(f"{not_transcribed} outputs too short to transcribe (counted as all words deleted)")
    if no_speaker:
        remarks.append(f"{no_speaker} outputs too short to judge their speaker (left out of SPK)")
    for system, reason in settings.get("skipped_systems", {}).items():
        remarks.append(f"{SYSTEM_TITLES.get(system, system)}: not computed, {reason}")
    return "\n".join(lines + ([""] + ["; ".join(remarks) + "."] if notes and remarks else []))


# ---------------------------------------------------------------------------------------------------------------------
# Entry points: full scale and the offline lab
# ---------------------------------------------------------------------------------------------------------------------
def evaluate(
    model_name_or_path: str,
    output_dir: str,
    lab: bool = False,
    lab_dir: str = DEFAULT_LAB_DIR,
    dataset: str = DEFAULT_DATASET,
    dataset_config: str | None = DEFAULT_DATASET_CONFIG,
    split: str = DEFAULT_SPLIT,
    columns: dict | None = None,
    asr_model: str = DEFAULT_ASR_MODEL,
    speaker_model: str = DEFAULT_SPEAKER_MODEL,
    seeds: list[int] = (0, 1, 2),
    systems: list[str] | None = None,
    min_seconds: float = 4.0,
    max_seconds: float = 10.0,
    prompt_seconds: float = 3.0,
    selection_seed: int = 0,
    limit: int | None = None,
    generation_kwargs: dict | None = None,
    max_new_seconds: float | None = None,
    device: str | None = None,
    save_audio: bool = False,
    progress: bool = True,
    shard: tuple[int, int] | None = None,
) -> dict | None:
    """
    Loads the VALL-E model, the test set and the judges, then `run_evaluation`. With `lab=True` the data are the
    lab corpus's held-out speakers (`lab_dir/corpus`, split `split`: `test`, or `validation` to tune settings on
    other speakers than those reported) and the judges are the lab's (its CTC
    recogniser in `lab_dir/judge/model` and resemblyzer); `dataset`, `asr_model` and `speaker_model` are then
    not used. Raises `LabNotReady` when the lab is not built yet. `max_new_seconds` caps each synthesis (converted
    to `max_new_tokens` at the codec's frame rate). `systems` defaults to `DEFAULT_SYSTEMS` (the paper's Table 2),
    or `DEFAULT_LAB_SYSTEMS` (the same plus the ablations) with `lab=True`. `shard`: one worker's share of the run
    (see `run_evaluation`; returns None).
    """
    from valle.synthesis import load_model_and_processor

    if lab:
        data_path, recognizer, speaker_judge = lab_setup(lab_dir)
        utterances = load_utterances(data_path, split=split)
        data = f"lab corpus {data_path}, {split} split"
        asr_name, speaker_name = lab_recognizer_dir(lab_dir), "resemblyzer VoiceEncoder"
    else:
        utterances = load_utterances(dataset, dataset_config, split, **(columns or {}))
        data = f"{dataset} {dataset_config or ''} {split}".replace("  ", " ").strip() if not os.path.isdir(dataset) \
            else f"{dataset} ({split})"
        asr_name, speaker_name = asr_model, speaker_model
    cases, skipped = select_test_cases(utterances, min_seconds, max_seconds, prompt_seconds, selection_seed, limit)
    if max_new_seconds is not None and max_new_seconds <= 0:
        raise ValueError(f"max_new_seconds must be positive, got {max_new_seconds}.")
    model, processor = load_model_and_processor(model_name_or_path, device=device)
    generation_kwargs = dict(generation_kwargs or {})
    if max_new_seconds is not None:
        generation_kwargs["max_new_tokens"] = max(1, int(round(max_new_seconds * processor.frame_rate)))
    device = str(next(model.parameters()).device)
    if not lab:
        recognizer = CTCRecognizer(asr_model, device=device)
        speaker_judge = XVectorSpeakerJudge(speaker_model, device=device)
    settings = {
        "model": str(model_name_or_path), "data": data, "asr_model": asr_name, "speaker_model": speaker_name,
        "min_seconds": min_seconds, "max_seconds": max_seconds, "selection_seed": selection_seed, "lab": lab,
        "limit": limit, "skipped_utterances": skipped,
    }
    if systems is None:
        systems = DEFAULT_LAB_SYSTEMS if lab else DEFAULT_SYSTEMS
    return run_evaluation(model, processor, cases, recognizer, speaker_judge, output_dir, seeds=seeds,
                          systems=systems, prompt_seconds=prompt_seconds, generation_kwargs=generation_kwargs,
                          settings=settings, save_audio=save_audio, progress=progress, shard=shard)
